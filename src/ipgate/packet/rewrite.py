"""NAT rewrites of a packet in place: nf_nat_ipv4_manip_pkt() for the slow path
and a precomputed `FlowRewrite` for established flows (the flowtable's
nf_flow_snat_ip()/nf_flow_snat_port() and friends, with the RFC 1624 deltas
summed once per flow instead of once per field and packet).
"""

from __future__ import annotations

import struct

from ipgate.packet.checksum import (
    CSUM_MANGLED_0,
    csum_delta2,
    csum_delta4,
    csum_fold,
    csum_replace2,
)
from ipgate.packet.ipv4 import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPv4, WBuffer
from ipgate.packet.l4 import (
    ICMP_ADDRESS,
    ICMP_ADDRESSREPLY,
    ICMP_ECHO,
    ICMP_ECHOREPLY,
    ICMP_INFO_REPLY,
    ICMP_INFO_REQUEST,
    ICMP_TIMESTAMP,
    ICMP_TIMESTAMPREPLY,
)

NF_NAT_MANIP_SRC = 0
NF_NAT_MANIP_DST = 1

# ICMP queries carry an id that NAT may rewrite (icmp_manip_pkt()).
ICMP_QUERY_TYPES = frozenset((ICMP_ECHO, ICMP_ECHOREPLY, ICMP_TIMESTAMP, ICMP_TIMESTAMPREPLY,
                              ICMP_INFO_REQUEST, ICMP_INFO_REPLY, ICMP_ADDRESS, ICMP_ADDRESSREPLY))

_U16 = struct.Struct("!H")
_CK_HALVES = struct.Struct("!HHH")  # check, saddr in halves, at offset 10
_CK_DHALVES = struct.Struct("!H4xHH")  # check, daddr in halves
_HALVES = struct.Struct("!HH")
_TCP_PC = struct.Struct("!HH12xH")  # ports and check
_UDP_PC = struct.Struct("!HH2xH")
_ICMP_CI = struct.Struct("!HH")  # check, id at offset 2
_PORTS = struct.Struct("!HH")
_TAIL_L4 = struct.Struct("!BBHIIHH")  # ttl .. daddr, then the ports, from offset 8 (IHL 5)
_TAIL_IP = struct.Struct("!BBHII")  # ttl .. daddr from offset 8
_TCP, _UDP, _ICMP_ID, _ADDRS = range(4)  # FlowRewrite kinds


def nf_nat_ipv4_manip_pkt(buf: WBuffer, iphoff: int, end: int, maniptype: int, addr: int, port: int) -> bool:
    """Rewrite the source (NF_NAT_MANIP_SRC) or destination address and port of
    the IPv4 packet at `iphoff`, fixing both checksums (nf_nat_ipv4_manip_pkt()
    with the l4proto manip of nf_nat_proto.c).

    `end` is where the data ends: for a packet quoted in an ICMP error, the end
    of the outer packet; a quoted TCP header shorter than 20 bytes gets its port
    but not its checksum (tcp_manip_pkt()).  For ICMP queries `port` is the id
    to set, whatever the manip type; ICMP errors keep theirs.  Returns False,
    as the kernel's skb_ensure_writable() failing would, when the L4 header is
    too short to rewrite (the caller drops).  As in the kernel, the packet is
    whole or a first fragment: conntrack reassembles before NAT sees it.

    The address and port changes go into each checksum as one RFC 1624 sum
    (what csum_replace4() then csum_replace2() compute, in one step).
    """
    if iphoff + 20 > end or iphoff < 0:
        return False
    ihl = (buf[iphoff] & 0x0F) << 2
    if ihl < 20:
        return False  # not a header anyone parsed
    hdroff = iphoff + ihl
    proto = buf[iphoff + 9]
    src = maniptype == NF_NAT_MANIP_SRC
    aoff = iphoff + 12 if src else iphoff + 16
    # 16-bit halves keep the arithmetic on small ints
    ipck, ohi, olo = _CK_HALVES.unpack_from(buf, iphoff + 10) if src else _CK_DHALVES.unpack_from(buf, iphoff + 10)
    nhi = addr >> 16
    nlo = addr & 0xFFFF
    ad = (ohi ^ 0xFFFF) + (olo ^ 0xFFFF) + nhi + nlo  # ~m + m' of the address, the pseudo-header's too
    if proto == IPPROTO_TCP or proto == IPPROTO_UDP:
        if hdroff + 8 > end:
            return False
        tcp = proto == IPPROTO_TCP
        if tcp:
            if hdroff + 20 <= end:
                sp, dp, ck = _TCP_PC.unpack_from(buf, hdroff)
            else:
                sp, dp = _PORTS.unpack_from(buf, hdroff)
                ck = -1  # the checksum is not in the 8 bytes an ICMP error quotes
        else:
            sp, dp, ck = _UDP_PC.unpack_from(buf, hdroff)
            if not ck:
                ck = -1  # 0: no checksum, and none is made up
        if ck >= 0:
            s = (ck ^ 0xFFFF) + ad + ((sp if src else dp) ^ 0xFFFF) + port
            s = (s & 0xFFFF) + (s >> 16)
            ck = ((s & 0xFFFF) + (s >> 16)) ^ 0xFFFF
            if not ck and not tcp:
                ck = CSUM_MANGLED_0
            _U16.pack_into(buf, hdroff + 16 if tcp else hdroff + 6, ck)
        _U16.pack_into(buf, hdroff if src else hdroff + 2, port)
    elif proto == IPPROTO_ICMP:
        if hdroff + 8 > end:
            return False
        if buf[hdroff] in ICMP_QUERY_TYPES:
            ck, old = _ICMP_CI.unpack_from(buf, hdroff + 2)
            _ICMP_CI.pack_into(buf, hdroff + 2, csum_replace2(ck, old, port), port)
    # other protocols: addresses only ("no error, pass it unmodified")
    s = (ipck ^ 0xFFFF) + ad
    s = (s & 0xFFFF) + (s >> 16)
    _U16.pack_into(buf, iphoff + 10, ((s & 0xFFFF) + (s >> 16)) ^ 0xFFFF)
    _HALVES.pack_into(buf, aoff, nhi, nlo)
    return True


