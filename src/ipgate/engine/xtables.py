"""Walking a table's chains for one packet: ipt_do_table() (net/ipv4/netfilter/ip_tables.c).

Tables are compiled once per `Netfilter.gen` (every iptables command bumps
it): each rule becomes a predicate (xt_match.py) and a target action
(xt_target.py), each jump an index into the compiled chains.  The walk is the
kernel's: rules in order; a matching rule's counters go up before its target
runs; a jump pushes the return point, a goto does not; RETURN or the end of a
user chain pops; the end of a built-in chain (or RETURN in it) applies the
policy and counts it.  Targets answer a verdict or XT_CONTINUE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ipgate.conntrack.conn import NF_ACCEPT, NF_DROP
from ipgate.engine.skb import Skb
from ipgate.engine.xt_match import Test, compile_rule
from ipgate.netfilter.rule import Counters, Jump, Rule, Standard
from ipgate.netfilter.tables import Table

if TYPE_CHECKING:
    from ipgate.engine.engine import Engine

XT_CONTINUE = -1
XT_RETURN = -2
NF_QUEUE = 3

_STANDARD = {"ACCEPT": NF_ACCEPT, "DROP": NF_DROP, "QUEUE": NF_QUEUE, "RETURN": XT_RETURN}
# rule kinds
_VERDICT, _JUMP, _GOTO, _TARGET, _NONE = range(5)

Action = Callable[[Skb], int]


class TraceStep(NamedTuple):
    """One line of the kernel's TRACE output: table:chain:(rule|return|policy):num."""

    table: str
    chain: str
    kind: str  # "rule", "return" or "policy"
    num: int
    rule: Rule | None
    verdict: str  # what the step decided: ACCEPT, DROP, the target name, or "" to go on


@dataclass(slots=True)
class CRule:
    rule: Rule
    test: Test | None
    kind: int
    verdict: int = 0
    jump: CChain | None = None
    action: Action | None = None


@dataclass(slots=True)
class CChain:
    name: str
    rules: list[CRule]
    policy: int  # NF_ACCEPT/NF_DROP for built-in chains, XT_RETURN for user chains
    counters: Counters


class CTable:
    """A table compiled for the packet path."""

    def __init__(self, table: Table, eng: Engine) -> None:
        from ipgate.engine.xt_target import compile_target

        self.name = table.name
        self.chains: dict[str, CChain] = {}
        for name, c in table.chains.items():
            policy = _STANDARD[c.policy] if c.policy is not None else XT_RETURN
            self.chains[name] = CChain(name, [], policy, c.counters)
        clock = eng.clock
        for name, c in table.chains.items():
            out = self.chains[name].rules
            for r in c.rules:
                test = compile_rule(r, eng.stack, clock)
                t = r.target
                if t is None:
                    out.append(CRule(r, test, _NONE))
                elif isinstance(t, Standard):
                    out.append(CRule(r, test, _VERDICT, _STANDARD[t.verdict]))
                elif isinstance(t, Jump):
                    out.append(CRule(r, test, _GOTO if r.goto else _JUMP, jump=self.chains[t.chain]))
                else:
                    out.append(CRule(r, test, _TARGET, action=compile_target(t, r, self.name, eng)))


def do_table(table: CTable, chain: str, skb: Skb, trace: Callable[[TraceStep], None] | None = None) -> int:
    """ipt_do_table(): the verdict of `table` at the hook whose built-in chain is `chain`."""
    c = table.chains.get(chain)
    if c is None:
        return NF_ACCEPT
    base = c
    back: list[tuple[CChain, int]] = []
    i = 0
    while True:
        rules = c.rules
        if i >= len(rules):
            if c is base:
                c.counters.pkts += 1
                c.counters.bytes += skb.tot_len  # after any mangling by earlier rules
                if trace is not None:
                    trace(TraceStep(table.name, c.name, "policy", len(rules) + 1, None,
                                           "ACCEPT" if c.policy == NF_ACCEPT else "DROP"))
                return c.policy
            if trace is not None:
                trace(TraceStep(table.name, c.name, "return", len(rules) + 1, None, ""))
            c, i = back.pop() if back else (base, len(base.rules))
            continue
        cr = rules[i]
        i += 1
        test = cr.test
        if test is not None and not test(skb):
            if skb.hotdrop:
                if trace is not None:
                    trace(TraceStep(table.name, c.name, "rule", i, cr.rule, "DROP (hotdrop)"))
                return NF_DROP
            continue
        cnt = cr.rule.counters
        cnt.pkts += 1
        cnt.bytes += skb.tot_len
        kind = cr.kind
        if kind == _NONE:
            if trace is not None:
                trace(TraceStep(table.name, c.name, "rule", i, cr.rule, ""))
            continue
        if kind == _VERDICT:
            v = cr.verdict
            if trace is not None:
                trace(TraceStep(table.name, c.name, "rule", i, cr.rule, cr.rule.target_name))
            if v != XT_RETURN:
                return v
            if c is base or not back:
                # RETURN from a built-in chain: its policy (the underflow rule)
                i = len(base.rules)
                c = base
                continue
            c, i = back.pop()
            continue
        if kind == _JUMP or kind == _GOTO:
            if trace is not None:
                trace(TraceStep(table.name, c.name, "rule", i, cr.rule, cr.rule.target_name))
            if kind == _JUMP:
                back.append((c, i))
            assert cr.jump is not None
            c, i = cr.jump, 0
            continue
        assert cr.action is not None
        if trace is not None:
            trace(TraceStep(table.name, c.name, "rule", i, cr.rule, cr.rule.target_name))
        v = cr.action(skb)
        if v != XT_CONTINUE:
            return v
        if skb.hotdrop:
            return NF_DROP
