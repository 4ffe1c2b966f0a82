"""Fast loading of huge route lists (`ip -batch` files, full Internet tables).

Theory of operation.  A full table is a million lines of the same shape::

    [ip] route add PREFIX via GW [dev DEV] [table T] [metric M] [proto P]

The general path (`Shell` -> `IpCommand.route_modify` -> `Stack.route_add`)
spends ~200 us per line: shlex, the keyword loop, a FibConfig, and
fib_check_nh()'s RPDB lookup of the gateway.  Here:

1. *Collect.*  A line is split on blanks.  The words after the prefix (the
   "tail") are resolved once per distinct tail, by the general code itself:
   `IpCommand.route_modify` parses `ip route add 0.0.0.0/0 TAIL` against a
   stand-in that captures the FibConfig instead of adding it, and
   `Stack._create_alias` validates it into a FibAlias, interned and shared.
   Per line only the prefix is parsed (strict dotted quad) and its host bits
   checked, the one check of _create_alias() that depends on it.  Routes are
   kept in compact arrays.
2. *Apply.*  Routes whose (table, prefix) occurs once and is absent from the
   table are stored a whole prefix length at a time (`FibTable.add_fresh`: a
   dict update).  The others ("contested": present already, or repeated in the
   batch) go through `FibTable.insert` in line order, so duplicates fail with
   "File exists" exactly as `ip route add` does and other metrics nest.

Why validating a tail once is exact: every route taken here has a gateway,
hence scope universe, and fib_check_nh() resolves gateways with scope >= link,
so none of these routes can change how a later gateway resolves.  Devices,
addresses, rules and rt_tables do not change inside a run of such lines, and the
caches are dropped whenever any other line runs in between.

Errors: the first refused line (bad host bits, a gateway the kernel refuses,
"File exists") wins, as when the lines run one by one.  `load_routes` checks
everything before storing anything, so a refused line leaves the stack as it
was; `load_lines` (scripts, `ip -batch`) keeps the lines before it, as the
general path does.

Lines outside the grammar (other commands or keywords, quoting, comments after
a command, prefixes that are not a plain dotted quad like ``10/8``, words the
general parser refuses, whose error text is wanted) are never guessed at:
`load_routes` refuses them (`NotBulk`) before touching the stack, and
`load_lines` hands them, in order, to a callback running the general parser.
"""

from __future__ import annotations

import bisect
import errno
import re
import socket
import struct
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np
import numpy.typing as npt

from ipgate.errors import ConfigError, NetlinkError
from ipgate.inet import MASKS, RT_SCOPE_UNIVERSE, RTN_UNICAST
from ipgate.route.config import FibConfig
from ipgate.route.fib import FibAlias, FibTable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipgate.stack import Stack

# What split_line() (shlex, punctuation ">;|&", comments, quotes) treats specially.
_SPECIAL = re.compile(r"[#\"'\\>;|&]")
_OBJ = frozenset({"r", "ro", "rou", "rout", "route"})  # matches(w, "route"), as IpCommand.do_cmd
_ADD = frozenset({"a", "ad", "add"})  # matches(w, "add"): first entry of do_route's flag table
# the words a bulk line may have after the prefix (their values: the general parser's)
_KEYWORDS = frozenset({"via", "dev", "table", "metric", "priority", "preference", "proto", "protocol"})
_PLEN = {str(n): n for n in range(33)}
_HOST = tuple(~m & 0xFFFFFFFF for m in MASKS)
_INVALID_PREFIX = NetlinkError(errno.EINVAL, "Invalid prefix for given prefix length").iproute2_text()
# A table receiving more new routes than this is re-indexed once instead of per insert.
_REINDEX_OVER = 4096
_MAX_TAILS = 1 << 16  # bound on the tail-text cache (distinct metrics per line...)
Dialect = Literal["any", "script", "batch"]
_pton = socket.inet_pton
_unpack = struct.Struct("!I").unpack
_AF_INET = socket.AF_INET


