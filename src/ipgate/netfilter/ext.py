"""Extension option parsing: libxtables' option machinery and each extension's parse and final check.

`Ext` mirrors a loaded `struct xtables_match`/`xtables_target`: its option
table (`Opt`, xt_option_entry), the generic checks xtables_option_parse()
and xtables_options_fcheck() apply (once, invert, mandatory, exclusive), the
extension's own .x6_parse/.x6_fcheck, and `build()` that returns the frozen
match or target of `matches`/`targets`.  Error texts are libxtables' and the
extensions' own; a trailing "\\n" in a message is the blank line iptables
prints after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ipgate.netfilter import matches as M
from ipgate.netfilter import targets as T
from ipgate.netfilter.names import (
    Resolver,
    inet_aton,
    mask_bits,
    ntoa,
    numeric_to_ipaddr,
    xt_strtoui,
    xt_strtoul,
)
from ipgate.netfilter.rule import (
    IPPROTO_DCCP,
    IPPROTO_ICMP,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Match,
    Standard,
    Target,
)


class ParamError(Exception):
    """xtables_error(PARAMETER_PROBLEM, ...): exit 2 with the "Try `iptables -h'" line."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Opt:
    """struct xt_option_entry (ids give the order exclusion checks run in)."""

    name: str
    id: int
    arg: bool = True
    invert: bool = False
    mand: bool = False
    excl: frozenset[int] = frozenset()


@dataclass(slots=True)
class ParseContext:
    """What an extension's parser sees of the rule being built and of the command line."""

    proto: int
    invflags: int
    names: Resolver
    next_arg: Callable[[], str | None]  # argv[optind] if it is not an option, consumed
    warnings: list[str]


