"""Reassembly (ip_fragment.c / inet_fragment.c) and fragmentation (ip_do_fragment())."""

from __future__ import annotations

import itertools
import random
import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipgate.packet.build import build_ipv4, build_udp
from ipgate.packet.drop import Counters, DropReason, Mib
from ipgate.packet.frag import (
    IP_DEFRAG_AF_PACKET,
    IP_DEFRAG_CONNTRACK_IN,
    IP_DEFRAG_CONNTRACK_OUT,
    IP_DEFRAG_LOCAL_DELIVER,
    IPQ_SIZE,
    Defrag,
    Expired,
    FragNeeded,
    Reassembled,
    frag_expire_skip_icmp,
    frag_truesize,
    ip_fragment,
    nf_ct_defrag_user,
)
from ipgate.packet.ipv4 import IP_DF, IP_MF, IPv4, parse_ipv4

from .oracle import ip_hdr_ok, l4_ok, valid_options

A = 0x0A000001
B = 0xC0000202


def datagram(size: int, *, ident: int = 0x1234, df: bool = False, options: bytes = b"", tos: int = 0,
             proto: int = 17) -> bytearray:
    """An IP datagram whose payload is `size` bytes (a UDP datagram when it can be)."""
    if proto == 17 and size >= 8:
        payload = random.Random(size).randbytes(size - 8)
        return build_udp(A, B, 1000, 2000, payload, id=ident, frag_off=IP_DF if df else 0, tos=tos,
                         ip_options=options)
    return build_ipv4(A, B, proto, bytes(range(256)) * (size // 256) + bytes(size % 256), id=ident,
                      frag_off=IP_DF if df else 0, tos=tos, options=options)


def fragments(pkt: bytes | bytearray, mtu: int, **kw: object) -> list[bytearray]:
    r = ip_fragment(pkt, mtu, **kw)  # type: ignore[arg-type]
    assert isinstance(r, list), r
    return r


def frag(pkt: bytes | bytearray, offset: int, length: int, mf: bool, *, tos: int | None = None,
         df: bool = False, ident: int | None = None) -> bytearray:
    """A hand-made fragment of `pkt`: `length` payload bytes from `offset`."""
    ip = parse_ipv4(pkt)
    assert isinstance(ip, IPv4)
    payload = bytes(pkt[ip.ihl + offset:ip.ihl + offset + length])
    return build_ipv4(ip.saddr, ip.daddr, ip.protocol, payload, id=ip.id if ident is None else ident,
                      tos=ip.tos if tos is None else tos,
                      frag_off=(offset >> 3) | (IP_MF if mf else 0) | (IP_DF if df else 0),
                      options=bytes(pkt[20:ip.ihl]))


def feed(d: Defrag, frags: list[bytearray], now: float = 0.0, **kw: object) -> list[object]:
    return [d.add(f, now, **kw) for f in frags]  # type: ignore[arg-type]


def assert_empty(d: Defrag) -> None:
    assert not d.queues and d.mem == 0 and d.next_timer() is None


# -- round trips -----------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.integers(0, 5000), st.integers(68, 1500), valid_options, st.randoms(use_true_random=False))
def test_fragment_then_reassemble_in_any_order(size: int, mtu: int, options: bytes, rnd: random.Random) -> None:
    orig = datagram(size, options=options)
    frs = fragments(orig, mtu)
    hlen = 20 + len(options) + (-len(options) % 4)
    if len(orig) <= mtu:
        assert frs == [orig]
        return
    for f in frs:
        d = dpkt.ip.IP(bytes(f))
        assert len(f) <= mtu and ip_hdr_ok(bytes(f))
        assert (d._flags_offset & 0x1FFF) * 8 + len(f) - hlen <= size
    assert all((len(f) - hlen) % 8 == 0 for f in frs[:-1])
    assert all(f[6] & 0x20 for f in frs[:-1]) and not frs[-1][6] & 0x20
    rnd.shuffle(frs)
    d = Defrag()
    out = feed(d, frs)
    assert all(r is None for r in out[:-1])
    r = out[-1]
    assert isinstance(r, Reassembled)
    assert r.packet == orig
    assert r.frag_max_size == max(len(f) for f in frs) and not r.frag_pmtu
    assert l4_ok(bytes(r.packet))
    assert_empty(d)
    assert d.counters[Mib.REASMOKS] == 1 and d.counters[Mib.REASMREQDS] == len(frs)


def test_every_order_of_four() -> None:
    orig = datagram(4000)
    frs = fragments(orig, 1100)
    assert len(frs) == 4
    for order in itertools.permutations(frs):
        d = Defrag()
        out = feed(d, list(order))
        assert out[:3] == [None, None, None]
        assert isinstance(out[3], Reassembled) and out[3].packet == orig
        assert_empty(d)


def test_options_on_fragments_follow_the_copied_flag() -> None:
    opts = b"\x07\x07\x04\x00\x00\x00\x00\x01" + b"\x83\x07\x04\xc0\x00\x02\x01\x00"  # RR, LSRR
    orig = datagram(3000, options=opts)
    frs = fragments(orig, 1000)
    assert frs[0][20:36] == opts
    for f in frs[1:]:
        assert f[20:28] == b"\x01" * 8 and f[28:36] == opts[8:] and (f[0] & 15) == 9
    d = Defrag()
    r = feed(d, frs[::-1])[-1]
    assert isinstance(r, Reassembled) and r.packet == orig  # the header is the first fragment's


def test_fragmenting_a_fragment() -> None:
    orig = datagram(3000)
    big = fragments(orig, 2000)
    assert len(big) == 2
    small = fragments(big[0], 600) + fragments(big[1], 600)
    assert all(f[6] & 0x20 for f in small[:-1]) and not small[-1][6] & 0x20  # MF kept on the first part's end
    d = Defrag()
    r = feed(d, small)[-1]
    assert isinstance(r, Reassembled) and r.packet == orig


def test_fragment_decisions() -> None:
    c = Counters()
    small = datagram(100, df=True)
    assert ip_fragment(small, 1500, counters=c) == [small]
    big = datagram(3000, df=True)
    assert ip_fragment(big, 1500, counters=c) == FragNeeded(1500)
    assert c[Mib.FRAGFAILS] == 1
    frs = ip_fragment(big, 1500, ignore_df=True, counters=c)
    assert isinstance(frs, list) and len(frs) == 3
    assert not any(f[6] & 0x40 for f in frs)  # DF is not copied to fragments...
    frs = fragments(big, 1500, ignore_df=True, frag_pmtu=True)
    assert all(f[6] & 0x40 for f in frs)  # ... unless IPSKB_FRAG_PMTU
    assert c[Mib.FRAGOKS] == 1 and c[Mib.FRAGCREATES] == 3
    # a reassembled DF datagram whose fragments were larger than the MTU
    assert ip_fragment(big, 1000, ignore_df=True, frag_max_size=1200) == FragNeeded(1000)
    # frag_max_size forces fragmenting at that size even when the packet fits
    frs = fragments(datagram(1400), 1500, frag_max_size=600)
    assert max(len(f) for f in frs) <= 600 and len(frs) == 3
    assert ip_fragment(datagram(100, options=b"\x01" * 40), 60) is DropReason.PKT_TOO_BIG
    assert ip_fragment(b"\x45\0\0", 1500) is DropReason.IP_INHDR


def test_refragmenting_a_reassembled_datagram_gives_back_the_same_fragments() -> None:
    """What forwarding does after conntrack reassembled: ip_fragment() at the
    largest fragment's size (frag_max_size), DF set if that one had it."""
    orig = datagram(4000, df=True)
    frs = fragments(orig, 1300, ignore_df=True, frag_pmtu=True)
    d = Defrag()
    r = feed(d, frs, user=nf_ct_defrag_user(0, True))[-1]
    assert isinstance(r, Reassembled) and r.frag_pmtu and r.frag_max_size == 1300
    assert r.packet[6] & 0x40  # DF: the largest fragment had it
    again = fragments(r.packet, 1500, ignore_df=True, frag_max_size=r.frag_max_size, frag_pmtu=r.frag_pmtu)
    assert again == frs


def test_df_only_when_the_largest_fragment_had_it() -> None:
    orig = datagram(2000)
    a, b = frag(orig, 0, 1480, True, df=False), frag(orig, 1480, 520, False, df=True)
    r = feed(Defrag(), [a, b])[-1]
    assert isinstance(r, Reassembled) and not r.frag_pmtu and r.packet[6] == 0
    a, b = frag(orig, 0, 1480, True, df=True), frag(orig, 1480, 520, False, df=False)
    r = feed(Defrag(), [a, b])[-1]
    assert isinstance(r, Reassembled) and r.frag_pmtu and r.packet[6] & 0x40


def test_link_padding_on_fragments_is_ignored() -> None:
    orig = datagram(3000)
    frs = [f + b"\0" * 6 for f in fragments(orig, 1500)]
    r = feed(Defrag(), frs)[-1]
    assert isinstance(r, Reassembled) and r.packet == orig


def test_not_a_fragment_and_not_a_packet() -> None:
    d = Defrag()
    whole = datagram(100)
    r = d.add(whole + b"pad", 0.0)
    assert isinstance(r, Reassembled) and r.packet == whole and r.frag_max_size == 0
    assert d.add(b"\x45\x00", 0.0) is DropReason.IP_INHDR
    assert d.counters[DropReason.IP_INHDR] == 1
    assert_empty(d)


# -- duplicates and overlaps --------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=30))
def test_duplicates_are_dropped_alone(picks: list[int]) -> None:
    orig = datagram(5000)
    frs = fragments(orig, 1100)
    assert len(frs) == 5
    d = Defrag()
    seen: set[int] = set()
    dups = 0
    for i in picks:
        r = d.add(frs[i], 0.0)
        if i in seen:
            assert r is DropReason.DUP_FRAG
            dups += 1
            continue
        seen.add(i)
        if len(seen) == 5:
            assert isinstance(r, Reassembled) and r.packet == orig
            assert d.counters[DropReason.DUP_FRAG] == dups
            assert_empty(d)
            return
        assert r is None
    assert d.counters[Mib.REASMFAILS] == 0 and len(d.queues) == 1


def test_overlap_drops_the_whole_queue() -> None:
    orig = datagram(3000)
    a = frag(orig, 0, 1480, True)
    b = frag(orig, 1472, 800, True)  # overlaps a by 8 bytes
    c = frag(orig, 1480, 1520, False)
    d = Defrag()
    assert d.add(a, 0.0) is None
    assert d.add(b, 0.0) is DropReason.FRAG_OVERLAP
    assert_empty(d)
    assert d.counters[Mib.REASM_OVERLAPS] == 1 and d.counters[Mib.REASMFAILS] == 1
    assert d.counters[DropReason.FRAG_OVERLAP] == 2  # b and the queued a
    # what comes next starts a new queue, which then lacks a
    assert d.add(c, 0.0) is None and len(d.queues) == 1
    r = d.add(a, 0.0)
    assert isinstance(r, Reassembled) and r.packet == orig


@pytest.mark.parametrize("second", [
    (0, 32, True),  # same start, longer
    (8, 16, True),  # inside the first and past it
    (1480, 1520, False),  # the last part, fine...
])
def test_overlap_cases(second: tuple[int, int, bool]) -> None:
    orig = datagram(3000)
    d = Defrag()
    assert d.add(frag(orig, 0, 16, True), 0.0) is None
    r = d.add(frag(orig, *second), 0.0)
    if second[0] >= 16:
        assert r is None
    else:
        assert r is DropReason.FRAG_OVERLAP


def test_duplicate_or_overlap_depends_on_runs() -> None:
    """inet_frag_queue_insert() keeps runs of fragments that arrived in order.
    A fragment inside one run is a duplicate; one spanning two runs overlaps,
    even when it only repeats bytes already held."""
    orig = datagram(100)
    a, b = frag(orig, 0, 16, True), frag(orig, 16, 16, True)
    ab = frag(orig, 0, 32, True)
    d = Defrag()
    assert feed(d, [a, b]) == [None, None]  # one run [0, 32)
    assert d.add(ab, 0.0) is DropReason.DUP_FRAG
    d = Defrag()
    assert feed(d, [b, a]) == [None, None]  # two runs: [16, 32) then [0, 16)
    assert d.add(ab, 0.0) is DropReason.FRAG_OVERLAP
    assert_empty(d)


def test_duplicate_last_fragment_and_after_completion() -> None:
    orig = datagram(3000)
    frs = fragments(orig, 1500)
    d = Defrag()
    assert d.add(frs[2], 0.0) is None
    assert d.add(frs[2], 0.0) is DropReason.DUP_FRAG
    assert feed(d, frs[:1]) == [None]
    assert isinstance(d.add(frs[1], 0.0), Reassembled)
    assert d.add(frs[1], 0.0) is None  # a late duplicate opens a new queue, which times out
    assert len(d.expire(30.0)) == 1
    assert_empty(d)


# -- inconsistent fragments ---------------------------------------------------------

def test_inconsistent_ends_kill_the_queue() -> None:
    orig = datagram(3000)
    cases = [
        [frag(orig, 1480, 100, False), frag(orig, 1480, 200, False)],  # two different last fragments
        [frag(orig, 1480, 200, False), frag(orig, 1480, 40, False)],
        [frag(orig, 1480, 200, False), frag(orig, 1688, 8, True)],  # data past the end
        [frag(orig, 1480, 200, True), frag(orig, 8, 792, False)],  # a last fragment before data
        [frag(orig, 0, 7, True)],  # an empty fragment (7 bytes: no whole block)
    ]
    for seq in cases:
        d = Defrag()
        out = feed(d, seq)
        assert out[-1] is DropReason.FRAG_INVALID, seq
        assert_empty(d)
        assert d.counters[Mib.REASMFAILS] == 1


def test_non_last_fragment_is_trimmed_to_8_bytes() -> None:
    orig = datagram(40)  # 20 + 40 bytes
    a = frag(orig, 0, 21, True)  # 21 bytes: only 16 count
    b = frag(orig, 16, 24, False)
    r = feed(Defrag(), [a, b])[-1]
    assert isinstance(r, Reassembled) and r.packet == orig


def test_oversize_datagram() -> None:
    big = bytes(1480)
    d = Defrag()
    out = []
    for off in range(0, 65520, 1480):
        out.append(d.add(build_ipv4(A, B, 17, big[:min(1480, 65536 - off)], id=7,
                                    frag_off=(off >> 3) | (IP_MF if off + 1480 < 65536 else 0)), 0.0))
    assert out[-1] is DropReason.FRAG_OVERSIZE  # 20 + 65536 > 65535
    assert_empty(d)
    assert d.counters[Mib.REASMFAILS] == 1 and d.counters[DropReason.FRAG_OVERSIZE] == len(out)


# -- ECN ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("tos_a", "tos_b", "result"), [
    (0, 0, 0), (1, 1, 1), (2, 2, 2), (1, 2, 0),  # Not-ECT, ECT(1), ECT(0), ECT(1)+ECT(0)
    (3, 2, 3), (3, 1, 3), (3, 3, 3),  # CE with ECT: CE
    (3, 0, None), (0, 2, None), (1, 0, None),  # Not-ECT with anything else: drop
])
def test_ecn_combinations(tos_a: int, tos_b: int, result: int | None) -> None:
    orig = datagram(2000, tos=0xB8 | tos_a)
    d = Defrag()
    r = feed(d, [frag(orig, 0, 1480, True, tos=0xB8 | tos_a), frag(orig, 1480, 520, False, tos=0xB8 | tos_b)])[-1]
    if result is None:
        assert r is DropReason.FRAG_ECN
    else:
        assert isinstance(r, Reassembled) and r.packet[1] == 0xB8 | tos_a | result
        assert ip_hdr_ok(bytes(r.packet))
    assert_empty(d)


