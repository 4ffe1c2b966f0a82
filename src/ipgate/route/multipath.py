"""Multipath nexthop choice: hash-threshold as fib_select_multipath() does it.

Each nexthop owns an upper bound in [0, 2^31) proportional to its weight
(fib_rebalance()); the flow hash picks the first nexthop whose bound covers it.
The kernel hashes with a per-boot random key unless
net.ipv4.fib_multipath_hash_seed is set, so only the distribution, not the
exact choice for a given flow, can match a running kernel.
"""

from __future__ import annotations

import hashlib
import struct

from ipgate.route.fib import FibResult
from ipgate.route.rules import Flow

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipgate.stack import Stack


def upper_bounds(weights: list[int]) -> list[int]:
    """fib_rebalance(): DIV_ROUND_CLOSEST(w_cum << 31, total) - 1; a dead nexthop (weight 0) gets -1."""
    total = sum(weights)
    out = []
    w = 0
    for wt in weights:
        if not wt:
            out.append(-1)
            continue
        w += wt
        out.append(((w << 31) + total // 2) // total - 1)
    return out


def flow_hash(stack: Stack, fl: Flow, saddr: int, daddr: int) -> int:
    """A 31-bit hash of the flow per fib_multipath_hash_policy (0: L3, 1: L4)."""
    seed = stack.sysctl.get("net.ipv4.fib_multipath_hash_seed", 0)
    if stack.sysctl.get("net.ipv4.fib_multipath_hash_policy", 0) == 1:
        data = struct.pack("!IIIBHH", seed, saddr, daddr, fl.proto, fl.sport, fl.dport)
    else:
        # policy 0 hashes the addresses symmetrically (flow_hash consistentify)
        a, b = sorted((saddr, daddr))
        data = struct.pack("!III", seed, a, b)
    return int.from_bytes(hashlib.blake2s(data, digest_size=4).digest(), "big") >> 1


def select_multipath(stack: Stack, res: FibResult, saddr: int, daddr: int, fl: Flow) -> FibResult:
    nhs = res.info.nhs
    h = flow_hash(stack, fl, saddr, daddr)
    down = stack.down
    for i, bound in enumerate(upper_bounds([0 if nh.oif in down else nh.weight for nh in nhs])):
        if h <= bound:
            return res._replace(nh_sel=i)
    return res
