"""Connection state that survives a restart: the state file.

What conntrackd's external cache does for a kernel that reboots (its
`commit` puts the cached entries back into the new table) and what IP
Filter's ipfs(8) does around a reboot (`ipfs -W` writes the NAT sessions,
`ipfs -R` reads them back), ipgate does around its own restart: on a clean
stop (SIGTERM, SIGINT) the gateway writes every confirmed conntrack entry,
the expectations hanging off them and every IP Filter NAT session to one
file; on start, before the first packet, it reads them back.

Per entry: both tuples, status, mark, the timeout as time *remaining* at the
save, the protocol tracker's private state (TCP's packed ip_ct_tcp bytes
verbatim; UDP's stream timestamp, also made relative), accounting, helper
name and helper data (FTP's seq_aft_nl), the master of an expected
connection, the masquerade device (by name: ifindexes are the
configuration's), secmark/zone/labels, the seqadj offsets of a NAT helper,
its pending expectations, and the nf_nat_bysource chains in their order.
On restore every time is made relative to the new `time.monotonic()`, less
the wall-clock time the gateway was down (the entries aged meanwhile, as in
the kernel; a clock that went back counts as no downtime).  An entry whose
time ran out during the downtime, or masqueraded by a device or an address
the new configuration lacks (masq_device_event/masq_inet_event), is not
restored.  Deliberately not saved: the fragment queues, the neighbour cache,
the statistics counters, the fast path's decisions (all rebuilt by traffic).

Format, version 1: a compact binary file, network byte order.

    header  magic b"\\x89IPGATE\\n", version u16, flags u16 (0), wall-clock time of the save f64,
            body length u64, CRC-32 of the body u32                                   (32 bytes)
    body    sections, each a 4-byte tag, a u64 length and the payload:
            CONN  the conntrack table (layout at `encode_conntrack`)
            IPNT  the IP Filter NAT sessions (nat/ipnat/persist.py)

Why binary rather than JSON lines: the table is sized for a million entries
and the save happens while the service manager's stop timeout runs.  Keys
are 104-bit ints and TCP state is 56 raw bytes; in binary a TCP entry with
accounting takes about 120 bytes, packed by one struct call per part, where
JSON would spell the same as decimal and hex text two to three times as
large and slower to produce and parse.  (Measured here: 200,000 TCP entries
save in 0.9 s and load in 1.6 s.)  The header makes the file self-checking: a
wrong magic or version is "incompatible", a length or CRC-32 mismatch is
"corrupt", and either way nothing is loaded (the whole body is decoded and
validated before the live tables are touched: never a half load).  ipfs
too writes the kernel's binary structures (ipnat_save_t), not text.

The file is written atomically: a temporary file in the same directory,
written, fsync()ed, renamed over the old one, then the directory fsync()ed:
a crash leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import os
import random
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipgate.conntrack.conn import IP_CT_NEW, IPS_CONFIRMED, IPS_DYING, Conn, ConnExt
from ipgate.conntrack.expect import Expectation
from ipgate.conntrack.helpers.ftp import NUM_SEQ_TO_REMEMBER, FtpMaster
from ipgate.conntrack.table import ConntrackTable
from ipgate.conntrack.tcp import PACKED_SIZE
from ipgate.conntrack.tuple import IPPROTO_GRE, IPPROTO_TCP, IPPROTO_UDP, Tuple
from ipgate.nat.helper import follow_master, nf_nat_follow_master
from ipgate.nat.ipnat.core import IpnatTable
from ipgate.nat.ipnat.persist import StagedIpnat, decode_ipnat, encode_ipnat
from ipgate.nat.seqadj import SeqAdj

if TYPE_CHECKING:
    from ipgate.stack import Stack

MAGIC = b"\x89IPGATE\n"  # the high-bit byte and the newline catch 7-bit and text-mode mangling (as PNG's)
VERSION = 1
_HEAD = struct.Struct("!8sHHdQI")
SECTION_CONNTRACK = b"CONN"
SECTION_IPNAT = b"IPNT"
_SECT = struct.Struct("!4sQ")


class StateError(Exception):
    """The state file is corrupt or incompatible: nothing was loaded."""


# -- the file -------------------------------------------------------------------------------------------
def pack_file(sections: Iterable[tuple[bytes, bytes]], wall: float) -> bytes:
    """Header and body of a state file holding `sections` (tag, payload)."""
    body = b"".join(_SECT.pack(tag, len(payload)) + payload for tag, payload in sections)
    return _HEAD.pack(MAGIC, VERSION, 0, wall, len(body), zlib.crc32(body)) + body


def unpack_file(data: bytes) -> tuple[float, dict[bytes, memoryview]]:
    """(wall-clock time of the save, tag -> payload); StateError when corrupt or incompatible."""
    if len(data) < _HEAD.size:
        raise StateError("corrupt: shorter than its header")
    magic, version, flags, wall, length, crc = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise StateError("not an ipgate state file")
    if version != VERSION or flags:
        raise StateError(f"incompatible: format version {version} (this ipgate reads version {VERSION})")
    body = memoryview(data)[_HEAD.size:]
    if len(body) != length:
        raise StateError(f"corrupt: {len(body)} bytes of body, the header says {length}")
    if zlib.crc32(body) != crc:
        raise StateError("corrupt: CRC-32 mismatch")
    if not math.isfinite(wall):
        raise StateError("corrupt: bad save time")
    sections: dict[bytes, memoryview] = {}
    pos = 0
    while pos < len(body):
        if pos + _SECT.size > len(body):
            raise StateError("corrupt: truncated section header")
        tag, n = _SECT.unpack_from(body, pos)
        pos += _SECT.size
        if n > len(body) - pos:
            raise StateError("corrupt: section longer than the file")
        if tag not in (SECTION_CONNTRACK, SECTION_IPNAT) or tag in sections:
            raise StateError(f"incompatible: unexpected section {tag!r}")
        sections[tag] = body[pos:pos + n]
        pos += n
    return wall, sections


def write_atomic(path: str, data: bytes) -> None:
    """Replace `path` by `data`: temporary file (mode 0600), fsync, rename, fsync of the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# -- a small reader over a section ------------------------------------------------------------------
