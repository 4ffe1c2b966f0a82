"""Target data, printed as iptables 1.8.9's target extensions print them.

Each class holds its kernel struct (ipt_reject_info, xt_log_info,
xt_mark_tginfo2, xt_connmark_tginfo1, xt_tos_target_info, xt_DSCP_info,
xt_tcpmss_info, nf_nat_ipv4_multi_range_compat, xt_ct_target_info_v1).
`check` mirrors the kernel's checkentry plus the xt_check_target() table/hook
restrictions (MASQUERADE only in nat POSTROUTING, DNAT in PREROUTING/OUTPUT...).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ipgate.netfilter.matches import TcpMatch, save_string, tos_symbol
from ipgate.netfilter.names import ntoa
from ipgate.netfilter.rule import (
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPT_INV_PROTO,
    NF_INET_FORWARD,
    NF_INET_LOCAL_IN,
    NF_INET_LOCAL_OUT,
    NF_INET_POST_ROUTING,
    NF_INET_PRE_ROUTING,
    CheckContext,
    Rule,
    Target,
)

if TYPE_CHECKING:
    from ipgate.netfilter.names import Resolver


def _restrict(ctx: CheckContext, table: str | None, hooks: int) -> int:
    """xt_check_target(): the target's .table and .hooks."""
    if table is not None and ctx.table != table:
        return errno.EINVAL
    if hooks and ctx.hook_mask & ~hooks:
        return errno.EINVAL
    return 0


def _hooks(*hooks: int) -> int:
    m = 0
    for h in hooks:
        m |= 1 << h
    return m


# -- REJECT (libipt_REJECT.c, ipt_REJECT.c) --------------------------------------------
REJECT_NAMES = ("icmp-net-unreachable", "icmp-host-unreachable", "icmp-proto-unreachable",
                "icmp-port-unreachable", "echo-reply", "icmp-net-prohibited", "icmp-host-prohibited",
                "tcp-reset", "icmp-admin-prohibited")
REJECT_ALIASES = ("net-unreach", "host-unreach", "proto-unreach", "port-unreach", "echoreply", "net-prohib",
                  "host-prohib", "tcp-rst", "admin-prohib")
IPT_ICMP_PORT_UNREACHABLE = 3
IPT_ICMP_ECHOREPLY = 4
IPT_TCP_RESET = 7


@dataclass(frozen=True, slots=True)
class Reject(Target):
    with_: int = IPT_ICMP_PORT_UNREACHABLE  # enum ipt_reject_with
    NAME: ClassVar[str] = "REJECT"

    @property
    def with_name(self) -> str:
        return REJECT_NAMES[self.with_]

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return " reject-with " + self.with_name

    def save(self, rule: Rule) -> str:
        return " --reject-with " + self.with_name

    def check(self, ctx: CheckContext) -> int:
        err = _restrict(ctx, "filter", _hooks(NF_INET_LOCAL_IN, NF_INET_FORWARD, NF_INET_LOCAL_OUT))
        if err:
            return err
        if self.with_ == IPT_ICMP_ECHOREPLY:
            return errno.EINVAL
        if self.with_ == IPT_TCP_RESET and (ctx.rule.proto != IPPROTO_TCP or ctx.rule.invflags & IPT_INV_PROTO):
            return errno.EINVAL
        return 0


# -- LOG (libxt_LOG.c) ----------------------------------------------------------------
XT_LOG_TCPSEQ = 0x01
XT_LOG_TCPOPT = 0x02
XT_LOG_IPOPT = 0x04
XT_LOG_UID = 0x08
XT_LOG_MACDECODE = 0x20
LOG_FLAG_WORDS = ((XT_LOG_TCPSEQ, "tcp-sequence"), (XT_LOG_TCPOPT, "tcp-options"), (XT_LOG_IPOPT, "ip-options"),
                  (XT_LOG_UID, "uid"), (XT_LOG_MACDECODE, "macdecode"))
LOG_LEVEL_NAMES = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
LOG_DEFAULT_LEVEL = 4


