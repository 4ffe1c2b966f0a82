"""The neighbour cache (link/neigh.py) through LinkLayer: every transition of the state table, timers on an
injected clock, the unres queue, garbage collection, `ip neigh show`; and, in network namespaces, the kernel's
own resolution (requests, their timing, FAILED and the ICMP errors), probing and queue limits compared with
ipgate's on the same inputs.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest
from tests.link.test_arp import (
    BASE,
    BCAST,
    KMAC,
    PEER,
    PEER2,
    PEER3,
    SO_SNDBUFFORCE,
    KernelPair,
    _run,
    apply,
    kernel_factory,  # noqa: F401 - a fixture
    kernel_pair,
    make,
    parse_arp,
    reply,
    request,
)

from ipgate.engine.engine import Engine
from ipgate.engine.result import Tx
from ipgate.inet import aton
from ipgate.link import neigh as neigh_mod
from ipgate.link.layer import LinkLayer, format_neigh_show, neigh_parms
from ipgate.link.neigh import (
    NEIGH_UPDATE_F_ADMIN,
    NEIGH_UPDATE_F_OVERRIDE,
    SKB_TRUESIZE,
    TRANSITIONS,
    Event,
    Neighbour,
    NeighParms,
    Nud,
    next_state,
    rand_reach_time,
    skb_truesize,
    unres_qlen_bytes,
)
from ipgate.packet.build import build_udp

ADDR = "192.0.2.50"
KEY = aton(ADDR)


def pkt(tag: int = 0, size: int = 28, src: str = "192.0.2.1", dst: str = ADDR) -> bytes:
    """An IPv4/UDP packet of `size` bytes whose payload starts with `tag`."""
    body = tag.to_bytes(4, "big") + bytes(max(0, size - 32))
    return bytes(build_udp(aton(src), aton(dst), 4000, 9, body))


def entry(ll: LinkLayer, addr: str = ADDR) -> Neighbour:
    n = ll.table.lookup("veth0", aton(addr))
    assert n is not None
    return n


def arp_out(frames: list[tuple[str, bytes]]) -> list[tuple[bytes, str, str]]:
    """(destination MAC, sender IP, target IP) of the ARP requests among frames."""
    return [(f[:6], parse_arp(f)[4], parse_arp(f)[6]) for _, f in frames if f[12:14] == b"\x08\x06"]


def ip_out_frames(frames: list[tuple[str, bytes]]) -> list[tuple[bytes, bytes]]:
    """(destination MAC, IPv4 packet without the Ethernet padding) of the IPv4 frames."""
    return [(f[:6], f[14:14 + int.from_bytes(f[16:18], "big")]) for _, f in frames if f[12:14] == b"\x08\x00"]


# ---------------------------------------------------------------------------
# The state table, transition by transition
# ---------------------------------------------------------------------------
class Rec:
    """Records every (state, event) the code looks up in TRANSITIONS."""

    def __init__(self) -> None:
        self.seen: list[tuple[Nud, Event]] = []

    def __call__(self, state: Nud, event: Event) -> Nud:
        self.seen.append((state, event))
        return next_state(state, event)


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Rec:
    r = Rec()
    monkeypatch.setattr(neigh_mod, "next_state", r)
    return r


# -- getting an entry into each state (returns the time the state was reached) --
Builder = Callable[[LinkLayer], float]


def to_none(ll: LinkLayer) -> float:
    assert ll.table.create("veth0", KEY, 1.0) is not None
    return 1.0


def to_incomplete(ll: LinkLayer) -> float:
    ll.ip_out("veth0", KEY, pkt(1), 1.0)
    return 1.0


def to_reachable(ll: LinkLayer) -> float:
    to_incomplete(ll)
    ll.frame_in("veth0", reply(PEER, ADDR, "192.0.2.1"), 1.1)
    return 1.1


def to_stale(ll: LinkLayer) -> float:
    ll.frame_in("veth0", request(PEER, ADDR, "192.0.2.1"), 1.0)
    return 1.0


def to_delay(ll: LinkLayer) -> float:
    to_stale(ll)
    ll.ip_out("veth0", KEY, pkt(2), 2.0)
    return 2.0


def to_probe(ll: LinkLayer) -> float:
    to_delay(ll)
    ll.handle_timer(7.0)
    return 7.0


def to_failed(ll: LinkLayer) -> float:
    to_incomplete(ll)
    for t in (2.0, 3.0, 4.0):
        ll.handle_timer(t)
    return 4.0


def to_noarp(ll: LinkLayer) -> float:
    ll.neigh_add("veth0", KEY, PEER, 1.0, state=Nud.NOARP)
    return 1.0


def to_permanent(ll: LinkLayer) -> float:
    ll.neigh_add("veth0", KEY, PEER, 1.0)
    return 1.0


BUILD: dict[Nud, Builder] = {
    Nud.NONE: to_none, Nud.INCOMPLETE: to_incomplete, Nud.REACHABLE: to_reachable, Nud.STALE: to_stale,
    Nud.DELAY: to_delay, Nud.PROBE: to_probe, Nud.FAILED: to_failed, Nud.NOARP: to_noarp,
    Nud.PERMANENT: to_permanent,
}


# -- applying each event by real inputs --
def ev_send(ll: LinkLayer, t: float) -> None:
    ll.ip_out("veth0", KEY, pkt(9), t + 0.1)


def ev_send_unprobed(ll: LinkLayer, t: float) -> None:
    apply(ll.stack, "sysctl -w net.ipv4.neigh.veth0.mcast_solicit=0")
    ll.ip_out("veth0", KEY, pkt(9), t + 0.1)


def ev_confirm(ll: LinkLayer, t: float) -> None:
    ll.frame_in("veth0", reply(PEER, ADDR, "192.0.2.1"), t + 0.1)  # unicast reply, the known address


def ev_learn(ll: LinkLayer, t: float) -> None:
    ll.frame_in("veth0", request(PEER2, ADDR, "192.0.2.1"), t + 0.1)  # a request for us, a new address


def ev_learn_same(ll: LinkLayer, t: float) -> None:
    ll.frame_in("veth0", request(PEER, ADDR, "192.0.2.1"), t + 0.1)


def ev_conflict(ll: LinkLayer, t: float) -> None:
    n = entry(ll)
    ll.frame_in("veth0", reply(PEER2, ADDR, "192.0.2.1"), n.updated + 0.5)  # within locktime


def _fire(ll: LinkLayer, offset: float = 0.0) -> None:
    n = entry(ll)
    assert n.timer is not None
    ll.handle_timer(n.timer + offset)


def ev_timer_alive(ll: LinkLayer, t: float) -> None:
    _fire(ll)  # exactly confirmed + reachable_time: time_before_eq() still holds


def ev_timer_used(ll: LinkLayer, t: float) -> None:
    apply(ll.stack, "sysctl -w net.ipv4.neigh.veth0.delay_first_probe_time=100")
    _fire(ll, 0.5)


def ev_timer_idle(ll: LinkLayer, t: float) -> None:
    _fire(ll, 0.5)


def ev_timer_confirmed(ll: LinkLayer, t: float) -> None:
    ll.table.confirm(entry(ll), t + 1.0)  # neigh_confirm(): forward progress seen during the delay
    _fire(ll)


def ev_timer_delay_expired(ll: LinkLayer, t: float) -> None:
    _fire(ll)


def ev_timer_retrans(ll: LinkLayer, t: float) -> None:
    _fire(ll)


def ev_timer_exhausted(ll: LinkLayer, t: float) -> None:
    n = entry(ll)
    start = n.state
    for _ in range(10):
        _fire(ll)
        if n.state != start:
            return


BRD = "192.0.2.255"


def ev_construct_noarp(ll: LinkLayer, t: float) -> None:
    """arp_constructor() decides at creation: a broadcast next hop is NOARP from the start."""
    ll.ip_out("veth0", aton(BRD), pkt(9, dst=BRD), t + 0.1)


def _admin(state: Nud) -> Callable[[LinkLayer, float], None]:
    def ev(ll: LinkLayer, t: float) -> None:
        if state == Nud.FAILED:  # the first half of `ip neigh del` (the entry is then removed)
            ll.table.update(entry(ll), None, Nud.FAILED, NEIGH_UPDATE_F_OVERRIDE | NEIGH_UPDATE_F_ADMIN, t + 0.1)
        else:
            ll.neigh_add("veth0", KEY, PEER3, t + 0.1, state=state)
    return ev


APPLY: dict[Event, Callable[[LinkLayer, float], None]] = {
    Event.SEND: ev_send, Event.SEND_UNPROBED: ev_send_unprobed, Event.CONFIRM: ev_confirm, Event.LEARN: ev_learn,
    Event.LEARN_SAME: ev_learn_same, Event.CONFLICT: ev_conflict, Event.TIMER_ALIVE: ev_timer_alive,
    Event.TIMER_USED: ev_timer_used, Event.TIMER_IDLE: ev_timer_idle, Event.TIMER_CONFIRMED: ev_timer_confirmed,
    Event.TIMER_DELAY_EXPIRED: ev_timer_delay_expired, Event.TIMER_RETRANS: ev_timer_retrans,
    Event.TIMER_EXHAUSTED: ev_timer_exhausted, Event.CONSTRUCT_NOARP: ev_construct_noarp,
    Event.ADMIN_PERMANENT: _admin(Nud.PERMANENT), Event.ADMIN_NOARP: _admin(Nud.NOARP),
    Event.ADMIN_REACHABLE: _admin(Nud.REACHABLE), Event.ADMIN_STALE: _admin(Nud.STALE),
    Event.ADMIN_FAILED: _admin(Nud.FAILED),
}

ALL_PAIRS = [(s, e) for s, row in TRANSITIONS.items() for e in row]


def test_table_is_complete() -> None:
    assert set(TRANSITIONS) == set(Nud)
    for row in TRANSITIONS.values():
        for e in (Event.ADMIN_PERMANENT, Event.ADMIN_NOARP, Event.ADMIN_REACHABLE, Event.ADMIN_STALE,
                  Event.ADMIN_FAILED):
            assert e in row
    assert set(APPLY) == set(Event)
    # an unlisted pair keeps the state (the kernel's `goto out`)
    assert next_state(Nud.PERMANENT, Event.CONFIRM) == Nud.PERMANENT
    assert next_state(Nud.FAILED, Event.TIMER_RETRANS) == Nud.FAILED


@pytest.mark.parametrize("state,event", ALL_PAIRS, ids=[f"{s.name}-{e.name}" for s, e in ALL_PAIRS])
def test_transition(state: Nud, event: Event, rec: Rec) -> None:
    ll, _ = make(BASE)
    t = BUILD[state](ll)
    n = entry(ll)
    assert n.state == state
    rec.seen.clear()
    APPLY[event](ll, t)
    want = TRANSITIONS[state][event]
    final = entry(ll, BRD if event == Event.CONSTRUCT_NOARP else ADDR).state
    if final != want:
        # an entry that becomes valid sends its queue through neigh_resolve_output: a STALE one goes on to
        # DELAY with the first packet (a second, chained lookup)
        assert (want, Event.SEND) in rec.seen[rec.seen.index((state, event)):]
        assert final == TRANSITIONS[want][Event.SEND]
    if want != state or event != Event.SEND:
        # the code consulted the table for this very pair (a packet for an entry that needs no resolution
        # work - REACHABLE, DELAY, PROBE, NOARP, PERMANENT - is the one case that never asks it)
        assert (state, event) in rec.seen, rec.seen


def test_unlisted_events_leave_the_state() -> None:
    """ARP cannot touch NOARP/PERMANENT; a reply for a FAILED entry's old timer is ignored."""
    for state in (Nud.NOARP, Nud.PERMANENT):
        for ev in (ev_confirm, ev_learn, ev_learn_same):
            ll, _ = make(BASE)
            t = BUILD[state](ll)
            ev(ll, t)
            assert entry(ll).state == state and entry(ll).ha == PEER


