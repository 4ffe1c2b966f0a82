"""`ipftest` as IP Filter 4.1.28 (tools/ipftest.c 1.44.2.13) runs it.

Options are read in order with getopt(3) and the optstring
``6bCdDF:i:I:l:N:P:or:RS:T:vxX``; ``-N FILE`` and ``-r FILE`` load their
rules when they are met, so ``-v``/``-R`` must come before them to apply (as
in ipftest).  ``-`` reads the standard input.

* ``-N FILE`` NAT rules (ipnat.conf), ``-r FILE`` filter rules (the ipf.conf
  subset of filter.py); at least one of them, else ``no rules loaded``.
* ``-i FILE`` the packets (default the standard input), ``-F text|hex`` their
  format (input.py), ``-I IF`` the interface of packets that name none
  (``anon0``), ``-S ADDR`` packets from ADDR are inbound, all others outbound.
* ``-x`` packets are printed in hex; ``-R`` no names for ports and hosts;
  ``-v`` rules are echoed as they load and sessions/states are listed in full;
  ``-C`` checksums of every packet are recomputed before it is checked.
* ``-b`` brief: in 4.1, without ``-N`` only the verdict is printed
  (``pass``, ``block``, ``nomatch``...); with ``-N`` only the packet as it
  leaves fr_check() (``ip #ID LEN(HLEN) PROTO SRC[,PORT] > DST[,PORT]
  [FLAGS]``, lib/printpacket.c 1.12.4.5) and no verdict at all.  Without
  ``-b`` each packet prints ``VERDICT ip ...`` (a lone space instead of the
  verdict with ``-N``) and a line of 14 dashes.
* ``-D`` at the end: dumpnat() (the NAT rules as printnat() prints them, the
  sessions newest first as printactivenat(), ``Hostmap table:`` with
  printhostmap(hm, 0), newest first), dumpstate() (``List of active state
  sessions:`` and printstate() for each), then the empty pool, hash table and
  group listings (dumplookups(), dumpgroups()).
* ``-T name=value[,name=value]`` ipf_dotuning(): the NAT timeouts
  (fr_defnatage, fr_defnatipage, fr_defnaticmpage, fr_tcp*timeout ...,
  fr_ipfrttl), ipf_nattable_sz, ipf_nattable_max, fr_nat_maxbucket, the state
  timeouts (fr_udptimeout, fr_udpacktimeout, fr_icmptimeout,
  fr_icmpacktimeout, fr_iptimeout) and fr_update_ipid are honoured; other
  names are accepted and ignored with a note on the standard error.
* ``-d`` (debug) and ``-X`` are accepted and change nothing; ``-6``, ``-l``,
  ``-o``, ``-P`` and the pcap/snoop/etherfind/tcpdump formats are refused.

Each packet goes through `Ipftest.check`, fr_check() of fil.c 2.243.2.125:
an inbound packet meets NAT first (fr_checknatin()) and then the state table
and the rules; an outbound one meets the state table and the rules, and NAT
(fr_checknatout(), then fr_updateipid() with fr_update_ipid) only when they
pass it.  A session a packet just made is deleted when the packet ends up
blocked (nat_delete(NL_DESTROY)).  fr_check()'s user-space return value
picks the verdict: 1 ``nomatch`` when no rule matched (fr_pass is
pass|FR_NOMATCH), 3/4/5 for the ``return-*`` blocks, 0 ``pass``, -1
``block``.

The clock: ipftest 4.1 never runs the slow timer (``/* ipfr_slowtimer(); */``
in its loop), so fr_ticks stays 0 for the whole run; here too the clock is
fixed at 0, no session or state ages out during a run, and ``-D`` prints
each one's full time to live.

Deviations: an input or rule file with an error stops the run before any
packet (``FILE:LINE[:COL]: message``, exit status 255); ipftest skips bad
packet lines and loads the NAT rules before a bad one.  Interfaces may carry
an address as ipftest's get_unit() allows (``on ppp0=10.0.0.1``), used by
``0/32`` rules.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from ipgate.commands.base import Output
from ipgate.commands.legacy_getopt import bsd_getopt
from ipgate.errors import ConfigError
from ipgate.ipftest.filter import (
    FR_BLOCK,
    FR_CMDMASK,
    FR_FAKEICMP,
    FR_KEEPSTATE,
    FR_NOMATCH,
    FR_PASS,
    FR_PASS_DEFAULT,
    FR_RETICMP,
    FR_RETMASK,
    FR_RETRST,
    FilterRule,
    Fin,
    StateTable,
    StateTimeouts,
    parse_rules,
    printfr,
    printstate,
    scan,
)
from ipgate.ipftest.input import InputError, InputPacket, fix_sums, read_hex, read_text
from ipgate.nat.ipnat.core import IpnatTable
from ipgate.nat.ipnat.hostmap import HostMap
from ipgate.nat.ipnat.parse import parse
from ipgate.nat.ipnat.printer import print_active_nat, printhostmap, printnat
from ipgate.nat.ipnat.session import NatSession
from ipgate.nat.ipnat.state import IpnatState
from ipgate.nat.ipnat.table import NAT_TABLE_MAX, NAT_TABLE_SZ
from ipgate.nat.ipnat.timeouts import NatTunables
from ipgate.netfilter.names import Resolver, inet_aton
from ipgate.packet.checksum import csum_replace2

OPTSTRING = "6bCdDF:i:I:l:N:P:or:RS:T:vxX"
PROG = "ipftest"
DEFAULT_IFNAME = "anon0"
STDIN_NAME = "(stdin)"
EXIT_FAIL = 255  # exit(-1) / return -1 from main()

IP_MF = 0x2000
IP_OFFMASK = 0x1FFF
IPPROTO_TCP = 6
IPPROTO_UDP = 17
TCP_FLAG_LETTERS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "A"), (0x20, "U"),
                    (0x40, "E"), (0x80, "C"))

# fr_check()'s return values as main() prints them (OPT_NAT unset).
VERDICTS = {-4: "preauth", -3: "account", -2: "auth", -1: "block", 0: "pass", 1: "nomatch",
            3: "block return-rst", 4: "block return-icmp", 5: "block return-icmp-as-dest"}

# -T names: where each modelled tunable goes.
NAT_TUNABLES = frozenset(("fr_defnatage", "fr_defnatipage", "fr_defnaticmpage", "fr_tcpidletimeout",
                          "fr_tcpclosewait", "fr_tcplastack", "fr_tcptimeout", "fr_tcptimewait", "fr_tcpclosed",
                          "fr_tcphalfclosed", "fr_ipfrttl"))
STATE_TUNABLES = {"fr_udptimeout": "udp", "fr_udpacktimeout": "udpack", "fr_icmptimeout": "icmp",
                  "fr_icmpacktimeout": "icmpack", "fr_iptimeout": "ip"}
TABLE_TUNABLES = frozenset(("ipf_nattable_sz", "ipf_nattable_max", "fr_nat_maxbucket"))
# fil.c ipf_tuneables[] (4.1.28) that ipgate does not model: accepted, ignored.
OTHER_TUNABLES = frozenset((
    "fr_flags", "fr_active", "fr_control_forwarding", "fr_chksrc", "fr_minttl", "fr_icmpminfragmtu", "fr_pass",
    "fr_statemax", "fr_statesize", "fr_state_lock", "fr_state_maxbucket", "fr_state_maxbucket_reset",
    "ipstate_logging", "fr_nat_lock", "ipf_natrules_sz", "ipf_rdrrules_sz", "ipf_hostmap_sz",
    "fr_nat_maxbucket_reset", "nat_logging", "fr_nat_doflush", "ipf_proxy_debug", "ipfr_size",
    "fr_authsize", "fr_authused", "fr_defaultauthage", "ipl_suppress", "ipl_buffer_sz", "ipl_logmax",
    "ipl_logall", "ipl_logsize", "ippr_ftp_debug"))


@dataclass(slots=True)
class Settings:
    """The opts bits and globals main() sets from the command line."""

    brief: bool = False      # OPT_BRIEF (-b)
    dump: bool = False       # -D
    hexout: bool = False     # OPT_HEX (-x)
    numeric: bool = False    # OPT_NORESOLVE (-R)
    verbose: bool = False    # OPT_VERBOSE (-v)
    docksum: bool = False    # -C
    nat: bool = False        # OPT_NAT: -N loaded rules
    loaded: bool = False
    hexin: bool = False      # -F hex
    datain: str | None = None
    ifname: str = DEFAULT_IFNAME
    sip: int = 0             # -S
    update_ipid: bool = False
    nat_tun: NatTunables = field(default_factory=NatTunables)
    state_tun: StateTimeouts = field(default_factory=StateTimeouts)
    table_size: int = NAT_TABLE_SZ
    table_max: int = NAT_TABLE_MAX
    maxbucket: int | None = None


class Ipftest:
    """The kernel half ipftest links in: NAT, the filter rules, the state
    table, the interfaces (get_unit()) and fr_check()."""

    NOW = 0.0  # fr_ticks never moves in ipftest 4.1

    def __init__(self, s: Settings, nat: IpnatState, rules: list[FilterRule]) -> None:
        self.s = s
        self.nat_state = nat
        self.rules = rules
        self.ifaddrs: dict[str, int] = {}
        self.table = IpnatTable(self.ifaddrs.get, epoch=0.0, table_size=s.table_size, table_max=s.table_max,
                                maxbucket=s.maxbucket, tunables=s.nat_tun)
        self.table.sync_rules(nat.rules)
        nat.sessions = self.table
        self.state = StateTable(s.state_tun)
        self._hostmaps: list[HostMap] = []   # every host map seen, in the order they appeared
        self._ipid = 0                        # fr_nextipid()'s static counter
        self._ipid_frags: dict[tuple[int, int, int, int], int] = {}

    # -- interfaces (ip_fil.c get_unit(), fr_setifpaddr()) -------------------------------
    def get_unit(self, name: str) -> str:
        """The interface's name; ``name=a.b.c.d`` gives it an address, the first one sticks."""
        base, eq, addr = name.partition("=")
        if eq and base not in self.ifaddrs:
            a = inet_aton(addr)
            if a:  # fr_setifpaddr() abort()s on 0
                self.ifaddrs[base] = a
        return base

    # -- fr_check() -------------------------------------------------------------------------
    def check(self, pkt: bytearray, ifname: str, out: bool) -> int:
        pass_ = FR_PASS_DEFAULT
        now = self.NOW
        nat: NatSession | None = None
        newnat = False
        filtered = True
        if not out:
            v = self.table.check_in(ifname, pkt, now)
            if v.blocked:
                pass_ = FR_BLOCK  # fr_checknatin(): *passp = FR_BLOCK, then straight to filterdone
                filtered = False
            nat, newnat = v.session, v.created
        if filtered:
            fin = Fin.parse(pkt)
            if fin is not None:
                pass_ = self._filter(fin, ifname, out, pass_)
            if out and pass_ & FR_CMDMASK == FR_PASS:
                v = self.table.check_out(ifname, pkt, now)
                if v.blocked:
                    pass_ = FR_BLOCK
                else:
                    nat, newnat = v.session, v.created
                    if self.s.update_ipid and not self._update_ipid(pkt):
                        pass_ = (pass_ & ~FR_CMDMASK) | FR_BLOCK
        if nat is not None and newnat and pass_ & FR_CMDMASK == FR_BLOCK:
            # nat_delete(NL_DESTROY): IpnatTable has no public delete; this is its nat_delete().
            self.table._delete(nat, "destroy")
        self._note_hostmaps()
        return _retval(pass_)

    def _filter(self, fin: Fin, ifname: str, out: bool, pass_: int) -> int:
        """fr_checkstate(), else fr_firewall(); then fr_addstate() for keep state."""
        now = int(self.NOW)
        st = self.state.check(fin, ifname, out, now)
        if st is not None:
            return st.pass_
        if self.rules:
            pass_, _fr = scan(self.rules, fin, ifname, out, pass_)
        if pass_ & FR_KEEPSTATE:
            self.state.add(fin, pass_, ifname, out, now)
        return pass_

    def _update_ipid(self, pkt: bytearray) -> bool:
        """fr_updateipid(): a new IP id from fr_nextipid(); the fragments of
        one datagram share the id its first fragment got (False: a later
        fragment whose first was never seen)."""
        old, frag = struct.unpack_from("!HH", pkt, 4)
        if frag & (IP_MF | IP_OFFMASK):
            key = (struct.unpack_from("!I", pkt, 12)[0], struct.unpack_from("!I", pkt, 16)[0], pkt[9], old)
            known = self._ipid_frags.get(key)
            if known is None:
                if frag & IP_OFFMASK:
                    return False
                known = self._next_ipid()
                self._ipid_frags[key] = known
            new = known
        else:
            new = self._next_ipid()
        struct.pack_into("!H", pkt, 4, new)
        check = struct.unpack_from("!H", pkt, 10)[0]
        struct.pack_into("!H", pkt, 10, csum_replace2(check, old, new))
        return True

    def _next_ipid(self) -> int:
        v = self._ipid
        self._ipid = (self._ipid + 1) & 0xFFFF
        return v

    def _note_hostmaps(self) -> None:
        """ipf_hm_maplist is newest first; HostMapTable keeps no order, so the
        order they appear in, packet by packet, is recorded here."""
        seen = {id(hm) for hm in self._hostmaps}
        for hm in self.table.hostmaps():
            if id(hm) not in seen:
                self._hostmaps.append(hm)

    def hostmaps(self) -> list[HostMap]:
        alive = {id(hm) for hm in self.table.hostmaps()}
        return [hm for hm in reversed(self._hostmaps) if id(hm) in alive]

    # -- -D ---------------------------------------------------------------------------------
    def dump(self, names: Resolver) -> str:
        s = self.s
        out = ["List of active MAP/Redirect filters:\n"]
        out.extend(printnat(r, names, s.numeric) for r in self.nat_state.rules)
        out.append("\nList of active sessions:\n")
        now = self.table.now()
        out.extend(print_active_nat(n, s.verbose, now) for n in self.table.sessions())
        out.append("\nHostmap table:\n")
        out.extend(printhostmap(hm, 0) for hm in self.hostmaps())
        out.append("List of active state sessions:\n")
        out.extend(printstate(st, names, s.numeric, int(self.NOW)) for st in self.state)
        out.append("List of configured pools\nList of configured hash tables\n")
        out.append("List of groups configured (set 0)\nList of groups configured (set 1)\n")
        return "".join(out)


