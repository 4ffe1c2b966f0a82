"""`conntrack` and /proc/net/nf_conntrack against conntrack-tools 1.4.7 on Linux 6.18.

The expected texts were captured from the real tool (see the module docstring of
commands/conntrack.py); the netns test replays the same packets through a
router namespace and compares both tools' answers to the same command lines.
"""

from __future__ import annotations

import random
import subprocess
import time

import pytest

from ipgate.commands.base import Output
from ipgate.commands.conntrack import conntrack, proc_nf_conntrack
from ipgate.conntrack.conn import NF_ACCEPT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING, Conn
from ipgate.inet import aton
from ipgate.nat.core import (
    NF_NAT_RANGE_MAP_IPS,
    NF_NAT_RANGE_PROTO_SPECIFIED,
    ManipType,
    NatRange2,
    nf_nat_inet_fn,
    nf_nat_setup_info,
)

from . import kernel
from .helpers import Harness
from .pkts import ACK, FIN, PSH, SYN, icmp, raw, tcp, udp

A, B = "192.0.2.1", "192.0.2.2"
SYN_OPTS = b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + b"\0" * 8 + b"\x01\x03\x03\x07"  # 20 bytes: a 60-byte SYN

# Captured: `conntrack -L` after a UDP exchange, a short TCP connection and an unanswered datagram.
CAPTURED_L = """\
udp      17 29 src=192.0.2.1 dst=192.0.2.2 sport=40001 dport=5353 src=192.0.2.2 dst=192.0.2.1 sport=5353 dport=40001 mark=0 use=1
tcp      6 119 TIME_WAIT src=192.0.2.1 dst=192.0.2.2 sport=40003 dport=8080 src=192.0.2.2 dst=192.0.2.1 sport=8080 dport=40003 [ASSURED] mark=0 use=1
udp      17 29 src=192.0.2.1 dst=192.0.2.2 sport=40002 dport=5354 [UNREPLIED] src=192.0.2.2 dst=192.0.2.1 sport=5354 dport=40002 mark=0 use=1
"""  # noqa: E501
CAPTURED_PROC_LINE = ("ipv4     2 udp      17 29 src=192.0.2.1 dst=192.0.2.2 sport=40001 dport=5353 src=192.0.2.2 "
                      "dst=192.0.2.1 sport=5353 dport=40001 mark=0 zone=0 use=2")
# With nf_conntrack_acct=1, an SNAT rule to 192.0.2.1:7000 and a CONNMARK 42.
CAPTURED_ACCT = """\
tcp      6 119 SYN_SENT src=192.0.2.1 dst=192.0.2.2 sport=40012 dport=9999 packets=1 bytes=60 [UNREPLIED] src=192.0.2.2 dst=192.0.2.1 sport=9999 dport=40012 packets=0 bytes=0 mark=0 use=1
udp      17 29 src=192.0.2.1 dst=192.0.2.2 sport=40010 dport=6000 packets=1 bytes=30 [UNREPLIED] src=192.0.2.2 dst=192.0.2.1 sport=6000 dport=7000 packets=0 bytes=0 mark=0 use=1
icmp     1 29 src=192.0.2.1 dst=192.0.2.2 type=8 code=0 id=4660 packets=1 bytes=32 src=192.0.2.2 dst=192.0.2.1 type=0 code=0 id=4660 packets=1 bytes=32 mark=0 use=1
udp      17 29 src=192.0.2.1 dst=192.0.2.2 sport=40011 dport=6001 packets=1 bytes=30 [UNREPLIED] src=192.0.2.2 dst=192.0.2.1 sport=6001 dport=40011 packets=0 bytes=0 mark=42 use=1
"""  # noqa: E501
CAPTURED_OTHERS = """\
ipv4     2 gre      47 29 src=192.0.2.1 dst=192.0.2.2 srckey=0x0 dstkey=0x0 [UNREPLIED] src=192.0.2.2 dst=192.0.2.1 srckey=0x0 dstkey=0x0 mark=0 use=1
ipv4     2 unknown  253 599 src=192.0.2.1 dst=192.0.2.2 [UNREPLIED] src=192.0.2.2 dst=192.0.2.1 mark=0 use=1
ipv4     2 dccp     33 599 src=192.0.2.1 dst=192.0.2.2 sport=0 dport=0 [UNREPLIED] src=192.0.2.2 dst=192.0.2.1 sport=0 dport=0 mark=0 use=1
"""  # noqa: E501
CAPTURED_OTHERS_PROC = """\
ipv4     2 gre      47 29 timeout=30, stream_timeout=180 src=192.0.2.1 dst=192.0.2.2 srckey=0x0 dstkey=0x0 [UNREPLIED] src=192.0.2.2 dst=192.0.2.1 srckey=0x0 dstkey=0x0 mark=0 zone=0 use=2
ipv4     2 unknown  253 599 src=192.0.2.1 dst=192.0.2.2 [UNREPLIED] src=192.0.2.2 dst=192.0.2.1 mark=0 zone=0 use=2
ipv4     2 unknown  33 599 src=192.0.2.1 dst=192.0.2.2 [UNREPLIED] src=192.0.2.2 dst=192.0.2.1 mark=0 zone=0 use=2
"""  # noqa: E501
SUMMARY = "conntrack v1.4.7 (conntrack-tools): {} flow entries have been shown.\n"
TRY = "Try `conntrack -h' or 'conntrack --help' for more information.\n"


