"""The client steps (tcp, udp, http, ftp, fill) and the checks on hosts and logs (arp, log).

Each runs a client of agent.py/clients.py in the host's namespace and compares what it and the
servers saw (Lab.server_view) with the step's options (stepparse.py).
"""

from __future__ import annotations

from ipgate.lab.stepparse import endpoint, options, port_range
from ipgate.lab.steps import Outcome, Target
from ipgate.lab.topology import Step

CLIENT_TIMEOUT = 15.0
FTP_TIMEOUT = 40.0
FILL_TIMEOUT = 60.0


def _addr(peer: str) -> str:
    return peer.rpartition(":")[0]


def _problems(step: Step, seen: str, server: str = "") -> list[str]:
    """What the options asked for and did not get."""
    out = []
    opts = options(step)
    if "expect" in opts and _addr(seen) != opts["expect"][0]:
        out.append(f"expected {opts['expect'][0]}")
    if "ports" in opts:
        lo, hi = port_range(opts["ports"][0]) or (0, 0)
        if not lo <= int(seen.rpartition(":")[2]) <= hi:
            out.append(f"expected a port in {lo}-{hi}")
    if "from" in opts and server != opts["from"][0]:
        out.append(f"expected server {opts['from'][0]}")
    return out


def _exchange(lab: Target, step: Step) -> Outcome:
    """tcp, udp, http: one exchange; the client prints `local A:P [server NAME] seen B:Q`."""
    dst = step.args[0]
    d = lab.agent(step.host, step.kind, *dst.split(":"), timeout=CLIENT_TIMEOUT)
    words = d.out.split()
    shape = 6 if step.kind == "http" else 4
    if d.status != 0 or len(words) != shape:
        return Outcome(step, False, f"{step.host} {step.kind} -> {dst}: {d.out.strip() or d.err.strip()}")
    client, seen = words[1], words[-1]
    server = words[3] if step.kind == "http" else ""
    who = f"server {server} saw" if server else "the server saw"
    line = f"{step.host} {client} -> {dst} ({step.kind}): {who} {seen}"
    missing = _problems(step, seen, server)
    text = f"{line}, {', '.join(missing)}" if missing else line
    return Outcome(step, not missing, text, client, seen, server)


def _new(lab: Target, before: int) -> list[tuple[str, str]]:
    """(kind, peer) of what the servers logged since `before` entries."""
    return [(c.kind, c.peer) for c in lab.server_view()[before:]]


def _ftp(lab: Target, step: Step) -> Outcome:
    dst, mode = step.args[0], step.args[1]
    addr, port = endpoint(dst) or ("", 0)
    before = len(lab.server_view())
    d = lab.agent(step.host, "ftp", addr, str(port), mode, timeout=FTP_TIMEOUT)
    words = d.out.split()
    if d.status != 0 or len(words) != 6:
        return Outcome(step, False, f"{step.host} ftp {mode} -> {dst}: {d.out.strip() or d.err.strip()}")
    client, nbytes = words[1], words[5]
    new = _new(lab, before)
    ctl = [p for k, p in new if k == "ftp-ctl"]
    data_kind = "ftp-port" if mode in ("active", "eprt") else "ftp-data"
    data = [p for k, p in new if k == data_kind]
    seen = ctl[0] if len(ctl) == 1 else "?"
    what = "PORT/EPRT named" if data_kind == "ftp-port" else "data came from"
    line = (f"{step.host} {client} -> {dst} ftp {mode}: LIST and RETR of {nbytes} bytes; the server saw control "
            f"from {seen}, {what} {', '.join(data) or 'nothing'}")
    want = options(step).get("expect", [""])[0]
    missing = []
    if len(data) != 2:
        missing.append(f"expected 2 data connections, not {len(data)}")
    if want and any(_addr(p) != want for p in [seen, *data]):
        missing.append(f"expected {want}")
    return Outcome(step, not missing, f"{line}, {', '.join(missing)}" if missing else line, client, seen)


def _fill(lab: Target, step: Step) -> Outcome:
    addr, tport = endpoint(step.args[0]) or ("", 0)
    uport, maximum, flows = step.args[1:4]
    before = len(lab.server_view())
    d = lab.agent(step.host, "fill", addr, str(tport), uport, maximum, flows, timeout=FILL_TIMEOUT)
    w = d.out.split()
    if len(w) != 8 or w[0] != "held":
        return Outcome(step, False, f"{step.host} fill -> {addr}: {d.out.strip() or d.err.strip()}")
    held, room, full, after = (int(x) for x in w[1::2])
    received = sum(1 for k, _ in _new(lab, before) if k == "udp")
    text = (f"{step.host} -> {addr}: {held} TCP connections held (table max {maximum}); new UDP flows answered: "
            f"{room} of {flows} with room left, {full} of {flows} once the table was full; the server received "
            f"{received} datagrams; {after} of {maximum} TCP connections still answer")
    missing = []
    if d.status != 0:
        missing.append("a TCP connection failed")
    want = options(step).get("expect")
    if want is not None and [room, full] != [int(x) for x in want]:
        missing.append(f"expected {want[0]} and {want[1]} answered")
    if received != room + full:
        missing.append("the server's count differs")
    return Outcome(step, not missing, f"{text}, {', '.join(missing)}" if missing else text)


def _arp(lab: Target, step: Step) -> Outcome:
    d = lab.host_cmd(step.host, ["ip", "neigh", "show"])
    macs: dict[str, str] = {}
    for line in d.out.splitlines():
        w = line.split()
        if len(w) >= 5 and w[3] == "lladdr" and w[-1] not in ("FAILED", "INCOMPLETE"):
            macs[w[0]] = w[4]
    got = {a: macs[a] for a in step.args if a in macs}
    missing = [a for a in step.args if a not in got]
    one = len(set(got.values())) == 1
    text = (f"{step.host}'s neighbour table: {len(got)} of {len(step.args)} addresses resolved"
            + (f", all at {next(iter(got.values()))}" if one else f": {got}")
            + (f"; missing {', '.join(missing)}" if missing else ""))
    return Outcome(step, not missing and one, text)


def _log(lab: Target, step: Step) -> Outcome:
    want = " ".join(step.args)
    if lab.kernel:
        return Outcome(step, True, f"not checked: the kernel logs {want!r} to the host's ring buffer")
    found = [ln for ln in lab.log().splitlines() if want in ln]
    if not found:
        return Outcome(step, False, f"the gateway's log has no {want!r}")
    return Outcome(step, True, f"the gateway's log, {len(found)} line(s): {found[0].strip()}")


KINDS = {"tcp": _exchange, "udp": _exchange, "http": _exchange, "ftp": _ftp, "fill": _fill, "arp": _arp,
         "log": _log}
