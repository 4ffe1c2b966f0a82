"""One ipnat.conf rule: IP Filter 4.1's `struct ipnat` (netinet/ip_nat.h) as frozen data.

Theory of operation
-------------------
ipnat(8) parses each line of ipnat.conf into a `struct ipnat` and hands it to
the kernel with SIOCADNAT; the kernel keeps the rules in file order and, per
packet, walks the `map`-side rules for packets leaving an interface and the
`rdr`-side rules for packets arriving on it (`bimap` is on both sides).  The
first rule that matches creates a session (`struct nat`) and later packets of
the flow use the session, not the rules.  This module is the rule only: the
parser (parse.py) builds it, the printer (printer.py) prints it as
lib/printnat.c does, the engine reads it; sessions live elsewhere (state.py).

Fields keep struct ipnat's names without the `in_` prefix where that is
unambiguous, host byte order everywhere (the C struct keeps ports and
addresses in network order).  The same three address pairs mean different
things per rule kind, exactly as in IP Filter:

============  ==========================  ==========================  ======================
field         map / bimap / map-block     rdr                         C name
============  ==========================  ==========================  ======================
in_addr/mask  inside source to match      new destination (``->``);   in_in[0] / in_in[1]
              (``from`` address with      with ``a,b`` (IPN_SPLIT)
              from/to)                    in_mask holds the 2nd addr
out_addr/mask address(es) to map onto;    outside destination to      in_out[0] / in_out[1]
              with ``range a-b``          match (``to`` address with
              (IPN_IPRANGE) out_mask is   from/to)
              the range's last address
src_addr/mask ``to`` address of           ``from`` address of         in_src[0] / in_src[1]
              from/to (destination)       from/to (source)
============  ==========================  ==========================  ======================

Ports: for map `portmap`, pmin:pmax is the range to allocate from (host
order here), pnext the next port to try (the kernel sets it to pmin when the
rule is added).  For `icmpidmap`, pmin:pmax is the ICMP id range and IPN_ICMPQUERY
is set.  For rdr, pmin-pmax is the destination port range matched
(``port p[-q]``) and pnext the new destination port; IPN_FIXEDDPORT (``port =
p``) keeps pnext for every port of the range instead of shifting it.  For
map-block, pmin is ``ports N`` (0 with IPN_AUTOPORTMAP for ``ports auto``),
ippip is the number of inside addresses per outside address and ppip the
ports each inside address gets (nat_setgroupmap() in lib/natparse.c).

``0/32`` as the translated address means "the interface's own address": IP
Filter stores it as address 0 with mask 255.255.255.255 (out_addr/out_mask for
map, in_addr/in_mask for rdr) and ip_nat.c's nat_newmap()/nat_newrdr() look the
address up (fr_ifpaddr) when a session is created; ``0/0`` keeps the original
address.  A rdr target is written ``-> 0`` (a bare number is an address, with
an all-ones mask); 4.1's grammar refuses ``-> 0/32`` there ("Only 0/0
supported").  See `map_to_ifaddr`/`rdr_to_ifaddr`.

Values are IP Filter's own: NAT_BIMAP is NAT_MAP|NAT_REDIRECT (3) and
NAT_MAPBLK is 4 in ip_nat.h, so ``redir & NAT_REDIRECT`` holds for rdr and
bimap and ``redir & NAT_MAP`` for map and bimap.

`from`/`to` objects (IPN_FILTER): addresses as above, negation in IPN_NOTSRC
/ IPN_NOTDST, port comparisons in `sport`/`dport` (struct frtuc: ftu_src,
ftu_dst, each a `frpcmp_t` of comparison, port and top port).  `from_obj` and
`to_obj` give them as one object each.

Equality: `same_as()` compares what the kernel's SIOCADNAT/SIOCRMNAT compare
(IPN_CMPSIZ: from in_flags to the end of the struct, and in_pnext for rdr
rules), so it ignores a map rule's pnext and the source position, as
`ipnat -r` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# in_redir values (ip_nat.h).
NAT_MAP = 0x01
NAT_REDIRECT = 0x02
NAT_BIMAP = NAT_MAP | NAT_REDIRECT
NAT_MAPBLK = 0x04

# in_flags bits (ip_nat.h, IP Filter 4.1.x).
IPN_ANY = 0x00000
IPN_TCP = 0x00001
IPN_UDP = 0x00002
IPN_TCPUDP = IPN_TCP | IPN_UDP
IPN_ICMPERR = 0x00004
IPN_TCPUDPICMP = IPN_TCP | IPN_UDP | IPN_ICMPERR
IPN_ICMPQUERY = 0x00008
IPN_TCPUDPICMPQ = IPN_TCP | IPN_UDP | IPN_ICMPQUERY
IPN_AUTOPORTMAP = 0x00010
IPN_IPRANGE = 0x00020
IPN_FILTER = 0x00040
IPN_SPLIT = 0x00080
IPN_ROUNDR = 0x00100
IPN_NOTSRC = 0x04000
IPN_NOTDST = 0x08000
IPN_DYNSRCIP = 0x10000
IPN_DYNDSTIP = 0x20000
IPN_DELETE = 0x40000
IPN_STICKY = 0x80000
IPN_FRAG = 0x100000
IPN_FIXEDDPORT = 0x200000
IPN_FINDFORWARD = 0x400000
IPN_IN = 0x800000
IPN_SEQUENTIAL = 0x1000000
IPN_RF = IPN_TCPUDP | IPN_DELETE | IPN_ICMPERR
IPN_USERFLAGS = (IPN_TCPUDP | IPN_AUTOPORTMAP | IPN_IPRANGE | IPN_SPLIT | IPN_ROUNDR | IPN_FILTER | IPN_NOTSRC
                 | IPN_NOTDST | IPN_FRAG | IPN_STICKY | IPN_FIXEDDPORT | IPN_ICMPQUERY | IPN_SEQUENTIAL)

# frpcmp_t comparisons (ip_fil.h).
FR_NONE = 0
FR_EQUAL = 1
FR_NEQUAL = 2
FR_LESST = 3
FR_GREATERT = 4
FR_LESSTE = 5
FR_GREATERTE = 6
FR_OUTRANGE = 7  # port a <> b: outside [a, b]
FR_INRANGE = 8   # port a >< b: strictly between a and b
FR_INCRANGE = 9  # port a:b: a to b inclusive (4.1.x `range: ':'`)

MAPBLK_MINPORT = 1024  # map-block never hands out reserved ports
USABLE_PORTS = 65536 - MAPBLK_MINPORT
APR_LABELLEN = 16  # proxy label size, including the NUL
LIFNAMSIZ = 16  # IFNAMSIZ on the BSDs (ip_compat.h); names keep LIFNAMSIZ - 1 characters
IPFTAG_LEN = 16

ALL_ONES = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class PortCmp:
    """frpcmp_t: a port comparison of a from/to object (`port = 80`, `port 1 <> 1023`)."""

    cmp: int = FR_NONE
    port: int = 0
    top: int = 0  # the upper port of the range comparisons

    def matches(self, port: int) -> bool:
        """fr_tcpudpchk()'s test of one port (true when there is no comparison)."""
        c, p, t = self.cmp, self.port, self.top
        if c == FR_NONE:
            return True
        if c == FR_EQUAL:
            return port == p
        if c == FR_NEQUAL:
            return port != p
        if c == FR_LESST:
            return port < p
        if c == FR_GREATERT:
            return port > p
        if c == FR_LESSTE:
            return port <= p
        if c == FR_GREATERTE:
            return port >= p
        if c == FR_OUTRANGE:
            return port < p or port > t
        if c == FR_INRANGE:
            return p < port < t
        if c == FR_INCRANGE:
            return p <= port <= t
        return False