class NotBulk(ConfigError):
    """A line the bulk grammar does not cover: run it through the general parser."""

    def __init__(self, filename: str, line: int, text: str) -> None:
        super().__init__(filename, line, f"not a bulk route line: {text.strip()!r}")
        self.text = text


@dataclass(slots=True)
class _Key:
    """What the words other than the prefix resolve to."""

    table_id: int
    fa: FibAlias | None  # None: the kernel refuses the route (`error`)
    leaf: tuple[FibAlias, ...]
    error: str


@dataclass(slots=True)
class _Run:
    """Collected bulk lines, one entry per route, in line order."""

    prefix: array[int] = field(default_factory=lambda: array("I"))
    keyplen: array[int] = field(default_factory=lambda: array("I"))  # key index << 6 | plen
    lineno: array[int] = field(default_factory=lambda: array("I"))

    def before(self, lineno: int) -> _Run:
        """The routes of the lines before `lineno`."""
        k = bisect.bisect_left(self.lineno, lineno)
        return _Run(self.prefix[:k], self.keyplen[:k], self.lineno[:k])


class _Capture:
    """A Stack stand-in that records the FibConfig `ip route add` would add."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self.cfg: FibConfig | None = None

    def route_add(self, cfg: FibConfig) -> None:
        self.cfg = cfg

    def __getattr__(self, name: str) -> object:
        return getattr(self._stack, name)


class BulkLoader:
    """One load into one Stack: `run` the lines, then `finish`."""

    def __init__(self, stack: Stack, filename: str, *, dialect: Dialect = "any", atomic: bool = True) -> None:
        self.stack = stack
        self.filename = filename
        # "script": a shell script, the program word `ip` (or /sbin/ip) is required (a bare
        # `route` is net-tools'); "batch": an `ip -batch` file, no program word (iproute2
        # refuses `ip` there: Object "ip" is unknown); "any": either, for route lists.
        if dialect not in ("any", "script", "batch"):
            raise ValueError(f"unknown dialect {dialect!r}")
        self.dialect = dialect
        # atomic: a refused line leaves the stack as it was; else the lines before it
        # stay applied, as when they run one by one (`ip -batch`, a shell script)
        self.atomic = atomic
        self.count = 0
        self.touched: set[int] = set()
        self._keys: list[_Key] = []
        self._key_ix: dict[tuple[str | None, ...], int] = {}
        self._hot: dict[str, int] = {}

    def invalidate(self) -> None:
        """Forget the resolved tails: the stack was changed by something else."""
        self._keys.clear()
        self._key_ix.clear()
        self._hot.clear()

    # -- collecting ----------------------------------------------------------
    def _key(self, words: list[str]) -> int:
        """Index of the resolved key for these words, or -1 if they are not bulk."""
        ck = tuple(words)
        ki = self._key_ix.get(ck)
        if ki is None:
            k = self._resolve(words)
            ki = -1 if k is None else len(self._keys)
            if k is not None:
                self._keys.append(k)
            self._key_ix[ck] = ki
        return ki

    def _resolve(self, words: list[str]) -> _Key | None:
        """What `ip route add 0.0.0.0/0 WORDS...` hands to Stack.route_add, made into
        a FibAlias by the same code (Stack._create_alias); None if not bulk."""
        from ipgate.commands.base import Exit, Output
        from ipgate.commands.ip import IpCommand

        cap = _Capture(self.stack)
        try:
            IpCommand(cast("Stack", cap), Output()).route_modify(["0.0.0.0/0", *words], True, True, False, False)
        except (Exit, NetlinkError, ValueError, IndexError):
            return None  # a word the general parser refuses: it says how, in context
        cfg = cap.cfg
        if cfg is None or cfg.type != RTN_UNICAST or cfg.scope != RT_SCOPE_UNIVERSE or cfg.dst or cfg.dst_len:
            return None  # only routes via a gateway are safe to validate once (module doc)
        st = self.stack
        try:
            fa = st.interner.alias(st._create_alias(cfg))
        except NetlinkError as e:
            return _Key(cfg.table, None, (), e.iproute2_text())
        return _Key(cfg.table, fa, st.interner.leaf((fa,)), "")

    def _words(self, words: list[str]) -> int:
        """Key index for the words after `route add` and the prefix, or -1 if not bulk."""
        if len(words) % 2 or "via" not in words[::2]:
            return -1
        for k in words[::2]:
            if k not in _KEYWORDS:
                return -1
        return self._key(words)

    def _tail(self, tail: str) -> int:
        """Key index of a valid route's tail words (after the prefix), else -1."""
        if _SPECIAL.search(tail) or not tail.isascii():
            return -1
        ki = self._words(tail.split())
        return ki if ki >= 0 and self._keys[ki].fa is not None else -1

    def _line(self, line: str) -> tuple[int, int, int] | tuple[str, str] | None:
        """Any bulk line: (key index, prefix, plen); ("other"|"error", text); None: no words."""
        w = line.split()
        if not w or w[0][0] == "#":
            return None  # split_line() yields no words
        if _SPECIAL.search(line) or not line.isascii():
            return "other", line
        script = self.dialect == "script"
        i = 1 if w[0] == "ip" or (script and w[0].endswith("/ip")) else 0
        if (script and not i) or (i and self.dialect == "batch") or len(w) < i + 5 \
                or w[i] not in _OBJ or w[i + 1] not in _ADD:
            return "other", line
        rest = w[i + 2:]
        # the one word that is neither a keyword nor a keyword's value is the prefix
        dsts = [j for j in range(len(rest))
                if rest[j] not in _KEYWORDS and (j == 0 or rest[j - 1] not in _KEYWORDS)]
        if len(dsts) != 1:
            return "other", line
        dst = rest[dsts[0]]
        ki = self._words(rest[:dsts[0]] + rest[dsts[0] + 1:])
        if ki < 0:
            return "other", line
        a, slash, ln = ("0.0.0.0", "/", "0") if dst == "default" else dst.partition("/")
        try:
            p: int = _unpack(_pton(_AF_INET, a))[0]
        except OSError:
            return "other", line
        n = _PLEN.get(ln, -1) if slash else 32
        if n < 0:
            if not (ln.isdigit() and int(ln) <= 32):
                return "other", line  # a dotted netmask, garbage: the general parser decides
            n = int(ln)
        if p & _HOST[n]:
            return "error", _INVALID_PREFIX
        k = self._keys[ki]
        if k.fa is None:
            return "error", k.error
        return ki, p, n

    def collect(self, lines: Iterator[tuple[int, str]]) -> tuple[_Run, tuple[int, str, str] | None]:
        """Gather bulk lines up to the end, or up to and excluding the first line that
        is not bulk ("other") or that the kernel would refuse ("error", with its text).
        Returns the run and (lineno, kind, text) of the line that stopped it."""
        run = _Run()
        put_p, put_kn, put_l = run.prefix.append, run.keyplen.append, run.lineno.append
        hot = self._hot  # tail text -> key index, for tails that resolve to a valid route
        hot_get = hot.get
        script = self.dialect == "script"
        program = self.dialect != "batch"  # a leading `ip` taken
        split, pton, unpack, af, plens, host, objs, adds = \
            str.split, _pton, _unpack, _AF_INET, _PLEN, _HOST, _OBJ, _ADD
        for lineno, line in lines:
            # The common shape, "[ip] route add A.B.C.D/N TAIL", inline; all else in _line().
            if program and line.startswith("ip "):
                w = split(line, None, 4)
                del w[0]
            elif script:
                w = []
            else:
                w = split(line, None, 3)
            if len(w) == 4 and w[1] in adds and w[0] in objs:
                ki = hot_get(w[3], -1)
                if ki >= 0:
                    a, slash, ln = w[2].partition("/")
                    n = plens.get(ln, -1) if slash else -1
                    if n >= 0:
                        try:
                            p: int = unpack(pton(af, a))[0]
                        except OSError:
                            n = -1
                        if n >= 0 and not p & host[n]:
                            put_p(p)
                            put_kn(ki << 6 | n)
                            put_l(lineno)
                            continue
                elif len(hot) < _MAX_TAILS:
                    ki = self._tail(w[3])
                    if ki >= 0:
                        hot[w[3]] = ki  # this line goes the long way, the next ones not
            r = self._line(line)
            if r is None:
                continue
            if isinstance(r[0], str):
                return run, (lineno, r[0], str(r[1]))
            ki, p, n = r
            put_p(p)
            put_kn(ki << 6 | n)
            put_l(lineno)
        return run, None

    # -- applying ------------------------------------------------------------
    def apply(self, run: _Run, *, commit: bool = True) -> tuple[int, str] | None:
        """Store a collected run.  Returns (lineno, message) of the first route the
        kernel refuses, with nothing stored.  With commit=False, only that check."""
        if not len(run.prefix):
            return None
        st = self.stack
        keys = self._keys
        prefix = np.frombuffer(run.prefix, dtype=np.uint32)
        kn = np.frombuffer(run.keyplen, dtype=np.uint32)
        plen = (kn & 63).astype(np.int64)
        kix = kn >> 6
        ktab = np.array([k.table_id for k in keys], dtype=np.int64)
        tab_ids, tix = np.unique(ktab[kix], return_inverse=True)
        gkey = tix.astype(np.int64) * 33 + plen
        order = np.argsort(gkey, kind="stable")  # grouped by (table, plen), line order kept
        bounds = np.flatnonzero(np.diff(gkey[order])) + 1
        fresh: dict[int, list[tuple[int, npt.NDArray[np.intp]]]] = {}
        contested: list[npt.NDArray[np.intp]] = []
        for sel in np.split(order, bounds):
            tb = int(tab_ids[tix[sel[0]]])
            n = int(plen[sel[0]])
            t = st.tables.get(tb)
            ps = prefix[sel]
            _, inv, cnt = np.unique(ps, return_inverse=True, return_counts=True)
            hot = cnt[inv] > 1  # repeated within the run
            if n == 0:
                hot[:] = True  # default routes: insert() keeps tb_num_default
            elif t is not None:  # present in the table already
                if ps.size * 8 < len(t):
                    hot |= np.fromiter((bool(t.leaf(p, n)) for p in ps.tolist()), dtype=bool, count=ps.size)
                else:
                    hot |= np.isin(ps, np.fromiter(t.prefixes_of_len(n), dtype=np.uint32))
            if hot.any():
                contested.append(sel[hot])
                sel = sel[~hot]
            if sel.size:
                fresh.setdefault(tb, []).append((n, sel))
        # Contested routes go one by one through insert(), in line order, before
        # anything else is stored: their verdict decides whether the run stands.
        tables_before = set(st.tables)
        done: list[tuple[FibTable, int, int, FibAlias]] = []
        if contested:
            for pos in np.sort(np.concatenate(contested)).tolist():
                k = keys[run.keyplen[pos] >> 6]
                p, n = run.prefix[pos], run.keyplen[pos] & 63
                assert k.fa is not None
                t = st.table(k.table_id)
                try:
                    t.insert(p, n, k.fa)  # `ip route add`: create + excl
                except NetlinkError as e:
                    self._undo(done, tables_before)
                    return run.lineno[pos], e.iproute2_text()
                done.append((t, p, n, k.fa))
        if not commit:
            self._undo(done, tables_before)
            return None
        leaves = np.empty(len(keys), dtype=object)
        leaves[:] = [k.leaf for k in keys]
        for tb, groups in fresh.items():
            t = st.table(tb)
            ix = t.index
            rebuild = ix is not None and sum(sel.size for _, sel in groups) > _REINDEX_OVER
            if rebuild:
                t.index = None  # one vectorised build instead of many inserts
            for n, sel in groups:
                t.add_fresh(n, prefix[sel].tolist(), leaves[kix[sel]].tolist())
            if ix is not None and rebuild:
                t.attach_index(ix)
        self.touched.update(int(tb) for tb in tab_ids)
        self.count += len(run.prefix)
        return None

    def _undo(self, done: list[tuple[FibTable, int, int, FibAlias]], tables_before: set[int]) -> None:
        for t, p, n, fa in reversed(done):
            t.remove(p, n, fa)
        for tb in set(self.stack.tables) - tables_before:
            if not len(self.stack.tables[tb]):
                del self.stack.tables[tb]

    def _commit(self, run: _Run, commit: bool = True) -> None:
        """apply() and raise for a refused route (non-atomic: after storing those before it)."""
        bad = self.apply(run, commit=commit)
        if bad is not None:
            if commit and not self.atomic:
                self.apply(run.before(bad[0]))
            raise ConfigError(self.filename, *bad)

    def run(self, lines: Iterable[tuple[int, str]], other: Callable[[int, str], None] | None = None) -> int:
        """Load every line; lines that are not bulk go to `other(lineno, line)`, in order.

        Without `other`, a line that is not bulk raises NotBulk, nothing stored.
        """
        it = iter(lines)
        while True:
            run, stop = self.collect(it)
            if stop is None:
                self._commit(run)
                return self.count
            lineno, kind, text = stop
            if kind == "error":
                self._commit(run, commit=not self.atomic)  # an earlier refusal wins
                raise ConfigError(self.filename, lineno, text)
            if other is None:
                self._commit(run, commit=False)
                raise NotBulk(self.filename, lineno, text)
            self._commit(run)
            self.invalidate()
            other(lineno, text)
            self.invalidate()  # the general path may have changed devices, tables...

    def finish(self) -> None:
        """Index the tables that grew big (FibTable.maybe_index)."""
        for tb in self.touched:
            t = self.stack.tables.get(tb)
            if t is not None:
                t.maybe_index()