# ---------------------------------------------------------------------------
# Timers on an injected clock
# ---------------------------------------------------------------------------
def run_timers(ll: LinkLayer, until: float, *, stop: Callable[[], bool] = lambda: False
               ) -> list[tuple[float, list[tuple[str, bytes]], list[bytes]]]:
    """Drive handle_timer at each next_timer() up to `until`: [(time, frames, failed)] with output."""
    out = []
    for _ in range(10_000):
        t = ll.next_timer()
        if t is None or t > until or stop():
            break
        frames, failed = ll.handle_timer(t)
        if frames or failed:
            out.append((t, frames, failed))
    return out


def test_resolution_requests_then_failed() -> None:
    """INCOMPLETE: mcast_solicit (3) broadcast requests, retrans_time (1 s) apart, then FAILED at 3 s and every
    queued packet back for ICMP host unreachable."""
    ll, _ = make(BASE)
    first = ll.ip_out("veth0", KEY, pkt(1), 10.0)
    assert arp_out(first) == [(BCAST, "192.0.2.1", ADDR)]
    assert ll.ip_out("veth0", KEY, pkt(2), 10.2) == []  # queued, no new request
    assert ll.ip_out("veth0", KEY, pkt(3), 10.4) == []
    assert ll.next_timer() == 11.0
    events = run_timers(ll, 20.0)
    assert [(t, arp_out(f), failed) for t, f, failed in events] == [
        (11.0, [(BCAST, "192.0.2.1", ADDR)], []),
        (12.0, [(BCAST, "192.0.2.1", ADDR)], []),
        (13.0, [], [pkt(1), pkt(2), pkt(3)]),
    ]
    assert entry(ll).state == Nud.FAILED and entry(ll).queue_bytes == 0
    assert format_neigh_show(ll.neighbours()) == f"{ADDR} dev veth0 FAILED \n"
    # a new packet starts again at once
    assert arp_out(ll.ip_out("veth0", KEY, pkt(4), 20.0)) == [(BCAST, "192.0.2.1", ADDR)]
    assert entry(ll).state == Nud.INCOMPLETE and entry(ll).probes == 4


