"""What the engine returns for a packet: where it leaves, or that it was delivered or dropped.

The engine is sans-IO: `Engine.receive(dev, data, now)` and `Engine.output(data, now)`
return a list of these and never touch a socket.  One input can give several
results: a forwarded packet and an ICMP error, fragments, a REJECT's reply.
"""

from __future__ import annotations

from typing import NamedTuple


class Tx(NamedTuple):
    """An IPv4 packet leaving by `dev` towards `nexthop` (the gateway, or the destination when on-link).

    `gso`: a TCP super-packet (GRO) forwarded whole, to be cut into segments of that many payload bytes on
    the way out (its TCP checksum field holds the pseudo-header sum only, as CHECKSUM_PARTIAL); 0 for an
    ordinary packet."""

    dev: str
    nexthop: int
    data: bytes
    gso: int = 0


class Local(NamedTuple):
    """An IPv4 packet delivered to the gateway's own stack (it passed INPUT); `dev` is where it came in."""

    dev: str
    data: bytes


class Drop(NamedTuple):
    """A packet the engine dropped, and why (a kernel drop reason name or the rule that dropped it)."""

    reason: str
    data: bytes


Result = Tx | Local | Drop
