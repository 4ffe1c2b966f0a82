"""Run command lines against a Stack, as a shell running the real tools would.

`Shell.run_line` returns what the process would have printed and its exit status.
`load_script` applies a whole configuration all-or-nothing: it runs on a copy of
the state and only a fully successful script replaces it.

One pipe is understood, from `echo` or `printf` into a command that reads its
standard input: ``echo 'map le0 10.0.0.0/8 -> 0/32' | ipnat -f -``, the
form IP Filter's documents use (and `ipgate save` writes).  The status is the
command's, or echo's when the command succeeded (as with `set -o pipefail`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass

from ipgate.commands.base import Exit, Output
from ipgate.commands.script import do_echo, do_printf, do_sysctl, logical_lines, program_name, split_line
from ipgate.errors import ConfigError, NetlinkError
from ipgate.stack import Stack


@dataclass(frozen=True, slots=True)
class Result:
    status: int
    out: str
    err: str


class Shell:
    def __init__(self, stack: Stack | None = None) -> None:
        self.stack = stack if stack is not None else Stack()
        self.stdin: Callable[[], str] | None = None  # what `ipnat -f -` reads
        self.script_dir = ""  # a script's own directory: relative files it names are found there

    def run_line(self, line: str) -> Result:
        return self.run_argv(split_line(line))

    def run_argv(self, words: list[str]) -> Result:
        if "|" in words and program_name(words[0]) in PIPE_SOURCES:
            return self._pipe(words)
        o = Output()
        try:
            o.status = self._dispatch(words, o)
        except Exit as e:
            if e.message:
                o.error(e.message)
            o.status = e.status
        except NetlinkError as e:
            o.error(e.iproute2_text())
            o.status = 2
        return Result(o.status, "".join(o.out), "".join(o.err))

    def _pipe(self, words: list[str]) -> Result:
        """`echo TEXT | COMMAND ...`: COMMAND reads echo's output as its standard input."""
        k = words.index("|")
        if k + 1 == len(words):
            return Result(2, "", "ipgate: syntax error near unexpected token `|'\n")
        left = self.run_argv(words[:k])
        outer = self.stdin
        self.stdin = lambda: left.out
        try:
            right = self.run_argv(words[k + 1:])
        finally:
            self.stdin = outer
        return Result(right.status or left.status, right.out, left.err + right.err)

    def _dispatch(self, words: list[str], o: Output) -> int:
        if not words:
            return 0
        prog = program_name(words[0])
        args = words[1:]
        if prog == "ip":
            from ipgate.commands.ip import IpCommand

            return IpCommand(self.stack, o).run(args)
        if prog == "ifconfig":
            from ipgate.commands.ifconfig import ifconfig

            return int(ifconfig(self.stack, args, o))
        if prog == "route":
            from ipgate.commands.nettools_route import route

            return int(route(self.stack, args, o))
        if prog in ("iptables", "iptables-legacy", "iptables-save", "iptables-legacy-save",
                    "iptables-restore", "iptables-legacy-restore"):
            from ipgate.commands.iptables import run_program

            return run_program(self.stack.netfilter, prog, args, o)
        if prog == "conntrack":
            from ipgate.commands.conntrack import conntrack

            # Offline there is no clock: entries are listed as of time 0.
            return conntrack(self.stack.conntrack, args, o, 0.0)
        if prog == "cat" and args in (["/proc/net/nf_conntrack"], ["/proc/net/ip_conntrack"]):
            from ipgate.commands.conntrack import proc_nf_conntrack

            o.write(proc_nf_conntrack(self.stack.conntrack, 0.0))
            return 0
        if prog == "trace":
            from ipgate.commands.trace import trace

            return trace(self.stack, args, o)
        if prog == "ipchains":
            from ipgate.commands.ipchains import ipchains

            return ipchains(self.stack, words[0], args, o)
        if prog == "ipfwadm":
            from ipgate.commands.ipfwadm import ipfwadm

            return ipfwadm(self.stack, words[0], args, o)
        if prog in ("modprobe", "insmod", "rmmod", "depmod"):
            from ipgate.commands.modprobe import modules

            return modules(self.stack, prog, args, o)
        if prog == "netstat":
            from ipgate.commands.netstat import netstat

            # Offline there is no clock: masqueraded connections are listed as of time 0.
            return netstat(self.stack, args, o, 0.0)
        if prog == "ipnat":
            from ipgate.commands.ipnat import ipnat

            return ipnat(self.stack.ipnat, self.stack.netfilter.resolver, words[0], args, o, self.stdin,
                         self.script_dir)
        if prog == "echo":
            return do_echo(self.stack, words, o)
        if prog == "printf":
            return do_printf(self.stack, words, o)
        if prog == "sysctl":
            return do_sysctl(self.stack, words, o)
        if prog in ("true", ":"):
            return 0
        raise Exit(127, f"ipgate: {prog}: command not understood")


PIPE_SOURCES = ("echo", "printf")  # what a script may pipe into a command (`echo RULE | ipnat -f -`)
BULK_LINES = 1000  # scripts this long take the bulk route loader (and pay its numpy import)


def load_script(text: str, filename: str, stack: Stack | None = None, keep_going: bool = False) -> Stack:
    """Apply a configuration script to a copy of `stack`; raise ConfigError(s) on failure.

    With keep_going, every bad line is collected (later lines still run) and one
    ConfigError listing them all is raised at the end; the state is unchanged.
    """
    work = copy.deepcopy(stack) if stack is not None else Stack()
    sh = Shell(work)
    sh.script_dir = os.path.dirname(filename)
    errors: list[ConfigError] = []
    if not keep_going and text.count("\n") >= BULK_LINES:
        # Big scripts (full tables): `ip route add P via G ...` lines go through
        # route/bulk.py, every other line through run_argv() below, in order.
        from ipgate.route.bulk import load_lines

        def other(lineno: int, line: str) -> None:
            try:
                words = split_line(line)
            except ValueError as e:
                raise ConfigError(filename, lineno, f"cannot parse line: {e}") from None
            if words:
                res = sh.run_argv(words)
                if res.status != 0:
                    msg = res.err.strip().replace("\n", " ") or f"exit status {res.status}"
                    raise ConfigError(filename, lineno, msg)

        try:
            load_lines(work, logical_lines(text), filename, other)
        except ConfigError as e:
            raise ScriptErrors([e]) from None
        return work
    for lineno, line in logical_lines(text):
        try:
            words = split_line(line)
        except ValueError as e:
            errors.append(ConfigError(filename, lineno, f"cannot parse line: {e}"))
            if not keep_going:
                break
            continue
        if not words:
            continue
        res = sh.run_argv(words)
        if res.status != 0:
            msg = res.err.strip().replace("\n", " ") or f"exit status {res.status}"
            errors.append(ConfigError(filename, lineno, msg))
            if not keep_going:
                break
    if errors:
        raise ScriptErrors(errors)
    return work


class ScriptErrors(Exception):
    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors
