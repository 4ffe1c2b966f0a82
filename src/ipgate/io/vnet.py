"""struct virtio_net_hdr (linux/virtio_net.h) on packet sockets: finish what offloads left undone.

With PACKET_VNET_HDR (packet(7)) every frame read from an AF_PACKET socket
starts with this 10-byte header, which says what the sender's offloads have
not done yet: a checksum still to compute (VIRTIO_NET_HDR_F_NEEDS_CSUM,
CHECKSUM_PARTIAL in the kernel: veth, and GRO on real NICs, pass such
packets up) and a segmentation still to do (GSO: a 64 KB TCP "super
packet" from a TSO sender or GRO).  A router must send real packets, so
`finish` computes the checksum and cuts GSO packets into MTU-sized ones
(as skb_checksum_help() and skb_segment()/tcp_gso_segment() do).
The header is in the host's byte order (virtio_legacy_is_little_endian()).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from ipgate.packet.checksum import csum_fold, csum_partial, csum_tcpudp_nofold, ip_compute_csum
from ipgate.packet.vcsum import word_sums

VNET_HDR = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR_LEN = VNET_HDR.size
ZERO_HDR = bytes(VNET_HDR_LEN)

VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2
VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_UDP_L4 = 5
VIRTIO_NET_HDR_GSO_ECN = 0x80

MAX_SEGMENTS = 64  # a 64 KB GSO packet at MSS 1024; more is malformed
VECTOR_MIN = 16  # frames: below this finish_batch() goes frame by frame

_IPH = struct.Struct("!BBHHHBBHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


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

    frames: list[bytes]
    csum_valid: list[bool]  # per frame: its L4 checksum is known good (we completed it, or the NIC checked it)
    bad: int  # frames dropped as malformed
    fixed: int  # frames whose offload was finished here


def _vouched(flags: int) -> bool:
    """A checksum left to us (completed in `finish`) or checked by the NIC (VIRTIO_NET_HDR_F_DATA_VALID:
    CHECKSUM_UNNECESSARY): either way the stack need not sum it again."""
    return bool(flags & (VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))


def finish_batch(frames: list[bytes]) -> Finished:
    """`finish` for frames read with their header, in order.  The common cases, no offload pending or a
    checksum to compute (what a veth hands up from a local sender), are done for the whole batch at once
    (packet/vcsum.py); GSO frames go through `finish` one by one, and so does a batch of few frames."""
    n = len(frames)
    if n < VECTOR_MIN:
        return _finish_each(frames)
    buf = b"".join(frames) + bytes(VNET_HDR_LEN + 2)
    a = np.frombuffer(buf, dtype=np.uint8)
    lens = np.fromiter(map(len, frames), dtype=np.int64, count=n)
    offs = np.zeros(n, dtype=np.int64)
    np.cumsum(lens[:-1], out=offs[1:])
    end = offs + lens
    hdr = a[offs[:, None] + np.arange(VNET_HDR_LEN)].astype(np.int64)
    plain = (hdr == 0).all(1) & (lens >= VNET_HDR_LEN)
    csum = (hdr[:, 0] == VIRTIO_NET_HDR_F_NEEDS_CSUM) & (hdr[:, 1] == VIRTIO_NET_HDR_GSO_NONE) & (lens > 14)
    # _complete_csum: the field holds the pseudo-header sum; add the data from csum_start on, invert
    start = VNET_HDR_LEN + (hdr[:, 6] | hdr[:, 7] << 8)  # host byte order: little-endian here
    offset = hdr[:, 8] | hdr[:, 9] << 8
    pos = start + offset
    good = csum & (start < lens) & (pos + 2 <= lens)
    bad = int((csum & ~good).sum())
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
    fixed = int(good.sum())
    starts = (offs + VNET_HDR_LEN).tolist()
    ends = end.tolist()
    if simple.all():
        return Finished([data[p:q] for p, q in zip(starts, ends, strict=True)], good.tolist(), bad, fixed)
    out: list[bytes] = []
    valid: list[bool] = []
    for i, (ok, failed, vouched) in enumerate(zip(simple.tolist(), (csum & ~good).tolist(), good.tolist(),
                                                  strict=True)):
        if ok:
            out.append(data[starts[i]:ends[i]])
            valid.append(vouched)
        elif not failed:
            fixed, bad = _finish_one(frames[i], out, valid, fixed, bad)
    return Finished(out, valid, bad, fixed)


def _finish_one(data: bytes, out: list[bytes], valid: list[bool], fixed: int, bad: int) -> tuple[int, int]:
    """`finish` on one frame, its frames and flags added to `out` and `valid`; the counts updated."""
    try:
        frames = finish(data)
    except VnetError:
        return fixed, bad + 1
    out += frames
    valid += [_vouched(data[0])] * len(frames)
    return fixed + 1, bad


def _finish_each(frames: list[bytes]) -> Finished:
    """finish_batch() one frame at a time: cheaper for a few frames than numpy's fixed costs."""
    out: list[bytes] = []
    valid: list[bool] = []
    bad = fixed = 0
    for data in frames:
        if data.startswith(ZERO_HDR):
            out.append(data[VNET_HDR_LEN:])
            valid.append(False)
        else:
            fixed, bad = _finish_one(data, out, valid, fixed, bad)
    return Finished(out, valid, bad, fixed)


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
    """tcp_gso_segment()/__udp_gso_segment() for IPv4: cut the payload into `mss`-byte pieces."""
    l3 = _l3_offset(frame)
    if len(frame) < l3 + 20 or frame[l3] >> 4 != 4:
        raise VnetError("vnet: GSO frame without IPv4")
    ihl = (frame[l3] & 0xF) * 4
    _v, tos, _tot, ip_id, frag_off, ttl, proto, _c, saddr, daddr = _IPH.unpack_from(frame, l3)
    l4 = l3 + ihl
    if tcp:
        if proto != 6 or len(frame) < l4 + 20:
            raise VnetError("vnet: TCP GSO frame without TCP")
        l4len = (frame[l4 + 12] >> 4) * 4
    else:
        if proto != 17 or len(frame) < l4 + 8:
            raise VnetError("vnet: UDP GSO frame without UDP")
        l4len = 8
    data_off = l4 + l4len
    payload = memoryview(frame)[data_off:]
    if mss <= 0 or len(payload) > mss * MAX_SEGMENTS or data_off > len(frame):
        raise VnetError("vnet: bad GSO size")
    head = bytes(frame[:l3])
    iphdr = bytearray(frame[l3:l4])
    l4hdr = bytearray(frame[l4:data_off])
    seq = _U32.unpack_from(l4hdr, 4)[0] if tcp else 0
    tcp_flags = l4hdr[13] if tcp else 0
    out: list[bytes] = []
    n = (len(payload) + mss - 1) // mss or 1
    for i in range(n):
        chunk = payload[i * mss:(i + 1) * mss]
        last = i == n - 1
        ip = bytearray(iphdr)
        _IPH.pack_into(ip, 0, ip[0], tos, ihl + l4len + len(chunk), (ip_id + i) & 0xFFFF, frag_off, ttl, proto, 0,
                       saddr, daddr)
        ip[20:ihl] = iphdr[20:ihl]
        _U16.pack_into(ip, 10, ip_compute_csum(ip))
        h = bytearray(l4hdr)
        if tcp:
            _U32.pack_into(h, 4, (seq + i * mss) & 0xFFFFFFFF)
            f = tcp_flags
            if not last:
                f &= ~0x09  # FIN and PSH only on the last segment
            if i:
                f &= ~0x80  # CWR only on the first
            h[13] = f
        else:
            _U16.pack_into(h, 4, 8 + len(chunk))
        _U16.pack_into(h, 16 if tcp else 6, 0)
        seg_len = l4len + len(chunk)
        # the header's length is even, so header and payload can be summed apart
        s = csum_fold(csum_partial(h, csum_tcpudp_nofold(saddr, daddr, seg_len, proto)) + csum_partial(chunk))
        check = ~s & 0xFFFF
        if not tcp and check == 0:
            check = 0xFFFF
        _U16.pack_into(h, 16 if tcp else 6, check)
        out.append(head + bytes(ip) + bytes(h) + bytes(chunk))
    return out
