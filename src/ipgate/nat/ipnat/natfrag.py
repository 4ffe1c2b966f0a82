"""The NAT fragment cache: fr_nat_newfrag() / fr_nat_knownfrag() (IP Filter
4.1.x ip_frag.c, the ipfr_nattab table).

IP Filter does not reassemble.  When a fragment is translated (fr_natout()/
fr_natin() with FI_FRAG; in practice the first fragment, which carries the
ports and makes or finds the session) it records the datagram by what all
its fragments share, as they arrived: interface, protocol, IP id, TOS,
source and destination.  Later fragments of that datagram then find the
session through this cache (fr_checknatout()/fr_checknatin() ask it before
the session tables) and get the same address translation; fragment bodies
carry no ports, so only the addresses change.

Entries live fr_ipfrttl ticks (60 s).  fr_fraglookup() refuses a second
offset-0 fragment (ifs_retrans0), and when the fragment that completes the
datagram in order arrives (the expected offset, no MF) the entry dies at the
next tick: it still translates that fragment, not later ones.  At most
IPFT_SIZE (257) datagrams are remembered.  `frag` in a rule is printed by
ipnat but the 4.1 kernel does not test IPN_FRAG: every translated fragment is
cached.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from ipgate.nat.ipnat.pktinfo import PacketInfo

if TYPE_CHECKING:
    from ipgate.nat.ipnat.session import NatSession

IPFT_SIZE = 257  # ip_frag.h

FragKey = tuple[str, int, int, int, int, int]


class _Frag:
    """ipfr_t, the parts NAT uses."""

    __slots__ = ("nat", "ttl", "seen0", "next_off")

    def __init__(self, nat: NatSession, ttl: int, seen0: bool, next_off: int) -> None:
        self.nat: NatSession | None = nat  # ipfr_data
        self.ttl = ttl                      # ipfr_ttl, in ticks
        self.seen0 = seen0                  # ipfr_seen0
        self.next_off = next_off            # ipfr_off: where the next fragment should start (8-byte units)


class NatFragCache:
    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self._tab: OrderedDict[FragKey, _Frag] = OrderedDict()
        self.stats_new = 0
        self.stats_hits = 0
        self.stats_exists = 0
        self.stats_retrans0 = 0

    def __len__(self) -> int:
        return len(self._tab)

    @staticmethod
    def key(ifname: str, fin: PacketInfo) -> FragKey:
        return (ifname, fin.p, fin.ip_id, fin.tos, fin.saddr, fin.daddr)

    def expire(self, ticks: int) -> None:
        """fr_fragexpire(): entries whose time has come."""
        tab = self._tab
        while tab:
            k, f = next(iter(tab.items()))
            if f.ttl > ticks:
                break  # finished datagrams (ttl cut short) go when they reach the head
            del tab[k]

    def new(self, ifname: str, fin: PacketInfo, nat: NatSession, ticks: int) -> bool:
        """fr_nat_newfrag() / ipfr_newfrag()."""
        if not fin.frag or len(self._tab) >= IPFT_SIZE:
            return False
        k = self.key(ifname, fin)
        if k in self._tab:
            self.stats_exists += 1
            return False
        self._tab[k] = _Frag(nat, ticks + self.ttl, fin.off == 0, fin.off + (fin.dlen >> 3))
        self.stats_new += 1
        return True

    def known(self, ifname: str, fin: PacketInfo, ticks: int) -> NatSession | None:
        """fr_nat_knownfrag() / fr_fraglookup()."""
        if not fin.frag or not self._tab:
            return None
        k = self.key(ifname, fin)
        f = self._tab.get(k)
        if f is None or f.ttl <= ticks or fin.short:
            return None
        if f.seen0:
            if fin.off == 0:
                self.stats_retrans0 += 1
                return None
        elif fin.off == 0:
            f.seen0 = True
        nat = f.nat
        if fin.off == f.next_off:
            if not fin.more_frags:
                f.ttl = ticks + 1
                f.nat = None  # the last fragment: this one is translated, none after it
            f.next_off = fin.off + (fin.dlen >> 3)
        self.stats_hits += 1
        if nat is not None and not nat.alive:
            return None  # fr_forgetnat(): the session went
        return nat

    def clear(self) -> None:
        self._tab.clear()
