"""TCP/UDP/ICMP parsing, checksums and NAT rewrites, with dpkt as the oracle."""

from __future__ import annotations

import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipgate.packet.build import build_icmp, build_ipv4, build_tcp, build_udp, icmp_error_packet
from ipgate.packet.drop import DropReason
from ipgate.packet.ipv4 import IP_MF, IPv4, ip_decrease_ttl, parse_ipv4
from ipgate.packet.l4 import (
    ICMP,
    TCP,
    TCPOPT_MSS,
    TCPOPT_WINDOW,
    TH_SYN,
    UDP,
    IcmpInner,
    icmp_csum_ok,
    icmp_error_inner,
    icmp_send_check,
    icmp_set_id,
    l4_addr_changed,
    parse_icmp,
    parse_tcp,
    parse_udp,
    tcp_csum_ok,
    tcp_find_mss,
    tcp_options,
    tcp_send_check,
    tcp_set_mss,
    tcp_set_port,
    udp_csum_ok,
    udp_send_check,
    udp_set_port,
)
from ipgate.packet.rewrite import NF_NAT_MANIP_DST, NF_NAT_MANIP_SRC, FlowRewrite, nf_nat_ipv4_manip_pkt

from .oracle import addrs, dpkt_ip, dpkt_rebuilt, ip_hdr_ok, l4_ok, ports

A = 0x0A000001
B = 0xC0000202


def zero_icmp(raw: bytes) -> bool:
    """An ICMP message of zeros but for its checksum (an echo reply, id 0, seq 0,
    no data, say after NAT set the id to 0): its true sum is +0, which RFC 1624
    eqn. 3 and the kernel's csum_replace2() write as -0, a checksum the receiver
    then refuses.  The kernel's NAT does the same to it; ipgate mirrors it."""
    if raw[9] != 1:
        return False
    ihl = (raw[0] & 15) * 4
    msg = bytearray(raw[ihl:])
    msg[2:4] = b"\0\0"
    return not any(msg)


def ipv4(buf: bytes | bytearray) -> IPv4:
    ip = parse_ipv4(buf)
    assert isinstance(ip, IPv4), ip
    return ip


@settings(max_examples=300)
@given(dpkt_ip(protos=(6, 17, 1)))
def test_l4_parse_matches_dpkt(raw: bytes) -> None:
    ip = ipv4(raw)
    d = dpkt.ip.IP(raw).data
    if ip.protocol == 6:
        t = parse_tcp(raw, ip)
        assert isinstance(t, TCP)
        assert (t.source, t.dest, t.seq, t.ack_seq, t.flags, t.window, t.check, t.urg_ptr) == \
            (d.sport, d.dport, d.seq, d.ack, d.flags, d.win, d.sum, d.urp)
        assert t.doff == d.off * 4 and t.off == ip.l4off and t.len == ip.tot_len - ip.ihl
        assert bytes(raw[t.off + t.doff:ip.end]) == d.data
        assert tcp_csum_ok(raw, ip)
    elif ip.protocol == 17:
        u = parse_udp(raw, ip)
        assert isinstance(u, UDP)
        assert (u.source, u.dest, u.len, u.check) == (d.sport, d.dport, d.ulen, d.sum)
        assert udp_csum_ok(raw, ip, u)
    else:
        i = parse_icmp(raw, ip)
        assert isinstance(i, ICMP)
        assert (i.type, i.code, i.check) == (d.type, d.code, d.sum)
        assert (i.id, i.sequence) == struct.unpack_from("!HH", raw, ip.l4off + 4)
        assert icmp_csum_ok(raw, ip)
    assert l4_ok(raw)


