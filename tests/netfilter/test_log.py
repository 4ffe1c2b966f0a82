"""The LOG target's kernel log line (ipgate.netfilter.log).

Unit cases pin each branch of nf_log_syslog.c's dump_ipv4_packet(); the
netns test sends crafted frames through a router namespace whose LOG rules
write to the real kernel log, and compares every line with log_packet_line().
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from ipgate.netfilter.log import NF_LOG_TEXT_MAX, kmsg_priority, log_packet_line
from ipgate.netfilter.targets import XT_LOG_IPOPT, XT_LOG_MACDECODE, XT_LOG_TCPOPT, XT_LOG_TCPSEQ, XT_LOG_UID
from ipgate.packet.build import build_icmp, build_ipv4, build_tcp, build_udp, tcp_segment
from ipgate.packet.ipv4 import IP_CE, IP_DF, IP_MF
from ipgate.packet.l4 import TH_ACK, TH_AE, TH_CWR, TH_ECE, TH_FIN, TH_PUSH, TH_RST, TH_SYN, TH_URG


def _a(s: str) -> int:
    return int(ipaddress.IPv4Address(s))


SND, DST, RTR_OUT = _a("192.0.2.1"), _a("198.51.100.9"), _a("198.51.100.1")
SND_MAC = bytes.fromhex("00005e005301")  # RFC 7042 documentation MACs
RTR_MAC = bytes.fromhex("00005e005302")
ETH_HDR = RTR_MAC + SND_MAC + b"\x08\x00"
SYN_OPTS = bytes.fromhex("020405b4010303070402080a0000000100000000")  # MSS, NOP, WS, SACK_PERM, TS
ALL_FLAGS = TH_AE | TH_CWR | TH_ECE | TH_URG | TH_ACK | TH_PUSH | TH_RST | TH_SYN | TH_FIN
ALL_LOG = XT_LOG_TCPSEQ | XT_LOG_TCPOPT | XT_LOG_IPOPT | XT_LOG_UID


def _raw(proto: int, payload: bytes, *, id: int = 0, frag_off: int = 0) -> bytes:
    return bytes(build_ipv4(SND, DST, proto, payload, id=id, frag_off=frag_off))


def _syn() -> bytes:
    return bytes(build_tcp(SND, DST, 40000, 80, seq=1, flags=TH_SYN, window=64240, options=SYN_OPTS,
                           id=54321, frag_off=IP_DF))


def _all_flags() -> bytes:
    """Every TCP flag, the AE bit and all reserved bits (byte 12's low nibble)."""
    seg = tcp_segment(SND, DST, 1, 2, b"x", seq=4294967295, ack_seq=7, flags=ALL_FLAGS, window=1234, urg_ptr=5)
    seg[12] |= 0x0F
    return bytes(build_ipv4(SND, DST, 6, seg, id=2, frag_off=IP_CE))


def _udp_probe() -> bytes:
    """A UDP datagram 198.51.100.9 -> 192.0.2.1, as an ICMP error would quote it."""
    return bytes(build_udp(DST, SND, 5353, 33434, b"probe", id=77))


def _quote(inner: bytes, itype: int, code: int, un: int = 0, nbytes: int | None = None) -> bytes:
    return bytes(build_icmp(SND, DST, itype, code, un, inner[:nbytes], id=itype << 8 | code))


BASE = "SRC=192.0.2.1 DST=198.51.100.9 "


# -- unit cases ---------------------------------------------------------------------------------
def test_syn_line_with_raw_mac() -> None:
    line = log_packet_line("ipgt: ", 0, "eth0", "", _syn(), mac=ETH_HDR)
    assert line == ("ipgt: IN=eth0 OUT= MAC=00:00:5e:00:53:02:00:00:5e:00:53:01:08:00 " + BASE +
                    "LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=54321 DF PROTO=TCP SPT=40000 DPT=80 "
                    "WINDOW=64240 RES=0x00 SYN URGP=0 ")


def test_tcp_sequence_and_options() -> None:
    line = log_packet_line("", XT_LOG_TCPSEQ | XT_LOG_TCPOPT, "", "eth1", _syn())
    assert line == ("IN= OUT=eth1 " + BASE + "LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=54321 DF PROTO=TCP "
                    "SPT=40000 DPT=80 SEQ=1 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 "
                    "OPT (020405B4010303070402080A0000000100000000) ")


def test_all_tcp_flags_reserved_bits_and_ce() -> None:
    line = log_packet_line("", XT_LOG_TCPSEQ, "", "o", _all_flags(), mark=0x2A)
    assert line.endswith("ID=2 CE PROTO=TCP SPT=1 DPT=2 SEQ=4294967295 ACK=7 WINDOW=1234 RES=0x38 "
                         "AE CWR ECE URG ACK PSH RST SYN FIN URGP=5 MARK=0x2a ")


def test_macdecode_and_device_without_hard_header() -> None:
    pkt = bytes(build_udp(SND, DST, 53, 53, b"", tos=0xB9, ttl=1))
    tail = BASE + "LEN=28 TOS=0x18 PREC=0xA0 TTL=1 ID=0 PROTO=UDP SPT=53 DPT=53 LEN=8 "
    assert log_packet_line("p ", XT_LOG_MACDECODE, "veth0", "", pkt, mac=ETH_HDR) == (
        "p IN=veth0 OUT= MACSRC=00:00:5e:00:53:01 MACDST=00:00:5e:00:53:02 MACPROTO=0800 " + tail)
    assert log_packet_line("p ", XT_LOG_MACDECODE, "tun0", "", pkt) == "p IN=tun0 OUT= MAC= " + tail
    assert log_packet_line("p ", 0, "lo", "", pkt, mac=bytes(12) + b"\x08\x00") == (
        "p IN=lo OUT= MAC=00:00:00:00:00:00:00:00:00:00:00:00:08:00 " + tail)


def test_fragments_print_no_transport_fields() -> None:
    frag = _raw(6, b"\x00" * 16, id=9, frag_off=IP_MF | 185)
    assert log_packet_line("", ALL_LOG, "", "", frag, mark=1).endswith(
        "ID=9 MF FRAG:185 PROTO=TCP MARK=0x1 ")
    assert log_packet_line("", 0, "", "", _raw(17, b"ab", frag_off=3)).endswith("FRAG:3 PROTO=UDP ")
    assert log_packet_line("", 0, "", "", _raw(1, b"ab", frag_off=3)).endswith("FRAG:3 PROTO=ICMP ")
    assert log_packet_line("", 0, "", "", _raw(50, b"ab", frag_off=3)).endswith("FRAG:3 PROTO=ESP ")
    # AH tests the offset before naming itself.
    assert log_packet_line("", 0, "", "", _raw(51, b"ab", frag_off=3)).endswith("ID=0 FRAG:3 ")


def test_ip_options_only_with_the_flag() -> None:
    pkt = bytes(build_udp(SND, DST, 1, 2, ip_options=b"\x01\x07\x07\x04\x00\x00\x00\x00"))
    assert "OPT (0107070400000000) PROTO=UDP" in log_packet_line("", XT_LOG_IPOPT, "", "", pkt)
    assert "OPT" not in log_packet_line("", XT_LOG_TCPOPT, "", "", pkt)


def test_truncated_transport_headers_end_the_line() -> None:
    # INCOMPLETE from TCP/UDP returns before MARK; ICMP's breaks and MARK follows.
    assert log_packet_line("", 0, "", "", _raw(6, b"abcd"), mark=5).endswith("PROTO=TCP INCOMPLETE [4 bytes] ")
    assert log_packet_line("", 0, "", "", _raw(17, b"ab"), mark=5).endswith("PROTO=UDP INCOMPLETE [2 bytes] ")
    assert log_packet_line("", 0, "", "", _raw(1, b"abc"), mark=5).endswith(
        "PROTO=ICMP INCOMPLETE [3 bytes] MARK=0x5 ")
    seg = bytearray(tcp_segment(SND, DST, 1, 2, flags=TH_ACK))
    seg[12] = 0xF0  # doff 15, no options present
    short_opts = _raw(6, bytes(seg))
    assert log_packet_line("", XT_LOG_TCPOPT, "", "", short_opts, mark=5).endswith("URGP=0 OPT (TRUNCATED)")
    assert log_packet_line("", 0, "", "", short_opts, mark=5).endswith("URGP=0 MARK=0x5 ")
    assert log_packet_line("x", 0, "", "", b"\x45\x00") == "xIN= OUT= TRUNCATED"


def test_icmp_type_fields() -> None:
    def tail(pkt: bytes) -> str:
        return log_packet_line("", 0, "", "", pkt).split(" PROTO=ICMP ", 1)[1]

    assert tail(bytes(build_icmp(SND, DST, 8, 0, 0x1234_0007))) == "TYPE=8 CODE=0 ID=4660 SEQ=7 "
    assert tail(bytes(build_icmp(SND, DST, 0, 0, 0x0001_0002))) == "TYPE=0 CODE=0 ID=1 SEQ=2 "
    probe = _udp_probe()
    assert tail(_quote(probe, 12, 0, 20 << 24)) == "TYPE=12 CODE=0 PARAMETER=20 "
    inner = "SRC=198.51.100.9 DST=192.0.2.1 LEN=33 TOS=0x00 PREC=0x00 TTL=64 ID=77 PROTO=UDP SPT=5353 DPT=33434 LEN=13"
    assert tail(_quote(probe, 3, 3)) == f"TYPE=3 CODE=3 [{inner} ] "
    assert tail(_quote(probe, 3, 4, 1280)) == f"TYPE=3 CODE=4 [{inner} ] MTU=1280 "
    assert tail(_quote(probe, 5, 1, _a("192.0.2.254"))) == f"TYPE=5 CODE=1 GATEWAY=192.0.2.254 [{inner} ] "
    assert tail(_quote(probe, 11, 0)) == f"TYPE=11 CODE=0 [{inner} ] "
    assert tail(_quote(probe, 4, 0)) == f"TYPE=4 CODE=0 [{inner} ] "
    assert tail(bytes(build_icmp(SND, DST, 13, 0))) == "TYPE=13 CODE=0 INCOMPLETE [8 bytes] "
    assert tail(_quote(probe, 3, 1, nbytes=10)) == "TYPE=3 CODE=1 INCOMPLETE [18 bytes] "
    assert tail(bytes(build_icmp(SND, DST, 40, 9))) == "TYPE=40 CODE=9 "


def test_quoted_packet_recurses_once_and_skips_uid_mark() -> None:
    echo = bytes(build_icmp(DST, SND, 8, 0, 0x0005_0006, b"x", id=3))
    quoted_echo = _quote(_quote(echo, 11, 0), 3, 1)  # an error quoting an error quoting an echo
    line = log_packet_line("", ALL_LOG, "", "", quoted_echo, mark=7, uid_gid=(1, 2))
    assert line.endswith("PROTO=ICMP TYPE=3 CODE=1 [SRC=192.0.2.1 DST=198.51.100.9 LEN=57 TOS=0x00 "
                         "PREC=0x00 TTL=64 ID=2816 PROTO=ICMP TYPE=11 CODE=0 ] UID=1 GID=2 MARK=0x7 ")


def test_quoted_header_overshooting_the_packet() -> None:
    inner = bytearray(_udp_probe()[:20])
    inner[0], inner[9] = 0x4F, 6  # ihl 15 but no options, TCP
    pkt = _quote(bytes(inner), 3, 3)
    # Without --log-ip-options the TCP offset lies beyond skb->len: unsigned wrap.
    assert "PROTO=TCP INCOMPLETE [4294967256 bytes] ] " in log_packet_line("", 0, "", "", pkt)
    assert log_packet_line("", XT_LOG_IPOPT, "", "", pkt).endswith("ID=77 TRUNCATED] ")


def test_ipsec_and_other_protocols() -> None:
    assert log_packet_line("", 0, "", "", _raw(51, bytes(4) + b"\xde\xad\xbe\xef" + bytes(4))).endswith(
        "PROTO=AH SPI=0xdeadbeef ")
    assert log_packet_line("", 0, "", "", _raw(50, b"\x00\x00\x01\x00" + bytes(4))).endswith(
        "PROTO=ESP SPI=0x100 ")
    assert log_packet_line("", 0, "", "", _raw(50, b"\x00\x00")).endswith("PROTO=ESP INCOMPLETE [2 bytes] ")
    assert log_packet_line("", 0, "", "", _raw(136, b"\x00\x01\x00\x02\x00\x08\x00\x00")).endswith(
        "PROTO=UDPLITE SPT=1 DPT=2 LEN=8 ")
    assert log_packet_line("", 0, "", "", _raw(47, b"\x00" * 4), mark=0xFFFFFFFF).endswith(
        "PROTO=47 MARK=0xffffffff ")


def test_uid_needs_flag_and_socket() -> None:
    pkt = bytes(build_udp(SND, DST, 1, 2))
    assert log_packet_line("", XT_LOG_UID, "", "", pkt, uid_gid=(0, 0)).endswith("LEN=8 UID=0 GID=0 ")
    assert log_packet_line("", 0, "", "", pkt, uid_gid=(0, 0)).endswith("LEN=8 ")
    assert log_packet_line("", XT_LOG_UID, "", "", pkt).endswith("LEN=8 ")


def test_nf_log_buf_overflow_keeps_the_head() -> None:
    line = log_packet_line("p" * 2000, 0, "", "", _syn())
    assert line == "p" * NF_LOG_TEXT_MAX


def test_kmsg_priority() -> None:
    assert [kmsg_priority(n) for n in (0, 4, 7)] == ["<0>", "<4>", "<7>"]
    with pytest.raises(ValueError):
        kmsg_priority(8)


# -- the kernel as oracle -----------------------------------------------------------------------
def _kernel_cases() -> list[bytes]:
    """IP packets 192.0.2.1 -> 198.51.100.9 that the router forwards unchanged but for the TTL."""
    probe = _udp_probe()
    echo = bytes(build_icmp(DST, SND, 8, 0, 0x0005_0006, b"x", id=3))
    tcp_probe = bytes(build_tcp(DST, SND, 80, 40000, b"data", flags=TH_ACK | TH_PUSH, seq=99, id=78,
                                ip_options=b"\x01\x01\x01\x00"))
    seg = bytearray(tcp_segment(SND, DST, 1, 2, flags=TH_ACK))
    seg[12] = 0xF0
    overshoot = bytearray(probe[:20])
    overshoot[0], overshoot[9] = 0x4F, 6
    ihl0 = bytearray(probe[:28])
    ihl0[0] = 0x40
    return [
        _syn(),
        _all_flags(),
        bytes(build_udp(SND, DST, 5353, 53, b"query", tos=0xB9, id=10)),
        bytes(build_icmp(SND, DST, 8, 0, 0x1234_0007, b"ping", id=11)),
        bytes(build_icmp(SND, DST, 0, 0, 0x1234_0007, id=12)),
        _quote(probe, 3, 3),
        _quote(tcp_probe, 3, 4, 1280, nbytes=32),  # quoted TCP header cut after 8 bytes
        _quote(tcp_probe, 11, 0),
        _quote(echo, 5, 1, _a("192.0.2.254")),
        _quote(probe, 12, 0, 20 << 24),
        _quote(_quote(echo, 11, 0), 3, 1),
        bytes(build_icmp(SND, DST, 13, 0, id=13)),
        _quote(probe, 3, 1, nbytes=10),
        bytes(build_icmp(SND, DST, 40, 9, id=14)),
        bytes(build_udp(SND, DST, 7, 9, b"y" * 32, id=15, frag_off=IP_MF)),
        _raw(17, b"z" * 24, id=16, frag_off=185),
        _raw(6, b"z" * 24, id=17, frag_off=IP_MF | 3),
        _raw(1, b"z" * 24, id=18, frag_off=7),
        _raw(51, b"z" * 24, id=19, frag_off=2),
        bytes(build_udp(SND, DST, 1, 2, b"opt", id=20, ip_options=b"\x01\x07\x07\x04\x00\x00\x00\x00")),
        _raw(6, b"abcd", id=21),
        _raw(17, b"abcdef", id=22),
        _raw(6, bytes(seg), id=23),
        _raw(47, b"\x00\x00\x08\x00", id=24),
        _raw(51, b"\x04\x01\x00\x00\xde\xad\xbe\xef" + bytes(8), id=25),
        _raw(50, b"\x00\x00\x01\x00\x00\x00\x00\x01payload", id=26),
        _raw(50, b"\x00\x00", id=27),
        _raw(136, b"\x00\x01\x00\x02\x00\x08\x00\x00", id=28),
        _quote(bytes(overshoot), 3, 3),
        _quote(bytes(ihl0), 11, 0),
    ]


def _local_cases() -> list[bytes]:
    """Sent from a raw socket in the router itself: OUTPUT, with a socket owner for --log-uid."""
    return [bytes(build_udp(RTR_OUT, DST, 4000, 4001, b"local", id=30)),
            bytes(build_tcp(RTR_OUT, DST, 4002, 4003, flags=TH_SYN, options=SYN_OPTS, id=31))]


@dataclass(frozen=True)
class _LogRule:
    tag: str
    table: str
    chain: str
    match: str
    level: int
    logflags: int


_FLAG_OPTS = ((XT_LOG_TCPSEQ, "--log-tcp-sequence"), (XT_LOG_TCPOPT, "--log-tcp-options"),
              (XT_LOG_IPOPT, "--log-ip-options"), (XT_LOG_UID, "--log-uid"), (XT_LOG_MACDECODE, "--log-macdecode"))
_RULES = (
    _LogRule("a", "raw", "PREROUTING", "-i r0", 4, 0),
    _LogRule("b", "raw", "PREROUTING", "-i r0", 6, ALL_LOG),
    _LogRule("c", "raw", "PREROUTING", "-i r0", 7, XT_LOG_MACDECODE),
    _LogRule("f", "filter", "FORWARD", "-i r0", 5, XT_LOG_TCPOPT | XT_LOG_IPOPT),
    _LogRule("o", "filter", "OUTPUT", "-o d0", 3, ALL_LOG),
)
FWD_MARK = 0x2A
_SENDER = r"""
import json, socket, sys
job = json.load(sys.stdin)
if job["ifname"]:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((job["ifname"], 0))
    for h in job["frames"]:
        s.send(bytes.fromhex(h))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for h in job["frames"]:
        b = bytes.fromhex(h)
        s.sendto(b, (socket.inet_ntoa(b[16:20]), 0))
s.close()
"""
_NF_LOG_ALL_NETNS = "/proc/sys/net/netfilter/nf_log_all_netns"


def _run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=10, check=False)