def _retval(pass_: int) -> int:
    """fr_check()'s return value outside the kernel."""
    if pass_ & FR_NOMATCH:
        return 1
    ret = pass_ & FR_RETMASK
    if ret == FR_RETRST:
        return 3
    if ret == FR_RETICMP:
        return 4
    if ret == FR_FAKEICMP:
        return 5
    return {FR_PASS: 0, FR_BLOCK: -1, 3: -2, 5: -3, 4: -4}.get(pass_ & FR_CMDMASK, 2)


# -- printpacket() ------------------------------------------------------------------------------
def _ntoa(a: int) -> str:
    return f"{a >> 24 & 255}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"


def printpacket(pkt: bytes | bytearray, hexout: bool) -> str:
    """lib/printpacket.c 1.12.4.5, newline(s) included."""
    ip_len = struct.unpack_from("!H", pkt, 2)[0]
    off = struct.unpack_from("!H", pkt, 6)[0]
    if hexout:
        data = bytes(pkt[:ip_len]).ljust(ip_len, b"\0")
        words = [data[i:i + 2].hex() for i in range(0, ip_len, 2)]
        return "".join(w + " " for w in words) + "\n\n"
    hl = (pkt[0] & 0x0F) << 2
    ip_id = struct.unpack_from("!H", pkt, 4)[0]
    p = pkt[9]
    src, dst = struct.unpack_from("!II", pkt, 12)
    l4 = bytes(pkt[hl:hl + 14]).ljust(14, b"\0")
    sport, dport = struct.unpack_from("!HH", l4)
    out = [f"ip #{ip_id} {ip_len}({hl}) {p}"]
    body = bool(off & IP_OFFMASK)
    if body:
        out.append(f" @{(off & IP_OFFMASK) << 3}")
    out.append(f" {_ntoa(src)}")
    ports = not body and p in (IPPROTO_TCP, IPPROTO_UDP)
    if ports:
        out.append(f",{sport}")
    out.append(f" > {_ntoa(dst)}")
    if ports:
        out.append(f",{dport}")
    if not body and p == IPPROTO_TCP and l4[13]:
        out.append(" " + "".join(ch for bit, ch in TCP_FLAG_LETTERS if l4[13] & bit))
    return "".join(out) + "\n"


