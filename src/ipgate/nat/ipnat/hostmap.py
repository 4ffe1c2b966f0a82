"""Host maps: IP Filter's memory of which outside address a (source,
destination) pair was given, so that later sessions between the same two
hosts get the same one (nat_hostmap() / fr_hostmapdel(), 4.1.x ip_nat.c;
hostmap_t in ip_nat.h).  `rdr ... sticky` uses the same table with the
destination port to keep a client on the server it first got.

Entries are reference counted: each session that uses one holds a reference,
and the entry goes when the last one does.  Lookups scan the entries of one
(source, destination) pair, newest first, as the kernel's hash chain does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipgate.nat.ipnat.natrules import ActiveRule


class HostMap:
    """hostmap_t."""

    __slots__ = ("rule", "src", "dst", "mapip", "port", "ref")

    def __init__(self, rule: ActiveRule | None, src: int, dst: int, mapip: int, port: int) -> None:
        self.rule = rule    # hm_ipnat
        self.src = src      # hm_srcip
        self.dst = dst      # hm_dstip
        self.mapip = mapip  # hm_mapip
        self.port = port    # hm_port
        self.ref = 1        # hm_ref


class HostMapTable:
    """ipf_hm_maptable."""

    def __init__(self) -> None:
        self._table: dict[tuple[int, int], list[HostMap]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._table.values())

    def __iter__(self) -> Iterator[HostMap]:
        for chain in self._table.values():
            yield from chain

    def get(self, rule: ActiveRule | None, src: int, dst: int, mapip: int, port: int,
            create: bool = True) -> HostMap | None:
        """nat_hostmap(): the entry for (src, dst) of this rule (any rule when
        None) and port (any port when 0), with one more reference; else a new
        one mapping to `mapip` when a rule is given (and `create`)."""
        chain = self._table.get((src, dst))
        if chain:
            for hm in reversed(chain):
                if (rule is None or rule is hm.rule) and (port == 0 or port == hm.port):
                    hm.ref += 1
                    return hm
        if rule is None or not create:
            return None
        hm = HostMap(rule, src, dst, mapip, port)
        self._table.setdefault((src, dst), []).append(hm)
        return hm

    def release(self, hm: HostMap) -> None:
        """fr_hostmapdel(): one reference less; the entry goes with the last."""
        hm.ref -= 1
        if hm.ref <= 0:
            chain = self._table.get((hm.src, hm.dst))
            if chain is not None and hm in chain:
                chain.remove(hm)
                if not chain:
                    del self._table[(hm.src, hm.dst)]

    def clear(self) -> None:
        self._table.clear()
