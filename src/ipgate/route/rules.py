"""The routing policy database (net/core/fib_rules.c, net/ipv4/fib_rules.c).

Theory of operation.  Rules are kept in priority order (a new rule goes after
every rule of the same priority, as fib_nl_newrule() links it).  A lookup walks
them in that order: a matching `lookup` rule asks its table, and the walk goes on
when the table has nothing (-EAGAIN, including `throw` routes) or when the
result is suppressed (`suppress_prefixlength`); `goto` jumps forward, `nop`
does nothing; blackhole/unreachable/prohibit end the walk with an error.

The kernel scans every rule.  With thousands of rules that is the cost of a
decision, so `RuleIndex` files each rule under its most selective selector
(source prefix, fwmark, iif, destination prefix) and a lookup only visits the
rules whose selector can match, in the same order: the answer is the same.
"""

from __future__ import annotations

import bisect
import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from ipgate.errors import NetlinkError
from ipgate.inet import IPTOS_RT_MASK, MASKS
from ipgate.route.fib import Generation

FR_ACT_TO_TBL = 1
FR_ACT_GOTO = 2
FR_ACT_NOP = 3
FR_ACT_BLACKHOLE = 6
FR_ACT_UNREACHABLE = 7
FR_ACT_PROHIBIT = 8
FR_ACT_NAT = 10  # historical RTN_NAT action ("ip rule add ... nat ADDR")

FIB_RULE_INVERT = 0x2


@dataclass(slots=True)
class FibRule:
    """One rule (struct fib_rule + struct fib4_rule)."""

    pref: int = 0
    action: int = FR_ACT_TO_TBL
    table: int = 0
    invert: bool = False
    src: int = 0
    src_len: int = 0
    dst: int = 0
    dst_len: int = 0
    tos: int = 0
    mark: int = 0
    mark_mask: int = 0
    iifname: str = ""
    oifname: str = ""
    ip_proto: int = 0
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None
    suppress_prefixlen: int = -1
    target: int = 0  # goto target priority
    nat_addr: int = 0
    protocol: int = 0
    # Resolved device indexes; -1 = named device absent ("[detached]").
    iifindex: int = 0
    oifindex: int = 0

    def key(self) -> tuple[object, ...]:
        """What rule_exists()/rule_find() compare: every selector and action."""
        return (self.pref, self.action, self.table, self.invert, self.src, self.src_len,
                self.dst, self.dst_len, self.tos, self.mark, self.mark_mask, self.iifname,
                self.oifname, self.ip_proto, self.sport, self.dport,
                self.suppress_prefixlen, self.target, self.nat_addr)


class Flow(NamedTuple):
    """The lookup key (struct flowi4); a NamedTuple so that it is cheap and hashable."""

    daddr: int
    saddr: int = 0
    iif: int = 0
    oif: int = 0
    mark: int = 0
    tos: int = 0
    proto: int = 0
    sport: int = 0
    dport: int = 0
    scope: int = 0


def rule_match(r: FibRule, fl: Flow) -> bool:
    """fib_rule_match() + fib4_rule_match()."""
    ok = True
    if r.iifindex and r.iifindex != fl.iif:
        ok = False
    elif r.oifindex and r.oifindex != fl.oif:
        ok = False
    elif (r.mark ^ fl.mark) & r.mark_mask:
        ok = False
    elif (fl.saddr ^ r.src) & MASKS[r.src_len] or (fl.daddr ^ r.dst) & MASKS[r.dst_len]:
        ok = False
    elif r.tos and r.tos != fl.tos & IPTOS_RT_MASK:
        ok = False
    elif r.ip_proto and r.ip_proto != fl.proto:
        ok = False
    elif r.sport is not None and not r.sport[0] <= fl.sport <= r.sport[1]:
        ok = False
    elif r.dport is not None and not r.dport[0] <= fl.dport <= r.dport[1]:
        ok = False
    return ok != r.invert


