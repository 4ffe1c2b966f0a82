#!/usr/bin/env python3
"""ipgate packet codecs: parse + rewrite throughput, beside a bare `struct` loop.

    python bench/packet.py            # about 20 s
    python bench/packet.py --quick    # a few seconds (CI smoke)

Every figure is printed beside the baseline measured in the same run, and
their ratio.  Nothing asserts a threshold.

The baseline is the loop the design notes quote (~690k/s there): unpack the
IPv4 header and the ports, write a new source address and port; no checks,
no checksums.  The ipgate lines do what masquerade does to each packet:

* slow path: parse_ipv4 (all of ip_rcv_core()'s checks, header checksum
  verified) + parse_tcp + nf_nat_ipv4_manip_pkt (address and port, IP and TCP
  checksums fixed incrementally);
* flow path: parse_ipv4 + read the ports + one dict lookup + a precomputed
  FlowRewrite (addresses, ports, TTL, both checksums), as a flowtable would.

Packets are 64 distinct TCP segments (SYN with MSS, 40-byte ACKs, 1500-byte
data), rewritten in place over and over.  The slowest lines (dpkt, full
checksum, fragments) run fewer packets.
"""

from __future__ import annotations

import argparse
import gc
import random
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from ipgate.packet.build import build_tcp, build_udp  # noqa: E402
from ipgate.packet.drop import DropReason  # noqa: E402
from ipgate.packet.frag import Defrag, Reassembled, ip_fragment  # noqa: E402
from ipgate.packet.ipv4 import IPv4, parse_ipv4  # noqa: E402
from ipgate.packet.l4 import TCP, TH_ACK, TH_SYN, parse_tcp, tcp_csum_ok  # noqa: E402
from ipgate.packet.rewrite import NF_NAT_MANIP_SRC, FlowRewrite, nf_nat_ipv4_manip_pkt  # noqa: E402

IPH = struct.Struct("!BBHHHBBHII")
PORTS = struct.Struct("!HH")
U32 = struct.Struct("!I")
U16 = struct.Struct("!H")
NEW_SADDR = 0xC6336401  # 198.51.100.1
NEW_SPORT = 40000
CHUNK = 200


def make_packets(n: int, rng: random.Random) -> list[bytearray]:
    out = []
    for i in range(n):
        src = 0x0A000000 | rng.randrange(1, 1 << 16)
        dst = rng.getrandbits(32) | 0x01000000
        sport, dport = rng.randrange(1024, 65536), rng.choice((80, 443, 53, 22))
        kind = i % 4
        if kind == 0:
            p = build_tcp(src, dst, sport, dport, flags=TH_SYN, seq=rng.getrandbits(32),
                          options=b"\x02\x04\x05\xb4\x01\x03\x03\x07", id=i, ttl=255)
        elif kind == 3:
            p = build_tcp(src, dst, sport, dport, bytes(1460), seq=rng.getrandbits(32), id=i, ttl=255)
        else:
            p = build_tcp(src, dst, sport, dport, seq=rng.getrandbits(32), ack_seq=rng.getrandbits(32),
                          flags=TH_ACK, id=i, ttl=255)
        out.append(p)
    return out


def best(fn: Callable[[list[bytearray], int], int], pristine: list[bytearray], passes: int,
         repeat: int) -> tuple[int, float]:
    """(packets, seconds) of the fastest of `repeat` runs of fn(packets, passes).

    Every run starts from fresh copies, at most CHUNK passes each (the packets
    leave with TTL 255, the flow path takes one per pass); copying is not timed.
    """
    times = []
    n = 0
    for _ in range(repeat):
        total = 0.0
        n = 0
        left = passes
        while left > 0:
            k = min(left, CHUNK)
            pkts = [bytearray(p) for p in pristine]
            gc.collect()
            gc.disable()
            try:
                t = time.perf_counter()
                n += fn(pkts, k)
                total += time.perf_counter() - t
            finally:
                gc.enable()
            left -= k
        times.append(total)
    return n, min(times)


def still_valid(pkts: list[bytearray]) -> bool:
    """Every packet still parses with both checksums right (the work was real)."""
    for b in pkts:
        ip = parse_ipv4(b)
        if not isinstance(ip, IPv4) or not tcp_csum_ok(b, ip):
            return False
    return True


def baseline(pkts: list[bytearray], passes: int) -> int:
    unpack, ports, pack_a, pack_p = IPH.unpack_from, PORTS.unpack_from, U32.pack_into, U16.pack_into
    for _ in range(passes):
        for b in pkts:
            vihl, _tos, _tl, _id, _fo, _ttl, _proto, _ck, saddr, daddr = unpack(b, 0)
            hl = (vihl & 15) << 2
            sport, dport = ports(b, hl)
            pack_a(b, 12, saddr ^ 1)
            pack_p(b, hl, sport ^ 1)
    return passes * len(pkts)


def parse_only(pkts: list[bytearray], passes: int) -> int:
    for _ in range(passes):
        for b in pkts:
            ip = parse_ipv4(b)
            if isinstance(ip, IPv4):
                parse_tcp(b, ip)
    return passes * len(pkts)


