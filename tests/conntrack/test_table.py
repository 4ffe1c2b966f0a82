"""The table: two-phase insertion, lazy expiry, gc, early drop, counters, expectations."""

from __future__ import annotations

import errno

from hypothesis import given, settings
from hypothesis import strategies as st

from ipgate.conntrack.conn import (
    IP_CT_ESTABLISHED,
    IP_CT_NEW,
    IP_CT_RELATED,
    IPCT_DESTROY,
    IPCT_NEW,
    IPS_ASSURED,
    IPS_EXPECTED,
    NF_ACCEPT,
    NF_DROP,
)
from ipgate.conntrack.expect import NF_CT_EXPECT_PERMANENT, Expectation
from ipgate.conntrack.sysctl import CtSysctl
from ipgate.conntrack.table import CT_INVALID
from ipgate.conntrack.tuple import Tuple
from ipgate.inet import aton

from .helpers import A, B, Harness
from .pkts import ACK, SYN, icmp, tcp, udp


def test_unconfirmed_entries_leave_nothing_behind() -> None:
    h = Harness()
    r = h.send(udp(A, B, 1000, 53), confirm=False)  # dropped between the hooks
    assert r.ctinfo == IP_CT_NEW and r.ct is not None and not r.ct.confirmed
    assert len(h.table) == 0 and h.table.find(r.ct.okey, h.now) is None
    r2 = h.send(udp(A, B, 1000, 53), confirm=False)
    assert r2.ctinfo == IP_CT_NEW and r2.ct is not r.ct
    assert h.table.confirm(r2.ct, r2.ctinfo, h.now) == NF_ACCEPT
    assert len(h.table) == 1 and h.table.confirm(r2.ct, r2.ctinfo, h.now) == NF_ACCEPT  # idempotent


def test_timeout_is_relative_until_confirmation() -> None:
    h = Harness()
    r = h.send(udp(A, B, 1000, 53), confirm=False)
    assert r.ct is not None and r.ct.timeout == 30
    h.tick(5)
    h.table.confirm(r.ct, r.ctinfo, h.now)
    assert h.left(r.ct) == 30


def test_lookup_by_either_direction() -> None:
    h = Harness()
    ct = h.send(udp(A, B, 1000, 53)).ct
    assert ct is not None
    assert h.table.lookup(Tuple(aton(A), aton(B), 17, 1000, 53), h.now) == (ct, 0)
    assert h.table.lookup(Tuple(aton(B), aton(A), 17, 53, 1000), h.now) == (ct, 1)
    assert h.table.lookup(Tuple(aton(B), aton(A), 17, 53, 1001), h.now) is None


def test_lazy_expiry_with_a_fake_clock() -> None:
    h = Harness()
    ct = h.send(udp(A, B, 1000, 53)).ct
    h.tick(29.9)
    assert h.send(udp(A, B, 1000, 53)).ct is ct  # refreshed: 30 s from now
    h.tick(30)
    r = h.send(udp(A, B, 1000, 53))  # expired exactly now: a new entry
    assert r.ct is not ct and r.ctinfo == IP_CT_NEW
    assert ct is not None and ct.dying and len(h.table) == 1
    assert h.table.events is not None and (IPCT_DESTROY, ct) in h.table.events


def test_gc_reclaims_expired_entries_in_slices() -> None:
    h = Harness()
    for port in range(100):
        h.send(udp(A, B, 2000 + port, 53))
    h.send(tcp(A, B, 40000, 80, SYN, seq=1))  # 120 s
    h.tick(31)
    assert h.table.gc(h.now, budget=40) == 40
    assert len(h.table) == 61
    assert h.table.gc(h.now) == 60
    assert len(h.table) == 1
    assert h.table.next_expiry() == 1000 + 120


def fill_assured(h: Harness, n: int) -> None:
    for i in range(n):
        h.send(udp(A, B, 10000 + i, 53))
        h.send(udp(B, A, 53, 10000 + i))
    h.tick(3)
    for i in range(n):
        h.send(udp(A, B, 10000 + i, 53))  # a stream now: ASSURED


def test_table_full_early_drop_keeps_established_flows() -> None:
    h = Harness(max=20)
    fill_assured(h, 20)
    flows = list(h.table.entries(h.now))
    assert len(flows) == 20 and all(ct.status & IPS_ASSURED for ct in flows)
    # Full of assured flows: the newcomer is refused, nobody is evicted.
    r = h.send(udp(A, B, 999, 53))
    assert (r.verdict, r.ct, r.reason) == (NF_DROP, None, "nf_conntrack: table full, dropping packet")
    assert set(h.table.entries(h.now)) == set(flows) and h.table.gc_early_drop
    # Free two slots; two unassured flows take them.
    h.table.kill(flows[0])
    h.table.kill(flows[1])
    old1 = h.send(udp(A, B, 801, 53)).ct
    old2 = h.send(udp(A, B, 802, 53)).ct
    # A new flow now evicts the oldest unassured one, never an assured one.
    r = h.send(udp(A, B, 803, 53))
    assert r.verdict == NF_ACCEPT and r.ct is not None
    assert old1 is not None and old1.dying and old2 is not None and not old2.dying
    assert all(not ct.dying for ct in flows[2:])
    assert h.table.stats.early_drop == 1 and len(h.table) == 20


