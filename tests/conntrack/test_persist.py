"""The state file (conntrack/persist.py, nat/ipnat/persist.py): connections survive a restart.

The main test runs one gateway configuration twice.  Engine A is never
interrupted.  After the first phase of traffic A's state is saved; engine B,
a fresh gateway from the same configuration with its own, unrelated clock,
loads it.  Then the second phase -- the next packets of every connection,
plus a few new connections whose mapping depends on saved NAT state -- goes
through both, B's times shifted to its clock; every result and the final
listings must be identical.  A third engine C, started without the state,
shows that the second phase does depend on it.

The traffic: masqueraded TCP (closed in phase 2), a UDP stream with a mark,
an unreplied UDP flow, an ICMP echo, a DNAT port forward, FTP through
MASQUERADE with the NAT helper (the PORT rewrite shrinks the payload:
seqadj; a data connection open across the restart; a second PORT whose data
connection arrives only after it: a restored expectation), and IP Filter NAT:
`map ... portmap` (the next port comes from the saved rule) and two
round-robin `rdr` rules (the next connection goes to the other server).
The downtime is 0 s, then 45 s (wall clock): the 30 s entries die meanwhile
and are not restored, which A shows is what would have happened anyway.
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ipgate.commands.conntrack import proc_nf_conntrack
from ipgate.conntrack import persist
from ipgate.conntrack.persist import MAGIC, StateError, load_state, save_state
from ipgate.engine.engine import Engine
from ipgate.engine.result import Result, Tx
from ipgate.inet import aton, ntoa
from ipgate.nat.ipnat.core import IpnatTable
from ipgate.packet.build import build_icmp, build_tcp, build_udp
from ipgate.shell import Shell, load_script
from ipgate.stack import Stack

CONF = """\
ip link add eth0 type dummy
ip link add eth1 type dummy
ip link add eth2 type dummy
ip link set eth0 up
ip link set eth1 up
ip link set eth2 up
ip addr add 192.168.1.1/24 dev eth0
ip addr add 198.51.100.1/24 dev eth1
ip addr add 192.0.2.1/24 dev eth2
ip route add default via 198.51.100.254
echo 1 > /proc/sys/net/ipv4/ip_forward
echo 1 > /proc/sys/net/netfilter/nf_conntrack_acct
echo 0 > /proc/sys/net/netfilter/nf_conntrack_tcp_loose
modprobe nf_conntrack_ftp
modprobe nf_nat_ftp
iptables -A FORWARD -m conntrack --ctstate INVALID -j DROP
iptables -t mangle -A PREROUTING -i eth0 -p udp -j CONNMARK --set-mark 7
iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE
iptables -t nat -A PREROUTING -i eth1 -p tcp --dport 8080 -j DNAT --to-destination 192.168.1.80:80
ipnat -f ipnat.conf
"""
IPNAT = """\
map eth2 192.168.1.0/24 -> 0/32 portmap tcp/udp 20000:20100
rdr eth2 192.0.2.1/32 port 8000 -> 192.168.1.81 port 80 tcp round-robin
rdr eth2 192.0.2.1/32 port 8000 -> 192.168.1.82 port 80 tcp round-robin
"""
PUB = "198.51.100.1"
SYN, ACK, PSH, FIN, SYNACK = 0x02, 0x10, 0x08, 0x01, 0x12
SAVE_AT = 20.0  # A's clock at the save
LOAD_AT = 5000.0  # B's clock at the load: another process, another time.monotonic()
WALL = 1_700_000_000.0


def gateway(tmp_path: Path) -> tuple[Engine, Stack]:
    (tmp_path / "ipnat.conf").write_text(IPNAT)
    st = load_script(CONF, str(tmp_path / "gw.conf"))
    return Engine(st), st


def tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes = b"") -> bytes:
    return bytes(build_tcp(aton(src), aton(dst), sport, dport, data, seq=seq, ack_seq=ack, flags=flags))


def udp(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    return bytes(build_udp(aton(src), aton(dst), sport, dport, data))


def echo(src: str, dst: str, type_: int, ident: int, seq: int) -> bytes:
    return bytes(build_icmp(aton(src), aton(dst), type_, 0, (ident << 16) | seq, b"ping"))


def one_tx(results: list[Result]) -> Tx:
    out = [r for r in results if isinstance(r, Tx)]
    assert len(out) == 1 and len(results) == 1, results
    return out[0]


def sport(pkt: bytes) -> int:
    return int(struct.unpack_from("!H", pkt, 20)[0])


def seq_end(pkt: bytes) -> int:
    """The sequence number after a TCP segment: what its receiver acknowledges."""
    ihl = (pkt[0] & 15) * 4
    doff = (pkt[ihl + 12] >> 4) * 4
    seq = int(struct.unpack_from("!I", pkt, ihl + 4)[0])
    return seq + len(pkt) - ihl - doff


@dataclass
class Phase1:
    """What the first phase learnt from A's outputs (mapped ports, sequence numbers seen by the far ends)."""

    values: dict[str, int] = field(default_factory=dict)