# -- the command line ------------------------------------------------------------------------------
class _Stdin:
    """The standard input, readable once (the second reader gets nothing)."""

    def __init__(self, read: Callable[[], str] | None) -> None:
        self._read = read

    def read(self) -> str:
        if self._read is None:
            return ""
        text = self._read()
        self._read = None
        return text


class _Fail(Exception):
    """Stop main() with EXIT_FAIL after the message was printed."""


def _read_file(name: str, stdin: _Stdin, o: Output) -> tuple[str, str]:
    if name == "-":
        return stdin.read(), STDIN_NAME
    try:
        with open(name, encoding="utf-8", errors="replace") as f:
            return f.read(), name
    except OSError as e:
        o.error(f"fopen({name}) failed: {e.strerror or os.strerror(e.errno or errno.EIO)}")
        raise _Fail from None


def _load_nat(name: str, s: Settings, nat: IpnatState, names: Resolver, stdin: _Stdin, o: Output) -> None:
    """-N: ipnat_parsefile() + ipnat_addrule() (all rules or none)."""
    text, label = _read_file(name, stdin, o)
    try:
        result = parse(text, label, names)
    except ConfigError as e:
        o.error(str(e))
        raise _Fail from None
    for w in result.warnings:
        o.error(w)
    if s.verbose:
        for r in result.rules:
            o.write(printnat(r, names, s.numeric))
    errors = nat.load(result.rules)
    for err in errors:
        o.error(f"{label}:{err.rule.line}:{err.rule.column}: ioctl(add/insert nat rule): {os.strerror(err.errno)}")
    if errors:
        raise _Fail
    s.loaded = True
    s.nat = True


