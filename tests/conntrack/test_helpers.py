"""The FTP and IRC helpers with NAT and sequence adjustment, through the engine's call order.

A forwarded packet goes: nf_conntrack_in at PREROUTING (and helper assignment
for a new connection) -> NAT at PREROUTING -> TTL decrement -> NAT at
POSTROUTING (MASQUERADE-like SNAT of new connections from the LAN) ->
nf_confirm -> ConntrackTable.confirm.  Both ends of each TCP connection are
simulated: each sends from its own sequence space and acknowledges what the
gateway delivered to it, so an unadjusted ACK would show.

ipgate's TCP tracker does not subtract the NAT offsets yet (tcp_in_window's
nf_ct_seq_offset, see test_tracker_subtracts_seqadj_offsets): flows whose
payload grows run with nf_conntrack_tcp_be_liberal, or the peer's ACK of the
grown data would be INVALID before it reaches nf_confirm.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import random
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from typing import NamedTuple

import pytest

from ipgate.conntrack.confirm import nf_confirm, nf_ct_helper_assign
from ipgate.conntrack.conn import (
    IP_CT_ESTABLISHED,
    IP_CT_NEW,
    IP_CT_RELATED,
    IPS_DST_NAT,
    IPS_EXPECTED,
    IPS_HELPER,
    IPS_SEQ_ADJUST,
    IPS_SRC_NAT,
    NF_ACCEPT,
    NF_DROP,
    NF_INET_POST_ROUTING,
    NF_INET_PRE_ROUTING,
    Conn,
)
from ipgate.conntrack.expect import Expectation
from ipgate.conntrack.helper import HelperRegistry
from ipgate.conntrack.helpers.ftp import FtpMaster
from ipgate.conntrack.sysctl import CtSysctl
from ipgate.conntrack.table import ConntrackTable
from ipgate.conntrack.tuple import IP_CT_DIR_ORIGINAL, IP_CT_DIR_REPLY, IPPROTO_TCP, Tuple
from ipgate.inet import aton, ntoa
from ipgate.nat.core import NF_NAT_RANGE_MAP_IPS, ManipType, NatRange2, nf_nat_inet_fn, nf_nat_setup_info
from ipgate.nat.helper import nf_nat_follow_master
from ipgate.nat.seqadj import SeqAdj, nf_ct_seq_adjust, nf_ct_seqadj_set
from ipgate.packet.build import build_tcp
from ipgate.packet.checksum import ip_compute_csum, l4_checksum_ok
from ipgate.packet.ipv4 import ip_decrease_ttl
from ipgate.packet.l4 import TH_ACK, TH_FIN, TH_PUSH, TH_SYN
from ipgate.packet.rewrite import nf_nat_ipv4_manip_pkt

CLIENT = "192.0.2.10"   # behind the gateway
CLIENT2 = "192.0.2.11"
SERVER = "198.51.100.7"
PEER = "198.51.100.99"  # a DCC peer
PUB = "203.0.113.1"     # the gateway's public address
LAN = (aton("192.0.2.0"), 0xFFFFFF00)

PA = TH_PUSH | TH_ACK
SACK_PERM = b"\x04\x02"


# -- the gateway ---------------------------------------------------------------

class Out(NamedTuple):
    """What left the gateway (buf) or why not (verdict NF_DROP)."""

    verdict: int
    buf: bytes
    ct: Conn | None
    ctinfo: int

    @property
    def ok(self) -> bool:
        return self.verdict == NF_ACCEPT

    def _ihl(self) -> int:
        return (self.buf[0] & 0x0F) * 4

    @property
    def src(self) -> tuple[str, int]:
        return ntoa(struct.unpack_from("!I", self.buf, 12)[0]), struct.unpack_from("!H", self.buf, self._ihl())[0]

    @property
    def dst(self) -> tuple[str, int]:
        return (ntoa(struct.unpack_from("!I", self.buf, 16)[0]),
                struct.unpack_from("!H", self.buf, self._ihl() + 2)[0])

    @property
    def seq(self) -> int:
        return int(struct.unpack_from("!I", self.buf, self._ihl() + 4)[0])

    @property
    def ack(self) -> int:
        return int(struct.unpack_from("!I", self.buf, self._ihl() + 8)[0])

    @property
    def flags(self) -> int:
        return self.buf[self._ihl() + 13]

    @property
    def payload(self) -> bytes:
        doff = (self.buf[self._ihl() + 12] >> 4) * 4
        return self.buf[self._ihl() + doff:struct.unpack_from("!H", self.buf, 2)[0]]


def checksums_ok(buf: bytes) -> bool:
    ihl = (buf[0] & 0x0F) * 4
    tot = struct.unpack_from("!H", buf, 2)[0]
    return tot == len(buf) and ip_compute_csum(buf[:ihl]) == 0 and l4_checksum_ok(buf, ihl, tot - ihl, IPPROTO_TCP)


def default_registry() -> HelperRegistry:
    reg = HelperRegistry()
    reg.enable("ftp")
    reg.enable("irc")
    return reg


class Gw:
    """A masquerading router in the engine's call order."""

    def __init__(self, public: str = PUB, *, liberal: bool = False, seed: int = 1,
                 registry: HelperRegistry | None = None, ct_helper: dict[int, str] | None = None) -> None:
        self.table = ConntrackTable(CtSysctl(tcp_be_liberal=int(liberal)))
        self.public = aton(public)
        self.rng = random.Random(seed)
        self.registry = registry if registry is not None else default_registry()
        self.ct_helper = ct_helper or {}  # raw table: -p tcp --dport PORT -j CT --helper NAME
        self.now = 1000.0
        self.log: list[str] = []

    def _rules(self, ct: Conn, maniptype: ManipType) -> int:
        # -t nat -A POSTROUTING -o <public side> -j MASQUERADE
        orig = ct.orig
        if maniptype == ManipType.SRC and orig.dst & LAN[1] != LAN[0]:
            r = NatRange2(NF_NAT_RANGE_MAP_IPS, self.public, self.public)
            return nf_nat_setup_info(self.table, ct, r, ManipType.SRC, self.rng, self.now)
        return NF_ACCEPT

    def _nat(self, buf: bytearray, ct: Conn | None, ctinfo: int, hook: int) -> int:
        verdict, manip = nf_nat_inet_fn(self.table, ct, ctinfo, hook, self._rules, self.rng, self.now)
        if manip is not None:
            assert nf_nat_ipv4_manip_pkt(buf, 0, len(buf), manip.maniptype, manip.addr, manip.port)
        return verdict

    def forward(self, pkt: bytes) -> Out:
        self.now += 0.01
        buf = bytearray(pkt)
        r = self.table.nf_conntrack_in(buf, self.now, NF_INET_PRE_ROUTING)
        ct, ctinfo = r.ct, r.ctinfo
        if r.verdict != NF_ACCEPT:
            return Out(NF_DROP, bytes(buf), ct, ctinfo)
        if ct is not None and not ct.confirmed and not ct.status & IPS_EXPECTED:
            name = self.ct_helper.get(ct.orig.dport)
            if name:
                ct.get_ext().helper = name
            nf_ct_helper_assign(self.registry, ct)
        if self._nat(buf, ct, ctinfo, NF_INET_PRE_ROUTING) != NF_ACCEPT:
            return Out(NF_DROP, bytes(buf), ct, ctinfo)
        ip_decrease_ttl(buf)
        if self._nat(buf, ct, ctinfo, NF_INET_POST_ROUTING) != NF_ACCEPT:
            return Out(NF_DROP, bytes(buf), ct, ctinfo)
        verdict, buf = nf_confirm(self.table, ct, ctinfo, buf, self.now, self.rng, log=self.log)
        if verdict == NF_ACCEPT:
            verdict = self.table.confirm(ct, ctinfo, self.now)
        return Out(verdict, bytes(buf), ct, ctinfo)


