"""`conntrack` as conntrack-tools 1.4.7 runs it, and /proc/net/nf_conntrack.

Parsing follows src/conntrack.c: getopt_long() with the protocol's options
(``--sport``, ``--state``, ``--icmp-type``...) added only after ``-p``, the
command/option legality matrix (commands_v_options), and exit_error()'s
messages and status (1 for other problems, 2 for parameter problems, with the
"Try `conntrack -h'" line).  Entries print as libnetfilter_conntrack's
__snprintf_conntrack_default() formats them, the summary goes to stderr, and
-D/-G with nothing found exit 1.  Checked against the real tool on Linux 6.18.

Supported: -L (conntrack, expect, dying, unconfirmed), -D, -G, -F
(conntrack, expect), -C, -S, -V, -h, with the filters -s -d -r -q (CIDR on
-s/-d), -p and its port/state/ICMP options, -m, -u, -f, -n/-g/-j, -w, -c,
-z, and ``-o extended``.  Not supported (a clear error): -I, -U, -E, labels,
and the other output formats.

Differences on purpose: entries list in insertion order (the kernel's hash
order depends on a random boot seed), ``-S`` shows one CPU, and an
expectation listing is not printed line by line yet.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from ipgate.commands.base import Output
from ipgate.commands.ifconfig import inet_aton
from ipgate.conntrack.conn import (
    IPS_ASSURED,
    IPS_DST_NAT_DONE,
    IPS_EXPECTED,
    IPS_FIXED_TIMEOUT,
    IPS_HW_OFFLOAD,
    IPS_OFFLOAD,
    IPS_SEEN_REPLY,
    IPS_SRC_NAT_DONE,
    Conn,
)
from ipgate.conntrack.table import ConntrackTable
from ipgate.conntrack.tcp import TCP_CONNTRACK_NAMES
from ipgate.conntrack.tuple import (
    IPPROTO_DCCP,
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPPROTO_UDPLITE,
    Tuple,
)
from ipgate.inet import ntoa

PROGNAME = "conntrack"
VERSION = "1.4.7"
OTHER_PROBLEM = 1
PARAMETER_PROBLEM = 2

USAGE = """\
Command line interface for the connection tracking system. Version 1.4.7
Usage: conntrack [commands] [options]

Commands:
  -L [table] [options]\t\tList conntrack or expectation table
  -G [table] parameters\t\tGet conntrack or expectation
  -D [table] parameters\t\tDelete conntrack or expectation
  -I [table] parameters\t\tCreate a conntrack or expectation
  -U [table] parameters\t\tUpdate a conntrack
  -E [table] [options]\t\tShow events
  -F [table]\t\t\tFlush table
  -C [table]\t\t\tShow counter
  -S\t\t\t\tShow statistics

Tables: conntrack, expect, dying, unconfirmed

Conntrack parameters and options:
  -n, --src-nat ip\t\t\tsource NAT ip
  -g, --dst-nat ip\t\t\tdestination NAT ip
  -j, --any-nat ip\t\t\tsource or destination NAT ip
  -m, --mark mark\t\t\tSet mark
  -c, --secmark secmark\t\t\tSet selinux secmark
  -e, --event-mask eventmask\t\tEvent mask, eg. NEW,DESTROY
  -z, --zero \t\t\t\tZero counters while listing
  -o, --output type[,...]\t\tOutput format, eg. xml
  -l, --label label[,...]\t\tconntrack labels

Expectation parameters and options:
  --tuple-src ip\tSource address in expect tuple
  --tuple-dst ip\tDestination address in expect tuple

Updating parameters and options:
  --label-add label\tAdd label
  --label-del label\tDelete label

Common parameters and options:
  -s, --src, --orig-src ip\t\tSource address from original direction
  -d, --dst, --orig-dst ip\t\tDestination address from original direction
  -r, --reply-src ip\t\tSource addres from reply direction
  -q, --reply-dst ip\t\tDestination address from reply direction
  -p, --protonum proto\t\tLayer 4 Protocol, eg. 'tcp'
  -f, --family proto\t\tLayer 3 Protocol, eg. 'ipv6'
  -t, --timeout timeout\t\tSet timeout
  -u, --status status\t\tSet status, eg. ASSURED
  -w, --zone value\t\tSet conntrack zone
  --orig-zone value\t\tSet zone for original direction
  --reply-zone value\t\tSet zone for reply direction
  -b, --buffer-size\t\tNetlink socket buffer size
  --mask-src ip\t\t\tSource mask address
  --mask-dst ip\t\t\tDestination mask address

