"""`iptables -L`, `-S`, `-v` rule lines and iptables-save text, as iptables-legacy 1.8.9 prints them.

Mirrors iptables/iptables.c (print_firewall, list_entries, list_rules,
print_rule4), iptables/xshared.c (print_header, print_rule_details,
print_fragment, print_ifaces, print_ipv4_addresses) and libxtables'
xtables_print_num.  The FMT_* flags are xshared.h's.

Format choice: ipgate prints what iptables-*legacy* 1.8.9 prints, checked
against it byte for byte.  In 1.8.9 the prot column of `-L -n` shows protocol
*numbers* in both variants ("0" for all, "6" for tcp; print_rule_details()
prints the number when FMT_NUMERIC is set and FMT_NOTABLE is not), plain
`-L` and the `-v` echo of a rule show names ("all", "tcp"); 1.8.10 went back
to "all" with -n.  Where legacy and nft differ (iptables-save's table order
and chain counters, error texts), legacy is followed.
"""

from __future__ import annotations

from ipgate.netfilter.names import Resolver, mask_to_numeric, ntoa, save_mask
from ipgate.netfilter.rule import (
    IPT_F_FRAG,
    IPT_F_GOTO,
    IPT_INV_DSTIP,
    IPT_INV_FRAG,
    IPT_INV_PROTO,
    IPT_INV_SRCIP,
    IPT_INV_VIA_IN,
    IPT_INV_VIA_OUT,
    Jump,
    Rule,
    Standard,
)
from ipgate.netfilter.tables import Table

FMT_NUMERIC = 0x0001
FMT_NOCOUNTS = 0x0002
FMT_KILOMEGAGIGA = 0x0004
FMT_OPTIONS = 0x0008
FMT_NOTABLE = 0x0010
FMT_NOTARGET = 0x0020
FMT_VIA = 0x0040
FMT_LINENUMBERS = 0x0100
FMT_PRINT_RULE = FMT_NOCOUNTS | FMT_OPTIONS | FMT_VIA | FMT_NUMERIC | FMT_NOTABLE

# libxtables' xtables_chain_protos
CHAIN_PROTOS = (("tcp", 6), ("sctp", 132), ("udp", 17), ("udplite", 136), ("icmp", 1), ("ipv6-icmp", 58),
                ("icmpv6", 58), ("esp", 50), ("ah", 51), ("mobility-header", 135), ("ipv6-mh", 135), ("mh", 135),
                ("all", 0))
U64 = (1 << 64) - 1


def _fmt(fmt: int, table: str, notable: str) -> str:
    return notable if fmt & FMT_NOTABLE else table


def print_num(n: int, fmt: int) -> str:
    """xtables_print_num(): exact with -x, else K/M/G/T suffixes above 99999 (rounding +500, in u64)."""
    n &= U64
    if not fmt & FMT_KILOMEGAGIGA:
        return _fmt(fmt, f"{n:8d} ", f"{n} ")
    if n <= 99999:
        return _fmt(fmt, f"{n:5d} ", f"{n} ")
    for suffix in "KMG":
        n = ((n + 500) & U64) // 1000
        if n <= 9999:
            return _fmt(fmt, f"{n:4d}{suffix} ", f"{n}{suffix} ")
    n = (n + 500) // 1000
    return _fmt(fmt, f"{n:4d}T ", f"{n}T ")


def proto_to_name(proto: int, nolookup: bool, names: Resolver) -> str | None:
    for name, num in CHAIN_PROTOS:
        if num == proto:
            return name
    if proto and not nolookup:
        return names.proto_name(proto)
    return None


def save_proto_name(proto: int, names: Resolver) -> str:
    """print_proto() of iptables-save: /etc/protocols first, then the built-in names, else the number."""
    name = names.proto_name(proto)
    if name is None:
        name = next((n for n, num in CHAIN_PROTOS if num == proto), None)
    return name if name is not None else str(proto)


