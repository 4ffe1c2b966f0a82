#!/usr/bin/env python3
"""The packet engine: established flows, new connections, a table-full burst, beside baselines.

    python bench/engine.py            # about a minute
    python bench/engine.py --quick    # a few seconds (CI smoke)

Figures are printed with the baseline measured in the same run and the ratio;
nothing asserts a threshold.

* established: TCP and UDP flows (already tracked, masqueraded) through
  MASQUERADE + 20 filter rules that do not match, then the ESTABLISHED rule,
  one packet at a time (`Engine.receive`) and in batches (`receive_batch`,
  where established UDP goes as vectors);
  baseline: the bare parse-and-rewrite loop the design notes quote (unpack the
  header and ports, write a new source address and port, no checks).
* new connections/s: first packets of distinct UDP flows, each tracked,
  walked through the chains, masqueraded and confirmed.
* burst: 100,000 new UDP flows against a 65,536-entry table holding 1,000
  established (assured) flows: how many are refused, and whether every
  established flow still passes afterwards.
"""

from __future__ import annotations

import argparse
import gc
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from ipgate.engine.engine import Engine  # noqa: E402
from ipgate.engine.result import Tx  # noqa: E402
from ipgate.packet.build import build_tcp, build_udp  # noqa: E402
from ipgate.shell import load_script  # noqa: E402

IPH = struct.Struct("!BBHHHBBHII")
PORTS = struct.Struct("!HH")
U32 = struct.Struct("!I")
U16 = struct.Struct("!H")

CONF = """
ip link add eth0 type dummy
ip link add eth1 type dummy
ip link set eth0 up
ip link set eth1 up
ip addr add 10.0.0.1/16 dev eth0
ip addr add 192.0.2.1/24 dev eth1
ip route add default via 192.0.2.254
echo 1 > /proc/sys/net/ipv4/ip_forward
iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE
""" + "".join(f"iptables -A FORWARD -s 172.16.{i}.0/24 -p tcp --dport {1000 + i} -j DROP\n" for i in range(20)) + """
iptables -A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT
iptables -A FORWARD -i eth0 -j ACCEPT
"""
SERVER = 0xCB007107  # 203.0.113.7
PUBLIC = 0xC0000201  # 192.0.2.1


def baseline(pkts: list[bytearray], rounds: int) -> float:
    """The bare loop: unpack the header and ports, write a new source and port."""
    new_src, new_port = 0xC6336401, 40000
    t = time.perf_counter()
    for _ in range(rounds):
        for p in pkts:
            f = IPH.unpack_from(p)
            ihl = (f[0] & 15) * 4
            sport, dport = PORTS.unpack_from(p, ihl)
            U32.pack_into(p, 12, new_src)
            U16.pack_into(p, ihl, new_port)
    return rounds * len(pkts) / (time.perf_counter() - t)


def established(eng: Engine, nflows: int, rounds: int, proto: str, batch: int = 0) -> float:
    """Flows set up (both directions seen), then their packets over and over, one by one (`receive`) or
    `batch` at a time (`receive_batch`)."""
    pkts = []
    for i in range(nflows):
        src = 0x0A000000 | (2 + i)
        sport = 10000 + i
        if proto == "tcp":
            syn = build_tcp(src, SERVER, sport, 80, seq=1000, flags=0x02)
            eng.receive("eth0", syn, 1.0)
            eng.receive("eth1", build_tcp(SERVER, PUBLIC, 80, sport, seq=5000, ack_seq=1001, flags=0x12), 1.0)
            eng.receive("eth0", build_tcp(src, SERVER, sport, 80, seq=1001, ack_seq=5001, flags=0x10), 1.0)
            pkts.append(bytes(build_tcp(src, SERVER, sport, 80, seq=1001, ack_seq=5001, flags=0x10)))
        else:
            eng.receive("eth0", build_udp(src, SERVER, sport, 53, b"q"), 1.0)
            eng.receive("eth1", build_udp(SERVER, PUBLIC, 53, sport, b"a"), 1.0)
            pkts.append(bytes(build_udp(src, SERVER, sport, 53, b"q" * 64)))
    recv = eng.receive
    now = 4.0  # UDP: past the 2 s after the reply, the next packet makes the entry assured (a stream)
    for p in pkts:  # the first ESTABLISHED packet of each flow takes the slow path and is recorded
        recv("eth0", p, now)
    ok = 0
    t = time.perf_counter()
    if batch:
        chunks = [pkts[i:i + batch] for i in range(0, len(pkts), batch)]
        for _ in range(rounds):
            for c in chunks:
                ok += sum(type(r) is Tx for r in eng.receive_batch("eth0", c, now))
    else:
        for _ in range(rounds):
            for p in pkts:
                r = recv("eth0", p, now)
                ok += type(r[0]) is Tx
    rate = rounds * len(pkts) / (time.perf_counter() - t)
    assert ok == rounds * len(pkts), f"only {ok} of {rounds * len(pkts)} forwarded"
    return rate


