"""IP Filter NAT (`ipnat -f`) in the engine: rdr on the way in, map on the way out, around netfilter."""

from __future__ import annotations

from pathlib import Path

from tests.packet.oracle import ip_hdr_ok, l4_ok

from ipgate.engine.engine import Engine
from ipgate.engine.result import Drop, Result, Tx
from ipgate.inet import aton, ntoa
from ipgate.packet.build import build_tcp, build_udp
from ipgate.shell import Shell, load_script
from ipgate.stack import Stack

CONF = """
ip link add eth0 type dummy
ip link add eth1 type dummy
ip link set eth0 up
ip link set eth1 up
ip addr add 10.0.0.1/24 dev eth0
ip addr add 192.0.2.1/24 dev eth1
ip route add default via 192.0.2.254
echo 1 > /proc/sys/net/ipv4/ip_forward
ipnat -f ipnat.conf
"""
IPNAT = """
map eth1 10.0.0.0/24 -> 0/32 portmap tcp/udp 10000:10001
map eth1 10.0.0.0/24 -> 0/32
rdr eth1 192.0.2.1/32 port 8080 -> 10.0.0.5 port 80 tcp
"""
REMOTE = aton("203.0.113.9")


def setup(tmp_path: Path, extra: str = "") -> tuple[Engine, Stack]:
    (tmp_path / "ipnat.conf").write_text(IPNAT)
    script = tmp_path / "gw.conf"
    script.write_text(CONF + extra)
    st = load_script(script.read_text(), str(script))
    return Engine(st), st


def tx(results: list[Result]) -> Tx:
    out = [r for r in results if isinstance(r, Tx)]
    assert len(out) == 1, results
    assert ip_hdr_ok(out[0].data) and l4_ok(out[0].data)
    return out[0]


def addrs(pkt: bytes) -> tuple[str, int, str, int]:
    return (ntoa(int.from_bytes(pkt[12:16], "big")), int.from_bytes(pkt[20:22], "big"),
            ntoa(int.from_bytes(pkt[16:20], "big")), int.from_bytes(pkt[22:24], "big"))


def test_map_with_portmap_then_the_plain_map_and_replies(tmp_path: Path) -> None:
    eng, st = setup(tmp_path)
    a = tx(eng.receive("eth0", build_udp(aton("10.0.0.2"), REMOTE, 5000, 53), 1.0))
    b = tx(eng.receive("eth0", build_udp(aton("10.0.0.3"), REMOTE, 5000, 53), 1.0))
    c = tx(eng.receive("eth0", build_udp(aton("10.0.0.4"), REMOTE, 5000, 53), 1.0))
    # the portmap range 10000:10001 hands out its two ports, then the second rule maps the address only
    assert [addrs(p.data)[:2] for p in (a, b, c)] == [("192.0.2.1", 10000), ("192.0.2.1", 10001), ("192.0.2.1", 5000)]
    back = tx(eng.receive("eth1", build_udp(REMOTE, aton("192.0.2.1"), 53, 10001), 1.1))
    assert back.dev == "eth0" and addrs(back.data) == ("203.0.113.9", 53, "10.0.0.3", 5000)
    listing = Shell(st).run_line("ipnat -l").out
    assert listing.startswith("List of active MAP/Redirect filters:\n")
    assert "map eth1 10.0.0.0/24 -> 0.0.0.0/32 portmap tcp/udp 10000:10001" in listing
    assert listing.count("MAP 10.0.0.") == 3


def test_rdr_port_forwarding_and_the_reply(tmp_path: Path) -> None:
    eng, _ = setup(tmp_path)
    fwd = tx(eng.receive("eth1", build_tcp(REMOTE, aton("192.0.2.1"), 40000, 8080, flags=0x02), 1.0))
    assert fwd.dev == "eth0" and addrs(fwd.data) == ("203.0.113.9", 40000, "10.0.0.5", 80)
    back = tx(eng.receive("eth0", build_tcp(aton("10.0.0.5"), REMOTE, 80, 40000, flags=0x12), 1.1))
    assert back.dev == "eth1" and addrs(back.data) == ("192.0.2.1", 8080, "203.0.113.9", 40000)


def test_netfilter_sees_inside_addresses_around_ipnat(tmp_path: Path) -> None:
    """rdr happens before PREROUTING and map after POSTROUTING: iptables rules see the LAN addresses."""
    eng, st = setup(tmp_path, "iptables -A FORWARD -d 10.0.0.5 -p tcp --dport 80 -j DROP\n")
    res = eng.receive("eth1", build_tcp(REMOTE, aton("192.0.2.1"), 40001, 8080, flags=0x02), 1.0)
    assert not [r for r in res if isinstance(r, Tx)] and isinstance(res[-1], Drop)
    assert Shell(st).run_line("iptables -L FORWARD -v -n -x").out.splitlines()[2].split()[0] == "1"


def test_batches_with_ipnat_go_one_by_one(tmp_path: Path) -> None:
    """IP Filter NAT runs around netfilter per packet, so with ipnat rules `receive_batch` takes every packet
    through `receive`: the same results as one by one, none as vectors."""
    e1, _ = setup(tmp_path)
    e2, _ = setup(tmp_path)
    pkts = [bytes(build_udp(aton(f"10.0.0.{2 + i % 5}"), REMOTE, 5000 + i, 53, b"x" * i)) for i in range(40)]
    for now in (1.0, 2.0):
        want = [r for p in pkts for r in e1.receive("eth0", p, now)]
        assert e2.receive_batch("eth0", pkts, now) == want
    assert e2.fastpath.vector.vectored == 0