# Exact-value selectors a rule can be filed under, most selective first after
# the prefix and mark ones: (name, value in the rule or None, value in the flow).
_EXACT: tuple[tuple[str, Callable[[FibRule], int | None], Callable[[Flow], int]], ...] = (
    ("iif", lambda r: r.iifindex or None, lambda f: f.iif),
    ("oif", lambda r: r.oifindex or None, lambda f: f.oif),
    ("dport", lambda r: r.dport[0] if r.dport and r.dport[0] == r.dport[1] else None, lambda f: f.dport),
    ("sport", lambda r: r.sport[0] if r.sport and r.sport[0] == r.sport[1] else None, lambda f: f.sport),
    ("proto", lambda r: r.ip_proto or None, lambda f: f.proto),
    ("tos", lambda r: r.tos or None, lambda f: f.tos & IPTOS_RT_MASK),
)


def _trivial(r: FibRule) -> bool:
    return not (r.invert or r.iifname or r.oifname or r.mark_mask or r.src_len or r.dst_len or r.tos
                or r.ip_proto or r.sport is not None or r.dport is not None)


@dataclass(slots=True)
class RuleIndex:
    """Candidate rules per selector, as sorted lists of positions in the rule list.

    Each rule is filed once, under its most selective selector; a rule with no
    usable selector (or with `not`) is always a candidate.
    """

    always: list[int] = field(default_factory=list)
    trivial: frozenset[int] = frozenset()  # rules without any selector: they always match
    only_always: bool = True  # no rule is filed under a selector
    by_src: dict[int, dict[int, list[int]]] = field(default_factory=dict)
    by_dst: dict[int, dict[int, list[int]]] = field(default_factory=dict)
    by_mark: dict[int, dict[int, list[int]]] = field(default_factory=dict)
    by_exact: list[dict[int, list[int]]] = field(default_factory=lambda: [{} for _ in _EXACT])

    @classmethod
    def build(cls, rules: list[FibRule]) -> RuleIndex:
        ix = cls()
        ix.trivial = frozenset(pos for pos, r in enumerate(rules) if _trivial(r))
        for pos, r in enumerate(rules):
            if r.invert:
                ix.always.append(pos)
            elif r.src_len:
                ix.by_src.setdefault(r.src_len, {}).setdefault(r.src & MASKS[r.src_len], []).append(pos)
            elif r.mark_mask:
                ix.by_mark.setdefault(r.mark_mask, {}).setdefault(r.mark & r.mark_mask, []).append(pos)
            elif r.dst_len:
                ix.by_dst.setdefault(r.dst_len, {}).setdefault(r.dst & MASKS[r.dst_len], []).append(pos)
            else:
                for i, (_name, of_rule, _of_flow) in enumerate(_EXACT):
                    v = of_rule(r)
                    if v is not None:
                        ix.by_exact[i].setdefault(v, []).append(pos)
                        break
                else:
                    ix.always.append(pos)
        ix.only_always = not (ix.by_src or ix.by_mark or ix.by_dst or any(ix.by_exact))
        return ix

    def candidates(self, fl: Flow) -> list[int]:
        if self.only_always:
            return self.always
        lists = [self.always]
        for plen, d in self.by_src.items():
            hit = d.get(fl.saddr & MASKS[plen])
            if hit:
                lists.append(hit)
        for mask, d in self.by_mark.items():
            hit = d.get(fl.mark & mask)  # keys are mark & mask
            if hit:
                lists.append(hit)
        for plen, d in self.by_dst.items():
            hit = d.get(fl.daddr & MASKS[plen])
            if hit:
                lists.append(hit)
        for i, (_name, _of_rule, of_flow) in enumerate(_EXACT):
            d2 = self.by_exact[i]
            if d2:
                hit = d2.get(of_flow(fl))
                if hit:
                    lists.append(hit)
        if len(lists) == 1:
            return self.always
        out: list[int] = []
        for lst in lists:
            out.extend(lst)
        out.sort()
        return out