# -- two TCP ends ----------------------------------------------------------------

@dataclass
class End:
    addr: str
    port: int
    snd_nxt: int
    rcv_nxt: int = 0
    ident: int = 1


class Flow:
    """One TCP connection through the gateway; `steps` records what was sent and what came out."""

    def __init__(self, gw: Gw, client: End, server: End, *, client_in_lan: bool = True,
                 server_seen_as: tuple[str, int] | None = None) -> None:
        self.gw, self.client, self.server = gw, client, server
        self.seen_as: tuple[str, int] = (client.addr, client.port)  # the client as the server sees it
        self.server_seen_as = server_seen_as or (server.addr, server.port)  # ...and the server as the client does
        self.client_in_lan = client_in_lan
        self.steps: list[tuple[bool, bytes, Out]] = []  # (sent from the LAN side, packet, output)

    def send(self, from_client: bool, payload: bytes = b"", flags: int = PA, *, options: bytes = b"",
             seq: int | None = None) -> Out:
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        daddr, dport = self.server_seen_as if from_client else self.seen_as
        pkt = build_tcp(aton(src.addr), aton(daddr), src.port, dport, payload,
                        seq=src.snd_nxt if seq is None else seq, ack_seq=src.rcv_nxt,
                        flags=flags, options=options, id=src.ident)
        src.ident += 1
        if seq is None:
            src.snd_nxt += len(payload) + bool(flags & TH_SYN) + bool(flags & TH_FIN)
        out = self.gw.forward(bytes(pkt))
        self.steps.append((from_client == self.client_in_lan, bytes(pkt), out))
        if out.ok:
            assert checksums_ok(out.buf)
            if from_client and out.flags & TH_SYN:
                self.seen_as = out.src
            dst.rcv_nxt = (out.seq + len(out.payload) + bool(out.flags & TH_SYN) + bool(out.flags & TH_FIN)) \
                & 0xFFFFFFFF
        return out

    def c(self, payload: bytes = b"", flags: int = PA, *, options: bytes = b"", seq: int | None = None) -> Out:
        """The client sends (`seq` given: a retransmission, snd_nxt stays)."""
        return self.send(True, payload, flags, options=options, seq=seq)

    def s(self, payload: bytes = b"", flags: int = PA, *, options: bytes = b"") -> Out:
        return self.send(False, payload, flags, options=options)

    def handshake(self, options: bytes = b"") -> Conn:
        out = self.c(flags=TH_SYN, options=options)
        assert out.ok and out.ct is not None
        self.s(flags=TH_SYN | TH_ACK, options=options)
        self.c(flags=TH_ACK)
        return out.ct


