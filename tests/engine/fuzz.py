"""Malformed packets for the engine: valid packets of every kind, then cut, flipped, re-lengthed, fragmented.

`python -m tests.engine.fuzz N` pushes N packets through an engine with NAT,
helpers, REJECT, LOG and marks, and checks what the test does on a smaller
scale: no exception, every drop has a reason, an input with no result at all
is a fragment being held for reassembly.
"""

from __future__ import annotations

import random
import struct
import sys
import time

from ipgate.engine.engine import Engine
from ipgate.engine.result import Drop
from ipgate.packet.build import build_icmp, build_ipv4, build_tcp, build_udp
from ipgate.shell import load_script

CONF = """
ip link add eth0 type dummy
ip link add eth1 type dummy
ip link set eth0 up
ip link set eth1 up
ip addr add 10.0.0.1/24 dev eth0
ip addr add 192.0.2.1/24 dev eth1
ip route add default via 192.0.2.254
ip route add prohibit 203.0.113.32/28
echo 1 > /proc/sys/net/ipv4/ip_forward
modprobe nf_conntrack_ftp
modprobe nf_conntrack_irc
echo 64 > /proc/sys/net/netfilter/nf_conntrack_max
iptables -t mangle -A PREROUTING -p tcp --dport 25 -j MARK --set-mark 1
iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE
iptables -t nat -A PREROUTING -i eth1 -p tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80
iptables -A FORWARD -p udp --dport 69 -j REJECT
iptables -A FORWARD -p tcp --dport 23 -j REJECT --reject-with tcp-reset
iptables -A FORWARD -p icmp -m limit --limit 10/sec -j LOG --log-prefix "icmp: "
iptables -A INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset
"""
HOSTS = [0x0A000002, 0x0A000003, 0xCB007107, 0xCB007128, 0xC0000201, 0x0A000001, 0xFFFFFFFF, 0xE0000001, 0]


def engine() -> Engine:
    return Engine(load_script(CONF, "fuzz.conf"))


def valid(rng: random.Random) -> bytearray:
    s, d = rng.choice(HOSTS), rng.choice(HOSTS)
    kind = rng.randrange(6)
    payload = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 8, 40, 300))))
    if kind == 0:
        return build_tcp(s, d, rng.randrange(65536), rng.choice((21, 23, 25, 80, 8080, 6667)), payload,
                         seq=rng.getrandbits(32), ack_seq=rng.getrandbits(32), flags=rng.randrange(256),
                         options=rng.choice((b"", b"\x02\x04\x05\xb4", b"\x01\x01\x08\x0a" + bytes(8), b"\x02")))
    if kind == 1:
        return build_udp(s, d, rng.randrange(65536), rng.choice((53, 69, 5353)), payload, csum=rng.random() < 0.8)
    if kind == 2:
        return build_icmp(s, d, rng.randrange(20), rng.randrange(16), rng.getrandbits(32), payload)
    if kind == 3:  # an ICMP error quoting something
        inner = valid(rng)[:rng.choice((8, 20, 28, 48))]
        return build_icmp(s, d, rng.choice((3, 11, 12, 5)), rng.randrange(16), rng.getrandbits(32), inner)
    if kind == 4:
        return build_ipv4(s, d, rng.choice((47, 50, 132, 2, 255)), payload, options=rng.choice((b"", b"\x07\x07\x04")))
    cmd = b"PORT 10,0,0,2,4,10\r\n" if rng.random() < 0.5 else b"227 Entering (1,2,3,4,5,6)\r\n"
    return build_tcp(s, d, 1025, 21, cmd, seq=rng.getrandbits(32), flags=0x18)


def mutate(pkt: bytearray, rng: random.Random) -> bytearray:
    p = bytearray(pkt)
    for _ in range(rng.randrange(4)):
        op = rng.randrange(7)
        if op == 0 and p:
            p[rng.randrange(len(p))] ^= 1 << rng.randrange(8)
        elif op == 1:
            del p[rng.randrange(len(p) + 1):]
        elif op == 2 and len(p) >= 4:
            struct.pack_into("!H", p, 2, rng.randrange(65536))
        elif op == 3 and len(p) >= 8:
            struct.pack_into("!H", p, 6, rng.choice((0x2000, 0x2001, 0x0003, 0x4000, rng.randrange(65536))))
        elif op == 4 and p:
            p[0] = rng.choice((0x45, 0x46, 0x4F, 0x44, 0x65, 0x40))
        elif op == 5:
            p += bytes(rng.randrange(256) for _ in range(rng.randrange(16)))
        elif op == 6 and len(p) >= 12:
            p[8] = rng.choice((0, 1, 2, 255))
        if len(p) >= 20 and rng.random() < 0.7:  # keep the header checksum right most of the time
            p[10:12] = b"\0\0"
            ihl = min((p[0] & 0x0F) * 4, len(p))
            s = sum(struct.unpack(f"!{ihl // 2}H", bytes(p[:ihl - ihl % 2]))) if ihl >= 2 else 0
            while s >> 16:
                s = (s & 0xFFFF) + (s >> 16)
            struct.pack_into("!H", p, 10, ~s & 0xFFFF)
    return p


def check(eng: Engine, dev: str, pkt: bytearray, now: float) -> None:
    results = eng.receive(dev, pkt, now)
    for r in results:
        if isinstance(r, Drop):
            assert r.reason, r
    if not results:
        # nothing at all: only a fragment waiting for the rest of its datagram
        assert len(pkt) >= 20 and struct.unpack_from("!H", pkt, 6)[0] & 0x3FFF, pkt.hex()


def run(n: int, seed: int = 0) -> float:
    rng = random.Random(seed)
    eng = engine()
    t = time.perf_counter()
    now = 0.0
    for i in range(n):
        now += rng.choice((0.0001, 0.01, 1.0))
        check(eng, rng.choice(("eth0", "eth1")), mutate(valid(rng), rng), now)
        if i % 1000 == 0:
            eng.handle_timer(now)
    return n / (time.perf_counter() - t)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    rate = run(count, int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(f"{count} malformed packets, no exception, every drop with a reason ({rate:,.0f} pkt/s)")
