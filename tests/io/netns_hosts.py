"""Tiny hosts for the namespace tests, run as `ip netns exec NS python netns_hosts.py CMD ...`.

    ping DST COUNT                  ICMP echo over a raw socket (no ping binary needed); exit 0 if all answered
    serve ADDR PORT READY           TCP echo server for one connection; touches READY once listening
    client ADDR PORT READY GO       connect, echo 64 KB, touch READY, wait for the file GO, echo again, exit 0
    connect ADDR PORT               exit 0 if a TCP connection opens within 2 s
    garbage IFACE COUNT SEED        send COUNT malformed frames out of IFACE (AF_PACKET)
    flood DST PORT SECONDS SIZE     send UDP datagrams as fast as possible; print how many
    sink ADDR PORT SECONDS READY    answer the first UDP datagram, count the next ones for SECONDS; print the rate

Everything is bounded by timeouts: a test never waits on a host forever.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import random
import socket
import struct
import sys
import time
from pathlib import Path

TIMEOUT = 20.0
SOL_PACKET, PACKET_VNET_HDR = 263, 15  # linux/socket.h, linux/if_packet.h


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    v = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while v >> 16:
        v = (v & 0xFFFF) + (v >> 16)
    return int(~v & 0xFFFF)


def ping(dst: str, count: int) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    ok = 0
    rtts: list[float] = []
    for seq in range(count):
        payload = b"ipgate-netns-test" * 2
        head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        sent = time.monotonic()
        s.sendto(struct.pack("!BBHHH", 8, 0, _csum(head + payload), ident, seq) + payload, (dst, 0))
        deadline = sent + 1.0
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, _ = s.recvfrom(4096)
            except TimeoutError:
                break
            ihl = (data[0] & 15) * 4
            if data[ihl] == 0 and struct.unpack_from("!HH", data, ihl + 4) == (ident, seq):
                ok += 1
                rtts.append(time.monotonic() - sent)
                break
        time.sleep(0.01)
    rtts.sort()
    median = f" median rtt {1000 * rtts[len(rtts) // 2]:.3f} ms" if rtts else ""
    print(f"{ok}/{count}{median}")
    return 0 if ok == count else 1


def _echo(c: socket.socket, size: int) -> None:
    block = os.urandom(size)
    c.sendall(block)
    got = b""
    while len(got) < size:
        d = c.recv(65536)
        if not d:
            raise ConnectionError("closed")
        got += d
    if got != block:
        raise ValueError("echo differs")


def serve(addr: str, port: int, ready: str) -> int:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(4)
    s.settimeout(TIMEOUT)
    Path(ready).touch()
    c, peer = s.accept()
    print(f"peer {peer[0]}:{peer[1]}", flush=True)
    c.settimeout(TIMEOUT * 2)
    while d := c.recv(65536):
        c.sendall(d)
    return 0


def client(addr: str, port: int, ready: str, go: str) -> int:
    c = socket.create_connection((addr, port), timeout=5)
    c.settimeout(5)
    _echo(c, 65536)
    print(f"local {c.getsockname()[0]}:{c.getsockname()[1]}", flush=True)
    Path(ready).touch()
    deadline = time.monotonic() + TIMEOUT
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            return 2
        time.sleep(0.05)
    _echo(c, 65536)
    c.close()
    print("ok", flush=True)
    return 0


def bulk(addr: str, port: int, mbytes: int) -> int:
    """`mbytes` MiB echoed back through the gateway, 1 MiB at a time, every byte compared."""
    c = socket.create_connection((addr, port), timeout=5)
    c.settimeout(TIMEOUT)
    for _ in range(mbytes):
        _echo(c, 1 << 20)
    c.close()
    print("ok", flush=True)
    return 0


def offloads(iface: str, tso: int, gro: int) -> int:
    """TSO and GSO (ETHTOOL_STSO, ETHTOOL_SGSO) and GRO (ETHTOOL_SGRO) of `iface` on or off."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for cmd, value in ((0x1F, tso), (0x24, tso), (0x2C, gro)):
        val = ctypes.create_string_buffer(struct.pack("II", cmd, value))
        fcntl.ioctl(s.fileno(), 0x8946, struct.pack("16sP", iface.encode(), ctypes.addressof(val)))  # SIOCETHTOOL
    return 0


def connect(addr: str, port: int) -> int:
    try:
        socket.create_connection((addr, port), timeout=2).close()
    except OSError as e:
        print(e)
        return 1
    return 0


