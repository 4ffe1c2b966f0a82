"""The kernel gateway harness itself: injection, capture, nexthops, NAT, ICMP errors, conntrack."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import pytest

from ipgate.inet import aton
from ipgate.packet.build import build_icmp, build_tcp, build_udp
from ipgate.packet.checksum import ip_compute_csum, l4_checksum_ok

from .kernel_gw import BROADCAST, KernelGateway, netns_usable

pytestmark = pytest.mark.netns

C = aton("192.0.2.10")  # a host behind eth0
GW0 = aton("192.0.2.1")
GW1 = aton("198.51.100.1")
S = aton("198.51.100.20")  # on-link behind eth1
R = aton("198.51.100.254")  # a router behind eth1
FAR = aton("203.0.113.7")

BASE = (
    "ip addr add 192.0.2.1/24 dev eth0",
    "ip addr add 198.51.100.1/24 dev eth1",
    "echo 1 > /proc/sys/net/ipv4/ip_forward",
)


@pytest.fixture(scope="module")
def netns_ok() -> None:
    ok, reason = netns_usable()
    if not ok:
        pytest.skip(f"kernel gateway unavailable: {reason}")


@pytest.fixture
def gw(netns_ok: None) -> Iterator[KernelGateway]:
    with KernelGateway(["eth0", "eth1"]) as g:
        for line in BASE:
            assert g.run(line) == (0, "", ""), line
        yield g


def _ttl(ip: bytes) -> int:
    return ip[8]


def _src(ip: bytes) -> int:
    return int.from_bytes(ip[12:16], "big")


def _decremented(pkt: bytes) -> bytes:
    """`pkt` as ip_forward() sends it: TTL - 1, header checksum redone."""
    b = bytearray(pkt)
    b[8] -= 1
    b[10:12] = b"\0\0"
    struct.pack_into("!H", b, 10, ip_compute_csum(b[:20]))
    return bytes(b)


def test_defaults(netns_ok: None) -> None:
    with KernelGateway(["eth0", "eth1", "ppp0"]) as g:
        for key, want in (("net.ipv4.ip_forward", "0"), ("net.ipv4.icmp_ratelimit", "0"),
                          ("net.ipv4.conf.all.rp_filter", "0"), ("net.ipv6.conf.eth0.disable_ipv6", "1")):
            assert g.run(f"sysctl -n {key}") == (0, want + "\n", ""), key
        st, out, _ = g.run("ip -br link")
        assert st == 0 and all(f"{n}@" in out for n in ("eth0", "eth1", "ppp0")) and "DOWN" not in out
        assert g.run("ip addr add 192.0.2.1/24 dev eth0")[0] == 0
        assert g.run("ip addr add 198.51.100.1/24 dev ppp0")[0] == 0
        # forwarding is off: the kernel drops without an ICMP error
        assert g.inject("eth0", [bytes(build_udp(C, S, 1000, 2000, b"x"))]) == [[]]


def test_forward_on_link_and_via_gateway(gw: KernelGateway) -> None:
    assert gw.run(f"ip route add 203.0.113.0/24 via {'198.51.100.254'}")[0] == 0
    on_link = bytes(build_udp(C, S, 1000, 2000, b"on-link"))
    routed = bytes(build_udp(C, FAR, 1000, 2000, b"routed", ttl=9))
    got = gw.inject("eth0", [on_link, routed, routed])
    assert got == [[("eth1", S, _decremented(on_link))],
                   [("eth1", R, _decremented(routed))],
                   [("eth1", R, _decremented(routed))]]
    assert _ttl(got[1][0][2]) == 8
    st, out, _ = gw.run("ip neigh show dev eth1")
    assert st == 0 and "198.51.100.254 lladdr 02:00:c6:33:64:fe" in out


def test_masquerade_and_conntrack(gw: KernelGateway) -> None:
    assert gw.run("iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE") == (0, "", "")
    [[(dev, nh, ip)]] = gw.inject("eth0", [bytes(build_udp(C, S, 1000, 2000, b"nat me"))])
    assert (dev, nh, _src(ip), _ttl(ip)) == ("eth1", S, GW1, 63)
    assert ip_compute_csum(ip[:20]) == 0 and l4_checksum_ok(ip, 20, len(ip) - 20, 17)
    lines = [ln for ln in gw.conntrack_list() if ln.startswith("udp")]
    assert len(lines) == 1
    assert "src=192.0.2.10 dst=198.51.100.20 sport=1000 dport=2000" in lines[0]
    assert "src=198.51.100.20 dst=198.51.100.1 sport=2000 dport=1000" in lines[0]


def test_net_unreachable(gw: KernelGateway) -> None:
    pkt = bytes(build_udp(C, FAR, 1000, 2000, b"nowhere"))
    [[(dev, nh, ip)]] = gw.inject("eth0", [pkt])
    assert (dev, nh, _src(ip), ip[9]) == ("eth0", C, GW0, 1)
    assert ip[20:22] == bytes((3, 0))  # ICMP destination unreachable, net unreachable
    assert ip[28:] == pkt  # the whole offending packet, as received


def test_local_answers_and_order(gw: KernelGateway) -> None:
    assert gw.run("iptables -A FORWARD -p tcp --dport 25 -j REJECT --reject-with tcp-reset") == (0, "", "")
    ping = bytes(build_icmp(C, GW0, 8, 0, 0x12340001, b"ping"))
    syn_local = bytes(build_tcp(C, GW0, 1000, 2000, flags=0x02))
    syn_rejected = bytes(build_tcp(C, S, 1001, 25, flags=0x02))
    hairpin = bytes(build_udp(C, aton("192.0.2.20"), 7, 7))
    echo, rst, rej, both = gw.inject("eth0", [ping, syn_local, syn_rejected, hairpin])
    assert [(d, n, ip[20]) for d, n, ip in echo] == [("eth0", C, 0)]  # echo reply
    for out, src in ((rst, GW0), (rej, S)):
        [(dev, nh, ip)] = out
        assert (dev, nh, _src(ip), ip[33] & 0x04) == ("eth0", C, src, 0x04)
        assert l4_checksum_ok(ip, 20, len(ip) - 20, 6)  # complete checksums: tx offload is off
    # out the interface it came in on: the redirect first, then the packet
    assert [(d, n, ip[9]) for d, n, ip in both] == [("eth0", C, 1), ("eth0", aton("192.0.2.20"), 17)]
    assert both[0][2][20] == 5


def test_mtu_fragments_and_frag_needed(gw: KernelGateway) -> None:
    assert gw.run("ip link set eth1 mtu 1400") == (0, "", "")
    big = bytes(build_udp(C, S, 1, 2, bytes(1472)))  # 1500 bytes
    df = bytes(build_udp(C, S, 1, 2, bytes(1472), frag_off=0x4000))
    frags, err = gw.inject("eth0", [big, df])
    assert [(d, n, len(ip), ip[6:8]) for d, n, ip in frags] == [
        ("eth1", S, 1396, b"\x20\x00"), ("eth1", S, 124, bytes((0, 1376 // 8)))]
    [(dev, nh, ip)] = err
    assert (dev, nh, ip[20:22], ip[26:28]) == ("eth0", C, bytes((3, 4)), struct.pack("!H", 1400))


def test_broadcast_nexthop(gw: KernelGateway) -> None:
    # a directed broadcast forwarded (bc_forwarding on `all` and the input device) leaves as ff:ff:..
    for line in ("ip addr add 203.0.113.1/24 dev eth1", "sysctl -qw net.ipv4.conf.all.bc_forwarding=1",
                 "sysctl -qw net.ipv4.conf.eth0.bc_forwarding=1"):
        assert gw.run(line) == (0, "", ""), line
    pkt = bytes(build_udp(C, aton("203.0.113.255"), 1, 9))
    [[(dev, nh, ip)]] = gw.inject("eth0", [pkt])
    assert (dev, nh, ip) == ("eth1", BROADCAST, _decremented(pkt))


def test_link_down_and_background(gw: KernelGateway) -> None:
    pkt = bytes(build_udp(C, S, 1000, 2000))
    assert gw.inject("eth0", [pkt]) == [[("eth1", S, _decremented(pkt))]]
    assert gw.run("ip link set eth0 down")[0] == 0
    t = time.monotonic()
    assert gw.inject("eth0", [pkt]) == [[]]  # the veth drops it before the gateway
    assert time.monotonic() - t < 0.5
    assert gw.run("ip link set eth0 up")[0] == 0
    # the neighbour table was flushed with the link: ARP again, answered, nothing leaks into results
    assert gw.inject("eth0", [pkt, pkt]) == [[("eth1", S, _decremented(pkt))]] * 2


def test_run_guards(gw: KernelGateway) -> None:
    for line in ("ip netns list", "ip -n other link", "ip -all netns exec true", "ip link set eth0 netns 1",
                 "sysctl -w kernel.hostname=x", "echo 1 > /etc/hostname", "iptables -L | cat", "ls /"):
        st, _, err = gw.run(line)
        assert st != 0 and err, line
    rules = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp -j DROP\nCOMMIT\n"
    assert gw.run("iptables-restore", stdin=rules) == (0, "", "")
    assert "-A INPUT -p udp -j DROP" in gw.run("iptables -S INPUT")[1]
    assert gw.run("iptables -t raw -A PREROUTING -j NOTRACK")[0] == 0
    st, out, _ = gw.run("sysctl -w net.ipv4.conf.eth0.rp_filter=1")
    assert st == 0 and gw.run("sysctl -n net.ipv4.conf.eth0.rp_filter")[1] == "1\n"


def test_speed(gw: KernelGateway) -> None:
    pkts = [bytes(build_udp(C, S, 1000 + i, 2000)) for i in range(300)]
    gw.inject("eth0", pkts[:1])  # ARP once
    t = time.perf_counter()
    got = gw.inject("eth0", pkts)
    per = (time.perf_counter() - t) / len(pkts)
    assert [len(o) for o in got] == [1] * len(pkts)
    print(f"\nkernel_gw: {per * 1e3:.3f} ms per injected packet")
    assert per < 0.010