def control(gw: Gw, client: str = CLIENT, cport: int = 40000, server: str = SERVER, sport: int = 21,
            greet: bytes = b"220 ready\r\n", first: bytes = b"USER anonymous\r\n") -> tuple[Flow, Conn]:
    """An established control connection whose first data segment each way went by (never parsed)."""
    f = Flow(gw, End(client, cport, 1000), End(server, sport, 700000))
    ct = f.handshake()
    if greet:
        f.s(greet)
    if first:
        f.c(first)
    return f, ct


def expectations(gw: Gw, master: Conn) -> list[Expectation]:
    return [e for e in gw.table.expect if e.master is master]


# -- helper assignment --------------------------------------------------------------

def test_helper_assignment() -> None:
    gw = Gw()
    _, ct = control(gw, greet=b"", first=b"")
    assert ct.helper == "ftp" and not ct.status & IPS_HELPER  # by the reply tuple's source port
    _, irc_ct = control(gw, cport=40001, sport=6667, greet=b"", first=b"")
    assert irc_ct.helper == "irc"
    _, plain = control(gw, cport=40002, sport=80, greet=b"", first=b"")
    assert plain.helper is None
    # net.netfilter.nf_conntrack_helper=0: only -j CT --helper assigns one (and marks IPS_HELPER).
    reg = default_registry()
    reg.auto_assign = False
    gw2 = Gw(registry=reg, ct_helper={2100: "ftp"})
    _, none = control(gw2, greet=b"", first=b"")
    assert none.helper is None
    _, ct_target = control(gw2, cport=40003, sport=2100, greet=b"", first=b"")
    assert ct_target.helper == "ftp" and ct_target.status & IPS_HELPER


def test_nonstandard_ftp_port() -> None:
    reg = HelperRegistry()
    reg.enable("ftp", [2121])  # modprobe nf_conntrack_ftp ports=2121
    gw = Gw(registry=reg, liberal=True)
    f, ct = control(gw, sport=2121)
    assert ct.helper == "ftp"
    out = f.c(b"PORT 192,0,2,10,195,80\r\n")
    assert out.payload == b"PORT 203,0,113,1,195,80\r\n"
    assert [e.tuple for e in expectations(gw, ct)] == [Tuple(aton(SERVER), aton(PUB), IPPROTO_TCP, 0, 50000)]
    _, ct21 = control(gw, cport=40001, sport=21)
    assert ct21.helper is None  # 21 is no longer registered
    assert f.s(b"200 ok\r\n").ack == f.client.snd_nxt


# -- FTP -------------------------------------------------------------------------

def test_active_ftp_through_masquerade() -> None:
    gw = Gw(liberal=True, seed=5)
    # Another client behind the same address announced port 1025 to the same server first:
    # ours cannot get an identical expectation (EBUSY) and moves to a random higher port.
    other, other_ct = control(gw, client=CLIENT2, cport=40000)
    assert other.c(b"PORT 192,0,2,11,4,1\r\n").payload == b"PORT 203,0,113,1,4,1\r\n"
    f, ct = control(gw)
    assert f.seen_as[0] == PUB and f.seen_as[1] != 40000  # the port is taken by the other client
    port_seq = f.client.snd_nxt
    out = f.c(b"PORT 192,0,2,10,4,1\r\n")
    assert out.ok and out.ct is ct and out.ctinfo == IP_CT_ESTABLISHED
    [exp] = expectations(gw, ct)
    port = exp.tuple.dport
    assert port != 1025 and 1025 <= port < 65535
    assert out.payload == b"PORT 203,0,113,1,%d,%d\r\n" % (port >> 8, port & 0xFF)
    delta = len(out.payload) - len(b"PORT 192,0,2,10,4,1\r\n")
    assert delta > 1  # the address text and the port text both grew
    assert exp.tuple == Tuple(aton(SERVER), aton(PUB), IPPROTO_TCP, 0, port)
    assert (exp.mask_src, exp.mask_sport, exp.saved_proto, exp.dir) == (0xFFFFFFFF, 0, 1025, IP_CT_DIR_REPLY)
    assert isinstance(exp.expectfn, functools.partial) and exp.expectfn.func is nf_nat_follow_master
    assert exp.timeout == gw.now + 300
    assert ct.status & IPS_SEQ_ADJUST
    assert ct.ext is not None and ct.ext.seqadj is not None
    way = ct.ext.seqadj.seq[IP_CT_DIR_ORIGINAL]
    assert (way.correction_pos, way.offset_before, way.offset_after) == (port_seq, 0, delta)

    # The server acknowledges the longer text; the client sees its own numbers.
    reply = f.s(b"200 PORT command successful\r\n")
    assert reply.ok and reply.ack == f.client.snd_nxt
    # ...and the client's next command is shifted into the server's numbering.
    before = f.client.snd_nxt
    nxt = f.c(b"LIST\r\n")
    assert nxt.seq == before + delta and nxt.payload == b"LIST\r\n"
    assert f.s(b"150 Here it comes\r\n").ack == f.client.snd_nxt

    # The data connection from port 20 matches, is RELATED and is sent on to the client's port.
    syn = gw.forward(bytes(build_tcp(aton(SERVER), aton(PUB), 20, port, seq=90000, flags=TH_SYN, id=7)))
    assert syn.ok and syn.ctinfo == IP_CT_RELATED and syn.ct is not None
    dct = syn.ct
    assert dct.master is ct and dct.status & IPS_EXPECTED and dct.status & IPS_DST_NAT
    assert dct.helper is None and expectations(gw, ct) == []
    assert syn.src == (SERVER, 20) and syn.dst == (CLIENT, 1025)
    synack = gw.forward(bytes(build_tcp(aton(CLIENT), aton(SERVER), 1025, 20, seq=5, ack_seq=90001,
                                        flags=TH_SYN | TH_ACK, id=8)))
    assert synack.ok and synack.src == (PUB, port) and synack.dst == (SERVER, 20)
    # A second PORT: offsets add up, and the new expectation replaces nothing of the other master's.
    before = f.client.snd_nxt
    again = f.c(b"PORT 192,0,2,10,4,2\r\n")
    assert again.seq == before + delta and again.payload == b"PORT 203,0,113,1,4,2\r\n"  # 1026 is free
    assert (way.correction_pos, way.offset_before, way.offset_after) == (before, delta, delta + 1)
    assert f.s(b"200 ok\r\n").ack == f.client.snd_nxt
    assert [e.tuple.dport for e in expectations(gw, other_ct)] == [1025]