"""

# Options: name -> (has_arg: 0 none, 1 required, 2 optional, val).
_LONG: list[tuple[str, int, str]] = [
    ("dump", 2, "L"), ("create", 2, "I"), ("delete", 2, "D"), ("update", 2, "U"), ("get", 2, "G"),
    ("flush", 2, "F"), ("event", 2, "E"), ("counter", 2, "C"), ("stats", 0, "S"), ("version", 0, "V"),
    ("help", 0, "h"), ("orig-src", 1, "s"), ("src", 1, "s"), ("orig-dst", 1, "d"), ("dst", 1, "d"),
    ("reply-src", 1, "r"), ("reply-dst", 1, "q"), ("protonum", 1, "p"), ("timeout", 1, "t"),
    ("status", 1, "u"), ("zero", 0, "z"), ("event-mask", 1, "e"), ("tuple-src", 1, "["),
    ("tuple-dst", 1, "]"), ("mask-src", 1, "{"), ("mask-dst", 1, "}"), ("nat-range", 1, "a"),
    ("mark", 1, "m"), ("secmark", 1, "c"), ("id", 2, "i"), ("family", 1, "f"), ("src-nat", 2, "n"),
    ("dst-nat", 2, "g"), ("output", 1, "o"), ("buffer-size", 1, "b"), ("any-nat", 2, "j"), ("zone", 1, "w"),
    ("label", 1, "l"), ("label-add", 1, "<"), ("label-del", 2, ">"), ("orig-zone", 1, "("),
    ("reply-zone", 1, ")"),
]
# getopt_str ":LIUDGEFhVs:d:r:q:p:t:u:e:a:z[:]:{:}:m:i:f:o:n::g::c:b:C::Sj::w:l:<:>::(:):"
_SHORT: dict[str, int] = {c: 0 for c in "LIUDGEFhVzCS"}
_SHORT.update({c: 1 for c in "sdrqptuea[]{}mifocbwl<()"})
_SHORT.update({c: 2 for c in "ngj>"})

_PORT_OPTS = [("orig-port-src", 1, "1"), ("sport", 1, "1"), ("orig-port-dst", 1, "2"), ("dport", 1, "2"),
              ("reply-port-src", 1, "3"), ("reply-port-dst", 1, "4"), ("mask-port-src", 1, "5"),
              ("mask-port-dst", 1, "6")]
_PROTO_OPTS: dict[str, list[tuple[str, int, str]]] = {
    "tcp": _PORT_OPTS + [("state", 1, "7"), ("tuple-port-src", 1, "8"), ("tuple-port-dst", 1, "9")],
    "udp": _PORT_OPTS + [("tuple-port-src", 1, "7"), ("tuple-port-dst", 1, "8")],
    "udplite": _PORT_OPTS + [("tuple-port-src", 1, "7"), ("tuple-port-dst", 1, "8")],
    "sctp": _PORT_OPTS,
    "dccp": _PORT_OPTS,
    "icmp": [("icmp-type", 1, "1"), ("icmp-code", 1, "2"), ("icmp-id", 1, "3")],
    "icmpv6": [("icmpv6-type", 1, "1"), ("icmpv6-code", 1, "2"), ("icmpv6-id", 1, "3")],
    "gre": [("srckey", 1, "1"), ("dstkey", 1, "2")],
}
_HANDLERS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "udplite": IPPROTO_UDPLITE, "icmp": IPPROTO_ICMP,
             "icmpv6": IPPROTO_ICMPV6, "sctp": IPPROTO_SCTP, "dccp": IPPROTO_DCCP, "gre": IPPROTO_GRE}

# Commands (enum ct_command bits) and the legality matrix.
CT_LIST, CT_CREATE, CT_UPDATE, CT_DELETE, CT_GET, CT_FLUSH, CT_EVENT, CT_VERSION, CT_HELP = range(9)
EXP_LIST, EXP_CREATE, EXP_DELETE, EXP_GET, EXP_FLUSH, EXP_EVENT, CT_COUNT, EXP_COUNT, CT_STATS = range(9, 18)
EXP_STATS = 18
_CMD2TYPE = {"L": (CT_LIST, EXP_LIST), "I": (CT_CREATE, EXP_CREATE), "D": (CT_DELETE, EXP_DELETE),
             "G": (CT_GET, EXP_GET), "F": (CT_FLUSH, EXP_FLUSH), "E": (CT_EVENT, EXP_EVENT),
             "V": (CT_VERSION, CT_VERSION), "h": (CT_HELP, CT_HELP), "C": (CT_COUNT, EXP_COUNT),
             "S": (CT_STATS, EXP_STATS), "U": (CT_UPDATE, -1)}
_OPTS = "sdrqptuze[]{}amifngocbjwl<>()"  # option bit order (enum ct_options)
_OPTFLAGS = ["src", "dst", "reply-src", "reply-dst", "protonum", "timeout", "status", "zero", "event-mask",
             "tuple-src", "tuple-dst", "mask-src", "mask-dst", "nat-range", "mark", "id", "family", "src-nat",
             "dst-nat", "output", "secmark", "buffer-size", "any-nat", "zone", "label", "label-add",
             "label-del", "orig-zone", "reply-zone"]
_MATRIX: dict[int, str] = {
    #              s d r q p t u z e [ ] { } a m i f n g o c b j w l < > ( )
    CT_LIST:       "22222022000220202222202220022",
    CT_CREATE:     "33331120000002200220000202022",
    CT_UPDATE:     "22222220000220222222000022200",
    CT_DELETE:     "22222220000220222222000220022",
    CT_GET:        "33331000000000020002000020000",
    CT_FLUSH:      "00000000000000002000000000000",
    CT_EVENT:      "22222000200220202222222220022",
    CT_VERSION:    "00000000000000000000000000000",
    CT_HELP:       "00002000000000000000000000000",
    EXP_LIST:      "00000000000000002002000000000",
    EXP_CREATE:    "11221120011110000000000000000",
    EXP_DELETE:    "11221000000000000000000000000",
    EXP_GET:       "11221000000000000000000000000",
    EXP_FLUSH:     "00000000000000000000000000000",
    EXP_EVENT:     "00000000000000000002000000000",
    CT_COUNT:      "00000000000000000000000000000",
    EXP_COUNT:     "00000000000000000000000000000",
    CT_STATS:      "00000000000000000000000000000",
    EXP_STATS:     "00000000000000000000000000000",
}
# tcp_commands_v_options (udp and the others alike; ICMP has its own).
_PORT_MATRIX = {CT_LIST: "222200200", CT_CREATE: "333300100", CT_UPDATE: "222200200", CT_DELETE: "222200200",
                CT_GET: "333300200", CT_EVENT: "222200200"}
_EXIT_MSG = {CT_LIST: "%d flow entries have been shown.", CT_CREATE: "%d flow entries have been created.",
             CT_UPDATE: "%d flow entries have been updated.", CT_DELETE: "%d flow entries have been deleted.",
             CT_GET: "%d flow entries have been shown.", CT_EVENT: "%d flow events have been shown.",
             EXP_LIST: "%d expectations have been shown.", EXP_DELETE: "%d expectations have been shown."}
_STATUS_WORDS = [("ASSURED", IPS_ASSURED), ("SEEN_REPLY", IPS_SEEN_REPLY), ("UNSET", 0),
                 ("FIXED_TIMEOUT", IPS_FIXED_TIMEOUT), ("EXPECTED", IPS_EXPECTED), ("OFFLOAD", IPS_OFFLOAD),
                 ("HW_OFFLOAD", IPS_HW_OFFLOAD)]
_OUTPUT_WORDS = ["xml", "extended", "timestamp", "id", "ktimestamp", "labels", "userspace"]
_EVENT_WORDS = ["ALL", "NEW", "UPDATES", "DESTROY"]

# libnetfilter_conntrack's proto2str[]; the kernel's l4proto_name() for /proc.
_PROTO2STR = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_UDPLITE: "udplite", IPPROTO_ICMP: "icmp",
              IPPROTO_ICMPV6: "icmpv6", IPPROTO_SCTP: "sctp", IPPROTO_GRE: "gre", IPPROTO_DCCP: "dccp"}
_KERNEL_L4NAME = {IPPROTO_ICMP: "icmp", IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_GRE: "gre",
                  IPPROTO_SCTP: "sctp", IPPROTO_UDPLITE: "udplite", IPPROTO_ICMPV6: "icmpv6"}
_PORTS_LIBNFCT = frozenset((IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_SCTP, IPPROTO_DCCP))
_PORTS_KERNEL = frozenset((IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_SCTP))


class _Fail(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _param(msg: str) -> _Fail:
    return _Fail(PARAMETER_PROBLEM, msg)


@dataclass
class _Cmd:
    command: int = -1
    table_type: str = "conntrack"
    options: set[str] = field(default_factory=set)
    family: int = 0                     # 0 unspec, 4, 6
    proto: int | None = None
    proto_name: str = ""
    proto_opts: dict[str, int] = field(default_factory=dict)
    tcp_state: int | None = None
    addrs: dict[str, int] = field(default_factory=dict)     # s d r q -> address
    masks: dict[str, int] = field(default_factory=dict)     # s d -> netmask (CIDR)
    nat: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)  # n g j -> (addr, port)
    status: int = 0
    status_mask: int = 0
    mark: tuple[int, int] | None = None
    secmark: int | None = None
    zone: int | None = None
    output: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


# -- getopt_long ---------------------------------------------------------------

def _getopt(args: list[str], cmd: _Cmd) -> list[tuple[str, str | None, str]]:
    """getopt_long() with the option table growing when -p names a protocol."""
    out: list[tuple[str, str | None, str]] = []
    proto_long: list[tuple[str, int, str]] = []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            break
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            table = _LONG + [(n, h, "P" + v) for n, h, v in proto_long]
            exact = [o for o in table if o[0] == name]
            cands = exact or [o for o in table if o[0].startswith(name)]
            if not cands or len({(h, v) for _n, h, v in cands}) > 1:
                raise _param(f"unknown option `{a}'")
            _n, has_arg, val = cands[0]
            arg: str | None = None
            if has_arg == 0 and eq:
                raise _param(f"unknown option `{a}'")
            if has_arg == 1:
                if eq:
                    arg = value
                elif i < len(args):
                    arg = args[i]
                    i += 1
                else:
                    raise _param(f"option `{a}' requires an argument")
            elif has_arg == 2 and eq:
                arg = value
            out.append((val, arg, a))
            if val == "p" and arg is not None:
                proto_long = _PROTO_OPTS.get(_proto_handler(arg), [])
            i = _after_opt(val, arg, args, i, out)
            continue
        if a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                c = a[j]
                j += 1
                kind = _SHORT.get(c)
                if kind is None:
                    raise _param(f"unknown option `{a}'")
                sarg: str | None = None
                if kind == 1:
                    if j < len(a):
                        sarg = a[j:]
                    elif i < len(args):
                        sarg = args[i]
                        i += 1
                    else:
                        raise _param(f"option `{a}' requires an argument")
                    j = len(a)
                elif kind == 2 and j < len(a):
                    sarg = a[j:]
                    j = len(a)
                out.append((c, sarg, a))
                if c == "p" and sarg is not None:
                    proto_long = _PROTO_OPTS.get(_proto_handler(sarg), [])
                if j >= len(a):
                    i = _after_opt(c, sarg, args, i, out)
            continue
        # Non-options are permuted to the end by GNU getopt and never read.
    return out


def _after_opt(val: str, arg: str | None, args: list[str], i: int, out: list[tuple[str, str | None, str]]) -> int:
    """get_optional_arg(): commands take a table name, -n/-g/-j/--label-del an address."""
    if arg is None and (val in "LIUDGEFCnj>g" and len(val) == 1) and i < len(args) \
            and not args[i].startswith(("-", "!")):
        val0, _arg, orig = out[-1]
        out[-1] = (val0, args[i], orig)
        return i + 1
    return i


def _proto_handler(name: str) -> str:
    """findproto(): a handler name ("tcp"...), "unknown:N", or "" if unknown."""
    low = name.lower()
    if low in _HANDLERS:
        return low
    try:
        num = socket.getprotobyname(name)
    except OSError:
        num = _parse_proto_num(name)
        if num < 0:
            return ""
    for h, n in _HANDLERS.items():
        if n == num:
            return h if name.lower() == h or _parse_proto_num(name) >= 0 else f"unknown:{num}"
    return f"unknown:{num}"


def _parse_proto_num(text: str) -> int:
    try:
        val = int(text, 0)
    except ValueError:
        return -1
    return val if 0 <= val <= 255 else -1


def _strtoul(text: str) -> int | None:
    try:
        return int(text, 0) if text.strip() == text and text else None
    except ValueError:
        return None


def _atoi(text: str) -> int:
    """C atoi(): leading digits, 0 if none."""
    s = text.lstrip()
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    n = 0
    for ch in s:
        if not ch.isdigit():
            break
        n = n * 10 + int(ch)
    return sign * n


def _parse_addr(text: str, allow_mask: bool, longname: str) -> tuple[int, int, int]:
    """parse_addr(): (family, address, netmask or -1); only IPv4 is tracked."""
    mask = -1
    addr_s = text[:45]
    if "/" in addr_s:
        addr_s, _sl, m = addr_s.partition("/")
        mask = int(m) if m.isdigit() else -2
    a = inet_aton(addr_s)
    family = 4
    if a is None:
        try:
            socket.inet_pton(socket.AF_INET6, addr_s)
        except OSError:
            raise _param(f"Invalid IP address `{text}'") from None
        family, a = 6, 0
    if mask != -1 and not allow_mask:
        raise _param(f"CIDR notation unavailable for `--{longname}'")
    if mask == -2 or (family == 4 and mask > 32) or (family == 6 and mask > 128):
        raise _param("Invalid netmask")
    return family, a, mask


def _set_family(cmd: _Cmd, fam: int) -> None:
    if cmd.family == 0:
        cmd.family = fam
    elif cmd.family != fam:
        raise _param("mismatched address family")


def _parse_words(arg: str, words: list[str]) -> set[str]:
    """parse_parameter(): comma-separated, each a case-insensitive prefix of a known word."""
    found: set[str] = set()
    for part in arg.split(","):
        hit = next((w for w in words if part and w.lower().startswith(part.lower())), None)
        if hit is None:
            raise _param(f"Bad parameter `{arg if ',' not in arg else part}'")
        found.add(hit)
    return found


def _parse_status(arg: str) -> tuple[int, int]:
    """parse_parameter_mask(): (status, mask); "!X" masks out, "UNREPLIED" means SEEN_REPLY clear."""
    status = mask = 0
    for part in arg.split(","):
        neg = part.startswith("!")
        word = part[1:] if neg else part
        if not neg and word.startswith("UNREPLIED"):
            mask |= IPS_SEEN_REPLY
            continue
        hit = next((v for w, v in _STATUS_WORDS if word and w.lower().startswith(word.lower())), None)
        if hit is None:
            raise _param(f"Bad parameter `{part}'")
        if neg:
            mask |= hit
        else:
            status |= hit
    return status, mask


def _parse(args: list[str], o: Output) -> _Cmd:
    cmd = _Cmd()
    for val, arg, orig in _getopt(args, cmd):
        if val in _CMD2TYPE:
            table = arg if arg is not None else "conntrack"
            for t in ("expect", "conntrack", "dying", "unconfirmed"):
                if t.startswith(table):
                    break
            else:
                raise _param(f"unknown type `{table}'")
            if cmd.command != -1:
                raise _param("Invalid commands combination")
            if val != "L" and t in ("dying", "unconfirmed"):
                raise _param("Can't do that command with tables `dying' and `unconfirmed'")
            c = _CMD2TYPE[val][1 if t == "expect" else 0]
            if c < 0:
                longname = next(n for n, _h, v in _LONG if v == val)
                raise _param(f"Can't do --{longname} on expectations")
            cmd.command = c
            cmd.table_type = t
        elif val in "sdrq":
            fam, addr, mask = _parse_addr(arg or "", val in "sd", _OPTFLAGS[_OPTS.index(val)])
            _set_family(cmd, fam)
            cmd.options.add(val)
            cmd.addrs[val] = addr
            if mask >= 0 and fam == 4 and mask != 32:
                cmd.masks[val] = (0xFFFFFFFF << (32 - mask)) & 0xFFFFFFFF
        elif val in "[]{}":
            fam, addr, _m = _parse_addr(arg or "", val in "[]", _OPTFLAGS[_OPTS.index(val)])
            _set_family(cmd, fam)
            cmd.options.add(val)
        elif val == "p":
            handler = _proto_handler(arg or "")
            if not handler:
                raise _param(f"`{arg}' unsupported protocol")
            cmd.options.add("p")
            cmd.proto_name = handler
            cmd.proto = _HANDLERS[handler] if handler in _HANDLERS else int(handler.split(":")[1])
            cmd.proto_opts = {}
            cmd.tcp_state = None
        elif val == "t":
            cmd.options.add("t")
        elif val == "u":
            cmd.options.add("u")
            s, m = _parse_status(arg or "")
            cmd.status |= s
            cmd.status_mask |= m
        elif val == "e":
            cmd.options.add("e")
            _parse_words(arg or "", _EVENT_WORDS)
        elif val == "o":
            cmd.options.add("o")
            cmd.output |= _parse_words(arg or "", _OUTPUT_WORDS)
        elif val == "z":
            cmd.options.add("z")
        elif val in "ngj":
            cmd.options.add(val)
            naddr: int | None = None
            nport: int | None = None
            if arg is not None:
                addr_s, colon, port_s = arg.partition(":")
                if colon:
                    if not port_s:
                        raise _param("No port specified after `:'")
                    if not port_s.isdigit() or int(port_s) > 65535:
                        raise _param(f"Invalid port `{port_s}'")
                    nport = int(port_s)
                fam, naddr, _m = _parse_addr(addr_s, False, _OPTFLAGS[_OPTS.index(val)])
                _set_family(cmd, fam)
            cmd.nat[val] = (naddr, nport)
        elif val in "w()":
            v = _strtoul(arg or "")
            if v is None or v > 0xFFFF:
                raise _Fail(OTHER_PROBLEM, f"unexpected value '{arg}' with -{val} option")
            cmd.options.add(val)
            if val == "w":
                cmd.zone = v
        elif val in "ic":
            v = _strtoul(arg or "")
            if v is None or v > 0xFFFFFFFF:
                raise _Fail(OTHER_PROBLEM, f"unexpected value '{arg}' with -{val} option")
            cmd.options.add(val)
            if val == "c":
                cmd.secmark = v
        elif val == "m":
            text = arg or ""
            value_s, slash, mask_s = text.partition("/")
            mv = _strtoul(value_s)
            mm = _strtoul(mask_s) if slash else 0xFFFFFFFF
            if mv is None or mm is None or mv > 0xFFFFFFFF:
                raise _Fail(OTHER_PROBLEM, f"unexpected value '{arg}' with -m option")
            cmd.options.add("m")
            cmd.mark = (mv, mm & 0xFFFFFFFF)
        elif val in "l<>":
            raise _Fail(OTHER_PROBLEM, "connection labels are not supported by ipgate")
        elif val == "a":
            cmd.warnings.append("WARNING: ignoring -a, deprecated option.")
        elif val == "f":
            cmd.options.add("f")
            if (arg or "").startswith("ipv4"):
                _set_family(cmd, 4)
            elif (arg or "").startswith("ipv6"):
                _set_family(cmd, 6)
            else:
                raise _param(f"`{arg}' unsupported protocol")
        elif val == "b":
            cmd.options.add("b")
        elif val.startswith("P"):
            _proto_opt(cmd, val[1:], arg or "")
        else:  # pragma: no cover - every table entry is handled above
            raise _param(f"unknown option `{orig}'")
    for w in cmd.warnings:
        o.error(w)
    _check(cmd)
    return cmd


def _proto_opt(cmd: _Cmd, code: str, arg: str) -> None:
    """The handlers' parse_options(): ports by atoi(), TCP states by exact name."""
    if cmd.proto_name == "tcp" and code == "7":
        for i, name in enumerate(TCP_CONNTRACK_NAMES):
            if arg == name:
                cmd.tcp_state = i
                break
        else:
            if arg == "LISTEN":
                cmd.tcp_state = 9
            else:
                raise _param(f"unknown TCP state `{arg}'")
    cmd.proto_opts[code] = _atoi(arg) & (0xFF if cmd.proto_name == "icmp" and code in "12" else 0xFFFF)


