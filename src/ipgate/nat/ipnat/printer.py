"""Rules and sessions printed as IP Filter 4.1.x prints them.

`printnat` is lib/printnat.c (with printhostmask(), printmask(),
printportcmp(), printproto(), portname() and count4bits()): one rule, the
way `ipnat -l` lists it and `ipnat -nv`/`-Rnvf` echo what they parse.
`numeric` is `-R` (OPT_NORESOLVE): port numbers instead of service names.

`print_active_nat` is lib/printactivenat.c for one session and `listing` the
`ipnat -l` layout of tools/ipnat.c dostats_live(); `statistics` is its `-s`
text.  Sessions are read through the `NatSessionView` protocol of state.py.

`conf_rule` is not IP Filter's: it writes a loaded rule as ipnat.conf text
that `parse` reads back to the very same rule (`ipgate save` needs that).
printnat()'s text does not always do so: it leaves out what it does not show
(`round-robin` on a map, values a later protocol cleared), prints names and
numbers unquoted and signed, and a few of its forms do not parse at all
(`portmap ip 1:2`, `proxy port  ftp/tcp`, `frag sequential`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from ipgate.nat.ipnat.parse import KEYWORDS
from ipgate.nat.ipnat.rule import (
    ALL_ONES,
    FR_INCRANGE,
    FR_INRANGE,
    FR_OUTRANGE,
    IPN_AUTOPORTMAP,
    IPN_FILTER,
    IPN_FIXEDDPORT,
    IPN_FRAG,
    IPN_ICMPQUERY,
    IPN_IPRANGE,
    IPN_NOTDST,
    IPN_NOTSRC,
    IPN_ROUNDR,
    IPN_SEQUENTIAL,
    IPN_SPLIT,
    IPN_STICKY,
    IPN_TCP,
    IPN_TCPUDP,
    IPN_UDP,
    MAPBLK_MINPORT,
    NAT_BIMAP,
    NAT_MAP,
    NAT_MAPBLK,
    NAT_REDIRECT,
    NatRule,
    PortCmp,
)
from ipgate.nat.ipnat.state import IPF_TCP_NSTATES, HostMapView, NatSessionDetail, NatSessionView, NatStats
from ipgate.netfilter.names import Resolver

_REDIR = {NAT_REDIRECT: "rdr", NAT_MAP: "map", NAT_MAPBLK: "map-block", NAT_BIMAP: "bimap"}
_NAT_TYPE = {NAT_MAP: "MAP", NAT_MAPBLK: "MAP-BLOCK", NAT_REDIRECT: "RDR", NAT_BIMAP: "BIMAP"}
_PCMP = ("*", "=", "!=", "<", ">", "<=", ">=", "<>", "><", ":")  # printportcmp()'s pcmp1[]
NAT_HW_CKSUM = 0x80000000


def ntoa(a: int) -> str:
    return f"{a >> 24 & 255}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"


def _d(v: int) -> str:
    """printf("%d") of a 32-bit value."""
    v &= ALL_ONES
    return str(v - (1 << 32) if v & 0x80000000 else v)


def count4bits(mask: int) -> int:
    """lib/count4bits.c: the number of leading ones if the mask is contiguous, else -1."""
    inv = ~mask & ALL_ONES
    if inv & (inv + 1):
        return -1
    return 32 - inv.bit_length()


def _mask(mask: int) -> str:
    """printmask(): /bits, or /a.b.c.d when the mask is not contiguous."""
    bits = count4bits(mask)
    return f"/{bits}" if bits != -1 else f"/{ntoa(mask)}"


def hostmask(addr: int, mask: int) -> str:
    """printhostmask(): `any` for 0/0."""
    if not addr and not mask:
        return "any"
    return ntoa(addr) + _mask(mask)


def portname(names: Resolver, pr: int, port: int, numeric: bool) -> str:
    """lib/portname.c: the service name for the protocol, unless -R."""
    if not numeric:
        if pr == -1:
            tcp = names.port_name(port, "tcp")
            if tcp is not None and names.port_name(port, "udp") == tcp:
                return tcp
        elif pr != -2:
            pname = names.proto_name(pr)
            if pname is not None:
                svc = names.port_name(port, pname)
                if svc is not None:
                    return svc
    return str(port)


def printproto(names: Resolver, r: NatRule | None, p: int) -> str:
    """lib/printproto.c (1.1.2.3): with a rule, its tcp/udp flags first; protocol 0 is `ip`."""
    if r is not None:
        if r.flags & IPN_TCPUDP == IPN_TCPUDP:
            return "tcp/udp"
        if r.flags & IPN_TCP:
            return "tcp"
        if r.flags & IPN_UDP:
            return "udp"
        if r.flags & IPN_ICMPQUERY:
            return "icmp"
        if r.proto == 0:
            return "ip"
    name = names.proto_name(p)
    return name if name is not None else _d(p)


def printportcmp(names: Resolver, pr: int, frp: PortCmp, numeric: bool) -> str:
    """lib/printportcmp.c."""
    if frp.cmp in (FR_INRANGE, FR_OUTRANGE):
        return f" port {frp.port} {_PCMP[frp.cmp]} {frp.top}"
    if frp.cmp == FR_INCRANGE:
        return f" port {frp.port}:{frp.top}"
    op = _PCMP[frp.cmp] if 0 <= frp.cmp < len(_PCMP) else "?"
    return f" port {op} {portname(names, pr, frp.port, numeric)}"


def _ifname(name: str) -> str:
    return f'"{name}"' if name == "-" else name


def printnat(r: NatRule, names: Resolver, numeric: bool = False) -> str:
    """lib/printnat.c printnat() without OPT_DEBUG: one line, newline included."""
    out = [_REDIR.get(r.redir, "")]
    out.append(" " + _ifname(r.ifname))
    if r.ifname2 and r.ifname2 != r.ifname:
        out.append("," + _ifname(r.ifname2))
    out.append(" ")
    rdr = r.redir == NAT_REDIRECT
    if r.flags & IPN_FILTER:
        if r.flags & IPN_NOTSRC:
            out.append("! ")
        out.append("from ")
        out.append(hostmask(r.src_addr, r.src_mask) if rdr else hostmask(r.in_addr, r.in_mask))
        if r.sport.cmp:
            out.append(printportcmp(names, r.proto, r.sport, numeric))
        if r.flags & IPN_NOTDST:
            out.append(" !")
        out.append(" to ")
        out.append(hostmask(r.out_addr, r.out_mask) if rdr else hostmask(r.src_addr, r.src_mask))
        if r.dport.cmp:
            out.append(printportcmp(names, r.proto, r.dport, numeric))
    if rdr:
        out.append(_rdr_tail(r, names))
    else:
        out.append(_map_tail(r, names, numeric))
    return "".join(out) + "\n"


def _rdr_tail(r: NatRule, names: Resolver) -> str:
    out = []
    if not r.flags & IPN_FILTER:
        out.append(ntoa(r.out_addr) + _mask(r.out_mask))
        if r.flags & IPN_TCPUDP:
            out.append(f" port {r.pmin}")
            if r.pmax != r.pmin:
                out.append(f"-{r.pmax}")
    out.append(f" -> {ntoa(r.in_addr)}")
    if r.flags & IPN_SPLIT:
        out.append("," + ntoa(r.in_mask))
    elif r.in_mask == 0 and r.in_addr == 0:
        out.append("/0")
    if r.flags & IPN_TCPUDP:
        out.append(f" port = {r.pnext}" if r.flags & IPN_FIXEDDPORT else f" port {r.pnext}")
    out.append(" " + printproto(names, r, r.proto))
    if r.flags & IPN_ROUNDR:
        out.append(" round-robin")
    if r.flags & IPN_FRAG:
        out.append(" frag")
    if r.age[0] or r.age[1]:
        out.append(f" age {_d(r.age[0])}/{_d(r.age[1])}")
    if r.flags & IPN_STICKY:
        out.append(" sticky")
    if r.mssclamp:
        out.append(f" mssclamp {_d(r.mssclamp)}")
    if r.plabel:
        out.append(f" proxy {r.plabel}")
    if r.tag:
        out.append(f" tag {r.tag}")
    return "".join(out)


def _map_tail(r: NatRule, names: Resolver, numeric: bool) -> str:
    out = []
    protoprinted = False
    if not r.flags & IPN_FILTER:
        out.append(ntoa(r.in_addr) + _mask(r.in_mask))
    out.append(" -> ")
    if r.flags & IPN_IPRANGE:
        out.append(f"range {ntoa(r.out_addr)}-{ntoa(r.out_mask)}")
    else:
        out.append(ntoa(r.out_addr) + _mask(r.out_mask))
    if r.plabel:
        out.append(" proxy port ")
        if r.dport.port:
            out.append(portname(names, r.proto, r.dport.port, numeric))
        out.append(f" {r.plabel}/" + printproto(names, None, r.proto))
        protoprinted = True
    elif r.redir == NAT_MAPBLK:
        out.append(" ports auto" if r.pmin == 0 and r.flags & IPN_AUTOPORTMAP else f" ports {r.pmin}")
    elif r.pmin or r.pmax:
        out.append(" icmpidmap " if r.flags & IPN_ICMPQUERY else " portmap ")
        out.append(printproto(names, r, r.proto))
        protoprinted = True
        out.append(" auto" if r.flags & IPN_AUTOPORTMAP else f" {r.pmin}:{r.pmax}")
    if r.flags & IPN_FRAG:
        out.append(" frag")
    if r.age[0] or r.age[1]:
        out.append(f" age {_d(r.age[0])}/{_d(r.age[1])}")
    if r.mssclamp:
        out.append(f" mssclamp {_d(r.mssclamp)}")
    if r.tag:
        out.append(f" tag {r.tag}")
    if not protoprinted and (r.flags & IPN_TCPUDP or r.proto):
        out.append(" " + printproto(names, r, r.proto))
    if r.flags & IPN_SEQUENTIAL:
        out.append(" sequential")
    return "".join(out)


# -- the save form -------------------------------------------------------------------------
# A name the lexer reads as one word, not a number, a keyword or punctuation (lexer.c; parse.WORD_END).
_BARE = re.compile(r"[^\s\d#\"'$=,/;{}()@:.!<>\\-][^\s#\"'$=,/;{}()@:!<>\\]*")


def conf_word(name: str) -> str:
    """An interface, proxy or tag name as one ipnat.conf word that reads back unchanged."""
    if _BARE.fullmatch(name) and name.lower() not in KEYWORDS:
        return name
    for q in "\"'":
        if q not in name and "\n" not in name:
            return q + name + q
    return "".join("\\" + c for c in name)  # both quotes: lexer.c takes any character after a backslash


def _conf_proto(names: Resolver, p: int) -> str:
    """A protocol for the grammar's `proto`: its name when that reads back as `p`, else the number."""
    name = names.proto_name(p)
    if name is not None and (name in ("tcp", "udp") or _BARE.fullmatch(name) and name.lower() not in KEYWORDS) \
            and names.proto_number(name) == p:
        return name
    return str(p)