def test_gc_drops_closing_flows_under_pressure_after_a_refused_flow() -> None:
    h = Harness(max=200)
    fill_assured(h, 199)
    closing = h.send(tcp(A, B, 41000, 80, SYN, seq=1)).ct
    h.send(tcp(B, A, 80, 41000, SYN | ACK, seq=9, ack=2))
    h.send(tcp(A, B, 41000, 80, ACK, seq=2, ack=10))
    h.send(tcp(A, B, 41000, 80, 0x11, seq=2, ack=10))  # FIN|ACK: FIN_WAIT, assured but closing
    assert len(h.table) == 200 and closing is not None and closing.status & IPS_ASSURED
    assert h.send(udp(A, B, 701, 53)).verdict == NF_DROP  # nothing unassured to evict
    assert h.table.gc_early_drop and not closing.dying
    # gc_worker at >= 95 % of nf_conntrack_max also drops closing TCP flows (tcp_can_early_drop).
    assert h.table.gc(h.now) == 1
    assert closing.dying and len(h.table) == 199
    assert not h.table.gc_early_drop  # a full pass clears the mode
    assert h.send(udp(A, B, 701, 53)).verdict == NF_ACCEPT


def test_small_tables_never_gc_early_drop() -> None:
    # nf_conntrack_max / 100 * 95 is 0 below 100 entries: gc_worker skips the early drop.
    h = Harness(max=20)
    fill_assured(h, 19)
    h.send(tcp(A, B, 41000, 80, SYN, seq=1))
    h.send(tcp(B, A, 80, 41000, SYN | ACK, seq=9, ack=2))
    h.send(tcp(A, B, 41000, 80, ACK, seq=2, ack=10))
    h.send(tcp(A, B, 41000, 80, 0x11, seq=2, ack=10))
    assert h.send(udp(A, B, 701, 53)).verdict == NF_DROP
    assert h.table.gc(h.now) == 0


def test_counters_when_accounting_is_on() -> None:
    h = Harness(acct=1)
    p = udp(A, B, 1000, 53, b"x" * 10)
    ct = h.send(p).ct
    h.send(p)
    h.send(udp(B, A, 53, 1000, b"y" * 100))
    assert ct is not None and ct.acct == [2, 2 * len(p), 1, 128]
    assert Harness().send(p).ct.acct is None  # type: ignore[union-attr]


def test_mark_is_a_plain_field() -> None:
    h = Harness()
    ct = h.send(udp(A, B, 1000, 53)).ct
    assert ct is not None and ct.mark == 0
    ct.mark = 0x2A  # CONNMARK --set-mark
    assert h.send(udp(B, A, 53, 1000)).ct.mark == 0x2A  # type: ignore[union-attr]


def test_expectations() -> None:
    h = Harness()
    ctrl = h.send(tcp(A, B, 40000, 21, SYN, seq=1)).ct
    h.send(tcp(B, A, 21, 40000, SYN | ACK, seq=9, ack=2))
    h.send(tcp(A, B, 40000, 21, ACK, seq=2, ack=10))
    assert ctrl is not None
    ctrl.mark = 7
    # "PORT": the server will connect from any port to A:50000.
    exp = Expectation(ctrl, Tuple(aton(B), aton(A), 6, 0, 50000), mask_sport=0, timeout=300, helper="ftp")
    assert h.table.expect.related(exp, h.now) == 0
    assert h.table.expect.related(exp, h.now) == 0  # the same one again replaces it
    other = Expectation(ctrl, Tuple(aton(B), aton(A), 6, 0, 50000), mask_sport=0, cls=1)
    assert h.table.expect.related(other, h.now) == -errno.EALREADY
    assert len(h.table.expect) == 1
    # Not matching: another destination port.
    assert h.send(tcp(B, A, 20, 50001, SYN, seq=1)).ctinfo == IP_CT_NEW
    r = h.send(tcp(B, A, 20, 50000, SYN, seq=1))
    assert r.ctinfo == IP_CT_RELATED and r.ct is not None
    assert r.ct.status & IPS_EXPECTED and r.ct.master is ctrl and r.ct.mark == 7 and r.ct.helper == "ftp"
    assert len(h.table.expect) == 0  # consumed
    assert h.table.events is not None and (IPCT_NEW, r.ct) not in h.table.events  # RELATED event instead
    r2 = h.send(tcp(A, B, 50000, 20, SYN | ACK, seq=5, ack=2))
    assert r2.ct is r.ct
    r3 = h.send(tcp(B, A, 20, 50000, ACK, seq=2, ack=6))
    assert r3.ctinfo == IP_CT_ESTABLISHED


