"""`ipgate demo`: load the seed documents' configurations and show what the box does.

As root with `ip netns`, it starts with a live lab (ipgate.lab: LAN hosts reach
a server through `ipgate run`, masquerading and policy routing).

For each configuration in `examples/` it prints the listings the document shows
(`ip rule list`, the routing tables, `ifconfig` and `route -n` once those tools
exist) and a few `ip route get` answers, each with one line saying why.  Every
command shown can be re-run by hand: ``ipgate -c examples/NAME.conf ip ...``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ipgate.shell import ScriptErrors, Shell, load_script

# (command, why): the answers that make each document's point.  The answers
# themselves are ipgate's; tests/test_seeds.py checks them against Linux.
QUERIES: dict[str, tuple[tuple[str, str], ...]] = {
    "split-access.conf": (
        ("ip route get 203.0.113.50 from 198.51.100.2",
         "a packet from eth1's address leaves by uplink 2 (198.51.100.1): rule 32764 sends it to table T2"),
        ("ip route get 203.0.113.50 from 192.0.2.2",
         "a packet from eth0's address leaves by uplink 1 (192.0.2.1): rule 32765 sends it to table T1"),
        ("ip route get 203.0.113.50",
         "a new connection (no source yet) is \"still governed by the default route\" of table main"),
        ("ip route get 198.51.100.2 from 203.0.113.50 iif eth1",
         "the request arriving on eth1 is delivered locally: rule 0, table local, comes first"),
    ),
    "multiple-default-routes.conf": (
        ("ip route get 203.0.113.7 from 192.0.2.10",
         "the reply to a ping that came in on eth0 leaves by eth0's gateway: rule 32765 -> table admin"),
        ("ip route get 203.0.113.7 from 198.51.100.10",
         "replies from eth1's address match no admin rule: table main, default via eth1"),
        ("ip route get 203.0.113.7",
         "traffic the box starts itself also uses table main, and eth1's address as source"),
    ),
    "corporate.conf": (
        ("ip route get 203.0.113.80 from 10.10.0.25",
         "a reply from the corporate address goes to the corporate router: rule 32765 -> table corporate"),
        ("ip route get 203.0.113.80",
         "anything else still follows table main's default route, out of eth1"),
        ("ip route get 10.10.0.25 from 203.0.113.80 iif eth0",
         "a packet for the corporate address is local: rule 0 (table local) is looked up before 32764"),
    ),
    "jetstream.conf": (
        ("ip route get 192.0.2.77 from 203.0.113.2",
         "a reply from $P1 goes back out by ppp1: rule 32765 -> table jetstream, default via ppp1's peer"),
        ("ip route get 192.0.2.77",
         "without a source the box uses table main: default via ppp0, source $P0"),
        ("ip route get 192.168.2.20 from 203.0.113.2",
         "table jetstream also lists the LANs, so $P1 still reaches eth1's LAN directly"),
    ),
    "fwmark-smtp.conf": (
        ("ip route get 192.0.2.25 mark 0x2",
         "a packet marked 2 (SMTP, once netfilter marks it) matches rule 32765: table smtp, via 192.168.1.2"),
        ("ip route get 192.0.2.25",
         "unmarked traffic uses table main: via 192.168.1.1"),
        ("ip route get 192.0.2.25 mark 0x3",
         "`fwmark 0x2` has no mask, so it matches 2 exactly: mark 3 goes by table main"),
    ),
    "masq-multiple-external.conf": (
        ("ip route get 198.51.100.77 from 192.168.1.5 iif eth1",
         "LAN #1 to the Internet: rule 102 -> table 101 -> out of ppp0, External IP #1's link"),
        ("ip route get 198.51.100.77 from 192.168.2.5 iif eth2",
         "LAN #2 to the Internet: the other rule 102 -> table 102 -> out of ppp1, External IP #2's link"),
        ("ip route get 192.168.2.5 from 192.168.1.5 iif eth1",
         "LAN to LAN: rule 100 sends it to table main first, straight to eth2 (no masq)"),
        ("ip route get 198.51.100.77",
         "the box's own traffic: table main, default via ppp0's peer"),
    ),
    "ip-alias.conf": (
        ("ip route get 172.16.3.10",
         "an alias address is the box's own: delivered locally, with the primary address as source"),
        ("ip route get 192.0.2.1",
         "everything else goes to the default gateway 172.16.3.200, from the primary address"),
    ),
    "multihomed-netware.conf": (
        ("ip route get 203.0.113.9 from 192.168.20.5",
         "from eth1's address: rule 32764 -> table \"eth1\" -> gateway 192.168.20.1"),
        ("ip route get 203.0.113.9",
         "otherwise table main: default via 192.168.10.1 on eth0"),
    ),
    "same-subnet-uplinks.conf": (
        ("ip route get 192.168.50.99",
         "both NICs have a route to 192.168.50.0/24 in table main; the first, eth0's, wins"),
        ("ip route get 192.168.50.99 from 192.168.50.11",
         "from eth1's address, rule 32763 -> table uplink1 keeps the packet on eth1"),
        ("ip route get 203.0.113.9 from 192.168.50.11",
         "and table uplink1's default route leaves by eth1 too, to the same gateway"),
    ),
    "uplink-aliases.conf": (
        ("ip route get 192.0.2.99 from 172.16.4.10",
         "from eth1:0's address: rule 32761 -> table uplink2 -> eth1's Internet gateway 172.16.4.1"),
        ("ip route get 10.20.7.7 from 10.20.0.10",
         "from eth1:1's address to its own network: rule 32759 -> table uplink3, straight out of eth1"),
        ("ip route get 192.0.2.99 from 10.20.0.10",
         "table uplink3 has no default route, so the lookup falls through to table main: eth0's gateway"),
    ),
}

# Net-tools commands are optional modules: shown only where they exist.
NETTOOLS = {"ifconfig": "ipgate.commands.ifconfig", "route": "ipgate.commands.nettools_route"}
STANDARD_TABLES = ("local", "main", "default")
RULE = "=" * 78


@dataclass(frozen=True)
class Example:
    path: Path
    title: str
    source: str


def examples_dir() -> Path | None:
    """`examples/` of the source tree this package runs from (pip install -e .)."""
    here = Path(__file__).resolve()
    for cand in (here.parents[2] / "examples", here.parent / "examples"):
        if cand.is_dir():
            return cand
    return None


def read_example(path: Path) -> Example:
    """Title (first comment line) and the `Source:` paragraph of a configuration's header."""
    title, source = path.stem, []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if i == 0 and text:
            title = text
        elif text.startswith("Source:"):
            source.append(text)
            for more in lines[i + 1:]:
                if not more.startswith("#   "):
                    break
                source.append(more.lstrip("#").strip())
    return Example(path, title, " ".join(source))


