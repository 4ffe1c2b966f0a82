"""FIB tables: prefixes, aliases and nexthops, as net/ipv4/fib_trie.c keeps them.

Theory of operation.  A table maps a prefix (address, length) to a *leaf*: a
tuple of `FibAlias` in the kernel's order (TOS descending, then priority
ascending, then insertion order as NLM_F_APPEND/prepend leave it).  Each alias
points at a `FibInfo` (protocol, scope, prefsrc, priority, metrics, nexthops).
Both are immutable and interned, so a million routes through the same gateway
share one object and cost little more than their dict slot.

Lookup mirrors fib_table_lookup(): take the longest matching prefix, walk its
aliases, skip those whose TOS or scope do not fit, return the first that does
(an error for unreachable/prohibit/blackhole/throw).  When no alias of a leaf
fits, fall back to the next shorter prefix ("backtracking").
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from ipgate.errors import NetlinkError
from ipgate.inet import (
    MASKS,
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_UNIVERSE,
    RTN_ANYCAST,
    RTN_BLACKHOLE,
    RTN_BROADCAST,
    RTN_LOCAL,
    RTN_MULTICAST,
    RTN_NAT,
    RTN_PROHIBIT,
    RTN_THROW,
    RTN_UNICAST,
    RTN_UNREACHABLE,
)
from ipgate.packet.fastnew import new_tuple

# fib_props[] from net/ipv4/fib_semantics.c: (error, minimum scope) per type.
# RTN_NAT is gone from today's kernels; ipgate keeps it (stateless NAT, see docs).
FIB_PROPS: dict[int, tuple[int, int]] = {
    RTN_UNICAST: (0, RT_SCOPE_UNIVERSE),
    RTN_LOCAL: (0, RT_SCOPE_HOST),
    RTN_BROADCAST: (0, RT_SCOPE_LINK),
    RTN_ANYCAST: (0, RT_SCOPE_LINK),
    RTN_MULTICAST: (0, RT_SCOPE_UNIVERSE),
    RTN_BLACKHOLE: (-errno.EINVAL, RT_SCOPE_UNIVERSE),
    RTN_UNREACHABLE: (-errno.EHOSTUNREACH, RT_SCOPE_UNIVERSE),
    RTN_PROHIBIT: (-errno.EACCES, RT_SCOPE_UNIVERSE),
    RTN_THROW: (-errno.EAGAIN, RT_SCOPE_UNIVERSE),
    RTN_NAT: (0, RT_SCOPE_UNIVERSE),
}

TYPE_ERR = {t: props[0] for t, props in FIB_PROPS.items()}

RTNH_F_DEAD = 1
RTNH_F_PERVASIVE = 2
RTNH_F_ONLINK = 4


@dataclass(frozen=True, slots=True)
class FibNh:
    """One nexthop (struct fib_nh): gateway (0 if none), device index, weight."""

    gw: int
    oif: int
    weight: int = 1
    flags: int = 0
    scope: int = RT_SCOPE_NOWHERE  # fib_nh_scope, computed by fib_check_nh


@dataclass(frozen=True, slots=True)
class FibInfo:
    """Shared route attributes (struct fib_info)."""

    protocol: int
    scope: int
    prefsrc: int
    priority: int
    nhs: tuple[FibNh, ...]
    metrics: tuple[tuple[str, int], ...] = ()

    def metric(self, name: str) -> int:
        for k, v in self.metrics:
            if k == name:
                return v
        return 0


@dataclass(frozen=True, slots=True)
class FibAlias:
    """A route's per-prefix part (struct fib_alias): type, TOS and its fib_info."""

    type: int
    tos: int
    info: FibInfo


class FibResult(NamedTuple):
    """What fib_table_lookup() returns (struct fib_result).

    A NamedTuple rather than a frozen dataclass: it is built on every lookup,
    and tuples are immutable at a tenth of the construction cost.
    """

    prefix: int
    prefixlen: int
    type: int
    alias: FibAlias
    nh_sel: int
    table: int

    @property
    def info(self) -> FibInfo:
        return self.alias.info

    @property
    def nh(self) -> FibNh:
        return self.alias.info.nhs[self.nh_sel]