@settings(max_examples=200)
@given(dpkt_ip(protos=(6, 17, 1)), st.integers(0, 10_000), st.integers(1, 255))
def test_corruption_is_seen_by_csum_ok(raw: bytes, where: int, xor: int) -> None:
    buf = bytearray(raw)
    ip = ipv4(buf)
    n = ip.tot_len - ip.ihl
    pos = ip.l4off + where % n
    if ip.protocol == 17:
        u = parse_udp(buf, ip)
        assert isinstance(u, UDP)
        if u.check == 0:
            return
    buf[pos] ^= xor
    ip = ipv4(buf)
    if ip.protocol == 6:
        assert not tcp_csum_ok(buf, ip)
    elif ip.protocol == 17:
        u = parse_udp(buf, ip)
        if isinstance(u, UDP) and u.check:  # the length itself may have changed
            assert udp_csum_ok(buf, ip, u) == l4_ok(bytes(buf))
    else:
        assert not icmp_csum_ok(buf, ip)


def test_send_check_matches_dpkt() -> None:
    for pkt in (build_tcp(A, B, 1, 2, b"odd"), build_udp(A, B, 1, 2, b"even"), build_icmp(A, B, 8, 0, 7, b"ping")):
        buf = bytearray(pkt)
        ip = ipv4(buf)
        buf[ip.l4off + {6: 16, 17: 6, 1: 2}[ip.protocol]] ^= 0x55
        if ip.protocol == 6:
            tcp_send_check(buf, ip)
        elif ip.protocol == 17:
            udp_send_check(buf, ip)
        else:
            icmp_send_check(buf, ip.l4off, ip.end)
        assert bytes(buf) == bytes(pkt) == dpkt_rebuilt(bytes(pkt))


def test_tcp_drops() -> None:
    ok = build_tcp(A, B, 1, 2)
    ip = ipv4(ok)
    short = build_ipv4(A, B, 6, ok[20:39])
    assert parse_tcp(short, ipv4(short)) is DropReason.HDR_TRUNC
    bad_doff = bytearray(ok)
    bad_doff[32] = 4 << 4
    assert parse_tcp(bad_doff, ip) is DropReason.PKT_TOO_SMALL
    long_doff = bytearray(ok)
    long_doff[32] = 6 << 4
    assert parse_tcp(long_doff, ip) is DropReason.HDR_TRUNC
    later = build_ipv4(A, B, 6, ok[20:], frag_off=5)  # a non-first fragment has no TCP header
    assert parse_tcp(later, ipv4(later)) is DropReason.HDR_TRUNC


def test_udp_drops_and_trim() -> None:
    ok = build_udp(A, B, 1, 2, b"abcd")
    too_long = bytearray(ok)
    struct.pack_into("!H", too_long, 24, 13)
    assert parse_udp(too_long, ipv4(too_long)) is DropReason.PKT_TOO_SMALL
    struct.pack_into("!H", too_long, 24, 7)
    assert parse_udp(too_long, ipv4(too_long)) is DropReason.PKT_TOO_SMALL
    # a UDP length shorter than the IP payload: the rest is trimmed, not a drop
    padded = build_ipv4(A, B, 17, build_udp(A, B, 1, 2, b"abcd")[20:] + b"trailer")
    u = parse_udp(padded, ipv4(padded))
    assert isinstance(u, UDP) and u.len == 12 and udp_csum_ok(padded, ipv4(padded), u)
    # a first fragment holds only the start of the datagram: no length check
    first = build_ipv4(A, B, 17, ok[20:26] + b"\0\0" + b"x" * 8, frag_off=IP_MF)
    assert isinstance(parse_udp(first, ipv4(first)), UDP)
    assert parse_udp(build_ipv4(A, B, 17, b"1234567"), ipv4(build_ipv4(A, B, 17, b"1234567"))) \
        is DropReason.HDR_TRUNC
    assert parse_icmp(build_ipv4(A, B, 1, b"1234567"), ipv4(build_ipv4(A, B, 1, b"1234567"))) \
        is DropReason.HDR_TRUNC


