"""The packet engine on hand-checked cases: forwarding, filtering, NAT, ICMP, marks, limits.

Expected values come from the kernel functions each step mirrors (cited in
src/ipgate/engine); checksums are checked by dpkt, independently of ipgate.
"""

from __future__ import annotations

import struct

import dpkt
import pytest
from tests.packet.oracle import ip_hdr_ok, l4_ok

from ipgate.engine.engine import Engine
from ipgate.engine.result import Drop, Local, Result, Tx
from ipgate.inet import aton, ntoa
from ipgate.packet.build import build_icmp, build_tcp, build_udp
from ipgate.shell import Shell, load_script
from ipgate.stack import Stack

BASE = """
ip link add eth0 type dummy
ip link add eth1 type dummy
ip link set eth0 up
ip link set eth1 up
ip addr add 192.168.1.1/24 dev eth0
ip addr add 203.0.113.1/24 dev eth1
ip route add default via 203.0.113.254
echo 1 > /proc/sys/net/ipv4/ip_forward
"""
MASQ = BASE + "iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE\n"

CLIENT, CLIENT2, SERVER, PUBLIC, UPLINK_GW = (aton(a) for a in (
    "192.168.1.2", "192.168.1.3", "198.51.100.7", "203.0.113.1", "203.0.113.254"))


def engine(conf: str) -> tuple[Engine, Stack]:
    st = load_script(conf, "test.conf")
    return Engine(st), st


def txs(results: list[Result]) -> list[Tx]:
    return [r for r in results if isinstance(r, Tx)]


def only_tx(results: list[Result]) -> Tx:
    out = txs(results)
    assert len(out) == 1, results
    return out[0]


def fields(pkt: bytes) -> tuple[str, str, int, int, int]:
    """(src, dst, sport/id, dport/type, ttl) of a packet, by dpkt; checksums checked on the way."""
    assert ip_hdr_ok(pkt) and l4_ok(pkt), pkt.hex()
    ip = dpkt.ip.IP(pkt)
    src, dst = ntoa(int.from_bytes(ip.src, "big")), ntoa(int.from_bytes(ip.dst, "big"))
    if isinstance(ip.data, (dpkt.tcp.TCP, dpkt.udp.UDP)):
        return src, dst, ip.data.sport, ip.data.dport, ip.ttl
    assert isinstance(ip.data, dpkt.icmp.ICMP)
    return src, dst, ip.data.type, ip.data.code, ip.ttl


def test_forward_plain_decrements_ttl_and_picks_the_nexthop() -> None:
    eng, _ = engine(BASE)
    tx = only_tx(eng.receive("eth0", build_udp(CLIENT, SERVER, 1234, 53, b"q"), 1.0))
    assert (tx.dev, tx.nexthop) == ("eth1", UPLINK_GW)
    assert fields(tx.data) == ("192.168.1.2", "198.51.100.7", 1234, 53, 63)
    # on-link destination: the nexthop is the destination itself
    tx = only_tx(eng.receive("eth1", build_udp(SERVER, CLIENT, 53, 1234, b"a"), 1.1))
    assert (tx.dev, tx.nexthop) == ("eth0", CLIENT)


def test_no_forwarding_without_ip_forward() -> None:
    eng, _ = engine(BASE.replace("echo 1 >", "echo 0 >"))
    res = eng.receive("eth0", build_udp(CLIENT, SERVER, 1234, 53), 1.0)
    assert not txs(res) and isinstance(res[-1], Drop)


def test_masquerade_both_directions_and_conntrack_listing() -> None:
    eng, st = engine(MASQ)
    tx = only_tx(eng.receive("eth0", build_udp(CLIENT, SERVER, 1234, 53, b"q"), 1.0))
    assert fields(tx.data) == ("203.0.113.1", "198.51.100.7", 1234, 53, 63)
    back = only_tx(eng.receive("eth1", build_udp(SERVER, PUBLIC, 53, 1234, b"a"), 1.5))
    assert back.dev == "eth0" and fields(back.data) == ("198.51.100.7", "192.168.1.2", 53, 1234, 63)
    listing = Shell(st).run_line("conntrack -L").out
    assert "src=192.168.1.2 dst=198.51.100.7 sport=1234 dport=53 src=198.51.100.7 dst=203.0.113.1" in listing


