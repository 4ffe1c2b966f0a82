"""Multipath nexthop choice, bit for bit as fib_select_multipath() makes it.

Each nexthop owns an upper bound in [0, 2^31) proportional to its weight
(fib_rebalance()); the flow hash picks the first nexthop whose bound covers it.
The hash is the kernel's: siphash-2-4 over the hashed part of `struct flow_keys`
(__flow_hash_from_keys()), keyed with net.ipv4.fib_multipath_hash_seed as
fib_multipath_hash_construct_key() builds it.  With the seed unset the kernel
draws a random key at boot; ipgate then uses 0, so only a configured seed gives
the very same choices as a given kernel.
"""

from __future__ import annotations

import struct

from ipgate.route.fib import FibResult
from ipgate.route.rules import Flow

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipgate.stack import Stack

_M64 = (1 << 64) - 1

# struct flow_keys (include/net/flow_dissector.h), from `basic` (the hashed start,
# FLOW_KEYS_HASH_OFFSET) on: basic 0-3, tags 4-7, vlan 8-15, cvlan 16-23,
# keyid 24-27, ports 28-31, icmp 32-35, addrs 36-...  flow_keys_hash_length()
# for IPv4 covers 48 bytes.
_KEYS = struct.Struct("!2xBx24xHH4xII4x")


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M64


def siphash24(k0: int, k1: int, data: bytes) -> int:
    """SipHash-2-4 (lib/siphash.c), 64-bit result."""
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & _M64
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _M64
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _M64
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _M64
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        rounds(2)
        v0 ^= m
    b = ((n << 56) & _M64) | int.from_bytes(data[end:], "little")
    v3 ^= b
    rounds(2)
    v0 ^= b
    v2 ^= 0xFF
    rounds(4)
    return v0 ^ v1 ^ v2 ^ v3


def _le32(be: int) -> int:
    """A __be32 read as the u32 a little-endian CPU sees (the (__force u32) casts)."""
    return int.from_bytes(be.to_bytes(4, "big"), "little")


def _le16(be: int) -> int:
    return ((be & 0xFF) << 8) | (be >> 8)


def flow_hash(stack: Stack, saddr: int, daddr: int, proto: int = 0, sport: int = 0, dport: int = 0) -> int:
    """fib_multipath_hash() for hash policies 0 (L3) and 1 (L4): a 31-bit value."""
    seed = stack.sysctl.get("net.ipv4.fib_multipath_hash_seed", 0) & 0xFFFFFFFF
    if stack.sysctl.get("net.ipv4.fib_multipath_hash_policy", 0) != 1:
        proto = sport = dport = 0
    # __flow_hash_consistentify(): order the endpoints so both directions hash alike
    if _le32(daddr) < _le32(saddr):
        saddr, daddr = daddr, saddr
    if _le16(dport) < _le16(sport):
        sport, dport = dport, sport
    key = (seed << 32) | seed
    h = siphash24(key, key, _KEYS.pack(proto, sport, dport, saddr, daddr)) & 0xFFFFFFFF
    return (h or 1) >> 1


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


def select_multipath(stack: Stack, res: FibResult, saddr: int, daddr: int, fl: Flow,
                     prefer_saddr: bool = False) -> FibResult:
    """fib_select_multipath(): the first live nexthop whose upper bound covers the hash.

    On output (prefer_saddr) a flow with a source prefers, among the covering
    nexthops, one whose own source address (nh_saddr) is that source; failing
    that, the first live nexthop that has it (or the last live one).
    """
    from ipgate.route.lookup import nh_saddr

    nhs = res.info.nhs
    h = flow_hash(stack, saddr, daddr, fl.proto, fl.sport, fl.dport)
    down = stack.down
    want = saddr if prefer_saddr else 0
    chosen = -1
    found = False
    for i, bound in enumerate(upper_bounds([0 if nh.oif in down else nh.weight for nh in nhs])):
        if bound == -1:
            continue
        matches = not want or nh_saddr(stack, nhs[i], res.info.scope) == want
        if not found:  # the fallback: the first nexthop with that source
            chosen, found = i, matches
        if h > bound:
            continue
        if matches:
            return res._replace(nh_sel=i)
        if found:
            break
    return res._replace(nh_sel=chosen) if chosen >= 0 else res