def test_tcp_options_and_mss() -> None:
    opts = b"\x02\x04\x05\xb4\x01\x03\x03\x07\x04\x02\x00\x00"
    pkt = bytearray(build_tcp(A, B, 1, 2, flags=TH_SYN, options=opts))
    ip = ipv4(pkt)
    t = parse_tcp(pkt, ip)
    assert isinstance(t, TCP)
    assert [(k, o - t.off, n) for k, o, n in tcp_options(pkt, t)] == [(2, 20, 4), (3, 25, 3), (4, 28, 2)]
    assert tcp_find_mss(pkt, t) == t.off + 20
    assert tcp_set_mss(pkt, t, t.off + 20, 1400) == 1460
    assert tcp_csum_ok(pkt, ip) and l4_ok(bytes(pkt))
    assert dpkt.tcp.parse_opts(dpkt.ip.IP(bytes(pkt)).data.opts)[0] == (TCPOPT_MSS, b"\x05\x78")


@given(st.integers(0, 3), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=9))
def test_mss_rewrite_at_any_alignment(nops: int, old: int, new: int, payload: bytes) -> None:
    opts = b"\x01" * nops + b"\x02\x04" + struct.pack("!H", old) + b"\x01\x03\x03\x07"
    pkt = bytearray(build_tcp(A, B, 1, 2, payload, flags=TH_SYN, options=opts))
    ip = ipv4(pkt)
    t = parse_tcp(pkt, ip)
    assert isinstance(t, TCP)
    o = tcp_find_mss(pkt, t)
    assert o == t.off + 20 + nops
    assert tcp_set_mss(pkt, t, o, new) == old
    assert tcp_csum_ok(pkt, ip) and l4_ok(bytes(pkt))


def test_mss_walk_is_xt_tcpmss() -> None:
    # xt_TCPMSS steps one byte over EOL and zero lengths, and wants length 4
    for opts, found in ((b"\x00\x02\x04\x05\xb4", 1), (b"\x02\x03\x05\x02\x04\x05\xb4", 3),
                        (b"\x03\x00\x02\x04\x05\xb4", 2), (b"\x08\x0a" + bytes(8) + b"\x02\x04\x05\xb4", 10),
                        (b"\x02\x05\x05\xb4\x00", -1)):
        pkt = build_tcp(A, B, 1, 2, options=opts)
        t = parse_tcp(pkt, ipv4(pkt))
        assert isinstance(t, TCP)
        r = tcp_find_mss(pkt, t)
        assert (r - t.off - 20 if r >= 0 else -1) == found, opts
    pkt = build_tcp(A, B, 1, 2, options=b"\x01\x03\x03\x07\x00\x02\x04\x05\xb4")
    t = parse_tcp(pkt, ipv4(pkt))
    assert isinstance(t, TCP)
    assert [k for k, _o, _n in tcp_options(pkt, t)] == [TCPOPT_WINDOW]  # stops at EOL


@settings(max_examples=300)
@given(dpkt_ip(protos=(6, 17, 1)), st.sampled_from([NF_NAT_MANIP_SRC, NF_NAT_MANIP_DST]), addrs, ports)
def test_nf_nat_manip_matches_dpkt(raw: bytes, manip: int, addr: int, port: int) -> None:
    buf = bytearray(raw)
    ip = ipv4(buf)
    before = parse_icmp(buf, ip) if ip.protocol == 1 else None
    assert nf_nat_ipv4_manip_pkt(buf, 0, ip.end, manip, addr, port)
    out = bytes(buf)
    if zero_icmp(out):
        return
    assert ip_hdr_ok(out) and l4_ok(out)
    d = dpkt.ip.IP(out)
    src = manip == NF_NAT_MANIP_SRC
    assert int.from_bytes(d.src if src else d.dst, "big") == addr
    assert int.from_bytes(d.dst if src else d.src, "big") == (ip.daddr if src else ip.saddr)
    if ip.protocol in (6, 17):
        assert (d.data.sport if src else d.data.dport) == port
    elif isinstance(before, ICMP):
        assert struct.unpack_from("!H", out, ip.l4off + 4)[0] == port  # a query: the id, whatever the manip
    udp_no_csum = ip.protocol == 17 and before is None and parse_udp(raw, ip).check == 0  # type: ignore[union-attr]
    if udp_no_csum:
        assert d.data.sum == 0
    else:
        assert out == dpkt_rebuilt(out)  # as dpkt would checksum it