def test_masquerade_keeps_ports_apart_for_two_clients() -> None:
    eng, _ = engine(MASQ)
    a = fields(only_tx(eng.receive("eth0", build_udp(CLIENT, SERVER, 5000, 53), 1.0)).data)
    b = fields(only_tx(eng.receive("eth0", build_udp(CLIENT2, SERVER, 5000, 53), 1.0)).data)
    assert a[2] == 5000 and b[2] != 5000 and b[0] == a[0] == "203.0.113.1"
    # and each reply finds its own client
    ra = only_tx(eng.receive("eth1", build_udp(SERVER, PUBLIC, 53, a[2]), 1.1))
    rb = only_tx(eng.receive("eth1", build_udp(SERVER, PUBLIC, 53, b[2]), 1.1))
    assert fields(ra.data)[1] == "192.168.1.2" and fields(rb.data)[1] == "192.168.1.3"
    assert fields(rb.data)[3] == 5000


def test_icmp_echo_ids_are_mapped() -> None:
    eng, _ = engine(MASQ)
    ping = build_icmp(CLIENT, SERVER, 8, 0, (77 << 16) | 1, b"x" * 8)
    ping2 = build_icmp(CLIENT2, SERVER, 8, 0, (77 << 16) | 1, b"x" * 8)
    out1 = only_tx(eng.receive("eth0", ping, 1.0)).data
    out2 = only_tx(eng.receive("eth0", ping2, 1.0)).data
    id1, id2 = (struct.unpack_from("!H", p, 24)[0] for p in (out1, out2))
    assert id1 == 77 and id2 != 77
    fields(out2)  # checksums
    reply = build_icmp(SERVER, PUBLIC, 0, 0, (id2 << 16) | 1, b"x" * 8)
    back = only_tx(eng.receive("eth1", reply, 1.1)).data
    assert fields(back)[:2] == ("198.51.100.7", "192.168.1.3") and struct.unpack_from("!H", back, 24)[0] == 77


def test_icmp_error_about_a_masqueraded_flow_is_translated_back() -> None:
    eng, _ = engine(MASQ)
    out = only_tx(eng.receive("eth0", build_udp(CLIENT, SERVER, 1234, 33434, b"probe"), 1.0)).data
    # a router past the uplink says time exceeded about the packet as it saw it
    err = build_icmp(aton("198.51.100.1"), PUBLIC, 11, 0, 0, out[:28])
    back = only_tx(eng.receive("eth1", err, 1.1))
    assert back.dev == "eth0"
    src, dst, t, code, _ = fields(back.data)
    assert (src, dst, t, code) == ("198.51.100.1", "192.168.1.2", 11, 0)
    inner = dpkt.ip.IP(back.data[28:])
    assert ntoa(int.from_bytes(inner.src, "big")) == "192.168.1.2"
    assert struct.unpack_from("!H", back.data, 28 + 20)[0] == 1234
    assert ip_hdr_ok(back.data, 28)  # the quoted header's checksum was fixed too


def test_ttl_expiry_sends_time_exceeded_from_the_inbound_side() -> None:
    eng, _ = engine(BASE)
    res = eng.receive("eth0", build_udp(CLIENT, SERVER, 1234, 33434, ttl=1), 1.0)
    err = only_tx(res)
    assert err.dev == "eth0" and err.nexthop == CLIENT
    assert fields(err.data)[:4] == ("192.168.1.1", "192.168.1.2", 11, 0)
    assert any(isinstance(r, Drop) for r in res)


def test_unroutable_destination_gets_net_unreachable() -> None:
    eng, _ = engine(BASE.replace("ip route add default via 203.0.113.254\n", ""))
    err = only_tx(eng.receive("eth0", build_udp(CLIENT, SERVER, 1234, 53), 1.0))
    assert fields(err.data)[:4] == ("192.168.1.1", "192.168.1.2", 3, 0)


def test_prohibit_route_gets_communication_prohibited() -> None:
    eng, _ = engine(BASE + "ip route add prohibit 198.51.100.0/24\n")
    err = only_tx(eng.receive("eth0", build_udp(CLIENT, SERVER, 1234, 53), 1.0))
    assert fields(err.data)[2:4] == (3, 13)


