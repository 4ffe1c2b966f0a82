"""The packet path of a Linux gateway: netfilter hooks, conntrack, NAT, routing, forwarding."""

from ipgate.engine.result import Drop, Local, Result, Tx

__all__ = ["Drop", "Local", "Result", "Tx"]
