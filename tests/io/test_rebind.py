"""A reload (SIGHUP) keeps conntrack connections and IP Filter NAT sessions (io/rebind.py)."""

from __future__ import annotations

from pathlib import Path

from ipgate.engine.engine import Engine
from ipgate.engine.result import Tx
from ipgate.inet import aton
from ipgate.io.rebind import carry_state
from ipgate.packet.build import build_udp
from ipgate.shell import load_script

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
iptables -t nat -A POSTROUTING -o eth1 -p tcp -j MASQUERADE
"""


def test_ipnat_sessions_and_conntrack_survive_a_reload(tmp_path: Path) -> None:
    (tmp_path / "ipnat.conf").write_text("map eth1 10.0.0.0/24 -> 0/32 portmap tcp/udp 20000:20010\n")
    path = tmp_path / "gw.conf"
    path.write_text(CONF)
    old = load_script(path.read_text(), str(path))
    eng = Engine(old)
    out = [r for r in eng.receive("eth0", build_udp(aton("10.0.0.2"), aton("203.0.113.9"), 5000, 53), 1.0)
           if isinstance(r, Tx)]
    assert int.from_bytes(out[0].data[20:22], "big") == 20000
    new = load_script(path.read_text(), str(path))
    carry_state(old, new)
    eng.rebind(new)
    back = [r for r in eng.receive("eth1", build_udp(aton("203.0.113.9"), aton("192.0.2.1"), 53, 20000), 2.0)
            if isinstance(r, Tx)]
    assert back and back[0].dev == "eth0" and back[0].data[16:20] == bytes([10, 0, 0, 2])
    assert len(list(new.ipnat.session_list())) == 1 and new.conntrack is old.conntrack