def test_df_packet_too_big_gets_frag_needed_with_the_mtu() -> None:
    eng, _ = engine(BASE + "ip link set eth1 mtu 1400\n")
    big = build_udp(CLIENT, SERVER, 1234, 53, bytes(1450), frag_off=0x4000)
    err = only_tx(eng.receive("eth0", big, 1.0))
    assert fields(err.data)[2:4] == (3, 4)
    assert struct.unpack_from("!H", err.data, 26)[0] == 1400  # next-hop MTU
    # without DF it is fragmented
    frags = txs(eng.receive("eth0", build_udp(CLIENT, SERVER, 1234, 53, bytes(1450)), 1.1))
    assert len(frags) == 2 and all(len(f.data) <= 1400 for f in frags)


def test_reject_with_tcp_reset_and_port_unreachable() -> None:
    eng, _ = engine(BASE + "iptables -A FORWARD -p tcp --dport 25 -j REJECT --reject-with tcp-reset\n"
                    "iptables -A FORWARD -p udp -j REJECT\n")
    rst = only_tx(eng.receive("eth0", build_tcp(CLIENT, SERVER, 40000, 25, seq=100, flags=0x02), 1.0))
    ip = dpkt.ip.IP(rst.data)
    assert rst.dev == "eth0" and fields(rst.data)[:4] == ("198.51.100.7", "192.168.1.2", 25, 40000)
    assert ip.data.flags == dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK and ip.data.ack == 101 and ip.data.seq == 0
    unreach = only_tx(eng.receive("eth0", build_udp(CLIENT, SERVER, 1, 2), 1.0))
    assert fields(unreach.data)[2:4] == (3, 3)


def test_filter_policy_and_counters_in_the_listing() -> None:
    conf = BASE + ("iptables -P FORWARD DROP\n"
                   "iptables -A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT\n"
                   "iptables -A FORWARD -i eth0 -p udp --dport 53 -j ACCEPT\n")
    eng, st = engine(conf)
    assert txs(eng.receive("eth0", build_udp(CLIENT, SERVER, 1234, 53), 1.0))
    assert not txs(eng.receive("eth0", build_udp(CLIENT, SERVER, 1234, 54), 1.0))
    assert txs(eng.receive("eth1", build_udp(SERVER, CLIENT, 53, 1234), 1.0))  # the reply: ESTABLISHED
    listing = Shell(st).run_line("iptables -L FORWARD -n -v -x").out.splitlines()
    assert listing[0] == "Chain FORWARD (policy DROP 1 packets, 28 bytes)"
    assert listing[2].split()[:3] == ["1", "28", "ACCEPT"]  # the reply
    assert listing[3].split()[:3] == ["1", "28", "ACCEPT"]


def test_user_chains_return_and_goto() -> None:
    conf = BASE + ("iptables -N check\n"
                   "iptables -A check -s 192.168.1.3 -j DROP\n"
                   "iptables -A check -j RETURN\n"
                   "iptables -A FORWARD -j check\n"
                   "iptables -A FORWARD -p udp --dport 9 -j DROP\n")
    eng, _ = engine(conf)
    assert txs(eng.receive("eth0", build_udp(CLIENT, SERVER, 1, 53), 1.0))
    assert not txs(eng.receive("eth0", build_udp(CLIENT2, SERVER, 1, 53), 1.0))
    assert not txs(eng.receive("eth0", build_udp(CLIENT, SERVER, 1, 9), 1.0))  # back in FORWARD after RETURN


def test_fwmark_routing_sends_smtp_out_of_the_second_uplink() -> None:
    conf = BASE + ("ip link add eth2 type dummy\nip link set eth2 up\nip addr add 198.18.0.1/24 dev eth2\n"
                   "echo 201 smtp >> /etc/iproute2/rt_tables\n"
                   "ip rule add fwmark 1 table smtp\n"
                   "ip route add default via 198.18.0.254 table smtp\n"
                   "iptables -t mangle -A PREROUTING -p tcp --dport 25 -j MARK --set-mark 1\n"
                   "iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE\n"
                   "iptables -t nat -A POSTROUTING -o eth2 -j MASQUERADE\n")
    eng, _ = engine(conf)
    smtp = only_tx(eng.receive("eth0", build_tcp(CLIENT, SERVER, 40000, 25, flags=2), 1.0))
    web = only_tx(eng.receive("eth0", build_tcp(CLIENT, SERVER, 40001, 80, flags=2), 1.0))
    assert (smtp.dev, ntoa(smtp.nexthop), fields(smtp.data)[0]) == ("eth2", "198.18.0.254", "198.18.0.1")
    assert (web.dev, ntoa(web.nexthop), fields(web.data)[0]) == ("eth1", "203.0.113.254", "203.0.113.1")