def _check(cmd: _Cmd) -> None:
    """generic_opt_check() against the matrix, then the protocol's final_check()."""
    if {"j"} & cmd.options and {"n", "g"} & cmd.options:
        raise _param("cannot specify `--src-nat' or `--dst-nat' with `--any-nat'")
    row = _MATRIX.get(cmd.command, "0" * len(_OPTS))
    special = False
    for k, opt in enumerate(_OPTS):
        legal = row[k]
        if opt not in cmd.options:
            if legal == "1":
                raise _param(f"You need to supply the `--{_OPTFLAGS[k]}' option for this command")
        elif legal == "0":
            raise _param(f"Illegal option `--{_OPTFLAGS[k]}' with this command")
        if legal == "3":
            special = True
    if special:
        orig = {"s", "d"} <= cmd.options
        repl = {"r", "q"} <= cmd.options
        if not orig and not repl:
            if cmd.options & {"r", "q"} and not cmd.options & {"s", "d"}:
                raise _param("you have to specify `--reply-src' and `--reply-dst'")
            raise _param("you have to specify `--src' and `--dst'")
    if cmd.command in _PORT_MATRIX and cmd.proto_name in ("tcp", "udp", "udplite", "sctp", "dccp"):
        prow = _PORT_MATRIX[cmd.command]
        have = set(cmd.proto_opts)
        if cmd.tcp_state is not None:
            have.add("7")
        pspecial = False
        for k in range(9):
            code = str(k + 1)
            if code not in have and prow[k] == "1":
                raise _param("You need to supply the `--state' option for this command")
            if prow[k] == "3":
                pspecial = True
        if pspecial and not ({"1", "2"} <= have or {"3", "4"} <= have):
            if have & {"3", "4"} and not have & {"1", "2"}:
                raise _param("you have to specify `--reply-src-port' and `--reply-dst-port'")
            raise _param("you have to specify `--sport' and `--dport'")


