#!/usr/bin/env python3
"""IP Filter NAT (nat/ipnat/core.py): outside -> inside lookups at 1,000 and
100,000 concurrent map-block sessions, beside a plain dict baseline.

    python bench/ipnat.py             # about half a minute
    python bench/ipnat.py --quick     # 10,000 sessions instead of 100,000 (CI smoke)

The sessions are made the way a gateway makes them: SYNs from 25,000 inside
hosts (four connections each) leave through

    map-block ppp0 10.0.0.0/16 -> 203.0.113.0/24 ports auto

(256 hosts per outside address, 252 ports each), with IP Filter's LARGE_NAT
table sizes (16383 buckets per hash table, at most 180,000 sessions).  Then,
for the first 1,000 and for all the sessions, the run measures:

* `inlookup`: nat_inlookup() alone, the lookup a reply from outside needs
  (remote address/port, outside address/port -> session);
* `check_in`: the whole of fr_checknatin() on a reply: parse, lookup,
  rewrite (address, port, both checksums), age update;
* `dict.get`: a plain dict with as many tuple keys, the same keys looked up:
  the floor any hashed lookup in CPython stands on.

Keys are looked up in a random order, so every session is touched; the
last columns look up only 1,000 of the 100,000 sessions, the working set of
the small table, which separates what the table's size costs (nothing, for a
hash) from what touching more memory costs (CPU caches: the dict baseline
shows it too).  Each figure is the best of three runs; nothing asserts a
threshold.  The servers are 1,009 addresses on ports 80 and 443: with one
server and port, IP Filter's NAT_HASH_FN puts too many map-block sessions in
the same nat_table[1] chain and nat_insert() refuses ~7% of them at
fr_nat_maxbucket (28), as the kernel would.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from ipgate.nat.ipnat.core import IpnatTable  # noqa: E402
from ipgate.nat.ipnat.parse import parse  # noqa: E402
from ipgate.nat.ipnat.state import IpnatState  # noqa: E402
from ipgate.nat.ipnat.table import LARGE_NAT_TABLE_MAX, LARGE_NAT_TABLE_SZ  # noqa: E402
from ipgate.packet.build import build_tcp  # noqa: E402
from ipgate.packet.l4 import TH_ACK, TH_SYN  # noqa: E402

RULE = "map-block ppp0 10.0.0.0/16 -> 203.0.113.0/24 ports auto\n"
REMOTE = 0xC6330000  # 198.51.0.0: the servers are 198.51.0.0 + (i % SERVERS)
SERVERS = 1009
LOOKUPS = 200_000
Key = tuple[int, int, int, int, int]


def make_table(n: int) -> tuple[IpnatTable, list[Key]]:
    """A table holding n sessions; the outside keys of their replies."""
    st = IpnatState()
    assert not st.load(parse(RULE, "bench").rules)
    t = IpnatTable(lambda _: None, table_size=LARGE_NAT_TABLE_SZ, table_max=LARGE_NAT_TABLE_MAX)
    t.sync_rules(st.rules)
    keys: list[Key] = []
    refused = 0
    i = -1
    while len(keys) < n:
        i += 1
        host, conn = divmod(i, 4)
        src = 0x0A000000 | (host + 1)
        remote = REMOTE + i % SERVERS
        dport = 443 if i & 1 else 80
        pkt = build_tcp(src, remote, 20000 + conn, dport, flags=TH_SYN)
        v = t.check_out("ppp0", pkt, 0.0)
        if v.session is None:
            refused += 1
            continue
        s = v.session
        keys.append((6, remote, s.outip, dport, s.outport))
    if refused:
        print(f"  ({refused} connections refused on the way to {n} sessions: nat_insert()'s fr_nat_maxbucket)")
    return t, keys


def timed(fn: Callable[[], int], repeat: int = 3) -> float:
    """Lookups per second, best of `repeat`."""
    best = float("inf")
    n = 0
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            n = fn()
            dt = time.perf_counter() - t0
        finally:
            gc.enable()
        best = min(best, dt)
    return n / best


def measure(t: IpnatTable, keys: list[Key], rng: random.Random, hot: int = 0) -> dict[str, float]:
    """`hot`: look up only that many of the sessions (the same working set as a small table)."""
    pool = keys[:hot] if hot else keys
    order = [pool[rng.randrange(len(pool))] for _ in range(LOOKUPS)]
    baseline = {k: i for i, k in enumerate(keys)}
    inlookup = t.inlookup

    def run_inlookup() -> int:
        found = 0
        for p, src, dst, sp, dp in order:
            if inlookup("ppp0", p, src, dst, sp, dp) is not None:
                found += 1
        assert found == len(order)
        return len(order)

    def run_dict() -> int:
        get = baseline.get
        found = 0
        for k in order:
            if get(k) is not None:
                found += 1
        assert found == len(order)
        return len(order)

    replies = [build_tcp(src, dst, sp, dp, flags=TH_ACK) for _p, src, dst, sp, dp in order[:LOOKUPS // 4]]

    def run_check_in() -> int:
        check_in = t.check_in
        done = 0
        for pkt in replies:
            if check_in("ppp0", bytearray(pkt), 1.0).translated:
                done += 1
        assert done == len(replies)
        return len(replies)

    return {"inlookup": timed(run_inlookup), "check_in": timed(run_check_in), "dict.get": timed(run_dict)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="10,000 sessions instead of 100,000")
    args = ap.parse_args()
    big = 10_000 if args.quick else 100_000
    rng = random.Random(4)
    print(f"rule: {RULE.strip()}")
    t0 = time.perf_counter()
    small_t, small_keys = make_table(1_000)
    big_t, big_keys = make_table(big)
    made = time.perf_counter() - t0
    print(f"sessions: {len(small_t)} and {len(big_t)} (made in {made:.1f} s, "
          f"{(len(small_t) + len(big_t)) / made:,.0f} new sessions/s)")
    st = big_t.stats()
    used = [b for b in st.buckets if b]
    print(f"nat_table[0] chains (IP Filter's hash, {len(st.buckets)} buckets): longest {max(used)}, "
          f"mean {sum(used) / len(used):.1f}")
    small = measure(small_t, small_keys, rng)
    large = measure(big_t, big_keys, rng)
    hot = measure(big_t, big_keys, rng, hot=1_000)
    k = f"{len(big_t) // 1000}k"
    print(f"\n{'lookups/s':<10} {'1k sessions':>12} {k + ' sessions':>13} {'ratio':>6}   "
          f"{k + ', 1k of them':>16} {'ratio':>6}")
    for name in ("inlookup", "check_in", "dict.get"):
        a, b, c = small[name], large[name], hot[name]
        print(f"{name:<10} {a:>12,.0f} {b:>13,.0f} {b / a:>6.2f}   {c:>16,.0f} {c / a:>6.2f}")
    print(f"\ninlookup / dict.get: {small['inlookup'] / small['dict.get']:.2f} at 1k, "
          f"{large['inlookup'] / large['dict.get']:.2f} at {k}")


if __name__ == "__main__":
    main()