def test_resolution_succeeds_and_the_queue_leaves_in_order() -> None:
    ll, _ = make(BASE)
    for i in range(5):
        ll.ip_out("veth0", KEY, pkt(i), 1.0 + i / 10)
    _, frames = ll.frame_in("veth0", reply(PEER, ADDR, "192.0.2.1"), 1.7)
    assert ip_out_frames(frames) == [(PEER, pkt(i)) for i in range(5)]
    assert all(f[6:12] == KMAC and len(f) >= 60 for _, f in frames)
    n = entry(ll)
    assert (n.state, n.ha, n.confirmed, n.used) == (Nud.REACHABLE, PEER, 1.7, 1.7)
    # the fast path now: framed at once, `used` not touched (neigh_hh_output)
    assert ip_out_frames(ll.ip_out("veth0", KEY, pkt(9), 3.0)) == [(PEER, pkt(9))]
    assert n.used == 1.7


def test_reachable_stale_delay_probe_cycle() -> None:
    """The life of a forwarding next hop: REACHABLE for reachable_time, STALE when idle, DELAY on the next
    packet (sent at once, to the old address), then a reply makes it REACHABLE; without one, PROBE: ucast_solicit
    unicast requests, and FAILED."""
    ll, _ = make(BASE, seed=7)
    to_reachable(ll)
    n = entry(ll)
    rt = ll.table.reachable_time("veth0")
    assert 15.0 <= rt < 45.0 and n.timer == 1.1 + rt
    run_timers(ll, 100.0, stop=lambda: n.state != Nud.REACHABLE)
    assert n.state == Nud.STALE and n.timer is None
    sent = ll.ip_out("veth0", KEY, pkt(5), 100.0)
    assert ip_out_frames(sent) == [(PEER, pkt(5))] and n.state == Nud.DELAY and n.timer == 105.0
    ll.frame_in("veth0", reply(PEER, ADDR, "192.0.2.1"), 101.0)
    assert n.state == Nud.REACHABLE and n.timer == 101.0 + rt
    # again, without an answer this time
    run_timers(ll, 200.0, stop=lambda: n.state != Nud.REACHABLE)
    ll.ip_out("veth0", KEY, pkt(6), 200.0)
    events = run_timers(ll, 300.0, stop=lambda: n.state == Nud.FAILED)
    assert [(t, arp_out(f), failed) for t, f, failed in events if f or failed] == [
        (205.0, [(PEER, "192.0.2.1", ADDR)], []),
        (206.0, [(PEER, "192.0.2.1", ADDR)], []),
        (207.0, [(PEER, "192.0.2.1", ADDR)], []),
    ]
    assert n.state == Nud.FAILED and n.updated == 208.0  # nothing queued: nothing to report


