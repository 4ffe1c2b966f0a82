"""`route` as net-tools 2.10 (Debian 12) runs it: SIOCADDRT/SIOCDELRT and /proc/net/route.

Adding and deleting build a `struct rtentry` as lib/inet_sr.c INET_setroute()
does, and turn it into a FibConfig as the kernel's rtentry_to_fib_config()
(net/ipv4/fib_frontend.c) does: table main, protocol boot, NLM_F_CREATE
without NLM_F_EXCL (a new route goes *before* an existing one of the same
metric), scope link unless a gateway that is unicast in table main is given,
the classless mask from ``netmask``/``/N`` only (``-net`` without one is an
invalid mask, EINVAL, as on any kernel since 2.2), ``metric M`` as priority M,
``reject`` as an unreachable route, and ``dev eth0:0`` as eth0 with the
alias's address as preferred source.

Listing reads table main as fib_route_seq_show() writes /proc/net/route (trie
order, broadcast and multicast routes skipped, flags from fib_flag_trans())
and prints it as lib/inet_gr.c rprint_fib() does, ``-e`` and ``-ee`` included.

What ipgate does differently, on purpose:

* No resolver: without ``-n`` only 0.0.0.0 as a destination becomes
  ``default``; other addresses stay numeric (the real tool asks hosts,
  networks and DNS, e.g. 127.0.0.0 becomes ``loopback``).  Arguments are what
  inet_aton() accepts or ``default``; other names fail as unknown hosts.
* IPv4 only: ``-6``, ``-A inet6`` and the other families are refused.
* The routing cache (``-C``) is empty, as /proc/net/rt_cache has been since
  Linux 3.6.
"""

from __future__ import annotations

import errno
import os

from ipgate.commands.base import Exit, Output
from ipgate.commands.ifconfig import UnknownHost, c_atoi, getmask, ifa_by_label, resolve
from ipgate.errors import NetlinkError
from ipgate.inet import (
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTN_BROADCAST,
    RTN_MULTICAST,
    RTN_PROHIBIT,
    RTN_UNICAST,
    RTN_UNREACHABLE,
    RTPROT_BOOT,
    is_multicast,
    ntoa,
)
from ipgate.route.config import FibConfig
from ipgate.route.fib import FIB_PROPS, FibAlias
from ipgate.stack import Stack

# include/uapi/linux/route.h
RTF_UP = 0x0001
RTF_GATEWAY = 0x0002
RTF_HOST = 0x0004
RTF_REINSTATE = 0x0008
RTF_DYNAMIC = 0x0010
RTF_MODIFIED = 0x0020
RTF_MSS = 0x0040  # RTF_MTU
RTF_WINDOW = 0x0080
RTF_IRTT = 0x0100
RTF_REJECT = 0x0200

# net-support.h exit codes
E_OPTERR = 3
E_LOOKUP = 6
E_SOCK = 7

ROUTE_USAGE = """\
Usage: route [-nNvee] [-FC] [<AF>]           List kernel routing tables
       route [-v] [-FC] {add|del|flush} ...  Modify routing table for AF.

       route {-h|--help} [<AF>]              Detailed usage syntax for specified AF.
       route {-V|--version}                  Display version/author and exit.

        -v, --verbose            be verbose
        -n, --numeric            don't resolve names
        -e, --extend             display other/more information
        -F, --fib                display Forwarding Information Base (default)
        -C, --cache              display routing cache instead of FIB

  <AF>=Use -4, -6, '-A <af>' or '--<af>'; default: inet
  List of possible address families (which support routing):
"""
# print_aflist(1) writes to stderr, whatever the usage went to.
ROUTE_AF_LIST = (
    "    inet (DARPA Internet) inet6 (IPv6) ax25 (AMPR AX.25) \n"
    "    netrom (AMPR NET/ROM) rose (AMPR ROSE) ipx (Novell IPX) \n"
    "    ddp (Appletalk DDP) x25 (CCITT X.25) \n"
)
INET_ROUTE_USAGE = """\
Usage: inet_route [-vF] del {-host|-net} Target[/prefix] [gw Gw] [metric M] [[dev] If]
       inet_route [-vF] add {-host|-net} Target[/prefix] [gw Gw] [metric M]
                              [netmask N] [mss Mss] [window W] [irtt I]
                              [mod] [dyn] [reinstate] [[dev] If]
       inet_route [-vF] add {-host|-net} Target[/prefix] [metric M] reject
       inet_route [-FC] flush      NOT supported
"""
VERSION = """\
net-tools 2.10
+NEW_ADDRT +RTF_IRTT +RTF_REJECT +I18N +SELINUX
AF: (inet) +UNIX +INET +INET6 +IPX +AX25 +NETROM +X25 +ATALK +ECONET +ROSE -BLUETOOTH
HW:  +ETHER +ARC +SLIP +PPP +TUNNEL -TR +AX25 +NETROM +X25 +FR +ROSE +ASH +SIT +FDDI +HIPPI +HDLC/LAPB +EUI64 \n"""

