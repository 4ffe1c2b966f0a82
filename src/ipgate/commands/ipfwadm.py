"""`ipfwadm` (ipfwadm 2.3.0, Linux 2.0) run as the iptables rules a Linux 6.x box would have.

Parsing follows ipfwadm.c 2.3.0 main(): getopt with "AFIMOadilzfs:p:ch...",
`-a`/`-i`/`-d` taking an optional policy word (accept, deny, reject,
masquerade; any prefix), `-S`/`-D ADDR[/MASK] [PORT...]`, then its checks in
its order with its messages ("ipfwadm: ..." and "Try `ipfwadm -h' for more
information.", exit 2).  A delete that matches nothing fails as the 2.0
kernel made it fail: "ipfwadm: setsockopt failed: Invalid argument", exit
255 (exit(-1)).

What the rules become is in `legacy_fw` (same table as ipchains): -F, -I,
-O are FORWARD, INPUT, OUTPUT; policy masquerade (or accept with -m) is
MASQ; -W names the incoming interface for -I and the outgoing one for -F and
-O; several ports become -m multiport; ICMP types (given as source ports)
--icmp-type; -y is --syn, -k --tcp-flags ACK ACK, -b adds the reversed rule,
-o a LOG rule; -i inserts at the top (below the ESTABLISHED,RELATED rule).

`-M -s tcp tcpfin udp` and `-M -l` are in `masq` (2.0 masqueraded TCP and
UDP only, so only those are listed).  Refused with an "ipgate:" message:
accounting (-A), listing rules (-l without -M: they are iptables rules now),
checking packets (-c), -V (interface address), -r (redirect), -t (TOS), a
masquerade policy, several ICMP types in one rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipgate.commands import legacy_fw as fw
from ipgate.commands import masq
from ipgate.commands.base import Exit, Output
from ipgate.commands.legacy_addr import AddrError, addr_arg, is_hexbyte, parse_hostnetworkmask, string_to_number
from ipgate.commands.legacy_getopt import Getopt
from ipgate.conntrack.tuple import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP
from ipgate.netfilter.tables import Netfilter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipgate.stack import Stack

VERSION = "ipfwadm 2.3.0, 1996/07/30"
OPTSTRING = "AFIMOadilzfs:p:chP:S:D:V:W:bekmnort:vxy"
IP_FW_MAX_PORTS = 10
INT_MAX = 2**31 - 1
QUOTE = ('"', '"')

CHN_FWD, CHN_IN, CHN_OUT, CHN_ACCT, CHN_MASQ = range(5)
CHAINS = {CHN_FWD: "FORWARD", CHN_IN: "INPUT", CHN_OUT: "OUTPUT"}
(CMD_LIST, CMD_APPEND, CMD_DELETE, CMD_FLUSH, CMD_RESET, CMD_POLICY, CMD_CHECK, CMD_HELP, CMD_INSERT,
 CMD_TIMEOUT) = (1 << i for i in range(10))
RULE_CMDS = CMD_INSERT | CMD_APPEND | CMD_DELETE
NO_MATCH_CMDS = CMD_LIST | CMD_FLUSH | CMD_RESET | CMD_POLICY
POLICIES = ("accept", "deny", "reject", "masquerade")  # parse_policy() tries them in this order
PROTOS = {"all": 0, "tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "icmp": IPPROTO_ICMP}
VERDICTS = {"accept": "ACCEPT", "deny": "DROP", "reject": "REJECT", "masquerade": "MASQ"}

HELP = """{v}

Usage: {p} -A [direction] command [options] (accounting)
       {p} -F command [options] (forwarding firewall)
       {p} -I command [options] (input firewall)
       {p} -O command [options] (output firewall)
       {p} -M [-s | -l] [options] (masquerading entries)
       {p} -h (print this help information))

Commands:
  -i [policy]\tinsert rule (no policy for accounting rules)
  -a [policy]\tappend rule (no policy for accounting rules)
  -d [policy]\tdelete rule (no policy for accounting rules)
  -l\t\tlist all rules of this category
  -z\t\treset packet/byte counters of all rules of this category
  -f\t\tremove all rules of this category
  -p policy\tchange default policy (accept/deny/reject)
  -s tcp tcpfin udp
