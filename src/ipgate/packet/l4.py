"""TCP, UDP and ICMP headers: parse after a parsed IPv4 header, verify or
recompute their checksums, rewrite ports and ICMP ids incrementally.

The parsers check what the kernel's receive paths check before trusting a
header (tcp_v4_rcv(), __udp4_lib_rcv(), icmp_rcv()) and what conntrack needs
of an ICMP error (icmp_error_message() in nf_conntrack_proto_icmp.c): they do
not verify checksums, which the forwarding path never does; the *_csum_ok()
functions do, for the callers that must (conntrack in PRE_ROUTING, local
delivery).  Lengths are those of this IP packet: a first fragment holds the
start of a datagram, and its length checks are left to reassembly.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from ipgate.packet.checksum import (
    CSUM_MANGLED_0,
    Buffer,
    csum_partial,
    csum_replace2,
    csum_replace4,
    csum_tcpudp_nofold,
    udp_csum_replace2,
    udp_csum_replace4,
)
from ipgate.packet.drop import DropReason
from ipgate.packet.ipv4 import (
    IP_MF,
    IP_OFFSET,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPv4,
    WBuffer,
)

TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PUSH = 0x08
TH_ACK = 0x10
TH_URG = 0x20
TH_ECE = 0x40
TH_CWR = 0x80
TH_AE = 0x100  # was NS (RFC 3540), now AccECN

TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_MSS = 2
TCPOPT_WINDOW = 3
TCPOPT_SACK_PERM = 4
TCPOPT_SACK = 5
TCPOPT_TIMESTAMP = 8
TCPOLEN_MSS = 4

ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_SOURCE_QUENCH = 4
ICMP_REDIRECT = 5
ICMP_ECHO = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAMETERPROB = 12
ICMP_TIMESTAMP = 13
ICMP_TIMESTAMPREPLY = 14
ICMP_INFO_REQUEST = 15
ICMP_INFO_REPLY = 16
ICMP_ADDRESS = 17
ICMP_ADDRESSREPLY = 18
NR_ICMP_TYPES = 18

# Protocols whose first four bytes are ports (nf_ct_get_tuple_ports()):
# TCP, UDP, DCCP, SCTP, UDP-Lite.
PORT_PROTOS = frozenset((6, 17, 33, 132, 136))

ICMP_NET_UNREACH = 0
ICMP_HOST_UNREACH = 1
ICMP_PROT_UNREACH = 2
ICMP_PORT_UNREACH = 3
ICMP_FRAG_NEEDED = 4
ICMP_SR_FAILED = 5
ICMP_PKT_FILTERED = 13
ICMP_EXC_TTL = 0
ICMP_EXC_FRAGTIME = 1

_TCP = struct.Struct("!HHIIHHHH")
_UDP = struct.Struct("!HHHH")
_ICMP = struct.Struct("!BBHI")
_PORTS = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_IPH = struct.Struct("!BBHHHBBHII")
_T = TypeVar("_T")


class TCP(NamedTuple):
    """A TCP header: the fields in wire order, then where it is and what they mean."""

    source: int
    dest: int
    seq: int
    ack_seq: int
    doff_flags: int  # the data offset / reserved / flags word as on the wire
    window: int
    check: int
    urg_ptr: int
    off: int  # where the TCP header starts in the buffer
    doff: int  # header length in bytes (data offset times 4)
    flags: int  # the 9 flag bits: TH_AE .. TH_FIN
    len: int  # bytes of TCP in this packet, header included


class UDP(NamedTuple):
    source: int
    dest: int
    len: int  # the UDP length field (bytes past it are trimmed, as __udp4_lib_rcv() does)
    check: int
    off: int


class ICMP(NamedTuple):
    type: int
    code: int
    check: int
    un: int  # the 32-bit rest of the header: id/sequence, gateway, mtu, pointer
    off: int
    len: int  # bytes of ICMP in this packet

    @property
    def id(self) -> int:
        return self.un >> 16

    @property
    def sequence(self) -> int:
        return self.un & 0xFFFF


class IcmpInner(NamedTuple):
    """The packet an ICMP error quotes: its IP header as it stands (checksum,
    total length and options not checked: it is usually cut short) and the
    start of its L4 header, as nf_ct_get_tuplepr() reads them."""

    ip: IPv4
    l4off: int
    l4len: int  # bytes of the quoted L4 header present (at least 4; 8 for ICMP)
    sport: int  # TCP/UDP ports; ICMP: the echo id ...
    dport: int  # ... and type << 8 | code


def icmp_is_err(icmp_type: int) -> bool:
    """icmp_is_err() (include/linux/icmp.h): the types that quote a packet."""
    return icmp_type in (ICMP_DEST_UNREACH, ICMP_SOURCE_QUENCH, ICMP_REDIRECT, ICMP_TIME_EXCEEDED,
                         ICMP_PARAMETERPROB)


if TYPE_CHECKING:
    def _new(cls: type[_T], fields: tuple[int, ...]) -> _T: ...
else:
    _new = tuple.__new__  # skips NamedTuple.__new__'s Python frame on the hot path

_unpack_tcp = _TCP.unpack_from
_unpack_udp = _UDP.unpack_from
_unpack_icmp = _ICMP.unpack_from


def _not_first(ip: IPv4) -> bool:
    return (ip.frag_off & IP_OFFSET) != 0


# -- parsers -------------------------------------------------------------------

def parse_tcp(buf: Buffer, ip: IPv4) -> TCP | DropReason:
    """The TCP header after `ip`.  HDR_TRUNC: no room for it (or a non-first
    fragment); PKT_TOO_SMALL: data offset below 5 (tcp_v4_rcv())."""
    ihl = ip.ihl
    off = ip.off + ihl
    n = ip.tot_len - ihl
    if n < 20 or ip.frag_off & IP_OFFSET:
        return DropReason.HDR_TRUNC
    t = _unpack_tcp(buf, off)
    w = t[4]
    doff = (w >> 12) << 2
    if doff < 20:
        return DropReason.PKT_TOO_SMALL
    if doff > n:
        return DropReason.HDR_TRUNC
    return _new(TCP, t + (off, doff, w & 0x1FF, n))


def parse_udp(buf: Buffer, ip: IPv4) -> UDP | DropReason:
    """The UDP header after `ip`.  HDR_TRUNC: under 8 bytes (or a non-first
    fragment); PKT_TOO_SMALL: the length field is under 8 or past the packet
    (__udp4_lib_rcv()'s short_packet), checked on whole datagrams only."""
    ihl = ip.ihl
    off = ip.off + ihl
    n = ip.tot_len - ihl
    if n < 8 or _not_first(ip):
        return DropReason.HDR_TRUNC
    t = _unpack_udp(buf, off)
    ulen = t[2]
    if (ulen > n or ulen < 8) and not ip.frag_off & IP_MF:
        return DropReason.PKT_TOO_SMALL
    return _new(UDP, t + (off,))


def parse_icmp(buf: Buffer, ip: IPv4) -> ICMP | DropReason:
    """The ICMP header after `ip`: HDR_TRUNC under 8 bytes.  Any type is accepted:
    a router forwards types it does not know."""
    ihl = ip.ihl
    off = ip.off + ihl
    n = ip.tot_len - ihl
    if n < 8 or _not_first(ip):
        return DropReason.HDR_TRUNC
    return _new(ICMP, _unpack_icmp(buf, off) + (off, n))


def icmp_error_inner(buf: Buffer, ip: IPv4, icmp: ICMP) -> IcmpInner | DropReason:
    """Locate and read the packet quoted by an ICMP error, as conntrack does
    (nf_conntrack_icmpv4_error() -> nf_ct_get_tuplepr()).

    INVALID_PROTO: not an error type, or the quoted packet is a non-first
    fragment; HDR_TRUNC: the quoted IP header or its first L4 bytes are not all
    there; IP_INHDR: the quoted header is not IPv4 with IHL >= 5 (conntrack does
    not look, and would find no connection for it).
    """
    if not icmp_is_err(icmp.type):
        return DropReason.INVALID_PROTO
    end = ip.off + ip.tot_len
    ioff = icmp.off + 8
    if ioff + 20 > end:
        return DropReason.HDR_TRUNC
    vihl, tos, tot_len, ident, frag_off, ttl, proto, check, saddr, daddr = _IPH.unpack_from(buf, ioff)
    ihl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or ihl < 20:
        return DropReason.IP_INHDR
    if frag_off & IP_OFFSET:
        return DropReason.INVALID_PROTO
    l4off = ioff + ihl
    avail = end - l4off
    if avail < 0:
        return DropReason.HDR_TRUNC  # ipv4_get_l4proto(): "bogus IP headers"
    inner = IPv4(vihl, tos, tot_len, ident, frag_off, ttl, proto, check, saddr, daddr, ioff, ihl, None)
    if proto == IPPROTO_ICMP:
        if avail < 8:
            return DropReason.HDR_TRUNC
        t, c, _ck, un = _ICMP.unpack_from(buf, l4off)
        return IcmpInner(inner, l4off, 8, un >> 16, t << 8 | c)
    if proto in PORT_PROTOS:
        if avail < 4:
            return DropReason.HDR_TRUNC  # nf_ct_get_tuple_ports() reads 4 bytes
        sport, dport = _PORTS.unpack_from(buf, l4off)
        return IcmpInner(inner, l4off, min(avail, 8), sport, dport)
    return IcmpInner(inner, l4off, min(avail, 8), 0, 0)


# -- checksums -------------------------------------------------------------------

def _l4_sum(buf: Buffer, ip: IPv4, length: int) -> int:
    """Ones' complement sum of `length` bytes of L4 plus the pseudo-header."""
    off = ip.off + ip.ihl
    return csum_partial(buf[off:off + length], csum_tcpudp_nofold(ip.saddr, ip.daddr, length, ip.protocol))


def tcp_csum_ok(buf: Buffer, ip: IPv4) -> bool:
    """Verify the TCP checksum of a whole segment (nf_ip_checksum(), tcp_v4_rcv())."""
    return _l4_sum(buf, ip, ip.tot_len - ip.ihl) == 0xFFFF


def udp_csum_ok(buf: Buffer, ip: IPv4, udp: UDP) -> bool:
    """Verify the UDP checksum over udp.len bytes; 0 means none was sent (RFC 768)."""
    return udp.check == 0 or _l4_sum(buf, ip, udp.len) == 0xFFFF


def icmp_csum_ok(buf: Buffer, ip: IPv4) -> bool:
    """Verify the ICMP checksum (no pseudo-header)."""
    off = ip.off + ip.ihl
    return csum_partial(buf[off:ip.off + ip.tot_len]) == 0xFFFF


def tcp_send_check(buf: WBuffer, ip: IPv4) -> int:
    """Recompute the TCP checksum from scratch; returns it."""
    off = ip.off + ip.ihl
    _U16.pack_into(buf, off + 16, 0)
    c = ~_l4_sum(buf, ip, ip.tot_len - ip.ihl) & 0xFFFF
    _U16.pack_into(buf, off + 16, c)
    return c


def udp_send_check(buf: WBuffer, ip: IPv4) -> int:
    """Recompute the UDP checksum over the UDP length field's bytes (0 goes out as 0xFFFF)."""
    off = ip.off + ip.ihl
    ulen = _U16.unpack_from(buf, off + 4)[0]
    _U16.pack_into(buf, off + 6, 0)
    c = ~_l4_sum(buf, ip, ulen) & 0xFFFF or CSUM_MANGLED_0
    _U16.pack_into(buf, off + 6, c)
    return c


def icmp_send_check(buf: WBuffer, off: int, end: int) -> int:
    """Recompute the checksum of the ICMP message in buf[off:end] (what
    nf_nat_icmp_reply_translation() does after rewriting the quoted packet)."""
    _U16.pack_into(buf, off + 2, 0)
    c = ~csum_partial(buf[off:end]) & 0xFFFF
    _U16.pack_into(buf, off + 2, c)
    return c


# -- TCP options ------------------------------------------------------------------

def tcp_options(buf: Buffer, tcp: TCP) -> list[tuple[int, int, int]]:
    """(kind, offset in buf, length) of each option, walked as tcp_parse_options()
    does: stop at EOL or at a length that is under 2 or runs past the header."""
    out: list[tuple[int, int, int]] = []
    p = tcp.off + 20
    end = tcp.off + tcp.doff
    while p < end:
        kind = buf[p]
        if kind == TCPOPT_EOL:
            break
        if kind == TCPOPT_NOP:
            p += 1
            continue
        if p + 1 >= end:
            break
        size = buf[p + 1]
        if size < 2 or p + size > end:
            break
        out.append((kind, p, size))
        p += size
    return out


def tcp_find_mss(buf: Buffer, tcp: TCP) -> int:
    """Offset in buf of the MSS option, or -1: the walk of tcpmss_mangle_packet()
    (xt_TCPMSS.c), which only takes an option of kind 2 and length 4."""
    base = tcp.off
    i = 20
    last = tcp.doff - TCPOLEN_MSS
    while i <= last:
        kind = buf[base + i]
        if kind == TCPOPT_MSS and buf[base + i + 1] == TCPOLEN_MSS:
            return base + i
        # optlen(): EOL, NOP and a zero length step by one byte
        step = buf[base + i + 1]
        i += 1 if kind <= TCPOPT_NOP or step == 0 else step
    return -1


def tcp_set_mss(buf: WBuffer, tcp: TCP, optoff: int, mss: int) -> int:
    """Write `mss` into the MSS option at `optoff` (from tcp_find_mss()), fixing
    the checksum.  Returns the old value.

    The kernel applies csum_replace2() to the value as if it were 16-bit aligned;
    after an odd number of NOPs it is not, and the sum then sees its bytes
    swapped: this does it right in both cases.
    """
    old = _U16.unpack_from(buf, optoff + 2)[0]
    co = tcp.off + 16
    check = _U16.unpack_from(buf, co)[0]
    if (optoff + 2 - tcp.off) & 1:
        check = csum_replace2(check, (old >> 8 | old << 8) & 0xFFFF, (mss >> 8 | mss << 8) & 0xFFFF)
    else:
        check = csum_replace2(check, old, mss)
    _U16.pack_into(buf, co, check)
    _U16.pack_into(buf, optoff + 2, mss)
    return int(old)


# -- rewrites ------------------------------------------------------------------------

def l4_csum_offset(proto: int) -> int:
    """Offset of the checksum in the L4 header, -1 if it has none that covers the
    pseudo-header (ICMP's does not)."""
    if proto == IPPROTO_TCP:
        return 16
    if proto == IPPROTO_UDP:
        return 6
    return -1


def l4_addr_changed(buf: WBuffer, proto: int, l4off: int, old: int, new: int) -> None:
    """An address of the pseudo-header changes: nf_nat_ipv4_csum_update() ->
    inet_proto_csum_replace4(..., pseudohdr=true).  UDP's 0 stays 0."""
    if proto == IPPROTO_TCP:
        co = l4off + 16
        _U16.pack_into(buf, co, csum_replace4(_U16.unpack_from(buf, co)[0], old, new))
    elif proto == IPPROTO_UDP:
        co = l4off + 6
        _U16.pack_into(buf, co, udp_csum_replace4(_U16.unpack_from(buf, co)[0], old, new))


def tcp_set_port(buf: WBuffer, l4off: int, pos: int, new: int, csum: bool = True) -> int:
    """Set the source (pos 0) or destination (pos 2) port; returns the old one.
    csum=False for a quoted header whose checksum is past the 8 bytes an ICMP
    error guarantees (tcp_manip_pkt())."""
    old = _U16.unpack_from(buf, l4off + pos)[0]
    _U16.pack_into(buf, l4off + pos, new)
    if csum:
        co = l4off + 16
        _U16.pack_into(buf, co, csum_replace2(_U16.unpack_from(buf, co)[0], old, new))
    return int(old)


def udp_set_port(buf: WBuffer, l4off: int, pos: int, new: int) -> int:
    """As tcp_set_port() for UDP, keeping 0 as "no checksum" (udp_manip_pkt())."""
    old = _U16.unpack_from(buf, l4off + pos)[0]
    _U16.pack_into(buf, l4off + pos, new)
    co = l4off + 6
    _U16.pack_into(buf, co, udp_csum_replace2(_U16.unpack_from(buf, co)[0], old, new))
    return int(old)


def icmp_set_id(buf: WBuffer, l4off: int, new: int) -> int:
    """Set the echo/timestamp/info id, fixing the checksum (icmp_manip_pkt())."""
    old = _U16.unpack_from(buf, l4off + 4)[0]
    _U16.pack_into(buf, l4off + 4, new)
    co = l4off + 2
    _U16.pack_into(buf, co, csum_replace2(_U16.unpack_from(buf, co)[0], old, new))
    return int(old)
