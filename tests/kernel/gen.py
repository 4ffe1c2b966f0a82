"""Seeded random configurations and `ip route get` queries.

Everything is drawn from one `random.Random(seed)`, so a seed number fully
reproduces a case.  The generator keeps a rough model of what it configured
(subnets, local addresses, routes, rule prefs) so that most lines are valid
and queries hit interesting places; a minority of lines is deliberately
wrong so that acceptance/rejection is compared too.  The model is only a
guide: whatever the kernel really does is the oracle.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field

Net = ipaddress.IPv4Network
Addr = ipaddress.IPv4Address

# Only documentation/private space (plus loopback for queries), never routable.
POOLS: tuple[Net, ...] = tuple(Net(p) for p in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
LOOPBACK = Net("127.0.0.0/8")

# Valid IPv4 route/rule TOS values (ECN bits clear, within IPTOS_TOS_MASK).
GOOD_TOS = (0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C)
# Routes take any DSCP; rules reject >0x1e ("Invalid tos"); 0x01/0x02 are ECN.
ODD_TOS = (0x20, 0xB8, 0x02, 0x01, 0x11)
PROTOS = ("static", "boot", "bird", "zebra", "kernel", "50", "dhcp")
NAMED_TABLE_IDS = (42, 150, 250, 300, 1000)


@dataclass(frozen=True)
class Case:
    seed: int
    config: list[str]
    queries: list[str]  # arguments for `ip -j route get`


@dataclass
class _Iface:
    name: str
    up: bool = False
    subnets: list[Net] = field(default_factory=list)
    locals: list[Addr] = field(default_factory=list)


@dataclass
class _Model:
    ifaces: list[_Iface] = field(default_factory=list)
    tables: list[str] = field(default_factory=lambda: ["main", "100", "200"])
    table_name: str | None = None
    routes: list[str] = field(default_factory=list)   # route specs (after "add")
    rule_prefs: list[int] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)    # rule specs (after "add")
    prefixes: list[Net] = field(default_factory=list)  # everything we mentioned
    marks: list[int] = field(default_factory=list)
    tos: list[int] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)


def _chance(rng: random.Random, p: float) -> bool:
    return rng.random() < p


def rand_prefix(rng: random.Random, min_len: int = 8, max_len: int = 32) -> Net:
    pool = rng.choice(POOLS)
    lo = max(min_len, pool.prefixlen)
    weights = [1, 1, 2, 1, 2, 3, 6, 3, 3, 2, 2, 1, 2]
    lens = [8, 12, 16, 20, 22, 23, 24, 25, 26, 28, 29, 30, 32]
    cands = [(n, w) for n, w in zip(lens, weights, strict=True) if lo <= n <= max_len]
    if not cands:
        return pool
    plen = rng.choices([n for n, _ in cands], [w for _, w in cands])[0]
    span = 1 << (plen - pool.prefixlen)
    base = int(pool.network_address) + rng.randrange(span) * (1 << (32 - plen))
    return Net(f"{Addr(base)}/{plen}")


def host_in(rng: random.Random, net: Net) -> Addr:
    if net.num_addresses <= 2:
        return net.network_address + rng.randrange(net.num_addresses)
    return net.network_address + rng.randrange(1, net.num_addresses - 1)


def in_pools(x: Addr | Net) -> bool:
    if isinstance(x, Addr):
        return any(x in p for p in POOLS)
    return any(x.subnet_of(p) for p in POOLS)


def _subnet_near(rng: random.Random, m: _Model) -> Net:
    """A prefix that often overlaps/nests with what is configured already."""
    known = m.prefixes
    if known and _chance(rng, 0.5):
        base = rng.choice(known)
        plen = max(8, min(32, base.prefixlen + rng.choice((-8, -4, -1, 0, 1, 2, 4, 8))))
        net = Net(f"{host_in(rng, base)}/{plen}", strict=False)
        if in_pools(net):
            return net
    return rand_prefix(rng)


# -- configuration -------------------------------------------------------------

def _addr_lines(rng: random.Random, m: _Model, ifc: _Iface) -> list[str]:
    lines: list[str] = []
    for _ in range(rng.randint(1, 2)):
        if _chance(rng, 0.85):
            net = rand_prefix(rng, min_len=8, max_len=30)
        else:
            net = _subnet_near(rng, m)
        if net.prefixlen > 30:
            net = net.supernet(new_prefix=28)
        ifc.subnets.append(net)
        m.prefixes.append(net)
        # Primary plus 0-2 secondaries in the same subnet, some with labels.
        used: set[Addr] = set()
        for k in range(rng.choice((1, 1, 2, 3))):
            a = host_in(rng, net)
            if a in used and not _chance(rng, 0.5):
                continue  # occasionally keep the duplicate: "File exists"
            used.add(a)
            opts = [f"ip addr add {a}/{net.prefixlen} dev {ifc.name}"]
            if (k > 0 and _chance(rng, 0.4)) or _chance(rng, 0.1):
                opts.append(f"label {ifc.name}:{rng.randint(0, 9)}")
            if _chance(rng, 0.15):
                brd = net.broadcast_address if _chance(rng, 0.6) else host_in(rng, net)
                opts.append(f"broadcast {brd}")
            if _chance(rng, 0.12):
                opts.append(f"scope {rng.choice(('host', 'link', 'global'))}")
            if _chance(rng, 0.04):
                opts.append(f"label bogus{rng.randint(0, 9)}")  # invalid label
            lines.append(" ".join(opts))
            ifc.locals.append(a)
    if _chance(rng, 0.2):  # point-to-point style address
        local = host_in(rng, rand_prefix(rng, min_len=24, max_len=30))
        peer = rand_prefix(rng, min_len=24, max_len=32)
        lines.append(f"ip addr add {local} peer {peer} dev {ifc.name}")
        ifc.locals.append(local)
        m.prefixes.append(peer)
    if _chance(rng, 0.1):  # a host route's worth of address
        a = host_in(rng, rand_prefix(rng, min_len=24))
        lines.append(f"ip addr add {a}/32 dev {ifc.name}")
        ifc.locals.append(a)
    return lines


def _all_locals(m: _Model) -> list[Addr]:
    return [a for i in m.ifaces for a in i.locals]


def _gateway(rng: random.Random, m: _Model) -> tuple[Addr, _Iface | None]:
    """Mostly a reachable neighbour; sometimes a bogus or local one."""
    cands = [(i, n) for i in m.ifaces for n in i.subnets]
    r = rng.random()
    if cands and r < 0.8:
        ifc, net = rng.choice(cands)
        return host_in(rng, net), ifc
    if r < 0.88 and _all_locals(m):
        return rng.choice(_all_locals(m)), None
    return host_in(rng, rand_prefix(rng, min_len=16)), None


def _table_word(rng: random.Random, m: _Model, for_rule: bool = False) -> str:
    r = rng.random()
    if r < 0.03:
        return "nosuchtable"
    if r < 0.05:
        return rng.choice(("0", "local", "default", "4294967295"))
    return rng.choice(m.tables)


def _tos(rng: random.Random) -> int:
    return rng.choice(GOOD_TOS) if _chance(rng, 0.85) else rng.choice(ODD_TOS)


def _route_spec(rng: random.Random, m: _Model) -> str:
    rtype = rng.choices(
        ("unicast", "local", "broadcast", "blackhole", "unreachable", "prohibit", "throw"),
        (60, 6, 3, 6, 6, 5, 8))[0]
    if _chance(rng, 0.06):
        dst = "default"
    else:
        net = _subnet_near(rng, m)
        m.prefixes.append(net)
        dst = str(net)
        if _chance(rng, 0.03) and net.prefixlen < 32:  # host bits set: invalid
            dst = f"{net.network_address + 1}/{net.prefixlen}"
    words: list[str] = [] if rtype == "unicast" and _chance(rng, 0.9) else [rtype]
    words.append(dst)
    if _chance(rng, 0.2):
        t = _tos(rng)
        m.tos.append(t)
        words.append(f"tos 0x{t:02x}")
    nexthops: list[str] = []
    if rtype == "unicast":
        if _chance(rng, 0.12) and len(m.ifaces) >= 2:
            # iproute2 wants the nexthop list last, so it is appended at the end.
            for _ in range(rng.randint(2, 3)):
                gw, ifc = _gateway(rng, m)
                nh = f"nexthop via {gw}"
                if ifc is not None and _chance(rng, 0.7):
                    nh += f" dev {ifc.name}"
                if _chance(rng, 0.6):
                    nh += f" weight {rng.randint(1, 5)}"
                nexthops.append(nh)
        elif _chance(rng, 0.65):
            gw, ifc = _gateway(rng, m)
            words.append(f"via {gw}")
            if _chance(rng, 0.5):
                dev = ifc if ifc is not None and _chance(rng, 0.85) else rng.choice(m.ifaces)
                words.append(f"dev {dev.name}")
                if _chance(rng, 0.1):
                    words.append("onlink")
        else:
            words.append(f"dev {rng.choice(m.ifaces).name}")
    elif rtype in ("local", "broadcast"):
        words.append(f"dev {rng.choice(m.ifaces).name}")
    if rtype in ("unicast", "local", "broadcast") and _chance(rng, 0.2):
        locs = _all_locals(m)
        src = rng.choice(locs) if locs and _chance(rng, 0.8) else host_in(rng, rand_prefix(rng))
        words.append(f"src {src}")
    if _chance(rng, 0.25):
        words.append(f"metric {rng.choice((0, 1, 5, 10, 100, 1024))}")
    if _chance(rng, 0.15):
        words.append(f"proto {rng.choice(PROTOS)}")
    if _chance(rng, 0.1):
        words.append(f"scope {rng.choice(('link', 'global', 'host'))}")
    table = _table_word(rng, m)
    if table != "main" or _chance(rng, 0.2):
        words.append(f"table {table}")
    return " ".join(words + nexthops)


def _selector_prefix(rng: random.Random, m: _Model) -> str:
    r = rng.random()
    locs = _all_locals(m)
    if r < 0.25 and locs:
        return str(rng.choice(locs))
    net = _subnet_near(rng, m)
    m.prefixes.append(net)
    return str(net)


def _ports(rng: random.Random, m: _Model) -> str:
    a = rng.choice((22, 53, 80, 443, 1000, 5000, 65535, rng.randint(1, 65535)))
    m.ports.append(a)
    if _chance(rng, 0.4):
        b = min(65535, a + rng.choice((0, 1, 10, 1000)))
        if _chance(rng, 0.05):
            a, b = b + 1, a  # reversed range: invalid
        m.ports.append(b)
        return f"{a}-{b}"
    return str(a)


def _rule_spec(rng: random.Random, m: _Model) -> str:
    words: list[str] = []
    pref: int | None = None
    if _chance(rng, 0.85):
        if m.rule_prefs and _chance(rng, 0.05):
            pref = rng.choice(m.rule_prefs)  # duplicate pref: allowed by kernel
        else:
            pref = rng.randint(1, 32765)
        words.append(f"pref {pref}")
    action = rng.choices(
        ("lookup", "table", "goto", "nop", "blackhole", "unreachable", "prohibit"),
        (55, 15, 8, 4, 6, 6, 6))[0]
    terminal = action in ("blackhole", "unreachable", "prohibit")
    if _chance(rng, 0.1) and not terminal:
        words.append("not")
    n_sel = len(words)
    if _chance(rng, 0.45):
        words.append(f"from {_selector_prefix(rng, m)}")
    if _chance(rng, 0.3):
        words.append(f"to {_selector_prefix(rng, m)}")
    if _chance(rng, 0.15):
        names = [i.name for i in m.ifaces]
        iif = rng.choice(names) if _chance(rng, 0.85) else rng.choice(("lo", "eth9"))
        words.append(f"iif {iif}")
    if _chance(rng, 0.12):
        words.append(f"oif {rng.choice(m.ifaces).name}")
    if _chance(rng, 0.12):
        t = _tos(rng)
        m.tos.append(t)
        words.append(f"tos 0x{t:02x}")
    if _chance(rng, 0.2):
        v = rng.choice((1, 2, 3, 0x10, 0x100, 0xFF))
        m.marks.append(v)
        if _chance(rng, 0.4):
            mask = rng.choice((0xFF, 0xF0, 0x0F, 0xFFFF))
            words.append(f"fwmark 0x{v:x}/0x{mask:x}")
        else:
            words.append(f"fwmark {v}")
    if _chance(rng, 0.2):
        words.append(f"ipproto {rng.choice(('tcp', 'udp', 'icmp'))}")
        if _chance(rng, 0.6):
            words.append(f"sport {_ports(rng, m)}")
        if _chance(rng, 0.6):
            words.append(f"dport {_ports(rng, m)}")
    elif _chance(rng, 0.05):
        words.append(f"dport {_ports(rng, m)}")  # ports without ipproto
    if terminal and len(words) == n_sel:
        # A catch-all blackhole/unreachable rule would make every query fail.
        words.append(f"to {_selector_prefix(rng, m)}")
    if action in ("lookup", "table"):
        words.append(f"{action} {_table_word(rng, m, for_rule=True)}")
        if _chance(rng, 0.15):
            words.append(f"suppress_prefixlength {rng.choice((0, 0, 8, 16, 24, 32))}")
    elif action == "goto":
        later = [p for p in m.rule_prefs if pref is not None and p > pref]
        # Otherwise random: may be unresolved, or backward (rejected).
        target = rng.choice(later) if later and _chance(rng, 0.6) else rng.randint(1, 32766)
        words.append(f"goto {target}")
    else:
        words.append(action)
    if pref is not None:
        m.rule_prefs.append(pref)
    return " ".join(words)


def gen_config(rng: random.Random, m: _Model) -> list[str]:
    lines: list[str] = []
    if _chance(rng, 0.8):
        num = rng.choice(NAMED_TABLE_IDS)
        m.table_name = rng.choice(("smtp", "isp2", "vpn"))
        lines.append(f'echo "{num} {m.table_name}" >> /etc/iproute2/rt_tables')
        m.tables.append(m.table_name)

    m.ifaces = [_Iface(f"eth{i}") for i in range(rng.randint(2, 4))]
    for ifc in m.ifaces:
        lines.append(f"ip link add {ifc.name} type dummy")
    for ifc in m.ifaces:
        up_first = _chance(rng, 0.5)
        want_up = _chance(rng, 0.88)
        if _chance(rng, 0.2):
            lines.append(f"ip link set {ifc.name} mtu {rng.choice((576, 1280, 1400, 1492, 9000))}")
        if up_first and want_up:
            lines.append(f"ip link set {ifc.name} up")
        lines.extend(_addr_lines(rng, m, ifc))
        if want_up and not up_first:
            lines.append(f"ip link set {ifc.name} up")
        ifc.up = want_up

    # sysctls that change input-path answers
    if _chance(rng, 0.6):
        lines.append("echo 1 > /proc/sys/net/ipv4/ip_forward")
    for _ in range(rng.choice((0, 0, 1, 2))):
        dev = rng.choice(["all", "default", *[i.name for i in m.ifaces]])
        key, vals = rng.choice((("rp_filter", (0, 1, 2)), ("rp_filter", (1, 2)),
                                ("forwarding", (0, 1)), ("accept_local", (1,)),
                                ("route_localnet", (1,))))
        lines.append(f"echo {rng.choice(vals)} > /proc/sys/net/ipv4/conf/{dev}/{key}")

    body: list[str] = []
    if _chance(rng, 0.5):
        gw, _ = _gateway(rng, m)
        body.append(f"ip route add default via {gw}")
    for _ in range(rng.randint(12, 30)):
        r = rng.random()
        if r < 0.58:
            spec = _route_spec(rng, m)
            verb = rng.choices(("add", "append", "replace"), (80, 10, 10))[0]
            body.append(f"ip route {verb} {spec}")
            m.routes.append(spec)
        elif r < 0.88:
            spec = _rule_spec(rng, m)
            body.append(f"ip rule add {spec}")
            m.rules.append(spec)
        elif r < 0.93 and m.routes:
            spec = rng.choice(m.routes)  # exact duplicate: "File exists" (or not)
            body.append(f"ip route add {spec}")
        elif r < 0.96 and m.routes:
            spec = rng.choice(m.routes)
            if _chance(rng, 0.5):  # delete by prefix (+table) only
                w = spec.split()
                keep = [x for x in w if "/" in x or x == "default"][:1]
                if "table" in w:
                    keep += ["table", w[w.index("table") + 1]]
                spec = " ".join(keep) or spec
            body.append(f"ip route del {spec}")
        elif r < 0.98 and m.rule_prefs:
            body.append(f"ip rule del pref {rng.choice(m.rule_prefs)}")
        else:
            ifc = rng.choice(m.ifaces)
            if ifc.locals and _chance(rng, 0.6):
                a = rng.choice(ifc.locals)
                net = next((n for n in ifc.subnets if a in n), None)
                body.append(f"ip addr del {a}/{net.prefixlen if net else 32} dev {ifc.name}")
            else:
                body.append(f"ip link set {ifc.name} {'down' if ifc.up else 'up'}")
                ifc.up = not ifc.up
    lines.extend(body)
    return lines


# -- queries ---------------------------------------------------------------------

def _interesting_addrs(rng: random.Random, m: _Model) -> list[Addr]:
    out: list[Addr] = []
    for net in m.prefixes[:200]:
        n = int(net.network_address)
        last = int(net.broadcast_address)
        out += [Addr(n), Addr(last), host_in(rng, net)]
        if n > 0:
            out.append(Addr(n - 1))
        if last < 0xFFFFFFFF:
            out.append(Addr(last + 1))
    out += _all_locals(m)
    # "Just outside" a pool-sized prefix would leave the documentation space.
    return [a for a in out if in_pools(a)]


def gen_queries(rng: random.Random, m: _Model, n: int) -> list[str]:
    pool = _interesting_addrs(rng, m)
    locs = _all_locals(m)
    ifnames = [i.name for i in m.ifaces]

    def addr() -> Addr:
        r = rng.random()
        if r < 0.7 and pool:
            return rng.choice(pool)
        if r < 0.85 and locs:
            return rng.choice(locs)
        if r < 0.9:
            return host_in(rng, LOOPBACK) if _chance(rng, 0.5) else Addr("127.0.0.1")
        return host_in(rng, rand_prefix(rng, min_len=8))

    queries: list[str] = []
    for _ in range(n):
        words = [str(addr())]
        iif = _chance(rng, 0.35)
        if iif:
            if _chance(rng, 0.93):
                # Sources for forwarded packets are mostly not local.
                r = rng.random()
                if r < 0.5 and m.prefixes:
                    src = host_in(rng, rng.choice(m.prefixes))
                elif r < 0.8:
                    src = addr()
                else:
                    src = host_in(rng, rand_prefix(rng))
                words.append(f"from {src}")
            words.append(f"iif {rng.choice(ifnames) if _chance(rng, 0.92) else 'lo'}")
        elif _chance(rng, 0.35):
            src = rng.choice(locs) if locs and _chance(rng, 0.75) else addr()
            words.append(f"from {src}")
        if _chance(rng, 0.15 if iif else 0.2):
            words.append(f"oif {rng.choice([*ifnames, 'lo'])}")
        if _chance(rng, 0.2):
            v = rng.choice(m.marks) if m.marks and _chance(rng, 0.7) else rng.randint(0, 300)
            words.append(f"mark {v if _chance(rng, 0.5) else hex(v)}")
        if _chance(rng, 0.2):
            t = rng.choice(m.tos) if m.tos and _chance(rng, 0.6) else rng.choice(GOOD_TOS + ODD_TOS)
            words.append(f"tos 0x{t:02x}")
        if _chance(rng, 0.25):
            words.append(f"ipproto {rng.choice(('tcp', 'udp', 'icmp'))}")
            for kw in ("sport", "dport"):
                if _chance(rng, 0.6):
                    known = m.ports and _chance(rng, 0.7)
                    p = rng.choice(m.ports) if known else rng.randint(1, 65535)
                    words.append(f"{kw} {p}")
        queries.append(" ".join(words))
    return queries


def generate(seed: int, n_queries: int = 50) -> Case:
    rng = random.Random(seed)
    m = _Model()
    config = gen_config(rng, m)
    queries = gen_queries(rng, m, n_queries)
    return Case(seed, config, queries)


if __name__ == "__main__":  # pragma: no cover - manual inspection aid
    import sys

    c = generate(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    print("\n".join(c.config))
    print("--")
    print("\n".join(f"ip -j route get {q}" for q in c.queries))
