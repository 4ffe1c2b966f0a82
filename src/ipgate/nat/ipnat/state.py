"""What /dev/ipnat holds: the loaded rules, and the hook to the session table.

`IpnatState` keeps the rules in nat_list order, as fr_nat_ioctl() keeps
them: `add` is SIOCADNAT (the user flags only, addresses masked, duplicates
refused with EEXIST, an unknown proxy with ENOENT, `age 0/N` with EINVAL;
the stored copy loses IPN_NOTDST when it redirects and IPN_NOTSRC when it
maps, as nat_siocaddnat() does), `remove` is SIOCRMNAT (ESRCH when no rule
compares equal), `clear` is SIOCIPFFL 1 (nat_clearlist(): the number of
rules) and `flush` is SIOCIPFFL 0 (the session table's nat_flushtable()).
`load` and `unload` apply a whole file all-or-nothing.  Every change bumps
`generation`; the engine can rebuild its own rule objects from `rules` (the
same `NatRule` objects stay in the list while they are loaded).

Sessions are not kept here.  The session table (written with the engine)
plugs into `sessions`; `ipnat -l/-s/-F` only need the small protocols
below.  `NatSessionView` is what printactivenat() prints of a `nat_t`;
`NatSessionDetail` adds what `-lv` prints, and a table that is also a
`NatHostMaps` has its host mappings listed by `-lv`.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from ipgate.nat.ipnat.rule import (
    IPN_IPRANGE,
    IPN_NOTDST,
    IPN_NOTSRC,
    IPN_SPLIT,
    IPN_USERFLAGS,
    NAT_MAP,
    NAT_MAPBLK,
    NAT_REDIRECT,
    NatRule,
)

NAT_TABLE_SZ = 2047     # ipf_nattable_sz: buckets of each session hash table (ip_nat.h)
IPF_TCP_NSTATES = 11    # IP Filter's TCP states (ip_fil.h), one timeout queue each
IPPROTO_TCP = 6

# Kernel proxies (ip_proxy.c ap_proxies[]) this gateway has: (label, protocol).
DEFAULT_PROXIES = frozenset({("ftp", IPPROTO_TCP)})


class NatSessionView(Protocol):
    """One `nat_t` as `ipnat -l` prints it (struct nat field names)."""

    @property
    def redir(self) -> int: ...    # the rule's in_redir: NAT_MAP, NAT_REDIRECT, NAT_BIMAP, NAT_MAPBLK
    @property
    def flags(self) -> int: ...    # nat_flags: with IPN_TCP/IPN_UDP the ports are printed
    @property
    def inip(self) -> int: ...     # the inside address (real)
    @property
    def inport(self) -> int: ...
    @property
    def outip(self) -> int: ...    # how it is seen outside
    @property
    def outport(self) -> int: ...
    @property
    def oip(self) -> int: ...      # the other end, never rewritten
    @property
    def oport(self) -> int: ...


@runtime_checkable
class NatSessionDetail(Protocol):
    """The extra `nat_t` fields `ipnat -lv` prints (sumd/ipsumd are read if present, else 0)."""

    @property
    def p(self) -> int: ...
    @property
    def use(self) -> int: ...
    @property
    def hv(self) -> tuple[int, int]: ...
    @property
    def ifnames(self) -> tuple[str, str]: ...
    @property
    def pkts(self) -> Sequence[int]: ...
    @property
    def bytes(self) -> Sequence[int]: ...
    def age(self, ticks: int) -> int: ...  # ticks left to live


@dataclass(frozen=True, slots=True)
class NatStats:
    """The natstat_t counters `ipnat -s` prints."""

    mapped: tuple[int, int] = (0, 0)  # ns_mapped[0] in, [1] out: packets translated
    added: int = 0                    # ns_added
    expired: int = 0                  # ns_expire
    memfail: int = 0                  # ns_memfail (table full)
    badnat: int = 0                   # ns_badnat
    inuse: int = 0                    # ns_inuse: sessions now
    orphans: int = 0                  # ns_orphans: sessions whose rule was removed
    wilds: int = 0                    # ns_wilds
    buckets: tuple[int, ...] = (0,) * NAT_TABLE_SZ   # ns_bucketlen[0]: sessions per inside-hash bucket
    tcp_states: tuple[int, ...] = (0,) * IPF_TCP_NSTATES  # sessions per TCP timeout queue
    rule_hits: tuple[int, ...] = ()   # in_hits of each rule, in `rules` order (`ipnat -h`)


class HostMapView(Protocol):
    """One hostmap_t as `ipnat -lv` prints it (printhostmap())."""

    @property
    def src(self) -> int: ...     # hm_srcip
    @property
    def dst(self) -> int: ...     # hm_dstip
    @property
    def mapip(self) -> int: ...   # hm_mapip
    @property
    def ref(self) -> int: ...     # hm_ref


@runtime_checkable
class NatHostMaps(Protocol):
    """A session table that also shows its host mappings (optional)."""

    def hostmaps(self) -> Iterable[HostMapView]: ...


class NatSessionTable(Protocol):
    """The hook the session table provides."""

    def sessions(self) -> Iterable[NatSessionView]: ...  # nat_instances order: newest first
    def flush(self) -> int: ...                          # nat_flushtable(): remove all, say how many
    def stats(self) -> NatStats: ...
    def now(self) -> int: ...                            # fr_ticks, for `-lv` ttl


class NatIoctlError(Exception):
    """An ioctl on /dev/ipnat refused, with the rule it was about."""

    def __init__(self, code: int, rule: NatRule) -> None:
        super().__init__(errno.errorcode.get(code, str(code)))
        self.errno = code
        self.rule = rule


def kernel_form(r: NatRule) -> NatRule:
    """fr_nat_ioctl()'s normalisation of an incoming rule: user flags only, addresses masked."""
    in_addr, out_addr = r.in_addr, r.out_addr
    if not r.redir & NAT_MAPBLK:
        if not r.flags & IPN_SPLIT:
            in_addr &= r.in_mask
        if not r.flags & IPN_IPRANGE:
            out_addr &= r.out_mask
    return replace(r, flags=r.flags & IPN_USERFLAGS, in_addr=in_addr, out_addr=out_addr)


