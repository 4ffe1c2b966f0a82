"""IPv4 reassembly and fragmentation, as net/ipv4/ip_fragment.c,
net/ipv4/inet_fragment.c and ip_do_fragment() (net/ipv4/ip_output.c) do them.

Theory of operation (reassembly).  A queue is keyed by (saddr, daddr, id,
protocol, user, vif): `user` says who reassembles (local delivery, conntrack
in a zone...), so the same fragments can be queued twice.  A queue lives
`timeout` seconds from its first fragment, however many follow (the kernel's
timer is not pushed back).  Fragments are kept in *runs*, maximal sequences
that arrived contiguous in ascending order, as inet_frag_queue_insert() keeps
them: a fragment that lies inside one run is a duplicate and is dropped
alone; one that overlaps anything otherwise kills the whole queue (RFC 5722,
Linux >= 4.19).  When the first and the last fragments are in and the bytes
held ("meat") equal the length, the datagram is rebuilt on the first
fragment's header.  Memory is accounted as the kernel does (every fragment's
buffer plus the queue), and above `high_thresh` every new fragment is dropped
until timeouts free some; Linux >= 4.17 no longer evicts queues down to
`low_thresh`, which it keeps only as a sysctl, and so does this.
"""

from __future__ import annotations

import heapq
import struct
from dataclasses import dataclass
from typing import TypeAlias

from ipgate.packet.checksum import Buffer, ip_compute_csum
from ipgate.packet.drop import Counters, DropReason, Mib
from ipgate.packet.ipv4 import (
    INET_ECN_MASK,
    IP_DF,
    IP_MAX_LEN,
    IP_MF,
    IP_OFFSET,
    IPv4,
    ip_is_fragment,
    ip_options_fragment,
    parse_ipv4,
)

IP_FRAG_TIME = 30.0  # net.ipv4.ipfrag_time
IPFRAG_HIGH_THRESH = 4 * 1024 * 1024  # net.ipv4.ipfrag_high_thresh
IPFRAG_LOW_THRESH = 3 * 1024 * 1024  # net.ipv4.ipfrag_low_thresh (obsolete since 4.17)
IPFRAG_MAX_DIST = 64  # net.ipv4.ipfrag_max_dist

# enum ip_defrag_users (include/net/ip.h): conntrack's users are per zone.
IP_DEFRAG_LOCAL_DELIVER = 0
IP_DEFRAG_CALL_RA_CHAIN = 1
IP_DEFRAG_CONNTRACK_IN = 2
_IP_DEFRAG_CONNTRACK_IN_END = IP_DEFRAG_CONNTRACK_IN + 0xFFFF
IP_DEFRAG_CONNTRACK_OUT = _IP_DEFRAG_CONNTRACK_IN_END + 1
_IP_DEFRAG_CONNTRACK_OUT_END = IP_DEFRAG_CONNTRACK_OUT + 0xFFFF
IP_DEFRAG_CONNTRACK_BRIDGE_IN = _IP_DEFRAG_CONNTRACK_OUT_END + 1
_IP_DEFRAG_CONNTRACK_BRIDGE_IN_END = IP_DEFRAG_CONNTRACK_BRIDGE_IN + 0xFFFF
IP_DEFRAG_VS_IN = _IP_DEFRAG_CONNTRACK_BRIDGE_IN_END + 1
IP_DEFRAG_VS_OUT = IP_DEFRAG_VS_IN + 1
IP_DEFRAG_VS_FWD = IP_DEFRAG_VS_IN + 2
IP_DEFRAG_AF_PACKET = IP_DEFRAG_VS_IN + 3
IP_DEFRAG_MACVLAN = IP_DEFRAG_VS_IN + 4

# Memory accounting.  The kernel counts skb->truesize, which depends on the
# driver's buffers; this models a linear skb sized to the fragment:
# SKB_TRUESIZE(SKB_DATA_ALIGN(len)) on x86-64, and sizeof(struct ipq).
SKB_TRUESIZE_OVERHEAD = 256 + 320  # SKB_DATA_ALIGN(sizeof(sk_buff)) + ... (skb_shared_info)
IPQ_SIZE = 200


def frag_truesize(length: int) -> int:
    return ((length + 63) & ~63) + SKB_TRUESIZE_OVERHEAD


def nf_ct_defrag_user(zone: int, prerouting: bool) -> int:
    """nf_ct_defrag_user(): conntrack reassembles per zone and per direction."""
    return zone + (IP_DEFRAG_CONNTRACK_IN if prerouting else IP_DEFRAG_CONNTRACK_OUT)


