"""What IP Filter's NAT reads of a packet: the parts of `fr_info_t` that
fr_checknatout()/fr_checknatin() use (4.1.x ip_nat.c, filled by fr_makefrip()
in fil.c).

`PacketInfo.parse` takes a whole IPv4 packet at offset 0 (already checked by
the caller, e.g. parse_ipv4) and works out:

* the fragment flags: FI_FRAG (MF or an offset), the offset itself
  (fin_off, non-zero for fragment bodies, FI_FRAGBODY);
* FI_SHORT: the first fragment is too short for the L4 header;
* `nflags`, as the top of fr_checknatout() computes them: IPN_TCP, IPN_UDP, or
  IPN_ICMPQUERY for the ICMP query types (nat_icmpquerytype4), 0 for other
  protocols, short packets and fragment bodies;
* fin_data[0]/fin_data[1]: the TCP/UDP ports, or for ICMP the type/code word
  and the query id;
* FI_ICMPERR: an ICMP error type (what frpr_icmp() flags).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ipgate.nat.ipnat.rule import IPN_ICMPQUERY, IPN_TCP, IPN_UDP
from ipgate.packet.ipv4 import IP_MF, IP_OFFSET, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP
from ipgate.packet.l4 import (
    ICMP_ADDRESS,
    ICMP_ADDRESSREPLY,
    ICMP_DEST_UNREACH,
    ICMP_ECHO,
    ICMP_ECHOREPLY,
    ICMP_INFO_REPLY,
    ICMP_INFO_REQUEST,
    ICMP_PARAMETERPROB,
    ICMP_REDIRECT,
    ICMP_SOURCE_QUENCH,
    ICMP_TIME_EXCEEDED,
    ICMP_TIMESTAMP,
    ICMP_TIMESTAMPREPLY,
)

_IPH = struct.Struct("!BBHHHBBHII")
_PORTS = struct.Struct("!HH")
_U16 = struct.Struct("!H")

# nat_icmpquerytype4(): queries and their replies share a session.
ICMP_QUERY_TYPES = frozenset((ICMP_ECHOREPLY, ICMP_ECHO, ICMP_TIMESTAMP, ICMP_TIMESTAMPREPLY, ICMP_INFO_REQUEST,
                              ICMP_INFO_REPLY, ICMP_ADDRESS, ICMP_ADDRESSREPLY))
# The types frpr_icmp() marks FI_ICMPERR.
ICMP_ERROR_TYPES = frozenset((ICMP_DEST_UNREACH, ICMP_SOURCE_QUENCH, ICMP_REDIRECT, ICMP_TIME_EXCEEDED,
                              ICMP_PARAMETERPROB))

ICMPERR_ICMPHLEN = 8  # ip_fil.h: the ICMP header before the quoted packet
TCP_MINLEN = 20       # frpr_tcpcommon(): a whole tcphdr_t or FI_SHORT
UDP_MINLEN = 8
ICMP_MINLEN = 8


@dataclass(slots=True)
class PacketInfo:
    """fr_info_t, the fields NAT needs (host byte order)."""

    p: int             # fin_p
    saddr: int         # fin_saddr
    daddr: int         # fin_daddr
    hlen: int          # fin_hlen: IP header length
    plen: int          # fin_plen: IP total length
    tos: int
    ip_id: int
    off: int           # fin_off: fragment offset in 8-byte units (0 = first or whole)
    more_frags: bool   # IP_MF
    short: bool        # FI_SHORT
    data0: int         # fin_data[0]: sport, or ICMP type << 8 | code
    data1: int         # fin_data[1]: dport, or the ICMP query id
    nflags: int        # IPN_TCP / IPN_UDP / IPN_ICMPQUERY as fr_checknatout() sets them
    icmp_type: int     # -1 when not ICMP (or a fragment body)
    icmperr: bool      # FI_ICMPERR
    tcp_flags: int     # th_flags of a TCP header present, else 0

    @property
    def frag(self) -> bool:
        """FI_FRAG: part of a fragmented datagram."""
        return self.more_frags or self.off != 0

    @property
    def dlen(self) -> int:
        """fin_dlen: bytes after the IP header."""
        return self.plen - self.hlen

    @property
    def l4off(self) -> int:
        return self.hlen

    @classmethod
    def parse(cls, pkt: bytes | bytearray | memoryview) -> PacketInfo | None:
        """None when there is no IPv4 header to speak of (the caller parsed it already)."""
        if len(pkt) < 20:
            return None
        vihl, tos, tot_len, ip_id, frag_off, _ttl, p, _ck, saddr, daddr = _IPH.unpack_from(pkt, 0)
        hlen = (vihl & 0x0F) << 2
        if vihl >> 4 != 4 or hlen < 20 or tot_len < hlen or tot_len > len(pkt):
            return None
        off = frag_off & IP_OFFSET
        mf = bool(frag_off & IP_MF)
        dlen = tot_len - hlen
        short = False
        data0 = data1 = 0
        nflags = 0
        icmp_type = -1
        icmperr = False
        tcp_flags = 0
        if off == 0:
            if p == IPPROTO_TCP:
                short = dlen < TCP_MINLEN
                if dlen >= 4:
                    data0, data1 = _PORTS.unpack_from(pkt, hlen)
                if not short:
                    nflags = IPN_TCP
                    tcp_flags = pkt[hlen + 13]
            elif p == IPPROTO_UDP:
                short = dlen < UDP_MINLEN
                if dlen >= 4:
                    data0, data1 = _PORTS.unpack_from(pkt, hlen)
                if not short:
                    nflags = IPN_UDP
            elif p == IPPROTO_ICMP:
                short = dlen < ICMP_MINLEN
                if dlen >= 2:
                    data0 = _U16.unpack_from(pkt, hlen)[0]
                    icmp_type = pkt[hlen]
                if not short:
                    if icmp_type in ICMP_QUERY_TYPES:
                        nflags = IPN_ICMPQUERY
                        data1 = _U16.unpack_from(pkt, hlen + 4)[0]
                    elif icmp_type in ICMP_ERROR_TYPES:
                        icmperr = True
        return cls(p, saddr, daddr, hlen, tot_len, tos, ip_id, off, mf, short, data0, data1, nflags, icmp_type,
                   icmperr, tcp_flags)
