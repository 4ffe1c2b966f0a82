"""The hosts' tools, run inside a namespace as ``python -m ipgate.lab.agent CMD ...``.

    ping DST COUNT                 ICMP echo over a raw socket; prints "OK/COUNT rtt MS"; exit 0 if all answered
    tcp DST PORT                   connect, say hello; prints "local A:P seen B:Q" (the server's view); exit 0
    http, udp, ftp, fill ...       the clients of clients.py
    serve SPECS LIFETIME MAXCONN NAME   the bounded servers of servers.py (TCP, UDP, FTP)

Everything is bounded: every wait has a timeout, every loop a count.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time

CONNECT_TIMEOUT = 5.0
IO_TIMEOUT = 5.0
PING_WAIT = 1.0  # seconds per echo request
MAX_LINE = 256


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    v = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while v >> 16:
        v = (v & 0xFFFF) + (v >> 16)
    return int(~v & 0xFFFF)


def _answered(s: socket.socket, ident: int, seq: int, deadline: float) -> bool:
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data = s.recv(4096)
        except TimeoutError:
            return False
        ihl = (data[0] & 15) * 4
        if len(data) >= ihl + 8 and data[ihl] == 0 and struct.unpack_from("!HH", data, ihl + 4) == (ident, seq):
            return True
    return False


def ping(dst: str, count: int) -> int:
    ident = os.getpid() & 0xFFFF
    rtts: list[float] = []
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        for seq in range(count):
            payload = b"ipgate-lab-ping!" * 2
            head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            sent = time.monotonic()
            s.sendto(struct.pack("!BBHHH", 8, 0, _csum(head + payload), ident, seq) + payload, (dst, 0))
            if _answered(s, ident, seq, sent + PING_WAIT):
                rtts.append(time.monotonic() - sent)
    rtts.sort()
    rtt = f" rtt {1000 * rtts[len(rtts) // 2]:.3f} ms" if rtts else ""
    print(f"{len(rtts)}/{count}{rtt}", flush=True)
    return 0 if len(rtts) == count else 1


def _line(c: socket.socket) -> str:
    data = b""
    deadline = time.monotonic() + IO_TIMEOUT
    while b"\n" not in data and len(data) < MAX_LINE and (left := deadline - time.monotonic()) > 0:
        c.settimeout(left)
        chunk = c.recv(MAX_LINE)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode(errors="replace")


def tcp(dst: str, port: int) -> int:
    try:
        with socket.create_connection((dst, port), timeout=CONNECT_TIMEOUT) as c:
            c.sendall(b"hello\n")
            answer = _line(c)
            local = c.getsockname()
    except OSError as e:
        print(f"error {e}", flush=True)
        return 1
    words = answer.split()
    if len(words) != 3 or words[0] != "seen":
        print(f"error unexpected answer {answer!r}", flush=True)
        return 1
    print(f"local {local[0]}:{local[1]} seen {words[1]}:{words[2]}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    from ipgate.lab import clients, servers

    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    if cmd == "ping" and len(args) == 2:
        return ping(args[0], int(args[1]))
    if cmd in ("tcp", "http", "udp") and len(args) == 2:
        return {"tcp": tcp, "http": clients.http_get, "udp": clients.udp_query}[cmd](args[0], int(args[1]))
    if cmd == "ftp" and len(args) == 3:
        return clients.ftp_get(args[0], int(args[1]), args[2])
    if cmd == "fill" and len(args) == 5:
        tport, uport, maximum, flows = (int(a) for a in args[1:])
        return clients.fill(args[0], tport, uport, maximum, flows)
    if cmd == "serve" and len(args) == 4:
        return servers.serve(args[0].split(","), float(args[1]), int(args[2]), args[3])
    print(f"usage: {__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