# -- matching and printing -------------------------------------------------------

def _is_snat(ct: Conn) -> bool:
    return bool(ct.status & IPS_SRC_NAT_DONE) and (ct.rkey >> 40) & 0xFFFFFFFF != ct.okey >> 72


def _is_spat(ct: Conn) -> bool:
    return bool(ct.status & IPS_SRC_NAT_DONE) and (ct.rkey >> 8) & 0xFFFF != (ct.okey >> 24) & 0xFFFF


def _is_dnat(ct: Conn) -> bool:
    return bool(ct.status & IPS_DST_NAT_DONE) and ct.rkey >> 72 != (ct.okey >> 40) & 0xFFFFFFFF


def _is_dpat(ct: Conn) -> bool:
    return bool(ct.status & IPS_DST_NAT_DONE) and (ct.rkey >> 24) & 0xFFFF != (ct.okey >> 8) & 0xFFFF


def _nat_side(cmd: _Cmd, opt: str, ct: Conn, snat: bool) -> bool:
    addr, port = cmd.nat.get(opt, (None, None))
    r = ct.reply
    has = False
    if addr is not None:
        has = (_is_snat(ct) and addr == r.dst) if snat else (_is_dnat(ct) and addr == r.src)
    if port is not None:
        ok = (_is_spat(ct) and port == r.dport) if snat else (_is_dpat(ct) and port == r.sport)
        if addr is not None and has and not ok:
            has = False
        if addr is None and ok:
            has = True
    if addr is None and port is None:
        has = (_is_snat(ct) or _is_spat(ct)) if snat else (_is_dnat(ct) or _is_dpat(ct))
    return has