def phase1(eng: Engine) -> Phase1:
    """Open every connection; a few times check that A did what it should (so phase 2 means something)."""
    v: dict[str, int] = {}

    def rx(t: float, dev: str, pkt: bytes) -> Tx:
        return one_tx(eng.receive(dev, pkt, t))

    # masqueraded TCP
    out = rx(10.0, "eth0", tcp("192.168.1.10", "203.0.113.5", 40000, 443, 1000, 0, SYN))
    v["tcp"] = sport(out.data)
    rx(10.1, "eth1", tcp("203.0.113.5", PUB, 443, v["tcp"], 5000, 1001, SYNACK))
    rx(10.2, "eth0", tcp("192.168.1.10", "203.0.113.5", 40000, 443, 1001, 5001, ACK))
    rx(10.3, "eth0", tcp("192.168.1.10", "203.0.113.5", 40000, 443, 1001, 5001, PSH | ACK, b"hello"))
    rx(10.4, "eth1", tcp("203.0.113.5", PUB, 443, v["tcp"], 5001, 1006, PSH | ACK, b"world!"))
    # a UDP stream (assured: traffic both ways more than 2 s after it began), marked by CONNMARK
    out = rx(10.0, "eth0", udp("192.168.1.11", "203.0.113.53", 5353, 53, b"q1"))
    v["udp"] = sport(out.data)
    rx(10.1, "eth1", udp("203.0.113.53", PUB, 53, v["udp"], b"a1"))
    rx(13.0, "eth0", udp("192.168.1.11", "203.0.113.53", 5353, 53, b"q2"))
    rx(13.1, "eth1", udp("203.0.113.53", PUB, 53, v["udp"], b"a2"))
    # unreplied UDP, 30 s to live
    out = rx(19.0, "eth0", udp("192.168.1.11", "203.0.113.54", 6000, 9999, b"hi"))
    v["udp2"] = sport(out.data)
    # ICMP echo
    rx(15.0, "eth0", echo("192.168.1.12", "203.0.113.7", 8, 77, 1))
    rx(15.1, "eth1", echo("203.0.113.7", PUB, 0, 77, 1))
    # DNAT port forward from outside
    fwd = rx(11.0, "eth1", tcp("203.0.113.99", PUB, 50000, 8080, 7000, 0, SYN))
    assert fwd.dev == "eth0" and ntoa(int.from_bytes(fwd.data[16:20], "big")) == "192.168.1.80"
    rx(11.1, "eth0", tcp("192.168.1.80", "203.0.113.99", 80, 50000, 8000, 7001, SYNACK))
    rx(11.2, "eth1", tcp("203.0.113.99", PUB, 50000, 8080, 7001, 8001, ACK))
    # FTP through MASQUERADE: nf_nat_ftp rewrites PORT (13 -> 12 characters of address: seqadj -1)
    cli, srv = "192.168.1.130", "203.0.113.21"
    out = rx(12.0, "eth0", tcp(cli, srv, 1030, 21, 100, 0, SYN))
    v["ftp"] = sport(out.data)
    rx(12.1, "eth1", tcp(srv, PUB, 21, v["ftp"], 900, 101, SYNACK))
    rx(12.2, "eth0", tcp(cli, srv, 1030, 21, 101, 901, ACK))
    user = b"USER anonymous\r\n"
    out = rx(12.3, "eth0", tcp(cli, srv, 1030, 21, 101, 901, PSH | ACK, user))
    rx(12.35, "eth1", tcp(srv, PUB, 21, v["ftp"], 901, seq_end(out.data), PSH | ACK, b"331 ok\r\n"))
    port1 = b"PORT 192,168,1,130,4,10\r\n"
    cseq = 101 + len(user)
    out = rx(12.4, "eth0", tcp(cli, srv, 1030, 21, cseq, 909, PSH | ACK, port1))
    assert out.data[40:].startswith(b"PORT 198,51,100,1,") and len(out.data) == 40 + len(port1) - 1
    a, b = (int(x) for x in out.data[40:-2].split(b",")[4:6])
    v["data1"] = a * 256 + b
    v["srv_ack"] = seq_end(out.data)
    rx(12.45, "eth1", tcp(srv, PUB, 21, v["ftp"], 909, v["srv_ack"], PSH | ACK, b"200 PORT ok\r\n"))
    fwd = rx(12.5, "eth1", tcp(srv, PUB, 20, v["data1"], 3000, 0, SYN))
    assert fwd.dev == "eth0" and sport(fwd.data) == 20 and struct.unpack_from("!H", fwd.data, 22)[0] == 1034
    rx(12.6, "eth0", tcp(cli, srv, 1034, 20, 4000, 3001, SYNACK))
    rx(12.7, "eth1", tcp(srv, PUB, 20, v["data1"], 3001, 4001, ACK))
    rx(12.8, "eth1", tcp(srv, PUB, 20, v["data1"], 3001, 4001, PSH | ACK, b"file"))
    cseq += len(port1)
    port2 = b"PORT 192,168,1,130,4,11\r\n"
    out = rx(13.0, "eth0", tcp(cli, srv, 1030, 21, cseq, 922, PSH | ACK, port2))
    a, b = (int(x) for x in out.data[40:-2].split(b",")[4:6])
    v["data2"] = a * 256 + b
    v["srv_ack"] = seq_end(out.data)
    v["cseq"] = cseq + len(port2)
    rx(13.1, "eth1", tcp(srv, PUB, 21, v["ftp"], 922, v["srv_ack"], PSH | ACK, b"200 PORT ok\r\n"))
    # IP Filter NAT: map with portmap out of eth2, and a round-robin rdr in on it
    out = rx(14.0, "eth0", tcp("192.168.1.14", "192.0.2.50", 41000, 80, 100, 0, SYN))
    assert out.dev == "eth2" and sport(out.data) == 20000
    rx(14.1, "eth2", tcp("192.0.2.50", "192.0.2.1", 80, 20000, 600, 101, SYNACK))
    rx(14.2, "eth0", tcp("192.168.1.14", "192.0.2.50", 41000, 80, 101, 601, ACK))
    fwd = rx(14.5, "eth2", tcp("192.0.2.60", "192.0.2.1", 33000, 8000, 300, 0, SYN))
    assert ntoa(int.from_bytes(fwd.data[16:20], "big")) == "192.168.1.81"
    rx(14.6, "eth0", tcp("192.168.1.81", "192.0.2.60", 80, 33000, 800, 301, SYNACK))
    return Phase1(v)


