"""UDP, ICMP, GRE and generic tracking."""

from __future__ import annotations

import struct

from ipgate.conntrack.conn import (
    IP_CT_ESTABLISHED,
    IP_CT_ESTABLISHED_REPLY,
    IP_CT_NEW,
    IP_CT_RELATED,
    IP_CT_RELATED_REPLY,
    IPS_ASSURED,
    IPS_SEEN_REPLY,
)
from ipgate.conntrack.table import CT_INVALID

from .helpers import A, B, Harness, R
from .pkts import ACK, SYN, icmp, icmp_error, ip, raw, tcp, udp


def test_udp_unreplied_replied_and_stream() -> None:
    h = Harness()
    r = h.send(udp(A, B, 5353, 53))
    ct = r.ct
    assert r.ctinfo == IP_CT_NEW and h.left(ct) == 30
    h.tick(0.5)
    r = h.send(udp(B, A, 53, 5353))
    assert r.ct is ct and r.ctinfo == IP_CT_ESTABLISHED_REPLY
    assert ct is not None and ct.status & IPS_SEEN_REPLY and not ct.status & IPS_ASSURED
    assert h.left(ct) == 30  # replied, but within two seconds: not a stream yet
    h.tick(0.5)
    r = h.send(udp(A, B, 5353, 53))
    assert r.ctinfo == IP_CT_ESTABLISHED and h.left(ct) == 30 and not ct.status & IPS_ASSURED
    h.tick(2)
    h.send(udp(A, B, 5353, 53))
    assert ct.status & IPS_ASSURED and h.left(ct) == 120


def test_udp_timeouts_follow_the_sysctls() -> None:
    h = Harness(udp_timeout=7, udp_timeout_stream=70)
    ct = h.send(udp(A, B, 1000, 2000)).ct
    assert h.left(ct) == 7
    h.send(udp(B, A, 2000, 1000))
    h.tick(3)
    h.send(udp(B, A, 2000, 1000))
    assert h.left(ct) == 70


def test_udp_malformed_length_is_invalid() -> None:
    h = Harness()
    pkt = bytearray(udp(A, B, 1, 2, b"abcd"))
    pkt[24:26] = struct.pack("!H", 40)  # UDP length beyond the packet
    r = h.send(bytes(pkt))
    assert (r.ct, r.reason) == (None, "truncated/malformed packet")


def test_icmp_echo_and_reply() -> None:
    h = Harness()
    r = h.send(icmp(A, B, 8, 0, ident=0x1234, seq=1))
    ct = r.ct
    assert r.ctinfo == IP_CT_NEW and h.left(ct) == 30
    assert ct is not None and ct.orig.icmp_type == 8 and ct.reply.icmp_type == 0 and ct.reply.icmp_id == 0x1234
    r = h.send(icmp(B, A, 0, 0, ident=0x1234, seq=1))
    assert r.ct is ct and r.ctinfo == IP_CT_ESTABLISHED_REPLY
    # Another echo with another id is another "connection".
    assert h.send(icmp(A, B, 8, 0, ident=0x1235)).ct is not ct


def test_icmp_only_queries_start_entries() -> None:
    h = Harness()
    r = h.send(icmp(B, A, 0, 0, ident=9))  # an echo reply nobody asked for
    assert (r.ct, r.ctinfo) == (None, CT_INVALID) and "can't create new conn with type 0" in r.reason
    assert h.send(icmp(A, B, 13, 0, ident=1, payload=b"x" * 12)).ctinfo == IP_CT_NEW  # timestamp
    assert h.send(icmp(A, B, 17, 0, ident=1)).ctinfo == IP_CT_NEW  # address mask
    assert h.send(icmp(A, B, 9, 0)).ct is None  # router advertisement: no inverse type
    assert h.send(icmp(A, B, 42, 0)).reason == "invalid icmp type"
    assert len(h.table) == 2


def test_icmp_errors_are_related_to_the_quoted_connection() -> None:
    h = Harness()
    syn = tcp(A, B, 40000, 80, SYN, seq=1)
    conn = h.send(syn).ct
    # A router on the way answers the client: RELATED, reply direction.
    r = h.send(icmp_error(R, A, 11, 0, syn))
    assert (r.ct, r.ctinfo) == (conn, IP_CT_RELATED_REPLY)
    # The server side answers about the reply direction's packet: RELATED, original direction.
    reply = tcp(B, A, 80, 40000, SYN | ACK, seq=5, ack=2)
    h.send(reply)
    r = h.send(icmp_error(R, B, 3, 1, reply))
    assert (r.ct, r.ctinfo) == (conn, IP_CT_RELATED)
    # An error whose outer destination is not the quoted connection's is invalid.
    r = h.send(icmp_error(R, "203.0.113.9", 3, 1, syn))
    assert r.ct is None and r.reason == "outer daddr != inner"
    # An error about nothing we know is invalid, and errors never create entries.
    r = h.send(icmp_error(R, A, 3, 3, udp(A, B, 1, 2)))
    assert r.ct is None
    assert len(h.table) == 1


def test_icmp_error_about_an_echo() -> None:
    h = Harness()
    echo = icmp(A, B, 8, 0, ident=7)
    conn = h.send(echo).ct
    r = h.send(icmp_error(R, A, 3, 1, echo))
    assert (r.ct, r.ctinfo) == (conn, IP_CT_RELATED_REPLY)


def test_generic_and_gre() -> None:
    h = Harness()
    r = h.send(raw(A, B, 253))
    assert r.ctinfo == IP_CT_NEW and h.left(r.ct) == 600
    assert r.ct is not None and (r.ct.orig.sport, r.ct.orig.dport) == (0, 0)
    gre = h.send(raw(A, B, 47, b"\x00\x00\x08\x00" + b"x" * 8)).ct
    assert h.left(gre) == 30
    h.send(raw(B, A, 47, b"\x00\x00\x08\x00" + b"y" * 8))  # the reply sets SEEN_REPLY after the tracker
    assert gre is not None and not gre.status & IPS_ASSURED and h.left(gre) == 30
    h.send(raw(A, B, 47, b"\x00\x00\x08\x00" + b"z" * 8))
    assert gre.status & IPS_ASSURED and h.left(gre) == 180
    # Enhanced GRE (PPTP) carries the call id as the destination key.
    pptp = h.send(raw(A, B, 47, struct.pack("!HHHH", 0x3001, 0x880B, 0, 0x1234))).ct
    assert pptp is not None and pptp.orig.dport == 0x1234


def test_fragments_and_garbage_are_invalid_not_errors() -> None:
    h = Harness()
    frag = ip(A, B, 17, b"12345678", frag=0x2000)
    assert h.send(frag).reason.startswith("fragment")
    for junk in (b"", b"\x45", b"\x60" + b"\0" * 39, ip(A, B, 6, b"\x00\x50"), ip(A, B, 1, b"\x08\x00")):
        r = h.send(junk)
        assert r.ct is None
    assert len(h.table) == 0


def test_reply_direction_of_udp_seen_reply_only_once() -> None:
    h = Harness()
    ct = h.send(udp(A, B, 7, 7)).ct
    h.send(udp(B, A, 7, 7))
    h.send(udp(B, A, 7, 7))
    assert h.table.events is not None
    replies = [k for k, c in h.table.events if c is ct and k == 3]
    assert len(replies) == 1
    assert ACK  # (imported for symmetry with the TCP tests)
