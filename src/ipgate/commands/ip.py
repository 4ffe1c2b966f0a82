"""`ip` (iproute2 6.1): link, address, route, rule; text and -j JSON output.

Parsing follows iproute2's own keyword loops (iproute.c, ipaddress.c, iprule.c):
the same abbreviations, defaults (table local for local/broadcast routes, scope
link for device routes, proto boot) and error texts.  The requests then go to
`Stack`, which answers like the kernel: errors come back as NetlinkError and are
printed as iproute2 prints them.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from ipgate import inet
from ipgate.commands import ip_usage
from ipgate.commands.base import Exit, Output, matches
from ipgate.errors import NetlinkError
from ipgate.inet import (
    DSFIELD_BY_NAME,
    DSFIELD_NAMES,
    IP_PROTO_BY_NAME,
    IP_PROTO_NAMES,
    PROTO_BY_NAME,
    PROTO_NAMES,
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTN_ANYCAST,
    RTN_BROADCAST,
    RTN_BY_NAME,
    RTN_LOCAL,
    RTN_MULTICAST,
    RTN_NAMES,
    RTN_NAT,
    RTN_UNICAST,
    RTPROT_BOOT,
    SCOPE_BY_NAME,
    SCOPE_NAMES,
    ntoa,
)
from ipgate.link.device import (
    IFA_F_NOPREFIXROUTE,
    IFA_F_SECONDARY,
    IFF_BROADCAST,
    IFF_LOOPBACK,
    IFF_MULTICAST,
    IFF_NOARP,
    IFF_POINTOPOINT,
    IFF_RUNNING,
    IFF_UP,
    Device,
    IfAddr,
)
from ipgate.route.config import FibConfig, NhConfig
from ipgate.route.fib import RTNH_F_ONLINK, FibAlias, FibNh
from ipgate.route.lookup import Route, route_input, route_output
from ipgate.route.rules import (
    FR_ACT_BLACKHOLE,
    FR_ACT_GOTO,
    FR_ACT_NAT,
    FR_ACT_NOP,
    FR_ACT_PROHIBIT,
    FR_ACT_TO_TBL,
    FR_ACT_UNREACHABLE,
    FibRule,
    Flow,
)
from ipgate.stack import Stack

METRIC_NAMES = ("mtu", "advmss", "window", "rtt", "rttvar", "ssthresh", "cwnd", "initcwnd",
                "initrwnd", "hoplimit", "reordering", "rto_min", "quickack", "fastopen_no_cookie")


class Opts:
    """Global options (-j, -d, -s, -force, -batch)."""

    def __init__(self) -> None:
        self.json = False
        self.details = 0
        self.stats = 0
        self.force = False
        self.pretty = False
        self.inet_only = False  # -4: links without IPv4 addresses are not listed


def _invarg(msg: str, arg: str) -> Exit:
    # iproute2's invarg() exits with -1
    return Exit(255, f'Error: argument "{arg}" is wrong: {msg}')


def _need_prefix(arg: str) -> Exit:
    return Exit(1, f'Error: any valid prefix is expected rather than "{arg}".')


def _need(nxt: str | None) -> str:
    """The argument a keyword requires (iproute2's NEXT_ARG)."""
    if nxt is None:
        raise Exit(255, 'Command line is not complete. Try option "help"')
    return nxt


def _inet_prefix(arg: str) -> Exit:
    return Exit(1, f'Error: inet prefix is expected rather than "{arg}".')


def _addr(arg: str) -> int:
    try:
        return inet.get_addr_1(arg)
    except ValueError:
        raise _inet_prefix(arg) from None


def _prefix(arg: str) -> tuple[int, int, bool]:
    try:
        return inet.parse_prefix(arg)
    except ValueError:
        raise _need_prefix(arg) from None


def _u32(arg: str, what: str) -> int:
    try:
        v = int(arg, 0)
    except ValueError:
        raise _invarg(f"invalid {what}", arg) from None
    if not 0 <= v <= 0xFFFFFFFF:
        raise _invarg(f"invalid {what}", arg)
    return v


def _dsfield(arg: str, what: str = "TOS value") -> int:
    v = DSFIELD_BY_NAME.get(arg.lower())
    if v is not None:
        return v
    try:
        n = int(arg, 16)
    except ValueError:
        raise _invarg(what, arg) from None
    if not 0 <= n <= 255:
        raise _invarg(what, arg)
    return n


def dsfield_name(v: int) -> str:
    # Only the names that iproute2 6.1's shipped rt_dsfield file defines are printed.
    name = DSFIELD_NAMES.get(v)
    if name is None or name[:2] not in ("CS", "AF", "EF"):
        return f"0x{v:02x}"
    return name


class IpCommand:
    """One `ip ...` invocation against a Stack."""

    def __init__(self, stack: Stack, out: Output) -> None:
        self.stack = stack
        self.o = out
        self.opts = Opts()
        self._hide_table = False
        self._text_cache: dict[tuple[int, FibAlias], list[str]] = {}

    # -- entry -----------------------------------------------------------
    def run(self, argv: list[str]) -> int:
        args = list(argv)
        batch: str | None = None
        while args and args[0].startswith("-") and args[0] != "-":
            opt = args.pop(0)
            o = opt.lstrip("-")
            if o in ("j", "json"):
                self.opts.json = True
            elif matches(o, "details"):
                self.opts.details += 1
            elif matches(o, "statistics") or o == "s":
                self.opts.stats += 1
            elif matches(o, "force"):
                self.opts.force = True
            elif matches(o, "pretty"):
                self.opts.pretty = True
            elif o == "4":
                self.opts.inet_only = True
            elif matches(o, "family"):
                if args and args.pop(0) == "inet":
                    self.opts.inet_only = True
            elif matches(o, "batch"):
                if not args:
                    raise Exit(255, "Option \"-batch\" requires an argument")
                batch = args.pop(0)
            elif o in ("n", "netns"):
                raise Exit(1, "ipgate: network namespaces are not modelled (-n)")
            else:
                raise Exit(1, f'Option "{opt}" is unknown, try "ip -help".')
        if batch is not None:
            return self.run_batch(batch)
        return self.do_cmd(args)

    def run_batch(self, path: str) -> int:
        from ipgate.commands.script import split_line

        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise Exit(1, f"Cannot open file \"{path}\" for reading: {e.strerror}") from None
        if not self.opts.force and len(lines) >= 1000:
            return self._run_batch_bulk(path, lines)
        status = 0
        for lineno, line in enumerate(lines, 1):
            words = split_line(line)
            if not words:
                continue
            rc = self._batch_cmd(words)
            if rc:
                self.o.error(f"Command failed {path}:{lineno}")
                status = 1
                if not self.opts.force:
                    return 1
        return status

    def _batch_cmd(self, words: list[str]) -> int:
        """One line of a batch: its status, its error printed; a fatal exit ends the batch."""
        try:
            return self.do_cmd(words)
        except Exit as e:
            if e.fatal:
                raise
            if e.message:
                self.o.error(e.message)
            return e.status

    def _run_batch_bulk(self, path: str, lines: list[str]) -> int:
        """run_batch() without -force for big files: `route add P via G ...` lines go
        through route/bulk.py, the others through do_cmd(), in order; the first
        failure stops the batch with the lines before it applied, as above."""
        from ipgate.commands.script import split_line
        from ipgate.errors import ConfigError
        from ipgate.route.bulk import load_lines

        failed: list[int] = []

        def other(lineno: int, line: str) -> None:
            words = split_line(line)
            if words and self._batch_cmd(words):
                failed.append(lineno)
                raise ConfigError(path, lineno, "")

        try:
            load_lines(self.stack, enumerate(lines, 1), path, other, dialect="batch")
        except ConfigError as e:
            if not failed:
                self.o.error(e.message)  # a bulk line refused: what do_cmd() would print
            self.o.error(f"Command failed {path}:{e.line}")
            return 1
        return 0

    def do_cmd(self, args: list[str]) -> int:
        if not args:
            raise Exit(255, "Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }")
        obj, rest = args[0], args[1:]
        table: list[tuple[str, Callable[[list[str]], int]]] = [
            ("address", self.do_addr), ("link", self.do_link), ("route", self.do_route),
            ("rule", self.do_rule),
        ]
        for name, fn in table:
            if matches(obj, name) or (obj == "r" and name == "route") or (obj == "ro" and name == "route"):
                try:
                    return fn(rest)
                except NetlinkError as e:
                    raise Exit(2, e.iproute2_text()) from None
        raise Exit(1, f'Object "{obj}" is unknown, try "ip help".')

    def dev_index(self, name: str) -> int:
        d = self.stack.devices.get(name)
        if d is None and ":" in name:
            # ll_name_to_index() falls back to if_nametoindex(); its SIOCGIFINDEX
            # ioctl cuts the name at ':' (dev_ioctl()), so "eth0:0" is eth0.
            d = self.stack.devices.get(name.split(":", 1)[0])
        if d is None:
            raise Exit(1, f'Cannot find device "{name}"')
        return d.ifindex

    def _table(self, arg: str, what: str = '"table" value is invalid') -> int:
        try:
            return self.stack.table_id(arg)
        except ValueError:
            raise _invarg(what, arg) from None

    # -- ip link ---------------------------------------------------------
    def do_link(self, args: list[str]) -> int:
        if not args or matches(args[0], "show") or matches(args[0], "list") or args[0] == "lst":
            return self.link_show(args[1:])
        cmd, rest = args[0], args[1:]
        if matches(cmd, "add"):
            return self.link_add(rest)
        if matches(cmd, "delete"):
            if rest and rest[0] == "dev":
                rest = rest[1:]
            if not rest:
                raise Exit(255, "Not enough information: \"dev\" argument is required.")
            self.stack.link_del(self.stack.dev(rest[0]))
            return 0
        if matches(cmd, "set"):
            return self.link_set(rest)
        raise Exit(255, f'Command "{cmd}" is unknown, try "ip link help".')

    def link_add(self, args: list[str]) -> int:
        name = ""
        kind = ""
        peer = ""
        mtu = 0
        i = 0
        while i < len(args):
            a = args[i]
            if a in ("name", "dev"):
                i += 1
                name = args[i]
            elif a == "type":
                i += 1
                kind = args[i]
                if kind == "veth" and i + 2 < len(args) and args[i + 1] == "peer":
                    j = i + 2
                    if args[j] == "name":
                        j += 1
                    peer = args[j]
                    i = j
            elif a == "mtu":
                i += 1
                mtu = _u32(args[i], "MTU")
            elif a == "up":
                pass
            else:
                name = a
            i += 1
        if not kind:
            raise Exit(2, "Not enough information: \"type\" argument is required")
        if kind not in ("dummy", "tun", "tap", "veth", "ether", "bridge"):
            raise Exit(2, "Error: Unknown device type.")
        d = self.stack.link_add(name, kind, peer)
        if mtu:
            d.mtu = mtu
        return 0

    def link_set(self, args: list[str]) -> int:
        if args and args[0] == "dev":
            args = args[1:]
        if not args:
            raise Exit(255, "Not enough information: \"dev\" argument is required.")
        d = self.stack.devices.get(args[0])
        if d is None:
            raise Exit(1, f'Cannot find device "{args[0]}"')
        i = 1
        while i < len(args):
            a = args[i]
            if a == "up":
                self.stack.link_set_up(d, True)
            elif a == "down":
                self.stack.link_set_up(d, False)
            elif a == "mtu":
                i += 1
                v = _u32(args[i], "MTU")
                if v < 68 and not d.loopback:
                    raise NetlinkError(errno.EINVAL, "mtu less than device minimum")
                d.mtu = v
            elif a == "name":
                i += 1
                self.stack.link_rename(d, args[i])
            elif a in ("address", "addr"):
                i += 1
                try:
                    d.mac = bytes(int(x, 16) for x in args[i].split(":"))
                except ValueError:
                    raise _invarg("invalid address", args[i]) from None
            elif a in ("txqueuelen", "txqlen", "qlen"):
                i += 1
                d.qlen = _u32(args[i], "qlen")
            elif a in ("arp", "multicast", "promisc", "allmulticast"):
                i += 1
            else:
                raise Exit(1, f'Error: either "dev" is duplicate, or "{a}" is a garbage.')
            i += 1
        return 0

    def link_show(self, args: list[str]) -> int:
        if args and args[0] == "dev":
            args = args[1:]
        devs = sorted(self.stack.by_index.values(), key=lambda d: d.ifindex)
        if args and args[0] not in ("up",):
            devs = [d for d in devs if d.name == args[0]]
            if not devs:
                raise Exit(1, f'Device "{args[0]}" does not exist.')
        if "up" in args:
            devs = [d for d in devs if d.up]
        if self.opts.json:
            self.o.json([link_json(d) for d in devs])
            return 0
        for d in devs:
            self.o.print(link_head(d, mode=True))
            self.o.print(f"    {link_l2(d)}")
        return 0

    # -- ip address ------------------------------------------------------
    def do_addr(self, args: list[str]) -> int:
        if not args or matches(args[0], "show") or matches(args[0], "list") or args[0] == "lst":
            return self.addr_show(args[1:] if args else [])
        cmd, rest = args[0], args[1:]
        if matches(cmd, "add"):
            return self.addr_modify(rest, add=True)
        if matches(cmd, "replace"):
            return self.addr_modify(rest, add=True, replace=True)
        if matches(cmd, "delete"):
            return self.addr_modify(rest, add=False)
        if matches(cmd, "flush"):
            return self.addr_flush(rest)
        raise Exit(255, f'Command "{cmd}" is unknown, try "ip address help".')

    def addr_modify(self, args: list[str], add: bool, replace: bool = False) -> int:
        local: tuple[int, int, bool] | None = None
        peer: tuple[int, int, bool] | None = None
        brd: str | None = None
        label = ""
        scope: int | None = None
        dev_name = ""
        flags = 0
        i = 0
        while i < len(args):
            a = args[i]
            nxt = args[i + 1] if i + 1 < len(args) else None


            if a in ("peer", "remote"):
                peer = _prefix(_need(nxt))
                i += 1
            elif a in ("broadcast", "brd") or matches(a, "broadcast"):
                brd = _need(nxt)
                i += 1
            elif a == "label":
                label = _need(nxt)
                i += 1
            elif a == "scope":
                s = _need(nxt)
                if s in SCOPE_BY_NAME:
                    scope = SCOPE_BY_NAME[s]
                else:
                    try:
                        scope = int(s, 0)
                    except ValueError:
                        raise _invarg("invalid scope value.", s) from None
                i += 1
            elif a == "dev":
                dev_name = _need(nxt)
                i += 1
            elif a == "noprefixroute":
                flags |= IFA_F_NOPREFIXROUTE
            elif a in ("valid_lft", "preferred_lft", "metric", "priority", "proto"):
                i += 1
            elif a in ("home", "nodad", "mngtmpaddr", "autojoin"):
                pass
            else:
                if a == "local":
                    a = _need(nxt)
                    i += 1
                if local is not None:
                    raise Exit(1, f'Error: either "local" is duplicate, or "{a}" is a garbage.')
                local = _prefix(a)
            i += 1
        if not dev_name:
            raise Exit(1, 'Not enough information: "dev" argument is required.')
        d = self.stack.devices.get(dev_name)
        if d is None:
            raise Exit(1, f'Cannot find device "{dev_name}"')
        if not add:
            return self._addr_del(d, local, peer, label)
        if local is None:
            raise Exit(1, 'Not enough information: "local" argument is required.')
        addr, plen, _given = local
        address = addr
        if peer is not None:
            # with a peer, the prefix length belongs to the peer (ipaddr_modify)
            address, plen = peer[0], peer[1] if peer[2] else 32
        bcast = 0
        if brd is not None:
            if brd in ("+", "-"):
                if plen < 31:
                    m = inet.mask_of(plen)
                    bcast = (address & m) | (~m & 0xFFFFFFFF) if brd == "+" else address & m
            else:
                bcast = _addr(brd)
        if scope is None:
            scope = RT_SCOPE_HOST if inet.is_loopback(addr) else RT_SCOPE_UNIVERSE
        ifa = IfAddr(local=addr, prefixlen=plen, address=address, broadcast=bcast, scope=scope,
                     label=label or d.name, flags=0x80 | flags, has_peer=peer is not None)
        if replace and any(old.local == addr and old.prefixlen == plen for old in d.addrs):
            return 0
        self.stack.addr_add(d, ifa)
        return 0

    def _addr_del(self, d: Device, local: tuple[int, int, bool] | None, peer: tuple[int, int, bool] | None,
                  label: str) -> int:
        # inet_rtm_deladdr(): first address matching what was given.
        for ifa in d.addrs:
            if label and ifa.label != label:
                continue
            if local is not None:
                if ifa.local != local[0]:
                    continue
                if local[2] and ifa.prefixlen != local[1]:
                    continue
            if peer is not None and ifa.address != peer[0]:
                continue
            self.stack.addr_del(d, ifa)
            return 0
        raise NetlinkError(errno.EADDRNOTAVAIL, "ipv4: Address not found")

    def _addr_filter(self, args: list[str]) -> tuple[list[Device], Callable[[IfAddr], bool]]:
        devs = sorted(self.stack.by_index.values(), key=lambda d: d.ifindex)
        preds: list[Callable[[IfAddr], bool]] = []
        i = 0
        up_only = False
        while i < len(args):
            a = args[i]
            nxt = args[i + 1] if i + 1 < len(args) else ""
            if a == "dev":
                devs = [d for d in devs if d.name == nxt]
                if not devs:
                    raise Exit(1, f'Device "{nxt}" does not exist.')
                i += 1
            elif a == "label":
                preds.append(_addr_pred("label", nxt))
                i += 1
            elif a == "scope":
                preds.append(_addr_pred("scope", nxt))
                i += 1
            elif a == "to":
                preds.append(_addr_pred("to", nxt))
                i += 1
            elif a == "up":
                up_only = True
            elif a in ("primary",):
                preds.append(lambda x: not x.secondary)
            elif a in ("secondary",):
                preds.append(lambda x: x.secondary)
            elif a in ("permanent", "dynamic"):
                pass
            elif a in ("-4", "inet"):
                pass
            else:
                devs = [d for d in devs if d.name == a]
                if not devs:
                    raise Exit(1, f'Device "{a}" does not exist.')
            i += 1
        if up_only:
            devs = [d for d in devs if d.up]
        return devs, lambda x: all(p(x) for p in preds)

    def addr_show(self, args: list[str]) -> int:
        devs, pred = self._addr_filter(args)
        filtered = self.opts.inet_only or any(a in ("label", "scope", "to", "primary", "secondary") for a in args)
        if self.opts.json:
            res = []
            for d in devs:
                addrs = [a for a in d.addrs if pred(a)]
                if filtered and not addrs:
                    continue
                j = link_json(d)
                j["addr_info"] = [addr_json(a) for a in addrs]
                res.append(j)
            self.o.json(res)
            return 0
        for d in devs:
            addrs = [a for a in d.addrs if pred(a)]
            if filtered and not addrs:
                continue
            self.o.print(link_head(d, mode=False))
            self.o.print(f"    {link_l2(d)}")
            for a in addrs:
                self.o.print(addr_line(d, a))
                self.o.print("       valid_lft forever preferred_lft forever")
        return 0

    def addr_flush(self, args: list[str]) -> int:
        if not args:
            raise Exit(1, "Flush requires arguments.")
        devs, pred = self._addr_filter(args)
        for d in devs:
            # Delete secondaries before primaries, as iproute2's flush loop ends up doing.
            for ifa in [a for a in d.addrs if a.secondary and pred(a)] + [a for a in d.addrs
                                                                            if not a.secondary and pred(a)]:
                if ifa in d.addrs:
                    self.stack.addr_del(d, ifa)
        return 0

    # -- ip route --------------------------------------------------------
    def do_route(self, args: list[str]) -> int:
        if not args or matches(args[0], "show") or matches(args[0], "list") or args[0] == "lst":
            return self.route_show(args[1:] if args else [])
        cmd, rest = args[0], args[1:]
        flags: dict[str, tuple[bool, bool, bool, bool]] = {
            # create, excl, replace, append
            "add": (True, True, False, False), "change": (False, False, True, False),
            "chg": (False, False, True, False), "replace": (True, False, True, False),
            "prepend": (True, False, False, False), "append": (True, False, False, True),
            "test": (False, True, False, False),
        }
        for name, fl in flags.items():
            if matches(cmd, name) and not (name == "change" and cmd == "c"):
                return self.route_modify(rest, *fl)
        if matches(cmd, "delete"):
            return self.route_modify(rest, False, False, False, False, delete=True)
        if matches(cmd, "get"):
            return self.route_get(rest)
        if matches(cmd, "flush"):
            return self.route_flush(rest)
        raise Exit(255, f'Command "{cmd}" is unknown, try "ip route help".')

    def _parse_nexthops(self, args: list[str], i: int) -> tuple[list[NhConfig], int]:
        nhs: list[NhConfig] = []
        while i < len(args) and args[i] == "nexthop":
            nh = NhConfig()
            i += 1
            while i < len(args) and args[i] != "nexthop":
                a = args[i]
                if a == "via":
                    i += 1
                    nh.gw = _addr(args[i] if args[i] != "inet" else args[i + 1])
                    if args[i] == "inet":
                        i += 1
                elif a == "dev":
                    i += 1
                    nh.oif = self.dev_index(args[i])
                elif a == "weight":
                    i += 1
                    w = _u32(args[i], "weight")
                    if not 1 <= w <= 256:
                        raise Exit(1, f'Error: argument "{args[i]}" is wrong: "weight" is invalid')
                    nh.weight = w
                elif a == "onlink":
                    nh.onlink = True
                else:
                    break
                i += 1
            nhs.append(nh)
        return nhs, i

    def _route_args(self, args: list[str]) -> tuple[FibConfig, dict[str, bool]]:
        cfg = FibConfig()
        seen: dict[str, bool] = {}
        type_given = False
        dst_given = False
        i = 0
        while i < len(args):
            a = args[i]
            nxt = args[i + 1] if i + 1 < len(args) else None


            if a == "src":
                cfg.prefsrc = _addr(_need(nxt))
                i += 1
            elif a == "as":
                i += 1
            elif a == "via":
                v = _need(nxt)
                if v == "inet":
                    i += 1
                    v = args[i + 1]
                cfg.gw = _addr(v)
                seen["gw"] = True
                i += 1
            elif a == "from":
                raise NetlinkError(errno.EINVAL)
            elif a in ("tos", "dsfield") or matches(a, "dsfield"):
                cfg.tos = _dsfield(_need(nxt), '"tos" value is invalid\n')
                i += 1
            elif a in ("metric", "priority", "preference") or matches(a, "preference"):
                cfg.priority = _u32(_need(nxt), '"metric" value is invalid\n')
                i += 1
            elif a == "dev" or a == "oif":
                cfg.oif = self.dev_index(_need(nxt))
                seen["dev"] = True
                i += 1
            elif a == "table":
                cfg.table = self._table(_need(nxt))
                seen["table"] = True
                i += 1
            elif a == "vrf":
                i += 1
            elif matches(a, "protocol"):
                p = _need(nxt)
                if p in PROTO_BY_NAME:
                    cfg.protocol = PROTO_BY_NAME[p]
                else:
                    try:
                        cfg.protocol = int(p, 0)
                    except ValueError:
                        raise _invarg('"protocol" value is invalid\n', p) from None
                seen["proto"] = True
                i += 1
            elif matches(a, "scope"):
                s = _need(nxt)
                if s in SCOPE_BY_NAME:
                    cfg.scope = SCOPE_BY_NAME[s]
                else:
                    try:
                        cfg.scope = int(s, 0)
                    except ValueError:
                        raise _invarg('invalid "scope" value\n', s) from None
                seen["scope"] = True
                i += 1
            elif a == "onlink":
                cfg.onlink = True
            elif a == "nexthop":
                nhs, i = self._parse_nexthops(args, i)
                cfg.multipath = nhs
                continue
            elif a in METRIC_NAMES:
                v = _need(nxt)
                if v == "lock":
                    i += 1
                    v = args[i + 1]
                cfg.metrics[a] = _u32(v, f'"{a}" value is invalid\n')
                i += 1
            elif a in ("realm", "realms", "expires", "congctl", "features", "pref", "nhid", "encap"):
                i += 1
            else:
                if a == "to":
                    a = _need(nxt)
                    i += 1
                if a in RTN_BY_NAME and not type_given and a not in ("none",):
                    cfg.type = RTN_BY_NAME[a]
                    type_given = True
                    i += 1
                    if i >= len(args):
                        raise Exit(255, 'Command line is not complete. Try option "help"')
                    a = args[i]
                if dst_given:
                    raise Exit(1, f'Error: either "to" is duplicate, or "{a}" is a garbage.')
                addr, plen, _ = _prefix(a)
                cfg.dst, cfg.dst_len = addr, plen
                dst_given = True
            i += 1
        if not dst_given:
            raise Exit(255, ip_usage.ROUTE.rstrip("\n"), fatal=True)
        seen["type"] = type_given
        return cfg, seen

    def route_modify(self, args: list[str], create: bool, excl: bool, replace: bool, append: bool,
                     delete: bool = False) -> int:
        cfg, seen = self._route_args(args)
        if cfg.table == 0:
            cfg.table = RT_TABLE_MAIN  # fib_new_table(net, 0)
        cfg.create, cfg.excl, cfg.replace, cfg.append = create, excl, replace, append
        if not seen.get("table") and cfg.type in (RTN_LOCAL, RTN_BROADCAST, RTN_NAT, RTN_ANYCAST):
            cfg.table = RT_TABLE_LOCAL
        if delete:
            if not seen["type"]:
                cfg.type = 0
            if not seen.get("scope"):
                cfg.scope = RT_SCOPE_NOWHERE
            self.stack.route_del(cfg)
            return 0
        if not seen.get("proto"):
            cfg.protocol = RTPROT_BOOT
        if not seen.get("scope"):
            if cfg.type in (RTN_LOCAL, RTN_NAT):
                cfg.scope = RT_SCOPE_HOST
            elif cfg.type in (RTN_BROADCAST, RTN_MULTICAST, RTN_ANYCAST):
                cfg.scope = RT_SCOPE_LINK
            elif cfg.type == RTN_UNICAST and not seen.get("gw") and not cfg.multipath:
                cfg.scope = RT_SCOPE_LINK
            else:
                cfg.scope = RT_SCOPE_UNIVERSE
        if cfg.type == RTN_NAT and not cfg.gw:
            raise Exit(2, "RTNETLINK answers: Invalid argument")
        self.stack.route_add(cfg)
        return 0

    def _show_filter(self, args: list[str]) -> tuple[list[int], Callable[[int, int, FibAlias], bool], bool]:
        tables: list[int] = [RT_TABLE_MAIN]
        preds: list[Callable[[int, int, FibAlias], bool]] = []
        i = 0
        explicit_table = False
        while i < len(args):
            a = args[i]
            nxt = args[i + 1] if i + 1 < len(args) else ""
            if a == "table":
                explicit_table = True
                if nxt in ("all", "0"):
                    # the kernel dumps tables by hash bucket (id % 256)
                    tables = sorted(self.stack.tables, key=lambda t: (t & 0xFF, t))
                elif nxt == "cache":
                    tables = []
                else:
                    tables = [self._table(nxt)]
                i += 1
            elif a == "dev" or a == "oif":
                preds.append(_route_pred("oif", self.dev_index(nxt)))
                i += 1
            elif a == "via":
                preds.append(_route_pred("gw", _addr(nxt)))
                i += 1
            elif matches(a, "protocol"):
                pr = PROTO_BY_NAME.get(nxt)
                preds.append(_route_pred("proto", pr if pr is not None else _u32(nxt, "protocol")))
                i += 1
            elif a == "scope":
                preds.append(_route_pred("scope", SCOPE_BY_NAME.get(nxt, 0)))
                i += 1
            elif a == "type":
                preds.append(_route_pred("type", RTN_BY_NAME.get(nxt, 1)))
                i += 1
            elif a == "src":
                preds.append(_route_pred("src", _addr(nxt)))
                i += 1
            elif a in ("tos", "dsfield"):
                preds.append(_route_pred("tos", _dsfield(nxt)))
                i += 1
            elif a in ("root", "match", "exact"):
                pfx = _prefix(nxt)
                preds.append(_prefix_pred(a, pfx))
                i += 1
            elif a in RTN_BY_NAME and a != "none":
                preds.append(_route_pred("type", RTN_BY_NAME[a]))
            else:
                if a == "to":
                    a = nxt
                    i += 1
                pfx = _prefix(a)
                preds.append(_prefix_pred("exact", pfx))
            i += 1
        return tables, lambda p, n, fa: all(f(p, n, fa) for f in preds), explicit_table

    def route_show(self, args: list[str]) -> int:
        tables, pred, explicit = self._show_filter(args)
        # iproute2 omits "table X" of unicast routes when listing that one table
        self._hide_table = len(tables) == 1 and explicit
        rows: list[Any] = []
        for tb in tables:
            t = self.stack.tables.get(tb)
            if t is None:
                continue
            for p, n, fa in t.entries():
                if pred(p, n, fa):
                    if self.opts.json:
                        rows.append(self.route_json(tb, p, n, fa))
                    else:
                        self.o.write(self.route_text(tb, p, n, fa))
        if self.opts.json:
            self.o.json(rows)
        return 0

    def route_flush(self, args: list[str]) -> int:
        if args and args[0] == "cache":
            return 0
        if not args:
            raise Exit(1, '"ip route flush" requires arguments.')
        tables, pred, _ = self._show_filter(args)
        for tb in tables:
            t = self.stack.tables.get(tb)
            if t is not None:
                t.flush_if(pred)
        return 0

    def _nh_dev(self, oif: int) -> str:
        d = self.stack.by_index.get(oif)
        return d.name if d else str(oif)

    def _nh_flags(self, nh: FibNh) -> list[str]:
        """print_rt_flags() order: dead, onlink, ..., linkdown."""
        dead = nh.oif in self.stack.down and nh.scope != RT_SCOPE_NOWHERE
        out = ["dead"] if dead else []
        if nh.flags & RTNH_F_ONLINK:
            out.append("onlink")
        if dead:
            out.append("linkdown")
        return out

    def route_text(self, tb: int, p: int, n: int, fa: FibAlias) -> str:
        # Routes share their (interned) aliases: format each alias once per listing.
        key = (tb, fa)
        head_tail = self._text_cache.get(key)
        if head_tail is None:
            head_tail = self._text_cache[key] = self._route_text(tb, fa).split("\0", 1)
        return head_tail[0] + ("default" if n == 0 else inet.prefix_str(p, n)) + head_tail[1]

    def _route_text(self, tb: int, fa: FibAlias) -> str:
        """print_route() with "\0" where the destination goes."""
        fi = fa.info
        parts: list[str] = []
        if fa.type != RTN_UNICAST:
            parts.append(RTN_NAMES[fa.type])
        parts.append("\0")
        if fa.tos:
            parts += ["tos", dsfield_name(fa.tos)]
        single = len(fi.nhs) == 1
        if single and fa.type != RTN_NAT:
            nh = fi.nhs[0]
            if nh.gw:
                parts += ["via", ntoa(nh.gw)]
            if nh.oif:
                parts += ["dev", self._nh_dev(nh.oif)]
        if tb != RT_TABLE_MAIN and not (self._hide_table and fa.type == RTN_UNICAST):
            parts += ["table", self.stack.table_name(tb)]
        if fi.protocol != RTPROT_BOOT:
            parts += ["proto", PROTO_NAMES.get(fi.protocol, str(fi.protocol))]
        if fi.scope != RT_SCOPE_UNIVERSE:
            parts += ["scope", SCOPE_NAMES.get(fi.scope, str(fi.scope))]
        if fi.prefsrc:
            parts += ["src", ntoa(fi.prefsrc)]
        if fi.priority:
            parts += ["metric", str(fi.priority)]
        if single:
            parts += self._nh_flags(fi.nhs[0])
        for k, v in _ordered_metrics(fi.metrics):
            parts += [k, str(v)]
        if fa.type == RTN_NAT and fi.nhs:
            parts += ["via", ntoa(fi.nhs[0].gw)]
        line = " ".join(parts) + " \n"
        if not single:
            for nh in fi.nhs:
                seg = ["\tnexthop"]
                if nh.gw:
                    seg += ["via", ntoa(nh.gw)]
                seg += ["dev", self._nh_dev(nh.oif), "weight", str(nh.weight)]
                seg += self._nh_flags(nh)
                line += " ".join(seg) + " \n"
        return line

    def route_json(self, tb: int, p: int, n: int, fa: FibAlias) -> dict[str, Any]:
        fi = fa.info
        j: dict[str, Any] = {}
        if fa.type != RTN_UNICAST:
            j["type"] = RTN_NAMES[fa.type]
        j["dst"] = "default" if n == 0 else inet.prefix_str(p, n)
        if fa.tos:
            j["tos"] = dsfield_name(fa.tos)
        single = len(fi.nhs) == 1
        if single and fa.type != RTN_NAT:
            nh = fi.nhs[0]
            if nh.gw:
                j["gateway"] = ntoa(nh.gw)
            if nh.oif:
                j["dev"] = self._nh_dev(nh.oif)
        if tb != RT_TABLE_MAIN and not (self._hide_table and fa.type == RTN_UNICAST):
            j["table"] = self.stack.table_name(tb)
        if fi.protocol != RTPROT_BOOT:
            j["protocol"] = PROTO_NAMES.get(fi.protocol, str(fi.protocol))
        if fi.scope != RT_SCOPE_UNIVERSE:
            j["scope"] = SCOPE_NAMES.get(fi.scope, str(fi.scope))
        if fi.prefsrc:
            j["prefsrc"] = ntoa(fi.prefsrc)
        if fi.priority:
            j["metric"] = fi.priority
        j["flags"] = self._nh_flags(fi.nhs[0]) if single else []
        if fi.metrics:
            j["metrics"] = [dict(_ordered_metrics(fi.metrics))]
        if not single and fi.nhs:
            j["nexthops"] = [
                {**({"gateway": ntoa(nh.gw)} if nh.gw else {}), "dev": self._nh_dev(nh.oif),
                 "weight": nh.weight, "flags": self._nh_flags(nh)} for nh in fi.nhs]
        return j

    def route_get(self, args: list[str]) -> int:
        dst: int | None = None
        src = 0
        iif = ""
        oif = 0
        mark = 0
        tos = 0
        proto = 17  # inet_rtm_getroute(): the probe packet is UDP unless ipproto says otherwise
        sport = dport = 0
        i = 0
        while i < len(args):
            a = args[i]
            nxt = args[i + 1] if i + 1 < len(args) else None


            if a in ("tos", "dsfield") or matches(a, "dsfield"):
                tos = _dsfield(_need(nxt), '"tos" value is invalid\n')
                i += 1
            elif a == "from":
                src = _prefix(_need(nxt))[0]
                i += 1
            elif a in ("iif", "input"):
                iif = _need(nxt)
                i += 1
            elif a in ("oif", "output"):
                oif = self.dev_index(_need(nxt))
                i += 1
            elif a == "mark":
                mark = _u32(_need(nxt), "mark")
                i += 1
            elif a == "ipproto":
                p = _need(nxt)
                proto = IP_PROTO_BY_NAME.get(p, 0) or _u32(p, "ipproto")
                i += 1
            elif a == "sport":
                sport = _u32(_need(nxt), "sport")
                i += 1
            elif a == "dport":
                dport = _u32(_need(nxt), "dport")
                i += 1
            elif a in ("connected", "fibmatch", "notify"):
                pass
            elif a in ("vrf", "uid", "as"):
                i += 1
            else:
                if a == "to":
                    a = _need(nxt)
                    i += 1
                if dst is not None:
                    raise Exit(1, f'Error: either "to" is duplicate, or "{a}" is a garbage.')
                dst = _prefix(a)[0]
            i += 1
        if dst is None:
            raise Exit(1, "need at least a destination address")
        fl = Flow(daddr=dst, saddr=src, oif=oif, mark=mark, tos=tos, proto=proto, sport=sport, dport=dport)
        if iif:
            dev = self.stack.devices.get(iif)
            if dev is None:
                raise Exit(1, f'Cannot find device "{iif}"')
            r = route_input(self.stack, Flow(dst, src, dev.ifindex, 0, mark, tos, proto, sport, dport), dev)
        else:
            r = route_output(self.stack, fl)
        if self.opts.json:
            self.o.json([self.get_json(r)])
        else:
            self.o.write(self.get_text(r))
        return 0

    def _get_fields(self, r: Route) -> list[tuple[str, str, Any]]:
        """(text keyword, json key, value) in print_route() order."""
        f: list[tuple[str, str, Any]] = []
        if r.type != RTN_UNICAST:
            f.append(("", "type", RTN_NAMES[r.type]))
        f.append(("", "dst", ntoa(r.daddr)))
        if r.saddr:
            f.append(("from", "from", ntoa(r.saddr)))
        if r.res is not None and r.res.alias.tos:
            f.append(("tos", "tos", dsfield_name(r.res.alias.tos)))
        if r.gateway:
            f.append(("via", "gateway", ntoa(r.gateway)))
        f.append(("dev", "dev", r.dev.name))
        if r.table and r.table != RT_TABLE_MAIN:
            f.append(("table", "table", self.stack.table_name(r.table)))
        if not r.input and r.prefsrc != r.saddr:
            f.append(("src", "prefsrc", ntoa(r.prefsrc)))
        return f

    def get_text(self, r: Route) -> str:
        parts = []
        for kw, _k, v in self._get_fields(r):
            parts.append(f"{kw} {v}" if kw else str(v))
        if r.mark:
            parts.append(f"mark {r.mark}")
        if not r.input:
            parts.append("uid 0")
        line = " ".join(parts) + " \n    cache "
        if r.flags:
            line += "<" + ",".join(r.flags) + "> "
        if r.res is not None:
            for k, v in _ordered_metrics(r.res.info.metrics):
                line += f"{k} {v} "
        if r.input:
            line += f"iif {self.stack.by_index[r.iif].name} "
        return line + "\n"

    def get_json(self, r: Route) -> dict[str, Any]:
        j: dict[str, Any] = {k: v for _kw, k, v in self._get_fields(r)}
        j["flags"] = []
        if r.mark:
            j["mark"] = r.mark
        if not r.input:
            j["uid"] = 0
        j["cache"] = list(r.flags)
        if r.res is not None and r.res.info.metrics:
            j["metrics"] = [dict(_ordered_metrics(r.res.info.metrics))]
        if r.input:
            j["iif"] = self.stack.by_index[r.iif].name
        return j

    # -- ip rule ---------------------------------------------------------
    def do_rule(self, args: list[str]) -> int:
        if not args or matches(args[0], "list") or matches(args[0], "show") or args[0] == "lst":
            return self.rule_list(args[1:] if args else [])
        cmd, rest = args[0], args[1:]
        if matches(cmd, "add"):
            return self.rule_modify(rest, add=True)
        if matches(cmd, "delete"):
            return self.rule_modify(rest, add=False)
        if matches(cmd, "flush"):
            self.stack.rules.flush()
            self.stack.custom_rules = True
            return 0
        raise Exit(255, f'Command "{cmd}" is unknown, try "ip rule help".')

    def _port_range(self, arg: str, what: str) -> tuple[int, int]:
        lo_s, dash, hi_s = arg.partition("-")
        try:
            lo = int(lo_s, 0)
            hi = int(hi_s, 0) if dash else lo
        except ValueError:
            raise _invarg(f'invalid "{what}"\n', arg) from None
        if not (0 <= lo <= 65535 and 0 <= hi <= 65535):
            raise _invarg(f'invalid "{what}"\n', arg)
        return lo, hi  # a reversed range is the kernel's to refuse

    def rule_modify(self, args: list[str], add: bool) -> int:
        r = FibRule(action=0, table=0)
        user_pref = False
        table_ok = False
        i = 0
        while i < len(args):
            a = args[i]
            nxt = args[i + 1] if i + 1 < len(args) else None


            if a == "not":
                r.invert = True
            elif a == "from":
                addr, plen, _ = _prefix(_need(nxt))
                r.src, r.src_len = addr, plen
                i += 1
            elif a == "to":
                addr, plen, _ = _prefix(_need(nxt))
                r.dst, r.dst_len = addr, plen
                i += 1
            elif a in ("preference", "order", "priority", "pref", "prio") or matches(a, "preference"):
                r.pref = _u32(_need(nxt), "preference value")
                user_pref = True
                i += 1
            elif a in ("tos", "dsfield") or matches(a, "dsfield"):
                r.tos = _dsfield(_need(nxt), "TOS value")
                i += 1
            elif a == "fwmark":
                v = _need(nxt)
                m_s, slash, k_s = v.partition("/")
                r.mark = _u32(m_s, "fwmark value")
                # fib_nl2rule(): a non-zero mark without a mask matches exactly
                r.mark_mask = _u32(k_s, "fwmask value") if slash else (0xFFFFFFFF if r.mark else 0)
                i += 1
            elif a in ("realms", "realm"):
                i += 1
            elif a in ("table", "lookup"):
                r.table = self._table(_need(nxt), "invalid table ID")
                table_ok = True
                i += 1
            elif a == "suppress_prefixlength":
                try:
                    r.suppress_prefixlen = int(_need(nxt), 0)
                except ValueError:
                    raise _invarg('suppress_prefixlength value is invalid\n', _need(nxt)) from None
                i += 1
            elif a == "suppress_ifgroup":
                i += 1
            elif a in ("dev", "iif"):
                r.iifname = _need(nxt)
                i += 1
            elif a == "oif":
                r.oifname = _need(nxt)
                i += 1
            elif a in ("nat", "map-to"):
                r.nat_addr = _addr(_need(nxt))
                r.action = FR_ACT_NAT
                i += 1
            elif a == "ipproto":
                p = _need(nxt)
                r.ip_proto = IP_PROTO_BY_NAME.get(p, 0) or _u32(p, "ipproto")
                i += 1
            elif a == "sport":
                r.sport = self._port_range(_need(nxt), "sport")
                i += 1
            elif a == "dport":
                r.dport = self._port_range(_need(nxt), "dport")
                i += 1
            elif a == "goto":
                r.target = _u32(_need(nxt), "goto value")
                r.action = FR_ACT_GOTO
                i += 1
            elif a == "nop":
                r.action = FR_ACT_NOP
            elif a in ("protocol", "uidrange", "tun_id", "l3mdev"):
                if a != "l3mdev":
                    i += 1
            else:
                if a == "type":
                    a = _need(nxt)
                    i += 1
                act = {"blackhole": FR_ACT_BLACKHOLE, "unreachable": FR_ACT_UNREACHABLE,
                       "prohibit": FR_ACT_PROHIBIT, "unicast": FR_ACT_TO_TBL}.get(a)
                if act is None:
                    raise Exit(255, f'Error: argument "{a}" is wrong: Failed to parse rule type')
                r.action = act
            i += 1
        rules = self.stack.rules
        if add:
            if not table_ok and r.action in (0, FR_ACT_TO_TBL, FR_ACT_NAT):
                r.table = RT_TABLE_MAIN
            if not r.action:
                r.action = FR_ACT_TO_TBL
            if r.action == FR_ACT_TO_TBL and r.table == 0:
                # fib_nl_newrule(): table 0 means "a new empty table" (fib_empty_table)
                r.table = next(t for t in range(1, 2**32) if t not in self.stack.tables)
                self.stack.table(r.table)
            if r.tos & 3:
                raise NetlinkError(errno.EINVAL, "Invalid dsfield (tos): ECN bits must be 0")
            if r.tos & ~0x1C:
                raise NetlinkError(errno.EINVAL, "Invalid tos")
            # fib_rule_port_range_valid(): 0 and 65535 are not valid bounds
            for name, rng in (("sport", r.sport), ("dport", r.dport)):
                if rng is not None and (rng[0] == 0 or rng[1] == 0xFFFF or rng[0] > rng[1]):
                    raise NetlinkError(errno.EINVAL, f"Invalid {name} range")
            if not user_pref:
                r.pref = rules.default_pref()
            ix = self.stack.ifindexes()
            if r.iifname:
                r.iifindex = ix.get(r.iifname, -1)
            if r.oifname:
                r.oifindex = ix.get(r.oifname, -1)
            rules.add(r)
            self.stack.custom_rules = True
        else:
            rules.delete(r, user_pref)
            self.stack.custom_rules = True
        return 0

    def rule_list(self, args: list[str]) -> int:
        rows = self.stack.rules.rules
        if args:
            rows = self._rule_filter(rows, args)
        if self.opts.json:
            self.o.json([self.rule_json(r) for r in rows])
        else:
            for r in rows:
                self.o.print(self.rule_text(r))
        return 0

    def _rule_filter(self, rows: list[FibRule], args: list[str]) -> list[FibRule]:
        out = rows
        i = 0
        while i < len(args):
            a = args[i]
            v = args[i + 1] if i + 1 < len(args) else ""
            if a in ("table", "lookup"):
                t = self._table(v)
                out = [r for r in out if r.table == t]
            elif a in ("pref", "priority", "preference", "order"):
                p = _u32(v, "preference")
                out = [r for r in out if r.pref == p]
            elif a == "from":
                addr, plen, _ = _prefix(v)
                out = [r for r in out if r.src == addr and r.src_len == plen]
            elif a == "to":
                addr, plen, _ = _prefix(v)
                out = [r for r in out if r.dst == addr and r.dst_len == plen]
            elif a == "fwmark":
                m = _u32(v.partition("/")[0], "fwmark")
                out = [r for r in out if r.mark == m]
            elif a in ("iif", "dev"):
                out = [r for r in out if r.iifname == v]
            elif a == "oif":
                out = [r for r in out if r.oifname == v]
            i += 2
        return out

    def _rule_items(self, r: FibRule) -> list[tuple[str, str, Any]]:
        items: list[tuple[str, str, Any]] = []
        if r.src_len:
            items.append(("from", "src", ntoa(r.src)))
        else:
            items.append(("from", "src", "all"))
        if r.dst_len:
            items.append(("to", "dst", ntoa(r.dst)))
        if r.tos:
            items.append(("tos", "tos", dsfield_name(r.tos)))
        if r.mark or r.mark_mask:
            if r.mark_mask != 0xFFFFFFFF:
                items.append(("fwmark", "fwmark", f"0x{r.mark:x}/0x{r.mark_mask:x}"))
            else:
                items.append(("fwmark", "fwmark", f"0x{r.mark:x}"))
        if r.iifname:
            items.append(("iif", "iif", r.iifname))
        if r.oifname:
            items.append(("oif", "oif", r.oifname))
        if r.ip_proto:
            items.append(("ipproto", "ipproto", IP_PROTO_NAMES.get(r.ip_proto, f"ipproto-{r.ip_proto}")))
        for name, rng in (("sport", r.sport), ("dport", r.dport)):
            if rng is not None:
                items.append((name, name, f"{rng[0]}" if rng[0] == rng[1] else f"{rng[0]}-{rng[1]}"))
        return items

    def rule_text(self, r: FibRule) -> str:
        s = f"{r.pref}:\t"
        if r.invert:
            s += "not "
        parts = []
        for kw, _k, v in self._rule_items(r):
            if kw == "from" and r.src_len not in (0, 32):
                v = f"{v}/{r.src_len}"
            if kw == "to" and r.dst_len != 32:
                v = f"{v}/{r.dst_len}"
            parts.append(f"{kw} {v}")
            if kw == "iif" and r.iifindex < 0:
                parts[-1] += " [detached]"
            if kw == "oif" and r.oifindex < 0:
                parts[-1] += " [detached]"
        if r.table:  # print_rule(): any rule with a table shows it
            parts.append(f"lookup {self.stack.table_name(r.table)}")
            if r.suppress_prefixlen >= 0:
                parts.append(f"suppress_prefixlength {r.suppress_prefixlen}")
        if r.action == FR_ACT_NAT:
            parts.append(f"map-to {ntoa(r.nat_addr)}")
        elif r.action == FR_ACT_GOTO:
            parts.append(f"goto {r.target}")
            if self.stack.rules.target_index(r.target) < 0:
                parts[-1] += " [unresolved]"
        elif r.action == FR_ACT_NOP:
            parts.append("nop")
        elif r.action != FR_ACT_TO_TBL:
            parts.append(RTN_NAMES[r.action])
        return s + " ".join(parts)

    def rule_json(self, r: FibRule) -> dict[str, Any]:
        j: dict[str, Any] = {"priority": r.pref}
        if r.invert:
            j["not"] = None
        for _kw, k, v in self._rule_items(r):
            if k == "src":
                j["src"] = v
                if r.src_len not in (0, 32):
                    j["srclen"] = r.src_len
            elif k == "dst":
                j["dst"] = v
                if r.dst_len != 32:
                    j["dstlen"] = r.dst_len
            elif k == "fwmark":
                m, _, mk = v.partition("/")
                j["fwmark"] = m
                if mk:
                    j["fwmask"] = mk
            elif k in ("sport", "dport"):
                rng = r.sport if k == "sport" else r.dport
                assert rng is not None
                if rng[0] == rng[1]:
                    j[k] = rng[0]
                else:
                    j[f"{k}_start"] = rng[0]
                    j[f"{k}_end"] = rng[1]
            else:
                j[k] = v
                if k == "iif" and r.iifindex < 0:
                    j["iif_detached"] = None
                if k == "oif" and r.oifindex < 0:
                    j["oif_detached"] = None
        if r.table:
            j["table"] = self.stack.table_name(r.table)
            if r.suppress_prefixlen >= 0:
                j["suppress_prefixlen"] = r.suppress_prefixlen
        if r.action == FR_ACT_NAT:
            j["nat"] = ntoa(r.nat_addr)
        elif r.action == FR_ACT_GOTO:
            j["goto"] = r.target
            if self.stack.rules.target_index(r.target) < 0:
                j["unresolved"] = None
        elif r.action == FR_ACT_NOP:
            j["nop"] = None
        elif r.action != FR_ACT_TO_TBL:
            j["action"] = RTN_NAMES[r.action]
        return j


def _route_pred(field: str, v: int) -> Callable[[int, int, FibAlias], bool]:
    """One selector of `ip route show|flush`."""
    def pred(p: int, n: int, fa: FibAlias) -> bool:
        fi = fa.info
        if field == "oif":
            return any(nh.oif == v for nh in fi.nhs)
        if field == "gw":
            return any(nh.gw == v for nh in fi.nhs)
        got = {"proto": fi.protocol, "scope": fi.scope, "type": fa.type, "src": fi.prefsrc, "tos": fa.tos}[field]
        return got == v
    return pred


def _addr_pred(field: str, arg: str) -> Callable[[IfAddr], bool]:
    """One selector of `ip addr show|flush`."""
    if field == "label":
        return lambda a: _fnmatch(a.label, arg)
    if field == "scope":
        sc = SCOPE_BY_NAME.get(arg, 0)
        return lambda a: a.scope == sc
    addr, plen, _ = _prefix(arg)
    m = inet.mask_of(plen)
    return lambda a: not ((a.local ^ addr) & m)


def _prefix_pred(kind: str, pfx: tuple[int, int, bool]) -> Callable[[int, int, FibAlias], bool]:
    addr, plen, _ = pfx
    m = inet.mask_of(plen)
    if kind == "root":
        return lambda p, n, fa: n >= plen and (p & m) == (addr & m)
    if kind == "match":
        return lambda p, n, fa: n <= plen and (addr & inet.mask_of(n)) == p
    return lambda p, n, fa: n == plen and p == addr & m


def _ordered_metrics(metrics: tuple[tuple[str, int], ...]) -> list[tuple[str, int]]:
    d = dict(metrics)
    return [(k, d[k]) for k in METRIC_NAMES if k in d]


def _fnmatch(name: str, pat: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(name, pat)


# -- device and address printing (ipaddress.c) -----------------------------

# print_link_flags() order; LOWER_UP is the carrier (IFF_RUNNING here).
_FLAG_WORDS = ((IFF_LOOPBACK, "LOOPBACK"), (IFF_BROADCAST, "BROADCAST"), (IFF_POINTOPOINT, "POINTOPOINT"),
               (IFF_MULTICAST, "MULTICAST"), (IFF_NOARP, "NOARP"), (IFF_UP, "UP"), (IFF_RUNNING, "LOWER_UP"))


def _flag_words(d: Device) -> list[str]:
    f = d.flags
    return [word for bit, word in _FLAG_WORDS if f & bit]


def _state(d: Device) -> str:
    if not d.up:
        return "DOWN"
    return "UNKNOWN" if d.kind in ("loopback", "dummy", "tun", "tap") else "UP"


def link_head(d: Device, mode: bool) -> str:
    qdisc = "noqueue" if d.up else "noop"
    if d.up and d.kind in ("tap", "ether"):
        qdisc = "fq_codel"
    m = " mode DEFAULT" if mode else ""
    return (f"{d.ifindex}: {d.name}: <{','.join(_flag_words(d))}> mtu {d.mtu} qdisc {qdisc} "
            f"state {_state(d)}{m} group default qlen {d.qlen}")


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def link_l2(d: Device) -> str:
    if d.loopback:
        return "link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00"
    if d.kind == "tun":
        return "link/none "
    return f"link/ether {_mac(d.mac)} brd ff:ff:ff:ff:ff:ff"


def link_json(d: Device) -> dict[str, Any]:
    j: dict[str, Any] = {"ifindex": d.ifindex, "ifname": d.name, "flags": _flag_words(d), "mtu": d.mtu,
                         "qdisc": "noqueue" if d.up else "noop", "operstate": _state(d), "group": "default",
                         "txqlen": d.qlen}
    if d.loopback:
        j.update({"link_type": "loopback", "address": "00:00:00:00:00:00", "broadcast": "00:00:00:00:00:00"})
    elif d.kind == "tun":
        j["link_type"] = "none"
    else:
        j.update({"link_type": "ether", "address": _mac(d.mac), "broadcast": "ff:ff:ff:ff:ff:ff"})
    return j


def addr_line(d: Device, a: IfAddr) -> str:
    s = f"    inet {ntoa(a.local)}"
    if a.has_peer:
        s += f" peer {inet.prefix_str(a.address, a.prefixlen) if a.prefixlen != 32 else ntoa(a.address) + '/32'}"
    else:
        s += f"/{a.prefixlen}"
    if a.broadcast:
        s += f" brd {ntoa(a.broadcast)}"
    s += f" scope {SCOPE_NAMES.get(a.scope, str(a.scope))}"
    if a.flags & IFA_F_SECONDARY:
        s += " secondary"
    if a.flags & IFA_F_NOPREFIXROUTE:
        s += " noprefixroute"
    s += f" {a.label}"
    return s


def addr_json(a: IfAddr) -> dict[str, Any]:
    j: dict[str, Any] = {"family": "inet", "local": ntoa(a.local)}
    if a.has_peer:
        j["address"] = ntoa(a.address)
    j["prefixlen"] = a.prefixlen
    if a.broadcast:
        j["broadcast"] = ntoa(a.broadcast)
    j["scope"] = SCOPE_NAMES.get(a.scope, str(a.scope))
    if a.flags & IFA_F_SECONDARY:
        j["secondary"] = True
    if a.flags & IFA_F_NOPREFIXROUTE:
        j["noprefixroute"] = True
    j["label"] = a.label
    j["valid_life_time"] = 4294967295
    j["preferred_life_time"] = 4294967295
    return j
