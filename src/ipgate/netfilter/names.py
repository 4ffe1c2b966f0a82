"""Numbers, addresses and names the way iptables 1.8.9 reads and writes them.

The C library does part of iptables' parsing, so its quirks are copied here:
`c_strtoul` is strtoumax (base 0: ``0x`` hex, leading ``0`` octal), `xt_strtoul`
is libxtables' xtables_strtoul_base, `numeric_to_ipaddr` is libxtables'
__numeric_to_ipaddr ("10.1" means 10.1.0.0), `inet_aton` is glibc's (what
getaddrinfo falls back to: "0x01020304", "10.258").

`Resolver` plays the NSS "files" backend: services, protocols, hosts and
networks.  Nothing here queries DNS: an address that /etc/hosts and
/etc/networks do not name prints numerically, which is what the real tool
prints when DNS does not answer (the oracle namespaces have no resolver).
`Resolver.builtin()` uses netbase copies so outputs do not depend on the host;
`Resolver.system()` reads /etc like the real tool does.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass, field

from ipgate.netfilter import _netdb

UINTMAX = (1 << 64) - 1
C_SPACE = " \t\n\v\f\r"
_DIGITS = {c: i for i, c in enumerate(string.digits + string.ascii_lowercase)}


def c_strtoul(s: str, base: int = 0) -> tuple[int, int, bool]:
    """C strtoumax(): (value, end index, overflow); end is 0 if nothing was converted."""
    i, n = 0, len(s)
    while i < n and s[i] in C_SPACE:
        i += 1
    neg = False
    if i < n and s[i] in "+-":
        neg = s[i] == "-"
        i += 1

    def hexprefix(j: int) -> bool:
        return s[j:j + 2] in ("0x", "0X") and j + 2 < n and s[j + 2].lower() in _DIGITS \
            and _DIGITS[s[j + 2].lower()] < 16

    if base == 0:
        if hexprefix(i):
            base, i = 16, i + 2
        elif i < n and s[i] == "0":
            base = 8
        else:
            base = 10
    elif base == 16 and hexprefix(i):
        i += 2
    start, val = i, 0
    while i < n:
        d = _DIGITS.get(s[i].lower()) if s[i].isascii() else None
        if d is None or d >= base:
            break
        val = val * base + d
        i += 1
    if i == start:
        return 0, 0, False
    if val > UINTMAX:
        return UINTMAX, i, True
    if neg:
        val = (-val) & UINTMAX
    return val, i, False


def xt_strtoul(s: str, lo: int, hi: int, base: int = 0) -> tuple[int, int] | None:
    """xtables_strtoul_base(): (value, end) or None; no minus sign, `hi` 0 means unbounded."""
    if s.lstrip(C_SPACE).startswith("-"):
        return None
    v, end, overflow = c_strtoul(s, base)
    if end == 0 or overflow or v < lo or (hi != 0 and v > hi):
        return None
    return v, end


def xt_strtoui(s: str, lo: int, hi: int, base: int = 0) -> int | None:
    """xtables_strtoui() with end == NULL: the whole string must be the number."""
    r = xt_strtoul(s, lo, hi, base)
    if r is None or r[1] != len(s):
        return None
    return r[0]


def numeric_to_ipaddr(text: str, is_mask: bool = False) -> int | None:
    """libxtables __numeric_to_ipaddr(): 1 to 4 dotted parts, missing parts are 0."""
    buf = text[:19]  # strncpy into char buf[20]
    parts = buf.split(".", 3)
    if len(parts) < 4 and is_mask:
        return None
    octets: list[int] = []
    for p in parts:
        v = xt_strtoui(p, 0, 255)
        if v is None:
            return None
        octets.append(v)
    octets += [0] * (4 - len(octets))
    return (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]


def inet_aton(text: str) -> int | None:
    """glibc inet_aton_exact(): "a", "a.b", "a.b.c", "a.b.c.d" in C number syntax."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    vals: list[int] = []
    for p in parts:
        if not p or not p[0].isdigit():
            return None
        v, end, overflow = c_strtoul(p)
        if end != len(p) or overflow:
            return None
        vals.append(v)
    limits = {1: (0xFFFFFFFF,), 2: (0xFF, 0xFFFFFF), 3: (0xFF, 0xFF, 0xFFFF), 4: (0xFF,) * 4}[len(vals)]
    if any(v > lim for v, lim in zip(vals, limits, strict=True)):
        return None
    if len(vals) == 1:
        return vals[0]
    addr = 0
    for i, v in enumerate(vals[:-1]):
        addr |= v << (24 - 8 * i)
    return addr | vals[-1]


