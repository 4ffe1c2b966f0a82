"""Walking a table's chains for one packet: ipt_do_table() (net/ipv4/netfilter/ip_tables.c).

Tables are compiled once per `Netfilter.gen` (every iptables command bumps
it): each rule's test becomes source conditions (xt_match.py) and its target
an action (xt_target.py), each jump an index into the compiled chains.  The
tests of a chain are generated as one function, `scan(skb, i)`: the first
rule from index i whose test matches, so that the rules a packet does not
match cost no call each (the walk's common case).  The walk is the
kernel's: rules in order; a matching rule's counters go up before its target
runs; a jump pushes the return point, a goto does not; RETURN or the end of a
user chain pops; the end of a built-in chain (or RETURN in it) applies the
policy and counts it.  Targets answer a verdict or XT_CONTINUE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from ipgate.conntrack.conn import NF_ACCEPT, NF_DROP
from ipgate.engine.skb import Skb
from ipgate.engine.xt_match import rule_conditions
from ipgate.netfilter.rule import Counters, Jump, Rule, Standard
from ipgate.netfilter.tables import Table
from ipgate.packet.fastnew import new_tuple

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


Scan = Callable[[Skb, int], int]


@dataclass(slots=True)
class CRule:
    rule: Rule
    kind: int
    verdict: int = 0
    jump: CChain | None = None
    action: Action | None = None
    # read once here rather than per packet (a Rule is frozen): its counters and, for traces, target name
    counters: Counters = field(init=False)
    target_name: str = field(init=False)

    def __post_init__(self) -> None:
        self.counters = self.rule.counters
        self.target_name = self.rule.target_name


def _no_rules(skb: Skb, i: int) -> int:
    return 0


@dataclass(slots=True)
class CChain:
    name: str
    rules: list[CRule]
    policy: int  # NF_ACCEPT/NF_DROP for built-in chains, XT_RETURN for user chains
    counters: Counters
    # the first rule from index i that matches: its index; ~index when its test failed and
    # hotdropped the packet; len(rules) when none matches (see compile_scan)
    scan: Scan = _no_rules


def compile_scan(name: str, tests: list[list[str]], env: dict[str, object]) -> Scan:
    """One function over a chain's rule tests (their conditions as rule_conditions() writes them).

    Rule k is tried only when the walk starts at or before it; a failed test followed by a
    set `hotdrop` stops the walk there, as ipt_do_table() checks acpar.hotdrop after each match.
    """
    lines = ["def _scan(s, i):"]
    for k, conds in enumerate(tests):
        lines.append(f"    if i <= {k}:")
        if not conds:
            lines.append(f"        return {k}")
            continue
        lines.append(f"        if not ({' or '.join(conds)}): return {k}")
        lines.append(f"        if s.hotdrop: return {~k}")
    lines.append(f"    return {len(tests)}")
    src = "\n".join(lines) + "\n"
    exec(compile(src, f"<chain {name}>", "exec"), env)  # noqa: S102 - source built from integers only
    fn = env["_scan"]
    return fn  # type: ignore[return-value]


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
            cc = self.chains[name]
            out = cc.rules
            env: dict[str, object] = {}
            tests: list[list[str]] = []
            for k, r in enumerate(c.rules):
                tests.append(rule_conditions(r, eng.stack, clock, env, str(k)))
                t = r.target
                if t is None:
                    out.append(CRule(r, _NONE))
                elif isinstance(t, Standard):
                    out.append(CRule(r, _VERDICT, _STANDARD[t.verdict]))
                elif isinstance(t, Jump):
                    out.append(CRule(r, _GOTO if r.goto else _JUMP, jump=self.chains[t.chain]))
                else:
                    out.append(CRule(r, _TARGET, action=compile_target(t, r, self.name, eng)))
            if tests:
                cc.scan = compile_scan(f"{table.name}/{name}", tests, env)


def do_table(table: CTable, chain: str, skb: Skb, trace: Callable[[TraceStep], None] | None = None) -> int:
    """ipt_do_table(): the verdict of `table` at the hook whose built-in chain is `chain`."""
    c = table.chains.get(chain)
    if c is None:
        return NF_ACCEPT
    base = c
    back: list[tuple[CChain, int]] = []
    i = 0  # the next rule's index in c
    while True:
        rules = c.rules
        n = len(rules)
        j = c.scan(skb, i) if i < n else n
        if j >= n:
            # the end of the chain
            if c is base:
                c.counters.pkts += 1
                c.counters.bytes += skb.tot_len  # after any mangling by earlier rules
                if trace is not None:
                    trace(new_tuple(TraceStep, (table.name, c.name, "policy", n + 1, None,
                                               "ACCEPT" if c.policy == NF_ACCEPT else "DROP")))
                return c.policy
            if trace is not None:
                trace(new_tuple(TraceStep, (table.name, c.name, "return", n + 1, None, "")))
            c, i = back.pop() if back else (base, len(base.rules))
            continue
        if j < 0:
            if trace is not None:
                trace(TraceStep(table.name, c.name, "rule", ~j + 1, rules[~j].rule, "DROP (hotdrop)"))
            return NF_DROP
        # rule i (1-based) matched
        cr = rules[j]
        i = j + 1
        cnt = cr.counters
        cnt.pkts += 1
        cnt.bytes += skb.tot_len
        kind = cr.kind
        if kind == _NONE:
            if trace is not None:
                trace(new_tuple(TraceStep, (table.name, c.name, "rule", i, cr.rule, "")))
            continue
        if trace is not None:
            trace(new_tuple(TraceStep, (table.name, c.name, "rule", i, cr.rule, cr.target_name)))
        if kind == _VERDICT:
            v = cr.verdict
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
            if kind == _JUMP:
                back.append((c, i))
            assert cr.jump is not None
            c, i = cr.jump, 0
            continue
        assert cr.action is not None
        v = cr.action(skb)
        if v != XT_CONTINUE:
            return v
        if skb.hotdrop:
            return NF_DROP
