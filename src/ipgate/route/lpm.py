"""DIR-24-8: a longest-prefix-length index for big FIB tables.

Theory of operation.  The classic two-level table of Gupta, Lin and McKeown
("Routing lookups in hardware at memory access speeds", 1998), as DPDK's
rte_lpm keeps it, except that an entry holds a *prefix length* rather than a
nexthop: `FibTable.candidates()` asks `longest(addr)` for the length of the
longest present prefix covering addr, then reads that prefix's leaf from its
dict (and walks shorter ones when no alias fits, as fib_trie backtracks).

* `tbl24` has one entry per /24 (2^24 of them, uint16: 32 MB).  An entry below
  `_BLOCK` is plen+1 of the longest prefix of length <= 24 covering that /24
  (0: none).  An entry >= `_BLOCK` points at block `entry - _BLOCK` of `tbl8`.
* `tbl8` is a flat uint8 array of 256-entry blocks, one per /24 that holds a
  prefix longer than /24.  Each entry is plen+1 of the longest prefix covering
  that single address, /0../32 alike (the block inherits the /24's value).

Bulk fills (`build`, inserting or deleting a short prefix) are numpy slice
operations; scalar reads go through `memoryview`s of the same buffers, so a
lookup is two indexings returning Python ints.  When more than 65472 blocks are
needed, `tbl24` is widened to uint32 (64 MB).

Incremental changes are exact.  Inserting P/n raises every entry in P's range
to at least n+1 (longer prefixes keep theirs).  Deleting P/n rewrites exactly
the entries equal to n+1 in P's range (only P can have put them there: one
prefix of each length covers an address) to m+1, m being the next shorter
present prefix covering P.  That needs the set of present prefixes: a bound
index reads the owning table's dicts (`Dir248(table_by_len)`), a free-standing
one keeps its own sets.  A block whose /24 has no prefix longer than /24 left
is uniform again; it is folded back into `tbl24` and recycled.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ipgate.inet import MASKS
from ipgate.route.fib import LpmIndex

_BLOCK = 64  # tbl24 values >= _BLOCK are block pointers; plen+1 is at most 25 there
_SMALL = 16  # ranges up to this many entries are updated with scalar writes
_CHUNK = 1 << 21  # bound on the index temporaries of build() (elements)
_U16_BLOCKS = 0xFFFF - _BLOCK + 1  # blocks addressable while tbl24 is uint16

U32Array = npt.NDArray[np.uint32]


class Dir248(LpmIndex):
    """DIR-24-8 over prefix lengths; see the module docstring."""

    def __init__(self, by_len: Sequence[Container[int]] | None = None) -> None:
        # by_len[n] answers "is prefix p/n present?" (FibTable._by_len); None: own sets.
        self._own = by_len is None
        self._sets: Sequence[Container[int]] = (
            [set() for _ in range(33)] if by_len is None else by_len)
        self.tbl24: npt.NDArray[Any] = np.zeros(1 << 24, dtype=np.uint16)
        self.tbl8: npt.NDArray[np.uint8] = np.zeros(0, dtype=np.uint8)
        self.nblocks = 0  # blocks handed out (high-water mark)
        self._free: list[int] = []
        self._views()

    # -- buffers -----------------------------------------------------------
    def _views(self) -> None:
        self._v24 = memoryview(self.tbl24)  # type: ignore[arg-type]
        self._v8 = memoryview(self.tbl8)  # type: ignore[arg-type]

    def __getstate__(self) -> dict[str, Any]:
        # memoryviews cannot be copied or pickled (copy.deepcopy in load_script)
        st = dict(self.__dict__)
        del st["_v24"], st["_v8"]
        return st

    def __setstate__(self, st: dict[str, Any]) -> None:
        self.__dict__.update(st)
        self._views()

    @property
    def nbytes(self) -> int:
        return int(self.tbl24.nbytes + self.tbl8.nbytes)

    @property
    def blocks_in_use(self) -> int:
        return self.nblocks - len(self._free)

    def _ensure_blocks(self, total: int) -> None:
        """Room for `total` blocks: grow tbl8, widen tbl24 when pointers overflow uint16."""
        if total > _U16_BLOCKS and self.tbl24.dtype != np.uint32:
            self.tbl24 = self.tbl24.astype(np.uint32)
        cap = self.tbl8.size >> 8
        if total > cap:
            new = np.zeros(max(total, 2 * cap, 64) << 8, dtype=np.uint8)
            new[: self.tbl8.size] = self.tbl8
            self.tbl8 = new
        self._views()

    def _alloc(self, fill: int) -> int:
        if self._free:
            b = self._free.pop()
        else:
            b = self.nblocks
            if b + 1 > (self.tbl8.size >> 8) or (b + 1 > _U16_BLOCKS and self.tbl24.dtype != np.uint32):
                self._ensure_blocks(b + 1)
            self.nblocks += 1
        self.tbl8[b << 8: (b + 1) << 8] = fill
        return b

    # -- LpmIndex ----------------------------------------------------------
    def longest(self, addr: int) -> int:
        v = self._v24[addr >> 8]
        if v < 64:  # _BLOCK, inlined
            return v - 1
        return self._v8[((v - 64) << 8) | (addr & 255)] - 1

    def longest_many(self, addrs: npt.ArrayLike) -> npt.NDArray[np.int8]:
        """Vectorised longest(): one int8 per address (-1: no covering prefix)."""
        a = np.asarray(addrs, dtype=np.uint32)
        v = self.tbl24[a >> 8].astype(np.int64)
        blk = v >= _BLOCK
        out = v - 1
        if blk.any():
            idx = ((v[blk] - _BLOCK) << 8) | (a[blk] & 255)
            out[blk] = self.tbl8[idx].astype(np.int64) - 1
        res: npt.NDArray[np.int8] = out.astype(np.int8)
        return res

    def build(self, prefixes: Iterator[tuple[int, int]]) -> None:
        """Fill from scratch, one vectorised pass per prefix length, shortest first.

        A bound index reads its table's dicts (the iterator is not consumed).
        """
        groups: list[U32Array] = []
        if self._own:
            lists: list[list[int]] = [[] for _ in range(33)]
            for p, n in prefixes:
                lists[n].append(p)
            sets = [set(lst) for lst in lists]
            self._sets = sets
            groups = [np.unique(np.array(lst, dtype=np.uint32)) for lst in lists]
        else:
            for n in range(33):
                d = self._sets[n]
                keys: Any = d
                groups.append(np.fromiter(keys, dtype=np.uint32, count=len(keys)))
        self._build(groups)

    def _build(self, groups: list[U32Array]) -> None:
        t24 = np.zeros(1 << 24, dtype=np.uint16)
        for n in range(25):
            starts = (groups[n] >> 8).astype(np.int64)
            if starts.size:
                _paint(t24, starts, 1 << (24 - n), n + 1)
        long = [groups[n] for n in range(25, 33)]
        keys = np.unique(np.concatenate(long) >> 8) if any(g.size for g in long) else np.zeros(0, np.uint32)
        nb = int(keys.size)
        self.tbl24 = t24
        self.tbl8 = np.zeros(0, dtype=np.uint8)
        self.nblocks = nb
        self._free = []
        self._ensure_blocks(nb)  # may widen tbl24 (then self.tbl24 is a new array)
        t24 = self.tbl24
        if nb:
            kidx = keys.astype(np.int64)
            rows = self.tbl8.reshape(-1, 256)
            rows[:nb] = t24[kidx][:, None]  # each block inherits its /24's length
            t24[kidx] = _BLOCK + np.arange(nb, dtype=np.int64)
            for n in range(25, 33):
                g = groups[n]
                if g.size:
                    row = np.searchsorted(keys, g >> 8).astype(np.int64)
                    base = (row << 8) | (g & 255).astype(np.int64)
                    _paint(self.tbl8, base, 1 << (32 - n), n + 1)
        self._views()

    def insert(self, prefix: int, plen: int) -> None:
        if self._own:
            self._sets[plen].add(prefix)  # type: ignore[attr-defined]
        v = plen + 1
        if plen <= 24:
            lo = prefix >> 8
            cnt = 1 << (24 - plen)
            if cnt <= _SMALL:
                t24 = self._v24
                for i in range(lo, lo + cnt):
                    c = t24[i]
                    if c >= _BLOCK:
                        blk = self.tbl8[(c - _BLOCK) << 8: (c - _BLOCK + 1) << 8]
                        np.maximum(blk, v, out=blk)
                    elif c < v:
                        t24[i] = v
                return
            seg = self.tbl24[lo: lo + cnt]
            ptr = seg >= _BLOCK
            if ptr.any():
                rows = self.tbl8.reshape(-1, 256)
                sel = seg[ptr].astype(np.int64) - _BLOCK
                rows[sel] = np.maximum(rows[sel], v)
            np.maximum(seg, v, out=seg)  # pointers are >= _BLOCK > v: untouched
            return
        i = prefix >> 8
        c = self._v24[i]
        if c < _BLOCK:
            b = self._alloc(c)
            self._v24[i] = _BLOCK + b
        else:
            b = c - _BLOCK
        lo = (b << 8) | (prefix & 255)
        t8 = self._v8
        for j in range(lo, lo + (1 << (32 - plen))):
            if t8[j] < v:
                t8[j] = v

    def delete(self, prefix: int, plen: int) -> None:
        if self._own:
            self._sets[plen].discard(prefix)  # type: ignore[attr-defined]
        old = plen + 1
        new = self._parent(prefix, plen) + 1
        if plen <= 24:
            lo = prefix >> 8
            cnt = 1 << (24 - plen)
            if cnt <= _SMALL:
                t24 = self._v24
                for i in range(lo, lo + cnt):
                    c = t24[i]
                    if c >= _BLOCK:
                        blk = self.tbl8[(c - _BLOCK) << 8: (c - _BLOCK + 1) << 8]
                        blk[blk == old] = new
                    elif c == old:
                        t24[i] = new
                return
            seg = self.tbl24[lo: lo + cnt]
            ptr = seg >= _BLOCK
            if ptr.any():
                rows = self.tbl8.reshape(-1, 256)
                sel = seg[ptr].astype(np.int64) - _BLOCK
                blk = rows[sel]
                blk[blk == old] = new
                rows[sel] = blk
            seg[seg == old] = new
            return
        i = prefix >> 8
        c = self._v24[i]
        if c < _BLOCK:
            return  # not indexed (never inserted)
        b = c - _BLOCK
        lo = (b << 8) | (prefix & 255)
        t8 = self._v8
        for j in range(lo, lo + (1 << (32 - plen))):
            if t8[j] == old:
                t8[j] = new
        blk = self.tbl8[b << 8: (b + 1) << 8]
        if int(blk.max()) <= 25:
            # no prefix longer than /24 left under this /24: fold the block back
            self._v24[i] = int(blk[0])
            self._free.append(b)

    def _parent(self, prefix: int, plen: int) -> int:
        """Length of the longest present prefix shorter than plen covering prefix, or -1."""
        sets = self._sets
        for m in range(plen - 1, -1, -1):
            if prefix & MASKS[m] in sets[m]:
                return m
        return -1


def _paint(arr: npt.NDArray[Any], starts: npt.NDArray[np.int64], span: int, value: int) -> None:
    """arr[s:s+span] = value for every s in starts, in bounded-size vectorised chunks."""
    if span == 1:
        arr[starts] = value
        return
    per = max(1, _CHUNK // span)
    offs = np.arange(span, dtype=np.int64)
    for k in range(0, starts.size, per):
        idx = (starts[k: k + per, None] + offs).ravel()
        arr[idx] = value


__all__ = ["Dir248"]
