"""Session ageing as IP Filter does it: timeout queues and the TCP state ages.

IP Filter does not keep a timer per session.  Each session sits on one
timeout queue (`ipftq_t`); every queue has a fixed time to live, and a
session that is touched moves to the tail of its (possibly new) queue with
`tqe_die = fr_ticks + ifq_ttl` (fr_movequeue()/fr_queueappend() in fil.c), so
each queue stays sorted by death time and fr_natexpire() only ever looks at
the heads.  `TimeoutQueue` is that list (an OrderedDict: O(1) move to tail,
O(1) pop from the head).

Time is counted in IP Filter ticks: two per second (IPF_HZ_DIVIDE, ip_fil.h),
and the default ages below are the kernel's, in ticks:

* NAT's own queues (fr_natinit()): UDP fr_defnatage 1200 (10 min), ICMP
  fr_defnaticmpage 6 (3 s), other protocols fr_defnatipage 120 (60 s);
* TCP: one queue per IP Filter TCP state, with the ages fr_sttab_init() gives
  them (ip_state.c: fr_tcptimeout 2*TCP_MSL = 240 s for the opening and closing
  states, fr_tcpidletimeout 5 days when established, fr_tcphalfclosed 2 h for
  CLOSE_WAIT/FIN_WAIT_1, fr_tcplastack 30 s, fr_tcptimewait 240 s,
  fr_tcpclosed 30 s), then fr_natinit()'s changes: CLOSED gets LAST_ACK's age
  and none is below fr_defnaticmpage;
* rules with `age N[/M]` get user queues (fr_addtimeoutqueue(): N seconds
  become N * IPF_HZ_DIVIDE ticks), one per distinct age, shared.

`tcp_age` is fr_tcp_age() (Arjan de Vet's state machine, ip_state.c): the state
of each side moves on the flags of the packets it sends, with no window
tracking (NAT calls it with no IS_TCPFSM, so a connection picked up in mid
flight is accepted).  `queue_flush` is ipf_queueflush() (fil.c), used by
nat_extraflush(2) when the table is full.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ipgate.packet.l4 import TH_ACK, TH_CWR, TH_ECE, TH_FIN, TH_PUSH, TH_RST, TH_SYN

IPF_HZ_DIVIDE = 2  # ticks per second (ip_fil.h)

# IP Filter's TCP states (ip_compat.h, 4.1.x), per side.
IPF_TCPS_LISTEN = 0
IPF_TCPS_SYN_SENT = 1
IPF_TCPS_SYN_RECEIVED = 2
IPF_TCPS_HALF_ESTAB = 3
IPF_TCPS_ESTABLISHED = 4
IPF_TCPS_CLOSE_WAIT = 5
IPF_TCPS_FIN_WAIT_1 = 6
IPF_TCPS_CLOSING = 7
IPF_TCPS_LAST_ACK = 8
IPF_TCPS_FIN_WAIT_2 = 9
IPF_TCPS_TIME_WAIT = 10
IPF_TCPS_CLOSED = 11
IPF_TCP_NSTATES = 12

TCP_STATE_NAMES = ("LISTEN", "SYN_SENT", "SYN_RECEIVED", "HALF_ESTAB", "ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT_1",
                   "CLOSING", "LAST_ACK", "FIN_WAIT_2", "TIME_WAIT", "CLOSED")

TH_OPENING = TH_SYN | TH_ACK
TH_ACKMASK = TH_FIN | TH_SYN | TH_RST | TH_ACK
TH_ECN = TH_ECE

TCP_MSL = 120  # seconds (ip_compat.h)


def ipf_ttlval(seconds: int) -> int:
    """IPF_TTLVAL(): seconds to ticks."""
    return seconds * IPF_HZ_DIVIDE


@dataclass(slots=True)
class NatTunables:
    """The NAT timeouts ipf(4)'s tunables expose (`ipf -T`, `ipftest -T`), in ticks."""

    fr_defnatage: int = 1200        # DEF_NAT_AGE: UDP
    fr_defnatipage: int = 120       # other IP protocols
    fr_defnaticmpage: int = 6       # ICMP
    fr_tcpidletimeout: int = ipf_ttlval(5 * 86400)
    fr_tcpclosewait: int = ipf_ttlval(2 * TCP_MSL)
    fr_tcplastack: int = ipf_ttlval(30)
    fr_tcptimeout: int = ipf_ttlval(2 * TCP_MSL)
    fr_tcptimewait: int = ipf_ttlval(2 * TCP_MSL)
    fr_tcpclosed: int = ipf_ttlval(30)
    fr_tcphalfclosed: int = ipf_ttlval(2 * 3600)
    fr_ipfrttl: int = ipf_ttlval(60)  # NAT fragment cache entries (ip_frag.c)
    extra: dict[str, int] = field(default_factory=dict)

    def tcp_ttls(self) -> list[int]:
        """The TCP queue ages NAT uses: fr_sttab_init(), then fr_natinit()'s changes."""
        t = [0] * IPF_TCP_NSTATES
        t[IPF_TCPS_CLOSED] = self.fr_tcpclosed
        t[IPF_TCPS_LISTEN] = self.fr_tcptimeout
        t[IPF_TCPS_SYN_SENT] = self.fr_tcptimeout
        t[IPF_TCPS_SYN_RECEIVED] = self.fr_tcptimeout
        t[IPF_TCPS_ESTABLISHED] = self.fr_tcpidletimeout
        t[IPF_TCPS_CLOSE_WAIT] = self.fr_tcphalfclosed
        t[IPF_TCPS_FIN_WAIT_1] = self.fr_tcphalfclosed
        t[IPF_TCPS_CLOSING] = self.fr_tcptimeout
        t[IPF_TCPS_LAST_ACK] = self.fr_tcplastack
        t[IPF_TCPS_FIN_WAIT_2] = self.fr_tcpclosewait
        t[IPF_TCPS_TIME_WAIT] = self.fr_tcptimewait
        t[IPF_TCPS_HALF_ESTAB] = self.fr_tcptimeout
        t[IPF_TCPS_CLOSED] = self.fr_tcplastack  # fr_natinit(): "packet storms" otherwise
        t = [max(x, self.fr_defnaticmpage) for x in t]
        t[IPF_TCPS_CLOSED] = t[IPF_TCPS_LAST_ACK]
        return t


