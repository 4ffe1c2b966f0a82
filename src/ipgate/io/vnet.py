"""struct virtio_net_hdr (linux/virtio_net.h) on packet sockets: finish what offloads left undone.

With PACKET_VNET_HDR (packet(7)) every frame read from an AF_PACKET socket
starts with this 10-byte header, which says what the sender's offloads have
not done yet: a checksum still to compute (VIRTIO_NET_HDR_F_NEEDS_CSUM,
CHECKSUM_PARTIAL in the kernel: veth, and GRO on real NICs, pass such
packets up) and a segmentation still to do (GSO: a 64 KB TCP "super
packet" from a TSO sender or GRO).  A router must send real packets, so
`finish` computes the checksum and cuts GSO packets into MTU-sized ones
(as skb_checksum_help() and skb_segment()/tcp_gso_segment() do) -- unless
the caller can forward a TCP super-packet whole, as Linux does: then
`finish_batch(keep_gso=True)` leaves it whole, and `gso_header` is what
makes the kernel segment it on the way out.
The header is in the host's byte order (virtio_legacy_is_little_endian()).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from ipgate.packet.checksum import Buffer
from ipgate.packet.gso import GsoError, segment
from ipgate.packet.vcsum import windows, word_sums

VNET_HDR = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR_LEN = VNET_HDR.size
ZERO_HDR = bytes(VNET_HDR_LEN)

VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2
VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_UDP_L4 = 5
VIRTIO_NET_HDR_GSO_ECN = 0x80

VECTOR_MIN = 16  # frames: below this finish_batch() goes frame by frame
MAX_PLAIN = 9216 + 14 + 4 + VNET_HDR_LEN  # longer frames (GSO) go one by one: copying them into a run costs more

_U16 = struct.Struct("!H")


class VnetError(Exception):
    """A frame whose offload header cannot be honoured (the caller drops it with this reason)."""


def _complete_csum(data: bytes, start: int, offset: int) -> bytes:
    """skb_checksum_help() on a frame still carrying its header: the field already holds the pseudo-header
    sum; add the data from `start` on and invert.  Inlined RFC 1071 (see packet/checksum.py): one
    integer modulo instead of a loop, the per-packet cost of every frame a veth hands up."""
    s0 = VNET_HDR_LEN + start
    pos = s0 + offset
    if s0 >= len(data) or pos + 2 > len(data) or pos < s0:
        raise VnetError("vnet: checksum offset outside the frame")
    v = int.from_bytes(memoryview(data)[s0:], "big")
    if (len(data) - s0) & 1:
        v <<= 8
    r = v % 0xFFFF
    if not r and v:
        r = 0xFFFF
    check = ~r & 0xFFFF or (0xFFFF if offset == 6 else 0)  # UDP sends a computed 0 as 0xFFFF
    return data[VNET_HDR_LEN:pos] + check.to_bytes(2, "big") + data[pos + 2:]


class Finished(NamedTuple):
    """What `finish_batch` makes of a batch of frames read with their header."""

    frames: list[Buffer]  # a super-packet kept whole is a view of the frame read (64 KB not copied)
    csum_valid: list[bool]  # per frame: its L4 checksum is known good (we completed it, or the NIC checked it)
    gso: list[int]  # per frame: its GSO segment size when it is a TCP super-packet kept whole, else 0
    bad: int  # frames dropped as malformed
    fixed: int  # frames whose offload was finished here


def _vouched(flags: int) -> bool:
    """A checksum left to us (completed in `finish`) or checked by the NIC (VIRTIO_NET_HDR_F_DATA_VALID:
    CHECKSUM_UNNECESSARY): either way the stack need not sum it again."""
    return bool(flags & (VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))


def gso_header(head: bytes, packet: bytes, gso_size: int) -> bytes:
    """The virtio_net_hdr that has the kernel segment an IPv4 + TCP super-packet behind link header `head` at
    `gso_size` and fill in the checksums (the TCP field holding the pseudo-header sum, as CHECKSUM_PARTIAL)."""
    ihl = (packet[0] & 0xF) * 4
    doff = (packet[ihl + 12] >> 4) * 4
    return VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, len(head) + ihl + doff, gso_size,
                         len(head) + ihl, 16)


def _tcp_super(data: bytes) -> int:
    """The segment size of a frame that is an untagged IPv4 TCP super-packet with its checksum left partial
    (what GRO hands up), which can be forwarded whole; 0 for anything else."""
    if len(data) < VNET_HDR_LEN + 14 + 40:
        return 0
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(data)
    f = VNET_HDR_LEN
    if (flags != VIRTIO_NET_HDR_F_NEEDS_CSUM or gso_type != VIRTIO_NET_HDR_GSO_TCPV4 or csum_offset != 16
            or data[f + 12:f + 14] != b"\x08\x00" or data[f + 14] != 0x45 or data[f + 23] != 6
            or csum_start != 34 or gso_size <= 0):
        return 0
    return int(gso_size)


class _Out:
    """finish_batch's results as they are gathered."""

    __slots__ = ("frames", "valid", "gso", "bad", "fixed", "keep_gso")

    def __init__(self, keep_gso: bool) -> None:
        self.frames: list[Buffer] = []
        self.valid: list[bool] = []
        self.gso: list[int] = []
        self.bad = self.fixed = 0
        self.keep_gso = keep_gso

    def one(self, data: bytes) -> None:
        """`finish` on one frame (or, if asked, a TCP super-packet kept whole)."""
        mss = _tcp_super(data) if self.keep_gso else 0
        if mss:
            self.frames.append(memoryview(data)[VNET_HDR_LEN:])
            self.valid.append(True)
            self.gso.append(mss)
            return
        try:
            frames = finish(data)
        except VnetError:
            self.bad += 1
            return
        self.frames += frames
        self.valid += [_vouched(data[0])] * len(frames)
        self.gso += [0] * len(frames)
        self.fixed += 1

    def result(self) -> Finished:
        return Finished(self.frames, self.valid, self.gso, self.bad, self.fixed)