def phase2(p: Phase1) -> list[tuple[float, str, bytes]]:
    """(seconds after the restart, device, packet): the next packets of each connection, and new ones."""
    v = p.values
    cli, srv = "192.168.1.130", "203.0.113.21"
    quit_ = b"QUIT\r\n"
    return [
        (1.0, "eth0", tcp("192.168.1.10", "203.0.113.5", 40000, 443, 1006, 5007, PSH | ACK, b"more")),
        (1.1, "eth1", tcp("203.0.113.5", PUB, 443, v["tcp"], 5007, 1010, PSH | ACK, b"ok")),
        (1.2, "eth0", tcp("192.168.1.10", "203.0.113.5", 40000, 443, 1010, 5009, FIN | ACK)),
        (1.3, "eth1", tcp("203.0.113.5", PUB, 443, v["tcp"], 5009, 1011, FIN | ACK)),
        (1.4, "eth0", tcp("192.168.1.10", "203.0.113.5", 40000, 443, 1011, 5010, ACK)),
        (2.0, "eth0", udp("192.168.1.11", "203.0.113.53", 5353, 53, b"q3")),
        (2.1, "eth1", udp("203.0.113.53", PUB, 53, v["udp"], b"a3")),
        (3.0, "eth0", udp("192.168.1.11", "203.0.113.54", 6000, 9999, b"again")),
        (3.1, "eth1", udp("203.0.113.54", PUB, 9999, v["udp2"], b"back")),
        (4.0, "eth0", echo("192.168.1.12", "203.0.113.7", 8, 77, 2)),
        (4.1, "eth1", echo("203.0.113.7", PUB, 0, 77, 2)),
        (5.0, "eth1", tcp("203.0.113.99", PUB, 50000, 8080, 7001, 8001, PSH | ACK, b"GET")),
        (5.1, "eth0", tcp("192.168.1.80", "203.0.113.99", 80, 50000, 8001, 7004, PSH | ACK, b"200")),
        # the data connection announced before the restart (a restored expectation), then the old one
        (6.0, "eth1", tcp(srv, PUB, 20, v["data2"], 9000, 0, SYN)),
        (6.1, "eth0", tcp(cli, srv, 1035, 20, 9500, 9001, SYNACK)),
        (6.2, "eth0", tcp(cli, srv, 1034, 20, 4001, 3005, ACK)),
        (6.3, "eth1", tcp(srv, PUB, 20, v["data1"], 3005, 4001, FIN | ACK)),
        # the control connection: the client's sequence numbers still need the -2 of the two rewrites
        (6.4, "eth0", tcp(cli, srv, 1030, 21, v["cseq"], 935, PSH | ACK, quit_)),
        (6.5, "eth1", tcp(srv, PUB, 21, v["ftp"], 935, v["srv_ack"] + len(quit_), PSH | ACK, b"221 bye\r\n")),
        # IP Filter NAT: the mapped connection goes on; a new map takes the next port; rdr takes the next server
        (7.0, "eth0", tcp("192.168.1.14", "192.0.2.50", 41000, 80, 101, 601, PSH | ACK, b"GET /")),
        (7.1, "eth2", tcp("192.0.2.50", "192.0.2.1", 80, 20000, 601, 106, PSH | ACK, b"HTTP")),
        (7.2, "eth2", tcp("192.0.2.60", "192.0.2.1", 33000, 8000, 301, 801, ACK)),
        (7.5, "eth2", tcp("192.0.2.61", "192.0.2.1", 33001, 8000, 400, 0, SYN)),
        (7.6, "eth0", tcp("192.168.1.15", "192.0.2.50", 41001, 80, 200, 0, SYN)),
        # a new masqueraded connection
        (8.0, "eth0", tcp("192.168.1.16", "203.0.113.5", 40000, 443, 1, 0, SYN)),
    ]