def _conf_rule_proto(r: NatRule, names: Resolver) -> str:
    """What sets the rule's in_p and tcp/udp flags as they are ("" for protocol 0 without them)."""
    both = r.flags & IPN_TCPUDP
    if both == IPN_TCPUDP:
        return "tcp/udp"
    if both:
        return "tcp" if both == IPN_TCP else "udp"
    return _conf_proto(names, r.proto) if r.proto else ""


def _conf_ports(pc: PortCmp) -> str:
    """A from/to port comparison.  One that setnatproto() cleared (cmp 0, values kept) is written
    as a live one: the protocol written after it clears it again."""
    if pc.cmp in (FR_INRANGE, FR_OUTRANGE):
        return f" port {pc.port} {_PCMP[pc.cmp]} {pc.top}"
    if pc.cmp == FR_INCRANGE:
        return f" port {pc.port}:{pc.top}"
    if pc.cmp:
        return f" port {_PCMP[pc.cmp]} {pc.port}"
    if pc.top:
        return f" port {pc.port} <> {pc.top}"
    return f" port = {pc.port}" if pc.port else ""


def _cleared(pc: PortCmp) -> bool:
    return not pc.cmp and bool(pc.port or pc.top)


def _conf_options(r: NatRule, sticky: bool) -> str:
    """rr frag age [sticky] mssclamp, in the grammar's order, numbers unsigned."""
    out = []
    if r.flags & IPN_ROUNDR:
        out.append(" round-robin")
    if r.flags & IPN_FRAG:
        out.append(" frag")
    if r.age != (0, 0):
        out.append(f" age {r.age[0]}/{r.age[1]}")
    if sticky and r.flags & IPN_STICKY:
        out.append(" sticky")
    if r.mssclamp:
        out.append(f" mssclamp {r.mssclamp}")
    return "".join(out)