# -- time, memory, distance -------------------------------------------------------------

def test_timeout_reports_the_first_fragment() -> None:
    orig = datagram(3000)
    frs = fragments(orig, 1500)
    d = Defrag(timeout=30.0)
    assert d.add(frs[0], 100.0, iif=3) is None
    assert d.add(frs[2], 120.0) is None  # a later fragment does not push the timer back
    assert d.next_timer() == 130.0
    assert d.expire(129.999) == []
    (e,) = d.expire(130.0)
    assert isinstance(e, Expired) and e.first == bytes(frs[0]) and e.iif == 3 and e.user == 0
    assert e.key == (A, B, 0x1234, 17, 0, 0)
    assert_empty(d)
    assert d.counters[Mib.REASMTIMEOUT] == 1 and d.counters[Mib.REASMFAILS] == 1
    assert d.counters[DropReason.FRAG_REASM_TIMEOUT] == 2


def test_overdue_queue_is_expired_by_add() -> None:
    """A caller late to call expire(): the old queue does not take new fragments."""
    frs = fragments(datagram(3000), 1500)
    d = Defrag(timeout=30.0)
    assert d.add(frs[0], 0.0) is None
    assert d.add(frs[1], 31.0) is None  # the first queue is over: a new one
    assert d.next_timer() == 30.0
    assert d.add(frs[2], 32.0) is None  # so this does not complete anything
    (e,) = d.expire(32.0)
    assert e.first == bytes(frs[0]) and e.deadline == 30.0
    assert d.next_timer() == 61.0 and len(d.queues) == 1
    assert isinstance(d.add(frs[0], 33.0), Reassembled)
    assert_empty(d)