_AF_NAMES = ("inet", "inet6", "ax25", "netrom", "rose", "ipx", "ddp", "x25")
_LONG = {"extend": "e", "verbose": "v", "version": "V", "numeric": "n", "symbolic": "N",
         "protocol": "A", "cache": "C", "fib": "F", "help": "h"}

FLAG_EXT = 3


def _route_usage(o: Output, to_stdout: bool) -> None:
    if to_stdout:
        o.write(ROUTE_USAGE)
    else:
        o.err.append(ROUTE_USAGE)
    o.err.append(ROUTE_AF_LIST)


def _inet_usage(o: Output, rc: int) -> int:
    """inet_sr.c usage(rc): stdout when rc is 0, else stderr."""
    if rc:
        o.err.append(INET_ROUTE_USAGE)
    else:
        o.write(INET_ROUTE_USAGE)
    return rc


def route(stack: Stack, args: list[str], o: Output) -> int:
    """net-tools route: getopt_long() over the options, then show, add or del."""
    # "getopts and -net wont work :-/" -- route.c renames them before getopt.
    argv = ["#net" if a == "-net" else "#host" if a == "-host" else a for a in args]
    opt_n = False
    opt_e = 1
    fib = cache = False
    helped = False
    af = ""
    operands: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            operands += argv[i:]
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, val = a[2:].partition("=")
            matches = [k for k in (*_LONG, *_AF_NAMES) if k.startswith(name)]
            exact = name if name in matches else (matches[0] if len(matches) == 1 else "")
            if not exact:
                o.error(f"route: unrecognized option '{a}'" if not matches else
                        f"route: option '{a}' is ambiguous")
                _route_usage(o, to_stdout=True)
                return 0
            if exact in _AF_NAMES:
                af = exact
                continue
            opt = _LONG[exact]
            if opt == "A":
                if not eq:
                    if i >= len(argv):
                        o.error(f"route: option '--{exact}' requires an argument")
                        _route_usage(o, to_stdout=True)
                        return 0
                    val = argv[i]
                    i += 1
                af = val
                continue
            shorts = opt
        elif a.startswith("-") and len(a) > 1:
            shorts = a[1:]
        else:
            operands.append(a)
            continue
        j = 0
        while j < len(shorts):
            c = shorts[j]
            j += 1
            if c == "n" or c == "N":
                opt_n = opt_n or c == "n"
            elif c == "v":
                pass
            elif c == "e":
                opt_e += 1
            elif c == "C":
                cache = True
            elif c == "F":
                fib = True
            elif c == "4":
                af = "inet"
            elif c == "6":
                af = "inet6"
            elif c == "A":
                if j < len(shorts):
                    af = shorts[j:]
                elif i < len(argv):
                    af = argv[i]
                    i += 1
                else:
                    o.error("route: option requires an argument -- 'A'")
                    _route_usage(o, to_stdout=True)
                    return 0
                break
            elif c == "V":
                o.write(VERSION)
                return 0
            elif c in ("h", "?"):
                helped = True
            else:
                o.error(f"route: invalid option -- '{c}'")
                helped = True
    if helped and not af:
        _route_usage(o, to_stdout=True)
        return 0
    for fam in (af or "inet").split(","):
        if fam not in _AF_NAMES:
            raise Exit(1, f"Unknown address family `{fam}'.")
        if fam != "inet":
            raise Exit(1, f"route: address family `{fam}' is not modelled by ipgate (IPv4 only)")
    if helped:
        return _inet_usage(o, 0)
    if not fib and not cache:
        fib = True
    ext = opt_e & FLAG_EXT
    if not operands:
        return show(stack, o, ext, numeric=opt_n, fib=fib, cache=cache)
    verb = operands[0]
    if verb == "add":
        action = "add"
    elif verb in ("del", "delete"):
        action = "del"
    elif verb == "flush":
        o.error("Flushing `inet' routing table not supported")
        return _inet_usage(o, E_OPTERR)
    else:
        _route_usage(o, to_stdout=False)
        return E_OPTERR
    if cache:
        o.error("Modifying `inet' routing cache not supported")
        return _inet_usage(o, E_OPTERR)
    if len(operands) == 1:
        return _inet_usage(o, 0)
    return _setroute(stack, o, action, operands[1:])


