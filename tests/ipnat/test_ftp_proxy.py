"""IP Filter's FTP proxy (nat/ipnat/ftp_proxy.py, proxy.py) driven through
IpnatTable.check_out/check_in with whole FTP conversations.

Expectations are IP Filter 4.1.x's (ip_ftp_pxy.c, ip_proxy.c, ip_nat.c) and
name the function they come from.  Packets are built with packet/build.py
and read back with dpkt; checksums are checked with dpkt's sums
(tests/packet/oracle.py).  Each conversation keeps both ends' own view of
the sequence numbers, so every packet checks that what arrives continues
the receiver's byte stream and acknowledges the sender's own numbers:
appr_fixseqack()'s work, in both directions, after a resize.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dpkt
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.packet.oracle import ip_hdr_ok, l4_ok

from ipgate.nat.ipnat.core import IpnatTable, NatVerdict
from ipgate.nat.ipnat.parse import parse
from ipgate.nat.ipnat.state import IpnatState
from ipgate.packet.build import build_tcp
from ipgate.packet.l4 import TH_ACK, TH_PUSH, TH_SYN

S = "198.51.100.7"     # FTP server on the Internet (map)
C = "10.1.1.1"         # inside client (map)
OUT = "203.0.113.1"      # ppp0's address
MAP = "map ppp0 10.0.0.0/8 -> 0/32 proxy port ftp ftp/tcp\n"
RDR = "rdr ppp0 203.0.113.1/32 port 21 -> 10.1.1.2 port 21 tcp proxy ftp\n"
PSH = TH_ACK | TH_PUSH


def A(s: str) -> int:
    return int(ipaddress.IPv4Address(s))


def N(a: bytes) -> str:
    return str(ipaddress.IPv4Address(a))


def load(conf: str) -> IpnatTable:
    st_ = IpnatState()
    assert st_.load(parse(conf, "test.conf").rules) == []
    t = IpnatTable(lambda name: A(OUT) if name == "ppp0" else None)
    t.sync_rules(st_.rules)
    return t


def read(pkt: bytearray) -> dpkt.tcp.TCP:
    raw = bytes(pkt)
    assert ip_hdr_ok(raw), "IP header checksum"
    assert l4_ok(raw), "TCP checksum"
    ip = dpkt.ip.IP(raw)
    assert ip.len == len(raw)
    tcp = ip.data
    assert isinstance(tcp, dpkt.tcp.TCP)
    return tcp


def addrs(pkt: bytearray) -> tuple[str, int, str, int]:
    ip = dpkt.ip.IP(bytes(pkt))
    return N(ip.src), ip.data.sport, N(ip.dst), ip.data.dport


@dataclass
class Conv:
    """One FTP control connection.  The client sends `csrc -> cdst`, the
    server receives `ssrc -> sdst`; `client_out`: the client's packets
    leave by ppp0 (map) rather than arrive on it (rdr)."""

    t: IpnatTable
    csrc: tuple[str, int]
    cdst: tuple[str, int]
    ssrc: tuple[str, int]
    sdst: tuple[str, int]
    client_out: bool
    c_seq: int = 0x10000000     # the client's next sequence number, its own space
    c_seen: int = 0             # ... as the server sees it
    s_seq: int = 0x50000000     # the server's, its own space
    s_seen: int = 0             # ... as the client sees it
    now: float = 0.0

    def _go(self, pkt: bytearray, out: bool) -> NatVerdict:
        self.now += 0.1
        return self.t.check_out("ppp0", pkt, self.now) if out else self.t.check_in("ppp0", pkt, self.now)

    def client(self, data: bytes = b"", flags: int = PSH) -> tuple[NatVerdict, dpkt.tcp.TCP]:
        p = build_tcp(A(self.csrc[0]), A(self.cdst[0]), self.csrc[1], self.cdst[1], data, seq=self.c_seq,
                      ack_seq=self.s_seen if flags & TH_ACK else 0, flags=flags)
        v = self._go(p, self.client_out)
        if v.blocked:
            return v, dpkt.tcp.TCP()
        tcp = read(p)
        assert addrs(p) == (*self.ssrc, *self.sdst)
        if flags & TH_SYN:
            self.c_seen = tcp.seq
        assert tcp.seq == self.c_seen, "the server's view of the client's stream continues"
        if flags & TH_ACK:
            assert tcp.ack == self.s_seq, "the client's ACK is in the server's own numbers"
        n = len(data) + (1 if flags & TH_SYN else 0)
        self.c_seq += n
        self.c_seen = tcp.seq + len(tcp.data) + (1 if flags & TH_SYN else 0)
        return v, tcp

    def server(self, data: bytes = b"", flags: int = PSH) -> tuple[NatVerdict, dpkt.tcp.TCP]:
        p = build_tcp(A(self.sdst[0]), A(self.ssrc[0]), self.sdst[1], self.ssrc[1], data, seq=self.s_seq,
                      ack_seq=self.c_seen, flags=flags)
        v = self._go(p, not self.client_out)
        if v.blocked:
            return v, dpkt.tcp.TCP()
        tcp = read(p)
        assert addrs(p) == (*self.cdst, *self.csrc)
        if flags & TH_SYN:
            self.s_seen = tcp.seq
        assert tcp.seq == self.s_seen, "the client's view of the server's stream continues"
        assert tcp.ack == self.c_seq, "the server's ACK is in the client's own numbers"
        self.s_seq += len(data) + (1 if flags & TH_SYN else 0)
        self.s_seen = tcp.seq + len(tcp.data) + (1 if flags & TH_SYN else 0)
        return v, tcp

    def login(self, user_reply: bytes = b"230 Logged in.\r\n") -> None:
        """Handshake, banner, USER and a 2xx: ftp_passok reaches FTPXY_GO
        (ippr_ftp_client(): USER -> FTPXY_USER_1; ippr_ftp_server(): 2xx -> GO)."""
        v, _ = self.client(flags=TH_SYN)
        assert v.translated
        self.server(flags=TH_SYN | TH_ACK)
        self.client(flags=TH_ACK)
        self.server(b"220 ftp.example.org FTP server ready.\r\n")
        self.client(b"USER anonymous\r\n")
        if user_reply.startswith(b"331"):
            self.server(user_reply)
            self.client(b"PASS guest@\r\n")
            self.server(b"230 Guest login ok.\r\n")
        else:
            self.server(user_reply)


def map_conv(t: IpnatTable, client: str = C) -> Conv:
    return Conv(t, (client, 1025), (S, 21), (OUT, 1025), (S, 21), client_out=True)


def rdr_conv(t: IpnatTable) -> Conv:
    return Conv(t, (S, 3000), (OUT, 21), (S, 3000), ("10.1.1.2", 21), client_out=False)


def port_cmd(ip: str, port: int) -> bytes:
    return f"PORT {ip.replace('.', ',')},{port >> 8},{port & 255}\r\n".encode()


# -- (1) active FTP through map ... proxy port ftp ftp/tcp --------------------------------------


def test_map_port_rewritten_and_data_connection_from_port_20() -> None:
    """ippr_ftp_port(): after login the client's PORT names the translated
    source (ip_src after fr_natout()) and the same port; the line grows by 3
    ("10,1,1,1" -> "203,0,113,1"), so appr_fixseqack() shifts the client's
    later SEQs by +3 and the server's ACKs back by 3 (Conv checks both).  The
    slave session (nat_new() NAT_SLAVE|SI_W_DPORT) lets the server's
    connection from port 20 to 203.0.113.1:1034 in, to 10.1.1.1:1034
    (nat_inlookup()'s wildcard search, nat_wildok() case 1), and the client's
    answers go out as 203.0.113.1:1034."""
    t = load(MAP)
    c = map_conv(t)
    c.login()
    n = len(t)
    v, tcp = c.client(port_cmd(C, 1034))
    assert v.translated
    assert tcp.data == b"PORT 203,0,113,1,4,10\r\n"
    assert len(t) == n + 1  # the skeleton session
    c.server(b"200 PORT command successful.\r\n")
    c.client(b"RETR README\r\n")
    c.server(b"150 Opening BINARY mode data connection.\r\n")
    c.client(flags=TH_ACK)
    # The data connection, server -> client.
    syn = build_tcp(A(S), A(OUT), 20, 1034, flags=TH_SYN, seq=777)
    v = t.check_in("ppp0", syn, c.now)
    assert v.translated and not v.created
    read(syn)
    assert addrs(syn) == (S, 20, C, 1034)
    synack = build_tcp(A(C), A(S), 1034, 20, flags=TH_SYN | TH_ACK, seq=999, ack_seq=778)
    assert t.check_out("ppp0", synack, c.now).session is v.session
    read(synack)
    assert addrs(synack) == (OUT, 1034, S, 20)
    # The control connection goes on, still shifted.
    c.server(b"226 Transfer complete.\r\n")
    c.client(b"QUIT\r\n")
    c.server(b"221 Goodbye.\r\n")


def test_map_port_shrinking_line() -> None:
    """The same with a line that shrinks ("10,200,200,123" -> "203,0,113,1"):
    inc is -3, carried as APR_INC(-3) (0xfffd) and read back as a short in
    appr_fixseqack(); two PORTs accumulate the offset (aps_seqoff)."""
    t = load(MAP)
    c = map_conv(t, "10.200.200.123")
    c.login()
    _, tcp = c.client(port_cmd("10.200.200.123", 2000))
    assert tcp.data == b"PORT 203,0,113,1,7,208\r\n"
    c.server(b"200 PORT command successful.\r\n")
    _, tcp = c.client(port_cmd("10.200.200.123", 2001))
    assert tcp.data == b"PORT 203,0,113,1,7,209\r\n"
    c.server(b"200 PORT command successful.\r\n")
    c.client(b"NOOP\r\n")
    c.server(b"200 NOOP ok.\r\n")
    syn = build_tcp(A(S), A(OUT), 20, 2001, flags=TH_SYN)
    assert t.check_in("ppp0", syn, c.now).translated
    assert addrs(syn) == (S, 20, "10.200.200.123", 2001)


def test_map_port_after_user_pass() -> None:
    """USER -> 331 -> PASS -> 230 (FTPXY_USER_1, USOK_1, PASS_1, GO)."""
    t = load(MAP)
    c = map_conv(t)
    c.login(b"331 Password required.\r\n")
    _, tcp = c.client(port_cmd(C, 5000))
    assert tcp.data == b"PORT 203,0,113,1,19,136\r\n"


def test_port_before_login_is_left_alone() -> None:
    """ippr_ftp_client() acts on PORT only at FTPXY_GO: before a 2xx to USER
    the command passes untouched and no session is made."""
    t = load(MAP)
    c = map_conv(t)
    c.client(flags=TH_SYN)
    c.server(flags=TH_SYN | TH_ACK)
    c.server(b"220 ready\r\n")
    n = len(t)
    _, tcp = c.client(port_cmd(C, 1034))
    assert tcp.data == port_cmd(C, 1034)
    assert len(t) == n


def test_port_naming_another_host_or_low_port_is_left_alone() -> None:
    """ippr_ftp_port(): an address other than nat_inip (PORT bouncing) gets
    APR_ERR(1), which ippr_ftp_process()'s APR_INC() masks: the packet passes
    unchanged; a port below 1024 is refused the same way (return 0)."""
    t = load(MAP)
    c = map_conv(t)
    c.login()
    n = len(t)
    _, tcp = c.client(port_cmd("10.9.9.9", 1034))
    assert tcp.data == port_cmd("10.9.9.9", 1034)
    c.server(b"500 Illegal PORT.\r\n")
    _, tcp = c.client(port_cmd(C, 1000))
    assert tcp.data == port_cmd(C, 1000)
    assert len(t) == n


def test_segment_out_of_sequence_is_blocked() -> None:
    """ippr_ftp_process(): data whose SEQ is neither ftps_seq[0]/[1] nor a
    retransmission ending there returns APR_ERR(1): appr_check() -1, the
    packet is refused (fr_natout() -> fr_checknatout() FI_BADNAT)."""
    t = load(MAP)
    c = map_conv(t)
    c.login()
    p = build_tcp(A(C), A(S), 1025, 21, b"NOOP\r\n", seq=c.c_seq + 5000, ack_seq=c.s_seen, flags=PSH)
    assert t.check_out("ppp0", p, c.now).blocked


def test_inbound_bad_checksum_is_blocked() -> None:
    """appr_check(): without IPFILTER_CKSUM an arriving packet of a proxied
    session whose TCP checksum fails (fr_checkl4sum()) is blocked."""
    t = load(MAP)
    c = map_conv(t)
    c.login()
    p = build_tcp(A(S), A(OUT), 21, 1025, b"200 ok\r\n", seq=c.s_seq, ack_seq=c.c_seen, flags=PSH)
    p[-1] ^= 0xFF
    assert t.check_in("ppp0", p, c.now).blocked


# -- (2) passive mode through the same map ----------------------------------------------------


def test_map_pasv_reply_and_client_data_connection() -> None:
    """ippr_ftp_pasv(): a 227 from the session's server (nat_oip) is
    rewritten in IP Filter's own form -- the address stays the server's
    (data_ip = a1 for NAT_OUTBOUND), the trailing '.' goes, so the server's
    stream shrinks by one and the client's ACKs are shifted forward
    (appr_fixseqack(), aps_ackoff).  The slave session (SI_W_SPORT) maps
    the client's data connection to the server's port from any port, as
    the rule would: 203.0.113.1, source port kept (no portmap), found by
    nat_outlookup()'s wildcard search (nat_wildok() case 3)."""
    t = load(MAP)
    c = map_conv(t)
    c.login()
    early = build_tcp(A(C), A(S), 40000, 50000, flags=TH_SYN)
    assert not t.check_out("ppp0", early, c.now).translated  # no rule for port 50000
    c.client(b"PASV\r\n")
    _, tcp = c.server(b"227 Entering Passive Mode (198,51,100,7,195,80).\r\n")
    assert tcp.data == b"227 Entering Passive Mode (198,51,100,7,195,80)\r\n"
    c.client(b"LIST\r\n")
    syn = build_tcp(A(C), A(S), 40001, 50000, flags=TH_SYN, seq=1)
    v = t.check_out("ppp0", syn, c.now)
    assert v.translated and not v.created
    read(syn)
    assert addrs(syn) == (OUT, 40001, S, 50000)
    synack = build_tcp(A(S), A(OUT), 50000, 40001, flags=TH_SYN | TH_ACK, seq=9, ack_seq=2)
    assert t.check_in("ppp0", synack, c.now).session is v.session
    assert addrs(synack) == (S, 50000, C, 40001)
    c.server(b"150 Here comes the listing.\r\n")
    c.client(flags=TH_ACK)
    c.server(b"226 Directory send OK.\r\n")
    c.client(b"QUIT\r\n")


def test_map_pasv_from_another_address_is_left_alone() -> None:
    """ippr_ftp_pasv(): a 227 naming an address other than the server's
    is not touched and opens nothing."""
    t = load(MAP)
    c = map_conv(t)
    c.login()
    c.client(b"PASV\r\n")
    n = len(t)
    reply = b"227 Entering Passive Mode (192,0,2,9,195,80)\r\n"
    _, tcp = c.server(reply)
    assert tcp.data == reply and len(t) == n


def test_map_epsv_reply() -> None:
    """ippr_ftp_epsv(): "229 Entering Extended Passive Mode (|||port|)" is
    normalised and the client's data connection to that port mapped."""
    t = load(MAP)
    c = map_conv(t)
    c.login()
    c.client(b"EPSV\r\n")
    _, tcp = c.server(b"229 Entering Extended Passive Mode (|||50001|)\r\n")
    assert tcp.data == b"229 Entering Extended Passive Mode (|||50001|)\r\n"
    syn = build_tcp(A(C), A(S), 40002, 50001, flags=TH_SYN)
    assert t.check_out("ppp0", syn, c.now).translated
    assert addrs(syn) == (OUT, 40002, S, 50001)


# -- (3) rdr ... proxy ftp ----------------------------------------------------------------------


def test_rdr_pasv_names_the_outside_address() -> None:
    """ippr_ftp_pasv() for an rdr session (NAT_INBOUND): the inside server's
    227 must name nat_inip and is rewritten to nat_outip (+3 bytes, the
    server's stream); the slave (nat_newrdr() with NAT_NOTRULEPORT) takes the
    client's connection to 203.0.113.1:50000 to 10.1.1.2:50000."""
    t = load(RDR)
    c = rdr_conv(t)
    c.login()
    c.client(b"PASV\r\n")
    _, tcp = c.server(b"227 Entering Passive Mode (10,1,1,2,195,80)\r\n")
    assert tcp.data == b"227 Entering Passive Mode (203,0,113,1,195,80)\r\n"
    c.client(b"RETR x\r\n")
    c.server(b"150 ok\r\n")
    syn = build_tcp(A(S), A(OUT), 3001, 50000, flags=TH_SYN)
    v = t.check_in("ppp0", syn, c.now)
    assert v.translated and not v.created
    read(syn)
    assert addrs(syn) == (S, 3001, "10.1.1.2", 50000)
    back = build_tcp(A("10.1.1.2"), A(S), 50000, 3001, flags=TH_SYN | TH_ACK)
    assert t.check_out("ppp0", back, c.now).session is v.session
    assert addrs(back) == (OUT, 50000, S, 3001)


def test_rdr_port_data_connection_from_port_20() -> None:
    """ippr_ftp_port() for an rdr session: the outside client's PORT keeps its
    address (nat_oip); the inside server's connection from port 20 to it goes
    out as 203.0.113.1:20 (nat_wildok() case 2 fills nat_outport in)."""
    t = load(RDR)
    c = rdr_conv(t)
    c.login()
    _, tcp = c.client(port_cmd(S, 4000))
    assert tcp.data == port_cmd(S, 4000)
    c.server(b"200 PORT ok\r\n")
    syn = build_tcp(A("10.1.1.2"), A(S), 20, 4000, flags=TH_SYN)
    v = t.check_out("ppp0", syn, c.now)
    assert v.translated
    read(syn)
    assert addrs(syn) == (OUT, 20, S, 4000)


# -- malformed payloads never raise ---------------------------------------------------------------

_LINES = st.sampled_from([b"PORT ", b"PORT 10,1,1,1,", b"227 Entering Passive Mode (", b"229 Entering Extended "
                          b"Passive Mode (|||", b"\r\n", b"\r", b"\n", b",", b"(", b")", b".", b"|", b"999",
                          b"10,1,1,1,4,1", b"198,51,100,7,195,80", b"USER x", b"230 ok", b"331", b" ", b"\x00",
                          b"\xff" * 130])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.lists(_LINES, max_size=8).map(b"".join)), max_size=10))
def test_fuzzed_conversation_never_raises(msgs: list[tuple[bool, bytes]]) -> None:
    """Whatever the two ends send, check_out/check_in answer with a verdict
    (translated or blocked) and every packet that passes has right checksums."""
    t = load(MAP)
    c = map_conv(t)
    c.login()
    for from_client, data in msgs:
        if from_client:
            p = build_tcp(A(C), A(S), 1025, 21, data, seq=c.c_seq, ack_seq=c.s_seen, flags=PSH)
            v = t.check_out("ppp0", p, c.now)
            c.c_seq += len(data)
        else:
            p = build_tcp(A(S), A(OUT), 21, 1025, data, seq=c.s_seq, ack_seq=c.c_seen, flags=PSH)
            v = t.check_in("ppp0", p, c.now)
            c.s_seq += len(data)
        assert v.rval in (-1, 1)
        if v.translated:
            read(p)
