"""`iptables`, `iptables-save` and `iptables-restore` as iptables-legacy 1.8.9, against a `Netfilter`.

Parsing mirrors iptables/xshared.c do_parse() and iptables/iptables.c
do_command4(): GNU getopt_long with iptables' option string (clustered short
options, unique long-option prefixes, `!` as its own word), extensions loaded
by `-m`/`-j` adding their options to the table (the newest first), the
protocol match loaded on the first unknown option after `-p`, then
generic_opt_check() and the rest of the checks in the same order, so that a
bad line fails with the same text and exit status: 2 for a bad command line
(with the "Try `iptables -h'" line), 1 for what libiptc or the kernel refuse
(`iptables: Bad rule (does a matching rule exist in that chain?).`), 3 for an
unknown table.  Output formats are in `netfilter.listing`.

iptables-save: the header and footer lines carry ctime() of `now` (seconds
since the epoch, local time); pass `now` to get reproducible output, the
default is the current time.  Tables are listed newest first, as
/proc/net/ip_tables_names lists them; without -c, rules have no counters
but chains do, as in legacy iptables-save.

iptables-restore applies each `*table` ... `COMMIT` block atomically, like
the real tool: an error stops the input, tables committed before it stay.
`load_script` in the shell makes a whole configuration all-or-nothing.
Input comes from `stdin`, a file argument, or `< FILE`.

Not modelled: `-v -v` table dumps, the xtables lock (`-w`/`-W` are accepted
and ignored), matches and targets other than those of `netfilter.ext` (a
known iptables extension ipgate lacks is refused with an "ipgate:" message),
protocol matches other than tcp/udp/icmp, DNS (see `netfilter.names`).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ipgate.commands.base import Exit, Output
from ipgate.netfilter import listing
from ipgate.netfilter._usage import IPTABLES_HELP, RESTORE_HELP
from ipgate.netfilter.ext import (
    KNOWN_MATCHES,
    KNOWN_TARGETS,
    MATCHES,
    TARGETS,
    Ext,
    IprangeExt,
    Opt,
    ParamError,
    ParseContext,
    StandardExt,
    parse_protocol,
)
from ipgate.netfilter.names import Resolver, inet_aton, mask_bits, numeric_to_ipaddr, xt_strtoui
from ipgate.netfilter.rule import (
    IPT_F_FRAG,
    IPT_F_GOTO,
    IPT_INV_DSTIP,
    IPT_INV_FRAG,
    IPT_INV_PROTO,
    IPT_INV_SRCIP,
    IPT_INV_VIA_IN,
    IPT_INV_VIA_OUT,
    Counters,
    Jump,
    Match,
    Rule,
    Standard,
    Target,
)
from ipgate.netfilter.tables import (
    STANDARD_VERDICTS,
    TABLE_CHAINS,
    XT_EXTENSION_MAXNAMELEN,
    Handle,
    IptcError,
    Netfilter,
)

VERSION = "v1.8.9"

# xshared.h command bits; CMD_CHARS[i] is the letter of bit i (cmd2char()).
CMD_INSERT, CMD_DELETE, CMD_DELETE_NUM, CMD_REPLACE, CMD_APPEND = 1, 2, 4, 8, 16
CMD_LIST, CMD_FLUSH, CMD_ZERO, CMD_NEW_CHAIN, CMD_DELETE_CHAIN = 32, 64, 128, 256, 512
CMD_SET_POLICY, CMD_RENAME_CHAIN, CMD_LIST_RULES, CMD_ZERO_NUM, CMD_CHECK = 1024, 2048, 4096, 8192, 16384
CMD_CHARS = "IDDRALFZNXPESZC"
RULE_CMDS = CMD_APPEND | CMD_DELETE | CMD_CHECK | CMD_INSERT | CMD_REPLACE

# OPT_* bits, their letters (optflags[]) and the invflags `!` sets (inverse_for_options[]).
OPT_NUMERIC, OPT_SOURCE, OPT_DESTINATION, OPT_PROTOCOL, OPT_JUMP, OPT_VERBOSE = 1, 2, 4, 8, 16, 32
OPT_EXPANDED, OPT_VIANAMEIN, OPT_VIANAMEOUT, OPT_LINENUMBERS, OPT_COUNTERS, OPT_FRAGMENT = 64, 128, 256, 512, 1024, 2048
OPT_CHARS = "nsdpjvxio0cf"
INVERSE_FOR_OPTIONS = (0, IPT_INV_SRCIP, IPT_INV_DSTIP, IPT_INV_PROTO, 0, 0, 0, IPT_INV_VIA_IN, IPT_INV_VIA_OUT,
                       0, 0, IPT_INV_FRAG)

# commands_v_options[]: per command (bit order), per option: 'x' illegal
COMMANDS_V_OPTIONS = (
    "x     x  x  ",  # INSERT
    "x     x  xx ",  # DELETE
    "xxxxx xxxxxx",  # DELETE_NUM
    "x     x  x  ",  # REPLACE
    "x     x  x  ",  # APPEND
    " xxxx  xx xx",  # LIST
    "xxxxx xxxxxx",  # FLUSH
    "xxxxx xxxxxx",  # ZERO
    "xxxxx xxxxxx",  # NEW_CHAIN
    "xxxxx xxxxxx",  # DEL_CHAIN
    "xxxxx xxxx x",  # SET_POLICY
    "xxxxx xxxxxx",  # RENAME
    "xxxxx xxxxxx",  # LIST_RULES
    "xxxxx xxxxxx",  # ZERO_NUM
    "x     x  xx ",  # CHECK
)

# iptables' getopt string "-:A:C:D:R:I:L::S::M:F::Z::N:X::E:P:Vh::o:p:s:d:j:i:fbvw::W::nt:m:xc:g:46"
SHORT_OPTS = {"A": 1, "C": 1, "D": 1, "R": 1, "I": 1, "L": 2, "S": 2, "M": 1, "F": 2, "Z": 2, "N": 1, "X": 2,
              "E": 1, "P": 1, "V": 0, "h": 2, "o": 1, "p": 1, "s": 1, "d": 1, "j": 1, "i": 1, "f": 0, "v": 0,
              "w": 2, "W": 2, "n": 0, "t": 1, "m": 1, "x": 0, "c": 1, "g": 1, "4": 0, "6": 0}
GLOBAL_LONG = (("append", 1, "A"), ("delete", 1, "D"), ("check", 1, "C"), ("insert", 1, "I"),
               ("replace", 1, "R"), ("list", 2, "L"), ("list-rules", 2, "S"), ("flush", 2, "F"), ("zero", 2, "Z"),
               ("new-chain", 1, "N"), ("delete-chain", 2, "X"), ("rename-chain", 1, "E"), ("policy", 1, "P"),
               ("source", 1, "s"), ("destination", 1, "d"), ("src", 1, "s"), ("dst", 1, "d"),
               ("protocol", 1, "p"), ("in-interface", 1, "i"), ("jump", 1, "j"), ("table", 1, "t"),
               ("match", 1, "m"), ("numeric", 0, "n"), ("out-interface", 1, "o"), ("verbose", 0, "v"),
               ("wait", 2, "w"), ("wait-interval", 2, "W"), ("exact", 0, "x"), ("fragments", 0, "f"),
               ("version", 0, "V"), ("help", 2, "h"), ("line-numbers", 0, "0"), ("modprobe", 1, "M"),
               ("set-counters", 1, "c"), ("goto", 1, "g"), ("ipv4", 0, "4"), ("ipv6", 0, "6"))


class BadArgument(Exception):
    """A stray word: fprintf(stderr, "Bad argument `%s'\\n") and exit_tryhelp(2)."""


@dataclass(frozen=True, slots=True)
class LongOpt:
    name: str
    has_arg: int
    key: str  # global option letter, or "" for an extension option
    owner: str = ""  # extension name
    opt: Opt | None = None


_GLOBAL_LONGOPTS = tuple(LongOpt(n, h, k) for n, h, k in GLOBAL_LONG)


_EXT_LONGOPTS: dict[str, tuple[LongOpt, ...]] = {}


def _ext_longopts(ext: type[Ext]) -> tuple[LongOpt, ...]:
    opts = _EXT_LONGOPTS.get(ext.NAME)
    if opts is None:
        opts = _EXT_LONGOPTS[ext.NAME] = tuple(LongOpt(o.name, 1 if o.arg else 0, "", ext.NAME, o)
                                              for o in ext.OPTIONS)
    return opts


class Getopt:
    """GNU getopt_long() in RETURN_IN_ORDER mode ("-" optstring), with opterr = 0."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.optind = 1
        self._cluster = ""  # the rest of a short-option cluster
        self._cluster_start = 0

    def has_arg(self) -> bool:
        """xs_has_arg(): the next word exists and is not an option or `!`."""
        return self.optind < len(self.argv) and self.argv[self.optind][:1] not in ("-", "!")

    def take(self) -> str:
        self.optind += 1
        return self.argv[self.optind - 1]

    def rewind(self) -> None:
        """optind-- after loading the protocol match: parse the same word again."""
        self.optind = self._cluster_start
        self._cluster = ""

    def next(self, longopts: list[LongOpt]) -> tuple[str, str | LongOpt, str | None] | None:
        """("opt", letter or LongOpt, optarg), ("nonopt", word, None), ("missing"/"unknown", text, None)."""
        if self._cluster:
            return self._short()
        if self.optind >= len(self.argv):
            return None
        word = self.argv[self.optind]
        self._cluster_start = self.optind
        if word == "--":
            self.optind += 1
            return None
        if not word.startswith("-") or word == "-":
            self.optind += 1
            return ("nonopt", word, None)
        if word.startswith("--"):
            return self._long(word, longopts)
        self._cluster = word[1:]
        self.optind += 1
        return self._short()

    def _short(self) -> tuple[str, str | LongOpt, str | None]:
        c, self._cluster = self._cluster[0], self._cluster[1:]
        has = SHORT_OPTS.get(c)
        if has is None:
            return ("unknown", "-" + c, None)
        if has == 0:
            return ("opt", c, None)
        if self._cluster:
            arg, self._cluster = self._cluster, ""
            return ("opt", c, arg)
        if has == 2:
            return ("opt", c, None)
        if self.optind >= len(self.argv):
            return ("missing", self.argv[self.optind - 1], None)
        return ("opt", c, self.take())

    def _long(self, word: str, longopts: list[LongOpt]) -> tuple[str, str | LongOpt, str | None]:
        self.optind += 1
        name, eq, value = word[2:].partition("=")
        exact = [lo for lo in longopts if lo.name == name]
        if exact:
            lo = exact[0]
        else:
            cands = [lo for lo in longopts if lo.name.startswith(name)]
            kinds = {(lo.has_arg, lo.key, lo.owner, lo.opt.id if lo.opt else -1) for lo in cands}
            if len(kinds) != 1:
                return ("unknown", word, None)
            lo = cands[0]
        if lo.has_arg == 0:
            if eq:
                return ("unknown", word, None)
            return ("opt", lo, None)
        if eq:
            return ("opt", lo, value)
        if lo.has_arg == 2:
            return ("opt", lo, None)
        if self.optind >= len(self.argv):
            return ("missing", word, None)
        return ("opt", lo, self.take())