def test_passive_ftp_227_and_229() -> None:
    gw = Gw()
    f, ct = control(gw)
    f.c(b"PASV\r\n")
    pasv = f.s(b"227 Entering Passive Mode (198,51,100,7,195,80).\r\n")
    # NAT re-renders the server's own address and port: the same text.
    assert pasv.ok and pasv.payload == b"227 Entering Passive Mode (198,51,100,7,195,80).\r\n"
    assert not ct.status & IPS_SEQ_ADJUST
    [exp] = expectations(gw, ct)
    assert exp.tuple == Tuple(aton(CLIENT), aton(SERVER), IPPROTO_TCP, 0, 50000)
    assert exp.dir == IP_CT_DIR_ORIGINAL and exp.saved_proto == 50000
    data = gw.forward(bytes(build_tcp(aton(CLIENT), aton(SERVER), 41000, 50000, seq=1, flags=TH_SYN, id=3)))
    assert data.ok and data.ctinfo == IP_CT_RELATED and data.ct is not None and data.ct.master is ct
    assert data.src == (PUB, 41000) and data.dst == (SERVER, 50000)
    assert data.ct.status & IPS_SRC_NAT and not data.ct.status & IPS_DST_NAT
    f.c(b"EPSV\r\n")
    epsv = f.s(b"229 Entering Extended Passive Mode (|||50001|)\r\n")
    assert epsv.payload == b"229 Entering Extended Passive Mode (|||50001|)\r\n"
    assert [e.tuple for e in expectations(gw, ct)] == [Tuple(aton(CLIENT), aton(SERVER), IPPROTO_TCP, 0, 50001)]
    data2 = gw.forward(bytes(build_tcp(aton(CLIENT), aton(SERVER), 41001, 50001, seq=1, flags=TH_SYN, id=4)))
    assert data2.ctinfo == IP_CT_RELATED and data2.src == (PUB, 41001)


def test_pasv_naming_another_host_is_not_expected() -> None:
    gw = Gw()
    f, ct = control(gw)
    f.c(b"PASV\r\n")
    out = f.s(b"227 Entering Passive Mode (192,0,2,99,195,80).\r\n")  # not the server's address: "loose" is off
    assert out.ok and expectations(gw, ct) == []


def test_eprt() -> None:
    gw = Gw(liberal=True)
    f, ct = control(gw)
    out = f.c(b"EPRT |1|192.0.2.10|50002|\r\n")
    assert out.payload == b"EPRT |1|203.0.113.1|50002|\r\n"
    [exp] = expectations(gw, ct)
    assert exp.tuple == Tuple(aton(SERVER), aton(PUB), IPPROTO_TCP, 0, 50002)
    assert ct.ext is not None and ct.ext.seqadj is not None and ct.ext.seqadj.seq[0].offset_after == 1
    assert f.s(b"200 EPRT ok\r\n").ack == f.client.snd_nxt
    # IPv6 ("2") on an IPv4 connection is a partial match: dropped.
    bad = f.c(b"EPRT |2|2001:db8::1|50003|\r\n")
    assert bad.verdict == NF_DROP and gw.log[-1] == "nf_ct_ftp: dropping packet: partial matching of `EPRT'"


def test_without_nat_the_expectation_is_registered_as_announced() -> None:
    gw = Gw(public=CLIENT)  # a "masquerade" to the client's own address changes nothing
    f, ct = control(gw)
    assert not ct.status & (IPS_SRC_NAT | IPS_DST_NAT)
    out = f.c(b"PORT 192,0,2,10,195,80\r\n")
    assert out.payload == b"PORT 192,0,2,10,195,80\r\n"
    [exp] = expectations(gw, ct)
    assert exp.tuple == Tuple(aton(SERVER), aton(CLIENT), IPPROTO_TCP, 0, 50000) and exp.expectfn is None


