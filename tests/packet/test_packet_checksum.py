"""RFC 1071 sums and RFC 1624 incremental updates against full recomputation."""

from __future__ import annotations

import struct

import dpkt
from hypothesis import given, settings
from hypothesis import strategies as st

from ipgate.packet.checksum import (
    CSUM_MANGLED_0,
    csum_apply,
    csum_delta2,
    csum_delta4,
    csum_fold,
    csum_partial,
    csum_replace2,
    csum_replace4,
    csum_tcpudp_magic,
    ip_compute_csum,
    udp_csum_replace2,
    udp_csum_replace4,
)


def rfc1071_sum(data: bytes) -> int:
    """The RFC 1071 4.1 reference loop: 16-bit words, end-around carry."""
    if len(data) & 1:
        data += b"\0"
    s = 0
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


@given(st.binary(max_size=2000), st.integers(0, 0xFFFF))
def test_csum_partial_matches_rfc1071(data: bytes, initial: int) -> None:
    assert csum_partial(data) == rfc1071_sum(data)
    assert csum_partial(data, initial) == csum_fold(rfc1071_sum(data) + initial)
    assert csum_partial(memoryview(data)) == csum_partial(bytearray(data)) == rfc1071_sum(data)


@given(st.binary(max_size=2000))
def test_ip_compute_csum_matches_dpkt(data: bytes) -> None:
    assert ip_compute_csum(data) == dpkt.in_cksum(data)


def test_all_zero_and_negative_zero() -> None:
    assert csum_partial(b"") == 0
    assert csum_partial(bytes(40)) == 0  # only zeros sum to +0
    assert csum_partial(b"\xff\xff") == 0xFFFF
    assert csum_partial(b"\x80\x00\x7f\xff") == 0xFFFF  # -0, never +0
    assert ip_compute_csum(b"\x80\x00\x7f\xff") == 0


def test_rfc1624_section4_example() -> None:
    # m = 0x5555 -> 0x3285 with the other octets summing to 0xCD7A: eqn. 3 gives
    # 0x0000 as recomputation does, where eqn. 2 would give 0xFFFF.
    hc = ~csum_fold(0xCD7A + 0x5555) & 0xFFFF
    assert hc == 0xDD2F
    assert csum_replace2(hc, 0x5555, 0x3285) == 0x0000


@st.composite
def checksummed(draw: st.DrawFn, width: int) -> tuple[bytearray, int, int]:
    """Even-length data whose 16-bit word at `coff` holds its checksum, and the
    offset of an aligned `width`-byte field elsewhere."""
    nwords = draw(st.integers(2 + width // 2, 40))
    data = bytearray(draw(st.binary(min_size=2 * nwords, max_size=2 * nwords)))
    coff = 2 * draw(st.integers(0, nwords - 1))
    free = [2 * i for i in range(nwords - width // 2 + 1)
            if not (2 * i <= coff < 2 * i + width)]
    foff = draw(st.sampled_from(free))
    data[coff:coff + 2] = b"\0\0"
    struct.pack_into("!H", data, coff, ip_compute_csum(data))
    return data, coff, foff


@settings(max_examples=500)
@given(checksummed(2), st.integers(0, 0xFFFF))
def test_csum_replace2_equals_recompute(case: tuple[bytearray, int, int], new: int) -> None:
    data, coff, foff = case
    check = struct.unpack_from("!H", data, coff)[0]
    old = struct.unpack_from("!H", data, foff)[0]
    struct.pack_into("!H", data, foff, new)
    inc = csum_replace2(check, old, new)
    data[coff:coff + 2] = b"\0\0"
    full = ip_compute_csum(data)
    # The same but for data that is all zero, where the sum is +0, which
    # eqn. 3 (like the kernel's csum_replace*()) writes as -0.
    assert inc == full or (inc, full) == (0, 0xFFFF) and not any(data)


@settings(max_examples=500)
@given(checksummed(4), st.integers(0, 0xFFFFFFFF))
def test_csum_replace4_equals_recompute(case: tuple[bytearray, int, int], new: int) -> None:
    data, coff, foff = case
    check = struct.unpack_from("!H", data, coff)[0]
    old = struct.unpack_from("!I", data, foff)[0]
    struct.pack_into("!I", data, foff, new)
    inc = csum_replace4(check, old, new)
    data[coff:coff + 2] = b"\0\0"
    full = ip_compute_csum(data)
    # The same but for data that is all zero, where the sum is +0, which
    # eqn. 3 (like the kernel's csum_replace*()) writes as -0.
    assert inc == full or (inc, full) == (0, 0xFFFF) and not any(data)


@settings(max_examples=300)
@given(st.integers(0, 0xFFFE), st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF),
                                                  st.booleans()), min_size=1, max_size=6))
def test_deltas_add_up_to_successive_replaces(check: int, changes: list[tuple[int, int, bool]]) -> None:
    seq = check
    d = 0
    for old, new, wide in changes:
        if wide:
            seq = csum_replace4(seq, old, new)
            d += csum_delta4(old, new)
        else:
            seq = csum_replace2(seq, old & 0xFFFF, new & 0xFFFF)
            d += csum_delta2(old & 0xFFFF, new & 0xFFFF)
    once = csum_apply(check, csum_fold(d))
    # equal as ones' complement numbers; the representation of zero may differ
    assert once % 0xFFFF == seq % 0xFFFF


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))
def test_udp_zero_rule(check: int, old: int, new: int) -> None:
    assert udp_csum_replace4(0, old, new) == 0
    assert udp_csum_replace2(0, old & 0xFFFF, new & 0xFFFF) == 0
    if check:
        r = udp_csum_replace4(check, old, new)
        assert r != 0
        assert r == (csum_replace4(check, old, new) or CSUM_MANGLED_0)


@given(st.binary(max_size=300), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))
def test_pseudo_header(data: bytes, sa: int, da: int) -> None:
    pseudo = struct.pack("!IIBBH", sa, da, 0, 6, len(data))  # 12 bytes: odd data is padded the same
    assert csum_tcpudp_magic(sa, da, len(data), 6, csum_partial(data)) == dpkt.in_cksum(pseudo + data)
