"""The neighbour cache (net/core/neighbour.c), sans-IO: an explicit clock, actions out.

Theory of operation
-------------------

An entry maps (device, IPv4 address) to a link-layer address and a NUD state
("neighbour unreachability detection").  Its life is driven by three kinds of
input, and every change of state goes through TRANSITIONS below, a
``(state, event) -> next state`` table in the style of h11's _state.py.  A pair
the table does not list leaves the state as it is: that is the kernel's
``goto out`` (a packet for a REACHABLE entry, an update that is refused).

* Packets to send (`output`, mirroring neigh_resolve_output +
  __neigh_event_send).  A connected entry (REACHABLE, NOARP, PERMANENT) with
  its header cached sends at once and is not even touched (the hh fast path of
  neigh_output; `used` is not updated there).  Otherwise `used` is set and:
  NONE/FAILED start resolving (INCOMPLETE: probes = ucast_solicit, first
  broadcast request at once, timer retrans_time); STALE becomes DELAY (the
  packet leaves with the old address; timer delay_first_probe_time);
  INCOMPLETE queues the packet (the unres queue, bounded by unres_qlen_bytes
  counted in skb truesize: the oldest packets are dropped to make room).

* Link-layer news (`update`, mirroring __neigh_update): ARP tells the cache
  REACHABLE (a unicast reply) or STALE (a request, a broadcast reply) with an
  address.  A valid entry with a different address changes only with
  NEIGH_UPDATE_F_OVERRIDE; STALE news with the same address changes nothing.
  An entry that becomes valid sends its queued packets.

* Timers (`handle_timer`, mirroring neigh_timer_handler): REACHABLE lasts
  reachable_time after the last confirmation (then DELAY if used in the last
  delay_first_probe_time, else STALE); DELAY becomes PROBE (unicast requests,
  probes counted from 0) unless confirmed meanwhile; INCOMPLETE and PROBE send
  one request per retrans_time until neigh_max_probes (ucast + app + mcast
  solicit for INCOMPLETE, ucast + app + mcast_resolicit for PROBE) are out,
  then FAILED: the queued packets come back as `Failed` actions, for ICMP host
  unreachable (arp_error_report -> ipv4_link_failure; `Engine.link_failure`).

Request number n of an entry (`probes` before it is sent) goes unicast to the
known address while n < ucast_solicit, else to userspace while
n < ucast + app_solicit (ipgate has no userspace helper: nothing is sent),
else broadcast (arp_solicit).  Since INCOMPLETE starts at n = ucast_solicit,
a new entry sends mcast_solicit broadcast requests; PROBE starts at 0 and
sends ucast_solicit unicast ones.

Garbage collection mirrors neigh_periodic_work (every base_reachable_time/2,
once the table holds gc_thresh1 entries: entries not in a timer state and not
PERMANENT go when FAILED or unused for gc_stale_time; reachable_time is drawn
again every 300 s) and neigh_forced_gc at creation (at gc_thresh2 at most every
5 s, always at gc_thresh3: FAILED, NOARP and entries not updated in the last
5 s go, oldest first; if none can, creation fails: "neighbor table overflow").

Times are seconds (floats); jiffies comparisons map to <, <=.  reachable_time
is drawn per device as neigh_rand_reach_time() does, uniformly in
[base/2, 3*base/2), from the injected `random.Random`.
"""

from __future__ import annotations

import enum
import random
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import NamedTuple

from ipgate.inet import is_multicast
from ipgate.link.ether import ETH_FRAME_LEN, ZERO_MAC


class Nud(enum.IntEnum):
    """NUD_* (include/uapi/linux/neighbour.h)."""

    NONE = 0x00
    INCOMPLETE = 0x01
    REACHABLE = 0x02
    STALE = 0x04
    DELAY = 0x08
    PROBE = 0x10
    FAILED = 0x20
    NOARP = 0x40
    PERMANENT = 0x80


NUD_IN_TIMER = Nud.INCOMPLETE | Nud.REACHABLE | Nud.DELAY | Nud.PROBE
NUD_VALID = Nud.PERMANENT | Nud.NOARP | Nud.REACHABLE | Nud.PROBE | Nud.STALE | Nud.DELAY
NUD_CONNECTED = Nud.PERMANENT | Nud.NOARP | Nud.REACHABLE

