"""Normalise and compare kernel and ipgate answers.

Pure functions: no subprocesses here.  Both sides are given as objects with
`status`, `out` and `err` (the oracle's and ipgate's `Result` both fit).
"""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from .oracle import STD_TABLES

# /etc/iproute2/rt_dsfield as shipped with iproute2: `ip` prints these names
# for `tos`, ipgate may print hex; compare numbers.
DSFIELD_NAMES: dict[str, int] = {
    "default": 0x00, "AF11": 0x28, "AF12": 0x30, "AF13": 0x38, "AF21": 0x48,
    "AF22": 0x50, "AF23": 0x58, "AF31": 0x68, "AF32": 0x70, "AF33": 0x78,
    "AF41": 0x88, "AF42": 0x90, "AF43": 0x98, "CS1": 0x20, "CS2": 0x40,
    "CS3": 0x60, "CS4": 0x80, "CS5": 0xA0, "CS6": 0xC0, "CS7": 0xE0, "EF": 0xB8,
}
# Fields whose value may legitimately differ when a multipath route is hit
# and the two sides hash to different (but both valid) nexthops.
MULTIPATH_FIELDS = frozenset({"gateway", "dev", "prefsrc", "cache", "flags"})


class ResultLike(Protocol):
    @property
    def status(self) -> int: ...
    @property
    def out(self) -> str: ...
    @property
    def err(self) -> str: ...


@dataclass(frozen=True)
class Mismatch:
    seed: int
    phase: str  # "config" | "query" | "state"
    index: int
    item: str  # the config line, the query args, or the state command
    kind: str  # grouping key for reports
    detail: str
    kernel: str
    ipgate: str

    def format(self) -> str:
        return (f"[seed {self.seed} {self.phase} #{self.index}] {self.item}\n"
                f"    kind:   {self.kind}\n    detail: {self.detail}\n"
                f"    kernel: {self.kernel}\n    ipgate: {self.ipgate}")


@dataclass
class CaseReport:
    seed: int
    config: list[str]
    total: int = 0
    agreed: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # tolerated differences

    @property
    def agreement(self) -> float:
        return 100.0 if self.total == 0 else 100.0 * self.agreed / self.total

    def add(self, mm: Mismatch | None) -> None:
        self.total += 1
        if mm is None:
            self.agreed += 1
        else:
            self.mismatches.append(mm)

    def format(self, limit: int = 5, with_config: bool = True) -> str:
        out = [f"seed {self.seed}: {self.agreed}/{self.total} agree "
               f"({self.agreement:.1f}%), {len(self.mismatches)} mismatches"]
        if with_config and self.mismatches:
            out.append("  config:")
            out += [f"    {i:2d}: {line}" for i, line in enumerate(self.config)]
        out += [m.format() for m in self.mismatches[:limit]]
        if len(self.mismatches) > limit:
            out.append(f"  ... {len(self.mismatches) - limit} more")
        return "\n".join(out)


# -- helpers ---------------------------------------------------------------------

def table_map(config: list[str]) -> dict[str, int]:
    """Names defined by `echo "N NAME" >> /etc/iproute2/rt_tables` lines."""
    names = dict(STD_TABLES)
    for line in config:
        try:
            w = shlex.split(line)
        except ValueError:
            continue
        if len(w) == 4 and w[0] == "echo" and w[3] == "/etc/iproute2/rt_tables":
            if w[2] == ">":
                names = dict(STD_TABLES)
            parts = w[1].split()
            if len(parts) == 2 and parts[0].isdigit() and parts[1] not in names:
                names[parts[1]] = int(parts[0])
    return names


def _norm_err(text: str) -> str:
    return " ".join(text.split())


def _short(r: ResultLike) -> str:
    if r.status == 0:
        return f"ok {r.out.strip()[:400]}" if r.out.strip() else "ok"
    return f"status {r.status}: {_norm_err(r.err)[:300] or '(no stderr)'}"


def _outcome(r: ResultLike) -> str:
    return "OK" if r.status == 0 else f"ERR({_norm_err(r.err)[:90]})"


def _verb(line: str) -> str:
    w = line.split()
    if w and w[0] == "echo":
        return "echo rt_tables" if "rt_tables" in line else "echo sysctl"
    w = [x for x in w if not x.startswith("-")]
    return " ".join(w[:3])


def _norm_value(key: str, val: Any, tables: dict[str, int]) -> Any:
    if key == "table" and isinstance(val, str):
        return str(tables.get(val, val))
    if key == "tos" and isinstance(val, str):
        if val in DSFIELD_NAMES:
            return DSFIELD_NAMES[val]
        try:
            return int(val, 16) if val.lower().startswith("0x") else int(val)
        except ValueError:
            return val
    return val


