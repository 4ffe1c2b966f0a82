"""IPv4 header parsing and rewrites, with dpkt as the oracle."""

from __future__ import annotations

import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipgate.packet.build import build_ipv4
from ipgate.packet.checksum import ip_compute_csum
from ipgate.packet.drop import Counters, DropReason, Mib
from ipgate.packet.ipv4 import (
    IP_DF,
    IP_MF,
    IpOptions,
    IPv4,
    ip_decrease_ttl,
    ip_options_compile,
    ip_options_fragment,
    ip_send_check,
    ip_set_daddr,
    ip_set_frag_off,
    ip_set_saddr,
    ip_set_tot_len,
    ip_set_ttl,
    ipv4_change_dsfield,
    parse_ipv4,
)

from .oracle import a2i, addrs, dpkt_ip, ip_hdr_ok

A = 0x0A000001
B = 0xC0000202


def parsed(buf: bytes | bytearray, off: int = 0) -> IPv4:
    ip = parse_ipv4(buf, off)
    assert isinstance(ip, IPv4), ip
    return ip


@settings(max_examples=300)
@given(dpkt_ip(), st.integers(0, 40), st.binary(max_size=30))
def test_parse_matches_dpkt(raw: bytes, off: int, padding: bytes) -> None:
    buf = bytes(off) + raw + padding  # a link header before, padding after
    ip = parsed(buf, off)
    d = dpkt.ip.IP(raw)
    assert (ip.ver_ihl >> 4, ip.ihl) == (d.v, d.hl * 4)
    assert (ip.tos, ip.tot_len, ip.id, ip.ttl, ip.protocol, ip.check) == (d.tos, d.len, d.id, d.ttl, d.p, d.sum)
    assert ip.frag_off == d._flags_offset
    assert (ip.saddr, ip.daddr) == (a2i(d.src), a2i(d.dst))
    assert ip.off == off and ip.l4off == off + d.hl * 4 and ip.end == off + len(raw)
    assert (ip.opts is None) == (d.hl == 5)
    if ip.opts is not None:
        assert ip.opts.optlen == len(d.opts)
    # the same through a memoryview and a bytearray
    assert parse_ipv4(memoryview(buf), off) == ip == parse_ipv4(bytearray(buf), off)


def test_option_offsets_recorded() -> None:
    opts = (b"\x07\x07\x04\x00\x00\x00\x00"  # RR at 20
            + b"\x83\x07\x04\xc0\x00\x02\x01"  # LSRR at 27
            + b"\x44\x0c\x05\x01" + bytes(8)  # TS at 34, address and time
            + b"\x94\x04\x00\x00")  # RA at 46
    ip = parsed(build_ipv4(A, B, 17, b"x" * 8, options=opts))
    assert ip.opts == IpOptions(optlen=32, srr=27, is_strictroute=False, rr=20, rr_needaddr=True, ts=34,
                                ts_needtime=True, ts_needaddr=True, router_alert=46, cipso=0)
    ip = parsed(build_ipv4(A, B, 17, options=b"\x89\x07\x08\xc0\x00\x02\x01"))  # SSRR used up
    assert ip.opts is not None and ip.opts.srr == 20 and ip.opts.is_strictroute
    ip = parsed(build_ipv4(A, B, 17, options=b"\x07\x07\x08\x01\x02\x03\x04"))  # RR full
    assert ip.opts is not None and ip.opts.rr == 20 and not ip.opts.rr_needaddr


def hdr(vihl: int = 0x45, tot_len: int | None = None, extra: bytes = b"", options: bytes = b"",
        csum: bool = True) -> bytearray:
    ihl = 20 + len(options)
    b = bytearray(struct.pack("!BBHHHBBHII", vihl, 0, ihl + len(extra) if tot_len is None else tot_len, 1, 0,
                              64, 17, 0, A, B) + options + extra)
    if csum:
        ip_send_check(b) if (vihl & 15) * 4 <= len(b) and vihl & 15 >= 5 else None
    return b


@pytest.mark.parametrize(("buf", "reason"), [
    (b"", DropReason.IP_INHDR),
    (bytes(19), DropReason.IP_INHDR),
    (hdr(0x65), DropReason.IP_INHDR),  # version 6
    (hdr(0x44), DropReason.IP_INHDR),  # IHL 4
    (hdr(0x46)[:20], DropReason.IP_INHDR),  # IHL 6 in 20 bytes
    (hdr(csum=False), DropReason.IP_CSUM),
    (hdr(tot_len=21), DropReason.PKT_TOO_SMALL),
    (hdr(tot_len=19), DropReason.IP_INHDR),
    (hdr(0x46, tot_len=20, options=b"\x01\x01\x01\x01"), DropReason.IP_INHDR),  # tot_len < ihl
])
def test_ip_rcv_core_drops(buf: bytes, reason: DropReason) -> None:
    assert parse_ipv4(buf) is reason


def test_trailing_bytes_are_not_the_packet() -> None:
    b = hdr(extra=b"abcd") + b"PADDING"
    ip = parsed(b)
    assert ip.tot_len == 24 and ip.end == 24


def test_negative_offset_is_a_drop() -> None:
    assert parse_ipv4(hdr(), -1) is DropReason.IP_INHDR