def _sscanf_llu(text: str) -> int | None:
    """sscanf("%llu"): leading space, a sign, decimal digits; negatives wrap."""
    s = text.lstrip(" \t\n\v\f\r")
    neg = s[:1] == "-"
    s = s[1:] if s[:1] in "+-" else s
    digits = ""
    for c in s:
        if not "0" <= c <= "9":
            break
        digits += c
    if not digits:
        return None
    v = min(int(digits), (1 << 64) - 1)
    return (-v) & ((1 << 64) - 1) if neg else v


def parse_ipmask(text: str) -> int:
    m = numeric_to_ipaddr(text, is_mask=True)
    if m is not None:
        return m
    bits = xt_strtoui(text, 0, 32)
    if bits is None:
        raise ParamError(f"invalid mask `{text}' specified")
    return mask_bits(bits)


def ipparse_multiple(text: str, names: Resolver) -> list[tuple[int, int]]:
    """xtables_ipparse_multiple(): "a[/m],b[/m],..."; names can expand to several addresses."""
    out: list[tuple[int, int]] = []
    for item in text.split(","):
        item = item.lstrip(" \t\n\v\f\r")
        if len(item) > 255:
            raise ParamError("Hostname too long")
        host, slash, m = item.rpartition("/")
        if not slash:
            host, mask = item, 0xFFFFFFFF
        else:
            mask = parse_ipmask(m)
        if mask == 0:
            host = "0.0.0.0"
        out.extend((a & mask, mask) for a in ipparse_hostnetwork(host, names))
    return out


def ipparse_hostnetwork(host: str, names: Resolver) -> list[int]:
    a = numeric_to_ipaddr(host)
    if a is None:
        a = names.net_number(host)
    if a is not None:
        return [a]
    numeric = inet_aton(host)
    addrs = [numeric] if numeric is not None else names.host_addrs(host)
    if not addrs:
        raise ParamError(f"host/network `{host}' not found")
    return addrs


