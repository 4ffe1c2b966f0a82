"""Fast loading of huge route lists (`ip -batch` files, full Internet tables).

Theory of operation.  A full table is a million lines of the same shape::

    [ip] route add PREFIX via GW [dev DEV] [table T] [metric M] [proto P]

The general path (`Shell` -> `IpCommand._route_args` -> `Stack.route_add`)
spends ~200 us per line: shlex, the keyword loop, a FibConfig, and
fib_check_nh()'s RPDB lookup of the gateway.  Here a line is split on blanks,
the tokens are recognised exactly as `_route_args` would, and everything that
does not depend on the prefix (device, table, metric, protocol, the gateway's
validation, the FibAlias) is computed once per distinct (via, dev, table,
metric, proto) words by the general code itself (`Stack._create_alias`), then
interned and reused.  What is left per line is the prefix, the host-bits check
_create_alias() makes first, and a dict store (`FibTable.add_fresh`), or
`FibTable.insert` when the prefix is present already (so duplicates fail with
"File exists" exactly as `ip route add` does, and different metrics nest).

Why caching the validation is exact: every route of this grammar has a gateway,
hence scope universe, and fib_check_nh() resolves gateways with scope >= link,
so none of these routes can change how a later gateway resolves.  Devices,
addresses, rules and rt_tables do not change inside a run of such lines.

Lines outside the grammar (other commands, other keywords, quoting, comments
after a command, short address forms like ``10/8``) are never guessed at:
`load_routes` refuses them (`NotBulk`) before touching the stack, and
`load_lines` hands them, in order, to a callback running the general parser,
so a mixed script behaves exactly as if every line had gone the slow way.
"""

from __future__ import annotations

import errno
import re
import socket
import struct
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ipgate.errors import ConfigError, NetlinkError
from ipgate.inet import MASKS, PROTO_BY_NAME, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN, RTN_UNICAST, RTPROT_BOOT
from ipgate.route.config import FibConfig
from ipgate.route.fib import FibAlias, FibTable, LpmIndex

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipgate.stack import Stack

# What split_line() (shlex, punctuation ">;|&", comments) would treat specially.
_SPECIAL = re.compile(r"[#\"'\\>;|&]")
_OBJ = frozenset({"r", "ro", "rou", "rout", "route"})  # matches(w, "route"), as IpCommand.do_cmd
_ADD = frozenset({"a", "ad", "add"})  # matches(w, "add"): first entry of do_route's flag table
_METRIC = frozenset({"metric", "priority", "preference"})
_PROTO = frozenset({"proto", "protocol"})
_PLEN = {str(n): n for n in range(33)}
_HOST = tuple(~m & 0xFFFFFFFF for m in MASKS)
_INVALID_PREFIX = NetlinkError(errno.EINVAL, "Invalid prefix for given prefix length").iproute2_text()
# Tables that receive this many routes in one load are re-indexed once at the end
# instead of per insert; small additions to an indexed table stay incremental.
_DETACH_AFTER = 4096


class NotBulk(ConfigError):
    """A line the bulk grammar does not cover: run it through the general parser."""

    def __init__(self, filename: str, line: int, text: str) -> None:
        super().__init__(filename, line, f"not a bulk route line: {text.strip()!r}")
        self.text = text


@dataclass(slots=True)
class _Key:
    """What the words other than the prefix resolve to (None: not bulk)."""

    table: FibTable | None
    table_id: int
    fa: FibAlias | None
    leaf: tuple[FibAlias, ...]
    error: str  # iproute2's text for a route the kernel refuses, else ""


@dataclass(slots=True)
class _Undo:
    """Enough to take a load back: fresh prefixes per (table, plen), other inserts in order."""

    fresh: dict[tuple[int, int], array[int]] = field(default_factory=dict)
    inserted: list[tuple[FibTable, int, int, FibAlias]] = field(default_factory=list)
    created: list[int] = field(default_factory=list)