def test_udp_checksum_that_becomes_zero_is_sent_as_ffff() -> None:
    pkt = bytearray(build_udp(A, B, 1000, 53, b"query"))
    ip = ipv4(pkt)
    u = parse_udp(pkt, ip)
    assert isinstance(u, UDP)
    s = ~u.check & 0xFFFF  # the sum the check complements
    # the source port that makes the sum 0xFFFF, i.e. the computed checksum 0
    newport = (u.source + (0xFFFF - s)) % 0xFFFF
    assert nf_nat_ipv4_manip_pkt(pkt, 0, ip.end, NF_NAT_MANIP_SRC, A, newport)
    assert struct.unpack_from("!H", pkt, 26)[0] == 0xFFFF
    assert l4_ok(bytes(pkt))
    pkt2 = bytearray(build_udp(A, B, 1000, 53, b"query"))
    assert udp_set_port(pkt2, 20, 0, newport) == 1000
    assert struct.unpack_from("!H", pkt2, 26)[0] == 0xFFFF


def test_udp_without_checksum_stays_without() -> None:
    pkt = bytearray(build_udp(A, B, 1000, 53, b"query", csum=False))
    ip = ipv4(pkt)
    assert nf_nat_ipv4_manip_pkt(pkt, 0, ip.end, NF_NAT_MANIP_DST, B + 1, 5353)
    assert struct.unpack_from("!H", pkt, 26)[0] == 0
    l4_addr_changed(pkt, 17, 20, B + 1, B + 2)
    assert struct.unpack_from("!H", pkt, 26)[0] == 0


def test_field_rewriters() -> None:
    pkt = bytearray(build_tcp(A, B, 1, 2, b"data"))
    assert tcp_set_port(pkt, 20, 2, 8080) == 2
    assert l4_ok(bytes(pkt))
    pkt = bytearray(build_icmp(A, B, 8, 0, 0x1234_0001, b"ping"))
    assert icmp_set_id(pkt, 20, 0x4321) == 0x1234
    assert l4_ok(bytes(pkt)) and dpkt.ip.IP(bytes(pkt)).data.data.id == 0x4321


def test_manip_leaves_icmp_errors_alone_and_refuses_short() -> None:
    orig = build_tcp(A, B, 1234, 80, b"x" * 40)
    err = bytearray(icmp_error_packet(orig, 3, 3, 0, B) or b"")
    before = bytes(err[20:])
    ip = ipv4(err)
    assert nf_nat_ipv4_manip_pkt(err, 0, ip.end, NF_NAT_MANIP_DST, A + 5, 999)
    assert bytes(err[20:]) == before and ip_hdr_ok(bytes(err))  # only the address changed
    garbage = bytearray(b"\x43" + bytes(39))
    assert not nf_nat_ipv4_manip_pkt(garbage, 0, 40, NF_NAT_MANIP_SRC, 1, 1) and not any(garbage[1:])
    short = bytearray(build_ipv4(A, B, 6, b"1234567"))
    assert not nf_nat_ipv4_manip_pkt(short, 0, len(short), NF_NAT_MANIP_SRC, 1, 1)
    assert not nf_nat_ipv4_manip_pkt(short, 0, 19, NF_NAT_MANIP_SRC, 1, 1)
    gre = bytearray(build_ipv4(A, B, 47, b"\0\0\x08\0"))
    assert nf_nat_ipv4_manip_pkt(gre, 0, len(gre), NF_NAT_MANIP_SRC, 7, 1)
    assert ipv4(gre).saddr == 7


