"""Target actions (net/netfilter/xt_*.c, net/ipv4/netfilter/ipt_*.c, nf_nat_*.c).

Each target of `netfilter/targets.py` becomes a function of the `Skb` that
answers a verdict (NF_ACCEPT, NF_DROP) or XT_CONTINUE.  Packet rewrites fix
the checksums incrementally and re-parse the header; NAT targets bind the
connection through `nat/core.py` (the rewrite itself happens after the nat
chain, in the engine's NAT hook, as nf_nat_packet() does).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ipgate.conntrack.conn import IP_CT_UNTRACKED, NF_ACCEPT, NF_DROP
from ipgate.engine.skb import Skb
from ipgate.engine.xtables import XT_CONTINUE, Action
from ipgate.nat.core import (
    NAT_MANIP_DST,
    NAT_MANIP_SRC,
    NF_NAT_RANGE_MAP_IPS,
    ManipType,
    NatRange2,
    hook2manip,
)
from ipgate.netfilter import targets as T
from ipgate.netfilter.rule import (
    NF_INET_LOCAL_OUT,
    NF_INET_PRE_ROUTING,
    Rule,
    Target,
)
from ipgate.packet.checksum import csum_replace2
from ipgate.packet.fastnew import new_tuple

if TYPE_CHECKING:
    from ipgate.engine.engine import Engine
    from ipgate.link.device import Device
    from ipgate.stack import Stack

_U16 = struct.Struct("!H")

# ipt_REJECT's --reject-with -> ICMP destination-unreachable code (None: TCP reset)
REJECT_CODES: dict[int, int | None] = {0: 0, 1: 1, 2: 2, 3: 3, 5: 9, 6: 10, 7: None, 8: 13}


def nat_range(r: T.NatRange) -> NatRange2:
    """struct nf_nat_range2 from the target's range."""
    return NatRange2(r.flags, r.min_ip, r.max_ip, r.min_port, r.max_port, r.base_port)


def set_tos(skb: Skb, tos: int) -> None:
    """ipv4_change_dsfield(): the TOS byte and the header checksum."""
    buf = skb.buf
    old = _U16.unpack_from(buf, 0)[0]
    buf[1] = tos
    new = _U16.unpack_from(buf, 0)[0]
    _U16.pack_into(buf, 10, csum_replace2(_U16.unpack_from(buf, 10)[0], old, new))
    skb.tos = tos


def compile_target(t: Target, rule: Rule, table: str, eng: Engine) -> Action:
    """The action of an extension target in `table`."""
    if isinstance(t, T.Mark):
        mark, mask = t.mark, t.mask

        def mark_tg(s: Skb) -> int:
            s.mark = (s.mark & ~mask & 0xFFFFFFFF) ^ mark
            return XT_CONTINUE

        return mark_tg
    if isinstance(t, T.Connmark):
        return _connmark(t)
    if isinstance(t, T.Tos):
        value, tmask = t.value, t.mask

        def tos_tg(s: Skb) -> int:
            nv = (s.tos & ~tmask & 0xFF) ^ value
            if nv != s.tos:
                set_tos(s, nv)
            return XT_CONTINUE

        return tos_tg
    if isinstance(t, T.Dscp):
        dscp = t.dscp

        def dscp_tg(s: Skb) -> int:
            if (s.tos >> 2) != dscp:
                set_tos(s, (s.tos & 0x03) | (dscp << 2))
            return XT_CONTINUE

        return dscp_tg
    if isinstance(t, T.Tcpmss):
        from ipgate.engine.tcpmss import tcpmss_target

        return lambda s: tcpmss_target(s, t.mss, eng)
    if isinstance(t, T.Log):
        return lambda s: eng.log_target(s, t)
    if isinstance(t, T.Reject):
        code = REJECT_CODES.get(t.with_, 3)

        def reject_tg(s: Skb) -> int:
            if code is None:
                eng.send_reset(s)
            else:
                eng.send_unreach(s, code)
            return NF_DROP

        return reject_tg
    if isinstance(t, T.Ct):
        return _ct(t)
    if isinstance(t, (T.Snat, T.Dnat)):
        rng = nat_range(t.range)
        mtype = ManipType.SRC if isinstance(t, T.Snat) else ManipType.DST
        return lambda s: eng.nat_setup(s, rng, mtype)
    if isinstance(t, T.Masquerade):
        return _masquerade(t, eng)
    if isinstance(t, T.Redirect):
        return _redirect(t, eng)
    if isinstance(t, T.Netmap):
        return _netmap(t, eng)
    raise NotImplementedError(f"target {t.NAME!r} has no packet action")


