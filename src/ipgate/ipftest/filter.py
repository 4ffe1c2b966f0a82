"""The part of ipf.conf ipftest needs to pass or block packets, with state.

Rules (tools/ipf_y.y, IP Filter 4.1.28), one per line, ``#`` comments::

    pass|block [return-rst|return-icmp|return-icmp-as-dest] in|out [quick] [on IF]
        [proto NAME|NUMBER|tcp/udp] all | from [!]ADDR [PORTCMP] to [!]ADDR [PORTCMP]
        [flags F[/M]] [icmp-type T [code C]] [keep state]

ADDR is ``any``, ``a.b.c.d``, ``a.b.c.d/bits``, ``a.b.c.d/m.m.m.m`` or
``a.b.c.d mask m.m.m.m``; PORTCMP is ``port = N`` (also ``!=``, ``<``,
``>``, ``<=``, ``>=``, ``eq``..``ge``), ``port N <> M``, ``port N >< M`` or
``port N:M``.  ``flags S`` means ``flags S/FSRPAU`` (FR_TCPFMAX).  Anything
else of the ipf.conf grammar is refused with ``FILE:LINE:COL: message``.

Matching is fr_scanlist()'s: every rule of the packet's direction is tried
in order; a match sets the result to the rule's flags and stops only when
the rule is ``quick``, so the last match wins.  With no match the result
stays fr_pass, ``pass`` with FR_NOMATCH (what ipftest prints as
``nomatch``).  Flags use IP Filter's FR_* values (ip_fil.h) because
`printstate` prints them.

`StateTable` is the subset of ip_state.c that keeps a flow going after a
``keep state`` rule matched (fr_addstate()/fr_checkstate()): TCP and UDP by
addresses and ports in either direction, ICMP queries by id with the reply
type coming back (fr_matchicmpqueryreply()), ICMP errors whose quoted packet
belongs to an entry (fr_checkicmpmatchingstate()), other protocols by
addresses.  TCP states follow fr_tcp_age() (timeouts.tcp_age); TCP windows
and sequence numbers are not checked, and entries are not tied to the
interfaces they were seen on.  `printstate` is lib/printstate.c; the TCP
window scale, the sequence masks, ISN and option words ipgate does not
track print as 0.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from ipgate.errors import ConfigError
from ipgate.nat.ipnat.printer import hostmask, printportcmp
from ipgate.nat.ipnat.rule import (
    FR_EQUAL,
    FR_GREATERT,
    FR_GREATERTE,
    FR_INCRANGE,
    FR_INRANGE,
    FR_LESST,
    FR_LESSTE,
    FR_NEQUAL,
    FR_OUTRANGE,
    PortCmp,
)
from ipgate.nat.ipnat.timeouts import (
    IPF_TCPS_CLOSE_WAIT,
    IPF_TCPS_CLOSED,
    IPF_TCPS_CLOSING,
    IPF_TCPS_ESTABLISHED,
    IPF_TCPS_FIN_WAIT_1,
    IPF_TCPS_FIN_WAIT_2,
    IPF_TCPS_HALF_ESTAB,
    IPF_TCPS_LAST_ACK,
    IPF_TCPS_LISTEN,
    IPF_TCPS_SYN_RECEIVED,
    IPF_TCPS_SYN_SENT,
    IPF_TCPS_TIME_WAIT,
    NatTunables,
    ipf_ttlval,
    tcp_age,
)
from ipgate.netfilter.names import Resolver, inet_aton

# ip_fil.h (4.1.x) rule flags.
FR_BLOCK = 0x00001
FR_PASS = 0x00002
FR_CMDMASK = 0x0000F
FR_NOTSRCIP = 0x00040
FR_NOTDSTIP = 0x00080
FR_QUICK = 0x00100
FR_KEEPSTATE = 0x00400
FR_RETRST = 0x01000
FR_RETICMP = 0x02000
FR_FAKEICMP = 0x03000
FR_RETMASK = FR_RETICMP | FR_RETRST | FR_FAKEICMP
FR_OUTQUE = 0x04000
FR_INQUE = 0x08000
FR_NOMATCH = 0x8000000
FR_TCPFMAX = 0x3F
FR_PASS_DEFAULT = FR_PASS | FR_NOMATCH  # fr_pass: IPF_DEFAULT_PASS | FR_NOMATCH

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IP_MF = 0x2000
IP_OFFMASK = 0x1FFF
ALL_ONES = 0xFFFFFFFF

FLAGSET = "FSRPAUEC"  # lib/flags.c flagset[] / flags[]
FLAGBITS = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80)
ICMP_TYPES: tuple[str | None, ...] = (  # lib/icmpcode.c icmptypes[]
    "echorep", None, None, "unreach", "squench", "redir", None, None, "echo", "routerad", "routersol", "timex",
    "paramprob", "timest", "timestrep", "inforeq", "inforep", "maskreq", "maskrep")
# ip_state.c icmpreplytype4[]: the reply to each ICMP query type.
ICMP_REPLY = {8: 0, 13: 14, 15: 16, 17: 18}
ICMP_ERRORS = frozenset((3, 4, 5, 11, 12))

_COMPARE = {"=": FR_EQUAL, "eq": FR_EQUAL, "!=": FR_NEQUAL, "ne": FR_NEQUAL, "<": FR_LESST, "lt": FR_LESST,
            ">": FR_GREATERT, "gt": FR_GREATERT, "<=": FR_LESSTE, "le": FR_LESSTE, ">=": FR_GREATERTE,
            "ge": FR_GREATERTE}
_RANGE = {"<>": FR_OUTRANGE, "><": FR_INRANGE, ":": FR_INCRANGE}
# ipf.conf words of the full grammar this subset refuses by name.
UNSUPPORTED = frozenset(("log", "count", "auth", "preauth", "call", "skip", "dup-to", "to", "reply-to", "fastroute",
                         "tos", "ttl", "with", "head", "group", "set-tag", "pps", "body", "first", "level", "or-block",
                         "in-via", "out-via", "bpf-v4", "frag", "frag-body", "opt"))
_U16 = struct.Struct("!H")
_IPH = struct.Struct("!BBHHHBBHII")


@dataclass(frozen=True, slots=True)
class Addr:
    """One side of from/to: address, mask, `!`, port comparison."""

    addr: int = 0
    mask: int = 0
    ports: PortCmp = PortCmp()

    def matches(self, ip: int) -> bool:
        return (ip & self.mask) == self.addr


@dataclass(frozen=True, slots=True)
class FilterRule:
    """frentry_t, the fields this subset uses."""

    flags: int                      # fr_flags: FR_PASS/FR_BLOCK, FR_QUICK, FR_INQUE/FR_OUTQUE, ...
    ifname: str = ""                # fr_ifname ("" = any)
    proto: int = 0                  # fr_proto (0 = any)
    tcpudp: bool = False            # FI_TCPUDP: proto tcp/udp
    all: bool = False               # FR_T_NONE: `all`
    src: Addr = Addr()
    dst: Addr = Addr()
    tcpf: int = 0                   # fr_tcpf
    tcpfm: int = 0                  # fr_tcpfm
    icmp: tuple[int, int] | None = None   # icmp-type, code (-1: any code)
    line: int = 0

    @property
    def out(self) -> bool:
        return bool(self.flags & FR_OUTQUE)


@dataclass(slots=True)
class Fin:
    """What the rules and the state table read of a packet (fr_info_t)."""

    p: int
    src: int
    dst: int
    sport: int
    dport: int
    tcp_flags: int
    icmp_type: int          # -1: not ICMP or a fragment body
    icmp_code: int
    icmp_id: int
    dlen: int               # fin_dlen
    plen: int               # fin_plen
    ports: bool             # TCP/UDP header present (not a fragment body)
    seq: int = 0
    win: int = 0
    quoted: Fin | None = None   # the packet inside an ICMP error

    @classmethod
    def parse(cls, pkt: bytes | bytearray | memoryview, inner: bool = False) -> Fin | None:
        if len(pkt) < 20:
            return None
        vihl, _tos, tot_len, _id, frag, _ttl, p, _ck, src, dst = _IPH.unpack_from(pkt, 0)
        hlen = (vihl & 0x0F) << 2
        if inner:
            tot_len = min(tot_len, len(pkt))
        end = min(tot_len, len(pkt))
        body = frag & IP_OFFMASK != 0
        l4 = bytes(pkt[hlen:end])
        fin = cls(p, src, dst, 0, 0, 0, -1, 0, 0, max(tot_len - hlen, 0), tot_len, False)
        if body:
            return fin
        if p in (IPPROTO_TCP, IPPROTO_UDP) and len(l4) >= 4:
            fin.sport, fin.dport = struct.unpack_from("!HH", l4)
            fin.ports = True
            if p == IPPROTO_TCP and len(l4) >= 16:
                fin.seq = struct.unpack_from("!I", l4, 4)[0]
                fin.tcp_flags = l4[13]
                fin.win = _U16.unpack_from(l4, 14)[0]
        elif p == IPPROTO_ICMP and len(l4) >= 2:
            fin.icmp_type, fin.icmp_code = l4[0], l4[1]
            if len(l4) >= 6:
                fin.icmp_id = _U16.unpack_from(l4, 4)[0]
            if not inner and fin.icmp_type in ICMP_ERRORS and len(l4) >= 8 + 20:
                fin.quoted = cls.parse(l4[8:], inner=True)
        return fin


# -- the rule parser ---------------------------------------------------------------------
class _Tokens:
    def __init__(self, text: str, filename: str, line: int) -> None:
        self.filename = filename
        self.line = line
        self.words: list[tuple[str, int]] = []
        i = 0
        while i < len(text):
            ch = text[i]
            if ch.isspace():
                i += 1
                continue
            if ch in "(),":
                self.words.append((ch, i + 1))
                i += 1
                continue
            if ch == "!" and text[i:i + 2] != "!=":
                self.words.append(("!", i + 1))
                i += 1
                continue
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "(),":
                j += 1
            self.words.append((text[i:j], i + 1))
            i = j
        self.pos = 0
        self.end_col = len(text.rstrip()) + 1

    def peek(self) -> str | None:
        return self.words[self.pos][0] if self.pos < len(self.words) else None

    def take(self) -> str:
        if self.pos >= len(self.words):
            raise self.fail("unexpected end of rule")
        w = self.words[self.pos][0]
        self.pos += 1
        return w

    def accept(self, word: str) -> bool:
        if self.peek() == word:
            self.pos += 1
            return True
        return False

    def fail(self, message: str, back: int = 0) -> ConfigError:
        at = self.pos - back
        col = self.words[at][1] if 0 <= at < len(self.words) else self.end_col
        return ConfigError(self.filename, self.line, message, col)


def _parse_addr(t: _Tokens) -> tuple[Addr, bool]:
    neg = t.accept("!")
    word = t.take()
    if word == "any":
        return Addr(), neg
    text, slash, masktext = word.partition("/")
    addr = inet_aton(text) if text[:1].isdigit() else None
    if addr is None or text.count(".") != 3:
        raise t.fail(f'bad address "{word}"', back=1)
    if slash:
        if masktext.isdigit() and int(masktext) <= 32:
            bits = int(masktext)
            mask = (ALL_ONES << (32 - bits)) & ALL_ONES
        else:
            m = inet_aton(masktext) if masktext.count(".") == 3 else None
            if m is None:
                raise t.fail(f'bad mask "{masktext}"', back=1)
            mask = m
    elif t.peek() == "mask":
        t.take()
        mtext = t.take()
        m = inet_aton(mtext) if mtext.count(".") == 3 else None
        if m is None:
            raise t.fail(f'bad mask "{mtext}"', back=1)
        mask = m
    else:
        mask = ALL_ONES
    return Addr(addr & mask, mask), neg


def _parse_port(t: _Tokens, names: Resolver, proto: str | None) -> int:
    word = t.take()
    if word.isdigit():
        n = int(word)
        if n > 65535:
            raise t.fail(f'invalid port number "{word}"', back=1)
        return n
    port = names.service_port(word, proto)
    if port is None:
        raise t.fail(f'unknown service "{word}"', back=1)
    return port


def _parse_portcmp(t: _Tokens, names: Resolver, proto: str | None) -> PortCmp:
    if not t.accept("port"):
        return PortCmp()
    op = t.peek()
    if op in _COMPARE:
        t.take()
        return PortCmp(_COMPARE[op], _parse_port(t, names, proto))
    first = t.peek() or ""
    if ":" in first and first.count(":") == 1 and all(p.isdigit() for p in first.split(":")):
        t.take()
        lo, hi = (int(p) for p in first.split(":"))
        return PortCmp(FR_INCRANGE, lo, hi)
    lo = _parse_port(t, names, proto)
    op = t.peek()
    if op not in _RANGE:
        raise t.fail("expected a port comparison (=, !=, <, >, <=, >=, <>, ><, :)")
    t.take()
    return PortCmp(_RANGE[op], lo, _parse_port(t, names, proto))


def _parse_flags(t: _Tokens, word: str) -> int:
    v = 0
    if word.lower().startswith("0x"):
        try:
            return int(word, 16)
        except ValueError:
            raise t.fail(f'bad flags "{word}"', back=1) from None
    for ch in word:
        if ch not in FLAGSET:
            raise t.fail(f'unknown TCP flag "{ch}"', back=1)
        v |= FLAGBITS[FLAGSET.index(ch)]
    return v


def parse_rule(text: str, filename: str, line: int, names: Resolver) -> FilterRule | None:
    """One line of ipf.conf (None when it holds only a comment or blanks)."""
    cut = text.find("#")
    if cut >= 0:
        text = text[:cut]
    t = _Tokens(text, filename, line)
    if t.peek() is None:
        return None
    action = t.take()
    if action == "pass":
        flags = FR_PASS
    elif action == "block":
        flags = FR_BLOCK
        ret = t.peek()
        if ret == "return-rst":
            t.take()
            flags |= FR_RETRST
        elif ret in ("return-icmp", "return-icmp-as-dest"):
            t.take()
            flags |= FR_RETICMP if ret == "return-icmp" else FR_FAKEICMP
    elif action in UNSUPPORTED:
        raise t.fail(f'"{action}" is not supported by this ipf.conf subset (pass or block)', back=1)
    else:
        raise t.fail(f'syntax error at "{action}" (pass or block)', back=1)
    io = t.take()
    if io == "in":
        flags |= FR_INQUE
    elif io == "out":
        flags |= FR_OUTQUE
    else:
        raise t.fail(f'expected "in" or "out", not "{io}"', back=1)
    if t.accept("quick"):
        flags |= FR_QUICK
    ifname = ""
    if t.accept("on"):
        ifname = t.take()
    proto = 0
    tcpudp = False
    pname: str | None = None
    if t.accept("proto"):
        word = t.take()
        if word == "tcp/udp":
            tcpudp, pname = True, None
        elif word.isdigit() and int(word) <= 255:
            proto = int(word)
            pname = names.proto_name(proto)
        else:
            num = names.proto_number(word)
            if num is None:
                raise t.fail(f'unknown protocol "{word}"', back=1)
            proto, pname = num, word
    rule_all = False
    src = dst = Addr()
    if t.accept("all"):
        rule_all = True
    else:
        if not t.accept("from"):
            if t.peek() in UNSUPPORTED:
                raise t.fail(f'"{t.peek()}" is not supported by this ipf.conf subset')
            raise t.fail('expected "all" or "from"')
        src, nsrc = _parse_addr(t)
        src = Addr(src.addr, src.mask, _parse_portcmp(t, names, pname))
        if not t.accept("to"):
            raise t.fail('expected "to"')
        dst, ndst = _parse_addr(t)
        dst = Addr(dst.addr, dst.mask, _parse_portcmp(t, names, pname))
        if (src.ports.cmp or dst.ports.cmp) and not (tcpudp or proto in (IPPROTO_TCP, IPPROTO_UDP)):
            raise t.fail("port comparisons need proto tcp, udp or tcp/udp")
        flags |= (FR_NOTSRCIP if nsrc else 0) | (FR_NOTDSTIP if ndst else 0)
    tcpf = tcpfm = 0
    icmp: tuple[int, int] | None = None
    while True:
        peeked = t.peek()
        if peeked == "flags":
            t.take()
            spec = t.take()
            f, slash, m = spec.partition("/")
            tcpf = _parse_flags(t, f)
            tcpfm = _parse_flags(t, m) if slash else FR_TCPFMAX
            if proto != IPPROTO_TCP:
                raise t.fail("flags need proto tcp", back=1)
        elif peeked == "icmp-type":
            t.take()
            name = t.take()
            if name.isdigit():
                itype = int(name)
            elif name in ICMP_TYPES:
                itype = ICMP_TYPES.index(name)
            else:
                raise t.fail(f'unknown icmp-type "{name}"', back=1)
            code = -1
            if t.accept("code"):
                ctext = t.take()
                if not ctext.isdigit():
                    raise t.fail(f'bad icmp code "{ctext}"', back=1)
                code = int(ctext)
            if proto != IPPROTO_ICMP:
                raise t.fail("icmp-type needs proto icmp")
            icmp = (itype, code)
        elif peeked == "keep":
            t.take()
            what = t.take()
            if what != "state":
                raise t.fail(f'"keep {what}" is not supported here (keep state)', back=1)
            flags |= FR_KEEPSTATE
        elif peeked is None:
            break
        elif peeked in UNSUPPORTED:
            raise t.fail(f'"{peeked}" is not supported by this ipf.conf subset')
        else:
            raise t.fail(f'syntax error at "{peeked}"')
    return FilterRule(flags, ifname, proto, tcpudp, rule_all, src, dst, tcpf, tcpfm, icmp, line)


def parse_rules(text: str, filename: str, names: Resolver | None = None) -> list[FilterRule]:
    """Every rule of an ipf.conf text, or ConfigError for the first bad one."""
    resolver = names if names is not None else Resolver.builtin()
    rules: list[FilterRule] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        rule = parse_rule(line, filename, lineno, resolver)
        if rule is not None:
            rules.append(rule)
    return rules


# -- matching (fr_scanlist()/fr_ipfcheck()/fr_tcpudpchk()) ----------------------------------
def rule_matches(fr: FilterRule, fin: Fin, ifname: str) -> bool:
    if fr.ifname and fr.ifname not in ("*", ifname):
        return False
    if fr.all:
        return True
    if fr.tcpudp:
        if fin.p not in (IPPROTO_TCP, IPPROTO_UDP):
            return False
    elif fr.proto and fin.p != fr.proto:
        return False
    if fr.src.matches(fin.src) == bool(fr.flags & FR_NOTSRCIP):
        return False
    if fr.dst.matches(fin.dst) == bool(fr.flags & FR_NOTDSTIP):
        return False
    if fr.src.ports.cmp or fr.dst.ports.cmp:
        if not fin.ports or not (fr.src.ports.matches(fin.sport) and fr.dst.ports.matches(fin.dport)):
            return False
    if fr.tcpfm or fr.tcpf:
        if fin.p != IPPROTO_TCP or not fin.ports or (fin.tcp_flags & fr.tcpfm) != fr.tcpf:
            return False
    if fr.icmp is not None:
        itype, code = fr.icmp
        if fin.icmp_type != itype or (code >= 0 and fin.icmp_code != code):
            return False
    return True


def scan(rules: list[FilterRule], fin: Fin, ifname: str, out: bool, pass_: int) -> tuple[int, FilterRule | None]:
    """fr_scanlist(): the result flags and the rule that set them (None: no match)."""
    hit: FilterRule | None = None
    for fr in rules:
        if fr.out != out or not rule_matches(fr, fin, ifname):
            continue
        pass_ = fr.flags
        hit = fr
        if fr.flags & FR_QUICK:
            break
    return pass_, hit


# -- printfr() for the subset ------------------------------------------------------------
def printfr(fr: FilterRule, names: Resolver, numeric: bool) -> str:
    """lib/printfr.c for the rules this module parses, newline included."""
    out = ["pass" if fr.flags & FR_CMDMASK == FR_PASS else "block"]
    if fr.flags & FR_RETICMP:
        out.append(" return-icmp-as-dest" if fr.flags & FR_RETMASK == FR_FAKEICMP else " return-icmp")
    elif fr.flags & FR_RETMASK == FR_RETRST:
        out.append(" return-rst")
    out.append(" out " if fr.out else " in ")
    if fr.flags & FR_QUICK:
        out.append("quick ")
    if fr.ifname:
        out.append(f"on {fr.ifname} ")
    pr = -2
    if fr.tcpudp:
        out.append("proto tcp/udp ")
        pr = -1
    elif fr.proto:
        pr = fr.proto
        out.append(f"proto {names.proto_name(fr.proto) or fr.proto} ")
    if fr.all:
        out.append("all")
    else:
        out.append("from " + ("!" if fr.flags & FR_NOTSRCIP else "") + hostmask(fr.src.addr, fr.src.mask))
        if fr.src.ports.cmp:
            out.append(printportcmp(names, pr, fr.src.ports, numeric))
        out.append(" to " + ("!" if fr.flags & FR_NOTDSTIP else "") + hostmask(fr.dst.addr, fr.dst.mask))
        if fr.dst.ports.cmp:
            out.append(printportcmp(names, pr, fr.dst.ports, numeric))
        if fr.icmp is not None:
            itype, code = fr.icmp
            tname = ICMP_TYPES[itype] if itype < len(ICMP_TYPES) else None
            out.append(f" icmp-type {tname}" if tname else f" icmp-type {itype}")
            if code >= 0:
                out.append(f" code {code}")
        if fr.proto == IPPROTO_TCP and (fr.tcpf or fr.tcpfm):
            out.append(" flags " + _flagstr(fr.tcpf))
            if fr.tcpfm:
                out.append("/" + _flagstr(fr.tcpfm))
    if fr.flags & FR_KEEPSTATE:
        out.append(" keep state")
    return "".join(out) + "\n"


def _flagstr(v: int) -> str:
    if v & ~0xFF:
        return f"0x{v:x}"
    return "".join(ch for ch, bit in zip(FLAGSET, FLAGBITS, strict=True) if v & bit)


# -- the state table -------------------------------------------------------------------------
@dataclass(slots=True)
class StateTimeouts:
    """ip_state.c's ages (ticks of half a second), from the same tunables NAT reads."""

    tcp: NatTunables = field(default_factory=NatTunables)
    udp: int = ipf_ttlval(120)        # fr_udptimeout
    udpack: int = ipf_ttlval(12)      # fr_udpacktimeout
    icmp: int = ipf_ttlval(60)        # fr_icmptimeout
    icmpack: int = ipf_ttlval(6)      # fr_icmpacktimeout
    ip: int = ipf_ttlval(60)          # fr_iptimeout

    def tcp_ttl(self, state: int) -> int:
        """fr_sttab_init(): the queue of each TCP state."""
        t = self.tcp
        return {IPF_TCPS_LISTEN: t.fr_tcptimeout, IPF_TCPS_SYN_SENT: t.fr_tcptimeout,
                IPF_TCPS_SYN_RECEIVED: t.fr_tcptimeout, IPF_TCPS_HALF_ESTAB: t.fr_tcptimeout,
                IPF_TCPS_ESTABLISHED: t.fr_tcpidletimeout, IPF_TCPS_CLOSE_WAIT: t.fr_tcphalfclosed,
                IPF_TCPS_FIN_WAIT_1: t.fr_tcphalfclosed, IPF_TCPS_CLOSING: t.fr_tcptimeout,
                IPF_TCPS_LAST_ACK: t.fr_tcplastack, IPF_TCPS_FIN_WAIT_2: t.fr_tcpclosewait,
                IPF_TCPS_TIME_WAIT: t.fr_tcptimewait, IPF_TCPS_CLOSED: t.fr_tcpclosed}.get(state, t.fr_tcptimeout)


