"""The seeds' netfilter examples (examples/netfilter/) loaded as configurations and driven with packets."""

from __future__ import annotations

import struct
from pathlib import Path

from ipgate.engine.engine import Engine
from ipgate.engine.result import Result, Tx
from ipgate.inet import aton, ntoa
from ipgate.packet.build import build_tcp, build_udp
from ipgate.shell import Shell, load_script
from ipgate.stack import Stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "netfilter"


def load(name: str) -> tuple[Engine, Stack]:
    path = EXAMPLES / name
    st = load_script(path.read_text(), str(path))
    return Engine(st), st


def tx(results: list[Result]) -> Tx:
    out = [r for r in results if isinstance(r, Tx)]
    assert len(out) == 1, results
    return out[0]


def src_of(pkt: bytes) -> str:
    return ntoa(int.from_bytes(pkt[12:16], "big"))


def test_rc_firewall_22_masquerades_the_lan_with_the_howto_timeouts() -> None:
    eng, st = load("rc.firewall-2.2")
    lan, server, public = aton("192.168.0.5"), aton("203.0.113.80"), aton("198.51.100.10")
    out = tx(eng.receive("eth0", build_udp(lan, server, 5000, 53, b"q"), 10.0))
    assert (out.dev, src_of(out.data)) == ("ppp0", "198.51.100.10")
    back = tx(eng.receive("ppp0", build_udp(server, public, 53, 5000, b"a"), 10.5))
    assert back.dev == "eth0"
    # `ipchains -M -S 7200 10 160`: UDP entries live 160 s after the last packet
    [ct] = list(st.conntrack.entries(10.5))
    assert ct.expires(10.5) == 160
    # forward policy DENY: the outside cannot open connections in
    res = eng.receive("ppp0", build_udp(server, lan, 53, 5000), 11.0)
    assert not [r for r in res if isinstance(r, Tx)]
    # the masquerade listing of 2.2's tools
    listing = Shell(st).run_line("ipchains -M -L -n").out
    assert "192.168.0.5" in listing and "203.0.113.80" in listing


def test_rc_firewall_22_ftp_helper_rewrites_port_and_lets_the_data_connection_in() -> None:
    eng, _ = load("rc.firewall-2.2")
    lan, server, public = aton("192.168.0.5"), aton("203.0.113.21"), aton("198.51.100.10")
    tx(eng.receive("eth0", build_tcp(lan, server, 1030, 21, seq=100, flags=0x02), 1.0))
    tx(eng.receive("ppp0", build_tcp(server, public, 21, 1030, seq=900, ack_seq=101, flags=0x12), 1.0))
    tx(eng.receive("eth0", build_tcp(lan, server, 1030, 21, seq=101, ack_seq=901, flags=0x10), 1.0))
    # nf_conntrack_ftp parses a command only where a previous one ended (its seq_aft_nl): not the first
    user = b"USER anonymous\r\n"
    tx(eng.receive("eth0", build_tcp(lan, server, 1030, 21, user, seq=101, ack_seq=901, flags=0x18), 1.05))
    port_cmd = b"PORT 192,168,0,5,4,10\r\n"
    seq = 101 + len(user)
    out = tx(eng.receive("eth0", build_tcp(lan, server, 1030, 21, port_cmd, seq=seq, ack_seq=901, flags=0x18), 1.1))
    payload = out.data[40:]
    assert payload.startswith(b"PORT 198,51,100,10,") and payload.endswith(b"\r\n")
    p1, p2 = (int(x) for x in payload[5:-2].split(b",")[4:6])
    # the server's data connection to the announced public port comes back in, to the client's port 1034
    data_syn = build_tcp(server, public, 20, p1 * 256 + p2, seq=5000, flags=0x02)
    fwd = tx(eng.receive("ppp0", data_syn, 1.2))
    assert fwd.dev == "eth0" and ntoa(int.from_bytes(fwd.data[16:20], "big")) == "192.168.0.5"
    assert struct.unpack_from("!H", fwd.data, 22)[0] == 4 * 256 + 10


def test_fwmark_smtp_leaves_by_the_second_gateway_and_counts() -> None:
    eng, st = load("fwmark-smtp.conf")
    box, far = aton("192.168.1.23"), aton("203.0.113.25")
    smtp = tx(eng.output(build_tcp(box, far, 40000, 25, flags=0x02), 1.0))
    web = tx(eng.output(build_tcp(box, far, 40001, 80, flags=0x02), 1.0))
    assert ntoa(smtp.nexthop) == "192.168.1.2" and ntoa(web.nexthop) == "192.168.1.1"
    listing = Shell(st).run_line("iptables -t mangle -nvL OUTPUT").out.splitlines()
    assert listing[0] == "Chain OUTPUT (policy ACCEPT 2 packets, 80 bytes)"
    assert listing[2].split()[:3] == ["1", "40", "MARK"] and listing[2].endswith("tcp dpt:25 MARK set 0x2")


def test_split_access_replies_leave_by_the_uplink_the_connection_came_in_on() -> None:
    eng, _ = load("split-access-connmark.conf")
    web = aton("10.0.0.80")
    for dev, client, public, gw in (("eth1", "203.0.113.5", "192.0.2.1", "192.0.2.254"),
                                    ("eth2", "203.0.113.6", "198.51.100.1", "198.51.100.254")):
        c, p = aton(client), aton(public)
        inbound = tx(eng.receive(dev, build_tcp(c, p, 7000, 80, seq=1, flags=0x02), 1.0))
        assert inbound.dev == "eth0" and inbound.nexthop == web
        reply = tx(eng.receive("eth0", build_tcp(web, c, 80, 7000, seq=50, ack_seq=2, flags=0x12), 1.1))
        assert (reply.dev, ntoa(reply.nexthop), src_of(reply.data)) == (dev, gw, public)