NEIGH_UPDATE_F_OVERRIDE = 0x01
NEIGH_UPDATE_F_ADMIN = 0x80000000

HZ_100 = 0.01  # HZ/100: the shortest timer neigh_timer_handler arms
SK_WMEM_DEFAULT = 212992
# x86_64 sizes: SKB_DATA_ALIGN(sizeof(struct sk_buff)) and of struct skb_shared_info, a cache line.
_SK_BUFF = 256
_SHINFO = 320
_CACHELINE = 64
_SMALL_HEAD = 576  # SKB_SMALL_HEAD_CACHE_SIZE: heads this small come from their own cache


def SKB_TRUESIZE(x: int) -> int:  # noqa: N802 - the kernel's macro
    return x + _SK_BUFF + _SHINFO


def skb_truesize(ip_len: int) -> int:
    """skb->truesize of an IPv4 packet of `ip_len` bytes as the kernel's own stack allocates it, which is what
    the unres queue is charged: __ip_append_data() asks for the packet plus LL_RESERVED_SPACE (16) plus 15;
    __alloc_skb() rounds the head (cache-line aligned, plus skb_shared_info) up to the small-head cache or a
    kmalloc bucket; truesize is that bucket plus the sk_buff.  Checked against Linux 6.18: 832 bytes up to
    208-byte packets, 1280 up to 628, 2304 up to 1500.  (A forwarded packet is charged whatever its driver
    allocated, seldom less.)"""
    head = -(-(ip_len + 31) // _CACHELINE) * _CACHELINE + _SHINFO
    if head <= _SMALL_HEAD:
        return _SMALL_HEAD + _SK_BUFF
    bucket = 1024
    while bucket < head:
        bucket *= 2
    return bucket + _SK_BUFF


class Event(enum.Enum):
    # a packet to send (__neigh_event_send)
    SEND = "send"
    SEND_UNPROBED = "send, mcast_solicit + app_solicit == 0"  # nothing could resolve it: FAILED at once
    # news from the link layer (__neigh_update), as ARP gives it
    CONFIRM = "confirm"  # REACHABLE with an acceptable address (a unicast ARP reply)
    LEARN = "learn"  # STALE with a new address (a request for us, a gratuitous ARP, an override)
    LEARN_SAME = "learn, same address"  # STALE with the address already held: nothing changes
    CONFLICT = "conflict"  # a different address without NEIGH_UPDATE_F_OVERRIDE: refused
    # neigh_timer_handler
    TIMER_ALIVE = "timer, confirmed within reachable_time"
    TIMER_USED = "timer, used within delay_first_probe_time"
    TIMER_IDLE = "timer, not used lately"
    TIMER_CONFIRMED = "timer, confirmed during the delay"
    TIMER_DELAY_EXPIRED = "timer, delay over"
    TIMER_RETRANS = "timer, probes left"
    TIMER_EXHAUSTED = "timer, neigh_max_probes sent"
    # arp_constructor: broadcast/multicast keys, NOARP devices
    CONSTRUCT_NOARP = "construct noarp"
    # administrative (ip neigh add/replace/del): NEIGH_UPDATE_F_ADMIN
    ADMIN_PERMANENT = "admin permanent"
    ADMIN_NOARP = "admin noarp"
    ADMIN_REACHABLE = "admin reachable"
    ADMIN_STALE = "admin stale"
    ADMIN_FAILED = "admin failed"


_ADMIN = {
    Event.ADMIN_PERMANENT: Nud.PERMANENT, Event.ADMIN_NOARP: Nud.NOARP, Event.ADMIN_REACHABLE: Nud.REACHABLE,
    Event.ADMIN_STALE: Nud.STALE, Event.ADMIN_FAILED: Nud.FAILED,
}

# The state machine.  Every transition the code makes is looked up here.
TRANSITIONS: dict[Nud, dict[Event, Nud]] = {
    Nud.NONE: {
        Event.SEND: Nud.INCOMPLETE,
        Event.SEND_UNPROBED: Nud.FAILED,
        Event.CONFIRM: Nud.REACHABLE,
        Event.LEARN: Nud.STALE,
        Event.CONSTRUCT_NOARP: Nud.NOARP,
    },
    Nud.INCOMPLETE: {
        Event.SEND: Nud.INCOMPLETE,  # queued
        Event.CONFIRM: Nud.REACHABLE,
        Event.LEARN: Nud.STALE,
        Event.TIMER_RETRANS: Nud.INCOMPLETE,
        Event.TIMER_EXHAUSTED: Nud.FAILED,
    },
    Nud.REACHABLE: {
        Event.SEND: Nud.REACHABLE,
        Event.CONFIRM: Nud.REACHABLE,
        Event.LEARN: Nud.STALE,
        Event.LEARN_SAME: Nud.REACHABLE,
        Event.CONFLICT: Nud.REACHABLE,
        Event.TIMER_ALIVE: Nud.REACHABLE,
        Event.TIMER_USED: Nud.DELAY,
        Event.TIMER_IDLE: Nud.STALE,
    },
    Nud.STALE: {
        Event.SEND: Nud.DELAY,
        Event.CONFIRM: Nud.REACHABLE,
        Event.LEARN: Nud.STALE,
        Event.LEARN_SAME: Nud.STALE,
        Event.CONFLICT: Nud.STALE,
    },
    Nud.DELAY: {
        Event.SEND: Nud.DELAY,
        Event.CONFIRM: Nud.REACHABLE,
        Event.LEARN: Nud.STALE,
        Event.LEARN_SAME: Nud.DELAY,
        Event.CONFLICT: Nud.DELAY,
        Event.TIMER_CONFIRMED: Nud.REACHABLE,
        Event.TIMER_DELAY_EXPIRED: Nud.PROBE,
    },
    Nud.PROBE: {
        Event.SEND: Nud.PROBE,
        Event.CONFIRM: Nud.REACHABLE,
        Event.LEARN: Nud.STALE,
        Event.LEARN_SAME: Nud.PROBE,
        Event.CONFLICT: Nud.PROBE,
        Event.TIMER_RETRANS: Nud.PROBE,
        Event.TIMER_EXHAUSTED: Nud.FAILED,
    },
    Nud.FAILED: {
        Event.SEND: Nud.INCOMPLETE,
        Event.SEND_UNPROBED: Nud.FAILED,
        Event.CONFIRM: Nud.REACHABLE,
        Event.LEARN: Nud.STALE,
    },
    # Only administrative changes touch these (__neigh_update: -EPERM otherwise).
    Nud.NOARP: {Event.SEND: Nud.NOARP},
    Nud.PERMANENT: {Event.SEND: Nud.PERMANENT},
}
for _row in TRANSITIONS.values():
    _row.update(_ADMIN)
_ADMIN_EVENT = {state: event for event, state in _ADMIN.items()}


def next_state(state: Nud, event: Event) -> Nud:
    """The table lookup; an unlisted pair keeps the state."""
    return TRANSITIONS[state].get(event, state)


@dataclass(frozen=True, slots=True)
class NeighParms:
    """struct neigh_parms for arp_tbl (net/ipv4/arp.c) with the kernel's defaults; times in seconds."""

    mcast_probes: int = 3  # mcast_solicit
    ucast_probes: int = 3  # ucast_solicit
    app_probes: int = 0  # app_solicit
    mcast_reprobes: int = 0  # mcast_resolicit
    retrans_time: float = 1.0
    base_reachable_time: float = 30.0
    delay_probe_time: float = 5.0  # delay_first_probe_time
    gc_staletime: float = 60.0
    queue_len_bytes: int = SK_WMEM_DEFAULT  # unres_qlen_bytes
    locktime: float = 1.0


@dataclass(frozen=True, slots=True)
class TableParms:
    gc_thresh1: int = 128
    gc_thresh2: int = 512
    gc_thresh3: int = 1024


def unres_qlen_bytes(packets: int) -> int:
    """unres_qlen (packets) as bytes: packets * SKB_TRUESIZE(ETH_FRAME_LEN) (neigh_proc_dointvec_unres_qlen);
    the default 212992 bytes reads back as 101 packets."""
    return packets * SKB_TRUESIZE(ETH_FRAME_LEN)


@dataclass(slots=True, eq=False)
class Neighbour:
    """struct neighbour."""

    dev: str
    key: int
    state: Nud = Nud.NONE
    ha: bytes = ZERO_MAC
    updated: float = 0.0
    used: float = 0.0
    confirmed: float = 0.0
    probes: int = 0
    timer: float | None = None  # armed deadline, if in a timer state
    queue: deque[bytes] = field(default_factory=deque)  # arp_queue
    queue_bytes: int = 0  # arp_queue_len_bytes (truesize)
    hh: bool = False  # header cache initialised (neigh_hh_init): the fast path may be used
    dead: bool = False
    on_gc_list: bool = False


class Solicit(NamedTuple):
    """Send an ARP request for `target` (arp_solicit): to `dst_mac`, or broadcast when None.

    `saddr` is the source address of the last queued packet, which arp_announce may use.
    """

    dev: str
    target: int
    dst_mac: bytes | None
    saddr: int | None


class Xmit(NamedTuple):
    """An IPv4 packet to frame to `dst_mac` and send on `dev`."""

    dev: str
    dst_mac: bytes
    packet: bytes


class Failed(NamedTuple):
    """A queued packet whose next hop failed (neigh_invalidate -> arp_error_report)."""

    dev: str
    nexthop: int
    packet: bytes


Action = Solicit | Xmit | Failed

ParmsFor = Callable[[str], NeighParms]  # by device name; "" gives the table's own (default) parms


def _saddr_of(packet: bytes) -> int | None:
    return int.from_bytes(packet[12:16], "big") if len(packet) >= 20 else None


class NeighTable:
    """arp_tbl: the entries, their timers and garbage collection."""

    def __init__(self, parms: ParmsFor, tparms: Callable[[], TableParms], rng: random.Random) -> None:
        self.parms = parms
        self.tparms = tparms
        self.rng = rng
        self.entries: dict[tuple[str, int], Neighbour] = {}
        # gc_list: entries subject to garbage collection, oldest first (dicts keep insertion order)
        self.gc_list: dict[tuple[str, int], Neighbour] = {}
        self._timers: list[tuple[float, int, Neighbour]] = []
        self._seq = 0
        self._reach: dict[str, tuple[float, float]] = {}  # dev -> (base_reachable_time, reachable_time)
        self.started: float | None = None
        self.gc_next = 0.0
        self.last_rand = 0.0
        self.last_flush = 0.0
        self.stats: Counter[str] = Counter()  # /proc/net/stat/arp_cache names, plus drop reasons

    # -- clock ------------------------------------------------------------
    def start(self, now: float) -> None:
        """neigh_table_init(): the first periodic gc after reachable_time, re-randomising after 20 of them."""
        if self.started is not None:
            return
        self.started = now
        rt = rand_reach_time(self.rng, self.parms("").base_reachable_time)  # tbl->parms.reachable_time
        self.gc_next = now + rt
        self.last_rand = now + rt * 20
        self.last_flush = now

    def reachable_time(self, dev: str) -> float:
        """p->reachable_time: neigh_rand_reach_time(base), drawn again when base changes."""
        base = self.parms(dev).base_reachable_time
        cur = self._reach.get(dev)
        if cur is None or cur[0] != base:
            cur = (base, rand_reach_time(self.rng, base))
            self._reach[dev] = cur
        return cur[1]

    # -- lookup and creation ---------------------------------------------
    def lookup(self, dev: str, key: int) -> Neighbour | None:
        return self.entries.get((dev, key))

    def create(self, dev: str, key: int, now: float, noarp_ha: bytes | None = None) -> Neighbour | None:
        """neigh_alloc() + ___neigh_create(); `noarp_ha` is arp_constructor's verdict (NOARP with that address).

        None when the table is full and forced gc freed nothing ("neighbor table overflow").
        """
        self.start(now)
        k = (dev, key)
        n = self.entries.get(k)
        if n is not None:
            return n
        tp = self.tparms()
        entries = len(self.gc_list)
        if entries >= tp.gc_thresh3 or (entries >= tp.gc_thresh2 and now > self.last_flush + 5.0):
            if not self.forced_gc(now) and entries >= tp.gc_thresh3:
                self.stats["table_fulls"] += 1
                return None
        p = self.parms(dev)
        n = Neighbour(dev, key, updated=now, used=now, confirmed=now - 2 * p.base_reachable_time)
        if noarp_ha is not None:
            n.state = next_state(n.state, Event.CONSTRUCT_NOARP)
            n.ha = noarp_ha
        self.entries[k] = n
        self.gc_list[k] = n
        n.on_gc_list = True
        self.stats["allocs"] += 1
        return n

    def remove(self, n: Neighbour) -> None:
        """neigh_remove_one()/neigh_flush_one(): gone, its queue purged without error reports."""
        k = (n.dev, n.key)
        if self.entries.get(k) is n:
            del self.entries[k]
        if n.on_gc_list:
            self.gc_list.pop(k, None)
            n.on_gc_list = False
        n.dead = True
        n.timer = None
        self.stats["unres_purged"] += len(n.queue)
        n.queue.clear()
        n.queue_bytes = 0

    def flush_dev(self, dev: str) -> None:
        """neigh_ifdown(): the device went down or away; every entry on it goes (permanent ones too)."""
        for n in [n for n in self.entries.values() if n.dev == dev]:
            self.remove(n)
        self._reach.pop(dev, None)

    def __iter__(self) -> Iterator[Neighbour]:
        return iter(list(self.entries.values()))

    def __len__(self) -> int:
        return len(self.entries)

    # -- state changes ----------------------------------------------------
    def _set(self, n: Neighbour, event: Event) -> Nud:
        new = next_state(n.state, event)
        n.state = new
        return new

    def _arm(self, n: Neighbour, when: float) -> None:
        """neigh_add_timer()."""
        n.timer = when
        self._seq += 1
        heappush(self._timers, (when, self._seq, n))

    def _update_gc_list(self, n: Neighbour) -> None:
        """neigh_update_gc_list(): PERMANENT entries are exempt; others go to the tail."""
        k = (n.dev, n.key)
        if n.state == Nud.PERMANENT and n.on_gc_list:
            del self.gc_list[k]
            n.on_gc_list = False
        elif n.state != Nud.PERMANENT and not n.on_gc_list and not n.dead:
            self.gc_list[k] = n
            n.on_gc_list = True

    def output(self, n: Neighbour, packet: bytes, now: float) -> list[Action]:
        """neigh_output(): the hh fast path for connected entries, else neigh_resolve_output()."""
        if n.hh and n.state & NUD_CONNECTED:
            return [Xmit(n.dev, n.ha, packet)]
        out: list[Action] = []
        self._resolve_output(n, packet, now, out)
        return out

    def _resolve_output(self, n: Neighbour, packet: bytes, now: float, out: list[Action]) -> None:
        if not self.event_send(n, packet, now, out):
            n.hh = True  # neigh_hh_init()
            out.append(Xmit(n.dev, n.ha, packet))

    def event_send(self, n: Neighbour, packet: bytes | None, now: float, out: list[Action]) -> bool:
        """neigh_event_send(): False if the packet may go now; True if it was queued (or dropped)."""
        self.start(now)
        n.used = now
        if n.state & (NUD_CONNECTED | Nud.DELAY | Nud.PROBE):
            return False
        if n.dead:
            if n.state == Nud.STALE:
                return False
            self.stats["NEIGH_DEAD"] += 1
            return True
        p = self.parms(n.dev)
        immediate = False
        if not n.state & (Nud.STALE | Nud.INCOMPLETE):
            if p.mcast_probes + p.app_probes:
                n.probes = p.ucast_probes
                self._set(n, Event.SEND)
                n.updated = now
                immediate = True
                self._arm(n, now + max(p.retrans_time, HZ_100))
            else:
                self._set(n, Event.SEND_UNPROBED)
                n.updated = now
                self.stats["NEIGH_FAILED"] += 1
                return True
        elif n.state == Nud.STALE:
            self._set(n, Event.SEND)
            n.updated = now
            self._arm(n, now + p.delay_probe_time)
        if n.state != Nud.INCOMPLETE:
            return False
        if packet is not None:
            size = skb_truesize(len(packet))
            while n.queue_bytes + size > p.queue_len_bytes and n.queue:
                old = n.queue.popleft()
                n.queue_bytes -= skb_truesize(len(old))
                self.stats["unres_discards"] += 1  # SKB_DROP_REASON_NEIGH_QUEUEFULL
            n.queue.append(packet)
            n.queue_bytes += size
        if immediate:
            self._probe(n, out)
        return True

    def _probe(self, n: Neighbour, out: list[Action]) -> None:
        """neigh_probe() + arp_solicit()'s choice of destination by the probe count."""
        p = self.parms(n.dev)
        saddr = _saddr_of(n.queue[-1]) if n.queue else None
        probes = n.probes - p.ucast_probes
        n.probes += 1
        if probes < 0:
            out.append(Solicit(n.dev, n.key, n.ha, saddr))
        elif probes - p.app_probes < 0:
            self.stats["app_solicit_skipped"] += 1  # neigh_app_ns(): a userspace helper ipgate does not have
        else:
            out.append(Solicit(n.dev, n.key, None, saddr))

    def confirm(self, n: Neighbour, now: float) -> None:
        """neigh_confirm() (dst_confirm_neigh: forward progress seen by TCP, MSG_CONFIRM)."""
        n.confirmed = now

    def update(self, n: Neighbour, lladdr: bytes | None, new: Nud, flags: int, now: float) -> list[Action]:
        """__neigh_update(): the link layer's (or the administrator's) news about n; what leaves the queue."""
        out: list[Action] = []
        old = n.state
        admin = bool(flags & NEIGH_UPDATE_F_ADMIN)
        if n.dead or (not admin and old & (Nud.NOARP | Nud.PERMANENT)):
            return out  # -EPERM
        p = self.parms(n.dev)
        if not new & NUD_VALID:
            # only `ip neigh del` / `arp -d` get here (neigh_update(NUD_FAILED, OVERRIDE | ADMIN))
            n.timer = None
            n.state = next_state(old, Event.ADMIN_FAILED) if new == Nud.FAILED else new
            if old & (Nud.INCOMPLETE | Nud.PROBE) and n.state == Nud.FAILED:
                self._invalidate(n, now, out)
            return out
        if lladdr is None:
            if not old & NUD_VALID:
                return out  # -EINVAL: "No link layer address given"
            lladdr = n.ha
        same = bool(old & NUD_VALID) and lladdr == n.ha
        if new & NUD_CONNECTED:
            n.confirmed = now  # even when the address is then refused
        if old & NUD_VALID and not same and not flags & NEIGH_UPDATE_F_OVERRIDE:
            self._set(n, Event.CONFLICT)
            return out
        if admin:
            event = _ADMIN_EVENT[new]
        elif new == Nud.REACHABLE:
            event = Event.CONFIRM
        elif same:
            event = Event.LEARN_SAME  # "do not change entry state, if new one is STALE"
        else:
            event = Event.LEARN
        target = next_state(old, event)
        if target != old or not same:
            n.updated = now
        if target != old:
            n.timer = None
            if target == Nud.PROBE:
                n.probes = 0
            if target & NUD_IN_TIMER:
                self._arm(n, now + (self.reachable_time(n.dev) if target == Nud.REACHABLE else 0.0))
            n.state = target
        if not same:
            n.ha = lladdr  # neigh_update_hhs(): a cached header follows
            if not target & NUD_CONNECTED:
                n.confirmed = now - 2 * p.base_reachable_time
        if (target ^ old) & Nud.PERMANENT:
            self._update_gc_list(n)
        if target == old or old & NUD_VALID:
            return out
        # neigh_update_process_arp_queue(): each packet through n->output (neigh_resolve_output)
        queued = list(n.queue)
        n.queue.clear()
        n.queue_bytes = 0
        for pkt in queued:
            if not n.state & NUD_VALID:
                break
            self._resolve_output(n, pkt, now, out)
        return out

    def _invalidate(self, n: Neighbour, now: float, out: list[Action]) -> None:
        """neigh_invalidate(): every queued packet is reported (arp_error_report), then the queue is empty."""
        self.stats["res_failed"] += 1
        n.updated = now
        while n.queue and n.state == Nud.FAILED:
            out.append(Failed(n.dev, n.key, n.queue.popleft()))
        n.queue.clear()
        n.queue_bytes = 0

    # -- timers -----------------------------------------------------------
    def next_timer(self) -> float | None:
        heap = self._timers
        while heap and (heap[0][2].timer != heap[0][0] or heap[0][2].dead):
            heappop(heap)
        t = heap[0][0] if heap else None
        if self.started is None:
            return t
        return self.gc_next if t is None or self.gc_next < t else t

    def handle_timer(self, now: float) -> list[Action]:
        out: list[Action] = []
        heap = self._timers
        for _ in range(len(heap) + 1):  # bounded: a handler re-arms at least HZ/100 ahead
            if not heap or heap[0][0] > now:
                break
            when, _seq, n = heappop(heap)
            if n.timer != when or n.dead:
                continue
            n.timer = None
            self._timer_handler(n, now, out)
        if self.started is not None and self.gc_next <= now:
            self.periodic_work(now)
        return out

    def _timer_handler(self, n: Neighbour, now: float, out: list[Action]) -> None:
        """neigh_timer_handler()."""
        state = n.state
        if not state & NUD_IN_TIMER:
            return
        p = self.parms(n.dev)
        nxt = now + 1.0
        if state == Nud.REACHABLE:
            rt = self.reachable_time(n.dev)
            if now <= n.confirmed + rt:
                self._set(n, Event.TIMER_ALIVE)
                nxt = n.confirmed + rt
            elif now <= n.used + p.delay_probe_time:
                self._set(n, Event.TIMER_USED)
                n.updated = now
                nxt = now + p.delay_probe_time
            else:
                self._set(n, Event.TIMER_IDLE)
                n.updated = now
        elif state == Nud.DELAY:
            if now <= n.confirmed + p.delay_probe_time:
                self._set(n, Event.TIMER_CONFIRMED)
                n.updated = now
                nxt = n.confirmed + self.reachable_time(n.dev)
            else:
                self._set(n, Event.TIMER_DELAY_EXPIRED)
                n.updated = now
                n.probes = 0
                nxt = now + max(p.retrans_time, HZ_100)
        else:  # INCOMPLETE, PROBE
            nxt = now + max(p.retrans_time, HZ_100)
        if n.state & (Nud.INCOMPLETE | Nud.PROBE) and n.probes >= self.max_probes(n):
            self._set(n, Event.TIMER_EXHAUSTED)
            self._invalidate(n, now, out)
            return
        if n.state & NUD_IN_TIMER:
            self._arm(n, max(nxt, now + HZ_100))
        if n.state & (Nud.INCOMPLETE | Nud.PROBE):
            if state == n.state:
                self._set(n, Event.TIMER_RETRANS)
            self._probe(n, out)

    def max_probes(self, n: Neighbour) -> int:
        """neigh_max_probes()."""
        p = self.parms(n.dev)
        return p.ucast_probes + p.app_probes + (p.mcast_reprobes if n.state == Nud.PROBE else p.mcast_probes)

    # -- garbage collection -------------------------------------------------
    def periodic_work(self, now: float) -> None:
        """neigh_periodic_work()."""
        self.stats["periodic_gc_runs"] += 1
        if now > self.last_rand + 300.0:
            self.last_rand = now
            for dev, (base, _) in list(self._reach.items()):
                self._reach[dev] = (base, rand_reach_time(self.rng, base))
        if len(self.entries) >= self.tparms().gc_thresh1:
            for n in list(self.entries.values()):
                if n.state & (Nud.PERMANENT | NUD_IN_TIMER):
                    continue
                if n.used < n.confirmed <= now:
                    n.used = n.confirmed
                stale = self.parms(n.dev).gc_staletime
                if n.state == Nud.FAILED or not n.used <= now < n.used + stale:
                    self.remove(n)
        self.gc_next = now + self.parms("").base_reachable_time / 2

    def forced_gc(self, now: float) -> int:
        """neigh_forced_gc(): make room, oldest entries first."""
        self.stats["forced_gc_runs"] += 1
        max_clean = len(self.gc_list) - self.tparms().gc_thresh2
        shrunk = 0
        for n in list(self.gc_list.values()):
            if shrunk >= max_clean:
                break
            if n.state in (Nud.FAILED, Nud.NOARP) or is_multicast(n.key) or not now - 5.0 <= n.updated <= now:
                self.remove(n)
                shrunk += 1
        self.last_flush = now
        return shrunk


def rand_reach_time(rng: random.Random, base: float) -> float:
    """neigh_rand_reach_time(): uniform in [base/2, 3*base/2) (get_random_u32_below(base) + base/2)."""
    if base <= 0:
        return 0.0
    return base / 2 + rng.random() * base

