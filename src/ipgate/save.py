"""`ipgate save`: the running configuration as a script that loads back to the same state.

The script uses the same commands a hand-written configuration does, in the
order the kernel needs them:

1. `rt_tables` names, then the sysctls that differ from a fresh box;
2. devices in ifindex order (indexes the original freed are taken and given
   back by placeholder devices, so listings keep the same numbers), their
   MTU, MAC address and queue length, per-device sysctls, addresses in list
   order (primaries before secondaries, as `ifa_list` holds them), `up`;
3. routes: the part above is replayed on a scratch stack and every prefix
   whose aliases differ from the running ones (routes the user added, kernel
   routes the user deleted, a different alias order) is deleted and
   appended again in the running order, so the tables come out identical;
4. the rules (`ip rule flush`, then every rule in order) when they were
   ever changed;
5. the iptables tables as iptables-save prints them, each line turned into
   an `iptables -t TABLE` command (the script format has no here-documents
   for `iptables-restore`); counters start at zero as after a restore;
6. conntrack helpers (`modprobe`) and the conntrack sysctls;
7. the IP Filter NAT rules in `ipnat -l` order, one
   ``echo 'RULE' | ipnat -f -`` each (valid sh with the real ipnat too;
   ``printf '%s\\n' 'RULE'`` when the rule holds a backslash, which some
   echo commands would interpret).  The rule is written by `conf_rule`
   (nat/ipnat/printer.py), not as `ipnat -l` prints it, so that it reads back
   to the same rule; each line is checked by reading it back, and a rule that
   cannot be (a name with a line break in it) is left as a comment.

Devices that are down but still carry routes were up once: they are brought
up for step 3 and down again at the end, which leaves what the kernel leaves.
Not saved: the conntrack table and the ipnat sessions (run-time state, not
configuration: `ipgate run --state FILE` carries them over a restart).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from ipgate.commands.base import Output
from ipgate.commands.script import split_line
from ipgate.conntrack.helper import KNOWN_HELPERS
from ipgate.conntrack.sysctl import CtSysctl
from ipgate.errors import ConfigError
from ipgate.inet import (
    PROTO_NAMES,
    RT_SCOPE_HOST,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTN_NAMES,
    RTN_NAT,
    RTN_UNICAST,
    RTPROT_BOOT,
    SCOPE_NAMES,
    ntoa,
    prefix_str,
)
from ipgate.link.device import IFA_F_NOPREFIXROUTE, Device, IfAddr
from ipgate.nat.ipnat.parse import parse
from ipgate.nat.ipnat.printer import conf_rule, printnat
from ipgate.nat.ipnat.rule import NatRule
from ipgate.nat.ipnat.state import IpnatState
from ipgate.route.bulk import load_routes
from ipgate.route.fib import RTNH_F_ONLINK, FibAlias
from ipgate.route.rules import FR_ACT_GOTO, FR_ACT_NAT, FR_ACT_NOP, FR_ACT_TO_TBL, FibRule
from ipgate.shell import Shell, load_script
from ipgate.stack import DEFAULT_RT_TABLES, DEVCONF_KEYS, SYSCTL_DEFAULTS, Stack

__all__ = ["save"]

_RULE_ACTIONS = {6: "blackhole", 7: "unreachable", 8: "prohibit"}
BULK_MIN = 1000  # this many plain gateway routes take the bulk loader
BULK_RETRIES = 64  # refused lines taken out of a bulk run before all of it goes the slow way
_HELPER_METRIC = 0xFFFFFFFF  # temporary helper routes: a metric nothing else uses


def _q(words: list[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)


def save(stack: Stack) -> str:
    """The script; `load_script(save(s), ...)` lists like `s` (addresses, routes, rules, tables)."""
    temp_up = _temp_up(stack)
    head = _head(stack, temp_up)
    scratch = _replay(head)
    lines = list(head)
    lines += _routes(stack, scratch, temp_up)
    for d in sorted(temp_up, key=lambda d: d.ifindex):
        lines.append(_q(["ip", "link", "set", "dev", d.name, "down"]))
    lines += _rules(stack)
    lines += _iptables(stack)
    lines += _conntrack(stack)
    lines += _sysctl_fixups(stack, _replay(lines))
    lines += _ipnat(stack)  # not replayed above: they change no sysctl (and loading them is quadratic)
    return "\n".join(lines) + "\n"


def _replay(lines: list[str]) -> Stack:
    return load_script("\n".join(lines) + "\n", "<save>")


# -- names, sysctls, devices, addresses -------------------------------------------------------
def _temp_up(stack: Stack) -> list[Device]:
    """Down devices that a route other than a host-scope one (local addresses stay on a device that is
    down) still points at, as a dead nexthop: they were up when those routes were made."""
    down = {d.ifindex: d for d in stack.devices.values() if not d.up and not d.loopback}
    used: set[int] = set()
    for t in stack.tables.values():
        for _p, _n, fa in t.entries():
            if fa.info.scope != RT_SCOPE_HOST:
                used.update(nh.oif for nh in fa.info.nhs if nh.oif in down)
    return [down[i] for i in sorted(used)]


def _head(stack: Stack, temp_up: list[Device]) -> list[str]:
    out = ["# ipgate save: the running configuration (load it with `ipgate run -c` or `ipgate -c`)"]
    for num, name in sorted(stack.rt_tables.items()):
        if DEFAULT_RT_TABLES.get(num) != name:
            out.append(f'echo {shlex.quote(f"{num} {name}")} >> /etc/iproute2/rt_tables')
    per_dev = {f"net.ipv4.conf.{n}.{k}" for n in stack.devices for k in DEVCONF_KEYS}
    for key, value in stack.sysctl.items():
        if key not in per_dev and SYSCTL_DEFAULTS.get(key) != value:
            out.append(f"sysctl -qw {key}={value}")
    out += _devices(stack)
    for d in sorted(stack.devices.values(), key=lambda d: d.ifindex):
        if d.loopback:
            continue
        for k in DEVCONF_KEYS:
            v = stack.sysctl.get(f"net.ipv4.conf.{d.name}.{k}", 0)
            if v != stack.sysctl.get(f"net.ipv4.conf.default.{k}", 0):
                out.append(f"echo {v} > /proc/sys/net/ipv4/conf/{d.name}/{k}")
    for d in sorted(stack.devices.values(), key=lambda d: d.ifindex):
        out += _addresses(d)
    for d in sorted(stack.devices.values(), key=lambda d: d.ifindex):
        if d.loopback:
            if not d.up:
                out.append("ip link set dev lo down")
        elif d.up or d in temp_up:
            out.append(_q(["ip", "link", "set", "dev", d.name, "up"]))
    return out


def _devices(stack: Stack) -> list[str]:
    out: list[str] = []
    devs = sorted(stack.devices.values(), key=lambda d: d.ifindex)
    fresh = Stack()  # what a new device gets by default (MAC, queue length)
    nxt = 2  # lo is 1
    gap = 0
    done: set[str] = set()
    for d in devs:
        if d.loopback:
            if d.mtu != 65536:
                out.append(f"ip link set dev lo mtu {d.mtu}")
            continue
        if d.name in done:
            continue
        while nxt < d.ifindex:  # an index freed by a deleted device: take it and give it back
            name = _free_name(stack, gap)
            gap += 1
            out.append(f"ip link add {name} type dummy")
            out.append(f"ip link del {name}")
            nxt += 1
        words = ["ip", "link", "add", d.name, "type", d.kind]
        peer = stack.devices.get(d.peer) if d.kind == "veth" and d.peer else None
        if peer is not None:
            words += ["peer", "name", peer.name]
            done.add(peer.name)
        out.append(_q(words))
        nxt += 2 if peer is not None else 1
        for dev in (d, peer) if peer is not None else (d,):
            ref = fresh.link_add(dev.name, "dummy" if dev.kind == "veth" else dev.kind)
            sets: list[str] = []
            if dev.mtu != ref.mtu:
                sets += ["mtu", str(dev.mtu)]
            if dev.mac != ref.mac and dev.kind not in ("tun", "loopback"):
                sets += ["address", ":".join(f"{b:02x}" for b in dev.mac)]
            if dev.qlen != ref.qlen:
                sets += ["txqueuelen", str(dev.qlen)]
            if sets:
                out.append(_q(["ip", "link", "set", "dev", dev.name, *sets]))
    return out


def _free_name(stack: Stack, n: int) -> str:
    while True:
        name = f"ipgate-gap{n}"
        if name not in stack.devices:
            return name
        n += 1


def _addresses(d: Device) -> list[str]:
    default_lo = d.loopback and len(d.addrs) == 1 and _is_default_lo(d.addrs[0])
    if d.loopback and default_lo:
        return []
    out = [_q(["ip", "addr", "flush", "dev", "lo"])] if d.loopback else []
    out += [_q(_addr_words(d, a)) for a in d.addrs]
    return out


def _is_default_lo(a: IfAddr) -> bool:
    return (a.local, a.prefixlen, a.address, a.broadcast, a.scope, a.label, a.has_peer) == (
        0x7F000001, 8, 0x7F000001, 0, RT_SCOPE_HOST, "lo", False)


def _addr_words(d: Device, a: IfAddr) -> list[str]:
    w = ["ip", "addr", "add", f"{ntoa(a.local)}/{a.prefixlen}" if not a.has_peer else ntoa(a.local)]
    if a.has_peer:
        w += ["peer", f"{ntoa(a.address)}/{a.prefixlen}"]
    if a.broadcast:
        w += ["broadcast", ntoa(a.broadcast)]
    w += ["scope", SCOPE_NAMES.get(a.scope, str(a.scope)), "label", a.label, "dev", d.name]
    if a.flags & IFA_F_NOPREFIXROUTE:
        w.append("noprefixroute")
    return w


# -- routes ----------------------------------------------------------------------------------
def _leaves(stack: Stack, tb: int) -> dict[tuple[int, int], tuple[FibAlias, ...]]:
    t = stack.tables.get(tb)
    if t is None:
        return {}
    out: dict[tuple[int, int], list[FibAlias]] = {}
    for p, n, fa in t.entries():
        out.setdefault((p, n), []).append(fa)
    return {k: tuple(v) for k, v in out.items()}


def _routes(stack: Stack, scratch: Stack, temp_up: list[Device]) -> list[str]:
    """Make `scratch`'s tables equal to `stack`'s; return the commands that did it.

    Each command is run on `scratch` as it is emitted, so that a line that
    would fail on reload (a gateway or preferred source that only some later
    route makes valid, or that is no longer valid at all because the address
    behind it went away after the route was made) is never written as is:
    prefixes are retried until no more succeed, then the rest get temporary
    helper routes that make their nexthops valid for the moment of the
    `append`, as the state they were made in did.
    """
    sh = Shell(scratch)
    out: list[str] = []
    going_down = {d.ifindex for d in temp_up}
    pending: list[tuple[int, tuple[int, int], tuple[FibAlias, ...]]] = []
    for tb in sorted(set(stack.tables) | set(scratch.tables)):
        want, have = _leaves(stack, tb), _leaves(scratch, tb)
        for key in sorted(set(want) | set(have)):
            w, h = want.get(key, ()), have.get(key, ())
            if w == h:
                continue
            if not w and all(_dies_with(fa, going_down) for fa in h):
                continue  # the temporary `up` made them; the final `down` removes them again
            for fa in h:
                line = ["ip", "route", "del", *_route_words(scratch, tb, key, fa)]
                if sh.run_argv(line).status == 0:
                    out.append(_q(line))
            if w:
                pending.append((tb, key, w))
    # Plain routes via a gateway (a full table) go through the bulk loader: they cannot make another
    # gateway valid (route/bulk.py), so they can all come last, and load back fast too.
    simple = [(leaf, words) for leaf in pending if (words := _bulk_words(stack, *leaf)) is not None]
    if len(simple) >= BULK_MIN:
        pending = [leaf for leaf in pending if _bulk_words(stack, *leaf) is None]
    else:
        simple = []
    # table local first (preferred sources are checked against it), then routes without a gateway
    pending.sort(key=lambda e: (e[0] != RT_TABLE_LOCAL, any(nh.gw for fa in e[2] for nh in fa.info.nhs)))
    _append_all(stack, sh, out, pending)
    slow: list[tuple[int, tuple[int, int], tuple[FibAlias, ...]]] = []
    done = False
    for _ in range(BULK_RETRIES):
        if not simple:
            done = True
            break
        lines = [" ".join(words) for _leaf, words in simple]
        try:
            load_routes(scratch, lines, "<save>", dialect="script")
        except ConfigError as e:  # all or nothing: the refused line (a gateway gone since) goes the slow way
            if not 1 <= e.line <= len(simple):
                break
            slow.append(simple.pop(e.line - 1)[0])
            continue
        out += lines
        # made with another nexthop scope than the running route? Then again, the slow way.
        wrong = [leaf for leaf, _w in simple if scratch.table(leaf[0]).leaf(*leaf[1]) != leaf[2]]
        for tb, key, _want in wrong:
            for fa in scratch.table(tb).leaf(*key):
                line = ["ip", "route", "del", *_route_words(scratch, tb, key, fa)]
                if sh.run_argv(line).status == 0:
                    out.append(_q(line))
        slow += wrong
        done = True
        break
    if not done:
        slow += [leaf for leaf, _w in simple]
    _append_all(stack, sh, out, slow)
    return out


def _append_all(stack: Stack, sh: Shell, out: list[str],
                pending: list[tuple[int, tuple[int, int], tuple[FibAlias, ...]]]) -> None:
    while pending:
        left = [leaf for leaf in pending if not _append_leaf(stack, sh, out, *leaf)]
        if len(left) == len(pending):
            break
        pending = left
    else:
        return
    for tb, key, w in pending:
        if not _append_leaf(stack, sh, out, tb, key, w, helpers=True):
            out.append(f"# not saved (cannot be made again): {prefix_str(*key)} in table {tb}")


def _bulk_words(stack: Stack, tb: int, key: tuple[int, int], w: tuple[FibAlias, ...]) -> list[str] | None:
    """`ip route add P via G dev D [table T] [metric M] [proto P]` (route/bulk.py's grammar) when that
    is all there is to the prefix, else None."""
    if len(w) != 1:
        return None
    fa = w[0]
    fi = fa.info
    if (fa.type != RTN_UNICAST or fa.tos or len(fi.nhs) != 1 or fi.scope != RT_SCOPE_UNIVERSE or fi.prefsrc
            or fi.metrics or not fi.nhs[0].gw or fi.nhs[0].flags):
        return None
    nh = fi.nhs[0]
    words = ["ip", "route", "add", prefix_str(*key) if key[1] else "default", "via", ntoa(nh.gw)]
    if nh.oif:
        words += ["dev", stack.by_index[nh.oif].name]
    if tb != RT_TABLE_MAIN:
        words += ["table", str(tb)]
    if fi.priority:
        words += ["metric", str(fi.priority)]
    if fi.protocol != RTPROT_BOOT:
        words += ["proto", str(fi.protocol)]
    return words


def _append_leaf(stack: Stack, sh: Shell, out: list[str], tb: int, key: tuple[int, int],
                 w: tuple[FibAlias, ...], helpers: bool = False) -> bool:
    """Append a prefix's aliases in order, all or none."""
    lines: list[str] = []
    done: list[list[str]] = []
    for fa in w:
        words = _route_words(stack, tb, key, fa)
        temp = _helper_routes(stack, tb, fa) if helpers else []
        for t in temp:
            if sh.run_argv(["ip", "route", "add", *t]).status == 0:
                lines.append(_q(["ip", "route", "add", *t]))
        ok = sh.run_argv(["ip", "route", "append", *words]).status == 0
        if ok:
            lines.append(_q(["ip", "route", "append", *words]))
            done.append(words)
        for t in temp:
            if sh.run_argv(["ip", "route", "del", *t]).status == 0:
                lines.append(_q(["ip", "route", "del", *t]))
        if not ok:
            for d in done:
                sh.run_argv(["ip", "route", "del", *d])
            return False
    out += lines
    return True


def _helper_routes(stack: Stack, tb: int, fa: FibAlias) -> list[list[str]]:
    """Routes that make `fa` valid to add: its preferred source local, its gateways on-link."""
    temp: list[list[str]] = []
    fi = fa.info
    if fi.prefsrc:
        temp.append(["local", ntoa(fi.prefsrc), "dev", "lo", "table", str(RT_TABLE_LOCAL),
                     "metric", str(_HELPER_METRIC)])
    for nh in fi.nhs:
        d = stack.by_index.get(nh.oif)
        if nh.gw and d is not None and fa.type != RTN_NAT:
            # the route that reached the gateway then: a local address (nexthop scope host) or on-link
            kind = ["local"] if nh.scope == RT_SCOPE_HOST else []
            # fib_check_nh_v4_gw() asks the route's own table, or for main the whole RPDB (local first)
            htb = RT_TABLE_LOCAL if tb == RT_TABLE_MAIN else tb
            temp.append([*kind, ntoa(nh.gw), "dev", d.name, "table", str(htb), "metric", str(_HELPER_METRIC)])
    return temp


def _dies_with(fa: FibAlias, going_down: set[int]) -> bool:
    nhs = fa.info.nhs
    return bool(nhs) and all(nh.oif in going_down for nh in nhs) and fa.info.scope != RT_SCOPE_HOST


def _route_words(stack: Stack, tb: int, key: tuple[int, int], fa: FibAlias) -> list[str]:
    p, n = key
    fi = fa.info
    w: list[str] = []
    if fa.type != RTN_UNICAST:
        w.append(RTN_NAMES[fa.type])
    w.append(prefix_str(p, n) if n else "0.0.0.0/0")
    if fa.tos:
        w += ["tos", f"0x{fa.tos:02x}"]
    if fa.type == RTN_NAT:
        if fi.nhs:
            w += ["via", ntoa(fi.nhs[0].gw)]
    elif len(fi.nhs) == 1:
        w += _nh_words(stack, fi.nhs[0].gw, fi.nhs[0].oif, fi.nhs[0].flags)
    w += ["table", str(tb), "proto", PROTO_NAMES.get(fi.protocol, str(fi.protocol)),
          "scope", SCOPE_NAMES.get(fi.scope, str(fi.scope))]
    if fi.prefsrc:
        w += ["src", ntoa(fi.prefsrc)]
    if fi.priority:
        w += ["metric", str(fi.priority)]
    for k, v in fi.metrics:
        w += [k, str(v)]
    if len(fi.nhs) > 1 and fa.type != RTN_NAT:
        for nh in fi.nhs:
            w += ["nexthop", *_nh_words(stack, nh.gw, nh.oif, nh.flags), "weight", str(nh.weight)]
    return w


def _nh_words(stack: Stack, gw: int, oif: int, flags: int) -> list[str]:
    w: list[str] = []
    if gw:
        w += ["via", ntoa(gw)]
    if oif:
        w += ["dev", stack.by_index[oif].name]
    if flags & RTNH_F_ONLINK:
        w.append("onlink")
    return w


# -- rules -----------------------------------------------------------------------------------
def _rules(stack: Stack) -> list[str]:
    if not stack.custom_rules:
        return []
    rules = stack.rules.rules
    out = ["ip rule flush"]
    fresh0 = [r for r in Stack().rules.rules if r.pref == 0]
    live0 = [r for r in rules if r.pref == 0]
    keep0 = [r.key() for r in live0] == [r.key() for r in fresh0]
    if not keep0:
        out += ["ip rule del pref 0"] * len(fresh0)
    for r in rules:
        if r.pref == 0 and keep0:
            continue
        out.append(_q(["ip", "rule", "add", *_rule_words(r)]))
    return out


def _rule_words(r: FibRule) -> list[str]:
    w = ["pref", str(r.pref)]
    if r.invert:
        w.append("not")
    w += ["from", f"{ntoa(r.src)}/{r.src_len}" if r.src_len else "all"]
    if r.dst_len:
        w += ["to", f"{ntoa(r.dst)}/{r.dst_len}"]
    if r.tos:
        w += ["tos", f"0x{r.tos:02x}"]
    if r.mark or r.mark_mask:
        w += ["fwmark", f"0x{r.mark:x}/0x{r.mark_mask:x}"]
    if r.iifname:
        w += ["iif", r.iifname]
    if r.oifname:
        w += ["oif", r.oifname]
    if r.ip_proto:
        w += ["ipproto", str(r.ip_proto)]
    for name, rng in (("sport", r.sport), ("dport", r.dport)):
        if rng is not None:
            w += [name, f"{rng[0]}-{rng[1]}"]
    if r.table:
        w += ["lookup", str(r.table)]
    if r.suppress_prefixlen >= 0:
        w += ["suppress_prefixlength", str(r.suppress_prefixlen)]
    if r.action == FR_ACT_NAT:
        w += ["nat", ntoa(r.nat_addr)]
    elif r.action == FR_ACT_GOTO:
        w += ["goto", str(r.target)]
    elif r.action == FR_ACT_NOP:
        w.append("nop")
    elif r.action != FR_ACT_TO_TBL:
        w.append(_RULE_ACTIONS[r.action])
    return w


# -- netfilter, conntrack ---------------------------------------------------------------------
def _iptables(stack: Stack) -> list[str]:
    from ipgate.commands.iptables import run_program

    nf = stack.netfilter
    o = Output()
    run_program(nf, "iptables-save", [], o)
    blocks: dict[str, list[str]] = {}
    table = ""
    for line in "".join(o.out).splitlines():
        if line.startswith("*"):
            table = line[1:]
            blocks[table] = []
        elif line.startswith(":") and table:
            chain, policy = line[1:].split()[:2]
            blocks[table].append(f"iptables -t {table} -P {chain} {policy}" if policy != "-"
                                 else f"iptables -t {table} -N {chain}")
        elif line.startswith("-") and table:
            blocks[table].append(f"iptables -t {table} {line}")
    out: list[str] = []
    for name in reversed(nf.loaded()):  # first-touch order, as the running box made them
        out += blocks.get(name, [])
    return out


def _conntrack(stack: Stack) -> list[str]:
    out: list[str] = []
    reg = stack.ct_helpers
    for name, ports in reg.ports.items():
        default = KNOWN_HELPERS[name][1]
        words = ["modprobe", f"nf_conntrack_{name}"]
        if tuple(ports) != tuple(default):
            words.append("ports=" + ",".join(str(p) for p in ports))
        out.append(_q(words))
    if not reg.auto_assign:
        out.append("echo 0 > /proc/sys/net/netfilter/nf_conntrack_helper")
    fresh = CtSysctl()
    cur = stack.conntrack.sysctl
    for key in cur.names():
        if cur.get(key) != fresh.get(key):
            out.append(f"sysctl -qw {key}={cur.get(key)}")
    return out


# -- IP Filter NAT ---------------------------------------------------------------------------
def _ipnat(stack: Stack) -> list[str]:
    names = stack.netfilter.resolver
    out: list[str] = []
    for r in stack.ipnat.rules:
        text = conf_rule(r, names).rstrip("\n")
        words = ["printf", "%s\\n", text] if "\\" in text else ["echo", text]
        line = _q(words) + " | ipnat -f -"
        if _reads_back(stack, r, line, [*words, "|", "ipnat", "-f", "-"], text):
            out.append(line)
        else:
            shown = " ".join(printnat(r, names, True).split())
            out.append(f"# not saved (cannot be written back): ipnat rule {shown}")
    return out


def _reads_back(stack: Stack, r: NatRule, line: str, argv: list[str], text: str) -> bool:
    """`line` is one script line that runs `argv`, and `text` loads as exactly `r`."""
    if len(line.splitlines()) != 1 or line.endswith("\\"):
        return False
    try:
        if split_line(line) != argv:
            return False
        rules = parse(text, "<save>", stack.netfilter.resolver).rules
    except (ValueError, ConfigError):
        return False
    again = IpnatState(proxies=stack.ipnat.proxies)
    return not again.load(rules) and again.rules == [r]


def _sysctl_fixups(stack: Stack, replayed: Stack) -> Iterator[str]:
    """Writes with side effects (ip_forward sets every device's forwarding) can leave other values
    than the running ones: set those again, last."""
    for key, value in stack.sysctl.items():
        if replayed.sysctl.get(key) != value:
            yield f"sysctl -qw {key}={value}"
