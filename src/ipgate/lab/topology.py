"""A lab's description: hosts, LANs, the gateway and the steps, in TOML.

    name = "demo"
    about = "one line or a paragraph"
    steps = ["serve server 80", "ping lan1 203.0.113.10", "tcp lan1 203.0.113.10:80 expect 192.0.2.2",
             "show ip rule list"]

    [gateway]                        # a namespace where `ipgate run` attaches to its veth ends
    links = { eth0 = "lan", eth1 = "uplink1" }   # configuration interface = LAN it is wired to
    config = '''ip link add eth0 type dummy ...'''   # the script, inline; or config_file = "gw.conf"
    files = { "ipnat.conf" = '''rdr ...''' }     # written beside the script (`ipnat -f ipnat.conf`)

    [hosts.lan1]                     # one namespace per host
    links = { eth0 = "lan 10.0.0.2/24" }         # interface = "LAN ADDRESS/LEN ..."
    routes = ["default via 10.0.0.1"]            # `ip route add` arguments
    forward = false                  # true for a router

A LAN with two members is one veth pair; with more, a bridge in a namespace
of its own (``sw-LAN``).  Hosts may only use documentation and private
addresses: a lab never reaches anything outside its namespaces.  `load`
finds the built-in `demo` and the scenarios of lab/scenarios/ by name.

Steps (stepparse.py; every client and server is bounded in time):
        serve HOST PORT[/udp|/ftp]...      servers on HOST: TCP (lines, HTTP), UDP (DNS-like), FTP
        ping HOST DST [COUNT]              every echo must be answered
        tcp HOST DST:PORT [OPTIONS]        a line exchange; OPTIONS: expect ADDR (the client address
                                           the server saw), ports LO-HI (its source port)
        udp HOST DST:PORT [OPTIONS]        a DNS query answered with a TXT record; the same options
        http HOST DST:PORT [OPTIONS]       GET /; also `from NAME`: the server (host) that answered
        ftp HOST DST:PORT MODE [expect A]  ftplib: LIST and RETR in MODE active, eprt, passive or epsv
        fill HOST DST:TPORT UPORT MAX FLOWS [expect ROOM FULL]   conntrack table full (clients.py)
        arp HOST ADDR...                   HOST's neighbour table has every ADDR, all at one MAC
        log TEXT...                        the gateway's log has TEXT
        show COMMAND...                    a listing of the gateway (ip, iptables, conntrack, ifconfig,
                                           route, ipnat)
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")  # namespaces and LANs: short, they end up in names
IFNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,14}$")
ALLOWED = tuple(ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",  # documentation (RFC 5737)
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # private (RFC 1918)
))
SHOW_TOOLS = ("ip", "iptables", "iptables-save", "conntrack", "ifconfig", "route", "ipnat")
FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
MAX_STEPS = 200
MAX_NODES = 32


class TopologyError(ValueError):
    """The description is not a valid lab."""


@dataclass(frozen=True, slots=True)
class Link:
    node: str  # the namespace's short name
    ifname: str
    lan: str
    addrs: tuple[str, ...] = ()  # "10.0.0.2/24"; the gateway's come from its configuration


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    links: tuple[Link, ...]
    routes: tuple[tuple[str, ...], ...] = ()
    forward: bool = False


@dataclass(frozen=True, slots=True)
class Gateway:
    name: str
    links: tuple[Link, ...]
    config: str  # the configuration script's text
    config_name: str  # where it came from, for messages
    files: tuple[tuple[str, str], ...] = ()  # (name, text) written beside the script (`ipnat -f NAME`)


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # serve, ping, tcp, show
    host: str  # "" for show
    args: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    about: str
    gateway: Gateway
    hosts: tuple[Host, ...]
    steps: tuple[Step, ...]

    def lans(self) -> dict[str, list[Link]]:
        """Each LAN's members, gateway first, then hosts in order."""
        out: dict[str, list[Link]] = {}
        for link in (*self.gateway.links, *(lk for h in self.hosts for lk in h.links)):
            out.setdefault(link.lan, []).append(link)
        return out

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)


def allowed(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in ALLOWED)


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    v = data.get(key, {})
    if not isinstance(v, dict):
        raise TopologyError(f"{where}: `{key}` must be a table")
    return v