def frag_expire_skip_icmp(user: int) -> bool:
    """frag_expire_skip_icmp(): these users send no "reassembly time exceeded"
    unless the datagram was for this host (ip_expire() checks RTN_LOCAL)."""
    return (user == IP_DEFRAG_AF_PACKET
            or IP_DEFRAG_CONNTRACK_IN <= user <= _IP_DEFRAG_CONNTRACK_IN_END
            or IP_DEFRAG_CONNTRACK_BRIDGE_IN <= user <= _IP_DEFRAG_CONNTRACK_BRIDGE_IN_END)


# ip_frag_ecn_table (net/ipv4/inet_fragment.c), indexed by the OR of
# 1 << (tos & INET_ECN_MASK) over the fragments: CE to add, or 0xFF to drop.
_ECN_NOT_ECT, _ECN_ECT_1, _ECN_ECT_0, _ECN_CE = 1, 2, 4, 8
IP_FRAG_ECN_TABLE = [0] * 16
for _m in (_ECN_CE | _ECN_ECT_0, _ECN_CE | _ECN_ECT_1, _ECN_CE | _ECN_ECT_0 | _ECN_ECT_1):
    IP_FRAG_ECN_TABLE[_m] = 3  # INET_ECN_CE
for _m in range(16):
    if _m & _ECN_NOT_ECT and _m & (_ECN_CE | _ECN_ECT_0 | _ECN_ECT_1):
        IP_FRAG_ECN_TABLE[_m] = 0xFF

_INET_FRAG_FIRST_IN = 1
_INET_FRAG_LAST_IN = 2

_U16 = struct.Struct("!H")

FragKey = tuple[int, int, int, int, int, int]  # saddr, daddr, id, protocol, user, vif


@dataclass(frozen=True, slots=True)
class Reassembled:
    """A whole datagram out of `Defrag.add`."""

    packet: bytearray
    frag_max_size: int  # IPCB(skb)->frag_max_size: the largest fragment, 0 if none
    frag_pmtu: bool  # IPSKB_FRAG_PMTU: that fragment had DF, so refragment with DF


@dataclass(frozen=True, slots=True)
class Expired:
    """A queue that timed out (ip_expire()).  `first` is the first fragment as it
    was queued, if it arrived: what an ICMP "fragment reassembly time exceeded"
    quotes, when one is due (see frag_expire_skip_icmp())."""

    key: FragKey
    first: bytes | None
    iif: int
    deadline: float  # when it expired

    @property
    def user(self) -> int:
        return self.key[4]


@dataclass(frozen=True, slots=True)
class FragNeeded:
    """ip_fragment() refused: DF is set.  The caller sends ICMP 3/4 with this MTU."""

    mtu: int


class _Run:
    __slots__ = ("start", "end", "frags")

    def __init__(self, start: int, end: int, data: bytes) -> None:
        self.start = start
        self.end = end
        self.frags = [data]


class _Queue:
    """struct ipq."""

    __slots__ = ("key", "runs", "flags", "len", "meat", "max_size", "max_df_size", "ecn", "iif",
                 "rid", "deadline", "truesize", "first", "peer")

    def __init__(self, key: FragKey, deadline: float, peer: tuple[int, int] | None) -> None:
        self.key = key
        self.runs: list[_Run] = []  # by start; the last one is where in-order fragments append
        self.flags = 0
        self.len = 0
        self.meat = 0
        self.max_size = 0
        self.max_df_size = 0
        self.ecn = 0
        self.iif = 0
        self.rid = 0
        self.deadline = deadline
        self.truesize = 0  # of the fragments held
        self.first: bytes | None = None  # the offset-0 fragment, header included
        self.peer = peer

    def nfrags(self) -> int:
        return sum(len(r.frags) for r in self.runs)


AddResult: TypeAlias = Reassembled | DropReason | None