class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview | bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, st: struct.Struct) -> tuple[Any, ...]:
        """The struct's fields (its format fixes their types: ints for the integer codes, floats for d)."""
        v = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return v

    def ints(self, st: struct.Struct) -> tuple[int, ...]:
        return self.take(st)

    def u32(self) -> int:
        v: int = _U32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return v

    def f64(self) -> float:
        v: float = _F64.unpack_from(self.buf, self.pos)[0]
        self.pos += 8
        if not math.isfinite(v):
            raise ValueError("bad time")
        return v

    def key(self) -> int:
        hi, ports, proto = self.ints(_KEY)
        return (hi << 40) | (ports << 8) | proto

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ValueError("truncated")
        b = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return b

    def str8(self) -> str:
        return self.raw(self.raw(1)[0]).decode("ascii")

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise ValueError(f"{len(self.buf) - self.pos} bytes left over")


def _str8(s: str) -> bytes:
    b = s.encode("ascii")
    if len(b) > 255:
        raise ValueError(f"name too long: {s!r}")
    return bytes((len(b),)) + b


# -- the conntrack section --------------------------------------------------------------------------
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_U8 = struct.Struct("!B")
_F64 = struct.Struct("!d")
_F64X2 = struct.Struct("!dd")
_KEY = struct.Struct("!QIB")  # a 104-bit key: src<<32|dst, sport<<16|dport, proto
_ENTRY = struct.Struct("!QIBQIBIIdBB")  # okey, rkey, status, mark, remaining, proto kind, parts
_ACCT = struct.Struct("!QQQQ")
_MARKS = struct.Struct("!IH16s")  # secmark, zone, labels
_SECMARK_ZONE = struct.Struct("!IH")
_FTP = struct.Struct(f"!{2 * NUM_SEQ_TO_REMEMBER}I2B")
_SEQADJ = struct.Struct("!Iqq")
_EXPECT = struct.Struct("!QIBIHdIIIHBB")  # tuple, mask_src, mask_sport, remaining, flags, cls, saved_addr,
#                                           saved_proto, dir, expectfn
_MASKS = struct.Struct("!IH")
_EXPECT_REST = struct.Struct("!IIIHBB")

