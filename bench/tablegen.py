"""Synthetic full Internet tables: realistic prefix-length mix, no real data needed.

The length mix follows public BGP table reports (bgp.potaroo.net, 2024): about
60% /24, then /22, /23, /21, /20 ..., a few hundred shorter than /16 and a
sprinkle longer than /24.  Prefixes are drawn over 1.0.0.0-223.255.255.255,
skipping 0/8, 127/8 and 192/8 (192.0.2.0/24 is the bench's nexthop subnet).
Only route tables are built from them; no packet is ever sent.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# share of the table per prefix length (normalised below)
LENGTH_MIX: dict[int, float] = {
    8: 0.00002, 9: 0.00002, 10: 0.0001, 11: 0.0003, 12: 0.0008, 13: 0.0015, 14: 0.0028, 15: 0.0030,
    16: 0.0140, 17: 0.0080, 18: 0.0120, 19: 0.0250, 20: 0.0450, 21: 0.0450, 22: 0.1200, 23: 0.1000,
    24: 0.6000, 25: 0.0005, 26: 0.0004, 27: 0.0003, 28: 0.0003, 29: 0.0003, 30: 0.0002, 31: 0.0001,
    32: 0.0003,
}
GATEWAYS = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]
LOCAL = "192.0.2.254/24"  # the box's own address on veth0


def prefixes(total: int, seed: int = 1) -> list[tuple[npt.NDArray[np.uint32], int]]:
    """(sorted distinct network addresses, plen) per length, `total` prefixes in all."""
    rng = np.random.default_rng(seed)
    w = np.array(list(LENGTH_MIX.values()))
    counts = np.floor(w / w.sum() * total).astype(int)
    # short lengths: only so many exist (200 usable /8s); the rest goes to /24
    counts = np.minimum(counts, [200 * (1 << (n - 8)) // 4 for n in LENGTH_MIX])
    counts[list(LENGTH_MIX).index(24)] += total - counts.sum()
    out = []
    for plen, want in zip(LENGTH_MIX, counts, strict=True):
        mask = np.uint32((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF)
        got = np.zeros(0, dtype=np.uint32)
        while got.size < want:
            a = rng.integers(1 << 24, 224 << 24, size=2 * (want - got.size) + 16, dtype=np.uint32) & mask
            top = a >> 24
            a = a[(top != 127) & (top != 192)]
            got = np.unique(np.concatenate([got, a]))
        out.append((np.sort(rng.permutation(got)[:want]), plen))
    return out


def ntoa_many(a: npt.NDArray[np.uint32]) -> list[str]:
    b = a.astype(np.uint64)
    parts = [(b >> s) & 255 for s in (24, 16, 8, 0)]
    strs = [p.astype(str) for p in parts]
    dotted = np.char.add(np.char.add(np.char.add(np.char.add(strs[0], "."), strs[1]), "."),
                         np.char.add(np.char.add(strs[2], "."), strs[3]))
    return list(dotted.tolist())


def route_lines(total: int, seed: int = 1) -> list[str]:
    """`ip -batch` lines (no leading `ip`), in a shuffled order as a BGP dump has none."""
    lines: list[str] = []
    k = 0
    for addrs, plen in prefixes(total, seed):
        for a in ntoa_many(addrs):
            gw = GATEWAYS[k & 3]
            tail = " dev veth0" if k % 3 == 0 else ""
            lines.append(f"route add {a}/{plen} via {gw}{tail} proto bgp")
            k += 1
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(lines))
    return [lines[i] for i in order]


def setup_lines() -> list[str]:
    """The box around the table: a veth with the nexthops' subnet (ipgate script form)."""
    return ["ip link add veth0 type veth peer name veth1", "ip link set veth0 up",
            "ip link set veth1 up", f"ip addr add {LOCAL} dev veth0"]
