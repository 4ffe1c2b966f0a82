"""Resident memory per tracked connection, through the real packet path.

    python tests/conntrack/bench_memory.py [--n 1000000] [--nat] [--churn] [--proto tcp|udp]

Each connection is made by its first packet (a TCP SYN or a UDP datagram)
through `nf_conntrack_in()`, optionally source-NATed (`nf_nat_setup_info`,
one public address, masquerade style) and confirmed; TCP connections then get
the SYN-ACK and ACK so their state is ESTABLISHED and ASSURED.  ``--churn``
then replaces the whole table twice (oldest first through `kill`), as a busy
gateway does, so the dict's deleted slots are counted too.  VmRSS before and
after, divided by the number of entries, is printed; packets are pre-built
per batch and freed, so they are not counted.
"""

from __future__ import annotations

import argparse
import gc
import random
import struct
import sys
import time

from ipgate.conntrack.conn import NF_ACCEPT
from ipgate.conntrack.sysctl import CtSysctl
from ipgate.conntrack.table import ConntrackTable
from ipgate.nat.core import NF_NAT_RANGE_MAP_IPS, ManipType, NatRange2, nf_nat_setup_info

_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIHHHH")
_UDP = struct.Struct("!HHHH")


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def ip(src: int, dst: int, proto: int, payload: bytes) -> bytes:
    return _IP.pack(0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0, src.to_bytes(4, "big"),
                    dst.to_bytes(4, "big")) + payload


def flow(i: int) -> tuple[int, int, int, int]:
    """A client (10.x, 5000 of them) talking to one of 200000 servers (198.18/15)."""
    src = 0x0A000000 + (i % 5000)
    dst = 0xC6120000 + (i * 7919 % 200000)
    sport = 1024 + (i // 5000) % 64000
    return src, dst, sport, 443


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--nat", action="store_true")
    ap.add_argument("--churn", action="store_true")
    ap.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    ap.add_argument("--remap", action="store_true", help="every client uses source port 40000 (NAT must remap)")
    a = ap.parse_args()
    sysctl = CtSysctl(max=a.n, checksum=0)  # checksums are not what is measured
    table = ConntrackTable(sysctl)
    rng = random.Random(1)
    public = 0xCB007101
    nat_range = NatRange2(NF_NAT_RANGE_MAP_IPS, public, public)
    now = 1000.0
    tcp = a.proto == "tcp"
    gc.collect()
    base = rss()
    t0 = time.perf_counter()

    def make(i: int) -> None:
        src, dst, sport, dport = flow(i)
        if a.remap:
            src, dst, sport = 0x0A000000 + i, 0xC6120000 + i % 100, 40000
        if tcp:
            p = ip(src, dst, 6, _TCP.pack(sport, dport, 1000, 0, (5 << 12) | 0x02, 64240, 0, 0))
        else:
            p = ip(src, dst, 17, _UDP.pack(sport, dport, 9, 0) + b"x")
        r = table.nf_conntrack_in(p, now)
        ct = r.ct
        assert ct is not None, r.reason
        if a.nat:
            assert nf_nat_setup_info(table, ct, nat_range, ManipType.SRC, rng, now) == NF_ACCEPT
        assert table.confirm(ct, r.ctinfo, now) == NF_ACCEPT
        if tcp:
            rep = ct.reply
            sa = ip(rep.src, rep.dst, 6, _TCP.pack(rep.sport, rep.dport, 5000, 1001, (5 << 12) | 0x12, 64240, 0, 0))
            assert table.nf_conntrack_in(sa, now).ct is ct
            ack = ip(src, dst, 6, _TCP.pack(sport, dport, 1001, 5001, (5 << 12) | 0x10, 64240, 0, 0))
            assert table.nf_conntrack_in(ack, now).ct is ct

    for i in range(a.n):
        make(i)
    if a.churn:
        for i in range(a.n, 3 * a.n):
            victim = table._walk.popleft()  # the oldest entry goes, as timeouts would take it
            table.kill(victim, now)
            make(i)
    elapsed = time.perf_counter() - t0
    gc.collect()
    used = rss() - base
    ops = a.n * (3 if a.churn else 1)
    print(f"{a.proto}{' nat' if a.nat else ''}{' remap' if a.remap else ''}{' churn' if a.churn else ''}: "
          f"{table.count} entries, {len(table.nat_bysource)} in the NAT source index, "
          f"{used / 2**20:.0f} MiB, {used / table.count:.0f} bytes/entry, "
          f"{ops / elapsed:.0f} new connections/s (3 packets each for tcp)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
