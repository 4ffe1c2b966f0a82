"""ipnat.conf as IP Filter 4.1.x reads it: lib/lexer.c tokens, tools/ipnat_y.y grammar and actions.

The parser is hand-written recursive descent over a lazily lexed token
stream, not a grammar library, because what has to be reproduced is not
just the BNF of ipnat(4) but IP Filter's yacc parser: its semantic actions
run in a fixed order and later ones undo earlier ones (setnatproto() clears
ports, `icmpidmap` overwrites in_flags), the lexer takes feedback from the
parser (a variable's value is not looked up as a keyword), and yacc's
default shift/reduce choices decide a few cases (``rdr le0 A -> B port 80``
without a port on the left is a syntax error; ``proxy port NAME`` takes the
name/protocol alternative).  Each function below names the grammar rule it
stands for; every token carries its line and column, so errors read
``FILE:LINE:COL: message`` with IP Filter's own yyerror() text
(``syntax error at "x"``, ``invalid port number error at "70000"``...).

Like IP Filter, newlines are only whitespace: a rule may span lines and
several rules may share one (``;`` optionally ends a rule).  ``#`` starts a
comment, ``name = "value";`` defines a variable and ``$name``/``${name}``
expands it.  Unlike IP Filter, which loads the rules before a bad one, the
whole text is parsed first: `parse` returns every rule or raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipgate.errors import ConfigError
from ipgate.nat.ipnat.rule import (
    APR_LABELLEN,
    FR_EQUAL,
    FR_GREATERT,
    FR_GREATERTE,
    FR_INCRANGE,
    FR_INRANGE,
    FR_LESST,
    FR_LESSTE,
    FR_NEQUAL,
    FR_OUTRANGE,
    IPFTAG_LEN,
    IPN_AUTOPORTMAP,
    IPN_FILTER,
    IPN_FIXEDDPORT,
    IPN_FRAG,
    IPN_ICMPQUERY,
    IPN_IPRANGE,
    IPN_NOTDST,
    IPN_NOTSRC,
    IPN_ROUNDR,
    IPN_SEQUENTIAL,
    IPN_SPLIT,
    IPN_STICKY,
    IPN_TCP,
    IPN_TCPUDP,
    IPN_UDP,
    LIFNAMSIZ,
    NAT_BIMAP,
    NAT_MAP,
    NAT_MAPBLK,
    NAT_REDIRECT,
    USABLE_PORTS,
    NatRule,
    PortCmp,
)
from ipgate.netfilter.names import Resolver

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
U32 = 0xFFFFFFFF

# lib/gethost.c answers this name itself, for the regression tests.
TEST_HOST_DOTS = 0xFEDCBA98

# ipnat_y.y yywords[]: word -> token kind.  The kind is the first word listed
# for the token, which is also what yyerror() prints for it (yykeytostr).
KEYWORDS = {
    "age": "age", "any": "any", "auto": "auto", "bimap": "bimap", "frag": "frag", "from": "from",
    "icmpidmap": "icmpidmap", "mask": "mask", "map": "map", "map-block": "map-block", "mssclamp": "mssclamp",
    "netmask": "mask", "port": "port", "portmap": "portmap", "ports": "ports", "proxy": "proxy",
    "range": "range", "rdr": "rdr", "round-robin": "round-robin", "sequential": "sequential",
    "sticky": "sticky", "tag": "tag", "tcp": "tcp", "tcpudp": "tcpudp", "to": "to", "udp": "udp",
    "->": "->", "eq": "eq", "ne": "ne", "lt": "lt", "gt": "gt", "le": "le", "ge": "ge",
}
CHAR_TOKENS = "=,/;{}()@"  # lexer.c returns these as themselves
WORD_END = " \t\r\n#\"'$=,/;{}()@:!<>"
# compare: / range: tokens (ip_fil.h frpcmp values)
COMPARE = {"=": FR_EQUAL, "eq": FR_EQUAL, "ne": FR_NEQUAL, "lt": FR_LESST, "le": FR_LESSTE,
           "gt": FR_GREATERT, "ge": FR_GREATERTE}
RANGE = {"<>": FR_OUTRANGE, "><": FR_INRANGE, ":": FR_INCRANGE}
SYMBOLIC = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "!=": "ne"}  # lexed to the word's token


@dataclass(frozen=True, slots=True)
class Token:
    kind: str   # "num", "hex", "str", "eof", a keyword's first word, "<>"/"><", or the punctuation char
    text: str   # as written (a string without its quotes)
    value: int  # num/hex
    line: int
    col: int

    @property
    def errtext(self) -> str:
        """What yyerror() names: chars as themselves, words as written, keywords by their table word."""
        if self.kind in ("num", "hex", "str"):
            return self.text
        if self.kind == "eof":
            return ""
        if self.kind in ("<>", "><"):
            return "<unknown>"  # YY_RANGE_OUT/IN are not in yywords[]
        return self.kind


@dataclass(frozen=True, slots=True)
class ParseResult:
    rules: tuple[NatRule, ...]
    warnings: tuple[str, ...]  # what ipnat prints to stderr and carries on (`sticky` misuse)


class Lexer:
    """lib/lexer.c's yylex(): on demand, so the parser can ask for a word without keyword lookup."""

    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self.chars = text
        self.pos: list[tuple[int, int]] = []
        line, col = 1, 1
        for ch in text:
            self.pos.append((line, col))
            if ch == "\n":
                line, col = line + 1, 1
            else:
                col += 1
        self.end = (line, col)
        self.i = 0
        self.variables: dict[str, str] = {}

    def where(self, i: int) -> tuple[int, int]:
        return self.pos[i] if i < len(self.pos) else self.end

    def error(self, i: int, message: str) -> ConfigError:
        line, col = self.where(i)
        return ConfigError(self.filename, line, message, col)

    def _tok(self, kind: str, start: int, text: str, value: int = 0) -> Token:
        line, col = self.where(start)
        return Token(kind, text, value, line, col)

    def next(self, nokey: bool = False) -> Token:
        while True:
            s = self.chars  # again after each expansion: it rewrites the input
            n = len(s)
            while self.i < n and s[self.i] in " \t\r\n":
                self.i += 1
            if self.i < n and s[self.i] == "#":
                while self.i < n and s[self.i] != "\n":
                    self.i += 1
                continue
            if self.i + 1 < n and s[self.i] == "\\" and s[self.i + 1] in "\r\n":
                self.i += 2  # a continued line is just more whitespace
                continue
            if self.i < n and s[self.i] == "$":
                self._expand()
                continue
            break
        start = self.i
        if start >= n:  # named just after the last thing written, not on a line of its own
            last = len(s.rstrip()) - 1
            line, col = self.where(last) if last >= 0 else (1, 0)
            return Token("eof", "", 0, line, col + 1)
        c = s[start]
        nxt = s[start + 1] if start + 1 < n else ""
        if c in "\"'":
            j = s.find(c, start + 1)
            if j < 0:
                raise self.error(start, "unterminated string")
            self.i = j + 1
            return self._tok("str", start, s[start + 1:j].replace("\n", " "))
        if c in CHAR_TOKENS or c in ".:":
            self.i += 1
            return self._tok(c, start, c)
        if c == "-":
            if nxt == ">":
                self.i += 2
                return self._tok("->", start, "->")
            self.i += 1
            return self._tok("-", start, "-")
        if c in "!<>":
            two = s[start:start + 2]
            if two in ("!=", "<=", ">=", "<>", "><"):
                self.i += 2
                return self._tok(SYMBOLIC.get(two, two), start, two)
            self.i += 1
            return self._tok(SYMBOLIC.get(c, c), start, c)
        if c == "0" and nxt == "x":
            j = start + 2
            while j < n and s[j] in "0123456789abcdefABCDEF":
                j += 1
            self.i = j
            text = s[start:j]
            return self._tok("hex", start, text, int(text[2:], 16) & U32 if j > start + 2 else 0)
        if c.isdigit() and c.isascii():
            j = start
            while j < n and s[j].isdigit() and s[j].isascii():
                j += 1
            self.i = j
            return self._tok("num", start, s[start:j], min(int(s[start:j]), U32))
        # A word: everything up to whitespace or a character that ends words.
        j = start
        word: list[str] = []
        while j < n and s[j] not in WORD_END:
            if s[j] == "\\" and j + 1 < n:
                if j == start:
                    nokey = True  # lexer.c: a word starting with a backslash is never a keyword
                word.append(s[j + 1])
                j += 2
                continue
            word.append(s[j])
            j += 1
        self.i = j
        text = "".join(word)
        if not nokey:
            kind = KEYWORDS.get(text.lower())
            if kind is not None:
                return self._tok(kind, start, text)
        return self._tok("str", start, text)

    def _expand(self) -> None:
        """`$name` / `${name}`: splice the variable's value into the input (lexer.c + lib/var.c)."""
        s, start = self.chars, self.i
        j = start + 1
        if j < len(s) and s[j] == "{":
            k = s.find("}", j)
            if k < 0:
                raise self.error(start, "unterminated variable name")
            name, end = s[j + 1:k], k + 1
        else:
            k = j
            while k < len(s) and (s[k].isalnum() or s[k] == "_") and s[k].isascii():
                k += 1
            name, end = s[j:k], k
        if not name:
            raise self.error(start, "syntax error at \"$\"")
        value = self.variables.get(name)
        if value is None:
            raise self.error(start, f"unknown variable '{name}'")
        here = self.where(start)
        self.chars = s[:start] + value + s[end:]
        self.pos = self.pos[:start] + [here] * len(value) + self.pos[end:]


