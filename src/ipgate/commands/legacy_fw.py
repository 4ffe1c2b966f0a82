"""The 2.0/2.2 firewall chains as the iptables rules a Linux 6.x box runs (for ipchains.py, ipfwadm.py).

Every change goes through the iptables program (`commands.iptables.run_program`),
so `iptables -L`, `-S` and `iptables-save` show exactly the translated rules.

Mapping (the tools parse their own syntax into an `FwRule` first):

=====================================  =====================================================
2.0/2.2                                Linux 6.x (filter table unless said otherwise)
=====================================  =====================================================
chain input / output / forward         INPUT / OUTPUT / FORWARD (user chains keep their name)
ACCEPT, DENY, RETURN, user chain       -j ACCEPT, -j DROP, -j RETURN, -j CHAIN
REJECT                                 -j REJECT; in forward/output with
                                       --reject-with icmp-host-unreachable, which is what
                                       2.0/2.2's ip_forward.c sent (input and user
                                       chains: port unreachable, as ip_input.c)
MASQ (forward only)                    -A FORWARD ... -m comment --comment MASQ -j ACCEPT
                                       plus -t nat -A POSTROUTING ... (same matches, same
                                       comment) -j MASQUERADE, plus once, at the top of
                                       FORWARD, -m state --state ESTABLISHED,RELATED -j ACCEPT:
                                       2.2 demasqueraded replies before the forward chain
log flag (ipchains -l, ipfwadm -o)     a -m comment --comment log -j LOG rule just before
policy ACCEPT / DENY                   -P CHAIN ACCEPT / DROP
policy REJECT                          -P CHAIN DROP plus a last rule
                                       -m comment --comment "policy REJECT" -j REJECT ...
                                       that later appends go in front of (netfilter policies
                                       cannot reject)
=====================================  =====================================================

The legacy chains' rule numbers (-I/-D/-R N) count the translated rules as
the tool's own: the ESTABLISHED,RELATED rule at the top of FORWARD and the
policy rule at the bottom are not counted, and a log rule counts with the
rule after it.  Flushing a chain keeps those two (a legacy flush did not
touch the policy or the demasquerading) and removes the MASQ rules' nat
twins.

Not the same as 2.2: its input and output chains also saw forwarded packets,
INPUT and OUTPUT only see the box's own; 6.x's MASQUERADE keeps the source
port when it is free where 2.2 always took one from 61000-65095.

Callers run an operation through `transact`: if it fails the tables are put
back, so a failing command changes nothing.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass

from ipgate.commands.base import Exit, Output
from ipgate.commands.iptables import run_program
from ipgate.netfilter.listing import save_rule
from ipgate.netfilter.names import Resolver
from ipgate.netfilter.rule import Rule
from ipgate.netfilter.tables import TABLE_CHAINS, Netfilter

FILTER_CHAINS = TABLE_CHAINS["filter"]
VERDICTS = {"ACCEPT", "DROP", "REJECT", "MASQ", "RETURN", ""}  # "" counts packets only
STATE = ["-m", "state", "--state", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
MASQ_MARK = ["-m", "comment", "--comment", "MASQ"]
LOG_MARK = ["-m", "comment", "--comment", "log"]
POLICY_MARK = ["-m", "comment", "--comment", "policy REJECT"]
HOST_UNREACH = ["--reject-with", "icmp-host-unreachable"]
MASQ_END = " -m comment --comment MASQ -j ACCEPT"


class LegacyError(Exception):
    """What went wrong, for the tool to word: nomatch, nochain, notarget, exists, notempty, busy, other."""

    def __init__(self, kind: str, text: str = "") -> None:
        super().__init__(text or kind)
        self.kind = kind
        self.text = text


# iptables' messages for the errors the legacy tools word their own way
_IPTABLES_ERRORS = {
    "iptables: Bad rule (does a matching rule exist in that chain?).": "nomatch",
    "iptables: Index of deletion too big.": "nomatch",
    "iptables: Index of insertion too big.": "nomatch",
    "iptables: No chain/target/match by that name.": "nochain",
    "iptables: Chain already exists.": "exists",
    "iptables: Directory not empty.": "notempty",
    "iptables: Too many links.": "busy",
}


@dataclass(frozen=True, slots=True)
class FwRule:
    """One legacy rule: its iptables chain, match words, verdict and log flag."""

    chain: str
    matches: tuple[str, ...]
    verdict: str  # one of VERDICTS or a user chain
    log: bool = False

    def _reject(self) -> list[str]:
        return ["-j", "REJECT"] + (HOST_UNREACH if self.chain in ("FORWARD", "OUTPUT") else [])

    def main_argv(self) -> list[str]:
        if self.verdict == "MASQ":
            return [*self.matches, *MASQ_MARK, "-j", "ACCEPT"]
        if self.verdict == "REJECT":
            return [*self.matches, *self._reject()]
        return [*self.matches, *(["-j", self.verdict] if self.verdict else [])]

    def log_argv(self) -> list[str]:
        return [*self.matches, *LOG_MARK, "-j", "LOG"]

    def twin_argv(self) -> list[str]:
        """The nat POSTROUTING rule of a MASQ rule."""
        return [*self.matches, *MASQ_MARK, "-j", "MASQUERADE"]


def transact(nf: Netfilter, op: Callable[[Netfilter], None]) -> None:
    """Run `op`; if it fails, put the tables back: a failing legacy command changes nothing.

    iptables commits replace whole tables (rules are shared, not edited), so
    the containers are all there is to keep; `gen` only moves forward, for the
    caches keyed on it.
    """
    saved = {k: copy.copy(v) if isinstance(v, (dict, list)) else v for k, v in vars(nf).items()}
    try:
        op(nf)
    except BaseException:
        gen = nf.gen
        vars(nf).update(saved)
        nf.gen = gen + 1
        raise


def ipt(nf: Netfilter, table: str, argv: list[str]) -> None:
    """One iptables command; LegacyError with iptables' message if it fails."""
    o = Output()
    try:
        run_program(nf, "iptables", ["-t", table, *argv], o)
    except Exit as e:
        text = ("".join(o.err) + e.message).strip().splitlines()
        first = text[0] if text else f"exit status {e.status}"
        raise LegacyError(_IPTABLES_ERRORS.get(first, "other"), first) from None