def _filter_nat(cmd: _Cmd, ct: Conn) -> bool:
    """filter_nat(): True when the entry is filtered out."""
    opts = cmd.options
    if "j" in opts:
        return not (_nat_side(cmd, "j", ct, True) or _nat_side(cmd, "j", ct, False))
    if "n" in opts and "g" in opts:
        return not (_nat_side(cmd, "n", ct, True) and _nat_side(cmd, "g", ct, False))
    if "n" in opts:
        return not _nat_side(cmd, "n", ct, True)
    if "g" in opts:
        return not _nat_side(cmd, "g", ct, False)
    return False


def _match(cmd: _Cmd, ct: Conn) -> bool:
    """nfct_filter() + the kernel-side dump filters (family, mark, status)."""
    if cmd.family == 6:
        return False
    if _filter_nat(cmd, ct):
        return False
    if cmd.mark is not None and (ct.mark & cmd.mark[1]) != cmd.mark[0]:
        return False
    if "u" in cmd.options:
        mask = cmd.status_mask or cmd.status
        if ct.status & mask != cmd.status:
            return False
    if cmd.zone is not None and cmd.zone != 0:
        return False
    if cmd.secmark is not None and cmd.secmark != (ct.ext.secmark if ct.ext is not None else 0):
        return False
    o, r = ct.orig, ct.reply
    for opt, val in cmd.addrs.items():
        have = {"s": o.src, "d": o.dst, "r": r.src, "q": r.dst}[opt]
        mask = cmd.masks.get(opt, 0xFFFFFFFF)
        if (have & mask) != (val & mask):
            return False
    if cmd.proto is not None:
        if o.proto != cmd.proto:
            return False
        po = cmd.proto_opts
        if cmd.proto == IPPROTO_ICMP:
            checks = {"1": o.icmp_type, "2": o.icmp_code, "3": o.icmp_id}
        else:
            checks = {"1": o.sport, "2": o.dport, "3": r.sport, "4": r.dport}
        for code, have_v in checks.items():
            if code in po and po[code] != have_v:
                return False
        if cmd.tcp_state is not None and ct.tcp_state != cmd.tcp_state:
            return False
    return True


