"""The rule model: `struct ipt_entry` as frozen data an evaluator can walk.

A `Rule` is the kernel's entry (include/uapi/linux/netfilter_ipv4/ip_tables.h):
the `ipt_ip` header (addresses and masks, interfaces, protocol, flags and
inverse flags), a tuple of matches and one target.  Matches and targets are
frozen dataclasses in `matches` and `targets`; each prints itself the way its
libxtables extension does (`print` for -L, `save` for -S/iptables-save) and
runs its kernel checkentry (`check`).

Counters are the one mutable part: the packet engine increments
`Rule.counters` and `Chain.counters` in place.  They are excluded from
equality, so `-D`/`-C` compare rules the way libiptc's is_same() does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ipgate.netfilter.names import Resolver

# struct ipt_ip flags and invflags.
IPT_F_FRAG = 0x01
IPT_F_GOTO = 0x02
IPT_INV_VIA_IN = 0x01
IPT_INV_VIA_OUT = 0x02
IPT_INV_TOS = 0x04
IPT_INV_SRCIP = 0x08
IPT_INV_DSTIP = 0x10
IPT_INV_FRAG = 0x20
IPT_INV_PROTO = 0x40

# Netfilter hooks (enum nf_inet_hooks), used for checkentry hook masks.
NF_INET_PRE_ROUTING = 0
NF_INET_LOCAL_IN = 1
NF_INET_FORWARD = 2
NF_INET_LOCAL_OUT = 3
NF_INET_POST_ROUTING = 4
HOOK_OF_CHAIN = {"PREROUTING": NF_INET_PRE_ROUTING, "INPUT": NF_INET_LOCAL_IN, "FORWARD": NF_INET_FORWARD,
                 "OUTPUT": NF_INET_LOCAL_OUT, "POSTROUTING": NF_INET_POST_ROUTING}

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_DCCP = 33
IPPROTO_SCTP = 132
IPPROTO_UDPLITE = 136


@dataclass(slots=True)
class Counters:
    """struct xt_counters: what the engine adds to for every packet that hits."""

    pkts: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a checkentry function sees: table name, hooks the rule is reachable from, the rule."""

    table: str
    hook_mask: int
    rule: Rule


class Extension:
    """Base of match and target data: printing and the kernel's checkentry."""

    __slots__ = ()
    NAME: ClassVar[str] = ""

    @property
    def save_name(self) -> str:
        """The name `-m`/`-j` prints in -S (extension aliases: state, NOTRACK)."""
        return self.NAME

    def print(self, rule: Rule, numeric: bool, names: Resolver) -> str:
        """The -L text after the addresses, with its leading space."""
        return ""

    def save(self, rule: Rule) -> str:
        """The -S/iptables-save options, with their leading space."""
        return ""

    def check(self, ctx: CheckContext) -> int:
        """The kernel's checkentry: 0 or an errno (EINVAL, ENOENT, ERANGE)."""
        return 0


class Match(Extension):
    __slots__ = ()


class Target(Extension):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Standard(Target):
    """ACCEPT, DROP, RETURN or QUEUE: a verdict (XT_STANDARD_TARGET with a negative verdict)."""

    verdict: str
    NAME: ClassVar[str] = "standard"


@dataclass(frozen=True, slots=True)
class Jump(Target):
    """A jump to a user chain; with IPT_F_GOTO in `Rule.flags` it is a goto (-g)."""

    chain: str
    NAME: ClassVar[str] = "standard"


@dataclass(frozen=True, slots=True)
class Rule:
    """struct ipt_entry: addresses are host-order ints, already masked like iptables stores them."""

    src: int = 0
    smsk: int = 0
    dst: int = 0
    dmsk: int = 0
    iniface: str = ""   # "eth+" is a prefix wildcard, "" any
    outiface: str = ""
    proto: int = 0      # 0 = all
    flags: int = 0      # IPT_F_*
    invflags: int = 0   # IPT_INV_*
    matches: tuple[Match, ...] = ()
    target: Target | None = None  # None: no -j, the rule only counts
    counters: Counters = field(default_factory=Counters, compare=False, hash=False)

    @property
    def goto(self) -> bool:
        return bool(self.flags & IPT_F_GOTO)

    @property
    def target_name(self) -> str:
        """iptc_get_target(): the verdict, chain or extension name ("" without -j)."""
        t = self.target
        if t is None:
            return ""
        if isinstance(t, Standard):
            return t.verdict
        if isinstance(t, Jump):
            return t.chain
        return t.NAME

    @property
    def unconditional(self) -> bool:
        """The kernel's unconditional(): an all-zero ipt_ip and no matches."""
        return not (self.src or self.smsk or self.dst or self.dmsk or self.iniface or self.outiface
                    or self.proto or self.flags & ~IPT_F_GOTO or self.invflags or self.matches)


def iface_matches(pattern: str, name: str) -> bool:
    """ifname_compare(): "eth+" matches any name starting with "eth", "" matches all."""
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return not pattern or pattern == name