def new_connections(eng: Engine, n: int) -> float:
    pkts = [bytes(build_udp(0x0A000000 | (2 + i % 60000), SERVER, 1024 + i // 60000, 53, b"q")) for i in range(n)]
    t = time.perf_counter()
    for p in pkts:
        eng.receive("eth0", p, 3.0)
    return n / (time.perf_counter() - t)


def burst(quick: bool) -> str:
    st = load_script(CONF + "echo 65536 > /proc/sys/net/netfilter/nf_conntrack_max\n", "bench.conf")
    eng = Engine(st)
    est = []
    for i in range(1000):
        src, sport = 0x0A010000 | i, 20000 + i
        eng.receive("eth0", build_udp(src, SERVER, sport, 53, b"q"), 1.0)
        eng.receive("eth1", build_udp(SERVER, PUBLIC, 53, sport, b"a"), 1.0)
        eng.receive("eth0", build_udp(src, SERVER, sport, 53, b"q"), 4.0)  # assured: a stream
        est.append(bytes(build_udp(src, SERVER, sport, 53, b"q")))
    n = 20000 if quick else 100000
    refused = 0
    t = time.perf_counter()
    for i in range(n):
        # distinct servers: the NAT never runs out of ports, the conntrack table is what fills up
        r = eng.receive("eth0", build_udp(0x0A020000 | (i % 65000), SERVER + i % 251, 30000 + i // 65000, 53,
                                          b"x"), 5.0)
        refused += type(r[0]) is not Tx
    dt = time.perf_counter() - t
    alive = sum(type(eng.receive("eth0", p, 6.0)[0]) is Tx for p in est)
    first = (f"burst of {n} new UDP flows, table max 65536 holding 1000 assured: {refused} refused, the oldest "
             f"unassured evicted instead (early_drop) ({n / dt:,.0f} pkt/s), table {len(st.conntrack)}, "
             f"established still passing {alive}/1000")
    return first + "\n" + burst_assured_full()


def burst_assured_full() -> str:
    """A table full of assured flows: nothing can be evicted, so new flows are refused."""
    st = load_script(CONF + "echo 2000 > /proc/sys/net/netfilter/nf_conntrack_max\n", "bench.conf")
    eng = Engine(st)
    est = []
    for i in range(2000):
        src, sport = 0x0A010000 | i, 20000 + i
        eng.receive("eth0", build_udp(src, SERVER, sport, 53, b"q"), 1.0)
        eng.receive("eth1", build_udp(SERVER, PUBLIC, 53, sport, b"a"), 1.0)
        eng.receive("eth0", build_udp(src, SERVER, sport, 53, b"q"), 4.0)
        est.append(bytes(build_udp(src, SERVER, sport, 53, b"q")))
    refused = sum(type(eng.receive("eth0", build_udp(0x0A020000 | i, SERVER + i % 251, 30000, 53, b"x"),
                                   5.0)[0]) is not Tx for i in range(10000))
    alive = sum(type(eng.receive("eth0", p, 6.0)[0]) is Tx for p in est)
    return (f"burst of 10000 new UDP flows against a 2000-entry table full of assured flows: {refused} refused "
            f"(\"table full\" logged {sum('table full' in x for x in eng.logs)} times), "
            f"established still passing {alive}/2000")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--burst-only", action="store_true")
    a = ap.parse_args()
    if a.burst_only:
        print(burst(a.quick))
        return 0
    rounds = 5 if a.quick else 40
    nflows = 200 if a.quick else 1000
    gc.freeze()
    base_pkts = [bytearray(build_tcp(0x0A000002 + i, SERVER, 10000 + i, 80, flags=0x10)) for i in range(nflows)]
    base = baseline(base_pkts, rounds)
    print(f"baseline bare parse-and-rewrite loop: {base:,.0f} pkt/s")
    for proto in ("udp", "tcp"):
        for batch in (0, 64, 256, 1024):
            eng = Engine(load_script(CONF, "bench.conf"))
            r = established(eng, nflows, rounds, proto, batch)
            how = f"batches of {batch}" if batch else "one by one"
            print(f"established {proto} through MASQUERADE + 22 filter rules, {how}: {r:,.0f} pkt/s "
                  f"({r / base:.2f}x baseline; target 600,000)")
    eng = Engine(load_script(CONF, "bench.conf"))
    n = 5000 if a.quick else 50000
    r = new_connections(eng, n)
    print(f"new connections (UDP, tracked, walked, masqueraded, confirmed): {r:,.0f}/s "
          f"({r / base:.3f}x baseline; target 50,000)")
    print(burst(a.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
