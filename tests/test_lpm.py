"""Dir248 (route/lpm.py) against a brute-force longest-prefix search."""

from __future__ import annotations

import copy
import pickle
import random

import numpy as np

from ipgate.inet import MASKS
from ipgate.route.fib import FibAlias, FibInfo, FibNh, FibTable, Interner
from ipgate.route.lpm import Dir248


def brute(sets: list[set[int]], addr: int) -> int:
    for n in range(32, -1, -1):
        if addr & MASKS[n] in sets[n]:
            return n
    return -1


def rand_prefix(rng: random.Random, base: int) -> tuple[int, int]:
    # Clustered under `base`/8 so that prefixes nest often; every length occurs.
    n = rng.choice([0, 1, 7, 8, 9, 12, 15, 16, 18, 20, 21, 22, 23, 24, 24, 24, 25, 26, 28, 29, 30, 31, 32, 32])
    addr = base | rng.getrandbits(24) if rng.random() < 0.9 else rng.getrandbits(32)
    return addr & MASKS[n], n


def probes(rng: random.Random, sets: list[set[int]], base: int, k: int) -> list[int]:
    present = [(p, n) for n in range(33) for p in sets[n]]
    out = [base | rng.getrandbits(24) for _ in range(k)] + [rng.getrandbits(32) for _ in range(k // 4)]
    for p, n in rng.sample(present, min(len(present), k)):
        span = 1 << (32 - n)
        out += [p, p + span - 1, p + rng.randrange(span), (p - 1) & 0xFFFFFFFF, (p + span) & 0xFFFFFFFF]
    return out


def check(ix: Dir248, sets: list[set[int]], addrs: list[int]) -> None:
    want = [brute(sets, a) for a in addrs]
    got = [ix.longest(a) for a in addrs]
    assert got == want
    assert ix.longest_many(np.array(addrs, dtype=np.uint32)).tolist() == want


def test_interleaved_inserts_and_deletes() -> None:
    rng = random.Random(1)
    base = 10 << 24
    ix = Dir248()
    sets: list[set[int]] = [set() for _ in range(33)]
    for step in range(40):
        for _ in range(150):
            p, n = rand_prefix(rng, base)
            if p not in sets[n]:
                sets[n].add(p)
                ix.insert(p, n)
        present = [(p, n) for n in range(33) for p in sets[n]]
        for p, n in rng.sample(present, len(present) // 3):
            sets[n].discard(p)
            ix.delete(p, n)
        if step % 8 == 0:
            check(ix, sets, probes(rng, sets, base, 400))
    check(ix, sets, probes(rng, sets, base, 2000))
    # Deleting everything folds every block back and empties the index.
    for n in range(33):
        for p in list(sets[n]):
            sets[n].discard(p)
            ix.delete(p, n)
    assert ix.blocks_in_use == 0
    assert not ix.tbl24.any()


def test_build_matches_incremental() -> None:
    rng = random.Random(2)
    base = 172 << 24
    sets: list[set[int]] = [set() for _ in range(33)]
    for _ in range(5000):
        p, n = rand_prefix(rng, base)
        sets[n].add(p)
    built = Dir248()
    built.build(iter([(p, n) for n in range(33) for p in sets[n]]))
    inc = Dir248()
    for n in range(33):
        for p in sets[n]:
            inc.insert(p, n)
    addrs = probes(rng, sets, base, 3000)
    check(built, sets, addrs)
    check(inc, sets, addrs)
    # then keep changing the built one
    present = [(p, n) for n in range(33) for p in sets[n]]
    for p, n in rng.sample(present, 2000):
        sets[n].discard(p)
        built.delete(p, n)
    for _ in range(1000):
        p, n = rand_prefix(rng, base)
        if p not in sets[n]:
            sets[n].add(p)
            built.insert(p, n)
    check(built, sets, probes(rng, sets, base, 3000))


def test_widens_tbl24_past_uint16_block_pointers() -> None:
    ix = Dir248()
    sets: list[set[int]] = [set() for _ in range(33)]
    # 70000 distinct /24s each with a /32: more blocks than uint16 pointers can name.
    hosts = [(i << 8) | 7 for i in range(1 << 16, (1 << 16) + 70000)]
    sets[32].update(hosts)
    sets[8].add(1 << 24)
    ix.build(iter([(p, n) for n in range(33) for p in sets[n]]))
    assert ix.tbl24.dtype == np.uint32
    check(ix, sets, hosts[:500] + [h + 1 for h in hosts[-500:]])
    small = Dir248()
    for h in hosts:
        small.insert(h, 32)
    assert small.tbl24.dtype == np.uint32
    check(small, [set() for _ in range(32)] + [set(hosts)], hosts[::97] + [h ^ 1 for h in hosts[::89]])


def _fa() -> FibAlias:
    return FibAlias(1, 0, FibInfo(3, 0, 0, 0, (FibNh(0x0A000001, 2),)))


def test_bound_to_table_and_copyable() -> None:
    rng = random.Random(3)
    t = FibTable(254, Interner())
    fa = _fa()
    routes = {rand_prefix(rng, 10 << 24) for _ in range(3000)}
    for p, n in routes:
        t.insert(p, n, fa)
    ix = Dir248(t._by_len)
    t.attach_index(ix)
    sets = [set(d) for d in t._by_len]
    addrs = probes(rng, sets, 10 << 24, 1000)
    check(ix, sets, addrs)
    # FibTable._store keeps the index exact (delete restores the parent length)
    for p, n in rng.sample(sorted(routes), 1000):
        t.remove(p, n, fa)
    sets = [set(d) for d in t._by_len]
    check(ix, sets, addrs)
    # deepcopy (load_script copies the Stack) and pickle rebuild the memoryviews
    t2 = copy.deepcopy(t)
    assert isinstance(t2.index, Dir248)
    check(t2.index, sets, addrs)
    p, n = next((p, n) for n in range(33) for p in sets[n] if n > 24)
    t2.remove(p, n, fa)
    assert t2.index.longest(p) < n
    assert ix.longest(p) == n  # the original is independent of the copy
    t3 = pickle.loads(pickle.dumps(t2))
    check(t3.index, [set(d) for d in t2._by_len], addrs)
