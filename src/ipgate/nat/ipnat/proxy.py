"""IP Filter's in-kernel application proxies (4.1.x ip_proxy.c), the part NAT calls.

A rule with `proxy port P name/proto` (map) or `proxy name` (rdr) names an
aproxy_t of ap_proxies[]; when such a rule makes a session, appr_new() gives
the session an ap_session_t (here `ApSession`, kept by `ProxyTable` beside
the session, as nat_aps) and calls the proxy's apr_new hook.  Every later
packet of that session goes through appr_check():

* inbound packets first have their TCP/UDP checksum verified (IP Filter 4.1
  built without IPFILTER_CKSUM: fr_checkl4sum(), a bad sum blocks);
* the proxy's apr_outpkt (packet leaving) or apr_inpkt (arriving) hook runs;
  it returns APR_ERR(n) to block (n == 2 also drops the proxy state) or
  APR_INC(size change) after rewriting the payload;
* appr_fixseqack() shifts this packet's SEQ by what earlier rewrites of its
  direction added, its ACK back by the other direction's, and records a new
  size change (aps_seqmin/aps_seqoff for packets going out, aps_ackmin/
  aps_ackoff for packets coming in, two sets each with aps_sel choosing);
  comparisons are plain unsigned ones, as in the kernel (no SACK edits);
* the IP header checksum and the whole TCP checksum are redone (fr_cksum()).

Where NAT calls it (ip_nat.c): fr_natout() after it has translated the
packet, fr_natin() before (so a proxy always sees the inside address of a
map session's packets as translated on the way out, and an rdr session's
arriving packets still addressed to the outside address).

Proxies open holes for the connections their control connection announces
with "slave" sessions (nat_new() with NAT_SLAVE): sessions of the same rule
with a port left open (SI_W_SPORT / SI_W_DPORT), found by the first packet
that fits through nat_inlookup()'s / nat_outlookup()'s wildcard search
(nat_wildok()), which fills the port in and re-hashes the session
(nat_tabmove()).  `ProxyTable` keeps that wildcard index.

Deviations, each for a reason: the proxy state and the wildcard index are
dropped lazily when their session has gone (NatSession has no slot for
them); ns_wilds is not counted in `ipnat -s`; rdr slave sessions take the
control session's inside address instead of asking the rule again (IP
Filter's nat_newrdr() would move a round-robin/split rule on).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ipgate.nat.ipnat.pktinfo import PacketInfo
from ipgate.nat.ipnat.rule import IPN_ICMPERR, IPN_TCP, IPN_TCPUDP
from ipgate.nat.ipnat.session import NAT_INBOUND, NAT_OUTBOUND, NatSession
from ipgate.packet.build import build_tcp
from ipgate.packet.checksum import csum_partial, csum_tcpudp_nofold, l4_checksum_ok
from ipgate.packet.ipv4 import IPPROTO_TCP, IPPROTO_UDP, WBuffer, ip_send_check
from ipgate.packet.l4 import TH_SYN

if TYPE_CHECKING:
    from ipgate.nat.ipnat.core import IpnatTable
    from ipgate.nat.ipnat.natrules import ActiveRule

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_M32 = 0xFFFFFFFF

# ip_state.h: the wildcard flags of a slave session.
SI_W_SPORT = 0x0100
SI_W_DPORT = 0x0200
SI_WILDP = SI_W_SPORT | SI_W_DPORT


def APR_ERR(x: int) -> int:  # noqa: N802  (ip_proxy.h's macro names)
    return x << 16


def APR_EXIT(x: int) -> int:  # noqa: N802
    return (x >> 16) & 0xFFFF


def APR_INC(x: int) -> int:  # noqa: N802
    return x & 0xFFFF


def _short(x: int) -> int:
    """A C `short`: the low 16 bits, signed."""
    x &= 0xFFFF
    return x - 0x10000 if x & 0x8000 else x


class ProxyPacket:
    """fr_info_t as a proxy hook sees it: the whole packet (a TCP segment), its
    direction (`out`: fin_out), the interface, and the NAT table (to make slave
    sessions).  `replace` resizes the payload as COPYBACK()/m_adj() do."""

    def __init__(self, table: IpnatTable, pkt: WBuffer, fin: PacketInfo, out: bool, ifname: str,
                 ticks: int) -> None:
        self.table = table
        self.pkt = pkt
        self.fin = fin
        self.out = out
        self.ifname = ifname
        self.ticks = ticks

    @property
    def thoff(self) -> int:
        return self.fin.hlen

    @property
    def dataoff(self) -> int:
        """Where the TCP payload starts (fin_dp + TCP_OFF)."""
        return self.fin.hlen + (self.pkt[self.fin.hlen + 12] >> 4) * 4

    @property
    def plen(self) -> int:
        return self.fin.plen

    @property
    def mlen(self) -> int:
        """MSGDSIZE(m) - off: the payload bytes."""
        return max(0, self.fin.plen - self.dataoff)

    def payload(self) -> bytes:
        return bytes(self.pkt[self.dataoff:self.fin.plen])

    @property
    def seq(self) -> int:
        return int(_U32.unpack_from(self.pkt, self.thoff + 4)[0])

    @property
    def ack(self) -> int:
        return int(_U32.unpack_from(self.pkt, self.thoff + 8)[0])

    @property
    def flags(self) -> int:
        return self.pkt[self.thoff + 13]

    @property
    def saddr(self) -> int:
        return int(_U32.unpack_from(self.pkt, 12)[0])

    @property
    def daddr(self) -> int:
        return int(_U32.unpack_from(self.pkt, 16)[0])

    def replace(self, start: int, stop: int, new: bytes) -> bool:
        """Put `new` in place of payload bytes [start, stop) and fix ip_len
        (fin_plen/fin_dlen follow); checksums are appr_check()'s.  False,
        with nothing changed, when the packet would pass 65535 bytes (the
        proxies' own test) or cannot change size (a memoryview)."""
        inc = len(new) - (stop - start)
        if inc + self.fin.plen > 0xFFFF:
            return False
        a = self.dataoff + start
        b = self.dataoff + stop
        if b > self.fin.plen:
            return False
        if inc == 0:
            self.pkt[a:b] = new
            return True
        if not isinstance(self.pkt, bytearray):
            return False
        self.pkt[a:b] = new
        self.fin.plen += inc
        _U16.pack_into(self.pkt, 2, self.fin.plen)
        return True


class ApSession:
    """ap_session_t with the ap_tcp_t part (aps_sel, aps_seqoff, ...)."""

    __slots__ = ("apr", "p", "data", "nat", "sel", "seqoff", "seqmin", "ackoff", "ackmin", "bytes", "pkts")

    def __init__(self, apr: Aproxy, p: int, nat: NatSession) -> None:
        self.apr = apr
        self.p = p                  # aps_p
        self.data: object = None    # aps_data: the proxy's own state
        self.nat = nat              # aps_nat
        self.sel = [0, 0]           # aps_sel[2] (short)
        self.seqoff = [0, 0]        # aps_seqoff[2] (short)
        self.seqmin = [0, 0]        # aps_seqmin[2] (u_32)
        self.ackoff = [0, 0]        # aps_ackoff[2] (short)
        self.ackmin = [0, 0]        # aps_ackmin[2] (u_32)
        self.bytes = 0
        self.pkts = 0


class Aproxy(Protocol):
    """aproxy_t: a proxy's label, protocol and hooks (None: no such hook)."""

    label: str
    p: int

    def new(self, fin: ProxyPacket, aps: ApSession, nat: NatSession) -> int:
        """apr_new: -1 refuses the session."""
        ...

    def inpkt(self, fin: ProxyPacket, aps: ApSession, nat: NatSession) -> int:
        """apr_inpkt: APR_ERR(n) or APR_INC(size change)."""
        ...

    def outpkt(self, fin: ProxyPacket, aps: ApSession, nat: NatSession) -> int:
        """apr_outpkt."""
        ...


def _ap_proxies() -> dict[tuple[str, int], Aproxy]:
    """ap_proxies[]: the compiled-in proxies (DEFAULT_PROXIES of state.py)."""
    from ipgate.nat.ipnat.ftp_proxy import FtpProxy  # the proxies import this module

    ftp = FtpProxy()
    return {(ftp.label, ftp.p): ftp}


def nat_wildok(nat: NatSession, wflags: int, sport: int, dport: int, direction: int) -> bool:
    """nat_wildok(): does a packet (`direction`: NAT_INBOUND from nat_inlookup(),
    NAT_OUTBOUND from nat_outlookup()) fit a session with open ports?"""
    ws = bool(wflags & SI_W_SPORT)
    wd = bool(wflags & SI_W_DPORT)
    case = (direction << 1) | nat.dir
    if case == 3:  # outbound packet / outbound entry
        return (nat.inport == sport or ws) and (nat.oport == dport or wd)
    if case == 2:  # outbound packet / inbound entry
        return (nat.outport == sport or wd) and (nat.oport == dport or ws)
    if case == 1:  # inbound packet / outbound entry
        return (nat.oport == sport or wd) and (nat.outport == dport or ws)
    return (nat.oport == sport or ws) and (nat.outport == dport or wd)  # inbound / inbound


def _if_ok(want: str, ifname: str) -> bool:
    return not ifname or want in ("", "*", "-") or want == ifname


WildKey = tuple[int, int, int]


class ProxyTable:
    """ap_sess_list and the wildcard members of the NAT table, for one IpnatTable."""

    def __init__(self, table: IpnatTable, proxies: Callable[[], dict[tuple[str, int], Aproxy]] = _ap_proxies) -> None:
        self.table = table
        self.proxies = proxies()
        self.aps: dict[NatSession, ApSession] = {}   # nat->nat_aps
        self.wild: dict[NatSession, int] = {}        # sessions with SI_W_SPORT/SI_W_DPORT
        self._wild_in: dict[WildKey, list[NatSession]] = {}    # (p, oip, outip): nat_inlookup()'s search
        self._wild_out: dict[WildKey, list[NatSession]] = {}   # (p, inip, oip): nat_outlookup()'s
        self._mark = 16

    # -- ap_session_t ---------------------------------------------------------------
    def _purge(self) -> None:
        """aps_free() for sessions nat_delete() has taken away (done lazily)."""
        for nat in [n for n in self.aps if not n.alive]:
            del self.aps[nat]
        for nat in [n for n in self.wild if not n.alive]:
            self._unwild(nat)
        self._mark = max(16, 2 * (len(self.aps) + len(self.wild)))

    def session(self, nat: NatSession) -> ApSession | None:
        """nat->nat_aps."""
        aps = self.aps.get(nat)
        if aps is not None and not nat.alive:
            del self.aps[nat]
            return None
        return aps

    def appr_new(self, pkt: WBuffer, fin: PacketInfo, nat: NatSession, ifname: str, ticks: int) -> int:
        """appr_new(): a session made by a proxy rule gets its proxy state."""
        np = nat.rule
        if np is None or nat in self.aps:
            return -1
        apr = self.proxies.get((np.rule.plabel, np.rule.proto or fin.p))
        if apr is None or fin.p != apr.p:
            return -1
        if len(self.aps) + len(self.wild) > self._mark:
            self._purge()
        aps = ApSession(apr, fin.p, nat)
        if apr.new(ProxyPacket(self.table, pkt, fin, False, ifname, ticks), aps, nat) == -1:
            return -1
        self.aps[nat] = aps
        return 0

    def appr_check(self, pkt: WBuffer, nat: NatSession, out: bool, nflags: int, ifname: str, ticks: int) -> int:
        """appr_check(): 1 proxied, 0 nothing to do, -1 block the packet."""
        if nflags == IPN_ICMPERR:
            return 0  # an ICMP error's protocol is never the proxy's (aps_p)
        fin = PacketInfo.parse(pkt)  # after fr_natout()'s rewrite: the packet as it is now
        if fin is None or fin.frag or fin.short:
            return 0
        if not out and fin.p in (IPPROTO_TCP, IPPROTO_UDP):
            if not _l4sum_ok(pkt, fin):  # fr_checkl4sum()
                return -1
        aps = self.session(nat)
        if aps is None or aps.p != fin.p:
            return 0
        pi = ProxyPacket(self.table, pkt, fin, out, ifname, ticks)
        apr = aps.apr
        err = apr.outpkt(pi, aps, nat) if out else apr.inpkt(pi, aps, nat)
        rv = APR_EXIT(err)
        if rv == 1:
            return -1
        if rv == 2:  # appr_free(); nat->nat_aps = NULL
            self.aps.pop(nat, None)
            return -1
        ip_send_check(pkt)
        if fin.p == IPPROTO_TCP:
            appr_fixseqack(pi, aps, _short(APR_INC(err)))
            _tcp_send_check(pkt, fin)
        aps.bytes += fin.plen
        aps.pkts += 1
        return 1

    # -- slave sessions ------------------------------------------------------------
    def _wkeys(self, nat: NatSession) -> tuple[WildKey, WildKey]:
        return (nat.p, nat.oip, nat.outip), (nat.p, nat.inip, nat.oip)

    def _unwild(self, nat: NatSession) -> None:
        self.wild.pop(nat, None)
        kin, kout = self._wkeys(nat)
        for d, k in ((self._wild_in, kin), (self._wild_out, kout)):
            lst = d.get(k)
            if lst is not None and nat in lst:
                lst.remove(nat)
                if not lst:
                    del d[k]

    def _add_wild(self, nat: NatSession, wflags: int) -> None:
        self.wild[nat] = wflags
        kin, kout = self._wkeys(nat)
        self._wild_in.setdefault(kin, []).insert(0, nat)
        self._wild_out.setdefault(kout, []).insert(0, nat)

    def find_wild(self, direction: int, p: int, src: int, dst: int, sport: int, dport: int) -> NatSession | None:
        """The FI_IGNORE lookups of the proxies: a slave session this packet
        would use, changing nothing."""
        d = self._wild_in if direction == NAT_INBOUND else self._wild_out
        for nat in d.get((p, src, dst), ()):
            if nat.alive and nat_wildok(nat, self.wild.get(nat, 0), sport, dport, direction):
                return nat
        return None

    def wild_lookup(self, fin: PacketInfo, ifname: str, direction: int) -> NatSession | None:
        """The wildcard half of nat_inlookup() (direction NAT_INBOUND) and
        nat_outlookup() (NAT_OUTBOUND): the first slave session the packet
        fits gets its ports filled in and is re-hashed (nat_tabmove())."""
        if not self.wild or not fin.nflags & IPN_TCPUDP:
            return None
        d = self._wild_in if direction == NAT_INBOUND else self._wild_out
        cands = d.get((fin.p, fin.saddr, fin.daddr))
        if not cands:
            return None
        sport, dport = fin.data0, fin.data1
        for nat in list(cands):
            if not nat.alive:
                self._unwild(nat)
                continue
            want = nat.ifnames[0] if direction == NAT_INBOUND else nat.ifnames[1]
            if not _if_ok(want, ifname):
                continue
            if not nat_wildok(nat, self.wild.get(nat, 0), sport, dport, direction):
                continue
            self._unwild(nat)
            t = self.table.table
            t.remove(nat)
            if direction == NAT_INBOUND:
                nat.oport = sport
                nat.outport = dport
            else:
                nat.inport = sport
                nat.oport = dport
                if nat.outport == 0:
                    nat.outport = sport
            if not t.insert(nat):
                self.table._delete(nat, "flush")
                return None
            return nat
        return None

    def nat_slave(self, fi: ProxyPacket, nat: NatSession, src: int, dst: int, sport: int, dport: int,
                  wflags: int) -> NatSession | None:
        """nat_new(&fi, nat->nat_ptr, NULL, NAT_SLAVE|IPN_TCP|wflags, nat->nat_dir)
        for the skeleton SYN the FTP proxy fakes (window 8192), then
        nat_proto() and nat_update() with it.  No proxy state for a slave."""
        np = nat.rule
        if np is None or np.deleted:
            return None
        fake = build_tcp(src, dst, sport, dport, flags=TH_SYN, window=8192)
        sfin = PacketInfo.parse(fake)
        if sfin is None:
            return None
        table = self.table
        if nat.dir == NAT_OUTBOUND:
            nat2 = table._nat_new(sfin, np, fi.ifname, NAT_OUTBOUND, fi.ticks)
        else:
            nat2 = self._newrdr_slave(sfin, np, nat, fi.ticks)
        if nat2 is None:
            return None
        if wflags & SI_WILDP:
            self._add_wild(nat2, wflags & SI_WILDP)
        table._nat_update(sfin, fake, nat2, 0, IPN_TCP, fi.ticks)
        return nat2

    def _newrdr_slave(self, sfin: PacketInfo, np: ActiveRule, nat: NatSession, ticks: int) -> NatSession | None:
        """nat_new() + nat_newrdr() with NAT_NOTRULEPORT: the new destination port
        is the packet's (nport = dport), the address the control session's."""
        table = self.table
        if len(table.table) >= table.table_max:
            table.memfail += 1
            return None
        src, dst = sfin.saddr, sfin.daddr
        sport, dport = sfin.data0, sfin.data1
        if table.outlookup("", sfin.p, nat.inip, src, dport, sport) is not None:
            table.badnat += 1
            return None
        nat2 = NatSession(inip=nat.inip, inport=dport, outip=dst, outport=dport, oip=src, oport=sport,
                          p=sfin.p, flags=sfin.nflags, dir=NAT_INBOUND, rule=np,
                          ifnames=(np.ifname, np.ifname2), created=ticks)
        if not table.table.insert(nat2):
            table.badnat += 1
            return None
        table._enqueue(nat2, table._default_queue(nat2, 0), ticks)
        table.added += 1
        np.use += 1
        return nat2


def appr_fixseqack(fi: ProxyPacket, aps: ApSession, inc: int) -> int:
    """appr_fixseqack(): 2 when SEQ or ACK changed.  `inc` is the size change
    of this packet (ip_len already counts it)."""
    pkt = fi.pkt
    off = fi.thoff
    out = 1 if fi.out else 0
    nlen = fi.plen - fi.dataoff
    ch = 0
    seqmin, seqoff, ackmin, ackoff, selv = aps.seqmin, aps.seqoff, aps.ackmin, aps.ackoff, aps.sel
    if out:
        seq1 = fi.seq
        sel = selv[out]
        if seqmin[1 - sel] > seqmin[sel] and seq1 > seqmin[1 - sel]:  # switch to the other set?
            sel = selv[out] = 1 - sel
        if seqoff[sel]:
            seq2 = (seqmin[sel] - seqoff[sel]) & _M32
            if seq1 > seq2:
                seq1 = (seq1 + seqoff[sel]) & _M32
                _U32.pack_into(pkt, off + 4, seq1)
                ch = 1
        if inc and seq1 > seqmin[1 - sel]:
            seqmin[sel] = (seq1 + nlen - 1) & _M32
            seqoff[sel] = _short(seqoff[sel] + inc)
        seq1 = fi.ack
        sel = selv[1 - out]
        if ackmin[1 - sel] > ackmin[sel] and seq1 > ackmin[1 - sel]:
            sel = selv[1 - out] = 1 - sel
        if ackoff[sel] and seq1 > ackmin[sel]:
            _U32.pack_into(pkt, off + 8, (seq1 - ackoff[sel]) & _M32)
            ch = 1
    else:
        seq1 = fi.seq
        sel = selv[out]
        if ackmin[1 - sel] > ackmin[sel] and seq1 > ackmin[1 - sel]:
            sel = selv[out] = 1 - sel
        if ackoff[sel]:
            seq2 = (ackmin[sel] - ackoff[sel]) & _M32
            if seq1 > seq2:
                seq1 = (seq1 + ackoff[sel]) & _M32
                _U32.pack_into(pkt, off + 4, seq1)
                ch = 1
        if inc and seq1 > ackmin[1 - sel]:
            ackmin[1 - sel] = (seq1 + nlen - 1) & _M32
            ackoff[1 - sel] = _short(ackoff[sel] + inc)
        seq1 = fi.ack
        sel = selv[1 - out]
        if seqmin[1 - sel] > seqmin[sel] and seq1 > seqmin[1 - sel]:
            sel = selv[1 - out] = 1 - sel
        if seqoff[sel] != 0 and seq1 > seqmin[sel]:
            _U32.pack_into(pkt, off + 8, (seq1 - seqoff[sel]) & _M32)
            ch = 1
    return 2 if ch else 0


def _l4sum_ok(pkt: WBuffer, fin: PacketInfo) -> bool:
    """fr_checkl4sum() for a whole TCP/UDP packet (a UDP sum of 0 is none)."""
    dlen = fin.plen - fin.hlen
    if fin.p == IPPROTO_UDP and _U16.unpack_from(pkt, fin.hlen + 6)[0] == 0:
        return True
    return l4_checksum_ok(pkt, fin.hlen, dlen, fin.p)


def _tcp_send_check(pkt: WBuffer, fin: PacketInfo) -> None:
    """fr_cksum() for TCP: the checksum computed afresh over the packet as it is now."""
    off = fin.hlen
    _U16.pack_into(pkt, off + 16, 0)
    saddr, daddr = struct.unpack_from("!II", pkt, 12)
    seglen = fin.plen - off
    s = csum_partial(memoryview(pkt)[off:fin.plen], csum_tcpudp_nofold(saddr, daddr, seglen, IPPROTO_TCP))
    _U16.pack_into(pkt, off + 16, ~s & 0xFFFF)