class Queued(Protocol):
    """What sits on a timeout queue: the tqe_die and tqe_touched of an ipftqent_t."""

    die: int
    touched: int


Q = TypeVar("Q", bound=Queued)


class TimeoutQueue(Generic[Q]):
    """ipftq_t: entries in the order they were last touched, all with the same ttl.

    The entries do not point back at their queue here; their owner keeps that
    (tqe_ifq) and passes it to `move_queue`."""

    __slots__ = ("ttl", "name", "user", "entries")

    def __init__(self, ttl: int, name: str, user: bool = False) -> None:
        self.ttl = ttl
        self.name = name
        self.user = user  # IFQF_USER: made for a rule's `age`
        self.entries: OrderedDict[Q, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, e: Q, ticks: int) -> None:
        """fr_queueappend()."""
        self.entries[e] = None
        e.die = ticks + self.ttl

    def remove(self, e: Q) -> None:
        """fr_deletequeueentry()."""
        self.entries.pop(e, None)

    def head(self) -> Q | None:
        """The entry that dies first (fr_natexpire() looks only there)."""
        for e in self.entries:
            return e
        return None


def move_queue(e: Q, old: TimeoutQueue[Q] | None, new: TimeoutQueue[Q], ticks: int) -> None:
    """fr_movequeue(): to the tail of `new` (the same queue or another), die refreshed."""
    if old is new:
        new.entries.move_to_end(e)
    else:
        if old is not None:
            old.entries.pop(e, None)
        new.entries[e] = None
    e.die = ticks + new.ttl