def finish_batch(frames: list[bytes], *, keep_gso: bool = False) -> Finished:
    """`finish` for frames read with their header, in order.  The common cases, no offload pending or a
    checksum to compute (what a veth hands up from a local sender), are done for runs of frames at once
    (packet/vcsum.py); GSO frames go through `finish` one by one (never copied into a run's buffer), and so
    does a run of few frames.  With `keep_gso`, TCP super-packets are passed on whole (their `gso` size says
    so) for the caller to forward as they are, the kernel segmenting them on the way out (`gso_header`)."""
    acc = _Out(keep_gso)
    if max(map(len, frames), default=0) <= MAX_PLAIN:
        _finish_run(frames, acc)
        return acc.result()
    run: list[bytes] = []
    for data in frames:
        if len(data) > MAX_PLAIN:
            _finish_run(run, acc)
            run.clear()
            acc.one(data)
        else:
            run.append(data)
    _finish_run(run, acc)
    return acc.result()


def _finish_run(frames: list[bytes], acc: _Out) -> None:
    """finish_batch on frames none of which is long: numpy on the run, or one by one below VECTOR_MIN."""
    n = len(frames)
    if n < VECTOR_MIN:
        for data in frames:
            if data.startswith(ZERO_HDR):
                acc.frames.append(data[VNET_HDR_LEN:])
                acc.valid.append(False)
                acc.gso.append(0)
            else:
                acc.one(data)
        return
    buf = b"".join(frames) + bytes(VNET_HDR_LEN + 2)
    a = np.frombuffer(buf, dtype=np.uint8)
    lens = np.fromiter(map(len, frames), dtype=np.int64, count=n)
    offs = np.zeros(n, dtype=np.int64)
    np.cumsum(lens[:-1], out=offs[1:])
    end = offs + lens
    hdr = windows(a, VNET_HDR_LEN)[offs].astype(np.int64)
    plain = (hdr == 0).all(1) & (lens >= VNET_HDR_LEN)
    csum = (hdr[:, 0] == VIRTIO_NET_HDR_F_NEEDS_CSUM) & (hdr[:, 1] == VIRTIO_NET_HDR_GSO_NONE) & (lens > 14)
    # _complete_csum: the field holds the pseudo-header sum; add the data from csum_start on, invert
    start = VNET_HDR_LEN + (hdr[:, 6] | hdr[:, 7] << 8)  # host byte order: little-endian here
    offset = hdr[:, 8] | hdr[:, 9] << 8
    pos = start + offset
    good = csum & (start < lens) & (pos + 2 <= lens)
    failed = csum & ~good
    acc.bad += int(failed.sum())
    simple = plain | good
    data = buf
    if good.any():
        v = word_sums(a, np.minimum(offs + start, end), end)
        r = v % 0xFFFF
        r = np.where((r == 0) & (v != 0), 0xFFFF, r)
        check = ~r & 0xFFFF
        check = np.where((check == 0) & (offset == 6), 0xFFFF, check)  # UDP sends a computed 0 as 0xFFFF
        w = a.copy()
        at = (offs + pos)[good]
        w[at] = check[good] >> 8
        w[at + 1] = check[good] & 0xFF
        data = w.tobytes()
    acc.fixed += int(good.sum())
    starts = (offs + VNET_HDR_LEN).tolist()
    ends = end.tolist()
    if simple.all():
        acc.frames += [data[p:q] for p, q in zip(starts, ends, strict=True)]
        acc.valid += good.tolist()
        acc.gso += [0] * n
        return
    for i, (ok, bad, vouched) in enumerate(zip(simple.tolist(), failed.tolist(), good.tolist(), strict=True)):
        if ok:
            acc.frames.append(data[starts[i]:ends[i]])
            acc.valid.append(vouched)
            acc.gso.append(0)
        elif not bad:
            acc.one(frames[i])


def _l3_offset(frame: bytearray) -> int:
    if len(frame) < 14:
        raise VnetError("vnet: runt frame")
    et = _U16.unpack_from(frame, 12)[0]
    if et == 0x8100 and len(frame) >= 18:
        return 18
    return 14


def finish(data: bytes) -> list[bytes]:
    """The frames a frame read with its virtio_net_hdr stands for (usually itself, without the header)."""
    if len(data) < VNET_HDR_LEN:
        raise VnetError("vnet: frame shorter than its header")
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(data)
    if not flags and not gso_type:
        return [data[VNET_HDR_LEN:]]
    gso = gso_type & ~VIRTIO_NET_HDR_GSO_ECN
    if gso == VIRTIO_NET_HDR_GSO_NONE:
        if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            return [_complete_csum(data, csum_start, csum_offset)]
        return [data[VNET_HDR_LEN:]]
    if gso in (VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_UDP_L4):
        return _segment(bytearray(data[VNET_HDR_LEN:]), gso_size, tcp=gso == VIRTIO_NET_HDR_GSO_TCPV4)
    raise VnetError(f"vnet: unsupported GSO type {gso_type}")


def _segment(frame: bytearray, mss: int, *, tcp: bool) -> list[bytes]:
    """tcp_gso_segment()/__udp_gso_segment() on a frame: its IPv4 packet segmented, each behind its header."""
    l3 = _l3_offset(frame)
    head = bytes(frame[:l3])
    try:
        return [head + p for p in segment(memoryview(frame)[l3:], mss, tcp=tcp)]
    except GsoError as e:
        raise VnetError(f"vnet: {e}") from None
