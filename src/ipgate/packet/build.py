"""Packet builders: IPv4, TCP, UDP, ICMP, and the ICMP errors a router sends.

`icmp_error_packet` follows __icmp_send() (net/ipv4/icmp.c): which packets
may not be answered, the TOS, and how much of the original fits (RFC 1812
4.3.2.3: no more than 576 bytes in all).  Routing (which source address,
which route back, its MTU) and rate limits are the caller's.
"""

from __future__ import annotations

import struct

from ipgate.packet.checksum import CSUM_MANGLED_0, Buffer, csum_partial, csum_tcpudp_nofold, ip_compute_csum
from ipgate.packet.ipv4 import (
    IP_OFFSET,
    IPOPT_END,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPTOS_PREC_INTERNETCONTROL,
    IPTOS_TOS_MASK,
)
from ipgate.packet.l4 import NR_ICMP_TYPES, TH_ACK

_IPH = struct.Struct("!BBHHHBBHII")
_TCP = struct.Struct("!HHIIHHHH")
_UDP = struct.Struct("!HHHH")
_ICMP = struct.Struct("!BBHI")
_U16 = struct.Struct("!H")

INADDR_DUMMY = 0xC0000008  # 192.0.0.8 (RFC 7600): the source when no address fits
IPDEFTTL = 64  # net.ipv4.ip_default_ttl

# icmp_pointers[type].error (net/ipv4/icmp.c): the types an ICMP error is never
# sent about.  Types above NR_ICMP_TYPES count as errors too.
ICMP_ERROR_TYPES = frozenset((1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12))


def build_ipv4(saddr: int, daddr: int, proto: int, payload: Buffer = b"", *, tos: int = 0, id: int = 0,
               frag_off: int = 0, ttl: int = IPDEFTTL, options: bytes = b"") -> bytearray:
    """An IPv4 packet with a correct header checksum; options are padded with END."""
    if len(options) & 3:
        options = options + bytes([IPOPT_END]) * (4 - (len(options) & 3))
    ihl = 20 + len(options)
    pkt = bytearray(ihl + len(payload))
    _IPH.pack_into(pkt, 0, 0x40 | ihl >> 2, tos, len(pkt), id, frag_off, ttl, proto, 0, saddr, daddr)
    pkt[20:ihl] = options
    pkt[ihl:] = payload
    _U16.pack_into(pkt, 10, ip_compute_csum(pkt[:ihl]))
    return pkt


def _l4_check(saddr: int, daddr: int, proto: int, seg: Buffer) -> int:
    return ~csum_partial(seg, csum_tcpudp_nofold(saddr, daddr, len(seg), proto)) & 0xFFFF


def tcp_segment(saddr: int, daddr: int, sport: int, dport: int, payload: Buffer = b"", *, seq: int = 0,
                ack_seq: int = 0, flags: int = TH_ACK, window: int = 65535, urg_ptr: int = 0,
                options: bytes = b"") -> bytearray:
    """A TCP header + payload with its checksum (options padded with EOL)."""
    if len(options) & 3:
        options = options + b"\0" * (4 - (len(options) & 3))
    doff = 20 + len(options)
    seg = bytearray(doff + len(payload))
    _TCP.pack_into(seg, 0, sport, dport, seq, ack_seq, (doff >> 2) << 12 | flags & 0x1FF, window, 0, urg_ptr)
    seg[20:doff] = options
    seg[doff:] = payload
    _U16.pack_into(seg, 16, _l4_check(saddr, daddr, IPPROTO_TCP, seg))
    return seg


def build_tcp(saddr: int, daddr: int, sport: int, dport: int, payload: Buffer = b"", *, seq: int = 0,
              ack_seq: int = 0, flags: int = TH_ACK, window: int = 65535, urg_ptr: int = 0,
              options: bytes = b"", tos: int = 0, id: int = 0, frag_off: int = 0, ttl: int = IPDEFTTL,
              ip_options: bytes = b"") -> bytearray:
    seg = tcp_segment(saddr, daddr, sport, dport, payload, seq=seq, ack_seq=ack_seq, flags=flags,
                      window=window, urg_ptr=urg_ptr, options=options)
    return build_ipv4(saddr, daddr, IPPROTO_TCP, seg, tos=tos, id=id, frag_off=frag_off, ttl=ttl,
                      options=ip_options)