class BulkLoader:
    """One load into one Stack.  `feed` lines, then `finish` (or `rollback`)."""

    def __init__(self, stack: Stack, filename: str, *, script: bool = False) -> None:
        self.stack = stack
        self.filename = filename
        self.script = script  # shell-script dialect: the leading `ip` is required
        self.count = 0
        self._keys: dict[tuple[str | None, ...], _Key | None] = {}
        self._undo = _Undo()
        self._per_table: dict[int, int] = {}
        self._detached: dict[int, LpmIndex] = {}

    def invalidate(self) -> None:
        """Forget the per-key results: call after anything else changed the stack."""
        self._keys.clear()

    # -- parsing -----------------------------------------------------------
    def _resolve(self, gw: str, dev: str | None, table: str | None, metric: str | None,
                 proto: str | None) -> _Key | None:
        """The same values IpCommand._route_args/route_modify derive, or None."""
        st = self.stack
        try:
            gw_addr = _addr(gw)
            oif = 0
            if dev is not None:
                d = st.devices.get(dev)
                if d is None:
                    return None  # "Cannot find device": the general parser says it
                oif = d.ifindex
            tb = RT_TABLE_MAIN if table is None else st.table_id(table)
            prio = 0
            if metric is not None:
                prio = int(metric, 0)  # _u32()
                if not 0 <= prio <= 0xFFFFFFFF:
                    return None
            protocol = RTPROT_BOOT
            if proto is not None:
                protocol = PROTO_BY_NAME[proto] if proto in PROTO_BY_NAME else int(proto, 0)
        except ValueError:
            return None
        cfg = FibConfig(dst=0, dst_len=0, table=tb, protocol=protocol, scope=RT_SCOPE_UNIVERSE,
                        type=RTN_UNICAST, priority=prio, gw=gw_addr, oif=oif)
        try:
            fa = st.interner.alias(st._create_alias(cfg))
        except NetlinkError as e:
            return _Key(None, tb, None, (), e.iproute2_text())
        return _Key(None, tb, fa, st.interner.leaf((fa,)), "")

    def parse(self, line: str) -> tuple[_Key, int, int] | int | None:
        """(key, prefix, plen) for a bulk line; 0 for a blank/comment line; None: not bulk."""
        w = line.split()
        if not w:
            return 0
        if _SPECIAL.search(line) or not line.isascii():
            return 0 if w[0].startswith("#") else None
        i = 0
        if w[0] == "ip" or (self.script and w[0].endswith("/ip")):
            i = 1
        elif self.script:
            return None
        n = len(w)
        if n < i + 5 or w[i] not in _OBJ or w[i + 1] not in _ADD:
            return None
        dst = gw = dev = table = metric = proto = None
        j = i + 2
        try:
            while j < n:
                k = w[j]
                if k == "via":
                    gw = w[j + 1]
                elif k == "dev":
                    dev = w[j + 1]
                elif k == "table":
                    table = w[j + 1]
                elif k in _METRIC:
                    metric = w[j + 1]
                elif k in _PROTO:
                    proto = w[j + 1]
                elif dst is None and (k[0].isdigit() or k == "default"):
                    dst = k
                    j += 1
                    continue
                else:
                    return None
                j += 2
        except IndexError:
            return None
        if gw is None or dst is None:
            return None
        ck = (gw, dev, table, metric, proto)
        try:
            key = self._keys[ck]
        except KeyError:
            key = self._keys[ck] = self._resolve(gw, dev, table, metric, proto)
        if key is None:
            return None
        if dst == "default":
            return key, 0, 0
        a, slash, ln = dst.partition("/")
        try:
            p: int = _unpack(_pton(socket.AF_INET, a))[0]
        except OSError:
            return None
        if not slash:
            return key, p, 32
        plen = _PLEN.get(ln)
        if plen is None:
            if not (ln.isdigit() and int(ln) <= 32):
                return None  # a dotted netmask or garbage: the general parser decides
            plen = int(ln)
        return key, p, plen

    # -- applying ----------------------------------------------------------
    def apply(self, lineno: int, key: _Key, prefix: int, plen: int) -> None:
        """Stack.route_add() for one parsed line; ConfigError if the kernel would refuse it."""
        if prefix & _HOST[plen]:
            raise ConfigError(self.filename, lineno, _INVALID_PREFIX)
        fa = key.fa
        if fa is None:
            raise ConfigError(self.filename, lineno, key.error)
        t = key.table
        if t is None:
            t = key.table = self._table(key.table_id)
        if t.add_fresh(prefix, plen, key.leaf):
            u = self._undo.fresh.get((key.table_id, plen))
            if u is None:
                u = self._undo.fresh[(key.table_id, plen)] = array("I")
            u.append(prefix)
        else:
            try:
                t.insert(prefix, plen, fa)  # `ip route add`: create + excl
            except NetlinkError as e:
                raise ConfigError(self.filename, lineno, e.iproute2_text()) from None
            self._undo.inserted.append((t, prefix, plen, fa))
        self.count += 1

    def _table(self, tb: int) -> FibTable:
        st = self.stack
        if tb not in st.tables:
            self._undo.created.append(tb)
        return st.table(tb)

    def feed(self, lineno: int, line: str) -> bool:
        """Parse and apply one line.  False (nothing done) if it is not a bulk line."""
        r = self.parse(line)
        if r is None:
            return False
        if r == 0:
            return True
        assert not isinstance(r, int)
        self.apply(lineno, *r)
        return True

    def run(self, numbered: Iterable[tuple[int, str]],
            other: Callable[[int, str], None]) -> int:
        """Feed every line; lines that are not bulk go to `other(lineno, line)`, in order."""
        parse, apply = self.parse, self.apply
        per_table = self._per_table
        for lineno, line in numbered:
            r = parse(line)
            if r is None:
                self.invalidate()
                other(lineno, line)
                self.invalidate()  # the general path may have changed devices, tables...
                continue
            if isinstance(r, int):
                continue
            key = r[0]
            tb = key.table_id
            c = per_table.get(tb, 0) + 1
            per_table[tb] = c
            if c == _DETACH_AFTER:
                self._detach(tb)
            apply(lineno, *r)
        return self.count

    def _detach(self, tb: int) -> None:
        """Many routes for this table: drop its index now, rebuild it once in finish()."""
        t = self.stack.tables.get(tb)
        if t is not None and t.index is not None:
            self._detached[tb] = t.index
            t.index = None

    def finish(self, *, grow: bool = True) -> None:
        """Re-index what was detached; with `grow`, index the tables that grew big."""
        for tb, ix in self._detached.items():
            t = self.stack.tables.get(tb)
            if t is not None and t.index is None:
                t.attach_index(ix)
        self._detached.clear()
        if not grow:
            return
        for tb in self._per_table:
            t = self.stack.tables.get(tb)
            if t is not None:
                t.maybe_index()

    def rollback(self) -> None:
        """Take back every route this loader added (not what `other` did)."""
        st = self.stack
        for t, p, n, fa in reversed(self._undo.inserted):
            t.remove(p, n, fa)
        for (tb, n), prefixes in self._undo.fresh.items():
            t = st.tables[tb]
            for p in prefixes:
                t.remove(p, n, t.leaf(p, n)[0])
        for tb in self._undo.created:
            if tb in st.tables and not len(st.tables[tb]):
                del st.tables[tb]
        self._undo = _Undo()
        self.count = 0