def run(h: Harness, *args: str, at: float = 0.5) -> tuple[str, str, int]:
    o = Output()
    rc = conntrack(h.table, list(args), o, h.now + at)
    return "".join(o.out), "".join(o.err), rc


def first_capture() -> Harness:
    h = Harness()
    h.send(udp(A, B, 40001, 5353, b"hi"))
    h.send(udp(B, A, 5353, 40001, b"hi"))
    for p in (tcp(A, B, 40003, 8080, SYN, seq=1), tcp(B, A, 8080, 40003, SYN | ACK, seq=50, ack=2),
              tcp(A, B, 40003, 8080, ACK, seq=2, ack=51),
              tcp(A, B, 40003, 8080, ACK | PSH, seq=2, ack=51, payload=b"q"),
              tcp(B, A, 8080, 40003, ACK | PSH, seq=51, ack=3, payload=b"x"),
              tcp(B, A, 8080, 40003, FIN | ACK, seq=52, ack=3), tcp(A, B, 40003, 8080, ACK, seq=3, ack=53),
              tcp(A, B, 40003, 8080, FIN | ACK, seq=3, ack=53), tcp(B, A, 8080, 40003, ACK, seq=53, ack=4)):
        h.send(p)
    h.send(udp(A, B, 40002, 5354, b"hi"))
    return h


def test_list_matches_the_real_output() -> None:
    h = first_capture()
    out, err, rc = run(h, "-L")
    assert (out, err, rc) == (CAPTURED_L, SUMMARY.format(3), 0)
    assert proc_nf_conntrack(h.table, h.now + 0.5).splitlines()[0] == CAPTURED_PROC_LINE


def test_accounting_nat_and_mark_match_the_real_output() -> None:
    h = Harness(acct=1)
    h.send(tcp(A, B, 40012, 9999, SYN, seq=1, opts=SYN_OPTS))
    r = h.table.nf_conntrack_in(udp(A, B, 40010, 6000, b"hi"), h.now)
    assert r.ct is not None
    to = NatRange2(NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED, aton(A), aton(A), 7000, 7000)
    assert nf_nat_setup_info(h.table, r.ct, to, ManipType.SRC, random.Random(0), h.now) == NF_ACCEPT
    h.table.confirm(r.ct, r.ctinfo, h.now)
    h.send(icmp(A, B, 8, ident=0x1234, seq=1, payload=b"abcd"))
    h.send(icmp(B, A, 0, ident=0x1234, seq=1, payload=b"abcd"))
    ct = h.send(udp(A, B, 40011, 6001, b"hi")).ct
    assert ct is not None
    ct.mark = 42
    out, err, rc = run(h, "-L")
    assert (out, err, rc) == (CAPTURED_ACCT, SUMMARY.format(4), 0)
    out, err, _ = run(h, "-L", "-d", "192.0.2.2", "-p", "udp", "--sport", "40010")
    assert out == CAPTURED_ACCT.splitlines(keepends=True)[1]
    assert run(h, "-L", "-m", "42")[0] == CAPTURED_ACCT.splitlines(keepends=True)[3]
    assert run(h, "-L", "-p", "icmp")[0] == CAPTURED_ACCT.splitlines(keepends=True)[2]