def conf_rule(r: NatRule, names: Resolver) -> str:
    """The rule as one line of ipnat.conf that `parse` (then SIOCADNAT) turns back into this rule.

    Like printnat() but numeric, names quoted when they are not plain words, and every field written
    that the grammar can set, in the order its actions run.  A rule no text can give (not made by
    the parser) gets a line that reads back differently: callers check (save.py does).
    """
    ifn = conf_word(r.ifname) + ("," + conf_word(r.ifname2) if r.ifname2 != r.ifname else "")
    if r.redir == NAT_REDIRECT:
        body = _conf_rdr(r, names)
    elif r.redir == NAT_MAPBLK:
        body = (f" {ntoa(r.in_addr)}{_mask(r.in_mask)} -> {ntoa(r.out_addr)}{_mask(r.out_mask)}"
                + (" ports auto" if r.flags & IPN_AUTOPORTMAP else f" ports {r.pmin}" if r.pmin else "")
                + _conf_options(r, False) + (f" tag {conf_word(r.tag)}" if r.tag else ""))
        proto = _conf_rule_proto(r, names)
        body += f" {proto}" if proto else ""
    else:
        body = _conf_map(r, names)
    return f"{_REDIR.get(r.redir, '')} {ifn}{body}\n"


def _conf_map(r: NatRule, names: Resolver) -> str:
    """map/bimap: mapit ifnames (addr | mapfrom) '->' rhaddr (proxy | mapport) mapoptions."""
    query = bool(r.flags & IPN_ICMPQUERY)
    # icmpidmap assigns in_flags: a from/to before it keeps its fields but loses IPN_FILTER.
    filtered = bool(r.flags & IPN_FILTER) or query and bool(
        r.src_addr or r.src_mask or r.sport != PortCmp() or r.dport != PortCmp())
    # the proxy keeps its port in in_dport; a to-port comparison it was checked against stays there too
    dport = _conf_ports(r.dport) if r.dport.cmp or r.dport.top or not r.plabel else ""
    auto_cleared = bool(r.flags & IPN_AUTOPORTMAP) and (r.pmin, r.pmax) != (MAPBLK_MINPORT, 65535)
    dead = _cleared(r.sport) or _cleared(r.dport) and bool(dport) or auto_cleared
    out = []
    if filtered:
        sport = _conf_ports(r.sport)
        out.append(f" from {hostmask(r.in_addr, r.in_mask)}{sport}{' !' if r.flags & IPN_NOTDST else ''}"
                   f" to {hostmask(r.src_addr, r.src_mask)}{dport}")
        ports_named = bool(sport or dport)
    else:
        out.append(f" {ntoa(r.in_addr)}{_mask(r.in_mask)}")
        ports_named = False
    out.append(f" -> range {ntoa(r.out_addr)}-{ntoa(r.out_mask)}" if r.flags & IPN_IPRANGE
               else f" -> {ntoa(r.out_addr)}{_mask(r.out_mask)}")
    want = _conf_rule_proto(r, names)
    now = ""  # the protocol the words so far have set
    if query:
        out.append(f" icmpidmap icmp {r.pmin}:{r.pmax}")
    elif r.plabel:
        # a cleared comparison needs a protocol that clears: `ip` here, then the rule's own after it
        now = "ip" if dead and r.proto in (6, 17) else _conf_proto(names, r.proto)
        out.append(f" proxy port {r.dport.port} {conf_word(r.plabel)}/{now}")
        now = "" if now == "ip" else now
    elif r.pmin or r.pmax or r.flags & (IPN_AUTOPORTMAP | IPN_SEQUENTIAL):
        now = want if r.flags & IPN_TCPUDP else ""
        out.append(f" portmap{' ' + now if now else ''}"
                   + (" auto" if r.flags & IPN_AUTOPORTMAP else f" {r.pmin}:{r.pmax}")
                   + (" sequential" if r.flags & IPN_SEQUENTIAL else ""))
    out.append(_conf_options(r, False))
    if r.tag:
        out.append(f" tag {conf_word(r.tag)}")
    if not now:
        if want:
            out.append(f" {want}")
        elif dead or ports_named and not r.flags & IPN_TCPUDP:
            out.append(" ip")  # clears what it must, and a named port no longer means tcp/udp
    return "".join(out)


