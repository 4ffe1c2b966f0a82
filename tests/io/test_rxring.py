"""RxRing.read_blocks on a ring laid out by hand: blocks are read oldest first by their sequence numbers,
whatever their places in the ring, whole, and handed back."""

from __future__ import annotations

import mmap

from ipgate.io.afpacket import _BLOCK, _PKT3, TP_STATUS_KERNEL, TP_STATUS_USER, RxRing

BS, NR, FIRST = 4096, 4, 48  # block size, blocks, where a block's first packet starts
MAC = 64  # tpacket3_hdr, room for a virtio_net_hdr, then the frame


def _ring(blocks: dict[int, tuple[int, list[bytes]]]) -> RxRing:
    """A ring whose block i holds (sequence number, frames) and is ours; the others are the kernel's."""
    ring = RxRing.__new__(RxRing)
    ring.hdrlen, ring.block_size, ring.block_nr = 0, BS, NR
    ring.map = mmap.mmap(-1, BS * NR)
    ring.view = memoryview(ring.map)
    for i in range(NR):
        seq, frames = blocks.get(i, (0, []))
        status = TP_STATUS_USER if i in blocks else TP_STATUS_KERNEL
        _BLOCK.pack_into(ring.map, i * BS, 3, 0, status, len(frames), FIRST, 0, seq)
        p = i * BS + FIRST
        for k, f in enumerate(frames):
            step = (MAC + len(f) + 15) & ~15
            _PKT3.pack_into(ring.map, p, step if k < len(frames) - 1 else 0, 0, 0, len(f), len(f), 0, MAC, 0)
            ring.map[p + MAC:p + MAC + len(f)] = f
            p += step
    return ring


def _status(ring: RxRing) -> list[int]:
    return [_BLOCK.unpack_from(ring.map, i * BS)[2] for i in range(NR)]


def test_blocks_are_read_oldest_first_and_handed_back() -> None:
    ring = _ring({3: (7, [b"a1", b"a2"]), 0: (8, [b"b1"]), 1: (9, [b"c1", b"c2", b"c3"])})
    assert ring.ready()
    assert ring.read_blocks(100) == [b"a1", b"a2", b"b1", b"c1", b"c2", b"c3"]
    assert _status(ring) == [TP_STATUS_KERNEL] * NR
    assert not ring.ready()
    assert ring.read_blocks(100) == []


def test_limit_reads_whole_blocks() -> None:
    ring = _ring({2: (5, [b"x" * 100] * 3), 1: (6, [b"y"])})
    assert ring.read_blocks(2) == [b"x" * 100] * 3  # the whole oldest block, then the limit stops it
    assert _status(ring) == [TP_STATUS_KERNEL, TP_STATUS_USER, TP_STATUS_KERNEL, TP_STATUS_KERNEL]
    assert "unread [6]" in ring.state()
    assert ring.read_blocks(2) == [b"y"]


def test_frames_keep_their_virtio_header() -> None:
    ring = _ring({0: (1, [b"frame"])})
    ring.hdrlen = 10  # a socket with PACKET_VNET_HDR: the kernel writes the header just before tp_mac
    ring.map[FIRST + MAC - 10:FIRST + MAC] = b"H" * 10
    assert ring.read_blocks(10) == [b"H" * 10 + b"frame"]
