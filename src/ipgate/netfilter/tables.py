"""Tables and chains, changed the way libiptc and the kernel's ip_tables change them.

Theory of operation (iptables-legacy): a command takes a private copy of one
table (`Netfilter.init`, libiptc's iptc_init), edits it with libiptc-like
calls (`Handle.append`, `Handle.delete_chain`, ...) that can refuse with an
errno, and commits it (`Netfilter.commit`, iptc_commit + the kernel's
do_replace).  The kernel re-checks the *whole* table on every replace
(translate_table): loops reachable from a hook (ELOOP), then every match's
and target's checkentry with the set of hooks the rule is reachable from
(mark_source_chains' comefrom).  Only a table that passes replaces the
current one, so every command is all-or-nothing.

Rules are frozen and shared between the old and the new table, so their
counters survive edits as the kernel's do (libiptc maps them over).

A fresh namespace has no tables: a table exists from the first command that
touches it, and iptables-save lists tables newest first, as
/proc/net/ip_tables_names does.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field, replace

from ipgate.netfilter.names import Resolver
from ipgate.netfilter.rule import HOOK_OF_CHAIN, CheckContext, Counters, Jump, Rule, Standard

TABLE_CHAINS: dict[str, tuple[str, ...]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
STANDARD_VERDICTS = ("ACCEPT", "DROP", "QUEUE", "RETURN")
XT_EXTENSION_MAXNAMELEN = 29

# libiptc's iptc_strerror() table: (function or None for any, errno) -> text
_IPTC_ERRORS: tuple[tuple[str | None, int, str], ...] = (
    ("TC_INIT", errno.EPERM, "Permission denied (you must be root)"),
    ("TC_INIT", errno.EINVAL, "Module is wrong version"),
    ("TC_INIT", errno.ENOENT, "Table does not exist (do you need to insmod?)"),
    ("TC_DELETE_CHAIN", errno.ENOTEMPTY, "Chain is not empty"),
    ("TC_DELETE_CHAIN", errno.EINVAL, "Can't delete built-in chain"),
    ("TC_DELETE_CHAIN", errno.EMLINK, "Can't delete chain with references left"),
    ("TC_CREATE_CHAIN", errno.EEXIST, "Chain already exists"),
    ("TC_INSERT_ENTRY", errno.E2BIG, "Index of insertion too big"),
    ("TC_REPLACE_ENTRY", errno.E2BIG, "Index of replacement too big"),
    ("TC_DELETE_NUM_ENTRY", errno.E2BIG, "Index of deletion too big"),
    ("TC_READ_COUNTER", errno.E2BIG, "Index of counter too big"),
    ("TC_ZERO_COUNTER", errno.E2BIG, "Index of counter too big"),
    ("TC_INSERT_ENTRY", errno.ELOOP, "Loop found in table"),
    ("TC_INSERT_ENTRY", errno.EINVAL, "Target problem"),
    ("TC_DELETE_ENTRY", errno.ENOENT, "Bad rule (does a matching rule exist in that chain?)"),
    ("TC_SET_POLICY", errno.ENOENT, "Bad built-in chain name"),
    ("TC_SET_POLICY", errno.EINVAL, "Bad policy name"),
    ("TC_CHECK_ENTRY", errno.ENOENT, "Bad rule (does a matching rule exist in that chain?)"),
    (None, 0, "Incompatible with this kernel"),
    (None, errno.ENOPROTOOPT, "iptables who? (do you need to insmod?)"),
    (None, errno.ENOSYS, "Will be implemented real soon.  I promise ;)"),
    (None, errno.ENOMEM, "Memory allocation problem"),
    (None, errno.ENOENT, "No chain/target/match by that name"),
)


def iptc_strerror(err: int, fn: str | None) -> str:
    for f, e, text in _IPTC_ERRORS:
        if (f is None or f == fn) and e == err:
            return text
    return os.strerror(err)


class IptcError(Exception):
    """A libiptc call or the kernel's table replace refused: an errno and the libiptc function."""

    def __init__(self, err: int, fn: str | None) -> None:
        self.errno = err
        self.fn = fn
        super().__init__(iptc_strerror(err, fn))

    @property
    def text(self) -> str:
        return iptc_strerror(self.errno, self.fn)


