"""Route decisions: fib_lookup() over the RPDB, then the output and input paths.

`route_output` mirrors ip_route_output_key_hash_rcu() and `route_input` mirrors
ip_route_input_slow() (net/ipv4/route.c): the checks, the errors and the source
address chosen are the kernel's, so `ip route get` answers the same.
"""

from __future__ import annotations

import bisect
import errno
from typing import NamedTuple

from ipgate.errors import NetlinkError
from ipgate.inet import (
    INADDR_LOOPBACK,
    IPTOS_RT_MASK,
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTN_BROADCAST,
    RTN_LOCAL,
    RTN_MULTICAST,
    RTN_NAT,
    RTN_UNICAST,
    is_lbcast,
    is_local_multicast,
    is_loopback,
    is_multicast,
    is_zeronet,
)
from ipgate.link.device import LOOPBACK_IFINDEX, Device
from ipgate.packet.fastnew import new_tuple
from ipgate.route.fib import FibNh, FibResult
from ipgate.route.multipath import select_multipath
from ipgate.route.rules import (
    FR_ACT_BLACKHOLE,
    FR_ACT_GOTO,
    FR_ACT_NAT,
    FR_ACT_NOP,
    FR_ACT_PROHIBIT,
    FR_ACT_TO_TBL,
    FR_ACT_UNREACHABLE,
    Flow,
    rule_match,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipgate.stack import Stack

_RULE_ERR = {FR_ACT_UNREACHABLE: -errno.ENETUNREACH, FR_ACT_PROHIBIT: -errno.EACCES,
             FR_ACT_BLACKHOLE: -errno.EINVAL}


def fib_lookup(stack: Stack, fl: Flow) -> FibResult | int:
    """fib_rules_lookup() + fib4_rule_action(): a result or a negative errno."""
    res = fib_rules_lookup(stack, fl)
    return res[0]


def fib_rules_lookup(stack: Stack, fl: Flow) -> tuple[FibResult | int, int]:
    """Walk the RPDB.  Returns (result or -errno, priority of the deciding rule)."""
    rules = stack.rules.rules
    index = stack.rules.index
    trivial = index.trivial
    cands = index.candidates(fl)  # sorted positions of rules that may match
    tos = fl.tos & IPTOS_RT_MASK
    i = 0
    n = len(cands)
    while i < n:
        pos = cands[i]
        r = rules[pos]
        i += 1
        if pos not in trivial and not rule_match(r, fl):
            continue
        act = r.action
        if act == FR_ACT_GOTO:
            tgt = stack.rules.target_index(r.target)
            if tgt < 0:
                continue
            i = bisect.bisect_left(cands, tgt)  # go on from the target
            continue
        if act == FR_ACT_NOP:
            continue
        if act not in (FR_ACT_TO_TBL, FR_ACT_NAT):
            err = _RULE_ERR.get(act, -errno.EINVAL)
            return err, r.pref
        # A historical `nat` rule looks its table up like `lookup`; the source
        # rewrite it asks for belongs to the packet path.
        t = stack.tables.get(r.table)
        if t is None:
            continue
        res = t.lookup(fl.daddr, tos, fl.scope, fl.oif)
        if isinstance(res, int):
            if res == -errno.EAGAIN:
                continue
            return res, r.pref
        if r.suppress_prefixlen >= 0 and res.prefixlen <= r.suppress_prefixlen:
            continue
        if res.table == RT_TABLE_LOCAL and not stack.custom_rules:
            # Until a rule is added the kernel merges local into main's trie
            # (fib_trie_unmerge() undoes it), so local hits report table main.
            res = res._replace(table=RT_TABLE_MAIN)
        return res, r.pref
    return -errno.ENETUNREACH, -1  # -ESRCH becomes -ENETUNREACH in fib_lookup()



class Route(NamedTuple):
    """A routing decision, with what `ip route get` prints of it."""

    type: int
    daddr: int
    saddr: int  # the `from` given, or 0
    prefsrc: int  # the source address chosen
    dev: Device
    gateway: int
    table: int  # 0 when no table decided (on-link assumption, broadcast...)
    input: bool
    iif: int
    flags: tuple[str, ...]  # cache flags: local, brd, redirect...
    res: FibResult | None
    rule_pref: int
    mark: int = 0


ROUTE_CACHE_MAX = 1 << 16


def _cached(stack: Stack, key: object) -> Route | None:
    """The decision cache: one dict lookup for a flow seen since the last change.

    Like the kernel's dst cache, an answer holds until anything it depends on
    changes; here every such change bumps `stack.gen`, which empties the cache.
    """
    if stack.route_cache_gen != stack.gen.value:
        stack.route_cache.clear()
        stack.route_cache_gen = stack.gen.value
        return None
    hit = stack.route_cache.get(key)
    if hit is None:
        return None
    if isinstance(hit, NetlinkError):
        raise NetlinkError(hit.errno, hit.extack)
    assert isinstance(hit, Route)
    return hit


def _remember(stack: Stack, key: object, answer: Route | NetlinkError) -> None:
    cache = stack.route_cache
    if len(cache) >= ROUTE_CACHE_MAX:
        cache.clear()  # bounded: start over rather than grow
    cache[key] = answer


def route_output(stack: Stack, fl: Flow, anysrc: bool = False) -> Route:
    """ip_route_output_key_hash_rcu() for a locally generated packet (cached).

    `anysrc` is FLOWI_FLAG_ANYSRC: the source need not be ours (packets sent
    on behalf of another host, like REJECT's resets).
    """
    key: object = (fl, 1) if anysrc else fl
    hit = _cached(stack, key)
    if hit is not None:
        return hit
    try:
        r = _route_output(stack, fl, anysrc)
    except NetlinkError as e:
        _remember(stack, key, e)
        raise
    _remember(stack, key, r)
    return r


def _route_output(stack: Stack, fl: Flow, anysrc: bool = False) -> Route:
    """ip_route_output_key_hash_rcu() for a locally generated packet."""
    saddr = fl.saddr
    oif = fl.oif
    dev_out: Device | None = None
    if saddr:
        if is_multicast(saddr) or is_lbcast(saddr) or is_zeronet(saddr):
            raise NetlinkError(errno.EINVAL)
        if not oif and (is_multicast(fl.daddr) or is_lbcast(fl.daddr)):
            dev_out = stack.dev_find(saddr)
            if dev_out is None:
                raise NetlinkError(errno.ENETUNREACH)
            return _mkroute_output(stack, fl, None, dev_out, saddr, 0, -1)
        if not anysrc and stack.dev_find(saddr) is None:
            raise NetlinkError(errno.ENETUNREACH)
    if oif:
        dev_out = stack.by_index.get(oif)
        if dev_out is None:
            raise NetlinkError(errno.ENODEV)
        if not dev_out.up:
            raise NetlinkError(errno.ENETUNREACH)
        if is_local_multicast(fl.daddr) or is_lbcast(fl.daddr):
            if not saddr:
                saddr = stack.select_addr(dev_out, 0, RT_SCOPE_LINK)
            return _mkroute_output(stack, fl, None, dev_out, saddr, 0, -1)
        if not saddr:
            if is_multicast(fl.daddr):
                saddr = stack.select_addr(dev_out, 0, fl.scope)
            elif not fl.daddr:
                saddr = stack.select_addr(dev_out, 0, RT_SCOPE_HOST)
    if not fl.daddr:
        daddr = saddr or INADDR_LOOPBACK
        lo = stack.by_index[LOOPBACK_IFINDEX]
        return Route(RTN_LOCAL, daddr, fl.saddr, daddr, lo, 0, 0, False, 0, ("local",), None, -1, fl.mark)

    res, pref = fib_rules_lookup(stack, Flow(fl.daddr, saddr, fl.iif or LOOPBACK_IFINDEX, oif, fl.mark,
                                             fl.tos, fl.proto, fl.sport, fl.dport, fl.scope))
    if isinstance(res, int):
        if oif and dev_out is not None:
            # "Apparently, routing tables are wrong. Assume, that the destination is on link."
            if not saddr:
                saddr = stack.select_addr(dev_out, 0, RT_SCOPE_LINK)
            return _mkroute_output(stack, fl, None, dev_out, saddr, 0, -1)
        raise NetlinkError(-res)

    if res.type == RTN_LOCAL:
        if not saddr:
            saddr = res.info.prefsrc or fl.daddr
        lo = stack.by_index[LOOPBACK_IFINDEX]
        return _mkroute_output(stack, fl, res, lo, saddr, 0, pref)

    if res.type == RTN_NAT:
        raise NetlinkError(errno.EINVAL)

    if not oif and len(res.info.nhs) > 1:
        # the probe skb of `ip route get` carries the given source (0 if none)
        res = select_multipath(stack, res, fl.saddr, fl.daddr, fl, prefer_saddr=True)
    if not saddr:
        saddr = prefsrc_of(stack, res)
    dev = stack.by_index[res.nh.oif]
    return _mkroute_output(stack, fl, res, dev, saddr, _uses_gateway(res), pref)


def _uses_gateway(res: FibResult) -> int:
    """rt_set_nexthop(): the gateway is used only when it is on-link (scope link)."""
    nh = res.nh
    return nh.gw if nh.gw and nh.scope == RT_SCOPE_LINK else 0


def prefsrc_of(stack: Stack, res: FibResult) -> int:
    """fib_result_prefsrc(): the route's src, else inet_select_addr(dev, gw, scope).

    The kernel caches the answer in the nexthop (nh_saddr, nh_saddr_genid);
    here a dict keyed by nexthop and scope, emptied by any change (stack.gen).
    """
    fi = res.info
    if fi.prefsrc:
        return fi.prefsrc
    return nh_saddr(stack, res.nh, fi.scope)


def nh_saddr(stack: Stack, nh: FibNh, scope: int) -> int:
    """fib_info_update_nhc_saddr(): a nexthop's source, cached until the next change."""
    cache = stack.saddr_cache
    if stack.saddr_cache_gen != stack.gen.value:
        cache.clear()
        stack.saddr_cache_gen = stack.gen.value
    key = (nh, scope)
    saddr = cache.get(key)
    if saddr is None:
        saddr = cache[key] = stack.select_addr(stack.by_index[nh.oif], nh.gw, scope)
    return saddr


def _mkroute_output(stack: Stack, fl: Flow, res: FibResult | None, dev_out: Device, saddr: int,
                    gw: int, pref: int) -> Route:
    """__mkroute_output()."""
    if is_loopback(saddr) and not dev_out.loopback:
        raise NetlinkError(errno.EINVAL)
    rtype = res.type if res is not None else RTN_UNICAST
    if is_lbcast(fl.daddr):
        rtype = RTN_BROADCAST
    elif is_multicast(fl.daddr):
        rtype = RTN_MULTICAST
    elif is_zeronet(fl.daddr):
        raise NetlinkError(errno.EINVAL)
    flags: list[str] = []
    if dev_out.loopback or rtype == RTN_LOCAL:
        flags.append("local")
    if rtype == RTN_BROADCAST:
        flags = ["local", "brd"]
        table = res.table if res is not None else 0
        return Route(rtype, fl.daddr, fl.saddr, saddr, dev_out, 0, table, False, 0, tuple(flags), None, pref,
                     fl.mark)
    elif rtype == RTN_MULTICAST:
        flags = ["mc"]
    table = res.table if res is not None else 0
    return Route(rtype, fl.daddr, fl.saddr, saddr, dev_out, gw if res is not None else 0, table, False, 0,
                 tuple(flags), res, pref, fl.mark)


def route_input(stack: Stack, fl: Flow, dev: Device) -> Route:
    """ip_route_input_slow() for a packet from `dev` (cached)."""
    key = (fl, dev.ifindex)
    hit = _cached(stack, key)
    if hit is not None:
        return hit
    try:
        r = _route_input(stack, fl, dev)
    except NetlinkError as e:
        _remember(stack, key, e)
        raise
    _remember(stack, key, r)
    return r


def _route_input(stack: Stack, fl: Flow, dev: Device) -> Route:
    """ip_route_input_slow(): a packet from `dev`.  Errors as `ip route get ... iif` shows them."""
    saddr, daddr = fl.saddr, fl.daddr
    forward = _forwarding(stack, dev)
    s8, d8 = saddr >> 24, daddr >> 24
    if not (0 < s8 < 224 and 0 < d8 < 224 and s8 != 127 and d8 != 127):
        # not two ordinary unicast addresses (the usual case, which none of these checks concern)
        if is_multicast(saddr) or is_lbcast(saddr):
            raise NetlinkError(errno.EINVAL)  # martian source
        if is_lbcast(daddr) or (saddr == 0 and daddr == 0):
            return _brd_input(stack, fl, dev)
        if is_zeronet(saddr) or is_zeronet(daddr):
            raise NetlinkError(errno.EINVAL)
        if (is_loopback(daddr) or is_loopback(saddr)) and not stack.route_localnet(dev):
            raise NetlinkError(errno.EINVAL)  # martian unless route_localnet
        if is_multicast(daddr):
            raise NetlinkError(errno.EINVAL)
    if fl.iif == dev.ifindex and not fl.oif and not fl.scope:
        key = fl  # already the flow looked up (the engine's)
    else:
        key = new_tuple(Flow, (daddr, saddr, dev.ifindex, 0, fl.mark, fl.tos, fl.proto, fl.sport, fl.dport, 0))
    res, pref = fib_rules_lookup(stack, key)
    if isinstance(res, int):
        err = -res if forward else errno.EHOSTUNREACH
        raise NetlinkError(err)
    if res.type == RTN_BROADCAST:
        return _brd_input(stack, fl, dev, res)
    if res.type == RTN_LOCAL:
        _validate_source(stack, fl, dev, 0)
        lo = stack.by_index[LOOPBACK_IFINDEX]
        return Route(RTN_LOCAL, daddr, saddr, 0, lo, 0, res.table, True, dev.ifindex, ("local",), res,
                     pref, fl.mark)
    if not forward:
        raise NetlinkError(errno.EHOSTUNREACH)
    if res.type != RTN_UNICAST:
        raise NetlinkError(errno.EINVAL)  # martian destination
    if len(res.info.nhs) > 1:
        res = select_multipath(stack, res, saddr, daddr, fl)
    nh = res.nh
    out = stack.by_index[nh.oif]
    onlink = _validate_source(stack, fl, dev, out.ifindex)
    flags: tuple[str, ...] = ()
    if out is dev and onlink:
        shared_media = stack.sysctl.get("net.ipv4.conf.all.shared_media", 1) or stack.devconf(dev, "shared_media")
        if shared_media or _onlink(out, saddr, nh.gw):
            flags = ("redirect",)
    gw = nh.gw if nh.gw and nh.scope == RT_SCOPE_LINK else 0  # _uses_gateway()
    return new_tuple(Route, (RTN_UNICAST, daddr, saddr, 0, out, gw, res.table, True, dev.ifindex, flags, res, pref,
                             fl.mark))


def _onlink(dev: Device, saddr: int, gw: int) -> bool:
    """inet_addr_onlink(): saddr (and gw) inside a subnet of dev."""
    for a in dev.addrs:
        if a.match(saddr) and (not gw or a.match(gw)):
            return True
    return False


def _forwarding(stack: Stack, dev: Device) -> bool:
    return bool(stack.devconf(dev, "forwarding"))


def _brd_input(stack: Stack, fl: Flow, dev: Device, res: FibResult | None = None) -> Route:
    if not is_zeronet(fl.saddr):
        _validate_source(stack, Flow(0, fl.saddr, fl.iif, 0, fl.mark, fl.tos), dev, 0)
    lo = stack.by_index[LOOPBACK_IFINDEX]
    return Route(RTN_BROADCAST, fl.daddr, fl.saddr, 0, lo, 0, res.table if res else 0, True, dev.ifindex,
                 ("local", "brd"), None, -1, fl.mark)


def _rp_filter(stack: Stack, dev: Device) -> int:
    # IN_DEV_RPFILTER(): the larger of "all" and the device's value
    return max(stack.sysctl.get("net.ipv4.conf.all.rp_filter", 0), stack.devconf(dev, "rp_filter"))


def _validate_source(stack: Stack, fl: Flow, dev: Device, oif: int) -> int:
    """fib_validate_source(): raise for a martian source; 1 if it is on-link via dev."""
    rpf = _rp_filter(stack, dev)
    accept_local = stack.sysctl.get("net.ipv4.conf.all.accept_local", 0) or stack.devconf(dev, "accept_local")
    if not rpf and dev.ifindex != oif:
        if accept_local:
            return 0
        if not (stack.custom_local_routes or stack.custom_rules):
            if stack.dev_find(fl.saddr) is not None:
                raise NetlinkError(errno.EINVAL)
            return 0
    # __fib_validate_source(): look the source up as a destination, as if sent by us.
    rev = Flow(fl.saddr, fl.daddr, oif or LOOPBACK_IFINDEX, 0, 0, fl.tos, fl.proto, fl.dport, fl.sport)
    res, _ = fib_rules_lookup(stack, rev)
    if isinstance(res, int):
        if rpf:
            raise NetlinkError(errno.EINVAL)
        return 0
    if res.type != RTN_UNICAST and (res.type != RTN_LOCAL or not accept_local):
        raise NetlinkError(errno.EINVAL)
    if any(nh.oif == dev.ifindex for nh in res.info.nhs) or (res.type == RTN_LOCAL and dev.loopback):
        return 1 if res.nh.scope >= RT_SCOPE_HOST else 0
    if not dev.addrs:
        if rpf:
            raise NetlinkError(errno.EINVAL)
        return 0
    if rpf == 1:
        raise NetlinkError(errno.EINVAL)
    rev2 = Flow(fl.saddr, fl.daddr, oif or LOOPBACK_IFINDEX, dev.ifindex, 0, fl.tos, fl.proto, fl.dport, fl.sport)
    res2, _ = fib_rules_lookup(stack, rev2)
    if not isinstance(res2, int) and res2.type == RTN_UNICAST:
        return 1 if res2.nh.scope >= RT_SCOPE_HOST else 0
    return 0