def test_two_lans_leave_by_their_uplinks_with_their_own_address() -> None:
    """FAQ 7.36: rules send two LANs out of different uplinks; MASQUERADE takes each uplink's address."""
    conf = ("ip link add eth0 type dummy\nip link add eth1 type dummy\nip link add eth2 type dummy\n"
            "ip link add eth3 type dummy\n" + "".join(f"ip link set eth{i} up\n" for i in range(4)) +
            "ip addr add 192.168.1.1/24 dev eth0\nip addr add 192.168.2.1/24 dev eth1\n"
            "ip addr add 203.0.113.1/24 dev eth2\nip addr add 198.18.0.1/24 dev eth3\n"
            "ip route add default via 203.0.113.254\n"
            "ip rule add from 192.168.2.0/24 table 10\nip route add default via 198.18.0.254 table 10\n"
            "echo 1 > /proc/sys/net/ipv4/ip_forward\niptables -t nat -A POSTROUTING -j MASQUERADE\n")
    eng, _ = engine(conf)
    a = only_tx(eng.receive("eth0", build_udp(CLIENT, SERVER, 1000, 53), 1.0))
    b = only_tx(eng.receive("eth1", build_udp(aton("192.168.2.5"), SERVER, 1000, 53), 1.0))
    assert (a.dev, fields(a.data)[0]) == ("eth2", "203.0.113.1")
    assert (b.dev, fields(b.data)[0]) == ("eth3", "198.18.0.1")


def test_connmark_restore_sends_replies_back_by_the_uplink_they_came_in_on() -> None:
    conf = BASE + ("ip link add eth2 type dummy\nip link set eth2 up\nip addr add 198.18.0.1/24 dev eth2\n"
                   "ip rule add fwmark 2 table 20\nip route add default via 198.18.0.254 table 20\n"
                   "iptables -t mangle -A PREROUTING -i eth2 -m state --state NEW -j CONNMARK --set-mark 2\n"
                   "iptables -t mangle -A PREROUTING -i eth0 -j CONNMARK --restore-mark\n")
    eng, _ = engine(conf)
    # a connection that came in by the second uplink to a LAN server
    assert only_tx(eng.receive("eth2", build_tcp(aton("198.51.100.9"), CLIENT, 5555, 80, flags=2), 1.0)).dev == "eth0"
    reply = only_tx(eng.receive("eth0", build_tcp(CLIENT, aton("198.51.100.9"), 80, 5555, flags=0x12), 1.1))
    assert (reply.dev, ntoa(reply.nexthop)) == ("eth2", "198.18.0.254")
    # a reply on a connection from the first uplink goes by the default route
    assert only_tx(eng.receive("eth1", build_tcp(aton("198.51.100.9"), CLIENT, 5556, 80, flags=2), 1.2)).dev == "eth0"
    other = only_tx(eng.receive("eth0", build_tcp(CLIENT, aton("198.51.100.9"), 80, 5556, flags=0x12), 1.3))
    assert other.dev == "eth1"


def test_dnat_port_forwarding() -> None:
    conf = MASQ + "iptables -t nat -A PREROUTING -i eth1 -p tcp --dport 8080 -j DNAT --to-destination 192.168.1.2:80\n"
    eng, _ = engine(conf)
    fwd = only_tx(eng.receive("eth1", build_tcp(SERVER, PUBLIC, 6000, 8080, flags=2), 1.0))
    assert fwd.dev == "eth0" and fields(fwd.data)[:4] == ("198.51.100.7", "192.168.1.2", 6000, 80)
    back = only_tx(eng.receive("eth0", build_tcp(CLIENT, SERVER, 80, 6000, flags=0x12), 1.1))
    assert fields(back.data)[:4] == ("203.0.113.1", "198.51.100.7", 8080, 6000)