PROTO_NONE, PROTO_TCP, PROTO_UDP_STREAM, PROTO_GRE = 0, 1, 2, 3
PART_ACCT, PART_EXT = 1, 2
EXT_HELPER, EXT_MASTER, EXT_MASQ, EXT_MARKS, EXT_FTP, EXT_SEQADJ, EXT_EXPECT = 1, 2, 4, 8, 16, 32, 64
EXPECTFN_NONE, EXPECTFN_FOLLOW_MASTER = 0, 1
_LABELS = (1 << 128) - 1


def _key(k: int) -> tuple[int, int, int]:
    return k >> 40, (k >> 8) & 0xFFFFFFFF, k & 0xFF


def _expectfn_kind(exp: Expectation) -> int | None:
    """The expectfn by name: NAT's nf_nat_follow_master (nat/helper.py) is the only one; None: unknown."""
    fn = exp.expectfn
    if fn is None:
        return EXPECTFN_NONE
    if isinstance(fn, functools.partial) and fn.func is nf_nat_follow_master:
        return EXPECTFN_FOLLOW_MASTER
    return None


def encode_conntrack(table: ConntrackTable, now: float, ifname: Callable[[int], str | None]) -> tuple[bytes, int, int]:
    """The CONN section: (payload, entries, expectations).

        entries u32, then per entry (walk order, oldest first):
          okey, rkey 13 bytes each; status u32; mark u32; remaining timeout f64;
          proto kind u8: 0 none, 1 TCP (u8 length + ip_ct_tcp bytes), 2 UDP stream_ts from the save f64,
                         3 GRE timeouts f64 f64;
          parts u8: 1 acct (4 x u64), 2 ext, then ext parts u8 and each part present:
            1 helper (u8 length + name), 2 master (u32 entry index), 4 masquerade device (u8 length + name),
            8 secmark u32, zone u16, labels 16 bytes, 16 FTP seq_aft_nl (u32 x 4, u8 x 2),
            32 seqadj (per direction: correction_pos u32, offset_before i64, offset_after i64),
            64 expectations (u16 count, then each: tuple 13 bytes, mask_src u32, mask_sport u16,
               remaining f64, flags u32, class u32, saved_addr u32, saved_proto u16, dir u8, expectfn u8,
               u8 length + helper name)
        chains u32, then per nf_nat_bysource chain: length u32, entry indices u32 (newest first)
    """
    conns = list(table.entries(now))
    index = {id(ct): i for i, ct in enumerate(conns)}
    out: list[bytes] = [_U32.pack(len(conns))]
    nexp = 0
    for ct in conns:
        proto = ct.proto
        pn = ct.okey & 0xFF
        if pn == IPPROTO_TCP and isinstance(proto, bytes) and len(proto) == PACKED_SIZE:
            kind, pbytes = PROTO_TCP, _U8.pack(len(proto)) + proto
        elif pn == IPPROTO_UDP and isinstance(proto, float | int) and not isinstance(proto, bool):
            kind, pbytes = PROTO_UDP_STREAM, _F64.pack(float(proto) - now)
        elif pn == IPPROTO_GRE and isinstance(proto, tuple) and len(proto) == 2:
            kind, pbytes = PROTO_GRE, _F64X2.pack(float(proto[0]), float(proto[1]))
        else:
            kind, pbytes = PROTO_NONE, b""  # the trackers that keep nothing (ICMP, UDP-Lite, generic)
        parts = (PART_ACCT if ct.acct is not None else 0) | (PART_EXT if ct.ext is not None else 0)
        out.append(_ENTRY.pack(*_key(ct.okey), *_key(ct.rkey), ct.status, ct.mark, ct.timeout - now, kind, parts))
        out.append(pbytes)
        if ct.acct is not None:
            out.append(_ACCT.pack(*ct.acct))
        if ct.ext is not None:
            ext_bytes, n = _encode_ext(ct.ext, index, now, ifname)
            out.append(ext_bytes)
            nexp += n
    chains: list[bytes] = []
    for value in table.nat_bysource.values():
        members = [index[id(c)] for c in ([value] if isinstance(value, Conn) else value) if id(c) in index]
        if members:
            chains.append(_U32.pack(len(members)) + b"".join(_U32.pack(i) for i in members))
    out.append(_U32.pack(len(chains)))
    out.extend(chains)
    return b"".join(out), len(conns), nexp