def test_mcast_resolicit_and_app_solicit() -> None:
    ll, st = make(BASE)
    apply(st, "sysctl -w net.ipv4.neigh.veth0.mcast_resolicit=1\nsysctl -w net.ipv4.neigh.veth0.ucast_solicit=1")
    to_probe(ll)
    n = entry(ll)
    assert n.state == Nud.PROBE
    # (to_probe's own first probe went out at 7.0, unicast); then one broadcast, then FAILED
    events = run_timers(ll, 30.0, stop=lambda: n.state == Nud.FAILED)
    assert [(t, arp_out(f)) for t, f, _ in events] == [(8.0, [(BCAST, "192.0.2.1", ADDR)])]
    assert entry(ll).state == Nud.FAILED
    # app_solicit: the first request is meant for a userspace helper (neigh_app_ns): ipgate has none, nothing
    # is sent; the broadcast ones follow
    ll, st = make(BASE)
    apply(st, "sysctl -w net.ipv4.neigh.veth0.app_solicit=1")
    assert ll.ip_out("veth0", KEY, pkt(1), 1.0) == []
    assert ll.table.max_probes(entry(ll)) == 7
    assert [(t, arp_out(f), len(fl)) for t, f, fl in run_timers(ll, 30.0)] == \
        [(2.0, [(BCAST, "192.0.2.1", ADDR)], 0), (3.0, [(BCAST, "192.0.2.1", ADDR)], 0),
         (4.0, [(BCAST, "192.0.2.1", ADDR)], 0), (5.0, [], 1)]


def test_retrans_time_and_locktime_from_sysctl() -> None:
    ll, st = make(BASE)
    apply(st, "sysctl -w net.ipv4.neigh.default.retrans_time_ms=250\nsysctl -w net.ipv4.neigh.veth0.locktime=300")
    ll.ip_out("veth0", KEY, pkt(1), 0.0)
    assert [t for t, _, _ in run_timers(ll, 5.0)] == [0.25, 0.5, 0.75]
    to_reachable(ll)
    ll.frame_in("veth0", reply(PEER2, ADDR, "192.0.2.1"), 3.0)  # 1.9 s later, still within 3 s of locktime
    assert entry(ll).ha == PEER
    ll.frame_in("veth0", reply(PEER2, ADDR, "192.0.2.1"), 4.2)
    assert entry(ll).ha == PEER2


def test_reachable_time_is_randomised_with_the_injected_rng() -> None:
    def rt(seed: int) -> float:
        ll, _ = make(BASE, seed=seed)
        return ll.table.reachable_time("veth0")

    values = [rt(s) for s in range(20)]
    assert all(15.0 <= v < 45.0 for v in values)
    assert rt(3) == rt(3) and len(set(values)) == 20
    assert rand_reach_time(random.Random(0), 0.0) == 0.0
    ll, st = make(BASE, seed=1)
    first = ll.table.reachable_time("veth0")
    apply(st, "sysctl -w net.ipv4.neigh.veth0.base_reachable_time_ms=2000")  # a new base: drawn again
    assert 1.0 <= ll.table.reachable_time("veth0") < 3.0
    apply(st, "sysctl -w net.ipv4.neigh.veth0.base_reachable_time_ms=30000")
    again = ll.table.reachable_time("veth0")
    assert again != first
    # neigh_periodic_work draws it again every 300 s (the first time after 20 reachable_times)
    ll.table.start(0.0)
    for t in range(0, 2000, 15):
        ll.handle_timer(float(t))
    assert ll.table.reachable_time("veth0") != again


