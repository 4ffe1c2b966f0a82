"""IP Filter NAT semantics (nat/ipnat/core.py) driven with packets.

Every expectation is IP Filter 4.1.x's (ip_nat.c unless said otherwise) and
names the function it comes from.  Rules come from the ipnat.conf parser;
packets are built with packet/build.py; the rewritten packets are read back
with dpkt and their checksums checked with dpkt's own sums (tests/packet/
oracle.py), never with the code under test.
"""

from __future__ import annotations

import ipaddress
import struct

import dpkt
import pytest
from tests.packet.oracle import ip_hdr_ok, l4_ok

from ipgate.nat.ipnat.core import IpnatTable, NatVerdict
from ipgate.nat.ipnat.parse import parse
from ipgate.nat.ipnat.state import IpnatState, NatSessionDetail, NatSessionView
from ipgate.nat.ipnat.timeouts import (
    IPF_TCPS_CLOSED,
    IPF_TCPS_ESTABLISHED,
    IPF_TCPS_FIN_WAIT_1,
    IPF_TCPS_SYN_RECEIVED,
    IPF_TCPS_SYN_SENT,
)
from ipgate.packet.build import build_icmp, build_ipv4, build_tcp, build_udp, icmp_error_packet
from ipgate.packet.frag import ip_fragment
from ipgate.packet.ipv4 import ip_send_check
from ipgate.packet.l4 import TH_ACK, TH_FIN, TH_RST, TH_SYN

D = "198.51.100.7"  # a server on the Internet


def A(s: str) -> int:
    return int(ipaddress.IPv4Address(s))


def S(a: bytes) -> str:
    return str(ipaddress.IPv4Address(a))


def load(conf: str, addrs: dict[str, int | None] | None = None, **kw: object) -> IpnatTable:
    """ipnat -f: parse, load through IpnatState (SIOCADNAT), hand the rules to the table."""
    st = IpnatState()
    assert st.load(parse(conf, "test.conf").rules) == []
    known = addrs if addrs is not None else {}
    t = IpnatTable(lambda name: known.get(name), **kw)  # type: ignore[arg-type]
    t.sync_rules(st.rules)
    return t


def tcp(src: str, sport: int, dst: str, dport: int, flags: int = TH_ACK, **kw: object) -> bytearray:
    return build_tcp(A(src), A(dst), sport, dport, b"data", flags=flags, **kw)  # type: ignore[arg-type]


def udp(src: str, sport: int, dst: str, dport: int) -> bytearray:
    return build_udp(A(src), A(dst), sport, dport, b"query")


def echo(src: str, dst: str, ident: int, type: int = 8) -> bytearray:
    return build_icmp(A(src), A(dst), type, 0, ident << 16 | 1, b"ping")


def gre(src: str, dst: str) -> bytearray:
    return build_ipv4(A(src), A(dst), 47, b"\x00\x00\x08\x00payload")


def seen(pkt: bytearray) -> tuple[str, int, str, int]:
    """(src, sport or id, dst, dport) as dpkt reads the packet; checksums must verify."""
    raw = bytes(pkt)
    assert ip_hdr_ok(raw), "IP header checksum"
    assert l4_ok(raw), "transport checksum"
    ip = dpkt.ip.IP(raw)
    if ip.p in (6, 17):
        return S(ip.src), ip.data.sport, S(ip.dst), ip.data.dport
    if ip.p == 1:
        return S(ip.src), struct.unpack_from("!H", raw, ip.hl * 4 + 4)[0], S(ip.dst), 0
    return S(ip.src), 0, S(ip.dst), 0


def out(t: IpnatTable, pkt: bytearray, now: float = 0.0, ifname: str = "ppp0") -> NatVerdict:
    return t.check_out(ifname, pkt, now)


def inb(t: IpnatTable, pkt: bytearray, now: float = 0.0, ifname: str = "ppp0") -> NatVerdict:
    return t.check_in(ifname, pkt, now)


# -- the seed's map examples (ipnat(4), "Using the map Command") -------------------------

PPP0 = """
map ppp0 10.0.0.0/8 -> 209.1.2.0/24 portmap tcp/udp 1025:65000
map ppp0 10.0.0.0/8 -> 209.1.2.0/24
"""


def test_seed_ppp0_portmap_then_plain_map() -> None:
    """The combined rules: TCP/UDP port mapped by the first rule, ICMP by the
    second with only its address changed (IPN_RF skips the tcp/udp rule for
    ICMP in fr_checknatout()).  nat_siocaddnat() starts in_nip at the block's
    first host (.1) and in_pnext at pmin; nat_newmap() hands out in_pnext and
    increments it, the address staying."""
    t = load(PPP0)
    p = tcp("10.1.1.1", 40000, D, 80, TH_SYN)
    v = out(t, p)
    assert v.translated and v.created
    assert seen(p) == ("209.1.2.1", 1025, D, 80)
    q = udp("10.2.2.2", 53, "198.51.100.8", 53)
    assert out(t, q).created
    assert seen(q) == ("209.1.2.1", 1026, "198.51.100.8", 53)
    e = echo("10.1.1.1", D, 77)
    assert out(t, e).created
    assert seen(e) == ("209.1.2.1", 77, D, 0)
    assert t.stats().rule_hits == (2, 1)
    # the reply finds the session (nat_inlookup()) and goes back (fr_natin())
    r = tcp(D, 80, "209.1.2.1", 1025, TH_SYN | TH_ACK)
    v = inb(t, r)
    assert v.translated and not v.created
    assert seen(r) == (D, 80, "10.1.1.1", 40000)
    # the next packet of the first flow finds its session (nat_outlookup())
    p2 = tcp("10.1.1.1", 40000, D, 80)
    assert out(t, p2).session is v.session
    assert seen(p2) == ("209.1.2.1", 1025, D, 80)