def _conf_rdr(r: NatRule, names: Resolver) -> str:
    """rdr: rdrit ifnames (addr [dport] | rdrfrom) '->' dip [nport] setproto rdroptions."""
    filtered = bool(r.flags & IPN_FILTER)
    dead = _cleared(r.sport) or not r.dport.cmp and bool(r.dport.top or r.dport.port and not r.plabel)
    out = []
    if filtered:
        # dobject sets pmin to its port; a later `proxy NAME` sets in_dport to the new port
        to_port = replace(r.dport, port=r.pmin) if r.dport.cmp else r.dport if r.dport.top or not r.plabel \
            else PortCmp()
        out.append(f" {'! ' if r.flags & IPN_NOTSRC else ''}from {hostmask(r.src_addr, r.src_mask)}"
                   f"{_conf_ports(r.sport)} to {hostmask(r.out_addr, r.out_mask)}{_conf_ports(to_port)}")
        nport = bool(r.flags & (IPN_TCPUDP | IPN_FIXEDDPORT) or r.pnext)
    else:
        out.append(f" {ntoa(r.out_addr)}{_mask(r.out_mask)}")
        nport = bool(r.flags & (IPN_TCPUDP | IPN_FIXEDDPORT) or r.pmin or r.pmax or r.pnext)
        if nport:
            out.append(f" port {r.pmin}" + (f"-{r.pmax}" if r.pmax != r.pmin else ""))
    if r.flags & IPN_SPLIT:
        out.append(f" -> {ntoa(r.in_addr)},{ntoa(r.in_mask)}")
    else:
        out.append(f" -> {ntoa(r.in_addr)}" + ("/0" if r.in_addr == 0 and r.in_mask == 0 else ""))
    if nport:
        out.append(f" port {'= ' if r.flags & IPN_FIXEDDPORT else ''}{r.pnext}")
    # `proxy NAME` copies the new port to in_dport; `proxy port P name/proto` sets every port to P
    name_form = bool(r.plabel) and not dead and r.dport.port == r.pnext and (not filtered or r.pmax == 0)
    # `ip` as printnat() prints it, but not where setnatproto() would drop a lone `port = P`'s flag
    proto = _conf_rule_proto(r, names) or ("" if r.flags & IPN_FIXEDDPORT else "ip")
    out.append(" ip" if r.plabel and dead else f" {proto}" if proto else "")
    out.append(_conf_options(r, True))
    if r.plabel:
        out.append(f" proxy {conf_word(r.plabel)}" if name_form else
                   f" proxy port {r.dport.port} {conf_word(r.plabel)}/{_conf_proto(names, r.proto)}")
    if r.tag:
        out.append(f" tag {conf_word(r.tag)}")
    return "".join(out)