@settings(max_examples=300)
@given(dpkt_ip(protos=(6, 17, 1)), addrs, addrs, ports, ports, st.booleans())
def test_flow_rewrite_equals_manip(raw: bytes, nsa: int, nda: int, nsp: int, ndp: int, dec_ttl: bool) -> None:
    ip = ipv4(raw)
    if ip.protocol == 1:
        i = parse_icmp(raw, ip)
        assert isinstance(i, ICMP)
        old = (ip.saddr, ip.daddr, i.id, 0)
    else:
        sp, dp = struct.unpack_from("!HH", raw, ip.l4off)
        old = (ip.saddr, ip.daddr, sp, dp)
    fast = bytearray(raw)
    FlowRewrite(ip.protocol, old, (nsa, nda, nsp, ndp), dec_ttl=dec_ttl).apply(fast, ip)
    slow = bytearray(raw)
    assert nf_nat_ipv4_manip_pkt(slow, 0, ip.end, NF_NAT_MANIP_SRC, nsa, nsp)
    assert nf_nat_ipv4_manip_pkt(slow, 0, ip.end, NF_NAT_MANIP_DST, nda, ndp if ip.protocol != 1 else nsp)
    if dec_ttl:
        ip_decrease_ttl(slow, 0)
    if zero_icmp(bytes(fast)):
        return
    assert ip_hdr_ok(bytes(fast)) and l4_ok(bytes(fast))
    # the same packet; checksums may differ only as +0/-0
    f, s = ipv4(fast), ipv4(slow)
    assert f._replace(check=0) == s._replace(check=0) and f.check % 0xFFFF == s.check % 0xFFFF
    ck = {6: 16, 17: 6, 1: 2}[ip.protocol] + ip.l4off
    assert fast[:ck] == slow[:ck] and fast[ck + 2:] == slow[ck + 2:]


def test_flow_rewrite_with_ip_options() -> None:
    pkt = build_tcp(A, B, 1, 2, b"data", ip_options=b"\x94\x04\x00\x00")
    ip = ipv4(pkt)
    buf = bytearray(pkt)
    FlowRewrite(6, (A, B, 1, 2), (A + 1, B, 40000, 2)).apply(buf, ip)
    assert ip_hdr_ok(bytes(buf)) and l4_ok(bytes(buf))
    assert struct.unpack_from("!H", buf, 24)[0] == 40000
    gre = build_ipv4(A, B, 47, b"\0\0\x08\0")
    buf = bytearray(gre)
    FlowRewrite(47, (A, B, 0, 0), (A + 9, B, 0, 0)).apply(buf, ipv4(gre))
    assert ip_hdr_ok(bytes(buf)) and ipv4(buf).saddr == A + 9 and buf[20:] == gre[20:]


# -- ICMP errors: the quoted packet ----------------------------------------------------------

@pytest.mark.parametrize("inner", [
    build_tcp(A, B, 1234, 80, b"x" * 100),
    build_udp(A, B, 5353, 53, b"q" * 10),
    build_icmp(A, B, 8, 0, 0x77770001, b"ping"),
    build_tcp(A, B, 1234, 80, ip_options=b"\x94\x04\x00\x00"),
])
def test_icmp_error_inner(inner: bytes) -> None:
    err = icmp_error_packet(inner, 3, 4, 1400, 0x0A0000FE)
    assert err is not None
    ip = ipv4(err)
    i = parse_icmp(err, ip)
    assert isinstance(i, ICMP) and (i.type, i.code, i.un) == (3, 4, 1400)
    q = icmp_error_inner(err, ip, i)
    assert isinstance(q, IcmpInner)
    orig = ipv4(inner)
    assert q.ip._replace(off=0, opts=orig.opts) == orig
    assert q.l4off == 28 + orig.ihl and q.l4len == 8
    if orig.protocol == 1:
        assert (q.sport, q.dport) == (0x7777, 8 << 8)
    else:
        assert (q.sport, q.dport) == struct.unpack_from("!HH", inner, orig.ihl)
    d = dpkt.ip.IP(bytes(err))
    assert isinstance(d.data, dpkt.icmp.ICMP) and d.data.type == 3


