"""The steps of a lab scenario, run against a lab that is up (run.Lab).

Each step gives an `Outcome`: ok or not, and one line (or a listing) saying what happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ipgate.lab.netns import Done
from ipgate.lab.topology import Step, Topology

if TYPE_CHECKING:
    from ipgate.lab.run import ServerConn

PING_COUNT = 3


class Target(Protocol):
    """What the steps need from a lab."""

    topo: Topology
    kernel: bool

    def agent(self, host: str, *args: str, timeout: float = ...) -> Done: ...

    def serve(self, host: str, specs: list[str]) -> str: ...

    def gateway_cmd(self, argv: list[str]) -> Done: ...

    def host_cmd(self, host: str, argv: list[str]) -> Done: ...

    def server_view(self) -> list[ServerConn]: ...

    def log(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    step: Step
    ok: bool
    text: str  # one line, or the listing of a `show`
    client: str = ""  # tcp, udp, http, ftp: the client's own address:port
    seen: str = ""  # ... the client address:port the server saw (ftp: its control connection)
    server: str = ""  # http: the server that answered


def _ping(lab: Target, step: Step) -> Outcome:
    dst = step.args[0]
    count = int(step.args[1]) if len(step.args) > 1 else PING_COUNT
    d = lab.agent(step.host, "ping", dst, str(count), timeout=2.0 * count + 5)
    got, _, rtt = d.out.strip().partition(" ")
    answered, sep, total = got.partition("/")
    if not sep:
        return Outcome(step, False, f"{step.host} -> {dst}: {d.out.strip() or d.err.strip()}")
    text = f"{step.host} -> {dst}: {answered} of {total} echoes answered" + (f", median {rtt}" if rtt else "")
    return Outcome(step, d.status == 0, text)


def _serve(lab: Target, step: Step) -> Outcome:
    problem = lab.serve(step.host, list(step.args))
    where = f"{step.host} serving {', '.join(p if '/' in p else f'{p}/tcp' for p in step.args)}"
    return Outcome(step, not problem, f"{where}: {problem}" if problem else where)


def _show(lab: Target, step: Step) -> Outcome:
    d = lab.gateway_cmd(list(step.args))
    text = d.out if d.status == 0 else d.out + d.err
    return Outcome(step, d.status == 0, text)


def run_step(lab: Target, step: Step) -> Outcome:
    from ipgate.lab import clientsteps

    kinds = {"ping": _ping, "serve": _serve, "show": _show, **clientsteps.KINDS}
    return kinds[step.kind](lab, step)
