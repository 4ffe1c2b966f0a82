"""Transport checksum verification for the trackers (nf_checksum()).

The one's-complement sum of 16-bit words is congruent to the big-endian
integer of the bytes modulo 0xFFFF (65536 = 1 mod 65535), so a segment
(pseudo-header included) is intact when that integer is 0 mod 0xFFFF.  One
`int.from_bytes` and one modulo, both in C: no Python loop per word.
"""

from __future__ import annotations

from typing import TypeAlias

Buf: TypeAlias = bytes | bytearray | memoryview


def l4_checksum_ok(pkt: Buf, dataoff: int, l4len: int, proto: int, pseudo: bool = True) -> bool:
    """True when the TCP/UDP (pseudo-header) or ICMP (no pseudo-header) checksum verifies."""
    mv = memoryview(pkt)
    data = bytes(mv[dataoff:dataoff + l4len])
    if l4len & 1:
        data += b"\0"
    total = int.from_bytes(data, "big")
    if pseudo:
        # saddr, daddr (IPv4 header bytes 12..20), zero, protocol, length.
        total += int.from_bytes(mv[12:20], "big") + proto + l4len
    return total % 0xFFFF == 0
