"""ipgate's TCP tracker step by step against Linux's (recorded, and live under root)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ipgate.conntrack.sysctl import CtSysctl
from ipgate.conntrack.table import ConntrackTable
from ipgate.conntrack.tcp import TCP_CONNTRACK_NAMES
from ipgate.conntrack.tuple import Tuple
from ipgate.inet import aton

from . import kernel
from .tcp_scenarios import C, S, scenarios

RECORDED = json.loads(Path(__file__).with_name("kernel_tcp.json").read_text())


def ipgate_steps(sport: int, steps: list[tuple[bool, bytes]]) -> list[list[object] | None]:
    table = ConntrackTable(CtSysctl())
    now = 5000.0
    key = Tuple(aton(C), aton(S), 6, sport, 0)
    out: list[list[object] | None] = []
    for _from_client, pkt in steps:
        r = table.nf_conntrack_in(pkt, now)
        if r.ct is not None:
            table.confirm(r.ct, r.ctinfo, now)
        entry = None
        for ct in table.entries(now):
            o = ct.orig
            if o.src == key.src and o.sport == sport:
                entry = [TCP_CONNTRACK_NAMES[ct.tcp_state], int(ct.expires(now)),
                         not ct.status & 2, bool(ct.status & 4)]
        out.append(entry)
        now += 0.02
    return out


def same(ours: list[object] | None, theirs: list[object] | None) -> bool:
    """Equal, the kernel's timeout allowed one second less (it counts whole seconds left, later)."""
    if ours is None or theirs is None:
        return ours is theirs
    return ours[0] == theirs[0] and ours[2:] == theirs[2:] and int(str(ours[1])) - int(str(theirs[1])) in (0, 1)


@pytest.mark.parametrize("name", sorted(scenarios()))
def test_matches_recorded_kernel(name: str) -> None:
    sport, steps = scenarios()[name]
    ours = ipgate_steps(sport, steps)
    theirs = RECORDED["scenarios"][name]
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert same(a, b), f"{name} step {i}: ipgate {a} kernel {b}"


@pytest.mark.netns
def test_matches_live_kernel() -> None:
    ok, why = kernel.usable()
    if not ok:
        pytest.skip(why)
    ns = kernel.Netns("tcp")
    try:
        for name, (sport, steps) in scenarios().items():
            ours = ipgate_steps(sport, steps)
            for i, (from_client, pkt) in enumerate(steps):
                ns.send(from_client, pkt)
                time.sleep(0.01)
                theirs = kernel.tcp_entry(ns.proc(), sport)
                assert same(ours[i], theirs), f"{name} step {i}: ipgate {ours[i]} kernel {theirs}"
    finally:
        ns.close()
