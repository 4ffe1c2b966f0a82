"""`ipnat` as IP Filter 4.1.x's tools/ipnat.c, against the stack's `IpnatState`.

Options are read with BSD getopt(3) and the optstring "CdFf:hlM:N:nrRsv";
then, as main() does: -F (flush sessions) and -C (clear rules) first, then
-f FILE (add its rules, or remove them with -r, or only parse them with -n;
-v echoes every rule as printnat() prints it, -R prints port numbers, not
names), then -s (statistics) and -l (rules and sessions, -h puts each rule's
hit count in front).  `-f -` reads the standard input the shell was given (in
a configuration script, what ``echo 'RULE' |`` pipes into it); in a
configuration script a relative FILE is taken from the script's directory.

Deviations, all on the side of refusing: a file is parsed whole before
anything is loaded, and its rules are added (or removed) all-or-nothing --
IP Filter adds each rule as it is parsed and stops at a syntax error; the
refusals are reported as ``FILE:LINE:COL: ioctl(...): strerror`` and the
exit status is 1 (ipnat.c prints ``LINE:ioctl(...)`` and exits 0).  A file
that cannot be opened also exits 1.  -d is accepted and ignored (it prints
kernel pointers); -M/-N (a kernel memory image) are refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ipgate.commands.base import Output
from ipgate.commands.legacy_getopt import bsd_getopt
from ipgate.errors import ConfigError
from ipgate.nat.ipnat.parse import parse
from ipgate.nat.ipnat.printer import listing, printnat, statistics
from ipgate.nat.ipnat.state import IpnatState, NatIoctlError, NatStats
from ipgate.netfilter.names import Resolver

OPTSTRING = "CdFf:hlM:N:nrRsv"
STDIN_NAME = "(stdin)"


def usage(prog: str, o: Output) -> int:
    o.error(f"Usage: {prog} [-CFhlnrRsv] [-f filename]")
    return 1


def ipnat(state: IpnatState, names: Resolver, prog: str, args: list[str], o: Output,
          stdin: Callable[[], str] | None = None, base_dir: str = "") -> int:
    got = bsd_getopt(os.path.basename(prog), args, OPTSTRING, o.error)
    if got is None:
        return usage(prog, o)
    flags: set[str] = set()
    file: str | None = None
    for c, arg in got[0]:
        if c == "f":
            file = arg
        elif c in "MN":
            o.error(f"{os.path.basename(prog)}: -{c}: reading a kernel memory image is not supported")
            return 1
        else:
            flags.add(c)
    donothing = "n" in flags
    numeric = "R" in flags
    verbose = "v" in flags

    # flushtable(): with -n nothing is asked of the kernel and n keeps its initial value.
    if "F" in flags:
        n = 0 if donothing else state.flush()
        o.print(f"{n} entries flushed from NAT table")
    if "C" in flags:
        n = 1 if donothing else state.clear()
        o.print(f"{n} entries flushed from NAT list")

    if file is not None:
        status = load_file(state, names, file, o, stdin, base_dir, donothing, "r" in flags, numeric, verbose)
        if status:
            return status

    if flags & {"s", "l"}:
        st = NatStats() if donothing else state.stats()
        if "s" in flags:
            o.write(statistics(st, 0 if donothing else len(state.rules), table=not donothing))
        if "l" in flags:
            rules = [] if donothing else state.rules
            sessions = [] if donothing else state.session_list()
            hits = list(st.rule_hits) if "h" in flags else None
            hostmaps = [] if donothing else state.hostmap_list()
            o.write(listing(rules, sessions, names, numeric, verbose, hits, state.now(), hostmaps))
    return 0


def load_file(state: IpnatState, names: Resolver, file: str, o: Output, stdin: Callable[[], str] | None,
              base_dir: str, donothing: bool, remove: bool, numeric: bool, verbose: bool) -> int:
    """ipnat_parsefile() + ipnat_addrule() for every rule, all-or-nothing."""
    if file == "-":
        text, label = (stdin() if stdin is not None else ""), STDIN_NAME
    else:
        path = file if os.path.isabs(file) or not base_dir else os.path.join(base_dir, file)
        label = file
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            o.error(f"fopen({file}) failed: {e.strerror}")
            return 1
    try:
        result = parse(text, label, names)
    except ConfigError as e:
        o.error(str(e))
        return 1
    for w in result.warnings:
        o.error(w)
    if verbose:
        for r in result.rules:
            o.write(printnat(r, names, numeric))
    if donothing:
        return 0
    errors: list[NatIoctlError] = state.unload(result.rules) if remove else state.load(result.rules)
    what = "delete nat rule" if remove else "add/insert nat rule"
    for err in errors:
        o.error(f"{label}:{err.rule.line}:{err.rule.column}: ioctl({what}): {os.strerror(err.errno)}")
    return 1 if errors else 0