def test_seed_portmap_range_is_inclusive_then_next_address() -> None:
    """nat_newmap(): in_pnext runs up to pmax inclusive (65000 is handed out:
    63976 ports per address), then back to pmin with in_nip moved on.  A new
    host gets the new address; a host already talking to that destination
    keeps its address (nat_hostmap() on the first turn)."""
    t = load(PPP0)
    np = t.rules()[0]
    np.pnext = 64999
    a = tcp("10.1.1.1", 1000, D, 80)
    out(t, a)
    b = tcp("10.1.1.2", 1000, D, 80)
    out(t, b)
    c = tcp("10.1.1.3", 1000, D, 80)
    out(t, c)
    assert [seen(x)[:2] for x in (a, b, c)] == [("209.1.2.1", 64999), ("209.1.2.1", 65000), ("209.1.2.2", 1025)]
    d = tcp("10.1.1.1", 1001, D, 80)  # same (source, destination) pair as `a`
    out(t, d)
    assert seen(d)[:2] == ("209.1.2.1", 1026)
    assert 65000 - 1025 + 1 == 63976


def test_seed_portmap_auto() -> None:
    """`portmap tcp/udp auto` (172.192.0.0/16 onto a /24): nat_setgroupmap()
    gives in_ippip 256 inside hosts per address and in_ppip 64512/256 = 252
    ports each; nat_newmap() picks port 1024 + 252 * (src % 256) +
    sport % 252 on in_nip (the block's first host)."""
    t = load("map ppp0 172.192.0.0/16 -> 209.1.2.0/24 portmap tcp/udp auto\n")
    np = t.rules()[0]
    assert (np.ippip, np.ppip) == (256, 252)
    p = tcp("172.192.3.7", 40000, D, 80)
    out(t, p)
    assert seen(p)[:2] == ("209.1.2.1", 1024 + 252 * 7 + 40000 % 252)


# -- map-block --------------------------------------------------------------------

MAPBLOCK = "map-block ppp0 172.192.0.0/16 -> 209.1.2.0/24 ports auto\n"


def test_seed_map_block_252_ports_each_always_the_same() -> None:
    """The man page's map-block: 172.192.0.0/24 lands on 209.1.2.0, each host
    owning 252 ports.  nat_newmap(): address = 209.1.2.0 + hostbits / 256, port =
    1024 + 252 * (hostbits % 256) + (sport + turn) % 252."""
    t = load(MAPBLOCK)
    p = tcp("172.192.0.9", 5000, D, 80)
    out(t, p)
    assert seen(p)[:2] == ("209.1.2.0", 1024 + 252 * 9 + 5000 % 252)
    q = tcp("172.192.3.7", 5000, D, 80)
    out(t, q)
    host = 3 * 256 + 7
    base = 1024 + 252 * (host % 256)
    assert seen(q)[:2] == ("209.1.2.3", base + 5000 % 252)
    # 252 connections from one host: 252 distinct ports, all its own
    t = load(MAPBLOCK)
    got = set()
    for sport in range(1, 253):
        x = tcp("172.192.3.7", sport, D, 80)
        assert out(t, x).created
        src, port, _, _ = seen(x)
        assert src == "209.1.2.3"
        got.add(port)
    assert got == set(range(base, base + 252))
    # the same flow again after its session expired: the same port (no state in the formula)
    t2 = load(MAPBLOCK)
    y = tcp("172.192.3.7", 77, D, 80)
    out(t2, y, 0.0)
    t2.expire(10 ** 6)
    assert len(t2) == 0
    z = tcp("172.192.3.7", 77, D, 80)
    out(t2, z, 10 ** 6)
    assert seen(y)[:2] == seen(z)[:2] == ("209.1.2.3", base + 77)


def test_map_block_no_room_refuses_and_keeps_sessions() -> None:
    """The 253rd connection to the same destination port: nat_newmap() tries
    in_ppip turns, all taken, and fails; fr_checknatout() returns -1 (the packet
    is blocked, FI_BADNAT) and nat_new() counts ns_badnat.  The 252 sessions
    are untouched and their replies still translated."""
    t = load(MAPBLOCK)
    for sport in range(1, 253):
        out(t, tcp("172.192.3.7", sport, D, 80))
    p = tcp("172.192.3.7", 253, D, 80)
    before = bytes(p)
    v = out(t, p)
    assert v.blocked and v.session is None
    assert bytes(p) == before
    st = t.stats()
    assert (st.badnat, st.inuse, st.added) == (1, 252, 252)
    host = 3 * 256 + 7
    r = tcp(D, 80, "209.1.2.3", 1024 + 252 * (host % 256) + 5)
    assert inb(t, r).translated
    assert seen(r) == (D, 80, "172.192.3.7", 5)


def test_map_block_ports_n() -> None:
    """`ports 100`: nat_setgroupmap() sets in_ppip 100, in_ippip 64512 / 100 = 645."""
    t = load("map-block ppp0 172.192.0.0/16 -> 209.1.2.0/24 ports 100\n")
    np = t.rules()[0]
    assert (np.ippip, np.ppip) == (645, 100)
    p = tcp("172.192.3.7", 5055, D, 80)
    out(t, p)
    host = 3 * 256 + 7
    assert seen(p)[:2] == (f"209.1.2.{host // 645}", 1024 + 100 * (host % 645) + 5055 % 100)


def test_map_block_equal_masks_translates_nothing() -> None:
    """A /24 onto a /24: nat_setgroupmap() sets in_ippip 1 and leaves in_ppip 0,
    so nat_newmap()'s `l >= in_ppip` refuses every packet (the 252 ports per
    host come from the man page's /16 onto a /24)."""
    t = load("map-block ppp0 10.0.0.0/24 -> 192.0.2.0/24 ports auto\n")
    assert (t.rules()[0].ippip, t.rules()[0].ppip) == (1, 0)
    assert out(t, tcp("10.0.0.5", 1000, D, 80)).blocked
    assert t.stats().badnat == 1


# -- rdr --------------------------------------------------------------------------