class UserQueues(Generic[Q]):
    """nat_utqe: the queues made for rules' `age` values, shared by equal ages."""

    def __init__(self) -> None:
        self._by_ttl: dict[int, TimeoutQueue[Q]] = {}
        self._refs: dict[int, int] = {}

    def add(self, seconds: int) -> TimeoutQueue[Q]:
        """fr_addtimeoutqueue(&nat_utqe, seconds)."""
        ttl = seconds * IPF_HZ_DIVIDE
        q = self._by_ttl.get(ttl)
        if q is None:
            q = TimeoutQueue(ttl, f"age {seconds}", user=True)
            self._by_ttl[ttl] = q
            self._refs[ttl] = 0
        self._refs[ttl] += 1
        return q

    def release(self, q: TimeoutQueue[Q]) -> None:
        """fr_deletetimeoutqueue(); the queue goes once unreferenced and empty
        (fr_natexpire() frees IFQF_DELETE queues with no entries left)."""
        self._refs[q.ttl] -= 1
        self.collect()

    def collect(self) -> None:
        for ttl in [t for t, q in self._by_ttl.items() if self._refs[t] <= 0 and not q.entries]:
            del self._by_ttl[ttl]
            del self._refs[ttl]

    def __iter__(self) -> Iterator[TimeoutQueue[Q]]:
        return iter(list(self._by_ttl.values()))


def tcp_age(state: list[int], rev: int, tcpflags: int, dlen: int) -> tuple[int, int]:
    """fr_tcp_age() without the queue move: (rval, new state of side `rev`).

    rval 0: the flags make no sense in this state (nothing changes); 1: the
    state is set and the entry moves to that state's queue (age refreshed);
    2: accepted but the entry stays where it is (no refresh: a retransmitted
    SYN, a SYN-ACK again, anything in CLOSING or CLOSED, a bare ACK in
    LAST_ACK).  `dlen` is the TCP payload length.
    """
    if tcpflags & TH_RST:
        nstate = IPF_TCPS_CLOSED if not tcpflags & TH_PUSH and not dlen else IPF_TCPS_CLOSE_WAIT
        return 1, nstate
    ostate = state[1 - rev]
    nstate = state[rev]
    rval = 0
    if nstate == IPF_TCPS_LISTEN:
        if tcpflags & TH_OPENING == TH_OPENING:
            nstate, rval = IPF_TCPS_SYN_RECEIVED, 1
        elif tcpflags & TH_OPENING == TH_SYN:
            nstate, rval = IPF_TCPS_SYN_SENT, 1
        if tcpflags & TH_ACKMASK == TH_ACK:  # picked up in mid flight (no IS_TCPFSM for NAT)
            if ostate in (IPF_TCPS_LISTEN, IPF_TCPS_SYN_RECEIVED):
                nstate, rval = IPF_TCPS_HALF_ESTAB, 1
            elif ostate in (IPF_TCPS_HALF_ESTAB, IPF_TCPS_ESTABLISHED):
                nstate, rval = IPF_TCPS_ESTABLISHED, 1
    elif nstate == IPF_TCPS_SYN_SENT:
        if tcpflags & ~(TH_ECN | TH_CWR) == TH_SYN:
            rval = 2
        elif tcpflags & (TH_SYN | TH_FIN | TH_ACK) == TH_ACK:
            nstate, rval = IPF_TCPS_ESTABLISHED, 1
        elif tcpflags & TH_FIN:
            nstate, rval = IPF_TCPS_FIN_WAIT_1, 1
        elif tcpflags & TH_OPENING == TH_OPENING:
            nstate, rval = IPF_TCPS_SYN_RECEIVED, 1
    elif nstate == IPF_TCPS_SYN_RECEIVED:
        if tcpflags & (TH_SYN | TH_FIN | TH_ACK) == TH_ACK:
            nstate, rval = IPF_TCPS_ESTABLISHED, 1
        elif tcpflags & ~(TH_ECN | TH_CWR) == TH_OPENING:
            rval = 2
        elif tcpflags & TH_FIN:
            nstate, rval = IPF_TCPS_FIN_WAIT_1, 1
    elif nstate == IPF_TCPS_HALF_ESTAB:
        if tcpflags & TH_FIN:
            nstate, rval = IPF_TCPS_FIN_WAIT_1, 1
        elif tcpflags & TH_ACKMASK == TH_ACK:
            if ostate in (IPF_TCPS_LISTEN, IPF_TCPS_SYN_SENT, IPF_TCPS_SYN_RECEIVED):
                rval = 1
            elif ostate in (IPF_TCPS_HALF_ESTAB, IPF_TCPS_ESTABLISHED):
                nstate, rval = IPF_TCPS_ESTABLISHED, 1
    elif nstate == IPF_TCPS_ESTABLISHED:
        rval = 1
        if tcpflags & TH_FIN:
            nstate = IPF_TCPS_CLOSING if ostate == IPF_TCPS_FIN_WAIT_1 else IPF_TCPS_FIN_WAIT_1
        elif tcpflags & TH_ACK:
            if ostate == IPF_TCPS_FIN_WAIT_1:
                nstate = IPF_TCPS_CLOSE_WAIT
            elif ostate < IPF_TCPS_CLOSE_WAIT:
                nstate = IPF_TCPS_ESTABLISHED
    elif nstate == IPF_TCPS_CLOSE_WAIT:
        rval = 1
        nstate = IPF_TCPS_LAST_ACK if tcpflags & TH_FIN else IPF_TCPS_CLOSE_WAIT
    elif nstate == IPF_TCPS_FIN_WAIT_1:
        rval = 1
        if tcpflags & TH_ACK and ostate > IPF_TCPS_CLOSE_WAIT:
            nstate = IPF_TCPS_TIME_WAIT
    elif nstate == IPF_TCPS_CLOSING:
        if tcpflags & (TH_FIN | TH_ACK) == TH_ACK:
            nstate = IPF_TCPS_TIME_WAIT
        rval = 2
    elif nstate == IPF_TCPS_LAST_ACK:
        if tcpflags & TH_ACK:
            rval = 1 if tcpflags & TH_PUSH or dlen else 2
    elif nstate == IPF_TCPS_TIME_WAIT:
        if ostate == IPF_TCPS_LAST_ACK:
            nstate = IPF_TCPS_CLOSED
        rval = 1
    elif nstate == IPF_TCPS_CLOSED:
        rval = 2
    return rval, nstate