\t\tset masuerading timeout values
  -c\t\tcheck acceptance of IP packet

Options:
  -P\t\tprotocol (either tcp, udp, icmp, or all)
  -S address[/mask] [port ...]
\t\tsource specification
  -D address[/mask] [port ...]
\t\tdestination specification
  -V address\tnetwork interface address
  -W name\tnetwork interface name
  -b\t\tbidirectional match
  -e\t\textended output mode
  -k\t\tmatch TCP packets only when ACK set
  -m\t\tmasquerade packets as coming from local host
  -n\t\tnumeric output of addresses and ports
  -o\t\tturn on kernel logging for matching packets
  -r [port]\tredirect packets to local port (transparent proxying)
  -t and xor\tand/xor masks for TOS field
  -v\t\tverbose mode
  -x\t\texpand numbers (display exact values)
  -y\t\tmatch TCP packets only when SYN set and ACK cleared
"""


class _Param(Exception):
    """exit_error(2, ...) / fprintf + exit_tryhelp(2)."""


@dataclass
class _Cmd:
    chain: int = -1
    command: int = 0
    options: set[str] = field(default_factory=set)  # option letters given (check_option)
    policy: str | None = None
    proto: int | None = None  # None: -P not given (IP_FW_F_ALL)
    shost: str | None = None
    dhost: str | None = None
    sports: list[str] = field(default_factory=list)
    dports: list[str] = field(default_factory=list)
    iface: str = ""
    timeouts: tuple[int, int, int] = (0, 0, 0)
    unsupported: list[str] = field(default_factory=list)


class Ipfwadm:
    def __init__(self, stack: Stack, prog: str, o: Output) -> None:
        self.stack = stack
        self.prog = prog
        self.o = o
        self.names = stack.netfilter.resolver
        self.c = _Cmd()

    def run(self, args: list[str]) -> int:
        try:
            return self._run(args)
        except (_Param, AddrError) as e:
            raise Exit(2, f"{self.prog}: {e}\nTry `{self.prog} -h' for more information.") from None

    def _check_option(self, letter: str) -> None:
        if letter in self.c.options:
            raise _Param(f"multiple -{letter} flags not allowed")
        self.c.options.add(letter)

    def _set_chain(self, chain: int) -> None:
        if self.c.chain != -1:
            raise _Param("multiple categories specified")
        self.c.chain = chain

    def _set_command(self, cmd: int, allowed: int = 0) -> None:
        if self.c.command not in (0, allowed):
            raise _Param("multiple commands specified")
        self.c.command |= cmd

    def _run(self, args: list[str]) -> int:
        c = self.c
        g = Getopt(self.prog, args, OPTSTRING)
        while (r := g.next()) is not None:
            letter, optarg = r
            if letter == "?":
                raise Exit(2, f"{optarg}\nTry `{self.prog} -h' for more information.")
            if letter == "h":
                self.o.write(HELP.format(v=VERSION, p=self.prog))
                return 0
            self._option(letter, optarg, g)
        if g.rest:
            raise _Param("unknown arguments found on commandline")
        if not c.command:
            raise _Param("no command specified")
        self._checks()
        return self._execute()

    def _option(self, letter: str, optarg: str | None, g: Getopt) -> None:
        c = self.c
        nonopt = g.peek() is not None and not (g.peek() or "").startswith("-")
        if letter in "AFIMO":
            self._set_chain({"A": CHN_ACCT, "F": CHN_FWD, "I": CHN_IN, "M": CHN_MASQ, "O": CHN_OUT}[letter])
            if letter == "A" and nonopt:
                direction = g.take()
                if not any(d.startswith(direction) for d in ("in", "out", "both")):
                    raise _Param(f'invalid direction "{direction}" specified')
        elif letter in "adi":
            self._set_command({"a": CMD_APPEND, "d": CMD_DELETE, "i": CMD_INSERT}[letter])
            if nonopt:
                self._parse_policy(g.take())
                c.options.add("policy")
        elif letter in "lz":
            self._set_command(CMD_LIST if letter == "l" else CMD_RESET, CMD_RESET if letter == "l" else CMD_LIST)
        elif letter in "fcp":
            self._set_command({"f": CMD_FLUSH, "c": CMD_CHECK, "p": CMD_POLICY}[letter])
            if letter == "p":
                assert optarg is not None
                self._parse_policy(optarg)
        elif letter == "s":
            self._set_command(CMD_TIMEOUT)
            nxt = g.argv[g.optind:g.optind + 2]
            if len(nxt) < 2 or any(w.startswith("-") for w in nxt):
                raise _Param("-s requires 3 timeout values")
            assert optarg is not None
            c.timeouts = (parse_timeout(optarg), parse_timeout(g.take()), parse_timeout(g.take()))
        elif letter == "P":
            self._check_option("P")
            assert optarg is not None
            hits = [n for n in PROTOS if n.startswith(optarg)]
            if not hits:
                raise _Param(f'invalid protocol "{optarg}" specified')
            c.proto = PROTOS[hits[0]]
        elif letter in "SD":
            self._check_option(letter)
            ports = c.sports if letter == "S" else c.dports
            if letter == "S":
                c.shost = optarg
            else:
                c.dhost = optarg
            while g.peek() is not None and not (g.peek() or "").startswith("-"):
                self._store_port(g.take(), ports)
        elif letter in "VWt":
            self._check_option(letter)
            assert optarg is not None
            if letter == "W":
                c.iface = optarg[:16]
            elif letter == "V":
                c.unsupported.append("-V (matching the interface address)")
            else:
                if not nonopt:
                    raise _Param("-t requires 2 hexbyte arguments")
                for h in (optarg, g.take()):
                    if not is_hexbyte(h):
                        raise _Param(f'invalid hexbyte "{h}" specified')
                c.unsupported.append("-t (TOS masks)")
        elif letter == "r":
            self._check_option("r")
            if nonopt:
                g.take()
            c.unsupported.append("-r (redirecting to a local port)")
        else:  # b e k m n o v x y
            self._check_option(letter)

    def _parse_policy(self, word: str) -> None:
        for name in POLICIES:
            if name.startswith(word):
                if name == "masquerade":
                    self._check_option("m")  # for backwards compatibility, better use "accept" and "-m"
                self.c.policy = name
                return
        raise _Param(f'invalid policy "{word}" specified')

    def _store_port(self, port: str, ports: list[str]) -> None:
        if ":" in port and any(":" in p for p in ports):
            raise _Param("multiple ranges not allowed")
        ports.append(port)
        total = sum(2 if ":" in p else 1 for p in self.c.sports + self.c.dports)
        if total > IP_FW_MAX_PORTS:
            raise _Param(f"too many ports specified (maximum {IP_FW_MAX_PORTS})")

    def _checks(self) -> None:
        c, cmd, opts = self.c, self.c.command, self.c.options
        fwchain = c.chain in (CHN_IN, CHN_OUT, CHN_FWD)
        masq_flag = "m" in opts
        if c.chain == -1:
            raise _Param("missing -A, -F, -I, -O, or -M flag")
        if not fwchain and cmd == CMD_CHECK:
            raise _Param("specify either -F, -I, or -O for checking a packet")
        if not fwchain and cmd == CMD_POLICY:
            raise _Param("specify either -F, -I, or -O for changing the policy")
        if fwchain and "policy" not in opts and cmd & RULE_CMDS:
            raise _Param("policy required for firewall entries")
        if not fwchain and "policy" in opts:
            raise _Param("no policy allowed with non-firewall entries")
        if c.chain == CHN_MASQ and not cmd & (CMD_TIMEOUT | CMD_LIST):
            raise _Param("-M only allowed in combination with -s or -l command")
        if c.chain != CHN_MASQ and cmd & CMD_TIMEOUT:
            raise _Param("setting masquerading timeouts requires -M flag")
        for letter, what in (("b", "bidirectional flag (-b)"), ("o", "kernel print flag (-o)"),
                             ("r", "port redirection (-r)"), ("t", "tos values (-t)")):
            if letter in opts and not cmd & RULE_CMDS:
                raise _Param(f"{what} only allowed with insert/append/delete")
        if c.proto is not None and cmd & NO_MATCH_CMDS:
            raise _Param("no protocol (-P) allowed with this command")
        if c.proto is None and cmd == CMD_CHECK:
            raise _Param("protocol (-P) required for this command")
        kind = c.proto or 0
        if cmd == CMD_CHECK and kind == 0:
            raise _Param("specific protocol required for check command")
        for letter, what in (("V", "interface address (-V)"), ("W", "interface name (-W)")):
            if letter in opts and cmd & NO_MATCH_CMDS:
                raise _Param(f"no {what} allowed with this command")
            if letter not in opts and cmd & CMD_CHECK:
                raise _Param(f"{what} required for this command")
        if kind == IPPROTO_ICMP and c.dports:
            raise _Param("ICMP types only allowed with -S, not with -D")
        if kind == 0 and (c.sports or c.dports):
            raise _Param("no ports allowed without specific protocol")
        if cmd == CMD_CHECK:
            c.unsupported.append("-c (checking packets)")
        if "r" in opts and c.chain != CHN_IN:
            raise _Param("redirecting only allowed in combination with -I")
        if kind == IPPROTO_ICMP and "r" in opts:
            raise _Param("redirecting not allowed with protocol ICMP")
        if masq_flag and c.chain != CHN_FWD:
            raise _Param("masquerading only allowed in combination with -F")
        if kind == IPPROTO_ICMP and masq_flag:
            raise _Param("masquerading not allowed with protocol ICMP")
        if masq_flag and c.policy not in ("accept", "masquerade"):
            raise _Param("masquerading only allowed with policy accept")
        for letter, attr in (("S", "shost"), ("D", "dhost")):
            name = "source address (-S)" if letter == "S" else "destination address (-D)"
            if letter in opts and cmd & NO_MATCH_CMDS:
                raise _Param(f"no {name} allowed with this command")
            if letter not in opts and cmd & CMD_CHECK:
                raise _Param(f"{name} required for this command")
            if letter not in opts and cmd & RULE_CMDS:
                setattr(c, attr, "0.0.0.0/0")

    def parse_port(self, port: str) -> int:
        n = string_to_number(port, 0, 65535)
        if n is not None:
            return n
        if self.c.proto == IPPROTO_ICMP:
            raise _Param(f'invalid ICMP type "{port}" specified')
        proto = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp"}.get(self.c.proto or 0)
        found = self.names.service_port(port, proto) if proto else None
        if found is None:
            raise _Param(f'invalid port/service "{port}" specified')
        return found

    def _port_list(self, ports: list[str]) -> list[str]:
        """Each word as numbers ("lo:hi" for the range), the range first as ipfwadm stores it."""
        out: list[str] = []
        for word in ports:
            lo, colon, hi = word.partition(":")
            if not colon:
                out.append(str(self.parse_port(word)))
                continue
            a, b = self.parse_port(lo), self.parse_port(hi)
            if a > b:
                raise _Param(f"invalid range of ports ({a} > {b})")
            out.insert(0, f"{a}:{b}")
        return out

    # -- doing it --------------------------------------------------------------------
    def _execute(self) -> int:
        c = self.c
        saddrs: list[int] = []
        daddrs: list[int] = []
        smask = dmask = 0
        if c.shost is not None:
            saddrs, smask = parse_hostnetworkmask(c.shost, self.names, QUOTE)
        sports = self._port_list(c.sports)
        if c.dhost is not None:
            daddrs, dmask = parse_hostnetworkmask(c.dhost, self.names, QUOTE)
        dports = self._port_list(c.dports)
        if c.chain == CHN_MASQ:
            if c.command & CMD_TIMEOUT:
                masq.set_timeouts(self.stack.conntrack.sysctl, *c.timeouts)
                return 0
            rows = [e for e in masq.entries(self.stack.conntrack, 0.0)  # offline: as of time 0
                    if e.proto in (IPPROTO_TCP, IPPROTO_UDP)]
            self.o.write(masq.format_legacy(rows, self.names, "n" in c.options, "e" in c.options, lower=True))
            return 0
        if c.chain == CHN_ACCT:
            c.unsupported.insert(0, "-A (accounting rules)")
        if c.command & CMD_LIST:
            c.unsupported.append("-l (listing rules: they are iptables rules now, list them with"
                                 " `iptables -L -n -v' or `iptables-save')")
        if c.unsupported:
            raise Exit(1, f"ipgate: {self.prog} {c.unsupported[0]} is not supported")
        chain = CHAINS[c.chain]
        rules = self._rules(chain, saddrs, smask, sports, daddrs, dmask, dports) if c.command & RULE_CMDS else []
        if c.command == CMD_POLICY and c.policy == "masquerade":
            raise Exit(1, f"ipgate: {self.prog}: a masquerade policy has no netfilter equivalent;"
                          " use `-a masquerade' rules")

        def op(n: Netfilter) -> None:
            if c.command == CMD_POLICY:
                assert c.policy is not None
                fw.set_policy(n, chain, VERDICTS[c.policy])
            elif c.command == CMD_FLUSH:
                fw.flush(n, chain)
            elif c.command == CMD_RESET:
                fw.ipt(n, "filter", ["-Z", chain])
            for r in rules:
                if c.command == CMD_APPEND:
                    fw.append(n, r)
                elif c.command == CMD_INSERT:
                    fw.insert(n, r, 1)
                else:
                    fw.delete_spec(n, r)

        try:
            fw.transact(self.stack.netfilter, op)
        except fw.LegacyError as e:
            if e.kind == "nomatch":
                raise Exit(255, "ipfwadm: setsockopt failed: Invalid argument") from None
            raise Exit(1, f"ipgate: {e.text}") from None
        return 0

    def _rules(self, chain: str, saddrs: list[int], smask: int, sports: list[str], daddrs: list[int], dmask: int,
               dports: list[str]) -> list[fw.FwRule]:
        c = self.c
        assert c.policy is not None
        verdict = "MASQ" if "m" in c.options else VERDICTS[c.policy]
        pairs = [(s, d) for s in saddrs for d in daddrs]
        out = [self._rule(chain, verdict, (s, smask, sports), (d, dmask, dports)) for s, d in pairs]
        if "b" in c.options:
            out += [self._rule(chain, verdict, (d, dmask, dports), (s, smask, sports)) for s, d in pairs]
        return out

    def _rule(self, chain: str, verdict: str, src: tuple[int, int, list[str]],
              dst: tuple[int, int, list[str]]) -> fw.FwRule:
        c = self.c
        kind = c.proto or 0
        m: list[str] = []
        if kind:
            m += ["-p", {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp"}[kind]]
        for flag, (addr, mask, _ports) in (("-s", src), ("-d", dst)):
            if mask:
                m += [flag, addr_arg(addr, mask)]
        if c.iface:
            m += ["-i" if chain == "INPUT" else "-o", c.iface]
        if kind == IPPROTO_ICMP:
            # ICMP types are given as source ports and stay so in a -b rule
            types = self._port_list(c.sports)
            if len(types) > 1 or any(":" in t for t in types):
                raise Exit(1, f"ipgate: {self.prog}: several ICMP types in one rule are not supported")
            m += ["--icmp-type", types[0]] if types else []
        multi: list[str] = []
        if kind in (IPPROTO_TCP, IPPROTO_UDP):
            for one, many, ports in (("--sport", "--sports", src[2]), ("--dport", "--dports", dst[2])):
                if len(ports) == 1:
                    m += [one, ports[0]]
                elif ports:
                    multi += ["-m", "multiport", many, ",".join(ports)]
        for letter, words in (("y", ["--syn"]), ("k", ["--tcp-flags", "ACK", "ACK"])):
            if letter in c.options:
                if kind != IPPROTO_TCP:
                    raise Exit(1, f"ipgate: {self.prog}: -{letter} needs -P tcp")
                m += words
        m += multi
        return fw.FwRule(chain, tuple(m), verdict, "o" in c.options)


def parse_timeout(text: str) -> int:
    n = string_to_number(text, 0, INT_MAX)
    if n is None:
        raise _Param(f'invalid timeout value "{text}" specified')
    return n


def ipfwadm(stack: Stack, prog: str, args: list[str], o: Output) -> int:
    """`ipfwadm ARGS`; `prog` is the program word as typed (it starts the error messages)."""
    return Ipfwadm(stack, prog, o).run(args)