class RuleSet:
    """The IPv4 rule list (fib4_rules_ops) with the default rules of a new netns."""

    def __init__(self, gen: Generation | None = None) -> None:
        self.gen = gen if gen is not None else Generation()
        self.rules: list[FibRule] = []
        self._index: RuleIndex | None = None
        self._keys: set[tuple[object, ...]] | None = None  # rule_exists() in O(1)
        self.reset()

    def reset(self) -> None:
        from ipgate.inet import RT_TABLE_DEFAULT, RT_TABLE_LOCAL, RT_TABLE_MAIN

        # fib_default_rules_init()
        self.rules = [
            FibRule(pref=0, table=RT_TABLE_LOCAL),
            FibRule(pref=0x7FFE, table=RT_TABLE_MAIN),
            FibRule(pref=0x7FFF, table=RT_TABLE_DEFAULT),
        ]
        self._changed()
        self._keys = None

    def _changed(self) -> None:
        self._index = None
        self.gen.bump()

    @property
    def index(self) -> RuleIndex:
        if self._index is None:
            self._index = RuleIndex.build(self.rules)
        return self._index

    def default_pref(self) -> int:
        """fib_default_rule_pref(): one below the second rule's priority."""
        if len(self.rules) >= 2 and self.rules[1].pref:
            return self.rules[1].pref - 1
        return 0

    def add(self, rule: FibRule) -> None:
        """fib_nl_newrule() with NLM_F_EXCL, as `ip rule add` sends it."""
        if rule.action == FR_ACT_GOTO:
            if rule.target <= rule.pref:
                raise NetlinkError(errno.EINVAL, "Backward goto not supported")
        key = rule.key()
        if self._keys is None:
            self._keys = {r.key() for r in self.rules}
        if key in self._keys:
            raise NetlinkError(errno.EEXIST)
        self.rules.insert(bisect.bisect_right(self.rules, rule.pref, key=lambda r: r.pref), rule)
        self._keys.add(key)
        self._changed()

    def delete(self, m: FibRule, user_priority: bool) -> None:
        """fib_nl_delrule(): rule_find() treats every unset attribute as a wildcard."""
        for i, r in enumerate(self.rules):
            if (
                (m.action and r.action != m.action)
                or (m.table and r.table != m.table)
                or (user_priority and r.pref != m.pref)
                or (m.iifname and r.iifname != m.iifname)
                or (m.oifname and r.oifname != m.oifname)
                or (m.mark and r.mark != m.mark)
                or (m.suppress_prefixlen != -1 and r.suppress_prefixlen != m.suppress_prefixlen)
                or (m.mark_mask and r.mark_mask != m.mark_mask)
                or (m.ip_proto and r.ip_proto != m.ip_proto)
                or (m.sport is not None and r.sport != m.sport)
                or (m.dport is not None and r.dport != m.dport)
                # fib4_rule_compare()
                or (m.src_len and (r.src_len != m.src_len or r.src != m.src))
                or (m.dst_len and (r.dst_len != m.dst_len or r.dst != m.dst))
                or (m.tos and r.tos != m.tos)
            ):
                continue
            del self.rules[i]
            self._changed()
            self._keys = None
            return
        raise NetlinkError(errno.ENOENT)

    def flush(self) -> None:
        """`ip rule flush`: iproute2 deletes every rule it sees with a priority; rule 0 has none."""
        self.rules = [r for r in self.rules if r.pref == 0]
        self._changed()

    def resolve_devices(self, ifindex_of: dict[str, int]) -> None:
        """Re-bind iif/oif names after devices come and go (fib_rules_event)."""
        for r in self.rules:
            if r.iifname:
                r.iifindex = ifindex_of.get(r.iifname, -1)
            if r.oifname:
                r.oifindex = ifindex_of.get(r.oifname, -1)
        self._changed()

    def target_index(self, pref: int) -> int:
        """Position of the goto target: the first rule with that priority, or -1."""
        i = bisect.bisect_left(self.rules, pref, key=lambda r: r.pref)
        return i if i < len(self.rules) and self.rules[i].pref == pref else -1