def test_other_protocols_and_extended_output() -> None:
    h = Harness()
    h.send(raw(A, B, 47, b"\x00\x00\x08\x00" + b"x" * 8))
    h.send(raw(A, B, 253))
    h.send(raw(A, B, 33))
    assert run(h, "-L", "-o", "extended") == (CAPTURED_OTHERS, SUMMARY.format(3), 0)
    assert proc_nf_conntrack(h.table, h.now + 0.5) == CAPTURED_OTHERS_PROC
    assert run(h, "-L", "-p", "253")[0] == CAPTURED_OTHERS.splitlines(keepends=True)[1][len("ipv4     2 "):]


def test_delete_flush_count() -> None:
    h = first_capture()
    assert run(h, "-C") == ("3\n", "", 0)
    out, err, rc = run(h, "-D", "-p", "udp", "--sport", "40002")
    assert out == CAPTURED_L.splitlines(keepends=True)[2]
    assert (err, rc) == ("conntrack v1.4.7 (conntrack-tools): 1 flow entries have been deleted.\n", 0)
    assert run(h, "-D", "-p", "udp", "--sport", "40009") == (
        "", "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n", 1)
    assert run(h, "-C")[0] == "2\n"
    assert run(h, "-F") == ("", "conntrack v1.4.7 (conntrack-tools): connection tracking table has been emptied.\n", 0)
    assert run(h, "-L") == ("", SUMMARY.format(0), 0)
    assert run(h, "-F", "expect")[1] == "conntrack v1.4.7 (conntrack-tools): expectation table has been emptied.\n"


def test_get() -> None:
    h = first_capture()
    out, err, rc = run(h, "-G", "-p", "udp", "-s", A, "-d", B, "--sport", "40002", "--dport", "5354")
    assert out == CAPTURED_L.splitlines(keepends=True)[2].replace("use=1", "use=2")
    assert (err, rc) == (SUMMARY.format(1), 0)
    assert run(h, "-G", "-p", "udp", "-s", A, "-d", B, "--sport", "40021", "--dport", "6020") == (
        "", "conntrack v1.4.7 (conntrack-tools): Operation failed: such conntrack doesn't exist\n", 1)


@pytest.mark.parametrize("args,message,status", [
    (["-L", "--sport", "40010"], "unknown option `--sport'", 2),
    (["-L", "-p", "foo"], "`foo' unsupported protocol", 2),
    (["-X"], "unknown option `-X'", 2),
    (["-C", "-p", "udp"], "Illegal option `--protonum' with this command", 2),
    (["-L", "-L"], "Invalid commands combination", 2),
    (["-F", "-p", "udp"], "Illegal option `--protonum' with this command", 2),
    (["-L", "-r", "192.0.2.0/24"], "CIDR notation unavailable for `--reply-src'", 2),
    (["-L", "-s"], "option `-s' requires an argument", 2),
    (["-L", "-p", "tcp", "--state", "FOO"], "unknown TCP state `FOO'", 2),
    (["-L", "--s", "1.2.3.4"], "unknown option `--s'", 2),
    (["-L", "foo"], "unknown type `foo'", 2),
    (["-L", "-p", "udp", "--state", "ESTABLISHED"], "unknown option `--state'", 2),
    (["-L", "-t", "10"], "Illegal option `--timeout' with this command", 2),
    (["-L", "-u", "FOO"], "Bad parameter `FOO'", 2),
    (["-L", "-o", "foo"], "Bad parameter `foo'", 2),
    (["-L", "-s", "192.0.2.1/33"], "Invalid netmask", 2),
    (["-L", "-s", "192.0.2.1/x"], "Invalid netmask", 2),
    (["-L", "-s", "192.0.2.1", "-s", "::1"], "mismatched address family", 2),
    (["-G", "-p", "udp", "-s", "192.0.2.1", "--sport", "1", "--dport", "2"],
     "you have to specify `--src' and `--dst'", 2),
    (["-G", "-p", "udp", "-s", "192.0.2.1", "-d", "192.0.2.2", "--sport", "1"],
     "you have to specify `--sport' and `--dport'", 2),
    (["-G", "-s", "192.0.2.1", "-d", "192.0.2.2"], "You need to supply the `--protonum' option for this command", 2),
    (["-p", "udp"], "Illegal option `--protonum' with this command", 2),
])
def test_errors_match_the_real_tool(args: list[str], message: str, status: int) -> None:
    out, err, rc = run(Harness(), *args)
    want = f"conntrack v1.4.7 (conntrack-tools): {message}\n" + (TRY if status == 2 else "")
    assert (out, err, rc) == ("", want, status)