def load_routes(stack: Stack, lines: Iterable[str], filename: str, *, dialect: Dialect = "any") -> int:
    """Add every route of `lines` (an `ip -batch` style list), all or nothing.

    Returns the number of routes added.  Raises `ConfigError(filename, line,
    message)` for the first line the general path would refuse, with its message
    ("RTNETLINK answers: File exists", "Error: Nexthop has invalid gateway." ...),
    or `NotBulk` (a ConfigError) for the first line outside the bulk grammar; in
    both cases the stack is left as it was.  Lines may start with `ip` or not
    (`dialect`: see BulkLoader).
    """
    ld = BulkLoader(stack, filename, dialect=dialect)
    ld.run(enumerate(lines, 1))
    ld.finish()
    return ld.count


def load_lines(stack: Stack, numbered: Iterable[tuple[int, str]], filename: str,
               other: Callable[[int, str], None], *, dialect: Dialect = "script") -> int:
    """Mixed scripts: bulk lines go the fast way, every other line to `other`, in order.

    `other(lineno, line)` runs the general path and raises ConfigError on
    failure.  As when the lines run one by one, a refused line leaves the lines
    before it applied (`shell.load_script` works on a copy; `ip -batch` keeps
    them).  Returns the number of routes added the fast way.
    """
    ld = BulkLoader(stack, filename, dialect=dialect, atomic=False)
    try:
        return ld.run(numbered, other)
    finally:
        ld.finish()


__all__ = ["BulkLoader", "NotBulk", "load_lines", "load_routes"]