def _load_filter(name: str, s: Settings, rules: list[FilterRule], names: Resolver, stdin: _Stdin,
                 o: Output) -> None:
    """-r: ipf_parsefile() + ipf_addrule()."""
    text, label = _read_file(name, stdin, o)
    try:
        new = parse_rules(text, label, names)
    except ConfigError as e:
        o.error(str(e))
        raise _Fail from None
    if s.verbose:
        for fr in new:
            o.write(printfr(fr, names, s.numeric))
    rules.extend(new)
    s.loaded = True


def _tune(arg: str, s: Settings, o: Output) -> None:
    """ipf_dotuning(): name=value pairs separated by commas."""
    for item in arg.split(","):
        if not item:
            continue
        name, eq, value = item.partition("=")
        if not eq:
            o.error(f"{PROG}: -T {name}: showing a tunable is not supported")
            continue
        if not value.isdigit():
            o.error(f"invalid value '{value}'")  # ipf_dotuning() gives up on the rest
            return
        v = int(value)
        if name in NAT_TUNABLES:
            setattr(s.nat_tun, name, v)
        elif name in STATE_TUNABLES:
            setattr(s.state_tun, STATE_TUNABLES[name], v)
        elif name == "ipf_nattable_sz":
            s.table_size = v
        elif name == "ipf_nattable_max":
            s.table_max = v
        elif name == "fr_nat_maxbucket":
            s.maxbucket = v
        elif name == "fr_update_ipid":
            s.update_ipid = v != 0
        elif name in OTHER_TUNABLES:
            o.error(f"{PROG}: -T {name}: accepted, not modelled by ipgate (ignored)")
        else:
            o.error(f"{PROG}: -T {name}: no such tunable in IP Filter 4.1 (ignored)")