@dataclass
class Parsed:
    """What do_parse() leaves for do_command4()."""

    command: int = 0
    chain: str | None = None
    rulenum: int = 0
    newname: str = ""
    policy: str | None = None
    table: str = "filter"
    options: int = 0
    invflags: int = 0
    proto: int = 0
    protocol: str | None = None
    proto_used: bool = False
    flags: int = 0
    iniface: str = ""
    outiface: str = ""
    shost: str | None = None
    dhost: str | None = None
    jumpto: str | None = None
    goto: bool = False
    target: Ext | None = None
    matches: list[Ext] = field(default_factory=list)
    load_order: list[Ext] = field(default_factory=list)  # matches and target as loaded
    pcnt: int = 0
    bcnt: int = 0
    verbose: int = 0
    saddrs: list[tuple[int, int]] = field(default_factory=list)
    daddrs: list[tuple[int, int]] = field(default_factory=list)


class IptablesCommand:
    """One `iptables` command line (or one iptables-restore rule line)."""

    def __init__(self, names: Resolver, o: Output, restore: bool = False) -> None:
        self.names = names
        self.o = o
        self.restore = restore
        self.p = Parsed()
        self.g = Getopt([])
        self._opts: list[LongOpt] = []
        self._opts_key = -1

    # -- parsing ------------------------------------------------------------------
    def _longopts(self) -> list[LongOpt]:
        """The merged option table: iptables' own, then each extension's, the newest first.

        A second `-m` of a loaded match clones it without merging its options
        again, so an extension keeps the place of its first load.
        """
        key = len(self.p.load_order)
        if self._opts_key == key:
            return self._opts
        opts = list(_GLOBAL_LONGOPTS)
        first: dict[str, Ext] = {}
        for ext in self.p.load_order:
            first.setdefault(ext.NAME, ext)
        for ext in reversed(list(first.values())):
            opts.extend(_ext_longopts(type(ext)))
        self._opts, self._opts_key = opts, key
        return opts

    def _set_option(self, bit: int, invert: bool) -> None:
        p = self.p
        idx = bit.bit_length() - 1
        if p.options & bit:
            raise ParamError(f"multiple -{OPT_CHARS[idx]} flags not allowed")
        p.options |= bit
        if invert:
            inv = INVERSE_FOR_OPTIONS[idx]
            if not inv:
                raise ParamError(f"cannot have ! before -{OPT_CHARS[idx]}")
            p.invflags |= inv

    def _add_command(self, new: int, others: int, invert: bool) -> None:
        if invert:
            raise ParamError("unexpected '!' flag")
        clash = self.p.command & ~others
        if clash:
            raise ParamError(f"Cannot use -{_cmd_char(new)} with -{_cmd_char(clash)}")
        self.p.command |= new

    def _rulenum(self, text: str) -> int:
        v = xt_strtoui(text, 1, 0x7FFFFFFF)
        if v is None:
            raise ParamError(f"Invalid rule number `{text}'")
        return v

    def _ctx(self) -> ParseContext:
        return ParseContext(self.p.proto, self.p.invflags, self.names, self._next_arg, [])

    def _next_arg(self) -> str | None:
        g = self.g
        if g.optind < len(g.argv) and g.argv[g.optind][:1] not in ("-", "!"):
            return g.take()
        return None

    def _warn(self, lines: list[str]) -> None:
        for line in lines:
            self.o.err.append(line + "\n")

    def parse(self, argv: list[str]) -> None:
        """do_parse(): fills self.p or raises ParamError/BadArgument."""
        g = Getopt(argv)
        self.g = g
        invert = False
        table_set = False
        while True:
            longopts = self._longopts()
            tok = g.next(longopts)
            if tok is None:
                break
            kind, key, optarg = tok
            if kind == "nonopt":
                assert isinstance(key, str)
                if key == "!":
                    if invert:
                        raise ParamError("multiple consecutive ! not allowed")
                    invert = True
                    continue
                raise BadArgument(key)
            if kind == "opt" and isinstance(key, LongOpt) and key.owner:
                self._ext_option(key, optarg, invert)
                invert = False
                continue
            if kind in ("missing", "unknown"):
                assert isinstance(key, str)
                if self._load_proto():
                    g.rewind()
                    continue
                if kind == "missing":
                    raise ParamError(f'option "{key}" requires an argument')
                raise ParamError(f'unknown option "{key}"')
            c = key.key if isinstance(key, LongOpt) else key
            self._global_option(c, optarg, invert, table_set)
            if c == "t":
                table_set = True
            invert = False
        self._finish(invert)

    def _ext_option(self, lo: LongOpt, optarg: str | None, invert: bool) -> None:
        p = self.p
        assert lo.opt is not None
        if p.target is not None and p.target.NAME == lo.owner:
            ext = p.target
        else:
            ext = next(m for m in p.matches if m.NAME == lo.owner and not m.completed)
        ctx = self._ctx()
        try:
            ext.parse(lo.opt, optarg, invert, ctx)
        finally:
            self._warn(ctx.warnings)

    def _load_proto(self) -> bool:
        """load_proto(): on an unknown option, load the match named by -p once."""
        p = self.p
        if p.protocol is None:
            return False
        num = xt_strtoui(p.protocol, 0, 255)
        if num is not None:
            name = listing.proto_to_name(num, bool(p.options & OPT_NUMERIC), self.names)
        else:
            name = p.protocol
        if name is None or name not in MATCHES:
            return False
        loaded = any(m.NAME == name for m in p.matches)
        if loaded and p.proto_used:
            return False
        self._add_match(name)
        p.proto_used = True
        return True

    def _add_match(self, name: str) -> None:
        for m in self.p.matches:
            if m.NAME == name:
                m.completed = True
        ext = MATCHES[name]()
        self.p.matches.append(ext)
        self.p.load_order.append(ext)

    def _global_option(self, c: str, optarg: str | None, invert: bool, table_set: bool) -> None:
        p, g = self.p, self.g
        if c in "ACDRI":
            bit = {"A": CMD_APPEND, "C": CMD_CHECK, "D": CMD_DELETE, "R": CMD_REPLACE, "I": CMD_INSERT}[c]
            self._add_command(bit, 0, invert)
            p.chain = optarg
            if c == "D" and g.has_arg():
                p.rulenum = self._rulenum(g.take())
                p.command = CMD_DELETE_NUM
            elif c == "R":
                if not g.has_arg():
                    raise ParamError("-R requires a rule number")
                p.rulenum = self._rulenum(g.take())
            elif c == "I":
                p.rulenum = self._rulenum(g.take()) if g.has_arg() else 1
        elif c in "LS":
            self._add_command(CMD_LIST if c == "L" else CMD_LIST_RULES, CMD_ZERO | CMD_ZERO_NUM, invert)
            if optarg is not None:
                p.chain = optarg
            elif g.has_arg():
                p.chain = g.take()
            if g.has_arg():
                p.rulenum = self._rulenum(g.take())
        elif c in "FX":
            self._add_command(CMD_FLUSH if c == "F" else CMD_DELETE_CHAIN, 0, invert)
            if optarg is not None:
                p.chain = optarg
            elif g.has_arg():
                p.chain = g.take()
        elif c == "Z":
            self._add_command(CMD_ZERO, CMD_LIST | CMD_LIST_RULES, invert)
            if optarg is not None:
                p.chain = optarg
            elif g.has_arg():
                p.chain = g.take()
            if g.has_arg():
                p.rulenum = self._rulenum(g.take())
                p.command = (p.command & ~CMD_ZERO) | CMD_ZERO_NUM
        elif c == "N":
            assert optarg is not None
            self._assert_valid_chain_name(optarg)
            self._add_command(CMD_NEW_CHAIN, 0, invert)
            p.chain = optarg
        elif c == "E":
            self._add_command(CMD_RENAME_CHAIN, 0, invert)
            p.chain = optarg
            if not g.has_arg():
                raise ParamError("-E requires old-chain-name and new-chain-name")
            p.newname = g.take()
        elif c == "P":
            self._add_command(CMD_SET_POLICY, 0, invert)
            p.chain = optarg
            if not g.has_arg():
                raise ParamError("-P requires a chain and a policy")
            p.policy = g.take()
        elif c == "h":
            raise _Help()
        elif c == "p":
            self._set_option(OPT_PROTOCOL, invert)
            # the -p handler reads argv[optind - 1]: "-ptcp" is the protocol "-ptcp"
            text = g.argv[g.optind - 1].lower()
            p.protocol = text
            p.proto = parse_protocol(text, self.names)
            if p.proto == 0 and p.invflags & IPT_INV_PROTO:
                raise ParamError("rule would never match protocol")
        elif c in "sd":
            self._set_option(OPT_SOURCE if c == "s" else OPT_DESTINATION, invert)
            if c == "s":
                p.shost = optarg
            else:
                p.dhost = optarg
        elif c in "jg":
            self._set_option(OPT_JUMP, invert)
            assert optarg is not None
            self._jump(optarg, goto=c == "g")
        elif c in "io":
            assert optarg is not None
            if optarg == "":
                raise ParamError("Empty interface is likely to be undesired")
            self._set_option(OPT_VIANAMEIN if c == "i" else OPT_VIANAMEOUT, invert)
            self._interface(optarg, c)
        elif c == "f":
            self._set_option(OPT_FRAGMENT, invert)
            p.flags |= IPT_F_FRAG
        elif c == "v":
            if not p.verbose:
                self._set_option(OPT_VERBOSE, invert)
            p.verbose += 1
        elif c == "x":
            self._set_option(OPT_EXPANDED, invert)
        elif c == "m":
            if invert:
                raise ParamError("unexpected ! flag before --match")
            assert optarg is not None
            if optarg not in MATCHES:
                if optarg in KNOWN_MATCHES:
                    raise ParamError(f"ipgate: match `{optarg}' is not supported")
                raise ParamError(f"Couldn't load match `{optarg}':No such file or directory\n")
            self._add_match(optarg)
        elif c == "n":
            self._set_option(OPT_NUMERIC, invert)
        elif c == "t":
            if invert:
                raise ParamError("unexpected ! flag before --table")
            if self.restore and table_set:
                raise ParamError("The -t option cannot be used in iptables-restore.\n")
            assert optarg is not None
            p.table = optarg
        elif c == "V":
            raise _Version()
        elif c in "wW":
            if self.restore:
                raise ParamError(f"You cannot use `-{c}' from iptables-restore")
            if optarg is None and g.has_arg():
                optarg = g.take()
            if optarg is not None and _sscanf_llu(optarg.replace("-", "", 1)) is None:
                raise ParamError("wait seconds not numeric" if c == "w" else "wait interval not numeric")
            if c == "W":
                self.o.err.append("Ignoring deprecated --wait-interval option.\n")
        elif c == "0":
            self._set_option(OPT_LINENUMBERS, invert)
        elif c == "M":
            pass  # --modprobe: nothing to load here
        elif c == "c":
            self._set_option(OPT_COUNTERS, invert)
            assert optarg is not None
            comma = optarg.find(",", 1)
            bcnt: str | None = optarg[comma + 1:] if comma >= 0 else None
            if bcnt is None and g.has_arg():
                bcnt = g.take()
            if bcnt is None:
                raise ParamError("-c requires packet and byte counter")
            pc, bc = _sscanf_llu(optarg), _sscanf_llu(bcnt)
            if pc is None:
                raise ParamError("-c packet counter not numeric")
            if bc is None:
                raise ParamError("-c byte counter not numeric")
            p.pcnt, p.bcnt = pc, bc
        elif c == "4":
            pass
        elif c == "6":
            raise ParamError("")

    def _assert_valid_chain_name(self, name: str) -> None:
        if len(name) >= XT_EXTENSION_MAXNAMELEN:
            raise ParamError(f"chain name `{name}' too long (must be under {XT_EXTENSION_MAXNAMELEN} chars)")
        if name[:1] in ("-", "!"):
            raise ParamError(f"chain name not allowed to start with `{name[0]}'")
        if name in KNOWN_TARGETS:
            raise ParamError("chain name may not clash with target name")
        if any(ch in " \t\n\v\f\r" for ch in name):
            raise ParamError(f"Invalid chain name `{name}'")

    def _jump(self, name: str, goto: bool) -> None:
        # xt_parse_target(), then command_jump() loads the target (-g never does)
        if len(name) < 1:
            raise ParamError("Invalid target name (too short)")
        if len(name) >= XT_EXTENSION_MAXNAMELEN:
            raise ParamError(f"Invalid target name `{name}' ({XT_EXTENSION_MAXNAMELEN - 1} chars max)")
        if any(ch in " \t\n\v\f\r" for ch in name):
            raise ParamError(f"Invalid target name `{name}'")
        p = self.p
        p.jumpto, p.goto = name, goto
        if goto:
            return
        if name in STANDARD_VERDICTS:
            p.target = StandardExt(name)
        elif name in TARGETS:
            p.target = TARGETS[name]()
        elif name in KNOWN_TARGETS:
            raise ParamError(f"ipgate: target `{name}' is not supported")
        if p.target is not None:
            p.load_order.append(p.target)

    def _interface(self, arg: str, which: str) -> None:
        # xtables_parse_interface()
        if len(arg) + 1 > 16:
            raise ParamError(f"interface name `{arg}' must be shorter than IFNAMSIZ (15)")
        if not arg.endswith("+") and any(ch in "/ " for ch in arg):
            self.o.err.append(f"Warning: weird character in interface `{arg}' "
                              "('/' and ' ' are not allowed by the kernel).\n")
        if which == "i":
            self.p.iniface = arg
        else:
            self.p.outiface = arg

    def _finish(self, invert: bool) -> None:
        p = self.p
        if p.table == "nat" and (p.policy == "DROP" or p.jumpto == "DROP"):
            raise ParamError('\nThe "nat" table is not intended for filtering, the use of DROP is therefore '
                             "inhibited.\n\n")
        for m in p.matches:
            m.fcheck()
            if isinstance(m, IprangeExt):
                self._warn(m.warnings())
        if p.target is not None:
            p.target.fcheck()
        if self.g.optind < len(self.g.argv):
            raise ParamError("unknown arguments found on commandline")
        if not p.command:
            raise ParamError("no command specified")
        if invert:
            raise ParamError("nothing appropriate following !")
        # ipv4_post_parse()
        if p.command & RULE_CMDS:
            if not p.options & OPT_DESTINATION:
                p.dhost = "0.0.0.0/0"
            if not p.options & OPT_SOURCE:
                p.shost = "0.0.0.0/0"
        if p.shost is not None:
            p.saddrs = ipparse_multiple(p.shost, self.names)
        if p.dhost is not None:
            p.daddrs = ipparse_multiple(p.dhost, self.names)
        if (len(p.saddrs) > 1 or len(p.daddrs) > 1) and p.invflags & (IPT_INV_SRCIP | IPT_INV_DSTIP):
            raise ParamError("! not allowed with multiple source or destination IP addresses")
        if p.command == CMD_REPLACE and (len(p.saddrs) != 1 or len(p.daddrs) != 1):
            raise ParamError("Replacement rule does not specify a unique address")
        self._generic_opt_check()
        if p.chain is not None and len(p.chain) >= XT_EXTENSION_MAXNAMELEN:
            raise ParamError(f"chain name `{p.chain}' too long (must be under {XT_EXTENSION_MAXNAMELEN} chars)")
        if p.command & (RULE_CMDS | CMD_DELETE_NUM):
            if p.chain in ("PREROUTING", "INPUT") and p.options & OPT_VIANAMEOUT:
                raise ParamError(f"Can't use -o with {p.chain}\n")
            if p.chain in ("POSTROUTING", "OUTPUT") and p.options & OPT_VIANAMEIN:
                raise ParamError(f"Can't use -i with {p.chain}\n")

    def _generic_opt_check(self) -> None:
        p = self.p
        for i, letter in enumerate(OPT_CHARS):
            legal = 0
            for j, row in enumerate(COMMANDS_V_OPTIONS):
                if not p.command & (1 << j) or not p.options & (1 << i):
                    continue
                if row[i] != "x":
                    legal = 1
                elif legal == 0:
                    legal = -1
            if legal == -1:
                raise ParamError(f"Illegal option `-{letter}' with this command")

    # -- execution (do_command4) ---------------------------------------------------------
    def rules(self, handle: Handle) -> list[Rule]:
        """The entries of a rule command: one per source x destination address."""
        p = self.p
        target: Target | None
        if p.target is not None:
            target = p.target.build()  # type: ignore[assignment]
        elif not p.jumpto:
            target = None
        elif handle.is_chain(p.jumpto):
            target = Jump(p.jumpto)
        elif p.goto:
            raise ParamError(f"goto '{p.jumpto}' is not a chain")
        else:
            raise ParamError(f"Couldn't load target `{p.jumpto}':No such file or directory\n")
        if isinstance(target, Jump) and p.jumpto in STANDARD_VERDICTS:
            target = Standard(p.jumpto)
        matches: tuple[Match, ...] = tuple(m.build() for m in p.matches)  # type: ignore[misc]
        flags = p.flags | (IPT_F_GOTO if p.goto else 0)
        out = []
        for src, smsk in p.saddrs:
            for dst, dmsk in p.daddrs:
                out.append(Rule(src, smsk, dst, dmsk, p.iniface, p.outiface, p.proto, flags, p.invflags,
                                matches, target, Counters(p.pcnt, p.bcnt)))
        return out

    def execute(self, handle: Handle) -> bool:
        """Run the parsed command on `handle`; True if the table must be committed."""
        p, o, names = self.p, self.o, self.names
        cmd = p.command
        verbose = bool(p.options & OPT_VERBOSE)

        def echo(rule: Rule) -> None:
            if verbose:
                o.write(listing.print_firewall(rule, 0, listing.FMT_PRINT_RULE, names))

        if cmd & RULE_CMDS:
            assert p.chain is not None
            chain = p.chain
            entries = self.rules(handle)
            if cmd == CMD_REPLACE:
                entries = entries[:1]
            op: Callable[[Rule], None] = {
                CMD_APPEND: lambda r: handle.append(chain, r),
                CMD_INSERT: lambda r: handle.insert(chain, r, p.rulenum - 1),
                CMD_REPLACE: lambda r: handle.replace(chain, r, p.rulenum - 1),
                CMD_DELETE: lambda r: handle.delete_entry(chain, r),
                CMD_CHECK: lambda r: handle.check_entry(chain, r),
            }[cmd]
            # `ret &= iptc_...()`: every entry is tried, the last failure is reported
            failure: IptcError | None = None
            for r in entries:
                echo(r)
                try:
                    op(r)
                except IptcError as e:
                    failure = e
            if failure is not None:
                raise failure
            return cmd != CMD_CHECK
        if cmd == CMD_DELETE_NUM:
            assert p.chain is not None
            handle.delete_num(p.chain, p.rulenum - 1)
        elif cmd == CMD_FLUSH:
            for ch in ([p.chain] if p.chain is not None else handle.chains()):
                if verbose:
                    o.write(f"Flushing chain `{ch}'\n")
                handle.flush(ch)
        elif cmd == CMD_ZERO:
            self._zero(handle, verbose)
        elif cmd == CMD_ZERO_NUM:
            assert p.chain is not None
            handle.zero_counter(p.chain, p.rulenum)
        elif cmd & (CMD_LIST | CMD_LIST_RULES):
            t = handle.table
            if cmd & CMD_LIST:
                text = listing.list_entries(t, p.chain, p.rulenum, verbose, bool(p.options & OPT_NUMERIC),
                                            bool(p.options & OPT_EXPANDED), bool(p.options & OPT_LINENUMBERS),
                                            names)
            else:
                text = listing.list_rules(t, p.chain, p.rulenum, verbose, names)
            if text is None:
                raise IptcError(errno.ENOENT, None)
            o.write(text)
            if cmd & CMD_ZERO:
                self._zero(handle, verbose)
            elif cmd & CMD_ZERO_NUM:
                assert p.chain is not None
                handle.zero_counter(p.chain, p.rulenum)
            else:
                return False
        elif cmd == CMD_NEW_CHAIN:
            assert p.chain is not None
            handle.create_chain(p.chain)
        elif cmd == CMD_DELETE_CHAIN:
            self._delete_chains(handle, verbose)
        elif cmd == CMD_RENAME_CHAIN:
            assert p.chain is not None
            handle.rename_chain(p.chain, p.newname)
        elif cmd == CMD_SET_POLICY:
            assert p.chain is not None and p.policy is not None
            counters = Counters(p.pcnt, p.bcnt) if p.options & OPT_COUNTERS else None
            handle.set_policy(p.chain, p.policy, counters)
        return True

    def _zero(self, handle: Handle, verbose: bool) -> None:
        for ch in ([self.p.chain] if self.p.chain is not None else handle.chains()):
            if verbose:
                self.o.write(f"Zeroing chain `{ch}'\n")
            handle.zero(ch)

    def _delete_chains(self, handle: Handle, verbose: bool) -> None:
        if self.p.chain is not None:
            if verbose:
                self.o.write(f"Deleting chain `{self.p.chain}'\n")
            handle.delete_chain(self.p.chain)
            return
        # for_each_chain4(): every user chain is tried; the last failure is reported
        failure: IptcError | None = None
        for ch in handle.chains():
            if handle.builtin(ch):
                continue
            if verbose:
                self.o.write(f"Deleting chain `{ch}'\n")
            try:
                handle.delete_chain(ch)
            except IptcError as e:
                failure = e
        if failure is not None:
            raise failure