def _gre_key(v: int) -> str:
    return f"0x{v:x}"


def format_conn(ct: Conn, now: float, *, extended: bool = False, use: int = 1) -> str:
    """__snprintf_conntrack_default() of libnetfilter_conntrack for one entry."""
    p = ct.protonum
    parts = ["ipv4     2 " if extended else "", f"{_PROTO2STR.get(p, 'unknown'):<8} {p} ",
             f"{int(ct.expires(now))} "]
    if p == IPPROTO_TCP:
        parts.append(f"{TCP_CONNTRACK_NAMES[ct.tcp_state]} ")
    o, r = ct.orig, ct.reply
    parts.append(_libnfct_tuple(o))
    acct = ct.acct
    if acct is not None:
        parts.append(f"packets={acct[0]} bytes={acct[1]} ")
    if not ct.status & IPS_SEEN_REPLY:
        parts.append("[UNREPLIED] ")
    parts.append(_libnfct_tuple(r))
    if acct is not None:
        parts.append(f"packets={acct[2]} bytes={acct[3]} ")
    parts.append(_assured_text(ct.status))
    parts.append(f"mark={ct.mark} ")
    ext = ct.ext
    if ext is not None and ext.secmark:
        parts.append(f"secmark={ext.secmark} ")
    if ext is not None and ext.zone:
        parts.append(f"zone={ext.zone} ")
    if ext is not None and ext.helper:
        parts.append(f"helper={ext.helper} ")
    parts.append(f"use={use}")
    return "".join(parts)