def listings(st: Stack, now: float) -> tuple[str, str, str]:
    if isinstance(st.ipnat.sessions, IpnatTable):
        st.ipnat.sessions.ticks(now)  # `ipnat -lv` prints ttls from the table's last clock reading
    sh = Shell(st)
    return (proc_nf_conntrack(st.conntrack, now), sh.run_line("ipnat -lv").out, sh.run_line("conntrack -L expect").out)


@pytest.mark.parametrize("downtime", [0.0, 45.0])
def test_connections_go_on_after_a_restart_as_if_nothing_happened(tmp_path: Path, downtime: float) -> None:
    a, sta = gateway(tmp_path)
    p = phase1(a)
    path = str(tmp_path / "state")
    saved = save_state(path, sta, SAVE_AT, wall=WALL)
    assert saved.connections == len(sta.conntrack) == 9 and saved.expectations == 1 and saved.nat_sessions == 2

    b, stb = gateway(tmp_path)
    b.rng.setstate(a.rng.getstate())  # random choices apart (the gateway does not keep its generator)
    restored = load_state(path, stb, LOAD_AT, rng=b.rng, wall=WALL + downtime)
    assert restored is not None and restored.downtime == downtime
    dead = 2 if downtime else 0  # unreplied UDP and the ICMP echo: 30 s
    assert (restored.connections, restored.dropped, restored.expectations, restored.nat_sessions) == \
        (9 - dead, dead, 1, 2)
    assert listings(stb, LOAD_AT) == listings(sta, SAVE_AT + downtime)

    c, stc = gateway(tmp_path)  # the same restart without the state
    c.rng.setstate(a.rng.getstate())
    differ = 0
    for x, dev, pkt in phase2(p):
        ra = a.receive(dev, pkt, SAVE_AT + downtime + x)
        rb = b.receive(dev, pkt, LOAD_AT + x)
        rc = c.receive(dev, pkt, LOAD_AT + x)
        assert len(ra) == 1 and isinstance(ra[0], Tx), (x, ra)  # every packet goes through, none INVALID
        assert rb == ra, (x, ra, rb)
        differ += rc != ra
    assert differ >= 15  # without the state every TCP packet is INVALID (no loose pickup) or mapped otherwise
    end = 10.0
    assert listings(stb, LOAD_AT + end) == listings(sta, SAVE_AT + downtime + end)
    assert b.conntrack.count == a.conntrack.count
    assert [len(list(b.conntrack.bysource(k))) for k in b.conntrack.nat_bysource] == \
        [len(list(a.conntrack.bysource(k))) for k in a.conntrack.nat_bysource]


