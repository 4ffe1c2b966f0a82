"""The packet path of a Linux gateway, sans-IO (net/ipv4/ip_input.c, ip_forward.c, ip_output.c + netfilter).

Theory of operation.  `receive(dev, data, now)` takes an IPv4 packet that
arrived on `dev`; `output(data, now)` one the gateway itself sends.  Both
return `Result`s (engine/result.py): what leaves and by which device to which
next hop, what was delivered locally, what was dropped and why.  Nothing here
does I/O or reads a clock: `now` is the caller's.

The path is the kernel's, hook by hook, with the iptables tables at their
priorities:

    receive:  ip_rcv_core checks -> PREROUTING [defrag, raw, conntrack, mangle, nat(DNAT)]
              -> route_input -> local: INPUT [mangle, filter, nat(SNAT), confirm] -> Local
                             -> forward: TTL, MTU/DF, redirect, TTL-1 -> FORWARD [mangle, filter]
                                         -> POSTROUTING [mangle, nat(SNAT), helper, confirm]
                                         -> fragment -> Tx
    output:   route_output -> OUTPUT [defrag, raw, conntrack, mangle, nat(DNAT), filter]
              (re-routed when mangle or NAT changed the key) -> POSTROUTING as above

Connection tracking runs only when something needs it, as in a namespace
where no table or rule has asked for nf_conntrack: the nat table, a rule
using conntrack state, marks of connections, CT/NAT targets, or a loaded
helper.  The nat table sees the first packet of each connection only.
Established flows that need no rule walk take a fast path (fastpath.py).
"""

from __future__ import annotations

import errno
import random
import struct
from collections.abc import Callable, Sequence

from ipgate.conntrack.confirm import nf_confirm, nf_ct_helper_assign
from ipgate.conntrack.conn import (
    IP_CT_IS_REPLY,
    IP_CT_NEW,
    IP_CT_RELATED,
    IP_CT_RELATED_REPLY,
    IP_CT_UNTRACKED,
    IPS_CONFIRMED,
    IPS_DST_NAT,
    IPS_NAT_DONE_MASK,
    IPS_NAT_MASK,
    IPS_SEQ_ADJUST,
    IPS_SRC_NAT,
    NF_ACCEPT,
    NF_DROP,
    NF_INET_FORWARD,
    NF_INET_LOCAL_IN,
    NF_INET_LOCAL_OUT,
    NF_INET_POST_ROUTING,
    NF_INET_PRE_ROUTING,
    Conn,
)
from ipgate.conntrack.table import CtResult
from ipgate.conntrack.tuple import invert_key
from ipgate.engine.result import Drop, Local, Result, Tx
from ipgate.engine.skb import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Skb
from ipgate.engine.trace import Event, Trace
from ipgate.engine.xtables import CTable, TraceStep, do_table
from ipgate.errors import NetlinkError
from ipgate.inet import RT_SCOPE_LINK, RTN_BROADCAST, RTN_LOCAL, RTN_NAMES, ntoa
from ipgate.nat.core import (
    Manip,
    ManipType,
    NatRange2,
    hook2manip,
    manip_of,
    nf_nat_inet_fn,
    nf_nat_setup_info,
)
from ipgate.nat.ipnat.core import IpnatTable
from ipgate.netfilter import matches as M
from ipgate.netfilter import targets as T
from ipgate.packet.build import IPDEFTTL, build_ipv4, icmp_error_packet
from ipgate.packet.checksum import Buffer, csum_replace2, ip_compute_csum, l4_checksum_ok
from ipgate.packet.describe import packet_text
from ipgate.packet.drop import Counters, DropReason, Mib
from ipgate.packet.fastnew import new_tuple
from ipgate.packet.frag import (
    IP_DEFRAG_CONNTRACK_IN,
    IP_DEFRAG_CONNTRACK_OUT,
    IP_DEFRAG_LOCAL_DELIVER,
    Defrag,
    FragNeeded,
    Reassembled,
    ip_fragment,
)
from ipgate.packet.gso import GsoError, segment
from ipgate.packet.ipv4 import IP_DF, IP_OFFSET, parse_ipv4
from ipgate.packet.rewrite import nf_nat_ipv4_manip_pkt
from ipgate.route.lookup import Route, route_input, route_output
from ipgate.route.rules import Flow
from ipgate.stack import Stack

_U16 = struct.Struct("!H")

ICMP_DEST_UNREACH = 3
ICMP_REDIRECT = 5
ICMP_TIME_EXCEEDED = 11
ICMP_ECHO = 8
ICMP_FRAG_NEEDED = 4
ICMP_PKT_FILTERED = 13
XRLIM_BURST_FACTOR = 6
HZ = 250  # CONFIG_HZ of the reference kernel: the rate limits below count in its jiffies

_CT_MATCHES = (M.ConntrackMatch, M.ConnmarkMatch)
_CT_TARGETS = (T.Connmark, T.Ct, T.Snat, T.Dnat, T.Masquerade, T.Redirect, T.Netmap)


class StackIfaddr:
    """IP Filter's fr_ifpaddr(): an interface's (first primary) address, for `0/32` rules.

    A plain object holding the stack, so that copying a stack (configuration reloads)
    copies the session table's view of it too."""

    __slots__ = ("stack",)

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def __call__(self, ifname: str) -> int | None:
        d = self.stack.devices.get(ifname)
        return d.addrs[0].local if d is not None and d.nprim else None


class _Peer:
    """The rate-limit fields of struct inet_peer, in jiffies; a new peer was last used long ago."""

    __slots__ = ("tokens", "last", "n_redirects")

    def __init__(self) -> None:
        self.tokens = 0
        self.last = -(1 << 40)
        self.n_redirects = 0