def _rdr_targets(t: IpnatTable, n: int, ifname: str = "le0") -> list[str]:
    got = []
    for i in range(n):
        p = tcp(D, 5000 + i, "203.1.2.3", 80, TH_SYN)
        v = inb(t, p, ifname=ifname)
        assert v.created
        got.append(seen(p)[2])
    return got


def test_seed_rdr_two_targets_alternate() -> None:
    """`-> a,b` (IPN_SPLIT): nat_newrdr() takes in_nip, then flips it between
    in_inip and the second address (kept in in_inmsk)."""
    t = load("rdr le0 203.1.2.3/32 port 80 -> 203.1.2.3,203.1.2.4 port 80 tcp\n")
    assert _rdr_targets(t, 4) == ["203.1.2.3", "203.1.2.4", "203.1.2.3", "203.1.2.4"]


def test_seed_rdr_round_robin_load_balancing() -> None:
    """The man page's two round-robin rules: .3, then .4, then .5, then .3 again.
    nat_newrdr() returns 1 (move) except when the a,b alternation just used a;
    nat_new() then moves a round-robin rule to the end of its rdr_rules[] chain."""
    t = load("rdr le0 203.1.2.3/32 port 80 -> 203.1.2.3,203.1.2.4 port 80 tcp round-robin\n"
             "rdr le0 203.1.2.3/32 port 80 -> 203.1.2.5 port 80 tcp round-robin\n")
    assert _rdr_targets(t, 6) == ["203.1.2.3", "203.1.2.4", "203.1.2.5"] * 2


def test_rdr_round_robin_three_rules_three_servers() -> None:
    t = load("rdr le0 203.1.2.3/32 port 80 -> 10.0.0.1 port 8080 tcp round-robin\n"
             "rdr le0 203.1.2.3/32 port 80 -> 10.0.0.2 port 8080 tcp round-robin\n"
             "rdr le0 203.1.2.3/32 port 80 -> 10.0.0.3 port 8080 tcp round-robin\n")
    assert _rdr_targets(t, 7) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"] * 2 + ["10.0.0.1"]
    # the listing keeps the file order ("This will not effect the display of rules")
    assert [r.inip for r in t.rules()] == [A("10.0.0.1"), A("10.0.0.2"), A("10.0.0.3")]


def test_rdr_without_round_robin_first_rule_wins() -> None:
    t = load("rdr le0 203.1.2.3/32 port 80 -> 10.0.0.1 port 80 tcp\n"
             "rdr le0 203.1.2.3/32 port 80 -> 10.0.0.2 port 80 tcp\n")
    assert _rdr_targets(t, 3) == ["10.0.0.1"] * 3


def test_rdr_reply_and_port_ranges() -> None:
    """nat_newrdr(): a `port p-q` range shifts onto the new port (dport - pmin +
    pnext) unless `port = n` (IPN_FIXEDDPORT); the server's reply leaves with
    the original address and port (fr_natout() on an NAT_INBOUND session)."""
    t = load("rdr le0 192.0.2.1/32 port 8000-8010 -> 10.0.0.5 port 9000 tcp\n")
    p = tcp(D, 4000, "192.0.2.1", 8003, TH_SYN)
    assert inb(t, p, ifname="le0").created
    assert seen(p) == (D, 4000, "10.0.0.5", 9003)
    r = tcp("10.0.0.5", 9003, D, 4000, TH_SYN | TH_ACK)
    assert out(t, r, ifname="le0").translated
    assert seen(r) == ("192.0.2.1", 8003, D, 4000)
    assert not inb(t, tcp(D, 4000, "192.0.2.1", 8011), ifname="le0").translated  # outside the range
    t = load("rdr le0 192.0.2.1/32 port 8000-8010 -> 10.0.0.5 port = 9000 tcp\n")
    p = tcp(D, 4000, "192.0.2.1", 8003, TH_SYN)
    inb(t, p, ifname="le0")
    assert seen(p)[2:] == ("10.0.0.5", 9000)


def test_rdr_only_on_its_interface_and_protocol() -> None:
    """fr_checknatin(): in_ifps[0] must be the packet's interface, in_p its protocol."""
    t = load("rdr le0 192.0.2.1/32 port 80 -> 10.0.0.5 port 80 tcp\n")
    assert not inb(t, tcp(D, 4000, "192.0.2.1", 80), ifname="le1").translated
    assert not inb(t, udp(D, 4000, "192.0.2.1", 80), ifname="le0").translated
    assert inb(t, tcp(D, 4000, "192.0.2.1", 80), ifname="le0").translated


def test_rdr_sticky_keeps_client_on_its_server() -> None:
    """`sticky` with `a,b`: nat_newrdr() looks the (client, address, port) host
    map up and reuses its server instead of alternating."""
    t = load("rdr le0 192.0.2.1/32 port 80 -> 10.0.0.5,10.0.0.6 port 80 tcp sticky\n")
    got = []
    for client, sport in (("198.51.100.1", 1), ("198.51.100.2", 1), ("198.51.100.1", 2), ("198.51.100.1", 3)):
        p = tcp(client, sport, "192.0.2.1", 80, TH_SYN)
        inb(t, p, ifname="le0")
        got.append(seen(p)[2])
    assert got == ["10.0.0.5", "10.0.0.6", "10.0.0.5", "10.0.0.5"]


def test_rdr_to_interface_address() -> None:
    """`-> 0.0.0.0 port n` (0/32): nat_newrdr() redirects to the interface's address (fr_ifpaddr())."""
    addrs: dict[str, int | None] = {"le0": A("192.0.2.77")}
    t = load("rdr le0 192.0.2.1/32 port 80 -> 0.0.0.0 port 8080 tcp\n", addrs)
    p = tcp(D, 4000, "192.0.2.1", 80, TH_SYN)
    inb(t, p, ifname="le0")
    assert seen(p)[2:] == ("192.0.2.77", 8080)


# -- bimap --------------------------------------------------------------------------

