"""Loaded NAT rules as the kernel keeps them (4.1.x ip_nat.c).

`ActiveRule` is the kernel's copy of a `struct ipnat` after SIOCADNAT
(nat_siocaddnat()): the user flags only, addresses masked, and the fields the
kernel owns and changes as sessions are made: in_nip (next address to try),
in_pnext (next port), in_space, in_use, in_hits.  The frozen `NatRule` it came
from stays in `.rule`.

`RuleIndex` is nat_rules[] / rdr_rules[] with nat_masks / rdr_masks: rules are
hashed on their masked address (in_inip & in_inmsk for map rules,
in_outip & in_outmsk for rdr rules) and a packet's address is tried against
the /32 bucket first, then each prefix length in use, longest first
(fr_checknatout()'s and fr_checknatin()'s `maskloop`); within one address and
mask the rules are tried in the order they were added, and a round-robin rule
that was used moves to the end (nat_delrdr()+nat_addrdr()).  The kernel's
buckets also hold rules of other masks whose hash collides; that accident is
not reproduced.  A rule whose mask is not contiguous gets no bit in
nat_masks (count4bits() returns -1) and is never found, as in the kernel.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ipgate.nat.ipnat.rule import (
    ALL_ONES,
    IPN_AUTOPORTMAP,
    IPN_IPRANGE,
    IPN_NOTDST,
    IPN_NOTSRC,
    IPN_SPLIT,
    IPN_TCPUDPICMP,
    IPN_USERFLAGS,
    NAT_MAP,
    NAT_MAPBLK,
    NAT_REDIRECT,
    USABLE_PORTS,
    NatRule,
)

if TYPE_CHECKING:
    from ipgate.nat.ipnat.session import NatSession
    from ipgate.nat.ipnat.timeouts import TimeoutQueue


def count4bits(mask: int) -> int:
    """count4bits() (fil.c): the prefix length of a contiguous mask, -1 otherwise."""
    inv = ~mask & ALL_ONES
    if inv & (inv + 1):
        return -1
    return 32 - inv.bit_length()


def nat_setgroupmap(rule: NatRule) -> tuple[int, int]:
    """nat_setgroupmap() (lib/nat_setgroupmap.c): (ippip, ppip) for map-block and
    `portmap auto`: how many inside addresses share one outside address and how
    many ports each gets.  Equal masks give ippip 1 and leave ppip as it was
    (0): nat_newmap() then refuses every map-block session (`l >= in_ppip`)."""
    inmsk, outmsk = rule.in_mask, rule.out_mask
    if outmsk == inmsk:
        return 1, rule.ppip
    if rule.flags & IPN_AUTOPORTMAP:
        ippip = ~inmsk & ALL_ONES
        if outmsk != ALL_ONES:
            ippip //= (~outmsk & ALL_ONES) + 1
        ippip = (ippip + 1) & 0xFFFF  # in_ippip is a u_short
        if ippip == 0:
            ippip = 1
        return ippip, USABLE_PORTS // ippip
    ppip = rule.pmin or 1
    return (USABLE_PORTS // ppip) & 0xFFFF, ppip


class ActiveRule:
    """ipnat_t as the kernel holds it (nat_siocaddnat())."""

    __slots__ = ("rule", "redir", "flags", "p", "inip", "inmsk", "outip", "outmsk", "srcip", "srcmsk", "pmin",
                 "pmax", "pnext", "nip", "ppip", "ippip", "space", "use", "hits", "deleted", "mssclamp", "age",
                 "tqehead", "ifname", "ifname2")

    def __init__(self, rule: NatRule) -> None:
        self.rule = rule
        self.redir = rule.redir
        self.flags = rule.flags & IPN_USERFLAGS
        self.p = rule.proto
        self.inip, self.inmsk = rule.in_addr, rule.in_mask
        self.outip, self.outmsk = rule.out_addr, rule.out_mask
        self.srcip, self.srcmsk = rule.src_addr & rule.src_mask, rule.src_mask
        if not rule.redir & NAT_MAPBLK:
            if not self.flags & IPN_SPLIT:
                self.inip &= self.inmsk
            if not self.flags & IPN_IPRANGE:
                self.outip &= self.outmsk
        self.pmin, self.pmax = rule.pmin, rule.pmax
        self.ifname = rule.ifname
        self.ifname2 = rule.ifname2 or rule.ifname
        self.mssclamp = rule.mssclamp
        self.age = rule.age
        self.tqehead: list[TimeoutQueue[NatSession] | None] = [None, None]
        if (rule.redir & NAT_MAPBLK or self.flags & IPN_AUTOPORTMAP) and not rule.ippip:
            self.ippip, self.ppip = nat_setgroupmap(rule)
        else:
            self.ippip, self.ppip = rule.ippip, rule.ppip
        if rule.redir & NAT_REDIRECT:
            self.flags &= ~IPN_NOTDST
        if rule.redir & (NAT_MAP | NAT_MAPBLK):
            self.flags &= ~IPN_NOTSRC
        self.use = 0
        self.hits = 0
        self.deleted = False  # IPN_DELETE: removed while sessions still use it
        self.space = self._space()
        self.nip = self._first_nip()
        self.pnext = rule.pmin if rule.redir & NAT_MAP else rule.pnext

    def _space(self) -> int:
        """in_space: how many translations the rule can make (nat_siocaddnat())."""
        f = self.flags
        if self.redir & NAT_MAPBLK:
            space = USABLE_PORTS * (~self.outmsk & ALL_ONES)
        elif f & IPN_AUTOPORTMAP:
            space = USABLE_PORTS * (~self.inmsk & ALL_ONES)
        elif f & IPN_IPRANGE:
            space = self.outmsk - self.outip
        elif f & IPN_SPLIT:
            space = 2
        elif self.outmsk != 0:
            space = ~self.outmsk & ALL_ONES
        else:
            space = 1
        if space:
            space = space + 1 if f & IPN_IPRANGE else space - 1
        else:
            space = 1
        if self.redir & NAT_MAP:
            if self.pmax >= self.pmin:
                space *= self.pmax - self.pmin + 1
                if self.inmsk not in (0, ALL_ONES):
                    space *= (~self.inmsk & ALL_ONES) + 1
            if not f & IPN_TCPUDPICMP:
                space *= 256
        return min(space, ALL_ONES)

    def _first_nip(self) -> int:
        """in_nip's starting value: the first usable address of a CIDR block,
        the first of a range, the first target of `rdr ... -> a,b`."""
        if self.outmsk not in (ALL_ONES, 0) and not self.flags & (IPN_IPRANGE | IPN_SPLIT):
            return (self.outip + 1) & ALL_ONES
        if self.flags & IPN_SPLIT and self.redir & NAT_REDIRECT:
            return self.inip
        return self.outip

    @property
    def is_map(self) -> bool:
        return bool(self.redir & (NAT_MAP | NAT_MAPBLK))

    @property
    def is_rdr(self) -> bool:
        return bool(self.redir & NAT_REDIRECT)

    def __repr__(self) -> str:
        return f"<ActiveRule {self.rule.kind} {self.ifname} line {self.rule.line}>"


class RuleIndex:
    """nat_rules[] (map side, keyed on in_inip/in_inmsk) or rdr_rules[] (keyed on
    in_outip/in_outmsk), with the mask bitmap that drives the lookup order."""

    def __init__(self, rdr: bool) -> None:
        self.rdr = rdr
        self._buckets: dict[tuple[int, int], list[ActiveRule]] = {}
        self._lengths: dict[int, int] = {}  # prefix length -> rules with it (nat_masks / rdr_masks)
        self._order: list[int] = [32]

    def _key(self, r: ActiveRule) -> tuple[int, int]:
        return (r.outmsk, r.outip & r.outmsk) if self.rdr else (r.inmsk, r.inip & r.inmsk)

    def add(self, r: ActiveRule) -> None:
        """nat_addnat() / nat_addrdr(): to the end of its chain."""
        self._buckets.setdefault(self._key(r), []).append(r)
        k = count4bits(self._key(r)[0])
        if k >= 0:
            self._lengths[k] = self._lengths.get(k, 0) + 1
            self._order = sorted(set(self._lengths) | {32}, reverse=True)

    def remove(self, r: ActiveRule) -> None:
        """nat_delnat() / nat_delrdr().  The kernel only clears the mask bits
        when the whole list goes (nat_siocdelnat()); dropping an unused length
        changes nothing but the work done."""
        key = self._key(r)
        chain = self._buckets.get(key)
        if chain is None or r not in chain:
            return
        chain.remove(r)
        if not chain:
            del self._buckets[key]
        k = count4bits(key[0])
        if k >= 0:
            self._lengths[k] -= 1
            if not self._lengths[k]:
                del self._lengths[k]
            self._order = sorted(set(self._lengths) | {32}, reverse=True)

    def move_to_end(self, r: ActiveRule) -> None:
        """Round-robin: nat_delrdr(np); nat_addrdr(np)."""
        chain = self._buckets.get(self._key(r))
        if chain is not None and r in chain:
            chain.remove(r)
            chain.append(r)

    def clear(self) -> None:
        self._buckets.clear()
        self._lengths.clear()
        self._order = [32]

    def candidates(self, addr: int) -> Iterator[ActiveRule]:
        """The rules to try for a packet address, in the kernel's order.  Each
        chain is copied first: a round-robin rule moved while the caller walks
        must not be seen twice."""
        buckets = self._buckets
        for k in self._order:
            msk = (ALL_ONES << (32 - k)) & ALL_ONES
            chain = buckets.get((msk, addr & msk))
            if chain:
                yield from tuple(chain)
