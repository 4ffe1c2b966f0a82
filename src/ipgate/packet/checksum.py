"""The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

Sums are plain ints.  A *sum* is the 16-bit ones' complement sum of some
data (what the kernel's csum_fold() leaves before the final inversion); a
*check* is the field as it sits in a header, the complement of a sum.

Full sums use one fact instead of a Python loop over 16-bit words: since
2**16 == 1 (mod 0xFFFF), a big-endian byte string read as one integer is
congruent to the sum of its 16-bit words modulo 0xFFFF, so
``int.from_bytes(data) % 0xFFFF`` is the ones' complement sum (with 0xFFFF
written as 0, which only an all-zero input really sums to).

Incremental updates follow RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), which is
what the kernel's csum_replace2()/csum_replace4() compute.
"""

from __future__ import annotations

from typing import TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview

CSUM_MANGLED_0 = 0xFFFF  # a UDP checksum that computes to 0 is sent as 0xFFFF (RFC 768)


def csum_fold(s: int) -> int:
    """Fold a wide non-negative sum to 16 bits with end-around carry (not inverted)."""
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def csum_partial(data: Buffer, initial: int = 0) -> int:
    """Ones' complement sum of `data` (odd length: padded with a zero byte), plus `initial`.

    Returns a 16-bit sum, 0 only when everything summed is zero (RFC 1071 4.1).
    """
    n = len(data)
    if not n:
        return csum_fold(initial)
    v = int.from_bytes(data, "big")
    if n & 1:
        v <<= 8
    r = v % 0xFFFF
    if r == 0 and v:
        r = 0xFFFF  # a non-zero ones' complement sum is never +0
    return csum_fold(r + initial)


def ip_compute_csum(data: Buffer) -> int:
    """The checksum field value for `data` (RFC 1071): ~sum."""
    return ~csum_partial(data) & 0xFFFF


def csum_tcpudp_nofold(saddr: int, daddr: int, length: int, proto: int) -> int:
    """The pseudo-header's contribution (RFC 793 / RFC 768), unfolded."""
    return (saddr >> 16) + (saddr & 0xFFFF) + (daddr >> 16) + (daddr & 0xFFFF) + proto + length


def csum_tcpudp_magic(saddr: int, daddr: int, length: int, proto: int, data_sum: int) -> int:
    """csum_tcpudp_magic(): the TCP/UDP check for a segment whose own sum is `data_sum`."""
    return ~csum_fold(csum_tcpudp_nofold(saddr, daddr, length, proto) + data_sum) & 0xFFFF


# -- RFC 1624 incremental update ---------------------------------------------

def csum_replace2(check: int, old: int, new: int) -> int:
    """csum_replace2(): a 16-bit field changes from `old` to `new` (RFC 1624 eqn. 3)."""
    s = (~check & 0xFFFF) + (~old & 0xFFFF) + new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def csum_replace4(check: int, old: int, new: int) -> int:
    """csum_replace4(): a 32-bit field (an address) changes from `old` to `new`."""
    s = (~check & 0xFFFF) + (~old >> 16 & 0xFFFF) + (~old & 0xFFFF) + (new >> 16) + (new & 0xFFFF)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


# The L4 checksum covers the pseudo-header, so an address change is the same
# csum_replace4() on it (inet_proto_csum_replace4(..., pseudohdr=true) when the
# checksum is complete, as it always is here: no CHECKSUM_PARTIAL offload).
inet_proto_csum_replace4 = csum_replace4
inet_proto_csum_replace2 = csum_replace2


def udp_csum_replace4(check: int, old: int, new: int) -> int:
    """UDP's rule on top of csum_replace4(): 0 means "no checksum" and stays 0;
    a result of 0 is sent as CSUM_MANGLED_0 (udp_manip_pkt() in nf_nat_proto.c)."""
    if not check:
        return 0
    return csum_replace4(check, old, new) or CSUM_MANGLED_0


def udp_csum_replace2(check: int, old: int, new: int) -> int:
    """As udp_csum_replace4() for a 16-bit field (a port)."""
    if not check:
        return 0
    return csum_replace2(check, old, new) or CSUM_MANGLED_0


def csum_delta4(old: int, new: int) -> int:
    """The ~m + m' part of RFC 1624 eqn. 3 for a 32-bit field, folded, to precompute.

    Deltas add (csum_fold(d1 + d2)); csum_apply(check, d) then equals the
    successive csum_replace*() calls they stand for.
    """
    return csum_fold((~old >> 16 & 0xFFFF) + (~old & 0xFFFF) + (new >> 16) + (new & 0xFFFF))


def csum_delta2(old: int, new: int) -> int:
    """As csum_delta4() for a 16-bit field."""
    return csum_fold((~old & 0xFFFF) + new)


def csum_apply(check: int, delta: int) -> int:
    """HC' = ~(~HC + delta) (RFC 1624 eqn. 3 with a precomputed delta)."""
    s = (~check & 0xFFFF) + delta
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def l4_checksum_ok(pkt: Buffer, dataoff: int, l4len: int, proto: int, pseudo: bool = True) -> bool:
    """nf_checksum(): True when the TCP/UDP (with pseudo-header) or ICMP checksum verifies.

    The one's-complement sum of 16-bit words is congruent to the big-endian
    integer of the bytes modulo 0xFFFF (65536 = 1 mod 65535), so a segment is
    intact when that integer is 0 mod 0xFFFF: one int.from_bytes, one modulo.
    """
    mv = memoryview(pkt)
    data = bytes(mv[dataoff:dataoff + l4len])
    if l4len & 1:
        data += b"\0"
    total = int.from_bytes(data, "big")
    if pseudo:
        # saddr, daddr (IPv4 header bytes 12..20), zero, protocol, length.
        total += int.from_bytes(mv[12:20], "big") + proto + l4len
    return total % 0xFFFF == 0