def chain_rules(nf: Netfilter, table: str, chain: str) -> list[Rule] | None:
    """The chain's rules, read without loading the table; None: no such chain."""
    t = nf.tables.get(table)
    if t is None:
        return [] if chain in TABLE_CHAINS[table] else None
    c = t.chains.get(chain)
    return None if c is None else c.rules


def text(nf: Netfilter, chain: str, rule: Rule) -> str:
    """The rule as `iptables -S` prints it."""
    return save_rule(chain, rule, 0, nf.resolver).rstrip("\n")


def rule_texts(nf: Netfilter, table: str, chain: str) -> list[str]:
    return [text(nf, chain, r) for r in chain_rules(nf, table, chain) or []]


def canonical(resolver: Resolver, table: str, chain: str, argv: list[str], jump: str = "") -> str:
    """How iptables would print `argv` as a rule of `chain` (built in an empty scratch table).

    `jump` names the user chain the rule jumps to, which must exist there too.
    """
    scratch = Netfilter(resolver)
    for name in (chain, jump):
        if name and name not in TABLE_CHAINS[table]:
            ipt(scratch, table, ["-N", name])
    ipt(scratch, table, ["-A", chain, *argv])
    return rule_texts(scratch, table, chain)[0]


def chain_exists(nf: Netfilter, chain: str) -> bool:
    return chain_rules(nf, "filter", chain) is not None


def _is_user_target(verdict: str) -> bool:
    return verdict not in VERDICTS


@dataclass(frozen=True, slots=True)
class Slot:
    """One legacy rule inside an iptables chain: first index (1-based), how many rules, the main rule."""

    first: int
    size: int
    rule: Rule


def _has_state_rule(nf: Netfilter, chain: str, rules: list[Rule]) -> int:
    """1 if the chain starts with the demasquerading ESTABLISHED,RELATED rule (FORWARD only)."""
    return 1 if chain == "FORWARD" and rules and rules[0].target_name == "ACCEPT" and \
        text(nf, chain, rules[0]) == _state_text() else 0


def _has_policy_rule(nf: Netfilter, chain: str, rules: list[Rule]) -> bool:
    """Whether the chain ends with the REJECT policy's rule."""
    return chain in FILTER_CHAINS and bool(rules) and rules[-1].target_name == "REJECT" and \
        text(nf, chain, rules[-1]) == _policy_text(chain)


def _rules_of(nf: Netfilter, chain: str) -> list[Rule]:
    rules = chain_rules(nf, "filter", chain)
    if rules is None:
        raise LegacyError("nochain")
    return rules


def layout(nf: Netfilter, chain: str) -> tuple[int, list[Slot], bool]:
    """(rules before the legacy ones, the legacy rules, whether the policy rule ends the chain)."""
    rules = _rules_of(nf, chain)
    head = _has_state_rule(nf, chain, rules)
    end = len(rules)
    tail = end > head and _has_policy_rule(nf, chain, rules)
    if tail:
        end -= 1
    slots: list[Slot] = []
    i = head
    while i < end:
        if i + 1 < end and _is_log_rule(rules[i]):
            slots.append(Slot(i + 1, 2, rules[i + 1]))
            i += 2
        else:
            slots.append(Slot(i + 1, 1, rules[i]))
            i += 1
    return head, slots, tail


def _is_log_rule(rule: Rule) -> bool:
    """A log flag's LOG rule: `-m comment --comment log -j LOG` at the end (checked without printing it all)."""
    return rule.target_name == "LOG" and bool(rule.matches) and rule.matches[-1].save_name == "comment" and \
        rule.matches[-1].save(rule) == " --comment log" and rule.target is not None and rule.target.save(rule) == ""


@functools.cache
def _state_text() -> str:
    return canonical(Resolver.builtin(), "filter", "FORWARD", STATE)