def test_commands_only_after_a_newline() -> None:
    gw = Gw()
    f = Flow(gw, End(CLIENT, 40000, 1000), End(SERVER, 21, 700000))
    ct = f.handshake()
    # The first data segment of a direction is never parsed: no newline seen yet.
    assert f.c(b"PORT 192,0,2,10,195,80\r\n").payload == b"PORT 192,0,2,10,195,80\r\n"
    assert expectations(gw, ct) == []
    assert isinstance(ct.ext.data if ct.ext else None, FtpMaster)


def test_split_command() -> None:
    gw = Gw(liberal=True)
    f, ct = control(gw)
    # A command cut short at the start of a segment: dropped, so that it comes again whole.
    cut = f.c(b"PORT 192,0,2,10,19", seq=f.client.snd_nxt)
    assert cut.verdict == NF_DROP
    assert gw.log == ["nf_ct_ftp: dropping packet: partial matching of `PORT'"]
    assert gw.table.stats.drop == 1
    # Split after another command: neither part starts after a newline, nothing is parsed.
    a = f.c(b"NOOP\r\nPORT 192,0,")
    b = f.c(b"2,10,4,1\r\n")
    assert a.payload == b"NOOP\r\nPORT 192,0," and b.payload == b"2,10,4,1\r\n"
    assert expectations(gw, ct) == [] and not ct.status & IPS_SEQ_ADJUST
    # The next segment starts after the newline that ended the split one: parsed again.
    assert f.c(b"PORT 192,0,2,10,4,2\r\n").payload == b"PORT 203,0,113,1,4,2\r\n"
    assert [e.tuple.dport for e in expectations(gw, ct)] == [1026]


def test_no_free_port_drops_with_the_kernels_message() -> None:
    gw = Gw()
    other, _ = control(gw, client=CLIENT2)
    assert other.c(b"PORT 192,0,2,11,255,255\r\n").ok  # takes PUB:65535 from SERVER
    f, ct = control(gw, cport=40001)
    out = f.c(b"PORT 192,0,2,10,255,255\r\n")  # no port above 65535 to try
    assert out.verdict == NF_DROP and expectations(gw, ct) == []
    assert gw.log == ["nf_ct_ftp: dropping packet: all ports in use"]


def test_one_expectation_per_ftp_session() -> None:
    gw = Gw()
    f, ct = control(gw)
    f.c(b"PASV\r\n")
    f.s(b"227 Entering Passive Mode (198,51,100,7,195,80).\r\n")
    f.c(b"PASV\r\n")
    f.s(b"227 Entering Passive Mode (198,51,100,7,195,81).\r\n")
    assert [e.tuple.dport for e in expectations(gw, ct)] == [50001]  # max_expected 1: the oldest went


# -- IRC ---------------------------------------------------------------------------

def _ip_number(addr: str) -> bytes:
    return str(aton(addr)).encode()


def test_irc_dcc_send_and_chat() -> None:
    gw = Gw()
    f, ct = control(gw, sport=6667, greet=b":irc.example 001 alice :Welcome\r\n", first=b"")
    assert ct.helper == "irc"
    send = b"PRIVMSG bob :\x01DCC SEND notes.txt %s 5000 1234\x01\r\n"
    out = f.c(send % _ip_number(CLIENT))
    assert out.ok and out.payload == send % _ip_number(PUB)
    [exp] = expectations(gw, ct)
    assert exp.tuple == Tuple(0, aton(PUB), IPPROTO_TCP, 0, 5000) and exp.mask_src == 0 and exp.mask_sport == 0
    assert exp.dir == IP_CT_DIR_REPLY and exp.timeout == gw.now + 300
    # The peer's connection: RELATED, sent on to the client; its source becomes the IRC
    # server's address (nf_nat_follow_master: where the master's packets go).
    peer = gw.forward(bytes(build_tcp(aton(PEER), aton(PUB), 33333, 5000, seq=1, flags=TH_SYN, id=9)))
    assert peer.ok and peer.ctinfo == IP_CT_RELATED and peer.dst == (CLIENT, 5000) and peer.src == (SERVER, 33333)
    chat = b"PRIVMSG bob :\x01DCC CHAT chat %s 5001\x01\r\n"
    assert f.c(chat % _ip_number(CLIENT)).payload == chat % _ip_number(PUB)
    assert [e.tuple.dport for e in expectations(gw, ct)] == [5001]
    # Server to client: never looked at.
    f.s(b":bob!b@h PRIVMSG alice :\x01DCC SEND x %s 5002 1\x01\r\n" % _ip_number(SERVER))
    assert [e.tuple.dport for e in expectations(gw, ct)] == [5001]


