"""The connection tracking table (net/netfilter/nf_conntrack_core.c).

Theory of operation.  A packet goes through two calls, as in the kernel:

1. `nf_conntrack_in()` at the first hook (PREROUTING, or LOCAL_OUT for
   local packets) finds the connection by either direction's tuple, or
   allocates a new, *unconfirmed* one, runs the protocol tracker and returns
   the connection and the ctinfo (NEW, ESTABLISHED, RELATED, and their
   REPLY variants).  A malformed or out-of-state packet comes back with no
   connection: it is INVALID, and the ruleset decides.
2. `confirm()` at the last hook (POSTROUTING, or LOCAL_IN) inserts an
   unconfirmed connection into the table.  A packet dropped in between
   (filter, NAT exhaustion) leaves nothing behind: nobody holds the entry.

Lookups are one dict access on an int key per direction (see tuple.py).
Expiry is lazy: an expired entry found by a lookup is deleted then, and
`gc()` walks the table a bounded slice at a time, like gc_worker, so memory
comes back without a clock thread.  Time is always the caller's `now`.

When the table holds ``nf_conntrack_max`` entries a new connection tries
`early_drop()`, which evicts the oldest entry that is not ASSURED; assured
entries are never evicted there.  If none can go, the new packet is dropped
("table full") and the following gc passes also drop unassured and
closing-TCP entries while the table is above 95 %, as gc_worker does after
a failed early drop.  (The kernel looks for unassured entries in the 8 hash
buckets after the new tuple's, dropping all it finds in the first bucket
that has some: bounded, but not "oldest".  ipgate keeps the unassured
entries in confirmation order instead, so the choice is deterministic; stale
references to entries since assured or gone are skipped, each once.)

The walk order is a deque of confirmed entries (dead ones are skipped when
met, and squeezed out when they pass an eighth of the table): it serves as
the gc cursor and the listing order.  The kernel lists in hash order, which
depends on a boot-time random seed; ipgate lists in insertion order.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from ipgate.conntrack.conn import (
    IP_CT_ESTABLISHED,
    IP_CT_ESTABLISHED_REPLY,
    IP_CT_IS_REPLY,
    IP_CT_NEW,
    IP_CT_RELATED,
    IPCT_ASSURED,
    IPCT_DESTROY,
    IPCT_NEW,
    IPCT_RELATED,
    IPCT_REPLY,
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_DYING,
    IPS_EXPECTED,
    IPS_SEEN_REPLY,
    IPS_SRC_NAT,
    NF_ACCEPT,
    NF_DROP,
    NF_INET_PRE_ROUTING,
    NF_REPEAT,
    Conn,
)
from ipgate.conntrack.expect import ExpectTable
from ipgate.conntrack.proto import (
    can_early_drop,
    generic_packet,
    get_key,
    gre_packet,
    icmp_error,
    icmp_packet,
    udp_error,
    udp_packet,
    udplite_error,
    udplite_packet,
)
from ipgate.conntrack.sysctl import CtSysctl
from ipgate.conntrack.tcp import TcpSeg, tcp_packet
from ipgate.conntrack.tuple import (
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPPROTO_UDPLITE,
    Tuple,
    invert_key,
)
from ipgate.packet.checksum import Buffer as Buf
from ipgate.packet.fastnew import new_tuple

# No connection: the packet is INVALID (the kernel leaves skb->_nfct empty).
CT_INVALID = -1

_IPH = struct.Struct("!BBHHHBBHQ")


def bysrc_key(okey: int) -> int:
    """hash_by_src(): source address, source port (or ICMP id) and protocol of an ORIGINAL key."""
    return ((okey >> 72) << 24) | (((okey >> 24) & 0xFFFF) << 8) | (okey & 0xFF)


class CtResult(NamedTuple):
    """What nf_conntrack_in() leaves on the packet: verdict, connection, ctinfo, and why.

    A NamedTuple rather than a frozen dataclass: one is built per packet, and
    a tuple is built in half the time (measured).
    """

    verdict: int   # NF_ACCEPT or NF_DROP
    ct: Conn | None
    ctinfo: int    # IP_CT_*; CT_INVALID when ct is None
    reason: str    # why invalid, dropped, or (TCP) ignored; "" otherwise


@dataclass(slots=True)
class CtStats:
    """struct ip_conntrack_stat (one CPU)."""

    found: int = 0
    invalid: int = 0
    insert: int = 0
    insert_failed: int = 0
    drop: int = 0
    early_drop: int = 0
    error: int = 0
    expect_new: int = 0
    expect_create: int = 0
    expect_delete: int = 0
    search_restart: int = 0
    clash_resolve: int = 0
    chaintoolong: int = 0


class ConntrackTable:
    """One network namespace's conntrack table."""

    def __init__(self, sysctl: CtSysctl | None = None, *, events: bool = False) -> None:
        self.sysctl = sysctl if sysctl is not None else CtSysctl()
        self.stats = CtStats()
        self._hash: dict[int, Conn] = {}
        self._walk: deque[Conn] = deque()
        self.count = 0  # confirmed, live entries
        self._unassured: deque[Conn] = deque()  # early-drop candidates, oldest first (may hold stale refs)
        self._n_unassured = 0
        self.expect = ExpectTable(self.stats, lambda: self.sysctl.expect_max)
        self.destroy_hooks: list[Callable[[Conn], None]] = []
        self.events: list[tuple[int, Conn]] | None = [] if events else None  # the reader drains it
        self.gc_early_drop = False  # conntrack_gc_work.early_drop
        # nf_nat_bysource (nat/core.py): bysrc_key() -> the source-NATed connection(s) from that
        # source, newest first; a lone connection is stored as itself, not in a list.
        self.nat_bysource: dict[int, Conn | list[Conn]] = {}

    def __len__(self) -> int:
        return self.count

    # -- lookup --------------------------------------------------------------
    def find(self, key: int, now: float) -> tuple[Conn, int] | None:
        """nf_conntrack_find_get(): (ct, direction) of a confirmed, unexpired entry."""
        ct = self._hash.get(key)
        if ct is None:
            return None
        if ct.timeout <= now:
            self.kill(ct, now)  # nf_ct_gc_expired()
            return None
        return ct, (0 if ct.okey == key else 1)

    def lookup(self, t: Tuple, now: float) -> tuple[Conn, int] | None:
        return self.find(t.key, now)

    def tuple_taken(self, key: int, ignored: Conn | None, now: float) -> bool:
        """nf_conntrack_tuple_taken(): is `key` a tuple of some other connection?

        Only exception, as in the kernel: an entry with the same ORIGINAL
        tuple is the same flow (left to clash resolution).
        """
        ct = self._hash.get(key)  # find(), without building its (ct, direction) pair
        if ct is None:
            return False
        if ct.timeout <= now:
            self.kill(ct, now)  # nf_ct_gc_expired()
            return False
        if ct is ignored:
            return False
        return not (ignored is not None and ct.okey == ignored.okey)

    # -- the packet path -----------------------------------------------------
    def nf_conntrack_in(self, pkt: Buf, now: float, hook: int = NF_INET_PRE_ROUTING, *,
                        csum_valid: bool = False) -> CtResult:
        """nf_conntrack_in() for an IPv4 packet (`pkt` starts at the IP header).

        Fragments must have been reassembled before (the kernel's defrag
        hook runs first); one that arrives here is INVALID.  `csum_valid`:
        the L4 checksum is known good (skb_csum_unnecessary(): the NIC checked
        it, or a local sender's offload will fill it in), so nf_ip_checksum()
        is skipped, as the kernel skips it.
        """
        try:
            vihl, _tos, tot_len, _id, frag, _ttl, proto, _ck, sd = _IPH.unpack_from(pkt)
        except struct.error:
            return self._invalid("short IP header")
        ihl = (vihl & 0xF) * 4
        skblen = min(tot_len, len(pkt))
        if vihl >> 4 != 4 or ihl < 20 or skblen < ihl:
            return self._invalid("bad IP header")
        if frag & 0x3FFF:
            return self._invalid("fragment (defragment before conntrack)")
        l4len = skblen - ihl
        try:
            return self._in(pkt, now, hook, proto, ihl, l4len, skblen, sd,
                            bool(self.sysctl.checksum) and not csum_valid)
        except (struct.error, IndexError):
            return self._invalid("truncated header")

    def _in(self, pkt: Buf, now: float, hook: int, proto: int, dataoff: int, l4len: int, skblen: int,
            sd: int, csum: bool) -> CtResult:
        """`csum`: verify L4 checksums (nf_conntrack_checksum, and not known good already)."""
        if proto == IPPROTO_ICMP:
            verdict, rct, rinfo, reason = icmp_error(self, pkt, dataoff, l4len, hook, now, sd & 0xFFFFFFFF, csum)
            if verdict <= 0:
                self.stats.error += 1
                return self._invalid(reason)
            if rct is not None:
                return CtResult(NF_ACCEPT, rct, rinfo, "")
        key = get_key(pkt, dataoff, l4len, proto, sd)
        if key < 0:
            return self._invalid("no tuple")
        while True:  # -NF_REPEAT comes back here
            ct = self._hash.get(key)
            if ct is not None and ct.timeout <= now:
                self.kill(ct, now)
                ct = None
            if ct is None:
                ct, reason = self._init_conntrack(key, now)
                if ct is None:
                    if reason:  # table full
                        self.stats.drop += 1
                        return CtResult(NF_DROP, None, CT_INVALID, reason)
                    return self._invalid("not a valid part of a connection")
                ctinfo = IP_CT_RELATED if ct.status & IPS_EXPECTED else IP_CT_NEW
            elif ct.okey == key:
                self.stats.found += 1
                status = ct.status
                ctinfo = (IP_CT_ESTABLISHED if status & IPS_SEEN_REPLY
                          else IP_CT_RELATED if status & IPS_EXPECTED else IP_CT_NEW)
            else:
                self.stats.found += 1
                ctinfo = IP_CT_ESTABLISHED_REPLY

            verdict, reason = self._handle_packet(ct, pkt, dataoff, l4len, skblen, ctinfo, proto, now, hook, csum)
            if verdict <= 0:
                if verdict == -NF_REPEAT:
                    continue
                self.stats.invalid += 1
                if verdict == NF_DROP:
                    self.stats.drop += 1
                return CtResult(-verdict if verdict < 0 else NF_DROP, None, CT_INVALID, reason)
            if ctinfo == IP_CT_ESTABLISHED_REPLY and not ct.status & IPS_SEEN_REPLY:
                ct.set_status(IPS_SEEN_REPLY)
                self.event(IPCT_REPLY, ct)
            # reason: why a segment was only "ignored"
            return new_tuple(CtResult, (NF_ACCEPT, ct, ctinfo, reason))

    def _invalid(self, reason: str) -> CtResult:
        self.stats.invalid += 1
        return CtResult(NF_ACCEPT, None, CT_INVALID, reason)

    def _handle_packet(self, ct: Conn, pkt: Buf, dataoff: int, l4len: int, skblen: int, ctinfo: int,
                       proto: int, now: float, hook: int, csum: bool) -> tuple[int, str]:
        """nf_conntrack_handle_packet(): the protocol tracker."""
        if proto == IPPROTO_TCP:
            if l4len < 20:
                return -NF_ACCEPT, "short tcp header"
            return tcp_packet(self, ct, TcpSeg(pkt, dataoff, l4len, skblen), ctinfo, now, hook, csum)
        if proto == IPPROTO_UDP:
            err = udp_error(pkt, dataoff, l4len, hook, csum)
            if err:
                return -NF_ACCEPT, err
            udp_packet(self, ct, ctinfo, skblen, now)
            return NF_ACCEPT, ""
        if proto == IPPROTO_ICMP:
            return icmp_packet(self, ct, ctinfo, skblen, now)
        if proto == IPPROTO_UDPLITE:
            err = udplite_error(pkt, dataoff, l4len)
            if err:
                return -NF_ACCEPT, err
            udplite_packet(self, ct, ctinfo, skblen, now)
            return NF_ACCEPT, ""
        if proto == IPPROTO_GRE:
            gre_packet(self, ct, ctinfo, skblen, now)
            return NF_ACCEPT, ""
        generic_packet(self, ct, ctinfo, skblen, now)
        return NF_ACCEPT, ""

    def _init_conntrack(self, key: int, now: float) -> tuple[Conn | None, str]:
        """init_conntrack(): a new unconfirmed entry; (None, reason) when the table is full."""
        rkey = invert_key(key)
        if rkey < 0:
            return None, ""
        sysctl = self.sysctl
        if sysctl.max and self.count + 1 > sysctl.max and not self.early_drop(now):
            self.gc_early_drop = True
            return None, "nf_conntrack: table full, dropping packet"
        ct = Conn(key, rkey)
        if sysctl.acct:
            ct.acct = [0, 0, 0, 0]
        if self.expect.count:
            exp = self.expect.find(key, now)
            if exp is not None:
                # Welcome, Mr. Bond.  We've been expecting you...
                ct.set_status(IPS_EXPECTED)
                ext = ct.get_ext()
                ext.master = exp.master
                ext.helper = exp.helper
                ct.mark = exp.master.mark
                if exp.master.ext is not None:
                    ext.secmark = exp.master.ext.secmark
                self.stats.expect_new += 1
                if exp.expectfn is not None:
                    exp.expectfn(ct, exp)
        return ct, ""

    def confirm(self, ct: Conn | None, ctinfo: int, now: float) -> int:
        """nf_conntrack_confirm() at the last hook: NF_ACCEPT, or NF_DROP if the entry cannot go in.

        Without concurrent CPUs a clash can only come from a NAT mapping
        that became taken after it was chosen; the kernel's clash resolution
        (merging identical UDP entries) is not needed and not done.
        """
        if ct is None or ct.status & IPS_CONFIRMED:
            return NF_ACCEPT
        if ctinfo >= IP_CT_IS_REPLY:
            return NF_ACCEPT  # REJECT's attached packets
        if ct.status & IPS_DYING:
            self.stats.insert_failed += 1
            return NF_DROP
        if self.find(ct.okey, now) is not None or self.find(ct.rkey, now) is not None:
            self.stats.insert_failed += 1
            self.stats.drop += 1
            return NF_DROP
        ct.timeout += now  # relative to confirmation, not creation
        self._hash[ct.okey] = ct
        self._hash[ct.rkey] = ct
        self._walk.append(ct)
        self.count += 1
        if not ct.status & IPS_ASSURED:
            self._unassured.append(ct)
            self._n_unassured += 1
        ct.set_status(IPS_CONFIRMED)
        self.stats.insert += 1
        self.event(IPCT_RELATED if ct.status & IPS_EXPECTED else IPCT_NEW, ct)
        return NF_ACCEPT

    def alter_reply(self, ct: Conn, reply: Tuple) -> None:
        """nf_conntrack_alter_reply(): NAT rewrites an unconfirmed entry's reply tuple."""
        self.alter_reply_key(ct, reply.key)

    def alter_reply_key(self, ct: Conn, rkey: int) -> None:
        """nf_conntrack_alter_reply() with the reply tuple as a key."""
        if ct.status & IPS_CONFIRMED:
            raise ValueError("cannot alter the reply tuple of a confirmed connection")
        ct.rkey = rkey

    # -- removal -------------------------------------------------------------
    def kill(self, ct: Conn, now: float = 0.0) -> bool:
        """nf_ct_kill() / nf_ct_delete(): False if it was already dying."""
        if ct.status & IPS_DYING:
            return False
        ct.set_status(IPS_DYING)
        if not ct.status & IPS_CONFIRMED:
            return True
        h = self._hash
        if h.get(ct.okey) is ct:
            del h[ct.okey]
        if h.get(ct.rkey) is ct:
            del h[ct.rkey]
        self.count -= 1
        if not ct.status & IPS_ASSURED:
            self._n_unassured -= 1
        if ct.status & IPS_SRC_NAT and self.nat_bysource:
            self.bysource_remove(ct)
        ext = ct.ext
        if ext is not None and ext.expectations:
            self.expect.remove_for_master(ct)
        for hook in self.destroy_hooks:
            hook(ct)
        self.event(IPCT_DESTROY, ct)
        walk = self._walk
        if len(walk) - self.count > (self.count >> 3) + 1024:
            self._walk = deque(c for c in walk if not c.status & IPS_DYING)
        self._squeeze_unassured()
        return True

    def _squeeze_unassured(self) -> None:
        if len(self._unassured) > 2 * self._n_unassured + 1024:
            self._unassured = deque(c for c in self._unassured if not c.status & (IPS_DYING | IPS_ASSURED))

    # -- the NAT source index (nf_nat_bysource) ---------------------------------
    def bysource_add(self, ct: Conn) -> None:
        """hlist_add_head_rcu(&ct->nat_bysource, ...): newest first."""
        key = bysrc_key(ct.okey)
        cur = self.nat_bysource.get(key)
        if cur is None:
            self.nat_bysource[key] = ct
        elif isinstance(cur, Conn):
            self.nat_bysource[key] = [ct, cur]
        else:
            cur.insert(0, ct)

    def bysource(self, key: int) -> list[Conn]:
        cur = self.nat_bysource.get(key)
        if cur is None:
            return []
        return [cur] if isinstance(cur, Conn) else list(cur)

    def bysource_remove(self, ct: Conn) -> None:
        """nf_nat_cleanup_conntrack(): a dying connection's mapping leaves the index."""
        key = bysrc_key(ct.okey)
        cur = self.nat_bysource.get(key)
        if cur is ct:
            del self.nat_bysource[key]
        elif isinstance(cur, list) and ct in cur:
            cur.remove(ct)
            if len(cur) == 1:
                self.nat_bysource[key] = cur[0]

    def early_drop(self, now: float) -> bool:
        """early_drop(): evict the oldest unassured entry; False when there is none."""
        cand = self._unassured
        while cand:
            ct = cand.popleft()
            if ct.status & (IPS_DYING | IPS_ASSURED):
                continue  # stale: gone, or assured since
            self.kill(ct, now)
            if ct.timeout > now:
                self.stats.early_drop += 1
            return True
        return False

    def gc(self, now: float, budget: int = 4096) -> int:
        """One gc_worker() slice: look at up to `budget` entries; returns how many went."""
        walk = self._walk
        n = min(budget, len(walk))
        killed = 0
        sysctl = self.sysctl
        max95 = sysctl.max // 100 * 95  # 0 for small tables: no early drop there, as in the kernel
        pressure = self.gc_early_drop and max95 and self.count >= max95
        for _ in range(n):
            ct = walk.popleft()
            if ct.status & IPS_DYING:
                continue
            if ct.timeout <= now or (pressure and (not ct.status & IPS_ASSURED or can_early_drop(ct))):
                self.kill(ct, now)
                killed += 1
                continue
            walk.append(ct)
        if self.gc_early_drop and n >= len(walk):
            self.gc_early_drop = False
        return killed

    def next_expiry(self) -> float | None:
        """The earliest expiry among the entries (O(n); for tests and idle timers)."""
        return min((ct.timeout for ct in self._walk if not ct.status & IPS_DYING), default=None)

    def flush(self, now: float = 0.0) -> int:
        """nf_conntrack_flush_report(): delete every entry."""
        n = 0
        for ct in list(self._walk):
            if self.kill(ct, now):
                n += 1
        self._walk = deque()
        self._unassured = deque()
        return n

    # -- views ---------------------------------------------------------------
    def entries(self, now: float) -> Iterator[Conn]:
        """The live entries in walk order; expired ones are deleted on the way (ctnetlink dump)."""
        for ct in list(self._walk):
            if ct.status & IPS_DYING:
                continue
            if ct.timeout <= now:
                self.kill(ct, now)
                continue
            yield ct

    def event(self, kind: int, ct: Conn) -> None:
        """nf_conntrack_event_cache(), recorded only when the table was made with events=True.

        Every tracker reports IPCT_ASSURED when it sets the bit: the count of
        early-drop candidates follows it here.
        """
        if kind == IPCT_ASSURED and ct.status & IPS_CONFIRMED:
            self._n_unassured -= 1
            self._squeeze_unassured()
        if self.events is not None:
            self.events.append((kind, ct))