def build_udp(saddr: int, daddr: int, sport: int, dport: int, payload: Buffer = b"", *, csum: bool = True,
              tos: int = 0, id: int = 0, frag_off: int = 0, ttl: int = IPDEFTTL,
              ip_options: bytes = b"") -> bytearray:
    """A UDP datagram; csum=False sends 0 ("no checksum", RFC 768)."""
    seg = bytearray(8 + len(payload))
    _UDP.pack_into(seg, 0, sport, dport, len(seg), 0)
    seg[8:] = payload
    if csum:
        _U16.pack_into(seg, 6, _l4_check(saddr, daddr, IPPROTO_UDP, seg) or CSUM_MANGLED_0)
    return build_ipv4(saddr, daddr, IPPROTO_UDP, seg, tos=tos, id=id, frag_off=frag_off, ttl=ttl,
                      options=ip_options)


def icmp_message(type: int, code: int, un: int = 0, payload: Buffer = b"") -> bytearray:
    """An ICMP header (the 32-bit `un`: id << 16 | seq, gateway, mtu...) + payload, checksummed."""
    msg = bytearray(8 + len(payload))
    _ICMP.pack_into(msg, 0, type, code, 0, un & 0xFFFFFFFF)
    msg[8:] = payload
    _U16.pack_into(msg, 2, ip_compute_csum(msg))
    return msg


def build_icmp(saddr: int, daddr: int, type: int, code: int = 0, un: int = 0, payload: Buffer = b"", *,
               tos: int = 0, id: int = 0, frag_off: int = 0, ttl: int = IPDEFTTL,
               ip_options: bytes = b"") -> bytearray:
    return build_ipv4(saddr, daddr, IPPROTO_ICMP, icmp_message(type, code, un, payload), tos=tos, id=id,
                      frag_off=frag_off, ttl=ttl, options=ip_options)


def icmp_error_packet(orig: Buffer, type: int, code: int, info: int, src: int, *, mtu: int = 576,
                      ttl: int = IPDEFTTL, ident: int = 0, broadcast: bool = False,
                      pkt_host: bool = True) -> bytearray | None:
    """The ICMP error (type, code, 32-bit `info`: the MTU for 3/4, pointer << 24
    for 12) that __icmp_send() would send about `orig`, or None where it sends
    nothing:

    - `orig` has no whole IP header;
    - it reached us as a link-layer broadcast or multicast (pkt_host=False);
    - its destination is multicast or limited broadcast, or the route says
      broadcast (broadcast=True: a subnet broadcast only routing knows);
    - it is a non-first fragment;
    - we would send an error about an ICMP error (or about an ICMP type
      > NR_ICMP_TYPES, or whose type cannot be read);
    - the route back has an MTU too small to quote even an IP header.

    `src` is the source the caller chose (__icmp_send(): the original's
    destination when it was ours, else inet_select_addr()), 0 meaning none:
    then 192.0.0.8.  `mtu` is that of the route back; the message takes at most
    min(mtu, 576) bytes and quotes as much of `orig` (up to its total length)
    as fits.  No IP options are echoed: ipgate sends none.  DF is clear and the
    TTL ip_default_ttl, as the kernel's ICMP socket (IP_PMTUDISC_DONT) does;
    `ident` is the IP id (the kernel's is a hash; the caller picks).
    """
    n = len(orig)
    if n < 20:
        return None
    vihl, tos, tot_len, _id, frag_off, _ttl, proto, _ck, saddr, daddr = _IPH.unpack_from(orig, 0)
    if not pkt_host or broadcast:
        return None
    if daddr >> 28 == 0xE or daddr == 0xFFFFFFFF:  # RTCF_MULTICAST / RTCF_BROADCAST
        return None
    if frag_off & IP_OFFSET:
        return None
    ihl = (vihl & 0x0F) << 2
    is_error = type in ICMP_ERROR_TYPES or type > NR_ICMP_TYPES
    if is_error and proto == IPPROTO_ICMP:
        if ihl >= n:  # skb_header_pointer() finds no inner type
            return None
        inner = orig[ihl]
        if inner > NR_ICMP_TYPES or inner in ICMP_ERROR_TYPES:
            return None
    new_tos = (tos & IPTOS_TOS_MASK | IPTOS_PREC_INTERNETCONTROL) if is_error else tos
    room = min(mtu, 576) - 20 - 8
    if room <= 20:
        return None
    data_len = tot_len if 20 <= tot_len <= n else n  # ip_rcv_core() trimmed the padding
    if data_len > room:
        data_len = room
    msg = icmp_message(type, code, info, orig[:data_len])
    return build_ipv4(src or INADDR_DUMMY, saddr, IPPROTO_ICMP, msg, tos=new_tos, id=ident, ttl=ttl)