def test_bimap_both_ways() -> None:
    """bimap is on both lists (nat_siocaddnat(): nat_addnat() and nat_addrdr()):
    leaving, nat_newmap()'s 1:1 branch keeps the host bits; arriving (a new
    connection from outside), nat_newrdr()'s does the reverse."""
    t = load("bimap le0 10.0.0.0/24 -> 192.0.2.0/24\n")
    p = tcp("10.0.0.7", 1234, D, 80, TH_SYN)
    out(t, p, ifname="le0")
    assert seen(p) == ("192.0.2.7", 1234, D, 80)
    q = tcp(D, 2222, "192.0.2.9", 22, TH_SYN)
    v = inb(t, q, ifname="le0")
    assert v.created and v.session is not None and v.session.kind == "BIMAP"
    assert seen(q) == (D, 2222, "10.0.0.9", 22)
    r = tcp("10.0.0.9", 22, D, 2222, TH_SYN | TH_ACK)  # its reply, by the same session
    assert out(t, r, ifname="le0").session is v.session
    assert seen(r) == ("192.0.2.9", 22, D, 2222)
    t = load("bimap le0 10.0.0.5/32 -> 192.0.2.5/32\n")
    g = gre("10.0.0.5", D)
    out(t, g, ifname="le0")
    assert seen(g)[0] == "192.0.2.5"
    h = gre(D, "192.0.2.5")
    inb(t, h, ifname="le0")
    assert seen(h)[2] == "10.0.0.5"


# -- address choice of a plain map -------------------------------------------------------

def test_map_keeps_address_per_source_destination_pair() -> None:
    """Without ports (GRE), nat_newmap(): the first turn's host map gives the
    pair (source, destination) the address it had; a tuple already used by
    another host to that destination makes in_nip move on."""
    t = load("map ppp0 10.0.0.0/8 -> 209.1.2.0/24\n")
    got = []
    for src, dst, proto in (("10.1.1.1", D, 47), ("10.1.1.2", D, 47), ("10.1.1.1", D, 50),
                            ("10.1.1.3", D, 47)):
        p = build_ipv4(A(src), A(dst), proto, b"xxxxxxxx")
        assert out(t, p).created
        got.append(seen(p)[0])
    assert got == ["209.1.2.1", "209.1.2.2", "209.1.2.1", "209.1.2.3"]


def test_map_range_no_unique_tuple_left() -> None:
    """`range a-b`: in_nip runs a..b and wraps (nat_newmap()'s IPN_IPRANGE
    test).  Three addresses, one destination, no ports: the fourth host has no
    unique tuple left and is not translated (the 4.1 kernel would search for
    ever here; the search is bounded)."""
    t = load("map ppp0 10.0.0.0/8 -> range 209.1.2.10-209.1.2.12\n")
    got = []
    for i in range(3):
        p = gre(f"10.1.1.{i + 1}", D)
        out(t, p)
        got.append(seen(p)[0])
    assert got == ["209.1.2.10", "209.1.2.11", "209.1.2.12"]
    assert out(t, gre("10.1.1.4", D)).blocked


def test_portmap_no_room_falls_to_next_rule_and_keeps_sessions() -> None:
    """Two ports: a third connection to the same destination port has no
    unique tuple (nat_newmap()'s wrap test: back at st_port/st_ip) and is
    refused (-1, ns_badnat); one to another destination port reuses a port
    (the tuple is unique).  With a second rule behind, fr_checknatout() goes on
    after the failure and that rule translates it."""
    conf = "map ppp0 10.0.0.0/8 -> 209.1.2.1/32 portmap tcp/udp 2000:2001\n"
    t = load(conf)
    a, b = tcp("10.1.1.1", 1000, D, 80), tcp("10.1.1.2", 1000, D, 80)
    out(t, a)
    out(t, b)
    c = tcp("10.1.1.3", 1000, D, 80)
    assert out(t, c).blocked
    assert t.stats().badnat == 1
    d = tcp("10.1.1.3", 1000, D, 443)
    assert out(t, d).created
    assert [seen(x)[1] for x in (a, b, d)] == [2000, 2001, 2000]
    r = tcp(D, 80, "209.1.2.1", 2001)
    inb(t, r)
    assert seen(r)[2:] == ("10.1.1.2", 1000)
    t = load(conf + "map ppp0 10.0.0.0/8 -> 209.1.2.9/32\n")
    out(t, tcp("10.1.1.1", 1000, D, 80))
    out(t, tcp("10.1.1.2", 1000, D, 80))
    e = tcp("10.1.1.3", 1000, D, 80)
    v = out(t, e)
    assert v.created and seen(e)[:2] == ("209.1.2.9", 1000)
    assert t.stats().badnat == 1


def test_portmap_random_ports_unless_sequential() -> None:
    """IP Filter 4.1.2x: without `sequential` the port is ipf_random() % (pmax - pmin) + pmin."""
    t = load("map ppp0 10.0.0.0/8 -> 209.1.2.1/32 portmap tcp 2000:3000\n", port_random=lambda: 123456)
    p = tcp("10.1.1.1", 1000, D, 80)
    out(t, p)
    assert seen(p)[1] == 123456 % 1000 + 2000
    t = load("map ppp0 10.0.0.0/8 -> 209.1.2.1/32 portmap tcp 2000:3000 sequential\n", port_random=lambda: 123456)
    p = tcp("10.1.1.1", 1000, D, 80)
    out(t, p)
    assert seen(p)[1] == 2000