def _must(*argv: str, stdin: str | None = None) -> None:
    p = _run(*argv, stdin=stdin)
    assert p.returncode == 0, f"{' '.join(argv)}: {p.stderr.strip()}"


def _skip_reason() -> str:
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "iptables-legacy"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not os.path.exists(_NF_LOG_ALL_NETNS) or not os.access("/dev/kmsg", os.R_OK):
        return "no nf_log_all_netns sysctl or /dev/kmsg"
    return ""


@contextmanager
def _lab(token: str) -> Iterator[tuple[str, str]]:
    """A sender namespace joined by veth to a router forwarding 198.51.100.0/24 out of d0; always deleted."""
    snd, rtr = f"ipgt-s-{token}", f"ipgt-r-{token}"
    made: list[str] = []
    try:
        for ns in (snd, rtr):
            _must("ip", "netns", "add", ns)
            made.append(ns)
            _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                 "net.ipv6.conf.default.disable_ipv6=1")
        _must("ip", "-n", snd, "link", "add", "s0", "address", SND_MAC.hex(":"), "type", "veth", "peer", "name",
              "r0", "address", RTR_MAC.hex(":"), "netns", rtr)
        # d0: the way out (NOARP: no neighbour to resolve); its peer idles in the sender.
        _must("ip", "-n", rtr, "link", "add", "d0", "type", "veth", "peer", "name", "d1", "netns", snd)
        _must("ip", "-n", rtr, "link", "set", "d0", "arp", "off")
        _must("ip", "-n", rtr, "addr", "add", "192.0.2.2/24", "dev", "r0")
        _must("ip", "-n", rtr, "addr", "add", "198.51.100.1/24", "dev", "d0")
        for ns, dev in ((snd, "s0"), (snd, "d1"), (rtr, "r0"), (rtr, "d0")):
            _must("ip", "-n", ns, "link", "set", dev, "up")
        _must("ip", "netns", "exec", rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
              "net.ipv4.conf.r0.rp_filter=0")
        deadline = time.monotonic() + 3
        for _ in range(60):  # the veth qdiscs start with the carrier (linkwatch)
            if all("state UP" in _run("ip", "-n", ns, "-o", "link", "show", dev).stdout
                   for ns, dev in ((snd, "s0"), (rtr, "r0"))) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        yield snd, rtr
    finally:
        for ns in made:
            _run("ip", "netns", "del", ns)