def test_irc_forged_and_unparsable_dcc() -> None:
    gw = Gw()
    f, ct = control(gw, sport=6667, greet=b":irc.example 001 alice :Welcome\r\n", first=b"")
    forged = f.c(b"PRIVMSG bob :\x01DCC SEND x %s 5000 1\x01\r\n" % _ip_number("192.0.2.77"))
    assert forged.ok and expectations(gw, ct) == []
    assert gw.log == [f"nf_conntrack_irc: Forged DCC command from {CLIENT}: 192.0.2.77:5000"]
    no_nl = f.c(b"PRIVMSG bob :\x01DCC SEND x %s 5000 1\x01" % _ip_number(CLIENT))  # no newline in the segment
    big_port = f.c(b"PRIVMSG bob :\x01DCC SEND x %s 70000 1\x01\r\n" % _ip_number(CLIENT))
    notice = f.c(b"NOTICE bob :\x01DCC SEND x %s 5000 1\x01\r\n" % _ip_number(CLIENT))
    assert no_nl.ok and big_port.ok and notice.ok and expectations(gw, ct) == []


def test_irc_port_moved_resizes_and_is_sequence_adjusted() -> None:
    gw = Gw(liberal=True, seed=3)
    other, _ = control(gw, client=CLIENT2, sport=6667, greet=b":irc 001 bob :hi\r\n", first=b"")
    other.c(b"PRIVMSG alice :\x01DCC CHAT chat %s 7\x01\r\n" % _ip_number(CLIENT2))  # PUB:7 is taken
    f, ct = control(gw, sport=6667, greet=b":irc 001 alice :hi\r\n", first=b"")
    out = f.c(b"PRIVMSG bob :\x01DCC CHAT chat %s 7\x01\r\n" % _ip_number(CLIENT))
    [exp] = expectations(gw, ct)
    port = exp.tuple.dport
    assert port != 7 and exp.saved_proto == 7
    assert out.payload == b"PRIVMSG bob :\x01DCC CHAT chat %s %d\x01\r\n" % (_ip_number(PUB), port)
    assert ct.status & IPS_SEQ_ADJUST
    assert f.s(b":irc PONG irc\r\n").ack == f.client.snd_nxt
    peer = gw.forward(bytes(build_tcp(aton(PEER), aton(PUB), 33333, port, seq=1, flags=TH_SYN, id=9)))
    assert peer.dst == (CLIENT, 7)  # back to the port the client named


# -- sequence adjustment ---------------------------------------------------------

def _seg(seq: int, ack: int, options: bytes = b"", flags: int = PA, payload: bytes = b"x") -> bytearray:
    return build_tcp(aton(SERVER), aton(PUB), 21, 40000, payload, seq=seq, ack_seq=ack, flags=flags,
                     options=options, id=1)


def test_seq_adjust_sack_retransmission_and_truncated_options() -> None:
    ct = Conn(Tuple(aton(CLIENT), aton(SERVER), IPPROTO_TCP, 40000, 21).key,
              Tuple(aton(SERVER), aton(PUB), IPPROTO_TCP, 21, 40000).key)
    nf_ct_seqadj_set(ct, IP_CT_ESTABLISHED, 5000, 3)   # the client's segment at 5000 grew by 3
    nf_ct_seqadj_set(ct, IP_CT_ESTABLISHED, 5000, 3)   # retransmitted: counted once
    nf_ct_seqadj_set(ct, IP_CT_ESTABLISHED, 6000, -1)  # a later one shrank by 1
    assert ct.ext is not None and isinstance(ct.ext.seqadj, SeqAdj)
    way = ct.ext.seqadj.seq[0]
    assert (way.correction_pos, way.offset_before, way.offset_after) == (6000, 3, 2)
    assert ct.ext.seqadj.offset(0, 5500) == 3 and ct.ext.seqadj.offset(0, 6001) == 2
    # Client segments: before the last correction +3, after it +2.
    for seq, new in ((5500, 5503), (6000, 6003), (6001, 6003)):
        buf = build_tcp(aton(PUB), aton(SERVER), 40000, 21, b"y", seq=seq, ack_seq=1, id=1)
        assert nf_ct_seq_adjust(ct, IP_CT_ESTABLISHED, buf, 20) and checksums_ok(bytes(buf))
        assert struct.unpack_from("!I", buf, 24)[0] == new
    # Server ACK and SACK edges go back into the client's numbers.
    sack = b"\x01\x01\x05\x12" + struct.pack("!IIII", 5503, 5600, 6003, 6100)
    buf = _seg(1, 6100, sack)
    assert nf_ct_seq_adjust(ct, IP_CT_ESTABLISHED + 3, buf, 20) and checksums_ok(bytes(buf))
    assert struct.unpack_from("!I", buf, 28)[0] == 6098
    assert struct.unpack_from("!IIII", buf, 44) == (5500, 5597, 6000, 6098)
    # A segment without ACK keeps its ack field.
    buf = _seg(1, 123456, flags=TH_SYN)
    assert nf_ct_seq_adjust(ct, IP_CT_ESTABLISHED + 3, buf, 20) and struct.unpack_from("!I", buf, 28)[0] == 123456
    # An option running past the header: the packet is dropped.
    assert not nf_ct_seq_adjust(ct, IP_CT_ESTABLISHED + 3, _seg(1, 6100, b"\x01\x01\x05\x0a\x00\x00"), 20)