# (options, pointer of the parameter problem: offset from the header start)
BAD_OPTIONS = [
    (b"\x07", 20),  # no room for the length
    (b"\x07\x01\x00\x00", 20),  # length < 2
    (b"\x07\x09\x04\x00\x00\x00\x00\x00", 20),  # length past the options
    (b"\x07\x02\x00\x00", 21),  # RR length 2
    (b"\x07\x07\x03\x00\x00\x00\x00\x00", 22),  # RR pointer < 4
    (b"\x07\x06\x04\x00\x00\x00\x00\x00", 22),  # RR pointer leaves no whole address
    (b"\x07\x03\x04\x07\x03\x04\x00\x00", 23),  # two RR
    (b"\x83\x02\x01\x00", 21),  # LSRR length 2
    (b"\x83\x03\x03\x00", 22),  # LSRR pointer < 4
    (b"\x83\x03\x04\x89\x03\x04\x00\x00", 23),  # two source routes
    (b"\x44\x03\x05\x00", 21),  # TS length < 4
    (b"\x44\x08\x04\x00\x00\x00\x00\x00", 22),  # TS pointer < 5
    (b"\x44\x06\x05\x00\x00\x00\x00\x00", 22),  # TS pointer + 3 past the length
    (b"\x44\x08\x05\x01\x00\x00\x00\x00", 22),  # TS address+time needs 8
    (b"\x44\x04\x05\xf0", 23),  # TS full with overflow 15
    (b"\x44\x04\x05\x00\x44\x04\x05\x00", 24),  # two TS
    (b"\x94\x03\x00\x00", 21),  # RA length 3
    (b"\x86\x07\x00\x00\x00\x01\x00\x00", 21),  # CIPSO length < 8
    (b"\x86\x08\x00\x00\x00\x00\x00\x00", 22),  # CIPSO DOI 0
]


@pytest.mark.parametrize(("opts", "pointer"), BAD_OPTIONS)
def test_ip_options_compile_errors(opts: bytes, pointer: int) -> None:
    pkt = build_ipv4(A, B, 17, b"12345678", options=opts)
    assert ip_options_compile(pkt, 0, (pkt[0] & 15) * 4) == pointer
    assert parse_ipv4(pkt) is DropReason.IP_INHDR
    c = Counters()
    c.drop(DropReason.IP_INHDR)
    assert c[Mib.INHDRERRORS] == 1 and c[DropReason.IP_INHDR] == 1


def test_ip_options_compile_accepts() -> None:
    for opts in (b"\x01" * 40, b"\x00" + b"\x07" * 39, b"\x44\x04\x05\x10",  # TS full, overflow 1
                 b"\x82\x0b" + bytes(9), b"\x88\x04\x00\x01",  # SEC, SID
                 b"\x86\x0a\x00\x00\x00\x01\x05\x04\x00\x00", b"\x19\x02"):  # CIPSO with a tag, unknown
        pkt = build_ipv4(A, B, 17, options=opts)
        assert isinstance(ip_options_compile(pkt, 0, (pkt[0] & 15) * 4), IpOptions), opts


def test_ip_options_fragment() -> None:
    opts = b"\x07\x07\x04\x00\x00\x00\x00" + b"\x83\x07\x04\xc0\x00\x02\x01" + b"\x44\x08\x05\x00\x00\x00\x00\x00"
    pkt = build_ipv4(A, B, 17, options=opts)
    ip_options_fragment(pkt)
    # RR and TS (not copied) become NOOPs; LSRR (copied) stays; the length does not change.
    assert pkt[20:27] == b"\x01" * 7 and pkt[27:34] == opts[7:14] and pkt[34:42] == b"\x01" * 8
    assert (pkt[0] & 15) * 4 == 20 + len(opts) + 2


@st.composite
def header_and_buf(draw: st.DrawFn) -> bytearray:
    return bytearray(draw(dpkt_ip()))


@settings(max_examples=300)
@given(header_and_buf(), addrs, addrs, st.integers(0, 255), st.integers(0, 255), st.integers(0, 255),
       st.integers(0, 0xFFFF))
def test_rewrites_keep_the_header_checksum(buf: bytearray, sa: int, da: int, ttl: int, mask: int, val: int,
                                           word: int) -> None:
    def check() -> None:
        assert ip_hdr_ok(bytes(buf))
        ip = parsed(buf)
        full = bytearray(buf)
        ip_send_check(full)
        assert full == buf or ip.check in (0, 0xFFFF)  # +0/-0 aside, the same as recomputing

    old = parsed(buf)
    assert ip_set_saddr(buf, 0, sa) == old.saddr
    check()
    assert ip_set_daddr(buf, 0, da) == old.daddr
    check()
    before = buf[8]
    assert ip_decrease_ttl(buf, 0) == before - 1
    check()
    ip_set_ttl(buf, 0, ttl)
    check()
    ipv4_change_dsfield(buf, 0, mask, val)
    assert buf[1] == (old.tos & mask | val) & 0xFF
    check()
    ip_set_frag_off(buf, 0, word & ~(IP_MF | 0x1FFF) | IP_DF)
    check()
    ip_set_tot_len(buf, 0, old.tot_len)  # a no-op rewrite
    check()
    ip = parsed(buf)
    assert (ip.saddr, ip.daddr, ip.ttl) == (sa, da, ttl)


def test_decrease_ttl_every_value_and_checksum() -> None:
    for target in (0x0000, 0x00FF, 0x0100, 0xFEFF, 0xFF00, 0xFFFE, 0x1234):
        for ttl in range(1, 256):
            b = hdr()
            b[8] = ttl
            # pick the id so that the header checksum comes out as `target`
            b[4:6] = b[10:12] = b"\0\0"
            s0 = ~ip_compute_csum(b) & 0xFFFF
            struct.pack_into("!H", b, 4, ((~target & 0xFFFF) - s0) % 0xFFFF)
            ip_send_check(b)
            ip_decrease_ttl(b, 0)
            assert b[8] == ttl - 1
            assert dpkt.in_cksum(bytes(b[:20])) == 0
            full = bytearray(b)
            ip_send_check(full)
            assert full == b