def print_header(fmt: int, chain: str, policy: str | None, pkts: int, nbytes: int, refs: int) -> str:
    s = f"Chain {chain}"
    if policy is not None:
        s += f" (policy {policy}"
        if not fmt & FMT_NOCOUNTS:
            s += " " + print_num(pkts, fmt | FMT_NOTABLE) + "packets, " + print_num(nbytes, fmt | FMT_NOTABLE) + "bytes"
        s += ")\n"
    else:
        s += f" ({refs} references)\n"
    if fmt & FMT_LINENUMBERS:
        s += _fmt(fmt, f"{'num':<4s} ", "num ")
    if not fmt & FMT_NOCOUNTS:
        if fmt & FMT_KILOMEGAGIGA:
            s += _fmt(fmt, f"{'pkts':>5s} ", "pkts ") + _fmt(fmt, f"{'bytes':>5s} ", "bytes ")
        else:
            s += _fmt(fmt, f"{'pkts':>8s} ", "pkts ") + _fmt(fmt, f"{'bytes':>10s} ", "bytes ")
    if not fmt & FMT_NOTARGET:
        s += _fmt(fmt, f"{'target':<9s} ", "target ")
    s += " prot "
    if fmt & FMT_OPTIONS:
        s += "opt"
    if fmt & FMT_VIA:
        s += _fmt(fmt, f" {'in':<6s} ", "in ") + _fmt(fmt, f"{'out':<6s} ", "out ")
    s += _fmt(fmt, f" {'source':<19s} ", "source ")
    s += _fmt(fmt, f" {'destination':<19s} ", " destination ")
    return s + "\n"


def _addr_text(addr: int, mask: int, fmt: int, names: Resolver) -> str:
    # ipv4_addr_to_string()
    if not mask and not fmt & FMT_NUMERIC:
        return "anywhere"
    host = ntoa(addr) if fmt & FMT_NUMERIC else names.addr_to_anyname(addr)
    return host + mask_to_numeric(mask)


def print_firewall(rule: Rule, num: int, fmt: int, names: Resolver) -> str:
    """One rule of -L (and, with FMT_PRINT_RULE, the line `-v -A` echoes)."""
    out = []
    if fmt & FMT_LINENUMBERS:
        out.append(_fmt(fmt, f"{num:<4d} ", f"{num} "))
    if not fmt & FMT_NOCOUNTS:
        out.append(print_num(rule.counters.pkts, fmt) + print_num(rule.counters.bytes, fmt))
    if not fmt & FMT_NOTARGET:
        tname = rule.target_name
        out.append(_fmt(fmt, f"{tname:<9s} ", f"{tname} "))
    out.append("!" if rule.invflags & IPT_INV_PROTO else " ")
    pname = proto_to_name(rule.proto, bool(fmt & FMT_NUMERIC), names)
    if (fmt & (FMT_NUMERIC | FMT_NOTABLE)) == FMT_NUMERIC or pname is None:
        out.append(_fmt(fmt, f"{rule.proto:<4d} ", f"{rule.proto} "))
    else:
        out.append(_fmt(fmt, f"{pname:<4s} ", f"{pname} "))
    if fmt & FMT_OPTIONS:
        if fmt & FMT_NOTABLE:
            out.append("opt ")
        out.append(("!" if rule.invflags & IPT_INV_FRAG else "-") + ("f" if rule.flags & IPT_F_FRAG else "-") + " ")
    if fmt & FMT_VIA:
        anyname = "*" if fmt & FMT_NUMERIC else "any"
        i = ("!" if rule.invflags & IPT_INV_VIA_IN else "") + (rule.iniface or anyname)
        o = ("!" if rule.invflags & IPT_INV_VIA_OUT else "") + (rule.outiface or anyname)
        out.append(_fmt(fmt, f" {i:<6s} ", f"in {i} ") + _fmt(fmt, f"{o:<6s} ", f"out {o} "))
    out.append("!" if rule.invflags & IPT_INV_SRCIP else " ")
    src = _addr_text(rule.src, rule.smsk, fmt, names)
    out.append(_fmt(fmt, f"{src:<19s} ", f"{src} "))
    out.append("!" if rule.invflags & IPT_INV_DSTIP else " ")
    dst = _addr_text(rule.dst, rule.dmsk, fmt, names)
    out.append(_fmt(fmt, f"{dst:<19s} ", f"-> {dst}"))
    if fmt & FMT_NOTABLE:
        out.append("  ")
    if rule.flags & IPT_F_GOTO:
        out.append("[goto] ")
    numeric = bool(fmt & FMT_NUMERIC)
    for m in rule.matches:
        out.append(m.print(rule, numeric, names))
    if rule.target is not None:
        out.append(rule.target.print(rule, numeric, names))
    return "".join(out) + "\n"