class Defrag:
    """The IPv4 fragment queues of one namespace (struct fqdir), sans-IO.

    `add` takes a fragment and the time; `expire` reports the queues whose
    time is up; `next_timer` says when to call it.  `counters` holds the
    IPSTATS MIBs (ReasmReqds, ReasmOKs, ReasmFails, ReasmTimeout,
    ReasmOverlaps) and, by DropReason, every fragment discarded: the one
    passed in and any queued ones thrown away with their queue.
    """

    def __init__(self, *, high_thresh: int = IPFRAG_HIGH_THRESH, low_thresh: int = IPFRAG_LOW_THRESH,
                 timeout: float = IP_FRAG_TIME, max_dist: int = IPFRAG_MAX_DIST) -> None:
        self.high_thresh = high_thresh
        self.low_thresh = low_thresh
        self.timeout = timeout
        self.max_dist = max_dist
        self.mem = 0  # frag_mem_limit()
        self.queues: dict[FragKey, _Queue] = {}
        self.counters = Counters()
        self._timers: list[tuple[float, int, FragKey]] = []
        self._overdue: list[Expired] = []  # queues add() found past their time, for expire()
        self._seq = 0
        self._peers: dict[tuple[int, int], list[int]] = {}  # inet_peer: [rid, queues using it]

    # -- queue life -------------------------------------------------------------
    def _arm(self, q: _Queue, now: float) -> None:
        q.deadline = now + self.timeout
        self._seq += 1
        heapq.heappush(self._timers, (q.deadline, self._seq, q.key))

    def _find(self, key: FragKey, now: float) -> _Queue | None:
        """inet_frag_find(): no queue at all above high_thresh."""
        if not self.high_thresh or self.mem > self.high_thresh:
            return None
        q = self.queues.get(key)
        if q is not None and q.deadline <= now:
            # Its timer is overdue (expire() was not called in time): expire it
            # now, as the kernel's timer would have, and report it at expire().
            self._overdue.append(self._timeout(q))
            q = None
        if q is None:
            peer = None
            if self.max_dist:
                peer = (key[0], key[5])
                self._peers.setdefault(peer, [0, 0])[1] += 1
            q = _Queue(key, 0.0, peer)
            self.queues[key] = q
            self.mem += IPQ_SIZE
            self._arm(q, now)
        return q

    def _flush(self, q: _Queue, reason: DropReason) -> None:
        n = q.nfrags()
        if n:
            self.counters.inc(reason, n)
        self.mem -= q.truesize
        q.truesize = 0
        q.runs = []

    def _kill(self, q: _Queue, reason: DropReason) -> None:
        """inet_frag_kill() + inet_frag_destroy(): the queue and what it holds go."""
        self._flush(q, reason)
        self.mem -= IPQ_SIZE
        del self.queues[q.key]
        if q.peer is not None:
            p = self._peers[q.peer]
            p[1] -= 1
            if not p[1]:
                del self._peers[q.peer]

    def _too_far(self, q: _Queue) -> bool:
        """ip_frag_too_far(): more than max_dist fragments from this source went to
        other queues since this one last got one."""
        if q.peer is None or not self.max_dist:
            return False
        start = q.rid
        p = self._peers[q.peer]
        p[0] = end = (p[0] + 1) & 0xFFFFFFFF
        q.rid = end
        if q.runs and ((end - start) & 0xFFFFFFFF) > self.max_dist:
            self.counters.inc(Mib.REASMFAILS)
            return True
        return False

    def _drop(self, reason: DropReason) -> DropReason:
        self.counters.inc(reason)
        return reason

    # -- the data path -------------------------------------------------------------
    def add(self, pkt: Buffer, now: float, *, user: int = IP_DEFRAG_LOCAL_DELIVER, vif: int = 0,
            iif: int = 0, ip: IPv4 | None = None) -> AddResult:
        """ip_defrag(): queue a fragment.  Returns the whole datagram when this one
        completes it, None when it is held, or why it was dropped.

        `pkt` holds one IPv4 packet at offset 0 (padding past its total length is
        ignored); `ip` is its parse if the caller has it.  A packet that is not a
        fragment comes back whole.
        """
        if ip is None:
            r = parse_ipv4(pkt)
            if isinstance(r, DropReason):
                return self._drop(r)
            ip = r
        if not ip_is_fragment(ip.frag_off):
            return Reassembled(bytearray(pkt[ip.off:ip.off + ip.tot_len]), 0, False)
        c = self.counters
        c.inc(Mib.REASMREQDS)
        key = (ip.saddr, ip.daddr, ip.id, ip.protocol, user, vif)
        q = self._find(key, now)
        if q is None:
            c.inc(Mib.REASMFAILS)
            return self._drop(DropReason.NOMEM)
        if self._too_far(q):  # ip_frag_reinit(): start over, timer re-armed
            self._flush(q, DropReason.FRAG_TOO_FAR)
            q.flags = q.len = q.meat = q.iif = q.ecn = 0
            q.first = None
            self._arm(q, now)
        return self._queue(q, pkt, ip, iif)

    def _queue(self, q: _Queue, pkt: Buffer, ip: IPv4, iif: int) -> AddResult:
        """ip_frag_queue()."""
        c = self.counters
        off0 = ip.off
        ihl = ip.ihl
        offset = (ip.frag_off & IP_OFFSET) << 3
        end = offset + ip.tot_len - ihl
        if not ip.frag_off & IP_MF:
            # The last fragment: nothing may lie beyond it, nor may it move.
            if end < q.len or (q.flags & _INET_FRAG_LAST_IN and end != q.len):
                return self._discard_qp(q, DropReason.FRAG_INVALID)
            q.flags |= _INET_FRAG_LAST_IN
            q.len = end
        else:
            end &= ~7  # a non-last fragment carries whole 8-byte blocks
            if end > q.len:
                if q.flags & _INET_FRAG_LAST_IN:
                    return self._discard_qp(q, DropReason.FRAG_INVALID)
                q.len = end
        if end == offset:
            return self._discard_qp(q, DropReason.FRAG_INVALID)
        data = bytes(pkt[off0 + ihl:off0 + ihl + end - offset])  # pskb_trim_rcsum(skb, end - offset)

        err = self._insert(q, offset, end, data)
        if err is not None:
            if err is DropReason.DUP_FRAG:
                return self._drop(err)
            c.inc(Mib.REASM_OVERLAPS)
            return self._discard_qp(q, err)

        if iif:
            q.iif = iif
        q.meat += end - offset
        q.ecn |= 1 << (ip.tos & INET_ECN_MASK)
        ts = frag_truesize(ihl + end - offset)
        q.truesize += ts
        self.mem += ts
        if offset == 0:
            q.flags |= _INET_FRAG_FIRST_IN
            q.first = bytes(pkt[off0:off0 + ihl]) + data
        fragsize = end - offset + ihl
        if fragsize > q.max_size:
            q.max_size = fragsize
        if ip.frag_off & IP_DF and fragsize > q.max_df_size:
            q.max_df_size = fragsize
        if q.flags == _INET_FRAG_FIRST_IN | _INET_FRAG_LAST_IN and q.meat == q.len:
            return self._reasm(q)
        return None

    def _discard_qp(self, q: _Queue, reason: DropReason) -> DropReason:
        self._kill(q, reason)
        self.counters.inc(Mib.REASMFAILS)
        return self._drop(reason)

    @staticmethod
    def _insert(q: _Queue, offset: int, end: int, data: bytes) -> DropReason | None:
        """inet_frag_queue_insert(): DUP_FRAG, FRAG_OVERLAP, or None when queued."""
        runs = q.runs
        if not runs:
            runs.append(_Run(offset, end, data))  # fragrun_create()
            return None
        last = runs[-1]
        if last.end < end:  # the common case: it goes at the end
            if offset < last.end:
                return DropReason.FRAG_OVERLAP
            if offset == last.end:  # fragrun_append_to_last()
                last.frags.append(data)
                last.end = end
            else:
                runs.append(_Run(offset, end, data))
            return None
        # Binary search among the runs, which are disjoint and sorted.
        lo, hi = 0, len(runs)
        while lo < hi:
            mid = (lo + hi) // 2
            r = runs[mid]
            if end <= r.start:
                hi = mid
            elif offset >= r.end:
                lo = mid + 1
            elif offset >= r.start and end <= r.end:
                return DropReason.DUP_FRAG
            else:
                return DropReason.FRAG_OVERLAP
        runs.insert(lo, _Run(offset, end, data))  # a run of its own, never merged
        return None

    def _reasm(self, q: _Queue) -> AddResult:
        """ip_frag_reasm(): the queue goes whatever happens."""
        c = self.counters
        ecn = IP_FRAG_ECN_TABLE[q.ecn]
        if ecn == 0xFF:
            self._kill(q, DropReason.FRAG_ECN)
            c.inc(Mib.REASMFAILS)
            return DropReason.FRAG_ECN
        first = q.first
        assert first is not None
        ihl = (first[0] & 0x0F) << 2
        length = ihl + q.len
        if length > IP_MAX_LEN:
            self._kill(q, DropReason.FRAG_OVERSIZE)
            c.inc(Mib.REASMFAILS)
            return DropReason.FRAG_OVERSIZE
        pkt = bytearray(first[:ihl])
        for r in q.runs:
            for d in r.frags:
                pkt += d
        _U16.pack_into(pkt, 2, length)
        pkt[1] |= ecn
        # DF only if the largest fragment had it: refragmenting then keeps to
        # the sizes the sender chose (IPSKB_FRAG_PMTU).
        pmtu = q.max_df_size == q.max_size
        _U16.pack_into(pkt, 6, IP_DF if pmtu else 0)
        _U16.pack_into(pkt, 10, 0)
        _U16.pack_into(pkt, 10, ip_compute_csum(pkt[:ihl]))
        out = Reassembled(pkt, max(q.max_df_size, q.max_size), pmtu)
        q.runs = []
        self.mem -= q.truesize
        q.truesize = 0
        self._kill(q, DropReason.NOT_SPECIFIED)  # empty now: nothing counted
        c.inc(Mib.REASMOKS)
        return out

    # -- timers ---------------------------------------------------------------------------
    def next_timer(self) -> float | None:
        """When the next queue times out, or None."""
        if self._overdue:
            return min(e.deadline for e in self._overdue)  # past: expiries to report
        t = self._timers
        while t:
            deadline, _seq, key = t[0]
            q = self.queues.get(key)
            if q is not None and q.deadline == deadline:
                return deadline
            heapq.heappop(t)
        return None

    def expire(self, now: float) -> list[Expired]:
        """ip_expire() for every queue whose time is up (deadline <= now)."""
        out = self._overdue
        self._overdue = []
        t = self._timers
        while t and t[0][0] <= now:
            deadline, _seq, key = heapq.heappop(t)
            q = self.queues.get(key)
            if q is None or q.deadline != deadline:
                continue  # stale: completed, killed or re-armed
            out.append(self._timeout(q))
        return out

    def _timeout(self, q: _Queue) -> Expired:
        c = self.counters
        c.inc(Mib.REASMFAILS)
        c.inc(Mib.REASMTIMEOUT)
        first = q.first if q.flags & _INET_FRAG_FIRST_IN else None
        self._kill(q, DropReason.FRAG_REASM_TIMEOUT)
        return Expired(q.key, first, q.iif, q.deadline)