# -- add / del (lib/inet_sr.c INET_setroute, fib_frontend.c) ---------------

class _RtEntry:
    """The struct rtentry fields INET_setroute() fills."""

    def __init__(self) -> None:
        self.dst = 0
        self.genmask: int | None = None  # None: rt_genmask left all zero
        self.gateway = 0
        self.flags = RTF_UP | RTF_HOST
        self.metric = 0  # short rt_metric: metric + 1
        self.mss = 0
        self.window = 0
        self.irtt = 0
        self.dev = ""


def _setroute(stack: Stack, o: Output, action: str, args: list[str]) -> int:
    xflag = 0
    if args[0] == "#net":
        xflag = 1
        args = args[1:]
    elif args[0] == "#host":
        xflag = 2
        args = args[1:]
    if not args:
        return _inet_usage(o, E_OPTERR)
    rt = _RtEntry()
    target = args[0]
    try:
        target, mask = getmask(target)
    except ValueError:
        return _inet_usage(o, E_OPTERR)
    netmask_text = "default"
    if mask is not None:
        rt.genmask = mask
        netmask_text = f"/{_mask_len_c(mask)}"
    try:
        rt.dst, isnet = resolve(target)
    except UnknownHost as e:
        o.error(str(e))
        return E_LOOKUP
    if xflag == 1:
        isnet = True
    elif xflag == 2:
        isnet = False
    if isnet:
        rt.flags &= ~RTF_HOST
    rest = args[1:]
    k = 0
    while k < len(rest):
        w = rest[k]
        nxt = rest[k + 1] if k + 1 < len(rest) else None
        if w == "metric":
            if nxt is None or not nxt[:1].isdigit():
                return _inet_usage(o, E_OPTERR)
            rt.metric = _short(c_atoi(nxt) + 1)
            k += 2
        elif w == "netmask":
            if nxt is None or rt.genmask:
                return _inet_usage(o, E_OPTERR)
            netmask_text = nxt
            try:
                rt.genmask = resolve(nxt)[0]
            except UnknownHost as e:
                o.error(str(e))
                return E_LOOKUP
            k += 2
        elif w in ("gw", "gateway"):
            if nxt is None or rt.flags & RTF_GATEWAY:
                return _inet_usage(o, E_OPTERR)
            try:
                rt.gateway, gw_isnet = resolve(nxt)
            except UnknownHost as e:
                o.error(str(e))
                return E_LOOKUP
            if gw_isnet:
                o.error(f"route: {nxt}: cannot use a NETWORK as gateway!")
                return _inet_usage(o, E_OPTERR)
            rt.flags |= RTF_GATEWAY
            k += 2
        elif w in ("mss", "mtu"):
            if nxt is None:
                return _inet_usage(o, E_OPTERR)
            rt.flags |= RTF_MSS
            rt.mss = c_atoi(nxt)
            k += 2
            if not 64 <= rt.mss <= 65536:
                o.error("route: Invalid MSS/MTU.")
                return _inet_usage(o, E_OPTERR)
        elif w == "window":
            if nxt is None:
                return _inet_usage(o, E_OPTERR)
            rt.flags |= RTF_WINDOW
            rt.window = c_atoi(nxt)
            k += 2
            if rt.window < 128:
                o.error("route: Invalid window.")
                return _inet_usage(o, E_OPTERR)
        elif w == "irtt":
            if nxt is None:
                return _inet_usage(o, E_OPTERR)
            rt.flags |= RTF_IRTT
            rt.irtt = c_atoi(nxt)  # * (HZ / 100), HZ being 100 for user space
            k += 2
        elif w == "reject":
            rt.flags |= RTF_REJECT
            k += 1
        elif w in ("mod", "dyn", "reinstate"):
            rt.flags |= {"mod": RTF_MODIFIED, "dyn": RTF_DYNAMIC, "reinstate": RTF_REINSTATE}[w]
            k += 1
        elif w in ("device", "dev"):
            if rt.dev or nxt is None:
                return _inet_usage(o, E_OPTERR)
            rt.dev = nxt
            k += 2
        else:
            # Anything else is the device, and must come last ("to catch typos").
            if rt.dev or k + 1 < len(rest):
                return _inet_usage(o, E_OPTERR)
            rt.dev = w
            k += 1
    if rt.flags & RTF_REJECT and not rt.dev:
        rt.dev = "lo"
    if rt.genmask:
        inv = (~rt.genmask) & 0xFFFFFFFF
        if rt.flags & RTF_HOST and inv != 0xFFFFFFFF:
            o.error(f"route: netmask {inv:08x} doesn't make sense with host route")
            return _inet_usage(o, E_OPTERR)
        if inv & (inv + 1):
            o.error(f"route: bogus netmask {netmask_text}")
            return _inet_usage(o, E_OPTERR)
        if rt.dst & ~rt.genmask & 0xFFFFFFFF:
            o.error("route: netmask doesn't match route address")
            return _inet_usage(o, E_OPTERR)
    if action == "add" and rt.flags & RTF_HOST:
        rt.genmask = 0xFFFFFFFF
    ioctl = "SIOCADDRT" if action == "add" else "SIOCDELRT"
    try:
        cfg = rtentry_to_fib_config(stack, rt, action == "del")
        if action == "add":
            stack.route_add(cfg)
        else:
            stack.route_del(cfg)
    except NetlinkError as e:
        o.error(f"{ioctl}: {os.strerror(e.errno)}")
        return E_SOCK
    return 0


