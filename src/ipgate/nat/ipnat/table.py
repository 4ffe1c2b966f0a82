"""The two session hash tables: nat_table[0] (by inside address: what
nat_outlookup() searches) and nat_table[1] (by outside address:
nat_inlookup()), plus nat_instances, the list `ipnat -l` walks.

Lookups go through Python dicts keyed on the whole tuple, so their cost does
not depend on how many sessions there are.  IP Filter's own tables are
ipf_nattable_sz chains (2047 by default) hashed with NAT_HASH_FN; they are
kept here as bucket numbers and per-bucket counts only, because the kernel
refuses a session whose chain in either table already holds
fr_nat_maxbucket entries (nat_insert(); 2 * 11 = 22 for 2047 buckets), and
`ipnat -lv` prints the bucket numbers.  NAT_HASH_FN reads addresses and ports
as they sit in memory in network order; the numbers here are those of a
little-endian host (x86), where ipftest usually runs.

A tuple maps to its session; the rare tuples held by more than one session
(the same flow through two interfaces) keep a list, newest first, as the
kernel's chain would put them.
"""

from __future__ import annotations

from collections.abc import Iterator

from ipgate.nat.ipnat.session import Key, NatSession

NAT_TABLE_SZ = 2047    # ip_nat.h, without LARGE_NAT
NAT_TABLE_MAX = 30000
LARGE_NAT_TABLE_SZ = 16383
LARGE_NAT_TABLE_MAX = 180000

_Slot = NatSession | list[NatSession]


def _n32(a: int) -> int:
    """An address in network order, read as a little-endian u_32."""
    return ((a & 0xFF) << 24) | ((a >> 8 & 0xFF) << 16) | ((a >> 16 & 0xFF) << 8) | (a >> 24)


def _n16(p: int) -> int:
    return ((p & 0xFF) << 8) | (p >> 8)


def nat_hash_fn(k: int, l: int, m: int) -> int:  # noqa: E741  (the macro's names)
    """NAT_HASH_FN(k, l, m): ((k + (k >> 12) + l) % m) in u_int arithmetic."""
    return ((k + (k >> 12) + l) & 0xFFFFFFFF) % m


def maxbucket_for(size: int) -> int:
    """fr_nat_maxbucket's default (fr_natinit()): twice the bits of the table size."""
    n = 0
    i = size
    while i > 0:
        n += 1
        i >>= 1
    return n * 2


class SessionTable:
    """nat_table[0], nat_table[1], nat_instances and ns_bucketlen[]."""

    def __init__(self, size: int = NAT_TABLE_SZ, maxbucket: int | None = None) -> None:
        self.size = size
        self.maxbucket = maxbucket if maxbucket is not None else maxbucket_for(size)
        self._t0: dict[Key, _Slot] = {}
        self._t1: dict[Key, _Slot] = {}
        self._instances: dict[NatSession, None] = {}
        self.bucketlen: tuple[list[int], list[int]] = ([0] * size, [0] * size)

    def __len__(self) -> int:
        return len(self._instances)

    def __iter__(self) -> Iterator[NatSession]:
        """nat_instances: newest first."""
        return reversed(list(self._instances))

    def hash_values(self, nat: NatSession) -> tuple[int, int]:
        """nat_insert()'s hv1 / hv2."""
        m = self.size
        hv1 = nat_hash_fn(_n32(nat.inip), _n16(nat.inport), 0xFFFFFFFF)
        hv1 = nat_hash_fn(_n32(nat.oip), (hv1 + _n16(nat.oport)) & 0xFFFFFFFF, m)
        hv2 = nat_hash_fn(_n32(nat.outip), _n16(nat.outport), 0xFFFFFFFF)
        hv2 = nat_hash_fn(_n32(nat.oip), (hv2 + _n16(nat.oport)) & 0xFFFFFFFF, m)
        return hv1, hv2

    def insert(self, nat: NatSession) -> bool:
        """nat_insert(): False when either chain is full (fr_nat_maxbucket)."""
        hv1, hv2 = self.hash_values(nat)
        b0, b1 = self.bucketlen
        if b0[hv1] >= self.maxbucket or b1[hv2] >= self.maxbucket:
            return False
        nat.hv = (hv1, hv2)
        b0[hv1] += 1
        b1[hv2] += 1
        _put(self._t0, nat.key_in, nat)
        _put(self._t1, nat.key_out, nat)
        self._instances[nat] = None
        return True

    def remove(self, nat: NatSession) -> None:
        """The unlinking half of nat_delete()."""
        if nat not in self._instances:
            return
        del self._instances[nat]
        _drop(self._t0, nat.key_in, nat)
        _drop(self._t1, nat.key_out, nat)
        self.bucketlen[0][nat.hv[0]] -= 1
        self.bucketlen[1][nat.hv[1]] -= 1

    def rekey_out(self, nat: NatSession, outip: int) -> None:
        """Change the outside address of a session in place (fr_natsync())."""
        _drop(self._t1, nat.key_out, nat)
        self.bucketlen[1][nat.hv[1]] -= 1
        nat.outip = outip
        hv2 = self.hash_values(nat)[1]
        nat.hv = (nat.hv[0], hv2)
        self.bucketlen[1][hv2] += 1
        _put(self._t1, nat.key_out, nat)

    def get_in(self, key: Key, ifname: str) -> NatSession | None:
        """nat_outlookup(): a packet from the inside; the session's out-side
        interface (nat_ifps[1]) must be this one when it has one."""
        v = self._t0.get(key)
        if v is None:
            return None
        if type(v) is NatSession:
            return v if not ifname or _if_ok(v.ifnames[1], ifname) else None
        for nat in v:  # type: ignore[union-attr]
            if not ifname or _if_ok(nat.ifnames[1], ifname):
                return nat
        return None

    def get_out(self, key: Key, ifname: str) -> NatSession | None:
        """nat_inlookup(): a packet from outside; nat_ifps[0] checked likewise."""
        v = self._t1.get(key)
        if v is None:
            return None
        if type(v) is NatSession:
            return v if not ifname or _if_ok(v.ifnames[0], ifname) else None
        for nat in v:  # type: ignore[union-attr]
            if not ifname or _if_ok(nat.ifnames[0], ifname):
                return nat
        return None

    def clear(self) -> None:
        self._t0.clear()
        self._t1.clear()
        self._instances.clear()
        self.bucketlen = ([0] * self.size, [0] * self.size)


def _if_ok(want: str, ifname: str) -> bool:
    """A rule for "*" (or none) matches every interface (fr_resolvenic() gives NULL)."""
    return want in ("", "*", "-") or want == ifname


def _put(d: dict[Key, _Slot], k: Key, nat: NatSession) -> None:
    v = d.get(k)
    if v is None:
        d[k] = nat
    elif type(v) is NatSession:
        d[k] = [nat, v]
    else:
        v.insert(0, nat)  # type: ignore[union-attr]


def _drop(d: dict[Key, _Slot], k: Key, nat: NatSession) -> None:
    v = d.get(k)
    if v is nat:
        del d[k]
    elif isinstance(v, list) and nat in v:
        v.remove(nat)
        if len(v) == 1:
            d[k] = v[0]