def _encode_ext(ext: ConnExt, index: Mapping[int, int], now: float,
                ifname: Callable[[int], str | None]) -> tuple[bytes, int]:
    parts = 0
    out: list[bytes] = []
    if ext.helper is not None:
        parts |= EXT_HELPER
        out.append(_str8(ext.helper))
    if ext.master is not None and id(ext.master) in index:
        parts |= EXT_MASTER
        out.append(_U32.pack(index[id(ext.master)]))
    masq = ifname(ext.masq_index) if ext.masq_index else None
    if masq is not None:
        parts |= EXT_MASQ
        out.append(_str8(masq))
    if ext.secmark or ext.zone or ext.labels:
        parts |= EXT_MARKS
        out.append(_MARKS.pack(ext.secmark, ext.zone, (ext.labels & _LABELS).to_bytes(16, "big")))
    if isinstance(ext.data, FtpMaster):  # the only helper private data there is (nf_ct_ftp_master)
        parts |= EXT_FTP
        d = ext.data
        out.append(_FTP.pack(*d.seq_aft_nl[0], *d.seq_aft_nl[1], *d.seq_aft_nl_num))
    if ext.seqadj is not None:
        parts |= EXT_SEQADJ
        out.append(b"".join(_SEQADJ.pack(s.correction_pos, s.offset_before, s.offset_after) for s in ext.seqadj.seq))
    exps = [(e, k) for e in ext.expectations or () if e.timeout > now and (k := _expectfn_kind(e)) is not None]
    if exps:
        parts |= EXT_EXPECT
        out.append(_U16.pack(len(exps)))
        for e, k in exps:
            out.append(_EXPECT.pack(*_key(e.tuple.key), e.mask_src, e.mask_sport, e.timeout - now, e.flags, e.cls,
                                    e.saved_addr, e.saved_proto, e.dir, k))
            out.append(_str8(e.helper or ""))
    return _U8.pack(parts) + b"".join(out), len(exps)


@dataclass(slots=True)
class _StagedExpect:
    master: int
    key: int
    mask_src: int
    mask_sport: int
    remaining: float
    flags: int
    cls: int
    saved_addr: int
    saved_proto: int
    dir: int
    expectfn: int
    helper: str | None


