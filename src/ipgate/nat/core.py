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
from dataclasses import dataclass
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
from ipgate.conntrack.table import ConntrackTable
from ipgate.conntrack.tcp import seen_td_end
from ipgate.conntrack.tuple import (
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPPROTO_UDPLITE,
    Tuple,
)

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


def hook2manip(hook: int) -> ManipType:
    """HOOK2MANIP(): source NAT at POSTROUTING and LOCAL_IN, destination NAT before routing."""
    return ManipType.SRC if hook in (NF_INET_POST_ROUTING, NF_INET_LOCAL_IN) else ManipType.DST


@dataclass(frozen=True, slots=True)
class NatRange2:
    """struct nf_nat_range2 (addresses host-order ints, ports/ids plain ints)."""

    flags: int = 0
    min_addr: int = 0
    max_addr: int = 0
    min_proto: int = 0
    max_proto: int = 0
    base_proto: int = 0


class Manip(NamedTuple):
    """What nf_nat_manip_pkt() writes: for SRC the target's source address and
    port, for DST its destination; an ICMP query's id is ``target.sport`` either way."""

    maniptype: ManipType
    target: Tuple

    @property
    def addr(self) -> int:
        return self.target.src if self.maniptype == ManipType.SRC else self.target.dst

    @property
    def port(self) -> int:
        t = self.target
        if t.proto == IPPROTO_ICMP:
            return t.sport
        return t.sport if self.maniptype == ManipType.SRC else t.dport


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


# -- range checks ------------------------------------------------------------

def l4proto_in_range(t: Tuple, maniptype: ManipType, lo: int, hi: int) -> bool:
    """l4proto_in_range(): is the manipulable port (or ICMP id) inside [lo, hi]?"""
    if t.proto == IPPROTO_ICMP:
        return lo <= t.sport <= hi
    if t.proto in _PORTED:
        port = t.sport if maniptype == ManipType.SRC else t.dport
        return lo <= port <= hi
    return True


def nf_in_range(t: Tuple, r: NatRange2) -> bool:
    """nf_in_range(): would source-mapping to `t` satisfy the range?"""
    if r.flags & NF_NAT_RANGE_MAP_IPS and not r.min_addr <= t.src <= r.max_addr:
        return False
    if not r.flags & NF_NAT_RANGE_PROTO_SPECIFIED:
        return True
    return l4proto_in_range(t, ManipType.SRC, r.min_proto, r.max_proto)


# -- uniqueness --------------------------------------------------------------

def nf_nat_used_tuple(table: ConntrackTable, t: Tuple, ct: Conn, now: float) -> bool:
    """nf_nat_used_tuple(): would the reply to `t` clash with another connection?"""
    inv = t.invert()
    return inv is None or table.tuple_taken(inv.key, ct, now)


def nf_nat_used_tuple_new(table: ConntrackTable, t: Tuple, ct: Conn, now: float) -> bool:
    """nf_nat_used_tuple_new(): as above, but a clash-capable protocol may share with its exact reverse."""
    if not nf_nat_used_tuple(table, t, ct, now):
        return False
    if t.proto not in _ALLOW_CLASH:
        return True
    if ct.status & (IPS_NAT_MASK | IPS_SEQ_ADJUST):
        return True
    found = table.find(t.key, now)
    if found is None:
        inv = t.invert()
        found = table.find(inv.key, now) if inv is not None else None
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


def nf_nat_used_tuple_harder(table: ConntrackTable, t: Tuple, ct: Conn, attempts_left: int, now: float) -> bool:
    """nf_nat_used_tuple_harder(): the last attempts of a SYN may evict an old TIME_WAIT entry."""
    inv = t.invert()
    if inv is None:
        return True
    if attempts_left > NF_NAT_HARDER_THRESH or t.proto != IPPROTO_TCP or ct.tcp_state != TCP_CONNTRACK_SYN_SENT:
        return table.tuple_taken(inv.key, ct, now)
    found = table.find(inv.key, now)
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

def _bysrc_key(t: Tuple) -> int:
    return (t.src << 24) | (t.sport << 8) | t.proto