@dataclass(frozen=True, slots=True)
class FilterObject:
    """One side of `from ... to ...`: address/mask, `!`, and a port comparison."""

    addr: int
    mask: int
    negate: bool
    ports: PortCmp

    def matches(self, addr: int, port: int | None = None) -> bool:
        hit = (addr & self.mask) == self.addr
        if self.negate:
            hit = not hit
        if port is not None and not self.ports.matches(port):
            return False
        return hit


@dataclass(frozen=True, slots=True)
class NatRule:
    """struct ipnat (ip_nat.h), host byte order; see the module docstring for each kind."""

    redir: int                       # in_redir: NAT_MAP, NAT_REDIRECT, NAT_BIMAP, NAT_MAPBLK
    ifname: str                      # in_ifnames[0]
    ifname2: str = ""                # in_ifnames[1]: `map le0,le1 ...`; the parser copies ifname here
    flags: int = 0                   # in_flags: IPN_*
    proto: int = 0                   # in_p: 0 = any (or tcp/udp when IPN_TCPUDP is set)
    in_addr: int = 0                 # in_in[0]
    in_mask: int = 0                 # in_in[1]
    out_addr: int = 0                # in_out[0]
    out_mask: int = 0                # in_out[1]
    src_addr: int = 0                # in_src[0]
    src_mask: int = 0                # in_src[1]
    sport: PortCmp = PortCmp()       # in_tuc.ftu_src (in_scmp, in_sport, in_stop)
    dport: PortCmp = PortCmp()       # in_tuc.ftu_dst (in_dcmp, in_dport, in_dtop)
    pmin: int = 0                    # in_port[0]
    pmax: int = 0                    # in_port[1]
    pnext: int = 0                   # in_pnext: rdr's new port; map's next port (set when loaded)
    ppip: int = 0                    # in_ppip: map-block ports per inside address
    ippip: int = 0                   # in_ippip: map-block inside addresses per outside address
    age: tuple[int, int] = (0, 0)    # in_age[2]: `age N[/M]` as written (fr_addtimeoutqueue units), 0 = default
    mssclamp: int = 0                # in_mssclamp: clamp TCP MSS to this, 0 = off
    plabel: str = ""                 # in_plabel: proxy name (`ftp`), "" = none
    tag: str = ""                    # in_tag: `tag NAME` (IP Filter 4.1 addition)
    line: int = field(default=0, compare=False)     # in_flineno
    column: int = field(default=0, compare=False)   # where the rule starts on its line
    source: str = field(default="", compare=False)  # the file it came from

    # -- kinds -----------------------------------------------------------
    @property
    def is_map(self) -> bool:
        """Applies to outgoing packets: map, bimap, map-block."""
        return bool(self.redir & (NAT_MAP | NAT_MAPBLK))

    @property
    def is_rdr(self) -> bool:
        """Applies to incoming packets: rdr, bimap."""
        return bool(self.redir & NAT_REDIRECT)

    @property
    def kind(self) -> str:
        return {NAT_MAP: "map", NAT_REDIRECT: "rdr", NAT_BIMAP: "bimap", NAT_MAPBLK: "map-block"}.get(
            self.redir, f"{self.redir:#x}")

    # -- derived views ---------------------------------------------------
    @property
    def from_obj(self) -> FilterObject | None:
        """The `from` object of a from/to rule (None without IPN_FILTER)."""
        if not self.flags & IPN_FILTER:
            return None
        if self.redir == NAT_REDIRECT:
            return FilterObject(self.src_addr, self.src_mask, bool(self.flags & IPN_NOTSRC), self.sport)
        return FilterObject(self.in_addr, self.in_mask, bool(self.flags & IPN_NOTSRC), self.sport)

    @property
    def to_obj(self) -> FilterObject | None:
        """The `to` object of a from/to rule (None without IPN_FILTER)."""
        if not self.flags & IPN_FILTER:
            return None
        if self.redir == NAT_REDIRECT:
            return FilterObject(self.out_addr, self.out_mask, bool(self.flags & IPN_NOTDST), self.dport)
        return FilterObject(self.src_addr, self.src_mask, bool(self.flags & IPN_NOTDST), self.dport)

    @property
    def map_to_ifaddr(self) -> bool:
        """map ... -> 0/32: translate to the interface's address (nat_newmap)."""
        return self.out_addr == 0 and self.out_mask == ALL_ONES and not self.flags & IPN_IPRANGE

    @property
    def rdr_to_ifaddr(self) -> bool:
        """rdr ... -> 0/32: redirect to the interface's address (nat_newrdr)."""
        return self.in_addr == 0 and self.in_mask == ALL_ONES and not self.flags & IPN_SPLIT

    @property
    def icmpidmap(self) -> tuple[int, int] | None:
        """`icmpidmap icmp lo:hi`: the ICMP id range (kept in pmin/pmax with IPN_ICMPQUERY)."""
        return (self.pmin, self.pmax) if self.flags & IPN_ICMPQUERY else None

    @property
    def proxy_port(self) -> int:
        """The port a proxy rule applies to: IP Filter keeps it in in_dport (`proxy port P`, rdr's pnext)."""
        return self.dport.port if self.plabel else 0

    @property
    def proxy_proto(self) -> int:
        """`proxy port P name/proto`: the proto is the rule's (setnatproto)."""
        return self.proto

    def same_as(self, other: NatRule) -> bool:
        """fr_nat_ioctl()'s duplicate/removal test: the IPN_CMPSIZ tail of the struct, plus pnext for rdr."""
        return self._cmp_key() == other._cmp_key()

    def _cmp_key(self) -> tuple[object, ...]:
        return (self.flags, self.mssclamp, self.age, self.redir, self.proto, self.in_addr, self.in_mask,
                self.out_addr, self.out_mask, self.src_addr, self.src_mask, self.sport, self.dport,
                self.pmin, self.pmax, self.ppip, self.ippip, self.ifname, self.ifname2, self.plabel, self.tag,
                self.pnext if self.redir == NAT_REDIRECT else None)