@dataclass(frozen=True, slots=True)
class Log(Target):
    level: int = LOG_DEFAULT_LEVEL
    logflags: int = 0
    prefix: str = ""
    NAME: ClassVar[str] = "LOG"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        s = " LOG"
        if numeric:
            s += f" flags {self.logflags} level {self.level}"
        else:
            s += f" level {LOG_LEVEL_NAMES[self.level]}" if self.level < 8 else f" UNKNOWN level {self.level}"
            s += "".join(" " + w for bit, w in LOG_FLAG_WORDS if self.logflags & bit)
            if self.logflags & ~0x2F:
                s += " unknown-flags"
        if self.prefix:
            s += f' prefix "{self.prefix}"'
        return s

    def save(self, rule: Rule) -> str:
        s = ""
        if self.prefix:
            s += " --log-prefix" + save_string(self.prefix)
        if self.level != LOG_DEFAULT_LEVEL:
            s += f" --log-level {self.level}"
        for bit, word in LOG_FLAG_WORDS:
            if self.logflags & bit:
                s += f" --log-{word}"
        return s

    def check(self, ctx: CheckContext) -> int:
        return errno.EINVAL if self.level >= 8 else 0


# -- MARK, CONNMARK (libxt_MARK.c revision 2, libxt_CONNMARK.c revision 1) ----------------
def _mark_op(word: str, mark: int, mask: int) -> str:
    if mark == 0:
        return f" {word} and 0x{~mask & 0xFFFFFFFF:x}"
    if mark == mask:
        return f" {word} or 0x{mark:x}"
    if mask == 0:
        return f" {word} xor 0x{mark:x}"
    if mask == 0xFFFFFFFF:
        return f" {word} set 0x{mark:x}"
    return f" {word} xset 0x{mark:x}/0x{mask:x}"


@dataclass(frozen=True, slots=True)
class Mark(Target):
    """skb->mark = (skb->mark & ~mask) ^ mark."""

    mark: int = 0
    mask: int = 0xFFFFFFFF
    NAME: ClassVar[str] = "MARK"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return _mark_op("MARK", self.mark, self.mask)

    def save(self, rule: Rule) -> str:
        return f" --set-xmark 0x{self.mark:x}/0x{self.mask:x}"


XT_CONNMARK_SET = 0
XT_CONNMARK_SAVE = 1
XT_CONNMARK_RESTORE = 2


@dataclass(frozen=True, slots=True)
class Connmark(Target):
    mode: int = XT_CONNMARK_SET
    ctmark: int = 0
    ctmask: int = 0xFFFFFFFF
    nfmask: int = 0xFFFFFFFF
    NAME: ClassVar[str] = "CONNMARK"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        if self.mode == XT_CONNMARK_SET:
            return _mark_op("CONNMARK", self.ctmark, self.ctmask)
        all_ones = 0xFFFFFFFF
        if self.mode == XT_CONNMARK_SAVE:
            if self.nfmask == all_ones and self.ctmask == all_ones:
                return " CONNMARK save"
            if self.nfmask == self.ctmask:
                return f" CONNMARK save mask 0x{self.nfmask:x}"
            return f" CONNMARK save nfmask 0x{self.nfmask:x} ctmask ~0x{self.ctmask:x}"
        if self.mode == XT_CONNMARK_RESTORE:
            if self.ctmask == all_ones and self.nfmask == all_ones:
                return " CONNMARK restore"
            if self.ctmask == self.nfmask:
                return f" CONNMARK restore mask 0x{self.ctmask:x}"
            return f" CONNMARK restore ctmask 0x{self.ctmask:x} nfmask ~0x{self.nfmask:x}"
        return " ERROR: UNKNOWN CONNMARK MODE"

    def save(self, rule: Rule) -> str:
        if self.mode == XT_CONNMARK_SET:
            return f" --set-xmark 0x{self.ctmark:x}/0x{self.ctmask:x}"
        word = {XT_CONNMARK_SAVE: "save", XT_CONNMARK_RESTORE: "restore"}.get(self.mode)
        if word is None:
            return " ERROR: UNKNOWN CONNMARK MODE"
        return f" --{word}-mark --nfmask 0x{self.nfmask:x} --ctmask 0x{self.ctmask:x}"