@dataclass
class IpnatState:
    rules: list[NatRule] = field(default_factory=list)
    sessions: NatSessionTable | None = None
    proxies: frozenset[tuple[str, int]] = DEFAULT_PROXIES
    generation: int = 0

    # -- the ioctls ----------------------------------------------------------
    def add(self, rule: NatRule) -> None:
        """SIOCADNAT."""
        self.rules.append(self._checked_add(rule, self.rules))
        self.generation += 1

    def _checked_add(self, rule: NatRule, rules: Sequence[NatRule]) -> NatRule:
        r = kernel_form(rule)
        if any(r.same_as(old) for old in rules):
            raise NatIoctlError(errno.EEXIST, rule)
        if r.plabel and (r.plabel, r.proto) not in self.proxies:  # nat_resolverule(): appr_lookup()
            raise NatIoctlError(errno.ENOENT, rule)
        if r.age[0] == 0 and r.age[1] != 0:
            raise NatIoctlError(errno.EINVAL, rule)
        flags = r.flags
        if r.redir & NAT_REDIRECT:
            flags &= ~IPN_NOTDST
        if r.redir & (NAT_MAP | NAT_MAPBLK):
            flags &= ~IPN_NOTSRC
        return replace(r, flags=flags)

    def remove(self, rule: NatRule) -> None:
        """SIOCRMNAT."""
        self._checked_remove(rule, self.rules)
        self.generation += 1

    @staticmethod
    def _checked_remove(rule: NatRule, rules: list[NatRule]) -> None:
        r = kernel_form(rule)
        for i, old in enumerate(rules):
            if r.same_as(old):
                del rules[i]
                return
        raise NatIoctlError(errno.ESRCH, rule)

    def clear(self) -> int:
        """SIOCIPFFL 1 (nat_clearlist()): drop every rule, return how many there were."""
        n = len(self.rules)
        self.rules.clear()
        self.generation += 1
        return n

    def flush(self) -> int:
        """SIOCIPFFL 0 (nat_flushtable()): drop every session."""
        return self.sessions.flush() if self.sessions is not None else 0

    # -- whole files -----------------------------------------------------------
    def load(self, rules: Sequence[NatRule]) -> list[NatIoctlError]:
        """Add every rule or none; the refusals, in file order (empty when all were added)."""
        work = list(self.rules)
        errors = []
        for r in rules:
            try:
                work.append(self._checked_add(r, work))
            except NatIoctlError as e:
                errors.append(e)
        if not errors:
            self.rules[:] = work
            self.generation += 1
        return errors

    def unload(self, rules: Sequence[NatRule]) -> list[NatIoctlError]:
        """Remove every rule or none (`ipnat -r -f FILE`)."""
        work = list(self.rules)
        errors = []
        for r in rules:
            try:
                self._checked_remove(r, work)
            except NatIoctlError as e:
                errors.append(e)
        if not errors:
            self.rules[:] = work
            self.generation += 1
        return errors

    # -- what the tool reads ---------------------------------------------------
    def stats(self) -> NatStats:
        return self.sessions.stats() if self.sessions is not None else NatStats()

    def session_list(self) -> list[NatSessionView]:
        return list(self.sessions.sessions()) if self.sessions is not None else []

    def hostmap_list(self) -> list[HostMapView]:
        return list(self.sessions.hostmaps()) if isinstance(self.sessions, NatHostMaps) else []

    def now(self) -> int:
        return self.sessions.now() if self.sessions is not None else 0
