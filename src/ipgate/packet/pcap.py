"""Capture files: read pcap and pcapng, write pcapng, find the IPv4 packet in a frame.

Formats: classic pcap as draft-ietf-opsawg-pcap describes it, pcapng as
draft-ietf-opsawg-pcapng does; link-layer headers as the tcpdump.org
link-layer header types registry defines them.  Standard library only, and
streaming: a file is read a megabyte at a time, never whole.

    CaptureReader  iterate the `Record`s of a pcap or pcapng file object
    ipv4_frames    each record's IPv4 packet, or why it has none
    PcapngWriter   one IDB per interface (LINKTYPE_RAW), an EPB per packet
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO, NamedTuple

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1  # EN10MB
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_LINUX_SLL2 = 276

ETH_P_IP = 0x0800
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8  # QinQ outer tag, stacked before 0x8100
AF_INET = 2  # the same on every OS that writes NULL/LOOP headers

# pcap: magic numbers as read in the file's own byte order (draft-ietf-opsawg-pcap §4).
_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
# pcapng: block types (draft-ietf-opsawg-pcapng §4, Appendix A for the obsolete Packet Block).
_SHB = 0x0A0D0D0A  # a palindrome: the same bytes in either order
_IDB = 1
_OPB = 2
_SPB = 3
_EPB = 6
_BOM = 0x1A2B3C4D
_OPT_ENDOFOPT = 0
_OPT_SHB_USERAPPL = 4
_OPT_IF_NAME = 2
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14
_SHB_BYTES = _SHB.to_bytes(4, "big")
_STRUCTS = {e: (struct.Struct(e + "II").unpack_from, struct.Struct(e + "4I").unpack_from,
                struct.Struct(e + "I").unpack_from) for e in "<>"}
_MIN_LENGTH = {_SHB: 28, _IDB: 20, _OPB: 32, _SPB: 16, _EPB: 32}  # the fixed fields of each block

# Bigger is corruption, not a packet: 256 KiB is libpcap's MAXIMUM_SNAPLEN, and
# no block we read legitimately comes near 64 MiB.
_MAX_CAPLEN = 262144
_MAX_BLOCK = 1 << 26
_CHUNK = 1 << 20  # a corrupt length must not make us allocate it before reading


class PcapError(Exception):
    """A capture file that is not one, is corrupt, or ends early; `offset` is where."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset


class Record(NamedTuple):
    timestamp: float  # seconds since the epoch
    ifname: str | None  # pcapng if_name; None for pcap and unnamed interfaces
    linktype: int
    data: bytes


class Frame(NamedTuple):
    timestamp: float
    ifname: str | None
    ipv4: bytes | None  # the IPv4 packet (link header removed), or None ...
    why_not: str  # ... and why; "" when ipv4 is not None


class _Iface(NamedTuple):
    name: str | None
    linktype: int
    snaplen: int
    units: int  # timestamp ticks per second (if_tsresol)
    tsoffset: int  # seconds added to every timestamp (if_tsoffset)