# -- output ---------------------------------------------------------------------------

def ip_fragment(pkt: Buffer, mtu: int, *, ignore_df: bool = False, frag_max_size: int = 0,
                frag_pmtu: bool = False, counters: Counters | None = None,
                ) -> list[bytearray] | FragNeeded | DropReason:
    """Send `pkt` out through an `mtu`: __ip_finish_output()'s choice, then
    ip_fragment() and ip_do_fragment()'s slow path.

    Returns the packets to send (the packet alone when it fits), FragNeeded
    when DF forbids it, or a drop (a header that leaves no room for 8 bytes of
    data, a malformed packet).  `ignore_df` is skb->ignore_df (conntrack sets
    it on what it reassembled); `frag_max_size` and `frag_pmtu` come from
    `Reassembled`.  Every fragment has the whole header; after the first, the
    options without the copied flag are NOOPs (ip_options_fragment()).
    """
    ip = parse_ipv4(pkt)
    if isinstance(ip, DropReason):
        return ip
    n = ip.tot_len
    if n <= mtu and not frag_max_size:
        return [bytearray(pkt[:n])]
    if ip.frag_off & IP_DF and (not ignore_df or (frag_max_size and frag_max_size > mtu)):
        if counters is not None:
            counters.inc(Mib.FRAGFAILS)
        return FragNeeded(mtu)
    if frag_max_size and frag_max_size < mtu:
        mtu = frag_max_size
    hlen = ip.ihl
    room = mtu - hlen
    if room < 8:
        if counters is not None:
            counters.inc(Mib.FRAGFAILS)
        return DropReason.PKT_TOO_BIG
    hdr = bytearray(pkt[:hlen])
    left = n - hlen
    ptr = hlen
    offset = (ip.frag_off & IP_OFFSET) << 3
    not_last = ip.frag_off & IP_MF
    out: list[bytearray] = []
    while left > 0:
        first = offset == 0
        length = left if left <= room else room & ~7
        f = hdr + pkt[ptr:ptr + length]
        left -= length
        fo = offset >> 3
        if frag_pmtu:
            fo |= IP_DF
        if left > 0 or not_last:
            fo |= IP_MF
        _U16.pack_into(f, 2, hlen + length)
        _U16.pack_into(f, 6, fo)
        _U16.pack_into(f, 10, 0)
        _U16.pack_into(f, 10, ip_compute_csum(f[:hlen]))
        out.append(f)
        ptr += length
        offset += length
        if first:
            ip_options_fragment(hdr)
    if counters is not None:
        counters.inc(Mib.FRAGOKS)
        counters.inc(Mib.FRAGCREATES, len(out))
    return out
