"""`ipgate save` round trips, offline: load -> save -> load gives the same listings.

Compared: `ip link`, `ip addr`, `ip route show table all`, `ip rule`, `iptables-save`, every sysctl
(net.ipv4.* and the conntrack ones), rt_tables names and the loaded conntrack helpers.  Configurations:
the repository's examples, a hand-written one that goes out of its way (deleted kernel routes, freed
ifindexes, renamed and down devices, dead multipath nexthops, rule 0 deleted and re-added, odd sysctl
orders, quoting), and 300 random ones from the kernel-differential generator (invalid lines ignored, as
the kernel would leave the state after them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ipgate.save import save
from ipgate.shell import Shell, load_script
from ipgate.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from kernel.gen import generate  # type: ignore[import-not-found]  # noqa: E402 - the kernel tests' generator

LISTINGS = (["ip", "link", "show"], ["ip", "addr", "show"], ["ip", "route", "show", "table", "all"],
            ["ip", "rule", "list"], ["iptables-save"], ["ip", "-j", "route", "show", "table", "all"])


def listing(st: Stack) -> dict[str, object]:
    sh = Shell(st)
    out: dict[str, object] = {}
    for argv in LISTINGS:
        r = sh.run_argv(list(argv))
        out[" ".join(argv)] = r.out + r.err
    out["sysctl"] = sorted(st.sysctl.items())
    out["conntrack sysctl"] = [(k, st.conntrack.sysctl.get(k)) for k in st.conntrack.sysctl.names()]
    out["rt_tables"] = sorted(st.rt_tables.items())
    out["helpers"] = sorted(st.ct_helpers.ports.items())
    out["helper auto-assign"] = st.ct_helpers.auto_assign
    out["custom rules"] = st.custom_rules
    return out


def round_trip(st: Stack) -> str:
    text = save(st)
    again = load_script(text, "<saved>")
    assert listing(again) == listing(st), text
    assert save(again) == text  # a fixed point: saving the reloaded state says the same
    return text


EXAMPLES = sorted((ROOT / "examples").glob("*.conf")) + sorted((ROOT / "examples" / "netfilter").glob("*"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_round_trip(path: Path) -> None:
    round_trip(load_script(path.read_text(), str(path)))


def test_fresh_box_saves_to_nothing_but_a_comment() -> None:
    text = round_trip(Stack())
    assert [ln for ln in text.splitlines() if not ln.startswith("#")] == []


HARD = r"""
echo "100 smtp" >> /etc/iproute2/rt_tables
echo 1 > /proc/sys/net/ipv4/conf/all/promote_secondaries
ip link add eth0 type dummy
ip link add tmp0 type dummy
ip link add eth1 type dummy mtu 1400
ip link add v0 type veth peer name v1
ip link del tmp0
ip link set eth1 address 02:11:22:33:44:55
ip link set eth1 txqueuelen 42
ip link set eth0 up
ip link set eth1 up
ip link set v0 up
ip addr add 10.1.0.1/24 dev eth1
ip addr add 10.0.0.2/24 dev eth0
ip addr add 10.1.0.9/24 dev eth0
ip addr add 10.0.0.3/24 dev eth0
ip addr add 10.0.0.4/24 brd + dev eth0 label eth0:1
ip addr add 192.0.2.1 peer 192.0.2.2/32 dev v0
ip addr add 198.51.100.1/24 dev v0 noprefixroute
ip addr del 10.0.0.2/24 dev eth0
ip route del 10.1.0.0/24 dev eth1
ip route add default via 10.0.0.254 table smtp
ip route add 203.0.113.0/24 tos 0x10 via 10.0.0.254 metric 5 mtu 1300
ip route add 203.0.113.0/24 via 10.1.0.254 dev eth0 onlink
ip route add blackhole 198.18.0.0/15
ip route add unreachable 198.19.0.0/16 table 7
ip route add 172.16.0.0/12 nexthop via 10.0.0.254 dev eth0 weight 2 nexthop via 192.0.2.2 dev v0
ip route add local 198.51.100.0/24 dev lo table local
ip route add 192.0.2.128/25 via 10.0.0.77
ip addr del 10.0.0.3/24 dev eth0
ip rule add fwmark 1 table smtp
ip rule add from 10.0.0.0/24 iif eth0 lookup main pref 100
ip rule add to 198.51.100.0/24 tos 0x10 blackhole
ip rule add ipproto tcp dport 25 sport 1000-2000 goto 32766 pref 10
ip rule add not from all lookup smtp suppress_prefixlength 0 pref 20
ip rule del pref 0
ip rule add pref 0 lookup local
ip link set v0 down
ip addr add 127.0.0.2/8 dev lo
echo 0 > /proc/sys/net/ipv4/conf/eth0/rp_filter
echo 2 > /proc/sys/net/ipv4/conf/eth1/rp_filter
echo 1 > /proc/sys/net/ipv4/ip_forward
echo 0 > /proc/sys/net/ipv4/conf/eth1/forwarding
sysctl -w net.netfilter.nf_conntrack_max=1000
echo 0 > /proc/sys/net/netfilter/nf_conntrack_helper
modprobe ip_conntrack_ftp ports=21,2121
modprobe ip_masq_irc
iptables -N LOGDROP
iptables -A LOGDROP -j LOG --log-prefix "drop \"it\": "
iptables -A LOGDROP -j DROP
iptables -A INPUT -p tcp --dport 22 -m comment --comment "ssh in" -j LOGDROP
iptables -t mangle -A PREROUTING -p tcp --dport 25 -j MARK --set-mark 1
iptables -t mangle -A PREROUTING -j CONNMARK --restore-mark
iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
iptables -t nat -A PREROUTING -p tcp -m multiport --dports 80,443 -j DNAT --to-destination 10.0.0.9
iptables -A FORWARD -m iprange --dst-range 203.0.113.8-203.0.113.9 -j REJECT --reject-with icmp-net-prohibited
iptables -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
iptables -P FORWARD DROP
iptables -t raw -L -n
ip link set eth1 name wan0
"""


def test_hard_configuration_round_trips() -> None:
    text = round_trip(load_script(HARD, "hard.conf"))
    assert "ipgate-gap0" in text  # tmp0's ifindex was taken and given back
    assert "ip link set dev v0 down" in text  # up for its routes, then down: its multipath nexthop is dead


@pytest.mark.parametrize("block", range(6))
def test_random_configurations_round_trip(block: int) -> None:
    for seed in range(block * 50, block * 50 + 50):
        st = Stack()
        sh = Shell(st)
        for line in generate(seed).config:
            sh.run_line(line)  # rejected lines leave the state as it was, as on the kernel
        round_trip(st)


def test_connections_are_not_configuration() -> None:
    from ipgate.engine.engine import Engine
    from ipgate.inet import aton
    from ipgate.packet.build import build_udp

    st = load_script((ROOT / "examples" / "netfilter" / "rc.firewall-2.2").read_text(), "rc.firewall-2.2")
    eng = Engine(st)
    eng.receive("eth0", build_udp(aton("192.168.0.5"), aton("203.0.113.9"), 1030, 53, b"q"), 1.0)
    assert len(st.conntrack) == 1
    text = save(st)
    assert "conntrack" not in text.replace("nf_conntrack", "")
    assert len(load_script(text, "<saved>").conntrack) == 0


def test_cli_save_prints_the_same(tmp_path: Path) -> None:
    conf = tmp_path / "hard.conf"
    conf.write_text(HARD)
    r = subprocess.run([sys.executable, "-m", "ipgate.cli", "-c", str(conf), "save"], capture_output=True,
                       text=True, timeout=60, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == save(load_script(HARD, str(conf)))


def test_full_table_takes_the_bulk_path_and_keeps_stale_gateways() -> None:
    """3,000 plain gateway routes (saved as bulk-loadable lines) plus routes whose gateway is no longer
    reachable (its address was deleted after they were made): those are made again through helper routes."""
    lines = ["ip link add eth0 type dummy", "ip link add eth1 type dummy", "ip link set eth0 up",
             "ip link set eth1 up", "ip addr add 10.0.0.1/16 dev eth0", "ip addr add 192.0.2.1/24 dev eth1",
             "ip addr add 172.16.0.1/24 dev eth1"]
    lines += [f"ip route add 100.{i >> 8}.{i & 255}.0/24 via 10.0.{i % 200}.2" + (" table 5" if i % 7 == 0 else "")
              for i in range(3000)]
    lines += ["ip route add 198.18.0.0/15 via 172.16.0.9", "ip route add 198.51.100.0/24 via 172.16.0.9 metric 7",
              "ip addr del 172.16.0.1/24 dev eth1"]
    st = load_script("\n".join(lines) + "\n", "full.conf")
    text = round_trip(st)
    assert "ip route add 100.0.1.0/24 via 10.0.1.2 dev eth0\n" in text  # the bulk grammar
    assert "ip route add 100.0.0.0/24 via 10.0.0.2 dev eth0 table 5\n" in text
    assert "172.16.0.9 dev eth1 table 255 metric 4294967295" in text  # the helper for the stale gateway
