"""IP Filter NAT sessions across a restart: what ipfs(8) does with /dev/ipnat (`ipfs -W` / `ipfs -R`).

ipfs saves each nat_t with a copy of the rule that made it (ipnat_save_t); on
restore nat_putent() looks for a loaded rule that compares equal over
IPN_CMPSIZ and, if there is none, keeps the saved rule as a deleted one.
Here a session's rule is found again by the same comparison (`fingerprint`:
the fields `NatRule.same_as` compares), the n-th saved rule with a given
fingerprint taking the n-th loaded one; a session whose rule is not in the
new configuration is restored without one (an orphan: it still translates
its packets and ages by protocol, as IP Filter's orphaned sessions do).
A configuration without any NAT rule gets no session table back: IP Filter
translates nothing while ns_rules is 0 (conntrack/persist.py decides that).

Saved besides the sessions: the kernel state of each loaded rule (in_pnext,
in_nip, in_space, in_hits) and the round-robin order of the rule chains, so
that the next new session is mapped as it would have been without the
restart; the host maps (with their reference counts); and the timeout
queues, in order, with each session's death time.  Time is IP Filter's
ticks, counted from the table's `epoch`; the restored table's epoch is set
so that its clock goes on from the saved one plus the downtime (to the
fraction of a tick), so every tqe_die keeps its meaning.
Not saved: the fragment cache (60 s), the natstat_t counters (ipfs does not
keep them either).

Layout of the IPNT section (network byte order; the file is conntrack/persist.py's):

    seconds since the table's epoch f64; rules u32, each: deleted u8, pnext i64, nip i64, space i64, hits u64,
                                u16 length + fingerprint (JSON text)
    map chains u32 and rdr chains u32, each: length u32, rule indices u32, in chain order
    host maps u32, each: rule i32 (-1: none), src u32, dst u32, mapip u32, port u16, ref u32
    sessions u32 (oldest first, as nat_instances was filled), each:
        inip u32, inport u16, outip u32, outport u16, oip u32, oport u16, p u8, flags u32, dir u8, redir u32,
        rule i32, die i64, touched i64, created i64, queue kind u8 + argument u32 + position u32,
        tcpstate u8 x 2, pkts u64 x 2, bytes u64 x 2, mssclamp u16, hostmap i32, use u32,
        u8 length + in interface, u8 length + out interface
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ipgate.nat.ipnat.core import IpnatTable
from ipgate.nat.ipnat.hostmap import HostMap
from ipgate.nat.ipnat.natrules import ActiveRule, RuleIndex
from ipgate.nat.ipnat.rule import NAT_REDIRECT, NatRule
from ipgate.nat.ipnat.session import NatSession
from ipgate.nat.ipnat.timeouts import IPF_HZ_DIVIDE, IPF_TCP_NSTATES, TimeoutQueue

_HEAD = struct.Struct("!dI")
_RULE = struct.Struct("!BqqqQ")
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_HOSTMAP = struct.Struct("!iIIIHI")
_SESSION = struct.Struct("!IHIHIHBIBIiqqqBIIBBQQQQHiI")

Q_NONE, Q_TCP, Q_UDP, Q_ICMP, Q_IP, Q_USER = 0, 1, 2, 3, 4, 5


def fingerprint(r: NatRule) -> str:
    """What fr_nat_ioctl()/nat_putent() compare of a rule (IPN_CMPSIZ, plus pnext for rdr): the fields of
    `NatRule.same_as`, as JSON text."""
    return json.dumps([r.flags, r.mssclamp, list(r.age), r.redir, r.proto, r.in_addr, r.in_mask, r.out_addr,
                       r.out_mask, r.src_addr, r.src_mask, [r.sport.cmp, r.sport.port, r.sport.top],
                       [r.dport.cmp, r.dport.port, r.dport.top], r.pmin, r.pmax, r.ppip, r.ippip, r.ifname,
                       r.ifname2, r.plabel, r.tag, r.pnext if r.redir == NAT_REDIRECT else None])


# -- private parts of the table (read and rebuilt here only) -------------------------------------------
def _indexes(t: IpnatTable) -> tuple[RuleIndex, RuleIndex]:
    """nat_rules[] and rdr_rules[]: IpnatTable keeps them private; their chain order (which round-robin
    rules change) is state ipfs would lose but a restart here should not."""
    return t._maps, t._rdrs  # noqa: SLF001 - state save/restore of the table's own structures


def _chains(ix: RuleIndex) -> Iterator[list[ActiveRule]]:
    """The chains of an index holding more than one rule, in their order (RuleIndex._buckets)."""
    for chain in ix._buckets.values():  # noqa: SLF001 - see _indexes
        if len(chain) > 1:
            yield list(chain)


def _add_hostmap(t: IpnatTable, hm: HostMap) -> None:
    """Append to the (src, dst) chain of ipf_hm_maptable: HostMapTable.get() would look for an
    existing entry first, and a restore must rebuild the chains exactly as they were."""
    t.hostmap_table._table.setdefault((hm.src, hm.dst), []).append(hm)  # noqa: SLF001 - see docstring


# -- saving -------------------------------------------------------------------------------------------
def _queue_id(t: IpnatTable, q: TimeoutQueue[NatSession] | None) -> tuple[int, int]:
    if q is None:
        return Q_NONE, 0
    for i, tq in enumerate(t.tcpq):
        if q is tq:
            return Q_TCP, i
    if q is t.udpq:
        return Q_UDP, 0
    if q is t.icmpq:
        return Q_ICMP, 0
    if q is t.ipq:
        return Q_IP, 0
    return Q_USER, q.ttl


def _str8(s: str) -> bytes:
    b = s.encode()
    if len(b) > 255:
        raise ValueError(f"name too long: {s!r}")
    return bytes((len(b),)) + b


def encode_ipnat(t: IpnatTable, now: float) -> bytes:
    """The IPNT section of the state file (layout in the module docstring)."""
    sessions = list(t.sessions())[::-1]  # oldest first
    hostmaps = list(t.hostmaps())
    rules = t.rules()
    known = {id(np) for np in rules}
    deleted: list[ActiveRule] = []
    for np in [s.rule for s in sessions] + [h.rule for h in hostmaps]:
        if np is not None and id(np) not in known:
            known.add(id(np))
            deleted.append(np)
    all_rules = rules + deleted
    rindex = {id(np): i for i, np in enumerate(all_rules)}
    hindex = {id(h): i for i, h in enumerate(hostmaps)}
    pos: dict[int, int] = {}
    for q in (*t.tcpq, t.udpq, t.icmpq, t.ipq, *t.userq):
        for i, s in enumerate(q.entries):
            pos[id(s)] = i
    out = [_HEAD.pack(now - t.epoch, len(all_rules))]
    for i, np in enumerate(all_rules):
        fp = fingerprint(np.rule).encode()
        out.append(_RULE.pack(i >= len(rules), np.pnext, np.nip, np.space, np.hits) + _U16.pack(len(fp)) + fp)
    for ix in _indexes(t):
        chains = [[rindex[id(np)] for np in c if id(np) in rindex] for c in _chains(ix)]
        out.append(_U32.pack(len(chains)))
        out.extend(_U32.pack(len(c)) + b"".join(_U32.pack(i) for i in c) for c in chains)
    out.append(_U32.pack(len(hostmaps)))
    for h in hostmaps:
        out.append(_HOSTMAP.pack(rindex[id(h.rule)] if h.rule is not None else -1, h.src, h.dst, h.mapip, h.port,
                                 h.ref))
    out.append(_U32.pack(len(sessions)))
    for s in sessions:
        qkind, qarg = _queue_id(t, s.queue)
        hm = hindex.get(id(s.hostmap), -1) if s.hostmap is not None else -1
        out.append(_SESSION.pack(s.inip, s.inport, s.outip, s.outport, s.oip, s.oport, s.p, s.flags, s.dir, s.redir,
                                 rindex[id(s.rule)] if s.rule is not None else -1, s.die, s.touched, s.created,
                                 qkind, qarg, pos.get(id(s), 0), s.tcpstate[0], s.tcpstate[1], s.pkts[0], s.pkts[1],
                                 s.bytes[0], s.bytes[1], s.mssclamp, hm, s.use))
        out.append(_str8(s.ifnames[0]) + _str8(s.ifnames[1]))
    return b"".join(out)


# -- restoring ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _SavedRule:
    deleted: bool
    pnext: int
    nip: int
    space: int
    hits: int
    fingerprint: str


@dataclass(frozen=True, slots=True)
class _SavedSession:
    fields: tuple[int, ...]  # _SESSION's, in its order
    ifnames: tuple[str, str]


@dataclass(frozen=True, slots=True)
class StagedIpnat:
    """A decoded, checked IPNT section; `build` fills a fresh table with it."""

    elapsed: float  # seconds from the table's epoch to the save
    rules: list[_SavedRule]
    chains: tuple[list[list[int]], list[list[int]]]
    hostmaps: list[tuple[int, ...]]
    sessions: list[_SavedSession]

    def build(self, t: IpnatTable, rules: Sequence[NatRule], now: float, downtime: float) -> None:
        """Load `rules` into the new table `t` and put the saved state back (ValueError if it cannot be)."""
        if len(t) or t.rules():
            raise ValueError("the NAT session table is not new")
        t.epoch = now - (self.elapsed + downtime)  # fr_ticks goes on from the save, plus the downtime
        t.ticks(now)
        t.sync_rules(rules)
        active = self._match_rules(t.rules())
        for saved, np in zip(self.rules, active, strict=True):
            if np is not None:
                np.pnext, np.nip, np.space, np.hits = saved.pnext, saved.nip, saved.space, saved.hits
        for ix, chains in zip(_indexes(t), self.chains, strict=True):
            for chain in chains:
                for i in chain:
                    np = active[i]
                    if np is not None:
                        ix.move_to_end(np)  # each in turn to the end: the saved order
        hms: list[HostMap] = []
        for ri, src, dst, mapip, port, ref in self.hostmaps:
            hm = HostMap(active[ri] if ri >= 0 else None, src, dst, mapip, port)
            hm.ref = ref
            _add_hostmap(t, hm)
            hms.append(hm)
        queued: dict[int, tuple[TimeoutQueue[NatSession], list[tuple[int, NatSession]]]] = {}
        made: list[TimeoutQueue[NatSession]] = []
        for s in self.sessions:
            nat = self._session(t, s, active, hms, queued, made)
            if not t.table.insert(nat):
                raise ValueError("a NAT hash chain is full (fr_nat_maxbucket)")
        for q, members in queued.values():
            members.sort(key=lambda pn: pn[0])
            for _, nat in members:
                q.entries[nat] = None  # fr_queueappend() without resetting tqe_die: the saved order and ages
        for q in made:
            t.userq.release(q)  # unreferenced now: it goes once its sessions have (UserQueues.collect)

    def _match_rules(self, loaded: list[ActiveRule]) -> list[ActiveRule | None]:
        """nat_putent()'s search: the n-th saved rule with a fingerprint takes the n-th loaded one."""
        free: dict[str, list[ActiveRule]] = {}
        for np in loaded:
            free.setdefault(fingerprint(np.rule), []).append(np)
        out: list[ActiveRule | None] = []
        for saved in self.rules:
            cands = free.get(saved.fingerprint)
            out.append(cands.pop(0) if cands and not saved.deleted else None)
        return out

    @staticmethod
    def _session(t: IpnatTable, s: _SavedSession, active: list[ActiveRule | None], hms: list[HostMap],
                 queued: dict[int, tuple[TimeoutQueue[NatSession], list[tuple[int, NatSession]]]],
                 made: list[TimeoutQueue[NatSession]]) -> NatSession:
        (inip, inport, outip, outport, oip, oport, p, flags, dirn, redir, ri, die, touched, created, qkind, qarg,
         qpos, ts0, ts1, pk0, pk1, by0, by1, mssclamp, hi, use) = s.fields
        np = active[ri] if ri >= 0 else None
        nat = NatSession(inip=inip, inport=inport, outip=outip, outport=outport, oip=oip, oport=oport, p=p,
                         flags=flags, dir=dirn, rule=np, ifnames=s.ifnames, created=created)
        nat.redir, nat.mssclamp, nat.use = redir, mssclamp, use
        nat.die, nat.touched = die, touched
        nat.tcpstate = [ts0, ts1]
        nat.pkts, nat.bytes = [pk0, pk1], [by0, by1]
        if hi >= 0:
            nat.hostmap = hms[hi]
        if np is not None:
            np.use += 1  # nat_new()'s in_use++ (fr_ipnatderef() takes it back)
        q = _queue(t, qkind, qarg, made)
        if q is not None:
            nat.queue = q
            queued.setdefault(id(q), (q, []))[1].append((qpos, nat))
        return nat


