#!/usr/bin/env python3
"""ipgate benchmarks: full-table load, LPM lookups, route decisions, RPDB size.

    python bench/run.py            # 1,000,000 prefixes (a few minutes; kernel part needs root)
    python bench/run.py --quick    # 100,000 prefixes, fewer iterations (CI smoke, < 2 min)

Every figure is printed beside a baseline measured in the same run, and their
ratio.  Nothing here asserts a threshold: the targets are printed for reading.

(a) loading the table: ipgate's bulk loader (route/bulk.py) in a child process,
    so its resident size is the table's; the general Shell path on a sample,
    extrapolated; the kernel through `ip -batch` in a network namespace created
    and deleted here (skipped unless root).
(b) longest-prefix lookups on that table: the DIR-24-8 index (route/lpm.py)
    against the dict-per-length scan FibTable does without it.
(c) `route_output` decisions (the `ip route get` path) with the default rules.
(d) RPDB decisions with 10 and with 10,000 rules.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tablegen  # noqa: E402

from ipgate.errors import NetlinkError  # noqa: E402
from ipgate.inet import MASKS  # noqa: E402
from ipgate.route.bulk import load_routes  # noqa: E402
from ipgate.route.fib import FibTable  # noqa: E402
from ipgate.route.lookup import ROUTE_CACHE_MAX, fib_rules_lookup, route_output  # noqa: E402
from ipgate.route.lpm import Dir248  # noqa: E402
from ipgate.route.rules import Flow  # noqa: E402
from ipgate.shell import Shell, load_script  # noqa: E402
from ipgate.stack import Stack  # noqa: E402

ROWS: list[tuple[str, str, str, str, str]] = []


def row(figure: str, ours: str, base: str, ratio: float | None, target: str = "") -> None:
    r = "" if ratio is None else f"{ratio:.2f}x"
    ROWS.append((figure, ours, base, r, target))
    print(f"  {figure:44s} {ours:>18s}   vs {base:34s} {r:>8s}   {target}", flush=True)


def rate(n: int, secs: float) -> str:
    return f"{n / secs:,.0f}/s"


def timed(fn: Callable[[], object]) -> float:
    gc.collect()
    gc.disable()
    try:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    finally:
        gc.enable()


def vm(field: str) -> float:
    """VmRSS / VmHWM of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def setup_stack() -> Stack:
    return load_script("\n".join(tablegen.setup_lines()) + "\n", "setup")


# -- (a) loading ----------------------------------------------------------------
def child_load(path: str) -> None:
    """Run in a fresh interpreter: load the file, report time and memory as JSON."""
    st = setup_stack()
    gc.collect()
    before = vm("VmRSS")
    t = time.perf_counter()
    with open(path) as f:
        n = load_routes(st, f, path)
    secs = time.perf_counter() - t
    gc.collect()
    ix = st.tables[254].index
    print(json.dumps({"routes": n, "secs": secs, "rss_before": before, "rss_after": vm("VmRSS"),
                      "hwm": vm("VmHWM"), "index_mb": ix.nbytes / 2**20 if isinstance(ix, Dir248) else 0}))