@dataclass(slots=True)
class StateEntry:
    """ipstate_t, what this subset keeps of it."""

    p: int
    src: int
    dst: int
    sport: int
    dport: int
    icmp_type: int
    icmp_id: int
    pass_: int                      # is_pass
    ifnames: list[str]              # is_ifname[4]: in/out of each direction, "" when not seen
    state: list[int] = field(default_factory=lambda: [0, 0])   # is_state[2]
    pkts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])   # is_pkts[4]
    bytes: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # is_bytes[4]
    send: list[int] = field(default_factory=lambda: [0, 0])    # is_send / is_dend
    maxwin: list[int] = field(default_factory=lambda: [0, 0])  # is_maxswin / is_maxdwin
    replied: bool = False
    die: int = 0


class StateTable:
    """ips_list: newest first, as fr_addstate() links them."""

    def __init__(self, timeouts: StateTimeouts | None = None) -> None:
        self.timeouts = timeouts if timeouts is not None else StateTimeouts()
        self._entries: list[StateEntry] = []

    def __iter__(self) -> Iterator[StateEntry]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, fin: Fin, pass_: int, ifname: str, out: bool, now: int) -> StateEntry:
        """fr_addstate()."""
        is_ = StateEntry(fin.p, fin.src, fin.dst, fin.sport, fin.dport, fin.icmp_type, fin.icmp_id, pass_,
                         ["", "", "", ""])
        self._entries.insert(0, is_)
        self._update(is_, fin, 0, out, ifname, now)
        return is_

    def _direction(self, is_: StateEntry, fin: Fin) -> int | None:
        """0: the way the entry was made; 1: the reply; None: not this entry."""
        if fin.p != is_.p:
            return None
        fwd = fin.src == is_.src and fin.dst == is_.dst
        rev = fin.src == is_.dst and fin.dst == is_.src
        if fin.p in (IPPROTO_TCP, IPPROTO_UDP):
            if not fin.ports:
                return None
            if fwd and fin.sport == is_.sport and fin.dport == is_.dport:
                return 0
            if rev and fin.sport == is_.dport and fin.dport == is_.sport:
                return 1
            return None
        if fin.p == IPPROTO_ICMP:
            if fin.icmp_id != is_.icmp_id or is_.icmp_type not in ICMP_REPLY:
                return None
            if fwd and fin.icmp_type == is_.icmp_type:
                return 0
            if rev and fin.icmp_type == ICMP_REPLY[is_.icmp_type]:
                return 1
            return None
        if fwd:
            return 0
        return 1 if rev else None

    def check(self, fin: Fin, ifname: str, out: bool, now: int) -> StateEntry | None:
        """fr_checkstate(): the entry this packet belongs to (its counters and
        ages updated), or the one an ICMP error is about."""
        for is_ in self._entries:
            rev = self._direction(is_, fin)
            if rev is not None:
                self._update(is_, fin, rev, out, ifname, now)
                return is_
        if fin.quoted is not None:
            q = fin.quoted
            for is_ in self._entries:
                if self._direction(is_, q) is not None:
                    return is_
        return None

    def _update(self, is_: StateEntry, fin: Fin, rev: int, out: bool, ifname: str, now: int) -> None:
        idx = (rev << 1) + int(out)
        is_.pkts[idx] += 1
        is_.bytes[idx] += fin.plen
        slot = (int(out) << 1) + rev  # is_ifp[]: [0]/[1] in, [2]/[3] out
        if not is_.ifnames[slot]:
            is_.ifnames[slot] = ifname
        t = self.timeouts
        if fin.p == IPPROTO_TCP:
            doff = 20
            rval, nstate = tcp_age(is_.state, rev, fin.tcp_flags, max(fin.dlen - doff, 0))
            if rval == 1:
                is_.state[rev] = nstate
            end = fin.seq + max(fin.dlen - doff, 0) + (1 if fin.tcp_flags & 0x03 else 0)
            is_.send[rev] = end & ALL_ONES
            is_.maxwin[rev] = max(is_.maxwin[rev], fin.win)
            ttl = t.tcp_ttl(max(is_.state))
        elif fin.p == IPPROTO_UDP:
            is_.replied = is_.replied or rev == 1
            ttl = t.udpack if is_.replied else t.udp
        elif fin.p == IPPROTO_ICMP:
            is_.replied = is_.replied or rev == 1
            ttl = t.icmpack if is_.replied else t.icmp
        else:
            ttl = t.ip
        is_.die = now + ttl