def test_nf_confirm_leaves_other_packets_alone() -> None:
    gw = Gw()
    _, ct = control(gw, sport=80, greet=b"", first=b"")
    pkt = bytearray(build_tcp(aton(CLIENT), aton(SERVER), 40000, 80, b"GET / HTTP/1.0\r\n", seq=1001,
                              ack_seq=700001, id=5))
    verdict, out = nf_confirm(gw.table, ct, IP_CT_ESTABLISHED, pkt, gw.now, gw.rng)
    assert verdict == NF_ACCEPT and out is pkt and bytes(out) == bytes(pkt)
    assert nf_confirm(gw.table, None, IP_CT_NEW, pkt, gw.now, gw.rng) == (NF_ACCEPT, pkt)


def test_tracker_subtracts_seqadj_offsets() -> None:
    gw = Gw()  # strict window tracking
    f, ct = control(gw)
    assert len(f.c(b"PORT 192,0,2,10,195,80\r\n").payload) > len(b"PORT 192,0,2,10,195,80\r\n")
    reply = f.s(b"200 PORT command successful\r\n")
    assert reply.ct is ct and reply.ack == f.client.snd_nxt


def test_expected_connection_nat_failure_drops_at_confirm() -> None:
    gw = Gw()
    table = gw.table
    master = Conn(Tuple(aton(CLIENT), aton(SERVER), IPPROTO_TCP, 40000, 21).key,
                  Tuple(aton(SERVER), aton(PUB), IPPROTO_TCP, 21, 40000).key)
    exp = Expectation(master, Tuple(aton(SERVER), aton(PUB), IPPROTO_TCP, 0, 5000), mask_sport=0)
    exp.saved_proto, exp.dir = 5000, IP_CT_DIR_REPLY
    # The client's port is already used by a connection from the server's port 20 to the client.
    taken = Conn(Tuple(aton(SERVER), aton(CLIENT), IPPROTO_TCP, 20, 5000).key,
                 Tuple(aton(CLIENT), aton(SERVER), IPPROTO_TCP, 5000, 20).key)
    taken.timeout = 120.0
    assert table.confirm(taken, IP_CT_NEW, gw.now) == NF_ACCEPT
    new = Conn(Tuple(aton(SERVER), aton(PUB), IPPROTO_TCP, 20, 5000).key,
               Tuple(aton(PUB), aton(SERVER), IPPROTO_TCP, 5000, 20).key)
    new.get_ext().master = master
    table.expect.now = gw.now
    nf_nat_follow_master(table, gw.rng, new, exp)
    assert new.dying and table.confirm(new, IP_CT_RELATED, gw.now) == NF_DROP


# -- the kernel as the oracle ------------------------------------------------------------

KC, KR_C, KR_S, KS = "192.0.2.1", "192.0.2.254", "198.51.100.254", "198.51.100.2"
SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM = 0x16
ETHTOOL_STXCSUM = 0x17
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
CLONE_NEWNET = 0x40000000


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


