"""Capture files (packet/pcap.py) and `ipgate replay` (replay.py, cli.py).

Files written by dpkt 1.9.8 (an independent implementation of both formats)
are read back in both byte orders; dpkt reads what our writer writes.  Blocks
dpkt cannot write (SPB, unknown blocks, a big-endian section after a
little-endian one) are built here with struct, field by field from
draft-ietf-opsawg-pcapng.  The replay summary is checked with a fake engine
whose answers are fixed by the destination address.
"""

from __future__ import annotations

import io
import ipaddress
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import dpkt
import pytest

from ipgate.cli import main
from ipgate.engine.result import Drop, Local, Result, Tx
from ipgate.packet.build import build_icmp, build_ipv4, build_tcp, build_udp
from ipgate.packet.ipv4 import IP_MF
from ipgate.packet.pcap import (
    CaptureReader,
    PcapError,
    PcapngWriter,
    Record,
    extract_ipv4,
    ipv4_frames,
)
from ipgate.replay import ReplayError, ReplaySummary, replay


def A(s: str) -> int:
    return int(ipaddress.IPv4Address(s))


UDP = bytes(build_udp(A("192.0.2.10"), A("198.51.100.7"), 5353, 53, b"query", id=0x1234))
TCP = bytes(build_tcp(A("192.0.2.10"), A("203.0.113.9"), 40000, 443, b"hello", id=7))
ICMP = bytes(build_icmp(A("192.0.2.10"), A("203.0.113.9"), 8, 0, 0x00420001, b"ping", id=9))
IPV6 = bytes.fromhex("6000000000083a40") + bytes(32) + bytes(8)
TS = 1_700_000_000.25

# -- link-layer frames (tcpdump.org link-layer header types) ---------------------------

MACS = bytes.fromhex("020000000001" "020000000002")


def eth(ip: bytes, ethertype: int = 0x0800) -> bytes:
    return MACS + ethertype.to_bytes(2, "big") + ip


def vlan(ip: bytes, inner: int = 0x0800) -> bytes:
    return MACS + b"\x81\x00\x00\x64" + inner.to_bytes(2, "big") + ip


def qinq(ip: bytes) -> bytes:
    return MACS + b"\x88\xa8\x00\x0a\x81\x00\x00\x64\x08\x00" + ip


def sll(ip: bytes, proto: int = 0x0800) -> bytes:
    # packet type, ARPHRD_ETHER, address length, address (8), protocol
    return struct.pack("!HHH8sH", 0, 1, 6, MACS[:6] + b"\0\0", proto) + ip


def sll2(ip: bytes, proto: int = 0x0800) -> bytes:
    # protocol, reserved, ifindex, ARPHRD_ETHER, packet type, address length, address (8)
    return struct.pack("!HHIHBB8s", proto, 0, 3, 1, 0, 6, MACS[:6] + b"\0\0") + ip


def null(ip: bytes, af: int = 2, order: str = "<") -> bytes:
    return struct.pack(order + "I", af) + ip


# (link type, frame builder): every encapsulation the reader unwraps
LINKS: list[tuple[str, int, Callable[[bytes], bytes]]] = [
    ("EN10MB", 1, eth),
    ("EN10MB 802.1Q", 1, vlan),
    ("EN10MB QinQ", 1, qinq),
    ("RAW", 101, lambda ip: ip),
    ("IPV4", 228, lambda ip: ip),
    ("LINUX_SLL", 113, sll),
    ("LINUX_SLL2", 276, sll2),
    ("NULL little-endian", 0, null),
    ("NULL big-endian", 0, lambda ip: null(ip, order=">")),
    ("LOOP", 108, lambda ip: null(ip, order=">")),
]


def dpkt_pcap(monkeypatch: pytest.MonkeyPatch, little: bool, nano: bool, linktype: int,
              packets: list[tuple[float, bytes]]) -> bytes:
    monkeypatch.setattr(dpkt.pcap.Writer, "_Writer__le", little)
    f = io.BytesIO()
    w = dpkt.pcap.Writer(f, snaplen=65535, linktype=linktype, nano=nano)
    for ts, frame in packets:
        w.writepkt(frame, ts=ts)
    return f.getvalue()


def dpkt_pcapng(monkeypatch: pytest.MonkeyPatch, little: bool, ifaces: list[tuple[int, str, int]],
                packets: list[tuple[int, int, bytes]]) -> bytes:
    """A pcapng section by dpkt: ifaces are (linktype, if_name, if_tsresol), packets (iface, ticks, frame)."""
    pcapng = dpkt.pcapng
    monkeypatch.setattr(pcapng.Writer, "_Writer__le", little)
    sfx = "LE" if little else ""
    shb = getattr(pcapng, "SectionHeaderBlock" + sfx)()
    opt = getattr(pcapng, "PcapngOption" + sfx)
    idbs = [getattr(pcapng, "InterfaceDescriptionBlock" + sfx)(
        linktype=lt, snaplen=65535,
        opts=[opt(code=2, data=name.encode()), opt(code=9, data=bytes([res])), opt(code=0, data=b"")])
        for lt, name, res in ifaces]
    f = io.BytesIO()
    w = pcapng.Writer(f, shb=shb, idb=idbs)
    epb = getattr(pcapng, "EnhancedPacketBlock" + sfx)
    for iface, ticks, frame in packets:
        w.writepkt(epb(iface_id=iface, ts_high=ticks >> 32, ts_low=ticks & 0xFFFFFFFF, pkt_data=frame))
    return f.getvalue()