def test_from_to_rules() -> None:
    """IPN_FILTER rules go through nat_match(): the `to` address and port
    comparison (fr_tcpudpchk()), `!` on the destination (IPN_NOTDST)."""
    t = load("map ppp0 from 10.0.0.0/8 to 198.51.100.0/24 port = 80 -> 209.1.2.1/32\n")
    assert out(t, tcp("10.1.1.1", 1000, D, 80)).translated
    assert not out(t, tcp("10.1.1.1", 1000, D, 81)).translated
    assert not out(t, tcp("10.1.1.1", 1000, "203.0.113.1", 80)).translated
    t = load("map ppp0 from 10.0.0.0/8 ! to 198.51.100.0/24 -> 209.1.2.1/32\n")
    assert not out(t, tcp("10.1.1.1", 1000, D, 80)).translated
    assert out(t, tcp("10.1.1.1", 1000, "203.0.113.1", 80)).translated
    t = load("rdr le0 from 203.0.113.0/24 to 192.0.2.1/32 port = 80 -> 10.0.0.5 port 8080 tcp\n")
    assert not inb(t, tcp(D, 4000, "192.0.2.1", 80), ifname="le0").translated
    p = tcp("203.0.113.9", 4000, "192.0.2.1", 80)
    assert inb(t, p, ifname="le0").translated
    assert seen(p)[2:] == ("10.0.0.5", 8080)


def test_longest_prefix_rule_first() -> None:
    """fr_checknatout()'s maskloop: the /32 rule is tried before the /8 rule loaded first."""
    t = load("map ppp0 10.0.0.0/8 -> 209.1.2.1/32\nmap ppp0 10.1.1.1/32 -> 209.1.2.2/32\n")
    p = gre("10.1.1.1", D)
    out(t, p)
    q = gre("10.1.1.2", D)
    out(t, q)
    assert (seen(p)[0], seen(q)[0]) == ("209.1.2.2", "209.1.2.1")


# -- icmpidmap ----------------------------------------------------------------------

def test_icmpidmap() -> None:
    """`icmpidmap icmp 64000:65535`: ids handed out from the range like ports
    (ipnat(4): "identical to the modification performed by portmap"), and the
    reply gets the host's own id back (IP Filter 5's nat_oicmpid/nat_nicmpid);
    the ICMP checksum follows."""
    t = load("map ppp0 10.0.0.0/8 -> 209.1.2.1/32 icmpidmap icmp 64000:65535\n")
    a, b = echo("10.1.1.1", D, 100), echo("10.1.1.2", D, 100)
    out(t, a)
    out(t, b)
    assert seen(a)[:2] == ("209.1.2.1", 64000)
    assert seen(b)[:2] == ("209.1.2.1", 64001)
    r = echo(D, "209.1.2.1", 64001, type=0)
    v = inb(t, r)
    assert v.translated
    assert seen(r) == (D, 100, "10.1.1.2", 0)
    a2 = echo("10.1.1.1", D, 100)  # the same query again: the same session, the same id
    assert out(t, a2).session is not None and seen(a2)[1] == 64000


# -- ages ---------------------------------------------------------------------------

def _alive(t: IpnatTable, now: float) -> int:
    t.expire(now)
    return len(t)


@pytest.mark.parametrize("conf, pkt, ttl", [
    ("map ppp0 10.0.0.0/8 -> 209.1.2.1/32\n", lambda: udp("10.1.1.1", 53, D, 53), 600.0),   # fr_defnatage
    ("map ppp0 10.0.0.0/8 -> 209.1.2.1/32\n", lambda: echo("10.1.1.1", D, 9), 3.0),      # fr_defnaticmpage
    ("map ppp0 10.0.0.0/8 -> 209.1.2.1/32\n", lambda: gre("10.1.1.1", D), 60.0),         # fr_defnatipage
    ("map ppp0 10.0.0.0/8 -> 209.1.2.1/32 age 30\n", lambda: udp("10.1.1.1", 53, D, 53), 30.0),
    ("map ppp0 10.0.0.0/8 -> 209.1.2.1/32 age 30\n", lambda: tcp("10.1.1.1", 5, D, 80, TH_SYN), 30.0),
])
def test_default_and_rule_ages(conf: str, pkt: object, ttl: float) -> None:
    """fr_natinit()'s queues (ticks of half a second: UDP 1200, ICMP 6, other
    IP 120) and a rule's `age N` (fr_addtimeoutqueue(): N seconds), which wins
    even for TCP (nat_update()); fr_natexpire() frees a session when its
    tqe_die has come."""
    t = load(conf)
    out(t, pkt(), 0.0)  # type: ignore[operator]
    assert _alive(t, ttl - 0.5) == 1
    assert _alive(t, ttl) == 0
    assert t.stats().expired == 1


def test_age_forward_and_reply() -> None:
    """`age 10/20`: in_age[0] for packets in the session's direction, in_age[1]
    for the others (nat_update() with nat_proto()'s fin_rev)."""
    t = load("map ppp0 10.0.0.0/8 -> 209.1.2.1/32 age 10/20\n")
    out(t, udp("10.1.1.1", 53, D, 53), 0.0)
    (s,) = list(t.sessions())
    assert s.age(t.ticks(0.0)) == 20
    inb(t, udp(D, 53, "209.1.2.1", 53), 5.0)
    assert s.die == t.ticks(5.0) + 40
    out(t, udp("10.1.1.1", 53, D, 53), 6.0)
    assert s.die == t.ticks(6.0) + 20
    assert _alive(t, 15.5) == 1 and _alive(t, 16.0) == 0


