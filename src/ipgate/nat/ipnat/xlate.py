"""Rewriting a packet for its session: the header work of fr_natout() and
fr_natin() (IP Filter 4.1.x ip_nat.c), with nat_proto()'s MSS clamping.

* leaving (fr_natout()): source address -> nat_outip and, for TCP/UDP, source
  port -> nat_outport, for ICMP queries the id -> nat_outport;
* arriving (fr_natin()): destination address -> nat_inip, destination port
  (or ICMP id) -> nat_inport.

The IP header checksum and the TCP/UDP checksum (pseudo-header and port; a
UDP checksum of 0 stays 0) or ICMP checksum (the id) are fixed incrementally,
with packet/rewrite.py's nf_nat_ipv4_manip_pkt(), which does the same
arithmetic as IP Filter's fix_outcksum()/fix_incksum() deltas.  Fragment
bodies and packets too short for their transport header (FI_SHORT) only get
the address (nat_proto() is skipped for them).  ICMP errors get only the
outer address here; their quoted packet is icmperr.py's.

nat_mssclamp(): on a TCP SYN (SYN-ACK too) of a session whose rule says
`mssclamp N`, an MSS option (kind 2, length 4) above N is lowered to N.  The
walk is IP Filter's (stop at EOL, at a length that runs past the header or is
0); the checksum is fixed with l4.tcp_set_mss(), right even when the option
sits at an odd offset (IP Filter's fix_outcksum() adds the delta as if it were
aligned).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ipgate.nat.ipnat.pktinfo import PacketInfo
from ipgate.nat.ipnat.rule import IPN_ICMPQUERY, IPN_TCPUDP
from ipgate.packet.ipv4 import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, WBuffer, ip_set_daddr, ip_set_saddr
from ipgate.packet.l4 import TCP, TCPOPT_EOL, TCPOPT_MSS, TCPOPT_NOP, TH_SYN, tcp_set_mss
from ipgate.packet.rewrite import NF_NAT_MANIP_DST, NF_NAT_MANIP_SRC, nf_nat_ipv4_manip_pkt

if TYPE_CHECKING:
    from ipgate.nat.ipnat.session import NatSession

_TCPH = struct.Struct("!HHIIHHHH")


def _whole_l4(fin: PacketInfo) -> bool:
    """nat_proto() runs: the transport header is here (not FI_SHORT, not a fragment body)."""
    return not fin.short and fin.off == 0


def rewrite_out(pkt: WBuffer, fin: PacketInfo, nat: NatSession, nflags: int) -> None:
    """fr_natout()'s rewrite of a packet leaving: the source becomes the outside address."""
    if not _whole_l4(fin) or fin.p not in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP):
        ip_set_saddr(pkt, 0, nat.outip)
        return
    if fin.p == IPPROTO_ICMP:
        port = nat.outport if nflags & IPN_ICMPQUERY and nat.outport else fin.data1
    else:
        port = nat.outport if nflags & IPN_TCPUDP and nat.outport else fin.data0
    nf_nat_ipv4_manip_pkt(pkt, 0, fin.plen, NF_NAT_MANIP_SRC, nat.outip, port)
    if nat.mssclamp and fin.p == IPPROTO_TCP and fin.tcp_flags & TH_SYN:
        nat_mssclamp(pkt, fin, nat.mssclamp)


def rewrite_in(pkt: WBuffer, fin: PacketInfo, nat: NatSession, nflags: int) -> None:
    """fr_natin()'s rewrite of a packet arriving: the destination becomes the inside address."""
    if not _whole_l4(fin) or fin.p not in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP):
        ip_set_daddr(pkt, 0, nat.inip)
        return
    if fin.p == IPPROTO_ICMP:
        port = nat.inport if nflags & IPN_ICMPQUERY and nat.inport else fin.data1
    else:
        port = nat.inport if nflags & IPN_TCPUDP and nat.inport else fin.data1
    nf_nat_ipv4_manip_pkt(pkt, 0, fin.plen, NF_NAT_MANIP_DST, nat.inip, port)
    if nat.mssclamp and fin.p == IPPROTO_TCP and fin.tcp_flags & TH_SYN:
        nat_mssclamp(pkt, fin, nat.mssclamp)


def rewrite_icmperr_out(pkt: WBuffer, nat: NatSession) -> None:
    """fr_natout() with IPN_ICMPERR: the outer source only, and the header checksum."""
    ip_set_saddr(pkt, 0, nat.outip)


def rewrite_icmperr_in(pkt: WBuffer, nat: NatSession) -> None:
    """fr_natin() with IPN_ICMPERR: the outer destination only."""
    ip_set_daddr(pkt, 0, nat.inip)


def nat_mssclamp(pkt: WBuffer, fin: PacketInfo, maxmss: int) -> int:
    """nat_mssclamp(): lower an MSS option above `maxmss`.  Returns the MSS now
    in the packet (0 when there is no MSS option)."""
    off = fin.hlen
    t = _TCPH.unpack_from(pkt, off)
    hlen = (t[4] >> 12) << 2
    if hlen <= 20 or off + hlen > fin.plen:
        return 0
    cp, ep = off + 20, off + hlen
    found = 0
    while cp < ep:
        opt = pkt[cp]
        if opt == TCPOPT_EOL:
            break
        if opt == TCPOPT_NOP:
            cp += 1
            continue
        if cp + 1 >= ep:
            break
        advance = pkt[cp + 1]
        if cp + advance > ep or advance <= 0:
            break
        if opt == TCPOPT_MSS and advance == 4:
            mss = pkt[cp + 2] << 8 | pkt[cp + 3]
            found = mss
            if mss > maxmss:
                tcp = TCP(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], off, hlen, t[4] & 0x1FF, fin.dlen)
                tcp_set_mss(pkt, tcp, cp, maxmss)
                found = maxmss
        cp += advance
    return found