def _libnfct_tuple(t: Tuple) -> str:
    s = f"src={ntoa(t.src)} dst={ntoa(t.dst)} "
    p = t.proto
    if p in _PORTS_LIBNFCT:
        return s + f"sport={t.sport} dport={t.dport} "
    if p == IPPROTO_GRE:
        return s + f"srckey={_gre_key(t.sport)} dstkey={_gre_key(t.dport)} "
    if p in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        return s + f"type={t.icmp_type} code={t.icmp_code} id={t.icmp_id} "
    return s


def _kernel_tuple(t: Tuple) -> str:
    s = f"src={ntoa(t.src)} dst={ntoa(t.dst)} "
    p = t.proto
    if p in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        return s + f"type={t.icmp_type} code={t.icmp_code} id={t.icmp_id} "
    if p in _PORTS_KERNEL:
        return s + f"sport={t.sport} dport={t.dport} "
    if p == IPPROTO_GRE:
        return s + f"srckey={_gre_key(t.sport)} dstkey={_gre_key(t.dport)} "
    return s


def _assured_text(status: int) -> str:
    if status & IPS_HW_OFFLOAD:
        return "[HW_OFFLOAD] "
    if status & IPS_OFFLOAD:
        return "[OFFLOAD] "
    if status & IPS_ASSURED:
        return "[ASSURED] "
    return ""


def proc_line(ct: Conn, now: float) -> str:
    """ct_seq_show() of net/netfilter/nf_conntrack_standalone.c: one /proc/net/nf_conntrack line."""
    p = ct.protonum
    parts = [f"{'ipv4':<8} 2 {_KERNEL_L4NAME.get(p, 'unknown'):<8} {p} "]
    if not ct.status & IPS_OFFLOAD:
        parts.append(f"{int(ct.expires(now))} ")
    if p == IPPROTO_TCP:
        parts.append(f"{TCP_CONNTRACK_NAMES[ct.tcp_state]} ")
    elif p == IPPROTO_GRE and isinstance(ct.proto, tuple):
        parts.append(f"timeout={int(ct.proto[0])}, stream_timeout={int(ct.proto[1])} ")
    parts.append(_kernel_tuple(ct.orig))
    acct = ct.acct
    if acct is not None:
        parts.append(f"packets={acct[0]} bytes={acct[1]} ")
    if not ct.status & IPS_SEEN_REPLY:
        parts.append("[UNREPLIED] ")
    parts.append(_kernel_tuple(ct.reply))
    if acct is not None:
        parts.append(f"packets={acct[2]} bytes={acct[3]} ")
    parts.append(_assured_text(ct.status))
    zone = ct.ext.zone if ct.ext is not None else 0
    parts.append(f"mark={ct.mark} zone={zone} use=2\n")
    return "".join(parts)


def proc_nf_conntrack(table: ConntrackTable, now: float) -> str:
    """The contents of /proc/net/nf_conntrack."""
    return "".join(proc_line(ct, now) for ct in table.entries(now))


# -- the command -------------------------------------------------------------------

