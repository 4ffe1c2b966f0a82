"""Choosing the translation of a new session: nat_newmap() and nat_newrdr()
(IP Filter 4.1.x ip_nat.c), in host byte order.

nat_newmap(), for packets leaving by a map/bimap/map-block rule, loops until
the tuple as seen from outside (other end, new address, new port) is not in
use (nat_inlookup() finds nothing), trying on each turn:

* bimap with equal masks: the same host bits in the outside block (1:1);
* map-block: address = outside base + (inside host bits / in_ippip), port =
  1024 + in_ppip * (inside host bits % in_ippip) + (sport + turn) % in_ppip,
  so every inside host owns in_ppip ports of one outside address, always the
  same ones; at most in_ppip turns;
* 0/32: the interface's address now (one turn only);
* 0/0: the source address unchanged (one turn);
* otherwise in_nip, the rule's next address.  On the first turn the host map
  (nat_hostmap()) gives the address this (source, destination) pair already
  has, else records in_nip for it; in_nip only moves on when a tuple is taken
  (for rules without ports) or when the port range wraps;
* ports: `portmap auto` as map-block's arithmetic on in_nip; `portmap a:b`
  the next port in_pnext (`sequential`, or IP Filter 4.1.2x's random pick
  when a random source is given), wrapping to a and moving in_nip on; the
  source port otherwise.

It gives up (-1, no translation) when map-block's ports are used up, when a
/32, 0/32 or 0/0 target collides, when `portmap auto` has tried in_space
tuples, or when the port/address search comes back to where it started.

nat_newrdr(), for packets arriving by an rdr/bimap rule: the new destination
is the rule's address (`a,b`: in_nip alternating between the two; 0/32: the
interface's address; bimap: 1:1), the new port `port p` (shifted along a
`port p-q` range unless `port = p`), and it fails if that inside tuple is
already taken (nat_outlookup()).  It returns whether a round-robin rule may
move to the end of its list: not when the `a,b` alternation just used `a`.

`icmpidmap`: the ICMP ids are allocated like ports (the man page); IP Filter
4.1's nat_newmap() only does so for IPN_TCPUDPICMP packets, a set without
IPN_ICMPQUERY, so its kernel keeps the id and only uses it to keep tuples
unique.  Here the id is rewritten, as the manual describes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ipgate.nat.ipnat.hostmap import HostMap, HostMapTable
from ipgate.nat.ipnat.natrules import ActiveRule
from ipgate.nat.ipnat.pktinfo import PacketInfo
from ipgate.nat.ipnat.rule import (
    ALL_ONES,
    IPN_AUTOPORTMAP,
    IPN_FIXEDDPORT,
    IPN_ICMPQUERY,
    IPN_IPRANGE,
    IPN_ROUNDR,
    IPN_SEQUENTIAL,
    IPN_SPLIT,
    IPN_STICKY,
    IPN_TCPUDP,
    IPN_TCPUDPICMP,
    MAPBLK_MINPORT,
    NAT_BIMAP,
    NAT_MAPBLK,
)

if TYPE_CHECKING:
    from ipgate.nat.ipnat.session import NatSession


class Lookups(Protocol):
    """The two session-table lookups allocation checks uniqueness with."""

    def inlookup(self, ifname: str, p: int, src: int, dst: int, sport: int, dport: int) -> NatSession | None: ...

    def outlookup(self, ifname: str, p: int, src: int, dst: int, sport: int, dport: int) -> NatSession | None: ...


@dataclass(slots=True)
class NewMap:
    """What nat_newmap()/nat_newrdr() put into the new nat_t."""

    inip: int
    inport: int
    outip: int
    outport: int
    oip: int
    oport: int
    hostmap: HostMap | None
    rule: ActiveRule
    move: bool = False  # nat_newrdr()'s return 1: a round-robin rule may go to the end


@dataclass(slots=True)
class AllocContext:
    """What the allocators need besides the packet and the rule."""

    tables: Lookups
    hostmaps: HostMapTable
    ifaddr: Callable[[str], int | None]
    port_random: Callable[[], int] | None = None  # ipf_random(); None: sequential ports always


def packet_ports(fin: PacketInfo) -> tuple[int, int]:
    """nai_sport / nai_dport as nat_new() sets them: the ports, or the ICMP id twice."""
    if fin.nflags & IPN_TCPUDP:
        return fin.data0, fin.data1
    if fin.nflags & IPN_ICMPQUERY:
        return fin.data1, fin.data1
    return 0, 0


def _pool_size(np: ActiveRule) -> int:
    """How many addresses in_nip can take: a bound for the loops IP Filter does not bound."""
    if np.flags & IPN_IPRANGE:
        return max(1, np.outmsk - np.outip + 1)
    if np.outmsk in (ALL_ONES, 0):
        return 1
    return max(1, (~np.outmsk & ALL_ONES) - 1)


def _wrap_nip(np: ActiveRule) -> None:
    """The end of each turn: keep in_nip inside the range or the block
    (a block's network and broadcast addresses are never handed out)."""
    if np.flags & IPN_IPRANGE:
        if np.nip > np.outmsk:
            np.nip = np.outip
    elif np.outmsk != ALL_ONES and ((np.nip + 1) & np.outmsk) > np.outip:
        np.nip = (np.outip + 1) & ALL_ONES


def nat_newmap(ctx: AllocContext, np: ActiveRule, fin: PacketInfo, ifname: str) -> NewMap | None:
    """nat_newmap(): the outside address and port of a new map session, or None."""
    flags = fin.nflags
    sport, dport = packet_ports(fin)
    src, dst = fin.saddr, fin.daddr
    hostmaps = ctx.hostmaps
    st_ip, st_port = np.nip, np.pnext
    mapblk = bool(np.redir & NAT_MAPBLK)
    idmap = bool(flags & IPN_ICMPQUERY and np.flags & IPN_ICMPQUERY)
    portrange = np.pmax - np.pmin + 1 if np.pnext and np.pmax >= np.pmin else 1
    guard = _pool_size(np) * portrange + 2
    hm: HostMap | None = None
    l = 0  # noqa: E741  (the kernel's name for the turn)
    while True:
        port = 0
        in_ = np.nip
        if l == 0:
            hm = hostmaps.get(np, src, dst, in_, 0)
            if hm is not None:
                in_ = hm.mapip
        elif l == 1 and hm is not None:
            hostmaps.release(hm)
            hm = None
        if np.outmsk == ALL_ONES and np.pnext == 0 and l > 0:
            return None
        if np.redir == NAT_BIMAP and np.inmsk == np.outmsk:
            in_ = np.outip | (src & ~np.inmsk & ALL_ONES)
        elif mapblk:
            if l >= np.ppip or (l > 0 and not flags & IPN_TCPUDP):
                _release(hostmaps, hm)
                return None
            host = src & ~np.inmsk & ALL_ONES
            in_ = ((host // np.ippip) & ~np.outmsk & ALL_ONES) + np.outip
            if flags & IPN_TCPUDP and np.ppip:
                port = (sport + l) % np.ppip + np.ppip * (host % np.ippip) + MAPBLK_MINPORT
        elif np.outip == 0 and np.outmsk == ALL_ONES:
            a = ctx.ifaddr(ifname) if l == 0 else None
            if a is None:
                _release(hostmaps, hm)
                return None
            in_ = a
        elif np.outip == 0 and np.outmsk == 0:
            if l > 0:
                _release(hostmaps, hm)
                return None
            in_ = src
        elif np.outmsk != ALL_ONES and np.pnext == 0 and (l > 0 or hm is None):
            np.nip = (np.nip + 1) & ALL_ONES
        if flags & IPN_TCPUDP and not mapblk and np.flags & IPN_AUTOPORTMAP:
            if l > 0 and np.ppip and l % np.ppip == 0:
                if l > np.space:
                    _release(hostmaps, hm)
                    return None
                if l > np.ppip and np.outmsk != ALL_ONES:
                    np.nip = (np.nip + 1) & ALL_ONES
            if np.ppip:
                port = (sport + l % np.ppip) % np.ppip + np.ppip * (src % np.ippip) + MAPBLK_MINPORT
        elif not mapblk and (flags & IPN_TCPUDPICMP or idmap) and np.pnext != 0:
            if np.flags & IPN_SEQUENTIAL or ctx.port_random is None:
                port = np.pnext
            else:  # 4.1.2x: ipf_random() % (pmax - pmin) + pmin
                port = ctx.port_random() % max(1, np.pmax - np.pmin) + np.pmin
            np.pnext += 1
            if np.pnext > np.pmax:
                np.pnext = np.pmin
                if np.outmsk != ALL_ONES:
                    np.nip = (np.nip + 1) & ALL_ONES
        _wrap_nip(np)
        if port == 0 and flags & (IPN_TCPUDPICMP | IPN_ICMPQUERY):
            port = sport
        # The tuple as the outside sees it: taken already?
        if flags & IPN_TCPUDP:
            natl = ctx.tables.inlookup(ifname, fin.p, dst, in_, dport, port)
        elif flags & IPN_ICMPQUERY:
            natl = ctx.tables.inlookup(ifname, fin.p, dst, in_, 0, port)
        else:
            natl = ctx.tables.inlookup(ifname, fin.p, dst, in_, 0, 0)
        if natl is not None and np.pnext != 0 and st_port == np.pnext and np.nip != 0 and st_ip == np.nip:
            _release(hostmaps, hm)
            return None
        l += 1  # noqa: E741
        if natl is None:
            break
        if l > guard:  # IP Filter would go round for ever here
            _release(hostmaps, hm)
            return None
    if np.space > 0:
        np.space -= 1
    if hm is None:
        hm = hostmaps.get(np, src, dst, in_, 0)
    if flags & (IPN_TCPUDP | IPN_ICMPQUERY):
        return NewMap(src, sport, in_, port, dst, dport if flags & IPN_TCPUDP else 0, hm, np)
    return NewMap(src, 0, in_, 0, dst, 0, hm, np)


def _release(hostmaps: HostMapTable, hm: HostMap | None) -> None:
    """nat_new()'s badnat: the host map reference taken on the first turn goes."""
    if hm is not None:
        hostmaps.release(hm)


def nat_newrdr(ctx: AllocContext, np: ActiveRule, fin: PacketInfo, ifname: str,
               rule_of: Callable[[HostMap], ActiveRule | None]) -> NewMap | None:
    """nat_newrdr(): the inside address and port of a new rdr session, or None.
    `rule_of` says whether a sticky host map's rule is still loaded."""
    flags = fin.nflags
    sport, dport = packet_ports(fin)
    if flags & IPN_ICMPQUERY:
        sport = 0
    src, dst = fin.saddr, fin.daddr
    hostmaps = ctx.hostmaps
    move = True
    in_ = 0
    if np.flags & (IPN_ROUNDR | IPN_SPLIT) and np.flags & IPN_STICKY:
        hm = hostmaps.get(None, src, dst, 0, dport, create=False)
        if hm is not None:
            in_ = hm.mapip
            other = rule_of(hm)
            if other is not None:
                np = other
            move = False
            hostmaps.release(hm)
    if np.flags & IPN_SPLIT:
        in_ = np.nip
        hm = None
        if np.flags & (IPN_ROUNDR | IPN_STICKY) == IPN_STICKY:
            hm = hostmaps.get(None, src, dst, in_, dport, create=False)
            if hm is not None:
                in_ = hm.mapip
                move = False
        if hm is None or hm.ref == 1:
            if np.inip == in_:
                np.nip = np.inmsk  # `a,b` keeps b in in_inmsk
                move = False
            else:
                np.nip = np.inip
        if hm is not None:
            hostmaps.release(hm)
    elif np.inip == 0 and np.inmsk == ALL_ONES:
        a = ctx.ifaddr(ifname)
        if a is None:
            return None
        in_ = a
    elif np.inip == 0 and np.inmsk == 0:
        in_ = dst
    elif np.redir == NAT_BIMAP and np.inmsk == np.outmsk:
        in_ = np.inip | (dst & ~np.inmsk & ALL_ONES)
    else:
        in_ = np.inip
    if np.pnext == 0:
        nport = dport
    elif not np.flags & IPN_FIXEDDPORT and np.pmin != np.pmax:
        nport = (dport - np.pmin + np.pnext) & 0xFFFF
    else:
        nport = np.pnext
    if in_ == 0:
        if nport == dport:
            return None
        in_ = dst
    # The tuple as the inside sees it: taken already?
    if flags & IPN_TCPUDP:
        natl = ctx.tables.outlookup(ifname, fin.p, in_, src, nport, sport)
    elif flags & IPN_ICMPQUERY:
        natl = ctx.tables.outlookup(ifname, fin.p, in_, src, nport, 0)
    else:
        natl = ctx.tables.outlookup(ifname, fin.p, in_, src, 0, 0)
    if natl is not None:
        return None
    hm_new = hostmaps.get(np, src, dst, in_, dport) if np.flags & IPN_STICKY else None
    if flags & IPN_TCPUDP:
        return NewMap(in_, nport, dst, dport, src, sport, hm_new, np, move)
    if flags & IPN_ICMPQUERY:
        return NewMap(in_, nport, dst, dport, src, 0, hm_new, np, move)
    return NewMap(in_, 0, dst, 0, src, 0, hm_new, np, move)
