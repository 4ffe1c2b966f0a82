"""IPv4 headers: parse at an offset, check as the kernel does, rewrite in place.

`parse_ipv4` makes the checks of ip_rcv_core() (net/ipv4/ip_input.c), in its
order, and those of ip_options_compile() (net/ipv4/ip_options.c) when the
header has options.  A packet that fails comes back as a `DropReason`, never
an exception.  Addresses are host-order ints, as everywhere in the core.

The rewrites work on a bytearray or a writable memoryview and fix the header
checksum incrementally (RFC 1624), as ip_decrease_ttl(), csum_replace4() and
ipv4_change_dsfield() do.  They do not re-check what they rewrite: parse first.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

from ipgate.packet.checksum import Buffer, csum_partial, csum_replace2, csum_replace4, ip_compute_csum
from ipgate.packet.drop import DropReason

WBuffer: TypeAlias = bytearray | memoryview

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

IP_CE = 0x8000  # the "evil" reserved bit (RFC 3514)
IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFSET = 0x1FFF

IPTOS_TOS_MASK = 0x1E
IPTOS_PREC_INTERNETCONTROL = 0xC0
INET_ECN_MASK = 3
IP_MAX_LEN = 65535

# Option types (RFC 791, RFC 1108, RFC 2113).  The high bit is the copied flag.
IPOPT_END = 0
IPOPT_NOOP = 1
IPOPT_RR = 7
IPOPT_TIMESTAMP = 68
IPOPT_SEC = 130
IPOPT_LSRR = 131
IPOPT_CIPSO = 134
IPOPT_SID = 136
IPOPT_SSRR = 137
IPOPT_RA = 148
IPOPT_COPY = 0x80
IPOPT_TS_TSONLY = 0
IPOPT_TS_TSANDADDR = 1
IPOPT_TS_PRESPEC = 3

_IPH = struct.Struct("!BBHHHBBHII")
_SUM5 = struct.Struct("!5I")
_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class IpOptions(NamedTuple):
    """What ip_options_compile() records (struct ip_options): offsets from the
    start of the IP header, 0 when the option is absent."""

    optlen: int
    srr: int = 0  # LSRR or SSRR
    is_strictroute: bool = False
    rr: int = 0
    rr_needaddr: bool = False  # RR has room for one more address
    ts: int = 0
    ts_needtime: bool = False
    ts_needaddr: bool = False
    router_alert: int = 0
    cipso: int = 0


class IPv4(NamedTuple):
    """A parsed IPv4 header: the fields in wire order, then where the header is.
    Bytes past off + tot_len are link-layer padding and belong to no layer
    (pskb_trim_rcsum())."""

    ver_ihl: int  # version << 4 | IHL, as on the wire
    tos: int
    tot_len: int
    id: int
    frag_off: int  # flags and offset as on the wire: IP_DF | IP_MF | offset in 8-byte units
    ttl: int
    protocol: int
    check: int
    saddr: int
    daddr: int
    off: int  # where the header starts in the buffer
    ihl: int  # header length in bytes (the IHL field times 4)
    opts: IpOptions | None  # None when ihl == 20

    @property
    def l4off(self) -> int:
        """Where the payload (the L4 header) starts in the buffer."""
        return self.off + self.ihl

    @property
    def end(self) -> int:
        return self.off + self.tot_len

    @property
    def frag_offset(self) -> int:
        """Fragment offset in bytes."""
        return (self.frag_off & IP_OFFSET) << 3

    @property
    def is_fragment(self) -> bool:
        return ip_is_fragment(self.frag_off)


_Wire = tuple[int, int, int, int, int, int, int, int, int, int]
_Tail = tuple[int, int, "IpOptions | None"]

if TYPE_CHECKING:
    def _new_ipv4(cls: type[IPv4], fields: tuple[int | IpOptions | None, ...]) -> IPv4: ...
else:
    _new_ipv4 = tuple.__new__  # skips NamedTuple.__new__'s Python frame on the hot path

_unpack_iph = _IPH.unpack_from
_TAIL0: _Tail = (0, 20, None)
# Enum attribute lookups are slow; the hot path returns these.
_IP_INHDR = DropReason.IP_INHDR
_IP_CSUM = DropReason.IP_CSUM
_PKT_TOO_SMALL = DropReason.PKT_TOO_SMALL


def ip_is_fragment(frag_off: int) -> bool:
    """ip_is_fragment(): MF set or a non-zero offset."""
    return (frag_off & (IP_MF | IP_OFFSET)) != 0


def parse_ipv4(buf: Buffer, off: int = 0) -> IPv4 | DropReason:
    """Parse and check the IPv4 header at `off` (ip_rcv_core() + ip_options_compile()).

    Drops: IP_INHDR (short, version, IHL, total length below IHL, bad options),
    IP_CSUM, PKT_TOO_SMALL (total length past the end of the buffer).
    """
    n = len(buf) - off
    if n < 20 or off < 0:
        return _IP_INHDR
    t: _Wire = _unpack_iph(buf, off)
    if t[0] == 0x45:
        # ip_fast_csum() == 0: the 16-bit words sum to 0 mod 0xFFFF.  The unpacked
        # fields already do, but for the two bytes that sit high in their word.
        if (sum(t) + 255 * t[5] + 17595) % 0xFFFF:  # 17595 == 255 * 0x45
            return _IP_CSUM
        tot_len = t[2]
        if tot_len > n:
            return _PKT_TOO_SMALL  # IPSTATS_MIB_INTRUNCATEDPKTS
        if tot_len < 20:
            return _IP_INHDR
        return _new_ipv4(IPv4, t + (_TAIL0 if off == 0 else (off, 20, None)))
    return _parse_ipv4_slow(buf, off, n, t)


def _parse_ipv4_slow(buf: Buffer, off: int, n: int, t: _Wire) -> IPv4 | DropReason:
    """parse_ipv4() for headers with options (or not IPv4 at all)."""
    vihl = t[0]
    ihl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or ihl < 20 or ihl > n:
        return DropReason.IP_INHDR
    if csum_partial(buf[off:off + ihl]) != 0xFFFF:
        return DropReason.IP_CSUM
    tot_len = t[2]
    if tot_len > n:
        return DropReason.PKT_TOO_SMALL
    if tot_len < ihl:
        return DropReason.IP_INHDR
    o = ip_options_compile(buf, off, ihl)
    if isinstance(o, int):
        return DropReason.IP_INHDR  # ip_rcv_options(); o is the ICMP parameter problem pointer
    return _new_ipv4(IPv4, t + (off, ihl, o))


def _cipso_v4_validate(buf: Buffer, p: int, optlen: int) -> int:
    """cipso_v4_validate() as built without NetLabel: the option's shape only.
    Returns the offset of the error within the option, 0 if none."""
    if optlen < 8:
        return 1
    if _U32.unpack_from(buf, p + 2)[0] == 0:
        return 2  # DOI 0 is reserved
    i = 6
    while i < optlen:
        if i + 1 == optlen:
            return i
        tag_len = buf[p + i + 1]
        if tag_len == 0 or tag_len > optlen - i:
            return i + 1
        i += tag_len
    return 0


def ip_options_compile(buf: Buffer, off: int, ihl: int) -> IpOptions | int:
    """Walk and check the options of the header at `off`, as ip_options_compile()
    does for a received packet, without its rewrites (recording our address in
    RR or TS is the forwarding path's business).

    Returns the options, or the offset from the header start of the first bad
    byte: the pointer an ICMP parameter problem carries (icmp_send(skb,
    ICMP_PARAMETERPROB, 0, htonl(pp_ptr << 24))).
    """
    optlen = ihl - 20
    srr = rr = ts = ra = cipso = 0
    strict = rr_need = ts_time = ts_addr = False
    p = off + 20
    left = optlen
    while left > 0:
        t = buf[p]
        if t == IPOPT_END:
            break  # the kernel also blanks what follows to END; nothing to check
        if t == IPOPT_NOOP:
            p += 1
            left -= 1
            continue
        if left < 2:
            return p - off  # no length byte: optlen > l
        ol = buf[p + 1]
        if ol < 2 or ol > left:
            return p - off
        ptr = buf[p + 2] if ol >= 3 else 0
        if t in (IPOPT_SSRR, IPOPT_LSRR):
            if ol < 3:
                return p + 1 - off
            if ptr < 4:
                return p + 2 - off
            if srr:
                return p - off  # one source route only (RFC 1812 5.2.4.1)
            strict = t == IPOPT_SSRR
            srr = p - off
        elif t == IPOPT_RR:
            if rr:
                return p - off
            if ol < 3:
                return p + 1 - off
            if ptr < 4:
                return p + 2 - off
            if ptr <= ol:
                if ptr + 3 > ol:
                    return p + 2 - off
                rr_need = True
            rr = p - off
        elif t == IPOPT_TIMESTAMP:
            if ts:
                return p - off
            if ol < 4:
                return p + 1 - off
            if ptr < 5:
                return p + 2 - off
            flg = buf[p + 3]
            if ptr <= ol:
                if ptr + 3 > ol:
                    return p + 2 - off
                kind = flg & 0x0F
                if kind == IPOPT_TS_TSONLY:
                    ts_time = True
                elif kind in (IPOPT_TS_TSANDADDR, IPOPT_TS_PRESPEC):
                    if ptr + 7 > ol:
                        return p + 2 - off
                    ts_time = True
                    ts_addr = kind == IPOPT_TS_TSANDADDR
            elif flg >> 4 == 15:
                return p + 3 - off  # the overflow counter would wrap
            ts = p - off
        elif t == IPOPT_RA:
            if ol < 4:
                return p + 1 - off
            if buf[p + 2] == 0 and buf[p + 3] == 0:
                ra = p - off
        elif t == IPOPT_CIPSO:
            if cipso:
                return p - off
            err = _cipso_v4_validate(buf, p, ol)
            if err:
                return p + err - off
            cipso = p - off
        # SEC, SID and unknown options are accepted on received packets
        p += ol
        left -= ol
    return IpOptions(optlen, srr, strict, rr, rr_need, ts, ts_time, ts_addr, ra, cipso)


def ip_options_fragment(hdr: WBuffer, off: int = 0) -> None:
    """ip_options_fragment(): blank (NOOP) the options without the copied flag,
    so the header can follow the first fragment; its length stays the same."""
    ihl = (hdr[off] & 0x0F) << 2
    p = off + 20
    left = ihl - 20
    while left > 0:
        t = hdr[p]
        if t == IPOPT_END:
            return
        if t == IPOPT_NOOP:
            p += 1
            left -= 1
            continue
        if left < 2:
            return
        ol = hdr[p + 1]
        if ol < 2 or ol > left:
            return
        if not t & IPOPT_COPY:
            hdr[p:p + ol] = bytes([IPOPT_NOOP]) * ol
        p += ol
        left -= ol


# -- in-place rewrites ---------------------------------------------------------

def ip_send_check(buf: WBuffer, off: int = 0) -> None:
    """ip_send_check(): recompute the header checksum from scratch."""
    ihl = (buf[off] & 0x0F) << 2
    _U16.pack_into(buf, off + 10, 0)
    _U16.pack_into(buf, off + 10, ip_compute_csum(buf[off:off + ihl]))


def ip_set_saddr(buf: WBuffer, off: int, new: int) -> int:
    """Replace the source address, fixing the header checksum (csum_replace4()).
    Returns the old address.  The L4 checksum is the caller's (see l4/rewrite)."""
    old = _U32.unpack_from(buf, off + 12)[0]
    _U16.pack_into(buf, off + 10, csum_replace4(_U16.unpack_from(buf, off + 10)[0], old, new))
    _U32.pack_into(buf, off + 12, new)
    return int(old)


def ip_set_daddr(buf: WBuffer, off: int, new: int) -> int:
    """As ip_set_saddr() for the destination address."""
    old = _U32.unpack_from(buf, off + 16)[0]
    _U16.pack_into(buf, off + 10, csum_replace4(_U16.unpack_from(buf, off + 10)[0], old, new))
    _U32.pack_into(buf, off + 16, new)
    return int(old)


def ip_decrease_ttl(buf: WBuffer, off: int = 0) -> int:
    """ip_decrease_ttl(): TTL minus one, checksum plus 0x0100 with end-around carry.
    Returns the new TTL.  The caller checks TTL > 1 first (ip_forward())."""
    check = _U16.unpack_from(buf, off + 10)[0] + 0x0100
    if check >= 0xFFFF:
        check += 1
    _U16.pack_into(buf, off + 10, check & 0xFFFF)
    ttl = (buf[off + 8] - 1) & 0xFF
    buf[off + 8] = ttl
    return ttl


def ip_set_ttl(buf: WBuffer, off: int, ttl: int) -> None:
    """Set the TTL (the TTL target, ipt_TTL.c): csum_replace2() on the TTL/protocol word."""
    old = buf[off + 8]
    proto = buf[off + 9]
    check = _U16.unpack_from(buf, off + 10)[0]
    _U16.pack_into(buf, off + 10, csum_replace2(check, old << 8 | proto, ttl << 8 | proto))
    buf[off + 8] = ttl


def ipv4_change_dsfield(buf: WBuffer, off: int, mask: int, value: int) -> None:
    """ipv4_change_dsfield(): tos = (tos & mask) | value, checksum fixed (RFC 1624)."""
    vihl = buf[off]
    old = buf[off + 1]
    new = (old & mask | value) & 0xFF
    check = _U16.unpack_from(buf, off + 10)[0]
    _U16.pack_into(buf, off + 10, csum_replace2(check, vihl << 8 | old, vihl << 8 | new))
    buf[off + 1] = new


def ip_set_frag_off(buf: WBuffer, off: int, frag_off: int) -> None:
    """Replace the flags/offset word, checksum fixed (csum_replace2())."""
    old = _U16.unpack_from(buf, off + 6)[0]
    check = _U16.unpack_from(buf, off + 10)[0]
    _U16.pack_into(buf, off + 10, csum_replace2(check, old, frag_off))
    _U16.pack_into(buf, off + 6, frag_off)


def ip_set_tot_len(buf: WBuffer, off: int, tot_len: int) -> None:
    """Replace the total length, checksum fixed (csum_replace2())."""
    old = _U16.unpack_from(buf, off + 2)[0]
    check = _U16.unpack_from(buf, off + 10)[0]
    _U16.pack_into(buf, off + 10, csum_replace2(check, old, tot_len))
    _U16.pack_into(buf, off + 2, tot_len)