def _queue(t: IpnatTable, kind: int, arg: int, made: list[TimeoutQueue[NatSession]]) -> TimeoutQueue[NatSession] | None:
    if kind == Q_TCP:
        return t.tcpq[arg]
    if kind == Q_UDP:
        return t.udpq
    if kind == Q_ICMP:
        return t.icmpq
    if kind == Q_IP:
        return t.ipq
    if kind == Q_USER:
        for q in t.userq:
            if q.ttl == arg:
                return q
        # the rule's `age` is gone with the old configuration: a queue of that age for the sessions that
        # still have it (fr_addtimeoutqueue()), released once they are on it, so it goes when they do
        if arg % IPF_HZ_DIVIDE:
            raise ValueError("odd user queue age")
        q = t.userq.add(arg // IPF_HZ_DIVIDE)
        made.append(q)
        return q
    return None


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview | bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, st: struct.Struct) -> tuple[int, ...]:
        v = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        if not all(isinstance(x, int) for x in v):
            raise ValueError("expected integers")
        return tuple(v)

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ValueError("truncated")
        b = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return b

    def count(self, each: int) -> int:
        (n,) = self.take(_U32)
        if n * each > len(self.buf) - self.pos:
            raise ValueError("count larger than the section")
        return n


def decode_ipnat(payload: memoryview | bytes) -> StagedIpnat:
    """Parse and check an IPNT section (ValueError, struct.error when it is malformed)."""
    elapsed, nrules = _HEAD.unpack_from(payload)
    r = _Reader(payload)
    r.pos = _HEAD.size
    if not isinstance(elapsed, float) or not math.isfinite(elapsed) or nrules * _RULE.size > len(payload):
        raise ValueError("bad header")
    rules = []
    for _ in range(nrules):
        deleted, pnext, nip, space, hits = r.take(_RULE)
        (n,) = r.take(_U16)
        rules.append(_SavedRule(bool(deleted), pnext, nip, space, hits, r.raw(n).decode()))
    chains: list[list[list[int]]] = []
    for _ in range(2):
        side = []
        for _ in range(r.count(4)):
            chain = [r.take(_U32)[0] for _ in range(r.count(4))]
            if any(i >= nrules for i in chain):
                raise ValueError("rule index out of range")
            side.append(chain)
        chains.append(side)
    hostmaps = []
    for _ in range(r.count(_HOSTMAP.size)):
        hm = r.take(_HOSTMAP)
        if hm[0] >= nrules or hm[0] < -1:
            raise ValueError("rule index out of range")
        hostmaps.append(hm)
    sessions = []
    for _ in range(r.count(_SESSION.size)):
        f = r.take(_SESSION)
        ri, qkind, qarg, ts0, ts1, hi = f[10], f[14], f[15], f[17], f[18], f[24]
        if not -1 <= ri < nrules or not -1 <= hi < len(hostmaps) or ts0 >= IPF_TCP_NSTATES or ts1 >= IPF_TCP_NSTATES:
            raise ValueError("bad session")
        if qkind > Q_USER or (qkind == Q_TCP and qarg >= IPF_TCP_NSTATES):
            raise ValueError("bad session queue")
        ifnames = (r.raw(r.raw(1)[0]).decode(), r.raw(r.raw(1)[0]).decode())
        sessions.append(_SavedSession(f, ifnames))
    if r.pos != len(payload):
        raise ValueError(f"{len(payload) - r.pos} bytes left over")
    return StagedIpnat(elapsed, rules, (chains[0], chains[1]), hostmaps, sessions)


__all__ = ["StagedIpnat", "decode_ipnat", "encode_ipnat", "fingerprint"]