@dataclass(slots=True)
class Chain:
    """A built-in chain (with a policy and its counters) or a user chain."""

    name: str
    rules: list[Rule] = field(default_factory=list)
    policy: str | None = None  # "ACCEPT" or "DROP" for built-in chains, None for user chains
    counters: Counters = field(default_factory=Counters)  # the policy's counters

    @property
    def builtin(self) -> bool:
        return self.policy is not None

    @property
    def hook(self) -> int | None:
        return HOOK_OF_CHAIN[self.name] if self.builtin else None


@dataclass(slots=True)
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)

    @classmethod
    def new(cls, name: str) -> Table:
        return cls(name, {c: Chain(c, policy="ACCEPT") for c in TABLE_CHAINS[name]})

    def copy(self) -> Table:
        """A copy whose chains can change; rules (and their counters) are shared."""
        return Table(self.name, {n: Chain(c.name, list(c.rules), c.policy, c.counters)
                                 for n, c in self.chains.items()})

    def chain_order(self) -> list[str]:
        """libiptc's chain order: built-ins in hook order, then user chains sorted (strcmp)."""
        builtins = [c for c in TABLE_CHAINS[self.name] if c in self.chains]
        users = sorted((n for n, c in self.chains.items() if not c.builtin), key=lambda s: s.encode())
        return builtins + users

    def references(self, chain: str) -> int:
        """How many rules jump or go to `chain`."""
        return sum(1 for c in self.chains.values() for r in c.rules
                   if isinstance(r.target, Jump) and r.target.chain == chain)


