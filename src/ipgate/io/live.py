"""Commands against the running gateway: what the control socket executes.

Most commands go through `Shell.run_argv` on the live stack, exactly as
offline.  The differences are the ones a live box has:

- there is a clock: `conntrack -L`, `cat /proc/net/nf_conntrack` and
  `netstat -M` show timeouts as of now (offline they count from time 0);
- there is a neighbour cache: `ip neigh show|add|replace|del|flush`;
- `trace` runs on a copy of the state, so that explaining a packet never
  creates a connection in the live table;
- `save` prints the running configuration (save.py), `reload` does what
  SIGHUP does, `stats` prints the gateway's counters;
- stdin sent by the client feeds `iptables-restore` and `ipnat -f -`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Protocol

from ipgate.commands.base import Exit, Output
from ipgate.commands.script import program_name
from ipgate.inet import aton
from ipgate.shell import Shell
from ipgate.stack import Stack

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipgate.link.layer import LinkLayer


class LiveGateway(Protocol):
    """What the commands need from the running gateway."""

    @property
    def stack(self) -> Stack: ...
    @property
    def link(self) -> LinkLayer | None: ...
    def reload(self) -> tuple[bool, str]: ...
    def stats(self) -> str: ...
    def after_command(self) -> None: ...


class _LiveShell(Shell):
    """Shell with a clock and stdin; everything else is the offline Shell."""

    def __init__(self, stack: Stack, now: float, stdin: str | None) -> None:
        super().__init__(stack)
        self.now = now
        self.input = stdin
        self.stdin = (lambda: stdin or "") if stdin is not None else None

    def _dispatch(self, words: list[str], o: Output) -> int:
        prog = program_name(words[0]) if words else ""
        args = words[1:]
        if prog == "conntrack":
            from ipgate.commands.conntrack import conntrack

            return conntrack(self.stack.conntrack, args, o, self.now)
        if prog == "cat" and args in (["/proc/net/nf_conntrack"], ["/proc/net/ip_conntrack"]):
            from ipgate.commands.conntrack import proc_nf_conntrack

            o.write(proc_nf_conntrack(self.stack.conntrack, self.now))
            return 0
        if prog == "netstat":
            from ipgate.commands.netstat import netstat

            return netstat(self.stack, args, o, self.now)
        if prog.startswith("iptables") and prog.endswith("-restore") and self.input is not None:
            from ipgate.commands.iptables import run_program

            return run_program(self.stack.netfilter, prog, args, o, self.input)
        return super()._dispatch(words, o)


class LiveCommands:
    def __init__(self, gw: LiveGateway, clock: Callable[[], float] = time.monotonic) -> None:
        self.gw = gw
        self.clock = clock

    def run(self, argv: list[str], stdin: str | None) -> tuple[int, str, str]:
        if not argv:
            return 2, "", "ipgate: empty command\n"
        prog = program_name(argv[0])
        if prog == "save":
            from ipgate.save import save

            return 0, save(self.gw.stack), ""
        if prog == "reload":
            ok, msg = self.gw.reload()
            return (0, msg + "\n", "") if ok else (1, "", msg + "\n")
        if prog == "stats":
            return 0, self.gw.stats(), ""
        if prog == "trace":
            res = Shell(copy.deepcopy(self.gw.stack)).run_argv(argv)
            return res.status, res.out, res.err
        if prog == "ip" and _neigh_args(argv) is not None:
            o = Output()
            try:
                o.status = self._neigh(_neigh_args(argv) or [], o)
            except Exit as e:
                o.error(e.message)
                o.status = e.status
            return o.status, "".join(o.out), "".join(o.err)
        res = _LiveShell(self.gw.stack, self.clock(), stdin).run_argv(argv)
        self.gw.after_command()
        return res.status, res.out, res.err

    # -- ip neigh ------------------------------------------------------------------------
    def _neigh(self, args: list[str], o: Output) -> int:
        """`ip neigh show [dev D] [nud all]`, `ip neigh add|replace ADDR lladdr MAC dev D [nud S]`,
        `ip neigh del ADDR dev D`, `ip neigh flush dev D`."""
        from ipgate.link.layer import format_neigh_show
        from ipgate.link.neigh import Nud

        link = self.gw.link
        cmd = args[0] if args else "show"
        opts = _pairs(args[1:])
        if link is None:
            if cmd in ("show", "list", "ls"):
                return 0
            raise Exit(2, "RTNETLINK answers: Operation not supported (no Ethernet interface attached)")
        now = self.clock()
        if cmd in ("show", "list", "ls"):
            o.write(format_neigh_show(link.neighbours(), opts.get("dev"), opts.get("nud") == "all"))
            return 0
        dev = opts.get("dev")
        if not dev:
            raise Exit(255, 'Device and destination are required arguments.')
        if cmd == "flush":
            link.device_down(dev)
            return 0
        addr_text = next((a for a in args[1:] if a[0].isdigit()), None)
        if addr_text is None:
            raise Exit(255, 'Device and destination are required arguments.')
        try:
            addr = aton(addr_text)
        except (ValueError, OSError):
            raise Exit(1, f'Error: an inet address is expected rather than "{addr_text}".') from None
        if cmd in ("add", "replace", "change"):
            mac = opts.get("lladdr")
            lladdr = bytes(int(x, 16) for x in mac.split(":")) if mac else None
            state = Nud[opts.get("nud", "permanent").upper()]
            try:
                link.neigh_add(dev, addr, lladdr, now, state)
            except (ValueError, KeyError) as e:
                raise Exit(2, f"RTNETLINK answers: {e}") from None
            return 0
        if cmd in ("del", "delete"):
            link.neigh_del(dev, addr, now)
            return 0
        raise Exit(255, f'Command "{cmd}" is unknown, try "ip neigh help".')


def _neigh_args(argv: list[str]) -> list[str] | None:
    """The words after `ip [-opts] neigh`, or None when the command is another `ip` object."""
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        i += 1
    if i < len(argv) and argv[i] in ("neigh", "neighbor", "neighbour", "n"):
        return argv[i + 1:]
    return None


def _pairs(words: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in zip(words, words[1:], strict=False):
        if k in ("dev", "lladdr", "nud", "to"):
            out[k] = v
    return out