def test_icmp_error_inner_translation_like_nf_nat() -> None:
    """What nf_nat_icmp_reply_translation() does: rewrite the quoted packet and
    recompute the ICMP checksum; the quoted TCP header is whole here."""
    inner = build_tcp(0xC6336401, B, 40000, 80, b"y" * 60)
    err = bytearray(icmp_error_packet(inner, 3, 1, 0, B) or b"")
    ip = ipv4(err)
    i = parse_icmp(err, ip)
    assert isinstance(i, ICMP)
    q = icmp_error_inner(err, ip, i)
    assert isinstance(q, IcmpInner)
    assert nf_nat_ipv4_manip_pkt(err, q.ip.off, ip.end, NF_NAT_MANIP_SRC, A, 1234)
    icmp_send_check(err, i.off, ip.end)
    assert nf_nat_ipv4_manip_pkt(err, 0, ip.end, NF_NAT_MANIP_DST, A, 0)
    assert ip_hdr_ok(bytes(err)) and l4_ok(bytes(err))
    assert ip_hdr_ok(bytes(err), q.ip.off)
    # the quoted TCP checksum still matches its pseudo-header and data (all quoted)
    assert l4_ok(bytes(err[q.ip.off:]))
    assert bytes(err[q.ip.off:]) == bytes(build_tcp(A, B, 1234, 80, b"y" * 60))


def test_icmp_error_inner_short_tcp_gets_ports_only() -> None:
    inner = build_tcp(0xC6336401, B, 40000, 80, b"y" * 60)
    err = bytearray(icmp_error_packet(inner, 3, 1, 0, B, mtu=68) or b"")  # quotes 20 + 20 bytes
    ip = ipv4(err)
    assert ip.tot_len == 68
    err2 = bytearray(build_icmp(B, A, 3, 1, 0, inner[:28]))  # IP header + 8 bytes
    ip2 = ipv4(err2)
    assert nf_nat_ipv4_manip_pkt(err2, 28, ip2.end, NF_NAT_MANIP_SRC, A, 1234)
    assert err2[48:50] == b"\x04\xd2" and err2[28 + 20:] != inner[20:28]


@pytest.mark.parametrize(("payload", "reason"), [
    (b"", DropReason.HDR_TRUNC),
    (build_tcp(A, B, 1, 2)[:19], DropReason.HDR_TRUNC),
    (build_tcp(A, B, 1, 2)[:23], DropReason.HDR_TRUNC),  # no whole ports
    (build_icmp(A, B, 8, 0, 1)[:27], DropReason.HDR_TRUNC),  # ICMP needs 8
    (b"\x65" + build_tcp(A, B, 1, 2)[1:28], DropReason.IP_INHDR),
    (b"\x4f" + build_tcp(A, B, 1, 2)[1:40], DropReason.HDR_TRUNC),  # IHL 15, 40 bytes quoted
    (build_tcp(A, B, 1, 2, frag_off=3)[:28], DropReason.INVALID_PROTO),
])
def test_icmp_error_inner_refusals(payload: bytes, reason: DropReason) -> None:
    err = build_icmp(B, A, 11, 0, 0, payload)
    ip = ipv4(err)
    i = parse_icmp(err, ip)
    assert isinstance(i, ICMP)
    assert icmp_error_inner(err, ip, i) is reason


def test_icmp_error_inner_not_an_error() -> None:
    echo = build_icmp(A, B, 8, 0, 1, b"x" * 40)
    ip = ipv4(echo)
    i = parse_icmp(echo, ip)
    assert isinstance(i, ICMP)
    assert icmp_error_inner(echo, ip, i) is DropReason.INVALID_PROTO
    gre = build_icmp(B, A, 3, 2, 0, build_ipv4(A, B, 47, b"\0\0\x08\0")[:22])
    ip = ipv4(gre)
    i = parse_icmp(gre, ip)
    assert isinstance(i, ICMP)
    q = icmp_error_inner(gre, ip, i)
    assert isinstance(q, IcmpInner) and (q.sport, q.dport, q.l4len) == (0, 0, 2)