class _Help(Exception):
    pass


class _Version(Exception):
    pass


def _cmd_char(bits: int) -> str:
    return CMD_CHARS[(bits & -bits).bit_length() - 1]


def _tryhelp(prog: str, line: int) -> str:
    where = f"Error occurred at line: {line}\n" if line >= 0 else ""
    return where + f"Try `{prog} -h' or '{prog} --help' for more information.\n"


def _param_text(prog: str, e: ParamError | BadArgument, line: int = -1) -> str:
    if isinstance(e, BadArgument):
        return f"Bad argument `{e.args[0]}'\n" + _tryhelp(prog, line)
    if not e.message:  # -6
        return _tryhelp(prog, line)
    return f"{prog} {VERSION} (legacy): {e.message}\n" + _tryhelp(prog, line)


def _iptc_text(e: IptcError) -> str:
    suffix = " Run `dmesg' for more information." if e.errno == errno.EINVAL else ""
    return f"iptables: {e.text}.{suffix}\n"


def _fail(o: Output, status: int, text: str) -> Exit:
    o.err.append(text)
    return Exit(status)


def iptables(nf: Netfilter, args: list[str], o: Output, prog: str = "iptables") -> int:
    """`iptables ARGS` (without the program word): output into `o`, returns the exit status."""
    cmd = IptablesCommand(nf.resolver, o)
    try:
        cmd.parse([prog, *args])
    except (ParamError, BadArgument) as e:
        raise _fail(o, 2, _param_text("iptables", e)) from None
    except _Help:
        o.write("".join(IPTABLES_HELP))
        return 0
    except _Version:
        o.write(f"iptables {VERSION} (legacy)\n")
        return 0
    p = cmd.p
    try:
        handle = nf.init(p.table)
    except IptcError as e:
        raise _fail(o, 3, f"iptables {VERSION} (legacy): can't initialize iptables table `{p.table}': {e.text}\n"
                          "Perhaps iptables or your kernel needs to be upgraded.\n") from None
    try:
        if cmd.execute(handle):
            nf.commit(handle)
    except ParamError as e:
        raise _fail(o, 2, _param_text("iptables", e)) from None
    except IptcError as e:
        raise _fail(o, 1, _iptc_text(e)) from None
    return 0