def _policy_argv(chain: str) -> list[str]:
    return [*POLICY_MARK, "-j", "REJECT", *(HOST_UNREACH if chain != "INPUT" else [])]


@functools.cache
def _policy_text(chain: str) -> str:
    return canonical(Resolver.builtin(), "filter", chain, _policy_argv(chain))


def _check(nf: Netfilter, rule: FwRule) -> None:
    if not chain_exists(nf, rule.chain):
        raise LegacyError("nochain")
    if _is_user_target(rule.verdict) and (rule.verdict in FILTER_CHAINS or not chain_exists(nf, rule.verdict)):
        raise LegacyError("notarget")


def _ensure_state(nf: Netfilter) -> None:
    if not _has_state_rule(nf, "FORWARD", _rules_of(nf, "FORWARD")):
        ipt(nf, "filter", ["-I", "FORWARD", "1", *STATE])


def _put(nf: Netfilter, rule: FwRule, pos: int | None) -> None:
    argvs = ([rule.log_argv()] if rule.log else []) + [rule.main_argv()]
    for k, argv in enumerate(argvs):
        if pos is None:
            ipt(nf, "filter", ["-A", rule.chain, *argv])
        else:
            ipt(nf, "filter", ["-I", rule.chain, str(pos + k), *argv])
    if rule.verdict == "MASQ":
        ipt(nf, "nat", ["-A", "POSTROUTING", *rule.twin_argv()])


def append(nf: Netfilter, rule: FwRule) -> None:
    _check(nf, rule)
    if rule.verdict == "MASQ":
        _ensure_state(nf)
    rules = _rules_of(nf, rule.chain)
    _put(nf, rule, len(rules) if _has_policy_rule(nf, rule.chain, rules) else None)  # in front of the policy rule


def insert(nf: Netfilter, rule: FwRule, num: int) -> None:
    """Insert as legacy rule `num` (1 = first)."""
    _check(nf, rule)
    if rule.verdict == "MASQ":
        _ensure_state(nf)
    head, slots, _ = layout(nf, rule.chain)
    if num > len(slots) + 1:
        raise LegacyError("nomatch")
    pos = slots[num - 1].first if num <= len(slots) else head + sum(s.size for s in slots) + 1
    _put(nf, rule, pos)


def count(nf: Netfilter, chain: str) -> int:
    return len(layout(nf, chain)[1])


def delete_num(nf: Netfilter, chain: str, num: int) -> None:
    _, slots, _ = layout(nf, chain)
    if not 1 <= num <= len(slots):
        raise LegacyError("nomatch")
    slot = slots[num - 1]
    main = text(nf, chain, slot.rule)
    for _ in range(slot.size):
        ipt(nf, "filter", ["-D", chain, str(slot.first)])
    if main.endswith(MASQ_END):
        # the nat twin has the same match words: its text is the main rule's, re-targeted
        twin = "-A POSTROUTING" + main[len(f"-A {chain}"):-len(" -j ACCEPT")] + " -j MASQUERADE"
        texts = rule_texts(nf, "nat", "POSTROUTING")
        if twin in texts:
            ipt(nf, "nat", ["-D", "POSTROUTING", str(texts.index(twin) + 1)])


def delete_spec(nf: Netfilter, rule: FwRule) -> None:
    """Delete the first legacy rule equal to `rule` (log flag included)."""
    _check(nf, rule)
    argv = rule.main_argv()
    jump = rule.verdict if _is_user_target(rule.verdict) else ""
    want = canonical(nf.resolver, "filter", rule.chain, argv, jump)
    target = argv[argv.index("-j") + 1] if "-j" in argv else ""
    _, slots, _ = layout(nf, rule.chain)
    for i, slot in enumerate(slots):
        if slot.rule.target_name == target and (slot.size == 2) == rule.log and text(nf, rule.chain, slot.rule) == want:
            delete_num(nf, rule.chain, i + 1)
            return
    raise LegacyError("nomatch")


def replace(nf: Netfilter, rule: FwRule, num: int) -> None:
    delete_num(nf, rule.chain, num)
    insert(nf, rule, num)


def flush(nf: Netfilter, chain: str) -> None:
    """Delete the chain's legacy rules (and MASQ twins); the policy rule and demasquerading rule stay."""
    for _ in range(count(nf, chain)):
        delete_num(nf, chain, 1)


def user_chains(nf: Netfilter) -> list[str]:
    t = nf.tables.get("filter")
    return [] if t is None else [c for c in t.chain_order() if c not in FILTER_CHAINS]


def set_policy(nf: Netfilter, chain: str, policy: str) -> None:
    """policy: ACCEPT, DROP or REJECT (the last as DROP plus the policy rule)."""
    _, _, tail = layout(nf, chain)
    ipt(nf, "filter", ["-P", chain, "DROP" if policy == "REJECT" else policy])
    if policy == "REJECT" and not tail:
        ipt(nf, "filter", ["-A", chain, *_policy_argv(chain)])
    elif policy != "REJECT" and tail:
        ipt(nf, "filter", ["-D", chain, str(len(chain_rules(nf, "filter", chain) or []))])
