"""`ipgate lab`: the demo topology with ipgate and with the kernel as the gateway, and teardown in every case.

The netns tests need root and `ip netns`; they make namespaces named ipgt-lab-PID-TOKEN-* (documentation and
private addresses only, no link to the host's network) and check that none is left, nor any process or link.
The others check the description format, the kernel translation and the demo's non-root line.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ipgate.lab import netns
from ipgate.lab.builtin import DEMO
from ipgate.lab.kernel import KernelScriptError, named, numbered, table_names, translate
from ipgate.lab.run import Lab, LabError, Report, live_demo, run_lab
from ipgate.lab.steps import run_step
from ipgate.lab.topology import TopologyError, load, parse

SRC = str(Path(__file__).resolve().parents[2] / "src")
WAIT = 15.0


def _wait(cond: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- without namespaces ----------------------------------------------------------------------

def test_demo_topology() -> None:
    topo = load("demo")
    assert {lan: len(m) for lan, m in topo.lans().items()} == {"lan": 3, "up1": 2, "up2": 2, "net": 3}
    assert [s.kind for s in topo.steps][:4] == ["serve", "ping", "ping", "tcp"]
    assert topo.host("server").routes == (("default", "via", "203.0.113.1"),
                                          ("198.51.100.0/24", "via", "203.0.113.2"))


@pytest.mark.parametrize(("change", "message"), [
    (("10.0.0.2/24", "8.8.8.2/24"), "documentation or private only"),
    (('"ping lan1 203.0.113.10 3"', '"ping lan1 1.1.1.1"'), "documentation or private"),
    (('"show ip rule list"', '"show rm -rf /"'), "show one of"),
    (('"serve server 80 25"', '"listen server 80"'), "unknown step"),
    (('eth2 = "up2"', 'eth2 = "up3"'), "LAN 'up3' has one member"),
    (("[hosts.lan2]", "[hosts.lan1]"), "lan1"),
    (("[gateway]", '[gateway]\nconfig_file = "gw.conf"'), "exactly one of"),
])
def test_topology_errors(change: tuple[str, str], message: str) -> None:
    assert change[0] in DEMO
    with pytest.raises(TopologyError, match=re.escape(message)):
        parse(DEMO.replace(change[0], change[1], 1))


def test_kernel_translation() -> None:
    topo = load("demo")
    lines = translate(topo.gateway.config, {"eth0", "eth1", "eth2"})
    argvs = [" ".join(a) for _, a in lines]
    assert not any("dummy" in a for a in argvs)  # the veths are the devices
    assert "ip rule add fwmark 0x2 table 100" in argvs  # no rt_tables write on the host
    assert "sysctl -qw net/ipv4/ip_forward=1" in argvs
    assert "iptables-legacy -t nat -A POSTROUTING -o eth1 -j MASQUERADE" in argvs
    names = table_names(topo.gateway.config)
    assert numbered(["route", "show", "table", "smtp"], names) == ["route", "show", "table", "100"]
    assert named("32765:\tfrom all fwmark 0x2 lookup 100\n", names) == "32765:\tfrom all fwmark 0x2 lookup smtp\n"
    for bad in ("ipchains -A forward -j MASQ", "ip netns exec x sh", "sysctl -w kernel.panic=1",
                "echo 1 > /etc/passwd", "ip route show | cat"):
        with pytest.raises(KernelScriptError):
            translate(bad, set())


def test_demo_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    out = io.StringIO()
    assert live_demo(out) is True
    assert out.getvalue().count("\n") == 2 and "needs root" in out.getvalue()


# -- in namespaces ---------------------------------------------------------------------------

def _needs_netns() -> None:
    why = netns.usable()
    if why is not None:
        pytest.skip(why)


def _agents() -> list[str]:
    """Command lines of lab processes still running anywhere."""
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "ipgate.lab.agent" in cmd or netns.PREFIX in cmd:
                found.append(f"{p.name}: {cmd}")
    return found


def _root_links() -> set[str]:
    return {ln.split(":")[1].strip().split("@")[0] for ln in netns.must(["ip", "-o", "link"]).splitlines()}


def _assert_nothing_left(tag: str, links_before: set[str]) -> None:
    assert [n for n in netns.list_namespaces() if n.startswith(f"{netns.PREFIX}{tag}-")] == []
    assert _agents() == []
    assert _root_links() <= links_before  # every veth and bridge lived (and died) in a lab namespace
    assert not list(Path("/tmp").glob(f"{netns.PREFIX}{tag}-*"))


def _seen(r: Report) -> dict[tuple[str, str], str]:
    """(client host, step) -> the client address the server saw."""
    return {(o.step.host, o.step.args[0]): o.seen.rpartition(":")[0] for o in r.outcomes if o.seen}


@pytest.mark.netns
def test_demo_ipgate_then_kernel() -> None:
    _needs_netns()
    links = _root_links()
    topo = load("demo")
    out = io.StringIO()
    r = run_lab(topo, out=out)
    text = out.getvalue()
    assert r.ok, text + r.gw_log
    assert r.gw_status == 0  # `ipgate run` stopped cleanly on SIGTERM
    _assert_nothing_left(r.tag, links)
    want = {("lan1", "203.0.113.10:80"): "192.0.2.2", ("lan2", "203.0.113.10:80"): "192.0.2.2",
            ("lan1", "203.0.113.10:25"): "198.51.100.2", ("lan2", "203.0.113.10:25"): "198.51.100.2"}
    assert _seen(r) == want
    assert sorted(c.peer.rpartition(":")[0] for c in r.seen) == sorted(want.values())  # the server's own log
    for listing in ("fwmark 0x2 lookup smtp", "MASQUERADE", "MARK set 0x2", "TIME_WAIT src=10.0.0.2",
                    "dst=198.51.100.2 sport=25", "10.0.0.3 dev eth0 lladdr", "3 of 3 echoes answered"):
        assert listing in text, listing

    out = io.StringIO()
    k = run_lab(topo, kernel=True, out=out)
    assert k.ok, out.getvalue()
    _assert_nothing_left(k.tag, links)
    assert _seen(k) == want  # the kernel as the gateway: the same client addresses at the server
    assert "fwmark 0x2 lookup smtp" in out.getvalue()


@pytest.mark.netns
def test_failures_tear_down() -> None:
    _needs_netns()
    links = _root_links()
    topo = load("demo")
    # an exception in the middle, with the gateway and a server running
    lab = Lab(topo)
    with pytest.raises(RuntimeError, match="in the middle"), lab:
        assert run_step(lab, topo.steps[0]).ok  # serve
        assert run_step(lab, topo.steps[1]).ok  # ping through the gateway
        assert lab.gw is not None and lab.gw.poll() is None
        raise RuntimeError("in the middle")
    _assert_nothing_left(lab.ns.tag, links)

    # a step that fails: reported, the lab still goes
    wrong = parse(DEMO.replace("tcp lan1 203.0.113.10:80 expect 192.0.2.2",
                               "tcp lan1 203.0.113.10:80 expect 198.51.100.2"))
    out = io.StringIO()
    r = run_lab(wrong, out=out)
    assert not r.ok and [o.step.text for o in r.outcomes if not o.ok] == [
        "tcp lan1 203.0.113.10:80 expect 198.51.100.2"], out.getvalue()
    assert "expected 198.51.100.2" in out.getvalue()
    _assert_nothing_left(r.tag, links)

    # a configuration the gateway refuses: nothing comes up, nothing stays
    bad = parse(DEMO.replace("ip link set eth2 up", "ip route add 10.9.0.0/16 via nowhere"))
    for kernel in (False, True):
        lab = Lab(bad, kernel=kernel)
        with pytest.raises(LabError), lab:
            pass
        _assert_nothing_left(lab.ns.tag, links)


def _start_cli(out: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`ipgate lab --keep` in a child; (process, namespace tag) once the lab is up."""
    env = dict(os.environ, PYTHONPATH=SRC)
    with open(out, "w") as f:
        p = subprocess.Popen([sys.executable, "-m", "ipgate", "lab", "--keep"], stdout=f,
                             stderr=subprocess.STDOUT, env=env, start_new_session=True)
    assert _wait(lambda: "stays up" in out.read_text() or p.poll() is not None), out.read_text()
    assert p.poll() is None, out.read_text()
    m = re.search(rf"namespaces: {netns.PREFIX}(\d+-[0-9a-f]{{4}})-", out.read_text())
    assert m is not None
    return p, m.group(1)


@pytest.mark.netns
def test_signals_and_stale(tmp_path: Path) -> None:
    _needs_netns()
    links = _root_links()
    # SIGTERM: the lab tears itself down
    p, tag = _start_cli(tmp_path / "term.out")
    p.send_signal(signal.SIGTERM)
    assert p.wait(WAIT) == 128 + signal.SIGTERM
    _assert_nothing_left(tag, links)

    # SIGKILL: nothing runs its teardown; cleanup_stale() removes what it left
    p, tag = _start_cli(tmp_path / "kill.out")
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(WAIT)
    left = [n for n in netns.list_namespaces() if n.startswith(f"{netns.PREFIX}{tag}-")]
    assert len(left) == 8 and _agents() != []  # the gateway and the server outlive their parent
    gone = netns.cleanup_stale()
    assert set(left) <= set(gone)
    _assert_nothing_left(tag, links)