def _short(v: int) -> int:
    """The value as the `short rt_metric` field holds it."""
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


def _mask_len_c(mask: int) -> int:
    inv = (~mask) & 0xFFFFFFFF
    return 32 - inv.bit_length()


def rtentry_to_fib_config(stack: Stack, rt: _RtEntry, delete: bool) -> FibConfig:
    """rtentry_to_fib_config() + the part of ip_rt_ioctl() before fib_table_insert/delete."""
    cfg = FibConfig(table=RT_TABLE_MAIN, excl=False)
    plen = 32
    if not rt.flags & RTF_HOST:
        mask = rt.genmask or 0
        inv = (~mask) & 0xFFFFFFFF
        if rt.dst & inv or inv & (inv + 1):  # bad_mask()
            raise NetlinkError(errno.EINVAL)
        plen = 32 - inv.bit_length()
    cfg.dst, cfg.dst_len = rt.dst, plen
    if not delete:
        cfg.create, cfg.protocol = True, RTPROT_BOOT
    else:
        cfg.create = False
    if rt.metric:
        cfg.priority = (rt.metric - 1) & 0xFFFFFFFF
    if rt.flags & RTF_REJECT:
        cfg.scope, cfg.type = RT_SCOPE_HOST, RTN_UNREACHABLE
        return cfg
    cfg.scope, cfg.type = RT_SCOPE_NOWHERE, RTN_UNICAST
    if rt.dev:
        devname = rt.dev[:15]
        d = stack.devices.get(devname.split(":", 1)[0])
        if d is None:
            raise NetlinkError(errno.ENODEV)
        cfg.oif = d.ifindex
        if ":" in devname:
            # The alias's address becomes the preferred source.
            ifa = ifa_by_label(stack, d, devname)
            if ifa is None:
                raise NetlinkError(errno.ENODEV)
            cfg.prefsrc = ifa.local
    if rt.gateway:
        cfg.gw = rt.gateway
        if rt.flags & RTF_GATEWAY and addr_type_table0(stack, rt.gateway) == RTN_UNICAST:
            cfg.scope = RT_SCOPE_UNIVERSE
    if delete:
        return cfg
    if rt.flags & RTF_GATEWAY and not cfg.gw:
        raise NetlinkError(errno.EINVAL)
    if cfg.scope == RT_SCOPE_NOWHERE:
        cfg.scope = RT_SCOPE_LINK
    if rt.flags & RTF_MSS:
        cfg.metrics["advmss"] = (rt.mss - 40) & 0xFFFFFFFF
    if rt.flags & RTF_WINDOW:
        cfg.metrics["window"] = rt.window & 0xFFFFFFFF
    if rt.flags & RTF_IRTT:
        # RTAX_RTT = irtt << 3; ipgate keeps rtt in the unit `ip route` prints (ms).
        cfg.metrics["rtt"] = rt.irtt & 0xFFFFFFFF
    return cfg