def ipftest(args: list[str], o: Output, stdin: Callable[[], str] | None = None,
            names: Resolver | None = None) -> int:
    """main() of tools/ipftest.c; the exit status."""
    resolver = names if names is not None else Resolver.system()
    s = Settings()
    nat = IpnatState()
    rules: list[FilterRule] = []
    inp = _Stdin(stdin)
    got = bsd_getopt(PROG, args, OPTSTRING, o.error, skip_bad=True)
    assert got is not None  # skip_bad never gives up
    opts, _rest = got
    try:
        for c, arg in opts:
            a = arg or ""
            if c == "6":
                o.error("IPv6 not supported")
                return 1
            if c in "loP":
                o.error(f"{PROG}: -{c} is not supported by ipgate")
                return EXIT_FAIL
            if c == "b":
                s.brief = True
            elif c == "C":
                s.docksum = True
            elif c == "D":
                s.dump = True
            elif c == "F":
                fmt = a.lower()
                if fmt in ("pcap", "etherfind", "snoop", "tcpdump"):
                    o.error(f"{PROG}: -F {a}: input format not supported by ipgate")
                    return EXIT_FAIL
                if fmt in ("hex", "text"):
                    s.hexin = fmt == "hex"
            elif c == "i":
                s.datain = a
            elif c == "I":
                s.ifname = a
            elif c == "N":
                _load_nat(a, s, nat, resolver, inp, o)
            elif c == "r":
                _load_filter(a, s, rules, resolver, inp, o)
            elif c == "S":
                s.sip = inet_aton(a) or 0
            elif c == "R":
                s.numeric = True
            elif c == "T":
                _tune(a, s, o)
            elif c == "v":
                s.verbose = True
            elif c == "x":
                s.hexout = True
            # -d and -X: accepted, nothing here depends on them
        if not s.loaded:
            o.error("no rules loaded")
            return EXIT_FAIL
        packets = _read_packets(s, resolver, inp, o)
    except _Fail:
        return EXIT_FAIL
    gw = Ipftest(s, nat, rules)
    for pkt in packets:
        _one_packet(gw, pkt, s, o)
    if s.dump:
        o.write(gw.dump(resolver))
    return 0