def _add_rules(rtr: str, tag: str) -> None:
    _must("ip", "netns", "exec", rtr, "iptables-legacy", "-t", "mangle", "-A", "PREROUTING", "-i", "r0",
          "-j", "MARK", "--set-mark", hex(FWD_MARK))
    for r in _RULES:
        opts = [o for bit, o in _FLAG_OPTS if r.logflags & bit]
        _must("ip", "netns", "exec", rtr, "iptables-legacy", "-t", r.table, "-A", r.chain, *r.match.split(),
              "-j", "LOG", "--log-prefix", f"{tag}{r.tag}: ", "--log-level", str(r.level), *opts)


def _send(ns: str, ifname: str, frames: list[bytes]) -> None:
    job = json.dumps({"ifname": ifname, "frames": [f.hex() for f in frames]})
    _must("ip", "netns", "exec", ns, sys.executable, "-c", _SENDER, stdin=job)


def _read_kmsg(fd: int, tag: str, want: int, seconds: float) -> list[tuple[str, str]]:
    """(priority, message) of the /dev/kmsg records carrying our prefix, until `want` or the deadline."""
    got: list[tuple[str, str]] = []
    deadline = time.monotonic() + seconds
    for _ in range(100_000):
        if len(got) >= want or time.monotonic() > deadline:
            break
        try:
            rec = os.read(fd, 8192).decode(errors="replace")
        except BlockingIOError:
            time.sleep(0.02)
            continue
        except OSError as e:  # EPIPE: records overwritten while we read; go on
            if e.errno != errno.EPIPE:
                raise
            continue
        head, _, body = rec.partition(";")
        text = re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), body.split("\n", 1)[0])
        if text.startswith(tag):
            got.append((f"<{int(head.split(',')[0]) & 7}>", text))
    return got