# -- TOS, DSCP (libxt_TOS.c revision 1, libxt_DSCP.c) -------------------------------------
@dataclass(frozen=True, slots=True)
class Tos(Target):
    """tos = (tos & ~mask) ^ value."""

    value: int = 0
    mask: int = 0xFF
    NAME: ClassVar[str] = "TOS"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        v, m = self.value, self.mask
        if numeric:
            return f" TOS set 0x{v:02x}/0x{m:02x}"
        sym = tos_symbol(v, m)
        if sym is not None:
            return "  TOS set" + sym
        if v == 0:
            return f" TOS and 0x{~m & 0xFF:02x}"
        if v == m:
            return f" TOS or 0x{v:02x}"
        if m == 0:
            return f" TOS xor 0x{v:02x}"
        return f" TOS set 0x{v:02x}/0x{m:02x}"

    def save(self, rule: Rule) -> str:
        return f" --set-tos 0x{self.value:02x}/0x{self.mask:02x}"

    def check(self, ctx: CheckContext) -> int:
        return _restrict(ctx, "mangle", 0)


@dataclass(frozen=True, slots=True)
class Dscp(Target):
    dscp: int = 0
    NAME: ClassVar[str] = "DSCP"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return f" DSCP set 0x{self.dscp:02x}"

    def save(self, rule: Rule) -> str:
        return f" --set-dscp 0x{self.dscp:02x}"

    def check(self, ctx: CheckContext) -> int:
        return _restrict(ctx, "mangle", 0) or (errno.EDOM if self.dscp > 0x3F else 0)


# -- TCPMSS (libxt_TCPMSS.c, xt_TCPMSS.c) ------------------------------------------------------
XT_TCPMSS_CLAMP_PMTU = 0xFFFF


@dataclass(frozen=True, slots=True)
class Tcpmss(Target):
    mss: int = XT_TCPMSS_CLAMP_PMTU
    NAME: ClassVar[str] = "TCPMSS"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return " TCPMSS clamp to PMTU" if self.mss == XT_TCPMSS_CLAMP_PMTU else f" TCPMSS set {self.mss}"

    def save(self, rule: Rule) -> str:
        return " --clamp-mss-to-pmtu" if self.mss == XT_TCPMSS_CLAMP_PMTU else f" --set-mss {self.mss}"

    def check(self, ctx: CheckContext) -> int:
        r = ctx.rule
        if r.proto != IPPROTO_TCP or r.invflags & IPT_INV_PROTO:
            return errno.EINVAL
        if self.mss == XT_TCPMSS_CLAMP_PMTU and ctx.hook_mask & ~_hooks(NF_INET_FORWARD, NF_INET_LOCAL_OUT,
                                                                         NF_INET_POST_ROUTING):
            return errno.EINVAL  # "path-MTU clamping only supported in FORWARD, OUTPUT and POSTROUTING hooks"
        for m in r.matches:  # "Only works on TCP SYN packets"
            if isinstance(m, TcpMatch) and m.flg_cmp & 0x02 and not m.invflags & 0x04:
                return 0
        return errno.EINVAL


# -- SNAT, DNAT, MASQUERADE, REDIRECT (libxt_NAT.c), NETMAP (libipt_NETMAP.c) ----------------------
NF_NAT_RANGE_MAP_IPS = 1 << 0
NF_NAT_RANGE_PROTO_SPECIFIED = 1 << 1
NF_NAT_RANGE_PROTO_RANDOM = 1 << 2
NF_NAT_RANGE_PERSISTENT = 1 << 3
NF_NAT_RANGE_PROTO_RANDOM_FULLY = 1 << 4
NF_NAT_RANGE_PROTO_OFFSET = 1 << 5