def _hostname(addr: int, names: Resolver, numeric: bool) -> str:
    """lib/hostname.c: the host's name unless -R."""
    if not numeric:
        name = names.host_name(addr)
        if name is not None:
            return name
    return f"{addr >> 24 & 255}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}"


def printstate(is_: StateEntry, names: Resolver, numeric: bool, now: int) -> str:
    """lib/printstate.c (without OPT_DEBUG, IPFILTER_SCAN or state sync)."""
    out = [f"{_hostname(is_.src, names, numeric)} -> {_hostname(is_.dst, names, numeric)} "
           f"pass {is_.pass_:#x} pr {is_.p} state {is_.state[0]}/{is_.state[1]}"]
    out.append(f"\n\ttag 0 ttl {is_.die - now}")
    if is_.p == IPPROTO_TCP:
        out.append(f"\n\t{is_.sport} -> {is_.dport} {is_.send[0]:x}:{is_.send[1]:x} "
                   f"{is_.maxwin[0]}<<0:{is_.maxwin[1]}<<0\n")
        out.append("\tcmsk 0000 smsk 0000 s0 00000000/00000000\n")
        out.append("\tFWD:ISN inc 0 sumd 0\n\tREV:ISN inc 0 sumd 0\n")
    elif is_.p == IPPROTO_UDP:
        out.append(f" {is_.sport} -> {is_.dport}\n")
    elif is_.p == IPPROTO_ICMP:
        out.append(f" id {is_.icmp_id} seq 0 type {is_.icmp_type}\n")
    p, b = is_.pkts, is_.bytes
    out.append(f"\tforward: pkts in {p[0]} bytes in {b[0]} pkts out {p[1]} bytes out {b[1]}\n"
               f"\tbackward: pkts in {p[2]} bytes in {b[2]} pkts out {p[3]} bytes out {b[3]}\n")
    out.append("\t")
    if is_.pass_ & FR_CMDMASK == FR_PASS:
        out.append("pass")
    else:
        out.append("block")
        ret = is_.pass_ & FR_RETMASK
        out.append({FR_RETICMP: " return-icmp", FR_FAKEICMP: " return-icmp-as-dest",
                    FR_RETRST: " return-rst"}.get(ret, ""))
    out.append(" out" if is_.pass_ & FR_OUTQUE else " in")
    if is_.pass_ & FR_QUICK:
        out.append(" quick")
    if is_.pass_ & FR_KEEPSTATE:
        out.append(" keep state")
    out.append("\tIPv4\n")
    out.append("\tpkt_flags & 0(0) = 0,\t\tpkt_options & 0 = 0, 0 = 0 \n")
    out.append("\tpkt_security & 0 = 0, pkt_auth & 0 = 0\n")
    out.append("\tis_flx 0 0 0 0\n")
    n = [name or "-" for name in is_.ifnames]
    out.append(f"\tinterfaces: in {n[0]}[{is_.ifnames[0]}],{n[1]}[{is_.ifnames[1]}] "
               f"out {n[2]}[{is_.ifnames[2]}],{n[3]}[{is_.ifnames[3]}]\n")
    out.append("\tSync status: not synchronized\n")
    return "".join(out)