def iptables_save(nf: Netfilter, args: list[str], o: Output, now: float | None = None,
                  prog: str = "iptables-save") -> int:
    """`iptables-save [-c] [-t table] [-M cmd] [-f file]`; `now` stamps the comment lines."""
    counters, table, outfile = False, None, None
    shorts = {"b": 0, "c": 0, "d": 0, "t": 1, "M": 1, "f": 1, "V": 0}
    longs = {"binary": "b", "counters": "c", "dump": "d", "table": "t", "modprobe": "M", "file": "f",
             "version": "V"}
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a.startswith("--") and len(a) > 2:
            name, eq, val = a[2:].partition("=")
            hits = [k for k in longs if k.startswith(name)]
            if name in longs:
                hits = [name]
            if len(hits) != 1:
                raise _fail(o, 1, f"{prog}: unrecognized option '{a}'\n"
                                  "Look at manual page `iptables-save.8' for more information.\n")
            c, arg = longs[hits[0]], (val if eq else None)
            if shorts[c] and arg is None:
                if i >= len(args):
                    raise _fail(o, 1, f"{prog}: option '--{hits[0]}' requires an argument\n"
                                      "Look at manual page `iptables-save.8' for more information.\n")
                arg, i = args[i], i + 1
            opts = [(c, arg)]
        elif a.startswith("-") and len(a) > 1:
            opts, j = [], 1
            while j < len(a):
                c = a[j]
                j += 1
                if c not in shorts:
                    raise _fail(o, 1, f"{prog}: invalid option -- '{c}'\n"
                                      "Look at manual page `iptables-save.8' for more information.\n")
                arg = None
                if shorts[c]:
                    if j < len(a):
                        arg, j = a[j:], len(a)
                    elif i < len(args):
                        arg, i = args[i], i + 1
                    else:
                        raise _fail(o, 1, f"{prog}: option requires an argument -- '{c}'\n"
                                          "Look at manual page `iptables-save.8' for more information.\n")
                opts.append((c, arg))
        else:
            raise _fail(o, 1, "Unknown arguments found on commandline\n")
        for c, arg in opts:
            if c == "c":
                counters = True
            elif c == "t":
                table = arg
            elif c == "f":
                outfile = arg
            elif c == "V":
                o.write(f"iptables-save {VERSION} (legacy)\n")
                return 0
    stamp = time.ctime(now if now is not None else time.time())
    names = [table] if table is not None else nf.loaded()
    text: list[str] = []
    for name in names:
        try:
            handle = nf.init(name)
        except IptcError as e:
            o.write("".join(text))
            raise _fail(o, 1, f"iptables-save {VERSION} (legacy): Cannot initialize: {e.text}\n") from None
        text.append(listing.save_table(handle.table, counters, nf.resolver, stamp, stamp))
    if outfile is not None:
        try:
            with open(outfile, "w") as f:
                f.write("".join(text))
        except OSError as e:
            raise _fail(o, 1, f"Failed to open file, error: {e.strerror}\n") from None
    else:
        o.write("".join(text))
    return 0