def read(buf: bytes) -> list[Record]:
    return list(CaptureReader(io.BytesIO(buf)))


# -- the writer, read back ----------------------------------------------------------------

@pytest.mark.parametrize("tsresol", [6, 9])
def test_writer_round_trip(tsresol: int) -> None:
    f = io.BytesIO()
    w = PcapngWriter(f, tsresol=tsresol)
    sent = [("eth1", TS, UDP), ("eth0", TS + 0.000001, TCP), ("eth1", TS + 2.5, ICMP), ("eth0", TS + 3, UDP)]
    for dev, ts, pkt in sent:
        w.write(dev, ts, pkt)
    assert w.interfaces == {"eth1": 0, "eth0": 1}  # one IDB per interface, in order of first use
    got = read(f.getvalue())
    assert [(r.ifname, r.linktype, r.data) for r in got] == [(dev, 101, pkt) for dev, _, pkt in sent]
    for r, (_, ts, _) in zip(got, sent, strict=True):
        assert r.timestamp == pytest.approx(ts, abs=1e-6)


def test_writer_output_is_read_by_dpkt() -> None:
    f = io.BytesIO()
    w = PcapngWriter(f)
    w.write("wan", TS, UDP)
    w.write("wan", TS + 1.5, TCP)
    f.seek(0)
    r = dpkt.pcapng.Reader(f)
    assert r.datalink() == 101
    assert [opt.data for opt in r.idb.opts if opt.code == 2] == [b"wan"]
    assert [(ts, bytes(data)) for ts, data in r] == [(pytest.approx(TS), UDP), (pytest.approx(TS + 1.5), TCP)]


def test_writer_nanoseconds_keep_sub_microsecond_digits() -> None:
    f = io.BytesIO()
    PcapngWriter(f, tsresol=9).write("eth0", 1000.123456789, UDP)
    (rec,) = read(f.getvalue())
    assert rec.timestamp == pytest.approx(1000.123456789, abs=1e-9)
    assert rec.timestamp != pytest.approx(1000.123457, abs=1e-9)


def test_writer_rejects_other_resolutions() -> None:
    with pytest.raises(ValueError, match="tsresol"):
        PcapngWriter(io.BytesIO(), tsresol=3)


# -- files written by dpkt, every link type, both byte orders --------------------------------

@pytest.mark.parametrize("little", [True, False], ids=["le", "be"])
@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
@pytest.mark.parametrize(("name", "linktype", "wrap"), LINKS, ids=[x[0] for x in LINKS])
def test_dpkt_pcap(monkeypatch: pytest.MonkeyPatch, little: bool, nano: bool, name: str, linktype: int,
                   wrap: Callable[[bytes], bytes]) -> None:
    buf = dpkt_pcap(monkeypatch, little, nano, linktype, [(TS, wrap(UDP)), (TS + 0.5, wrap(TCP))])
    reader = CaptureReader(io.BytesIO(buf))
    assert reader.format == "pcap"
    frames = list(ipv4_frames(reader))
    assert [(f.ifname, f.ipv4, f.why_not) for f in frames] == [(None, UDP, ""), (None, TCP, "")]
    assert [f.timestamp for f in frames] == [pytest.approx(TS, abs=1e-6), pytest.approx(TS + 0.5, abs=1e-6)]
    assert reader.offset == len(buf)


@pytest.mark.parametrize("little", [True, False], ids=["le", "be"])
@pytest.mark.parametrize(("name", "linktype", "wrap"), LINKS, ids=[x[0] for x in LINKS])
def test_dpkt_pcapng(monkeypatch: pytest.MonkeyPatch, little: bool, name: str, linktype: int,
                     wrap: Callable[[bytes], bytes]) -> None:
    # Two interfaces: the second in nanoseconds and with the link type under test.
    ns = 1_700_000_000_123_456_789
    buf = dpkt_pcapng(monkeypatch, little, [(101, "lan0", 6), (linktype, "wan0", 9)],
                      [(1, ns, wrap(UDP)), (0, 1_700_000_001_000_000, TCP), (1, ns + 1000, wrap(ICMP))])
    reader = CaptureReader(io.BytesIO(buf))
    assert reader.format == "pcapng"
    frames = list(ipv4_frames(reader))
    assert [(f.ifname, f.ipv4, f.why_not) for f in frames] == [("wan0", UDP, ""), ("lan0", TCP, ""),
                                                               ("wan0", ICMP, "")]
    assert [f.timestamp for f in frames] == [pytest.approx(1_700_000_000.123456789, abs=1e-6),
                                             pytest.approx(1_700_000_001.0, abs=1e-6),
                                             pytest.approx(1_700_000_000.123457789, abs=1e-6)]


