"""packet/vcsum.py against the scalar RFC 1071 sum (packet/checksum.py), on random buffers and ranges."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ipgate.packet.checksum import csum_partial
from ipgate.packet.vcsum import word_sums


@pytest.mark.parametrize("seed", range(20))
def test_word_sums_fold_to_the_scalar_sum(seed: int) -> None:
    rng = random.Random(seed)
    buf = rng.randbytes(rng.randrange(2, 3000)) + b"\0"  # one byte past the last range
    a = np.frombuffer(buf, dtype=np.uint8)
    ranges = [(s, rng.randrange(s, len(buf))) for s in (rng.randrange(len(buf) - 1) for _ in range(50))]
    ranges += [(0, len(buf) - 1), (1, len(buf) - 1), (5, 5)]
    even = [(s & ~1, e & ~1) for s, e in ranges]  # no byte left over at either end: word_sums' short cut
    for rs in (ranges, even):
        start = np.array([s for s, _ in rs], dtype=np.int64)
        end = np.array([e for _, e in rs], dtype=np.int64)
        sums = (word_sums(a, start, end) % 0xFFFF).tolist()
        for (s, e), v in zip(rs, sums, strict=True):
            while v >> 16:
                v = (v & 0xFFFF) + (v >> 16)
            want = csum_partial(buf[s:e])
            assert v == want or (v, want) == (0xFFFF, 0) or (v, want) == (0, 0xFFFF), (s, e)