class Handle:
    """libiptc's xtc_handle: a private copy of one table, edited by iptc_* calls until committed."""

    def __init__(self, table: Table) -> None:
        self.table = table

    # -- lookups -------------------------------------------------------------
    def is_chain(self, name: str) -> bool:
        return name in self.table.chains

    def builtin(self, name: str) -> bool:
        c = self.table.chains.get(name)
        return c is not None and c.builtin

    def chains(self) -> list[str]:
        return self.table.chain_order()

    def _chain(self, name: str, fn: str | None) -> Chain:
        c = self.table.chains.get(name)
        if c is None:
            raise IptcError(errno.ENOENT, fn)
        return c

    def _map_target(self, rule: Rule, fn: str) -> None:
        # iptcc_map_target(): jumps to built-in chains are refused here
        t = rule.target
        if isinstance(t, Jump):
            if self.builtin(t.chain):
                raise IptcError(errno.EINVAL, None)  # TC_BUILTIN ran last: the generic text
            if t.chain not in self.table.chains:
                raise IptcError(errno.ENOENT, fn)

    # -- rules -----------------------------------------------------------------
    def append(self, chain: str, rule: Rule) -> None:
        c = self._chain(chain, "TC_APPEND_ENTRY")
        self._map_target(rule, "TC_APPEND_ENTRY")
        c.rules.append(rule)

    def insert(self, chain: str, rule: Rule, index: int) -> None:
        c = self._chain(chain, "TC_INSERT_ENTRY")
        if index > len(c.rules):
            raise IptcError(errno.E2BIG, "TC_INSERT_ENTRY")
        self._map_target(rule, "TC_INSERT_ENTRY")
        c.rules.insert(index, rule)

    def replace(self, chain: str, rule: Rule, index: int) -> None:
        c = self._chain(chain, "TC_REPLACE_ENTRY")
        if index >= len(c.rules):
            raise IptcError(errno.E2BIG, "TC_REPLACE_ENTRY")
        self._map_target(rule, "TC_REPLACE_ENTRY")
        c.rules[index] = rule

    def _find(self, chain: str, rule: Rule, fn: str) -> tuple[Chain, int]:
        c = self._chain(chain, fn)
        self._map_target(rule, fn)
        for i, r in enumerate(c.rules):
            if r == rule:
                return c, i
        # A chain or extension target goes through TC_BUILTIN in iptcc_map_target(),
        # which leaves the generic "No chain/target/match" text behind.
        generic = rule.target is not None and not isinstance(rule.target, Standard)
        raise IptcError(errno.ENOENT, None if generic else fn)

    def delete_entry(self, chain: str, rule: Rule) -> None:
        c, i = self._find(chain, rule, "TC_DELETE_ENTRY")
        del c.rules[i]

    def check_entry(self, chain: str, rule: Rule) -> None:
        self._find(chain, rule, "TC_CHECK_ENTRY")

    def delete_num(self, chain: str, index: int) -> None:
        c = self._chain(chain, "TC_DELETE_NUM_ENTRY")
        if index >= len(c.rules):
            raise IptcError(errno.E2BIG, "TC_DELETE_NUM_ENTRY")
        del c.rules[index]

    def flush(self, chain: str) -> None:
        self._chain(chain, "TC_FLUSH_ENTRIES").rules.clear()

    def zero(self, chain: str) -> None:
        c = self._chain(chain, "TC_ZERO_ENTRIES")
        c.rules = [replace(r, counters=Counters()) for r in c.rules]
        if c.builtin:
            c.counters = Counters()

    def zero_counter(self, chain: str, rulenum: int) -> None:
        """TC_ZERO_COUNTER: `rulenum` counts from 1."""
        c = self._chain(chain, "TC_ZERO_COUNTER")
        if not 1 <= rulenum <= len(c.rules):
            raise IptcError(errno.E2BIG, "TC_ZERO_COUNTER")
        c.rules[rulenum - 1] = replace(c.rules[rulenum - 1], counters=Counters())

    # -- chains ------------------------------------------------------------------
    def create_chain(self, name: str) -> None:
        if name in self.table.chains or name in STANDARD_VERDICTS:
            raise IptcError(errno.EEXIST, "TC_CREATE_CHAIN")
        if len(name) >= XT_EXTENSION_MAXNAMELEN + 3:
            raise IptcError(errno.EINVAL, "TC_CREATE_CHAIN")
        self.table.chains[name] = Chain(name)

    def delete_chain(self, name: str) -> None:
        # iptables reports these with strerror() texts (the function does not match the table)
        c = self.table.chains.get(name)
        if c is None:
            raise IptcError(errno.ENOENT, None)
        if c.builtin:
            raise IptcError(errno.EINVAL, None)
        if self.table.references(name):
            raise IptcError(errno.EMLINK, None)
        if c.rules:
            raise IptcError(errno.ENOTEMPTY, None)
        del self.table.chains[name]

    def rename_chain(self, old: str, new: str) -> None:
        if new in self.table.chains or new in STANDARD_VERDICTS:
            raise IptcError(errno.EEXIST, "TC_RENAME_CHAIN")
        c = self.table.chains.get(old)
        if c is None or c.builtin:
            raise IptcError(errno.ENOENT, "TC_RENAME_CHAIN")
        # Rules refer to chains by name here (libiptc by pointer): repoint the jumps.
        for ch in self.table.chains.values():
            ch.rules = [replace(r, target=Jump(new)) if isinstance(r.target, Jump) and r.target.chain == old
                        else r for r in ch.rules]
        del self.table.chains[old]
        c.name = new
        self.table.chains[new] = c

    def set_policy(self, chain: str, policy: str, counters: Counters | None) -> None:
        c = self.table.chains.get(chain)
        if c is None or not c.builtin:
            raise IptcError(errno.ENOENT, "TC_SET_POLICY")
        if policy not in ("ACCEPT", "DROP"):
            raise IptcError(errno.EINVAL, "TC_SET_POLICY")
        c.policy = policy
        if counters is not None:
            c.counters = counters