def test_dpkt_pcapng_obsolete_packet_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dpkt.pcapng.Writer, "_Writer__le", True)
    f = io.BytesIO()
    w = dpkt.pcapng.Writer(f, linktype=1)
    w.writepkt(dpkt.pcapng.PacketBlockLE(ts_high=0, ts_low=3_000_000, pkt_data=eth(UDP), drops_count=4))
    (rec,) = read(f.getvalue())
    assert (rec.timestamp, rec.ifname, rec.linktype, rec.data) == (3.0, None, 1, eth(UDP))


# -- what is not IPv4 ------------------------------------------------------------------------

@pytest.mark.parametrize(("linktype", "frame", "why"), [
    (1, eth(b"\0" * 28, 0x0806), "EN10MB: ethertype 0x0806"),
    (1, eth(IPV6, 0x86DD), "EN10MB: ethertype 0x86dd"),
    (1, vlan(IPV6, 0x86DD), "EN10MB: 802.1Q ethertype 0x86dd"),
    (1, MACS + b"\x00\x26" + b"\xaa\xaa\x03" + bytes(35), "EN10MB: 802.3 length field (not Ethernet II)"),
    (1, MACS[:10], "EN10MB: frame too short"),
    (1, MACS + b"\x81\x00", "EN10MB: frame too short"),
    (101, IPV6, "RAW: IPv6"),
    (101, b"", "RAW: empty frame"),
    (101, b"\x50" + bytes(19), "RAW: IP version 5"),
    (113, sll(IPV6, 0x86DD), "LINUX_SLL: protocol 0x86dd"),
    (113, sll(b"")[:10], "LINUX_SLL: frame too short"),
    (276, sll2(b"", 0x0806), "LINUX_SLL2: protocol 0x0806"),
    (0, null(IPV6, af=24), "NULL: address family 24"),
    (108, b"\0\0", "LOOP: frame too short"),
    (105, bytes(40), "link type 105 not supported"),
])
def test_not_ipv4_says_why(linktype: int, frame: bytes, why: str) -> None:
    assert extract_ipv4(linktype, frame) == (None, why)


def test_ipv4_link_type_passes_even_a_bad_header_to_the_engine() -> None:
    # LINKTYPE_IPV4 is IPv4 by definition: a broken header is for the engine to drop and count.
    assert extract_ipv4(228, b"\x60" + bytes(19)) == (b"\x60" + bytes(19), "")


def test_pcap_link_type_field_ignores_fcs_bits() -> None:
    # draft-ietf-opsawg-pcap §4: the upper bits of the LinkType field say whether frames end with an FCS.
    hdr = struct.pack("<IHHIIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 0x24000001)
    rec = struct.pack("<IIII", 5, 0, len(eth(UDP)), len(eth(UDP))) + eth(UDP)
    (r,) = read(hdr + rec)
    assert (r.linktype, r.timestamp, extract_ipv4(r.linktype, r.data)) == (1, 5.0, (UDP, ""))


# -- pcapng blocks dpkt does not write, sections of both byte orders --------------------------

def block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack(order + "II", btype, len(body) + 12) + body + struct.pack(order + "I", len(body) + 12)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(order: str, major: int = 1) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, major, 0, -1))


def idb(order: str, linktype: int, snaplen: int = 0, opts: bytes = b"") -> bytes:
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def epb(order: str, iface: int, ticks: int, data: bytes, caplen: int | None = None) -> bytes:
    n = len(data) if caplen is None else caplen
    return block(order, 6, struct.pack(order + "5I", iface, ticks >> 32, ticks & 0xFFFFFFFF, n, len(data)) + data)


def spb(order: str, data: bytes, origlen: int | None = None) -> bytes:
    return block(order, 3, struct.pack(order + "I", len(data) if origlen is None else origlen) + data)


def test_pcapng_sections_of_both_byte_orders_spb_and_unknown_blocks() -> None:
    le = (shb("<") + idb("<", 1, opts=option("<", 2, b"eth0") + option("<", 0, b""))
          + block("<", 0x0BAD, b"skip me") + epb("<", 0, 5_000_000, eth(UDP)))
    # Second section, big-endian: its interface 0 is new (ids are per section); 2^-10 s
    # ticks (if_tsresol's high bit) and a 1000 s if_tsoffset; an SPB cut to the IDB's snaplen.
    be = (shb(">") + block(">", 4, b"\0\0\0\0")  # a name resolution block, skipped
          + idb(">", 101, snaplen=len(TCP), opts=option(">", 9, b"\x8a") + option(">", 14, struct.pack(">q", 1000)))
          + epb(">", 0, 2048, TCP) + spb(">", TCP + b"trailer", origlen=len(TCP) + 7))
    got = read(le + be)
    assert [(r.timestamp, r.ifname, r.linktype, r.data) for r in got] == [
        (5.0, "eth0", 1, eth(UDP)),
        (1002.0, None, 101, TCP),
        (1002.0, None, 101, TCP),  # an SPB has no timestamp: it keeps the previous packet's
    ]