def normalise_json(out: str, tables: dict[str, int]) -> list[dict[str, Any]] | None:
    """Parse `ip -j` output into dicts with table/tos as numbers; None if not JSON."""
    try:
        data = json.loads(out) if out.strip() else []
    except json.JSONDecodeError:
        return None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        return None
    return [_norm_obj(d, tables) for d in data]


def _norm_obj(d: dict[str, Any], tables: dict[str, int]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = _norm_obj(v, tables)
        elif isinstance(v, list):
            v = [_norm_obj(x, tables) if isinstance(x, dict) else x for x in v]
        res[k] = _norm_value(k, v, tables)
    return res


def _mp_pair(d: dict[str, Any]) -> tuple[str, str]:
    return str(d.get("gateway", "")), str(d.get("dev", ""))


def multipath_groups(route_dump_json: str) -> list[frozenset[tuple[str, str]]]:
    """(gateway, dev) sets of every multipath route in an `ip -j route show` dump."""
    try:
        data = json.loads(route_dump_json)
    except json.JSONDecodeError:
        return []
    groups = []
    for r in data if isinstance(data, list) else []:
        nhs = r.get("nexthops") if isinstance(r, dict) else None
        if isinstance(nhs, list) and nhs:
            groups.append(frozenset(_mp_pair(n) for n in nhs if isinstance(n, dict)))
    return groups


# -- comparisons -------------------------------------------------------------------

def compare_config_line(seed: int, idx: int, line: str, k: ResultLike,
                        g: ResultLike) -> Mismatch | None:
    verb = _verb(line)
    if line.lstrip().startswith("echo"):
        # Shell error text and codes differ by shell; success is what matters.
        if (k.status == 0) == (g.status == 0):
            return None
        return Mismatch(seed, "config", idx, line, f"config {verb}: kernel={_outcome(k)} "
                        f"ipgate={_outcome(g)}", "success differs", _short(k), _short(g))
    if k.status != g.status:
        detail = "status differs"
        if k.status != 0 and g.status != 0:
            detail = f"exit codes differ ({k.status} vs {g.status})"
        return Mismatch(seed, "config", idx, line,
                        f"config {verb}: kernel={_outcome(k)} ipgate={_outcome(g)}",
                        detail, _short(k), _short(g))
    if k.status != 0 and _norm_err(k.err) != _norm_err(g.err):
        return Mismatch(seed, "config", idx, line,
                        f"config {verb}: error text kernel={_outcome(k)} ipgate={_outcome(g)}",
                        "error text differs", _short(k), _short(g))
    if k.status == 0 and k.out.strip() != g.out.strip():
        return Mismatch(seed, "config", idx, line, f"config {verb}: stdout differs",
                        "stdout differs", _short(k), _short(g))
    return None


def _query_shape(args: str) -> str:
    w = set(args.split())
    return "input" if "iif" in w else "output"


def compare_query(seed: int, idx: int, args: str, k: ResultLike, g: ResultLike,
                  tables: dict[str, int],
                  mp_groups: list[frozenset[tuple[str, str]]] | None = None,
                  check_order: bool = True) -> tuple[Mismatch | None, str | None]:
    """Compare one `ip -j route get ARGS`.  Returns (mismatch, tolerated-note)."""
    shape = _query_shape(args)
    if (k.status == 0) != (g.status == 0) or (k.status and k.status != g.status):
        return Mismatch(seed, "query", idx, args,
                        f"query {shape}: kernel={_outcome(k)} ipgate={_outcome(g)}",
                        "status differs", _short(k), _short(g)), None
    if k.status != 0:
        if _norm_err(k.err) == _norm_err(g.err):
            return None, None
        return Mismatch(seed, "query", idx, args,
                        f"query {shape}: error text kernel={_outcome(k)} ipgate={_outcome(g)}",
                        "error text differs", _short(k), _short(g)), None
    kj = normalise_json(k.out, tables)
    gj = normalise_json(g.out, tables)
    if kj is None or gj is None:
        bad = "kernel" if kj is None else "ipgate"
        return Mismatch(seed, "query", idx, args, f"query {shape}: {bad} output is not JSON",
                        "unparseable output", _short(k), _short(g)), None
    if len(kj) != len(gj):
        return Mismatch(seed, "query", idx, args, f"query {shape}: number of entries",
                        f"{len(kj)} vs {len(gj)} entries", _short(k), _short(g)), None
    for ke, ge in zip(kj, gj, strict=True):
        diff = sorted(f for f in set(ke) | set(ge)
                      if ke.get(f, "<absent>") != ge.get(f, "<absent>"))
        if diff:
            if mp_groups and set(diff) <= MULTIPATH_FIELDS and any(
                    _mp_pair(ke) in grp and _mp_pair(ge) in grp for grp in mp_groups):
                return None, (f"seed {seed} query #{idx} {args}: multipath choice "
                              f"kernel={_mp_pair(ke)} ipgate={_mp_pair(ge)}")
            parts = [f"{f}: {ke.get(f, '<absent>')!r} != {ge.get(f, '<absent>')!r}" for f in diff]
            typ = ke.get("type", "unicast")
            return Mismatch(seed, "query", idx, args,
                            f"query {shape} {typ}: fields {','.join(diff)}",
                            "; ".join(parts), _short(k), _short(g)), None
        if check_order and list(ke) != list(ge):
            return Mismatch(seed, "query", idx, args, f"query {shape}: JSON key order",
                            f"{list(ke)} != {list(ge)}", _short(k), _short(g)), None
    return None, None


def _freeze(x: Any) -> Any:
    if isinstance(x, dict):
        return tuple((k, _freeze(v)) for k, v in x.items())
    if isinstance(x, list):
        return tuple(_freeze(v) for v in x)
    return x


# Link-level fields that differ between veth (oracle) and dummy (ipgate).
_ADDR_KEEP = ("ifname", "mtu", "addr_info")
_ADDRINFO_DROP = {"valid_life_time", "preferred_life_time"}


def _state_view(cmd: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if " addr" in f" {cmd}":
        view = []
        for it in items:
            d = {k: it[k] for k in _ADDR_KEEP if k in it}
            d["addr_info"] = [{k: v for k, v in a.items() if k not in _ADDRINFO_DROP}
                              for a in it.get("addr_info", []) if isinstance(a, dict)]
            view.append(d)
        return view
    return items


def compare_state(seed: int, idx: int, cmd: str, k: ResultLike, g: ResultLike,
                  tables: dict[str, int]) -> Mismatch | None:
    """Compare a dump such as `ip -j route show table all` (order counts, reported apart)."""
    if k.status != g.status:
        return Mismatch(seed, "state", idx, cmd, f"state {cmd}: status",
                        "status differs", _short(k), _short(g))
    kj, gj = normalise_json(k.out, tables), normalise_json(g.out, tables)
    if kj is None or gj is None:
        return Mismatch(seed, "state", idx, cmd, f"state {cmd}: not JSON", "unparseable",
                        _short(k), _short(g))
    kv, gv = _state_view(cmd, kj), _state_view(cmd, gj)
    if kv == gv:
        return None
    kc, gc = Counter(_freeze(x) for x in kv), Counter(_freeze(x) for x in gv)
    missing = [json.dumps(x) for x in kv if kc[_freeze(x)] > gc[_freeze(x)]]
    extra = [json.dumps(x) for x in gv if gc[_freeze(x)] > kc[_freeze(x)]]
    if not missing and not extra:
        return Mismatch(seed, "state", idx, cmd, f"state {cmd}: order", "same entries, other order",
                        "", "")
    return Mismatch(seed, "state", idx, cmd, f"state {cmd}: entries differ",
                    f"{len(missing)} only in kernel, {len(extra)} only in ipgate",
                    "\n      ".join(missing[:6]), "\n      ".join(extra[:6]))


def kind_group(kind: str) -> str:
    """Coarser key: drop addresses/numbers so similar mismatches group together."""
    k = re.sub(r"\b\d+\.\d+\.\d+\.\d+(/\d+)?\b", "A", kind)
    k = re.sub(r"\b(eth\d+|pk\d+)\b", "DEV", k)
    return re.sub(r"(?<![-\w])\d+(-\d+)?\b", "N", k)


def summarise(reports: list[CaseReport]) -> str:
    total = sum(r.total for r in reports)
    agreed = sum(r.agreed for r in reports)
    by_phase: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    example: dict[str, Mismatch] = {}
    for r in reports:
        for m in r.mismatches:
            by_phase[m.phase] += 1
            g = kind_group(m.kind)
            kinds[g] += 1
            example.setdefault(g, m)
    pct = 100.0 if total == 0 else 100.0 * agreed / total
    perfect = sum(1 for r in reports if not r.mismatches)
    lines = [f"seeds: {len(reports)} ({perfect} fully agreeing)",
             f"items: {total}, agreed {agreed} ({pct:.2f}%)",
             "mismatches by phase: " + ", ".join(f"{p}={n}" for p, n in sorted(by_phase.items()))]
    notes = sum(len(r.notes) for r in reports)
    if notes:
        lines.append(f"tolerated multipath nexthop choices: {notes}")
    lines.append("mismatch kinds (count, kind, first example):")
    for g, n in kinds.most_common():
        ex = example[g]
        lines.append(f"{n:5d}  {g}\n         e.g. seed {ex.seed} {ex.phase} #{ex.index}: {ex.item}"
                     f"\n         detail: {ex.detail[:300]}"
                     f"\n         kernel: {ex.kernel[:300]}\n         ipgate: {ex.ipgate[:300]}")
    return "\n".join(lines)