def addr_type_table0(stack: Stack, addr: int) -> int:
    """inet_addr_type_table(net, addr, 0), as rtentry_to_fib_config() asks it.

    Table 0 means table main, whose trie also holds table local's routes until
    a rule is added (fib_trie's merged tables), and fib_table_lookup() does not
    look at which table a route came from: a gateway that is a local address
    (127.0.0.1) is LOCAL, not UNICAST, and its route gets scope link.
    """
    if addr == 0 or addr == 0xFFFFFFFF:
        return RTN_BROADCAST
    if is_multicast(addr):
        return RTN_MULTICAST
    ids = [RT_TABLE_MAIN] if stack.custom_rules else [RT_TABLE_LOCAL, RT_TABLE_MAIN]
    # The trie's order: longest prefix first; in a leaf, higher table id first.
    found: list[tuple[int, int, tuple[FibAlias, ...]]] = []
    for rank, tb in enumerate(ids):
        t = stack.tables.get(tb)
        if t is not None:
            found += [(-plen, rank, leaf) for _, plen, leaf in t.candidates(addr)]
    for _, _, leaf in sorted(found, key=lambda x: (x[0], x[1])):
        for fa in leaf:
            if fa.tos:
                continue
            if FIB_PROPS[fa.type][0]:
                return RTN_UNICAST  # the lookup fails: "unicast" stays the answer
            return fa.type
    return RTN_UNICAST


# -- listing (fib_route_seq_show + lib/inet_gr.c rprint_fib) ---------------

_HEADERS = {
    1: "Destination     Gateway         Genmask         Flags Metric Ref    Use Iface\n",
    2: "Destination     Gateway         Genmask         Flags   MSS Window  irtt Iface\n",
    3: "Destination     Gateway         Genmask         Flags Metric Ref    Use Iface    MSS   Window irtt\n",
}
_CACHE_HEADERS = {
    1: "Source          Destination     Gateway         Flags Metric Ref    Use Iface\n",
    2: "Source          Destination     Gateway         Flags   MSS Window  irtt Iface\n",
    3: "Source          Destination     Gateway         Flags Metric Ref    Use Iface    "
       "MSS   Window irtt  TOS HHRef HHUptod     SpecDst\n",
}


