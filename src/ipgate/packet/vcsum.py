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

    One prefix sum W over the buffer's little-endian words; 256 * W is congruent to the sum of its
    big-endian words, every even byte weighing 256 and every odd byte 1 (65536 = 1 mod 0xFFFF).  A range
    starting on an odd byte has the weights the other way round, which is 256 times the same sum.
    """
    nb = (len(a) - 1) & ~1
    w = np.empty(nb // 2 + 1, dtype=np.int64)
    w[0] = 0
    w[1:] = a[:nb].view("<u2")  # widened first: a cumsum that casts as it goes is 2.5x slower
    np.cumsum(w[1:], out=w[1:])
    # G(k): the bytes before k, even ones x 256, odd ones x 1 (up to the factor 256 of the little-endian sum)
    g_end = (w[end >> 1] << 8) + np.where(end & 1, a[end - 1].astype(np.int64) << 8, 0)
    g_start = (w[start >> 1] << 8) + np.where(start & 1, a[start - 1].astype(np.int64) << 8, 0)
    g: I64 = g_end - g_start
    g = np.where(start & 1, g << 8, g)
    return g


def windows(a: U8, width: int) -> U8:
    """Row k is a[k:k + width], a view: indexing it with the packets' offsets gathers (or, assigned to,
    scatters) those bytes of every packet, with one index per packet instead of one per byte."""
    return np.lib.stride_tricks.as_strided(a, shape=(len(a) - width + 1, width), strides=(1, 1))