@dataclass
class _RestoreOpts:
    counters: bool = False
    verbose: bool = False
    test: bool = False
    noflush: bool = False
    table: str | None = None
    infile: str | None = None


def _restore_options(args: list[str], o: Output, prog: str) -> _RestoreOpts | int:
    r = _RestoreOpts()
    shorts = {"b": 0, "c": 0, "v": 0, "V": 0, "t": 0, "h": 0, "n": 0, "w": 2, "W": 2, "T": 1, "M": 1}
    longs = {"binary": "b", "counters": "c", "verbose": "v", "version": "V", "test": "t", "help": "h",
             "noflush": "n", "wait": "w", "wait-interval": "W", "table": "T", "modprobe": "M"}
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        opts: list[tuple[str, str | None]] = []
        if a == "<" and i < len(args):  # `iptables-restore < FILE` in a configuration script
            r.infile, i = args[i], i + 1
            continue
        if a.startswith("<") and len(a) > 1:
            r.infile = a[1:]
            continue
        if a.startswith("--") and len(a) > 2:
            name, eq, val = a[2:].partition("=")
            hits = [name] if name in longs else [k for k in longs if k.startswith(name)]
            if len(hits) != 1:
                raise _fail(o, 1, f"{prog}: unrecognized option '{a}'\n"
                                  "Try `iptables-restore -h' for more information.\n")
            c = longs[hits[0]]
            arg = val if eq else None
            if shorts[c] == 1 and arg is None and i < len(args):
                arg, i = args[i], i + 1
            opts.append((c, arg))
        elif a.startswith("-") and len(a) > 1:
            for j, c in enumerate(a[1:], 1):
                if c not in shorts:
                    raise _fail(o, 1, f"{prog}: invalid option -- '{c}'\n"
                                      "Try `iptables-restore -h' for more information.\n")
                if shorts[c] == 1:
                    arg = a[j + 1:] or (args[i] if i < len(args) else None)
                    if not a[j + 1:]:
                        i += 1
                    opts.append((c, arg))
                    break
                opts.append((c, None))
        else:
            r.infile = a
            continue
        for c, arg in opts:
            if c == "c":
                r.counters = True
            elif c == "v":
                r.verbose = True
            elif c == "t":
                r.test = True
            elif c == "n":
                r.noflush = True
            elif c == "T":
                r.table = arg
            elif c == "V":
                o.write(f"iptables-restore {VERSION} (legacy)\n")
                return 0
            elif c == "h":
                o.err.append("".join(RESTORE_HELP))
                return 0
    return r