def queue_flush(queues: Iterable[TimeoutQueue[Q]], ticks: int, delete: Callable[[Q], None]) -> int:
    """ipf_queueflush(): free the entries idle longest, in windows that shrink from
    12 hours to 30 seconds until something goes; nothing touched in the last 30
    seconds is removed, and nothing at all in the first 45 seconds of uptime."""
    qs = list(queues)
    if ticks > ipf_ttlval(43200 * 15 // 10):
        istart, interval = ipf_ttlval(86400 * 4), ipf_ttlval(43200)
    elif ticks > ipf_ttlval(1800 * 15 // 10):
        istart, interval = ipf_ttlval(43200), ipf_ttlval(1800)
    elif ticks > ipf_ttlval(30 * 15 // 10):
        istart, interval = ipf_ttlval(1800), ipf_ttlval(30)
    else:
        return 0
    if istart > ticks:
        istart = interval if ticks - interval < interval else (ticks // interval) * interval
    iend = ticks - interval
    removed = 0
    while True:
        tr = ticks - istart
        for q in qs:
            for e in list(q.entries):
                if tr < e.touched:
                    break
                delete(e)
                removed += 1
        if tr >= iend:
            if removed > 0:
                break
            if interval == ipf_ttlval(43200):
                interval = ipf_ttlval(1800)
            elif interval == ipf_ttlval(1800):
                interval = ipf_ttlval(30)
            else:
                break
            if interval >= ticks:
                break
            iend = ticks - interval
        istart -= interval
    return removed
