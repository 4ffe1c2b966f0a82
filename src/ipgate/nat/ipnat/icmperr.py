"""ICMP errors about NAT sessions: nat_icmperrorlookup() and nat_icmperror()
(IP Filter 4.1.x ip_nat.c).

An ICMP error quotes the packet it is about.  When that packet belonged to a
session, the quote shows the addresses and ports as they were on the wire
where the error was made, so they are put back as the receiver knows them:

* an error coming in (dir NAT_INBOUND) quotes a packet that left the box:
  its source is the outside address -> back to the inside one (and port);
* an error going out (NAT_OUTBOUND) quotes a packet that came in: its
  destination is the inside address -> to the outside one (and port).

IP Filter finds the session from the quote (reversed: the quoted destination
is the sender of the error's peer), requires the outer header to have no
options, the quote a whole IP header and, for TCP/UDP, 8 bytes of ports, and
the outer destination to be the quoted source.  It then rewrites the quoted
address, fixes the quoted IP checksum, the quoted port and the quoted
TCP/UDP checksum when the quote holds it (UDP: 8 bytes and not 0; TCP: 18
bytes), the quoted ICMP id of an echo, and makes up the difference in the
ICMP checksum of the error.  Here the error's checksum is brought up to date
the same way, incrementally over the bytes that changed, so a message that
was intact stays intact (and a damaged one stays damaged).  The outer
address is the caller's (fr_natin()/fr_natout() with IPN_ICMPERR).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ipgate.nat.ipnat.alloc import Lookups
from ipgate.nat.ipnat.pktinfo import ICMP_QUERY_TYPES, ICMPERR_ICMPHLEN, PacketInfo
from ipgate.nat.ipnat.session import NAT_INBOUND
from ipgate.packet.checksum import (
    csum_fold,
    csum_partial,
    csum_replace2,
    csum_replace4,
    udp_csum_replace2,
    udp_csum_replace4,
)
from ipgate.packet.ipv4 import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, WBuffer

if TYPE_CHECKING:
    from ipgate.nat.ipnat.session import NatSession

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_PORTS = struct.Struct("!HH")
ICMPERR_IPICMPHLEN = 20 + ICMPERR_ICMPHLEN


def nat_icmperrorlookup(tables: Lookups, fin: PacketInfo, pkt: WBuffer, ifname: str, dir: int) -> NatSession | None:
    """The session the quoted packet belongs to, or None (nat_icmperrorlookup())."""
    if fin.hlen != 20 or not fin.icmperr:
        return None
    oip = fin.hlen + ICMPERR_ICMPHLEN
    if fin.plen < oip + 20:
        return None
    minlen = (pkt[oip] & 0x0F) << 2
    if minlen < 20 or fin.plen < ICMPERR_IPICMPHLEN + minlen:
        return None
    osrc = _U32.unpack_from(pkt, oip + 12)[0]
    odst = _U32.unpack_from(pkt, oip + 16)[0]
    if fin.daddr != osrc:
        return None
    p = pkt[oip + 9]
    l4 = oip + minlen
    look = tables.inlookup if dir == NAT_INBOUND else tables.outlookup
    if p == IPPROTO_ICMP and fin.plen >= ICMPERR_IPICMPHLEN + minlen + 8 and pkt[l4] in ICMP_QUERY_TYPES:
        qid = _U16.unpack_from(pkt, l4 + 4)[0]
        # ICMPERR: the quoted id is compared with the side it was sent with
        if dir == NAT_INBOUND:
            return tables.inlookup(ifname, p, odst, osrc, 0, qid)
        return tables.outlookup(ifname, p, odst, osrc, qid, 0)
    if p in (IPPROTO_TCP, IPPROTO_UDP):
        if fin.plen < ICMPERR_IPICMPHLEN + minlen + 8:
            return None
        qsport, qdport = _PORTS.unpack_from(pkt, l4)
        return look(ifname, p, odst, osrc, qdport, qsport)
    return look(ifname, p, odst, osrc, 0, 0)


def nat_icmperror(tables: Lookups, fin: PacketInfo, pkt: WBuffer, ifname: str, dir: int) -> NatSession | None:
    """Find the session and rewrite the quoted packet (nat_icmperror()).  The
    outer header is left to the caller."""
    if fin.short or fin.off:
        return None
    nat = nat_icmperrorlookup(tables, fin, pkt, ifname, dir)
    if nat is None:
        return None
    icmp = fin.hlen
    end = fin.plen
    before = bytes(pkt[icmp + ICMPERR_ICMPHLEN:end])
    oip = icmp + ICMPERR_ICMPHLEN
    ohl = (pkt[oip] & 0x0F) << 2
    l4 = oip + ohl
    dlen = end - l4
    p = pkt[oip + 9]
    odst = _U32.unpack_from(pkt, oip + 16)[0] == nat.oip
    # Step 1: the quoted address, and the quoted header's checksum.
    aoff = oip + 12 if odst else oip + 16
    old_a = _U32.unpack_from(pkt, aoff)[0]
    new_a = nat.inip if odst else nat.outip
    _U32.pack_into(pkt, aoff, new_a)
    _U16.pack_into(pkt, oip + 10, csum_replace4(_U16.unpack_from(pkt, oip + 10)[0], old_a, new_a))
    # Step 2: the quoted port and, when quoted, the TCP/UDP checksum.
    if p in (IPPROTO_TCP, IPPROTO_UDP) and dlen >= 4:
        poff = l4 if odst else l4 + 2
        old_p = _U16.unpack_from(pkt, poff)[0]
        new_p = nat.inport if odst else nat.outport
        _U16.pack_into(pkt, poff, new_p)
        if p == IPPROTO_UDP and dlen >= 8:
            ck = _U16.unpack_from(pkt, l4 + 6)[0]
            ck = udp_csum_replace2(udp_csum_replace4(ck, old_a, new_a), old_p, new_p)
            _U16.pack_into(pkt, l4 + 6, ck)
        elif p == IPPROTO_TCP and dlen >= 18:
            ck = _U16.unpack_from(pkt, l4 + 16)[0]
            _U16.pack_into(pkt, l4 + 16, csum_replace2(csum_replace4(ck, old_a, new_a), old_p, new_p))
    elif p == IPPROTO_ICMP and dlen >= 8 and pkt[l4] in ICMP_QUERY_TYPES:
        old_id = _U16.unpack_from(pkt, l4 + 4)[0]
        new_id = nat.inport if odst else nat.outport
        if old_id != new_id:
            _U16.pack_into(pkt, l4 + 4, new_id)
            _U16.pack_into(pkt, l4 + 2, csum_replace2(_U16.unpack_from(pkt, l4 + 2)[0], old_id, new_id))
    # The error's own checksum covers all of the above: the difference goes in.
    after = bytes(pkt[icmp + ICMPERR_ICMPHLEN:end])
    if after != before:
        ck = _U16.unpack_from(pkt, icmp + 2)[0]
        s = csum_fold((~ck & 0xFFFF) + (~csum_partial(before) & 0xFFFF) + csum_partial(after))
        _U16.pack_into(pkt, icmp + 2, ~s & 0xFFFF)
    return nat
