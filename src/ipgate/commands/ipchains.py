"""`ipchains` (ipchains 1.3.9, Linux 2.2) run as the iptables rules a Linux 6.x box would have.

Parsing follows ipchains.c 1.3.9 main(): getopt_long in RETURN_IN_ORDER
mode, `!` as its own word, `-s ADDR[/MASK] [!] [PORT[:PORT]]`, the same
checks in the same order and the same messages (exit 2 with the
"Try `ipchains -h'" line for a bad command line, exit 1 with "ipchains:
<libipfwc message>" for what the kernel refused).  What the rules become is
in `legacy_fw` (chains, targets, MASQ, REJECT policy, rule numbers).
Besides: `-i` names the incoming interface in input (-i) and the outgoing
one in forward and output (-o); `-p icmp -s A TYPE -d B CODE` becomes
--icmp-type; `-y` is --syn; `-b` adds the reversed rule; `-l` a LOG rule.

`-M -S tcp tcpfin udp` sets conntrack's timeouts and `-M -L` lists the
source-NATed connections (see `masq`).  Refused with an "ipgate:" message:
listing rules (-L: they are iptables rules now, see `iptables -L -n -v` or
`iptables-save`), checking packets (-C), REDIRECT, -m (marks), -t (TOS),
-o (netlink), a MASQ policy, MASQ outside forward and -i in a user chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipgate.commands import legacy_fw as fw
from ipgate.commands import masq
from ipgate.commands.base import Exit, Output
from ipgate.commands.ipchains_usage import HELP, ICMP_CODES, VERSION, icmp_help
from ipgate.commands.legacy_addr import AddrError, addr_arg, is_hexbyte, parse_hostnetworkmask, string_to_number
from ipgate.commands.legacy_getopt import NONOPT, Getopt, LongOpt
from ipgate.conntrack.tuple import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP
from ipgate.netfilter.tables import Netfilter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipgate.stack import Stack

IP_FW_MAX_LABEL_LENGTH = 8  # ip_chainlabel is char[9]
IFNAMSIZ = 16
INT_MAX = 2**31 - 1

# CMD_* of ipchains.c, in cmdflags[] order
(CMD_INSERT, CMD_DELETE, CMD_DELETE_NUM, CMD_REPLACE, CMD_APPEND, CMD_LIST, CMD_FLUSH, CMD_ZERO, CMD_NEW_CHAIN,
 CMD_DELETE_CHAIN, CMD_SET_POLICY, CMD_MASQUERADE, CMD_SET_MASQUERADE, CMD_CHECK) = (1 << i for i in range(14))
CMDFLAGS = "IDDRALFZNXPMSC"
# OPT_* in optflags[] order
(OPT_NUMERIC, OPT_SOURCE, OPT_DESTINATION, OPT_PROTOCOL, OPT_JUMP, OPT_TCPSYN, OPT_BIDIR, OPT_VERBOSE, OPT_PRINTK,
 OPT_EXPANDED, OPT_TOS, OPT_VIANAME, OPT_FRAGMENT, OPT_MARK, OPT_SRCPT, OPT_DSTPT, OPT_NETLINK,
 OPT_LINENUMBERS) = (1 << i for i in range(18))
OPTFLAGS = "nsdpjybvlxtifmsdo3"
# commands_v_options[][]: '+' compulsory, 'x' illegal, ' ' optional
COMMANDS_V_OPTIONS = (
    "x        x        x",  # INSERT
    "x        x        x",  # DELETE
    "xxxxxxx xxxxxxxxxx",  # DELETE_NUM
    "x     x  x        x",  # REPLACE
    "x        x        x",  # APPEND
    " xxxxxx x xxxxxxx ",  # LIST
    "xxxxxxx xxxxxxxxxx",  # FLUSH
    "xxxxxxx xxxxxxxxxx",  # ZERO
    "xxxxxxx xxxxxxxxxx",  # NEW_CHAIN
    "xxxxxxx xxxxxxxxxx",  # DEL_CHAIN
    "xxxxxxx xxxxxxxxxx",  # SET_POLICY
    "xxxxxxxxxxxxxxxxxx",  # MASQUERADE
    "xxxxxxx xxxxxxxxxx",  # SET_MASQ
    "x+++x   xxx+ x  xx",  # CHECK
)
# inverse_for_options[]: which options take `!`
INVERTIBLE = OPT_SOURCE | OPT_DESTINATION | OPT_PROTOCOL | OPT_TCPSYN | OPT_VIANAME | OPT_FRAGMENT | OPT_SRCPT | \
    OPT_DSTPT

LONGOPTS = tuple(LongOpt(n, h, k) for n, h, k in (
    ("append", 1, "A"), ("delete", 1, "D"), ("insert", 1, "I"), ("replace", 1, "R"), ("list", 2, "L"),
    ("flush", 2, "F"), ("zero", 2, "Z"), ("check", 1, "C"), ("new-chain", 1, "N"), ("delete-chain", 1, "X"),
    ("policy", 1, "P"), ("masquerading", 0, "M"), ("set", 1, "S"), ("bidirectional", 0, "b"), ("source", 1, "s"),
    ("destination", 1, "d"), ("src", 1, "s"), ("dst", 1, "d"), ("source-port", 1, "1"),
    ("destination-port", 1, "2"), ("icmp-type", 1, "1"), ("sport", 1, "1"), ("dport", 1, "2"),
    ("protocol", 1, "p"), ("interface", 1, "i"), ("jump", 1, "j"), ("TOS", 1, "t"), ("mark", 1, "m"),
    ("numeric", 0, "n"), ("log", 0, "l"), ("output", 2, "o"), ("verbose", 0, "v"), ("exact", 0, "x"),
    ("fragments", 0, "f"), ("syn", 0, "y"), ("version", 0, "V"), ("help", 0, "h"), ("line-numbers", 0, "3"),
    ("no-warnings", 0, "W")))
OPTSTRING = "-A:C:D:R:I:L::F::Z::N:X::P:MS:Vh::o::p:s:d:j:i:fbvm:nlt:xy"

QUOTE = ("`", "'")
BUILTIN = {"input": "INPUT", "output": "OUTPUT", "forward": "FORWARD"}
LABELS = {"ACCEPT": "ACCEPT", "DENY": "DROP", "REJECT": "REJECT", "MASQ": "MASQ", "RETURN": "RETURN"}
CHAIN_PROTOS = {"all": 0, "tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "icmp": IPPROTO_ICMP}

# libipfwc's ipfwc_strerror() for the kinds legacy_fw reports
ERRORS = {"nomatch": "bad rule (does a matching rule exist in that chain?)", "nochain": "No chain by that name",
          "notarget": "No target by that name", "exists": "Chain already exists",
          "notempty": "Chain is not empty", "busy": "Device or resource busy"}

class _Param(Exception):
    """exit_error(PARAMETER_PROBLEM, ...): the message, then the "Try" line, exit 2."""


@dataclass
class _Cmd:
    """What main() collected from the command line."""

    command: int = 0
    options: int = 0
    inv: int = 0  # the IP_FW_INV_* bits, as OPT_* bits of the inverted options
    chain: str | None = None
    jumpto: str | None = None
    srcpts: str | None = None
    dstpts: str | None = None
    shost: str | None = None
    dhost: str | None = None
    proto: int = 0
    iface: str = ""
    policy: str | None = None
    rulenum: int = 0
    timeouts: tuple[int, int, int] = (0, 0, 0)
    unsupported: list[str] = field(default_factory=list)


class Ipchains:
    def __init__(self, stack: Stack, prog: str, o: Output) -> None:
        self.stack = stack
        self.prog = prog
        self.o = o
        self.names = stack.netfilter.resolver
        self.c = _Cmd()
        self.invert = False

    # -- main() ----------------------------------------------------------------
    def run(self, args: list[str]) -> int:
        try:
            return self._run(args)
        except (_Param, AddrError) as e:
            raise Exit(2, f"{self.prog}: {e}\nTry `{self.prog} -h' or '{self.prog} --help' for more information.") \
                from None

    def _run(self, args: list[str]) -> int:
        c = self.c
        g = Getopt(self.prog, args, OPTSTRING[1:], LONGOPTS, in_order=True)
        while (r := g.next()) is not None:
            letter, optarg = r
            if letter == "?":
                raise Exit(2, f"{optarg}\nTry `{self.prog} -h' or '{self.prog} --help' for more information.")
            if letter == NONOPT:
                if optarg == "!":
                    if self.invert:
                        raise _Param("multiple consecutive ! not allowed\n")
                    self.invert = True
                    continue
                raise Exit(2, f"Try `{self.prog} -h' or '{self.prog} --help' for more information.")
            done = self._option(letter, optarg, g)
            if done is not None:
                return done
            self.invert = False
        if g.rest:
            raise _Param("unknown arguments found on commandline")
        if c.command == 0:
            raise _Param("no command specified")
        if self.invert:
            raise _Param("nothing appropriate following !")
        return self._execute()

    def _add_command(self, new: int, others: int) -> None:
        if self.invert:
            raise _Param("unexpected ! flag")
        if self.c.command & ~others:
            raise _Param(f"Can't use -{cmd2char(new)} with -{cmd2char(self.c.command & ~others)}\n")
        self.c.command |= new

    def _set_option(self, option: int) -> None:
        c = self.c
        if c.options & option:
            raise _Param(f"multiple -{opt2char(option)} flags not allowed\n")
        c.options |= option
        if self.invert:
            if not option & INVERTIBLE:
                raise _Param(f"cannot have ! before -{opt2char(option)}\n")
            c.inv |= option
            self.invert = False

    def _check_inverse(self, word: str | None) -> bool:
        if word == "!":
            if self.invert:
                raise _Param("Multiple `!' flags not allowed")
            self.invert = True
            return True
        return False

    def _inverted_arg(self, optarg: str | None, g: Getopt, flag: str) -> str:
        """`-p ! tcp`: the word after a `!` optarg is the argument."""
        if self._check_inverse(optarg):
            if g.peek() is None:
                raise _Param(f"argument expected after -{flag}")
            return g.take()
        assert optarg is not None
        return optarg

    def _peek_arg(self, g: Getopt) -> str | None:
        w = g.peek()
        return w if w is not None and w[:1] not in ("-", "!") else None

    def _option(self, letter: str, optarg: str | None, g: Getopt) -> int | None:
        c = self.c
        if letter in "ADCRINXP":
            new = {"A": CMD_APPEND, "D": CMD_DELETE, "C": CMD_CHECK, "R": CMD_REPLACE, "I": CMD_INSERT,
                   "N": CMD_NEW_CHAIN, "X": CMD_DELETE_CHAIN, "P": CMD_SET_POLICY}[letter]
            self._add_command(new, 0)
            c.chain = optarg
            if letter == "X" and optarg is None:
                c.chain = self._take_if_arg(g)
            elif letter in "DRI":
                num = self._take_if_arg(g)
                if num is not None:
                    c.rulenum = parse_rulenumber(num)
                    if letter == "D":
                        c.command = CMD_DELETE_NUM
                elif letter == "R":
                    raise _Param(f"-{cmd2char(CMD_REPLACE)} requires a rule number")
                elif letter == "I":
                    c.rulenum = 1
            elif letter == "P":
                pol = self._take_if_arg(g)
                if pol is None:
                    raise _Param(f"-{cmd2char(CMD_SET_POLICY)} requires a chain and a policy")
                assert optarg is not None
                c.policy = parse_policy(optarg, pol)
        elif letter in "LFZ":
            new, others = {"L": (CMD_LIST, CMD_ZERO | CMD_MASQUERADE), "F": (CMD_FLUSH, 0),
                           "Z": (CMD_ZERO, CMD_LIST)}[letter]
            self._add_command(new, others)
            c.chain = optarg if optarg is not None else self._take_if_arg(g)
            if letter != "F" and c.command & CMD_LIST and c.command & CMD_ZERO and c.chain is not None:
                raise _Param(f"-{cmd2char(CMD_LIST)} with -{cmd2char(CMD_ZERO)} does not allow chain to be specified")
        elif letter == "M":
            self._add_command(CMD_MASQUERADE, CMD_LIST | CMD_SET_MASQUERADE)
        elif letter == "S":
            self._add_command(CMD_SET_MASQUERADE, CMD_MASQUERADE)
            nxt = g.argv[g.optind:g.optind + 2]
            if len(nxt) == 2 and all(w[:1] not in ("!", "-") for w in nxt):
                assert optarg is not None
                c.timeouts = (parse_timeout(optarg), parse_timeout(g.take()), parse_timeout(g.take()))
            else:
                raise _Param(f"-{cmd2char(CMD_SET_MASQUERADE)} requires 3 timeout values")
        elif letter == "h":
            if (optarg or "").lower() == "icmp" or (g.peek() or "").lower() == "icmp":
                self.o.write(icmp_help())
            else:
                self.o.write(HELP.format(v=VERSION, p=self.prog))
            return 0
        elif letter == "V":
            self.o.print("Not ipchains 2.0" if self.invert else VERSION)
            return 0
        else:
            self._rule_option(letter, optarg, g)
        return None

    def _take_if_arg(self, g: Getopt) -> str | None:
        return g.take() if self._peek_arg(g) is not None else None

    def _rule_option(self, letter: str, optarg: str | None, g: Getopt) -> None:
        c = self.c
        if letter == "p":
            word = self._inverted_arg(optarg, g, "p")
            self._set_option(OPT_PROTOCOL)
            c.proto = self.parse_protocol(word)
            if c.proto == 0 and c.inv & OPT_PROTOCOL:
                raise _Param("rule would never match protocol")
        elif letter in "sd":
            word = self._inverted_arg(optarg, g, letter)
            self._set_option(OPT_SOURCE if letter == "s" else OPT_DESTINATION)
            if letter == "s":
                c.shost = word
            else:
                c.dhost = word
            self._check_inverse(g.peek())
            k = g.optind + (1 if self.invert else 0)
            if k < len(g.argv) and g.argv[k][:1] not in ("-", "!"):
                g.optind = k
                ports = g.take()
                self._set_option(OPT_SRCPT if letter == "s" else OPT_DSTPT)
                if letter == "s":
                    c.srcpts = ports
                else:
                    c.dstpts = ports
        elif letter in "12":
            word = self._inverted_arg(optarg, g, "s" if letter == "1" else "d")
            self._set_option(OPT_SRCPT if letter == "1" else OPT_DSTPT)
            if letter == "1":
                c.srcpts = word
            else:
                c.dstpts = word
        elif letter == "j":
            self._set_option(OPT_JUMP)
            assert optarg is not None
            c.jumpto = parse_target(optarg)
            if c.jumpto == "REDIRECT" and self._peek_arg(g) is not None:
                g.take()
        elif letter == "i":
            word = self._inverted_arg(optarg, g, "i")
            self._set_option(OPT_VIANAME)
            if len(word) > IFNAMSIZ:
                raise _Param(f"interface name `{word}' must be shorter than IFNAMSIZ ({IFNAMSIZ})")
            c.iface = word
        elif letter == "t":
            self._set_option(OPT_TOS)
            if self._peek_arg(g) is None:
                raise _Param(f"-{opt2char(OPT_TOS)} requires 2 hexbyte arguments")
            assert optarg is not None
            for h in (optarg, g.take()):
                if not is_hexbyte(h):
                    raise _Param(f"invalid hexbyte `{h}' specified")
            c.unsupported.append("-t (TOS masks)")
        elif letter == "o":
            self._set_option(OPT_NETLINK)
            if optarg is None:
                optarg = self._take_if_arg(g)
            if optarg is not None and string_to_number(optarg, 0, 65535) is None:
                raise _Param(f"-o argument must be 0-65535, not `{optarg}'")
            c.unsupported.append("-o (copying packets to netlink)")
        elif letter == "m":
            self._set_option(OPT_MARK)
            c.unsupported.append("-m (marking packets)")
        elif letter == "3":
            if self.invert:
                raise _Param("cannot have ! before --line-numbers")
            self._set_option(OPT_LINENUMBERS)
        elif letter == "W":
            if self.invert:
                raise _Param("cannot have ! before --no-warnings")
        else:
            bit = {"f": OPT_FRAGMENT, "b": OPT_BIDIR, "v": OPT_VERBOSE, "n": OPT_NUMERIC, "l": OPT_PRINTK,
                   "x": OPT_EXPANDED, "y": OPT_TCPSYN}[letter]
            self._set_option(bit)

    def parse_protocol(self, s: str) -> int:
        n = string_to_number(s, 0, 65535)
        if n is not None:
            return n
        num = self.names.proto_number(s)
        if num is not None:
            return num
        if s.lower() in CHAIN_PROTOS:
            return CHAIN_PROTOS[s.lower()]
        raise _Param(f"unknown protocol `{s}' specified")

    # -- after the options -------------------------------------------------------
    def _execute(self) -> int:
        c = self.c
        rule_cmd = c.command & (CMD_REPLACE | CMD_INSERT | CMD_DELETE | CMD_APPEND)
        if rule_cmd:
            c.dhost = c.dhost if c.options & OPT_DESTINATION else "0.0.0.0/0"
            c.shost = c.shost if c.options & OPT_SOURCE else "0.0.0.0/0"
        saddrs: list[int] = []
        daddrs: list[int] = []
        smask = dmask = 0
        sports = dports = (0, 0xFFFF)
        if c.shost is not None:
            saddrs, smask = parse_hostnetworkmask(c.shost, self.names, QUOTE)
            if c.proto != IPPROTO_ICMP:
                sports = self.parse_ports(c.srcpts)
        if c.dhost is not None:
            daddrs, dmask = parse_hostnetworkmask(c.dhost, self.names, QUOTE)
            if c.proto != IPPROTO_ICMP:
                dports = self.parse_ports(c.dstpts)
        if c.proto == IPPROTO_ICMP:
            sports, dports = self.parse_icmp()
        self._checks(len(saddrs), len(daddrs))
        if c.command == CMD_SET_MASQUERADE:
            c.command |= CMD_MASQUERADE  # lazy -S without -M
        generic_opt_check(c.command, c.options)
        if c.chain is not None and len(c.chain) > IP_FW_MAX_LABEL_LENGTH:
            raise _Param(f"chain name `{c.chain}' too long (must be under {IP_FW_MAX_LABEL_LENGTH} chars)")
        if c.command == CMD_MASQUERADE:
            raise _Param("-M/--masquerading requires -L/--list or -S/--set")
        rules = self._rules(saddrs, smask, sports, daddrs, dmask, dports) if rule_cmd else []
        return self._dispatch(rules)

    def parse_ports(self, text: str | None) -> tuple[int, int]:
        if text is None:
            return (0, 0xFFFF)
        lo, colon, hi = text.partition(":")
        if not colon:
            p = self.parse_port(text)
            return (p, p)
        return (self.parse_port(lo) if lo else 0, self.parse_port(hi) if hi else 0xFFFF)

    def parse_port(self, port: str) -> int:
        proto = self.c.proto
        if proto not in (IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP):
            raise _Param("can only specify ports for icmp, tcp or udp")
        n = string_to_number(port, 0, 65535)
        if n is not None:
            return n
        if proto == IPPROTO_ICMP:
            raise _Param(f"invalid ICMP type `{port}' specified")
        found = self.names.service_port(port, "tcp" if proto == IPPROTO_TCP else "udp")
        if found is None:
            raise _Param(f"invalid port/service `{port}' specified")
        return found

    def parse_icmp(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(type range, code range): a name of icmp_codes[] or numbers as ports."""
        c = self.c
        if c.srcpts is not None:
            hits = [e for e in ICMP_CODES if e[0].lower().startswith(c.srcpts.lower())]
            if len(hits) > 1:
                raise _Param(f"Ambiguous ICMP `{c.srcpts}' : `{hits[0][0]}' or `{hits[1][0]}'?")
            if hits:
                if c.dstpts is not None:
                    raise _Param("Can't use ICMP name and destination port together")
                c.options |= OPT_DSTPT
                if c.inv & (OPT_SRCPT | OPT_DSTPT):
                    raise _Param("Can't invert named ICMP types")
                _name, t, lo, hi = hits[0]
                return (t, t), (lo, hi)
        return self.parse_ports(c.srcpts), self.parse_ports(c.dstpts)

    def _checks(self, nsaddrs: int, ndaddrs: int) -> None:
        c = self.c
        if (nsaddrs > 1 or ndaddrs > 1) and c.inv & (OPT_SOURCE | OPT_DESTINATION):
            raise _Param("! not allowed with multiple source or destination IP addresses")
        if (nsaddrs > 1 or ndaddrs > 1) and c.options & OPT_BIDIR:
            raise _Param("-b not allowed with multiple source or destination IP addresses")
        if (c.proto == 0 or c.inv & OPT_PROTOCOL) and c.options & (OPT_SRCPT | OPT_DSTPT):
            raise _Param("no ports allowed without specific protocol")
        if (c.proto != IPPROTO_TCP or c.inv & OPT_PROTOCOL) and c.options & OPT_TCPSYN:
            raise _Param(f"-{opt2char(OPT_TCPSYN)} only allowed with TCP protocol")
        frag = c.options & OPT_FRAGMENT and not c.inv & OPT_FRAGMENT
        if frag and c.options & (OPT_SRCPT | OPT_DSTPT):
            raise _Param(f"no ports allowed with -{opt2char(OPT_FRAGMENT)}")
        if frag and c.options & OPT_TCPSYN:
            raise _Param(f"-{opt2char(OPT_TCPSYN)} not allowed with -{opt2char(OPT_FRAGMENT)}")
        if c.command == CMD_CHECK:
            c.unsupported.append("-C (checking packets)")
        if c.jumpto == "REDIRECT" and (c.proto not in (IPPROTO_TCP, IPPROTO_UDP) or c.inv & OPT_PROTOCOL):
            raise _Param("redirecting only allowed with TCP or UDP")
        if c.jumpto == "MASQ" and c.chain in ("input", "output"):
            raise _Param("masquerading not allowed for input and output chains")
        if c.jumpto == "REDIRECT" and c.chain in ("output", "forward"):
            raise _Param("redirect not allowed for output and forward chains")
        if c.command == CMD_REPLACE and (nsaddrs != 1 or ndaddrs != 1):
            raise _Param("Replacement rule does not specify a unique address")

    # -- translation -------------------------------------------------------------
    def _refuse(self, what: str) -> Exit:
        return Exit(1, f"ipgate: {self.prog} {what} is not supported")

    def _rules(self, saddrs: list[int], smask: int, sports: tuple[int, int], daddrs: list[int], dmask: int,
               dports: tuple[int, int]) -> list[fw.FwRule]:
        c = self.c
        assert c.chain is not None
        if c.unsupported:
            raise self._refuse(c.unsupported[0])
        chain = BUILTIN.get(c.chain, c.chain)
        verdict = LABELS.get(c.jumpto, c.jumpto) if c.jumpto is not None else ""
        if verdict == "REDIRECT":
            raise self._refuse("-j REDIRECT (transparent proxying)")
        if verdict == "MASQ" and chain != "FORWARD":
            raise Exit(1, f"ipgate: {self.prog}: MASQ is only supported in the forward chain")
        if c.iface and chain not in ("INPUT", "OUTPUT", "FORWARD"):
            raise Exit(1, f"ipgate: {self.prog}: -i in a user-defined chain is not supported"
                          " (its direction depends on the calling chain)")
        rules = [self._rule(chain, verdict, (s, smask, c.inv & OPT_SOURCE, sports, c.inv & OPT_SRCPT),
                            (d, dmask, c.inv & OPT_DESTINATION, dports, c.inv & OPT_DSTPT))
                 for s in saddrs for d in daddrs]
        if c.options & OPT_BIDIR:
            rules += [self._rule(chain, verdict, (d, dmask, c.inv & OPT_DESTINATION, dports, c.inv & OPT_DSTPT),
                                 (s, smask, c.inv & OPT_SOURCE, sports, c.inv & OPT_SRCPT))
                      for d in daddrs for s in saddrs]
        return rules

    def _rule(self, chain: str, verdict: str, src: tuple[int, int, int, tuple[int, int], int],
              dst: tuple[int, int, int, tuple[int, int], int]) -> fw.FwRule:
        c = self.c
        m: list[str] = []
        if c.options & OPT_PROTOCOL and (c.proto or c.inv & OPT_PROTOCOL):
            pname = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp"}.get(c.proto, str(c.proto))
            m += ["!"] * bool(c.inv & OPT_PROTOCOL) + ["-p", pname]
        for flag, (addr, mask, inv, _ports, _pinv) in (("-s", src), ("-d", dst)):
            if mask or inv:
                m += ["!"] * bool(inv) + [flag, addr_arg(addr, mask)]
        if c.iface:
            m += ["!"] * bool(c.inv & OPT_VIANAME) + ["-i" if chain == "INPUT" else "-o", c.iface]
        if c.options & OPT_FRAGMENT:
            m += ["!"] * bool(c.inv & OPT_FRAGMENT) + ["-f"]
        if c.proto in (IPPROTO_TCP, IPPROTO_UDP) and not c.inv & OPT_PROTOCOL:
            for flag, (_a, _m, _i, (lo, hi), pinv) in (("--sport", src), ("--dport", dst)):
                if (lo, hi) != (0, 0xFFFF) or pinv:
                    if lo > hi:
                        raise Exit(1, f"ipgate: {self.prog}: port range {lo}:{hi} is empty")
                    m += ["!"] * bool(pinv) + [flag, str(lo) if lo == hi else f"{lo}:{hi}"]
            if c.options & OPT_TCPSYN:
                m += ["!"] * bool(c.inv & OPT_TCPSYN) + ["--syn"]
        elif c.proto == IPPROTO_ICMP and not c.inv & OPT_PROTOCOL:
            m += self._icmp_words(src[3], src[4], dst[3], dst[4])
        return fw.FwRule(chain, tuple(m), verdict, bool(c.options & OPT_PRINTK))

    def _icmp_words(self, types: tuple[int, int], tinv: int, codes: tuple[int, int], cinv: int) -> list[str]:
        if types == (0, 0xFFFF) and codes == (0, 0xFFFF) and not tinv and not cinv:
            return []
        if types[0] != types[1] or types[0] > 255 or cinv:
            raise Exit(1, f"ipgate: {self.prog}: ICMP type ranges and inverted codes are not supported")
        if codes == (0, 0xFFFF):
            return ["!"] * bool(tinv) + ["--icmp-type", str(types[0])]
        if codes[0] != codes[1] or codes[0] > 255:
            raise Exit(1, f"ipgate: {self.prog}: ICMP code ranges are not supported")
        return ["!"] * bool(tinv) + ["--icmp-type", f"{types[0]}/{codes[0]}"]

    def _chain_name(self, chain: str) -> str:
        return BUILTIN.get(chain, chain)

    def _dispatch(self, rules: list[fw.FwRule]) -> int:
        c = self.c
        nf = self.stack.netfilter
        cmd = c.command
        if c.unsupported:
            raise self._refuse(c.unsupported[0])
        if cmd == CMD_LIST | CMD_MASQUERADE:
            rows = masq.entries(self.stack.conntrack, 0.0)  # offline: as of time 0
            self.o.write(masq.format_legacy(rows, self.names, bool(c.options & OPT_NUMERIC),
                                            bool(c.options & OPT_VERBOSE), lower=False))
            return 0
        if cmd == CMD_MASQUERADE | CMD_SET_MASQUERADE:
            masq.set_timeouts(self.stack.conntrack.sysctl, *c.timeouts)
            return 0
        if cmd & CMD_LIST:
            raise Exit(1, f"ipgate: {self.prog} -L is not supported: the rules are iptables rules now,"
                          " list them with `iptables -L -n -v' or `iptables-save'")
        chain = self._chain_name(c.chain) if c.chain is not None else ""
        if cmd == CMD_SET_POLICY and c.policy == "MASQ":
            raise Exit(1, f"ipgate: {self.prog}: a MASQ policy has no netfilter equivalent;"
                          " use `-A forward ... -j MASQ' rules")

        def op(n: Netfilter) -> None:
            if cmd == CMD_SET_POLICY:
                assert c.policy is not None
                fw.set_policy(n, chain, LABELS[c.policy])
            elif cmd in (CMD_APPEND, CMD_INSERT, CMD_DELETE):
                for r in rules:
                    if cmd == CMD_APPEND:
                        fw.append(n, r)
                    elif cmd == CMD_INSERT:
                        fw.insert(n, r, c.rulenum)
                    else:
                        fw.delete_spec(n, r)
            elif cmd == CMD_DELETE_NUM:
                fw.delete_num(n, chain, c.rulenum)
            elif cmd == CMD_REPLACE:
                fw.replace(n, rules[0], c.rulenum)
            elif cmd == CMD_FLUSH:
                for name in [chain] if chain else [*("INPUT", "FORWARD", "OUTPUT"), *fw.user_chains(n)]:
                    fw.flush(n, name)
            else:
                letter = {CMD_ZERO: "-Z", CMD_NEW_CHAIN: "-N", CMD_DELETE_CHAIN: "-X"}[cmd]
                fw.ipt(n, "filter", [letter, *([chain] if chain else [])])

        try:
            fw.transact(nf, op)
        except fw.LegacyError as e:
            raise Exit(1, f"ipchains: {ERRORS[e.kind]}" if e.kind in ERRORS else f"ipgate: {e.text}") from None
        return 0