@dataclass(frozen=True, slots=True)
class NatRange:
    """nf_nat_ipv4_range (plus the base port of nf_nat_range2 for DNAT's a-b/c)."""

    flags: int = 0
    min_ip: int = 0
    max_ip: int = 0
    min_port: int = 0
    max_port: int = 0
    base_port: int = 0

    def text(self) -> str:
        # sprint_range()
        s = ""
        if self.flags & NF_NAT_RANGE_MAP_IPS:
            s = ntoa(self.min_ip)
            if self.max_ip != self.min_ip:
                s += "-" + ntoa(self.max_ip)
        if self.flags & NF_NAT_RANGE_PROTO_SPECIFIED:
            s += f":{self.min_port}"
            if self.max_port != self.min_port:
                s += f"-{self.max_port}"
            if self.flags & NF_NAT_RANGE_PROTO_OFFSET:
                s += f"/{self.base_port}"
        return s

    def options(self, rangeopt: str, flag_pfx: str, skip_colon: bool) -> str:
        # __NAT_print()
        out = ""
        text = self.text()
        if text:
            if skip_colon and text.startswith(":"):
                text = text[1:]
            out += f" {rangeopt}{text}"
        if self.flags & NF_NAT_RANGE_PROTO_RANDOM:
            out += f" {flag_pfx}random"
        if self.flags & NF_NAT_RANGE_PROTO_RANDOM_FULLY:
            out += f" {flag_pfx}random-fully"
        if self.flags & NF_NAT_RANGE_PERSISTENT:
            out += f" {flag_pfx}persistent"
        return out


@dataclass(frozen=True, slots=True)
class Snat(Target):
    range: NatRange = NatRange()
    NAME: ClassVar[str] = "SNAT"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return self.range.options("to:", "", False)

    def save(self, rule: Rule) -> str:
        return self.range.options("--to-source ", "--", False)

    def check(self, ctx: CheckContext) -> int:
        return _restrict(ctx, "nat", _hooks(NF_INET_POST_ROUTING, NF_INET_LOCAL_IN))


@dataclass(frozen=True, slots=True)
class Dnat(Target):
    range: NatRange = NatRange()
    NAME: ClassVar[str] = "DNAT"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return self.range.options("to:", "", False)

    def save(self, rule: Rule) -> str:
        return self.range.options("--to-destination ", "--", False)

    def check(self, ctx: CheckContext) -> int:
        return _restrict(ctx, "nat", _hooks(NF_INET_PRE_ROUTING, NF_INET_LOCAL_OUT))


@dataclass(frozen=True, slots=True)
class Masquerade(Target):
    range: NatRange = NatRange()
    NAME: ClassVar[str] = "MASQUERADE"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return self.range.options("masq ports: ", "", True)

    def save(self, rule: Rule) -> str:
        return self.range.options("--to-ports ", "--", True)

    def check(self, ctx: CheckContext) -> int:
        if self.range.flags & NF_NAT_RANGE_MAP_IPS:
            return errno.EINVAL
        return _restrict(ctx, "nat", _hooks(NF_INET_POST_ROUTING))


@dataclass(frozen=True, slots=True)
class Redirect(Target):
    range: NatRange = NatRange()
    NAME: ClassVar[str] = "REDIRECT"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return self.range.options("redir ports ", "", True)

    def save(self, rule: Rule) -> str:
        return self.range.options("--to-ports ", "--", True)

    def check(self, ctx: CheckContext) -> int:
        if self.range.flags & NF_NAT_RANGE_MAP_IPS:
            return errno.EINVAL
        return _restrict(ctx, "nat", _hooks(NF_INET_PRE_ROUTING, NF_INET_LOCAL_OUT))


def _netmask_text(min_ip: int, max_ip: int) -> str:
    # __NETMAP_print() with netmask2bits()
    mask = ~(min_ip ^ max_ip) & 0xFFFFFFFF
    bits, m = 0, mask
    while m & 0x80000000:
        bits += 1
        m = (m << 1) & 0xFFFFFFFF
    return f"{ntoa(min_ip)}/{ntoa(mask) if m else bits}"


@dataclass(frozen=True, slots=True)
class Netmap(Target):
    """1:1 network mapping: addresses keep their host part, take the `min_ip` network part."""

    min_ip: int = 0
    max_ip: int = 0
    NAME: ClassVar[str] = "NETMAP"

    @property
    def mask(self) -> int:
        return ~(self.min_ip ^ self.max_ip) & 0xFFFFFFFF

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        return " to:" + _netmask_text(self.min_ip, self.max_ip)

    def save(self, rule: Rule) -> str:
        return " --to " + _netmask_text(self.min_ip, self.max_ip)

    def check(self, ctx: CheckContext) -> int:
        return _restrict(ctx, "nat", _hooks(NF_INET_PRE_ROUTING, NF_INET_POST_ROUTING, NF_INET_LOCAL_OUT,
                                            NF_INET_LOCAL_IN))