def test_tcp_state_ages() -> None:
    """Without a rule age TCP is aged by fr_tcp_age() on nat_tqb[]: SYN_SENT
    240 s (fr_tcptimeout), ESTABLISHED 5 days (fr_tcpidletimeout), FIN_WAIT_1
    2 h (fr_tcphalfclosed), a bare RST to CLOSED: 30 s (fr_natinit() gives
    CLOSED LAST_ACK's age)."""
    t = load("map ppp0 10.0.0.0/8 -> 209.1.2.0/24 portmap tcp 1025:2000\n")
    out(t, tcp("10.1.1.1", 1000, D, 80, TH_SYN), 0.0)
    (s,) = list(t.sessions())
    assert s.tcpstate == [IPF_TCPS_SYN_SENT, 0] and s.age(0) == 240 * 2
    inb(t, tcp(D, 80, "209.1.2.1", 1025, TH_SYN | TH_ACK), 1.0)
    assert s.tcpstate == [IPF_TCPS_SYN_SENT, IPF_TCPS_SYN_RECEIVED]
    out(t, tcp("10.1.1.1", 1000, D, 80, TH_ACK), 2.0)
    assert s.tcpstate[0] == IPF_TCPS_ESTABLISHED and s.age(t.ticks(2.0)) == 5 * 86400 * 2
    inb(t, tcp(D, 80, "209.1.2.1", 1025, TH_ACK), 3.0)
    out(t, tcp("10.1.1.1", 1000, D, 80, TH_FIN | TH_ACK), 4.0)
    assert s.tcpstate[0] == IPF_TCPS_FIN_WAIT_1 and s.age(t.ticks(4.0)) == 7200 * 2
    rst = build_tcp(A(D), A("209.1.2.1"), 80, 1025, b"", flags=TH_RST)
    inb(t, rst, 5.0)
    assert s.tcpstate[1] == IPF_TCPS_CLOSED and s.age(t.ticks(5.0)) == 30 * 2
    assert t.stats().tcp_states[IPF_TCPS_CLOSED] == 1
    assert _alive(t, 34.5) == 1 and _alive(t, 35.0) == 0


# -- mssclamp --------------------------------------------------------------------------

@pytest.mark.parametrize("opts", [b"\x02\x04\x05\xb4", b"\x01\x02\x04\x05\xb4\x00\x00\x00"])
def test_mssclamp(opts: bytes) -> None:
    """nat_proto() -> nat_mssclamp(): on SYNs only, an MSS above the clamp is
    lowered (also when the option sits at an odd offset); smaller ones stay."""
    t = load("map ppp0 10.0.0.0/8 -> 209.1.2.1/32 mssclamp 1400\n")
    p = tcp("10.1.1.1", 1000, D, 80, TH_SYN, options=opts)
    out(t, p)
    seen(p)
    assert dict(dpkt.tcp.parse_opts(dpkt.ip.IP(bytes(p)).data.opts))[2] == struct.pack("!H", 1400)
    a = tcp("10.1.1.1", 1000, D, 80, TH_ACK, options=opts)  # not a SYN: untouched
    out(t, a)
    seen(a)
    assert dict(dpkt.tcp.parse_opts(dpkt.ip.IP(bytes(a)).data.opts))[2] == struct.pack("!H", 1460)
    r = tcp(D, 80, "209.1.2.1", 1000, TH_SYN | TH_ACK, options=b"\x02\x04\x05\x14")  # 1300 < 1400
    inb(t, r)
    seen(r)
    assert dict(dpkt.tcp.parse_opts(dpkt.ip.IP(bytes(r)).data.opts))[2] == struct.pack("!H", 1300)


# -- 0/32 --------------------------------------------------------------------------------

def test_zero_32_follows_interface_address() -> None:
    """`-> 0/32`: nat_newmap() asks fr_ifpaddr() when a session is made, so new
    sessions use the address of the moment; fr_natsync() moves the non-TCP
    sessions of such rules to the new address and leaves TCP ones; without an
    address nothing is translated (nat_newmap() fails)."""
    addrs: dict[str, int | None] = {"ppp0": A("192.0.2.1")}
    t = load("map ppp0 10.0.0.0/8 -> 0/32\n", addrs)
    u = udp("10.1.1.1", 53, D, 53)
    out(t, u)
    k = tcp("10.1.1.1", 1000, D, 80, TH_SYN)
    out(t, k)
    assert seen(u)[0] == seen(k)[0] == "192.0.2.1"
    addrs["ppp0"] = A("192.0.2.99")
    n = tcp("10.1.1.2", 1000, D, 80, TH_SYN)
    out(t, n)
    assert seen(n)[0] == "192.0.2.99"
    assert t.sync("ppp0") == 1
    u2 = udp("10.1.1.1", 53, D, 53)
    out(t, u2)
    k2 = tcp("10.1.1.1", 1000, D, 80)
    out(t, k2)
    assert (seen(u2)[0], seen(k2)[0]) == ("192.0.2.99", "192.0.2.1")
    r = udp(D, 53, "192.0.2.99", 53)
    assert inb(t, r).translated and seen(r)[2] == "10.1.1.1"
    addrs["ppp0"] = None
    assert out(t, udp("10.1.1.3", 53, D, 53)).blocked


# -- ICMP errors ----------------------------------------------------------------------------

def test_icmp_error_inbound_about_map_session() -> None:
    """nat_icmperror() for an error coming in: the quoted packet (what left the
    box) gets its inside source address and port back, the quoted IP and TCP
    checksums and the ICMP checksum stay right, and fr_natin() readdresses the
    error itself: the quote is byte for byte the packet the host sent."""
    t = load(PPP0)
    orig = tcp("10.1.1.1", 40000, D, 80, TH_SYN)
    sent = bytearray(orig)
    out(t, sent)
    err = icmp_error_packet(sent, 11, 0, 0, A("203.0.113.9"))
    assert err is not None
    v = inb(t, err)
    assert v.translated and v.icmp_error
    raw = bytes(err)
    assert ip_hdr_ok(raw) and l4_ok(raw)
    ip = dpkt.ip.IP(raw)
    assert (S(ip.src), S(ip.dst)) == ("203.0.113.9", "10.1.1.1")
    assert raw[28:] == bytes(orig)


def test_icmp_error_inbound_udp_and_echo() -> None:
    """The same for a UDP port unreachable (the quoted UDP checksum is fixed,
    nat_icmperror()'s dlen >= 8 case) and for an error about an echo whose id
    was mapped (the quoted id goes back, with its ICMP checksum)."""
    t = load("map ppp0 10.0.0.0/8 -> 209.1.2.1/32 portmap udp 3000:3999\n"
             "map ppp0 10.0.0.0/8 -> 209.1.2.1/32 icmpidmap icmp 64000:65535\n")
    for orig in (udp("10.1.1.1", 5353, D, 53), echo("10.1.1.1", D, 4242)):
        sent = bytearray(orig)
        assert out(t, sent).created
        err = icmp_error_packet(sent, 3, 3, 0, A(D))
        assert err is not None
        assert inb(t, err).icmp_error
        raw = bytes(err)
        assert ip_hdr_ok(raw) and l4_ok(raw)
        assert raw[28:] == bytes(orig)
        assert S(dpkt.ip.IP(raw).dst) == "10.1.1.1"