def test_redirect_to_the_gateway_itself() -> None:
    conf = BASE + "iptables -t nat -A PREROUTING -i eth0 -p tcp --dport 80 -j REDIRECT --to-ports 3128\n"
    eng, _ = engine(conf)
    res = eng.receive("eth0", build_tcp(CLIENT, SERVER, 6000, 80, flags=2), 1.0)
    local = [r for r in res if isinstance(r, Local)]
    assert local and fields(local[0].data)[1:4] == ("192.168.1.1", 6000, 3128)


def test_netmap_maps_one_network_onto_another() -> None:
    conf = BASE + "iptables -t nat -A POSTROUTING -o eth1 -s 192.168.1.0/24 -j NETMAP --to 203.0.113.0/24\n"
    eng, _ = engine(conf)
    tx = only_tx(eng.receive("eth0", build_udp(aton("192.168.1.77"), SERVER, 1, 2), 1.0))
    assert fields(tx.data)[0] == "203.0.113.77"


def test_snat_with_no_free_port_drops_logs_and_keeps_the_first_flow() -> None:
    conf = BASE + "iptables -t nat -A POSTROUTING -o eth1 -p udp -j SNAT --to-source 203.0.113.1:2000\n"
    eng, st = engine(conf)
    assert txs(eng.receive("eth0", build_udp(CLIENT, SERVER, 2000, 53), 1.0))
    res = eng.receive("eth0", build_udp(CLIENT2, SERVER, 2000, 53), 1.0)
    assert not txs(res) and isinstance(res[-1], Drop)
    assert any("ip_masq_new(proto=UDP): no free ports" in line for line in eng.logs)
    assert eng.counters["NAT_NO_FREE_PORTS"] == 1
    assert txs(eng.receive("eth0", build_udp(CLIENT, SERVER, 2000, 53), 1.1))  # the first flow lives on
    assert len(st.conntrack) == 1


def test_full_conntrack_table_refuses_new_flows_and_keeps_established_ones() -> None:
    eng, st = engine(MASQ + "echo 4 > /proc/sys/net/netfilter/nf_conntrack_max\n")
    for port in range(4):
        only_tx(eng.receive("eth0", build_udp(CLIENT, SERVER, 1000 + port, 53), 1.0))
        only_tx(eng.receive("eth1", build_udp(SERVER, PUBLIC, 53, 1000 + port), 1.0))  # replied...
    for port in range(4):  # ...and assured by a second packet each way after 2 s? UDP: a reply suffices to keep
        assert txs(eng.receive("eth0", build_udp(CLIENT, SERVER, 1000 + port, 53), 3.5))
    res = eng.receive("eth0", build_udp(CLIENT, SERVER, 2000, 53), 4.0)
    assert not txs(res) and any("table full" in line for line in eng.logs)
    for port in range(4):
        assert txs(eng.receive("eth1", build_udp(SERVER, PUBLIC, 53, 1000 + port), 4.0))
    assert len(st.conntrack) == 4


def test_masquerade_address_change_drops_its_mappings() -> None:
    eng, st = engine(MASQ)
    only_tx(eng.receive("eth0", build_udp(CLIENT, SERVER, 1234, 53), 1.0))
    assert len(st.conntrack) == 1
    sh = Shell(st)
    assert sh.run_line("ip addr del 203.0.113.1/24 dev eth1").status == 0
    assert sh.run_line("ip addr add 203.0.113.9/24 dev eth1").status == 0
    assert sh.run_line("ip route add default via 203.0.113.254").status == 0
    tx = only_tx(eng.receive("eth0", build_udp(CLIENT, SERVER, 1234, 53), 2.0))
    assert fields(tx.data)[0] == "203.0.113.9"