def test_round_robin_order_and_ports_come_back(tmp_path: Path) -> None:
    """The rule state ipfs would lose (in_pnext, the rdr chain order) is kept."""
    a, sta = gateway(tmp_path)
    phase1(a)
    path = str(tmp_path / "state")
    save_state(path, sta, SAVE_AT, wall=WALL)
    b, stb = gateway(tmp_path)
    load_state(path, stb, LOAD_AT, rng=b.rng, wall=WALL)
    ta, tb = sta.ipnat.sessions, stb.ipnat.sessions
    assert isinstance(ta, IpnatTable) and isinstance(tb, IpnatTable)
    assert [(np.pnext, np.nip, np.space, np.hits, np.use) for np in ta.rules()] == \
        [(np.pnext, np.nip, np.space, np.hits, np.use) for np in tb.rules()]
    assert [s.die - ta.ticks(SAVE_AT) for s in ta.sessions()] == [s.die - tb.ticks(LOAD_AT) for s in tb.sessions()]
    fwd = one_tx(b.receive("eth2", tcp("192.0.2.61", "192.0.2.1", 33001, 8000, 400, 0, SYN), LOAD_AT + 1))
    assert ntoa(int.from_bytes(fwd.data[16:20], "big")) == "192.168.1.82"


def test_a_rule_gone_from_the_configuration_leaves_an_orphan_session(tmp_path: Path) -> None:
    a, sta = gateway(tmp_path)
    phase1(a)
    path = str(tmp_path / "state")
    save_state(path, sta, SAVE_AT, wall=WALL)
    (tmp_path / "ipnat.conf").write_text(IPNAT.replace("portmap tcp/udp 20000:20100", "portmap tcp/udp 30000:30100"))
    stb = load_script(CONF, str(tmp_path / "gw.conf"))
    b = Engine(stb)
    load_state(path, stb, LOAD_AT, rng=b.rng, wall=WALL)
    tb = stb.ipnat.sessions
    assert isinstance(tb, IpnatTable)
    [mapped] = [s for s in tb.sessions() if s.kind == "MAP"]
    assert mapped.rule is None and mapped.outport == 20000
    # its packets are still translated both ways
    out = one_tx(b.receive("eth0", tcp("192.168.1.14", "192.0.2.50", 41000, 80, 101, 601, PSH | ACK, b"x"),
                           LOAD_AT + 1))
    assert sport(out.data) == 20000
    back = one_tx(b.receive("eth2", tcp("192.0.2.50", "192.0.2.1", 80, 20000, 601, 102, ACK), LOAD_AT + 1.1))
    assert back.dev == "eth0"
    # and a new connection is mapped by the new rule
    out = one_tx(b.receive("eth0", tcp("192.168.1.15", "192.0.2.50", 41001, 80, 1, 0, SYN), LOAD_AT + 2))
    assert sport(out.data) == 30000