def getsumd(sum_: int) -> str:
    """lib/getsumd.c."""
    if sum_ & NAT_HW_CKSUM:
        return f"hw({sum_ & 0xFFFF:#x})"
    return f"{sum_:#x}" if sum_ else "0"


def print_active_nat(s: NatSessionView, verbose: bool = False, now: int = 0) -> str:
    """lib/printactivenat.c: `TYPE in [port] <- -> out [port] [remote [port]]`, newline included."""
    ports = bool(s.flags & IPN_TCPUDP)
    out = [_NAT_TYPE.get(s.redir, f"unknown({s.redir & ALL_ONES:04x})")]
    out.append(f" {ntoa(s.inip):<15}")
    if ports:
        out.append(f" {s.inport & 0xFFFF:<5}")
    out.append(f" <- -> {ntoa(s.outip):<15}")
    if ports:
        out.append(f" {s.outport & 0xFFFF:<5}")
    out.append(f" [{ntoa(s.oip)}")
    if ports:
        out.append(f" {s.oport & 0xFFFF}")
    out.append("]")
    if verbose and isinstance(s, NatSessionDetail):
        sumd = getattr(s, "sumd", (0, 0))
        ipsumd = getattr(s, "ipsumd", 0)
        out.append(f"\n\tttl {max(s.age(now), 0)} use {s.use & 0xFFFF} sumd {getsumd(sumd[0])}/"
                   f"{getsumd(sumd[1])} pr {s.p} bkt {s.hv[0]}/{s.hv[1]} flags {s.flags:x}\n")
        out.append(f"\tifp {s.ifnames[0]},{s.ifnames[1]} bytes {s.bytes[0]}/{s.bytes[1]} "
                   f"pkts {s.pkts[0]}/{s.pkts[1]} ipsumd {ipsumd:x}")
    return "".join(out) + "\n"