def test_icmp_error_outbound_about_rdr_session() -> None:
    """nat_icmperror() for an error going out: the server behind an rdr answers
    port unreachable about the packet it got; the quote's destination goes
    back to the public address and port, and fr_natout() gives the error the
    public source: the client sees its own packet quoted."""
    t = load("rdr le0 192.0.2.1/32 port 80 -> 10.0.0.5 port 8080 tcp\n")
    orig = tcp(D, 4000, "192.0.2.1", 80, TH_SYN)
    got = bytearray(orig)
    inb(t, got, ifname="le0")
    err = icmp_error_packet(got, 3, 3, 0, A("10.0.0.5"))
    assert err is not None
    v = out(t, err, ifname="le0")
    assert v.icmp_error and v.session is not None and v.session.kind == "RDR"
    raw = bytes(err)
    assert ip_hdr_ok(raw) and l4_ok(raw)
    ip = dpkt.ip.IP(raw)
    assert (S(ip.src), S(ip.dst)) == ("192.0.2.1", D)
    assert raw[28:] == bytes(orig)


def test_icmp_error_not_about_a_session_is_left_alone() -> None:
    """nat_icmperrorlookup(): the outer destination must be the quoted source."""
    t = load(PPP0)
    sent = tcp("10.1.1.1", 40000, D, 80, TH_SYN)
    out(t, sent)
    err = icmp_error_packet(sent, 11, 0, 0, A("203.0.113.9"))
    assert err is not None
    struct.pack_into("!I", err, 16, A("209.1.2.200"))  # outer destination: another address
    struct.pack_into("!H", err, 10, 0)
    ip_send_check(err)
    assert not inb(t, err).icmp_error


# -- fragments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("frag", ["", " frag"])
def test_fragments_follow_the_first(frag: str) -> None:
    """fr_natout() caches a translated fragment (fr_nat_newfrag()), by the
    datagram's id, addresses and protocol as it arrived; later fragments find
    the session there (fr_nat_knownfrag()) and get the same address (no ports
    in them).  Put back together, the datagram's UDP checksum holds.  The 4.1
    kernel does this with or without `frag` (IPN_FRAG is never tested)."""
    t = load(f"map ppp0 10.0.0.0/8 -> 209.1.2.1/32 portmap udp 3000:3999{frag}\n")
    big = build_udp(A("10.1.1.1"), A(D), 5353, 53, bytes(range(256)) * 4, id=0x4242)
    frags = ip_fragment(big, 576)
    assert isinstance(frags, list) and len(frags) == 2
    first, second = frags
    v1 = out(t, first)
    v2 = out(t, second)
    assert v1.created and not v2.created and v2.fragment and v2.session is v1.session
    for f in (first, second):
        assert ip_hdr_ok(bytes(f)) and S(dpkt.ip.IP(bytes(f)).src) == "209.1.2.1"
    whole = bytearray(first[:20]) + first[20:] + second[20:]
    struct.pack_into("!HH", whole, 2, len(whole), 0)
    ip = dpkt.ip.IP(bytes(whole))
    assert l4_ok(bytes(whole)) and ip.data.sport == 3000
    # a fragment body whose first fragment was never seen has no session to follow
    stray = ip_fragment(build_udp(A("10.1.1.1"), A(D), 5353, 53, bytes(1000), id=7), 576)
    assert isinstance(stray, list)
    assert not out(t, stray[1]).translated


# -- table limits, statistics, rules --------------------------------------------------------------

def test_table_full_counts_memfail() -> None:
    """nat_new(): ns_inuse at ipf_nattable_max refuses the session (ns_memfail)."""
    t = load("map ppp0 10.0.0.0/8 -> 209.1.2.0/24 portmap tcp/udp 1025:65000\n", table_max=2)
    out(t, tcp("10.1.1.1", 1, D, 80))
    out(t, tcp("10.1.1.1", 2, D, 80))
    assert out(t, tcp("10.1.1.1", 3, D, 80)).blocked
    st = t.stats()
    assert (st.memfail, st.badnat, st.inuse) == (1, 0, 2)


def test_stats_sessions_flush_and_rule_removal() -> None:
    """natstat_t as `ipnat -s` prints it; nat_instances newest first; a removed
    rule stays counted (ns_rules) while its sessions live, and with no rule
    at all fr_checknatout() does nothing, even for known sessions."""
    t = load(PPP0)
    out(t, tcp("10.1.1.1", 1, D, 80))
    out(t, tcp("10.1.1.2", 1, D, 80))
    inb(t, tcp(D, 80, "209.1.2.1", 1025))
    assert not out(t, tcp("192.168.1.1", 1, D, 80)).translated
    st = t.stats()
    assert (st.mapped, st.added, st.inuse, st.expired) == ((1, 2), 2, 2, 0)
    ss = list(t.sessions())
    assert [s.inip for s in ss] == [A("10.1.1.2"), A("10.1.1.1")]
    assert all(isinstance(s, NatSessionDetail) for s in ss)
    view: NatSessionView = ss[0]
    assert view.redir == 1 and view.outport == 1026
    rule = t.rules()[0].rule
    assert t.remove_rule(rule) and t.nrules == 2
    t.remove_rule(t.rules()[0].rule)
    assert t.nrules == 1  # the first rule is still used by two sessions
    p = tcp("10.1.1.1", 1, D, 80)
    assert out(t, p).translated and seen(p)[:2] == ("209.1.2.1", 1025)
    assert t.flush() == 2 and len(t) == 0 and t.nrules == 0
    assert not out(t, tcp("10.1.1.1", 1, D, 80)).translated