class CaptureReader:
    """The records of a pcap or pcapng file object, read as they are iterated.

    The file header (pcapng: the first Section Header Block) is read by the
    constructor, so a file that is no capture at all fails there.  A truncated
    or corrupt record raises `PcapError` when it is reached, after every good
    record before it was yielded.  `offset` is how many bytes have been consumed
    and `size` the file's size when it can be known (for a progress bar).
    """

    def __init__(self, f: BinaryIO, size: int | None = None) -> None:
        self._f = f
        self.size = size if size is not None else _file_size(f)
        # Reading a chunk at a time and parsing in place is several times faster
        # than a read() per record; _buf[_pos:] is what has not been consumed.
        self._buf = b""
        self._pos = 0
        self._base = 0  # the file offset of _buf[0]
        self._endian = "<"
        have = self._avail(4)
        if have < 4:
            raise PcapError("not a capture file: too short" if have else "empty file", 0)
        head = self._buf[:4]
        if head == _SHB_BYTES:
            self.format = "pcapng"
            self._section()
            return
        for endian in ("<", ">"):
            (magic,) = struct.unpack(endian + "I", head)
            if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
                self.format = "pcap"
                self._endian = endian
                self._units = 10**6 if magic == _PCAP_MAGIC_US else 10**9
                self._pcap_header()
                return
        hint = ": gzip-compressed, decompress it first" if head[:2] == b"\x1f\x8b" else ""
        raise PcapError(f"not a pcap or pcapng file (magic {head.hex()}){hint}", 0)

    @property
    def offset(self) -> int:
        return self._base + self._pos

    def __iter__(self) -> Iterator[Record]:
        return self._pcap() if self.format == "pcap" else self._pcapng()

    # -- buffering -------------------------------------------------------------------

    def _avail(self, n: int) -> int:
        """Buffer n bytes from the current position if the file has them; return how many are."""
        have = len(self._buf) - self._pos
        if have >= n:
            return have
        parts = [self._buf[self._pos:]]
        self._base += self._pos
        while have < n:
            # Chunks, not read(n): a corrupt length must not make us allocate it.
            chunk = self._f.read(_CHUNK)
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        self._buf = b"".join(parts)
        self._pos = 0
        return have

    def _need(self, n: int, what: str) -> None:
        """Buffer the n bytes of the record that starts here, or say the file is truncated."""
        have = self._avail(n)
        if have < n:
            raise PcapError(f"truncated file: {what} needs {n} bytes, {have} left", self.offset)

    # -- classic pcap (draft-ietf-opsawg-pcap) -------------------------------------------

    def _pcap_header(self) -> None:
        self._need(24, "the file header")
        major, _minor, _r1, _r2, snaplen, lt = struct.unpack_from(self._endian + "HHIIII", self._buf, 4)
        if major != 2:
            raise PcapError(f"unsupported pcap version {major}", 4)
        self._pos = 24
        self._snaplen = snaplen
        self._linktype = lt & 0xFFFF  # §4: the upper bits hold the FCS length, not the type

    def _pcap(self) -> Iterator[Record]:
        unpack_hdr = struct.Struct(self._endian + "IIII").unpack_from
        limit = max(self._snaplen, _MAX_CAPLEN)
        units, linktype = self._units, self._linktype
        while True:
            if len(self._buf) - self._pos < 16:
                if not self._avail(16):
                    return
                self._need(16, "a packet record header")
            sec, frac, caplen, _origlen = unpack_hdr(self._buf, self._pos)
            if caplen > limit:
                raise PcapError(f"corrupt packet record: captured length {caplen}", self.offset)
            n = 16 + caplen
            if len(self._buf) - self._pos < n:
                self._need(n, "the packet record")
            pos = self._pos
            self._pos = pos + n
            yield Record(sec + frac / units, None, linktype, self._buf[pos + 16:pos + n])

    # -- pcapng (draft-ietf-opsawg-pcapng) -----------------------------------------------

    def _section(self) -> None:
        """The Section Header Block here (§4.1): sets the byte order for the blocks after it."""
        start = self.offset
        self._need(12, "the section header block")
        # The byte-order magic decides how to read even this block's length.
        bom = self._buf[self._pos + 8:self._pos + 12]
        if bom == _BOM.to_bytes(4, "little"):
            self._endian = "<"
        elif bom == _BOM.to_bytes(4, "big"):
            self._endian = ">"
        else:
            raise PcapError(f"corrupt section header block: byte-order magic {bom.hex()}", start)
        pos, _total = self._block(28)
        major, minor = struct.unpack_from(self._endian + "HH", self._buf, pos + 12)
        if major != 1:
            raise PcapError(f"unsupported pcapng version {major}.{minor}", start)

    def _block(self, minimum: int) -> tuple[int, int]:
        """Check and consume the block here (§3.1); return where it starts in _buf and its length."""
        start = self.offset
        if len(self._buf) - self._pos < 8:
            self._need(8, "a block header")
        (total,) = struct.unpack_from(self._endian + "I", self._buf, self._pos + 4)
        if total < minimum or total % 4 or total > _MAX_BLOCK:
            raise PcapError(f"corrupt block: total length {total}", start)
        if len(self._buf) - self._pos < total:
            self._need(total, "the block")
        pos = self._pos
        (trailer,) = struct.unpack_from(self._endian + "I", self._buf, pos + total - 4)
        if trailer != total:
            raise PcapError(f"corrupt block: total length {total} at its start, {trailer} at its end", start)
        self._pos = pos + total
        return pos, total

    def _pcapng(self) -> Iterator[Record]:
        ifaces: list[_Iface] = []
        last_ts = 0.0  # SPBs carry no timestamp: they get the previous packet's
        endian = ""
        while True:
            if endian != self._endian:
                endian = self._endian
                type_len, epb_head, u32 = _STRUCTS[endian]
            # The fast path: a whole, well-formed EPB in the buffer.  Anything else, errors
            # included, takes the general path below, which checks and explains.
            buf, pos = self._buf, self._pos
            if len(buf) - pos >= 32:
                btype, total = type_len(buf, pos)
                if btype == _EPB and 32 <= total <= len(buf) - pos and not total & 3:
                    iface_id, hi, lo, caplen = epb_head(buf, pos + 8)
                    if 32 + caplen <= total and iface_id < len(ifaces) and u32(buf, pos + total - 4)[0] == total:
                        self._pos = pos + total
                        iface = ifaces[iface_id]
                        whole, frac = divmod(hi << 32 | lo, iface.units)
                        last_ts = iface.tsoffset + whole + frac / iface.units
                        yield Record(last_ts, iface.name, iface.linktype, buf[pos + 28:pos + 28 + caplen])
                        continue
            start = self.offset
            if len(self._buf) - self._pos < 8:
                if not self._avail(8):
                    return
                self._need(8, "a block header")
            if self._buf[self._pos:self._pos + 4] == _SHB_BYTES:
                self._section()
                ifaces = []  # interface ids are per section
                continue
            (btype,) = struct.unpack_from(endian + "I", self._buf, self._pos)
            pos, total = self._block(_MIN_LENGTH.get(btype, 12))  # §3.1: any block can be skipped
            buf = self._buf
            if btype == _EPB:
                iface_id, hi, lo, caplen = struct.unpack_from(endian + "4I", buf, pos + 8)
                if 32 + caplen > total:
                    raise PcapError(f"corrupt enhanced packet block: captured length {caplen}", start)
                iface = _iface(ifaces, iface_id, start)
                last_ts = _ts(iface, hi << 32 | lo)
                yield Record(last_ts, iface.name, iface.linktype, buf[pos + 28:pos + 28 + caplen])
            elif btype == _IDB:
                ifaces.append(_idb(buf[pos + 8:pos + total - 4], endian, start))
            elif btype == _SPB:
                (origlen,) = struct.unpack_from(endian + "I", buf, pos + 8)
                iface = _iface(ifaces, 0, start)  # §4.4: an SPB belongs to the section's first interface
                caplen = min(origlen, total - 16, iface.snaplen or origlen)
                yield Record(last_ts, iface.name, iface.linktype, buf[pos + 12:pos + 12 + caplen])
            elif btype == _OPB:
                iface_id, _drops, hi, lo, caplen = struct.unpack_from(endian + "HH3I", buf, pos + 8)
                if 32 + caplen > total:
                    raise PcapError(f"corrupt packet block: captured length {caplen}", start)
                iface = _iface(ifaces, iface_id, start)
                last_ts = _ts(iface, hi << 32 | lo)
                yield Record(last_ts, iface.name, iface.linktype, buf[pos + 28:pos + 28 + caplen])


