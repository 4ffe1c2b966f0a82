"""Internet checksums (RFC 1071) of many byte ranges of one buffer at once, with numpy; and the same few
bytes of every packet of such a buffer as rows (`windows`).

The batch paths (engine/vector.py, io/vnet.py) join a batch of packets into
one buffer; the 16-bit word sum of each packet's range then comes from one
prefix sum over the buffer's words.  A range of odd length ends with a byte
that counts as the high half of a word, as RFC 1071 pads it.  Sums are
neither folded nor exact: they are congruent to the real sum modulo 0xFFFF,
which is all a checksum needs (callers take them modulo 0xFFFF).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


def word_sums(a: U8, start: I64, end: I64) -> I64:
    """For each (start, end) a value congruent modulo 0xFFFF to the sum of the big-endian 16-bit words of
    a[start:end] (an odd tail byte as a high half); end >= start, and `a` must hold one byte past the
    last end.

    Each range's whole little-endian words of the buffer are summed by one np.add.reduceat (4x faster here
    than a prefix sum); 256 * that is congruent to their big-endian sum (65536 = 1 mod 0xFFFF).  A byte
    left over at either end weighs as its place in the buffer says (even: 256, odd: 1), and a range
    starting on an odd byte has all its weights the other way round: 256 times the same sum.
    """
    nw = (len(a) - 1) >> 1
    u = np.zeros(nw + 1, dtype=np.int64)  # and a zero word: an index may be nw
    u[:nw] = a[:2 * nw].view("<u2")
    ws = (start + 1) >> 1  # the whole words of each range: [ws, we)
    we = end >> 1
    idx = np.empty(2 * len(start), dtype=np.intp)
    idx[0::2] = np.minimum(ws, nw)
    idx[1::2] = we
    mid = np.add.reduceat(u, idx)[0::2]  # (a range without whole words gets one word: masked)
    g: I64 = np.where(ws < we, mid, 0) << 8
    if not ((start | end) & 1).any():
        return g
    # bytes left over at the ends (numpy's cost here is per call, not per packet: skipped when none is)
    nonempty = end > start
    top = len(a) - 1
    g += np.where((start & 1 == 1) & nonempty, a[np.minimum(start, top)], 0)
    g += np.where((end & 1 == 1) & nonempty, a[np.maximum(end - 1, 0)].astype(np.int64) << 8, 0)
    return np.where(start & 1, g << 8, g)


def windows(a: U8, width: int) -> U8:
    """Row k is a[k:k + width], a view: indexing it with the packets' offsets gathers (or, assigned to,
    scatters) those bytes of every packet, with one index per packet instead of one per byte."""
    return np.ndarray((len(a) - width + 1, width), np.uint8, a, 0, (1, 1))  # as_strided() costs 4x more
