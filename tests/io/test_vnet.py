"""vnet.finish: frames with pending checksum or segmentation offloads, as AF_PACKET hands them up."""

from __future__ import annotations

import struct

import pytest

from ipgate.inet import aton
from ipgate.io.vnet import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    VNET_HDR,
    VnetError,
    finish,
    finish_batch,
)
from ipgate.packet.build import build_ipv4, build_tcp, build_udp
from ipgate.packet.checksum import csum_fold, csum_tcpudp_nofold
from ipgate.packet.ipv4 import IPv4, parse_ipv4
from ipgate.packet.l4 import parse_udp, tcp_csum_ok, udp_csum_ok

ETH = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00"
SRC, DST = aton("192.168.10.2"), aton("203.0.113.2")


def _partial(pkt: bytearray, l4_check_off: int, proto: int) -> None:
    """What CHECKSUM_PARTIAL leaves in the field: the folded pseudo-header sum, not inverted."""
    l4len = len(pkt) - 20
    struct.pack_into("!H", pkt, 20 + l4_check_off, csum_fold(csum_tcpudp_nofold(SRC, DST, l4len, proto)))


def _ip(frame: bytes) -> tuple[bytes, IPv4]:
    pkt = frame[14:]
    ip = parse_ipv4(pkt)
    assert isinstance(ip, IPv4)
    return pkt, ip


def test_plain_frame_passes_unchanged() -> None:
    frame = ETH + bytes(build_udp(SRC, DST, 1, 2, b"x"))
    assert finish(bytes(10) + frame) == [frame]


def test_udp_checksum_completed() -> None:
    pkt = build_udp(SRC, DST, 1000, 53, b"hello world!")
    _partial(pkt, 6, 17)
    hdr = VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 14 + 20, 6)
    [out] = finish(hdr + ETH + bytes(pkt))
    p, ip = _ip(out)
    udp = parse_udp(p, ip)
    assert not isinstance(udp, Exception) and udp_csum_ok(p, ip, udp)  # type: ignore[arg-type]


def test_tcp_gso_segmented() -> None:
    payload = bytes(range(256)) * 14  # 3584 bytes -> 1000 + 1000 + 1000 + 584
    seg = build_tcp(SRC, DST, 40000, 8080, payload, seq=0xFFFFFF00, flags=0x18 | 0x01 | 0x80)  # PSH FIN CWR ACK
    pkt = build_ipv4(SRC, DST, 6, seg[20:], id=7)
    hdr = VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 54, 1000, 34, 16)
    frames = finish(hdr + ETH + bytes(pkt))
    assert len(frames) == 4
    got = b""
    for i, f in enumerate(frames):
        assert f[:14] == ETH
        p, ip = _ip(f)
        assert ip.id == 7 + i and ip.tot_len == len(p)
        assert tcp_csum_ok(p, ip)
        seq, flags = struct.unpack_from("!I", p, 24)[0], p[33]
        assert seq == (0xFFFFFF00 + 1000 * i) & 0xFFFFFFFF
        last = i == len(frames) - 1
        assert bool(flags & 0x01) == last and bool(flags & 0x08) == last  # FIN and PSH on the last only
        assert bool(flags & 0x80) == (i == 0)  # CWR on the first only
        got += p[40:]
    assert got == payload


def test_udp_gso_segmented() -> None:
    payload = b"u" * 2500
    pkt = build_udp(SRC, DST, 5000, 6000, payload)
    hdr = VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4, 42, 1200, 34, 6)
    frames = finish(hdr + ETH + bytes(pkt))
    assert [len(f) - 14 - 28 for f in frames] == [1200, 1200, 100]
    for f in frames:
        p, ip = _ip(f)
        udp = parse_udp(p, ip)
        assert udp_csum_ok(p, ip, udp)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [
    b"",
    bytes(5),
    VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 500, 6) + ETH + bytes(40),  # offset past the end
    VNET_HDR.pack(0, VIRTIO_NET_HDR_GSO_TCPV4, 0, 0, 0, 0) + ETH + bytes(60),  # mss 0, no IPv4
    VNET_HDR.pack(0, VIRTIO_NET_HDR_GSO_TCPV4, 0, 1, 0, 0) + ETH + bytes(build_tcp(SRC, DST, 1, 2, b"x" * 900)),
    VNET_HDR.pack(0, 4, 0, 1000, 0, 0) + ETH + bytes(60),  # TCPv6 GSO: not ours
])
def test_malformed_headers_are_refused(data: bytes) -> None:
    with pytest.raises(VnetError):
        finish(data)


@pytest.mark.parametrize("seed", range(5))
def test_finish_batch_is_finish_on_each(seed: int) -> None:
    """finish_batch() on a mixed batch gives what finish() gives frame by frame, in order, with the same counts."""
    import random

    rng = random.Random(seed)
    frames = []
    for _ in range(60):
        roll = rng.random()
        payload = rng.randbytes(rng.randrange(0, 300))
        if roll < 0.4:
            pkt = build_udp(SRC, DST, 1000, 53, payload)
            _partial(pkt, 6, 17)
            hdr = VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 14 + 20, 6)
        elif roll < 0.7:
            pkt = build_tcp(SRC, DST, 4000, 80, payload, flags=0x18)
            _partial(pkt, 16, 6)
            hdr = VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 14 + 20, 16)
        elif roll < 0.8:
            pkt = build_udp(SRC, DST, 1, 2, payload)
            hdr = bytes(10)
        elif roll < 0.9:  # checksum offset past the end: malformed
            pkt = build_udp(SRC, DST, 1, 2, payload)
            hdr = VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 14 + 20, 6000)
        else:
            # short ones go through the runs' vectors, long ones (above MAX_PLAIN) split the runs
            seg = build_tcp(SRC, DST, 40000, 8080, bytes(rng.choice((2500, 20000))), flags=0x10)
            pkt = build_ipv4(SRC, DST, 6, seg[20:], id=7)
            hdr = VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 54, 1000, 34, 16)
        frames.append(hdr + ETH + bytes(pkt))
    for _ in range(3):  # runts: shorter than the header, or a header and little else
        frames.insert(rng.randrange(len(frames)), rng.choice((b"", bytes(5), bytes(10), b"\x01" + bytes(13))))
    for batch in (frames, frames[:5]):  # as vectors, and the few frames that go one by one
        want: list[bytes] = []
        valid: list[bool] = []
        bad = fixed = 0
        for f in batch:
            try:
                got = finish(f)
            except VnetError:
                bad += 1
                continue
            want += got
            valid += [bool(f[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM)] * len(got)  # completed here: known good
            fixed += f[:10] != bytes(10)
        got = finish_batch(batch)
        assert (got.frames, got.csum_valid, got.gso, got.bad, got.fixed) == (want, valid, [0] * len(want), bad, fixed)
