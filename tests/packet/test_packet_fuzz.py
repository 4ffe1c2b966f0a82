"""Random and mutated packets through every codec: nothing raises, every drop
has a reason, and what the rewrites touch stays well-formed.

    IPGATE_FUZZ_N=5000000 pytest tests/packet/test_packet_fuzz.py   # longer run
    IPGATE_FUZZ_SEED=7 ...                                            # another sequence

CI runs 200,000 packets (a few seconds per 100,000 here).
"""

from __future__ import annotations

import os
import random
import struct
import time

from ipgate.packet.build import build_icmp, build_tcp, build_udp, icmp_error_packet
from ipgate.packet.checksum import ip_compute_csum
from ipgate.packet.drop import Counters, DropReason, Mib
from ipgate.packet.frag import Defrag, Expired, FragNeeded, Reassembled, ip_fragment
from ipgate.packet.ipv4 import (
    IP_MF,
    IPv4,
    ip_decrease_ttl,
    ip_is_fragment,
    ipv4_change_dsfield,
    parse_ipv4,
)
from ipgate.packet.l4 import (
    ICMP,
    TCP,
    UDP,
    IcmpInner,
    icmp_csum_ok,
    icmp_error_inner,
    parse_icmp,
    parse_tcp,
    parse_udp,
    tcp_csum_ok,
    tcp_find_mss,
    tcp_options,
    tcp_set_mss,
    udp_csum_ok,
)
from ipgate.packet.rewrite import NF_NAT_MANIP_DST, NF_NAT_MANIP_SRC, FlowRewrite, nf_nat_ipv4_manip_pkt

N = int(os.environ.get("IPGATE_FUZZ_N", "200000"))
SEED = int(os.environ.get("IPGATE_FUZZ_SEED", "20240601"))

IP_OPTS = [b"", b"", b"", b"\x94\x04\x00\x00", b"\x07\x07\x04\x00\x00\x00\x00",
           b"\x44\x0c\x05\x01" + bytes(8), b"\x83\x07\x04\xc0\x00\x02\x01", b"\x01\x01\x00"]


def seeds(rng: random.Random) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(40):
        sa, da = rng.getrandbits(32), rng.getrandbits(32)
        sp, dp = rng.getrandbits(16), rng.getrandbits(16)
        pl = rng.randbytes(rng.choice((0, 1, 7, 60, 600)))
        o = rng.choice(IP_OPTS)
        tcp = build_tcp(sa, da, sp, dp, pl, flags=rng.getrandbits(9), ip_options=o,
                        options=rng.choice((b"", b"\x02\x04\x05\xb4", b"\x01\x02\x04\x05\xb4\x03\x03\x07")))
        udp = build_udp(sa, da, sp, dp, pl, csum=rng.random() < 0.8, ip_options=o)
        icmp = build_icmp(sa, da, rng.choice((0, 8, 13, 3, 11, 12, 5, 200)), rng.getrandbits(4),
                          rng.getrandbits(32), pl, ip_options=o)
        out += [bytes(tcp), bytes(udp), bytes(icmp)]
        for orig in (tcp, udp, icmp):
            e = icmp_error_packet(orig, rng.choice((3, 11, 12)), rng.getrandbits(3), 0, da)
            if e is not None:
                out.append(bytes(e))
        big = build_udp(sa, da, sp, dp, rng.randbytes(3000), id=rng.getrandbits(16))
        frs = ip_fragment(big, rng.choice((576, 1000, 1500)))
        assert isinstance(frs, list)
        out += [bytes(f) for f in frs]
    return out


def fix_ip_csum(b: bytearray, off: int) -> None:
    if len(b) >= off + 20:
        ihl = (b[off] & 15) * 4
        if 20 <= ihl <= len(b) - off:
            b[off + 10:off + 12] = b"\0\0"
            struct.pack_into("!H", b, off + 10, ip_compute_csum(b[off:off + ihl]))


