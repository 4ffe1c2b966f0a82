"""The kernel as the gateway: the same configuration script, run by the real tools in a namespace.

Lines are translated, not interpreted by a shell:

    ip link add IF type ...              skipped when IF is one of the gateway's links (the veth is the device)
    ip ...                               `ip`, with rt_tables names replaced by their numbers
    echo "N NAME" >> .../rt_tables       remembered for the `ip` lines (the host's file is never written)
    echo V > /proc/sys/net/...           `sysctl -w` inside the namespace
    sysctl -w KEY=V                      as is
    iptables[-save|-restore] ...         iptables-legacy (the namespace's own tables)
    ifconfig ..., route ...              net-tools, as is (they act on the namespace only)
    echo TEXT                            skipped
    modprobe HELPER [ports=P,...]        FTP/IRC (ip_masq_ftp, nf_conntrack_irc ...): the kernel's
                                         nf_conntrack_H and nf_nat_H must be there (`modules`,
                                         `load_module`), and since Linux 4.7 assigns no helper by
                                         port, `-t raw -A PREROUTING -p tcp --dport P -j CT --helper H`

Anything else (ipchains, ipnat ...) is refused: the kernel mode compares
what both can run.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Collection, Mapping
from pathlib import Path

from ipgate.commands.modprobe import module_name
from ipgate.commands.script import logical_lines, program_name, split_line, sysctl_key
from ipgate.conntrack.helper import MODULE_HELPERS
from ipgate.lab.netns import run

IPTABLES = {"iptables": "iptables-legacy", "iptables-save": "iptables-legacy-save",
            "iptables-restore": "iptables-legacy-restore"}
TABLE_WORDS = ("table", "lookup")
NOT_IN_IP = ("netns", "-n", "-netns", "-b", "-batch")  # the line must stay in the gateway namespace
HELPER_PORTS = {"ftp": 21, "irc": 6667}
NET_TOOLS = ("ifconfig", "route")
MODPROBE = ("modprobe", "insmod")
KALLSYMS_MAX = 64 << 20  # bytes of /proc/kallsyms read at most


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


def _helper(args: list[str]) -> tuple[str, list[str]] | None:
    """`modprobe ip_masq_ftp ports=21,2121`: ("ftp", ["21", "2121"]); None for any other module."""
    names = [a for a in args if not a.startswith("-") and "=" not in a]
    unload = any(a in ("-r", "--remove") for a in args)
    helper = MODULE_HELPERS.get(module_name(names[0])) if len(names) == 1 and not unload else None
    if helper is None:
        return None
    ports = [str(HELPER_PORTS[helper])]
    for a in args:
        if a.startswith("ports="):
            ports = a[len("ports="):].split(",")
    if not all(p.isdigit() and 0 < int(p) < 65536 for p in ports):
        raise KernelScriptError(f"bad ports in {' '.join(args)!r}")
    return helper, ports


def _ct_rules(helper: str, ports: list[str]) -> list[list[str]]:
    return [[IPTABLES["iptables"], "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", p, "-j", "CT",
             "--helper", helper] for p in ports]


def _line(words: list[str], ports: Collection[str], names: dict[str, str]) -> list[str] | None:
    """The argv for one line's words, or None when the line needs no command."""
    prog, args = program_name(words[0]), words[1:]
    if prog == "echo" and not any(w in (">", ">>") for w in words):
        return None
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
    if prog in NET_TOOLS:
        return [prog, *args]
    raise KernelScriptError(f"the kernel mode runs ip, iptables, ifconfig, route, echo, sysctl and "
                            f"FTP/IRC modprobe lines, not {prog}")


def translate(script: str, ports: Collection[str]) -> list[tuple[int, list[str]]]:
    """(line number, argv to run in the gateway namespace) for each line of the script."""
    names: dict[str, str] = {}
    out: list[tuple[int, list[str]]] = []
    for n, line in logical_lines(script):
        try:
            words = split_line(line)
            if words and program_name(words[0]) in MODPROBE:
                helper = _helper(words[1:])
                if helper is None:
                    raise KernelScriptError("the kernel mode loads FTP and IRC helpers only")
                out += [(n, argv) for argv in _ct_rules(*helper)]
                continue
            argv = _line(words, ports, names) if words else None
        except ValueError as e:  # KernelScriptError included
            raise KernelScriptError(f"line {n}: {e}: {line.strip()}") from None
        if argv is not None:
            out.append((n, argv))
    return out


def modules(script: str) -> list[str]:
    """The kernel modules the script's helper lines need (nf_conntrack_ftp, nf_nat_ftp ...)."""
    need: list[str] = []
    for _, line in logical_lines(script):
        try:
            words = split_line(line)
            helper = _helper(words[1:]) if words and program_name(words[0]) in MODPROBE else None
        except ValueError:
            continue
        if helper is not None:
            need += [m for m in (f"nf_conntrack_{helper[0]}", f"nf_nat_{helper[0]}") if m not in need]
    return need


def _built_in(name: str) -> bool:
    """A module compiled into the kernel: its init function is in /proc/kallsyms."""
    try:
        with open("/proc/kallsyms", "rb") as f:
            text = f.read(KALLSYMS_MAX)
    except OSError:
        return False
    return re.search(rb" (%s_init|%s)\b" % (name.encode(), name.encode()), text) is not None


def load_module(name: str) -> str | None:
    """Make sure the kernel has module `name`; None when it does, else why not."""
    if Path("/sys/module", name).exists() or _built_in(name):
        return None
    if shutil.which("modprobe") is None:
        return f"kernel module {name} is not loaded and there is no modprobe to load it"
    d = run(["modprobe", name])
    if d.status != 0:
        return f"kernel module {name} cannot be loaded: {d.err.strip() or f'modprobe status {d.status}'}"
    return None