def slow_path(pkts: list[bytearray], passes: int) -> int:
    for k in range(passes):
        addr = NEW_SADDR + (k & 1)  # a different rewrite every pass
        for b in pkts:
            ip = parse_ipv4(b)
            if not isinstance(ip, IPv4):
                continue
            tcp = parse_tcp(b, ip)
            if not isinstance(tcp, TCP):
                continue
            nf_nat_ipv4_manip_pkt(b, 0, ip.end, NF_NAT_MANIP_SRC, addr, NEW_SPORT + k)
    return passes * len(pkts)


def flow_table(pkts: list[bytearray]) -> dict[tuple[int, int, int, int, int], FlowRewrite]:
    """Masquerade's two rewrites per flow, keyed by what the flow path reads:
    the original source to NEW_SADDR and a fresh port, and back (so the
    packets go round; the TTL drops by one each way)."""
    flows = {}
    for i, b in enumerate(pkts):
        ip = parse_ipv4(b)
        assert isinstance(ip, IPv4)
        sport, dport = PORTS.unpack_from(b, ip.l4off)
        orig = (ip.saddr, ip.daddr, sport, dport)
        nat = (NEW_SADDR, ip.daddr, NEW_SPORT + i, dport)
        flows[(ip.saddr, ip.daddr, ip.protocol, sport, dport)] = FlowRewrite(ip.protocol, orig, nat)
        flows[(NEW_SADDR, ip.daddr, ip.protocol, NEW_SPORT + i, dport)] = FlowRewrite(ip.protocol, nat, orig)
    return flows


def flow_path(pkts: list[bytearray], passes: int,
              flows: dict[tuple[int, int, int, int, int], FlowRewrite]) -> int:
    ports = PORTS.unpack_from
    get = flows.get
    for _ in range(passes):
        for b in pkts:
            ip = parse_ipv4(b)
            if not isinstance(ip, IPv4) or ip.frag_off & 0x3FFF:
                continue
            sport, dport = ports(b, ip.l4off)
            rw = get((ip.saddr, ip.daddr, ip.protocol, sport, dport))
            if rw is not None:
                rw.apply(b, ip)
    return passes * len(pkts)


def dpkt_path(pkts: list[bytearray], passes: int) -> int:
    import dpkt  # type: ignore[import-untyped]  # a test dependency, for comparison only

    for _ in range(passes):
        for raw in pkts:
            ip = dpkt.ip.IP(bytes(raw))
            ip.src = b"\xc6\x33\x64\x01"
            ip.data.sport = NEW_SPORT
            ip.sum = 0
            ip.data.sum = 0
            bytes(ip)
    return passes * len(pkts)


def full_csum(pkts: list[bytearray], passes: int) -> int:
    big = [b for b in pkts if len(b) > 1000]
    ips = [parse_ipv4(b) for b in big]
    for _ in range(passes):
        for b, ip in zip(big, ips, strict=True):
            assert isinstance(ip, IPv4)
            tcp_csum_ok(b, ip)
    return passes * len(big)


def frag_roundtrip(n: int, rng: random.Random) -> int:
    """ip_fragment() a 4000-byte UDP datagram to 1500 and reassemble it, shuffled."""
    d = Defrag()
    for i in range(n):
        frs = ip_fragment(build_udp(0x0A000001, 0x0A000002, 1000, 2000, bytes(3972), id=i), 1500)
        assert isinstance(frs, list)
        rng.shuffle(frs)
        r: Reassembled | DropReason | None = None
        for f in frs:
            r = d.add(f, 0.0)
        assert isinstance(r, Reassembled)
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer passes (CI smoke)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    passes, repeat = (300, 3) if args.quick else (3000, 5)
    pkts = make_packets(64, rng)
    flows = flow_table(pkts)

    print(f"python {sys.version.split()[0]}; 64 TCP packets x {passes} passes, best of {repeat}")
    n, t0 = best(baseline, pkts, passes, repeat)
    base = n / t0
    print(f"  {'baseline: bare struct unpack + pack_into':48s} {base:>12,.0f} pkt/s")

    def line(label: str, fn: Callable[[list[bytearray], int], int], p: int = passes, rep: int = repeat) -> None:
        n, t = best(fn, pkts, p, rep)
        r = n / t
        print(f"  {label:48s} {r:>12,.0f} pkt/s   {r / base:6.2f}x baseline", flush=True)

    line("parse_ipv4 + parse_tcp (no rewrite)", parse_only)
    line("slow path: parse + nf_nat_ipv4_manip_pkt", slow_path)
    line("flow path: parse + lookup + FlowRewrite", lambda b, k: flow_path(b, k, flows))
    for fn in (slow_path, lambda b, k: flow_path(b, k, flows)):
        copies = [bytearray(p) for p in pkts]
        fn(copies, 7)
        assert still_valid(copies), "a rewrite broke a checksum"
    try:
        line("dpkt: parse + rewrite + serialise", dpkt_path, max(1, passes // 10), 1)
    except ImportError:
        print("  dpkt not installed: skipped")
    line("tcp_csum_ok, 1500-byte segments (full sum)", full_csum, max(1, passes // 10), 1)
    n, t = best(lambda b, k: frag_roundtrip(k, rng), pkts, max(100, passes // 3), 1)
    print(f"  {'fragment 4000 B to 1500 + reassemble (shuffled)':48s} {n / t:>12,.0f} datagram/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