# ---------------------------------------------------------------------------
# The unres queue
# ---------------------------------------------------------------------------
def test_truesize_model() -> None:
    assert [skb_truesize(n) for n in (28, 208, 228, 628, 728, 1500)] == [832, 832, 1280, 1280, 2304, 2304]
    assert SKB_TRUESIZE(1514) == 2090 and 212992 // SKB_TRUESIZE(1514) == 101
    assert unres_qlen_bytes(3) == 6270


def test_queue_limit_drops_the_oldest() -> None:
    ll, _ = make(BASE)
    for i in range(100):
        ll.ip_out("veth0", KEY, pkt(i, size=1000), 1.0)
    n = entry(ll)
    assert len(n.queue) == 212992 // 2304 == 92 and n.queue_bytes == 92 * 2304
    assert ll.table.stats["unres_discards"] == 8
    _, frames = ll.frame_in("veth0", reply(PEER, ADDR, "192.0.2.1"), 1.5)
    assert [p for _, p in ip_out_frames(frames)] == [pkt(i, size=1000) for i in range(8, 100)]


def test_queue_limit_in_packets_and_an_oversized_packet() -> None:
    ll, st = make(BASE)
    apply(st, "sysctl -w net.ipv4.neigh.veth0.unres_qlen=3")  # 3 * SKB_TRUESIZE(1514) = 6270 bytes
    for i in range(5):
        ll.ip_out("veth0", KEY, pkt(i, size=1000), 1.0)
    assert [p[28:32] for p in entry(ll).queue] == [(3).to_bytes(4, "big"), (4).to_bytes(4, "big")]
    apply(st, "sysctl -w net.ipv4.neigh.veth0.unres_qlen_bytes=1000")
    ll.ip_out("veth0", KEY, pkt(7, size=1400), 1.1)  # larger than the limit: queued alone, the rest dropped
    assert list(entry(ll).queue) == [pkt(7, size=1400)]


def test_failed_packets_give_icmp_host_unreachable() -> None:
    """handle_timer's failed packets are what Engine.link_failure turns into ICMP host unreachable."""
    ll, st = make(BASE + "sysctl -w net.ipv4.ip_forward=1\n")
    fwd = pkt(1, src="198.51.100.7")
    ll.ip_out("veth0", KEY, fwd, 0.0)
    failed = [p for _, _, fl in run_timers(ll, 10.0) for p in fl]
    assert failed == [fwd]
    out = Engine(st).link_failure(failed[0], 3.0)
    icmp = [r for r in out if isinstance(r, Tx)]
    assert len(icmp) == 1 and icmp[0].dev == "other0"
    data = icmp[0].data
    assert data[9] == 1 and data[16:20] == socket.inet_aton("198.51.100.7") and data[20:22] == b"\x03\x01"


# ---------------------------------------------------------------------------
# Garbage collection, devices, administration
# ---------------------------------------------------------------------------
def test_periodic_gc() -> None:
    ll, st = make(BASE)
    apply(st, "sysctl -w net.ipv4.neigh.default.gc_thresh1=1")
    to_stale(ll)  # STALE, used at 1.0
    ll.neigh_add("veth0", aton("192.0.2.60"), PEER2, 1.0)  # PERMANENT
    ll.ip_out("veth0", aton("192.0.2.61"), pkt(1, dst="192.0.2.61"), 1.0)  # will fail
    run_timers(ll, 50.0)
    assert ll.table.lookup("veth0", aton("192.0.2.61")) is None  # FAILED: collected at the next run
    assert entry(ll).state == Nud.STALE  # not yet gc_stale_time (60 s) unused
    run_timers(ll, 100.0)
    assert ll.table.lookup("veth0", KEY) is None
    assert format_neigh_show(ll.neighbours()) == "192.0.2.60 dev veth0 lladdr 02:00:00:00:00:11 PERMANENT \n"
    assert ll.table.stats["periodic_gc_runs"] >= 3


def test_periodic_gc_waits_for_gc_thresh1() -> None:
    ll, _ = make(BASE)
    to_stale(ll)
    run_timers(ll, 1000.0)
    assert entry(ll).state == Nud.STALE  # 1 entry < gc_thresh1 (128): the kernel does not collect


def test_forced_gc_and_table_overflow() -> None:
    ll, st = make(BASE)
    apply(st, "sysctl -w net.ipv4.neigh.default.gc_thresh2=2\nsysctl -w net.ipv4.neigh.default.gc_thresh3=3")
    for i in range(3):
        assert ll.ip_out("veth0", aton(f"192.0.2.{70 + i}"), pkt(i), 0.0)
    # full, and nothing is old enough (updated in the last 5 s): neighbor table overflow
    assert ll.ip_out("veth0", aton("192.0.2.80"), pkt(9), 1.0) == []
    assert ll.drops["NEIGH_CREATEFAIL"] == 1 and ll.table.stats["table_fulls"] == 1
    # nor is a requester learned, so it gets no answer (neigh_event_ns() failed)
    assert ll.frame_in("veth0", request(PEER, "192.0.2.81", "192.0.2.1"), 1.0) == (None, [])
    assert ll.drops["NEIGH_CREATEFAIL"] == 2
    run_timers(ll, 3.5)  # the three have FAILED
    assert arp_out(ll.ip_out("veth0", aton("192.0.2.80"), pkt(9), 4.0))
    assert ll.table.lookup("veth0", aton("192.0.2.70")) is None  # the oldest went (max_clean = 3 - 2)
    assert len(ll.table) == 3