def test_spb_captured_length_is_bounded_by_its_original_length() -> None:
    # §4.4: the captured length is min(original length, snaplen); the rest is padding.
    buf = shb("<") + idb("<", 101) + spb("<", TCP + b"\0\0\0", origlen=len(TCP))
    assert [r.data for r in read(buf)] == [TCP]


# -- truncated and corrupt files ----------------------------------------------------------------

def pcap_file(n: int) -> bytes:
    return struct.pack("<IHHIIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101) + b"".join(
        struct.pack("<IIII", 100 + i, 0, len(UDP), len(UDP)) + UDP for i in range(n))


def pcapng_file(n: int, pkt: bytes = UDP) -> bytes:
    f = io.BytesIO()
    w = PcapngWriter(f)
    for i in range(n):
        w.write("eth0", 100 + i, pkt)
    return f.getvalue()


def read_until_error(buf: bytes) -> tuple[list[Record], PcapError]:
    got: list[Record] = []
    with pytest.raises(PcapError) as e:
        for rec in CaptureReader(io.BytesIO(buf)):
            got.append(rec)
    return got, e.value


@pytest.mark.parametrize("make", [pcap_file, pcapng_file], ids=["pcap", "pcapng"])
@pytest.mark.parametrize("cut", [1, 8, 15, 16, 20, len(UDP) + 15])
def test_truncated_file_yields_the_good_records_then_says_where(make: Callable[[int], bytes], cut: int) -> None:
    good = make(2)
    buf = make(3)[:len(good) + cut]
    got, err = read_until_error(buf)
    assert [r.timestamp for r in got] == [100.0, 101.0]
    assert err.offset == len(good)  # where the third record begins
    assert "truncated file" in str(err) and f"at byte {len(good)}" in str(err)


@pytest.mark.parametrize(("buf", "message", "offset"), [
    (b"", "empty file", 0),
    (b"\xa1\xb2", "not a capture file: too short", 0),
    (b"hello, world\n" * 4, "not a pcap or pcapng file (magic 68656c6c)", 0),
    (b"\x1f\x8b\x08\x00" + bytes(40), "gzip-compressed, decompress it first", 0),
    (pcap_file(1)[:20], "truncated file: the file header needs 24 bytes, 20 left", 0),
    (struct.pack("<IHHIIII", 0xA1B2C3D4, 3, 0, 0, 0, 65535, 1), "unsupported pcap version 3", 4),
    (shb("<")[:16], "truncated file: the block needs 28 bytes, 16 left", 0),
    (shb("<")[:8] + b"\x01\x02\x03\x04" + shb("<")[12:], "byte-order magic 01020304", 0),
    (shb("<", major=2), "unsupported pcapng version 2.0", 0),
])
def test_not_a_capture_fails_at_open(buf: bytes, message: str, offset: int) -> None:
    with pytest.raises(PcapError) as e:
        CaptureReader(io.BytesIO(buf))
    assert message in str(e.value)
    assert e.value.offset == offset


def test_corrupt_pcap_record_length() -> None:
    buf = pcap_file(1) + struct.pack("<IIII", 7, 0, 0x7FFFFFFF, 0x7FFFFFFF) + bytes(64)
    got, err = read_until_error(buf)
    assert len(got) == 1
    assert (err.offset, str(err)) == (len(pcap_file(1)),
                                      f"corrupt packet record: captured length {0x7FFFFFFF} (at byte {err.offset})")


HEAD = shb("<") + idb("<", 101)


@pytest.mark.parametrize(("bad", "message"), [
    (struct.pack("<II", 6, 30) + bytes(22), "corrupt block: total length 30"),  # not a multiple of 4
    (struct.pack("<II", 6, 8) + bytes(8), "corrupt block: total length 8"),  # below the EPB's minimum
    (struct.pack("<II", 6, 0xFFFFFFF0) + bytes(64), "corrupt block: total length 4294967280"),
    (epb("<", 0, 1, UDP)[:-4] + b"\0\0\0\0", "0 at its end"),  # trailing length disagrees
    (epb("<", 3, 1, UDP), "interface 3 was not described"),
    (epb("<", 0, 1, UDP, caplen=len(UDP) + 100), f"captured length {len(UDP) + 100}"),
    (idb("<", 1, opts=struct.pack("<HH", 2, 200) + b"eth0"), "corrupt option 2: length 200"),
])
def test_corrupt_pcapng_block(bad: bytes, message: str) -> None:
    good = HEAD + epb("<", 0, 1_000_000, UDP)
    got, err = read_until_error(good + bad + epb("<", 0, 2_000_000, UDP))
    assert [r.data for r in got] == [UDP]
    assert message in str(err)
    assert err.offset == len(good)


def test_spb_before_any_interface_is_corrupt() -> None:
    got, err = read_until_error(shb("<") + spb("<", UDP))
    assert got == []
    assert "interface 0 was not described" in str(err)