def _ethtool(ifname: str, cmd: int, data: int = 0) -> int:
    """The legacy ethtool ioctl on an interface of the current namespace."""
    value = ctypes.create_string_buffer(struct.pack("II", cmd, data))
    ifr = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)).ljust(40, b"\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)
    return int(struct.unpack_from("II", value.raw)[1])


class Lab:
    """client -- router -- server namespaces (prefix ipgt-); this thread ends in the router's.

    Raw sockets send crafted packets from client and server, packet sockets
    capture what reaches them; their own stacks drop all TCP in raw
    PREROUTING.  The router's transmit checksum offload is off, so that the
    checksums a helper recomputes are on the wire, not left to the device.
    """

    def __init__(self) -> None:
        p = f"ipgt-ftp-{os.getpid()}"
        self.c, self.r, self.s = f"{p}-c", f"{p}-r", f"{p}-s"
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.tx: dict[str, socket.socket] = {}
        self.rx: dict[str, socket.socket] = {}
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        c, r, s = self.c, self.r, self.s
        for ns in (c, r, s):
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "link", "add", "rc", "netns", r, "type", "veth", "peer", "name", "cr", "netns", c)
        _run("ip", "link", "add", "rs", "netns", r, "type", "veth", "peer", "name", "sr", "netns", s)
        for ns, dev, addr in ((c, "cr", f"{KC}/24"), (r, "rc", f"{KR_C}/24"), (r, "rs", f"{KR_S}/24"),
                              (s, "sr", f"{KS}/24")):
            _run("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
        _run("ip", "-n", c, "route", "add", "default", "via", KR_C)
        _run("ip", "-n", s, "route", "add", "default", "via", KR_S)
        _run("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for ns in (c, s):
            _run("ip", "netns", "exec", ns, "iptables-legacy", "-t", "raw", "-A", "PREROUTING", "-p", "tcp",
                 "-j", "DROP")
        for name, ns, dev in (("c", c, "cr"), ("s", s, "sr")):
            self._enter(ns)
            self.tx[name] = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
            rx.bind((dev, ETH_P_IP))
            rx.settimeout(0.05)
            self.rx[name] = rx
        self._enter(r)
        for dev in ("rc", "rs"):
            _ethtool(dev, ETHTOOL_STXCSUM, 0)
            if _ethtool(dev, ETHTOOL_GTXCSUM):
                raise OSError(errno.EOPNOTSUPP, f"cannot turn off tx checksumming on {dev}")

    def _enter(self, ns: str) -> None:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if self._libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {ns}")
        finally:
            os.close(fd)

    def router(self, *args: str) -> None:
        _run("ip", "netns", "exec", self.r, *args)

    def send(self, from_lan: bool, pkt: bytes) -> None:
        self.tx["c" if from_lan else "s"].sendto(pkt, (socket.inet_ntoa(pkt[16:20]), 0))

    def receive(self, at_server: bool, timeout: float) -> bytes | None:
        """The next TCP packet that reached the server's (or client's) interface."""
        rx = self.rx["s" if at_server else "c"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, addr = rx.recvfrom(70000)
            except TimeoutError:
                continue
            if addr[2] == PACKET_OUTGOING or len(data) < 20 or data[9] != IPPROTO_TCP:
                continue
            return data[:struct.unpack_from("!H", data, 2)[0]]
        return None

    def close(self) -> None:
        for sk in (*self.tx.values(), *self.rx.values()):
            sk.close()
        try:
            if self._libc.setns(self._home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(self._home)
            for ns in (self.c, self.r, self.s):
                subprocess.run(("ip", "netns", "del", ns), capture_output=True, timeout=20)


def kernel_scenario() -> list[tuple[bool, bytes, Out]]:
    """An FTP session through ipgate masquerading to the router's address, step by step."""
    gw = Gw(KR_S, liberal=True, registry=HelperRegistry(auto_assign=False), ct_helper={21: "ftp"})
    f = Flow(gw, End(KC, 40000, 1000, ident=100), End(KS, 21, 5000, ident=200))
    f.handshake(options=b"\x02\x04\x05\xb4" + b"\x01\x01" + SACK_PERM)
    f.s(b"220 ready\r\n")
    f.c(b"USER anonymous\r\n")
    f.s(b"331 Please specify the password.\r\n")
    port_start = f.server.rcv_nxt
    f.c(b"PORT 192,0,2,1,195,80\r\n")  # +5: 198,51,100,254
    port_end = f.server.rcv_nxt
    f.s(b"200 PORT command successful.\r\n", options=b"\x01\x01\x05\x0a" + struct.pack("!II", port_start, port_end))
    f.c(b"LIST\r\n")
    data = Flow(gw, End(KS, 20, 900000, ident=300), End(KC, 50000, 40000, ident=400), client_in_lan=False,
                server_seen_as=(KR_S, 50000))
    data.steps = f.steps
    data.send(True, flags=TH_SYN)                # the server opens the data connection...
    data.send(False, flags=TH_SYN | TH_ACK)     # ...and the client's answer leaves masqueraded
    f.c(b"EPRT |1|192.0.2.1|50001|\r\n")        # +5 again
    f.s(b"200 EPRT command successful.\r\n")
    f.c(b"PASV\r\n")
    f.s(b"227 Entering Passive Mode (198,51,100,2,200,10).\r\n")
    f.c(b"EPSV\r\n")
    f.s(b"229 Entering Extended Passive Mode (|||52000|)\r\n")
    f.c(b"PORT 192,0,2,1,19", seq=f.client.snd_nxt)  # partial: dropped
    f.c(b"NOOP\r\nPORT 192,0,")                 # split: not parsed
    f.c(b"2,1,4,1\r\n")
    f.s(b"200 NOOP ok.\r\n")
    return f.steps


def _kernel_usable() -> str:
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "iptables-legacy"):
        if shutil.which(tool) is None:
            return f"{tool} missing"
    return ""


@pytest.mark.netns
def test_ftp_nat_matches_the_kernel() -> None:
    """Mangled PORT/EPRT payloads, 227/229 replies, SEQ/ACK/SACK adjustment, the RELATED data
    connection's DNAT and the drop of a partial command, byte for byte against Linux."""
    why = _kernel_usable()
    if why:
        pytest.skip(why)
    steps = kernel_scenario()
    drops = [i for i, (_, _, out) in enumerate(steps) if not out.ok]
    assert len(drops) == 1  # the partial PORT
    try:
        lab = Lab()
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip(f"cannot build the namespaces: {e}")
    try:
        try:
            if shutil.which("modprobe"):  # built-in helpers need none
                for mod in ("nf_conntrack_ftp", "nf_nat_ftp"):
                    subprocess.run(("modprobe", mod), capture_output=True, timeout=20)
            lab.router("iptables-legacy", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "21",
                       "-j", "CT", "--helper", "ftp")
            lab.router("iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-o", "rs", "-j", "MASQUERADE")
        except subprocess.CalledProcessError as e:
            pytest.skip(f"the ftp helper cannot be attached: {e.stderr.decode().strip()}")
        for i, (from_lan, pkt, out) in enumerate(steps):
            lab.send(from_lan, pkt)
            got = lab.receive(at_server=from_lan, timeout=2.0 if out.ok else 0.3)
            if not out.ok:
                assert got is None, f"step {i}: ipgate dropped, the kernel forwarded {got!r}"
                continue
            assert got is not None, f"step {i}: ipgate forwarded {out.buf!r}, the kernel did not"
            assert got == out.buf, f"step {i}:\n kernel {got.hex()}\n ipgate {out.buf.hex()}"
    finally:
        lab.close()

