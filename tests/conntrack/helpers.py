"""A tiny harness: packets in, (result, entry) out, with a fake clock."""

from __future__ import annotations

from ipgate.conntrack.conn import NF_INET_PRE_ROUTING, Conn
from ipgate.conntrack.sysctl import CtSysctl
from ipgate.conntrack.table import ConntrackTable, CtResult
from ipgate.conntrack.tcp import TCP_CONNTRACK_NAMES

A = "192.0.2.1"   # client
B = "192.0.2.2"   # server
R = "198.51.100.1"  # a router sending ICMP errors


class Harness:
    def __init__(self, **sysctl: int) -> None:
        self.table = ConntrackTable(CtSysctl(**sysctl), events=True)  # type: ignore[arg-type]
        self.now = 1000.0

    def send(self, pkt: bytes, *, confirm: bool = True, hook: int = NF_INET_PRE_ROUTING) -> CtResult:
        r = self.table.nf_conntrack_in(pkt, self.now, hook)
        if confirm and r.ct is not None:
            self.table.confirm(r.ct, r.ctinfo, self.now)
        return r

    def tick(self, seconds: float) -> None:
        self.now += seconds

    def state(self, ct: Conn | None) -> str:
        assert ct is not None
        return TCP_CONNTRACK_NAMES[ct.tcp_state]

    def left(self, ct: Conn | None) -> float:
        assert ct is not None
        return ct.timeout - self.now
