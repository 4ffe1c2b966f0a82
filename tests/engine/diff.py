"""Differential runs of the packet engine against the Linux kernel as a gateway.

A seed gives a random configuration (filter, nat and mangle rules, marks with
policy routing, special routes, an MTU) and a random sequence of packets:
new flows from the LAN and from outside, replies built from what the kernel
itself emitted (so they carry the kernel's translated addresses), ICMP errors
quoting emitted packets, TTL 1, DF and oversize packets, packets for the
gateway.  Each packet goes into the kernel gateway (tests/engine/kernel_gw.py)
and into ipgate's engine; what leaves (device, next hop, bytes) is compared
packet by packet, then the counters of every rule (iptables-save -c).

IP ids of packets the gateway generates differ by design (the kernel hashes,
ipgate counts): ids are masked, nothing else is.  The engine's clock is the
real time elapsed since the kernel gateway started, so the rate limits of
ICMP errors (which count jiffies) see the same elapsed time on both sides.
"""

from __future__ import annotations

import difflib
import random
import struct
import time
from dataclasses import dataclass, field

from ipgate.engine.engine import Engine
from ipgate.engine.result import Tx
from ipgate.inet import aton, ntoa
from ipgate.packet.build import build_icmp, build_tcp, build_udp
from ipgate.packet.checksum import ip_compute_csum
from ipgate.packet.describe import packet_text
from ipgate.packet.frag import ip_fragment
from ipgate.shell import Shell, load_script

from .kernel_gw import KernelGateway

IFACES = ("eth0", "eth1", "eth2")
BASE = (
    "ip addr add 10.0.0.1/24 dev eth0",
    "ip addr add 192.0.2.1/24 dev eth1",
    "ip addr add 198.51.100.1/24 dev eth2",
    "ip route add default via 192.0.2.254",
    "echo 1 > /proc/sys/net/ipv4/ip_forward",
    "echo 0 > /proc/sys/net/ipv4/icmp_ratelimit",
)
LAN = [aton(f"10.0.0.{i}") for i in (2, 3, 4, 5)]
REMOTE = [aton(f"203.0.113.{i}") for i in (7, 8, 9, 40, 70)]
GW_ADDRS = [aton("10.0.0.1"), aton("192.0.2.1"), aton("198.51.100.1")]

Out = tuple[str, int, bytes]


def _rules(rng: random.Random) -> list[str]:
    lines: list[str] = []
    pick = rng.random
    if pick() < 0.7:
        lines.append("iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE")
    if pick() < 0.4:
        lines.append("iptables -t nat -A POSTROUTING -o eth2 -j SNAT --to-source 198.51.100.1")
    if pick() < 0.4:
        lines.append("iptables -t nat -A PREROUTING -i eth1 -p tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80")
    if pick() < 0.3:
        lines.append("iptables -t nat -A PREROUTING -i eth1 -p udp --dport 5353 -j DNAT --to-destination 10.0.0.4")
    if pick() < 0.3:
        lines.append("iptables -t nat -A PREROUTING -i eth0 -p tcp --dport 80 -j REDIRECT --to-ports 3128")
    if pick() < 0.5:
        lines += ["ip rule add fwmark 1 table 100", "ip route add default via 198.51.100.254 table 100",
                  "iptables -t mangle -A PREROUTING -p tcp --dport 25 -j MARK --set-mark 1"]
    if pick() < 0.3:
        lines.append("iptables -t mangle -A FORWARD -p udp -j TOS --set-tos 0x10")
    if pick() < 0.3:
        lines.append("iptables -t mangle -A POSTROUTING -p tcp -j DSCP --set-dscp 0x0a")
    if pick() < 0.5:
        lines.append("iptables -A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT")
    choices = [
        "iptables -A FORWARD -p tcp --dport 23 -j REJECT --reject-with tcp-reset",
        "iptables -A FORWARD -p udp --dport 69 -j REJECT",
        "iptables -A FORWARD -p udp -m multiport --dports 137,138,139 -j REJECT --reject-with icmp-host-prohibited",
        "iptables -A FORWARD -s 10.0.0.3 -p tcp -j DROP",
        "iptables -A FORWARD -i eth1 -m state --state NEW -p udp -j DROP",
        "iptables -A FORWARD -m iprange --dst-range 203.0.113.8-203.0.113.9 -j REJECT"
        " --reject-with icmp-net-prohibited",
        "iptables -A FORWARD -p icmp --icmp-type echo-request -j ACCEPT",
        "iptables -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
        "iptables -A INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset",
        "iptables -A INPUT -p icmp -j DROP",
        "iptables -A INPUT -p udp --dport 53 -j ACCEPT",
        "iptables -N lanchk",
        "iptables -A FORWARD -i eth0 -j lanchk",
        "iptables -A lanchk -p udp --sport 1000:1999 -j DROP",
        "iptables -A lanchk -j RETURN",
        "iptables -A FORWARD -m mark --mark 1 -j ACCEPT",
        "iptables -A FORWARD -p tcp ! --syn -m state --state NEW -j DROP",
        "iptables -A OUTPUT -p icmp --icmp-type time-exceeded -j DROP",
        "ip route add unreachable 203.0.113.64/28",
        "ip route add prohibit 203.0.113.32/28",
        "ip route add blackhole 203.0.113.48/28",
        "ip link set eth2 mtu 1400",
    ]
    chain_made = False
    for c in rng.sample(choices, rng.randint(3, 9)):
        if "lanchk" in c and "-N" not in c and not chain_made:
            lines.append("iptables -N lanchk")
            chain_made = True
        if c == "iptables -N lanchk":
            if chain_made:
                continue
            chain_made = True
        lines.append(c)
    if pick() < 0.4:
        lines.append("iptables -P FORWARD DROP")
        if "iptables -A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT" not in lines:
            lines.append("iptables -A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT")
        lines.append("iptables -A FORWARD -i eth0 -j ACCEPT")
    return lines


