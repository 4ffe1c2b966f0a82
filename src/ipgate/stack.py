"""The box's state: devices, addresses, FIB tables, rules and sysctls.

This is the sans-IO core of the routing box.  It mirrors the kernel's split:
`link.devinet` keeps address lists, this module plays the part of the
inetaddr/netdev notifiers (fib_frontend.c: fib_add_ifaddr, fib_del_ifaddr,
fib_disable_ip) and of fib_create_info()'s validation of new routes.
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Iterator

from ipgate.conntrack.helper import HelperRegistry
from ipgate.conntrack.table import ConntrackTable
from ipgate.errors import NetlinkError
from ipgate.inet import (
    INADDR_BROADCAST,
    MASKS,
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_TABLE_DEFAULT,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTN_BROADCAST,
    RTN_LOCAL,
    RTN_MULTICAST,
    RTN_NAT,
    RTN_UNICAST,
    RTPROT_KERNEL,
    is_lbcast,
    is_multicast,
    is_zeronet,
)
from ipgate.link import devinet
from ipgate.link.device import IFA_F_NOPREFIXROUTE, LOOPBACK_IFINDEX, Device, IfAddr
from ipgate.nat.ipnat.state import IpnatState
from ipgate.netfilter import Netfilter
from ipgate.route.config import FibConfig, NhConfig
from ipgate.route.fib import (
    FIB_PROPS,
    RTNH_F_ONLINK,
    FibAlias,
    FibInfo,
    FibNh,
    FibTable,
    Generation,
    Interner,
)
from ipgate.route.rules import Flow, RuleSet

DEFAULT_RT_TABLES = {0: "unspec", 253: "default", 254: "main", 255: "local"}

# Per-device IPv4 settings that routing consults (net.ipv4.conf.DEV.*).
DEVCONF_KEYS = ("forwarding", "rp_filter", "promote_secondaries", "accept_local", "route_localnet", "shared_media")

SYSCTL_DEFAULTS = {
    "net.ipv4.ip_forward": 0,
    "net.ipv4.conf.all.promote_secondaries": 0,
    "net.ipv4.conf.default.promote_secondaries": 0,
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
    "net.ipv4.conf.all.forwarding": 0,
    "net.ipv4.conf.default.forwarding": 0,
    "net.ipv4.ip_dynaddr": 0,
    "net.ipv4.conf.all.accept_local": 0,
    "net.ipv4.conf.default.accept_local": 0,
    "net.ipv4.conf.all.route_localnet": 0,
    "net.ipv4.conf.all.shared_media": 1,
    "net.ipv4.conf.default.shared_media": 1,
    "net.ipv4.conf.default.route_localnet": 0,
    "net.ipv4.fib_multipath_hash_policy": 0,
    "net.ipv4.fib_multipath_hash_seed": 0,
}


class Stack:
    """One network namespace's worth of IPv4 routing state."""

    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        self.by_index: dict[int, Device] = {}
        self._next_ifindex = 1
        self.interner = Interner()
        self.gen = Generation()  # bumped by every change a routing decision depends on
        # decision cache of route/lookup.py: flow -> Route or NetlinkError
        self.route_cache: dict[object, object] = {}
        self.route_cache_gen = -1
        # ifindexes of devices that are down: their nexthops are RTNH_F_DEAD
        self.down: set[int] = set()
        self.tables: dict[int, FibTable] = {}
        self.rules = RuleSet(self.gen)
        self.sysctl: dict[str, int] = dict(SYSCTL_DEFAULTS)
        self.rt_tables: dict[int, str] = dict(DEFAULT_RT_TABLES)
        self.netfilter = Netfilter()  # iptables tables; the packet engine (issue 3) will read them
        self.conntrack = ConntrackTable()  # connection tracking; fed by the packet engine (issue 3)
        self.ct_helpers = HelperRegistry()  # loaded conntrack helpers (modprobe nf_conntrack_ftp ...)
        self.ipnat = IpnatState()  # IP Filter NAT rules (`ipnat -f`) and the hook to its session table
        self.addr_genid = 0
        self.saddr_cache: dict[tuple[FibNh, int], int] = {}  # see route.lookup.prefsrc_of
        self.saddr_cache_gen = -1
        # inet_addr_lst: local address -> the interface addresses holding it
        self.locals: dict[int, list[IfAddr]] = {}
        # fib_has_custom_local_routes / fib_has_custom_rules: once set, source
        # validation always takes the full FIB path.
        self.custom_local_routes = False
        self.custom_rules = False
        for tb in (RT_TABLE_LOCAL, RT_TABLE_MAIN, RT_TABLE_DEFAULT):
            self.table(tb)
        lo = self.link_add("lo", "loopback")
        lo.mtu = 65536
        # A booted box: lo up with 127.0.0.1/8 (the kernel adds it when lo goes up).
        self.link_set_up(lo, True)
        self.addr_add(lo, IfAddr(local=0x7F000001, prefixlen=8, address=0x7F000001,
                                 scope=RT_SCOPE_HOST, label="lo"))

    # -- tables ------------------------------------------------------------
    def table(self, tb_id: int) -> FibTable:
        """fib_new_table(): get or create."""
        t = self.tables.get(tb_id)
        if t is None:
            t = self.tables[tb_id] = FibTable(tb_id, self.interner, self.down, self.gen)
        return t

    def table_name(self, tb_id: int) -> str:
        return self.rt_tables.get(tb_id, str(tb_id))

    def table_id(self, name: str) -> int:
        """rtnl_rttable_a2n(): a name from rt_tables or a number."""
        for k, v in self.rt_tables.items():
            if v == name:
                return k
        try:
            n = int(name, 0)
        except ValueError:
            raise ValueError(f'"{name}" is not a valid table') from None
        if not 0 <= n <= 0xFFFFFFFF:
            raise ValueError(f'"{name}" is not a valid table')
        return n

    # -- devices -----------------------------------------------------------
    def dev(self, name: str) -> Device:
        d = self.devices.get(name)
        if d is None:
            raise NetlinkError(errno.ENODEV)
        return d

    def link_add(self, name: str, kind: str, peer: str = "") -> Device:
        if name in self.devices or (peer and peer in self.devices):
            raise NetlinkError(errno.EEXIST)
        if not name or len(name) > 15 or "/" in name or " " in name:
            raise NetlinkError(errno.EINVAL)
        d = self._new_device(name, kind)
        if kind == "veth":
            p = self._new_device(peer or f"veth{d.ifindex}", kind)
            d.peer, p.peer = p.name, d.name
        return d

    def _new_device(self, name: str, kind: str) -> Device:
        idx = self._next_ifindex
        self._next_ifindex += 1
        # Stable made-up MAC per name (locally administered), so listings are reproducible.
        mac = b"\x00" * 6 if kind in ("loopback", "tun") else bytes(
            [0x02] + list(hashlib.sha256(name.encode()).digest()[:5]))
        d = Device(ifindex=idx, name=name, kind=kind, mac=mac,
                   qlen=500 if kind == "tun" else 1000)
        self.down.add(idx)
        self.devices[name] = d
        self.by_index[idx] = d
        for key in DEVCONF_KEYS:
            self.sysctl[f"net.ipv4.conf.{name}.{key}"] = self.sysctl.get(f"net.ipv4.conf.default.{key}", 0)
        self.rules.resolve_devices(self.ifindexes())
        return d

    def ifindexes(self) -> dict[str, int]:
        return {n: d.ifindex for n, d in self.devices.items()}

    def link_del(self, d: Device) -> None:
        if d.loopback:
            raise NetlinkError(errno.EOPNOTSUPP)
        self.link_set_up(d, False)
        for ifa in list(reversed(d.addrs)):
            if ifa in d.addrs:
                self.addr_del(d, ifa)
        for t in self.tables.values():
            t.flush_aliases(lambda fa: any(nh.oif == d.ifindex for nh in fa.info.nhs))
        del self.devices[d.name]
        del self.by_index[d.ifindex]
        self.down.discard(d.ifindex)
        for key in DEVCONF_KEYS:
            self.sysctl.pop(f"net.ipv4.conf.{d.name}.{key}", None)
        if d.peer and d.peer in self.devices:
            other = self.devices[d.peer]
            other.peer = ""
            self.link_del(other)
        self.rules.resolve_devices(self.ifindexes())

    def link_rename(self, d: Device, new: str) -> None:
        if new in self.devices:
            raise NetlinkError(errno.EEXIST)
        del self.devices[d.name]
        for ifa in d.addrs:
            # Labels follow the device name (devinet.c inetdev_changename).
            suffix = ifa.label[len(d.name):] if ifa.label.startswith(d.name) else ""
            ifa.label = new + suffix
        for key in DEVCONF_KEYS:
            self.sysctl[f"net.ipv4.conf.{new}.{key}"] = self.sysctl.pop(f"net.ipv4.conf.{d.name}.{key}", 0)
        d.name = new
        self.devices[new] = d
        self.rules.resolve_devices(self.ifindexes())

    def link_set_up(self, d: Device, up: bool) -> None:
        if d.up == up:
            return
        d.up = up
        if up:
            # NETDEV_UP: fib_netdev_event() re-adds every address's routes and
            # fib_sync_up() revives multipath nexthops through d.
            self.down.discard(d.ifindex)
            for ifa in list(d.addrs):
                self.fib_add_ifaddr(ifa)
        else:
            # NETDEV_DOWN: fib_disable_ip() -> fib_sync_down_dev() + fib_flush():
            # routes whose nexthops are all on d die, except host-scope ones (local);
            # multipath routes keep their nexthops on d, marked dead.
            self.down.add(d.ifindex)
            for t in self.tables.values():
                t.flush_aliases(lambda fa: _all_nhs_dead(fa, self.down))
        self.addr_genid += 1
        self.gen.bump()


    # -- addresses (devinet.c + fib_frontend.c) ---------------------------
    def devconf(self, d: Device, key: str) -> int:
        return self.sysctl.get(f"net.ipv4.conf.{d.name}.{key}", 0)

    def promote_secondaries(self, d: Device) -> bool:
        # IN_DEV_ORCONF(): "all" or the device's own setting
        return bool(self.sysctl.get("net.ipv4.conf.all.promote_secondaries") or self.devconf(d, "promote_secondaries"))

    def route_localnet(self, d: Device) -> bool:
        return bool(self.sysctl.get("net.ipv4.conf.all.route_localnet") or self.devconf(d, "route_localnet"))

    def set_sysctl(self, key: str, value: int) -> None:
        """Write a sysctl with the kernel's side effects (devinet_sysctl_forward)."""
        if key in ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding"):
            # inet_forward_change(): every device, "all", "default" and ip_forward follow
            for k in [k for k in self.sysctl if k.endswith(".forwarding")]:
                self.sysctl[k] = value
            self.sysctl["net.ipv4.ip_forward"] = value
        self.sysctl[key] = value
        self.gen.bump()

    def addr_add(self, d: Device, ifa: IfAddr) -> None:
        ifa.ifindex = d.ifindex
        if not ifa.label:
            ifa.label = d.name
        devinet.insert_ifa(d, ifa)
        self.locals.setdefault(ifa.local, []).append(ifa)
        self.addr_genid += 1
        self.gen.bump()
        self.fib_add_ifaddr(ifa)

    def addr_del(self, d: Device, ifa: IfAddr) -> None:
        """__inet_del_ifa(): unlink, tell the FIB, promote a secondary if asked."""
        promoted: IfAddr | None = None
        followers: list[IfAddr] = []
        if not ifa.secondary:
            secs = devinet.subnet_secondaries(d, ifa)
            if self.promote_secondaries(d) and secs:
                promoted, followers = secs[0], secs[1:]
                # their routes change prefsrc: remove them now, re-add after promotion
                for sec in secs:
                    self.fib_del_ifaddr(sec, iprim=ifa)
            else:
                for sec in secs:
                    self._unlink(d, sec)
                    self.fib_del_ifaddr(sec)
        self._unlink(d, ifa)
        self.fib_del_ifaddr(ifa)
        if promoted is not None:
            devinet.promote(d, promoted)
            self.fib_add_ifaddr(promoted)
            for sec in followers:
                self.fib_add_ifaddr(sec)
        if not d.addrs:
            # fib_inetaddr_event(): the last address gone disables IP on d
            # (fib_disable_ip(dev, NETDEV_DOWN, force)): every route through d dies.
            idx = d.ifindex
            for t in self.tables.values():
                t.flush_aliases(lambda fa: bool(fa.info.nhs) and all(nh.oif == idx for nh in fa.info.nhs))

    def _unlink(self, d: Device, ifa: IfAddr) -> None:
        devinet.unlink(d, ifa)
        held = self.locals[ifa.local]
        held.remove(ifa)
        if not held:
            del self.locals[ifa.local]
        self.addr_genid += 1
        self.gen.bump()

    def fib_del_ifaddr(self, ifa: IfAddr, iprim: IfAddr | None = None) -> None:
        """fib_del_ifaddr(): remove the kernel routes of `ifa` that no other address still needs."""
        d = self.by_index[ifa.ifindex]
        brd = ifa.address | (~ifa.mask & 0xFFFFFFFF)
        any_ = ifa.address & ifa.mask
        prim = ifa
        subnet = False
        if ifa.secondary:
            found = d.primary_for(any_, ifa.mask)
            if found is None:
                return
            prim = found
        elif not is_zeronet(any_) and (any_ != ifa.local or ifa.prefixlen < 32):
            if not ifa.flags & IFA_F_NOPREFIXROUTE:
                self.fib_magic(False, RTN_LOCAL if d.loopback else RTN_UNICAST, any_, ifa.prefixlen,
                               d.ifindex, prim.local)
            subnet = True
        local_ok = brd_ok = brd0_ok = brd1_ok = False
        gone = True
        same_prefsrc = False
        prim1: IfAddr | None = None
        # Scan the device's addresses for ones that still need these routes
        # (the same prefsrc); the kernel's loop, including its prim1 bookkeeping.
        for ifa1 in d.addrs:
            if ifa1 is ifa:
                gone = False
                continue
            if iprim is not None and ifa1.mask == iprim.mask and iprim.match(ifa1.address):
                continue
            if ifa1.secondary:
                if ifa1.mask == prim.mask and prim.match(ifa1.address):
                    prim1 = prim
                else:
                    if not same_prefsrc:
                        continue
                    if prim1 is None or ifa1.mask != prim1.mask or not prim1.match(ifa1.address):
                        prim1 = d.primary_for(ifa1.address & ifa1.mask, ifa1.mask)
                    if prim1 is None or prim1.local != prim.local:
                        continue
            else:
                if prim.local != ifa1.local:
                    continue
                prim1 = ifa1
                if prim is not prim1:
                    same_prefsrc = True
            local_ok |= ifa.local == ifa1.local
            brd_ok |= ifa.broadcast == ifa1.broadcast
            brd1_ok |= brd == ifa1.broadcast
            brd0_ok |= any_ == ifa1.broadcast
            if prim1 is ifa1 and ifa1.prefixlen < 31:
                brd_1 = ifa1.address | (~ifa1.mask & 0xFFFFFFFF)
                any_1 = ifa1.address & ifa1.mask
                if not is_zeronet(any_1):
                    brd_ok |= ifa.broadcast in (brd_1, any_1)
                    brd1_ok |= brd in (brd_1, any_1)
                    brd0_ok |= any_ in (brd_1, any_1)
        if not brd_ok:
            self.fib_magic(False, RTN_BROADCAST, ifa.broadcast, 32, d.ifindex, prim.local)
        if subnet and ifa.prefixlen < 31:
            if not brd1_ok:
                self.fib_magic(False, RTN_BROADCAST, brd, 32, d.ifindex, prim.local)
            if not brd0_ok:
                self.fib_magic(False, RTN_BROADCAST, any_, 32, d.ifindex, prim.local)
        if not local_ok:
            self.fib_magic(False, RTN_LOCAL, ifa.local, 32, d.ifindex, prim.local)
            if gone and self.addr_type(ifa.local, RT_TABLE_LOCAL, d) != RTN_LOCAL:
                self._sync_down_addr(ifa.local)

    def _sync_down_addr(self, local: int) -> None:
        """fib_sync_down_addr() + fib_flush(): main-table routes whose prefsrc vanished die."""
        t = self.tables.get(RT_TABLE_MAIN)
        if t is not None:
            t.flush_aliases(lambda fa: fa.info.prefsrc == local)

    def fib_magic(self, add: bool, rtype: int, dst: int, plen: int, oif: int, prefsrc: int) -> None:
        """fib_magic(): the routes the kernel maintains for addresses."""
        tb = self.table(RT_TABLE_MAIN if rtype == RTN_UNICAST else RT_TABLE_LOCAL)
        scope = RT_SCOPE_HOST if rtype == RTN_LOCAL else RT_SCOPE_LINK
        nh_scope = RT_SCOPE_NOWHERE if rtype == RTN_LOCAL else RT_SCOPE_HOST
        info = FibInfo(RTPROT_KERNEL, scope, prefsrc, 0, (FibNh(0, oif, 1, 0, nh_scope),))
        fa = FibAlias(rtype, 0, info)
        if add:
            try:
                tb.insert(dst, plen, fa, excl=False, append=True)
            except NetlinkError:
                pass
        else:
            for old in tb.leaf(dst, plen):
                if (old.type == rtype and old.info.prefsrc == prefsrc and old.info.protocol == RTPROT_KERNEL
                        and old.info.nhs and old.info.nhs[0].oif == oif and old.tos == 0):
                    tb.remove(dst, plen, old)
                    break

    def fib_add_ifaddr(self, ifa: IfAddr) -> None:
        d = self.by_index[ifa.ifindex]
        prim = ifa
        if ifa.secondary:
            p = d.primary_for(ifa.address & ifa.mask, ifa.mask)
            if p is None:
                return
            prim = p
        src = prim.local
        self.fib_magic(True, RTN_LOCAL, ifa.local, 32, d.ifindex, src)
        if not d.up:
            return
        if ifa.broadcast and ifa.broadcast != INADDR_BROADCAST:
            self.fib_magic(True, RTN_BROADCAST, ifa.broadcast, 32, d.ifindex, src)
        prefix = ifa.address & ifa.mask
        if not is_zeronet(prefix) and not ifa.secondary and (prefix != ifa.local or ifa.prefixlen < 32):
            if not ifa.flags & IFA_F_NOPREFIXROUTE:
                self.fib_magic(True, RTN_LOCAL if d.loopback else RTN_UNICAST, prefix,
                               ifa.prefixlen, d.ifindex, src)
            if ifa.prefixlen < 31:
                self.fib_magic(True, RTN_BROADCAST, prefix | (~ifa.mask & 0xFFFFFFFF), 32, d.ifindex, src)

    # -- address queries ---------------------------------------------------
    def addr_type(self, addr: int, tb_id: int = RT_TABLE_LOCAL, dev: Device | None = None) -> int:
        """inet_addr_type_table(): what table `tb_id` says addr is."""
        if is_zeronet(addr) or is_lbcast(addr):
            return RTN_BROADCAST
        if is_multicast(addr):
            return RTN_MULTICAST
        t = self.tables.get(tb_id)
        if t is None:
            return RTN_UNICAST
        res = t.lookup(addr, 0, 0, 0)
        if isinstance(res, int):
            return RTN_UNICAST
        if dev is not None and res.nh_sel >= 0 and res.nh.oif != dev.ifindex:
            return RTN_UNICAST
        return res.type

    def dev_find(self, addr: int) -> Device | None:
        """__ip_dev_find(): the device holding local address addr.

        Falls back to the local table so that loopback subnets (127/8) count.
        """
        held = self.locals.get(addr)
        if held:
            return self.by_index[held[0].ifindex]
        t = self.tables.get(RT_TABLE_LOCAL)
        if t is not None:
            res = t.lookup(addr, 0, 0, 0)
            if not isinstance(res, int) and res.type == RTN_LOCAL and res.nh_sel >= 0:
                return self.by_index.get(res.nh.oif)
        return None

    def select_addr(self, d: Device, dst: int, scope: int) -> int:
        """inet_select_addr(): a primary source address for dst on d, else any device."""
        addr = 0
        localnet_scope = RT_SCOPE_LINK if self.route_localnet(d) else RT_SCOPE_HOST
        for a in d.primaries():
            if min(a.scope, localnet_scope) > scope:
                continue
            if not dst or a.match(dst):
                return a.local
            if not addr:
                addr = a.local
        if addr:
            return addr
        for other in sorted(self.by_index.values(), key=lambda x: x.ifindex):
            for a in other.primaries():
                if a.scope != RT_SCOPE_LINK and a.scope <= scope:
                    return a.local
        return 0

    def all_addrs(self) -> Iterator[tuple[Device, IfAddr]]:
        for d in sorted(self.by_index.values(), key=lambda x: x.ifindex):
            for a in d.addrs:
                yield d, a

    # -- routes (fib_create_info + fib_table_insert/delete) ----------------
    def route_add(self, cfg: FibConfig) -> None:
        fa = self._create_alias(cfg)
        if cfg.type == RTN_LOCAL:
            self.custom_local_routes = True
        self.table(cfg.table).insert(cfg.dst, cfg.dst_len, fa, create=cfg.create, excl=cfg.excl,
                                     replace=cfg.replace, append=cfg.append)

    def _create_alias(self, cfg: FibConfig) -> FibAlias:
        if cfg.dst_len < 32 and cfg.dst & ~MASKS[cfg.dst_len] & 0xFFFFFFFF:
            raise NetlinkError(errno.EINVAL, "Invalid prefix for given prefix length")
        if cfg.type not in FIB_PROPS:
            raise NetlinkError(errno.EINVAL, "Invalid route type")
        if cfg.scope > RT_SCOPE_HOST:
            raise NetlinkError(errno.EINVAL, "Invalid scope")
        err, min_scope = FIB_PROPS[cfg.type]
        if min_scope > cfg.scope:
            raise NetlinkError(errno.EINVAL, "Invalid scope")
        if cfg.tos & 3:
            raise NetlinkError(errno.EINVAL, "Invalid dsfield (tos): ECN bits must be 0")
        metrics = tuple(sorted(cfg.metrics.items()))
        nhs: tuple[FibNh, ...] = ()
        if cfg.type == RTN_NAT:
            # Historical stateless NAT route: "via" is the translated address.
            nhs = (FibNh(cfg.gw, cfg.oif, 1, 0, RT_SCOPE_NOWHERE),)
        elif err:
            if cfg.gw or cfg.oif or cfg.multipath:
                raise NetlinkError(errno.EINVAL,
                                   "Gateway, device and multipath can not be specified for this route type")
        elif cfg.scope == RT_SCOPE_HOST:
            if cfg.multipath:
                raise NetlinkError(errno.EINVAL, "Route with host scope can not have multiple nexthops")
            if cfg.gw:
                raise NetlinkError(errno.EINVAL, "Route with host scope can not have a gateway")
            if not cfg.oif:
                raise NetlinkError(errno.ENODEV, "Nexthop device required")
            if cfg.oif not in self.by_index:
                raise NetlinkError(errno.ENODEV)
            nhs = (FibNh(0, cfg.oif, 1, 0, RT_SCOPE_NOWHERE),)
        else:
            specs = cfg.multipath or [NhConfig(cfg.gw, cfg.oif, 1, cfg.onlink)]
            nhs = tuple(self._check_nh(spec, cfg) for spec in specs)
        if cfg.prefsrc and not self._valid_prefsrc(cfg):
            raise NetlinkError(errno.EINVAL, "Invalid prefsrc address")
        info = FibInfo(cfg.protocol, cfg.scope, cfg.prefsrc, cfg.priority, nhs, metrics)
        return FibAlias(cfg.type, cfg.tos, info)

    def _valid_prefsrc(self, cfg: FibConfig) -> bool:
        """fib_valid_prefsrc()."""
        if cfg.type == RTN_LOCAL and cfg.dst and cfg.prefsrc == cfg.dst:
            return True
        tb = RT_TABLE_LOCAL if cfg.table == RT_TABLE_MAIN else cfg.table
        rc = self.addr_type(cfg.prefsrc, tb)
        if rc != RTN_LOCAL and tb != RT_TABLE_LOCAL:
            rc = self.addr_type(cfg.prefsrc, RT_TABLE_LOCAL)
        return rc == RTN_LOCAL

    def _check_nh(self, nh: NhConfig, cfg: FibConfig) -> FibNh:
        """fib_check_nh(): resolve a nexthop's device and scope."""
        if nh.oif and nh.oif not in self.by_index:
            raise NetlinkError(errno.ENODEV)
        flags = RTNH_F_ONLINK if nh.onlink else 0
        if not nh.gw:
            if nh.onlink:
                raise NetlinkError(errno.EINVAL, "Invalid flags for nexthop - PERVASIVE and ONLINK can not be set")
            d = self.by_index.get(nh.oif)
            if d is None:
                raise NetlinkError(errno.ENODEV)
            if not d.up:
                raise NetlinkError(errno.ENETDOWN, "Device for nexthop is not up")
            return FibNh(0, nh.oif, nh.weight, flags, RT_SCOPE_HOST)
        if nh.onlink:
            if cfg.scope >= RT_SCOPE_LINK:
                raise NetlinkError(errno.EINVAL, "Nexthop has invalid scope")
            d = self.by_index.get(nh.oif)
            if d is None:
                raise NetlinkError(errno.ENODEV, "Nexthop device required for onlink")
            if not d.up:
                raise NetlinkError(errno.ENETDOWN, "Nexthop device is not up")
            # inet_addr_type_dev_table(): the local table, restricted to d
            if self.addr_type(nh.gw, RT_TABLE_LOCAL, d) != RTN_UNICAST:
                raise NetlinkError(errno.EINVAL, "Nexthop has invalid gateway")
            return FibNh(nh.gw, nh.oif, nh.weight, flags, RT_SCOPE_LINK)
        from ipgate.route.lookup import fib_lookup

        scope = max(cfg.scope + 1, RT_SCOPE_LINK)
        fl = Flow(daddr=nh.gw, oif=nh.oif, iif=LOOPBACK_IFINDEX, scope=scope)
        res: object = -errno.EAGAIN
        if cfg.table and cfg.table != RT_TABLE_MAIN and cfg.table in self.tables:
            res = self.tables[cfg.table].lookup(nh.gw, 0, scope, nh.oif)
        if isinstance(res, int):
            res = fib_lookup(self, fl)
        if isinstance(res, int):
            raise NetlinkError(errno.ENETUNREACH if res == -errno.ENETUNREACH else -res
                               if res != -errno.EAGAIN else errno.ENETUNREACH, "Nexthop has invalid gateway")
        from ipgate.route.fib import FibResult

        assert isinstance(res, FibResult)
        if res.type not in (RTN_UNICAST, RTN_LOCAL):
            raise NetlinkError(errno.EINVAL, "Nexthop has invalid gateway")
        d = self.by_index[res.nh.oif]
        if not d.up:
            raise NetlinkError(errno.ENETDOWN)
        return FibNh(nh.gw, d.ifindex, nh.weight, flags, res.info.scope)

    def route_del(self, cfg: FibConfig) -> None:
        """fib_table_delete(): the first alias matching every attribute given."""
        if cfg.dst_len < 32 and cfg.dst & ~MASKS[cfg.dst_len] & 0xFFFFFFFF:
            raise NetlinkError(errno.EINVAL, "Invalid prefix for given prefix length")
        t = self.tables.get(cfg.table)
        if t is None:
            raise NetlinkError(errno.ESRCH)
        for fa in t.leaf(cfg.dst, cfg.dst_len):
            if fa.tos != cfg.tos:
                continue
            fi = fa.info
            if cfg.type and fa.type != cfg.type:
                continue
            if cfg.scope != RT_SCOPE_NOWHERE and fi.scope != cfg.scope:
                continue
            if cfg.prefsrc and fi.prefsrc != cfg.prefsrc:
                continue
            if cfg.protocol and fi.protocol != cfg.protocol:
                continue
            if cfg.priority and fi.priority != cfg.priority:
                continue
            if (cfg.oif or cfg.gw) and fi.nhs:
                nh0 = fi.nhs[0]
                if (cfg.oif and cfg.oif != nh0.oif) or (cfg.gw and cfg.gw != nh0.gw):
                    continue
            if cfg.multipath:
                want = [(n.gw, n.oif) for n in cfg.multipath]
                have = [(n.gw, n.oif) for n in fi.nhs]
                if len(want) != len(have) or any(
                        (wg and wg != hg) or (wo and wo != ho) for (wg, wo), (hg, ho) in zip(want, have, strict=True)):
                    continue
            t.remove(cfg.dst, cfg.dst_len, fa)
            return
        raise NetlinkError(errno.ESRCH)


def _all_nhs_dead(fa: FibAlias, down: set[int]) -> bool:
    """fib_info dead: every nexthop on a down device (host-scope nexthops never die)."""
    nhs = fa.info.nhs
    return bool(nhs) and all(nh.oif in down and nh.scope != RT_SCOPE_NOWHERE for nh in nhs)


def _replace_nhs(fi: FibInfo, nhs: tuple[FibNh, ...]) -> FibInfo:
    return FibInfo(fi.protocol, fi.scope, fi.prefsrc, fi.priority, nhs, fi.metrics)