def conntrack(table: ConntrackTable, args: list[str], o: Output, now: float) -> int:
    """conntrack-tools 1.4.7 main(): parse, run, print the summary."""
    try:
        cmd = _parse(args, o)
        return _run(table, cmd, o, now)
    except _Fail as e:
        o.error(f"{PROGNAME} v{VERSION} (conntrack-tools): {e.message}")
        if e.status == PARAMETER_PROBLEM:
            o.error(f"Try `{PROGNAME} -h' or '{PROGNAME} --help' for more information.")
        o.status = e.status
        return e.status


def _summary(o: Output, command: int, counter: int) -> int:
    """print_stats(): the summary line; 1 when -D/-G found nothing."""
    msg = _EXIT_MSG.get(command)
    if msg is None:
        return 0
    o.error(f"{PROGNAME} v{VERSION} (conntrack-tools): " + msg % counter)
    if counter == 0 and command not in (CT_LIST, EXP_LIST):
        return 1
    return 0


def _run(table: ConntrackTable, cmd: _Cmd, o: Output, now: float) -> int:
    c = cmd.command
    extended = "extended" in cmd.output
    unsupported = cmd.output - {"extended"}
    if unsupported:
        raise _Fail(OTHER_PROBLEM, f"output format `{sorted(unsupported)[0]}' is not supported by ipgate")
    counter = 0
    if c == CT_LIST:
        if cmd.table_type in ("dying", "unconfirmed"):
            return _summary(o, c, 0)
        filtering = cmd.options & set("pdsrqmucw()") or cmd.mark is not None
        if "z" in cmd.options and filtering:
            raise _param("Can't use -z with filtering parameters")
        for ct in table.entries(now):
            if not _match(cmd, ct):
                continue
            o.print(format_conn(ct, now, extended=extended))
            counter += 1
            if "z" in cmd.options and ct.acct is not None:
                ct.acct[:] = [0, 0, 0, 0]
    elif c == CT_DELETE:
        for ct in list(table.entries(now)):
            if not _match(cmd, ct):
                continue
            text = format_conn(ct, now, extended=extended)
            if table.kill(ct, now):
                o.print(text)
                counter += 1
    elif c == CT_GET:
        got = _get(table, cmd, now)
        if got is None:
            raise _Fail(OTHER_PROBLEM, "Operation failed: such conntrack doesn't exist")
        o.print(format_conn(got, now, extended=extended, use=2))
        counter = 1
    elif c == CT_FLUSH:
        table.flush(now)
        o.error(f"{PROGNAME} v{VERSION} (conntrack-tools): connection tracking table has been emptied.")
    elif c == EXP_FLUSH:
        table.expect.flush()
        o.error(f"{PROGNAME} v{VERSION} (conntrack-tools): expectation table has been emptied.")
    elif c == EXP_LIST:
        if len(table.expect):
            raise _Fail(OTHER_PROBLEM, "listing expectations is not supported by ipgate yet")
    elif c == CT_COUNT:
        o.print(str(table.count))
    elif c == EXP_COUNT:
        o.print(str(len(table.expect)))
    elif c == CT_STATS:
        s = table.stats
        o.print(f"cpu={0:<4}\tfound={s.found} invalid={s.invalid} insert={s.insert} "
                f"insert_failed={s.insert_failed} drop={s.drop} early_drop={s.early_drop} error={s.error} "
                f"search_restart={s.search_restart} clash_resolve={s.clash_resolve} "
                f"chaintoolong={s.chaintoolong} ")
    elif c == EXP_STATS:
        s = table.stats
        o.print(f"cpu={0:<4}\texpect_new={s.expect_new} expect_create={s.expect_create} "
                f"expect_delete={s.expect_delete} ")
    elif c == CT_VERSION:
        o.print(f"{PROGNAME} v{VERSION} (conntrack-tools)")
    elif c in (CT_HELP, -1):
        o.write(USAGE)
        if c == CT_HELP and cmd.proto_name:
            o.print(f"Proto `{cmd.proto_name}' help:")
    else:
        name = {CT_CREATE: "-I", CT_UPDATE: "-U", CT_EVENT: "-E", EXP_CREATE: "-I expect",
                EXP_DELETE: "-D expect", EXP_GET: "-G expect", EXP_EVENT: "-E expect"}.get(c, "?")
        raise _Fail(OTHER_PROBLEM, f"{name} is not supported by ipgate")
    return _summary(o, c, counter)


def _get(table: ConntrackTable, cmd: _Cmd, now: float) -> Conn | None:
    """IPCTNL_MSG_CT_GET: look the entry up by its ORIGINAL tuple, else by its REPLY tuple."""
    if cmd.proto is None or cmd.family == 6:
        return None
    po = cmd.proto_opts
    proto = cmd.proto
    if {"s", "d"} <= cmd.options:
        src, dst = cmd.addrs["s"], cmd.addrs["d"]
        if proto == IPPROTO_ICMP:
            t = Tuple.icmp(src, dst, po.get("1", 0), po.get("2", 0), po.get("3", 0))
        else:
            t = Tuple(src, dst, proto, po.get("1", 0), po.get("2", 0))
    else:
        src, dst = cmd.addrs["r"], cmd.addrs["q"]
        t = Tuple(src, dst, proto, po.get("3", 0), po.get("4", 0))
    found = table.lookup(t, now)
    return found[0] if found is not None else None