def ordered(paths: list[Path]) -> list[Path]:
    """The documented examples first, in QUERIES' order, then any others by name."""
    rank = {name: i for i, name in enumerate(QUERIES)}
    return sorted(paths, key=lambda p: (rank.get(p.name, len(rank)), p.name))


def have(tool: str) -> bool:
    return importlib.util.find_spec(NETTOOLS[tool]) is not None


def needs_missing_tool(path: Path) -> list[str]:
    """Net-tools modules the configuration needs (it runs ifconfig/route) that do not exist yet."""
    used = {w.rsplit("/", 1)[-1] for ln in path.read_text().splitlines()
            if (w := (ln.split() or [""])[0]) and not w.startswith("#")}
    return [NETTOOLS[t] for t in sorted(NETTOOLS) if t in used and not have(t)]


def tables_of(sh: Shell) -> list[str]:
    """The tables the rules look up besides local/main/default (T1 before T2, 101 before 102)."""
    res = sh.run_line("ip -j rule list")
    names: set[str] = set()
    if res.status == 0:
        for rule in json.loads(res.out):
            t = str(rule.get("table", ""))
            if t and t not in STANDARD_TABLES:
                names.add(t)
    return sorted(names, key=lambda t: (not t.isdigit(), int(t) if t.isdigit() else 0, t))


def show(sh: Shell, cmd: str, out: TextIO, why: str = "") -> None:
    res = sh.run_line(cmd)
    out.write(f"$ {cmd}\n")
    out.write(res.out)
    if res.err:
        out.write(res.err)
    if why:
        out.write(f"  -> {why}\n")
    out.write("\n")


