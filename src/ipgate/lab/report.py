"""What `ipgate lab` prints: the lab, each step as it runs, what the servers saw, the verdict."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, TextIO

from ipgate.lab.steps import Outcome

if TYPE_CHECKING:
    from ipgate.lab.run import Lab, Report

WIDTH = 100
LOG_TAIL = 20


def print_header(lab: Lab, out: TextIO) -> None:
    topo = lab.topo
    who = "the kernel (iptables-legacy)" if lab.kernel else "ipgate run"
    out.write(f"== ipgate lab {topo.name}: gateway = {who} ==\n")
    if topo.about:
        out.write(textwrap.fill(topo.about, WIDTH) + "\n")
    shorts = [ns.removeprefix(lab.ns.name("")) for ns in lab.ns.created]
    out.write(f"namespaces: {lab.ns.name('')}{{{','.join(shorts)}}}\n")
    if lab.kernel:
        out.write(f"gateway: the kernel of namespace {lab.ns.name(lab.gw_ns)}, configured by the same script;\n"
                  "listings: the real tools (ip, iptables-legacy, conntrack) in that namespace\n")
    elif lab.gw is not None:
        attach = " ".join(f"--attach {lk.ifname}={lk.ifname}" for lk in topo.gateway.links)
        out.write(f"gateway: ipgate run -c gw.conf {attach} in {lab.ns.name(lab.gw_ns)} (pid {lab.gw.pid}), "
                  f"control socket {lab.sock}\n"
                  f"listings: over the control socket (ipgate --control {lab.sock} COMMAND)\n")
    out.write("\n")
    out.flush()


def print_outcome(o: Outcome, out: TextIO) -> None:
    if o.step.kind == "show":
        out.write(f"$ {' '.join(o.step.args)}{'' if o.ok else '   [FAILED]'}\n{o.text}")
        if o.text and not o.text.endswith("\n"):
            out.write("\n")
        out.write("\n")
    else:
        out.write(f"[{' ok ' if o.ok else 'FAIL'}] {o.text}\n")
    out.flush()


def print_keep(lab: Lab, out: TextIO) -> None:
    out.write("The lab stays up until Ctrl-C (or SIGTERM). Try:\n"
              f"  ip netns exec {lab.ns.name(lab.topo.hosts[0].name)} ip route\n")
    if not lab.kernel:
        out.write(f"  ipgate --control {lab.sock} conntrack -L\n")
    else:
        out.write(f"  ip netns exec {lab.ns.name(lab.gw_ns)} conntrack -L\n")
    out.write("\n")
    out.flush()


def print_summary(r: Report, out: TextIO) -> None:
    clients = {o.seen: o for o in r.outcomes if o.seen}
    if r.seen:
        out.write("What the server saw as the client address of each connection:\n")
        for c in r.seen:
            o = clients.get(c.peer)
            who = f"   (from {o.step.host} {o.client})" if o is not None else ""
            out.write(f"  {c.host} {c.kind:<8} port {c.port:<5} {c.peer:<22}{who}\n")
        out.write("\n")
    failed = [o for o in r.outcomes if not o.ok]
    who = "the kernel" if r.kernel else "ipgate"
    status = "" if r.gw_status is None else f", ipgate run exited with status {r.gw_status}"
    out.write(f"{len(r.outcomes) - len(failed)} of {len(r.outcomes)} steps ok "
              f"in {r.seconds:.1f} s, gateway {who}{status}.\n")
    for o in failed:
        out.write(f"  failed: {o.step.text}\n")
    if r.problems:
        out.write("Teardown left something behind:\n" + "".join(f"  {p}\n" for p in r.problems))
    else:
        out.write("Lab torn down: no namespace, link or process left.\n")
    if (failed or r.gw_status not in (None, 0)) and r.gw_log:
        out.write("The gateway's log (last lines):\n")
        out.write("".join(f"  {ln}\n" for ln in r.gw_log.splitlines()[-LOG_TAIL:]))