def _connmark(t: T.Connmark) -> Action:
    """connmark_tg_shift() without shifts (revision 1)."""
    mode, ctmark, ctmask, nfmask = t.mode, t.ctmark, t.ctmask, t.nfmask
    m32 = 0xFFFFFFFF

    def tg(s: Skb) -> int:
        ct = s.ct
        if ct is None:
            return XT_CONTINUE
        if mode == T.XT_CONNMARK_SET:
            ct.mark = (ct.mark & ~ctmask & m32) ^ ctmark
        elif mode == T.XT_CONNMARK_SAVE:
            ct.mark = (ct.mark & ~ctmask & m32) ^ (s.mark & nfmask)
        elif mode == T.XT_CONNMARK_RESTORE:
            s.mark = (s.mark & ~nfmask & m32) ^ (ct.mark & ctmask)
        return XT_CONTINUE

    return tg


def _ct(t: T.Ct) -> Action:
    """xt_ct_target(): attach the template (a helper for the new connection) or mark untracked."""
    notrack, helper = t.notrack, t.helper

    def tg(s: Skb) -> int:
        if s.ct is not None:
            return XT_CONTINUE  # "Previously seen (loopback)? Ignore."
        if notrack:
            s.ctinfo = IP_CT_UNTRACKED
        elif helper:
            s.ct_helper = helper
        return XT_CONTINUE

    return tg


def _masquerade(t: T.Masquerade, eng: Engine) -> Action:
    """nf_nat_masquerade_ipv4(): the outgoing device's address for this nexthop, chosen now."""
    r = t.range
    # The last answer of inet_select_addr(), as route/lookup.py's nh_saddr() keeps one: valid for the
    # same stack, device and nexthop until anything changes (stack.gen); one gateway is the usual case.
    last_stack: Stack | None = None
    last_gen = last_nh = last_src = -1
    last_out: Device | None = None

    def tg(s: Skb) -> int:
        nonlocal last_stack, last_gen, last_out, last_nh, last_src
        ct = s.ct
        if ct is None:
            return NF_ACCEPT
        if not ct.okey >> 72:
            return NF_ACCEPT  # a local packet with source 0.0.0.0 (the original tuple's source)
        out = s.outdev
        if out is None:
            return NF_DROP
        stack = eng.stack
        nh = s.nexthop or s.daddr
        if stack is not last_stack or stack.gen.value != last_gen or out is not last_out or nh != last_nh:
            last_stack, last_gen, last_out, last_nh = stack, stack.gen.value, out, nh
            last_src = stack.select_addr(out, nh, 0)  # RT_SCOPE_UNIVERSE
        newsrc = last_src
        if not newsrc:
            eng.syslog(f"{out.name} ate my IP address")
            return NF_DROP
        ct.get_ext().masq_index = out.ifindex
        rng = new_tuple(NatRange2, (r.flags | NF_NAT_RANGE_MAP_IPS, newsrc, newsrc, r.min_port, r.max_port, 0))
        return eng.nat_setup(s, rng, NAT_MANIP_SRC)

    return tg


def _redirect(t: T.Redirect, eng: Engine) -> Action:
    """nf_nat_redirect_ipv4(): to the incoming device's first primary address (127.0.0.1 for local packets)."""
    r = t.range

    def tg(s: Skb) -> int:
        if s.hook == NF_INET_LOCAL_OUT:
            newdst = 0x7F000001
        else:
            dev = s.indev
            newdst = dev.addrs[0].local if dev is not None and dev.nprim else 0
            if not newdst:
                return NF_DROP
        rng = NatRange2(r.flags | NF_NAT_RANGE_MAP_IPS, newdst, newdst, r.min_port, r.max_port)
        return eng.nat_setup(s, rng, NAT_MANIP_DST)

    return tg


def _netmap(t: T.Netmap, eng: Engine) -> Action:
    """netmap_tg4(): keep the host part, take the target's network part."""
    netmask = t.mask
    net = t.min_ip & netmask

    def tg(s: Skb) -> int:
        hook = s.hook
        old = s.daddr if hook in (NF_INET_PRE_ROUTING, NF_INET_LOCAL_OUT) else s.saddr
        new = (old & ~netmask & 0xFFFFFFFF) | net
        return eng.nat_setup(s, NatRange2(NF_NAT_RANGE_MAP_IPS, new, new), hook2manip(hook))

    return tg

