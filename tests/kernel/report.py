"""Run seeds against the kernel oracle and ipgate; print agreement statistics.

    python -m tests.kernel.report --seeds 50 [--start 0] [--queries 50] [--state]
        [--show 3] [--kernel-only] [--json FILE]

`--kernel-only` runs just the oracle (useful to see what the kernel says).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from . import compare
from .gen import Case, generate
from .oracle import KernelOracle, Result, repo_root

STATE_CMDS = ("ip -j -4 route show table all", "ip -j rule show", "ip -j -4 addr show")
IPGATE_CALL_TIMEOUT = 10  # seconds per ipgate command (in-process, via SIGALRM)


@dataclass
class SideRun:
    config: list[Result] = field(default_factory=list)
    queries: list[Result] = field(default_factory=list)
    state: list[Result] = field(default_factory=list)
    routes_dump: str = "[]"


def load_shell_class() -> type:
    """Import ipgate.shell.Shell lazily (the oracle must work without ipgate)."""
    try:
        mod = importlib.import_module("ipgate.shell")
    except ImportError:
        src = str(repo_root() / "src")
        if src in sys.path:
            raise
        sys.path.insert(0, src)
        mod = importlib.import_module("ipgate.shell")
    cls = mod.Shell
    assert isinstance(cls, type)
    return cls


def run_kernel(case: Case, state: bool = False) -> SideRun:
    side = SideRun()
    with KernelOracle() as k:
        side.config = [k.run(line) for line in case.config]
        side.queries = [k.route_get_json(q) for q in case.queries]
        side.routes_dump = k.run("ip -j -4 route show table all").out or "[]"
        if state:
            side.state = [k.run(c) for c in STATE_CMDS]
    return side


class _Timeout(Exception):
    pass


@contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    # ipgate runs in-process; bound each call where signals are available.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: object) -> None:
        raise _Timeout(f"ipgate call exceeded {seconds}s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _gate_call(run_line: Callable[[str], compare.ResultLike], line: str) -> Result:
    try:
        with _alarm(IPGATE_CALL_TIMEOUT):
            r = run_line(line)
        return Result(int(r.status), str(r.out), str(r.err))
    except Exception as e:  # an ipgate crash is a finding, not a harness failure
        tb = traceback.extract_tb(e.__traceback__)
        where = f"{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else "?"
        return Result(-1, "", f"ipgate exception {type(e).__name__} at {where}: {e}")


def run_ipgate(case: Case, state: bool = False) -> SideRun:
    shell = load_shell_class()()
    # the oracle pins the multipath hash key; with the same key ipgate must pick the same nexthops
    _gate_call(shell.run_line, "sysctl -qw net.ipv4.fib_multipath_hash_seed=1")
    side = SideRun()
    side.config = [_gate_call(shell.run_line, line) for line in case.config]
    side.queries = [_gate_call(shell.run_line, f"ip -j route get {q}") for q in case.queries]
    if state:
        side.state = [_gate_call(shell.run_line, c) for c in STATE_CMDS]
    return side


def compare_case(case: Case, k: SideRun, g: SideRun, state: bool = False,
                 check_order: bool = True) -> compare.CaseReport:
    rep = compare.CaseReport(case.seed, case.config)
    tables = compare.table_map(case.config)
    for i, (line, kr, gr) in enumerate(zip(case.config, k.config, g.config, strict=True)):
        rep.add(compare.compare_config_line(case.seed, i, line, kr, gr))
    # Multipath choices are compared exactly (same hash key on both sides);
    # IPGATE_DIFF_MP_TOLERANT=1 brings back the old tolerance for experiments.
    groups = compare.multipath_groups(k.routes_dump) if os.environ.get("IPGATE_DIFF_MP_TOLERANT") else []
    for i, (q, kr, gr) in enumerate(zip(case.queries, k.queries, g.queries, strict=True)):
        mm, note = compare.compare_query(case.seed, i, q, kr, gr, tables, groups, check_order)
        rep.add(mm)
        if note:
            rep.notes.append(note)
    if state:
        for i, (c, kr, gr) in enumerate(zip(STATE_CMDS, k.state, g.state, strict=True)):
            rep.add(compare.compare_state(case.seed, i, c, kr, gr, tables))
    return rep


def run_seed(seed: int, n_queries: int = 50, state: bool = False,
             check_order: bool = True) -> compare.CaseReport:
    case = generate(seed, n_queries)
    return compare_case(case, run_kernel(case, state), run_ipgate(case, state), state, check_order)


def _kernel_only(seeds: range, n_queries: int) -> None:
    for s in seeds:
        case = generate(s, n_queries)
        side = run_kernel(case)
        print(f"# seed {s}")
        for line, r in zip(case.config, side.config, strict=True):
            print(f"{line}\n    -> {compare._short(r)}")
        for q, r in zip(case.queries, side.queries, strict=True):
            print(f"ip -j route get {q}\n    -> {compare._short(r)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.kernel.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20, help="number of seeds (default 20)")
    ap.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--queries", type=int, default=50, help="queries per seed")
    ap.add_argument("--state", action="store_true",
                    help="also compare route/rule/addr dumps after the config")
    ap.add_argument("--no-order", action="store_true", help="ignore JSON key order")
    ap.add_argument("--show", type=int, default=0,
                    help="print the first N mismatching seeds in full")
    ap.add_argument("--kernel-only", action="store_true", help="print kernel answers only")
    ap.add_argument("--json", metavar="FILE", help="write all mismatches as JSON")
    a = ap.parse_args(argv)
    seeds = range(a.start, a.start + a.seeds)
    if a.kernel_only:
        _kernel_only(seeds, a.queries)
        return 0
    t0 = time.monotonic()
    reports = []
    for s in seeds:
        reports.append(run_seed(s, a.queries, a.state, not a.no_order))
    dt = time.monotonic() - t0
    print(compare.summarise(reports))
    print(f"time: {dt:.1f}s ({dt / max(1, len(reports)):.2f}s per seed)")
    shown = 0
    for r in reports:
        if r.mismatches and shown < a.show:
            print()
            print(r.format(limit=10))
            shown += 1
    if a.json:
        with open(a.json, "w") as f:
            json.dump([asdict(m) for r in reports for m in r.mismatches], f, indent=1)
    return 0 if all(not r.mismatches for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