class Generation:
    """A counter bumped by every change that can alter a routing decision.

    Shared by a stack's tables, rules and devices; the decision cache in
    route/lookup.py is valid only while it stays the same.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def bump(self) -> None:
        self.value += 1


class Interner:
    """Shares equal immutable route parts across all tables of a stack."""

    def __init__(self) -> None:
        self._objs: dict[object, object] = {}
        self._leaves: dict[FibAlias, tuple[FibAlias, ...]] = {}

    def alias(self, a: FibAlias) -> FibAlias:
        return self._objs.setdefault(a, a)  # type: ignore[return-value]

    def leaf(self, aliases: tuple[FibAlias, ...]) -> tuple[FibAlias, ...]:
        if len(aliases) == 1:
            return self._leaves.setdefault(aliases[0], aliases)
        return aliases


AliasPredicate = Callable[[int, int, FibAlias], bool]


class FibTable:
    """One routing table: dict-per-prefix-length, plus an optional LPM index."""

    def __init__(self, tb_id: int, interner: Interner, down: set[int] | None = None,
                 gen: Generation | None = None) -> None:
        self.id = tb_id
        self.gen = gen if gen is not None else Generation()
        self.down = down if down is not None else set()  # shared with the stack
        self._interner = interner
        self._by_len: list[dict[int, tuple[FibAlias, ...]]] = [{} for _ in range(33)]
        self._plens: list[int] = []  # present prefix lengths, longest first
        self.num_default = 0  # tb_num_default: unicast default routes
        self.index: LpmIndex | None = None

    # -- reading ---------------------------------------------------------
    def __len__(self) -> int:
        return sum(len(d) for d in self._by_len)

    def leaf(self, prefix: int, plen: int) -> tuple[FibAlias, ...]:
        return self._by_len[plen].get(prefix, ())

    def entries(self) -> Iterator[tuple[int, int, FibAlias]]:
        """All routes in dump order: by prefix value, then length (as a trie walk)."""
        # fib_trie dump order: by key, and longer prefixes first within a key
        keys = sorted(((p, n) for n in self._plens for p in self._by_len[n]), key=lambda k: (k[0], -k[1]))
        for p, n in keys:
            for fa in self._by_len[n][p]:
                yield p, n, fa

    def candidates(self, addr: int) -> Iterator[tuple[int, int, tuple[FibAlias, ...]]]:
        """Matching prefixes for `addr`, longest first (the trie's backtracking order)."""
        by_len = self._by_len
        if self.index is not None:
            first = self.index.longest(addr)
            if first < 0:
                return
            for n in self._plens:
                if n > first:
                    continue
                key = addr & MASKS[n]
                leaf = by_len[n].get(key)
                if leaf is not None:
                    yield key, n, leaf
            return
        for n in self._plens:
            key = addr & MASKS[n]
            leaf = by_len[n].get(key)
            if leaf is not None:
                yield key, n, leaf

    def lookup(self, daddr: int, tos: int, scope: int, oif: int) -> FibResult | int:
        """fib_table_lookup(): a result, or a negative errno (-EAGAIN: nothing here).

        The hot path of every decision: candidates() inlined on purpose.
        """
        by_len = self._by_len
        first = 32
        if self.index is not None:
            first = self.index.longest(daddr)
            if first < 0:
                return -errno.EAGAIN
        down = self.down
        for plen in self._plens:
            if plen > first:
                continue
            key = daddr & MASKS[plen]
            leaf = by_len[plen].get(key)
            if leaf is None:
                continue
            for fa in leaf:
                if fa.tos and fa.tos != tos:
                    continue
                fi = fa.info
                if fi.scope < scope:
                    continue
                err = TYPE_ERR[fa.type]
                if err:
                    return err
                for sel, nh in enumerate(fi.nhs):
                    if oif and nh.oif != oif:
                        continue
                    if nh.oif in down and nh.scope != RT_SCOPE_NOWHERE:
                        continue  # fib_lookup_good_nhc(): RTNH_F_DEAD
                    return new_tuple(FibResult, (key, plen, fa.type, fa, sel, self.id))
                if not fi.nhs:
                    return new_tuple(FibResult, (key, plen, fa.type, fa, -1, self.id))
        return -errno.EAGAIN

    # -- writing ---------------------------------------------------------
    def _store(self, prefix: int, plen: int, leaf: tuple[FibAlias, ...]) -> None:
        self.gen.bump()
        d = self._by_len[plen]
        had = prefix in d
        if leaf:
            d[prefix] = self._interner.leaf(leaf)
        elif had:
            del d[prefix]
        if not d and plen in self._plens:
            self._plens.remove(plen)
        elif d and plen not in self._plens:
            self._plens.append(plen)
            self._plens.sort(reverse=True)
        if self.index is not None and had != bool(leaf):
            if leaf:
                self.index.insert(prefix, plen)
            else:
                self.index.delete(prefix, plen)
        elif leaf and not had and len(d) >= 4096 and len(self) >= 16384:
            self.maybe_index()  # grown big one route at a time: index it (route/lpm.py)

    def insert(self, prefix: int, plen: int, fa: FibAlias, *, create: bool = True,
               excl: bool = True, replace: bool = False, append: bool = False) -> FibAlias | None:
        """fib_table_insert() with the netlink flags of `ip route add/append/replace/...`.

        Returns the alias that was replaced, if any.  Raises NetlinkError.
        """
        fa = self._interner.alias(fa)
        leaf = list(self.leaf(prefix, plen))
        prio = fa.info.priority
        # fib_find_alias(): first alias with the same (tos, priority) or the
        # position where one would go.
        pos = len(leaf)
        for i, old in enumerate(leaf):
            if old.tos > fa.tos:
                continue
            if old.info.priority >= prio or old.tos < fa.tos:
                pos = i
                break
        replaced: FibAlias | None = None
        if pos < len(leaf) and leaf[pos].tos == fa.tos and leaf[pos].info.priority == prio:
            if excl:
                raise NetlinkError(errno.EEXIST)
            first = pos
            match: int | None = None
            end = pos
            while end < len(leaf) and leaf[end].tos == fa.tos and leaf[end].info.priority == prio:
                if match is None and leaf[end].type == fa.type and leaf[end].info == fa.info:
                    match = end
                end += 1
            if replace:
                if match is not None:
                    if match == first:
                        return None
                    raise NetlinkError(errno.EEXIST)
                replaced = leaf[first]
                leaf[first] = fa
                self._account(replaced, plen, -1)
                self._account(fa, plen, +1)
                self._store(prefix, plen, tuple(leaf))
                return replaced
            if match is not None:
                raise NetlinkError(errno.EEXIST)
            pos = end if append else first
        if not create:
            raise NetlinkError(errno.ENOENT)
        leaf.insert(pos, fa)
        self._account(fa, plen, +1)
        self._store(prefix, plen, tuple(leaf))
        return replaced

    def _account(self, fa: FibAlias, plen: int, delta: int) -> None:
        if plen == 0 and fa.type == RTN_UNICAST:
            self.num_default += delta

    def remove(self, prefix: int, plen: int, fa: FibAlias) -> None:
        leaf = list(self.leaf(prefix, plen))
        leaf.remove(fa)
        self._account(fa, plen, -1)
        self._store(prefix, plen, tuple(leaf))

    def flush_if(self, pred: AliasPredicate) -> list[tuple[int, int, FibAlias]]:
        """Remove every route for which pred(prefix, plen, alias) holds (fib_flush()).

        Emptied prefixes are deleted in one sweep; when many go, the LPM index is
        dropped and rebuilt once instead of being updated prefix by prefix.
        """
        gone: list[tuple[int, int, FibAlias]] = []
        emptied: list[tuple[int, int]] = []
        partial: list[tuple[int, int, tuple[FibAlias, ...]]] = []
        for n in self._plens:
            for p, leaf in self._by_len[n].items():
                if len(leaf) == 1:
                    if pred(p, n, leaf[0]):
                        gone.append((p, n, leaf[0]))
                        emptied.append((p, n))
                    continue
                keep = tuple(fa for fa in leaf if not pred(p, n, fa))
                if len(keep) != len(leaf):
                    gone.extend((p, n, fa) for fa in leaf if all(fa is not k for k in keep))
                    partial.append((p, n, keep))
        if not gone:
            return gone
        self.gen.bump()
        for _p, n, fa in gone:
            self._account(fa, n, -1)
        index = self.index
        rebuild = index is not None and len(emptied) > 4096
        if rebuild:
            self.index = None
        for p, n in emptied:
            del self._by_len[n][p]
            if self.index is not None:
                self.index.delete(p, n)
        self._plens = [n for n in self._plens if self._by_len[n]]
        for p, n, leaf in partial:
            self._store(p, n, leaf)
        if rebuild and index is not None:
            self.attach_index(index)
        return gone

    def flush_aliases(self, pred: Callable[[FibAlias], bool]) -> list[tuple[int, int, FibAlias]]:
        """flush_if() for a test on the route alone: asked once per distinct (interned) alias."""
        memo: dict[int, bool] = {}  # by id(): hashing a dataclass alias is slow, and they are interned

        def once(p: int, n: int, fa: FibAlias) -> bool:
            hit = memo.get(id(fa))
            if hit is None:
                hit = memo[id(fa)] = pred(fa)
            return hit

        return self.flush_if(once)

    def attach_index(self, index: LpmIndex) -> None:
        index.build((p, n) for n in self._plens for p in self._by_len[n])
        self.index = index

    def add_fresh(self, plen: int, prefixes: list[int], leaves: list[tuple[FibAlias, ...]]) -> None:
        """insert() of many new routes of one length (route/bulk.py): prefixes[i]
        gets leaves[i], as insert() would leave it (interned aliases and leaf).
        The caller guarantees that no prefix is present yet or repeated."""
        self.gen.bump()
        d = self._by_len[plen]
        d.update(zip(prefixes, leaves, strict=True))
        if d and plen not in self._plens:
            self._plens.append(plen)
            self._plens.sort(reverse=True)
        if not plen:
            for leaf in leaves:
                for fa in leaf:
                    self._account(fa, plen, +1)
        if self.index is not None:
            for p in prefixes:
                self.index.insert(p, plen)

    def prefixes_of_len(self, plen: int) -> Iterator[int]:
        """The present prefixes of one length, in no particular order (route/bulk.py)."""
        return iter(self._by_len[plen])

    def maybe_index(self, threshold: int = 16384) -> bool:
        """Attach a DIR-24-8 index (route/lpm.py) once the table holds `threshold`
        prefixes; below that the per-length dict probes are as fast and the 32 MB
        of tbl24 are not worth it.  True if an index is attached on return."""
        if self.index is None and len(self) >= threshold:
            from ipgate.route.lpm import Dir248

            self.attach_index(Dir248(self._by_len))
        return self.index is not None


class LpmIndex:
    """Interface of a longest-prefix-length accelerator (see route/lpm.py)."""

    def build(self, prefixes: Iterator[tuple[int, int]]) -> None:
        raise NotImplementedError

    def insert(self, prefix: int, plen: int) -> None:
        raise NotImplementedError

    def delete(self, prefix: int, plen: int) -> None:
        raise NotImplementedError

    def longest(self, addr: int) -> int:
        """Length of the longest present prefix covering addr, or -1."""
        raise NotImplementedError

