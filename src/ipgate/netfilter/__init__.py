"""Netfilter's iptables side: tables, chains, rules (as data), and the iptables language.

`tables.Netfilter` holds a namespace's tables; `rule.Rule` with the match and
target dataclasses of `matches`/`targets` is what the packet engine walks.
`ext` parses extension options, `listing` prints -L/-S/iptables-save text;
the command lines themselves are `ipgate.commands.iptables`.
"""

from ipgate.netfilter.names import Resolver
from ipgate.netfilter.rule import Counters, Jump, Match, Rule, Standard, Target, iface_matches
from ipgate.netfilter.tables import TABLE_CHAINS, Chain, Handle, IptcError, Netfilter, Table

__all__ = ["Chain", "Counters", "Handle", "IptcError", "Jump", "Match", "Netfilter", "Resolver", "Rule",
           "Standard", "TABLE_CHAINS", "Table", "Target", "iface_matches"]