def kernel_load(path: str) -> tuple[float | None, str]:
    """Seconds `ip -batch` takes in a fresh namespace, or (None, why not)."""
    if os.geteuid() != 0:
        return None, "skipped: needs root for `ip netns add`"
    ns = f"ipgate-bench-{os.getpid()}-{secrets.token_hex(3)}"

    def ip(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "-n", ns, *args], capture_output=True, text=True, timeout=timeout, check=True)

    try:
        subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        return None, f"skipped: ip netns add failed: {getattr(e, 'stderr', e)}"
    try:
        ip("link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        ip("link", "set", "veth0", "up")
        ip("link", "set", "veth1", "up")
        ip("addr", "add", tablegen.LOCAL, "dev", "veth0")
        t = time.perf_counter()
        ip("-batch", path, timeout=600)
        secs = time.perf_counter() - t
        got = int(subprocess.run(f"ip -n {ns} route show | wc -l", shell=True, capture_output=True,
                                 text=True, check=True).stdout)
        return secs, f"{got:,} routes in the namespace"
    except subprocess.CalledProcessError as e:
        return None, f"skipped: kernel refused: {e.stderr.strip()[:200]}"
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def bench_load(path: str, lines: list[str], quick: bool, kernel: bool) -> None:
    n = len(lines)
    print(f"\n(a) loading {n:,} routes")
    p = subprocess.run([sys.executable, __file__, "--child-load", path], capture_output=True, text=True,
                       check=True)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    ours = float(res["secs"])
    # the general path (Shell, one `ip route add` at a time) on a sample
    k = 5000 if quick else 20000
    sample = "\n".join(tablegen.setup_lines() + ["ip " + ln for ln in lines[:k]]) + "\n"
    slow = timed(lambda: load_script(sample, "sample")) * n / k
    row(f"load {n:,} routes, bulk loader", f"{ours:.2f} s", f"general path ~{slow:.1f} s (from {k:,})",
        slow / ours)
    ksecs, why = kernel_load(path) if kernel else (None, "skipped (--no-kernel)")
    if ksecs is None:
        row("load, vs kernel `ip -batch` in a netns", f"{ours:.2f} s", why, None, "target: <= 1/4 of kernel")
    else:
        ratio = ksecs / ours
        verdict = ("MET" if ratio >= 4 else "MISSED") if n >= 1_000_000 else "(set for 1,000,000)"
        row("load, vs kernel `ip -batch` in a netns", f"{ours:.2f} s", f"kernel {ksecs:.2f} s ({why})", ratio,
            f"target >= 4x: {verdict}")
    hwm = float(res["hwm"])
    row("ipgate process peak RSS (VmHWM)", f"{hwm:.0f} MB",
        f"before the load {res['rss_before']:.0f} MB", None,
        f"target <= 300 MB: {'MET' if hwm <= 300 else 'MISSED'}")
    row("  of which the table (RSS after - before)", f"{res['rss_after'] - res['rss_before']:.0f} MB",
        f"DIR-24-8 index {res['index_mb']:.0f} MB", None)


# -- (b) lookups ------------------------------------------------------------------
def dict_longest(t: FibTable) -> Callable[[int], int]:
    """The baseline: FibTable's own scan of the per-length dicts, longest first."""
    by_len, plens = t._by_len, t._plens

    def longest(addr: int) -> int:
        for n in plens:
            if addr & MASKS[n] in by_len[n]:
                return n
        return -1

    return longest


def sample_addrs(prefixes: list[tuple[np.ndarray, int]], k: int, seed: int) -> list[int]:
    """Destinations inside random prefixes of the table (weighted by count), as traffic would be."""
    rng = np.random.default_rng(seed)
    allp = np.concatenate([a for a, _ in prefixes])
    lens = np.concatenate([np.full(a.size, n) for a, n in prefixes])
    pick = rng.integers(0, allp.size, size=k)
    host = rng.integers(0, 1 << 32, size=k, dtype=np.uint64) & ((1 << (32 - lens[pick])) - 1).astype(np.uint64)
    return [int(x) for x in (allp[pick].astype(np.uint64) | host)]


def bench_lookups(st: Stack, addrs: list[int]) -> None:
    t = st.tables[254]
    ix = t.index
    assert isinstance(ix, Dir248)
    k = len(addrs)
    print(f"\n(b) longest-prefix lookups, {k:,} destinations inside the table's prefixes")
    base_fn = dict_longest(t)
    lx = ix.longest
    want = [base_fn(a) for a in addrs[:2000]]
    assert [lx(a) for a in addrs[:2000]] == want
    s_ix = timed(lambda: [lx(a) for a in addrs])
    s_base = timed(lambda: [base_fn(a) for a in addrs])
    row("longest(): DIR-24-8 index", rate(k, s_ix), f"dict per length {rate(k, s_base)}", s_base / s_ix,
        f"target >= 1,000,000/s: {'MET' if k / s_ix >= 1e6 else 'MISSED'}")
    arr = np.array(addrs, dtype=np.uint32)
    s_vec = timed(lambda: ix.longest_many(arr))
    row("longest_many(): vectorised, numpy array in", rate(k, s_vec), f"scalar index {rate(k, s_ix)}",
        s_ix / s_vec)
    lk = t.lookup
    s_tab = timed(lambda: [lk(a, 0, 0, 0) for a in addrs])
    t.index = None
    try:
        s_tab0 = timed(lambda: [lk(a, 0, 0, 0) for a in addrs])
    finally:
        t.index = ix
    row("FibTable.lookup() (leaf walk, FibResult)", rate(k, s_tab), f"without index {rate(k, s_tab0)}",
        s_tab0 / s_tab, f"{'MET' if k / s_tab >= 1e6 else 'below'} 1,000,000/s")


# -- (c) route_output ---------------------------------------------------------------
def bench_route_output(st: Stack, small: Stack, addrs: list[int]) -> None:
    k = len(addrs)
    print(f"\n(c) route_output (`ip route get`) with the default rules, {k:,} decisions")
    flows = [Flow(a) for a in addrs]

    def decide(s: Stack, cold: bool = True) -> Callable[[], object]:
        def go() -> None:
            if cold:
                s.gen.bump()  # empty the decision cache: every flow is new
            for fl in flows:
                route_output(s, fl)
        return go

    r = route_output(st, flows[0])
    assert r.gateway and r.res is not None and r.res.table == 254, r
    s_full = timed(decide(st))
    t = st.tables[254]
    ix, t.index = t.index, None
    try:
        s_noix = timed(decide(st))
    finally:
        t.index = ix
    s_small = timed(decide(small))
    met = "MET" if k / s_full >= 3e5 else "MISSED"
    row("route_output, full table + index, cold", rate(k, s_full), f"same table, no index {rate(k, s_noix)}",
        s_noix / s_full, f"target >= 300,000/s: {met}")
    row("route_output, full table + index", rate(k, s_full), f"a 5-route table {rate(k, s_small)}",
        s_small / s_full)
    # a working set the decision cache holds (ROUTE_CACHE_MAX entries)
    hot = flows[: min(len(flows), ROUTE_CACHE_MAX // 2)]
    for fl in hot:
        route_output(st, fl)
    s_warm = timed(lambda: [route_output(st, fl) for fl in hot]) * k / len(hot)
    met = "MET" if k / s_warm >= 3e5 else "MISSED"
    row(f"route_output, {len(hot):,} flows seen before (cache)", rate(k, s_warm), f"cold {rate(k, s_full)}",
        s_full / s_warm, f"target >= 300,000/s: {met}")
    make = timed(lambda: [Flow(a) for a in addrs])
    row("  (building the Flow keys, not counted above)", rate(k, make), "", None)


# -- (d) rules ------------------------------------------------------------------------
def rule_lines(n: int, kind: str = "mix") -> list[str]:
    """n rules the way a policy-routing box grows them: per-customer sources, marks, destinations
    ("mix"), or per-service port rules ("dport")."""
    out = []
    for i in range(n):
        tb = 100 + i % 10
        if kind == "dport":
            out.append(f"ip rule add ipproto tcp dport {1 + i} lookup {tb} pref {1000 + i}")
            continue
        if i % 10 < 5:
            sel = f"from 10.{i >> 8 & 255}.{i & 255}.0/24"
        elif i % 10 < 8:
            sel = f"fwmark 0x{i + 1:x}"
        else:
            sel = f"to 172.{16 + (i >> 16 & 15)}.{i >> 8 & 255}.{i & 255}/32"
        out.append(f"ip rule add {sel} lookup {tb} pref {1000 + i}")
    return out


def rpdb(nrules: int, general: int, kind: str = "mix") -> tuple[Stack, float]:
    """A stack with `nrules` rules (3 default + custom).  The first `general` go through
    `ip rule add`; the rest too, but with RuleSet.add's linear duplicate scan skipped
    (the generated rules are distinct and in priority order, so the list is the same)."""
    st = setup_stack()
    sh = Shell(st)
    for tb in range(100, 110):
        assert sh.run_line(f"ip route add default via 192.0.2.{1 + tb % 4} table {tb}").status == 0
    lines = rule_lines(nrules - 3, kind)
    t = time.perf_counter()
    for ln in lines[:general]:
        res = sh.run_line(ln)
        assert res.status == 0, res
    secs = time.perf_counter() - t
    rs = st.rules

    def append(rule: object) -> None:
        # where add() puts it: after the custom rules, before main (32766) and default (32767)
        rs.rules.insert(len(rs.rules) - 2, rule)  # type: ignore[arg-type]
        rs._index = None

    rs.add = append  # type: ignore[method-assign]
    try:
        for ln in lines[general:]:
            assert sh.run_line(ln).status == 0
    finally:
        del rs.add
    assert len(rs.rules) == nrules
    assert all(a.pref < b.pref for a, b in zip(rs.rules, rs.rules[1:], strict=False))
    return st, secs


def bench_rules(quick: bool) -> None:
    k = 20000 if quick else 100000
    print(f"\n(d) RPDB decisions, 10 vs 10,000 rules, {k:,} flows")
    few, _ = rpdb(10, 7)
    general = 2000 if quick else 9997
    many, add_secs = rpdb(10000, general)
    rng = random.Random(5)
    flows = []
    for _ in range(k):
        i = rng.randrange(9997)
        daddr = rng.getrandbits(32) & 0x7FFFFFFF | 0x01000000
        c = rng.random()
        if c < 0.3:  # a customer source
            flows.append(Flow(daddr, saddr=(10 << 24) | (i >> 8 & 255) << 16 | (i & 255) << 8 | 9, iif=1))
        elif c < 0.6:  # a mark
            flows.append(Flow(daddr, iif=1, mark=rng.randrange(1, 12000)))
        else:  # nothing special: falls through to main
            flows.append(Flow(daddr, iif=1))

    def cost(s: Stack) -> float:
        s.rules.index  # noqa: B018  (build the RuleIndex outside the timing)

        def go() -> None:
            for fl in flows:
                fib_rules_lookup(s, fl)
        return timed(go) / k

    c10, c10k = cost(few), cost(many)
    ratio = c10k / c10
    row("fib_rules_lookup, 10,000 rules", f"{c10k * 1e6:.2f} us", f"10 rules {c10 * 1e6:.2f} us", ratio,
        f"target <= 2x: {'MET' if ratio <= 2 else 'MISSED'}")
    oflows = [Flow(f.daddr, mark=f.mark) for f in flows]

    def out_cost(s: Stack) -> float:
        def go() -> None:
            for fl in oflows:
                try:
                    route_output(s, fl)
                except NetlinkError:
                    pass
        return timed(go) / k

    o10, o10k = out_cost(few), out_cost(many)
    row("route_output, 10,000 rules", f"{o10k * 1e6:.2f} us", f"10 rules {o10 * 1e6:.2f} us", o10k / o10,
        f"target <= 2x: {'MET' if o10k / o10 <= 2 else 'MISSED'}")
    per = add_secs / general
    row(f"`ip rule add`, first {general:,} rules", f"{add_secs:.1f} s", f"{per * 1e3:.2f} ms/rule", None,
        "")
    # RuleIndex also files rules by oif, single port, ipproto and TOS
    port, _ = rpdb(10000, 0, kind="dport")
    few_port, _ = rpdb(10, 0, kind="dport")
    pflows = [Flow(f.daddr, iif=1, proto=6, dport=rng.randrange(1, 65535)) for f in flows[:200]]
    fib_rules_lookup(port, pflows[0])  # build the rule index outside the timing
    fib_rules_lookup(few_port, pflows[0])
    c_port = timed(lambda: [fib_rules_lookup(port, fl) for fl in pflows]) / len(pflows)
    c_few = timed(lambda: [fib_rules_lookup(few_port, fl) for fl in pflows]) / len(pflows)
    row("fib_rules_lookup, 10,000 `ipproto tcp dport` rules", f"{c_port * 1e6:.0f} us", f"10 such rules "
        f"{c_few * 1e6:.1f} us", c_port / c_few, f"target <= 2x: {'MET' if c_port / c_few <= 2 else 'MISSED'}")


# -- driver -----------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100,000 prefixes and fewer iterations")
    ap.add_argument("--prefixes", type=int, help="table size (default 1,000,000; 100,000 with --quick)")
    ap.add_argument("--no-kernel", action="store_true", help="skip the kernel comparison")
    ap.add_argument("--child-load", metavar="FILE", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child_load:
        child_load(a.child_load)
        return 0
    n = a.prefixes or (100_000 if a.quick else 1_000_000)
    t0 = time.perf_counter()
    print(f"ipgate bench: {n:,} prefixes{' (quick)' if a.quick else ''}, Python {sys.version.split()[0]}, "
          f"numpy {np.__version__}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="ipgate-bench-") as tmp:
        path = os.path.join(tmp, "routes.batch")
        prefixes = tablegen.prefixes(n)
        lines = tablegen.route_lines(n)
        Path(path).write_text("\n".join(lines) + "\n")
        bench_load(path, lines, a.quick, not a.no_kernel)
        del lines
        st = setup_stack()
        with open(path) as f:
            load_routes(st, f, path)
    assert st.tables[254].index is not None  # indexed by load_routes (FibTable.maybe_index)
    k = 200_000 if a.quick else 1_000_000
    addrs = sample_addrs(prefixes, k, seed=3)
    bench_lookups(st, addrs)
    small = setup_stack()
    Shell(small).run_line("ip route add default via 192.0.2.1")
    bench_route_output(st, small, addrs[: k // 5])
    del st
    gc.collect()
    bench_rules(a.quick)
    print(f"\ntotal bench time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
