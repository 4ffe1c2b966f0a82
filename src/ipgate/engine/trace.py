"""What `ipgate trace` shows: every hook, chain and rule a packet meets, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ipgate.engine.xtables import TraceStep


class Event(NamedTuple):
    """A step of the path outside the rule walks: receive, conntrack, route, nat, icmp, verdict..."""

    kind: str
    text: str


@dataclass(slots=True)
class Trace:
    """Collects events while a packet goes through the engine (engine.trace = Trace())."""

    events: list[Event | TraceStep] = field(default_factory=list)

    def flush(self) -> list[Event | TraceStep]:
        out = self.events
        self.events = []
        return out