def cmd2char(bits: int) -> str:
    return CMDFLAGS[bits.bit_length() - 1]


def opt2char(bit: int) -> str:
    return OPTFLAGS[bit.bit_length() - 1]


def generic_opt_check(command: int, options: int) -> None:
    """An option is legal if any of the given commands allows it; '+' options are compulsory."""
    for i in range(len(OPTFLAGS)):
        legal = 0
        for j, row in enumerate(COMMANDS_V_OPTIONS):
            if not command & (1 << j):
                continue
            if not options & (1 << i):
                if row[i] == "+":
                    raise _Param(f"You need to supply the `-{OPTFLAGS[i]}' option for this command\n")
            elif row[i] != "x":
                legal = 1
            elif legal == 0:
                legal = -1
        if legal == -1:
            raise _Param(f"Illegal option `-{OPTFLAGS[i]}' with this command\n")


def parse_rulenumber(text: str) -> int:
    n = string_to_number(text, 1, INT_MAX)
    if n is None:
        raise _Param(f"Invalid rule number `{text}'")
    return n


def parse_policy(chain: str, policy: str) -> str:
    if policy == "MASQ":
        if chain != "forward":
            raise _Param(f"`-{cmd2char(CMD_SET_POLICY)} MASQ' only valid for `forward' chain.")
        return policy
    if chain not in BUILTIN:
        raise _Param("Can only set policy in built-in chains.")
    if policy not in ("ACCEPT", "DENY", "REJECT"):
        raise _Param(f"Invalid policy `{policy}' for -{cmd2char(CMD_SET_POLICY)}")
    return policy


def parse_timeout(text: str) -> int:
    n = string_to_number(text, 0, INT_MAX)
    if n is None:
        raise _Param(f"invalid timeout value `{text}' specified")
    return n


def parse_target(name: str) -> str:
    if not name:
        raise _Param("Invalid target name (too short)")
    if len(name) > IP_FW_MAX_LABEL_LENGTH:
        raise _Param(f"Invalid target name `{name}' ({IP_FW_MAX_LABEL_LENGTH} chars max)")
    if any(ch.isspace() for ch in name):
        raise _Param(f"Invalid target name `{name}'")
    return name


def ipchains(stack: Stack, prog: str, args: list[str], o: Output) -> int:
    """`ipchains ARGS`; `prog` is the program word as typed (it starts the error messages)."""
    return Ipchains(stack, prog, o).run(args)
