"""`netstat -M` (net-tools 2.10): the masqueraded connections, from conntrack (see `masq`).

net-tools reads /proc/net/ip_masquerade, which 2.4 and later kernels do not
have; ipgate answers from conntrack's source-NATed connections in the 2.2
layout netstat printed (lib/masq_info.c): nothing when there are none.
`-n` (or --numeric-hosts / --numeric-ports) prints numbers, `-e` adds the
initseq/delta/prevd columns (zeros).  netstat's other reports are not
implemented and say so.
"""

from __future__ import annotations

from ipgate.commands import masq
from ipgate.commands.base import Exit, Output
from ipgate.commands.legacy_getopt import Getopt, LongOpt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipgate.stack import Stack

OPTSTRING = "A:CFMacdeghilnNoprsStuUvVWw2fx64?Z"  # net-tools 2.10 netstat.c
LONGOPTS = tuple(LongOpt(n, h, k) for n, h, k in (
    ("masquerade", 0, "M"), ("numeric", 0, "n"), ("numeric-hosts", 0, "!"), ("numeric-ports", 0, "@"),
    ("numeric-users", 0, "#"), ("extend", 0, "e"), ("verbose", 0, "v"), ("continuous", 0, "c"),
    ("route", 0, "r"), ("interfaces", 0, "i"), ("groups", 0, "g"), ("statistics", 0, "s"), ("all", 0, "a"),
    ("listening", 0, "l"), ("programs", 0, "p"), ("timers", 0, "o"), ("tcp", 0, "t"), ("udp", 0, "u"),
    ("raw", 0, "w"), ("unix", 0, "x"), ("wide", 0, "W"), ("protocol", 1, "A"), ("version", 0, "V"),
    ("help", 0, "h"), ("fib", 0, "F"), ("cache", 0, "C"), ("symbolic", 0, "N")))


def netstat(stack: Stack, args: list[str], o: Output, now: float) -> int:
    g = Getopt("netstat", args, OPTSTRING, LONGOPTS)
    masquerade = numeric_host = numeric_port = False
    ext = 1
    others: list[str] = []
    while (r := g.next()) is not None:
        letter, optarg = r
        if letter == "?":
            raise Exit(3, f"{optarg}")
        if letter == "M":
            masquerade = True
        elif letter in "n!@#":
            numeric_host |= letter in "n!"
            numeric_port |= letter in "n@"
        elif letter == "e":
            ext += 1
        elif letter != "v":
            others.append(f"-{letter}")
    if not masquerade or others or g.rest:
        what = " ".join(others + g.rest) or " ".join(args) or "(no options)"
        raise Exit(1, f"ipgate: netstat: only -M (--masquerade, with -n and -e) is implemented, not {what}")
    rows = masq.entries(stack.conntrack, now)
    o.write(masq.format_netstat(rows, stack.netfilter.resolver, numeric_host, numeric_port, ext))
    return 0