# -- CT, NOTRACK (libxt_CT.c revision 1/2, xt_CT.c) ------------------------------------------------
XT_CT_NOTRACK = 1 << 0
XT_CT_NOTRACK_ALIAS = 1 << 1
XT_CT_ZONE_DIR_ORIG = 1 << 2
XT_CT_ZONE_DIR_REPL = 1 << 3
CT_EVENT_NAMES = ("new", "related", "destroy", "reply", "assured", "protoinfo", "helper", "mark",
                  "natseqinfo", "secmark")
CT_EXP_EVENT_NAMES = ("new",)
# Helpers the kernel offers, with the L4 protocols they register for (nf_conntrack_*.c).
CT_HELPERS = {"ftp": (IPPROTO_TCP,), "irc": (IPPROTO_TCP,), "sane": (IPPROTO_TCP,), "pptp": (IPPROTO_TCP,),
              "Q.931": (IPPROTO_TCP,), "RAS": (IPPROTO_UDP,), "tftp": (IPPROTO_UDP,), "amanda": (IPPROTO_UDP,),
              "snmp": (IPPROTO_UDP,), "netbios-ns": (IPPROTO_UDP,), "sip": (IPPROTO_TCP, IPPROTO_UDP)}


def _events(pfx: str, names: tuple[str, ...], mask: int) -> str:
    return f" {pfx} " + ",".join(n for i, n in enumerate(names) if mask & (1 << i))


@dataclass(frozen=True, slots=True)
class Ct(Target):
    flags: int = 0
    helper: str = ""
    timeout: str = ""
    ct_events: int = 0
    exp_events: int = 0
    zone: int = 0
    NAME: ClassVar[str] = "CT"

    @property
    def save_name(self) -> str:
        return "NOTRACK" if self.flags & XT_CT_NOTRACK_ALIAS else "CT"

    @property
    def notrack(self) -> bool:
        return bool(self.flags & XT_CT_NOTRACK)

    def _zone(self, opt: str) -> str:
        if not self.zone and not self.flags & (XT_CT_ZONE_DIR_ORIG | XT_CT_ZONE_DIR_REPL):
            return ""
        d = "-orig" if self.flags & XT_CT_ZONE_DIR_ORIG else "-reply" if self.flags & XT_CT_ZONE_DIR_REPL else ""
        return f" {opt}{d} {self.zone}"

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        if self.flags & XT_CT_NOTRACK_ALIAS:
            return " NOTRACK"
        s = " CT"
        if self.flags & XT_CT_NOTRACK:
            s += " notrack"
        if self.helper:
            s += f" helper {self.helper}"
        if self.timeout:
            s += f" timeout {self.timeout}"
        if self.ct_events:
            s += _events("ctevents", CT_EVENT_NAMES, self.ct_events)
        if self.exp_events:
            s += _events("expevents", CT_EXP_EVENT_NAMES, self.exp_events)
        return s + self._zone("zone")

    def save(self, rule: Rule) -> str:
        if self.flags & XT_CT_NOTRACK_ALIAS:
            return ""
        s = ""
        if self.flags & XT_CT_NOTRACK:
            s += " --notrack"
        if self.helper:
            s += f" --helper {self.helper}"
        if self.timeout:
            s += f" --timeout {self.timeout}"
        if self.ct_events:
            s += _events("--ctevents", CT_EVENT_NAMES, self.ct_events)
        if self.exp_events:
            s += _events("--expevents", CT_EXP_EVENT_NAMES, self.exp_events)
        return s + self._zone("--zone")

    def check(self, ctx: CheckContext) -> int:
        err = _restrict(ctx, "raw", _hooks(NF_INET_PRE_ROUTING, NF_INET_LOCAL_OUT))
        if err or self.flags & XT_CT_NOTRACK:
            return err
        if self.helper:
            # xt_ct_set_helper(): needs a non-inverted -p the helper registered for
            protos = CT_HELPERS.get(self.helper, ())
            r = ctx.rule
            if not r.proto or r.invflags & IPT_INV_PROTO or r.proto not in protos:
                return errno.ENOENT
        if self.timeout:
            return errno.EINVAL  # no cttimeout policy objects are modelled
        return 0