def test_mark_tos_dscp_and_limit() -> None:
    conf = BASE + ("iptables -t mangle -A FORWARD -p udp -j TOS --set-tos 0x10\n"
                   "iptables -t mangle -A POSTROUTING -p tcp -j DSCP --set-dscp 10\n"
                   "iptables -A FORWARD -p icmp -m limit --limit 1/sec --limit-burst 2 -j ACCEPT\n"
                   "iptables -A FORWARD -p icmp -j DROP\n")
    eng, _ = engine(conf)
    u = only_tx(eng.receive("eth0", build_udp(CLIENT, SERVER, 1, 2), 1.0)).data
    t = only_tx(eng.receive("eth0", build_tcp(CLIENT, SERVER, 1, 2, flags=2), 1.0)).data
    assert u[1] == 0x10 and t[1] == 10 << 2 and ip_hdr_ok(u) and ip_hdr_ok(t)
    ping = build_icmp(CLIENT, SERVER, 8, 0, 1, b"")
    passed = [bool(txs(eng.receive("eth0", ping, 10.0 + i * 0.1))) for i in range(4)]
    assert passed == [True, True, False, False]  # the burst of 2, then 1/s
    assert txs(eng.receive("eth0", ping, 11.05))


def test_tcpmss_clamps_the_syn() -> None:
    conf = BASE + ("ip link set eth1 mtu 1492\n"
                   "iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu\n")
    eng, _ = engine(conf)
    syn = build_tcp(CLIENT, SERVER, 1, 80, flags=2, options=b"\x02\x04\x05\xb4")
    out = only_tx(eng.receive("eth0", syn, 1.0)).data
    assert struct.unpack_from("!H", out, 42)[0] == 1452 and l4_ok(out)
    bare = only_tx(eng.receive("eth0", build_tcp(CLIENT, SERVER, 2, 80, flags=2), 1.0)).data
    assert len(bare) == 44 and bare[40:44] == b"\x02\x04\x02\x18" and l4_ok(bare) and ip_hdr_ok(bare)  # 536


def test_ping_to_the_gateway_is_answered() -> None:
    eng, _ = engine(BASE)
    res = eng.receive("eth0", build_icmp(CLIENT, aton("192.168.1.1"), 8, 0, (5 << 16) | 9, b"hi"), 1.0)
    assert any(isinstance(r, Local) for r in res)
    reply = only_tx(res)
    assert fields(reply.data)[:4] == ("192.168.1.1", "192.168.1.2", 0, 0) and reply.data[-2:] == b"hi"


def test_log_target_writes_the_kernel_line() -> None:
    eng, _ = engine(BASE + "iptables -A FORWARD -p udp -j LOG --log-prefix 'fw: '\n")
    eng.receive("eth0", build_udp(CLIENT, SERVER, 1234, 53, b"x"), 1.0)
    assert eng.logs and eng.logs[0].startswith("fw: IN=eth0 OUT=eth1 ")
    assert "SRC=192.168.1.2 DST=198.51.100.7 LEN=29" in eng.logs[0] and "PROTO=UDP SPT=1234 DPT=53" in eng.logs[0]


@pytest.mark.parametrize("data", [b"", b"\x45", bytes(20), b"\x46" + bytes(19), b"\x45\x00\x00\x10" + bytes(16)])
def test_malformed_packets_are_dropped_with_a_reason(data: bytes) -> None:
    eng, _ = engine(MASQ)
    res = eng.receive("eth0", data, 1.0)
    assert len(res) == 1 and isinstance(res[0], Drop) and res[0].reason
    assert eng.counters.total() >= 1


def test_fast_path_forgets_connections_that_ended() -> None:
    """Closed connections must not stay referenced by the fast path (memory would grow with every one)."""
    eng, st = engine(MASQ)
    for i in range(50):
        port = 20000 + i
        eng.receive("eth0", build_udp(CLIENT, SERVER, port, 53), 1.0)
        eng.receive("eth1", build_udp(SERVER, PUBLIC, 53, port), 1.0)
        eng.receive("eth0", build_udp(CLIENT, SERVER, port, 53), 1.0)  # recorded
        assert txs(eng.receive("eth0", build_udp(CLIENT, SERVER, port, 53), 1.0))  # replayed
    assert len(eng.fastpath.entries) == 100 and eng.fastpath.hits == 50  # both directions recorded
    eng.handle_timer(500.0)  # every UDP entry has expired (30 s unreplied / 120 s stream)
    assert len(st.conntrack) == 0 and not eng.fastpath.entries