def test_new_section_forgets_the_interfaces_of_the_last() -> None:
    got, err = read_until_error(HEAD + epb("<", 0, 1, UDP) + shb(">") + epb(">", 0, 1, UDP))
    assert len(got) == 1
    assert err.offset == len(HEAD + epb("<", 0, 1, UDP) + shb(">"))


# -- replay with a fake engine ----------------------------------------------------------------

def with_dst(pkt: bytes, dst: str) -> bytes:
    b = bytearray(pkt)
    b[16:20] = ipaddress.IPv4Address(dst).packed
    return bytes(b)


def with_src(pkt: bytes, src: str) -> bytes:
    b = bytearray(pkt)
    b[12:16] = ipaddress.IPv4Address(src).packed
    return bytes(b)


def with_dport(pkt: bytes, port: int) -> bytes:
    b = bytearray(pkt)
    b[22:24] = port.to_bytes(2, "big")
    return bytes(b)


ICMP_ERROR = bytes(build_icmp(A("192.0.2.1"), A("192.0.2.10"), 11, 0, 0, UDP[:28], id=77))


def error_about(data: bytes) -> bytes:
    """An ICMP time exceeded about `data` that happens to have its IP ID."""
    return bytes(build_icmp(A("192.0.2.1"), A("192.0.2.10"), 11, 0, 0, data[:28], id=int.from_bytes(data[4:6])))


def fragments(data: bytes) -> list[bytes]:
    """`data` (a UDP datagram without options) in two fragments, as ip_fragment() would cut it."""
    ident = int.from_bytes(data[4:6], "big")
    src, dst = int.from_bytes(data[12:16], "big"), int.from_bytes(data[16:20], "big")
    return [bytes(build_ipv4(src, dst, 17, data[20:28], id=ident, frag_off=IP_MF)),
            bytes(build_ipv4(src, dst, 17, data[28:], id=ident, frag_off=1))]


class FakeEngine:
    """Answers by destination: forward, SNAT, DNAT a port, drop, deliver, ICMP error, fragment, hold."""

    def __init__(self) -> None:
        self.received: list[tuple[str, float]] = []
        self.timers: list[float] = []
        self.fired: list[float] = []

    def receive(self, dev: str, data: bytes, now: float) -> list[Result]:
        self.received.append((dev, now))
        dst = str(ipaddress.IPv4Address(data[16:20]))
        if dst == "10.9.0.1":
            return [Tx("eth1", 1, data)]
        if dst == "10.9.0.2":
            return [Tx("eth1", 1, with_src(data, "198.51.100.1"))]
        if dst == "10.9.0.3":
            return [Tx("eth0", 1, with_dport(with_dst(data, "192.168.1.5"), 8080))]
        if dst == "10.9.0.4":
            return [Drop("FORWARD DROP", data)]
        if dst == "10.9.0.5":
            return [Local(dev, data)]
        if dst == "10.9.0.6":  # TTL exceeded: the packet dies, an error goes back (same ID and protocol)
            return [Drop("IP_INHDR", data), Tx(dev, 2, error_about(data))]
        if dst == "10.9.0.7":  # two fragments of the same datagram, then a redirect of our own
            return [*(Tx("eth1", 1, frag) for frag in fragments(data)), Tx(dev, 2, ICMP)]
        if dst == "10.9.0.8":  # a first fragment: held, with a reassembly timer
            self.timers.append(now + 30)
            return []
        return [Drop("IP_INNOROUTES", data)]

    def next_timer(self) -> float | None:
        return min(self.timers, default=None)

    def handle_timer(self, now: float) -> list[Result]:
        self.fired.append(now)
        due = [t for t in self.timers if t <= now]
        self.timers = [t for t in self.timers if t > now]
        return [r for _ in due for r in (Drop("FRAG_REASM_TIMEOUT", b""), Tx("eth0", 2, ICMP_ERROR))]


def raw(ts: float, pkt: bytes, ifname: str | None = "eth0") -> Record:
    return Record(ts, ifname, 101, pkt)


def run(records: list[Record], iif: str | None = None) -> tuple[ReplaySummary, FakeEngine, list[Record]]:
    engine = FakeEngine()
    out = io.BytesIO()
    s = replay(engine, records, out, iif=iif, progress=False)
    return s, engine, read(out.getvalue())