@dataclass(slots=True)
class StagedConntrack:
    """A decoded, validated CONN section, not yet in any table (`apply` puts it there).

    `conns` hold relative timeouts (already less the downtime) and no CONFIRMED bit,
    as entries waiting for nf_conntrack_confirm() do."""

    conns: list[Conn]
    chains: list[list[int]]          # nf_nat_bysource chains, newest first, as indices into conns
    expects: list[_StagedExpect]
    dropped: int                     # entries not restored (expired during the downtime, device gone)

    def apply(self, table: ConntrackTable, now: float, rng: random.Random) -> int:
        """Confirm the entries into `table` (empty) in their old order, rebuild the bysource chains,
        re-register the expectations; returns how many expectations went back in."""
        if len(table):
            raise StateError("the conntrack table is not empty")
        for ct in self.conns:
            if isinstance(ct.proto, float):
                ct.proto += now  # UDP's stream_ts: only confirm() makes the timeout absolute
            table.confirm(ct, IP_CT_NEW, now)  # timeout += now; walk, early-drop order, counters as at insertion
        for chain in self.chains:
            for i in reversed(chain):  # bysource_add() puts the newest first
                table.bysource_add(self.conns[i])
        restored = 0
        for s in self.expects:
            master = self.conns[s.master]
            exp = Expectation(master, Tuple.from_key(s.key), mask_src=s.mask_src, mask_sport=s.mask_sport,
                              timeout=s.remaining, helper=s.helper, flags=s.flags, cls=s.cls, direction=s.dir)
            exp.saved_addr, exp.saved_proto = s.saved_addr, s.saved_proto
            if s.expectfn == EXPECTFN_FOLLOW_MASTER:
                exp.expectfn = follow_master(table, rng)
            if table.expect.related(exp, now) == 0:  # the new nf_conntrack_expect_max may refuse some
                restored += 1
        return restored


def decode_conntrack(payload: memoryview | bytes, downtime: float, ifindex: Mapping[str, int],
                     addrs: frozenset[tuple[int, int]]) -> StagedConntrack:
    """Parse and check a CONN section (ValueError, struct.error when it is malformed).

    `ifindex`: the new configuration's device names; `addrs`: its (ifindex, address) pairs on devices
    that are up, for the masquerade check."""
    r = _Reader(payload)
    count = r.u32()
    if count > len(payload) // _ENTRY.size:
        raise ValueError("entry count larger than the section")
    kept: list[Conn | None] = []
    masters: list[int] = []
    expects: list[_StagedExpect] = []
    seen: set[int] = set()
    dropped = 0
    buf, pos, size = r.buf, r.pos, len(r.buf)
    unpack_entry, esize = _ENTRY.unpack_from, _ENTRY.size
    not_confirmed = ~IPS_CONFIRMED
    for i in range(count):
        # the common case inline (a million entries): the fixed part, then TCP's state
        oh, op, proto, rh, rp, rproto, status, mark, remaining, kind, parts = unpack_entry(buf, pos)
        pos += esize
        okey = (oh << 40) | (op << 8) | proto
        rkey = (rh << 40) | (rp << 8) | rproto
        if proto != rproto or status & IPS_DYING or parts & ~(PART_ACCT | PART_EXT) or not math.isfinite(remaining):
            raise ValueError("bad entry")
        if okey in seen or rkey in seen:
            raise ValueError("two entries with the same tuple")
        seen.add(okey)
        seen.add(rkey)
        ct = Conn(okey, rkey)
        ct.status = status & not_confirmed
        ct.mark = mark
        ct.timeout = remaining - downtime
        if kind == PROTO_TCP and proto == IPPROTO_TCP and pos < size and buf[pos] == PACKED_SIZE \
                and pos + 1 + PACKED_SIZE <= size:
            ct.proto = bytes(buf[pos + 1:pos + 1 + PACKED_SIZE])
            pos += 1 + PACKED_SIZE
        else:
            r.pos = pos
            ct.proto = _decode_proto(r, kind, proto, downtime)
            pos = r.pos
        if parts & PART_ACCT:
            ct.acct = list(_ACCT.unpack_from(buf, pos))
            pos += _ACCT.size
        master = -1
        keep = ct.timeout > 0
        if parts & PART_EXT:
            r.pos = pos
            ct.ext, master, masq = _decode_ext(r, i, count, expects, downtime)
            pos = r.pos
            if masq is not None:
                idx = ifindex.get(masq)
                # masq_device_event() / masq_inet_event(): the device or the address is gone, so is the entry
                keep = keep and idx is not None and (idx, (rkey >> 40) & 0xFFFFFFFF) in addrs
                ct.ext.masq_index = idx or 0
        kept.append(ct if keep else None)
        dropped += not keep
        masters.append(master)
    r.pos = pos
    nchains = r.u32()
    if nchains > count:
        raise ValueError("more bysource chains than entries")
    raw_chains: list[list[int]] = []
    for _ in range(nchains):
        n = r.u32()
        if n > count:
            raise ValueError("bysource chain longer than the table")
        raw_chains.append([_index(r.u32(), count) for _ in range(n)])
    r.end()
    # Renumber: the entries kept, in order; links to dropped ones are cut.
    new_index: dict[int, int] = {}
    conns: list[Conn] = []
    for i, kc in enumerate(kept):
        if kc is not None:
            new_index[i] = len(conns)
            conns.append(kc)
    for i, kc in enumerate(kept):
        if kc is not None and masters[i] >= 0 and kc.ext is not None:
            kc.ext.master = kept[masters[i]]  # None when the master was not kept
    chains = [c for c in ([new_index[i] for i in ch if i in new_index] for ch in raw_chains) if c]
    live_expects = [e for e in expects if e.master in new_index and e.remaining > 0]
    for e in live_expects:
        e.master = new_index[e.master]
    return StagedConntrack(conns, chains, live_expects, dropped)