def test_a_rule_age_outlives_its_rule(tmp_path: Path) -> None:
    """A session on a rule's `age` queue keeps that age when the rule is gone (its queue comes back
    unreferenced, and goes with its last session)."""
    (tmp_path / "ipnat.conf").write_text("map eth2 192.168.1.0/24 -> 0/32 age 40\n")
    sta = load_script(CONF, str(tmp_path / "gw.conf"))
    a = Engine(sta)
    one_tx(a.receive("eth0", udp("192.168.1.14", "192.0.2.50", 5000, 53, b"q"), 10.0))
    path = str(tmp_path / "state")
    save_state(path, sta, SAVE_AT, wall=WALL)
    (tmp_path / "ipnat.conf").write_text("map eth2 192.168.1.0/24 -> 0/32\n")
    stb = load_script(CONF, str(tmp_path / "gw.conf"))
    load_state(path, stb, LOAD_AT, rng=random.Random(0), wall=WALL)
    tb = stb.ipnat.sessions
    assert isinstance(tb, IpnatTable)
    [s] = list(tb.sessions())
    assert s.rule is None and s.queue is not None and s.queue.ttl == 80 and s.queue in list(tb.userq)
    assert tb.expire(LOAD_AT + 29.5) == 0 and tb.expire(LOAD_AT + 30.0) == 1  # 40 s from 10.0, saved at 20.0
    assert not list(tb.userq)


def test_no_nat_rules_no_nat_sessions(tmp_path: Path) -> None:
    """Without a single ipnat rule IP Filter translates nothing: the sessions are not brought back."""
    a, sta = gateway(tmp_path)
    phase1(a)
    path = str(tmp_path / "state")
    save_state(path, sta, SAVE_AT, wall=WALL)
    (tmp_path / "ipnat.conf").write_text("# no rules any more\n")
    stb = load_script(CONF, str(tmp_path / "gw.conf"))
    r = load_state(path, stb, LOAD_AT, rng=random.Random(0), wall=WALL)
    assert r is not None and (r.connections, r.nat_sessions) == (9, 0)
    assert stb.ipnat.sessions is None


def test_masqueraded_entries_need_their_device_and_address(tmp_path: Path) -> None:
    """masq_inet_event(): an entry masqueraded with an address the new configuration lacks is not restored."""
    a, sta = gateway(tmp_path)
    phase1(a)
    path = str(tmp_path / "state")
    save_state(path, sta, SAVE_AT, wall=WALL)
    (tmp_path / "ipnat.conf").write_text(IPNAT)
    stb = load_script(CONF.replace("198.51.100.1/24", "198.51.100.2/24"), str(tmp_path / "gw.conf"))
    r = load_state(path, stb, LOAD_AT, rng=random.Random(0), wall=WALL)
    assert r is not None
    # MASQUERADE's entries go; the FTP data connection, NATed by nf_nat_follow_master, has no
    # masq_index and stays, as in the kernel
    masq = {"tcp 40000", "udp 5353", "udp 6000", "icmp", "ftp 1030"}
    assert r.dropped == len(masq) and r.connections == 9 - len(masq)
    assert r.expectations == 0  # its master, the FTP control connection, is gone
    assert not [ct for ct in stb.conntrack.entries(LOAD_AT) if ct.ext is not None and ct.ext.masq_index]


# -- the file -------------------------------------------------------------------------------------------
def saved_file(tmp_path: Path) -> tuple[str, bytes]:
    a, sta = gateway(tmp_path)
    phase1(a)
    path = str(tmp_path / "state")
    save_state(path, sta, SAVE_AT, wall=WALL)
    return path, Path(path).read_bytes()


def fresh(tmp_path: Path) -> Stack:
    return gateway(tmp_path)[1]


def test_missing_file_is_a_clean_start(tmp_path: Path) -> None:
    st = fresh(tmp_path)
    assert load_state(str(tmp_path / "nothing"), st, 1.0, rng=random.Random(0)) is None
    assert len(st.conntrack) == 0


def test_header(tmp_path: Path) -> None:
    _, data = saved_file(tmp_path)
    assert data[:8] == MAGIC
    version, flags, wall, length, _crc = struct.unpack_from("!HHdQI", data, 8)
    assert (version, flags, wall, length) == (1, 0, WALL, len(data) - 32)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "magic", "version", "empty", "appended", "section"])