def test_permanent_expectations_and_master_death() -> None:
    h = Harness()
    master = h.send(udp(A, B, 6000, 6000)).ct
    assert master is not None
    exp = Expectation(master, Tuple(aton(B), aton(A), 17, 0, 7000), mask_src=0, flags=NF_CT_EXPECT_PERMANENT)
    assert h.table.expect.related(exp, h.now) == 0
    assert h.send(udp("203.0.113.5", A, 1, 7000)).ctinfo == IP_CT_RELATED
    assert h.send(udp("203.0.113.6", A, 2, 7000)).ctinfo == IP_CT_RELATED  # still there
    h.table.kill(master)
    assert len(h.table.expect) == 0
    assert h.send(udp("203.0.113.7", A, 3, 7000)).ctinfo == IP_CT_NEW


def test_expectation_timeout_and_max_expected() -> None:
    h = Harness()
    master = h.send(udp(A, B, 6000, 6000)).ct
    assert master is not None
    for port in (7001, 7002, 7003):
        e = Expectation(master, Tuple(aton(B), aton(A), 17, 0, port), timeout=10)
        assert h.table.expect.related(e, h.now, max_expected=2) == 0
    assert sorted(e.tuple.dport for e in h.table.expect) == [7002, 7003]  # the oldest was evicted
    h.tick(11)
    assert h.send(udp(B, A, 0, 7002)).ctinfo == IP_CT_NEW  # expired
    assert len(h.table.expect) == 1
    h.table.sysctl.expect_max = 1
    e = Expectation(master, Tuple(aton(B), aton(A), 17, 0, 7100))
    assert h.table.expect.related(e, h.now) == -errno.EMFILE


def test_expectation_needs_a_confirmed_master() -> None:
    h = Harness()
    r = h.send(udp(A, B, 6000, 6000), confirm=False)
    assert r.ct is not None
    e = Expectation(r.ct, Tuple(aton(B), aton(A), 17, 0, 7000))
    assert h.table.expect.related(e, h.now) == 0
    assert h.send(udp(B, A, 5, 7000)).ctinfo == IP_CT_NEW


def test_flush() -> None:
    h = Harness()
    for i in range(5):
        h.send(udp(A, B, 3000 + i, 53))
    h.send(icmp(A, B, 8, ident=1))
    assert h.table.flush() == 6 and len(h.table) == 0 and list(h.table.entries(h.now)) == []


def test_walk_compaction_bounds_dead_references() -> None:
    h = Harness()
    for i in range(3000):
        h.send(udp(A, B, 1 + i, 53))
    for ct in list(h.table.entries(h.now))[:2900]:
        h.table.kill(ct)
    assert len(h.table._walk) - len(h.table) <= (len(h.table) >> 3) + 1024 + 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.sampled_from([1, 6, 17, 47, 136]))
def test_malformed_packets_never_raise(body: bytes, proto: int) -> None:
    h = Harness()
    from .pkts import ip
    for pkt in (body, ip(A, B, proto, body)):
        r = h.send(pkt)
        assert r.verdict in (NF_ACCEPT, NF_DROP)
        assert (r.ct is None) == (r.ctinfo == CT_INVALID)


def test_sysctl_names() -> None:
    s = CtSysctl()
    s.set("net.netfilter.nf_conntrack_tcp_timeout_established", 3600)
    s.set("/proc/sys/net/netfilter/nf_conntrack_max", 1000)
    s.set("/proc/sys/net/ipv4/netfilter/ip_conntrack_udp_timeout", 15)
    s.set("net.netfilter.nf_conntrack_tcp_timeout_unacknowledged", 100)
    assert (s.tcp_timeouts[3], s.max, s.udp_timeout, s.tcp_timeouts[13]) == (3600, 1000, 15, 100)
    assert s.get("nf_conntrack_tcp_be_liberal") == 0
    assert "net.netfilter.nf_conntrack_tcp_timeout_max_retrans" in s.names()
    for bad in ("net.netfilter.nf_conntrack_bogus", "kernel.pid_max"):
        try:
            s.set(bad, 1)
        except KeyError:
            pass
        else:
            raise AssertionError(bad)
    assert ACK