def test_usage_version_and_odd_filters() -> None:
    h = first_capture()
    out, err, rc = run(h)
    assert out.startswith("Command line interface for the connection tracking system. Version 1.4.7\n")
    assert "  -r, --reply-src ip\t\tSource addres from reply direction\n" in out and rc == 0
    assert run(h, "-h")[0] == out
    assert run(h, "-V") == ("conntrack v1.4.7 (conntrack-tools)\n", "", 0)
    assert run(h, "-L", "-s", "1.2.3") == ("", SUMMARY.format(0), 0)  # inet_aton: 1.2.0.3
    assert run(h, "-L", "-s", "::1") == ("", SUMMARY.format(0), 0)
    assert run(h, "-L", "-f", "ipv6") == ("", SUMMARY.format(0), 0)
    assert run(h, "-L", "-p", "tcp", "--sport", "abc")[1] == SUMMARY.format(0)  # atoi(): port 0
    assert run(h, "-L", "--proto", "udp")[1] == SUMMARY.format(2)  # unambiguous prefix
    assert run(h, "-L", "-u", "ASSURED")[1] == SUMMARY.format(1)
    assert run(h, "-L", "-u", "UNREPLIED")[0] == CAPTURED_L.splitlines(keepends=True)[2]
    assert run(h, "-L", "-w", "1")[1] == SUMMARY.format(0)
    assert run(h, "-L", "-c", "5")[1] == SUMMARY.format(0)
    assert run(h, "-L", "-s", "192.0.2.0/24")[1] == SUMMARY.format(3)
    assert run(h, "-L", "-p", "tcp", "--state", "TIME_WAIT")[1] == SUMMARY.format(1)
    out, err, rc = run(h, "-L", "-a", "1")
    assert err.startswith("WARNING: ignoring -a, deprecated option.\n") and rc == 0
    assert run(h, "-L", "dying") == ("", SUMMARY.format(0), 0)
    assert run(h, "-L", "expect") == ("", "conntrack v1.4.7 (conntrack-tools): 0 expectations have been shown.\n", 0)
    assert run(h, "-S")[0].startswith("cpu=0   \tfound=")


# -- live ---------------------------------------------------------------------

LIVE_COMMANDS = [
    ["-L"], ["-L", "-o", "extended"], ["-L", "-p", "udp"], ["-L", "-p", "tcp", "--dport", "8080"],
    ["-L", "-s", "192.0.2.1"], ["-L", "-d", "198.51.100.2", "-p", "udp", "--sport", "40010"], ["-L", "-n"],
    ["-L", "-u", "ASSURED"], ["-L", "-u", "UNREPLIED"], ["-L", "-p", "icmp", "--icmp-type", "8"],
    ["-L", "-p", "tcp", "--state", "ESTABLISHED"], ["-L", "-r", "198.51.100.2"], ["-L", "-q", "203.0.113.1"],
    ["-L", "-m", "0"], ["-L", "-g"], ["-L", "-j"], ["-C"], ["-L", "-p", "gre"], ["-L", "-p", "dccp"],
    ["-L", "-p", "tcp", "-p", "udp"], ["-D", "-p", "udp", "--sport", "40011"], ["-L"],
]