def test_replay_summary() -> None:
    recs = [raw(10, with_dst(UDP, "10.9.0.1")), raw(11, with_dst(UDP, "10.9.0.2")),
            raw(12, with_dst(TCP, "10.9.0.3")), raw(13, with_dst(UDP, "10.9.0.4")),
            raw(14, with_dst(UDP, "10.9.0.4")), raw(15, with_dst(UDP, "10.9.0.5")),
            raw(16, with_dst(ICMP, "10.9.0.6")), raw(17, with_dst(UDP, "10.9.0.7")),
            raw(18, with_dst(UDP, "10.0.0.1")), Record(19, "eth0", 1, eth(IPV6, 0x86DD)),
            Record(20, "eth0", 101, IPV6), Record(21, "eth0", 1, eth(b"", 0x0806))]
    s, engine, out = run(recs)
    assert (s.read, s.forwarded, s.translated, s.local, s.generated, s.held, s.written) == (12, 4, 2, 1, 2, 0, 7)
    assert dict(s.not_ipv4) == {"EN10MB: ethertype 0x86dd": 1, "RAW: IPv6": 1, "EN10MB: ethertype 0x0806": 1}
    assert dict(s.dropped) == {"FORWARD DROP": 2, "IP_INHDR": 1, "IP_INNOROUTES": 1}
    assert engine.received == [("eth0", float(t)) for t in range(10, 19)]
    assert [(r.ifname, r.timestamp) for r in out] == [("eth1", 10), ("eth1", 11), ("eth0", 12), ("eth0", 16),
                                                      ("eth1", 17), ("eth1", 17), ("eth0", 17)]
    assert out[2].data == with_dport(with_dst(with_dst(TCP, "10.9.0.3"), "192.168.1.5"), 8080)
    text = s.format().splitlines()
    assert text[:-1] == [
        "packets read: 12",
        "  not IPv4 (skipped): 3",
        "    EN10MB: ethertype 0x0806: 1",
        "    EN10MB: ethertype 0x86dd: 1",
        "    RAW: IPv6: 1",
        "  forwarded: 4",
        "    translated: 2",
        "  delivered locally: 1",
        "  dropped: 4",
        "    FORWARD DROP: 2",  # by count, then by name
        "    IP_INHDR: 1",
        "    IP_INNOROUTES: 1",
        "generated by the gateway: 2",
        "packets written: 7",
    ]
    assert text[-1].startswith("rate: ") and text[-1].endswith(" s)")


def test_translated_sees_ports_and_icmp_ids() -> None:
    class Nat(FakeEngine):
        def receive(self, dev: str, data: bytes, now: float) -> list[Result]:
            b = bytearray(data)
            if b[9] == 1:
                b[24:26] = b"\x99\x99"  # the echo id, as NAT remaps it
            else:
                b[20:22] = b"\x99\x99"  # the source port
            return [Tx("eth1", 1, bytes(b))]

    out = io.BytesIO()
    s = replay(Nat(), [raw(1, TCP), raw(2, ICMP), raw(3, UDP)], out, iif=None, progress=False)
    assert (s.forwarded, s.translated) == (3, 3)


def test_a_second_whole_packet_with_the_same_id_is_the_gateways_own() -> None:
    class Redirect(FakeEngine):
        def receive(self, dev: str, data: bytes, now: float) -> list[Result]:
            # Forwarded, and a redirect back whose IP ID and protocol happen to be the packet's.
            return [Tx("eth1", 1, data), Tx(dev, 2, error_about(data))]

    s = replay(Redirect(), [raw(1, ICMP)], io.BytesIO(), iif=None, progress=False)
    assert (s.forwarded, s.translated, s.generated, s.written) == (1, 0, 1, 2)


def test_timers_fire_at_their_deadline_before_the_next_packet() -> None:
    recs = [raw(100, with_dst(UDP, "10.9.0.8")), raw(110, with_dst(UDP, "10.9.0.1")),
            raw(200, with_dst(UDP, "10.9.0.1"))]
    s, engine, out = run(recs)
    assert engine.fired == [130.0]
    assert [(r.ifname, r.timestamp, r.data == ICMP_ERROR) for r in out] == [
        ("eth1", 110, False), ("eth0", 130, True), ("eth1", 200, False)]
    assert (s.held, s.generated, s.forwarded, dict(s.dropped)) == (1, 1, 2, {"FRAG_REASM_TIMEOUT": 1})
    assert "  no result (held, e.g. fragments awaiting reassembly): 1" in s.format().splitlines()


def test_timers_not_yet_due_at_the_end_do_not_fire() -> None:
    s, engine, out = run([raw(100, with_dst(UDP, "10.9.0.8")), raw(129, with_dst(UDP, "10.9.0.1"))])
    assert engine.fired == []
    assert len(out) == 1


def test_a_timer_the_engine_does_not_clear_cannot_hang_the_replay() -> None:
    class Stuck(FakeEngine):
        def handle_timer(self, now: float) -> list[Result]:
            self.fired.append(now)
            return []

    engine = Stuck()
    engine.timers = [5.0]
    replay(engine, [raw(10, with_dst(UDP, "10.9.0.1"))], io.BytesIO(), iif=None, progress=False)
    assert engine.fired == [5.0]


def test_the_engine_clock_does_not_go_backwards() -> None:
    s, engine, out = run([raw(10, with_dst(UDP, "10.9.0.1")), raw(9.5, with_dst(UDP, "10.9.0.1"))])
    assert [now for _, now in engine.received] == [10.0, 10.0]
    assert [r.timestamp for r in out] == [10.0, 10.0]