def test_timeout_without_the_first_fragment() -> None:
    frs = fragments(datagram(3000), 1500)
    d = Defrag()
    feed(d, frs[1:], now=5.0)
    (e,) = d.expire(1000.0)
    assert e.first is None  # ip_expire(): no ICMP without the first fragment


def test_expiry_order_and_many_queues() -> None:
    d = Defrag(timeout=10.0)
    for i in range(50):
        assert d.add(frag(datagram(100, ident=i), 0, 16, True), float(i)) is None
    assert d.next_timer() == 10.0
    assert [e.key[2] for e in d.expire(20.0)] == list(range(11))
    assert d.next_timer() == 21.0 and len(d.queues) == 39


def test_memory_limit() -> None:
    one = frag(datagram(3000, ident=1), 0, 1480, True)
    cost = IPQ_SIZE + frag_truesize(len(one))
    d = Defrag(high_thresh=3 * cost)
    for i in range(4):  # above high_thresh only after the 4th
        assert d.add(frag(datagram(3000, ident=i), 0, 1480, True), 0.0) is None
    assert d.mem == 4 * cost
    assert d.add(frag(datagram(3000, ident=9), 0, 1480, True), 1.0) is DropReason.NOMEM
    # even a fragment for an existing queue: inet_frag_find() refuses first
    assert d.add(frag(datagram(3000, ident=1), 1480, 1520, False), 1.0) is DropReason.NOMEM
    assert d.counters[Mib.REASMFAILS] == 2
    assert len(d.expire(30.0)) == 4
    assert_empty(d)
    assert d.add(one, 31.0) is None
    assert Defrag(high_thresh=0).add(one, 0.0) is DropReason.NOMEM  # 0 turns reassembly off