def _index(v: int, count: int) -> int:
    if v >= count:
        raise ValueError("entry index out of range")
    return v


def _decode_proto(r: _Reader, kind: int, proto: int, downtime: float) -> bytes | float | tuple[float, float] | None:
    if kind == PROTO_NONE:
        return None
    if kind == PROTO_TCP and proto == IPPROTO_TCP:
        n = r.raw(1)[0]
        if n != PACKED_SIZE:
            raise ValueError("TCP state of the wrong size")
        return r.raw(n)
    if kind == PROTO_UDP_STREAM and proto == IPPROTO_UDP:
        return r.f64() - downtime  # relative until `apply` adds the new clock's now
    if kind == PROTO_GRE and proto == IPPROTO_GRE:
        return (r.f64(), r.f64())
    raise ValueError("unknown protocol state")


def _decode_ext(r: _Reader, i: int, count: int, expects: list[_StagedExpect],
                downtime: float) -> tuple[ConnExt, int, str | None]:
    ext = ConnExt()
    (parts,) = r.ints(_U8)
    if parts & ~0x7F:
        raise ValueError("unknown extension parts")
    master, masq = -1, None
    if parts & EXT_HELPER:
        ext.helper = r.str8()
    if parts & EXT_MASTER:
        master = _index(r.u32(), count)
    if parts & EXT_MASQ:
        masq = r.str8()
    if parts & EXT_MARKS:
        ext.secmark, ext.zone = r.ints(_SECMARK_ZONE)
        ext.labels = int.from_bytes(r.raw(16), "big")
    if parts & EXT_FTP:
        v = r.ints(_FTP)
        d = FtpMaster()
        n = NUM_SEQ_TO_REMEMBER
        d.seq_aft_nl = (list(v[:n]), list(v[n:2 * n]))
        d.seq_aft_nl_num = [min(x, n) for x in v[2 * n:]]
        ext.data = d
    if parts & EXT_SEQADJ:
        adj = SeqAdj()
        for s in adj.seq:
            s.correction_pos, s.offset_before, s.offset_after = r.ints(_SEQADJ)
        ext.seqadj = adj
    if parts & EXT_EXPECT:
        (n,) = r.ints(_U16)
        for _ in range(n):
            key = r.key()
            mask_src, mask_sport = r.ints(_MASKS)
            rem = r.f64()
            flags, cls, saddr, sproto, dirn, fn = r.ints(_EXPECT_REST)
            helper = r.str8()
            if fn not in (EXPECTFN_NONE, EXPECTFN_FOLLOW_MASTER) or dirn not in (0, 1):
                raise ValueError("bad expectation")
            expects.append(_StagedExpect(i, key, mask_src, mask_sport, rem - downtime, flags, cls, saddr, sproto,
                                         dirn, fn, helper or None))
    return ext, master, masq


