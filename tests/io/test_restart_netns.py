"""A masqueraded TCP session keeps working across `ipgate run` stopping (SIGTERM) and starting again.

Topology (namespaces made here, named ipgt-*-PID, deleted at the end even on failure; veth pairs, the
gateway attached with AF_PACKET so that the wires stay while ipgate is down):

    ipgt-lan  eth0 192.168.10.2/24 ── gl0 ┐                   ┌ gw0 ── eth0 203.0.113.2/24  ipgt-wan
                                          ipgt-gw: ipgate run --state FILE
                                          (lan0 192.168.10.1, wan0 203.0.113.1, MASQUERADE out of wan0)

The configuration turns off conntrack's mid-stream pickup (nf_conntrack_tcp_loose=0) and drops INVALID
packets, as a careful firewall does: a gateway that forgot the connection cannot pick it up again, so
the session survives only if its state came back.  The client (netns_hosts.py `client`) echoes 64 KB,
waits while the gateway is stopped and started again, then echoes 64 KB more on the same socket.

Then the control experiment: a second session, and a restart whose state file was damaged meanwhile.
The gateway starts clean with one warning line, and that session does break.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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
echo 0 > /proc/sys/net/netfilter/nf_conntrack_tcp_loose
iptables -A FORWARD -m conntrack --ctstate INVALID -j DROP
iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE
"""


def _why_skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10)
    return "`ip netns` unusable" if r.returncode != 0 else None


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


class Lab:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tag = str(os.getpid())
        self.procs: list[subprocess.Popen[str]] = []
        self.gw: subprocess.Popen[str] | None = None
        self.conf = tmp / "gw.conf"
        self.sock = str(tmp / "ctl.sock")
        self.logfile = tmp / "gw.log"
        self.state = tmp / "state"
        self.env = dict(os.environ, PYTHONPATH=str(HERE.parents[1] / "src"))

    def ns(self, role: str) -> str:
        return f"ipgt-{role}-{self.tag}"

    def log(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""

    def up(self) -> None:
        for role in ("gw", "lan", "wan"):
            _run("ip", "netns", "add", self.ns(role))
            _run("ip", "-n", self.ns(role), "link", "set", "lo", "up")
        _run("ip", "netns", "exec", self.ns("gw"), "sysctl", "-qw", "net.ipv4.ip_forward=0")
        for gwside, role, addr in (("gl0", "lan", "192.168.10.2/24"), ("gw0", "wan", "203.0.113.2/24")):
            _run("ip", "-n", self.ns("gw"), "link", "add", gwside, "type", "veth", "peer", "name", "eth0",
                 "netns", self.ns(role))
            _run("ip", "-n", self.ns(role), "addr", "add", addr, "dev", "eth0")
            _run("ip", "-n", self.ns(role), "link", "set", "eth0", "up")
        _run("ip", "-n", self.ns("lan"), "route", "add", "default", "via", "192.168.10.1")
        self.conf.write_text(CONF)

    def start(self) -> None:
        """ipgate run in ipgt-gw with the state file; up when its control socket is."""
        assert self.gw is None or self.gw.poll() is not None
        self.gw = subprocess.Popen(
            ["ip", "netns", "exec", self.ns("gw"), PY, "-m", "ipgate.cli", "run", "-c", str(self.conf),
             "--attach", "lan0=gl0", "--attach", "wan0=gw0", "--control", self.sock, "--log", str(self.logfile),
             "--state", str(self.state)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=self.env)
        _wait("the control socket", lambda: os.path.exists(self.sock) or self.gw is None or self.gw.poll() is not None)
        assert self.gw.poll() is None, f"gateway exited: {self.gw.communicate(timeout=WAIT)[0]}\n{self.log()}"

    def stop(self) -> None:
        """SIGTERM: a clean stop, which saves the state."""
        assert self.gw is not None
        os.kill(self.gw.pid, signal.SIGTERM)
        self.gw.communicate(timeout=WAIT)
        assert self.gw.returncode == 0, self.log()
        assert not os.path.exists(self.sock)

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

    def spawn(self, role: str, *args: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(role), PY, HOSTS, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.procs.append(p)
        return p

    def ctl(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", "ipgate.cli", "--control", self.sock, *argv], capture_output=True,
                              text=True, timeout=WAIT, env=self.env)

    def session(self, port: int) -> tuple[subprocess.Popen[str], str, str]:
        """A server on the WAN host, a client on the LAN host that has done its first echo:
        (the client, the file that lets it go on, the conntrack entry's tuples)."""
        ready_s, ready_c, go = (str(self.tmp / f"{n}-{port}") for n in ("server-ready", "client-ready", "go"))
        self.spawn("wan", "serve", "203.0.113.2", str(port), ready_s)
        _wait("the server", lambda: os.path.exists(ready_s))
        client = self.spawn("lan", "client", "203.0.113.2", str(port), ready_c, go)
        _wait("the first echo", lambda: os.path.exists(ready_c) or client.poll() is not None)
        assert client.poll() is None, client.communicate()[0]
        return client, go, self.entry(port)

    def entry(self, port: int) -> str:
        """The `conntrack -L` line of the session to `port`, from its tuples on (no timeout: it runs)."""
        ct = self.ctl("conntrack", "-L", "-p", "tcp")
        assert ct.returncode == 0, ct.stderr
        lines = [ln for ln in ct.stdout.splitlines() if f"dport={port}" in ln]
        assert len(lines) == 1, ct.stdout
        assert "ESTABLISHED" in lines[0] and "[ASSURED]" in lines[0], lines[0]
        assert "src=203.0.113.2 dst=203.0.113.1" in lines[0], lines[0]  # masqueraded
        return lines[0].split(" ESTABLISHED ")[1]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    why = _why_skip()
    if why:
        pytest.skip(why)
    lab = Lab(tmp_path)
    try:
        lab.up()
        yield lab
    except BaseException:
        print(lab.log())
        raise
    finally:
        lab.down()


def test_a_masqueraded_tcp_session_survives_a_restart(lab: Lab) -> None:
    lab.start()
    assert "warning" not in lab.log()  # no state file yet: a clean start, silently
    client, go, entry = lab.session(8080)

    lab.stop()
    assert "saved 1 connections" in lab.log(), lab.log()
    assert lab.state.exists()

    lab.start()
    assert "restored 1 connections" in lab.log(), lab.log()
    assert lab.entry(8080) == entry  # the same entry, mapping and all, before any new packet

    Path(go).touch()  # the client echoes 64 KB more on the same socket
    out, _ = client.communicate(timeout=WAIT + 10)
    assert client.returncode == 0 and "ok" in out, out + lab.log()

    # The control experiment: a second session, and a restart from a damaged state file.
    client2, go2, _ = lab.session(8081)
    lab.stop()
    data = lab.state.read_bytes()
    lab.state.write_bytes(data[:len(data) // 2])
    lab.start()
    warnings = [ln for ln in lab.log().splitlines()[-3:] if "warning" in ln]
    assert len(warnings) == 1 and "not loaded (corrupt" in warnings[0], lab.log()
    assert "dport=8081" not in lab.ctl("conntrack", "-L").stdout
    Path(go2).touch()
    out, _ = client2.communicate(timeout=WAIT + 10)
    assert client2.returncode != 0, out  # the gateway forgot it: INVALID, dropped

    lab.stop()
    left = _run("ip", "netns", "pids", lab.ns("gw"), check=False).stdout.split()
    assert not left, left
