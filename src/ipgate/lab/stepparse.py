"""The steps' grammar (topology.py's docstring lists them) and their options.

A client step is `KIND HOST POSITIONAL... [OPTION VALUE]...`; the options say what must be true:

    expect ADDR     the server saw the client coming from ADDR (ftp: the control connection, and the
                    address in PORT/EPRT or the peer of the passive data connection)
    ports LO-HI     ... from a source port in LO-HI
    from NAME       http: the answer came from the server named NAME (its host name)
    expect A B      fill: UDP flows answered while there is room, and once the table is full
"""

from __future__ import annotations

import re

from ipgate.lab.topology import SHOW_TOOLS, Step, TopologyError, allowed

SERVE_RE = re.compile(r"^(\d{1,5})(/(tcp|udp|ftp))?$")
FTP_MODES = ("active", "eprt", "passive", "epsv")
# kind -> (positional words after HOST, options allowed)
CLIENTS: dict[str, tuple[int, tuple[str, ...]]] = {
    "tcp": (1, ("expect", "ports")), "udp": (1, ("expect", "ports")), "http": (1, ("expect", "ports", "from")),
    "ftp": (2, ("expect",)), "fill": (4, ("expect",)),
}
KINDS = ("serve", "ping", *CLIENTS, "arp", "log", "show")
USAGE = {
    "serve": "serve HOST PORT[/udp|/ftp]...",
    "ping": "ping HOST DST [COUNT <= 100], DST a documentation or private address",
    "tcp": "tcp HOST DST:PORT [expect ADDR] [ports LO-HI]",
    "udp": "udp HOST DST:PORT [expect ADDR] [ports LO-HI]",
    "http": "http HOST DST:PORT [expect ADDR] [ports LO-HI] [from NAME]",
    "ftp": f"ftp HOST DST:PORT {'|'.join(FTP_MODES)} [expect ADDR]",
    "fill": "fill HOST DST:TCPPORT UDPPORT MAX FLOWS [expect ROOM FULL]",
    "arp": "arp HOST ADDR...",
    "log": "log TEXT...",
}


def _port(text: str) -> bool:
    return text.isdigit() and 0 < int(text) < 65536


def endpoint(text: str) -> tuple[str, int] | None:
    addr, sep, port = text.rpartition(":")
    return (addr, int(port)) if sep and _port(port) and allowed(addr) else None


def options(step: Step) -> dict[str, list[str]]:
    """A client step's options: name -> its words."""
    npos = CLIENTS[step.kind][0]
    rest = list(step.args[npos:])
    out: dict[str, list[str]] = {}
    while rest:
        key = rest.pop(0)
        n = 2 if step.kind == "fill" and key == "expect" else 1
        out[key], rest = rest[:n], rest[n:]
    return out


def port_range(text: str) -> tuple[int, int] | None:
    lo, sep, hi = text.partition("-")
    if sep and _port(lo) and _port(hi) and int(lo) <= int(hi):
        return int(lo), int(hi)
    return None


def _check_options(kind: str, args: tuple[str, ...], where: str) -> None:
    npos, known = CLIENTS[kind]
    rest = list(args[npos:])
    while rest:
        key = rest.pop(0)
        n = 2 if kind == "fill" and key == "expect" else 1
        vals, rest = rest[:n], rest[n:]
        ok = key in known and len(vals) == n and (
            (key == "expect" and kind == "fill" and all(v.isdigit() for v in vals))
            or (key == "expect" and kind != "fill" and allowed(vals[0]))
            or (key == "ports" and port_range(vals[0]) is not None)
            or (key == "from" and re.fullmatch(r"[a-z][a-z0-9]{0,9}", vals[0]) is not None))
        if not ok:
            raise TopologyError(f"{where}: {USAGE[kind]}")


def _positional(kind: str, args: tuple[str, ...]) -> bool:
    npos = CLIENTS[kind][0]
    if len(args) < npos or endpoint(args[0]) is None:
        return False
    if kind == "ftp":
        return args[1] in FTP_MODES
    if kind == "fill":
        return _port(args[1]) and all(a.isdigit() and 1 <= int(a) <= 1000 for a in args[2:4])
    return True


def parse_step(text: str, hosts: set[str]) -> Step:
    where = f"step {text!r}"
    words = text.split()
    if not words:
        raise TopologyError("empty step")
    kind, rest = words[0], words[1:]
    if kind == "show":
        if not rest or rest[0] not in SHOW_TOOLS:
            raise TopologyError(f"{where}: show one of {', '.join(SHOW_TOOLS)}")
        return Step(kind, "", tuple(rest), text)
    if kind == "log":
        if not rest:
            raise TopologyError(f"{where}: {USAGE['log']}")
        return Step(kind, "", tuple(rest), text)
    if kind not in KINDS:
        raise TopologyError(f"{where}: unknown step ({', '.join(KINDS)})")
    if not rest or rest[0] not in hosts:
        raise TopologyError(f"{where}: the second word must be a host")
    host, args = rest[0], tuple(rest[1:])
    if kind == "serve" and (not args or not all((m := SERVE_RE.match(a)) and _port(m[1]) for a in args)):
        raise TopologyError(f"{where}: {USAGE['serve']}")
    if kind == "ping" and not (1 <= len(args) <= 2 and allowed(args[0])
                               and (len(args) == 1 or args[1].isdigit() and 1 <= int(args[1]) <= 100)):
        raise TopologyError(f"{where}: {USAGE['ping']}")
    if kind == "arp" and not (args and all(allowed(a) for a in args)):
        raise TopologyError(f"{where}: {USAGE['arp']}")
    if kind in CLIENTS:
        if not _positional(kind, args):
            raise TopologyError(f"{where}: {USAGE[kind]}")
        _check_options(kind, args, where)
    return Step(kind, host, args, text)