def test_iif_overrides_interface_names() -> None:
    s, engine, _ = run([raw(1, UDP, "eth0"), raw(2, UDP, None)], iif="wan")
    assert engine.received == [("wan", 1.0), ("wan", 2.0)]


def test_no_interface_name_and_no_iif() -> None:
    engine = FakeEngine()
    recs = [raw(1, with_dst(UDP, "10.9.0.1")), Record(2, None, 1, eth(b"", 0x0806)), raw(3, UDP, None)]
    with pytest.raises(ReplayError, match=r"packet 3 .* pass --iif DEV"):
        replay(engine, recs, io.BytesIO(), iif=None, progress=False)
    assert engine.received == [("eth0", 1.0)]


def test_a_corrupt_capture_stops_the_replay_after_the_good_packets() -> None:
    buf = pcapng_file(3, with_dst(UDP, "10.9.0.1"))
    out = io.BytesIO()
    engine = FakeEngine()
    with pytest.raises(PcapError, match="truncated"):
        replay(engine, CaptureReader(io.BytesIO(buf[:-10])), out, iif=None, progress=False)
    assert len(engine.received) == 2
    assert [r.timestamp for r in read(out.getvalue())] == [100.0, 101.0]


def test_progress_bar() -> None:
    buf = pcapng_file(600)
    err = io.StringIO()
    ticks = iter(float(i) for i in range(10_000))
    s = replay(FakeEngine(), CaptureReader(io.BytesIO(buf)), io.BytesIO(), iif=None, progress=True, stderr=err,
               clock=lambda: next(ticks))
    bars = err.getvalue().split("\r")[1:]
    assert len(bars) >= 3  # the first packet, at least one in between, the end
    assert bars[-1].startswith("[" + "#" * 30 + "] 100.0%  600 packets ")
    assert bars[-1].endswith(" packets/s\n")
    assert "%" in bars[1] and "100.0%" not in bars[1]
    assert s.read == 600


def test_no_progress_bar_unless_asked() -> None:
    err = io.StringIO()
    replay(FakeEngine(), [raw(1, UDP)], io.BytesIO(), iif=None, progress=False, stderr=err)
    assert err.getvalue() == ""


# -- the command line -------------------------------------------------------------------------

