"""The seeds' scenarios end to end (src/ipgate/lab/scenarios/*.toml): real clients and servers in network
namespaces, `ipgate run` as the gateway, and the kernel too where it can run the same configuration.

What the clients and servers saw is compared between the two gateways.  Each scenario prints its report
(`pytest -s` shows it).  The netns tests need root and `ip netns`: namespaces ipgt-lab-PID-TOKEN-*,
documentation and private addresses only, torn down after every run (checked).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ipgate.lab import netns
from ipgate.lab.kernel import modules, translate
from ipgate.lab.run import KernelModuleError, LabError, Report, run_lab
from ipgate.lab.topology import SCENARIOS, Topology, TopologyError, load, names, parse

SRC = str(Path(__file__).resolve().parents[2] / "src")
ALL = ["faq-7.36", "ftp", "ip-alias", "map-block", "port-forward", "port-forward-ipnat", "rdr-round-robin",
       "split-access", "table-full", "udp-masq"]


# -- without namespaces ----------------------------------------------------------------------

def test_scenarios_by_name() -> None:
    assert sorted(p.stem for p in SCENARIOS.glob("*.toml")) == ALL
    assert names() == ["demo", *ALL]
    for name in ALL:
        topo = load(name)
        assert topo.name == name and topo.steps and topo.about
    assert load("map-block").gateway.files[0][0] == "ipnat.conf"
    with pytest.raises(TopologyError, match="topologies by name: demo, faq-7.36, ftp"):
        load("no-such-lab")


@pytest.mark.parametrize(("step", "message"), [
    ("ftp lan1 192.0.2.10:21 sideways", "active|eprt|passive|epsv"),
    ("ftp lan1 192.0.2.10:21 active expect 8.8.8.8", "ftp HOST DST:PORT"),
    ("tcp lan1 192.0.2.10:80 ports 2000-1000", "[ports LO-HI]"),
    ("tcp lan1 192.0.2.10:80 from web", "tcp HOST DST:PORT"),
    ("http lan1 192.0.2.10:80 from Web!", "[from NAME]"),
    ("fill lan1 192.0.2.10:80 53 4", "fill HOST"),
    ("fill lan1 192.0.2.10:80 53 4 10 expect 10", "fill HOST"),
    ("serve lan1 53/sctp", "PORT[/udp|/ftp]"),
    ("arp lan1 1.2.3.4", "arp HOST ADDR"),
    ("log", "log TEXT"),
])
def test_step_errors(step: str, message: str) -> None:
    text = SCENARIOS.joinpath("map-block.toml").read_text().replace('"show ipnat -l"', repr(step).replace("'", '"'))
    with pytest.raises(TopologyError, match=re.escape(message)):
        parse(text)


def test_gateway_files_checked() -> None:
    text = SCENARIOS.joinpath("map-block.toml").read_text()
    for bad in ('"../x"', '"gw.conf"', '"a/b"'):
        with pytest.raises(TopologyError, match="plain file name"):
            parse(text.replace('"ipnat.conf" =', f"{bad} =", 1))


def test_kernel_translation_of_the_scenarios() -> None:
    ftp = load("ftp").gateway.config
    argvs = [" ".join(a) for _, a in translate(ftp, {"eth0", "eth1"})]
    assert "iptables-legacy -t raw -A PREROUTING -p tcp --dport 21 -j CT --helper ftp" in argvs
    assert modules(ftp) == ["nf_conntrack_ftp", "nf_nat_ftp"]
    assert [" ".join(a) for _, a in translate("modprobe ip_conntrack_irc ports=6667,6697\n", set())] == [
        f"iptables-legacy -t raw -A PREROUTING -p tcp --dport {p} -j CT --helper irc" for p in (6667, 6697)]
    alias = [" ".join(a) for _, a in translate(load("ip-alias").gateway.config, {"eth0"})]
    assert "ifconfig eth0:3 172.16.3.102 netmask 255.255.255.0" in alias  # net-tools itself
    assert not any(a.startswith("echo") or "dummy" in a for a in alias)
    for name in ("map-block", "rdr-round-robin", "port-forward-ipnat"):  # ipnat: the kernel has none
        with pytest.raises(ValueError, match="not ipnat"):
            translate(load(name).gateway.config, {"eth0", "eth1"})
    with pytest.raises(ValueError, match="FTP and IRC helpers only"):
        translate("modprobe ip_masq_raudio\n", set())


# -- in namespaces ---------------------------------------------------------------------------

def _needs_netns() -> None:
    why = netns.usable()
    if why is not None:
        pytest.skip(why)


def _run(topo: Topology | str, kernel: bool = False, ok: bool = True) -> tuple[Report, str]:
    """One lab run: its report (printed), checked for success (or failure) and for teardown."""
    topo = load(topo) if isinstance(topo, str) else topo
    out = io.StringIO()
    r = run_lab(topo, kernel=kernel, out=out)
    text = out.getvalue()
    print(text)
    assert r.ok is ok, text + r.gw_log
    assert r.gw_status in (None, 0) and not r.problems
    assert [n for n in netns.list_namespaces() if n.startswith(f"{netns.PREFIX}{r.tag}-")] == []
    return r, text


def _addr(peer: str) -> str:
    return peer.rpartition(":")[0]


def _behaviour(r: Report) -> tuple[list[tuple[str, bool, str, str]], list[tuple[str, str, int, str]]]:
    """What the clients saw (step, ok, address the server saw, which server) and what the servers saw
    (host, kind, port, client address): the same for both gateways, ports aside."""
    clients = [(o.step.text, o.ok, _addr(o.seen), o.server) for o in r.outcomes if o.step.kind != "show"]
    servers = sorted((c.host, c.kind, c.port, _addr(c.peer)) for c in r.seen)
    return clients, servers


def _both(name: str) -> tuple[Report, Report, str]:
    """ipgate, then the kernel: both succeed and behave the same; (ipgate, kernel, ipgate's text)."""
    r, text = _run(name)
    k, _ = _run(name, kernel=True)
    assert _behaviour(r) == _behaviour(k)
    return r, k, text


@pytest.mark.netns
def test_ip_alias() -> None:
    _needs_netns()
    r, _, text = _both("ip-alias")
    assert sum(o.step.kind == "ping" and o.ok for o in r.outcomes) == 5
    assert "5 of 5 addresses resolved, all at" in text
    assert text.count("netmask 255.255.255.0") == 5 and "eth0:3: flags=" in text


@pytest.mark.netns
def test_faq_7_36() -> None:
    _needs_netns()
    r, _, text = _both("faq-7.36")
    seen = {(o.step.host, o.step.kind, o.step.args[0]): _addr(o.seen) for o in r.outcomes if o.seen}
    assert seen == {("h1", "tcp", "192.0.2.10:80"): "203.0.113.11", ("h2", "tcp", "192.0.2.10:80"): "203.0.113.12",
                    ("h1", "udp", "192.0.2.10:53"): "203.0.113.11", ("h2", "udp", "192.0.2.10:53"): "203.0.113.12",
                    ("h1", "tcp", "192.168.2.2:80"): "192.168.1.2"}
    assert "from 192.168.1.0/24 lookup 101" in text


@pytest.mark.netns
def test_split_access() -> None:
    _needs_netns()
    r, k, text = _both("split-access")
    for rep in (r, k):
        assert {_addr(c.peer) for c in rep.seen} == {"203.0.113.10", "203.0.113.70"}
    assert len(re.findall(r"src=203\.0\.113\.70 dst=198\.51\.100\.1 .* mark=2 ", text)) == 2
    assert len(re.findall(r"src=203\.0\.113\.10 dst=192\.0\.2\.1 .* mark=1 ", text)) == 2
    # without --restore-mark the replies to uplink 2's client leave by uplink 1 and are lost
    topo = load("split-access")
    conf = topo.gateway.config.replace("iptables -t mangle -A PREROUTING -i eth0 -j CONNMARK --restore-mark\n", "")
    steps = tuple(s for s in topo.steps if s.text.startswith(("serve", "tcp")))
    b, _ = _run(replace(topo, gateway=replace(topo.gateway, config=conf), steps=steps), ok=False)
    assert [o.step.host for o in b.outcomes if not o.ok] == ["client2"]


@pytest.mark.netns
def test_port_forward_dnat_and_rdr() -> None:
    _needs_netns()
    r, _, _ = _both("port-forward")
    i, text = _run("port-forward-ipnat")
    # the same requests reach the same server from the same client with DNAT and with rdr
    want = [(o.step.text, o.ok, _addr(o.seen), o.server) for o in r.outcomes if o.step.kind in ("http", "tcp")]
    assert [(o.step.text.replace(" ports 10000-20000", ""), o.ok, _addr(o.seen), o.server)
            for o in i.outcomes if o.step.kind in ("http", "tcp")] == want
    assert [o.server for o in i.outcomes if o.step.kind == "http"] == ["web", "web", "client"]
    assert "RDR 10.0.0.80       8080  <- -> 192.0.2.1       80" in text


@pytest.mark.netns
def test_rdr_round_robin() -> None:
    _needs_netns()
    r, _ = _run("rdr-round-robin")
    assert [o.server for o in r.outcomes if o.step.kind == "http"] == ["web1", "web2", "web3"] * 2
    assert sorted(c.host for c in r.seen) == ["web1", "web1", "web2", "web2", "web3", "web3"]


@pytest.mark.netns
def test_map_block() -> None:
    _needs_netns()
    r, _ = _run("map-block")
    clients = [o for o in r.outcomes if o.seen]
    assert len(clients) == 6
    for o in clients:
        n = int(_addr(o.client).rsplit(".", 1)[1])  # 10.0.0.N owns ports 1024 + 252 * N ... + 251
        sport, port = int(o.client.rpartition(":")[2]), int(o.seen.rpartition(":")[2])
        assert _addr(o.seen) == "192.0.2.1"
        assert port == 1024 + 252 * n + sport % 252, o.text  # nat_newmap(), no collision here


@pytest.mark.netns
def test_ftp_active_and_passive() -> None:
    _needs_netns()
    r, text = _run("ftp")
    kinds = [c.kind for c in r.seen]
    assert kinds.count("ftp-ctl") == 4 and kinds.count("ftp-port") == 4 and kinds.count("ftp-data") == 4
    assert {_addr(c.peer) for c in r.seen} == {"192.0.2.1"}
    assert text.count("helper=ftp") == 4
    # without the helper the server is told the LAN address, which it cannot reach: active fails
    topo = load("ftp")
    conf = topo.gateway.config.replace("modprobe ip_masq_ftp", "")
    b, _ = _run(replace(topo, gateway=replace(topo.gateway, config=conf)), ok=False)
    assert {o.step.args[1]: o.ok for o in b.outcomes if o.step.kind == "ftp"} == {
        "active": False, "passive": True, "eprt": False, "epsv": True}
    assert {_addr(c.peer) for c in b.seen if c.kind == "ftp-port"} == {"10.0.0.2"}  # PORT not rewritten
    try:
        k, _ = _run("ftp", kernel=True)
    except KernelModuleError as e:
        pytest.skip(f"the kernel variant needs FTP conntrack/NAT helpers: {e}")
    assert _behaviour(k) == _behaviour(r)


@pytest.mark.netns
def test_table_full() -> None:
    _needs_netns()
    r, text = _run("table-full")
    fill = next(o for o in r.outcomes if o.step.kind == "fill")
    assert "10 of 10 with room left, 0 of 10 once the table was full" in fill.text
    assert "4 of 4 TCP connections still answer" in fill.text
    assert sum(c.kind == "udp" for c in r.seen) == 10
    assert r.gw_log.count("kernel: nf_conntrack: table full, dropping packet") == 10  # one per refused flow


@pytest.mark.netns
def test_table_full_kernel() -> None:
    _needs_netns()
    with pytest.raises(LabError) as e:
        _run("table-full", kernel=True)
    assert "nf_conntrack_max" in str(e.value)
    pytest.skip("the kernel variant cannot run: net.netfilter.nf_conntrack_max is global, read-only in a "
                f"network namespace ({str(e.value).splitlines()[0]})")


@pytest.mark.netns
def test_udp_masq_by_name_from_the_cli() -> None:
    _needs_netns()
    r, k, _ = _both("udp-masq")
    assert {_addr(c.peer) for c in r.seen} == {"192.0.2.1"} and len(r.seen) == 3
    env = dict(os.environ, PYTHONPATH=SRC)
    p = subprocess.run([sys.executable, "-m", "ipgate", "lab", "udp-masq"], capture_output=True, text=True,
                       env=env, timeout=60, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "== ipgate lab udp-masq: gateway = ipgate run ==" in p.stdout and "5 of 5 steps ok" in p.stdout
