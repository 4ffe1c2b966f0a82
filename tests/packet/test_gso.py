"""packet/gso.py: a malformed super-packet is refused with GsoError, never anything else; a good one is cut
into segments that carry its payload in order."""

from __future__ import annotations

import random

import pytest

from ipgate.inet import aton
from ipgate.packet.build import build_tcp, build_udp
from ipgate.packet.checksum import l4_checksum_ok
from ipgate.packet.gso import GsoError, segment

SRC, DST = aton("192.0.2.1"), aton("198.51.100.2")


def test_segments_carry_the_payload() -> None:
    payload = bytes(range(256)) * 20
    p = build_tcp(SRC, DST, 1000, 80, payload, seq=7, flags=0x19)  # FIN, PSH, ACK
    segs = segment(bytes(p), 1000, tcp=True)
    assert b"".join(s[40:] for s in segs) == payload and all(len(s) <= 1040 for s in segs)
    assert [s[33] for s in segs] == [0x10] * (len(segs) - 1) + [0x19]  # FIN and PSH on the last only
    assert [int.from_bytes(s[24:28], "big") for s in segs] == [7 + 1000 * i for i in range(len(segs))]
    assert all(l4_checksum_ok(s, 20, len(s) - 20, 6) for s in segs)


@pytest.mark.parametrize(("at", "value", "tcp"), [(0, 0x44, True), (0, 0x40, False), (32, 0x40, True),
                                                  (32, 0x00, True), (9, 17, True), (9, 6, False), (0, 0x65, True)])
def test_bad_headers_are_refused(at: int, value: int, tcp: bool) -> None:
    """IHL below 5, a TCP data offset below 5, the wrong protocol, not IPv4 (inet_gso_segment(),
    tcp_gso_segment())."""
    p = (build_tcp(SRC, DST, 1, 2, bytes(3000)) if tcp else build_udp(SRC, DST, 1, 2, bytes(3000)))
    p[at] = value
    with pytest.raises(GsoError):
        segment(bytes(p), 1000, tcp=tcp)


@pytest.mark.parametrize("seed", range(5))
def test_mutations_raise_only_gso_errors(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(2000):
        tcp = rng.random() < 0.7
        p = build_tcp(SRC, DST, 1, 2, bytes(rng.randrange(3000))) if tcp else build_udp(SRC, DST, 1, 2, bytes(2000))
        for _ in range(rng.randrange(1, 4)):
            p[rng.randrange(min(len(p), 60))] = rng.randrange(256)
        data = bytes(p[:rng.randrange(len(p) + 1)]) if rng.random() < 0.2 else bytes(p)
        try:
            segs = segment(data, rng.choice((-1, 0, 1, 536, 1448, 9000)), tcp=tcp)
        except GsoError:
            continue
        assert segs and all(isinstance(s, bytes) for s in segs)
