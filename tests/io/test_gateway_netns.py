"""`ipgate run` on real devices: two namespaces talk through the gateway, which runs as a process.

Topology (all namespaces are made here, named ipgt-*-PID, and deleted at the end, even on failure):

    ipgt-lan  eth0 192.168.10.2/24 ── lan0 ┐                  ┌ wan0 ── eth0 203.0.113.2/24  ipgt-wan
                                           ipgt-gw: ipgate run
                                           (lan0 192.168.10.1, wan0 203.0.113.1, MASQUERADE out of wan0)

Three ways to wire it, one test run each:

- packet: veth pairs; the gateway-side ends (gl0, gw0) stay in ipgt-gw with no IPv4 address (the kernel
  there does nothing with the traffic) and ipgate attaches to them with AF_PACKET (--attach lan0=gl0);
- tap:    ipgate creates TAP devices lan0/wan0 in ipgt-gw (--attach lan0=tap); the test then moves each
          into its host namespace (a TAP keeps working across `ip link set netns`), where the host
          configures it like a NIC: the wire is the TAP's file descriptor;
- tun:    the same with TUN devices (no Ethernet, no ARP: the host routes into the point-to-point device).

Each run: ping the gateway and through it, a TCP connection through MASQUERADE, `conntrack -L` over the
control socket, SIGHUP with a new rule set (ICMP and new TCP connections now dropped) while the TCP
connection stays open and keeps working, then SIGTERM: the process exits 0, the control socket is gone,
the devices it created are gone, no process is left.  The packet run also throws malformed frames at the
gateway and checks it still forwards.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

HERE = Path(__file__).resolve().parent
HOSTS = str(HERE / "netns_hosts.py")
PY = sys.executable
WAIT = 15.0  # seconds any single wait may take

CONF = """\
ip link add lan0 type dummy
ip link add wan0 type dummy
ip addr add 192.168.10.1/24 dev lan0
ip addr add 203.0.113.1/24 dev wan0
ip link set lan0 up
ip link set wan0 up
echo 1 > /proc/sys/net/ipv4/ip_forward
iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE
"""
# The reloaded configuration: same interfaces, and now ICMP and new TCP connections are not forwarded.
CONF_RELOADED = CONF + """\
iptables -A FORWARD -p icmp -j DROP
iptables -A FORWARD -p tcp -m state --state NEW -j DROP
"""


def _root_with_netns() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10)
    if r.returncode != 0:
        return "`ip netns` unusable"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=WAIT)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def _wait(what: str, cond: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Lab:
    mode: str
    tmp: Path
    tag: str = field(default_factory=lambda: str(os.getpid()))
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    gw: subprocess.Popen[str] | None = None
    gw_args: list[str] = field(default_factory=list)  # more `ipgate run` options (bench_live.py: --ring)

    def ns(self, role: str) -> str:
        return f"ipgt-{role}-{self.tag}"

    @property
    def sock(self) -> str:
        return str(self.tmp / "ctl.sock")

    @property
    def conf(self) -> Path:
        return self.tmp / "gw.conf"

    @property
    def logfile(self) -> Path:
        return self.tmp / "gw.log"

    def log(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""

    # -- building -------------------------------------------------------------------------
    def up(self) -> None:
        self.network()
        self.start()
        self.hosts()

    def network(self) -> None:
        for role in ("gw", "lan", "wan"):
            _run("ip", "netns", "add", self.ns(role))
            _run("ip", "-n", self.ns(role), "link", "set", "lo", "up")
        # the gateway's kernel must not answer or route anything itself
        _run("ip", "netns", "exec", self.ns("gw"), "sysctl", "-qw", "net.ipv4.ip_forward=0")
        if self.mode == "packet":
            for gwside, role in (("gl0", "lan"), ("gw0", "wan")):
                _run("ip", "-n", self.ns("gw"), "link", "add", gwside, "type", "veth", "peer", "name", "eth0",
                     "netns", self.ns(role))

    def start(self) -> None:
        """ipgate run in ipgt-gw, up when its control socket is."""
        self.conf.write_text(CONF)
        attach = (["--attach", "lan0=gl0", "--attach", "wan0=gw0"] if self.mode == "packet"
                  else ["--attach", f"lan0={self.mode}", "--attach", f"wan0={self.mode}"])
        env = dict(os.environ, PYTHONPATH=str(HERE.parents[1] / "src"))
        self.gw = subprocess.Popen(
            ["ip", "netns", "exec", self.ns("gw"), PY, "-m", "ipgate.cli", "run", "-c", str(self.conf), *attach,
             "--control", self.sock, "--log", str(self.logfile), *self.gw_args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
        _wait("the control socket", lambda: os.path.exists(self.sock) or self.gw is None or self.gw.poll() is not None)
        assert self.gw.poll() is None, f"gateway exited: {self.gw.communicate(timeout=WAIT)[0]}\n{self.log()}"

    def hosts(self) -> None:
        for role, addr, dev in (("lan", "192.168.10.2/24", "lan0"), ("wan", "203.0.113.2/24", "wan0")):
            if self.mode == "packet":
                dev = "eth0"
            else:  # the device ipgate made: hand it to the host
                _run("ip", "-n", self.ns("gw"), "link", "set", dev, "netns", self.ns(role))
            _run("ip", "-n", self.ns(role), "addr", "add", addr, "dev", dev)
            _run("ip", "-n", self.ns(role), "link", "set", dev, "up")
        _run("ip", "-n", self.ns("lan"), "route", "add", "default", "via", "192.168.10.1")

    def down(self) -> None:
        for p in [*self.procs, *([self.gw] if self.gw else [])]:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.communicate(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        for role in ("gw", "lan", "wan"):
            subprocess.run(["ip", "netns", "del", self.ns(role)], capture_output=True, timeout=WAIT)

    # -- using ------------------------------------------------------------------------------
    def host(self, role: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", self.ns(role), PY, HOSTS, *args, check=check)

    def spawn(self, role: str, *args: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(role), PY, HOSTS, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.procs.append(p)
        return p

    def ctl(self, *argv: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=str(HERE.parents[1] / "src"))
        return subprocess.run([PY, "-m", "ipgate.cli", "--control", self.sock, *argv], capture_output=True,
                              text=True, timeout=WAIT, env=env)


@pytest.fixture(params=["packet", "packet-ring", "tap", "tun"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    why = _root_with_netns()
    if why:
        pytest.skip(why)
    lab = Lab(request.param.removesuffix("-ring"), tmp_path)
    if request.param.endswith("-ring"):
        lab.gw_args.append("--ring")  # AF_PACKET through a TPACKET_V3 ring
    try:
        lab.up()
        yield lab
    except BaseException:
        print(lab.log())
        raise
    finally:
        lab.down()


def test_gateway_end_to_end(lab: Lab) -> None:
    # ping the gateway itself, then a host behind it
    assert lab.host("lan", "ping", "192.168.10.1", "2").returncode == 0, lab.log()
    assert lab.host("lan", "ping", "203.0.113.2", "3").returncode == 0, lab.log()

    # a TCP connection through MASQUERADE, held open across the reload
    ready_s, ready_c, go = (str(lab.tmp / n) for n in ("server-ready", "client-ready", "go"))
    server = lab.spawn("wan", "serve", "203.0.113.2", "8080", ready_s)
    _wait("the server", lambda: os.path.exists(ready_s))
    client = lab.spawn("lan", "client", "203.0.113.2", "8080", ready_c, go)
    _wait("the first echo", lambda: os.path.exists(ready_c) or client.poll() is not None)
    assert client.poll() is None, client.communicate()[0]

    ct = lab.ctl("conntrack", "-L", "-p", "tcp")
    assert ct.returncode == 0, ct.stderr
    lines = [ln for ln in ct.stdout.splitlines() if "dport=8080" in ln]
    assert len(lines) == 1, ct.stdout
    entry = lines[0]
    assert "ESTABLISHED" in entry and "src=192.168.10.2 dst=203.0.113.2" in entry, entry
    assert "src=203.0.113.2 dst=203.0.113.1" in entry, entry  # the reply goes to the masqueraded address
    assert "[ASSURED]" in entry, entry
    tuple_text = entry.split(" ESTABLISHED ")[1].split(" mark=")[0]

    if lab.mode != "tun":
        neigh = lab.ctl("ip", "neigh", "show")
        assert "192.168.10.2 dev lan0 lladdr" in neigh.stdout, neigh.stdout

    # SIGHUP: new rules; the connection is carried over (the same entry, before any new packet)
    assert lab.gw is not None
    lab.conf.write_text(CONF_RELOADED)
    os.kill(lab.gw.pid, signal.SIGHUP)
    _wait("the reload", lambda: "reloaded" in lab.log())
    assert "1 connections kept" in lab.log() or "connections kept" in lab.log()
    rules = lab.ctl("iptables", "-S", "FORWARD").stdout
    assert "-A FORWARD -p icmp -j DROP" in rules, rules
    ct2 = lab.ctl("conntrack", "-L", "-p", "tcp").stdout
    assert tuple_text in ct2, (entry, ct2)

    Path(go).touch()  # the client echoes again over the same connection
    out, _ = client.communicate(timeout=WAIT)
    assert client.returncode == 0 and "ok" in out, out
    server.communicate(timeout=WAIT)

    # the new rules hold: no ping, no new TCP connection
    assert lab.host("lan", "ping", "203.0.113.2", "1", check=False).returncode != 0
    assert lab.host("lan", "connect", "203.0.113.2", "8081", check=False).returncode != 0

    # a bad configuration is refused and the running one stays
    lab.conf.write_text(CONF_RELOADED + "ip route add 10.0.0.0/8 via nowhere\n")
    os.kill(lab.gw.pid, signal.SIGHUP)
    _wait("the refused reload", lambda: "keeping the running configuration" in lab.log())
    assert "-A FORWARD -p icmp -j DROP" in lab.ctl("iptables", "-S", "FORWARD").stdout

    # the running configuration, saved, loads back
    saved = lab.ctl("save")
    assert saved.returncode == 0 and "iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE" in saved.stdout

    if lab.mode == "packet":
        lab.conf.write_text(CONF)
        os.kill(lab.gw.pid, signal.SIGHUP)
        _wait("the second reload", lambda: lab.log().count("reloaded") >= 2)
        # malformed frames at the gateway's interface do not stop it
        assert lab.host("lan", "garbage", "eth0", "3000", "5").returncode == 0
        assert lab.host("lan", "ping", "203.0.113.2", "2").returncode == 0, lab.log()
        stats = lab.ctl("stats").stdout
        assert "internal errors: 0" in stats, stats
        assert "offload finished" in stats, stats  # veth handed up unfinished checksums/GSO: vnet.finish did them

    # SIGTERM: a clean stop
    os.kill(lab.gw.pid, signal.SIGTERM)
    lab.gw.communicate(timeout=WAIT)
    assert lab.gw.returncode == 0, lab.log()
    assert "stopping" in lab.log()
    assert not os.path.exists(lab.sock)
    if lab.mode in ("tun", "tap"):  # the devices it made went with it, in whatever namespace they were
        for role in ("lan", "wan"):
            r = _run("ip", "-n", lab.ns(role), "link", "show", f"{role}0", check=False)
            assert r.returncode != 0, r.stdout
    left = _run("ip", "netns", "pids", lab.ns("gw"), check=False).stdout.split()
    assert not left, left


def test_a_udp_flood_goes_in_batches(lab: Lab) -> None:
    """One second of a UDP flood through MASQUERADE: datagrams arrive, the gateway forwards most of them as
    vectors (Engine.receive_batch) and nothing inside it fails."""
    ready = str(lab.tmp / "sink-ready")
    sink = lab.spawn("wan", "sink", "203.0.113.2", "9000", "3", ready)
    _wait("the sink", lambda: os.path.exists(ready))
    flood = lab.spawn("lan", "flood", "203.0.113.2", "9000", "1", "64")
    sent = int(flood.communicate(timeout=WAIT)[0].split()[0])
    received = int(sink.communicate(timeout=WAIT)[0].split()[0])
    stats = lab.ctl("stats").stdout
    assert sent > 1000 and received > 1000, (sent, received, stats)
    hits = re.search(r"fast path hits: (\d+) \((\d+) in batches as vectors", stats)
    assert hits is not None, stats
    assert int(hits[2]) > received // 4, stats  # most went as vectors (short reads go one by one)
    assert "internal errors: 0" in stats, stats


def test_tcp_through_gro_super_packets(lab: Lab) -> None:
    """GRO on the gateway's veth ends merges the LAN host's segments into super-packets: ipgate forwards
    them whole (the kernel cuts them on the way out), and 8 MiB echoed through it come back byte for byte."""
    if lab.mode != "packet":
        pytest.skip("GRO on the veth ends the gateway reads with AF_PACKET")
    host = [sys.executable, HOSTS]
    for role, dev, tso, gro in (("lan", "eth0", 0, 0), ("wan", "eth0", 0, 0), ("gw", "gl0", 0, 1), ("gw", "gw0", 0, 1)):
        _run("ip", "netns", "exec", lab.ns(role), *host, "offloads", dev, str(tso), str(gro))
    ready = str(lab.tmp / "bulk-ready")
    server = lab.spawn("wan", "serve", "203.0.113.2", "8081", ready)
    _wait("the server", lambda: os.path.exists(ready))
    client = lab.spawn("lan", "bulk", "203.0.113.2", "8081", "8")
    out = client.communicate(timeout=WAIT * 4)[0]
    assert client.returncode == 0 and "ok" in out, (out, lab.log())
    server.communicate(timeout=WAIT)
    stats = lab.ctl("stats").stdout
    whole = re.search(r"(\d+) TCP super-packets forwarded whole", stats)
    assert whole is not None and int(whole[1]) > 0, stats
    assert "internal errors: 0" in stats, stats