def find_appropriate_src(table: ConntrackTable, t: Tuple, r: NatRange2) -> Tuple | None:
    """find_appropriate_src(): the mapping of another connection from the same source, if in range."""
    for other in table.bysource(_bysrc_key(t)):
        inv = other.reply.invert()
        if inv is None:
            continue
        result = Tuple(inv.src, t.dst, t.proto, inv.sport, t.dport)
        if nf_in_range(result, r):
            return result
    return None


def find_best_ips_proto(t: Tuple, r: NatRange2, maniptype: ManipType, zone_id: int = 0) -> Tuple:
    """find_best_ips_proto(): the address, by a hash of source (and destination unless persistent)."""
    if not r.flags & NF_NAT_RANGE_MAP_IPS:
        return t
    if r.min_addr == r.max_addr:
        addr = r.min_addr
    else:
        initval = 0 if r.flags & NF_NAT_RANGE_PERSISTENT else _raw(t.dst) ^ zone_id
        # The whole 16-byte nf_inet_addr is hashed; an IPv4 address leaves 3 words zero.
        j = jhash2([_raw(t.src), 0, 0, 0], initval)
        dist = (r.max_addr - r.min_addr + 1) & _M32
        addr = (r.min_addr + reciprocal_scale(j, dist)) & _M32
    if maniptype == ManipType.SRC:
        return t._replace(src=addr)
    return t._replace(dst=addr)


def nf_nat_l4proto_unique_tuple(table: ConntrackTable, t: Tuple, r: NatRange2, maniptype: ManipType,
                                ct: Conn, rng: random.Random, now: float) -> Tuple | None:
    """nf_nat_l4proto_unique_tuple(): a free port/id in range, or None."""
    proto = t.proto
    field = "sport"
    if proto == IPPROTO_ICMP:
        # The id is the same in both directions.
        if not r.flags & NF_NAT_RANGE_PROTO_SPECIFIED:
            lo, range_size = 0, 65536
        else:
            lo, range_size = r.min_proto, r.max_proto - r.min_proto + 1
    elif proto in _PORTED:
        if proto == IPPROTO_GRE and (ct.ext is None or ct.ext.master is None):
            return None  # GRE keys change only under the PPTP helper
        if maniptype == ManipType.DST:
            field = "dport"
        if proto == IPPROTO_GRE:
            if not r.flags & NF_NAT_RANGE_PROTO_SPECIFIED:
                lo, range_size = 1, 65535
            else:
                lo, range_size = r.min_proto, r.max_proto - r.min_proto + 1
        elif not r.flags & NF_NAT_RANGE_PROTO_SPECIFIED:
            if maniptype == ManipType.DST:
                return None  # can't change a destination port without a range
            port = t.sport
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
        return None

    cur = getattr(t, field)
    if r.flags & NF_NAT_RANGE_PROTO_OFFSET:
        off = (cur - r.base_proto) & 0xFFFF
    elif r.flags & NF_NAT_RANGE_PROTO_RANDOM_ALL or maniptype != ManipType.DST:
        off = rng.getrandbits(16)
    else:
        off = 0
    attempts = min(range_size, NF_NAT_MAX_ATTEMPTS)
    # Searching the whole range when all is taken would stall the data
    # path: try from a random offset, then again with a halved window.
    while True:
        for i in range(attempts):
            cand = t._replace(**{field: lo + off % range_size})
            if not nf_nat_used_tuple_harder(table, cand, ct, attempts - i, now):
                return cand
            off = (off + 1) & 0xFFFF
        if attempts >= range_size or attempts < 16:
            return None
        attempts //= 2
        off = rng.getrandbits(16)