def test_device_down_flushes_every_entry() -> None:
    ll, st = make(BASE)
    to_incomplete(ll)
    ll.neigh_add("veth0", aton("192.0.2.60"), PEER2, 1.0)
    ll.frame_in("veth0", request(PEER, "192.0.2.61", "192.0.2.1"), 1.0)
    st.link_set_up(st.devices["veth0"], False)
    ll.device_down("veth0")
    assert ll.neighbours() == []
    assert ll.handle_timer(5.0) == ([], [])  # the queued packet went silently
    assert ll.ip_out("veth0", KEY, pkt(1), 6.0) == [] and ll.drops["DEV_DOWN"] == 1


def test_neigh_add_and_del() -> None:
    ll, _ = make(BASE)
    to_incomplete(ll)
    # a permanent entry for a neighbour being resolved releases its queue at once
    frames = ll.neigh_add("veth0", KEY, PEER3, 1.5)
    assert ip_out_frames(frames) == [(PEER3, pkt(1))]
    assert format_neigh_show(ll.neighbours()) == f"{ADDR} dev veth0 lladdr 02:00:00:00:00:12 PERMANENT \n"
    assert ll.neigh_del("veth0", KEY, 2.0) == [] and ll.neighbours() == []
    to_incomplete(ll)
    assert ll.neigh_del("veth0", KEY, 2.0) == [pkt(1)]  # reported, as neigh_invalidate() does
    with pytest.raises(ValueError):
        ll.neigh_add("veth0", KEY, PEER, 1.0, state=Nud.DELAY)
    with pytest.raises(ValueError):
        ll.neigh_add("lo", KEY, PEER, 1.0)
    with pytest.raises(ValueError, match="No link layer address"):
        ll.neigh_add("veth0", aton("192.0.2.90"), None, 1.0)
    ll.neigh_add("veth0", aton("192.0.2.90"), PEER, 1.0)
    ll.neigh_add("veth0", aton("192.0.2.90"), None, 2.0, state=Nud.NOARP)  # keeps the known address
    assert entry(ll, "192.0.2.90").ha == PEER and entry(ll, "192.0.2.90").state == Nud.NOARP


def test_format_neigh_show_like_iproute2() -> None:
    """Lines as iproute2 6.1 printed them on Linux 6.18 (`ip neigh add ... nud X`, then `ip neigh show`)."""
    ll, _ = make(BASE)
    ll.neigh_add("veth0", aton("192.0.2.5"), bytes.fromhex("020000000005"), 1.0)
    ll.neigh_add("veth0", aton("192.0.2.6"), bytes.fromhex("020000000006"), 1.0, state=Nud.NOARP)
    ll.neigh_add("veth0", aton("192.0.2.7"), bytes.fromhex("020000000007"), 1.0, state=Nud.STALE)
    ll.neigh_add("veth0", aton("192.0.2.8"), bytes.fromhex("020000000008"), 1.0, state=Nud.REACHABLE)
    ll.ip_out("veth0", aton("192.0.2.9"), pkt(1, dst="192.0.2.9"), 1.0)
    assert ll.table.create("veth0", aton("192.0.2.11"), 1.0) is not None
    assert format_neigh_show(ll.neighbours()).splitlines() == [
        "192.0.2.5 dev veth0 lladdr 02:00:00:00:00:05 PERMANENT ",
        "192.0.2.7 dev veth0 lladdr 02:00:00:00:00:07 STALE ",
        "192.0.2.8 dev veth0 lladdr 02:00:00:00:00:08 REACHABLE ",
        "192.0.2.9 dev veth0 INCOMPLETE ",
    ]
    assert "192.0.2.6 dev veth0 lladdr 02:00:00:00:00:06 NOARP \n" in format_neigh_show(ll.neighbours(),
                                                                                       show_all=True)
    assert "192.0.2.11 dev veth0 \n" in format_neigh_show(ll.neighbours(), show_all=True)
    assert format_neigh_show(ll.neighbours(), dev="veth0").splitlines()[0] == \
        "192.0.2.5 lladdr 02:00:00:00:00:05 PERMANENT "
    assert format_neigh_show(ll.neighbours(), dev="other0") == ""


def test_rebind_keeps_the_cache_and_reads_the_new_sysctls() -> None:
    ll, _ = make(BASE)
    to_stale(ll)
    new = make(BASE + "sysctl -w net.ipv4.neigh.veth0.retrans_time_ms=200\n")[1]
    ll.rebind(new)
    assert entry(ll).state == Nud.STALE and ll.table.parms("veth0").retrans_time == 0.2