def live_packets() -> list[tuple[bool, bytes]]:
    C, S = "192.0.2.1", "198.51.100.2"
    return [
        (True, udp(C, S, 40001, 5353, b"q")), (False, udp(S, C, 5353, 40001, b"a")),
        (True, udp(C, S, 40010, 6000, b"hi")), (True, udp(C, S, 40011, 6001, b"hi")),
        (True, tcp(C, S, 40003, 8080, SYN, seq=1)), (False, tcp(S, C, 8080, 40003, SYN | ACK, seq=50, ack=2)),
        (True, tcp(C, S, 40003, 8080, ACK, seq=2, ack=51)), (True, tcp(C, S, 40004, 9999, SYN, seq=9)),
        (True, icmp(C, S, 8, ident=0x1234, seq=1)), (False, icmp(S, C, 0, ident=0x1234, seq=1)),
        (True, raw(C, S, 47, b"\x00\x00\x08\x00" + b"x" * 8)), (True, raw(C, S, 253)), (True, raw(C, S, 33)),
    ]


def _norm(text: str) -> list[str]:
    """Order-free, and the timeout field rounded to tens (the kernel's clock runs on)."""
    out = []
    for line in text.splitlines():
        f = line.split(" ")
        for i, w in enumerate(f):
            if w.isdigit() and i > 0 and (f[i - 1].isdigit() and f[i - 1] in ("1", "6", "17", "33", "47", "253")):
                f[i] = str((int(w) + 5) // 10 * 10)
                break
        out.append(" ".join(x for x in f if x))
    return sorted(out)


@pytest.mark.netns
def test_same_answers_as_the_live_tool() -> None:
    ok, why = kernel.usable()
    if not ok:
        pytest.skip(why)
    ns = kernel.Netns("cmd")
    h = Harness(acct=1)
    try:
        ns.router("sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")
        ns.router("iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-o", "rs", "-p", "udp", "--dport", "6000",
                  "-j", "SNAT", "--to-source", "192.0.2.254:7000")
        rng = random.Random(0)
        to = NatRange2(NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED, aton("192.0.2.254"), aton("192.0.2.254"),
                       7000, 7000)

        def no_rules(ct: Conn, maniptype: ManipType) -> int:
            return NF_ACCEPT

        def snat_6000(ct: Conn, maniptype: ManipType) -> int:
            if ct.orig.proto == 17 and ct.orig.dport == 6000:
                return nf_nat_setup_info(h.table, ct, to, maniptype, rng, h.now)
            return NF_ACCEPT

        # With a nat table loaded every new connection gets null bindings at the NAT hooks,
        # as the kernel's nf_nat_inet_fn() gives them (libnetfilter_conntrack's -n/-g look at those bits).
        for from_client, pkt in live_packets():
            ns.send(from_client, pkt)
            r = h.table.nf_conntrack_in(pkt, h.now)
            nf_nat_inet_fn(h.table, r.ct, r.ctinfo, NF_INET_PRE_ROUTING, no_rules, rng, h.now)
            nf_nat_inet_fn(h.table, r.ct, r.ctinfo, NF_INET_POST_ROUTING, snat_6000, rng, h.now)
            h.table.confirm(r.ct, r.ctinfo, h.now)
        time.sleep(0.05)
        for args in LIVE_COMMANDS:
            real = subprocess.run(("ip", "netns", "exec", ns.r, "conntrack", *args), capture_output=True, text=True,
                                  timeout=20)
            out, err, rc = run(h, *args)
            assert (_norm(out), err, rc) == (_norm(real.stdout), real.stderr, real.returncode), args
        with open("/proc/self/net/nf_conntrack") as f:
            real_proc = f.read()
        assert _norm(proc_nf_conntrack(h.table, h.now + 0.5)) == _norm(real_proc)
    finally:
        ns.close()