class Ext:
    """A loaded extension: option table, accumulated state, final check, build."""

    NAME: ClassVar[str] = ""
    KIND: ClassVar[str] = "match"
    OPTIONS: ClassVar[tuple[Opt, ...]] = ()
    X6: ClassVar[bool] = True  # generic xtables_option_parse() checks apply

    def __init__(self) -> None:
        self.xflags = 0
        self.completed = False  # a later `-m` of the same name takes over its options

    @property
    def ext_name(self) -> str:
        return self.NAME

    def opt_by_id(self, oid: int) -> Opt:
        return next(o for o in self.OPTIONS if o.id == oid)

    def parse(self, opt: Opt, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        if self.X6:
            canon = self.opt_by_id(opt.id)
            bit = 1 << opt.id
            if self.xflags & bit:
                raise ParamError(f'{self.ext_name}: option "--{canon.name}" can only be used once.\n')
            if invert and not opt.invert:
                raise ParamError(f'{self.ext_name}: option "--{canon.name}" cannot be inverted.\n')
        self.x6_parse(opt.id, arg, invert, ctx)
        self.xflags |= 1 << opt.id

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        raise NotImplementedError

    def own_fcheck(self) -> None:
        """The extension's .x6_fcheck."""

    def fcheck(self) -> None:
        """xtables_option_mfcall()/tfcall(): own check, then mandatory and exclusive options."""
        self.own_fcheck()
        if not self.X6:
            return
        seen: set[int] = set()
        for o in self.OPTIONS:
            if o.id in seen:
                continue
            seen.add(o.id)
            if o.mand and not self.xflags & (1 << o.id):
                raise ParamError(f'{self.ext_name}: option "--{o.name}" must be specified\n')
            if not self.xflags & (1 << o.id):
                continue
            for other in sorted(o.excl):
                if other != o.id and self.xflags & (1 << other):
                    raise ParamError(f'{self.ext_name}: option "--{o.name}" cannot be used together with '
                                     f'"--{self.opt_by_id(other).name}".\n')

    def build(self) -> Match | Target:
        raise NotImplementedError


# -- shared value parsers (libxtables xtopt.c) -----------------------------------------
def parse_uint(ext: str, opt: str, arg: str, hi: int, lo: int = 0) -> int:
    v = xt_strtoui(arg, lo, hi)
    if v is None:
        raise ParamError(f'{ext}: bad value for option "--{opt}", or out of range ({lo}-{hi}).\n')
    return v


def parse_markmask(ext: str, opt: str, arg: str) -> tuple[int, int]:
    r = xt_strtoul(arg, 0, 0xFFFFFFFF)
    if r is None:
        raise ParamError(f'{ext}: bad integer value for option "--{opt}", or out of range.\n')
    mark, end = r
    mask = 0xFFFFFFFF
    if arg[end:end + 1] == "/":
        r2 = xt_strtoul(arg[end + 1:], 0, 0xFFFFFFFF)
        if r2 is None:
            raise ParamError(f'{ext}: bad integer value for option "--{opt}", or out of range.\n')
        mask, end = r2[0], end + 1 + r2[1]
    if end != len(arg):
        raise ParamError(f'{ext}: trailing garbage after value for option "--{opt}".\n')
    return mark, mask


def parse_string(arg: str, size: int, min_len: int = 0) -> str:
    if min_len and len(arg) < min_len:
        raise ParamError(f"Argument must have a minimum length of {min_len} characters\n")
    return arg[:size - 1]


def getportbyname(arg: str, names: Resolver) -> int:
    """xtables_getportbyname(): getaddrinfo(NULL, service) - a number, or a service of any protocol."""
    if arg.isascii() and arg.isdigit():
        return int(arg) & 0xFFFF  # getaddrinfo keeps the low 16 bits of a numeric service
    else:
        p = names.service_port(arg, None)
        if p is not None:
            return p
    raise ParamError(f'Port "{arg}" does not resolve to anything.\n')


def parse_portrange(ext: str, opt: str, arg: str, names: Resolver) -> tuple[int, int]:
    """XTTYPE_PORTRC (xtopt_parse_mport): "p", "p:q", ":q", "p:"."""
    parts = arg.split(":")
    if len(parts) > 2:
        raise ParamError(f'{ext}: Too many components for option "--{opt}" (max: 2)\n')
    vals = []
    for i, p in enumerate(parts):
        vals.append((0xFFFF if i == 1 else 0) if p == "" else getportbyname(p, names))
    if len(vals) == 1:
        vals.append(vals[0])
    return vals[0], vals[1]


def parse_port(arg: str, proto: str, names: Resolver) -> int:
    """xtables_parse_port(): a number or a service name of `proto`."""
    v = xt_strtoui(arg, 0, 0xFFFF)
    if v is None:
        v = names.service_port(arg, proto)
    if v is None:
        raise ParamError(f"invalid port/service `{arg}' specified")
    return v


def parse_protocol(arg: str, names: Resolver) -> int:
    """xtables_parse_protocol()."""
    v = xt_strtoui(arg, 0, 255)
    if v is not None:
        return v
    if arg == "all":
        return 0
    v = names.proto_number(arg)
    if v is not None:
        return v
    for name, num in (("tcp", 6), ("sctp", 132), ("udp", 17), ("udplite", 136), ("icmp", 1), ("ipv6-icmp", 58),
                      ("icmpv6", 58), ("esp", 50), ("ah", 51), ("mobility-header", 135), ("ipv6-mh", 135),
                      ("mh", 135)):
        if arg == name:
            return num
    raise ParamError(f'unknown protocol "{arg}" specified')


def host_lookup(arg: str, names: Resolver) -> list[int]:
    """getaddrinfo(name, AF_INET) against /etc/hosts, numeric forms via inet_aton."""
    a = inet_aton(arg)
    if a is not None:
        return [a]
    return names.host_addrs(arg)


def parse_hostmask(ext: str, opt: str, arg: str, names: Resolver) -> tuple[int, int]:
    """XTTYPE_HOSTMASK: "host[/plen|/mask]" (the address is not masked)."""
    host, slash, plen = arg.partition("/")
    addrs = host_lookup(host, names)
    if not addrs:
        raise ParamError("getaddrinfo: Temporary failure in name resolution\n")
    if len(set(addrs)) > 1:
        raise ParamError(f"{host} resolves to more than one address\n")
    if not slash:
        return addrs[0], 0xFFFFFFFF
    bits = xt_strtoui(plen, 0, 128)  # xtopt_parse_plen() allows up to 128, longer is /32
    if bits is None:
        mask = numeric_to_ipaddr(plen, is_mask=True)
        if mask is None:
            raise ParamError(f'{ext}: bad value for option "--{opt}", neither a valid network mask '
                             "nor valid CIDR (0-32).\n")
        inv = ~mask & 0xFFFFFFFF
        bits = 32 - inv.bit_length() if inv & (inv + 1) == 0 else 32  # holes: -1, stored as /32
    return addrs[0], mask_bits(min(bits, 32))


# -- matches ------------------------------------------------------------------------------
class TcpExt(Ext):
    """libxt_tcp.c: an old-style parser with its own checks."""

    NAME = "tcp"
    X6 = False
    OPTIONS = (Opt("source-port", 1, invert=True), Opt("sport", 1, invert=True),
               Opt("destination-port", 2, invert=True), Opt("dport", 2, invert=True),
               Opt("syn", 3, arg=False, invert=True), Opt("tcp-flags", 4, invert=True),
               Opt("tcp-option", 5, invert=True))

    def __init__(self) -> None:
        super().__init__()
        self.spts, self.dpts = (0, 0xFFFF), (0, 0xFFFF)
        self.option = self.flg_mask = self.flg_cmp = self.invflags = 0
        self.seen: set[str] = set()

    @staticmethod
    def ports(arg: str, names: Resolver) -> tuple[int, int]:
        # parse_tcp_ports()
        if ":" not in arg:
            p = parse_port(arg, "tcp", names)
            return p, p
        lo_s, hi_s = arg.split(":", 1)
        lo = parse_port(lo_s, "tcp", names) if lo_s else 0
        hi = parse_port(hi_s, "tcp", names) if hi_s else 0xFFFF
        if lo > hi:
            raise ParamError("invalid portrange (min > max)")
        return lo, hi

    @staticmethod
    def flags(text: str) -> int:
        ret = 0
        for tok in (t for t in text.split(",") if t):
            for name, bit in M.TCP_FLAG_NAMES:
                if name.lower() == tok.lower():
                    ret |= bit
                    break
            else:
                raise ParamError(f"Unknown TCP flag `{tok}'")
        return ret

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert oid == 3 or arg is not None
        if oid in (1, 2):
            key = "--source-port" if oid == 1 else "--destination-port"
            if key in self.seen:
                raise ParamError(f"Only one `{key}' allowed")
            self.seen.add(key)
            assert arg is not None
            pr = self.ports(arg, ctx.names)
            if oid == 1:
                self.spts = pr
                self.invflags |= M.XT_TCP_INV_SRCPT if invert else 0
            else:
                self.dpts = pr
                self.invflags |= M.XT_TCP_INV_DSTPT if invert else 0
        elif oid in (3, 4):
            if "flags" in self.seen:
                raise ParamError("Only one of `--syn' or `--tcp-flags'  allowed")
            if oid == 3:
                mask, cmp = "SYN,RST,ACK,FIN", "SYN"
            else:
                second = ctx.next_arg()
                if second is None:
                    raise ParamError("--tcp-flags requires two args.")
                assert arg is not None
                mask, cmp = arg, second
            self.flg_mask, self.flg_cmp = self.flags(mask), self.flags(cmp)
            self.invflags |= M.XT_TCP_INV_FLAGS if invert else 0
            self.seen.add("flags")
        else:
            if "option" in self.seen:
                raise ParamError("Only one `--tcp-option' allowed")
            assert arg is not None
            v = xt_strtoui(arg, 1, 255)
            if v is None:
                raise ParamError(f'Bad TCP option "{arg}"')
            self.option = v
            self.invflags |= M.XT_TCP_INV_OPTION if invert else 0
            self.seen.add("option")

    def build(self) -> Match:
        return M.TcpMatch(self.spts, self.dpts, self.option, self.flg_mask, self.flg_cmp, self.invflags)


class UdpExt(Ext):
    NAME = "udp"
    OPTIONS = (Opt("source-port", 0, invert=True), Opt("sport", 0, invert=True),
               Opt("destination-port", 1, invert=True), Opt("dport", 1, invert=True))

    def __init__(self) -> None:
        super().__init__()
        self.spts, self.dpts, self.invflags = (0, 0xFFFF), (0, 0xFFFF), 0

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        pr = parse_portrange(self.NAME, self.opt_by_id(oid).name, arg, ctx.names)
        if oid == 0:
            self.spts = pr
            self.invflags |= M.XT_TCP_INV_SRCPT if invert else 0
        else:
            self.dpts = pr
            self.invflags |= M.XT_TCP_INV_DSTPT if invert else 0

    def build(self) -> Match:
        return M.UdpMatch(self.spts, self.dpts, self.invflags)


class IcmpExt(Ext):
    NAME = "icmp"
    OPTIONS = (Opt("icmp-type", 0, invert=True, mand=True),)

    def __init__(self) -> None:
        super().__init__()
        self.type, self.code, self.invert = 0, (0, 0xFF), False

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        found = None
        for entry in M.ICMP_CODES:
            if entry[0].lower().startswith(arg.lower()):
                if found is not None:
                    raise ParamError(f"Ambiguous ICMP type `{arg}': `{found[0]}' or `{entry[0]}'?")
                found = entry
        if found is not None:
            self.type, self.code = found[1], (found[2], found[3])
        else:
            tpart, slash, cpart = arg.partition("/")
            t = xt_strtoui(tpart, 0, 255)
            if t is None:
                raise ParamError(f"Unknown ICMP type `{arg}'")
            self.type, self.code = t, (0, 0xFF)
            if slash:
                c = xt_strtoui(cpart, 0, 255)
                if c is None:
                    raise ParamError(f"Unknown ICMP code `{arg}'")
                self.code = (c, c)
        self.invert = invert

    def build(self) -> Match:
        return M.IcmpMatch(self.type, self.code, self.invert)


class MultiportExt(Ext):
    NAME = "multiport"
    _ALL = frozenset({0, 1, 2})
    OPTIONS = (Opt("source-ports", 0, invert=True, excl=_ALL), Opt("sports", 0, invert=True, excl=_ALL),
               Opt("destination-ports", 1, invert=True, excl=_ALL), Opt("dports", 1, invert=True, excl=_ALL),
               Opt("ports", 2, invert=True, excl=_ALL))

    def __init__(self) -> None:
        super().__init__()
        self.flags, self.ports, self.pflags, self.invert = 0, (), (), False
        self.ports_l: list[int] = []
        self.pflags_l: list[bool] = []

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        # check_proto() runs before the generic option checks
        if ctx.invflags & 0x40:
            raise ParamError("multiport only works with TCP, UDP, UDPLITE, SCTP and DCCP")
        proto = M.MULTIPORT_PROTOS.get(ctx.proto)
        if proto is None:
            if not ctx.proto:
                raise ParamError("multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'")
            raise ParamError("multiport only works with TCP, UDP, UDPLITE, SCTP and DCCP")
        assert arg is not None
        ports: list[int] = []
        pflags: list[bool] = []
        items = arg.split(",")
        for item in items:
            if len(ports) >= 15:
                raise ParamError("too many ports specified")
            lo, colon, hi = item.partition(":")
            if colon and len(ports) == 14:
                raise ParamError("too many ports specified")
            ports.append(parse_port(lo, proto, ctx.names))
            pflags.append(bool(colon))
            if colon:
                ports.append(parse_port(hi, proto, ctx.names))
                pflags.append(False)
                if ports[-2] >= ports[-1]:
                    raise ParamError("invalid portrange specified")
        self.ports_l, self.pflags_l = ports, pflags
        self.flags = {0: M.XT_MULTIPORT_SOURCE, 1: M.XT_MULTIPORT_DESTINATION, 2: M.XT_MULTIPORT_EITHER}[oid]
        self.invert = self.invert or invert

    def parse(self, opt: Opt, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        if ctx.invflags & 0x40 or ctx.proto not in M.MULTIPORT_PROTOS:
            self.x6_parse(opt.id, arg, invert, ctx)  # raises the protocol error first
        super().parse(opt, arg, invert, ctx)

    def own_fcheck(self) -> None:
        if not self.xflags:
            raise ParamError("multiport expection an option")

    def build(self) -> Match:
        return M.MultiportMatch(self.flags, tuple(self.ports_l), tuple(self.pflags_l), self.invert)


def _parse_names(arg: str, order: tuple[str, ...], err: Callable[[str], ParamError],
                 empty_tail: ParamError | None = None) -> list[str]:
    """Comma lists of case-insensitive name prefixes (conntrack states, addrtype types)."""
    out = []
    rest = arg
    while "," in rest:
        tok, rest2 = rest.split(",", 1)
        hit = next((n for n in order if tok and n.lower().startswith(tok.lower())), None)
        if hit is None:
            raise err(rest)
        out.append(hit)
        rest = rest2
    if not rest and empty_tail is not None:
        raise empty_tail
    hit = next((n for n in order if rest and n.lower().startswith(rest.lower())), None)
    if hit is None:
        raise err(rest)
    out.append(hit)
    return out


class StateExt(Ext):
    """The "state" match: conntrack's alias (XT_CONNTRACK_STATE_ALIAS)."""

    NAME = "state"
    OPTIONS = (Opt("state", 0, invert=True, mand=True),)
    _ORDER = ("INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED")

    def __init__(self) -> None:
        super().__init__()
        self.mask, self.invert = 0, False

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        hits = _parse_names(arg, self._ORDER, lambda a: ParamError(f'Bad state "{a}"'),
                            ParamError('"--state" requires a list of states with no spaces, e.g. ESTABLISHED,RELATED'))
        self.mask = 0
        for h in hits:
            self.mask |= dict(M.CT_STATE_NAMES)[h]
        self.invert = invert

    def build(self) -> Match:
        return M.ConntrackMatch(match_flags=M.XT_CONNTRACK_STATE | M.XT_CONNTRACK_STATE_ALIAS,
                                invert_flags=M.XT_CONNTRACK_STATE if self.invert else 0, state_mask=self.mask)


class ConntrackExt(Ext):
    NAME = "conntrack"
    OPTIONS = tuple(Opt(n, i, invert=n != "ctdir") for i, n in enumerate(
        ("ctstate", "ctproto", "ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst", "ctorigsrcport",
         "ctorigdstport", "ctreplsrcport", "ctrepldstport", "ctstatus", "ctexpire", "ctdir")))

    def __init__(self) -> None:
        super().__init__()
        self.v: dict[str, object] = {}
        self.match_flags = self.invert_flags = 0

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        name = self.OPTIONS[oid].name
        bit = {"ctstate": M.XT_CONNTRACK_STATE, "ctproto": M.XT_CONNTRACK_PROTO,
               "ctorigsrc": M.XT_CONNTRACK_ORIGSRC, "ctorigdst": M.XT_CONNTRACK_ORIGDST,
               "ctreplsrc": M.XT_CONNTRACK_REPLSRC, "ctrepldst": M.XT_CONNTRACK_REPLDST,
               "ctorigsrcport": M.XT_CONNTRACK_ORIGSRC_PORT, "ctorigdstport": M.XT_CONNTRACK_ORIGDST_PORT,
               "ctreplsrcport": M.XT_CONNTRACK_REPLSRC_PORT, "ctrepldstport": M.XT_CONNTRACK_REPLDST_PORT,
               "ctstatus": M.XT_CONNTRACK_STATUS, "ctexpire": M.XT_CONNTRACK_EXPIRES,
               "ctdir": M.XT_CONNTRACK_DIRECTION}[name]
        if name == "ctstate":
            hits = _parse_names(arg, M.CT_STATE_PARSE_ORDER, lambda a: ParamError(f'Bad ctstate "{a}"'))
            mask = 0
            for h in hits:
                mask |= dict(M.CT_STATE_NAMES)[h]
            self.v["state_mask"] = int(self.v.get("state_mask", 0)) | mask  # type: ignore[call-overload]
        elif name == "ctproto":
            self.v["l4proto"] = parse_protocol(arg, ctx.names)
        elif name in ("ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst"):
            self.v[name[2:]] = parse_hostmask(self.NAME, name, arg, ctx.names)
        elif name.endswith("port"):
            self.v[name[2:-4] + "_port"] = parse_portrange(self.NAME, name, arg, ctx.names)
        elif name == "ctstatus":
            hits = _parse_names(arg, ("NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED"),
                                lambda a: ParamError(f'Bad ctstatus "{a}"'))
            mask = 0
            for h in hits:
                mask |= dict(M.CT_STATUS_NAMES).get(h, 0)
            self.v["status_mask"] = int(self.v.get("status_mask", 0)) | mask  # type: ignore[call-overload]
        elif name == "ctexpire":
            self.v["expires"] = parse_uint_range(self.NAME, name, arg)
        else:  # ctdir
            if arg.upper() == "ORIGINAL":
                self.invert_flags &= ~M.XT_CONNTRACK_DIRECTION
            elif arg.upper() == "REPLY":
                self.invert_flags |= M.XT_CONNTRACK_DIRECTION
            else:
                raise ParamError(f'conntrack: Bad value for "--ctdir" option: "{arg}"')
        self.match_flags |= bit
        if invert:
            self.invert_flags |= bit

    def own_fcheck(self) -> None:
        if not self.xflags:
            raise ParamError("conntrack: At least one option is required")

    def build(self) -> Match:
        return M.ConntrackMatch(match_flags=self.match_flags, invert_flags=self.invert_flags,
                                **self.v)  # type: ignore[arg-type]


def parse_uint_range(ext: str, opt: str, arg: str, hi: int = 0xFFFFFFFF) -> tuple[int, int]:
    """XTTYPE_UINT32RC (xtopt_parse_mint): "a", "a:b", ":b", "a:"."""
    vals: list[int] = []
    pos = 0
    while True:
        if len(vals) == 2:
            raise ParamError(f'{ext}: Too many components for option "--{opt}" (max: 2)\n')
        if pos >= len(arg) or arg[pos] == ":":
            end, value = pos, (hi if len(vals) == 1 else 0)
        else:
            r = xt_strtoul(arg[pos:], 0, hi)
            if r is None:
                raise ParamError(f'{ext}: bad value for option "--{opt}" near "{arg[pos:]}", '
                                 f"or out of range (0-{hi}).\n")
            value, end = r[0], pos + r[1]
            if end < len(arg) and arg[end] != ":":
                raise ParamError(f'{ext}: Argument to "--{opt}" has unexpected characters near "{arg[end:]}".\n')
        vals.append(value)
        if end >= len(arg):
            break
        pos = end + 1
    if len(vals) == 1:
        vals.append(vals[0])
    return vals[0], vals[1]


class MarkExt(Ext):
    NAME = "mark"
    OPTIONS = (Opt("mark", 0, invert=True, mand=True),)

    def __init__(self) -> None:
        super().__init__()
        self.mark, self.mask, self.invert = 0, 0xFFFFFFFF, False

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        self.mark, self.mask = parse_markmask(self.NAME, "mark", arg)
        self.invert = invert

    def build(self) -> Match:
        return M.MarkMatch(self.mark, self.mask, self.invert)


class ConnmarkExt(MarkExt):
    NAME = "connmark"

    def build(self) -> Match:
        return M.ConnmarkMatch(self.mark, self.mask, self.invert)


class IprangeExt(Ext):
    NAME = "iprange"
    OPTIONS = (Opt("src-range", 0, invert=True), Opt("dst-range", 1, invert=True))

    def __init__(self) -> None:
        super().__init__()
        self.flags, self.src, self.dst = 0, (0, 0), (0, 0)

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        opt = "--src-range" if oid == 0 else "--dst-range"
        lo_s, dash, hi_s = arg.partition("-")
        lo = numeric_to_ipaddr(lo_s)
        if lo is None:
            raise ParamError(f'iprange: Bad value for "{opt}" option: "{lo_s}"')
        hi = lo
        if dash:
            h = numeric_to_ipaddr(hi_s)
            if h is None:
                raise ParamError(f'iprange: Bad value for "{opt}" option: "{hi_s}"')
            hi = h
        if oid == 0:
            self.src = (lo, hi)
            self.flags |= M.IPRANGE_SRC | (M.IPRANGE_SRC_INV if invert else 0)
        else:
            self.dst = (lo, hi)
            self.flags |= M.IPRANGE_DST | (M.IPRANGE_DST_INV if invert else 0)

    def own_fcheck(self) -> None:
        if not self.flags & (M.IPRANGE_SRC | M.IPRANGE_DST):
            raise ParamError("iprange match: You must specify `--src-range' or `--dst-range'")

    def warnings(self) -> list[str]:
        return [f"xt_iprange: range {ntoa(lo)}-{ntoa(hi)} is reversed and will never match"
                for lo, hi, bit in ((*self.src, M.IPRANGE_SRC), (*self.dst, M.IPRANGE_DST))
                if self.flags & bit and lo > hi]

    def build(self) -> Match:
        return M.IprangeMatch(self.flags, self.src, self.dst)


def parse_tosmask(ext: str, opt: str, arg: str, symbolic_mask: int) -> tuple[int, int]:
    """XTTYPE_TOSMASK: "value[/mask]" (mask 0xff) or a symbolic name (mask `symbolic_mask`)."""
    r = xt_strtoul(arg, 0, 255)
    if r is not None:
        value, end = r
        mask = 0xFF
        if arg[end:end + 1] == "/":
            r2 = xt_strtoul(arg[end + 1:], 0, 255)
            if r2 is None:
                raise ParamError(f'Illegal value: "{arg}"')
            mask, end = r2[0], end + 1 + r2[1]
        if end != len(arg):
            raise ParamError(f'Illegal value: "{arg}"')
        return value, mask
    for name, v in M.TOS_SYMBOLS:
        if name.lower() == arg.lower():
            return v, symbolic_mask
    raise ParamError(f'Symbolic name "{arg}" is unknown')


class TosExt(Ext):
    NAME = "tos"
    OPTIONS = (Opt("tos", 0, invert=True, mand=True),)

    def __init__(self) -> None:
        super().__init__()
        self.value, self.mask, self.invert = 0, 0xFF, False

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        self.value, self.mask = parse_tosmask(self.NAME, "tos", arg, 0x3F)
        self.invert = invert

    def build(self) -> Match:
        return M.TosMatch(self.value, self.mask, self.invert)


def class_to_dscp(name: str) -> int:
    for cls, v in M.DSCP_CLASSES:
        if name[:len(cls)].lower() == cls.lower():
            return v
    raise ParamError(f"Invalid DSCP value `{name}'")


class DscpExt(Ext):
    NAME = "dscp"
    OPTIONS = (Opt("dscp", 0, invert=True, excl=frozenset({1})), Opt("dscp-class", 1, invert=True,
                                                                      excl=frozenset({0})))

    def __init__(self) -> None:
        super().__init__()
        self.dscp, self.invert = 0, False

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        self.dscp = parse_uint(self.NAME, "dscp", arg, 63) if oid == 0 else class_to_dscp(arg)
        self.invert = invert

    def own_fcheck(self) -> None:
        if not self.xflags:
            raise ParamError("DSCP match: Parameter --dscp is required")

    def build(self) -> Match:
        return M.DscpMatch(self.dscp, self.invert)


class LimitExt(Ext):
    NAME = "limit"
    OPTIONS = (Opt("limit", 0), Opt("limit-burst", 1))

    def __init__(self) -> None:
        super().__init__()
        self.avg, self.burst = M.XT_LIMIT_SCALE * 3600 // 3, M.XT_LIMIT_BURST

    @staticmethod
    def rate(text: str) -> int | None:
        # parse_rate()
        num, slash, unit = text.partition("/")
        mult = 1
        if slash:
            if not unit:
                return None
            for word, m in (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400)):
                if word.startswith(unit.lower()):
                    mult = m
                    break
            else:
                return None
        r = _atoi(text)
        if not r:
            return None
        val = (M.XT_LIMIT_SCALE * mult // r) if r > 0 else (M.XT_LIMIT_SCALE * mult // (r & 0xFFFFFFFF))
        if val == 0:
            raise ParamError(f'Rate too fast "{text}"')
        return val & 0xFFFFFFFF

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        if oid == 0:
            v = self.rate(arg)
            if v is None:
                raise ParamError(f"bad rate \"{arg}\"'")
            self.avg = v
        else:
            self.burst = parse_uint(self.NAME, "limit-burst", arg, 10000)

    def build(self) -> Match:
        return M.LimitMatch(self.avg, self.burst)


def _atoi(text: str) -> int:
    s = text.lstrip(" \t\n\v\f\r")
    sign = -1 if s[:1] == "-" else 1
    s = s[1:] if s[:1] in "+-" else s
    digits = ""
    for c in s:
        if not ("0" <= c <= "9"):
            break
        digits += c
    return sign * int(digits) if digits else 0


class CommentExt(Ext):
    NAME = "comment"
    OPTIONS = (Opt("comment", 0, mand=True),)

    def __init__(self) -> None:
        super().__init__()
        self.comment = ""

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        self.comment = parse_string(arg, 256)

    def build(self) -> Match:
        return M.CommentMatch(self.comment)


class AddrtypeExt(Ext):
    NAME = "addrtype"
    OPTIONS = (Opt("src-type", 0, invert=True), Opt("dst-type", 1, invert=True),
               Opt("limit-iface-in", 2, arg=False, excl=frozenset({3})),
               Opt("limit-iface-out", 3, arg=False, excl=frozenset({2})))

    def __init__(self) -> None:
        super().__init__()
        self.source = self.dest = self.flags = 0

    @staticmethod
    def types(arg: str) -> int:
        mask = 0
        rest = arg
        while "," in rest:
            tok, rest2 = rest.split(",", 1)
            i = next((i for i, n in enumerate(M.RTN_NAMES) if tok and n.lower().startswith(tok.lower())), None)
            if i is None:
                raise ParamError(f"addrtype: bad type `{rest}'")
            mask |= 1 << i
            rest = rest2
        i = next((i for i, n in enumerate(M.RTN_NAMES) if rest and n.lower().startswith(rest.lower())), None)
        if i is None:
            raise ParamError(f'addrtype: bad type "{rest}"')
        return mask | 1 << i

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        if oid == 0:
            assert arg is not None
            self.source = self.types(arg)
            self.flags |= M.XT_ADDRTYPE_INVERT_SOURCE if invert else 0
        elif oid == 1:
            assert arg is not None
            self.dest = self.types(arg)
            self.flags |= M.XT_ADDRTYPE_INVERT_DEST if invert else 0
        elif oid == 2:
            self.flags |= M.XT_ADDRTYPE_LIMIT_IFACE_IN
        else:
            self.flags |= M.XT_ADDRTYPE_LIMIT_IFACE_OUT

    def own_fcheck(self) -> None:
        if not self.xflags & 3:
            raise ParamError("addrtype: you must specify --src-type or --dst-type")

    def build(self) -> Match:
        return M.AddrtypeMatch(self.source, self.dest, self.flags)


# -- targets -------------------------------------------------------------------------------
class StandardExt(Ext):
    """ACCEPT/DROP/QUEUE/RETURN: libxt_standard.c, no options."""

    NAME = "standard"
    KIND = "target"

    def __init__(self, verdict: str = "") -> None:
        super().__init__()
        self.verdict = verdict

    def build(self) -> Target:
        return Standard(self.verdict)


class RejectExt(Ext):
    NAME = "REJECT"
    KIND = "target"
    OPTIONS = (Opt("reject-with", 0),)

    def __init__(self) -> None:
        super().__init__()
        self.with_ = T.IPT_ICMP_PORT_UNREACHABLE
        self.stderr: list[str] = []

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        low = arg.lower()
        for i, (name, alias) in enumerate(zip(T.REJECT_NAMES, T.REJECT_ALIASES, strict=True)):
            if i == T.IPT_ICMP_ECHOREPLY:
                continue
            if name.startswith(low) or alias.startswith(low):
                self.with_ = i
                return
        if "echo-reply".startswith(low) or "echoreply".startswith(low):
            ctx.warnings.append("--reject-with echo-reply no longer supported")
        raise ParamError(f'unknown reject type "{arg}"')

    def build(self) -> Target:
        return T.Reject(self.with_)


SYSLOG_LEVELS = (("emerg", 0), ("alert", 1), ("crit", 2), ("error", 3), ("warning", 4), ("notice", 5),
                 ("info", 6), ("debug", 7), ("panic", 0))


class LogExt(Ext):
    NAME = "LOG"
    KIND = "target"
    OPTIONS = (Opt("log-level", 0), Opt("log-prefix", 1), Opt("log-tcp-sequence", 2, arg=False),
               Opt("log-tcp-options", 3, arg=False), Opt("log-ip-options", 4, arg=False),
               Opt("log-uid", 5, arg=False), Opt("log-macdecode", 6, arg=False))

    def __init__(self) -> None:
        super().__init__()
        self.level, self.flags, self.prefix = T.LOG_DEFAULT_LEVEL, 0, ""

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        if oid == 0:
            assert arg is not None
            v = xt_strtoui(arg, 0, 7)
            if v is None:
                v = dict(SYSLOG_LEVELS).get(arg)
                if v is None:
                    raise ParamError(f'log level "{arg}" unknown\n')
            self.level = v
        elif oid == 1:
            assert arg is not None
            if "\n" in arg:
                raise ParamError("Newlines not allowed in --log-prefix")
            self.prefix = parse_string(arg, 30, min_len=1)
        else:
            self.flags |= (T.XT_LOG_TCPSEQ, T.XT_LOG_TCPOPT, T.XT_LOG_IPOPT, T.XT_LOG_UID, T.XT_LOG_MACDECODE)[oid - 2]

    def build(self) -> Target:
        return T.Log(self.level, self.flags, self.prefix)


class MarkTgExt(Ext):
    NAME = "MARK"
    KIND = "target"
    _ANY = frozenset({0, 1, 2, 3, 4})
    OPTIONS = (Opt("set-xmark", 4, excl=_ANY), Opt("set-mark", 0, excl=_ANY), Opt("and-mark", 1, excl=_ANY),
               Opt("or-mark", 2, excl=_ANY), Opt("xor-mark", 3, excl=_ANY))

    def __init__(self) -> None:
        super().__init__()
        self.mark, self.mask = 0, 0

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        name = self.opt_by_id(oid).name
        if oid in (0, 4):
            mark, mask = parse_markmask(self.NAME, name, arg)
            self.mark, self.mask = (mark, mask) if oid == 4 else (mark, mark | mask)
        else:
            v = parse_uint(self.NAME, name, arg, 0xFFFFFFFF)
            self.mark, self.mask = {1: (0, ~v & 0xFFFFFFFF), 2: (v, v), 3: (v, 0)}[oid]

    def own_fcheck(self) -> None:
        if not self.xflags:
            raise ParamError("MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required")

    def build(self) -> Target:
        return T.Mark(self.mark, self.mask)


class ConnmarkTgExt(Ext):
    NAME = "CONNMARK"
    KIND = "target"
    _OPS = frozenset({0, 1, 2, 3, 4, 5, 8})
    OPTIONS = (Opt("set-xmark", 8, excl=_OPS), Opt("set-mark", 0, excl=_OPS), Opt("and-mark", 3, excl=_OPS),
               Opt("or-mark", 4, excl=_OPS), Opt("xor-mark", 5, excl=_OPS), Opt("save-mark", 1, arg=False, excl=_OPS),
               Opt("restore-mark", 2, arg=False, excl=_OPS), Opt("ctmask", 9, excl=frozenset({11})),
               Opt("nfmask", 10, excl=frozenset({11})), Opt("mask", 11, excl=frozenset({9, 10})))

    def __init__(self) -> None:
        super().__init__()
        self.mode, self.ctmark, self.ctmask, self.nfmask = T.XT_CONNMARK_SET, 0, 0xFFFFFFFF, 0xFFFFFFFF

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        name = self.opt_by_id(oid).name
        if oid in (0, 8):
            assert arg is not None
            mark, mask = parse_markmask(self.NAME, name, arg)
            self.mode, self.ctmark, self.ctmask = T.XT_CONNMARK_SET, mark, mask if oid == 8 else mark | mask
        elif oid in (3, 4, 5):
            assert arg is not None
            v = parse_uint(self.NAME, name, arg, 0xFFFFFFFF)
            self.mode = T.XT_CONNMARK_SET
            self.ctmark, self.ctmask = {3: (0, ~v & 0xFFFFFFFF), 4: (v, v), 5: (v, 0)}[oid]
        elif oid == 1:
            self.mode = T.XT_CONNMARK_SAVE
        elif oid == 2:
            self.mode = T.XT_CONNMARK_RESTORE
        else:
            assert arg is not None
            v = parse_uint(self.NAME, name, arg, 0xFFFFFFFF)
            if oid in (9, 11):
                self.ctmask = v
            if oid in (10, 11):
                self.nfmask = v

    def own_fcheck(self) -> None:
        if not self.xflags & sum(1 << i for i in self._OPS):
            raise ParamError("CONNMARK target: No operation specified")

    def build(self) -> Target:
        return T.Connmark(self.mode, self.ctmark, self.ctmask, self.nfmask)


class TosTgExt(Ext):
    NAME = "TOS"
    KIND = "target"
    _ANY = frozenset({0, 1, 2, 3})
    OPTIONS = (Opt("set-tos", 0, excl=_ANY), Opt("and-tos", 1, excl=_ANY), Opt("or-tos", 2, excl=_ANY),
               Opt("xor-tos", 3, excl=_ANY))

    def __init__(self) -> None:
        super().__init__()
        self.value, self.mask = 0, 0

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        if oid == 0:
            self.value, self.mask = parse_tosmask(self.NAME, "set-tos", arg, 0x3F)
            return
        v = parse_uint(self.NAME, self.opt_by_id(oid).name, arg, 255)
        self.value, self.mask = {1: (0, ~v & 0xFF), 2: (v, v), 3: (v, 0)}[oid]

    def own_fcheck(self) -> None:
        if not self.xflags:
            raise ParamError("TOS: An action is required")

    def build(self) -> Target:
        return T.Tos(self.value, self.mask)


class DscpTgExt(Ext):
    NAME = "DSCP"
    KIND = "target"
    OPTIONS = (Opt("set-dscp", 0, excl=frozenset({1})), Opt("set-dscp-class", 1, excl=frozenset({0})))

    def __init__(self) -> None:
        super().__init__()
        self.dscp = 0

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        self.dscp = parse_uint(self.NAME, "set-dscp", arg, 63) if oid == 0 else class_to_dscp(arg)

    def own_fcheck(self) -> None:
        if not self.xflags:
            raise ParamError("DSCP target: Parameter --set-dscp is required")

    def build(self) -> Target:
        return T.Dscp(self.dscp)


class TcpmssExt(Ext):
    NAME = "TCPMSS"
    KIND = "target"
    OPTIONS = (Opt("set-mss", 0, excl=frozenset({1})), Opt("clamp-mss-to-pmtu", 1, arg=False, excl=frozenset({0})))

    def __init__(self) -> None:
        super().__init__()
        self.mss = T.XT_TCPMSS_CLAMP_PMTU

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        if oid == 0:
            assert arg is not None
            self.mss = parse_uint(self.NAME, "set-mss", arg, 0xFFFF)
        else:
            self.mss = T.XT_TCPMSS_CLAMP_PMTU

    def own_fcheck(self) -> None:
        if not self.xflags:
            raise ParamError("TCPMSS target: At least one parameter is required")

    def build(self) -> Target:
        return T.Tcpmss(self.mss)


NAT_PORT_PROTOS = (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_DCCP, IPPROTO_ICMP)


class NatExt(Ext):
    """SNAT, DNAT, MASQUERADE, REDIRECT (libxt_NAT.c)."""

    KIND = "target"
    CLASS: ClassVar[type[T.Snat] | type[T.Dnat] | type[T.Masquerade] | type[T.Redirect]] = T.Snat

    def __init__(self) -> None:
        super().__init__()
        self.flags = self.min_ip = self.max_ip = self.min_port = self.max_port = self.base_port = 0

    def _ports(self, arg: str, portok: bool, names: Resolver) -> None:
        # parse_ports()
        if not portok:
            raise ParamError("Need TCP, UDP, SCTP or DCCP with port specification")
        self.flags |= T.NF_NAT_RANGE_PROTO_SPECIFIED
        r = xt_strtoul(arg, 0, 0xFFFF)
        if r is None:
            p = names.service_port(arg, None)
            if p is None:
                raise ParamError(f"Port `{arg}' not valid")
            port, rest = p, ""
        else:
            port, rest = r[0], arg[r[1]:]
        if rest == "":
            self.min_port = self.max_port = port
            return
        if rest[0] == ":":
            raise ParamError("Invalid port:port syntax - use dash")
        if rest[0] != "-":
            raise ParamError(f"Garbage after port value: `{rest}'")
        arg = rest[1:]
        r = xt_strtoul(arg, 0, 0xFFFF)
        if r is None:
            raise ParamError(f"Port `{arg}' not valid")
        maxport, rest = r[0], arg[r[1]:]
        if maxport < port:
            raise ParamError(f"Port range `{arg}' funky")
        self.min_port, self.max_port = port, maxport
        if rest == "":
            return
        if rest[0] != "/":
            raise ParamError(f"Garbage after port range: `{rest}'")
        arg = rest[1:]
        b = xt_strtoui(arg, 1, 0xFFFF)
        if b is None:
            b = names.service_port(arg, None)
            if b is None:
                raise ParamError(f"Port `{arg}' not valid")
        self.flags |= T.NF_NAT_RANGE_PROTO_OFFSET
        self.base_port = b

    def _to(self, arg: str, portok: bool, names: Resolver) -> None:
        # parse_to()
        if "[" in arg:
            raise ParamError("Invalid address format")
        colon = arg.find(":")
        if colon >= 0 and ":" in arg[colon + 1:]:
            colon = -1
        start = arg
        if colon >= 0:
            self._ports(arg[colon + 1:], portok, names)
            if colon == 0:
                return
            start = arg[:colon]
        self.flags |= T.NF_NAT_RANGE_MAP_IPS
        lo_s, dash, hi_s = start.partition("-")
        lo = _inet_pton(lo_s)
        if lo is None:
            raise ParamError(f'Bad IP address "{lo_s}"')
        hi = lo
        if dash:
            h = _inet_pton(hi_s)
            if h is None:
                raise ParamError(f'Bad IP address "{hi_s}"')
            hi = h
        self.min_ip, self.max_ip = lo, hi

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        portok = ctx.proto in NAT_PORT_PROTOS
        name = self.opt_by_id(oid).name
        if name in ("to-source", "to-destination"):
            assert arg is not None
            self._to(arg, portok, ctx.names)
        elif name == "to-ports":
            assert arg is not None
            self._ports(arg, portok, ctx.names)
        elif name == "random":
            self.flags |= T.NF_NAT_RANGE_PROTO_RANDOM
        elif name == "random-fully":
            self.flags |= T.NF_NAT_RANGE_PROTO_RANDOM_FULLY
        else:
            self.flags |= T.NF_NAT_RANGE_PERSISTENT

    def build(self) -> Target:
        return self.CLASS(T.NatRange(self.flags, self.min_ip, self.max_ip, self.min_port, self.max_port,
                                     self.base_port))


def _inet_pton(text: str) -> int | None:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and (p == "0" or not p.startswith("0"))
                                  for p in parts):
        return None
    vals = [int(p) for p in parts]
    if any(v > 255 for v in vals):
        return None
    return (vals[0] << 24) | (vals[1] << 16) | (vals[2] << 8) | vals[3]


class SnatExt(NatExt):
    NAME = "SNAT"
    CLASS = T.Snat
    OPTIONS = (Opt("to-source", 0, mand=True), Opt("random", 1, arg=False), Opt("random-fully", 2, arg=False),
               Opt("persistent", 3, arg=False))


class DnatExt(NatExt):
    NAME = "DNAT"
    CLASS = T.Dnat
    OPTIONS = (Opt("to-destination", 0, mand=True), Opt("random", 1, arg=False), Opt("persistent", 2, arg=False))


class MasqueradeExt(NatExt):
    NAME = "MASQUERADE"
    CLASS = T.Masquerade
    OPTIONS = (Opt("to-ports", 0), Opt("random", 1, arg=False), Opt("random-fully", 2, arg=False))


class RedirectExt(NatExt):
    NAME = "REDIRECT"
    CLASS = T.Redirect
    OPTIONS = (Opt("to-ports", 0), Opt("random", 1, arg=False))


class NetmapExt(Ext):
    NAME = "NETMAP"
    KIND = "target"
    OPTIONS = (Opt("to", 0, mand=True),)

    def __init__(self) -> None:
        super().__init__()
        self.min_ip = self.max_ip = 0

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        assert arg is not None
        addr, mask = parse_hostmask(self.NAME, "to", arg, ctx.names)
        self.min_ip = addr & mask
        self.max_ip = self.min_ip | (~mask & 0xFFFFFFFF)

    def build(self) -> Target:
        return T.Netmap(self.min_ip, self.max_ip)


class CtExt(Ext):
    NAME = "CT"
    KIND = "target"
    OPTIONS = (Opt("notrack", 0, arg=False), Opt("helper", 1), Opt("timeout", 2), Opt("ctevents", 3),
               Opt("expevents", 4), Opt("zone-orig", 5), Opt("zone-reply", 6), Opt("zone", 7))

    def __init__(self) -> None:
        super().__init__()
        self.flags, self.helper, self.timeout, self.ct_events, self.exp_events, self.zone = 0, "", "", 0, 0, 0

    @staticmethod
    def events(arg: str, table: tuple[str, ...]) -> int:
        mask = 0
        for tok in arg.split(","):
            if tok not in table:
                raise ParamError(f'Unknown event type "{tok}"')
            mask |= 1 << table.index(tok)
        return mask

    def x6_parse(self, oid: int, arg: str | None, invert: bool, ctx: ParseContext) -> None:
        if oid == 0:
            self.flags |= T.XT_CT_NOTRACK
            return
        assert arg is not None
        if oid == 1:
            self.helper = parse_string(arg, 16)
        elif oid == 2:
            self.timeout = parse_string(arg, 32)
        elif oid == 3:
            self.ct_events = self.events(arg, T.CT_EVENT_NAMES)
        elif oid == 4:
            self.exp_events = self.events(arg, T.CT_EXP_EVENT_NAMES)
        else:
            self.zone = parse_uint(self.NAME, self.opt_by_id(oid).name, arg, 0xFFFF)
            self.flags |= {5: T.XT_CT_ZONE_DIR_ORIG, 6: T.XT_CT_ZONE_DIR_REPL, 7: 0}[oid]

    def build(self) -> Target:
        return T.Ct(self.flags, self.helper, self.timeout, self.ct_events, self.exp_events, self.zone)


class NotrackExt(Ext):
    NAME = "NOTRACK"
    KIND = "target"

    def build(self) -> Target:
        return T.Ct(T.XT_CT_NOTRACK | T.XT_CT_NOTRACK_ALIAS)


MATCHES: dict[str, type[Ext]] = {e.NAME: e for e in (
    TcpExt, UdpExt, IcmpExt, MultiportExt, StateExt, ConntrackExt, MarkExt, ConnmarkExt, IprangeExt, TosExt,
    DscpExt, LimitExt, CommentExt, AddrtypeExt)}
TARGETS: dict[str, type[Ext]] = {e.NAME: e for e in (
    RejectExt, LogExt, MarkTgExt, ConnmarkTgExt, TosTgExt, DscpTgExt, TcpmssExt, SnatExt, DnatExt, MasqueradeExt,
    RedirectExt, NetmapExt, CtExt, NotrackExt)}

# The extensions iptables 1.8.9 ships (xtables library directory): names it knows
# even where ipgate does not model them.
KNOWN_MATCHES = frozenset(
    "ah icmp realm ttl addrtype bpf cgroup cluster comment connbytes connlabel connlimit connmark conntrack cpu "
    "dccp devgroup dscp ecn esp hashlimit helper ipcomp iprange ipvs length limit mac mark multiport nfacct osf "
    "owner physdev pkttype policy quota rateest recent rpfilter sctp set socket state statistic string tcp "
    "tcpmss time tos u32 udp".split())
KNOWN_TARGETS = frozenset(
    "AUDIT CHECKSUM CLASSIFY CONNMARK CONNSECMARK CT DNAT DSCP HMARK IDLETIMER LED LOG MARK MASQUERADE NFLOG "
    "NFQUEUE NOTRACK RATEEST REDIRECT SECMARK SET SNAT SYNPROXY TCPMSS TCPOPTSTRIP TEE TOS TPROXY TRACE "
    "CLUSTERIP ECN NETMAP REJECT TTL ULOG standard ACCEPT DROP QUEUE RETURN".split())