def _str(data: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    v = data.get(key, default)
    if not isinstance(v, str):
        raise TopologyError(f"{where}: `{key}` must be a string")
    return v


def _strings(data: Mapping[str, Any], key: str, where: str) -> list[str]:
    v = data.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise TopologyError(f"{where}: `{key}` must be a list of strings")
    return list(v)


def _unknown(data: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    extra = sorted(set(data) - set(known))
    if extra:
        raise TopologyError(f"{where}: unknown key {extra[0]!r} (known: {', '.join(known)})")


def _name(text: str, what: str) -> str:
    if not NAME_RE.match(text):
        raise TopologyError(f"{what} {text!r}: use a lowercase letter then up to 9 letters or digits")
    return text


def _links(node: str, data: Mapping[str, Any], where: str, with_addrs: bool) -> tuple[Link, ...]:
    links: list[Link] = []
    for ifname, spec in _table(data, "links", where).items():
        if not IFNAME_RE.match(ifname) or not isinstance(spec, str) or not spec.split():
            raise TopologyError(f"{where}: link {ifname!r} = {spec!r}: expected IFNAME = \"LAN [ADDR/LEN ...]\"")
        lan, *addrs = spec.split()
        if addrs and not with_addrs:
            raise TopologyError(f"{where}: {ifname}: the gateway's addresses belong in its configuration")
        for a in addrs:
            try:
                iface = ipaddress.ip_interface(a)
            except ValueError:
                raise TopologyError(f"{where}: {ifname}: bad address {a!r}") from None
            if iface.version != 4 or "/" not in a or not allowed(str(iface.ip)):
                raise TopologyError(f"{where}: {ifname}: {a}: IPv4 ADDR/LEN, documentation or private only")
        links.append(Link(node, ifname, _name(lan, "LAN"), tuple(addrs)))
    if not links:
        raise TopologyError(f"{where}: no links")
    return tuple(links)


def _route(text: str, where: str) -> tuple[str, ...]:
    words = tuple(text.split())
    for w in words:
        if re.fullmatch(r"[0-9.]+(/\d+)?", w) and not allowed(w.split("/")[0]):
            raise TopologyError(f"{where}: route {text!r}: {w} is not a documentation or private address")
    if not words:
        raise TopologyError(f"{where}: empty route")
    return words


def _host(name: str, data: Any) -> Host:
    where = f"hosts.{name}"
    if not isinstance(data, dict):
        raise TopologyError(f"{where} must be a table")
    _unknown(data, ("links", "routes", "forward"), where)
    forward = data.get("forward", False)
    if not isinstance(forward, bool):
        raise TopologyError(f"{where}: `forward` must be true or false")
    routes = tuple(_route(r, where) for r in _strings(data, "routes", where))
    return Host(_name(name, "host"), _links(name, data, where, True), routes, forward)


def _files(data: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    for fname, text in data.items():
        if not FILE_RE.match(fname) or fname == "gw.conf" or not isinstance(text, str):
            raise TopologyError(f"gateway.files: {fname!r}: expected NAME = \"text\" (a plain file name)")
    return tuple(data.items())


def _gateway(data: Mapping[str, Any], base: Path | None) -> Gateway:
    where = "gateway"
    _unknown(data, ("name", "links", "config", "config_file", "files"), where)
    name = _name(_str(data, "name", where, "gw"), "gateway")
    files = _files(_table(data, "files", where))
    if ("config" in data) == ("config_file" in data):
        raise TopologyError("gateway: give exactly one of `config` (the script) or `config_file`")
    if "config" in data:
        return Gateway(name, _links(name, data, where, False), _str(data, "config", where), "gateway.config", files)
    path = Path(_str(data, "config_file", where))
    if not path.is_absolute():
        if base is None:
            raise TopologyError("gateway: a built-in topology cannot reference a file")
        path = base / path
    try:
        text = path.read_text()
    except OSError as e:
        raise TopologyError(f"gateway: config_file {path}: {e.strerror}") from None
    return Gateway(name, _links(name, data, where, False), text, str(path), files)


def parse(text: str, base: Path | None = None) -> Topology:
    """A topology from its TOML text; `base` is where relative `config_file` paths start."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TopologyError(f"not TOML: {e}") from None
    _unknown(data, ("name", "about", "steps", "gateway", "hosts"), "topology")
    gateway = _gateway(_table(data, "gateway", "topology"), base)
    hosts = tuple(_host(n, d) for n, d in _table(data, "hosts", "topology").items())
    names = [gateway.name, *(h.name for h in hosts)]
    if len(set(names)) != len(names):
        raise TopologyError("two nodes have the same name")
    if len(names) > MAX_NODES:
        raise TopologyError(f"at most {MAX_NODES} nodes")
    step_texts = _strings(data, "steps", "topology")
    if len(step_texts) > MAX_STEPS:
        raise TopologyError(f"at most {MAX_STEPS} steps")
    from ipgate.lab.stepparse import parse_step

    steps = tuple(parse_step(s, {h.name for h in hosts}) for s in step_texts)
    topo = Topology(_str(data, "name", "topology", "lab"), _str(data, "about", "topology", ""), gateway, hosts, steps)
    for lan, members in topo.lans().items():
        if len(members) < 2:
            raise TopologyError(f"LAN {lan!r} has one member ({members[0].node} {members[0].ifname})")
        if lan in names:
            raise TopologyError(f"LAN {lan!r} has the name of a node")
    for h in hosts:
        for lk in h.links:
            if sum(1 for x in h.links if x.ifname == lk.ifname) > 1:
                raise TopologyError(f"hosts.{h.name}: interface {lk.ifname} twice")
    return topo


def names() -> list[str]:
    """The topologies `load` knows by name: the built-in demo, then the scenarios."""
    from ipgate.lab.builtin import BUILTIN

    return [*BUILTIN, *sorted(p.stem for p in SCENARIOS.glob("*.toml"))]


def load(spec: str) -> Topology:
    """A topology by name (`demo`, or a scenario of lab/scenarios/), or a TOML file."""
    from ipgate.lab.builtin import BUILTIN

    if spec in BUILTIN:
        return parse(BUILTIN[spec])
    path = Path(spec)
    if FILE_RE.match(spec) and not spec.endswith(".toml") and (SCENARIOS / f"{spec}.toml").is_file():
        path = SCENARIOS / f"{spec}.toml"
    try:
        text = path.read_text()
    except OSError as e:
        raise TopologyError(f"{spec}: {e.strerror} (topologies by name: {', '.join(names())})") from None
    return parse(text, path.resolve().parent)