def test_too_far() -> None:
    """ipfrag_max_dist: a queue that saw none of its source's last 64+ fragments
    starts over (ip_frag_reinit())."""
    orig = datagram(3000, ident=1)
    frs = fragments(orig, 1500)
    d = Defrag(max_dist=64)
    assert d.add(frs[0], 0.0) is None
    for i in range(64):  # other datagrams from the same source
        assert d.add(frag(datagram(100, ident=1000 + i), 0, 16, True), 1.0) is None
    assert d.add(frs[1], 2.0) is None  # 65 apart: exactly... not more than 64
    for i in range(65):
        d.add(frag(datagram(100, ident=2000 + i), 0, 16, True), 3.0)
    assert d.add(frs[2], 4.0) is None  # 66 apart: the queue started over with this one
    assert d.counters[DropReason.FRAG_TOO_FAR] == 2
    assert d.add(frs[0], 5.0) is None and d.add(frs[1], 5.0) is not None
    q = d.queues.get((A, B, 1, 17, 0, 0))
    assert q is None  # reassembled
    d2 = Defrag(max_dist=0)  # off
    d2.add(frs[0], 0.0)
    for i in range(500):
        d2.add(frag(datagram(100, ident=1000 + i), 0, 16, True), 1.0)
    d2.add(frs[1], 2.0)
    assert isinstance(d2.add(frs[2], 2.0), Reassembled)