def restore_argv(text: str) -> list[str]:
    """add_param_to_argv(): words split on blanks, double quotes with \\ escapes inside them."""
    out: list[str] = []
    param = ""
    quote_open = escaped = False
    started = False
    for ch in text:
        if quote_open:
            if escaped:
                param += ch
                escaped = False
                continue
            if ch == "\\":
                escaped = True
                continue
            if ch != '"':
                param += ch
                continue
            quote_open = False
        elif ch == '"':
            quote_open = started = True
            continue
        if ch == '"':
            pass
        elif ch in " \t\n":
            if not param and not started:
                continue
        else:
            param += ch
            started = True
            continue
        out.append(param)
        param, started = "", False
    if param:
        out.append(param)
    return out


def iptables_restore(nf: Netfilter, args: list[str], o: Output, stdin: str | None = None,
                     prog: str = "iptables-restore") -> int:
    """`iptables-restore [-c] [-n] [-t] [-v] [-T table] [file]`: input from `stdin`, a file or `< FILE`."""
    opts = _restore_options(args, o, prog)
    if isinstance(opts, int):
        return opts
    text = stdin or ""
    if opts.infile is not None:
        try:
            with open(opts.infile) as f:
                text = f.read()
        except OSError as e:
            raise _fail(o, 1, f"Can't open {opts.infile}: {e.strerror}\n") from None
    return Restorer(nf, o, opts, "iptables-restore").run(text)