def mutate(rng: random.Random, corpus: list[bytes]) -> tuple[bytearray, int]:
    r = rng.random()
    if r < 0.08:
        return bytearray(rng.randbytes(rng.randrange(0, 90))), 0
    b = bytearray(rng.choice(corpus))
    off = 0
    if r < 0.2:
        return b, 0  # as built: valid packets and fragments must get through
    if rng.random() < 0.1:  # a link header in front
        off = rng.choice((2, 14, 18))
        b[:0] = rng.randbytes(off)
    n = rng.randrange(1, 5)
    for _ in range(n):
        k = rng.random()
        if not b:
            break
        if k < 0.35:
            b[rng.randrange(len(b))] = rng.getrandbits(8)
        elif k < 0.45:
            del b[rng.randrange(len(b) + 1):]
        elif k < 0.55:
            b += rng.randbytes(rng.randrange(1, 30))
        elif k < 0.9 and len(b) >= off + 20:  # header fields that steer the parsers
            field = rng.choice(("ihl", "len", "frag", "proto", "l4"))
            if field == "ihl":
                b[off] = 0x40 | rng.randrange(16)
            elif field == "len":
                struct.pack_into("!H", b, off + 2, rng.choice((0, 19, 20, 28, len(b) - off, len(b) - off + 1,
                                                               rng.getrandbits(16))))
            elif field == "frag":
                struct.pack_into("!H", b, off + 6, rng.choice((IP_MF, 1, IP_MF | 1, 0x1FFF, rng.getrandbits(16))))
            elif field == "proto":
                b[off + 9] = rng.choice((1, 6, 17, 47, rng.getrandbits(8)))
            else:
                ihl = (b[off] & 15) * 4
                p = off + ihl + rng.randrange(0, 30)
                if p < len(b):
                    b[p] = rng.getrandbits(8)
        else:
            i = rng.randrange(len(b))
            b[i:i + 2] = b"\0\0"
    if rng.random() < 0.75:
        fix_ip_csum(b, off)  # let most get past the header checksum
    return b, off


def check_l4(b: bytearray, ip: IPv4, rng: random.Random, drops: Counters) -> None:
    proto = ip.protocol
    if proto == 6:
        t = parse_tcp(b, ip)
        if isinstance(t, DropReason):
            drops.inc(t)
            return
        assert isinstance(t, TCP) and 20 <= t.doff <= t.len and t.off == ip.l4off
        for kind, o, size in tcp_options(b, t):
            assert t.off + 20 <= o and o + size <= t.off + t.doff and kind > 1
        m = tcp_find_mss(b, t)
        if m >= 0:
            assert t.off + 20 <= m <= t.off + t.doff - 4
            was = tcp_csum_ok(b, ip)
            tcp_set_mss(b, t, m, rng.getrandbits(16))
            assert tcp_csum_ok(b, ip) == was  # incremental: right stays right, wrong stays wrong
        else:
            tcp_csum_ok(b, ip)
    elif proto == 17:
        u = parse_udp(b, ip)
        if isinstance(u, DropReason):
            drops.inc(u)
            return
        assert isinstance(u, UDP)
        if not ip.frag_off & IP_MF:
            assert 8 <= u.len <= ip.tot_len - ip.ihl
            udp_csum_ok(b, ip, u)
    elif proto == 1:
        i = parse_icmp(b, ip)
        if isinstance(i, DropReason):
            drops.inc(i)
            return
        assert isinstance(i, ICMP)
        icmp_csum_ok(b, ip)
        q = icmp_error_inner(b, ip, i)
        if isinstance(q, DropReason):
            drops.inc(q)
            return
        assert isinstance(q, IcmpInner) and q.ip.off == i.off + 8 and q.l4off + q.l4len <= ip.end
        before = bytes(b[:q.ip.off])
        ok = nf_nat_ipv4_manip_pkt(b, q.ip.off, ip.end, NF_NAT_MANIP_SRC, rng.getrandbits(32), rng.getrandbits(16))
        assert bytes(b[:q.ip.off]) == before  # the outer packet is not touched
        assert ok or q.l4len < 8