@dataclass
class Case:
    seed: int
    config: list[str]
    sent: int = 0
    agreed: int = 0
    diffs: list[str] = field(default_factory=list)
    counters_agree: bool = True


def _mask(o: Out) -> Out:
    """Zero the IP id (and fix the header checksum) of a packet."""
    dev, nh, data = o
    b = bytearray(data)
    if len(b) >= 20:
        b[4:6] = b"\0\0"
        b[10:12] = b"\0\0"
        ihl = (b[0] & 0x0F) * 4
        struct.pack_into("!H", b, 10, ip_compute_csum(b[:ihl]))
    return dev, nh, bytes(b)


def describe(o: Out) -> str:
    dev, nh, d = o
    return f"{dev} via {ntoa(nh) if nh >= 0 else '?'}: {packet_text(d)} {d[:64].hex()}"


def _reply_to(o: Out, rng: random.Random) -> tuple[str, bytes] | None:
    """A reply from the far end to a packet the gateway emitted (same device, addresses swapped)."""
    dev, _nh, d = o
    if len(d) < 28:
        return None
    proto = d[9]
    ihl = (d[0] & 0x0F) * 4
    src, dst = int.from_bytes(d[12:16], "big"), int.from_bytes(d[16:20], "big")
    if proto == 6 and len(d) >= ihl + 20:
        sp, dp, seq = struct.unpack_from("!HHI", d, ihl)
        flags = d[ihl + 13]
        if flags & 0x04:
            return None
        if flags & 0x02 and not flags & 0x10:
            return dev, bytes(build_tcp(dst, src, dp, sp, seq=rng.randrange(1 << 32), ack_seq=(seq + 1) & 0xFFFFFFFF,
                                        flags=0x12))
        return dev, bytes(build_tcp(dst, src, dp, sp, seq=rng.randrange(1 << 32), ack_seq=seq, flags=0x04))
    if proto == 17:
        sp, dp = struct.unpack_from("!HH", d, ihl)
        return dev, bytes(build_udp(dst, src, dp, sp, b"reply"))
    if proto == 1 and d[ihl] == 8:
        un = struct.unpack_from("!I", d, ihl + 4)[0]
        return dev, bytes(build_icmp(dst, src, 0, 0, un, d[ihl + 8:]))
    return None


def _error_about(o: Out, rng: random.Random) -> tuple[str, bytes] | None:
    """An ICMP error from a router beyond the gateway about a packet it emitted."""
    dev, nh, d = o
    if len(d) < 28 or d[9] == 1 and d[(d[0] & 0x0F) * 4] not in (0, 8):
        return None
    src = int.from_bytes(d[12:16], "big")
    router = aton("192.0.2.254") if dev == "eth1" else aton("198.51.100.254") if dev == "eth2" else aton("10.0.0.9")
    t, c = rng.choice([(11, 0), (3, 3), (3, 1), (3, 4)])
    return dev, bytes(build_icmp(router, src, t, c, 1280 if c == 4 else 0, d[:28]))