class Engine:
    """One gateway's packet path over a `Stack` (addresses, routes, rules, tables, conntrack)."""

    def __init__(self, stack: Stack, *, rng: random.Random | None = None,
                 syslog: Callable[[str], None] | None = None, local_stack: bool = True) -> None:
        self.stack = stack
        self.conntrack = stack.conntrack
        self.rng = rng if rng is not None else random.Random(0)
        self.defrag = Defrag()
        self.counters = Counters()
        self.now = 0.0
        self.logs: list[str] = []
        self._syslog = syslog
        self.local_stack = local_stack  # answer pings, RST/port-unreachable for closed ports
        self.trace: Trace | None = None
        self._tables: dict[str, CTable] = {}
        self._nf_gen = -1
        self._ct_on = False
        self._out: list[Result] = []
        self._ip_id = 0
        self._peers: dict[int, _Peer] = {}  # inet_peer: rate limits per remote address
        self._stack_gen = -1
        self._route_l4 = True  # routing needs protocol and ports (decided in _sync_stack)
        self._ipnat_gen = -1
        self._rl = (float("-inf"), 0)  # net_ratelimit() window start and messages in it
        self._record: Callable[[TraceStep], None] | None = None  # the fast path's recorder during a slow walk
        self._addrs: set[tuple[int, int]] = set()
        from ipgate.engine.fastpath import FastPath

        self.fastpath = FastPath(self)

    # -- public API ---------------------------------------------------------------
    def rebind(self, stack: Stack) -> None:
        """Run over a reloaded configuration: keep queues, rate limits and counters, re-derive the rest.

        The caller gives `stack` the running conntrack table first (connections survive a reload)."""
        self.stack = stack
        self.conntrack = stack.conntrack
        self._nf_gen = -1  # rebuild the compiled tables (and re-decide the fast path)
        self._stack_gen = -1  # re-check addresses: connections masqueraded with a vanished one die
        self._ipnat_gen = -1
        self.fastpath.flush()

    def clock(self) -> float:
        return self.now

    def receive(self, dev: str, data: Buffer, now: float, *, mark: int = 0,
                csum_valid: bool = False) -> list[Result]:
        """An IPv4 packet arriving on `dev` (no link-layer header).  `csum_valid`: its TCP/UDP/ICMP checksum
        is known good (the kernel's CHECKSUM_UNNECESSARY, or CHECKSUM_PARTIAL completed by the driver), so
        conntrack and the other checks do not sum it again, as Linux does not."""
        self.now = now
        out: list[Result] = []
        self._out = out
        d = self.stack.devices.get(dev)
        if d is None or not d.up:
            out.append(Drop("no such device" if d is None else "device down", bytes(data)))
            return out
        if len(data) > d.mtu:
            # the device driver drops a frame longer than the MTU (rx_length_errors): IP never sees it
            self.counters.inc("RX_LENGTH_ERRORS")
            out.append(Drop("rx frame longer than the MTU", bytes(data)))
            return out
        buf = bytearray(data)
        ip = parse_ipv4(buf)
        if isinstance(ip, DropReason):
            self.counters.drop(ip)
            self._note("drop", ip.name)
            out.append(Drop(ip.name, bytes(data)))
            return out
        if ip.tot_len < len(buf):
            del buf[ip.tot_len:]  # pskb_trim_rcsum(): link-layer padding
        self._sync_tables()
        self._sync_stack()
        ipf = self._ipnat()
        if ipf is not None:
            # IP Filter's rdr (and bimap, and the way back of map) on packets arriving on `dev`,
            # before netfilter sees them (fr_checknatin() runs first in fr_check())
            v = ipf.check_in(dev, buf, now)
            if v.blocked:
                return self._ipnat_refused(buf, "in", dev)
            if v.translated:
                if self.trace is not None:
                    self._note("ipnat", f"in on {dev}: {self._pkt_text(Skb(bytearray(buf), d))}")
                ip = parse_ipv4(buf)
                if isinstance(ip, DropReason):  # cannot happen: the rewrite keeps the header sound
                    out.append(Drop(ip.name, bytes(buf)))
                    return out
        fp = self.fastpath
        ctres: CtResult | None = None
        key = None
        if fp.usable and ipf is None and self.trace is None and self._ct_active():
            hit, key = fp.lookup(d, buf, ip, mark, now, csum_valid)
            if type(hit) is Tx:
                out.append(hit)
                return out
            ctres = hit  # type: ignore[assignment]
        skb = Skb(buf, d, mark=mark, csum_valid=csum_valid)
        if self.trace is not None:
            self._note("receive", f"IN={dev} {self._pkt_text(skb)}")
        if key is None:
            self._prerouting(skb, ctres)
            return out
        before = bytes(buf)
        steps: list[TraceStep] = []
        self._record = steps.append
        try:
            self._prerouting(skb, ctres)
        finally:
            self._record = None
        if len(out) == 1 and type(out[0]) is Tx:
            fp.record(skb, key, before, steps, out[0])
        return out

    def receive_batch(self, dev: str, packets: Sequence[Buffer], now: float, *, mark: int = 0,
                      csum_valid: list[bool] | None = None, gso: list[int] | None = None) -> list[Result]:
        """`receive` for each of `packets` in turn (all arrived on `dev` at `now`), results in order;
        established flows go as vectors (vector.py).  Per packet, `csum_valid` as for `receive`, and `gso`:
        a TCP super-packet (GRO) to be cut into segments of that size, its checksum left partial.  One that
        goes as a vector leaves whole (`Tx.gso`), as Linux forwards a GRO packet; any other is segmented
        first (packet/gso.py) and its segments received one by one."""
        n = len(packets)
        valid = csum_valid if csum_valid is not None else [False] * n
        sizes = gso if gso is not None else [0] * n
        d = self.stack.devices.get(dev)
        self._sync_tables()
        self._sync_stack()
        fp = self.fastpath
        if (d is None or not d.up or not fp.usable or self._ipnat() is not None or self.trace is not None
                or not self._ct_active()):
            return self.receive_each(dev, packets, now, mark, valid, sizes)
        self.now = now
        fp.check_gens()
        return fp.vector.run(d, packets, now, mark, valid, sizes)

    def receive_each(self, dev: str, packets: Sequence[Buffer], now: float, mark: int, valid: list[bool],
                     gso: list[int]) -> list[Result]:
        """`receive_one` for each packet of a batch, results in order."""
        out: list[Result] = []
        for p, v, g in zip(packets, valid, gso, strict=True):
            out.extend(self.receive_one(dev, p, now, mark, v, g))
        return out

    def receive_one(self, dev: str, data: Buffer, now: float, mark: int, csum_valid: bool, gso: int
                    ) -> list[Result]:
        """One packet of a batch through `receive`; a super-packet cut into its segments first."""
        if not gso:
            return self.receive(dev, data, now, mark=mark, csum_valid=csum_valid)
        try:
            segments = segment(data, gso, tcp=True)
        except GsoError as e:
            self.counters.inc("GSO_ERRORS")
            return [Drop(str(e), bytes(data))]
        out: list[Result] = []
        for p in segments:  # their checksums computed from scratch
            out.extend(self.receive(dev, p, now, mark=mark, csum_valid=True))
        return out

    def output(self, data: bytes | bytearray, now: float, *, mark: int = 0, oif: str = "") -> list[Result]:
        """An IPv4 packet the gateway itself sends (a local process or the gateway's own stack)."""
        self.now = now
        out: list[Result] = []
        self._out = out
        buf = bytearray(data)
        ip = parse_ipv4(buf)
        if isinstance(ip, DropReason):
            out.append(Drop(ip.name, bytes(data)))
            return out
        skb = Skb(buf, None, mark=mark)
        if self.trace is not None:
            self._note("output", self._pkt_text(skb))
        dev = self.stack.devices.get(oif) if oif else None
        self._local_out(skb, dev.ifindex if dev is not None else 0)
        return out

    def link_failure(self, data: bytes | bytearray, now: float) -> list[Result]:
        """ipv4_link_failure(): the next hop of a packet we sent never answered ARP; tell the sender
        (ICMP host unreachable), as the kernel does when a neighbour entry fails with packets queued."""
        self.now = now
        out: list[Result] = []
        self._out = out
        buf = bytearray(data)
        if isinstance(parse_ipv4(buf), DropReason):
            return out
        self._sync_tables()
        skb = Skb(buf, None)
        self.icmp_send(skb, ICMP_DEST_UNREACH, 1, 0)  # ICMP_HOST_UNREACH
        out.append(Drop("neighbour resolution failed", bytes(data)))
        return out

    def next_timer(self) -> float | None:
        """When `handle_timer` has work: fragment queues timing out, conntrack entries expiring."""
        times = [t for t in (self.defrag.next_timer(), self.conntrack.next_expiry()) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[Result]:
        self.now = now
        out: list[Result] = []
        self._out = out
        for exp in self.defrag.expire(now):
            if exp.first is not None and exp.user == IP_DEFRAG_LOCAL_DELIVER:
                # ip_expire(): time exceeded in reassembly, only about a whole first fragment
                d = self.stack.by_index.get(exp.iif)
                if d is not None:
                    skb = Skb(bytearray(exp.first), d)
                    self.icmp_send(skb, ICMP_TIME_EXCEEDED, 1, 0)
        self.conntrack.gc(now)
        self.fastpath.prune(now)
        return out

    def _net_ratelimit(self) -> bool:
        """net_ratelimit(): at most net.core.message_burst (10) messages per message_cost (5 s)."""
        start, n = self._rl
        if self.now - start >= 5.0:
            self._rl = (self.now, 1)
            return True
        if n < 10:
            self._rl = (start, n + 1)
            return True
        self.counters.inc("LOG_SUPPRESSED")
        return False

    def syslog(self, line: str) -> None:
        """A kernel log line (LOG target, NAT and conntrack warnings)."""
        self.logs.append(line)
        if len(self.logs) > 10000:
            del self.logs[:5000]
        if self._syslog is not None:
            self._syslog(line)

    # -- tables ---------------------------------------------------------------------
    def _sync_tables(self) -> None:
        nf = self.stack.netfilter
        if nf.gen == self._nf_gen:
            return
        self._tables = {name: CTable(t, self) for name, t in nf.tables.items()}
        self._nf_gen = nf.gen
        rules = [r for t in nf.tables.values() for c in t.chains.values() for r in c.rules]
        self._ct_on = "nat" in nf.tables or any(
            isinstance(r.target, _CT_TARGETS) or any(isinstance(m, _CT_MATCHES) for m in r.matches) for r in rules)
        self.fastpath.sync()

    def _sync_stack(self) -> None:
        """masq_inet_event()/masq_device_event(): an address gone or a device down kills the
        connections masqueraded with it (their replies could never come back)."""
        stack = self.stack
        if stack.gen.value == self._stack_gen:
            return
        self._stack_gen = stack.gen.value
        self._route_l4 = stack.sysctl.get("net.ipv4.fib_multipath_hash_policy", 0) != 0 or any(
            r.ip_proto or r.sport is not None or r.dport is not None for r in stack.rules.rules)
        addrs = {(d.ifindex, a.local) for d in stack.devices.values() if d.up for a in d.addrs}
        gone = self._addrs - addrs
        self._addrs = addrs
        if not gone or not len(self.conntrack):
            return
        dead_devs = {i for i, _ in gone} - {i for i, _ in addrs}
        for ct in list(self.conntrack.entries(self.now)):
            ext = ct.ext
            if ext is None or not ext.masq_index:
                continue
            if ext.masq_index in dead_devs or (ext.masq_index, ct.reply.dst) in gone:
                self.conntrack.kill(ct, self.now)

    def _ipnat(self) -> IpnatTable | None:
        """The IP Filter NAT session table, following the loaded `ipnat` rules; None without rules or sessions."""
        st = self.stack.ipnat
        t = st.sessions
        if not st.rules and t is None:
            return None
        if not isinstance(t, IpnatTable):
            t = IpnatTable(StackIfaddr(self.stack))
            st.sessions = t
            self._ipnat_gen = -1
        if st.generation != self._ipnat_gen:
            t.sync_rules(st.rules)
            self._ipnat_gen = st.generation
        return t

    def _ipnat_refused(self, buf: bytearray, where: str, dev: str) -> list[Result]:
        """fr_check(): a packet NAT could not translate (no room) is blocked (FI_BADNAT)."""
        self.counters.inc("IPNAT_BADNAT")
        if self.trace is not None:
            self._note("ipnat", f"{where} on {dev}: no room for a new mapping: blocked")
        self._out.append(Drop(f"ipnat: no free mapping ({where} on {dev})", bytes(buf)))
        return self._out

    def _ct_active(self) -> bool:
        """Is nf_conntrack hooked in?  The tables asked for it, or a helper module is loaded."""
        return self._ct_on or bool(self.stack.ct_helpers.ports)

    def _table(self, skb: Skb, table: str, chain: str, hook: int) -> int:
        t = self._tables.get(table)
        if t is None:
            return NF_ACCEPT
        skb.hook = hook
        tr = self.trace
        return do_table(t, chain, skb, tr.events.append if tr is not None else self._record)

    # -- PREROUTING and input routing -------------------------------------------------
    def _prerouting(self, skb: Skb, ctres: CtResult | None = None) -> None:
        """PREROUTING and the input route; receive() has brought the tables and the stack view up to date."""
        ct_on = self._ct_active()
        if ctres is not None:
            # the fast path already ran conntrack for this packet (it had no raw rules to pass first)
            if not self._conntrack_result(skb, ctres):
                return
        elif ct_on and skb.is_fragment:
            skb2 = self._defrag(skb, IP_DEFRAG_CONNTRACK_IN)
            if skb2 is None:
                return
            skb = skb2
        if self._table(skb, "raw", "PREROUTING", NF_INET_PRE_ROUTING) != NF_ACCEPT:
            return self._dropped(skb, "raw/PREROUTING")
        if ct_on and ctres is None and not self._conntrack_in(skb, NF_INET_PRE_ROUTING):
            return
        if self._table(skb, "mangle", "PREROUTING", NF_INET_PRE_ROUTING) != NF_ACCEPT:
            return self._dropped(skb, "mangle/PREROUTING")
        if ct_on and not self._nat_hook(skb, NF_INET_PRE_ROUTING, "PREROUTING"):
            return
        d = skb.indev
        assert d is not None
        try:
            rt = route_input(self.stack, self._flow(skb, d.ifindex), d)
        except NetlinkError as e:
            return self._ip_error(skb, e.errno)
        skb.route = rt
        if self.trace is not None:
            self._note("route", self._route_text(rt))
        if rt.type == RTN_LOCAL or rt.type == RTN_BROADCAST:
            return self._local_deliver(skb)
        self._forward(skb, rt)

    def _flow(self, skb: Skb, iif: int) -> Flow:
        # Protocol and ports only when a rule or the multipath hash reads them (the kernel dissects
        # them only then: fib4_rules_early_flow_dissect); otherwise every new port would be a new
        # entry of the route decision cache.
        if self._route_l4:
            return new_tuple(Flow, (skb.daddr, skb.saddr, iif, 0, skb.mark, skb.tos & 0x1C, skb.proto, skb.sport,
                                    skb.dport, 0))
        return new_tuple(Flow, (skb.daddr, skb.saddr, iif, 0, skb.mark, skb.tos & 0x1C, 0, 0, 0, 0))

    def _ip_error(self, skb: Skb, err: int) -> None:
        """ip_error(): the route said no; maybe an ICMP error, rate-limited per source."""
        d = skb.indev
        assert d is not None
        forwarding = self.stack.devconf(d, "forwarding")
        code = {errno.EHOSTUNREACH: 1, errno.ENETUNREACH: 0, errno.EACCES: ICMP_PKT_FILTERED}.get(err)
        reason = {errno.EHOSTUNREACH: "IP_INADDRERRORS", errno.ENETUNREACH: "IP_INNOROUTES"}.get(err, "IP_INADDRERRORS")
        if err == errno.EINVAL:
            reason = "IP_INADDRERRORS"  # martian or blackhole
        self.counters.inc(reason)
        if self.trace is not None:
            self._note("route", f"no route: {errno.errorcode.get(err, err)}")
        if forwarding and code is not None and self._ip_error_allow(skb.saddr):
            self.icmp_send(skb, ICMP_DEST_UNREACH, code, 0)
        self._out.append(Drop(reason, bytes(skb.buf)))

    def _peer(self, addr: int) -> _Peer:
        p = self._peers.get(addr)
        if p is None:
            if len(self._peers) > 65536:  # inet_peer_gc(): old entries go; ours all at once
                self._peers.clear()
            p = self._peers[addr] = _Peer()
        return p

    def _jiffies(self) -> int:
        return int(self.now * HZ)

    def _ip_error_allow(self, addr: int) -> bool:
        """ip_error()'s token bucket: ip_rt_error_cost (HZ) per error, ip_rt_error_burst (5 HZ) at most."""
        p = self._peer(addr)
        now = self._jiffies()
        p.tokens = min(p.tokens + now - p.last, 5 * HZ)
        p.last = now
        if p.tokens >= HZ:
            p.tokens -= HZ
            return True
        return False

    def _xrlim_allow(self, addr: int, timeout: int) -> bool:
        """inet_peer_xrlim_allow(): the same peer's tokens; refilled (and capped at 6 timeouts) only when a
        jiffy has passed since the last use, so ip_error() and its icmp_send() share one jiffy."""
        p = self._peer(addr)
        now = self._jiffies()
        delta = now - p.last
        if delta:
            p.last = now
            p.tokens = min(p.tokens + delta, XRLIM_BURST_FACTOR * timeout)
        if p.tokens >= timeout:
            p.tokens -= timeout
            return True
        return False

    def _redirect_allow(self, addr: int) -> bool:
        """ip_rt_send_redirect(): at most ip_rt_redirect_number, spaced by ip_rt_redirect_load << n."""
        p = self._peer(addr)
        now = self._jiffies()
        load = HZ // 50
        if now > p.last + (load << 10):  # ip_rt_redirect_silence: start over
            p.tokens = 0
            p.n_redirects = 0
        if p.n_redirects >= 9:
            p.last = now
            return False
        if p.n_redirects == 0 or now > p.last + (load << p.n_redirects):
            p.last = now
            p.n_redirects += 1
            return True
        return False

    # -- local delivery ------------------------------------------------------------------
    def _local_deliver(self, skb: Skb) -> None:
        """ip_local_deliver(): reassemble, INPUT hooks, then the gateway's own stack."""
        if skb.is_fragment:
            skb2 = self._defrag(skb, IP_DEFRAG_LOCAL_DELIVER)
            if skb2 is None:
                return
            skb = skb2
        if self._table(skb, "mangle", "INPUT", NF_INET_LOCAL_IN) != NF_ACCEPT:
            return self._dropped(skb, "mangle/INPUT")
        if self._table(skb, "filter", "INPUT", NF_INET_LOCAL_IN) != NF_ACCEPT:
            return self._dropped(skb, "filter/INPUT")
        if self._ct_active():
            if not self._nat_hook(skb, NF_INET_LOCAL_IN, "INPUT"):
                return
            if not self._confirm(skb):
                return
        indev = skb.indev
        self._note("verdict", "delivered locally")
        self._out.append(Local(indev.name if indev is not None else "lo", bytes(skb.buf)))
        if self.local_stack:
            self._answer(skb)

    def _answer(self, skb: Skb) -> None:
        """What the gateway's own stack answers: echo replies, and for closed ports RST or port unreachable."""
        rt = skb.route
        brd = rt is not None and rt.type == RTN_BROADCAST
        proto = skb.proto
        if proto == IPPROTO_ICMP:
            if skb.sport == ICMP_ECHO and skb.l4len >= 8 and not brd and self._csum_ok(skb, IPPROTO_ICMP):
                msg = bytearray(skb.buf[skb.ihl:skb.tot_len])
                msg[0] = 0
                _U16.pack_into(msg, 2, 0)
                _U16.pack_into(msg, 2, ip_compute_csum(msg))
                reply = build_ipv4(skb.daddr, skb.saddr, IPPROTO_ICMP, msg, tos=skb.tos, id=self._next_id())
                reflect = self.stack.sysctl.get("net.ipv4.fwmark_reflect", 0)
                self._send_generated(Skb(reply, None, mark=skb.mark if reflect else 0))
            return
        if brd:
            return
        if proto == IPPROTO_UDP:
            if skb.l4len >= 8 and self._csum_ok(skb, IPPROTO_UDP):
                self.icmp_send(skb, ICMP_DEST_UNREACH, 3, 0)
        elif proto == IPPROTO_TCP:
            self.send_reset(skb, local=True)
        elif proto not in (2,):
            self.icmp_send(skb, ICMP_DEST_UNREACH, 2, 0)  # ICMP_PROT_UNREACH

    # -- forwarding --------------------------------------------------------------------
    def _forward(self, skb: Skb, rt: Route) -> None:
        """ip_forward()."""
        if skb.ttl <= 1:
            self._note("forward", "TTL expired")
            self.icmp_send(skb, ICMP_TIME_EXCEEDED, 0, 0)
            self.counters.inc("IP_INHDR_TTL")
            self._out.append(Drop("IP_INHDR (TTL expired)", bytes(skb.buf)))
            return
        out = rt.dev
        mtu = out.mtu
        if skb.tot_len > mtu and (skb.frag_off & IP_DF or (skb.frag_max_size and skb.frag_max_size > mtu)):
            self.counters.inc(Mib.FRAGFAILS)
            self.icmp_send(skb, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, mtu)
            self._out.append(Drop("PKT_TOO_BIG", bytes(skb.buf)))
            return
        # ip_decrease_ttl(): TTL - 1 and the checksum, incrementally
        buf = skb.buf
        old = _U16.unpack_from(buf, 8)[0]
        buf[8] -= 1
        _U16.pack_into(buf, 10, csum_replace2(_U16.unpack_from(buf, 10)[0], old, _U16.unpack_from(buf, 8)[0]))
        skb.ttl -= 1
        if "redirect" in rt.flags and not skb.ct_reason and self.stack.devconf(out, "send_redirects") \
                and self.stack.sysctl.get("net.ipv4.conf.all.send_redirects", 1):
            self._send_redirect(skb, rt)
        skb.outdev = out
        skb.nexthop = rt.gateway or skb.daddr
        if self._table(skb, "mangle", "FORWARD", NF_INET_FORWARD) != NF_ACCEPT:
            return self._dropped(skb, "mangle/FORWARD")
        if self._table(skb, "filter", "FORWARD", NF_INET_FORWARD) != NF_ACCEPT:
            return self._dropped(skb, "filter/FORWARD")
        self._postrouting(skb)

    def _send_redirect(self, skb: Skb, rt: Route) -> None:
        """ip_rt_send_redirect(): ICMP redirect (host) to the sender, naming the better gateway."""
        if self._redirect_allow(skb.saddr):
            self.icmp_send(skb, ICMP_REDIRECT, 1, rt.gateway or skb.daddr)

    def _postrouting(self, skb: Skb) -> None:
        """ip_output() -> POSTROUTING -> ip_finish_output(): fragment, then out to the nexthop."""
        if self._table(skb, "mangle", "POSTROUTING", NF_INET_POST_ROUTING) != NF_ACCEPT:
            return self._dropped(skb, "mangle/POSTROUTING")
        if self._ct_active():
            if not self._nat_hook(skb, NF_INET_POST_ROUTING, "POSTROUTING"):
                return
            if not self._confirm(skb):
                return
        out = skb.outdev
        assert out is not None
        ipf = self._ipnat()
        if ipf is not None:
            # IP Filter's map/bimap/map-block on packets leaving by `out`, after netfilter
            # (fr_checknatout() runs after the filter rules in fr_check())
            v = ipf.check_out(out.name, skb.buf, self.now)
            if v.blocked:
                self._ipnat_refused(skb.buf, "out", out.name)
                return
            if v.translated:
                skb.load()
                if self.trace is not None:
                    self._note("ipnat", f"out on {out.name}: {self._pkt_text(skb)}")
        frags = ip_fragment(skb.buf, out.mtu, ignore_df=skb.frag_max_size > 0 and skb.indev is not None,
                            frag_max_size=skb.frag_max_size, counters=self.counters)
        if isinstance(frags, FragNeeded):
            self.icmp_send(skb, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, frags.mtu)
            self._out.append(Drop("PKT_TOO_BIG", bytes(skb.buf)))
            return
        if isinstance(frags, DropReason):
            self._out.append(Drop(frags.name, bytes(skb.buf)))
            return
        if self.trace is not None:
            self._note("verdict", f"out {out.name} via {ntoa(skb.nexthop)} {self._pkt_text(skb)}")
        for f in frags:
            self._out.append(new_tuple(Tx, (out.name, skb.nexthop, bytes(f), 0)))

    # -- local output -------------------------------------------------------------------
    def _local_out(self, skb: Skb, oif: int = 0, anysrc: bool = False) -> None:
        """ip_route_output + __ip_local_out(): OUTPUT hooks, then POSTROUTING."""
        self._sync_tables()
        self._sync_stack()
        rt = self._route_out(skb, oif, anysrc)
        if rt is None:
            return
        ct_on = self._ct_active()
        if ct_on and skb.is_fragment:
            skb2 = self._defrag(skb, IP_DEFRAG_CONNTRACK_OUT)
            if skb2 is None:
                return
            skb = skb2
        if self._table(skb, "raw", "OUTPUT", NF_INET_LOCAL_OUT) != NF_ACCEPT:
            return self._dropped(skb, "raw/OUTPUT")
        if ct_on and skb.ct is None and not self._conntrack_in(skb, NF_INET_LOCAL_OUT):
            return
        key = (skb.saddr, skb.daddr, skb.mark, skb.tos)
        if self._table(skb, "mangle", "OUTPUT", NF_INET_LOCAL_OUT) != NF_ACCEPT:
            return self._dropped(skb, "mangle/OUTPUT")
        if (skb.saddr, skb.daddr, skb.mark, skb.tos) != key:
            rt = self._route_out(skb, oif, anysrc)  # ip_route_me_harder()
            if rt is None:
                return
        if ct_on:
            daddr = skb.daddr
            if not self._nat_hook(skb, NF_INET_LOCAL_OUT, "OUTPUT"):
                return
            if skb.daddr != daddr:
                rt = self._route_out(skb, oif, anysrc)
                if rt is None:
                    return
        if self._table(skb, "filter", "OUTPUT", NF_INET_LOCAL_OUT) != NF_ACCEPT:
            return self._dropped(skb, "filter/OUTPUT")
        if rt.type == RTN_LOCAL:
            # to ourselves: loopback, then PREROUTING of lo is not modelled; deliver
            self._note("verdict", "delivered locally (loopback)")
            self._out.append(Local("lo", bytes(skb.buf)))
            return
        self._postrouting(skb)

    def _route_out(self, skb: Skb, oif: int, anysrc: bool = False) -> Route | None:
        try:
            rt = route_output(self.stack, Flow(skb.daddr, skb.saddr, 0, oif, skb.mark, skb.tos & 0x1C, skb.proto,
                                               skb.sport, skb.dport), anysrc)
        except NetlinkError as e:
            if self.trace is not None:
                self._note("route", f"no route: {errno.errorcode.get(e.errno, e.errno)}")
            self._out.append(Drop("IP_OUTNOROUTES", bytes(skb.buf)))
            return None
        skb.route = rt
        skb.outdev = rt.dev
        skb.nexthop = rt.gateway or skb.daddr
        if self.trace is not None:
            self._note("route", self._route_text(rt))
        return rt


    # -- conntrack and NAT ---------------------------------------------------------------
    def _conntrack_in(self, skb: Skb, hook: int) -> bool:
        """nf_conntrack_in(); False when the packet was dropped (table full)."""
        if skb.ctinfo == IP_CT_UNTRACKED:
            self._note("conntrack", "UNTRACKED")
            return True
        return self._conntrack_result(skb, self.conntrack.nf_conntrack_in(skb.buf, self.now, hook,
                                                                          csum_valid=skb.csum_valid))

    def _conntrack_result(self, skb: Skb, res: CtResult) -> bool:
        if res.verdict != NF_ACCEPT:
            if res.reason and self._net_ratelimit():
                self.syslog(res.reason)  # net_warn_ratelimited()
            self.counters.inc("CONNTRACK_DROP")
            if self.trace is not None:
                self._note("conntrack", f"drop: {res.reason}")
            self._out.append(Drop(res.reason or "conntrack", bytes(skb.buf)))
            return False
        ct = res.ct
        skb.ct, skb.ctinfo, skb.ct_reason = ct, res.ctinfo, res.reason
        if ct is not None and res.ctinfo == IP_CT_NEW and not ct.status & IPS_CONFIRMED:
            self._assign_helper(ct, skb)
        if self.trace is not None:
            self._note("conntrack", self._ct_text(skb))
        return True

    def _assign_helper(self, ct: Conn, skb: Skb) -> None:
        if skb.ct_helper:
            ct.get_ext().helper = skb.ct_helper
            return
        nf_ct_helper_assign(self.stack.ct_helpers, ct)

    def _confirm(self, skb: Skb) -> bool:
        """nf_confirm(): helper, sequence adjustment, then insertion in the table."""
        ct = skb.ct
        if ct is None:
            return True
        if ct.helper is not None or ct.status & IPS_SEQ_ADJUST:
            log: list[str] = []
            verdict, buf = nf_confirm(self.conntrack, ct, skb.ctinfo, skb.buf, self.now, self.rng, log=log)
            for line in log:
                self.syslog(line)
            if verdict != NF_ACCEPT:
                self._dropped(skb, f"helper {ct.helper}" + (f": {log[-1]}" if log else ""))
                return False
            if buf is not skb.buf or len(buf) != skb.tot_len:
                skb.buf = buf
            skb.load()
        if self.conntrack.confirm(ct, skb.ctinfo, self.now) != NF_ACCEPT:
            self._dropped(skb, "conntrack confirm (clash)")
            return False
        return True

    def nat_setup(self, skb: Skb, rng: NatRange2, mtype: ManipType) -> int:
        """A NAT target's binding (nf_nat_setup_info); "no free ports" is logged and counted."""
        ct = skb.ct
        if ct is None:
            return NF_ACCEPT
        v = nf_nat_setup_info(self.conntrack, ct, rng, mtype, self.rng, self.now)
        if v == NF_DROP and self._net_ratelimit():
            proto = {IPPROTO_TCP: "TCP", IPPROTO_UDP: "UDP", IPPROTO_ICMP: "ICMP"}.get(skb.proto, str(skb.proto))
            o = ct.orig
            self.syslog(f"ip_masq_new(proto={proto}): no free ports ({ntoa(o.src)}:{o.sport} -> "
                        f"{ntoa(o.dst)}:{o.dport}, {'SNAT' if mtype == ManipType.SRC else 'DNAT'} "
                        f"to {ntoa(rng.min_addr)}-{ntoa(rng.max_addr)})")
        if v == NF_DROP:
            self.counters.inc("NAT_NO_FREE_PORTS")
        return v

    def _nat_hook(self, skb: Skb, hook: int, chain: str) -> bool:
        """nf_nat_ipv4_fn(): translate related ICMP errors, bind new connections, rewrite."""
        ct = skb.ct
        if ct is None:
            return True
        ctinfo = skb.ctinfo
        if (ctinfo == IP_CT_RELATED or ctinfo == IP_CT_RELATED_REPLY) and skb.proto == IPPROTO_ICMP:
            if not self._icmp_reply_translation(skb, ct, ctinfo, hook):
                self._dropped(skb, "nat: ICMP error translation")
                return False
            return True
        mtype = hook2manip(hook)
        if (hook == NF_INET_POST_ROUTING and ctinfo < IP_CT_IS_REPLY and ct.ext is not None
                and ct.ext.masq_index and skb.outdev is not None and ct.ext.masq_index != skb.outdev.ifindex
                and ct.status & IPS_CONFIRMED):
            # nf_nat_oif_changed(): a masqueraded flow now routed out another device
            self.conntrack.kill(ct, self.now)
            self._dropped(skb, "nat: masquerade device changed")
            return False

        def rules(c: Conn, m: ManipType) -> int:
            return self._table(skb, "nat", chain, hook)

        verdict, manip = nf_nat_inet_fn(self.conntrack, ct, ctinfo, hook, rules, self.rng, self.now)
        if verdict != NF_ACCEPT:
            self._dropped(skb, f"nat/{chain}")
            return False
        if manip is not None:
            self._apply_manip(skb, manip, mtype)
        return True

    def _apply_manip(self, skb: Skb, manip: Manip, mtype: ManipType) -> None:
        before = self._pkt_text(skb) if self.trace is not None else ""  # for the trace only
        if not nf_nat_ipv4_manip_pkt(skb.buf, 0, skb.tot_len, int(mtype), manip.addr, manip.port):
            skb.hotdrop = True
            return
        skb.load()
        if self.trace is not None:
            self._note("nat", f"{'SNAT' if mtype == ManipType.SRC else 'DNAT'}: {before} -> {self._pkt_text(skb)}")

    def _icmp_reply_translation(self, skb: Skb, ct: Conn, ctinfo: int, hook: int) -> bool:
        """nf_nat_icmp_reply_translation(): the quoted packet and the outer header of an ICMP error."""
        hdr = skb.ihl
        buf = skb.buf
        if skb.l4len < 8 + 20 or not self._csum_ok(skb, IPPROTO_ICMP):
            return False
        mtype = hook2manip(hook)
        direction = 1 if ctinfo >= IP_CT_IS_REPLY else 0
        if buf[hdr] == ICMP_REDIRECT:
            if ct.status & IPS_NAT_DONE_MASK != IPS_NAT_DONE_MASK or ct.status & IPS_NAT_MASK:
                return False
        statusbit = IPS_SRC_NAT if mtype == ManipType.SRC else IPS_DST_NAT
        if direction:
            statusbit ^= IPS_NAT_MASK
        if not ct.status & statusbit:
            return True
        other = ct.okey if direction else ct.rkey  # ct.tuple(1 - direction), as a key
        inner_type = ManipType.DST if mtype == ManipType.SRC else ManipType.SRC
        inner = manip_of(inner_type, other)
        if not nf_nat_ipv4_manip_pkt(buf, hdr + 8, skb.tot_len, int(inner_type), inner.addr, inner.port):
            return False
        _U16.pack_into(buf, hdr + 2, 0)
        _U16.pack_into(buf, hdr + 2, ip_compute_csum(buf[hdr:skb.tot_len]))
        target = invert_key(other)
        if target < 0:
            return False
        m = manip_of(mtype, target)
        if not nf_nat_ipv4_manip_pkt(buf, 0, skb.tot_len, int(mtype), m.addr, 0):
            return False
        skb.load()
        if self.trace is not None:
            self._note("nat", f"ICMP error translated: {self._pkt_text(skb)}")
        return True

    # -- generated packets -----------------------------------------------------------------
    def _next_id(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return self._ip_id

    def icmp_send(self, skb: Skb, type_: int, code: int, info: int) -> None:
        """__icmp_send(): an ICMP error about `skb`, routed and sent through OUTPUT."""
        rt = skb.route
        local = rt is not None and rt.type == RTN_LOCAL
        if local:
            src = skb.daddr
        else:
            src = 0
            d = skb.indev
            if d is not None and self.stack.sysctl.get("net.ipv4.icmp_errors_use_inbound_ifaddr", 0):
                src = self.stack.select_addr(d, skb.saddr, RT_SCOPE_LINK)
        # the ICMP error's own route decides the source when none is chosen (icmp_route_lookup)
        tos = (skb.tos & 0x1E) | 0xC0
        try:
            back = route_output(self.stack, Flow(skb.saddr, src, 0, 0, 0, tos & 0x1C, IPPROTO_ICMP, 0, 0))
        except NetlinkError:
            return
        if not src:
            src = back.prefsrc
        # icmpv4_mask_allow() / icmpv4_xrlim_allow(): the types in icmp_ratemask (PMTU discovery
        # excepted) draw on the destination's peer bucket, even with icmp_ratelimit 0 (which empties it)
        ratemask = self.stack.sysctl.get("net.ipv4.icmp_ratemask", 6168)
        limit = self.stack.sysctl.get("net.ipv4.icmp_ratelimit", 1000) * HZ // 1000
        if ratemask & (1 << type_) and not (type_ == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED) \
                and not back.dev.loopback and not self._xrlim_allow(skb.saddr, limit):
            self.counters.inc("ICMP_RATELIMITED")
            return
        pkt = icmp_error_packet(skb.buf, type_, code, info, src, mtu=back.dev.mtu, ident=self._next_id(),
                                broadcast=rt is not None and rt.type == RTN_BROADCAST)
        if pkt is None:
            return
        if self.trace is not None:
            self._note("icmp", f"sending ICMP type {type_} code {code} to {ntoa(skb.saddr)}")
        self._send_generated(Skb(pkt, None))

    def _send_generated(self, skb: Skb, anysrc: bool = False) -> None:
        if self.trace is not None:
            self._note("output", "generated: " + self._pkt_text(skb))
        self._local_out(skb, 0, anysrc)

    def send_unreach(self, skb: Skb, code: int) -> None:
        """nf_send_unreach() for REJECT: nothing for later fragments or a bad TCP/UDP checksum."""
        if skb.frag_off & IP_OFFSET:
            return
        if skb.proto in (IPPROTO_TCP, IPPROTO_UDP) and not self._l4_ok(skb):
            return
        self.icmp_send(skb, ICMP_DEST_UNREACH, code, 0)

    def _l4_ok(self, skb: Skb) -> bool:
        if skb.proto == IPPROTO_UDP and skb.l4len >= 8 and _U16.unpack_from(skb.buf, skb.ihl + 6)[0] == 0:
            return True
        return self._csum_ok(skb, skb.proto)

    @staticmethod
    def _csum_ok(skb: Skb, proto: int) -> bool:
        """nf_ip_checksum() and icmp_rcv()'s check: a packet whose checksum is known good
        (skb_csum_unnecessary()) is not summed again."""
        return skb.csum_valid or l4_checksum_ok(skb.buf, skb.ihl, skb.l4len, proto, proto != IPPROTO_ICMP)

    def send_reset(self, skb: Skb, local: bool = False) -> None:
        """nf_send_reset() (REJECT --reject-with tcp-reset) / tcp_v4_send_reset() for closed ports."""
        if skb.fragoff or skb.l4len < 20:
            return
        buf, l4 = skb.buf, skb.ihl
        flags = buf[l4 + 13]
        if flags & 0x04 or not self._l4_ok(skb):
            return
        sport, dport, seq, ack = struct.unpack_from("!HHII", buf, l4)
        doff = (buf[l4 + 12] >> 4) * 4
        if flags & 0x10:
            rseq, rack, rflags = ack, 0, 0x04
        else:
            payload = skb.l4len - doff
            rseq, rack, rflags = 0, (seq + (flags & 0x02 and 1) + (flags & 0x01) + payload) & 0xFFFFFFFF, 0x14
        from ipgate.packet.build import tcp_segment

        seg = tcp_segment(skb.daddr, skb.saddr, dport, sport, seq=rseq, ack_seq=rack, flags=rflags, window=0)
        pkt = build_ipv4(skb.daddr, skb.saddr, IPPROTO_TCP, seg, frag_off=IP_DF, ttl=IPDEFTTL,
                         tos=skb.tos if local else 0, id=0)
        gen = Skb(pkt, None)
        if skb.ct is not None and not local:
            # nf_ct_attach() (REJECT only; the TCP stack's resets are tracked like any packet):
            # the reset rides on the original's connection, as a related reply
            gen.ct = skb.ct
            gen.ctinfo = IP_CT_RELATED_REPLY if skb.ctinfo < IP_CT_IS_REPLY else IP_CT_RELATED
        self._send_generated(gen, anysrc=not local)

    def log_target(self, skb: Skb, t: T.Log) -> int:
        from ipgate.engine.xtables import XT_CONTINUE
        from ipgate.netfilter.log import log_packet_line

        line = log_packet_line(t.prefix, t.logflags, skb.indev_name, skb.outdev_name, bytes(skb.buf[:skb.tot_len]),
                               mac=skb.mac, mark=skb.mark)
        self.syslog(line)
        self._note("log", line)
        return XT_CONTINUE

    def clamp_mtu(self, skb: Skb) -> int:
        """TCPMSS --clamp-mss-to-pmtu: min(route MTU, MTU of the route back to the source)."""
        mtu = skb.outdev.mtu if skb.outdev is not None else 0
        try:
            back = route_output(self.stack, Flow(skb.saddr))
            mtu = min(mtu, back.dev.mtu) if mtu else back.dev.mtu
        except NetlinkError:
            pass
        return mtu

    # -- helpers ---------------------------------------------------------------------------
    def _defrag(self, skb: Skb, user: int) -> Skb | None:
        d = skb.indev
        res = self.defrag.add(skb.buf, self.now, user=user, iif=d.ifindex if d is not None else 0)
        if isinstance(res, Reassembled):
            new = Skb(res.packet, skb.indev, mark=skb.mark)
            new.frag_max_size = res.frag_max_size
            new.route, new.ct, new.ctinfo = skb.route, skb.ct, skb.ctinfo
            if self.trace is not None:
                self._note("defrag", f"reassembled {new.tot_len} bytes")
            return new
        if res is None:
            self._note("defrag", "fragment queued")
            return None
        self._out.append(Drop(res.name, bytes(skb.buf)))
        return None

    def _dropped(self, skb: Skb, where: str) -> None:
        self.counters.inc(where)
        if self.trace is not None:
            self._note("verdict", f"DROP in {where}")
        self._out.append(Drop(where, bytes(skb.buf)))

    def _note(self, kind: str, text: str) -> None:
        tr = self.trace
        if tr is not None:
            tr.events.append(Event(kind, text))

    def _pkt_text(self, skb: Skb) -> str:
        return packet_text(skb.buf)

    def _route_text(self, rt: Route) -> str:
        s = f"{RTN_NAMES.get(rt.type, rt.type)} dev {rt.dev.name}"
        if rt.gateway:
            s += f" via {ntoa(rt.gateway)}"
        if rt.table:
            s += f" table {self.stack.table_name(rt.table)}"
        if rt.rule_pref >= 0:
            s += f" (rule {rt.rule_pref})"
        return s

    def _ct_text(self, skb: Skb) -> str:
        ct = skb.ct
        if ct is None:
            return "INVALID" + (f" ({skb.ct_reason})" if skb.ct_reason else "")
        names = {0: "ESTABLISHED", 1: "RELATED", 2: "NEW", 3: "ESTABLISHED reply", 4: "RELATED reply"}
        return names.get(skb.ctinfo, str(skb.ctinfo)) + f" {ct.orig} / {ct.reply}"