def garbage(iface: str, count: int, seed: int) -> int:
    """Frames a broken or hostile host could send: random bytes, truncated and lying IPv4 headers, bad ARP,
    GSO super-packets with lying headers."""
    rng = random.Random(seed)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    gso = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)  # frames with a virtio_net_hdr: GSO super-packets
    gso.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    gso.bind((iface, 0))
    src = bytes([2, 0, 0, 0, 0, 1])
    bcast = b"\xff" * 6
    sent = 0
    for i in range(count):
        kind = i % 6
        out = s
        if kind == 5:  # a TCP super-packet whose headers lie (IHL, data offset, lengths) or whose size is odd
            ihl = rng.choice((5, 5, 5, 4, 15))
            ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, rng.choice((3000, 40, 65535)), 7, 0x4000, 64,
                                       6, 0, socket.inet_aton("192.168.10.2"), socket.inet_aton("203.0.113.2")))
            tcp = bytearray(struct.pack("!HHIIBBHHH", 40000, 9, 1, 1, rng.choice((0x50, 0x40, 0x00, 0xF0)), 0x10,
                                        65535, 0, 0))
            body = bytes(ip) + bytes(max(0, ihl * 4 - 20)) + bytes(tcp) + bytes(rng.randint(0, 3000))
            hdr = struct.pack("=BBHHHH", 1, 1, 14 + 40, rng.choice((0, 1, 1000, 1448, 65535)), 14 + ihl * 4, 16)
            frame = hdr + bcast + src + b"\x08\x00" + body
            out = gso
        elif kind == 0:
            frame = bytes(rng.getrandbits(8) for _ in range(rng.randint(14, 200)))
        elif kind == 1:  # IPv4 with a random header
            frame = bcast + src + b"\x08\x00" + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 80)))
        elif kind == 2:  # IPv4 header claiming more than there is
            ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1500, 1, 0, 64, 17, 0,
                                       socket.inet_aton("192.168.10.2"), socket.inet_aton("203.0.113.2")))
            frame = bcast + src + b"\x08\x00" + bytes(ip) + b"x" * rng.randint(0, 40)
        elif kind == 3:  # ARP, truncated or with odd lengths
            arp = struct.pack("!HHBBH", 1, 0x0800, rng.choice((6, 0, 255)), rng.choice((4, 0, 16)), rng.randint(0, 9))
            frame = bcast + src + b"\x08\x06" + arp + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 30)))
        else:  # bad IHL, fragments, options
            ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | rng.randint(0, 15), 0, rng.randint(0, 100), 7,
                                       rng.choice((0x2000, 0x1FFF, 0x4000)), rng.randint(0, 2), rng.choice((1, 6, 17)),
                                       0, socket.inet_aton("192.168.10.2"), socket.inet_aton("203.0.113.2")))
            frame = bcast + src + b"\x08\x00" + bytes(ip) + bytes(rng.getrandbits(8) for _ in range(30))
        try:
            out.send(frame)
            sent += 1
        except OSError:
            pass  # the sending kernel may refuse a lying virtio_net_hdr
    print(sent)
    return 0


def flood(dst: str, port: int, seconds: float, size: int) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    payload = b"u" * size
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(256):
            try:
                s.sendto(payload, (dst, port))
                n += 1
            except BlockingIOError:
                time.sleep(0.0002)
                break
    print(n)
    return 0


def sink(addr: str, port: int, seconds: float, ready: str) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((addr, port))
    s.settimeout(TIMEOUT)
    Path(ready).touch()
    _, peer = s.recvfrom(65536)
    s.sendto(b"r", peer)  # one answer: the flow is ESTABLISHED from now on (the gateway's fast path)
    start = time.monotonic()
    n = 1
    s.settimeout(0.5)
    while time.monotonic() - start < seconds:
        try:
            s.recv(65536)
            n += 1
        except TimeoutError:
            break
    elapsed = time.monotonic() - start
    print(f"{n} {elapsed:.3f} {n / elapsed:.0f}")
    return 0


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "ping":
        return ping(args[0], int(args[1]))
    if cmd == "serve":
        return serve(args[0], int(args[1]), args[2])
    if cmd == "client":
        return client(args[0], int(args[1]), args[2], args[3])
    if cmd == "connect":
        return connect(args[0], int(args[1]))
    if cmd == "bulk":
        return bulk(args[0], int(args[1]), int(args[2]))
    if cmd == "offloads":
        return offloads(args[0], int(args[1]), int(args[2]))
    if cmd == "garbage":
        return garbage(args[0], int(args[1]), int(args[2]))
    if cmd == "flood":
        return flood(args[0], int(args[1]), float(args[2]), int(args[3]))
    if cmd == "sink":
        return sink(args[0], int(args[1]), float(args[2]), args[3])
    print(f"unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