# -- the whole state ------------------------------------------------------------------------------
@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while a million objects are made or walked: its passes would cost a third of the time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass(frozen=True, slots=True)
class Saved:
    connections: int
    expectations: int
    nat_sessions: int
    size: int


@dataclass(frozen=True, slots=True)
class Restored:
    connections: int
    expectations: int
    nat_sessions: int
    dropped: int       # conntrack entries not restored: expired while down, masquerade device/address gone
    downtime: float    # seconds between the save and the load (wall clock)


def save_state(path: str, stack: Stack, now: float, *, wall: float | None = None) -> Saved:
    """Write the conntrack table and the IP Filter NAT sessions of `stack` to `path`
    (OSError when the file cannot be written, ValueError when the state cannot be encoded)."""
    names = {i: d.name for i, d in stack.by_index.items()}
    with _gc_paused():
        try:
            ct_payload, nconn, nexp = encode_conntrack(stack.conntrack, now, names.get)
            sections = [(SECTION_CONNTRACK, ct_payload)]
            nsess = 0
            table = stack.ipnat.sessions
            if isinstance(table, IpnatTable):
                sections.append((SECTION_IPNAT, encode_ipnat(table, now)))
                nsess = len(table)
        except struct.error as e:  # a value out of its field's range: a bug, but the stop must go on
            raise ValueError(f"cannot encode the state: {e}") from None
        data = pack_file(sections, time.time() if wall is None else wall)
    write_atomic(path, data)
    return Saved(nconn, nexp, nsess, len(data))


def load_state(path: str, stack: Stack, now: float, *, rng: random.Random,
               wall: float | None = None) -> Restored | None:
    """Put the state saved in `path` into `stack` (its conntrack table must be empty).

    None when there is no such file; StateError when it is corrupt or incompatible, and then
    `stack` is untouched; OSError when it cannot be read.  `rng` is the engine's: the NAT
    expectations' nf_nat_follow_master draws from it, as for expectations made by traffic."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    saved_wall, sections = unpack_file(data)
    wall = time.time() if wall is None else wall
    downtime = max(0.0, wall - saved_wall)
    if SECTION_CONNTRACK not in sections:
        raise StateError("corrupt: no conntrack section")
    if len(stack.conntrack):
        raise StateError("the conntrack table is not empty")
    ifindex = {name: d.ifindex for name, d in stack.devices.items()}
    addrs = frozenset((d.ifindex, a.local) for d in stack.devices.values() if d.up for a in d.addrs)
    with _gc_paused():
        try:
            staged = decode_conntrack(sections[SECTION_CONNTRACK], downtime, ifindex, addrs)
            nat: IpnatTable | None = None
            if SECTION_IPNAT in sections:
                staged_nat: StagedIpnat = decode_ipnat(sections[SECTION_IPNAT])
                if stack.ipnat.rules:  # without rules IP Filter NAT does nothing (ns_rules == 0): no table
                    nat = _ipnat_table(stack)
                    staged_nat.build(nat, stack.ipnat.rules, now, downtime)
        except (ValueError, struct.error, IndexError, UnicodeDecodeError) as e:
            raise StateError(f"corrupt: {e}") from None
        nexp = staged.apply(stack.conntrack, now, rng)
    if nat is not None:
        stack.ipnat.sessions = nat
    return Restored(len(staged.conns), nexp, len(nat) if nat is not None else 0, staged.dropped, downtime)


def _ipnat_table(stack: Stack) -> IpnatTable:
    """A fresh session table, made as the engine makes it (Engine._ipnat)."""
    from ipgate.engine.engine import StackIfaddr  # the engine imports the tables, not the other way round

    return IpnatTable(StackIfaddr(stack))


__all__ = ["MAGIC", "VERSION", "Restored", "Saved", "StagedConntrack", "StateError", "decode_conntrack",
           "encode_conntrack", "load_state", "pack_file", "save_state", "unpack_file", "write_atomic"]