def inet_network(text: str) -> int | None:
    """glibc inet_network(): parts combine as (val << 8) | part, as /etc/networks is read."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    val = 0
    for p in parts:
        if not p:
            return None
        v, end, overflow = c_strtoul(p)
        if end != len(p) or overflow or v > 255 and len(parts) > 1:
            return None
        val = (val << 8) | v
    return val & 0xFFFFFFFF


def ntoa(addr: int) -> str:
    return f"{addr >> 24}.{(addr >> 16) & 255}.{(addr >> 8) & 255}.{addr & 255}"


def mask_to_numeric(mask: int) -> str:
    """xtables_ipmask_to_numeric(): "" for /32, "/N" for CIDR masks, "/a.b.c.d" otherwise."""
    if mask == 0xFFFFFFFF:
        return ""
    i, bits = 32, 0xFFFFFFFE
    while True:
        i -= 1
        if i < 0 or mask == bits:
            break
        bits = (bits << 1) & 0xFFFFFFFF
    return f"/{i}" if i >= 0 else "/" + ntoa(mask)


def save_mask(mask: int) -> str:
    """print_ip() of iptables-save: always a suffix, "/32" included."""
    if mask == 0xFFFFFFFF:
        return "/32"
    return mask_to_numeric(mask)


def mask_bits(plen: int) -> int:
    return (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0


@dataclass(slots=True)
class Resolver:
    """The NSS "files" databases iptables consults (getservby*, getprotoby*, gethostby*, getnetby*)."""

    services: list[tuple[str, int, str, tuple[str, ...]]] = field(default_factory=list)
    protocols: list[tuple[str, int, tuple[str, ...]]] = field(default_factory=list)
    hosts: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)
    networks: list[tuple[str, int, tuple[str, ...]]] = field(default_factory=list)
    _by_port: dict[tuple[int, str], str] = field(default_factory=dict)
    _by_service: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, port, proto, aliases in self.services:
            self._by_port.setdefault((port, proto), name)
            for n in (name, *aliases):
                self._by_service.setdefault((n, proto), port)

    # -- constructors ------------------------------------------------------
    @classmethod
    def builtin(cls) -> Resolver:
        return cls(services=parse_services(_netdb.SERVICES.replace(";", "\n")),
                   protocols=parse_protocols(_netdb.PROTOCOLS.replace(";", "\n")),
                   hosts=[(0x7F000001, ("localhost",))],
                   networks=[("default", 0, ()), ("loopback", 0x7F000000, ()), ("link-local", 0xA9FE0000, ())])

    def __copy__(self) -> Resolver:
        return self  # never changed after construction: copies of a Netfilter share it

    def __deepcopy__(self, memo: dict[int, object]) -> Resolver:
        return self

    @classmethod
    def system(cls, etc: str = "/etc") -> Resolver:
        """Read `etc`/services, protocols, hosts, networks (once per process); missing files fall back."""
        cached = _SYSTEM.get(etc)
        if cached is None:
            cached = _SYSTEM[etc] = cls._read(etc)
        return cached

    @classmethod
    def _read(cls, etc: str) -> Resolver:
        base = cls.builtin()

        def read(name: str) -> str | None:
            try:
                with open(os.path.join(etc, name), encoding="utf-8", errors="replace") as f:
                    return f.read()
            except OSError:
                return None

        svc, proto, hosts, nets = read("services"), read("protocols"), read("hosts"), read("networks")
        return cls(services=parse_services(svc) if svc is not None else base.services,
                   protocols=parse_protocols(proto) if proto is not None else base.protocols,
                   hosts=parse_hosts(hosts) if hosts is not None else base.hosts,
                   networks=parse_networks(nets) if nets is not None else base.networks)

    # -- lookups -----------------------------------------------------------
    def port_name(self, port: int, proto: str) -> str | None:
        """getservbyport()."""
        return self._by_port.get((port, proto))

    def service_port(self, name: str, proto: str | None) -> int | None:
        """getservbyname(); proto None means any protocol (first entry wins)."""
        if proto is not None:
            return self._by_service.get((name, proto))
        for n, port, _p, aliases in self.services:
            if name == n or name in aliases:
                return port
        return None

    def proto_name(self, num: int) -> str | None:
        """getprotobynumber()."""
        for name, n, _aliases in self.protocols:
            if n == num:
                return name
        return None

    def proto_number(self, name: str) -> int | None:
        """getprotobyname(): official names and aliases, case-sensitive."""
        for n, num, aliases in self.protocols:
            if name == n or name in aliases:
                return num
        return None

    def host_name(self, addr: int) -> str | None:
        """gethostbyaddr() from /etc/hosts: the first line's canonical name."""
        for a, names in self.hosts:
            if a == addr:
                return names[0]
        return None

    def host_addrs(self, name: str) -> list[int]:
        """getaddrinfo() from /etc/hosts ("multi on"): every address of the name, in file order."""
        out: list[int] = []
        low = name.lower()
        for a, names in self.hosts:
            if any(low == n.lower() for n in names) and a not in out:
                out.append(a)
        return out

    def net_name(self, addr: int) -> str | None:
        """getnetbyaddr()."""
        for name, net, _aliases in self.networks:
            if net == addr:
                return name
        return None

    def net_number(self, name: str) -> int | None:
        """getnetbyname()."""
        for n, net, aliases in self.networks:
            if name == n or name in aliases:
                return net
        return None

    def addr_to_anyname(self, addr: int) -> str:
        """xtables_ipaddr_to_anyname(): host name, else network name, else dotted quad."""
        return self.host_name(addr) or self.net_name(addr) or ntoa(addr)


_SYSTEM: dict[str, Resolver] = {}


def _lines(text: str) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            out.append(words)
    return out


def parse_services(text: str) -> list[tuple[str, int, str, tuple[str, ...]]]:
    out = []
    for w in _lines(text):
        if len(w) < 2 or "/" not in w[1]:
            continue
        port, _, proto = w[1].partition("/")
        if port.isdigit():
            out.append((w[0], int(port), proto, tuple(w[2:])))
    return out


def parse_protocols(text: str) -> list[tuple[str, int, tuple[str, ...]]]:
    return [(w[0], int(w[1]), tuple(w[2:])) for w in _lines(text) if len(w) >= 2 and w[1].isdigit()]


def parse_hosts(text: str) -> list[tuple[int, tuple[str, ...]]]:
    out = []
    for w in _lines(text):
        if len(w) >= 2 and ":" not in w[0]:
            a = inet_aton(w[0])
            if a is not None:
                out.append((a, tuple(w[1:])))
    return out


def parse_networks(text: str) -> list[tuple[str, int, tuple[str, ...]]]:
    out = []
    for w in _lines(text):
        if len(w) >= 2:
            net = inet_network(w[1])
            if net is not None:
                out.append((w[0], net, tuple(w[2:])))
    return out