def demo_one(ex: Example, out: TextIO) -> bool:
    """Print one configuration; False when it did not load."""
    out.write(f"{RULE}\n{ex.path.name}: {ex.title}\n")
    if ex.source:
        out.write(textwrap.fill(ex.source, width=len(RULE)) + "\n")
    out.write(f"{RULE}\n\n")
    missing = needs_missing_tool(ex.path)
    if missing:
        out.write(f"(skipped: this configuration needs {', '.join(missing)}, not written yet)\n\n")
        return True
    try:
        stack = load_script(ex.path.read_text(), f"examples/{ex.path.name}")
    except ScriptErrors as e:
        out.write("ipgate could not load this configuration:\n")
        for err in e.errors:
            out.write(f"  {err}\n")
        out.write("\n")
        return False
    sh = Shell(stack)
    show(sh, "ip rule list", out)
    show(sh, "ip route show", out)
    for table in tables_of(sh):
        show(sh, f"ip route show table {table}", out)
    if have("ifconfig"):
        show(sh, "ifconfig", out)
    if have("route"):
        show(sh, "route -n", out)
    for cmd, why in QUERIES.get(ex.path.name, ()):
        show(sh, cmd, out, why)
    return True


def run_demo(out: TextIO | None = None) -> int:
    """Entry point of `ipgate demo`: 0 when the live lab (if it ran) passed and every configuration loaded."""
    out = out if out is not None else sys.stdout
    from ipgate.lab.run import live_demo

    live_ok = live_demo(out)  # real hosts in namespaces when root, else one line saying so
    where = examples_dir()
    paths = ordered(list(where.glob("*.conf"))) if where is not None else []
    if not paths:
        print("ipgate demo: no examples/*.conf found (the demo runs from a source checkout)", file=sys.stderr)
        return 1
    out.write("ipgate demo: the configurations of the seed documents, loaded and queried.\n"
              f"Each is a script in {where}; re-run any command shown with\n"
              "  ipgate -c examples/NAME.conf ip ...\n\n")
    ok = True
    for path in paths:
        ok = demo_one(read_example(path), out) and ok
    if where is not None:
        ok = demo_packets(where / "netfilter", out) and ok
    return 0 if ok and live_ok else 1


# The packet path: each (configuration, trace arguments, why) is `ipgate -c examples/netfilter/CONF trace ARGS`.
TRACES: tuple[tuple[str, str, str], ...] = (
    ("rc.firewall-2.2",
     "tcp 192.168.0.5:1030 203.0.113.21:21 iif eth0 then tcp 203.0.113.21:21 198.51.100.10:1030 iif ppp0 flags SA",
     "the HOWTO's ipchains MASQ line: the LAN client leaves as ppp0's address, the reply finds its way back"),
    ("rc.firewall-2.2", "udp 203.0.113.9:53 192.168.0.5:5000 iif ppp0",
     "`ipchains -P forward DENY`: nobody outside opens a connection in"),
    ("fwmark-smtp.conf", "tcp 192.168.1.23:40000 203.0.113.25:25 local",
     "mangle OUTPUT marks SMTP 0x2; the box routes it again and rule fwmark 0x2 sends it via 192.168.1.2"),
    ("split-access-connmark.conf",
     "tcp 203.0.113.6:7000 198.51.100.1:80 iif eth2 then tcp 10.0.0.80:80 203.0.113.6:7000 iif eth0 flags SA",
     "a connection in by uplink 2 is port-forwarded to the web server; CONNMARK sends the reply back by uplink 2"),
)


def demo_packets(where: Path, out: TextIO) -> bool:
    """Packets through the netfilter examples, explained hook by hook (`ipgate trace`)."""
    out.write(f"{RULE}\nThe packet path: netfilter, connection tracking and NAT ({where.name}/)\n{RULE}\n\n")
    ok = True
    for conf, args, why in TRACES:
        path = where / conf
        try:
            stack = load_script(path.read_text(), f"examples/netfilter/{conf}")
        except (OSError, ScriptErrors) as e:
            out.write(f"ipgate could not load {conf}: {e}\n\n")
            ok = False
            continue
        sh = Shell(stack)
        out.write(f"# ipgate -c examples/netfilter/{conf} trace {args}\n")
        show(sh, f"trace {args}", out, why)
    return ok
