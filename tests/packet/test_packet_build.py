"""Builders and __icmp_send()'s rules, checked with dpkt."""

from __future__ import annotations

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipgate.packet.build import (
    INADDR_DUMMY,
    build_icmp,
    build_ipv4,
    build_tcp,
    build_udp,
    icmp_error_packet,
)
from ipgate.packet.ipv4 import IP_DF, IP_MF, IPv4, parse_ipv4

from .oracle import a2i, addrs, ip_hdr_ok, l4_ok, ports

A = 0x0A000001
B = 0xC0000202
R = 0x0A0000FE  # the router


@given(addrs, addrs, ports, ports, st.binary(max_size=300), st.integers(0, 0x1FF), st.integers(0, 255))
def test_builders_agree_with_dpkt(sa: int, da: int, sp: int, dp: int, payload: bytes, flags: int, tos: int) -> None:
    t = build_tcp(sa, da, sp, dp, payload, seq=7, ack_seq=9, flags=flags, tos=tos, options=b"\x02\x04\x05\xb4")
    d = dpkt.ip.IP(bytes(t))
    assert (a2i(d.src), a2i(d.dst), d.tos, d.p, d.data.sport, d.data.dport, d.data.flags, d.data.data) == \
        (sa, da, tos, 6, sp, dp, flags, payload)
    u = build_udp(sa, da, sp, dp, payload)
    assert dpkt.ip.IP(bytes(u)).data.data == payload
    i = build_icmp(sa, da, 8, 0, sp << 16 | dp, payload)
    assert (dpkt.ip.IP(bytes(i)).data.data.id, dpkt.ip.IP(bytes(i)).data.data.seq) == (sp, dp)
    for p in (t, u, i):
        assert ip_hdr_ok(bytes(p)) and l4_ok(bytes(p))


def test_build_ipv4_pads_options() -> None:
    p = build_ipv4(A, B, 17, b"x", options=b"\x94\x04\x00\x00\x01")
    assert (p[0] & 15) * 4 == 28 and p[24:28] == b"\x01\0\0\0"
    assert ip_hdr_ok(bytes(p))


def err(orig: bytes, type: int = 11, code: int = 0, info: int = 0, src: int = R, **kw: object) -> bytes | None:
    e = icmp_error_packet(orig, type, code, info, src, **kw)  # type: ignore[arg-type]
    return None if e is None else bytes(e)


def test_time_exceeded_quotes_the_packet() -> None:
    orig = build_udp(A, B, 5000, 33434, b"traceroute", ttl=1, tos=0x28)
    e = err(orig)
    assert e is not None and ip_hdr_ok(e) and l4_ok(e)
    d = dpkt.ip.IP(e)
    assert (a2i(d.src), a2i(d.dst), d.p, d.ttl, d._flags_offset) == (R, A, 1, 64, 0)
    assert d.tos == 0x28 & 0x1E | 0xC0  # RT_TOS(tos) | IPTOS_PREC_INTERNETCONTROL
    assert (d.data.type, d.data.code) == (11, 0)
    assert e[28:] == bytes(orig)  # all of it fits


def test_frag_needed_carries_the_mtu() -> None:
    orig = build_tcp(A, B, 1, 2, b"x" * 1400, frag_off=IP_DF)
    e = err(orig, 3, 4, 1280)
    assert e is not None
    assert e[20:28] == bytes([3, 4]) + e[22:24] + b"\0\0\x05\x00"
    assert l4_ok(e)


def test_576_bytes_at_most() -> None:
    orig = build_tcp(A, B, 1, 2, b"x" * 1400) + b"link padding"
    e = err(orig, 3, 1, 0, mtu=1500)
    assert e is not None and len(e) == 576 and e[28:] == bytes(orig[:548])
    e = err(orig, 3, 1, 0, mtu=300)
    assert e is not None and len(e) == 300
    assert err(orig, 3, 1, 0, mtu=48) is None  # room for 20 bytes: not even a header
    assert err(orig, 3, 1, 0, mtu=49) is not None
    small = build_udp(A, B, 1, 2, b"hi") + b"\0" * 10  # padding is not quoted
    e = err(small)
    assert e is not None and e[28:] == bytes(small[:30])


def test_echo_keeps_tos_and_no_source_gives_dummy() -> None:
    e = err(build_udp(A, B, 1, 2, tos=0xB8), 8, 0, 0, src=0)  # not an error type: TOS kept
    assert e is not None
    d = dpkt.ip.IP(e)
    assert d.tos == 0xB8 and a2i(d.src) == INADDR_DUMMY


@pytest.mark.parametrize(("orig", "kw"), [
    (build_udp(A, B, 1, 2), {"pkt_host": False}),  # link-layer broadcast
    (build_udp(A, B, 1, 2), {"broadcast": True}),  # subnet broadcast by route
    (build_udp(A, 0xE0000001, 1, 2), {}),  # multicast
    (build_udp(A, 0xFFFFFFFF, 1, 2), {}),  # limited broadcast
    (build_udp(A, B, 1, 2, frag_off=IP_MF | 10), {}),  # not the first fragment
    (build_icmp(A, B, 3, 1, 0, bytes(28)), {}),  # about an ICMP error
    (build_icmp(A, B, 11, 0, 0, bytes(28)), {}),
    (build_icmp(A, B, 200, 0, 0, bytes(8)), {}),  # unknown type counts as an error
    (build_ipv4(A, B, 1, b""), {}),  # ICMP type unreadable
    (b"\x45" + bytes(18), {}),  # no whole header
])
def test_no_error_about(orig: bytes, kw: dict[str, bool]) -> None:
    assert err(orig, 3, 3, 0, **kw) is None


def test_errors_about_icmp_queries_are_fine() -> None:
    for t in (0, 8, 13, 14, 15, 16, 17, 18):
        assert err(build_icmp(A, B, t, 0, 0, b"x" * 8), 3, 3) is not None
    # a non-error message about an ICMP error is not an error (e.g. echo, never used so)
    assert err(build_icmp(A, B, 3, 1, 0, bytes(28)), 8, 0) is not None
    # the first fragment may be answered
    assert err(build_udp(A, B, 1, 2, b"x" * 100, frag_off=IP_MF)) is not None


def test_error_is_parseable_by_ipgate() -> None:
    e = err(build_tcp(A, B, 1, 2, b"x" * 2000), 12, 0, 20 << 24)
    assert e is not None
    ip = parse_ipv4(e)
    assert isinstance(ip, IPv4) and ip.tot_len == 576 and e[24] == 20