class FlowRewrite:
    """One flow's rewrite, precomputed: new addresses and ports (or ICMP id),
    the TTL decrement of forwarding, and the two checksum deltas.
    """

    __slots__ = ("proto", "saddr", "daddr", "sport", "dport", "dec_ttl", "ip_delta", "l4_delta", "csum_off",
                 "_kind")

    def __init__(self, proto: int, old: tuple[int, int, int, int], new: tuple[int, int, int, int],
                 dec_ttl: bool = True) -> None:
        """`old` and `new` are (saddr, daddr, sport, dport); for ICMP queries
        sport is the id and dport is ignored."""
        osa, oda, osp, odp = old
        nsa, nda, nsp, ndp = new
        self.proto = proto
        self.saddr, self.daddr, self.sport, self.dport = nsa, nda, nsp, ndp
        self.dec_ttl = dec_ttl
        ip_d = csum_delta4(osa, nsa) + csum_delta4(oda, nda)
        if dec_ttl:
            ip_d += 0xFEFF  # (ttl-1) << 8 | proto minus ttl << 8 | proto, ones' complement
        self.ip_delta = csum_fold(ip_d)
        if proto == IPPROTO_ICMP:
            self.l4_delta = csum_delta2(osp, nsp)
            self.csum_off = 2
            self._kind = _ICMP_ID
        else:
            self.l4_delta = csum_fold(csum_delta4(osa, nsa) + csum_delta4(oda, nda)
                                      + csum_delta2(osp, nsp) + csum_delta2(odp, ndp))
            self.csum_off = 16 if proto == IPPROTO_TCP else 6 if proto == IPPROTO_UDP else -1
            self._kind = _TCP if proto == IPPROTO_TCP else _UDP if proto == IPPROTO_UDP else _ADDRS

    def apply(self, buf: WBuffer, ip: IPv4) -> None:
        """Rewrite the packet `ip` was just parsed from (its fields are trusted:
        nothing may have changed the packet since).  The flow lookup vouches
        for the rest: a whole packet of this flow, TTL > 1 if dec_ttl, the L4
        header present."""
        _v, _t, _l, _i, _f, ttl, proto, check, _s, _d, off, ihl, _o = ip  # one unpack, not 5 lookups
        s = (check ^ 0xFFFF) + self.ip_delta  # two 16-bit terms: one fold is enough
        ipck = ((s & 0xFFFF) + (s >> 16)) ^ 0xFFFF
        if self.dec_ttl:
            ttl = (ttl - 1) & 0xFF
        kind = self._kind
        if kind == _ADDRS:
            _TAIL_IP.pack_into(buf, off + 8, ttl, proto, ipck, self.saddr, self.daddr)
            return
        l4 = off + ihl
        co = l4 + self.csum_off
        c = _U16.unpack_from(buf, co)[0]
        if c or kind != _UDP:  # UDP's 0: no checksum
            s = (c ^ 0xFFFF) + self.l4_delta
            c = ((s & 0xFFFF) + (s >> 16)) ^ 0xFFFF
            if not c and kind == _UDP:
                c = CSUM_MANGLED_0
        if kind == _ICMP_ID:
            _TAIL_IP.pack_into(buf, off + 8, ttl, IPPROTO_ICMP, ipck, self.saddr, self.daddr)
            _ICMP_CI.pack_into(buf, l4 + 2, c, self.sport)
            return
        if ihl == 20:
            _TAIL_L4.pack_into(buf, off + 8, ttl, proto, ipck, self.saddr, self.daddr, self.sport, self.dport)
        else:
            _TAIL_IP.pack_into(buf, off + 8, ttl, proto, ipck, self.saddr, self.daddr)
            _PORTS.pack_into(buf, l4, self.sport, self.dport)
        _U16.pack_into(buf, co, c)