def proc_net_route(stack: Stack) -> list[tuple[str, int, int, int, int, int, int, int, int]] | None:
    """/proc/net/route rows: (iface, dst, gw, flags, metric, mask, mtu, window, irtt).

    None when the file is empty: the main table's trie holds nothing (while no
    rule was ever added, the local table shares that trie).
    """
    main = stack.tables.get(RT_TABLE_MAIN)
    local = stack.tables.get(RT_TABLE_LOCAL)
    if (main is None or not len(main)) and (stack.custom_rules or local is None or not len(local)):
        return None
    rows: list[tuple[str, int, int, int, int, int, int, int, int]] = []
    if main is None:
        return rows
    for p, n, fa in main.entries():
        if fa.type in (RTN_BROADCAST, RTN_MULTICAST):
            continue
        fi = fa.info
        nh = fi.nhs[0] if fi.nhs else None
        # fib_flag_trans()
        flags = RTF_REJECT if fa.type in (RTN_UNREACHABLE, RTN_PROHIBIT) else 0
        if nh is not None and nh.gw:
            flags |= RTF_GATEWAY
        if n == 32:
            flags |= RTF_HOST
        flags |= RTF_UP
        dev = stack.by_index.get(nh.oif) if nh is not None and nh.oif else None
        advmss = fi.metric("advmss")
        rows.append((dev.name if dev is not None else "*", p, nh.gw if nh is not None else 0, flags,
                     _s32(fi.priority), (0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF,
                     advmss + 40 if advmss else 0, fi.metric("window"), fi.metric("rtt")))
    return rows


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _flags_text(iflags: int) -> str:
    s = ""
    if iflags & RTF_UP:
        s += "U"
    if iflags & RTF_GATEWAY:
        s += "G"
    if iflags & RTF_REJECT:
        s = "!"
    if iflags & RTF_HOST:
        s += "H"
    return s


def show(stack: Stack, o: Output, ext: int, numeric: bool, fib: bool, cache: bool) -> int:
    """INET_rprint(): the FIB and/or the (empty) routing cache."""
    if fib:
        rc = _rprint_fib(stack, o, ext, numeric)
        if rc:
            return rc
    if cache:
        o.write("Kernel IP routing cache\n" + _CACHE_HEADERS.get(min(ext, 3), ""))
    return 0


def _rprint_fib(stack: Stack, o: Output, ext: int, numeric: bool) -> int:
    out = ["Kernel IP routing table\n", _HEADERS.get(min(ext, 3), "")]
    rows = proc_net_route(stack)
    if rows is None:  # proc_gen_fmt() finds no header line
        o.write("".join(out))
        return 1
    for iface, dst, gw, iflags, metric, mask, mss, window, irtt in rows:
        net = ntoa(dst)
        if dst == 0 and not numeric:
            net = "default"
        gate, genmask, flags = ntoa(gw), ntoa(mask), _flags_text(iflags)
        reject = bool(iflags & RTF_REJECT)
        if ext == 1:
            if reject:
                out.append(f"{net:<15} -               {genmask:<15} {flags:<5} {metric:<6d} -  {0:7d} -\n")
            else:
                out.append(f"{net:<15} {gate:<15} {genmask:<15} {flags:<5} {metric:<6d} {0:<2d} {0:7d} {iface}\n")
        elif ext == 2:
            if reject:
                out.append(f"{net:<15} -               {genmask:<15} {flags:<5}     - -          - -\n")
            else:
                out.append(f"{net:<15} {gate:<15} {genmask:<15} {flags:<5} {mss:5d} {window:<5d} {irtt:6d} {iface}\n")
        elif ext == 3:
            if reject:
                out.append(f"{net:<15} -               {genmask:<15} {flags:<5} {metric:<6d} -  {0:7d} -"
                           "        -     -      -\n")
            else:
                out.append(f"{net:<15} {gate:<15} {genmask:<15} {flags:<5} {metric:<6d} {0:<3d} {0:6d} "
                           f"{iface[:6]:<6}   {mss:<5d} {window:<6d} {irtt}\n")
    o.write("".join(out))
    return 0

