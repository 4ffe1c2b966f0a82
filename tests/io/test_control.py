"""The control socket and the live commands, without devices: a server in a selector, clients in threads."""

from __future__ import annotations

import os
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ipgate.engine.engine import Engine
from ipgate.inet import aton
from ipgate.io.control import ControlError, ControlServer, request
from ipgate.io.live import LiveCommands
from ipgate.link.layer import LinkLayer
from ipgate.packet.build import build_udp
from ipgate.shell import load_script
from ipgate.stack import Stack

CONF = """\
ip link add eth0 type dummy
ip link add eth1 type dummy
ip addr add 192.168.0.1/24 dev eth0
ip addr add 203.0.113.1/24 dev eth1
ip link set eth0 up
ip link set eth1 up
ip route add default via 203.0.113.254
echo 1 > /proc/sys/net/ipv4/ip_forward
iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE
"""


class Loop:
    """Runs the server's selector until stopped (at most 20 s)."""

    def __init__(self, path: str, handler: Callable[[list[str], str | None], tuple[int, str, str]]) -> None:
        self.sel = selectors.DefaultSelector()
        self.server = ControlServer(path, handler, self.sel)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 20
        while not self.stop.is_set() and time.monotonic() < deadline:
            for key, mask in self.sel.select(0.05):
                key.data(mask)
            self.server.expire(time.monotonic())

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.server.close()
        self.sel.close()


@pytest.fixture
def sock(tmp_path: Path) -> str:
    return str(tmp_path / "ctl.sock")


def _serve(path: str, handler: Callable[[list[str], str | None], tuple[int, str, str]]) -> Iterator[Loop]:
    loop = Loop(path, handler)
    try:
        yield loop
    finally:
        loop.close()


def test_round_trip_and_socket_mode(sock: str) -> None:
    for _loop in _serve(sock, lambda argv, stdin: (3, " ".join(argv) + (stdin or ""), "err\n")):
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert request(sock, ["ip", "a b"], "<in>") == (3, "ip a b<in>", "err\n")
    assert not os.path.exists(sock)  # removed on close


def test_bad_requests_and_handler_errors_do_not_stop_the_server(sock: str) -> None:
    def handler(argv: list[str], stdin: str | None) -> tuple[int, str, str]:
        if argv == ["boom"]:
            raise RuntimeError("bug")
        return 0, "x" * 3_000_000, ""  # a big answer, written across many wake-ups

    for loop in _serve(sock, handler):
        for junk in (b"not json\n", b'{"argv": "ip"}\n', b"[1]\n"):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(sock)
                s.sendall(junk)
                assert b'"status": 2' in s.recv(4096)
        assert request(sock, ["boom"])[0] == 1 and "internal error" in request(sock, ["boom"])[2]
        assert request(sock, ["big"])[1] == "x" * 3_000_000
        with socket.socket(socket.AF_UNIX) as idle:  # a silent client is dropped, others are served
            idle.connect(sock)
            assert request(sock, ["big"])[0] == 0
        assert loop.server.errors == 2


def test_stale_socket_is_replaced_and_a_live_one_refused(sock: str) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock)
    stale.close()  # the file stays, nobody listens
    for _loop in _serve(sock, lambda argv, stdin: (0, "", "")):
        with pytest.raises(OSError, match="another gateway"):
            ControlServer(sock, lambda argv, stdin: (0, "", ""), selectors.DefaultSelector())
    with pytest.raises(ControlError):
        request(sock, ["ip"], timeout=2)


class FakeGateway:
    def __init__(self) -> None:
        self.stack: Stack = load_script(CONF, "gw.conf")
        self.link: LinkLayer | None = None
        self.reloads = 0
        self.changes = 0

    def reload(self) -> tuple[bool, str]:
        self.reloads += 1
        return True, "reloaded"

    def stats(self) -> str:
        return "stats\n"

    def after_command(self) -> None:
        self.changes += 1


def test_live_commands_use_the_clock_and_leave_the_state_alone() -> None:
    gw = FakeGateway()
    eng = Engine(gw.stack)
    eng.receive("eth0", build_udp(aton("192.168.0.5"), aton("198.51.100.9"), 1030, 53, b"q"), 1000.0)
    cmds = LiveCommands(gw, clock=lambda: 1010.0)
    status, out, _ = cmds.run(["conntrack", "-L"], None)
    assert status == 0 and out.startswith("udp      17 20 ")  # 30 s timeout, 10 s later
    assert " 20 " in cmds.run(["cat", "/proc/net/nf_conntrack"], None)[1]
    # trace explains on a copy: no new connection in the live table
    before = len(gw.stack.conntrack)
    status, out, err = cmds.run(["trace", "udp", "192.168.0.6:1", "198.51.100.9:53", "iif", "eth0"], None)
    assert status == 0, err
    assert len(gw.stack.conntrack) == before
    # commands change the live state, and the gateway hears about it
    assert cmds.run(["ip", "addr", "add", "192.168.0.2/24", "dev", "eth0"], None)[0] == 0
    assert "192.168.0.2/24" in cmds.run(["ip", "addr", "show", "dev", "eth0"], None)[1]
    assert gw.changes == 2 + 2  # conntrack, cat, addr add, addr show (trace is on a copy)
    rules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    assert cmds.run(["iptables-restore"], rules)[0] == 0
    assert "-P FORWARD DROP" in cmds.run(["iptables", "-S"], None)[1]
    assert "iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE" in cmds.run(["save"], None)[1]
    assert cmds.run(["reload"], None) == (0, "reloaded\n", "") and gw.reloads == 1
    assert cmds.run(["ip", "neigh", "show"], None) == (0, "", "")


def test_ip_neigh_against_the_link_layer() -> None:
    gw = FakeGateway()
    for d in gw.stack.devices.values():
        if not d.loopback:
            d.kind = "ether"
    gw.link = LinkLayer(gw.stack)
    cmds = LiveCommands(gw, clock=lambda: 5.0)
    assert cmds.run(["ip", "neigh", "replace", "192.168.0.7", "lladdr", "02:00:00:00:00:07", "dev", "eth0"],
                    None)[0] == 0
    assert cmds.run(["ip", "neigh", "show"], None)[1] == "192.168.0.7 dev eth0 lladdr 02:00:00:00:00:07 PERMANENT \n"
    assert cmds.run(["ip", "neigh", "del", "192.168.0.7", "dev", "eth0"], None)[0] == 0
    assert cmds.run(["ip", "neigh", "show"], None)[1] == ""