@dataclass(slots=True)
class _Draft:
    """The `ipnat_t` the grammar actions fill in (host byte order)."""

    redir: int = 0
    ifnames: list[str] = field(default_factory=lambda: ["", ""])
    flags: int = 0
    p: int = 0
    in_addr: int = 0
    in_mask: int = 0
    out_addr: int = 0
    out_mask: int = 0
    src_addr: int = 0
    src_mask: int = 0
    scmp: int = 0
    sport: int = 0
    stop: int = 0
    dcmp: int = 0
    dport: int = 0
    dtop: int = 0
    pmin: int = 0
    pmax: int = 0
    pnext: int = 0
    ppip: int = 0
    ippip: int = 0
    age: tuple[int, int] = (0, 0)
    mssclamp: int = 0
    plabel: str = ""
    tag: str = ""
    suggest_port: bool = False  # ipnat_y.y's `port` seen: a from/to rule defaults to tcp/udp

    def setnatproto(self, p: int) -> None:
        """ipnat_y.y setnatproto()."""
        self.p = p
        if p == IPPROTO_TCP:
            self.flags = (self.flags | IPN_TCP) & ~IPN_UDP
        elif p == IPPROTO_UDP:
            self.flags = (self.flags | IPN_UDP) & ~IPN_TCP
        elif p == IPPROTO_ICMP:
            self.flags &= ~IPN_TCPUDP
            if not self.flags & IPN_ICMPQUERY:
                self.dcmp = self.scmp = 0
                self.pmin = self.pmax = self.pnext = 0
        elif not self.redir & NAT_MAPBLK:
            self.flags &= ~IPN_TCPUDP
            self.dcmp = self.scmp = 0
            self.pmin = self.pmax = self.pnext = 0
        if self.flags & (IPN_TCPUDP | IPN_FIXEDDPORT) == IPN_FIXEDDPORT:
            self.flags &= ~IPN_FIXEDDPORT

    def setgroupmap(self) -> None:
        """lib/nat_setgroupmap.c: map-block (and portmap auto) address and port shares; u_short fields."""
        if self.out_mask == self.in_mask:
            self.ippip = 1
        elif self.flags & IPN_AUTOPORTMAP:
            ippip = (~self.in_mask & U32) & 0xFFFF
            if self.out_mask != U32:
                ippip = (ippip // ((~self.out_mask & U32) + 1)) & 0xFFFF
            ippip = (ippip + 1) & 0xFFFF
            self.ippip = ippip or 1
            self.ppip = (USABLE_PORTS // self.ippip) & 0xFFFF
        else:
            self.ppip = self.pmin or 1
            self.ippip = (USABLE_PORTS // self.ppip) & 0xFFFF

    def default_ifname2(self) -> None:
        if not self.ifnames[1]:
            self.ifnames[1] = self.ifnames[0]

    def freeze(self, line: int, col: int, source: str) -> NatRule:
        return NatRule(redir=self.redir, ifname=self.ifnames[0], ifname2=self.ifnames[1], flags=self.flags,
                       proto=self.p, in_addr=self.in_addr, in_mask=self.in_mask, out_addr=self.out_addr,
                       out_mask=self.out_mask, src_addr=self.src_addr, src_mask=self.src_mask,
                       sport=PortCmp(self.scmp, self.sport, self.stop),
                       dport=PortCmp(self.dcmp, self.dport, self.dtop),
                       pmin=self.pmin, pmax=self.pmax, pnext=self.pnext, ppip=self.ppip, ippip=self.ippip,
                       age=self.age, mssclamp=self.mssclamp, plabel=self.plabel, tag=self.tag,
                       line=line, column=col, source=source)


def ntomask(bits: int) -> int:
    return 0 if bits == 0 else (U32 << (32 - bits)) & U32


class Parser:
    def __init__(self, text: str, filename: str, resolver: Resolver) -> None:
        self.lex = Lexer(text, filename)
        self.filename = filename
        self.names = resolver
        self.tok = self.lex.next()
        self.nat = _Draft()
        self.warnings: list[str] = []

    # -- helpers -----------------------------------------------------------
    def advance(self, nokey: bool = False) -> Token:
        t = self.tok
        self.tok = self.lex.next(nokey)
        return t

    def fail(self, message: str, tok: Token | None = None) -> ConfigError:
        """yyerror(): "MESSAGE error at "TOKEN"", here with the token's line and column."""
        t = tok if tok is not None else self.tok
        return ConfigError(self.filename, t.line, f'{message} error at "{t.errtext}"', t.col)

    def expect(self, kind: str) -> Token:
        if self.tok.kind != kind:
            raise self.fail("syntax")
        return self.advance()

    def accept(self, kind: str) -> Token | None:
        return self.advance() if self.tok.kind == kind else None

    # -- file: line | assign | file line | file assign ----------------------
    def parse(self) -> ParseResult:
        rules: list[NatRule] = []
        while self.tok.kind != "eof":
            if self.tok.kind == "str":
                self.assign()
                continue
            if self.tok.kind not in ("map", "bimap", "map-block", "rdr"):
                raise self.fail("syntax")
            start = self.tok
            self.nat = _Draft()  # newnatrule()
            if start.kind == "rdr":
                self.redir()
            elif start.kind == "map-block":
                self.mapblock()
            else:
                self.map()
            self.accept(";")  # eol
            rules.append(self.nat.freeze(start.line, start.col, self.filename))
        return ParseResult(tuple(rules), tuple(self.warnings))

    def assign(self) -> None:
        """assign: YY_STR '=' YY_STR ';' (the value is not looked up as a keyword)."""
        name = self.advance()
        if self.tok.kind != "=":
            raise self.fail("syntax")
        self.tok = self.lex.next(nokey=True)
        value = self.expect("str")
        self.expect(";")
        self.lex.variables[name.text] = value.text

    # -- the three rule kinds ---------------------------------------------
    def map(self) -> None:
        """map: mapit ifnames (addr | mapfrom) '->' rhaddr (proxy | mapport) mapoptions."""
        n = self.nat
        n.redir = NAT_MAP if self.advance().kind == "map" else NAT_BIMAP
        self.ifnames()
        filtered = self.tok.kind == "from"
        inside = (0, 0)
        if filtered:
            self.mapfrom()
        else:
            inside = self.addr()
        self.expect("->")
        outside = self.rhaddr()
        has_mapport = self.tok.kind in ("portmap", "icmpidmap")
        if has_mapport:
            self.mapport()
        elif self.tok.kind == "proxy":
            self.proxy()
        self.mapoptions()
        if not filtered:
            n.in_addr, n.in_mask = inside
        n.out_addr, n.out_mask = outside
        n.default_ifname2()
        if filtered and n.suggest_port and not n.flags & IPN_TCPUDP:
            n.flags |= IPN_TCPUDP
        if not has_mapport and not n.flags & IPN_TCPUDP:
            n.setnatproto(n.p)
        if n.redir & NAT_MAPBLK or n.flags & IPN_AUTOPORTMAP:
            n.setgroupmap()

    def mapblock(self) -> None:
        """mapblock: "map-block" ifnames addr '->' addr ports mapoptions."""
        n = self.nat
        self.advance()
        n.redir = NAT_MAPBLK
        self.ifnames()
        inside = self.addr()
        self.expect("->")
        outside = self.addr()
        if self.accept("ports"):  # ports: | "ports" NUMBER | "ports" "auto"
            if self.accept("auto"):
                n.flags |= IPN_AUTOPORTMAP
            else:
                n.pmin = self.expect("num").value & 0xFFFF
        self.mapoptions()
        n.in_addr, n.in_mask = inside
        n.out_addr, n.out_mask = outside
        n.default_ifname2()
        if not n.flags & IPN_TCPUDP:
            n.setnatproto(n.p)
        n.setgroupmap()

    def redir(self) -> None:
        """redir: rdrit ifnames (addr [dport] | rdrfrom) '->' dip [nport] setproto rdroptions.

        With a `dport` the `nport` is required; without one, yacc shifts '->'
        (the empty-dport alternative loses), so a `port` after dip is an error.
        """
        n = self.nat
        self.advance()
        n.redir = NAT_REDIRECT
        self.ifnames()
        filtered = self.tok.kind in ("from", "!")
        outside: tuple[int, int] | None = None
        has_dport = False
        if filtered:
            self.rdrfrom()
        else:
            outside = self.addr()
            if self.tok.kind == "port":  # dport
                has_dport = True
                self.port()
                n.pmin = n.pmax = self.portspec()
                if self.tok.kind in ("-", ":"):
                    self.advance()
                    n.pmax = self.portspec()
        self.expect("->")
        self.dip()
        has_nport = False
        if has_dport or filtered and self.tok.kind == "port":
            has_nport = True
            self.port()  # nport: port portspec | port '=' portspec
            if self.accept("="):
                n.pnext = self.portspec()
                n.flags |= IPN_FIXEDDPORT
            else:
                n.pnext = self.portspec()
        self.setproto()
        self.rdroptions()
        if outside is not None:
            n.out_addr, n.out_mask = outside
        n.default_ifname2()
        if has_nport and n.p == 0 and not n.flags & IPN_TCPUDP and (n.pmin or n.pmax or n.pnext):
            n.setnatproto(IPPROTO_TCP)
        if filtered and n.suggest_port and not n.flags & IPN_TCPUDP:
            n.flags |= IPN_TCPUDP

    # -- pieces ------------------------------------------------------------
    def ifnames(self) -> None:
        """ifnames: ifname | ifname ',' otherifname (strncpy'd into LIFNAMSIZ)."""
        self.nat.ifnames[0] = self.expect("str").text[:LIFNAMSIZ - 1]
        if self.accept(","):
            self.nat.ifnames[1] = self.expect("str").text[:LIFNAMSIZ - 1]

    def port(self) -> None:
        """port: IPNY_PORT (and remember that a port was named: suggest_port)."""
        self.expect("port")
        self.nat.suggest_port = True

    def mapfrom(self) -> None:
        """mapfrom: from sobject ['!'] to ['!'] dobject (negation means the destination)."""
        self.from_()
        self.sobject()
        if self.accept("!"):
            self.expect("to")
            self.nat.flags |= IPN_NOTDST
        else:
            self.expect("to")
            if self.accept("!"):
                self.nat.flags |= IPN_NOTDST
        self.dobject()

    def rdrfrom(self) -> None:
        """rdrfrom: ['!'] from ['!'] sobject to dobject (negation means the source)."""
        if self.accept("!"):
            self.from_()
            self.nat.flags |= IPN_NOTSRC
        else:
            self.from_()
            if self.accept("!"):
                self.nat.flags |= IPN_NOTSRC
        self.sobject()
        self.expect("to")
        self.dobject()

    def from_(self) -> None:
        self.expect("from")
        self.nat.flags |= IPN_FILTER

    def sobject(self) -> None:
        """sobject: saddr [port portstuff]; saddr is in_src for rdr, in_in otherwise."""
        n = self.nat
        a = self.addr()
        if n.redir == NAT_REDIRECT:
            n.src_addr, n.src_mask = a
        else:
            n.in_addr, n.in_mask = a
        if self.tok.kind == "port":
            self.port()
            n.scmp, n.sport, n.stop = self.portstuff()

    def dobject(self) -> None:
        """dobject: daddr [port portstuff]; daddr is in_out for rdr, in_src otherwise."""
        n = self.nat
        a = self.addr()
        if n.redir == NAT_REDIRECT:
            n.out_addr, n.out_mask = a
        else:
            n.src_addr, n.src_mask = a
        if self.tok.kind == "port":
            self.port()
            n.dcmp, n.dport, n.dtop = self.portstuff()
            if n.redir == NAT_REDIRECT:
                n.pmin = n.dport

    def portstuff(self) -> tuple[int, int, int]:
        """portstuff: compare portspec | portspec range portspec -> (cmp, port, top)."""
        cmp = COMPARE.get(self.tok.kind)
        if cmp is not None:
            self.advance()
            return cmp, self.portspec(), 0
        lo = self.portspec()
        rng = RANGE.get(self.tok.kind)
        if rng is None:
            raise self.fail("syntax")
        self.advance()
        return rng, lo, self.portspec()

    def portspec(self) -> int:
        """portspec: YY_NUMBER (<= 65535) | YY_STR (getservbyname(name, NULL))."""
        t = self.tok
        if t.kind == "num":
            if t.value > 65535:
                raise self.fail("invalid port number")
            self.advance()
            return t.value
        if t.kind == "str":
            port = self.names.service_port(t.text, None)
            if port is None:
                raise self.fail("invalid port number")
            self.advance()
            return port
        raise self.fail("syntax")

    def addr(self) -> tuple[int, int]:
        """addr: "any" | hostname ['/' bits | '/' ipv4 | '/' hex | mask ipv4 | mask hex]; address &= mask."""
        if self.accept("any"):
            return 0, 0
        a = self.hostname()
        m = U32
        if self.accept("/"):
            t = self.tok
            if t.kind == "hex":
                m = self.advance().value
            elif t.kind == "num":
                bits = self.advance()
                if self.tok.kind == ".":
                    m = self.ipv4_rest(bits)
                elif bits.value > 32:
                    raise self.fail("invalid mask", bits)
                else:
                    m = ntomask(bits.value)
            else:
                raise self.fail("syntax")
        elif self.accept("mask"):
            if self.tok.kind == "hex":
                m = self.advance().value
            else:
                m = self.ipv4()
        return a & m, m

    def rhaddr(self) -> tuple[int, int]:
        """rhaddr: addr | "range" ipv4 '-' ipv4 (IPN_IPRANGE: out_mask holds the last address)."""
        if self.accept("range"):
            lo = self.ipv4()
            self.expect("-")
            hi = self.ipv4()
            self.nat.flags |= IPN_IPRANGE
            return lo, hi
        return self.addr()

    def dip(self) -> None:
        """dip: hostname | hostname '/' NUMBER (only 0/0) | hostname ',' hostname (IPN_SPLIT)."""
        n = self.nat
        first = self.tok
        a = self.hostname()
        if self.accept("/"):
            bits = self.expect("num")
            if bits.value != 0 or a != 0:
                raise self.fail("Only 0/0 supported", first)
            n.in_addr, n.in_mask = 0, 0
        elif self.accept(","):
            n.flags |= IPN_SPLIT
            n.in_addr, n.in_mask = a, self.hostname()
        else:
            n.in_addr, n.in_mask = a, U32

    def hostname(self) -> int:
        """hostname: YY_STR (gethost) | YY_NUMBER (a 32-bit number) | ipv4."""
        t = self.tok
        if t.kind == "str":
            self.advance()
            addr = self.gethost(t.text)
            if addr is None:
                raise ConfigError(self.filename, t.line, f"Unknown host '{t.text}'", t.col)
            return addr
        if t.kind == "num":
            self.advance()
            if self.tok.kind == ".":
                return self.ipv4_rest(t)
            return t.value & U32
        raise self.fail("syntax")

    def gethost(self, name: str) -> int | None:
        """lib/gethost.c: the test name, then hosts, then networks."""
        if name == "test.host.dots":
            return TEST_HOST_DOTS
        addrs = self.names.host_addrs(name)
        if addrs:
            return addrs[0]
        return self.names.net_number(name)

    def ipv4(self) -> int:
        return self.ipv4_rest(self.expect("num"))

    def ipv4_rest(self, first: Token) -> int:
        """ipv4: YY_NUMBER '.' YY_NUMBER '.' YY_NUMBER '.' YY_NUMBER, each octet <= 255."""
        octets = [first]
        for _ in range(3):
            self.expect(".")
            octets.append(self.expect("num"))
        for o in octets:
            if o.value > 255:
                raise self.fail("Invalid octet string for IP address", o)
        v = 0
        for o in octets:
            v = (v << 8) | o.value
        return v

    def mapport(self) -> None:
        """mapport: portmap tcpudp (lo ':' hi | "auto") [sequential] | icmpidmap icmp lo ':' hi."""
        n = self.nat
        if self.accept("icmpidmap"):
            what = self.expect("str")
            if what.text != "icmp":
                raise self.fail("icmpidmap not followed by icmp", what)
            lo = self.expect("num")
            self.expect(":")
            hi = self.expect("num")
            for t in (lo, hi):
                if t.value > 65535:
                    raise self.fail("invalid ICMP Id number", t)
            n.flags = IPN_ICMPQUERY  # sic: ipnat_y.y assigns, dropping the flags set so far
            n.pmin, n.pmax = lo.value, hi.value
            return
        self.expect("portmap")
        self.tcpudp()
        if self.accept("auto"):
            self.randport()
            n.flags |= IPN_AUTOPORTMAP
            n.pmin, n.pmax = 1024, 65535
            return
        first = self.portspec()
        self.expect(":")
        last = self.portspec()
        self.randport()
        n.pmin, n.pmax = first, last

    def randport(self) -> None:
        if self.accept("sequential"):
            self.nat.flags |= IPN_SEQUENTIAL

    def tcpudp(self) -> None:
        """tcpudp: | tcp | udp | tcpudp | tcp '/' udp."""
        n = self.nat
        if self.accept("tcpudp"):
            n.flags |= IPN_TCPUDP
            n.p = 0
        elif self.accept("tcp"):
            if self.accept("/"):
                self.expect("udp")
                n.flags |= IPN_TCPUDP
                n.p = 0
            else:
                n.setnatproto(IPPROTO_TCP)
        elif self.accept("udp"):
            n.setnatproto(IPPROTO_UDP)

    def proxy(self) -> None:
        """proxy: "proxy" port portspec NAME '/' proto | "proxy" port SERVICE NAME '/' proto."""
        self.expect("proxy")
        self.proxy_rest()

    def proxy_rest(self) -> None:
        n = self.nat
        self.port()
        if self.tok.kind == "str":
            # yacc shifts the second word: the service is looked up for the proxy's protocol.
            service = self.advance()
            label = self.expect("str")
            self.expect("/")
            pr = self.proto()
            n.plabel = label.text[:APR_LABELLEN]
            pnum = self.getportproto(service.text, pr)
            if pnum is None:
                raise self.fail("invalid port number", service)
            n.dport = pnum
        else:
            ptok = self.tok
            port = self.portspec()
            label = self.expect("str")
            self.expect("/")
            pr = self.proto()
            n.plabel = label.text[:APR_LABELLEN]
            if n.dcmp == 0:
                n.dport = port
            elif port != n.dport:
                raise self.fail("proxy port numbers not consistant", ptok)
        n.setnatproto(pr)

    def getportproto(self, name: str, pr: int) -> int | None:
        """lib/getportproto.c: digits, else the service for that protocol's name."""
        if name[:1].isdigit():
            if not name.isdigit() or int(name) > 65535:
                return None
            return int(name)
        pname = self.names.proto_name(pr)
        return self.names.service_port(name, pname)

    def proto(self) -> int:
        """proto: YY_NUMBER | tcp | udp | YY_STR (getproto()); a non-tcp/udp protocol drops suggest_port."""
        t = self.tok
        if t.kind in ("tcp", "udp"):
            self.advance()
            return IPPROTO_TCP if t.kind == "tcp" else IPPROTO_UDP
        if t.kind == "num":
            p = t.value
        elif t.kind == "str":
            found = int(t.text) if t.text.isdigit() else self.names.proto_number(t.text)
            if found is None:
                raise self.fail("unknown protocol")
            p = found
        else:
            raise self.fail("syntax")
        self.advance()
        if p not in (IPPROTO_TCP, IPPROTO_UDP):
            self.nat.suggest_port = False
        return p

    def setproto(self) -> None:
        """setproto: | proto | tcpudp | tcp '/' udp ("protocol set twice" if one was given)."""
        n = self.nat
        t = self.tok
        if t.kind not in ("num", "str", "tcp", "udp", "tcpudp"):
            return
        if n.p != 0 or n.flags & IPN_TCPUDP:
            raise self.fail("protocol set twice")
        if self.accept("tcpudp"):
            n.flags |= IPN_TCPUDP
            n.p = 0
            return
        if t.kind == "tcp":
            self.advance()
            if self.accept("/"):
                self.expect("udp")
                n.flags |= IPN_TCPUDP
                n.p = 0
                return
            n.setnatproto(IPPROTO_TCP)
            return
        n.setnatproto(self.proto())

    def common_options(self, sticky: bool) -> None:
        """rr frag age [sticky] mssclamp: all optional, in this order."""
        n = self.nat
        if self.accept("round-robin"):
            n.flags |= IPN_ROUNDR
        if self.accept("frag"):
            n.flags |= IPN_FRAG
        if self.accept("age"):
            a = self.expect("num").value
            b = self.expect("num").value if self.accept("/") else a
            n.age = (a, b)
        if sticky:
            t = self.accept("sticky")
            if t is not None:
                if not n.flags & (IPN_ROUNDR | IPN_SPLIT):
                    self.warnings.append(f"{self.filename}:{t.line}:{t.col}: "
                                         "'sticky' for use with round-robin/IP splitting only")
                else:
                    n.flags |= IPN_STICKY
        if self.accept("mssclamp"):
            n.mssclamp = self.expect("num").value

    def nattag(self) -> None:
        if self.accept("tag"):
            self.nat.tag = self.expect("str").text[:IPFTAG_LEN]

    def mapoptions(self) -> None:
        """mapoptions: rr frag age mssclamp nattag setproto."""
        self.common_options(sticky=False)
        self.nattag()
        self.setproto()

    def rdroptions(self) -> None:
        """rdroptions: rr frag age sticky mssclamp rdrproxy nattag."""
        n = self.nat
        self.common_options(sticky=True)
        if self.accept("proxy"):
            if self.tok.kind == "port":  # the map form, inside rdr: its port becomes pmin/pmax/pnext
                self.proxy_rest()
                if n.plabel:
                    n.pmin = n.pmax = n.pnext = n.dport
            else:  # rdrproxy: "proxy" NAME
                n.plabel = self.expect("str").text[:APR_LABELLEN]
                n.dport = n.pnext
        self.nattag()


def parse(text: str, filename: str, resolver: Resolver | None = None) -> ParseResult:
    """Every rule of an ipnat.conf text, or ConfigError at the first bad token."""
    return Parser(text, filename, resolver if resolver is not None else Resolver.builtin()).parse()

