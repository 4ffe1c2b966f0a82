"""Match data, printed as iptables 1.8.9's libxt_*/libipt_* extensions print them.

Each class holds its kernel struct's fields (xt_tcp, xt_multiport_v1,
xt_conntrack_mtinfo3, ...) in host order.  `print` is the extension's
.print (-L; `numeric` is -n), `save` its .save (-S, iptables-save), `check`
the kernel's checkentry.  The revisions are those iptables 1.8.9 picks on a
current kernel (multiport v1, conntrack v3, mark v1, addrtype v1, iprange v1).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ipgate.netfilter.names import mask_to_numeric, ntoa
from ipgate.netfilter.rule import (
    IPPROTO_DCCP,
    IPPROTO_ICMP,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPPROTO_UDPLITE,
    IPT_INV_PROTO,
    NF_INET_LOCAL_IN,
    NF_INET_LOCAL_OUT,
    NF_INET_POST_ROUTING,
    NF_INET_PRE_ROUTING,
    CheckContext,
    Match,
    Rule,
)

if TYPE_CHECKING:
    from ipgate.netfilter.names import Resolver


def _proto_check(ctx: CheckContext, proto: int) -> int:
    # xt_check_match(): a match bound to a protocol needs `-p` that protocol, not inverted.
    r = ctx.rule
    if r.proto != proto or r.invflags & IPT_INV_PROTO:
        return errno.EINVAL
    return 0


def _port(port: int, proto: str, numeric: bool, names: Resolver) -> str:
    if numeric:
        return str(port)
    return names.port_name(port, proto) or str(port)


# -- tcp / udp (libxt_tcp.c, libxt_udp.c) -------------------------------------
XT_TCP_INV_SRCPT = 0x01
XT_TCP_INV_DSTPT = 0x02
XT_TCP_INV_FLAGS = 0x04
XT_TCP_INV_OPTION = 0x08
TCP_FLAG_NAMES = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20),
                  ("ALL", 0x3F), ("NONE", 0))


def _print_ports(name: str, lo: int, hi: int, invert: bool, proto: str, numeric: bool, names: Resolver) -> str:
    if lo == 0 and hi == 0xFFFF and not invert:
        return ""
    inv = "!" if invert else ""
    if lo == hi:
        return f" {name}:{inv}{_port(lo, proto, numeric, names)}"
    return f" {name}s:{inv}{_port(lo, proto, numeric, names)}:{_port(hi, proto, numeric, names)}"


def _save_ports(opt: str, lo: int, hi: int, invert: bool) -> str:
    if lo == 0 and hi == 0xFFFF:
        return ""
    inv = " !" if invert else ""
    return f"{inv} --{opt} {lo}" if lo == hi else f"{inv} --{opt} {lo}:{hi}"


def tcp_flag_text(flags: int) -> str:
    """print_tcpf(): "SYN,ACK", or "NONE"."""
    out = []
    while flags:
        for name, bit in TCP_FLAG_NAMES:
            if flags & bit:
                out.append(name)
                flags &= ~bit
                break
    return ",".join(out) if out else "NONE"


@dataclass(frozen=True, slots=True)
class TcpMatch(Match):
    spts: tuple[int, int] = (0, 0xFFFF)
    dpts: tuple[int, int] = (0, 0xFFFF)
    option: int = 0
    flg_mask: int = 0
    flg_cmp: int = 0
    invflags: int = 0
    NAME: ClassVar[str] = "tcp"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        s = " tcp"
        s += _print_ports("spt", *self.spts, bool(self.invflags & XT_TCP_INV_SRCPT), "tcp", numeric, names)
        s += _print_ports("dpt", *self.dpts, bool(self.invflags & XT_TCP_INV_DSTPT), "tcp", numeric, names)
        if self.option or self.invflags & XT_TCP_INV_OPTION:
            s += f" option={'!' if self.invflags & XT_TCP_INV_OPTION else ''}{self.option}"
        if self.flg_mask or self.invflags & XT_TCP_INV_FLAGS:
            s += " flags:" + ("!" if self.invflags & XT_TCP_INV_FLAGS else "")
            if numeric:
                s += f"0x{self.flg_mask:02X}/0x{self.flg_cmp:02X}"
            else:
                s += tcp_flag_text(self.flg_mask) + "/" + tcp_flag_text(self.flg_cmp)
        if self.invflags & ~0x0F:
            s += f" Unknown invflags: 0x{self.invflags & ~0x0F:X}"
        return s

    def save(self, rule: Rule) -> str:
        s = _save_ports("sport", *self.spts, bool(self.invflags & XT_TCP_INV_SRCPT))
        s += _save_ports("dport", *self.dpts, bool(self.invflags & XT_TCP_INV_DSTPT))
        if self.option or self.invflags & XT_TCP_INV_OPTION:
            s += (" !" if self.invflags & XT_TCP_INV_OPTION else "") + f" --tcp-option {self.option}"
        if self.flg_mask or self.invflags & XT_TCP_INV_FLAGS:
            s += (" !" if self.invflags & XT_TCP_INV_FLAGS else "")
            s += f" --tcp-flags {tcp_flag_text(self.flg_mask)} {tcp_flag_text(self.flg_cmp)}"
        return s

    def check(self, ctx: CheckContext) -> int:
        return _proto_check(ctx, IPPROTO_TCP)


@dataclass(frozen=True, slots=True)
class UdpMatch(Match):
    spts: tuple[int, int] = (0, 0xFFFF)
    dpts: tuple[int, int] = (0, 0xFFFF)
    invflags: int = 0
    NAME: ClassVar[str] = "udp"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        s = " udp"
        s += _print_ports("spt", *self.spts, bool(self.invflags & XT_TCP_INV_SRCPT), "udp", numeric, names)
        s += _print_ports("dpt", *self.dpts, bool(self.invflags & XT_TCP_INV_DSTPT), "udp", numeric, names)
        return s

    def save(self, rule: Rule) -> str:
        return (_save_ports("sport", *self.spts, bool(self.invflags & XT_TCP_INV_SRCPT))
                + _save_ports("dport", *self.dpts, bool(self.invflags & XT_TCP_INV_DSTPT)))

    def check(self, ctx: CheckContext) -> int:
        return _proto_check(ctx, IPPROTO_UDP)


# -- icmp (libipt_icmp.c, libxtables' icmp table) --------------------------------
ICMP_CODES: tuple[tuple[str, int, int, int], ...] = (
    ("any", 0xFF, 0, 0xFF),
    ("echo-reply", 0, 0, 0xFF),
    ("pong", 0, 0, 0xFF),
    ("destination-unreachable", 3, 0, 0xFF),
    ("network-unreachable", 3, 0, 0),
    ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2),
    ("port-unreachable", 3, 3, 3),
    ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5),
    ("network-unknown", 3, 6, 6),
    ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9),
    ("host-prohibited", 3, 10, 10),
    ("TOS-network-unreachable", 3, 11, 11),
    ("TOS-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 0xFF),
    ("redirect", 5, 0, 0xFF),
    ("network-redirect", 5, 0, 0),
    ("host-redirect", 5, 1, 1),
    ("TOS-network-redirect", 5, 2, 2),
    ("TOS-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 0xFF),
    ("ping", 8, 0, 0xFF),
    ("router-advertisement", 9, 0, 0xFF),
    ("router-solicitation", 10, 0, 0xFF),
    ("time-exceeded", 11, 0, 0xFF),
    ("ttl-exceeded", 11, 0, 0xFF),
    ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 0xFF),
    ("ip-header-bad", 12, 0, 0),
    ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 0xFF),
    ("timestamp-reply", 14, 0, 0xFF),
    ("address-mask-request", 17, 0, 0xFF),
    ("address-mask-reply", 18, 0, 0xFF),
)


@dataclass(frozen=True, slots=True)
class IcmpMatch(Match):
    type: int = 0
    code: tuple[int, int] = (0, 0xFF)
    invert: bool = False
    NAME: ClassVar[str] = "icmp"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        lo, hi = self.code
        if not numeric:
            for name, t, cmin, cmax in ICMP_CODES:
                if (t, cmin, cmax) == (self.type, lo, hi):
                    return f" icmp {'!' if self.invert else ''}{name}"
        s = " icmp" + (" !" if self.invert else "") + f"type {self.type}"
        if lo == hi:
            s += f" code {lo}"
        elif lo != 0 or hi != 0xFF:
            s += f" codes {lo}-{hi}"
        return s

    def save(self, rule: Rule) -> str:
        s = " !" if self.invert else ""
        if self.type == 0xFF:
            return s + " --icmp-type any"
        s += f" --icmp-type {self.type}"
        if self.code != (0, 0xFF):
            s += f"/{self.code[0]}"
        return s

    def check(self, ctx: CheckContext) -> int:
        return _proto_check(ctx, IPPROTO_ICMP)


# -- multiport (libxt_multiport.c, revision 1) ----------------------------------
XT_MULTIPORT_SOURCE = 0
XT_MULTIPORT_DESTINATION = 1
XT_MULTIPORT_EITHER = 2
MULTIPORT_PROTOS = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_UDPLITE: "udplite", IPPROTO_SCTP: "sctp",
                    IPPROTO_DCCP: "dccp"}


@dataclass(frozen=True, slots=True)
class MultiportMatch(Match):
    flags: int = XT_MULTIPORT_DESTINATION
    ports: tuple[int, ...] = ()
    pflags: tuple[bool, ...] = ()  # pflags[i]: ports[i]..ports[i+1] is a range
    invert: bool = False
    NAME: ClassVar[str] = "multiport"

    def ranges(self) -> list[tuple[int, int]]:
        """The port ranges the kernel tests (ports_match_v1)."""
        out, i = [], 0
        while i < len(self.ports):
            if self.pflags[i]:
                out.append((self.ports[i], self.ports[i + 1]))
                i += 2
            else:
                out.append((self.ports[i], self.ports[i]))
                i += 1
        return out

    def _list(self, rule: Rule, numeric: bool, names: Resolver | None) -> str:
        proto = MULTIPORT_PROTOS.get(rule.proto, "")

        def port(p: int) -> str:
            return str(p) if names is None else _port(p, proto, numeric, names)

        parts, i = [], 0
        while i < len(self.ports):
            text = port(self.ports[i])
            if self.pflags[i]:
                i += 1
                text += ":" + port(self.ports[i])
            parts.append(text)
            i += 1
        return ",".join(parts)

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        kind = {XT_MULTIPORT_SOURCE: "sports ", XT_MULTIPORT_DESTINATION: "dports ",
                XT_MULTIPORT_EITHER: "ports "}.get(self.flags, "ERROR ")
        return " multiport " + kind + (" !" if self.invert else "") + self._list(rule, numeric, names)

    def save(self, rule: Rule) -> str:
        kind = {XT_MULTIPORT_SOURCE: " --sports ", XT_MULTIPORT_DESTINATION: " --dports ",
                XT_MULTIPORT_EITHER: " --ports "}.get(self.flags, "")
        return (" !" if self.invert else "") + kind + self._list(rule, True, None)

    def check(self, ctx: CheckContext) -> int:
        r = ctx.rule
        if r.proto not in MULTIPORT_PROTOS or r.invflags & IPT_INV_PROTO or len(self.ports) > 15:
            return errno.EINVAL
        return 0


# -- conntrack and its "state" alias (libxt_conntrack.c, revision 3) ---------------
XT_CONNTRACK_STATE = 1 << 0
XT_CONNTRACK_PROTO = 1 << 1
XT_CONNTRACK_ORIGSRC = 1 << 2
XT_CONNTRACK_ORIGDST = 1 << 3
XT_CONNTRACK_REPLSRC = 1 << 4
XT_CONNTRACK_REPLDST = 1 << 5
XT_CONNTRACK_STATUS = 1 << 6
XT_CONNTRACK_EXPIRES = 1 << 7
XT_CONNTRACK_ORIGSRC_PORT = 1 << 8
XT_CONNTRACK_ORIGDST_PORT = 1 << 9
XT_CONNTRACK_REPLSRC_PORT = 1 << 10
XT_CONNTRACK_REPLDST_PORT = 1 << 11
XT_CONNTRACK_DIRECTION = 1 << 12
XT_CONNTRACK_STATE_ALIAS = 1 << 13

# state_mask bits: XT_CONNTRACK_STATE_BIT(ctinfo) = 1 << (ctinfo + 1)
CT_STATE_INVALID = 1 << 0
CT_STATE_ESTABLISHED = 1 << 1
CT_STATE_RELATED = 1 << 2
CT_STATE_NEW = 1 << 3
CT_STATE_UNTRACKED = 1 << 6
CT_STATE_SNAT = 1 << 7
CT_STATE_DNAT = 1 << 8
CT_STATE_NAMES = (("INVALID", CT_STATE_INVALID), ("NEW", CT_STATE_NEW), ("RELATED", CT_STATE_RELATED),
                  ("ESTABLISHED", CT_STATE_ESTABLISHED), ("UNTRACKED", CT_STATE_UNTRACKED),
                  ("SNAT", CT_STATE_SNAT), ("DNAT", CT_STATE_DNAT))
# Parse order of conntrack_ps_state() (prefix matching takes the first hit).
CT_STATE_PARSE_ORDER = ("INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED", "SNAT", "DNAT")
# ip_conntrack_status bits
IPS_EXPECTED = 1 << 0
IPS_SEEN_REPLY = 1 << 1
IPS_ASSURED = 1 << 2
IPS_CONFIRMED = 1 << 3
CT_STATUS_NAMES = (("EXPECTED", IPS_EXPECTED), ("SEEN_REPLY", IPS_SEEN_REPLY), ("ASSURED", IPS_ASSURED),
                   ("CONFIRMED", IPS_CONFIRMED))


def ct_state_text(mask: int) -> str:
    return ",".join(n for n, b in CT_STATE_NAMES if mask & b)


def ct_status_text(mask: int) -> str:
    return ",".join(n for n, b in CT_STATUS_NAMES if mask & b) or "NONE"


@dataclass(frozen=True, slots=True)
class ConntrackMatch(Match):
    match_flags: int = 0
    invert_flags: int = 0
    state_mask: int = 0
    status_mask: int = 0
    l4proto: int = 0
    origsrc: tuple[int, int] = (0, 0)  # (address, mask)
    origdst: tuple[int, int] = (0, 0)
    replsrc: tuple[int, int] = (0, 0)
    repldst: tuple[int, int] = (0, 0)
    origsrc_port: tuple[int, int] = (0, 0)  # (low, high)
    origdst_port: tuple[int, int] = (0, 0)
    replsrc_port: tuple[int, int] = (0, 0)
    repldst_port: tuple[int, int] = (0, 0)
    expires: tuple[int, int] = (0, 0)
    NAME: ClassVar[str] = "conntrack"

    @property
    def save_name(self) -> str:
        return "state" if self.match_flags & XT_CONNTRACK_STATE_ALIAS else "conntrack"

    def _dump(self, prefix: str, numeric: bool, names: Resolver | None) -> str:
        # conntrack_dump()
        f, inv = self.match_flags, self.invert_flags
        out = []

        def bang(bit: int) -> None:
            if inv & bit:
                out.append(" !")

        def addr(a: tuple[int, int]) -> str:
            if not numeric and a[0] == 0:
                return " anywhere"
            host = ntoa(a[0]) if numeric or names is None else names.addr_to_anyname(a[0])
            return f" {host}{mask_to_numeric(a[1])}"

        if f & XT_CONNTRACK_STATE:
            bang(XT_CONNTRACK_STATE)
            word = "state" if f & XT_CONNTRACK_STATE_ALIAS else "ctstate"
            text = ct_state_text(self.state_mask)
            out.append(f" {prefix}{word}" + (" " + text if text else ""))
        if f & XT_CONNTRACK_PROTO:
            bang(XT_CONNTRACK_PROTO)
            out.append(f" {prefix}ctproto {self.l4proto}")
        for bit, name, a in ((XT_CONNTRACK_ORIGSRC, "ctorigsrc", self.origsrc),
                             (XT_CONNTRACK_ORIGDST, "ctorigdst", self.origdst),
                             (XT_CONNTRACK_REPLSRC, "ctreplsrc", self.replsrc),
                             (XT_CONNTRACK_REPLDST, "ctrepldst", self.repldst)):
            if f & bit:
                bang(bit)
                out.append(f" {prefix}{name}" + addr(a))
        for bit, name, p in ((XT_CONNTRACK_ORIGSRC_PORT, "ctorigsrcport", self.origsrc_port),
                             (XT_CONNTRACK_ORIGDST_PORT, "ctorigdstport", self.origdst_port),
                             (XT_CONNTRACK_REPLSRC_PORT, "ctreplsrcport", self.replsrc_port),
                             (XT_CONNTRACK_REPLDST_PORT, "ctrepldstport", self.repldst_port)):
            if f & bit:
                bang(bit)
                lo, hi = p
                out.append(f" {prefix}{name} {lo}" if hi == 0 or lo == hi else f" {prefix}{name} {lo}:{hi}")
        if f & XT_CONNTRACK_STATUS:
            bang(XT_CONNTRACK_STATUS)
            out.append(f" {prefix}ctstatus " + ct_status_text(self.status_mask))
        if f & XT_CONNTRACK_EXPIRES:
            bang(XT_CONNTRACK_EXPIRES)
            lo, hi = self.expires
            out.append(f" {prefix}ctexpire {lo}" if lo == hi else f" {prefix}ctexpire {lo}:{hi}")
        if f & XT_CONNTRACK_DIRECTION:
            out.append(f" {prefix}ctdir " + ("REPLY" if inv & XT_CONNTRACK_DIRECTION else "ORIGINAL"))
        return "".join(out)

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return self._dump("", numeric, names)

    def save(self, rule: Rule) -> str:
        return self._dump("--", True, None)


# -- mark, connmark (libxt_mark.c, libxt_connmark.c, revision 1) ------------------
def _mark_text(mark: int, mask: int) -> str:
    return f" 0x{mark:x}/0x{mask:x}" if mask != 0xFFFFFFFF else f" 0x{mark:x}"


@dataclass(frozen=True, slots=True)
class MarkMatch(Match):
    mark: int = 0
    mask: int = 0xFFFFFFFF
    invert: bool = False
    NAME: ClassVar[str] = "mark"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return " mark match" + (" !" if self.invert else "") + _mark_text(self.mark, self.mask)

    def save(self, rule: Rule) -> str:
        return (" !" if self.invert else "") + " --mark" + _mark_text(self.mark, self.mask)


@dataclass(frozen=True, slots=True)
class ConnmarkMatch(Match):
    mark: int = 0
    mask: int = 0xFFFFFFFF
    invert: bool = False
    NAME: ClassVar[str] = "connmark"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return " connmark match " + ("!" if self.invert else "") + _mark_text(self.mark, self.mask)

    def save(self, rule: Rule) -> str:
        return (" !" if self.invert else "") + " --mark" + _mark_text(self.mark, self.mask)


# -- iprange (libxt_iprange.c, revision 1) -----------------------------------------
IPRANGE_SRC = 1 << 0
IPRANGE_DST = 1 << 1
IPRANGE_SRC_INV = 1 << 4
IPRANGE_DST_INV = 1 << 5


@dataclass(frozen=True, slots=True)
class IprangeMatch(Match):
    flags: int = 0
    src: tuple[int, int] = (0, 0)
    dst: tuple[int, int] = (0, 0)
    NAME: ClassVar[str] = "iprange"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        s = ""
        if self.flags & IPRANGE_SRC:
            s += " source IP range" + (" !" if self.flags & IPRANGE_SRC_INV else "")
            s += f" {ntoa(self.src[0])}-{ntoa(self.src[1])}"
        if self.flags & IPRANGE_DST:
            s += " destination IP range" + (" !" if self.flags & IPRANGE_DST_INV else "")
            s += f" {ntoa(self.dst[0])}-{ntoa(self.dst[1])}"
        return s

    def save(self, rule: Rule) -> str:
        s = ""
        for bit, inv, opt, (lo, hi) in ((IPRANGE_SRC, IPRANGE_SRC_INV, "src", self.src),
                                         (IPRANGE_DST, IPRANGE_DST_INV, "dst", self.dst)):
            if self.flags & bit:
                s += (" !" if self.flags & inv else "") + f" --{opt}-range {ntoa(lo)}-{ntoa(hi)}"
        return s


# -- tos, dscp (libxt_tos.c revision 1, libxt_dscp.c) --------------------------------
TOS_SYMBOLS = (("Minimize-Delay", 0x10), ("Maximize-Throughput", 0x08), ("Maximize-Reliability", 0x04),
               ("Minimize-Cost", 0x02), ("Normal-Service", 0x00))


def tos_symbol(value: int, mask: int) -> str | None:
    """tos_try_print_symbolic(): only with the 0x3f mask the symbolic names use."""
    if mask != 0x3F:
        return None
    for name, v in TOS_SYMBOLS:
        if v == value:
            return name
    return None


@dataclass(frozen=True, slots=True)
class TosMatch(Match):
    value: int = 0
    mask: int = 0xFF
    invert: bool = False
    NAME: ClassVar[str] = "tos"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        s = " tos match" + ("!" if self.invert else "")
        sym = None if numeric else tos_symbol(self.value, self.mask)
        return s + (f" {sym}" if sym is not None else f"0x{self.value:02x}/0x{self.mask:02x}")

    def save(self, rule: Rule) -> str:
        return (" !" if self.invert else "") + f" --tos 0x{self.value:02x}/0x{self.mask:02x}"


DSCP_CLASSES = (("CS0", 0x00), ("CS1", 0x08), ("CS2", 0x10), ("CS3", 0x18), ("CS4", 0x20), ("CS5", 0x28),
                ("CS6", 0x30), ("CS7", 0x38), ("BE", 0x00), ("AF11", 0x0A), ("AF12", 0x0C), ("AF13", 0x0E),
                ("AF21", 0x12), ("AF22", 0x14), ("AF23", 0x16), ("AF31", 0x1A), ("AF32", 0x1C), ("AF33", 0x1E),
                ("AF41", 0x22), ("AF42", 0x24), ("AF43", 0x26), ("EF", 0x2E))


@dataclass(frozen=True, slots=True)
class DscpMatch(Match):
    dscp: int = 0
    invert: bool = False
    NAME: ClassVar[str] = "dscp"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return f" DSCP match {'!' if self.invert else ''}0x{self.dscp:02x}"

    def save(self, rule: Rule) -> str:
        return f"{' !' if self.invert else ''} --dscp 0x{self.dscp:02x}"

    def check(self, ctx: CheckContext) -> int:
        return errno.EDOM if self.dscp > 0x3F else 0


# -- limit (libxt_limit.c) -------------------------------------------------------
XT_LIMIT_SCALE = 10000
XT_LIMIT_BURST = 5
LIMIT_RATES = (("day", XT_LIMIT_SCALE * 24 * 60 * 60), ("hour", XT_LIMIT_SCALE * 60 * 60),
               ("min", XT_LIMIT_SCALE * 60), ("sec", XT_LIMIT_SCALE))
# HZ * CREDITS_PER_JIFFY of xt_limit.c: 32000 for HZ 1000 (and 250)
_HZ_CPJ = 32000


def rate_text(period: int) -> str:
    """print_rate()."""
    if period == 0:
        return " inf"
    i = 1
    while i < len(LIMIT_RATES):
        mult = LIMIT_RATES[i][1]
        if period > mult or mult // period < mult % period:
            break
        i += 1
    name, mult = LIMIT_RATES[i - 1]
    return f" {mult // period}/{name}"


def _user2credits(user: int) -> int:
    # xt_limit.c user2credits(), in u32 arithmetic
    if user > 0xFFFFFFFF // _HZ_CPJ:
        return ((user // XT_LIMIT_SCALE) * _HZ_CPJ) & 0xFFFFFFFF
    return (user * _HZ_CPJ) // XT_LIMIT_SCALE


@dataclass(frozen=True, slots=True)
class LimitMatch(Match):
    avg: int = XT_LIMIT_SCALE * 3600 // 3  # 3/hour
    burst: int = XT_LIMIT_BURST
    NAME: ClassVar[str] = "limit"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return " limit: avg" + rate_text(self.avg) + f" burst {self.burst}"

    def save(self, rule: Rule) -> str:
        s = " --limit" + rate_text(self.avg)
        if self.burst != XT_LIMIT_BURST:
            s += f" --limit-burst {self.burst}"
        return s

    def check(self, ctx: CheckContext) -> int:
        # limit_mt_check(): "Overflow, try lower"
        if self.burst == 0 or _user2credits((self.avg * self.burst) & 0xFFFFFFFF) < _user2credits(self.avg):
            return errno.ERANGE
        return 0


# -- comment (libxt_comment.c) -----------------------------------------------------
def save_string(value: str) -> str:
    """xtables_save_string(): bare if [A-Za-z0-9_-]+, else double-quoted with \\ escapes."""
    safe = set("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    if value and all(c in safe for c in value):
        return " " + value
    out = "".join("\\" + c if c in "\"\\'" else c for c in value)
    return f' "{out}"'


@dataclass(frozen=True, slots=True)
class CommentMatch(Match):
    comment: str = ""
    NAME: ClassVar[str] = "comment"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return f" /* {self.comment} */"

    def save(self, rule: Rule) -> str:
        return " --comment" + save_string(self.comment)


# -- addrtype (libxt_addrtype.c, revision 1) -------------------------------------------
RTN_NAMES = ("UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE", "UNREACHABLE",
             "PROHIBIT", "THROW", "NAT", "XRESOLVE")
XT_ADDRTYPE_INVERT_SOURCE = 0x0001
XT_ADDRTYPE_INVERT_DEST = 0x0002
XT_ADDRTYPE_LIMIT_IFACE_IN = 0x0004
XT_ADDRTYPE_LIMIT_IFACE_OUT = 0x0008


def addrtype_text(mask: int) -> str:
    return ",".join(n for i, n in enumerate(RTN_NAMES) if mask & (1 << i))


@dataclass(frozen=True, slots=True)
class AddrtypeMatch(Match):
    source: int = 0  # bit (1 << RTN_*) per address type
    dest: int = 0
    flags: int = 0
    NAME: ClassVar[str] = "addrtype"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        s = " ADDRTYPE match"
        if self.source:
            s += " src-type " + ("!" if self.flags & XT_ADDRTYPE_INVERT_SOURCE else "") + addrtype_text(self.source)
        if self.dest:
            s += " dst-type " + ("!" if self.flags & XT_ADDRTYPE_INVERT_DEST else "") + addrtype_text(self.dest)
        if self.flags & XT_ADDRTYPE_LIMIT_IFACE_IN:
            s += " limit-in"
        if self.flags & XT_ADDRTYPE_LIMIT_IFACE_OUT:
            s += " limit-out"
        return s

    def save(self, rule: Rule) -> str:
        s = ""
        if self.source:
            s += (" !" if self.flags & XT_ADDRTYPE_INVERT_SOURCE else "") + " --src-type " + addrtype_text(self.source)
        if self.dest:
            s += (" !" if self.flags & XT_ADDRTYPE_INVERT_DEST else "") + " --dst-type " + addrtype_text(self.dest)
        if self.flags & XT_ADDRTYPE_LIMIT_IFACE_IN:
            s += " --limit-iface-in"
        if self.flags & XT_ADDRTYPE_LIMIT_IFACE_OUT:
            s += " --limit-iface-out"
        return s

    def check(self, ctx: CheckContext) -> int:
        # addrtype_mt_checkentry_v1()
        f, hooks = self.flags, ctx.hook_mask
        if f & XT_ADDRTYPE_LIMIT_IFACE_IN and f & XT_ADDRTYPE_LIMIT_IFACE_OUT:
            return errno.EINVAL
        if hooks & ((1 << NF_INET_PRE_ROUTING) | (1 << NF_INET_LOCAL_IN)) and f & XT_ADDRTYPE_LIMIT_IFACE_OUT:
            return errno.EINVAL
        if hooks & ((1 << NF_INET_POST_ROUTING) | (1 << NF_INET_LOCAL_OUT)) and f & XT_ADDRTYPE_LIMIT_IFACE_IN:
            return errno.EINVAL
        return 0