class Restorer:
    """The line loop of iptables-restore.c: tables, chains, rules, COMMIT."""

    def __init__(self, nf: Netfilter, o: Output, opts: _RestoreOpts, prog: str) -> None:
        self.nf, self.o, self.opts, self.prog = nf, o, opts, prog
        self.handle: Handle | None = None

    def _param(self, e: ParamError | BadArgument, line: int) -> Exit:
        return _fail(self.o, 2, _param_text(self.prog, e, line))

    def _failed(self, line: int) -> Exit:
        return _fail(self.o, 1, f"{self.prog}: line {line} failed\n")

    def run(self, text: str) -> int:
        o, opts = self.o, self.opts
        in_table = False
        curtable = ""
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
            complete = True
        else:
            complete = False
        line = 0
        for line, raw in enumerate(lines, 1):
            buffer = raw + ("\n" if line < len(lines) or complete else "")
            ret = False
            skip_table = False
            if buffer == "\n":
                continue
            if buffer.startswith("#"):
                if opts.verbose:
                    o.write(buffer)
                continue
            if buffer == "COMMIT\n" and in_table:
                if not opts.test and self.handle is not None:
                    try:
                        self.nf.commit(self.handle)
                        ret = True
                    except IptcError:
                        ret = False
                else:
                    ret = True
                self.handle = None
                in_table = False
            elif buffer.startswith("*") and not in_table:
                words = buffer[1:].split()
                if not words:
                    raise self._param(ParamError(f"{self.prog}: line {line} table name invalid"), line)
                curtable = words[0][:32]
                if opts.table is not None and opts.table != curtable:
                    continue
                try:
                    self.handle = self.nf.init(curtable)
                except IptcError:
                    raise self._param(ParamError(f"{self.prog}: unable to initialize table '{curtable}'"),
                                      line) from None
                if not opts.noflush:
                    self._clean(self.handle)
                ret = in_table = True
            elif buffer.startswith(":") and in_table:
                ret = self._chain_line(buffer, line)
            elif in_table:
                ret = self._rule_line(buffer, line, curtable)
            if opts.table is not None and curtable and opts.table != curtable:
                skip_table = True
            if not ret and not skip_table:
                raise self._failed(line)
        if in_table:
            raise _fail(o, 1, f"{self.prog}: COMMIT expected at line {line + 1}\n")
        return 0

    def _clean(self, handle: Handle) -> None:
        verbose = self.opts.verbose
        for ch in handle.chains():
            if verbose:
                self.o.write(f"Flushing chain `{ch}'\n")
            handle.flush(ch)
        for ch in handle.chains():
            if handle.builtin(ch):
                continue
            if verbose:
                self.o.write(f"Deleting chain `{ch}'\n")
            try:
                handle.delete_chain(ch)
            except IptcError:
                pass

    def _chain_line(self, buffer: str, line: int) -> bool:
        assert self.handle is not None
        h = self.handle
        words = buffer[1:].split()
        if not words:
            raise self._param(ParamError(f"{self.prog}: line {line} chain name invalid"), line)
        chain = words[0]
        if len(chain) >= XT_EXTENSION_MAXNAMELEN:
            raise self._param(ParamError(f"Invalid chain name `{chain}' ({XT_EXTENSION_MAXNAMELEN - 1} chars max)"),
                              line)
        if not h.builtin(chain):
            if self.opts.noflush and h.is_chain(chain):
                h.flush(chain)
            else:
                try:
                    h.create_chain(chain)
                except IptcError as e:
                    import os

                    raise self._param(ParamError(f"error creating chain '{chain}':{os.strerror(e.errno)}"),
                                      line) from None
        if len(words) < 2:
            raise self._param(ParamError(f"{self.prog}: line {line} policy invalid"), line)
        policy = words[1]
        if policy != "-":
            counters = Counters()
            if self.opts.counters:
                ctrs = words[2] if len(words) > 2 else None
                parsed = _parse_counters(ctrs) if ctrs is not None else None
                if parsed is None:
                    raise self._param(ParamError(f"invalid policy counters for chain '{chain}'"), line)
                counters = parsed
            try:
                h.set_policy(chain, policy, counters if self.opts.counters else None)
            except IptcError as e:
                raise _fail(self.o, 1, f"{self.prog} {VERSION} (legacy): Can't set policy `{policy}' on `{chain}' "
                                       f"line {line}: {e.text}\n") from None
        return True

    def _rule_line(self, buffer: str, line: int, curtable: str) -> bool:
        assert self.handle is not None
        parsestart = buffer
        pcnt = bcnt = None
        if buffer.startswith("["):
            close = buffer.find("]")
            if close < 0:
                raise self._param(ParamError(f"Bad line {line}: need ]"), line)
            pcnt, rest = _strtok(buffer[1:], ":")
            if pcnt is None:
                raise self._param(ParamError(f"Bad line {line}: need :"), line)
            bcnt, _ = _strtok(rest, "]")
            if bcnt is None:
                raise self._param(ParamError(f"Bad line {line}: need ]"), line)
            parsestart = buffer[close + 1:]
        argv = [self.prog, "-t", curtable]
        if self.opts.counters and pcnt is not None and bcnt is not None:
            argv += ["--set-counters", pcnt, bcnt]
        if self.opts.verbose and not self.opts.noflush:
            argv.append("-v")  # what 1.8.9 does: rules are echoed with -v, except with --noflush
        argv += restore_argv(parsestart)
        cmd = IptablesCommand(self.nf.resolver, self.o, restore=True)
        try:
            cmd.parse(argv)
        except (ParamError, BadArgument) as e:
            raise self._param(e, line) from None
        except _Help:
            self.o.write("".join(IPTABLES_HELP))
            return True
        except _Version:
            self.o.write(f"iptables {VERSION} (legacy)\n")
            return True
        try:
            cmd.execute(self.handle)
        except ParamError as e:
            raise self._param(e, line) from None
        except IptcError:
            return False
        return True


def _strtok(text: str | None, delims: str) -> tuple[str | None, str | None]:
    """strtok(): (token, the rest after its delimiter) - None when no token is left."""
    if text is None:
        return None, None
    i = 0
    while i < len(text) and text[i] in delims:
        i += 1
    if i == len(text):
        return None, None
    j = i
    while j < len(text) and text[j] not in delims:
        j += 1
    return text[i:j], (text[j + 1:] if j < len(text) else None)


def _parse_counters(text: str) -> Counters | None:
    # parse_counters(): sscanf("[%llu:%llu]")
    if not text.startswith("["):
        return None
    body = text[1:]
    pk, colon, rest = body.partition(":")
    p = _sscanf_llu(pk) if pk[:1].isdigit() else None
    if p is None or not colon:
        return None
    digits = ""
    for ch in rest:
        if not "0" <= ch <= "9":
            break
        digits += ch
    if not digits:
        return None
    return Counters(p, int(digits))


PROGRAMS = ("iptables", "iptables-legacy", "iptables-save", "iptables-legacy-save", "iptables-restore",
            "iptables-legacy-restore")


def run_program(nf: Netfilter, prog: str, args: list[str], o: Output, stdin: str | None = None,
                now: float | None = None) -> int:
    """Dispatch one of `PROGRAMS` (the name as invoked, without a path); raises Exit on failure."""
    if prog.endswith("-save"):
        return iptables_save(nf, args, o, now, prog)
    if prog.endswith("-restore"):
        return iptables_restore(nf, args, o, stdin, prog)
    return iptables(nf, args, o)


def apply_command(nf: Netfilter, argv: list[str], *, stdin: str | None = None,
                  now: float | None = None) -> tuple[int, str, str]:
    """Run one `iptables`/`iptables-save`/`iptables-restore` command line: (status, stdout, stderr)."""
    o = Output()
    prog = argv[0].rsplit("/", 1)[-1] if argv else ""
    if prog not in PROGRAMS:
        return 127, "", f"ipgate: {prog}: not an iptables command\n"
    try:
        status = run_program(nf, prog, argv[1:], o, stdin, now)
    except Exit as e:
        if e.message:
            o.error(e.message)
        status = e.status
    return status, "".join(o.out), "".join(o.err)


__all__ = ["PROGRAMS", "TABLE_CHAINS", "apply_command", "iptables", "iptables_restore", "iptables_save",
           "run_program"]