def printhostmap(hm: HostMapView, hv: int = 0) -> str:
    """lib/printhostmap.c (the live listing passes hv 0)."""
    return f"{ntoa(hm.src)},{ntoa(hm.dst)} -> {ntoa(hm.mapip)} (use = {_d(hm.ref)} hv = {hv})\n"


def listing(rules: Sequence[NatRule], sessions: Iterable[NatSessionView], names: Resolver,
            numeric: bool = False, verbose: bool = False, hits: Sequence[int] | None = None,
            now: int = 0, hostmaps: Iterable[HostMapView] = ()) -> str:
    """tools/ipnat.c dostats_live(): the rules, then the sessions (newest first, as nat_instances)."""
    out = ["List of active MAP/Redirect filters:\n"]
    for i, r in enumerate(rules):
        if hits is not None:
            out.append(f"{hits[i] if i < len(hits) else 0} ")
        out.append(printnat(r, names, numeric))
    out.append("\nList of active sessions:\n")
    for s in sessions:
        out.append(print_active_nat(s, verbose, now))
    if verbose:
        out.append("\nList of active host mappings:\n")
        out.extend(printhostmap(hm) for hm in hostmaps)
    return "".join(out)


def statistics(st: NatStats, rules: int, table: bool = True) -> str:
    """tools/ipnat.c dostats() for -s; `table` false when no kernel answers (-n): no hash or TCP lines."""
    out = [f"mapped\tin\t{st.mapped[0]}\tout\t{st.mapped[1]}\n",
           f"added\t{st.added}\texpired\t{st.expired}\n",
           f"no memory\t{st.memfail}\tbad nat\t{st.badnat}\n",
           f"inuse\t{st.inuse}\norphans\t{st.orphans}\nrules\t{rules}\n",
           f"wilds\t{st.wilds}\n"]
    if not table:
        return "".join(out)
    buckets = st.buckets
    total = sum(buckets)
    used = sum(1 for b in buckets if b)
    minlen = st.inuse
    for b in buckets:
        minlen = min(minlen, b)
    maxlen = max(buckets, default=0)
    size = len(buckets) or 1
    out.append(f"hash efficiency\t{(used / total) * 100.0 if total else 0.0:2.2f}%\n")
    out.append(f"bucket usage\t{(used / size) * 100.0:2.2f}%\n")
    out.append(f"minimal length\t{minlen}\n")
    out.append(f"maximal length\t{maxlen}\n")
    out.append(f"average length\t{total / used if used else 0.0:.3f}\n")
    out.append("TCP Entries per state\n")  # printtqtable()
    out.append("".join(f" {i:5d}" for i in range(IPF_TCP_NSTATES)) + "\n")
    states = list(st.tcp_states) + [0] * (IPF_TCP_NSTATES - len(st.tcp_states))
    out.append("".join(f" {n:5d}" for n in states[:IPF_TCP_NSTATES]) + "\n")
    return "".join(out)