def rewrite(b: bytearray, ip: IPv4, rng: random.Random) -> None:
    """The rewrites keep a header that parsed parsing, with the same length."""
    if not ip_is_fragment(ip.frag_off) and ip.protocol in (1, 6, 17) and ip.tot_len - ip.ihl >= 20:
        old = (ip.saddr, ip.daddr, *struct.unpack_from("!HH", b, ip.l4off))
        new = (rng.getrandbits(32), ip.daddr, rng.getrandbits(16), old[3])
        FlowRewrite(ip.protocol, old, new, dec_ttl=ip.ttl > 1).apply(b, ip)
    else:
        nf_nat_ipv4_manip_pkt(b, ip.off, ip.end, rng.choice((NF_NAT_MANIP_SRC, NF_NAT_MANIP_DST)),
                              rng.getrandbits(32), rng.getrandbits(16))
    if b[ip.off + 8] > 1:
        ip_decrease_ttl(b, ip.off)
    ipv4_change_dsfield(b, ip.off, rng.getrandbits(8), rng.getrandbits(8))
    again = parse_ipv4(b, ip.off)
    assert isinstance(again, IPv4), again
    assert (again.ihl, again.tot_len, again.protocol) == (ip.ihl, ip.tot_len, ip.protocol)


def test_fuzz() -> None:
    rng = random.Random(SEED)
    corpus = seeds(rng)
    drops = Counters()
    defrag = Defrag(timeout=2.0)
    now = 0.0
    t0 = time.perf_counter()
    parsed = reassembled = fragmented = errors = 0
    for n in range(N):
        b, off = mutate(rng, corpus)
        ip = parse_ipv4(b, off)
        if not isinstance(ip, IPv4):
            assert isinstance(ip, DropReason)
            drops.drop(ip)
            continue
        parsed += 1
        assert 20 <= ip.ihl <= ip.tot_len <= len(b) - off and ip.off == off
        if ip_is_fragment(ip.frag_off):
            now += 0.01
            r = defrag.add(b[off:], now, ip=None if off else ip)
            if isinstance(r, DropReason):
                drops.inc(r)
            elif isinstance(r, Reassembled):
                reassembled += 1
                whole = parse_ipv4(r.packet)
                assert isinstance(whole, IPv4) and not ip_is_fragment(whole.frag_off)
            else:
                assert r is None
            if n % 100 == 0:
                for e in defrag.expire(now):
                    assert isinstance(e, Expired)
            continue
        work = bytearray(b)
        check_l4(work, ip, rng, drops)
        rewrite(bytearray(b), ip, rng)
        if n % 7 == 0:
            fr = ip_fragment(b[off:], rng.choice((68, 100, 576, 1500)), ignore_df=rng.random() < 0.5)
            if isinstance(fr, list):
                fragmented += 1
                assert all(isinstance(parse_ipv4(f), IPv4) for f in fr)
            else:
                assert isinstance(fr, (FragNeeded, DropReason))
        if n % 5 == 0:
            e = icmp_error_packet(b[off:], rng.choice((3, 11, 12)), rng.getrandbits(4), rng.getrandbits(32),
                                  rng.getrandbits(32), mtu=rng.choice((68, 576, 1500)))
            if e is not None:
                errors += 1
                assert len(e) <= 576 and isinstance(parse_ipv4(e), IPv4)
    defrag.expire(now + 100.0)
    assert not defrag.queues and defrag.mem == 0
    for key in list(drops) + list(defrag.counters):
        assert isinstance(key, (DropReason, Mib))
    secs = time.perf_counter() - t0
    print(f"\n{N} packets in {secs:.1f}s: {parsed} parsed, {reassembled} reassembled, {fragmented} fragmented, "
          f"{errors} ICMP errors; drops {drops.as_dict()}; defrag {defrag.counters.as_dict()}")
    assert parsed > N // 3 and reassembled > 0 and errors > 0
