"""The kernel as the gateway: the same configuration script, run by the real tools in a namespace.

Lines are translated, not interpreted by a shell:

    ip link add IF type ...              skipped when IF is one of the gateway's links (the veth is the device)
    ip ...                               `ip`, with rt_tables names replaced by their numbers
    echo "N NAME" >> .../rt_tables       remembered for the `ip` lines (the host's file is never written)
    echo V > /proc/sys/net/...           `sysctl -w` inside the namespace
    sysctl -w KEY=V                      as is
    iptables[-save|-restore] ...         iptables-legacy (the namespace's own tables)

Anything else (ifconfig, route, ipchains, ipnat ...) is refused: the kernel
mode compares what both can run.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from ipgate.commands.script import logical_lines, program_name, split_line, sysctl_key

IPTABLES = {"iptables": "iptables-legacy", "iptables-save": "iptables-legacy-save",
            "iptables-restore": "iptables-legacy-restore"}
TABLE_WORDS = ("table", "lookup")
NOT_IN_IP = ("netns", "-n", "-netns", "-b", "-batch")  # the line must stay in the gateway namespace


class KernelScriptError(ValueError):
    """A line the kernel mode cannot run."""


def _rt_tables(words: list[str], names: dict[str, str]) -> bool:
    """`echo "100 smtp" >> /etc/iproute2/rt_tables`: remember the name; True if the line was one."""
    if len(words) < 3 or words[-2] != ">>" or not words[-1].endswith("/iproute2/rt_tables"):
        return False
    entry = " ".join(words[1:-2]).split()
    if len(entry) != 2 or not entry[0].isdigit():
        raise KernelScriptError(f"bad rt_tables entry {' '.join(words[1:-2])!r}")
    names[entry[1]] = entry[0]
    return True


def numbered(args: list[str], names: Mapping[str, str]) -> list[str]:
    """`ip` arguments with table names (after `table`/`lookup`) replaced by their numbers."""
    out = list(args)
    for i in range(1, len(out)):
        if out[i - 1] in TABLE_WORDS and out[i] in names:
            out[i] = names[out[i]]
    return out


def named(text: str, names: Mapping[str, str]) -> str:
    """`ip` output with table numbers shown by name, as iproute2 does when rt_tables has them."""
    by_number = {v: k for k, v in names.items()}
    return re.sub(r"\b(table|lookup) (\d+)\b", lambda m: f"{m[1]} {by_number.get(m[2], m[2])}", text)


def table_names(script: str) -> dict[str, str]:
    """The rt_tables entries the script adds: name -> number."""
    names: dict[str, str] = {}
    for _, line in logical_lines(script):
        try:
            words = split_line(line)
            if words and program_name(words[0]) == "echo":
                _rt_tables(words, names)
        except ValueError:
            continue
    return names


def _ip(args: list[str], ports: Collection[str], names: dict[str, str]) -> list[str] | None:
    if any(w in NOT_IN_IP for w in args):
        raise KernelScriptError(f"`ip {' '.join(args)}`: no other namespaces, no batch files")
    if args[:2] == ["link", "add"] and len(args) > 2 and args[2] in ports:
        return None
    return ["ip", *numbered(args, names)]


def _line(words: list[str], ports: Collection[str], names: dict[str, str]) -> list[str] | None:
    """The argv for one line's words, or None when the line needs no command."""
    prog, args = program_name(words[0]), words[1:]
    if prog == "echo" and _rt_tables(words, names):
        return None
    if prog == "echo" and len(words) >= 4 and words[-2] == ">":
        key = sysctl_key(words[-1])
        if key is None or not key.startswith("net.") or ".." in words[-1]:
            raise KernelScriptError("only `echo V > /proc/sys/net/...`")
        return ["sysctl", "-qw", f"{words[-1][len('/proc/sys/'):]}={' '.join(words[1:-2])}"]
    if any(w in (">", ">>", "|", ";", "&", "&&", "||") for w in words):
        raise KernelScriptError("no redirections or pipes")
    if prog == "ip":
        return _ip(args, ports, names)
    if prog in IPTABLES:
        return [IPTABLES[prog], *args]
    if prog == "sysctl":
        if not all(a.startswith(("-", "net.", "net/")) for a in args):
            raise KernelScriptError("sysctl: net.* keys only")
        return ["sysctl", *args]
    raise KernelScriptError(f"the kernel mode runs ip, iptables, echo and sysctl lines, not {prog}")


def translate(script: str, ports: Collection[str]) -> list[tuple[int, list[str]]]:
    """(line number, argv to run in the gateway namespace) for each line of the script."""
    names: dict[str, str] = {}
    out: list[tuple[int, list[str]]] = []
    for n, line in logical_lines(script):
        try:
            words = split_line(line)
            argv = _line(words, ports, names) if words else None
        except ValueError as e:  # KernelScriptError included
            raise KernelScriptError(f"line {n}: {e}: {line.strip()}") from None
        if argv is not None:
            out.append((n, argv))
    return out