def test_neigh_parms_from_sysctl() -> None:
    assert neigh_parms({}, "veth0") == NeighParms()
    sysctls = {
        "net.ipv4.neigh.default.retrans_time": 50, "net.ipv4.neigh.veth0.retrans_time_ms": 300,
        "net.ipv4.neigh.default.base_reachable_time": 10, "net.ipv4.neigh.veth0.unres_qlen": 5,
        "net.ipv4.neigh.veth0.delay_first_probe_time": 2, "net.ipv4.neigh.default.mcast_solicit": 5,
        "net.ipv4.neigh.veth1.ucast_solicit": 9, "net.ipv4.neigh.default.gc_stale_time": 30,
    }
    p = neigh_parms(sysctls, "veth0")
    assert (p.retrans_time, p.base_reachable_time, p.queue_len_bytes, p.delay_probe_time, p.mcast_probes,
            p.ucast_probes, p.gc_staletime) == (0.3, 10.0, 5 * 2090, 2.0, 5, 3, 30.0)
    assert neigh_parms(sysctls, "").retrans_time == 0.5


def test_timers_stay_bounded() -> None:
    """Many entries and many timer calls: next_timer always moves forward, no work is lost or repeated."""
    ll, st = make(BASE)
    apply(st, "sysctl -w net.ipv4.neigh.default.gc_thresh1=1")
    for i in range(200):
        ll.ip_out("veth0", aton(f"192.0.2.{i % 200 + 20}") if i < 200 else KEY, pkt(i), i / 100)
    seen = run_timers(ll, 10.0)
    assert sum(len(f) for _, _, f in seen) == 200  # every queued packet reported exactly once
    t0 = ll.next_timer()
    assert t0 is not None and t0 > 10.0
    run_timers(ll, 200.0)
    assert len(ll.table) == 0


# ---------------------------------------------------------------------------
# The kernel as an oracle
# ---------------------------------------------------------------------------
IP_RECVERR = 11
MSG_ERRQUEUE = 0x2000
_EE = struct.Struct("=IBBBBII")  # struct sock_extended_err


def _udp_socket(kp: KernelPair) -> socket.socket:
    with kp.entered(kp.k):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 1 << 24)
    s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    s.setblocking(False)
    return s


def _errors(s: socket.socket) -> list[tuple[int, int, int, int]]:
    """(errno, origin, type, code) of the ICMP errors queued on s."""
    out = []
    for _ in range(1000):
        try:
            _, anc, _, _ = s.recvmsg(2048, 512, MSG_ERRQUEUE)
        except BlockingIOError:
            break
        for level, kind, data in anc:
            if level == socket.IPPROTO_IP and kind == IP_RECVERR:
                ee_errno, origin, typ, code, _, _, _ = _EE.unpack_from(data)
                out.append((ee_errno, origin, typ, code))
    return out