def list_entries(table: Table, chain: str | None, rulenum: int, verbose: bool, numeric: bool, expanded: bool,
                 linenumbers: bool, names: Resolver) -> str | None:
    """iptables -L: None when `chain` does not exist (the caller reports ENOENT)."""
    fmt = FMT_OPTIONS
    fmt |= FMT_VIA if verbose else FMT_NOCOUNTS
    if numeric:
        fmt |= FMT_NUMERIC
    if not expanded:
        fmt |= FMT_KILOMEGAGIGA
    if linenumbers:
        fmt |= FMT_LINENUMBERS
    out: list[str] = []
    found = False
    for name in table.chain_order():
        if chain is not None and name != chain:
            continue
        c = table.chains[name]
        if found:
            out.append("\n")
        if not rulenum:
            out.append(print_header(fmt, name, c.policy, c.counters.pkts, c.counters.bytes,
                                    table.references(name)))
        for i, rule in enumerate(c.rules, 1):
            if not rulenum or i == rulenum:
                out.append(print_firewall(rule, i, fmt, names))
        found = True
    return "".join(out) if found else None


def save_rule(chain: str, rule: Rule, counters: int, names: Resolver) -> str:
    """print_rule4(): counters > 0 prefixes "[p:b] " (iptables-save -c), < 0 adds "-c p b" (-S -v)."""
    s = f"[{rule.counters.pkts}:{rule.counters.bytes}] " if counters > 0 else ""
    s += f"-A {chain}"
    for letter, addr, mask, inv in (("s", rule.src, rule.smsk, rule.invflags & IPT_INV_SRCIP),
                                    ("d", rule.dst, rule.dmsk, rule.invflags & IPT_INV_DSTIP)):
        if mask or addr or inv:
            s += f"{' !' if inv else ''} -{letter} {ntoa(addr)}{save_mask(mask)}"
    for letter, iface, inv in (("i", rule.iniface, rule.invflags & IPT_INV_VIA_IN),
                               ("o", rule.outiface, rule.invflags & IPT_INV_VIA_OUT)):
        if iface and iface != "+":
            s += f"{' !' if inv else ''} -{letter} {iface}"
    if rule.proto:
        s += f"{' !' if rule.invflags & IPT_INV_PROTO else ''} -p {save_proto_name(rule.proto, names)}"
    if rule.flags & IPT_F_FRAG:
        s += (" !" if rule.invflags & IPT_INV_FRAG else "") + " -f"
    for m in rule.matches:
        s += f" -m {m.save_name}" + m.save(rule)
    if counters < 0:
        s += f" -c {rule.counters.pkts} {rule.counters.bytes}"
    t = rule.target
    if t is not None and not isinstance(t, (Standard, Jump)):
        s += f" -j {t.save_name}" + t.save(rule)
    elif t is not None:
        s += f" -{'g' if rule.flags & IPT_F_GOTO else 'j'} {rule.target_name}"
    return s + "\n"


def list_rules(table: Table, chain: str | None, rulenum: int, counters: bool, names: Resolver) -> str | None:
    """iptables -S: None when `chain` does not exist."""
    out: list[str] = []
    order = table.chain_order()
    if not rulenum:
        for name in order:
            if chain is not None and name != chain:
                continue
            c = table.chains[name]
            if c.builtin:
                out.append(f"-P {name} {c.policy}")
                if counters:
                    out.append(f" -c {c.counters.pkts} {c.counters.bytes}")
                out.append("\n")
            else:
                out.append(f"-N {name}\n")
    found = False
    for name in order:
        if chain is not None and name != chain:
            continue
        for i, rule in enumerate(table.chains[name].rules, 1):
            if not rulenum or i == rulenum:
                out.append(save_rule(name, rule, -1 if counters else 0, names))
        found = True
    return "".join(out) if found else None


def save_table(table: Table, counters: bool, names: Resolver, generated: str, completed: str) -> str:
    """One table of iptables-save; `generated`/`completed` are the ctime() texts of its two comment lines."""
    out = [f"# Generated by iptables-save v1.8.9 on {generated}\n", f"*{table.name}\n"]
    order = table.chain_order()
    for name in order:
        c = table.chains[name]
        if c.builtin:
            out.append(f":{name} {c.policy} [{c.counters.pkts}:{c.counters.bytes}]\n")
        else:
            out.append(f":{name} - [0:0]\n")
    for name in order:
        for rule in table.chains[name].rules:
            out.append(save_rule(name, rule, 1 if counters else 0, names))
    out.append("COMMIT\n")
    out.append(f"# Completed on {completed}\n")
    return "".join(out)