def get_unique_tuple(table: ConntrackTable, orig: Tuple, r: NatRange2, ct: Conn, maniptype: ManipType,
                     rng: random.Random, now: float) -> Tuple | None:
    """get_unique_tuple(): the tuple the packet will carry after the manip, or None if none is free."""
    # 1) Source NAT: keep the original, or the mapping this source already has.
    if maniptype == ManipType.SRC and not r.flags & NF_NAT_RANGE_PROTO_RANDOM_ALL:
        if nf_in_range(orig, r):
            if not nf_nat_used_tuple_new(table, orig, ct, now):
                return orig
        else:
            mapped = find_appropriate_src(table, orig, r)
            if mapped is not None and not nf_nat_used_tuple(table, mapped, ct, now):
                return mapped

    # 2) The address.
    t = find_best_ips_proto(orig, r, maniptype)

    # 3) The port, if it is not already in range and unique.
    if not r.flags & NF_NAT_RANGE_PROTO_RANDOM_ALL:
        if r.flags & NF_NAT_RANGE_PROTO_SPECIFIED:
            if (not r.flags & NF_NAT_RANGE_PROTO_OFFSET
                    and l4proto_in_range(t, maniptype, r.min_proto, r.max_proto)):
                if not nf_nat_used_tuple(table, t, ct, now):
                    return t
                if r.min_proto == r.max_proto:
                    # The kernel keeps a single-port range's tuple even if used, and
                    # __nf_conntrack_confirm() drops the packet: the same outcome.
                    return None
        elif not nf_nat_used_tuple(table, t, ct, now):
            return t

    # Last chance: get the protocol to find a unique tuple (None: nothing free).
    return nf_nat_l4proto_unique_tuple(table, t, r, maniptype, ct, rng, now)


def nf_nat_initialized(ct: Conn, maniptype: ManipType) -> bool:
    return bool(ct.status & (IPS_SRC_NAT_DONE if maniptype == ManipType.SRC else IPS_DST_NAT_DONE))


def nf_nat_setup_info(table: ConntrackTable, ct: Conn, r: NatRange2, maniptype: ManipType,
                      rng: random.Random, now: float) -> int:
    """nf_nat_setup_info(): bind `ct` for `maniptype`; NF_DROP when no tuple is free."""
    if ct.status & IPS_CONFIRMED:
        return NF_ACCEPT
    if nf_nat_initialized(ct, maniptype):
        return NF_DROP
    # What we've got will look like the inverse of the reply (prior manips included).
    curr = ct.reply.invert()
    if curr is None:
        return NF_DROP
    new = get_unique_tuple(table, curr, r, ct, maniptype, rng, now)
    if new is None:
        return NF_DROP
    if new != curr:
        reply = new.invert()
        if reply is None:
            return NF_DROP
        table.alter_reply(ct, reply)
        ct.set_status(IPS_SRC_NAT if maniptype == ManipType.SRC else IPS_DST_NAT)
        if maniptype == ManipType.SRC and (new.sport != curr.sport or r.min_addr != r.max_addr):
            table.bysource_add(ct)
    ct.set_status(IPS_DST_NAT_DONE if maniptype == ManipType.DST else IPS_SRC_NAT_DONE)
    return NF_ACCEPT


def nf_nat_alloc_null_binding(table: ConntrackTable, ct: Conn, hook: int, rng: random.Random,
                              now: float) -> int:
    """nf_nat_alloc_null_binding(): "no NAT" is a binding too, so later rules cannot add one."""
    maniptype = hook2manip(hook)
    reply = ct.reply
    ip = reply.dst if maniptype == ManipType.SRC else reply.src
    return nf_nat_setup_info(table, ct, NatRange2(NF_NAT_RANGE_MAP_IPS, ip, ip), maniptype, rng, now)


def nf_nat_packet(ct: Conn, ctinfo: int, hook: int) -> Manip | None:
    """nf_nat_packet(): the rewrite this packet needs at this hook, if any."""
    mtype = hook2manip(hook)
    direction = 1 if ctinfo >= IP_CT_IS_REPLY else 0
    statusbit = IPS_SRC_NAT if mtype == ManipType.SRC else IPS_DST_NAT
    if direction:
        statusbit ^= IPS_NAT_MASK
    if not ct.status & statusbit:
        return None
    target = ct.tuple(1 - direction).invert()
    return Manip(mtype, target) if target is not None else None


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
    if ctinfo in (IP_CT_NEW, IP_CT_RELATED, IP_CT_RELATED_REPLY) and not nf_nat_initialized(ct, maniptype):
        verdict = rules(ct, maniptype)
        if verdict != NF_ACCEPT:
            return verdict, None
        if not nf_nat_initialized(ct, maniptype):
            verdict = nf_nat_alloc_null_binding(table, ct, hook, rng, now)
            if verdict != NF_ACCEPT:
                return verdict, None
    return NF_ACCEPT, nf_nat_packet(ct, ctinfo, hook)
