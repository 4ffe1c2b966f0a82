"""NAT tuple allocation (net/netfilter/nf_nat_core.c, Linux 6.x).

Theory of operation.  NAT never rewrites a table entry after the fact: when
a connection's first packet reaches a NAT hook, `nf_nat_setup_info()` picks
the tuple the packet will carry on the other side and stores its inverse as
the connection's REPLY tuple (`nf_conntrack_alter_reply`).  Replies then
find the connection by that tuple, and every later packet is rewritten from
the two tuples (`nf_nat_packet`).  The choice is `get_unique_tuple()`:

1. SRC manip, unless random-fully: keep the original tuple if it is in the
   range and unused; else reuse the mapping of another connection from the
   same source address and port (the kernel's ``bysource`` hash), so a
   client socket keeps one public address:port;
2. pick the address: the only one, or one chosen by a Jenkins hash of the
   source address (and of the destination, unless ``persistent``), so the
   same client always lands on the same address;
3. keep the port if in range and unused; else `nf_nat_l4proto_unique_tuple`:
   from a random offset, try at most 128 ports of the port's class
   (1-511, 600-1023, 1024-65535 without ``--to-ports``), then halve the
   attempts from new random offsets while at least 16 remain.  The last
   32 attempts of a TCP SYN may evict a TIME_WAIT entry whose sequence
   numbers the new connection has passed (nf_nat_used_tuple_harder).

When nothing is free, `get_unique_tuple` returns None and the caller drops
the packet (the kernel keeps the clashing tuple and drops at confirmation:
the same outcome).  Randomness comes from the injected `random.Random`.

Memory: the bysource index only holds connections whose mapping a later
connection could not rediscover through steps 2-3: a changed port/id, or a
multi-address range.  A mapping that kept the port on a single address is
found again by step 3 (same address, same port if still free), so leaving
it out changes nothing except when two different rules with overlapping
address ranges map the same source socket.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import IntEnum
from typing import NamedTuple

from ipgate.conntrack.conn import (
    IP_CT_IS_REPLY,
    IP_CT_NEW,
    IP_CT_RELATED,
    IP_CT_RELATED_REPLY,
    IPS_CONFIRMED,
    IPS_DST_NAT,
    IPS_DST_NAT_DONE,
    IPS_DYING,
    IPS_FIXED_TIMEOUT,
    IPS_HW_OFFLOAD,
    IPS_NAT_MASK,
    IPS_OFFLOAD,
    IPS_SEQ_ADJUST,
    IPS_SRC_NAT,
    IPS_SRC_NAT_DONE,
    NF_ACCEPT,
    NF_DROP,
    NF_INET_LOCAL_IN,
    NF_INET_POST_ROUTING,
    Conn,
)
from ipgate.conntrack.sysctl import TCP_CONNTRACK_SYN_SENT, TCP_CONNTRACK_TIME_WAIT
from ipgate.conntrack.table import ConntrackTable, bysrc_key
from ipgate.conntrack.tcp import seen_td_end
from ipgate.conntrack.tuple import (
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPPROTO_UDPLITE,
    Tuple,
    invert_key,
)
from ipgate.packet.fastnew import new_tuple

# uapi/linux/netfilter/nf_nat.h
NF_NAT_RANGE_MAP_IPS = 1 << 0
NF_NAT_RANGE_PROTO_SPECIFIED = 1 << 1
NF_NAT_RANGE_PROTO_RANDOM = 1 << 2
NF_NAT_RANGE_PERSISTENT = 1 << 3
NF_NAT_RANGE_PROTO_RANDOM_FULLY = 1 << 4
NF_NAT_RANGE_PROTO_OFFSET = 1 << 5
NF_NAT_RANGE_NETMAP = 1 << 6
NF_NAT_RANGE_PROTO_RANDOM_ALL = NF_NAT_RANGE_PROTO_RANDOM | NF_NAT_RANGE_PROTO_RANDOM_FULLY

NF_NAT_MAX_ATTEMPTS = 128
NF_NAT_HARDER_THRESH = NF_NAT_MAX_ATTEMPTS // 4

_M32 = 0xFFFFFFFF
# l4proto->allow_clash
_ALLOW_CLASH = frozenset((IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_GRE))
_PORTED = frozenset((IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_SCTP, IPPROTO_GRE))


class ManipType(IntEnum):
    """enum nf_nat_manip_type."""

    SRC = 0
    DST = 1


# The members as plain module globals: `ManipType.SRC` is an enum class attribute
# lookup (a descriptor call, ~10x a global), and the NAT path reads them per packet.
NAT_MANIP_SRC = ManipType.SRC
NAT_MANIP_DST = ManipType.DST


def hook2manip(hook: int) -> ManipType:
    """HOOK2MANIP(): source NAT at POSTROUTING and LOCAL_IN, destination NAT before routing."""
    return NAT_MANIP_SRC if hook == NF_INET_POST_ROUTING or hook == NF_INET_LOCAL_IN else NAT_MANIP_DST


class NatRange2(NamedTuple):
    """struct nf_nat_range2 (addresses host-order ints, ports/ids plain ints).

    A NamedTuple (immutable, like the frozen dataclass it was): MASQUERADE and the
    null binding build one per new connection, and a tuple is built several times faster."""

    flags: int = 0
    min_addr: int = 0
    max_addr: int = 0
    min_proto: int = 0
    max_proto: int = 0
    base_proto: int = 0


class Manip(NamedTuple):
    """What nf_nat_manip_pkt() writes: for SRC the target tuple's source address and
    port, for DST its destination; an ICMP query's id is the target's ``sport`` either
    way (`manip_of` builds one from a tuple key)."""

    maniptype: ManipType
    addr: int
    port: int


# -- hashing ---------------------------------------------------------------

def _rol32(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M32


def jhash2(k: list[int], initval: int) -> int:
    """jhash2() of include/linux/jhash.h (Bob Jenkins' lookup3) over u32 words."""
    length = len(k)
    a = b = c = (0xDEADBEEF + (length << 2) + initval) & _M32
    i = 0
    while length > 3:
        a = (a + k[i]) & _M32
        b = (b + k[i + 1]) & _M32
        c = (c + k[i + 2]) & _M32
        # __jhash_mix
        a = (a - c) & _M32; a ^= _rol32(c, 4); c = (c + b) & _M32      # noqa: E702
        b = (b - a) & _M32; b ^= _rol32(a, 6); a = (a + c) & _M32      # noqa: E702
        c = (c - b) & _M32; c ^= _rol32(b, 8); b = (b + a) & _M32      # noqa: E702
        a = (a - c) & _M32; a ^= _rol32(c, 16); c = (c + b) & _M32     # noqa: E702
        b = (b - a) & _M32; b ^= _rol32(a, 19); a = (a + c) & _M32     # noqa: E702
        c = (c - b) & _M32; c ^= _rol32(b, 4); b = (b + a) & _M32      # noqa: E702
        length -= 3
        i += 3
    if length == 0:
        return c
    if length == 3:
        c = (c + k[i + 2]) & _M32
    if length >= 2:
        b = (b + k[i + 1]) & _M32
    a = (a + k[i]) & _M32
    # __jhash_final
    c ^= b; c = (c - _rol32(b, 14)) & _M32  # noqa: E702
    a ^= c; a = (a - _rol32(c, 11)) & _M32  # noqa: E702
    b ^= a; b = (b - _rol32(a, 25)) & _M32  # noqa: E702
    c ^= b; c = (c - _rol32(b, 16)) & _M32  # noqa: E702
    a ^= c; a = (a - _rol32(c, 4)) & _M32   # noqa: E702
    b ^= a; b = (b - _rol32(a, 14)) & _M32  # noqa: E702
    c ^= b; c = (c - _rol32(b, 24)) & _M32  # noqa: E702
    return c


def _raw(addr: int) -> int:
    """An address as the u32 the kernel reads from memory (network order on little-endian x86)."""
    return int.from_bytes(addr.to_bytes(4, "big"), "little")


def reciprocal_scale(val: int, ep_ro: int) -> int:
    return (val * ep_ro) >> 32


# -- tuple keys ----------------------------------------------------------------
# The allocation works on the conntrack table's int keys (conntrack/tuple.py:
# src<<72 | dst<<40 | sport<<24 | dport<<8 | proto): a candidate is one int, not
# a Tuple built, replaced and inverted per attempt.  `find_best_ips_proto` and
# `get_unique_tuple` also take and give Tuples, for tests.

_SRC_SHIFT, _DST_SHIFT, _SPORT_SHIFT, _DPORT_SHIFT = 72, 40, 24, 8
_NOT_SRC = (1 << 72) - 1
_NOT_DST = ~(_M32 << _DST_SHIFT)
_NOT_SPORT = ~(0xFFFF << _SPORT_SHIFT)
_NOT_DPORT = ~(0xFFFF << _DPORT_SHIFT)


def _key_sport(k: int) -> int:
    return (k >> _SPORT_SHIFT) & 0xFFFF


def _key_dport(k: int) -> int:
    return (k >> _DPORT_SHIFT) & 0xFFFF


# -- range checks ------------------------------------------------------------

def l4proto_in_range_key(k: int, maniptype: ManipType, lo: int, hi: int) -> bool:
    """l4proto_in_range(): is the manipulable port (or ICMP id) inside [lo, hi]?"""
    proto = k & 0xFF
    if proto == IPPROTO_ICMP:
        return lo <= _key_sport(k) <= hi
    if proto in _PORTED:
        port = _key_sport(k) if maniptype == NAT_MANIP_SRC else _key_dport(k)
        return lo <= port <= hi
    return True


def nf_in_range_key(k: int, r: NatRange2) -> bool:
    """nf_in_range(): would source-mapping to `k` satisfy the range?"""
    if r.flags & NF_NAT_RANGE_MAP_IPS and not r.min_addr <= k >> _SRC_SHIFT <= r.max_addr:
        return False
    if not r.flags & NF_NAT_RANGE_PROTO_SPECIFIED:
        return True
    return l4proto_in_range_key(k, NAT_MANIP_SRC, r.min_proto, r.max_proto)


# -- uniqueness --------------------------------------------------------------

def nf_nat_used_tuple_key(table: ConntrackTable, k: int, ct: Conn, now: float) -> bool:
    """nf_nat_used_tuple(): would the reply to `k` clash with another connection?"""
    inv = invert_key(k)
    return inv < 0 or table.tuple_taken(inv, ct, now)


def nf_nat_used_tuple_new_key(table: ConntrackTable, k: int, ct: Conn, now: float) -> bool:
    """nf_nat_used_tuple_new(): as above, but a clash-capable protocol may share with its exact reverse."""
    if not nf_nat_used_tuple_key(table, k, ct, now):
        return False
    if k & 0xFF not in _ALLOW_CLASH:
        return True
    if ct.status & (IPS_NAT_MASK | IPS_SEQ_ADJUST):
        return True
    found = table.find(k, now)
    if found is None:
        inv = invert_key(k)
        found = table.find(inv, now) if inv >= 0 else None
        if found is None:
            return False  # the clashing entry went away
    other, direction = found
    if direction != 1 or other.status & (IPS_NAT_MASK | IPS_SEQ_ADJUST):
        return True
    return not (other.okey == ct.rkey and other.rkey == ct.okey)


def _nat_may_kill(other: Conn, flags: int) -> bool:
    """nf_nat_may_kill(): a source-NATed entry at TIME_WAIT or later."""
    if other.tcp_state < TCP_CONNTRACK_TIME_WAIT:
        return False
    if flags & (IPS_FIXED_TIMEOUT | IPS_DYING):
        return False
    return bool(flags & IPS_SRC_NAT)


def nf_nat_used_tuple_harder_key(table: ConntrackTable, k: int, ct: Conn, attempts_left: int, now: float) -> bool:
    """nf_nat_used_tuple_harder(): the last attempts of a SYN may evict an old TIME_WAIT entry."""
    inv = invert_key(k)
    if inv < 0:
        return True
    if attempts_left > NF_NAT_HARDER_THRESH or k & 0xFF != IPPROTO_TCP or ct.tcp_state != TCP_CONNTRACK_SYN_SENT:
        return table.tuple_taken(inv, ct, now)
    found = table.find(inv, now)
    if found is None:
        return False
    other, direction = found
    if direction == 0 or other is ct:
        return True
    flags = other.status
    if not _nat_may_kill(other, flags):
        return True
    # The reverse direction will send packets to the new source: make sure they are invalid.
    advance = (seen_td_end(ct, 0) - seen_td_end(other, 0)) & _M32  # nf_seq_has_advanced()
    if not 0 < advance < 0x80000000:
        return True
    if table.kill(other, now):
        return bool(flags & (IPS_OFFLOAD | IPS_HW_OFFLOAD))
    return True


# -- allocation ----------------------------------------------------------------

def find_appropriate_src_key(table: ConntrackTable, k: int, r: NatRange2) -> int:
    """find_appropriate_src(): the mapping of another connection from the same source, if in range; -1 if none."""
    key = bysrc_key(k)
    if key not in table.nat_bysource:
        return -1  # the usual case: no mapping from this source (and no list built to say so)
    for other in table.bysource(key):
        inv = invert_key(other.rkey)
        if inv < 0:
            continue
        # the other connection's mapped source address and port, this connection's destination
        result = ((inv >> _SRC_SHIFT << _SRC_SHIFT) | (k & (_M32 << _DST_SHIFT)) | (inv & (0xFFFF << _SPORT_SHIFT))
                  | (k & ((0xFFFF << _DPORT_SHIFT) | 0xFF)))
        if nf_in_range_key(result, r):
            return result
    return -1


def find_best_ips_proto_key(k: int, r: NatRange2, maniptype: ManipType, zone_id: int = 0) -> int:
    """find_best_ips_proto(): the address, by a hash of source (and destination unless persistent)."""
    if not r.flags & NF_NAT_RANGE_MAP_IPS:
        return k
    if r.min_addr == r.max_addr:
        addr = r.min_addr
    else:
        initval = 0 if r.flags & NF_NAT_RANGE_PERSISTENT else _raw((k >> _DST_SHIFT) & _M32) ^ zone_id
        # The whole 16-byte nf_inet_addr is hashed; an IPv4 address leaves 3 words zero.
        j = jhash2([_raw(k >> _SRC_SHIFT), 0, 0, 0], initval)
        dist = (r.max_addr - r.min_addr + 1) & _M32
        addr = (r.min_addr + reciprocal_scale(j, dist)) & _M32
    if maniptype == NAT_MANIP_SRC:
        return (k & _NOT_SRC) | (addr << _SRC_SHIFT)
    return (k & _NOT_DST) | (addr << _DST_SHIFT)


def find_best_ips_proto(t: Tuple, r: NatRange2, maniptype: ManipType, zone_id: int = 0) -> Tuple:
    return Tuple.from_key(find_best_ips_proto_key(t.key, r, maniptype, zone_id))


def nf_nat_l4proto_unique_key(table: ConntrackTable, k: int, r: NatRange2, maniptype: ManipType,
                              ct: Conn, rng: random.Random, now: float) -> int:
    """nf_nat_l4proto_unique_tuple(): a free port/id in range, or -1."""
    proto = k & 0xFF
    dst_port = False  # which port changes: the source port (or ICMP id), or the destination port
    if proto == IPPROTO_ICMP:
        # The id is the same in both directions.
        if not r.flags & NF_NAT_RANGE_PROTO_SPECIFIED:
            lo, range_size = 0, 65536
        else:
            lo, range_size = r.min_proto, r.max_proto - r.min_proto + 1
    elif proto in _PORTED:
        if proto == IPPROTO_GRE and (ct.ext is None or ct.ext.master is None):
            return -1  # GRE keys change only under the PPTP helper
        if maniptype == NAT_MANIP_DST:
            dst_port = True
        if proto == IPPROTO_GRE:
            if not r.flags & NF_NAT_RANGE_PROTO_SPECIFIED:
                lo, range_size = 1, 65535
            else:
                lo, range_size = r.min_proto, r.max_proto - r.min_proto + 1
        elif not r.flags & NF_NAT_RANGE_PROTO_SPECIFIED:
            if maniptype == NAT_MANIP_DST:
                return -1  # can't change a destination port without a range
            port = _key_sport(k)
            if port < 1024:
                # Loose convention: >> 512 is credential passing.
                lo, range_size = (1, 511) if port < 512 else (600, 1023 - 600 + 1)
            else:
                lo, range_size = 1024, 65535 - 1024 + 1
        else:
            lo, hi = r.min_proto, r.max_proto
            if hi < lo:
                lo, hi = hi, lo
            range_size = hi - lo + 1
    else:
        return -1

    if dst_port:
        cur, base, shift = _key_dport(k), k & _NOT_DPORT, _DPORT_SHIFT
    else:
        cur, base, shift = _key_sport(k), k & _NOT_SPORT, _SPORT_SHIFT
    if r.flags & NF_NAT_RANGE_PROTO_OFFSET:
        off = (cur - r.base_proto) & 0xFFFF
    elif r.flags & NF_NAT_RANGE_PROTO_RANDOM_ALL or maniptype != NAT_MANIP_DST:
        off = rng.getrandbits(16)
    else:
        off = 0
    attempts = min(range_size, NF_NAT_MAX_ATTEMPTS)
    # Searching the whole range when all is taken would stall the data
    # path: try from a random offset, then again with a halved window.
    while True:
        for i in range(attempts):
            cand = base | ((lo + off % range_size) << shift)
            if not nf_nat_used_tuple_harder_key(table, cand, ct, attempts - i, now):
                return cand
            off = (off + 1) & 0xFFFF
        if attempts >= range_size or attempts < 16:
            return -1
        attempts //= 2
        off = rng.getrandbits(16)


def get_unique_key(table: ConntrackTable, orig: int, r: NatRange2, ct: Conn, maniptype: ManipType,
                   rng: random.Random, now: float) -> int:
    """get_unique_tuple(): the key of the tuple the packet will carry after the manip, or -1 if none is free."""
    flags = r.flags
    # 1) Source NAT: keep the original, or the mapping this source already has.
    if maniptype == NAT_MANIP_SRC and not flags & NF_NAT_RANGE_PROTO_RANDOM_ALL:
        if nf_in_range_key(orig, r):
            if not nf_nat_used_tuple_new_key(table, orig, ct, now):
                return orig
        else:
            mapped = find_appropriate_src_key(table, orig, r)
            if mapped >= 0 and not nf_nat_used_tuple_key(table, mapped, ct, now):
                return mapped

    # 2) The address.
    t = find_best_ips_proto_key(orig, r, maniptype)

    # 3) The port, if it is not already in range and unique.
    if not flags & NF_NAT_RANGE_PROTO_RANDOM_ALL:
        if flags & NF_NAT_RANGE_PROTO_SPECIFIED:
            if (not flags & NF_NAT_RANGE_PROTO_OFFSET
                    and l4proto_in_range_key(t, maniptype, r.min_proto, r.max_proto)):
                if not nf_nat_used_tuple_key(table, t, ct, now):
                    return t
                if r.min_proto == r.max_proto:
                    # The kernel keeps a single-port range's tuple even if used, and
                    # __nf_conntrack_confirm() drops the packet: the same outcome.
                    return -1
        elif not nf_nat_used_tuple_key(table, t, ct, now):
            return t

    # Last chance: get the protocol to find a unique tuple (-1: nothing free).
    return nf_nat_l4proto_unique_key(table, t, r, maniptype, ct, rng, now)


def get_unique_tuple(table: ConntrackTable, orig: Tuple, r: NatRange2, ct: Conn, maniptype: ManipType,
                     rng: random.Random, now: float) -> Tuple | None:
    """get_unique_tuple(): the tuple the packet will carry after the manip, or None if none is free."""
    k = get_unique_key(table, orig.key, r, ct, maniptype, rng, now)
    if k < 0:
        return None
    return orig if k == orig.key else Tuple.from_key(k)


def nf_nat_initialized(ct: Conn, maniptype: ManipType) -> bool:
    return bool(ct.status & (IPS_SRC_NAT_DONE if maniptype == NAT_MANIP_SRC else IPS_DST_NAT_DONE))


def nf_nat_setup_info(table: ConntrackTable, ct: Conn, r: NatRange2, maniptype: ManipType,
                      rng: random.Random, now: float) -> int:
    """nf_nat_setup_info(): bind `ct` for `maniptype`; NF_DROP when no tuple is free."""
    if ct.status & IPS_CONFIRMED:
        return NF_ACCEPT
    if nf_nat_initialized(ct, maniptype):
        return NF_DROP
    # What we've got will look like the inverse of the reply (prior manips included).
    curr = invert_key(ct.rkey)
    if curr < 0:
        return NF_DROP
    new = get_unique_key(table, curr, r, ct, maniptype, rng, now)
    if new < 0:
        return NF_DROP
    src = maniptype == NAT_MANIP_SRC
    bits = IPS_SRC_NAT_DONE if src else IPS_DST_NAT_DONE
    if new != curr:
        reply = invert_key(new)
        if reply < 0:
            return NF_DROP
        table.alter_reply_key(ct, reply)
        bits |= IPS_SRC_NAT if src else IPS_DST_NAT
        if src and (((new ^ curr) >> _SPORT_SHIFT) & 0xFFFF or r.min_addr != r.max_addr):  # the port changed
            table.bysource_add(ct)
    ct.set_status(bits)  # the NAT bit (if the tuple changed) and the "done" bit at once
    return NF_ACCEPT


def nf_nat_alloc_null_binding(table: ConntrackTable, ct: Conn, hook: int, rng: random.Random,
                              now: float) -> int:
    """nf_nat_alloc_null_binding(): "no NAT" is a binding too, so later rules cannot add one."""
    return _null_binding(table, ct, hook2manip(hook), rng, now)


def _null_binding(table: ConntrackTable, ct: Conn, maniptype: ManipType, rng: random.Random, now: float) -> int:
    rkey = ct.rkey
    # the reply's destination for SRC, its source for DST
    ip = (rkey >> _DST_SHIFT) & _M32 if maniptype == NAT_MANIP_SRC else rkey >> _SRC_SHIFT
    return nf_nat_setup_info(table, ct, new_tuple(NatRange2, (NF_NAT_RANGE_MAP_IPS, ip, ip, 0, 0, 0)), maniptype,
                             rng, now)


def manip_of(maniptype: ManipType, target: int) -> Manip:
    """The Manip that makes a packet carry (the manipulated half of) the tuple `target` (a key)."""
    if maniptype == NAT_MANIP_SRC:
        return new_tuple(Manip, (maniptype, target >> _SRC_SHIFT, (target >> _SPORT_SHIFT) & 0xFFFF))
    # an ICMP query's id is the tuple's sport either way
    port = target >> (_SPORT_SHIFT if target & 0xFF == IPPROTO_ICMP else _DPORT_SHIFT)
    return new_tuple(Manip, (maniptype, (target >> _DST_SHIFT) & _M32, port & 0xFFFF))


def nf_nat_packet(ct: Conn, ctinfo: int, hook: int) -> Manip | None:
    """nf_nat_packet(): the rewrite this packet needs at this hook, if any."""
    return _nat_packet(ct, ctinfo, hook2manip(hook))


def _nat_packet(ct: Conn, ctinfo: int, mtype: ManipType) -> Manip | None:
    direction = 1 if ctinfo >= IP_CT_IS_REPLY else 0
    statusbit = IPS_SRC_NAT if mtype == NAT_MANIP_SRC else IPS_DST_NAT
    if direction:
        statusbit ^= IPS_NAT_MASK
    if not ct.status & statusbit:
        return None
    target = invert_key(ct.okey if direction else ct.rkey)  # the other direction's tuple, inverted
    return manip_of(mtype, target) if target >= 0 else None


def nf_nat_inet_fn(table: ConntrackTable, ct: Conn | None, ctinfo: int, hook: int,
                   rules: Callable[[Conn, ManipType], int], rng: random.Random, now: float) -> tuple[int, Manip | None]:
    """nf_nat_inet_fn(): run the nat chain once per connection and hook, then rewrite.

    `rules(ct, maniptype)` traverses the nat table for this hook; its SNAT,
    DNAT, MASQUERADE or REDIRECT target calls `nf_nat_setup_info`.  If it
    binds nothing, a null binding is made.
    """
    if ct is None:
        return NF_ACCEPT, None
    maniptype = hook2manip(hook)
    if ((ctinfo == IP_CT_NEW or ctinfo == IP_CT_RELATED or ctinfo == IP_CT_RELATED_REPLY)
            and not nf_nat_initialized(ct, maniptype)):
        verdict = rules(ct, maniptype)
        if verdict != NF_ACCEPT:
            return verdict, None
        if not nf_nat_initialized(ct, maniptype):
            verdict = _null_binding(table, ct, maniptype, rng, now)
            if verdict != NF_ACCEPT:
                return verdict, None
    return NF_ACCEPT, _nat_packet(ct, ctinfo, maniptype)