def _wait_state(kp: KernelPair, addr: str, word: str, limit: float) -> float:
    """Poll `ip neigh` until addr shows `word`; the time it was first seen."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for line in kp.neigh_show():
            if line.startswith(addr + " ") and line.rstrip().endswith(word):
                return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"{addr} never became {word}: {kp.neigh_show()}")


@pytest.fixture
def kp(kernel_factory: list[KernelPair]) -> Iterator[KernelPair]:  # noqa: F811
    yield kernel_pair(kernel_factory, BASE)


@pytest.mark.netns
def test_kernel_resolution_sequence(kp: KernelPair) -> None:
    """Three datagrams to a silent neighbour: the kernel's broadcast requests and their times, FAILED, one ICMP
    host unreachable per queued datagram; ipgate on an injected clock."""
    s = _udp_socket(kp)
    try:
        kp.drain()
        t0 = time.monotonic()
        for i in range(3):
            s.sendto(i.to_bytes(4, "big"), (ADDR, 9))
        arps = [(t - t0, f) for t, f in kp.recv(t0 + 2.6) if f[12:14] == b"\x08\x06"]
        failed_at = _wait_state(kp, ADDR, "FAILED", 3.0) - t0
        errors = _errors(s)
    finally:
        s.close()
    ll, _ = make(BASE)
    ours = [(0.0, f) for _, f in ll.ip_out("veth0", KEY, pkt(0, size=32), 0.0)]
    ll.ip_out("veth0", KEY, pkt(1, size=32), 0.0)
    ll.ip_out("veth0", KEY, pkt(2, size=32), 0.0)
    ours_failed: list[tuple[float, list[bytes]]] = []
    for t, frames, failed in run_timers(ll, 10.0):
        ours += [(t, f) for _, f in frames]
        if failed:
            ours_failed.append((t, failed))
    assert [f[:42] for _, f in arps] == [f[:42] for _, f in ours]
    assert len(ours) == 3
    for (tk, _), (ti, _) in zip(arps, ours, strict=True):
        assert abs(tk - ti) < 0.25, (tk, ti)
    assert ours_failed and len(ours_failed[0][1]) == 3 and ours_failed[0][0] == 3.0
    assert 3.0 - 0.1 < failed_at < 3.0 + 0.35  # seen by polling `ip neigh`
    assert errors == [(113, 2, 3, 1)] * 3  # EHOSTUNREACH, SO_EE_ORIGIN_ICMP, dest unreachable, host
    assert format_neigh_show(ll.neighbours()).splitlines() == kp.neigh_show()


@pytest.mark.netns
def test_kernel_stale_delay_probe_failed(kp: KernelPair) -> None:
    """Resolved, left idle into STALE, used again: the datagram leaves at once to the known address, and with no
    answer the kernel probes by unicast after delay_first_probe_time, retrans_time apart, then FAILED."""
    tune = ("sysctl -w net.ipv4.neigh.veth0.base_reachable_time_ms=2200\n"
            "sysctl -w net.ipv4.neigh.veth0.delay_first_probe_time=1")
    kp.script(tune)
    s = _udp_socket(kp)
    try:
        kp.drain()
        s.sendto(b"one", (ADDR, 9))
        for _, f in kp.recv(time.monotonic() + 1.0):
            if f[12:14] == b"\x08\x06":
                kp.send(reply(PEER, ADDR, "192.0.2.1"))
                break
        first = [f for _, f in kp.recv(time.monotonic() + 0.3) if f[12:14] == b"\x08\x00"]
        _wait_state(kp, ADDR, "STALE", 5.0)
        t1 = time.monotonic()
        s.sendto(b"two", (ADDR, 9))
        seen = [(t - t1, f) for t, f in kp.recv(t1 + 3.6)]
        failed_at = _wait_state(kp, ADDR, "FAILED", 2.0) - t1
    finally:
        s.close()
    assert len(first) == 1 and first[0][:6] == PEER
    kernel = [(round(t, 1), f[:6], f[12:14]) for t, f in seen]
    ll, st = make(BASE)
    apply(st, tune)
    ll.ip_out("veth0", KEY, pkt(1), 0.0)
    ll.frame_in("veth0", reply(PEER, ADDR, "192.0.2.1"), 0.001)
    n = entry(ll)
    run_timers(ll, 100.0, stop=lambda: n.state == Nud.STALE)
    t1i = n.updated + 0.5  # some time while STALE
    ours = [(0.0, f) for _, f in ll.ip_out("veth0", KEY, pkt(2), t1i)]
    ours_failed = None
    for t, frames, _ in run_timers(ll, t1i + 10.0, stop=lambda: n.state == Nud.FAILED):
        ours += [(t - t1i, f) for _, f in frames]
    if n.state == Nud.FAILED:
        ours_failed = n.updated - t1i
    mine = [(round(t, 1), f[:6], f[12:14]) for t, f in ours]
    assert [(d, e) for _, d, e in kernel] == [(d, e) for _, d, e in mine] == \
        [(PEER, b"\x08\x00")] + [(PEER, b"\x08\x06")] * 3
    for (tk, _, _), (ti, _, _) in zip(kernel, mine, strict=True):
        assert abs(tk - ti) <= 0.25, (kernel, mine)
    assert ours_failed is not None and abs(ours_failed - 4.0) < 1e-9
    assert 4.0 - 0.1 < failed_at < 4.0 + 0.35


@pytest.mark.netns
def test_kernel_unres_queue(kp: KernelPair) -> None:
    """Bursts to unresolved neighbours: the kernel keeps the newest datagrams that fit in unres_qlen_bytes
    (charged by truesize) and sends them once resolved; ipgate keeps the same ones."""
    assert kp.neigh_show() == []
    qlen = int(subprocess_out(kp, "net.ipv4.neigh.veth0.unres_qlen"))
    assert qlen == 212992 // SKB_TRUESIZE(1514) == 101
    cases = [(100, 212992), (400, 212992), (1000, 212992), (1000, unres_qlen_bytes(3))]
    ll, st = make(BASE)
    for k, (size, limit) in enumerate(cases):
        if limit != 212992:
            kp.script("sysctl -w net.ipv4.neigh.veth0.unres_qlen=3")
            apply(st, "sysctl -w net.ipv4.neigh.veth0.unres_qlen=3")
            assert int(subprocess_out(kp, "net.ipv4.neigh.veth0.unres_qlen_bytes")) == limit
        dst = f"192.0.2.{120 + k}"
        s = _udp_socket(kp)
        try:
            kp.drain()
            for i in range(300):
                s.sendto(i.to_bytes(4, "big") + bytes(size - 4), (dst, 9))
            time.sleep(0.05)
            kp.send(reply(PEER, dst, "192.0.2.1"))
            kernel = [int.from_bytes(f[42:46], "big") for _, f in kp.recv(time.monotonic() + 0.5)
                      if f[12:14] == b"\x08\x00"]
        finally:
            s.close()
        for i in range(300):
            ll.ip_out("veth0", aton(dst), pkt(i, size=size + 28, dst=dst), 1.0 + k)
        _, frames = ll.frame_in("veth0", reply(PEER, dst, "192.0.2.1"), 1.5 + k)
        ours = [int.from_bytes(p[28:32], "big") for _, p in ip_out_frames(frames)]
        assert ours == kernel, (size, limit, len(ours), len(kernel))
        assert ours == list(range(300 - limit // skb_truesize(size + 28), 300))


def subprocess_out(kp: KernelPair, key: str) -> str:
    return _run(["ip", "netns", "exec", kp.k, "sysctl", "-n", key]).strip()
