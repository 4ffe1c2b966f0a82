"""The established-flow fast path: the slow path's decision, replayed (the kernel's flowtable idea).

When a packet of an ESTABLISHED connection has gone through the whole slow
path and left as one packet, the engine records what happened to it: the
counters of every rule and policy that matched, the mark it left with, the
device and next hop, and the rewrite (NAT, TTL) as one precomputed
`FlowRewrite`.  The next packet with the same key (device, addresses,
protocol, ports or ICMP type/code/id, TCP flags, TOS, mark) is tracked by
conntrack as usual (`nf_conntrack_in`: state, timeouts and windows stay
exact) and, if its connection is the same one in the same state, status and
connmark, gets the recorded decision without walking any chain.

Only decisions that cannot differ from packet to packet are recorded: every
rule of the tables an established packet meets must test only what the key
and the connection fix (no -m limit, no --tcp-option, no ctexpire) and do
nothing per packet but count, jump, accept or set a mark (no LOG, TOS,
TCPMSS, CONNMARK --set/--save...); the recorded output must be exactly the
rewrite of the input; the raw PREROUTING chain must be empty.  Any change
of tables, routes, addresses or devices empties the cache.

Entries whose packets can go as numpy vectors (established UDP, plain TCP
ACKs) are also indexed by `VectorPath` (vector.py), which
`Engine.receive_batch` uses; forgetting an entry here forgets it there.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ipgate.conntrack.conn import (
    IP_CT_ESTABLISHED,
    IP_CT_ESTABLISHED_REPLY,
    IPS_CONFIRMED,
    IPS_DYING,
    IPS_SEQ_ADJUST,
    NF_ACCEPT,
    NF_INET_PRE_ROUTING,
    Conn,
)
from ipgate.conntrack.table import CtResult
from ipgate.engine.result import Tx
from ipgate.engine.vector import VectorPath
from ipgate.engine.xtables import CTable, TraceStep
from ipgate.netfilter import matches as M
from ipgate.netfilter import targets as T
from ipgate.netfilter.rule import Jump, Rule, Standard
from ipgate.packet.ipv4 import IPv4, parse_ipv4
from ipgate.packet.rewrite import FlowRewrite

if TYPE_CHECKING:
    from ipgate.engine.engine import Engine
    from ipgate.engine.skb import Skb
    from ipgate.link.device import Device
    from ipgate.netfilter.rule import Counters

MAX_ENTRIES = 1 << 16
PRUNE_EVERY = 5.0  # seconds between passes over the cache for dead connections
_PORTS = struct.Struct("!HH")
_INVARIANT_MATCHES = (M.UdpMatch, M.IcmpMatch, M.MultiportMatch, M.MarkMatch, M.ConnmarkMatch, M.IprangeMatch,
                      M.TosMatch, M.DscpMatch, M.CommentMatch, M.AddrtypeMatch)


def _rule_invariant(r: Rule) -> bool:
    """Does the rule decide the same for every packet with the same key and connection state?"""
    for m in r.matches:
        if isinstance(m, M.TcpMatch):
            if m.option:
                return False
        elif isinstance(m, M.ConntrackMatch):
            if m.match_flags & M.XT_CONNTRACK_EXPIRES:
                return False
        elif not isinstance(m, _INVARIANT_MATCHES):
            return False
    t = r.target
    if t is None or isinstance(t, (Standard, Jump, T.Mark)):
        return True
    return isinstance(t, T.Connmark) and t.mode == T.XT_CONNMARK_RESTORE


def table_invariant(t: CTable) -> bool:
    return all(_rule_invariant(cr.rule) for c in t.chains.values() for cr in c.rules)


@dataclass(slots=True)
class Entry:
    ct: Conn
    ctinfo: int
    status: int
    ctmark: int
    tcp_state: int
    counters: tuple[Counters, ...]
    mark: int
    rewrite: FlowRewrite
    dev: str
    nexthop: int
    mtu: int
    vslot: int = -1  # where VectorPath keeps it (vkey: its index there), if its packets can go as vectors
    vkey: tuple[int, int, bytes] | None = None


class FastPath:
    """Recorded decisions by flow key; valid for one generation of tables and routes."""

    def __init__(self, eng: Engine) -> None:
        self.eng = eng
        self.vector = VectorPath(eng)
        self.entries: dict[tuple[object, ...], Entry] = {}
        self.enabled = True  # set False to force every packet through the slow path
        self.usable = False  # the current tables allow recording at all
        self.hits = 0
        self._gens = (-1, -1)
        self._pruned = float("-inf")

    def flush(self) -> None:
        self.entries.clear()
        self.vector.clear()

    def _forget(self, k: tuple[object, ...]) -> None:
        self.vector.forget(self.entries.pop(k))

    def prune(self, now: float) -> int:
        """Forget the decisions of connections that died or expired (they would otherwise keep their
        `Conn` alive until the cache fills: a steady stream of short connections grew the memory).
        A whole pass at most every PRUNE_EVERY seconds; returns how many entries went."""
        if now - self._pruned < PRUNE_EVERY:
            return 0
        self._pruned = now
        dead = [k for k, e in self.entries.items() if e.ct.status & IPS_DYING or e.ct.timeout <= now]
        for k in dead:
            self._forget(k)
        return len(dead)

    def check_gens(self) -> None:
        """Forget everything when routes, addresses, devices or tables changed."""
        eng = self.eng
        gens = (eng.stack.gen.value, eng.stack.netfilter.gen)
        if gens != self._gens:
            self._gens = gens
            self.flush()

    def sync(self) -> None:
        """Called when tables change: decide whether they allow recording."""
        eng = self.eng
        self.flush()
        raw = eng._tables.get("raw")
        self.usable = self.enabled and (raw is None or not raw.chains["PREROUTING"].rules) and all(
            table_invariant(t) for name, t in eng._tables.items() if name in ("raw", "mangle", "filter"))

    @staticmethod
    def key(dev: Device, buf: bytearray, ip: IPv4, mark: int) -> tuple[object, ...] | None:
        if ip.ihl != 20 or ip.frag_off & 0x3FFF:
            return None
        proto = ip.protocol
        if proto == 6:
            if ip.tot_len < 40:
                return None
            return dev.ifindex, ip.saddr, ip.daddr, 6, _PORTS.unpack_from(buf, 20), buf[33], ip.tos, mark
        if proto == 17:
            if ip.tot_len < 28:
                return None
            return dev.ifindex, ip.saddr, ip.daddr, 17, _PORTS.unpack_from(buf, 20), 0, ip.tos, mark
        if proto == 1:
            if ip.tot_len < 28 or buf[20] not in (0, 8):
                return None
            return dev.ifindex, ip.saddr, ip.daddr, 1, (buf[20], buf[21]), bytes(buf[24:26]), ip.tos, mark
        return None

    def lookup(self, dev: Device, buf: bytearray, ip: IPv4, mark: int, now: float, csum_valid: bool = False
               ) -> tuple[Tx | CtResult | None, tuple[object, ...] | None]:
        """(the recorded decision as a Tx, or the conntrack result already computed for the slow path,
        or None; the packet's key, for recording what the slow path decides)."""
        eng = self.eng
        self.check_gens()
        k = self.key(dev, buf, ip, mark)
        if k is None:
            return None, None
        e = self.entries.get(k)
        if e is None:
            return None, k
        res = eng.conntrack.nf_conntrack_in(buf, now, NF_INET_PRE_ROUTING, csum_valid=csum_valid)
        ct = res.ct
        if (res.verdict != NF_ACCEPT or ct is not e.ct or res.ctinfo != e.ctinfo or ct.status != e.status
                or ct.mark != e.ctmark or ct.tcp_state != e.tcp_state or ip.tot_len > e.mtu or ip.ttl <= 1):
            self._forget(k)
            return res, k
        n = ip.tot_len
        for c in e.counters:
            c.pkts += 1
            c.bytes += n
        e.rewrite.apply(buf, ip)
        self.hits += 1
        return Tx(e.dev, e.nexthop, bytes(buf)), k

    def record(self, skb: Skb, key: tuple[object, ...], before: bytes, steps: list[TraceStep], out: Tx) -> None:
        """Remember the slow path's decision for `key` if the next packets are sure to get the same."""
        ct = skb.ct
        if (ct is None or skb.ctinfo not in (IP_CT_ESTABLISHED, IP_CT_ESTABLISHED_REPLY) or ct.helper is not None
                or ct.status & (IPS_SEQ_ADJUST | IPS_DYING) or not ct.status & IPS_CONFIRMED):
            return
        o = out.data
        if len(o) != len(before) or len(o) < 28:
            return
        proto = before[9]
        old, new = _ends(before), _ends(o)
        rw = FlowRewrite(proto, old, new, dec_ttl=True)
        check = bytearray(before)
        ip = parse_ipv4(check)
        if not isinstance(ip, IPv4):
            return
        rw.apply(check, ip)
        if bytes(check) != o:
            return  # something else changed the packet (TOS, MSS...): not a pure rewrite
        counters: list[Counters] = []
        tables = self.eng._tables
        for s in steps:
            if s.rule is not None:
                counters.append(s.rule.counters)
            elif s.kind == "policy":
                counters.append(tables[s.table].chains[s.chain].counters)
        if len(self.entries) >= MAX_ENTRIES:
            self.flush()
        dev = self.eng.stack.devices.get(out.dev)
        if dev is None:
            return
        if key in self.entries:
            self._forget(key)
        e = self.entries[key] = Entry(ct, skb.ctinfo, ct.status, ct.mark, ct.tcp_state, tuple(counters), skb.mark,
                                      rw, out.dev, out.nexthop, dev.mtu)
        self.vector.add(e, before, key[0], key[-1])  # type: ignore[arg-type]  # (ifindex, ..., arrival mark)



def _ends(pkt: bytes) -> tuple[int, int, int, int]:
    """(saddr, daddr, sport, dport) as FlowRewrite takes them: an ICMP query's id in place of sport."""
    saddr, daddr = int.from_bytes(pkt[12:16], "big"), int.from_bytes(pkt[16:20], "big")
    if pkt[9] == 1:
        return saddr, daddr, int.from_bytes(pkt[24:26], "big"), 0
    sport, dport = _PORTS.unpack_from(pkt, 20)
    return saddr, daddr, sport, dport
