"""Rule tests: `ip_packet_match()` and each match extension's `.match` (net/netfilter/xt_*.c).

A rule is compiled once per table generation into one predicate over the
`Skb`; the extensions' data come from the frozen match objects of
`netfilter/matches.py`.  Stateful matches (limit) keep their state in the
compiled predicate, as the kernel keeps it in the rule's private area: a
table replace starts it afresh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ipgate.conntrack.conn import IP_CT_IS_REPLY, IP_CT_UNTRACKED, IPS_DST_NAT, IPS_SRC_NAT, Conn
from ipgate.engine.skb import IPPROTO_ICMP, Skb
from ipgate.netfilter import matches as M
from ipgate.netfilter.rule import (
    IPT_F_FRAG,
    IPT_INV_DSTIP,
    IPT_INV_FRAG,
    IPT_INV_PROTO,
    IPT_INV_SRCIP,
    IPT_INV_VIA_IN,
    IPT_INV_VIA_OUT,
    Match,
    Rule,
    iface_matches,
)

if TYPE_CHECKING:
    from ipgate.stack import Stack

Test = Callable[[Skb], bool]
Clock = Callable[[], float]

HZ = 250  # CONFIG_HZ of the reference kernel
CREDITS_PER_JIFFY = 128  # POW2_BELOW32(0xFFFFFFFF / (HZ * 60 * 60 * 24)) at HZ 250


def _ip_conditions(r: Rule, env: dict[str, object], tag: str = "") -> list[str]:
    """ip_packet_match() as source conditions: addresses, interfaces, protocol, fragment flag."""
    inv = r.invflags
    conds: list[str] = []
    if r.smsk or inv & IPT_INV_SRCIP:
        op = "==" if inv & IPT_INV_SRCIP else "!="
        conds.append(f"(s.saddr & {r.smsk}) {op} {r.src}")
    if r.dmsk or inv & IPT_INV_DSTIP:
        op = "==" if inv & IPT_INV_DSTIP else "!="
        conds.append(f"(s.daddr & {r.dmsk}) {op} {r.dst}")
    for dev, pat, bit in (("indev", r.iniface, IPT_INV_VIA_IN), ("outdev", r.outiface, IPT_INV_VIA_OUT)):
        if pat or inv & bit:
            name = f"_pat{tag}_{dev}"
            env[name] = pat
            if pat and not pat.endswith("+"):
                # an exact name: iface_matches() is a string compare, inlined (no device: the name "")
                if inv & bit:
                    conds.append(f"(s.{dev} is not None and s.{dev}.name == {name})")
                else:
                    conds.append(f"(s.{dev} is None or s.{dev}.name != {name})")
                continue
            neg = "" if inv & bit else "not "
            conds.append(f"{neg}_iface({name}, s.{dev}_name)")
    if r.proto:
        conds.append(f"s.proto {'==' if inv & IPT_INV_PROTO else '!='} {r.proto}")
    elif inv & IPT_INV_PROTO:
        conds.append("True")  # "! -p all" matches nothing
    if r.flags & IPT_F_FRAG:
        conds.append("s.fragoff" if inv & IPT_INV_FRAG else "not s.fragoff")  # -f: later fragments only
    return conds


def _port_conditions(m: M.TcpMatch | M.UdpMatch) -> list[str]:
    """tcp_mt()/udp_mt() port ranges as source conditions (after the header checks)."""
    conds: list[str] = []
    for field, (lo, hi), bit in (("sport", m.spts, M.XT_TCP_INV_SRCPT), ("dport", m.dpts, M.XT_TCP_INV_DSTPT)):
        inv = bool(m.invflags & bit)
        if (lo, hi) == (0, 0xFFFF) and not inv:
            continue
        inside = f"{lo} <= s.{field} <= {hi}"
        conds.append(inside if inv else f"not ({inside})")
    return conds


def _hotdrop(s: Skb) -> bool:
    """Mark the packet for dropping (par->hotdrop); true, so that the rule does not match."""
    s.hotdrop = True
    return True


# A header too short for the match: the kernel's hotdrop (the packet is dropped).
_SHORT = "((s.l4len < {0} or len(s.buf) < s.ihl + {0}) and _hotdrop(s))"


def rule_conditions(r: Rule, stack: Stack, clock: Clock, env: dict[str, object], tag: str = "") -> list[str]:
    """The test of a rule as expressions over the Skb `s`, in order, each true when the rule does
    NOT match (so a rule matches when none is).  Port ranges of -p tcp/udp are inlined; other
    matches are closures put in `env` under names made unique by `tag`.
    """
    env.setdefault("_iface", iface_matches)
    env.setdefault("_hotdrop", _hotdrop)
    conds = _ip_conditions(r, env, tag)
    for i, m in enumerate(r.matches):
        if type(m) is M.UdpMatch:
            conds.append("s.fragoff")
            conds.append(_SHORT.format(8))
            conds += _port_conditions(m)
            continue
        if type(m) is M.TcpMatch and not m.flg_mask and not m.option and not m.invflags & ~3:
            conds.append("s.fragoff")
            conds.append(_SHORT.format(20))
            conds += _port_conditions(m)
            continue
        t = compile_match(m, stack, clock)
        if t is not None:
            name = f"_m{tag}_{i}"
            env[name] = t
            conds.append(f"not {name}(s)")
    return conds


def _tcp_header_ok(s: Skb, need: int) -> bool:
    """The header must be there; a short one is a "hotdrop" (the packet is dropped)."""
    if s.l4len < need or len(s.buf) < s.ihl + need:
        s.hotdrop = True
        return False
    return True


def _tcp(m: M.TcpMatch) -> Test:
    # tcp_mt(): fragments never match; the header is read whole (20 bytes)
    (slo, shi), (dlo, dhi) = m.spts, m.dpts
    inv = m.invflags
    fmask, fcmp, opt = m.flg_mask, m.flg_cmp, m.option

    def test(s: Skb) -> bool:
        if s.fragoff:
            return False
        if not _tcp_header_ok(s, 20):
            return False
        if (slo <= s.sport <= shi) == bool(inv & M.XT_TCP_INV_SRCPT):
            return False
        if (dlo <= s.dport <= dhi) == bool(inv & M.XT_TCP_INV_DSTPT):
            return False
        buf, off = s.buf, s.ihl
        if ((buf[off + 13] & fmask) == fcmp) == bool(inv & M.XT_TCP_INV_FLAGS):
            return False
        if opt:
            doff = (buf[off + 12] >> 4) * 4
            if doff < 20:
                s.hotdrop = True
                return False
            found = _tcp_has_option(buf, off + 20, off + doff, opt)
            if found is None:
                s.hotdrop = True
                return False
            if found == bool(inv & M.XT_TCP_INV_OPTION):
                return False
        return True

    return test


def _tcp_has_option(buf: bytearray, start: int, end: int, opt: int) -> bool | None:
    """tcp_find_option(); None when the options are cut short."""
    if end > len(buf):
        return None
    i = start
    while i < end:
        kind = buf[i]
        if kind == opt:
            return True
        if kind < 2:
            i += 1
            continue
        if i + 1 >= end:
            return False
        ln = buf[i + 1]
        i += ln if ln >= 2 else 1
    return False


def _udp(m: M.UdpMatch) -> Test:
    (slo, shi), (dlo, dhi) = m.spts, m.dpts
    sinv, dinv = bool(m.invflags & M.XT_TCP_INV_SRCPT), bool(m.invflags & M.XT_TCP_INV_DSTPT)

    def test(s: Skb) -> bool:
        if s.fragoff:
            return False
        if s.l4len < 8:
            s.hotdrop = True
            return False
        return (slo <= s.sport <= shi) != sinv and (dlo <= s.dport <= dhi) != dinv

    return test


def _icmp(m: M.IcmpMatch) -> Test:
    # icmp_type_code_match(): type 0xFF matches any type
    t, (clo, chi), inv = m.type, m.code, m.invert

    def test(s: Skb) -> bool:
        if s.fragoff:
            return False
        if s.l4len < 2 or s.proto != IPPROTO_ICMP:
            s.hotdrop = True
            return False
        hit = t == 0xFF or (s.sport == t and clo <= s.dport <= chi)
        return hit != inv

    return test


def _multiport(m: M.MultiportMatch) -> Test:
    ranges = tuple(m.ranges())
    flags, inv = m.flags, m.invert

    def test(s: Skb) -> bool:
        if s.fragoff:
            return False
        if s.l4len < 4:
            s.hotdrop = True
            return False
        sp, dp = s.sport, s.dport
        for lo, hi in ranges:
            if flags == M.XT_MULTIPORT_SOURCE:
                hit = lo <= sp <= hi
            elif flags == M.XT_MULTIPORT_DESTINATION:
                hit = lo <= dp <= hi
            else:
                hit = lo <= sp <= hi or lo <= dp <= hi
            if hit:
                return not inv
        return inv

    return test


def _ct_state_bits(ct: Conn | None, ctinfo: int) -> int:
    """XT_CONNTRACK_STATE_BIT(ctinfo), INVALID or UNTRACKED, and the SNAT/DNAT bits of the connection."""
    if ct is None:
        return M.CT_STATE_UNTRACKED if ctinfo == IP_CT_UNTRACKED else M.CT_STATE_INVALID
    bit = 1 << ((ctinfo % IP_CT_IS_REPLY) + 1)
    st = ct.status
    if st & IPS_SRC_NAT:
        bit |= M.CT_STATE_SNAT
    if st & IPS_DST_NAT:
        bit |= M.CT_STATE_DNAT
    return bit


def _conntrack(m: M.ConntrackMatch, clock: Clock) -> Test:
    """conntrack_mt() (revision 3); -m state is the same code with only the state flag."""
    f, inv = m.match_flags, m.invert_flags

    def addr(key_dir: int, part: str, spec: tuple[int, int], bit: int) -> Callable[[Conn], bool]:
        a, msk = spec

        def t(ct: Conn) -> bool:
            tup = ct.tuple(key_dir)
            v = tup.src if part == "src" else tup.dst
            return (((v ^ a) & msk) == 0) != bool(inv & bit)

        return t

    def port(key_dir: int, part: str, spec: tuple[int, int], bit: int) -> Callable[[Conn], bool]:
        lo, hi = spec
        hi = hi or lo

        def t(ct: Conn) -> bool:
            tup = ct.tuple(key_dir)
            v = tup.sport if part == "src" else tup.dport
            return (lo <= v <= hi) != bool(inv & bit)

        return t

    checks: list[Callable[[Conn], bool]] = []
    for bit, d, part, spec in ((M.XT_CONNTRACK_ORIGSRC, 0, "src", m.origsrc),
                               (M.XT_CONNTRACK_ORIGDST, 0, "dst", m.origdst),
                               (M.XT_CONNTRACK_REPLSRC, 1, "src", m.replsrc),
                               (M.XT_CONNTRACK_REPLDST, 1, "dst", m.repldst)):
        if f & bit:
            checks.append(addr(d, part, spec, bit))
    if f & M.XT_CONNTRACK_PROTO:
        l4, pinv = m.l4proto, bool(inv & M.XT_CONNTRACK_PROTO)
        checks.append(lambda ct: (ct.protonum == l4) != pinv)
    for bit, d, part, pspec in ((M.XT_CONNTRACK_ORIGSRC_PORT, 0, "src", m.origsrc_port),
                                (M.XT_CONNTRACK_ORIGDST_PORT, 0, "dst", m.origdst_port),
                                (M.XT_CONNTRACK_REPLSRC_PORT, 1, "src", m.replsrc_port),
                                (M.XT_CONNTRACK_REPLDST_PORT, 1, "dst", m.repldst_port)):
        if f & bit:
            checks.append(port(d, part, pspec, bit))
    if f & M.XT_CONNTRACK_STATUS:
        smask, sinv = m.status_mask, bool(inv & M.XT_CONNTRACK_STATUS)
        checks.append(lambda ct: bool(smask & ct.status) != sinv)
    if f & M.XT_CONNTRACK_EXPIRES:
        elo, ehi = m.expires
        einv = bool(inv & M.XT_CONNTRACK_EXPIRES)
        checks.append(lambda ct: (elo <= int(ct.expires(clock())) <= ehi) != einv)
    state = bool(f & M.XT_CONNTRACK_STATE)
    state_mask, state_inv = m.state_mask, bool(inv & M.XT_CONNTRACK_STATE)
    direction = bool(f & M.XT_CONNTRACK_DIRECTION)
    want_reply = bool(inv & M.XT_CONNTRACK_DIRECTION)

    if f & ~M.XT_CONNTRACK_STATE_ALIAS == M.XT_CONNTRACK_STATE:
        # -m state (or -m conntrack --ctstate alone), the common case: the state only

        def state_test(s: Skb) -> bool:
            return bool(state_mask & _ct_state_bits(s.ct, s.ctinfo)) != state_inv

        return state_test

    def test(s: Skb) -> bool:
        ct = s.ct
        if state and bool(state_mask & _ct_state_bits(ct, s.ctinfo)) == state_inv:
            return False
        if ct is None:
            return state
        if direction and (s.ctinfo >= IP_CT_IS_REPLY) != want_reply:
            return False
        return all(c(ct) for c in checks)

    return test


def _limit(m: M.LimitMatch, clock: Clock) -> Test:
    """limit_mt(): a token bucket in credits, refilled per jiffy (xt_limit.c)."""
    cost = M._user2credits(m.avg)
    cap = M._user2credits(m.avg * m.burst)
    state = [cap, -1]  # credit, prev jiffies (-1: the first packet starts the clock)

    def test(s: Skb) -> bool:
        now = int(clock() * HZ)
        prev = state[1]
        credit = state[0] + (now - prev) * CREDITS_PER_JIFFY if prev >= 0 else state[0]
        state[1] = now
        if credit > cap:
            credit = cap
        if credit >= cost:
            state[0] = credit - cost
            return True
        state[0] = credit
        return False

    return test


def _addrtype(m: M.AddrtypeMatch, stack: Stack) -> Test:
    """addrtype_mt_v1(): the RTN type of the address, optionally as seen from the in/out device."""
    src, dst, f = m.source, m.dest, m.flags

    def kind(s: Skb, addr: int) -> int:
        dev = s.indev if f & M.XT_ADDRTYPE_LIMIT_IFACE_IN else s.outdev if f & M.XT_ADDRTYPE_LIMIT_IFACE_OUT else None
        return 1 << stack.addr_type(addr, dev=dev)

    def test(s: Skb) -> bool:
        if src and bool(kind(s, s.saddr) & src) == bool(f & M.XT_ADDRTYPE_INVERT_SOURCE):
            return False
        return not (dst and bool(kind(s, s.daddr) & dst) == bool(f & M.XT_ADDRTYPE_INVERT_DEST))

    return test


def compile_match(m: Match, stack: Stack, clock: Clock) -> Test | None:
    """The predicate of one match extension (None: always true, e.g. a comment)."""
    if isinstance(m, M.TcpMatch):
        return _tcp(m)
    if isinstance(m, M.UdpMatch):
        return _udp(m)
    if isinstance(m, M.IcmpMatch):
        return _icmp(m)
    if isinstance(m, M.MultiportMatch):
        return _multiport(m)
    if isinstance(m, M.ConntrackMatch):
        return _conntrack(m, clock)
    if isinstance(m, M.MarkMatch):
        mark, mask, minv = m.mark, m.mask, m.invert
        return lambda s: ((s.mark & mask) == mark) != minv
    if isinstance(m, M.ConnmarkMatch):
        cmark, cmask, cinv = m.mark, m.mask, m.invert
        return lambda s: s.ct is not None and ((s.ct.mark & cmask) == cmark) != cinv
    if isinstance(m, M.IprangeMatch):
        return _iprange(m)
    if isinstance(m, M.TosMatch):
        tv, tm, tinv = m.value, m.mask, m.invert
        return lambda s: ((s.tos & tm) == tv) != tinv
    if isinstance(m, M.DscpMatch):
        dscp, dinv = m.dscp, m.invert
        return lambda s: ((s.tos >> 2) == dscp) != dinv
    if isinstance(m, M.LimitMatch):
        return _limit(m, clock)
    if isinstance(m, M.CommentMatch):
        return None
    if isinstance(m, M.AddrtypeMatch):
        return _addrtype(m, stack)
    raise NotImplementedError(f"match {m.NAME!r} has no packet test")


def _iprange(m: M.IprangeMatch) -> Test:
    f = m.flags
    (slo, shi), (dlo, dhi) = m.src, m.dst

    def test(s: Skb) -> bool:
        if f & M.IPRANGE_SRC and (slo <= s.saddr <= shi) == bool(f & M.IPRANGE_SRC_INV):
            return False
        return not (f & M.IPRANGE_DST and (dlo <= s.daddr <= dhi) == bool(f & M.IPRANGE_DST_INV))

    return test