def test_a_corrupt_or_incompatible_file_loads_nothing(tmp_path: Path, damage: str) -> None:
    path, data = saved_file(tmp_path)
    bad = bytearray(data)
    if damage == "truncated":
        bad = bad[:len(bad) // 2]
    elif damage == "flipped":
        bad[len(bad) // 2] ^= 0x40
    elif damage == "magic":
        bad[1:7] = b"IPFSAV"
    elif damage == "version":
        struct.pack_into("!H", bad, 8, 99)
    elif damage == "empty":
        bad = bytearray()
    elif damage == "appended":
        bad += b"\0"
    else:  # a well-formed file (right length and CRC) with a section this version does not know
        bad = bytearray(persist.pack_file([(b"CONN", b"\0" * 8), (b"XTRA", b"")], WALL))
    Path(path).write_bytes(bytes(bad))
    st = fresh(tmp_path)
    with pytest.raises(StateError):
        load_state(path, st, 1.0, rng=random.Random(0))
    assert len(st.conntrack) == 0 and st.ipnat.sessions is None


def test_a_bad_body_with_a_good_crc_loads_nothing(tmp_path: Path) -> None:
    """Corruption the CRC cannot see (a buggy writer): the sections are checked entry by entry, and
    the tables are only touched once all of it decoded."""
    path, data = saved_file(tmp_path)
    wall, sections = persist.unpack_file(data)
    conn = bytes(sections[b"CONN"])
    ipnt = bytes(sections[b"IPNT"])
    cases = [
        [(b"CONN", conn), (b"IPNT", ipnt[:-3])],            # the NAT part cut short: conntrack must stay empty
        [(b"CONN", conn[:-1]), (b"IPNT", ipnt)],
        [(b"CONN", conn + b"\0"), (b"IPNT", ipnt)],
        [(b"CONN", b"\xff\xff\xff\xff" + conn[4:]), (b"IPNT", ipnt)],  # an absurd entry count
        [(b"IPNT", ipnt)],                                  # no conntrack section
    ]
    for sections_ in cases:
        Path(path).write_bytes(persist.pack_file(sections_, wall))
        st = fresh(tmp_path)
        with pytest.raises(StateError):
            load_state(path, st, 1.0, rng=random.Random(0))
        assert len(st.conntrack) == 0 and len(st.conntrack.expect) == 0 and st.ipnat.sessions is None


def test_the_same_tuple_twice_is_corrupt(tmp_path: Path) -> None:
    path, data = saved_file(tmp_path)
    wall, sections = persist.unpack_file(data)
    conn = bytes(sections[b"CONN"])
    # the first entry's tuple repeated as the second's: copy the first 26 bytes (both keys) over the second's
    table = fresh(tmp_path).conntrack
    staged = persist.decode_conntrack(conn, 0.0, {}, frozenset())
    assert len(staged.conns) + staged.dropped == 9
    first = conn[4:4 + 26]
    second_at = 4 + _entry_size(conn, 4)
    dup = conn[:second_at] + first + conn[second_at + 26:]
    with pytest.raises(ValueError, match="same tuple"):
        persist.decode_conntrack(dup, 0.0, {}, frozenset())
    assert len(table) == 0


def _entry_size(conn: bytes, at: int) -> int:
    """Size of the masqueraded TCP entry that comes first: fixed part, TCP state, acct, ext (masq device)."""
    fixed = 26 + 8 + 8 + 2
    tcp_state = 1 + conn[at + fixed]
    acct = 32
    ext_at = at + fixed + tcp_state + acct
    assert conn[ext_at] == persist.EXT_MASQ
    return fixed + tcp_state + acct + 1 + 1 + conn[ext_at + 1]


def test_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that fails half way (here: the rename) leaves the previous file whole and no temporary file."""
    a, sta = gateway(tmp_path)
    phase1(a)
    path = str(tmp_path / "state")
    save_state(path, sta, SAVE_AT, wall=WALL)
    before = Path(path).read_bytes()
    a.receive("eth0", tcp("192.168.1.20", "203.0.113.5", 40000, 443, 1, 0, SYN), SAVE_AT + 1)

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_state(path, sta, SAVE_AT + 2, wall=WALL)
    monkeypatch.undo()
    assert Path(path).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ipnat.conf", "state"]
    # the next save replaces it whole
    save_state(path, sta, SAVE_AT + 3, wall=WALL)
    assert Path(path).read_bytes() != before
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    r = load_state(path, fresh(tmp_path), 1.0, rng=random.Random(0), wall=WALL)
    assert r is not None and r.connections == 10


def test_an_empty_gateway_round_trips(tmp_path: Path) -> None:
    st = fresh(tmp_path)
    path = str(tmp_path / "state")
    s = save_state(path, st, 1.0, wall=WALL)
    assert (s.connections, s.nat_sessions) == (0, 0)
    r = load_state(path, fresh(tmp_path), 2.0, rng=random.Random(0), wall=WALL)
    assert r is not None and (r.connections, r.nat_sessions, r.dropped) == (0, 0, 0)


def test_a_clock_gone_back_is_no_downtime(tmp_path: Path) -> None:
    path, _ = saved_file(tmp_path)
    r = load_state(path, fresh(tmp_path), 1.0, rng=random.Random(0), wall=WALL - 3600)
    assert r is not None and r.downtime == 0.0 and r.dropped == 0


# -- the gateway's use of it (io/gateway.py), without devices -------------------------------------------
def test_the_gateway_saves_periodically_and_restores_with_one_line(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from ipgate.io.gateway import Gateway
    from ipgate.io.syslog import SyslogWriter

    monkeypatch.setattr(time, "monotonic", lambda: SAVE_AT)  # the gateway's clock, as phase1's

    logfile, state = tmp_path / "gw.log", str(tmp_path / "state")
    gw = Gateway(str(tmp_path / "gw.conf"), [], log=SyslogWriter(str(logfile)), state=state, state_interval=10)
    gw.stack = fresh(tmp_path)
    gw.engine.rebind(gw.stack)
    phase1(gw.engine)
    gw._timers(SAVE_AT)  # the first timer pass only arms the period
    assert not os.path.exists(state)
    gw._timers(SAVE_AT + 10)
    assert os.path.exists(state) and "saved" not in logfile.read_text()  # periodic saves are quiet
    assert gw.save_state() and "saved 9 connections, 1 expectations and 2 NAT sessions" in logfile.read_text()

    def restart() -> tuple[Stack, list[str]]:
        before = len(logfile.read_text().splitlines())
        g = Gateway(str(tmp_path / "gw.conf"), [], log=SyslogWriter(str(logfile)), state=state)
        st = fresh(tmp_path)
        g._restore_state(st)
        return st, logfile.read_text().splitlines()[before:]

    st, lines = restart()
    assert len(st.conntrack) == 9 and len(lines) == 1 and "restored 9 connections, 1 expectations and 2 NAT" in lines[0]
    os.unlink(state)
    st, lines = restart()
    assert len(st.conntrack) == 0 and lines == []  # no file: a clean start, silently
    Path(state).write_bytes(b"\x89IPGATE\n" + b"\0" * 40)
    st, lines = restart()
    assert len(st.conntrack) == 0 and len(lines) == 1 and "warning: state file" in lines[0], lines


def test_the_default_state_file_is_the_host_gateways_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/var/lib/ipgate/state for the gateway on the default control socket; none for any other instance
    (a lab, a test), so that two gateways never share a file."""
    from ipgate.io import main
    from ipgate.io.control import DEFAULT_PATH

    assert main.default_state(str(tmp_path / "lab.sock")) is None
    assert main.default_state(None) is None
    monkeypatch.setattr(main, "DEFAULT_STATE", str(tmp_path / "var" / "ipgate" / "state"))
    assert main.default_state(DEFAULT_PATH) == str(tmp_path / "var" / "ipgate" / "state")
    assert (tmp_path / "var" / "ipgate").is_dir()
    monkeypatch.setattr(main, "DEFAULT_STATE", "/proc/ipgate-cannot-be/state")
    assert main.default_state(DEFAULT_PATH) is None