def _new_packet(rng: random.Random, n: int) -> tuple[str, bytes]:
    kind = rng.random()
    ttl = 1 if rng.random() < 0.06 else 64
    if kind < 0.55:  # LAN to the world
        src, dst = rng.choice(LAN), rng.choice(REMOTE)
        if rng.random() < 0.08:
            dst = rng.choice(GW_ADDRS)
        dev = "eth0"
    elif kind < 0.8:  # the world to the gateway or the LAN
        src, dst = rng.choice(REMOTE), rng.choice([aton("192.0.2.1"), *LAN])
        dev = "eth1"
    else:
        src, dst = rng.choice(REMOTE), rng.choice([aton("198.51.100.1"), *LAN])
        dev = "eth2"
    p = rng.random()
    size = rng.choice([0, 10, 100, 1450]) if rng.random() < 0.9 else 1600
    df = 0x4000 if rng.random() < 0.5 else 0
    sport = 1000 + 10 * n + rng.randrange(10)
    if p < 0.45:
        dport = rng.choice([80, 25, 23, 22, 8080, 443])
        opts = b"\x02\x04\x05\xb4" if rng.random() < 0.5 else b""
        return dev, bytes(build_tcp(src, dst, sport, dport, bytes(size), seq=rng.randrange(1 << 32), flags=0x02,
                                    options=opts, ttl=ttl, frag_off=df, id=n + 1))
    if p < 0.85:
        dport = rng.choice([53, 69, 137, 5353, 33434, 123])
        return dev, bytes(build_udp(src, dst, sport, dport, bytes(size), ttl=ttl, frag_off=df, id=n + 1))
    return dev, bytes(build_icmp(src, dst, 8, 0, (rng.randrange(1, 60000) << 16) | 1, bytes(size % 200), ttl=ttl,
                                 id=n + 1))


def run_case(seed: int, npackets: int = 24) -> Case:
    rng = random.Random(seed)
    config = list(BASE) + _rules(rng)
    case = Case(seed, config)
    script = "".join(f"ip link add {i} type dummy\nip link set {i} up\n" for i in IFACES) + "\n".join(config) + "\n"
    stack = load_script(script, f"seed{seed}.conf")
    eng = Engine(stack, rng=random.Random(seed))
    with KernelGateway(list(IFACES)) as gw:
        for line in config:
            st, _out, err = gw.run(line)
            if st != 0:
                raise RuntimeError(f"kernel refused {line!r}: {err}")
        emitted: list[Out] = []
        t0 = time.monotonic()
        for n in range(npackets):
            r = rng.random()
            pkt: tuple[str, bytes] | None = None
            if emitted and r < 0.35:
                pkt = _reply_to(rng.choice(emitted), rng)
            elif emitted and r < 0.45:
                pkt = _error_about(rng.choice(emitted), rng)
            if pkt is None:
                pkt = _new_packet(rng, n)
            dev, data = pkt
            pieces = [data]
            if rng.random() < 0.1 and len(data) > 100 and not data[6] & 0x40:
                # sent in fragments (maybe out of order): reassembled before conntrack on both sides
                frags = ip_fragment(data, rng.choice((68, 96, 576)))
                if isinstance(frags, list) and len(frags) > 1:
                    pieces = [bytes(f) for f in frags]
                    if rng.random() < 0.5:
                        pieces.reverse()
            for piece in pieces:
                kernel = [_mask(o) for o in gw.inject(dev, [piece])[0]]
                # the engine's clock follows the kernel's: its rate limits count jiffies of real time
                now = 1.0 + time.monotonic() - t0
                mine = [_mask((t.dev, t.nexthop, t.data)) for t in eng.receive(dev, piece, now)
                        if isinstance(t, Tx)]
                case.sent += 1
                if sorted(kernel) == sorted(mine):
                    case.agreed += 1
                else:
                    case.diffs.append(f"packet {n} in {dev}: {packet_text(piece)}\n"
                                      f"  kernel: {[describe(o) for o in kernel]}\n"
                                      f"  ipgate: {[describe(o) for o in mine]}")
                emitted.extend(o for o in kernel if o[0] != "eth0" or o[2][9] != 1)
        _st, ksave, _e = gw.run("iptables-save -c")
        _st, knat, _e = gw.run("iptables-save -c -t nat")
    sh = Shell(stack)
    mine_save = sh.run_line("iptables-save -c").out
    kc, mc = _counters(ksave), _counters(mine_save)
    case.counters_agree = kc == mc
    if not case.counters_agree:
        d = difflib.unified_diff(kc, mc, "kernel", "ipgate", lineterm="", n=0)
        case.diffs.append("counters differ:\n" + "\n".join(d))
    return case


def _counters(save: str) -> list[str]:
    """The rule and policy lines of iptables-save -c (no comments or timestamps)."""
    return [ln for ln in save.splitlines() if ln.startswith(("[", ":", "*"))]