def mark_source_chains(table: Table) -> dict[str, tuple[int, int]] | None:
    """ip_tables.c mark_source_chains(): per chain, (hooks it is reachable from, rules reached); None on a loop.

    A walk from each hook follows jumps and gotos alike.  Chains are always
    entered at their first rule and an unconditional standard verdict ends a
    chain, so the rules after it are reachable from no hook (comefrom 0).
    """
    cutoff: dict[str, int] = {}
    jumps: dict[str, list[str]] = {}
    for name, c in table.chains.items():
        js: list[str] = []
        n = len(c.rules)
        for i, r in enumerate(c.rules):
            t = r.target
            if type(t) is Jump:
                if t.chain in table.chains:
                    js.append(t.chain)
            elif type(t) is Standard and r.unconditional:
                n = i + 1
                break
        cutoff[name], jumps[name] = n, js
    hooks = dict.fromkeys(table.chains, 0)
    for name in TABLE_CHAINS[table.name]:
        bit = 1 << HOOK_OF_CHAIN[name]
        done: set[str] = set()
        on_path = {name}
        stack = [(name, iter(jumps[name]))]
        hooks[name] |= bit
        while stack:
            cname, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                on_path.discard(cname)
                done.add(cname)
            elif nxt in on_path:
                return None
            elif nxt not in done:
                hooks[nxt] |= bit
                on_path.add(nxt)
                stack.append((nxt, iter(jumps[nxt])))
    return {name: (hooks[name], cutoff[name]) for name in table.chains}


# A rule that passed checkentry with the same table and hooks needs no second look.
CheckCache = dict[int, tuple[Rule, str, int]]


def translate_table(table: Table, cache: CheckCache | None = None) -> tuple[int, CheckCache]:
    """The kernel's checks on a table replace: (0, ELOOP or a checkentry errno; the rules that passed)."""
    reach = mark_source_chains(table)
    passed: CheckCache = {}
    if reach is None:
        return errno.ELOOP, passed
    old = cache or {}
    for cname in table.chain_order():
        hooks, cut = reach[cname]
        for i, rule in enumerate(table.chains[cname].rules):
            mask = hooks if i < cut else 0
            hit = old.get(id(rule))
            if hit is not None and hit[0] is rule and hit[1] == table.name and hit[2] == mask:
                passed[id(rule)] = hit
                continue
            ctx = CheckContext(table.name, mask, rule)
            for m in rule.matches:
                err = m.check(ctx)
                if err:
                    return err, passed
            if rule.target is not None:
                err = rule.target.check(ctx)
                if err:
                    return err, passed
            passed[id(rule)] = (rule, table.name, mask)
    return 0, passed


class Netfilter:
    """The IPv4 tables of one network namespace.

    `tables` holds the tables that exist (a table exists once a command has
    touched it); the engine reads `tables[name].chains[chain]` and may cache
    anything derived from them until `gen` changes.
    """

    def __init__(self, resolver: Resolver | None = None) -> None:
        self.tables: dict[str, Table] = {}
        self._order: list[str] = []  # first-touch order
        self.resolver = resolver if resolver is not None else Resolver.system()
        self.gen = 0
        self._checked: dict[str, CheckCache] = {}

    def loaded(self) -> list[str]:
        """The tables iptables-save lists, newest first like /proc/net/ip_tables_names."""
        return list(reversed(self._order))

    def init(self, name: str) -> Handle:
        """iptc_init(): a private copy of the table, creating (loading) it on first use."""
        if name not in TABLE_CHAINS:
            raise IptcError(errno.ENOENT, "TC_INIT")
        t = self.tables.get(name)
        if t is None:
            t = self.tables[name] = Table.new(name)
            self._order.append(name)
        return Handle(t.copy())

    def commit(self, handle: Handle) -> None:
        """iptc_commit(): the kernel checks the whole table, then it replaces the old one."""
        name = handle.table.name
        err, passed = translate_table(handle.table, self._checked.get(name))
        if err:
            raise IptcError(err, "TC_COMMIT")
        self._checked[name] = passed
        self.tables[name] = handle.table
        self.gen += 1