def _file_size(f: BinaryIO) -> int | None:
    """Where a seekable stream ends (a pipe has no size)."""
    try:
        if not f.seekable():
            return None
        here = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(here)
        return end
    except (OSError, ValueError):
        return None


def _options(body: bytes, off: int, endian: str, start: int) -> Iterator[tuple[int, bytes]]:
    """(code, value) of each option from `off` to the end of the block body (§3.5)."""
    while off + 4 <= len(body):
        code, length = struct.unpack_from(endian + "HH", body, off)
        if code == _OPT_ENDOFOPT:
            return
        off += 4
        if off + length > len(body):
            raise PcapError(f"corrupt option {code}: length {length}", start)
        yield code, body[off:off + length]
        off += (length + 3) & ~3


def _idb(body: bytes, endian: str, start: int) -> _Iface:
    """An Interface Description Block (§4.2): link type, snap length, if_name, if_tsresol, if_tsoffset."""
    linktype, _reserved, snaplen = struct.unpack_from(endian + "HHI", body)
    name: str | None = None
    units = 10**6  # if_tsresol's default
    tsoffset = 0
    for code, value in _options(body, 8, endian, start):
        if code == _OPT_IF_NAME:
            name = value.decode("utf-8", "replace")
        elif code == _OPT_IF_TSRESOL and value:
            # The high bit chooses a power of 2, otherwise of 10 (§4.2, if_tsresol).
            r = value[0]
            units = 2 ** (r & 0x7F) if r & 0x80 else 10**r
        elif code == _OPT_IF_TSOFFSET and len(value) == 8:
            (tsoffset,) = struct.unpack(endian + "q", value)
    return _Iface(name, linktype, snaplen, units, tsoffset)


def _iface(ifaces: list[_Iface], iface_id: int, start: int) -> _Iface:
    if iface_id >= len(ifaces):
        raise PcapError(f"corrupt packet block: interface {iface_id} was not described", start)
    return ifaces[iface_id]


def _ts(iface: _Iface, ticks: int) -> float:
    whole, frac = divmod(ticks, iface.units)  # before the float: keeps what precision a float has
    return iface.tsoffset + whole + frac / iface.units


# -- the IPv4 packet inside a frame -----------------------------------------------------

