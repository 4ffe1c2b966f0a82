"""Expectations (net/netfilter/nf_conntrack_expect.c), the minimum the helpers need.

A helper (FTP, IRC) that reads "connect to me on port P" in a master
connection's payload registers an expectation: a tuple whose source part may
be wildcarded by a mask (the kernel's mask has a source part only: the
destination is always exact).  The first packet of a new connection matching
it becomes RELATED, gets the master, its mark and the expectation's helper;
the expectation is then consumed unless PERMANENT.  Expectations die with
their master, on their own timeout (checked lazily), and are evicted
oldest-first past the helper policy's ``max_expected``.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ipgate.conntrack.conn import IPS_CONFIRMED, IPS_DYING, Conn
from ipgate.conntrack.tuple import Tuple

if TYPE_CHECKING:
    from ipgate.conntrack.table import CtStats

NF_CT_EXPECT_PERMANENT = 0x1
NF_CT_EXPECT_INACTIVE = 0x2
NF_CT_EXPECT_USERSPACE = 0x4

_M32 = 0xFFFFFFFF


def _dst_part(key: int) -> int:
    """The destination half of a key (dst address, dst port, protocol): the hash of nf_ct_expect_dst_hash()."""
    return key & ((1 << 72) - 1) & ~(0xFFFF << 24)


class Expectation:
    """struct nf_conntrack_expect."""

    __slots__ = ("tuple", "mask_src", "mask_sport", "master", "timeout", "helper", "flags", "cls",
                 "expectfn", "saved_addr", "saved_proto", "dir")

    def __init__(self, master: Conn, tuple_: Tuple, *, mask_src: int = _M32, mask_sport: int = 0,
                 timeout: float = 300.0, helper: str | None = None, flags: int = 0, cls: int = 0,
                 expectfn: Callable[[Conn, Expectation], None] | None = None, direction: int = 0) -> None:
        self.tuple = tuple_          # what the expected connection's ORIGINAL tuple looks like
        self.mask_src = mask_src     # mask.src.u3 (0 = any source address)
        self.mask_sport = mask_sport  # mask.src.u.all (0 = any source port)
        self.master = master
        self.timeout = timeout       # relative until inserted, then absolute
        self.helper = helper         # helper for the expected connection
        self.flags = flags
        self.cls = cls               # expectation class (policy index)
        self.expectfn = expectfn     # e.g. NAT's nf_nat_follow_master
        self.saved_addr = 0          # helper NAT data
        self.saved_proto = 0
        self.dir = direction

    def matches(self, key: int) -> bool:
        """nf_ct_tuple_mask_cmp() on a key."""
        t = self.tuple
        src = key >> 72
        sport = (key >> 24) & 0xFFFF
        if (src ^ t.src) & self.mask_src or (sport ^ t.sport) & self.mask_sport:
            return False
        return _dst_part(key) == _dst_part(t.key)

    def __repr__(self) -> str:
        return f"<Expectation {self.tuple} mask_src={self.mask_src:#x} mask_sport={self.mask_sport:#x}>"


class ExpectTable:
    """The expectation hash, indexed by the destination part of the expected tuple."""

    def __init__(self, stats: CtStats, max_: Callable[[], int]) -> None:
        self._by_dst: dict[int, list[Expectation]] = {}
        self._stats = stats
        self._max = max_
        self.count = 0
        # The time of the last find(): ConntrackTable calls an expectfn as expectfn(ct, exp)
        # right after it, so this is the time the expected connection is set up at.
        self.now = 0.0

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Expectation]:
        for lst in list(self._by_dst.values()):
            yield from list(lst)

    def related(self, exp: Expectation, now: float, max_expected: int = 0) -> int:
        """nf_ct_expect_related(): 0, or -errno (EALREADY, EBUSY, EMFILE, ESHUTDOWN)."""
        master = exp.master
        if master.status & IPS_DYING:
            return -errno.ESHUTDOWN
        ext = master.get_ext()
        dkey = _dst_part(exp.tuple.key)
        for other in list(self._by_dst.get(dkey, ())):
            if other.timeout <= now:
                self.unlink(other)
            elif other.master is master and _expect_matches(other, exp):
                # master_matches() && expect_matches(): another master's identical
                # expectation is a clash (EBUSY) below, as in Linux >= 5.3.
                if other.cls != exp.cls:
                    return -errno.EALREADY
                self.unlink(other)  # same expectation again: replace it
            elif _expect_clash(other, exp):
                return -errno.EBUSY
        if ext.expectations is None:
            ext.expectations = []
        if max_expected:
            same = [e for e in ext.expectations if e.cls == exp.cls]
            if len(same) >= max_expected:
                self.unlink(same[0])  # evict_oldest_expect()
        if self.count >= self._max():
            return -errno.EMFILE  # "nf_conntrack: expectation table full"
        exp.timeout = now + exp.timeout
        self._by_dst.setdefault(dkey, []).append(exp)
        ext.expectations.append(exp)
        self.count += 1
        self._stats.expect_create += 1
        return 0

    def find(self, key: int, now: float) -> Expectation | None:
        """nf_ct_find_expectation(..., unlink=True)."""
        self.now = now
        lst = self._by_dst.get(_dst_part(key))
        if not lst:
            return None
        for exp in list(lst):
            if exp.timeout <= now:
                self.unlink(exp)
                continue
            if exp.flags & NF_CT_EXPECT_INACTIVE or not exp.matches(key):
                continue
            master = exp.master
            # A master not yet confirmed cannot have been seen by the far end.
            if not master.status & IPS_CONFIRMED or master.status & IPS_DYING:
                return None
            if not exp.flags & NF_CT_EXPECT_PERMANENT:
                self.unlink(exp)
            return exp
        return None

    def unlink(self, exp: Expectation) -> bool:
        """nf_ct_unlink_expect()."""
        lst = self._by_dst.get(_dst_part(exp.tuple.key))
        if lst is None or exp not in lst:
            return False
        lst.remove(exp)
        if not lst:
            del self._by_dst[_dst_part(exp.tuple.key)]
        ext = exp.master.ext
        if ext is not None and ext.expectations and exp in ext.expectations:
            ext.expectations.remove(exp)
        self.count -= 1
        self._stats.expect_delete += 1
        return True

    def remove_for_master(self, ct: Conn) -> None:
        """nf_ct_remove_expectations(): a master's death takes its expectations along."""
        ext = ct.ext
        if ext is None or not ext.expectations:
            return
        for exp in list(ext.expectations):
            self.unlink(exp)

    def flush(self) -> None:
        for exp in list(self):
            self.unlink(exp)


def _expect_matches(a: Expectation, b: Expectation) -> bool:
    """expect_matches(): same tuple and mask."""
    return (a.tuple == b.tuple and a.mask_src == b.mask_src and a.mask_sport == b.mask_sport)


def _expect_clash(a: Expectation, b: Expectation) -> bool:
    """expect_clash(): the two could match the same packet (intersection of masks)."""
    mask_src = a.mask_src & b.mask_src
    mask_sport = a.mask_sport & b.mask_sport
    ta, tb = a.tuple, b.tuple
    if (ta.src ^ tb.src) & mask_src or (ta.sport ^ tb.sport) & mask_sport:
        return False
    return _dst_part(ta.key) == _dst_part(tb.key)