def _as_forwarded(pkt: bytes) -> bytes:
    """The packet as the FORWARD hook sees it: ip_forward() has decremented the TTL, and
    ip_options_compile() (from ip_rcv_options()) has written the receiving address,
    192.0.2.2, into the next Record Route slot."""
    b = bytearray(pkt)
    b[8] -= 1
    i, end = 20, (b[0] & 0x0F) * 4
    for _ in range(40):
        if i >= end or b[i] == 0:
            break
        if b[i] == 1:
            i += 1
            continue
        optlen, ptr = b[i + 1], b[i + 2]
        if b[i] == 7 and ptr + 3 <= optlen:
            b[i + ptr - 1:i + ptr + 3] = bytes([192, 0, 2, 2])
            b[i + 2] = ptr + 4
        i += max(optlen, 2)
    return bytes(b)


def _expected(tag: str, cases: list[bytes], local: list[bytes]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for r in _RULES:
        prefix, pri = f"{tag}{r.tag}: ", kmsg_priority(r.level)
        for pkt in cases if r.chain != "OUTPUT" else local:
            if r.chain == "PREROUTING":
                line = log_packet_line(prefix, r.logflags, "r0", "", pkt, mac=ETH_HDR)
            elif r.chain == "FORWARD":
                line = log_packet_line(prefix, r.logflags, "r0", "d0", _as_forwarded(pkt), mac=ETH_HDR,
                                       mark=FWD_MARK)
            else:
                line = log_packet_line(prefix, r.logflags, "", "d0", pkt, uid_gid=(os.geteuid(), os.getegid()))
            out.append((pri, line))
    return out


@pytest.mark.netns
def test_kernel_log_lines_match() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    token = secrets.token_hex(4)
    tag = f"ipgt-{token}"
    cases, local = _kernel_cases(), _local_cases()
    with open(_NF_LOG_ALL_NETNS) as f:
        saved = f.read().strip()
    try:  # a global sysctl: writable only from the initial network namespace
        with open(_NF_LOG_ALL_NETNS, "w") as f:
            f.write("1")
    except OSError as e:
        pytest.skip(f"cannot set nf_log_all_netns: {e}")
    fd = -1
    try:
        with _lab(token) as (snd, rtr):
            _add_rules(rtr, tag)
            fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(fd, 0, os.SEEK_END)
            _send(snd, "s0", [ETH_HDR + p for p in cases])
            _send(rtr, "", local)
            want = _expected(tag, cases, local)
            got = _read_kmsg(fd, tag, len(want), 5.0)
    finally:
        if fd >= 0:
            os.close(fd)
        with open(_NF_LOG_ALL_NETNS, "w") as f:
            f.write(saved)
    missing = sorted((Counter(want) - Counter(got)).elements())
    extra = sorted((Counter(got) - Counter(want)).elements())
    assert not missing and not extra, (f"{len(got)} kernel lines, {len(want)} expected\nkernel only:\n" +
                                       "\n".join(map(str, extra)) + "\nipgate only:\n" +
                                       "\n".join(map(str, missing)))