def extract_ipv4(linktype: int, data: bytes) -> tuple[bytes | None, str]:
    """The IPv4 packet in a frame of `linktype` and "", or None and why there is none."""
    if linktype == LINKTYPE_ETHERNET:
        return _ethernet(data)
    if linktype == LINKTYPE_IPV4:
        return data, ""  # IPv4 by definition; a bad header is the engine's to drop
    if linktype == LINKTYPE_RAW:
        if not data:
            return None, "RAW: empty frame"
        version = data[0] >> 4
        if version != 4:
            return None, "RAW: IPv6" if version == 6 else f"RAW: IP version {version}"
        return data, ""
    if linktype == LINKTYPE_LINUX_SLL:
        # 16-byte header; the protocol (an Ethertype for Ethernet devices) is last.
        return _by_protocol("LINUX_SLL", data, 16, 14)
    if linktype == LINKTYPE_LINUX_SLL2:
        # 20-byte header; the protocol comes first.
        return _by_protocol("LINUX_SLL2", data, 20, 0)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        name = "NULL" if linktype == LINKTYPE_NULL else "LOOP"
        if len(data) < 4:
            return None, f"{name}: frame too short"
        # NULL's family is in the capturing host's byte order, LOOP's in network
        # order; AF_INET is 2 everywhere, so either order can be accepted.
        if AF_INET not in (int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big")):
            return None, f"{name}: address family {int.from_bytes(data[:4], 'little')}"
        return data[4:], ""
    return None, f"link type {linktype} not supported"


def _ethernet(data: bytes) -> tuple[bytes | None, str]:
    off = 12
    ethertype = 0
    tagged = ""
    while True:
        if len(data) < off + 2:
            return None, "EN10MB: frame too short"
        ethertype = int.from_bytes(data[off:off + 2], "big")
        if ethertype not in (ETH_P_8021Q, ETH_P_8021AD):
            break
        tagged = "802.1Q "
        off += 4  # TCI, then the inner Ethertype
    if ethertype == ETH_P_IP:
        return data[off + 2:], ""
    if ethertype < 0x600:
        return None, f"EN10MB: {tagged}802.3 length field (not Ethernet II)"
    return None, f"EN10MB: {tagged}ethertype 0x{ethertype:04x}"


def _by_protocol(name: str, data: bytes, hlen: int, at: int) -> tuple[bytes | None, str]:
    if len(data) < hlen:
        return None, f"{name}: frame too short"
    proto = int.from_bytes(data[at:at + 2], "big")
    if proto != ETH_P_IP:
        return None, f"{name}: protocol 0x{proto:04x}"
    return data[hlen:], ""


def ipv4_frames(records: Iterable[Record]) -> Iterator[Frame]:
    """Each record as (timestamp, ifname, IPv4 packet or None, why not)."""
    for ts, ifname, linktype, data in records:
        if linktype == LINKTYPE_ETHERNET and data[12:14] == b"\x08\x00":  # the common case, inline
            yield Frame(ts, ifname, data[14:], "")
        else:
            ip, why = extract_ipv4(linktype, data)
            yield Frame(ts, ifname, ip, why)


# -- writing pcapng -----------------------------------------------------------------------

class PcapngWriter:
    """A pcapng stream of raw IPv4 packets: an SHB, then an IDB the first time each
    interface is written to (LINKTYPE_RAW, if_name, if_tsresol), and an EPB per packet.

    Little-endian, one section, section length -1 ("not specified", §4.1) since it streams.
    """

    def __init__(self, f: BinaryIO, *, tsresol: int = 6) -> None:
        if tsresol not in (6, 9):
            raise ValueError(f"tsresol must be 6 (microseconds) or 9 (nanoseconds), not {tsresol}")
        self._f = f
        self._units = 10**tsresol
        self._tsresol = tsresol
        self.interfaces: dict[str, int] = {}
        body = struct.pack("<IHHq", _BOM, 1, 0, -1) + _option(_OPT_SHB_USERAPPL, b"ipgate") + _END
        self._write_block(_SHB, body)

    def write(self, ifname: str, timestamp: float, data: bytes) -> None:
        iface = self.interfaces.get(ifname)
        if iface is None:
            iface = self.interfaces[ifname] = len(self.interfaces)
            # SnapLen 0: no limit (§4.2).
            body = (struct.pack("<HHI", LINKTYPE_RAW, 0, 0) + _option(_OPT_IF_NAME, ifname.encode())
                    + _option(_OPT_IF_TSRESOL, bytes([self._tsresol])) + _END)
            self._write_block(_IDB, body)
        whole = int(timestamp // 1)
        ticks = max(0, whole * self._units + round((timestamp - whole) * self._units))
        n = len(data)
        self._write_block(_EPB, struct.pack("<5I", iface, ticks >> 32, ticks & 0xFFFFFFFF, n, n) + _pad(data))

    def _write_block(self, btype: int, body: bytes) -> None:
        total = len(body) + 12
        self._f.write(struct.pack("<II", btype, total) + body + struct.pack("<I", total))


_END = struct.pack("<HH", _OPT_ENDOFOPT, 0)


def _pad(value: bytes) -> bytes:
    return value + b"\0" * (-len(value) % 4)  # §3.1: bodies and options are 32-bit aligned


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)
