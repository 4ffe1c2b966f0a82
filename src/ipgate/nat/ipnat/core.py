"""IP Filter's NAT on packets: fr_checknatout() / fr_checknatin() and the
session table behind them (IP Filter 4.1.x ip_nat.c).

`IpnatTable` is /dev/ipnat's kernel half: the loaded rules (`ActiveRule`,
kept in step with the rule list of state.IpnatState by `sync_rules`), the
sessions (`NatSession`, in the two hash tables of table.py), the host maps,
the fragment cache, the timeout queues and natstat_t.  It is sans-IO: every
call that can age sessions takes `now` (seconds, any epoch; IP Filter counts
ticks of half a second from `epoch`).

`check_out(ifname, pkt, now)`, for a packet leaving by `ifname`
(fr_checknatout()):

1. an ICMP error about a session has its quoted packet translated
   (nat_icmperror()) and its source address too;
2. a fragment of a datagram already translated follows its first fragment
   (fr_nat_knownfrag());
3. a packet of a known session (nat_outlookup(): by inside address/port and
   remote address/port) is translated;
4. else the map-side rules of that interface are tried (map, bimap,
   map-block; the /32 rules first, then by prefix length, each in the order
   loaded) and the first that matches and can allocate makes a session
   (nat_new()/nat_newmap()).  A rule that matches but cannot allocate (no
   free port or address) does not stop the walk; when none succeeds the
   packet is refused: fr_checknatout() returns -1 and fr_check() blocks it
   (FI_BADNAT), after counting ns_badnat (ns_memfail when the table is
   full).  Existing sessions are not touched.

`check_in(ifname, pkt, now)`, for a packet arriving on `ifname`
(fr_checknatin()): the same with nat_inlookup() (by remote and outside
address/port: the replies of map sessions, the packets of rdr sessions) and
the rdr-side rules (rdr, bimap; also by longest prefix, on the destination;
without from/to a rule's `port p-q` must hold the destination port).

The packet is rewritten in place (xlate.py); the verdict says what
happened.  Where IP Filter calls these (fil.c fr_check()): inbound NAT runs
before the filter rules and the state table see the packet (so they see the
rdr'd destination), outbound NAT after them and only for packets they pass
(so they see the inside source); a -1 from either makes the packet blocked.
Beside iptables that is: check_in where PREROUTING's nat hook is, check_out
where POSTROUTING's is, with the filter between.

Deviations from the 4.1 kernel, each for a reason given where it is done:
ICMP ids are remapped by `icmpidmap` (alloc.py); fr_natsync() re-hashes the
sessions it readdresses (`sync`); TCP ageing is skipped for fragment bodies
and ICMP errors (their bytes are not a TCP header); allocation loops that the
kernel never bounds are bounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

from ipgate.nat.ipnat.alloc import AllocContext, NewMap, nat_newmap, nat_newrdr
from ipgate.nat.ipnat.hostmap import HostMap, HostMapTable
from ipgate.nat.ipnat.icmperr import nat_icmperror
from ipgate.nat.ipnat.natfrag import NatFragCache
from ipgate.nat.ipnat.natrules import ActiveRule, RuleIndex
from ipgate.nat.ipnat.pktinfo import PacketInfo
from ipgate.nat.ipnat.proxy import ProxyTable
from ipgate.nat.ipnat.rule import (
    ALL_ONES,
    IPN_FILTER,
    IPN_ICMPERR,
    IPN_ICMPQUERY,
    IPN_NOTDST,
    IPN_NOTSRC,
    IPN_RF,
    IPN_ROUNDR,
    IPN_TCP,
    IPN_TCPUDP,
    NAT_MAP,
    NAT_MAPBLK,
    NAT_REDIRECT,
    NatRule,
)
from ipgate.nat.ipnat.session import NAT_INBOUND, NAT_OUTBOUND, NatSession
from ipgate.nat.ipnat.state import NatSessionTable, NatStats
from ipgate.nat.ipnat.table import NAT_TABLE_MAX, NAT_TABLE_SZ, SessionTable
from ipgate.nat.ipnat.timeouts import (
    IPF_HZ_DIVIDE,
    IPF_TCP_NSTATES,
    TCP_STATE_NAMES,
    NatTunables,
    TimeoutQueue,
    UserQueues,
    ipf_ttlval,
    move_queue,
    queue_flush,
    tcp_age,
)
from ipgate.nat.ipnat.xlate import rewrite_icmperr_in, rewrite_icmperr_out, rewrite_in, rewrite_out
from ipgate.packet.ipv4 import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, WBuffer

NAT_SIZE = 127      # ipf_natrules_sz (ip_nat.h)
RDR_SIZE = 127      # ipf_rdrrules_sz
HOSTMAP_SIZE = 2047

# nat_delete()'s log types that matter to the counters.
NL_EXPIRE = "expire"
NL_FLUSH = "flush"


class NatVerdict(NamedTuple):
    """What fr_checknatout()/fr_checknatin() did with a packet."""

    rval: int                    # -1: refused (FR_BLOCK, FI_BADNAT); 0: not for NAT; 1: translated
    session: NatSession | None   # the session used or made
    created: bool = False        # this packet made the session (FI_NEWNAT)
    icmp_error: bool = False     # translated as an ICMP error about the session (nat_icmperror())
    fragment: bool = False       # found through the fragment cache (fr_nat_knownfrag())

    @property
    def translated(self) -> bool:
        return self.rval == 1

    @property
    def blocked(self) -> bool:
        return self.rval == -1


UNTOUCHED = NatVerdict(0, None)
REFUSED = NatVerdict(-1, None)


def _lookup_ports(fin: PacketInfo) -> tuple[int, int]:
    """The ports nat_outlookup()/nat_inlookup() hash and compare: TCP/UDP
    ports (0 for fragment bodies), the id for ICMP queries, else none."""
    if fin.p == IPPROTO_TCP or fin.p == IPPROTO_UDP:
        return fin.data0, fin.data1
    return 0, 0


class IpnatTable:
    """The NAT half of IP Filter's kernel state, driven by packets."""

    def __init__(self, ifaddr: Callable[[str], int | None], *, epoch: float = 0.0,
                 table_size: int = NAT_TABLE_SZ, table_max: int = NAT_TABLE_MAX, maxbucket: int | None = None,
                 tunables: NatTunables | None = None, port_random: Callable[[], int] | None = None) -> None:
        """`ifaddr(ifname)`: the interface's address now (fr_ifpaddr()), for `0/32`.
        `port_random`: ipf_random() for portmap rules without `sequential`
        (IP Filter 4.1.2x); None hands ports out in order, as the manual says.
        `table_size`/`table_max`/`maxbucket`: ipf_nattable_sz,
        ipf_nattable_max, fr_nat_maxbucket (LARGE_NAT: 16383 and 180000)."""
        self.ifaddr = ifaddr
        self.epoch = epoch
        self.table_max = table_max
        self.tun = tunables if tunables is not None else NatTunables()
        self.table = SessionTable(table_size, maxbucket)
        self.hostmap_table = HostMapTable()
        self.frags = NatFragCache(self.tun.fr_ipfrttl)
        self.ctx = AllocContext(self, self.hostmap_table, ifaddr, port_random)
        self._rules: list[ActiveRule] = []          # nat_list
        self._by_rule: dict[int, ActiveRule] = {}   # id(NatRule) -> its kernel copy
        self._maps = RuleIndex(rdr=False)           # nat_rules[]
        self._rdrs = RuleIndex(rdr=True)            # rdr_rules[]
        self._nrules = 0                            # ns_rules: loaded, or removed but still used
        ttls = self.tun.tcp_ttls()
        self.tcpq: list[TimeoutQueue[NatSession]] = [TimeoutQueue(ttls[i], TCP_STATE_NAMES[i])
                                                     for i in range(IPF_TCP_NSTATES)]  # nat_tqb
        self.udpq: TimeoutQueue[NatSession] = TimeoutQueue(self.tun.fr_defnatage, "udp")      # nat_udptq
        self.icmpq: TimeoutQueue[NatSession] = TimeoutQueue(self.tun.fr_defnaticmpage, "icmp")  # nat_icmptq
        self.ipq: TimeoutQueue[NatSession] = TimeoutQueue(self.tun.fr_defnatipage, "ip")      # nat_iptq
        self.userq: UserQueues[NatSession] = UserQueues()                                    # nat_utqe
        self._next_die = 0
        self._doflush = False       # fr_nat_doflush
        self._last_force_flush = 0  # nat_last_force_flush
        self._ticks = 0
        # natstat_t
        self.mapped = [0, 0]
        self.added = 0
        self.expired = 0
        self.memfail = 0
        self.badnat = 0
        self.orphans = 0
        self.proxy = ProxyTable(self)  # proxy hook: ap_sess_list and the slave sessions' wildcards (proxy.py)

    # -- time ---------------------------------------------------------------------
    def ticks(self, now: float) -> int:
        """fr_ticks at `now`: half seconds since `epoch`."""
        t = math.floor((now - self.epoch) * IPF_HZ_DIVIDE)
        if t > self._ticks:
            self._ticks = t
        return self._ticks

    def now(self) -> int:
        """fr_ticks as of the last call that took a time (state.NatSessionTable)."""
        return self._ticks

    # -- rules --------------------------------------------------------------------
    def add_rule(self, rule: NatRule) -> ActiveRule:
        """nat_siocaddnat() for a rule already checked by state.IpnatState (or
        equivalent): to the end of nat_list and of its hash chain(s)."""
        np = ActiveRule(rule)
        for i in (0, 1):
            if rule.age[i]:
                np.tqehead[i] = self.userq.add(rule.age[i])
        self._rules.append(np)
        self._by_rule[id(rule)] = np
        if np.redir & NAT_REDIRECT:
            self._rdrs.add(np)
        if np.redir & (NAT_MAP | NAT_MAPBLK):
            self._maps.add(np)
        self._nrules += 1
        return np

    def remove_rule(self, rule: NatRule) -> bool:
        """nat_siocdelnat(): out of the lists; sessions made by it live on, and
        it stays counted in ns_rules until the last of them goes (IPN_DELETE)."""
        np = self._by_rule.pop(id(rule), None)
        if np is None:
            return False
        self._unlink(np)
        return True

    def _unlink(self, np: ActiveRule) -> None:
        if np in self._rules:
            self._rules.remove(np)
        self._maps.remove(np)
        self._rdrs.remove(np)
        for q in np.tqehead:
            if q is not None:
                self.userq.release(q)
        if np.use == 0:
            self._nrules -= 1
        else:
            np.deleted = True

    def clear_rules(self) -> int:
        """nat_clearlist(): every rule goes; returns how many there were."""
        n = len(self._rules)
        for np in list(self._rules):
            self._unlink(np)
        self._by_rule.clear()
        self._maps.clear()
        self._rdrs.clear()
        return n

    def sync_rules(self, rules: Sequence[NatRule]) -> None:
        """Follow state.IpnatState.rules: rules still there keep their kernel
        state (next address, next port, hits, round-robin place), new ones
        are added at the end, missing ones removed."""
        want = {id(r) for r in rules}
        for r in [np.rule for np in self._rules if id(np.rule) not in want]:
            self.remove_rule(r)
        for r in rules:
            if id(r) not in self._by_rule:
                self.add_rule(r)
        order = {id(r): i for i, r in enumerate(rules)}
        self._rules.sort(key=lambda np: order[id(np.rule)])

    def rules(self) -> list[ActiveRule]:
        """nat_list order."""
        return list(self._rules)

    def active(self, rule: NatRule) -> ActiveRule | None:
        return self._by_rule.get(id(rule))

    # -- sessions -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.table)

    def hostmaps(self) -> Iterator[HostMap]:
        """The host mappings (ipf_hm_maptable), for `ipnat -lv`."""
        return iter(self.hostmap_table)

    def sessions(self) -> Iterator[NatSession]:
        """nat_instances: newest first (state.NatSessionTable)."""
        return iter(self.table)

    def inlookup(self, ifname: str, p: int, src: int, dst: int, sport: int, dport: int) -> NatSession | None:
        """nat_inlookup(): a session by remote address/port (src) and outside
        address/port (dst).  An empty `ifname` matches any interface."""
        return self.table.get_out((p, src, dst, sport, dport), ifname)

    def outlookup(self, ifname: str, p: int, src: int, dst: int, sport: int, dport: int) -> NatSession | None:
        """nat_outlookup(): a session by inside address/port (src) and remote
        address/port (dst)."""
        return self.table.get_in((p, src, dst, sport, dport), ifname)

    def lookup_redir(self, p: int, inip: int, inport: int, outip: int, outport: int) -> NatSession | None:
        """nat_lookupredir() without IPN_IN (SIOCGNATL, what a transparent proxy
        asks): the session of the connection inip:inport -> outip:outport as
        seen on the inside; its `outip`/`outport` are nl_realip/nl_realport."""
        return self.outlookup("", p, inip, outip, inport, outport)

    def flush(self) -> int:
        """nat_flushtable() (`ipnat -F`): every session goes; returns how many."""
        n = 0
        for nat in list(self.table):
            self._delete(nat, NL_FLUSH)
            n += 1
        return n

    def sync(self, ifname: str | None = None) -> int:
        """fr_natsync(): after an interface's address changed, non-TCP sessions
        of `map ... -> 0/32` rules on it take the new address (TCP ones keep
        the old: changing it would break them anyway).  The kernel changes
        nat_outip without moving the entry to its new nat_table[1] chain, so
        replies to the new address are not found; here it is moved."""
        changed = 0
        for nat in list(self.table):
            np = nat.rule
            if nat.flags & IPN_TCP or np is None or np.outip != 0 or np.outmsk != ALL_ONES or not np.is_map:
                continue
            if ifname is not None and ifname not in nat.ifnames:
                continue
            new = self.ifaddr(nat.ifnames[0])
            if new is None or new == nat.outip:
                continue
            self.table.rekey_out(nat, new)
            changed += 1
        return changed

    # -- statistics -----------------------------------------------------------------
    def stats(self) -> NatStats:
        """natstat_t (SIOCGNATS), as state.NatStats."""
        return NatStats(mapped=(self.mapped[0], self.mapped[1]), added=self.added, expired=self.expired,
                        memfail=self.memfail, badnat=self.badnat, inuse=len(self.table), orphans=self.orphans,
                        wilds=0, buckets=tuple(self.table.bucketlen[0]),
                        tcp_states=tuple(len(q) for q in self.tcpq),
                        rule_hits=tuple(np.hits for np in self._rules))

    @property
    def nrules(self) -> int:
        """ns_rules."""
        return self._nrules

    # -- expiry ---------------------------------------------------------------------
    def _queues(self) -> Iterator[TimeoutQueue[NatSession]]:
        yield from self.tcpq
        yield self.udpq
        yield self.icmpq
        yield self.ipq
        yield from self.userq

    def expire(self, now: float) -> int:
        """fr_natexpire(): sessions whose time has come go; then, if the table
        filled up since, nat_extraflush(2).  Returns how many went."""
        return self._expire(self.ticks(now))

    def _expire(self, ticks: int) -> int:
        if len(self.frags):
            self.frags.expire(ticks)
        if ticks < self._next_die and not self._doflush:
            return 0
        n = 0
        nxt = 1 << 62
        for q in self._queues():
            while True:
                e = q.head()
                if e is None:
                    break
                if e.die > ticks:
                    nxt = min(nxt, e.die)
                    break
                self._delete(e, NL_EXPIRE)
                n += 1
        self.userq.collect()
        self._next_die = nxt
        if self._doflush:
            if ticks - self._last_force_flush > ipf_ttlval(5):
                self._last_force_flush = ticks
                n += queue_flush(self._queues(), ticks, lambda nat: self._delete(nat, NL_FLUSH))
            self._doflush = False
        return n

    def _enqueue(self, nat: NatSession, q: TimeoutQueue[NatSession], ticks: int) -> None:
        move_queue(nat, nat.queue, q, ticks)
        nat.queue = q
        if nat.die < self._next_die:
            self._next_die = nat.die

    # -- making and deleting sessions ------------------------------------------------
    def _default_queue(self, nat: NatSession, rev: int) -> TimeoutQueue[NatSession]:
        """fr_setnatqueue(): the rule's age for this direction, else by protocol."""
        np = nat.rule
        q = np.tqehead[rev] if np is not None else None
        if q is not None:
            return q
        if nat.p == IPPROTO_UDP:
            return self.udpq
        if nat.p == IPPROTO_ICMP:
            return self.icmpq
        if nat.p == IPPROTO_TCP:
            return self.tcpq[nat.tcpstate[rev]]
        return self.ipq

    def _rule_of(self, hm: HostMap) -> ActiveRule | None:
        np = hm.rule
        return np if np is not None and not np.deleted else None

    def _nat_new(self, fin: PacketInfo, np: ActiveRule, ifname: str, direction: int,
                 ticks: int) -> NatSession | None:
        """nat_new() + nat_finalise() + nat_insert()."""
        if len(self.table) >= self.table_max:
            self.memfail += 1
            self._doflush = True
            return None
        nm: NewMap | None
        if direction == NAT_OUTBOUND:
            nm = nat_newmap(self.ctx, np, fin, ifname)
        else:
            nm = nat_newrdr(self.ctx, np, fin, ifname, self._rule_of)
        if nm is None:
            self.badnat += 1
            return None
        np = nm.rule
        if nm.move and np.flags & IPN_ROUNDR:
            if np.redir == NAT_REDIRECT:
                self._rdrs.move_to_end(np)
            elif np.redir == NAT_MAP:
                self._maps.move_to_end(np)
        nat = NatSession(inip=nm.inip, inport=nm.inport, outip=nm.outip, outport=nm.outport, oip=nm.oip,
                         oport=nm.oport, p=fin.p, flags=fin.nflags, dir=direction, rule=np,
                         ifnames=(np.ifname, np.ifname2), created=ticks)
        nat.hostmap = nm.hostmap
        if not self.table.insert(nat):
            self._doflush = True
            self.badnat += 1
            if nm.hostmap is not None:
                self.hostmap_table.release(nm.hostmap)
            return None
        self._enqueue(nat, self._default_queue(nat, 0), ticks)
        self.added += 1
        np.use += 1
        return nat

    def _delete(self, nat: NatSession, logtype: str) -> None:
        """nat_delete()."""
        if not nat.alive:
            return
        nat.alive = False
        self.table.remove(nat)
        if nat.queue is not None:
            nat.queue.remove(nat)
            nat.queue = None
        if logtype == NL_EXPIRE:
            self.expired += 1
        hm = nat.hostmap
        if isinstance(hm, HostMap):
            self.hostmap_table.release(hm)
        nat.hostmap = None
        np = nat.rule
        if np is not None:  # fr_ipnatderef()
            np.space += 1
            np.use -= 1
            if np.use == 0 and np.deleted:
                self._nrules -= 1

    # -- rule matching -------------------------------------------------------------------
    @staticmethod
    def _nat_match(fin: PacketInfo, np: ActiveRule, out: bool) -> bool:
        """nat_match(): a from/to rule against a packet."""
        if np.p and fin.p != np.p:
            return False
        f = np.flags
        if out:
            if not np.redir & (NAT_MAP | NAT_MAPBLK):
                return False
            if ((fin.saddr & np.inmsk) != np.inip) ^ bool(f & IPN_NOTSRC):
                return False
            if ((fin.daddr & np.srcmsk) != np.srcip) ^ bool(f & IPN_NOTDST):
                return False
        else:
            if not np.redir & NAT_REDIRECT:
                return False
            if ((fin.saddr & np.srcmsk) != np.srcip) ^ bool(f & IPN_NOTSRC):
                return False
            if ((fin.daddr & np.outmsk) != np.outip) ^ bool(f & IPN_NOTDST):
                return False
        r = np.rule
        if fin.p not in (IPPROTO_TCP, IPPROTO_UDP) or fin.short or fin.off:
            return not r.sport.cmp and not r.dport.cmp
        return r.sport.matches(fin.data0) and r.dport.matches(fin.data1)  # fr_tcpudpchk()

    @staticmethod
    def _proxy_ok(fin: PacketInfo, np: ActiveRule, out: bool) -> bool:
        """The rule-side checks before appr_ok(): a map ... proxy rule without
        from/to only takes packets to the proxy's port.  The proxies
        themselves (payload rewriting) are not done here."""
        r = np.rule
        if not r.plabel:
            return True
        if r.proto and fin.p != r.proto:
            return False
        if fin.p == IPPROTO_TCP and not fin.nflags & IPN_TCPUDP:
            return False
        if out and not np.flags & IPN_FILTER:
            port = r.proxy_port or r.dport.port
            if port and fin.data1 != port:
                return False
        return True

    def _map_rules(self, fin: PacketInfo, ifname: str) -> Iterator[ActiveRule]:
        """fr_checknatout()'s maskloop: the map-side rules that match."""
        nflags = fin.nflags
        ipa = fin.saddr
        for np in self._maps.candidates(ipa):
            if np.ifname2 not in ("", "*", "-", ifname):
                continue
            if np.p and np.p != fin.p:
                continue
            if np.flags & IPN_RF and not np.flags & nflags:
                continue
            if np.flags & IPN_FILTER:
                if not self._nat_match(fin, np, True):
                    continue
            elif ipa & np.inmsk != np.inip:
                continue
            if not self._proxy_ok(fin, np, True):
                continue
            yield np

    def _rdr_rules(self, fin: PacketInfo, ifname: str) -> Iterator[ActiveRule]:
        """fr_checknatin()'s maskloop: the rdr-side rules that match."""
        nflags = fin.nflags
        dst = fin.daddr
        if nflags & IPN_TCPUDP:
            dport = fin.data1
        elif nflags & IPN_ICMPQUERY:
            dport = fin.data1
        else:
            dport = 0
        for np in self._rdrs.candidates(dst):
            if np.ifname not in ("", "*", "-", ifname):
                continue
            if np.p and np.p != fin.p:
                continue
            if np.flags & IPN_RF and not np.flags & nflags:
                continue
            if np.flags & IPN_FILTER:
                if not self._nat_match(fin, np, False):
                    continue
            else:
                if dst & np.outmsk != np.outip:
                    continue
                if np.pmin and (np.pmax < dport or dport < np.pmin):
                    continue
            if not self._proxy_ok(fin, np, False):
                continue
            yield np

    # -- the packet path -------------------------------------------------------------------
    def check_out(self, ifname: str, pkt: WBuffer, now: float) -> NatVerdict:
        """fr_checknatout(): NAT for a packet leaving by `ifname`."""
        ticks = self.ticks(now)
        self._expire(ticks)
        if self._nrules == 0:
            return UNTOUCHED
        fin = PacketInfo.parse(pkt)
        if fin is None:
            return UNTOUCHED
        nflags = fin.nflags
        natadd = True
        created = icmp = frag = False
        nat: NatSession | None = None
        if fin.icmperr:
            nat = nat_icmperror(self, fin, pkt, ifname, NAT_OUTBOUND)
            if nat is not None:
                nflags = IPN_ICMPERR
                icmp = True
        if nat is None and fin.frag:
            nat = self.frags.known(ifname, fin, ticks)
            if nat is not None:
                natadd = False
                frag = True
        if nat is None:
            sp, dp = _lookup_ports(fin)
            if nflags & IPN_ICMPQUERY:
                sp, dp = fin.data1, 0
            nat = self.table.get_in((fin.p, fin.saddr, fin.daddr, sp, dp), ifname)
            if nat is None:  # proxy hook: nat_outlookup()'s wildcard search (slave sessions)
                nat = self.proxy.wild_lookup(fin, ifname, NAT_OUTBOUND)
            if nat is not None:
                nflags = nat.flags
        if nat is None:
            failed = False
            for np in self._map_rules(fin, ifname):
                nat = self._nat_new(fin, np, ifname, NAT_OUTBOUND, ticks)
                if nat is not None and np.rule.plabel:  # proxy hook: nat_finalise()'s appr_new()
                    self.proxy.appr_new(pkt, fin, nat, ifname, ticks)
                if nat is not None:
                    np.hits += 1
                    created = True
                    break
                failed = True
            if nat is None:
                return REFUSED if failed else UNTOUCHED
        self._natout(fin, pkt, nat, natadd, nflags, ifname, ticks)
        nat.touched = ticks
        if nat.rule is not None and nat.rule.rule.plabel:  # proxy hook: fr_natout() ends with appr_check()
            if self.proxy.appr_check(pkt, nat, True, nflags, ifname, ticks) == -1:
                return NatVerdict(-1, nat, created, icmp, frag)
        return NatVerdict(1, nat, created, icmp, frag)

    def check_in(self, ifname: str, pkt: WBuffer, now: float) -> NatVerdict:
        """fr_checknatin(): NAT for a packet arriving on `ifname`."""
        ticks = self.ticks(now)
        self._expire(ticks)
        if self._nrules == 0:
            return UNTOUCHED
        fin = PacketInfo.parse(pkt)
        if fin is None:
            return UNTOUCHED
        nflags = fin.nflags
        natadd = True
        created = icmp = frag = False
        nat: NatSession | None = None
        if fin.icmperr:
            nat = nat_icmperror(self, fin, pkt, ifname, NAT_INBOUND)
            if nat is not None:
                nflags = IPN_ICMPERR
                icmp = True
        if nat is None and fin.frag:
            nat = self.frags.known(ifname, fin, ticks)
            if nat is not None:
                natadd = False
                frag = True
        if nat is None:
            sp, dp = _lookup_ports(fin)
            if nflags & IPN_ICMPQUERY:
                sp, dp = 0, fin.data1
            nat = self.table.get_out((fin.p, fin.saddr, fin.daddr, sp, dp), ifname)
            if nat is None:  # proxy hook: nat_inlookup()'s wildcard search (slave sessions)
                nat = self.proxy.wild_lookup(fin, ifname, NAT_INBOUND)
            if nat is not None:
                nflags = nat.flags
        if nat is None:
            failed = False
            for np in self._rdr_rules(fin, ifname):
                nat = self._nat_new(fin, np, ifname, NAT_INBOUND, ticks)
                if nat is not None and np.rule.plabel:  # proxy hook: nat_finalise()'s appr_new()
                    self.proxy.appr_new(pkt, fin, nat, ifname, ticks)
                if nat is not None:
                    np.hits += 1
                    created = True
                    break
                failed = True
            if nat is None:
                return REFUSED if failed else UNTOUCHED
        if nat.rule is not None and nat.rule.rule.plabel:  # proxy hook: fr_natin() starts with appr_check()
            if self.proxy.appr_check(pkt, nat, False, nflags, ifname, ticks) == -1:
                return NatVerdict(-1, nat, created, icmp, frag)
            fin = PacketInfo.parse(pkt) or fin  # the proxy may have resized it
        self._natin(fin, pkt, nat, natadd, nflags, ifname, ticks)
        nat.touched = ticks
        return NatVerdict(1, nat, created, icmp, frag)

    def _natout(self, fin: PacketInfo, pkt: WBuffer, nat: NatSession, natadd: bool, nflags: int, ifname: str,
                ticks: int) -> None:
        """fr_natout()."""
        if natadd and fin.frag and nat.rule is not None:
            self.frags.new(ifname, fin, nat, ticks)
        nat.bytes[1] += fin.plen
        nat.pkts[1] += 1
        if nflags == IPN_ICMPERR:
            rewrite_icmperr_out(pkt, nat)
        else:
            rewrite_out(pkt, fin, nat, nflags)
        self._nat_update(fin, pkt, nat, int(nat.dir == NAT_INBOUND), nflags, ticks)
        self.mapped[1] += 1

    def _natin(self, fin: PacketInfo, pkt: WBuffer, nat: NatSession, natadd: bool, nflags: int, ifname: str,
               ticks: int) -> None:
        """fr_natin()."""
        if natadd and fin.frag and nat.rule is not None:
            self.frags.new(ifname, fin, nat, ticks)
        nat.bytes[0] += fin.plen
        nat.pkts[0] += 1
        if nflags == IPN_ICMPERR:
            rewrite_icmperr_in(pkt, nat)
        else:
            rewrite_in(pkt, fin, nat, nflags)
        self._nat_update(fin, pkt, nat, int(nat.dir == NAT_OUTBOUND), nflags, ticks)
        self.mapped[0] += 1

    def _nat_update(self, fin: PacketInfo, pkt: WBuffer, nat: NatSession, rev: int, nflags: int,
                    ticks: int) -> None:
        """nat_update(): refresh the session's age.  `rev` is nat_proto()'s
        fin_rev: 1 for a packet going against the session's first direction.
        A rule `age` for that direction wins, even for TCP; else TCP follows
        fr_tcp_age() and the others their protocol's queue."""
        np = nat.rule
        q = np.tqehead[rev] if np is not None else None
        if nat.p == IPPROTO_TCP and q is None:
            if nflags == IPN_ICMPERR or not fin.nflags & IPN_TCP:
                return  # no TCP header in this packet to age the connection by
            doff = (pkt[fin.hlen + 12] >> 4) << 2
            rval, nstate = tcp_age(nat.tcpstate, rev, fin.tcp_flags, fin.dlen - doff)
            if rval == 1:
                nat.tcpstate[rev] = nstate
                self._enqueue(nat, self.tcpq[nstate], ticks)
            return
        if q is None:
            q = self.udpq if nat.p == IPPROTO_UDP else self.icmpq if nat.p == IPPROTO_ICMP else self.ipq
        self._enqueue(nat, q, ticks)


if TYPE_CHECKING:
    def _is_session_table(t: IpnatTable) -> NatSessionTable:
        """mypy checks here that IpnatTable is the hook state.IpnatState expects."""
        return t