def _read_packets(s: Settings, names: Resolver, stdin: _Stdin, o: Output) -> list[InputPacket]:
    name = s.datain if s.datain is not None else "-"
    if name == "-":
        text, label = stdin.read(), STDIN_NAME
    else:
        try:
            with open(name, encoding="latin-1") as f:
                text, label = f.read(), name
        except OSError as e:
            o.error(f"{PROG}: {name}: {e.strerror}")
            raise _Fail from None
    try:
        return read_hex(text, label) if s.hexin else read_text(text, label, names)
    except InputError as e:
        o.error(str(e))
        raise _Fail from None


def _one_packet(gw: Ipftest, pkt: InputPacket, s: Settings, o: Output) -> None:
    """One turn of main()'s loop."""
    data = pkt.data
    ifname = gw.get_unit(pkt.ifname or s.ifname)
    out = pkt.out
    if s.sip:
        out = struct.unpack_from("!I", data, 12)[0] != s.sip
    if s.docksum:
        fix_sums(data)
    i = gw.check(data, ifname, out)
    text: list[str] = []
    if not s.nat:
        text.append(VERDICTS.get(i, f"recognised return {i:#x}\n"))
    if not s.brief:
        text.append(" " + printpacket(data, s.hexout) + "--------------")
    elif s.nat:
        text.append(printpacket(data, s.hexout))
    if not (s.brief and s.nat):
        text.append("\n")
    o.write("".join(text))


def main(argv: list[str]) -> int:
    """`ipgate ipftest ARGS`: the standard streams of this process."""
    import sys

    o = Output()
    status = ipftest(argv, o, stdin=sys.stdin.read)
    sys.stdout.write("".join(o.out))
    sys.stderr.write("".join(o.err))
    return status