CONF = """\
ip link add eth0 type dummy
ip link add eth1 type dummy
ip addr add 192.0.2.1/24 dev eth0
ip addr add 198.51.100.1/24 dev eth1
ip link set eth0 up
ip link set eth1 up
echo 1 > /proc/sys/net/ipv4/ip_forward
"""


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "gw.conf").write_text(CONF)
    monkeypatch.setattr("ipgate.replay.open_engine", lambda stack: FakeEngine())
    yield tmp_path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_replay_pcapng(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = io.BytesIO()
    w = PcapngWriter(f)
    w.write("eth0", 1, with_dst(UDP, "10.9.0.1"))
    w.write("eth0", 2, with_dst(UDP, "10.9.0.5"))
    (files / "in.pcapng").write_bytes(f.getvalue())
    rc, out, err = cli(capsys, "-c", str(files / "gw.conf"), "replay", str(files / "in.pcapng"),
                       "-o", str(files / "out.pcapng"))
    assert (rc, err) == (0, "")  # stderr is no terminal here: no progress bar
    assert out.splitlines()[:1] == ["packets read: 2"]
    assert "  delivered locally: 1" in out.splitlines()
    assert [r.ifname for r in read((files / "out.pcapng").read_bytes())] == ["eth1"]


def test_cli_replay_pcap_needs_iif(files: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    (files / "in.pcap").write_bytes(dpkt_pcap(monkeypatch, True, False, 1, [(1.0, eth(with_dst(UDP, "10.9.0.1")))]))
    args = ["-c", str(files / "gw.conf"), "replay", str(files / "in.pcap"), "-o", str(files / "out.pcapng")]
    rc, out, err = cli(capsys, *args)
    assert (rc, out) == (1, "")
    assert err == f"ipgate replay: {files / 'in.pcap'}: a pcap file does not name interfaces: pass --iif DEV\n"
    assert not (files / "out.pcapng").exists()
    rc, out, err = cli(capsys, *args, "--iif", "eth0", "--progress")
    assert rc == 0
    assert "  forwarded: 1" in out.splitlines()
    assert "100.0%" in err and err.endswith("\n")  # --progress forces the bar
    assert [r.ifname for r in read((files / "out.pcapng").read_bytes())] == ["eth1"]


def test_cli_replay_pcapng_without_interface_names(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "in.pcapng").write_bytes(shb("<") + idb("<", 101) + epb("<", 0, 1, UDP))
    rc, out, err = cli(capsys, "-c", str(files / "gw.conf"), "replay", str(files / "in.pcapng"),
                       "-o", str(files / "out.pcapng"))
    assert (rc, out, err) == (1, "", "ipgate replay: packet 1 does not say which interface it came in on:"
                                     " pass --iif DEV\n")


def test_cli_replay_missing_capture(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(capsys, "-c", str(files / "gw.conf"), "replay", str(files / "nope.pcap"),
                       "-o", str(files / "out.pcapng"))
    assert (rc, out, err) == (1, "", f"ipgate replay: {files / 'nope.pcap'}: No such file or directory\n")


def test_cli_replay_missing_configuration(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "in.pcapng").write_bytes(pcapng_file(1))
    rc, out, err = cli(capsys, "-c", str(files / "nope.conf"), "replay", str(files / "in.pcapng"),
                       "-o", str(files / "out.pcapng"))
    assert (rc, out, err) == (1, "", f"ipgate replay: {files / 'nope.conf'}: No such file or directory\n")


@pytest.mark.parametrize(("content", "message"), [
    (b"GET / HTTP/1.1\r\n\r\n", "not a pcap or pcapng file (magic 47455420) (at byte 0)"),
    (pcapng_file(2)[:-3], "truncated file: the block needs "),
])
def test_cli_replay_corrupt_capture(files: Path, capsys: pytest.CaptureFixture[str], content: bytes,
                                    message: str) -> None:
    (files / "in.pcapng").write_bytes(content)
    rc, out, err = cli(capsys, "-c", str(files / "gw.conf"), "replay", str(files / "in.pcapng"),
                       "-o", str(files / "out.pcapng"))
    assert (rc, out) == (1, "")
    assert err.startswith(f"ipgate replay: {files / 'in.pcapng'}: {message}")
    assert err.count("\n") == 1


# -- end to end, with the real engine ---------------------------------------------------------

def gateway_capture() -> bytes:
    f = io.BytesIO()
    w = PcapngWriter(f)
    w.write("eth0", 1.0, bytes(build_udp(A("192.0.2.10"), A("198.51.100.20"), 1234, 53, b"q", id=1)))
    w.write("eth1", 1.5, bytes(build_udp(A("198.51.100.20"), A("198.51.100.1"), 53, 1234, b"r", id=2)))
    w.write("eth0", 2.0, bytes(build_udp(A("192.0.2.10"), A("203.0.113.5"), 1234, 53, b"q", id=3)))  # no route
    w.write("eth0", 3.0, bytes(build_icmp(A("192.0.2.10"), A("192.0.2.1"), 8, 0, 0x10001, b"ping", id=4)))
    w.write("eth0", 4.0, bytes(build_udp(A("192.0.2.10"), A("198.51.100.20"), 1234, 53, b"q", id=5, ttl=1)))
    w.write("eth0", 5.0, IPV6)  # not IPv4: skipped before the engine
    return f.getvalue()


def test_end_to_end_with_the_real_engine() -> None:
    from ipgate.engine.engine import Engine
    from ipgate.shell import load_script

    stack = load_script(CONF + "iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE\n", "test.conf")
    out = io.BytesIO()
    s = replay(Engine(stack), CaptureReader(io.BytesIO(gateway_capture())), out, iif=None, progress=False)
    # Forwarded and masqueraded, then the reply un-NATed; the unroutable and the TTL-1 packets
    # dropped with an ICMP error each; the ping to the gateway delivered and answered.
    assert (s.read, s.forwarded, s.translated, s.local, s.generated, s.written) == (6, 2, 2, 1, 3, 5)
    assert sum(s.dropped.values()) == 2
    assert dict(s.not_ipv4) == {"RAW: IPv6": 1}
    got = [(r.ifname, r.timestamp, ipaddress.IPv4Address(r.data[12:16]), ipaddress.IPv4Address(r.data[16:20]),
            r.data[8], r.data[9]) for r in read(out.getvalue())]
    V4 = ipaddress.IPv4Address
    assert got[:2] == [("eth1", 1.0, V4("198.51.100.1"), V4("198.51.100.20"), 63, 17),
                       ("eth0", 1.5, V4("198.51.100.20"), V4("192.0.2.10"), 63, 17)]
    errors = read(out.getvalue())[2:]
    assert [(r.timestamp, r.data[9], r.data[20]) for r in errors] == [
        (2.0, 1, 3),  # destination unreachable
        (3.0, 1, 0),  # echo reply
        (4.0, 1, 11),  # time exceeded
    ]


def test_cli_replay_with_the_real_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gw.conf").write_text(CONF + "iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE\n")
    (tmp_path / "in.pcapng").write_bytes(gateway_capture())
    rc, out, err = cli(capsys, "-c", str(tmp_path / "gw.conf"), "replay", str(tmp_path / "in.pcapng"),
                       "-o", str(tmp_path / "out.pcapng"))
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    # The drop reasons' lines follow "dropped"; their names are the engine's.
    assert lines[:7] == ["packets read: 6", "  not IPv4 (skipped): 1", "    RAW: IPv6: 1", "  forwarded: 2",
                         "    translated: 2", "  delivered locally: 1", "  dropped: 2"]
    assert lines[-3:-1] == ["generated by the gateway: 3", "packets written: 5"]
    assert [r.ifname for r in read((tmp_path / "out.pcapng").read_bytes())] == ["eth1", "eth0", "eth0", "eth0",
                                                                                "eth0"]
