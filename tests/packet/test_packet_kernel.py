"""Reassembly against the running kernel: the same fragments sent over `lo`
in a fresh network namespace (unshare -n), delivered to a UDP socket or not.

Each scenario is a list of fragments of one UDP datagram (127.0.0.1 to
itself); the kernel reassembles them in ip_local_deliver() -> ip_defrag().
ipgate's Defrag must deliver the same datagrams and drop the same ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from ipgate.packet.build import build_ipv4, build_udp
from ipgate.packet.frag import Defrag, Reassembled
from ipgate.packet.ipv4 import IP_MF, IPv4, parse_ipv4

pytestmark = pytest.mark.netns

LO = 0x7F000001

CHILD = r"""
import json, select, socket, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
scenarios = json.load(sys.stdin)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
out = []
for sc in scenarios:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", sc["port"]))
    for f in sc["frags"]:
        raw.sendto(bytes.fromhex(f), ("127.0.0.1", 0))
    r, _, _ = select.select([u], [], [], 0.2)
    out.append(u.recv(70000).hex() if r else None)
    u.close()
json.dump(out, sys.stdout)
"""


def datagram(port: int, size: int, ident: int, tos: int = 0) -> bytearray:
    payload = bytes((i * 7 + port) & 0xFF for i in range(size))
    return build_udp(LO, LO, 9, port, payload, id=ident, tos=tos)


def frag(pkt: bytes, offset: int, length: int, mf: bool, tos: int | None = None) -> bytearray:
    ip = parse_ipv4(pkt)
    assert isinstance(ip, IPv4)
    return build_ipv4(LO, LO, 17, bytes(pkt[20 + offset:20 + offset + length]), id=ip.id,
                      tos=ip.tos if tos is None else tos, frag_off=(offset >> 3) | (IP_MF if mf else 0))


def scenarios() -> list[tuple[str, int, list[bytearray]]]:
    out: list[tuple[str, int, list[bytearray]]] = []

    def add(name: str, size: int, make: object, tos: int = 0) -> None:
        port = 40000 + len(out)
        pkt = datagram(port, size, 0x100 + len(out), tos)
        out.append((name, port, make(pkt)))  # type: ignore[operator]

    add("in order", 3000, lambda p: [frag(p, 0, 1480, True), frag(p, 1480, 1480, True), frag(p, 2960, 48, False)])
    add("reversed", 3000, lambda p: [frag(p, 2960, 48, False), frag(p, 1480, 1480, True), frag(p, 0, 1480, True)])
    add("duplicate", 3000, lambda p: [frag(p, 0, 1480, True), frag(p, 0, 1480, True), frag(p, 1480, 1528, False)])
    add("overlap", 3000, lambda p: [frag(p, 0, 1480, True), frag(p, 1472, 16, True), frag(p, 1480, 1528, False)])
    add("dup in one run", 100, lambda p: [frag(p, 0, 16, True), frag(p, 16, 16, True), frag(p, 0, 32, True),
                                          frag(p, 32, 76, False)])
    add("across two runs", 100, lambda p: [frag(p, 16, 16, True), frag(p, 0, 16, True), frag(p, 0, 32, True),
                                           frag(p, 32, 76, False)])
    add("two last fragments", 100, lambda p: [frag(p, 48, 60, False), frag(p, 48, 52, False),
                                              frag(p, 0, 48, True)])
    add("trimmed to 8", 100, lambda p: [frag(p, 0, 21, True), frag(p, 16, 92, False)])
    add("empty fragment", 100, lambda p: [frag(p, 0, 7, True), frag(p, 0, 48, True), frag(p, 48, 60, False)])
    add("CE with ECT(0)", 100, lambda p: [frag(p, 0, 48, True, tos=3), frag(p, 48, 60, False, tos=2)], tos=2)
    add("CE with Not-ECT", 100, lambda p: [frag(p, 0, 48, True, tos=3), frag(p, 48, 60, False, tos=0)])
    add("data past the last", 100, lambda p: [frag(p, 48, 60, False), frag(p, 104, 8, True), frag(p, 0, 48, True)])
    return out


def ipgate_delivers(frags: list[bytearray]) -> bytes | None:
    d = Defrag()
    for f in frags:
        r = d.add(f, 0.0)
        if isinstance(r, Reassembled):
            ip = parse_ipv4(r.packet)
            assert isinstance(ip, IPv4)
            return bytes(r.packet[ip.ihl + 8:ip.end])
    return None


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_reassembly_matches_the_kernel() -> None:
    cases = scenarios()
    payload = json.dumps([{"port": port, "frags": [bytes(f).hex() for f in fs]} for _n, port, fs in cases])
    try:
        r = subprocess.run(["unshare", "-n", sys.executable, "-c", CHILD], input=payload, capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"unshare -n unusable: {e}")
    if r.returncode != 0:
        pytest.skip(f"unshare -n failed: {r.stderr.strip()[-300:]}")
    kernel = json.loads(r.stdout)
    table = []
    for (name, _port, frags), k in zip(cases, kernel, strict=True):
        ours = ipgate_delivers(frags)
        table.append((name, k is not None, ours is not None))
        assert (None if ours is None else ours.hex()) == k, (name, table)
    # the scenarios do tell delivered from dropped
    assert {t[1] for t in table} == {True, False}


ICMP_CHILD = r"""
import json, select, socket, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
cases = json.load(sys.stdin)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
out = []
for c in cases:
    raw.sendto(bytes.fromhex(c), ("127.0.0.1", 0))
    r, _, _ = select.select([icmp], [], [], 0.5)
    out.append(icmp.recv(70000).hex() if r else None)
json.dump(out, sys.stdout)
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_icmp_error_matches_the_kernel() -> None:
    """UDP to a closed port on lo: the kernel's port unreachable (__icmp_send())
    against icmp_error_packet(), all but the IP id (the kernel hashes one)."""
    from ipgate.packet.build import icmp_error_packet

    origs = [build_udp(LO, LO, 5000, 9, b"hello", id=0x4242),
             build_udp(LO, LO, 5001, 9, bytes(range(256)) * 8, id=0x4343, tos=0xFF),  # cut at 576, TOS rule
             build_udp(LO, LO, 5002, 9, b"x" * 540, id=0x4444, tos=0x10, ttl=3)]
    try:
        r = subprocess.run(["unshare", "-n", sys.executable, "-c", ICMP_CHILD],
                           input=json.dumps([bytes(o).hex() for o in origs]), capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"unshare -n unusable: {e}")
    if r.returncode != 0:
        pytest.skip(f"unshare -n failed: {r.stderr.strip()[-300:]}")
    for orig, k in zip(origs, json.loads(r.stdout), strict=True):
        assert k is not None
        kernel = bytearray.fromhex(k)
        ours = icmp_error_packet(orig, 3, 3, 0, LO, mtu=65536, ident=int.from_bytes(kernel[4:6], "big"))
        assert ours is not None
        assert ours.hex() == kernel.hex()
