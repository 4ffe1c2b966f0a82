"""SIGHUP: put a freshly loaded configuration under the running engine and link layer.

A reload must keep connections (conntrackd-less, as the kernel does across
`iptables-restore`): the new stack takes over the running conntrack table
(with the new configuration's nf_conntrack_* settings), and the engine and
the link layer keep their state (defragmentation queues, ICMP rate-limit
peers, counters, the neighbour cache) and are pointed at the new stack.

The engine and link layer cache what they derive from the stack, keyed by
generation counters; a new stack's counters start again, so equal numbers
could hide the change: `Engine.rebind` and `LinkLayer.rebind` invalidate them.
"""

from __future__ import annotations

from ipgate.engine.engine import Engine, StackIfaddr
from ipgate.link.layer import LinkLayer
from ipgate.nat.ipnat.core import IpnatTable
from ipgate.stack import Stack


def carry_state(old: Stack, new: Stack) -> None:
    """Give `new` the running connections of `old`: conntrack entries and IP Filter NAT sessions."""
    ct = old.conntrack
    ct.sysctl = new.conntrack.sysctl  # the new configuration's nf_conntrack_* values
    new.conntrack = ct
    sessions = old.ipnat.sessions
    if isinstance(sessions, IpnatTable):
        # the sessions stay; their rules follow the new file (IpnatTable.sync_rules keeps the state of
        # rules that are still there) and `0/32` now reads the new stack's addresses
        if isinstance(sessions.ifaddr, StackIfaddr):
            sessions.ifaddr.stack = new
        new.ipnat.sessions = sessions


def rebind_engine(engine: Engine, stack: Stack) -> None:
    engine.rebind(stack)


def rebind_link(link: LinkLayer, stack: Stack) -> None:
    link.rebind(stack)