def test_users_and_vifs_are_separate_queues() -> None:
    frs = fragments(datagram(3000), 1500)
    d = Defrag()
    ct = nf_ct_defrag_user(5, True)
    assert ct == IP_DEFRAG_CONNTRACK_IN + 5 and nf_ct_defrag_user(5, False) == IP_DEFRAG_CONNTRACK_OUT + 5
    feed(d, frs[:2], user=ct)
    feed(d, frs[:2], user=IP_DEFRAG_LOCAL_DELIVER)
    feed(d, frs[:2], user=ct, vif=7)
    assert len(d.queues) == 3
    assert isinstance(d.add(frs[2], 0.0, user=ct), Reassembled)
    assert len(d.queues) == 2
    assert frag_expire_skip_icmp(ct) and frag_expire_skip_icmp(IP_DEFRAG_AF_PACKET)
    assert not frag_expire_skip_icmp(IP_DEFRAG_LOCAL_DELIVER) and not frag_expire_skip_icmp(
        nf_ct_defrag_user(0, False))


def test_fragment_with_bad_header_is_a_drop() -> None:
    f = fragments(datagram(3000), 1500)[0]
    f[10] ^= 1
    d = Defrag()
    assert d.add(f, 0.0) is DropReason.IP_CSUM
    assert_empty(d)


def test_fragment_header_fields() -> None:
    frs = fragments(datagram(3000, ident=0xBEEF), 1500)
    offs = [struct.unpack_from("!H", f, 6)[0] for f in frs]
    assert offs == [IP_MF | 0, IP_MF | 185, 370]
    assert all(struct.unpack_from("!H", f, 4)[0] == 0xBEEF for f in frs)
