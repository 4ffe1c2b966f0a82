"""The steps of a lab scenario, run against a lab that is up (run.Lab).

Each step gives an `Outcome`: ok or not, and one line (or a listing) saying what happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ipgate.lab.netns import Done
from ipgate.lab.topology import Step, Topology

PING_COUNT = 3


class Target(Protocol):
    """What the steps need from a lab."""

    topo: Topology

    def agent(self, host: str, *args: str, timeout: float = ...) -> Done: ...

    def serve(self, host: str, ports: list[int]) -> str: ...

    def gateway_cmd(self, argv: list[str]) -> Done: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    step: Step
    ok: bool
    text: str  # one line, or the listing of a `show`
    client: str = ""  # tcp: the client's own address:port
    seen: str = ""  # tcp: the client address:port the server saw


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


def _tcp(lab: Target, step: Step) -> Outcome:
    addr, _, port = step.args[0].rpartition(":")
    d = lab.agent(step.host, "tcp", addr, port, timeout=15.0)
    words = d.out.split()
    if d.status != 0 or len(words) != 4:
        return Outcome(step, False, f"{step.host} -> {addr}:{port}: {d.out.strip() or d.err.strip()}")
    client, seen = words[1], words[3]
    line = f"{step.host} {client} -> {addr}:{port}: the server saw {seen}"
    want = step.args[2] if len(step.args) == 3 else None
    if want is not None and seen.rpartition(":")[0] != want:
        return Outcome(step, False, f"{line}, expected {want}", client, seen)
    return Outcome(step, True, line, client, seen)


def _serve(lab: Target, step: Step) -> Outcome:
    ports = [int(p) for p in step.args]
    problem = lab.serve(step.host, ports)
    where = f"{step.host} serving TCP port{'s' if len(ports) > 1 else ''} {', '.join(step.args)}"
    return Outcome(step, not problem, f"{where}: {problem}" if problem else where)


def _show(lab: Target, step: Step) -> Outcome:
    d = lab.gateway_cmd(list(step.args))
    text = d.out if d.status == 0 else d.out + d.err
    return Outcome(step, d.status == 0, text)


def run_step(lab: Target, step: Step) -> Outcome:
    kinds = {"ping": _ping, "tcp": _tcp, "serve": _serve, "show": _show}
    return kinds[step.kind](lab, step)