def test_lookup_redir_for_transparent_proxies() -> None:
    """nat_lookupredir() (SIOCGNATL): a proxy behind an rdr asks where a client
    really wanted to go."""
    t = load("rdr le0 0.0.0.0/0 port 80 -> 127.0.0.1 port 3128 tcp\n")
    p = tcp(D, 4000, "203.0.113.80", 80, TH_SYN)
    inb(t, p, ifname="le0")
    s = t.lookup_redir(6, A("127.0.0.1"), 3128, A(D), 4000)
    assert s is not None and (s.outip, s.outport) == (A("203.0.113.80"), 80)


def _fix_outcksum(ck: int, n: int) -> int:
    """IP Filter's fix_outcksum() on a checksum value."""
    s = (~ck & 0xFFFF) + n
    s = (s >> 16) + (s & 0xFFFF)
    s = (s >> 16) + (s & 0xFFFF)
    return ~s & 0xFFFF


@pytest.mark.parametrize("conf, ifname, pkt, outbound", [
    (PPP0, "ppp0", lambda: tcp("10.1.1.1", 40000, D, 80, TH_SYN), True),
    (PPP0, "ppp0", lambda: udp("10.1.1.1", 5353, D, 53), True),
    ("rdr le0 192.0.2.1/32 port 8000-8010 -> 10.0.0.5 port 9000 tcp\n", "le0",
     lambda: tcp(D, 4000, "192.0.2.1", 8003, TH_SYN), False),
])
def test_session_checksum_deltas_are_ip_filters(conf: str, ifname: str, pkt: object, outbound: bool) -> None:
    """The session's nat_sumd/nat_ipsumd, as nat_new() computes them
    (CALC_SUMD), applied with fix_outcksum() as fr_natout()/fr_natin() do, give
    the checksums of the packet as it was rewritten: IP Filter's arithmetic and
    the rewrite agree."""
    t = load(conf)
    p = pkt()  # type: ignore[operator]
    orig = bytes(p)
    v = out(t, p, ifname=ifname) if outbound else inb(t, p, ifname=ifname)
    s = v.session
    assert s is not None
    co = 20 + (16 if orig[9] == 6 else 6)
    assert struct.unpack_from("!H", p, co)[0] == _fix_outcksum(struct.unpack_from("!H", orig, co)[0], s.sumd[1])
    assert struct.unpack_from("!H", p, 10)[0] == _fix_outcksum(struct.unpack_from("!H", orig, 10)[0], s.ipsumd)


def test_sessions_print_as_ipnat_lists_them() -> None:
    """The session satisfies the printer's view of a nat_t (printactivenat())."""
    from ipgate.nat.ipnat.printer import print_active_nat

    t = load(PPP0)
    out(t, tcp("10.1.1.1", 40000, D, 80, TH_SYN), 0.0)
    (s,) = list(t.sessions())
    line = print_active_nat(s, verbose=True, now=t.now())
    assert line.splitlines()[0] == f"MAP {'10.1.1.1':<15} {40000:<5} <- -> {'209.1.2.1':<15} {1025:<5} [{D} 80]"
    assert "ttl 480 " in line and f"bkt {s.hv[0]}/{s.hv[1]}" in line


def test_malformed_packets_never_raise() -> None:
    """Random damage to packets of every kind the rules handle (truncated
    headers, bad lengths, short quotes in ICMP errors): each call returns a
    verdict and leaves the buffer's length alone."""
    import random

    rng = random.Random(7)
    conf = PPP0 + ("map ppp0 10.0.0.0/8 -> 209.1.2.1/32 icmpidmap icmp 64000:65535 mssclamp 1200\n"
                   "rdr ppp0 209.1.2.0/24 port 80 -> 10.0.0.5,10.0.0.6 port 8080 tcp round-robin\n"
                   "bimap ppp0 10.9.0.0/16 -> 209.9.0.0/16\n")
    t = load(conf)
    sent = tcp("10.1.1.1", 40000, D, 80, TH_SYN, options=b"\x02\x04\x05\xb4")
    out(t, sent)
    err = icmp_error_packet(sent, 3, 1, 0, A(D))
    assert err is not None
    seeds = [tcp("10.1.1.2", 1, D, 80, TH_SYN, options=b"\x02\x04\x05\xb4"), udp("10.1.1.3", 5, D, 53),
             echo("10.1.1.4", D, 9), gre("10.9.1.1", D), tcp(D, 80, "209.1.2.1", 1025), tcp(D, 9, "209.1.2.7", 80),
             err, bytearray(err[:40])]
    verdicts = set()
    for i in range(3000):
        p = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            p[rng.randrange(len(p))] = rng.randrange(256)
        if rng.random() < 0.3:
            p = p[:rng.randrange(len(p) + 1)]
        n = len(p)
        v = (t.check_in if i & 1 else t.check_out)("ppp0", p, i / 10)
        assert len(p) == n
        verdicts.add(v.rval)
    assert verdicts <= {-1, 0, 1} and 1 in verdicts


def test_table_full_flushes_idle_sessions() -> None:
    """nat_new() at ipf_nattable_max sets fr_nat_doflush; the next
    fr_natexpire() runs nat_extraflush(2) -> ipf_queueflush(), which frees the
    sessions idle longest (not those used in the last 30 s), so a later
    connection gets in."""
    t = load("map ppp0 10.0.0.0/8 -> 209.1.2.0/24 portmap tcp/udp 1025:65000\n", table_max=2)
    out(t, udp("10.1.1.1", 1, D, 53), 0.0)
    out(t, udp("10.1.1.2", 1, D, 53), 0.0)
    out(t, udp("10.1.1.2", 1, D, 53), 100.0)  # the second one is still in use
    assert out(t, udp("10.1.1.3", 1, D, 53), 100.0).blocked
    assert t.stats().memfail == 1
    assert out(t, udp("10.1.1.4", 1, D, 53), 101.0).created
    assert sorted(s.inip for s in t.sessions()) == [A("10.1.1.2"), A("10.1.1.4")]