def _addr(text: str) -> int:
    """inet.get_addr_1() restricted to the strict dotted quad (anything else is not bulk)."""
    try:
        v: int = _unpack(_pton(socket.AF_INET, text))[0]
    except OSError:
        raise ValueError(text) from None
    return v


_pton = socket.inet_pton
_unpack = struct.Struct("!I").unpack


def load_routes(stack: Stack, lines: Iterable[str], filename: str, *, script: bool = False) -> int:
    """Add every route of `lines` (an `ip -batch` style list), all or nothing.

    Returns the number of routes added.  Raises `ConfigError(filename, line,
    message)` for the first line the general path would refuse, with its message
    ("RTNETLINK answers: File exists", "Error: Nexthop has invalid gateway." ...),
    or `NotBulk` (a ConfigError) for the first line outside the bulk grammar.  In
    both cases the stack is left as it was.  `script=True` takes the shell-script
    dialect (the leading `ip` is required: a bare `route` is net-tools' command).
    """
    ld = BulkLoader(stack, filename, script=script)

    def refuse(lineno: int, line: str) -> None:
        raise NotBulk(filename, lineno, line)

    try:
        ld.run(enumerate(lines, 1), refuse)
    except ConfigError:
        ld.rollback()
        ld.finish(grow=False)
        raise
    ld.finish()
    return ld.count


def load_lines(stack: Stack, numbered: Iterable[tuple[int, str]], filename: str,
               other: Callable[[int, str], None], *, script: bool = True) -> int:
    """Mixed scripts: bulk lines go the fast way, every other line to `other`, in order.

    `other(lineno, line)` runs the general path and raises ConfigError on
    failure.  Not atomic: on an error the lines before it stay applied, so the
    caller works on a copy (as `shell.load_script` does).  Returns the number of
    routes added the fast way.
    """
    ld = BulkLoader(stack, filename, script=script)
    try:
        return ld.run(numbered, other)
    finally:
        ld.finish()


__all__ = ["BulkLoader", "NotBulk", "load_lines", "load_routes"]
