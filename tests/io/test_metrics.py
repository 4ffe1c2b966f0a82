"""Prometheus metrics (io/metrics.py): the text format, the loopback-only HTTP server, what a gateway exports.

The formatter and the server run in-process (no root needed); the last test fetches /metrics from a
running `ipgate run` in its own network namespace (ipgt-met-PID) with a TUN device, after pinging it.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ipgate.inet import aton
from ipgate.io.gateway import Gateway
from ipgate.io.main import cmd_run
from ipgate.io.metrics import (
    CONTENT_TYPE,
    MAX_CLIENTS,
    MAX_REQUEST,
    Metric,
    MetricsServer,
    collect,
    parse_listen,
    render,
    response,
)
from ipgate.packet.build import build_tcp, build_udp
from ipgate.shell import load_script

HERE = Path(__file__).resolve().parent
PY = sys.executable
WAIT = 15.0

# One sample line of the text format 0.0.4: name, optional {label="value",...}, value.
_SAMPLE = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(\\[\\"n]|[^"\\\n])*"'
                     r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\[\\"n]|[^"\\\n])*")*\})? '
                     r'(-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|[-+]Inf|NaN)')


def check_exposition(text: str) -> dict[str, float]:
    """Every line well-formed, each family's HELP and TYPE before its samples, once; sample -> value."""
    assert text.endswith("\n")
    families: set[str] = set()
    current = ""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            current = line.split()[2]
            assert current not in families, current
            families.add(current)
        elif line.startswith("# TYPE "):
            assert line.split()[2] == current and line.split()[3] in ("counter", "gauge", "untyped"), line
        else:
            assert _SAMPLE.fullmatch(line), line
            assert line.split("{")[0].split(" ")[0] == current, line
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


# -- the format -----------------------------------------------------------------------------------------------
def test_render_follows_the_text_format() -> None:
    text = render([
        Metric("a_total", "counter", "Packets.\nSecond line with a \\ backslash.").add(3),
        Metric("b", "gauge", "Odd labels.").add(1.5, reason='say "no"\\or\nnot').add(float("inf"), reason="x"),
        Metric("c", "gauge", "Nothing yet."),
        Metric("d", "gauge", "Not a number.").add(float("nan")).add(float("-inf"), k="v"),
    ])
    assert text == (
        "# HELP a_total Packets.\\nSecond line with a \\\\ backslash.\n"
        "# TYPE a_total counter\n"
        "a_total 3\n"
        "# HELP b Odd labels.\n"
        "# TYPE b gauge\n"
        'b{reason="say \\"no\\"\\\\or\\nnot"} 1.5\n'
        'b{reason="x"} +Inf\n'
        "# HELP c Nothing yet.\n"
        "# TYPE c gauge\n"
        "# HELP d Not a number.\n"
        "# TYPE d gauge\n"
        "d NaN\n"
        'd{k="v"} -Inf\n')
    check_exposition(text)


@pytest.mark.parametrize("bad", [Metric("1bad", "gauge", ""), Metric("x", "histogram", ""),
                                 Metric("x", "gauge", "").add(1, **{"bad-label": "v"}),
                                 Metric("x", "gauge", "").add(1, __name__="v")])
def test_render_refuses_bad_names(bad: Metric) -> None:
    with pytest.raises(ValueError):
        render([bad])


@pytest.mark.parametrize("text,want", [("127.0.0.1:9109", ("127.0.0.1", 9109)), ("127.3.4.5:0", ("127.3.4.5", 0)),
                                       ("localhost:9109", ("127.0.0.1", 9109)), ("[::1]:9109", ("::1", 9109))])
def test_listen_addresses(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["0.0.0.0:9109", "192.0.2.1:9109", "[::]:9109", "9109", "127.0.0.1:",
                                  "127.0.0.1:70000", "example.org:9109", "127.0.0.1:-1"])
def test_listen_refuses_anything_but_loopback(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_ipgate_run_refuses_a_non_loopback_metrics_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cmd_run(["-c", "/nonexistent", "--metrics", "198.51.100.1:9109"])
    assert e.value.code == 2 and "loopback" in capsys.readouterr().err


# -- HTTP ---------------------------------------------------------------------------------------------------------
def test_responses() -> None:
    def body() -> str:
        return "x 1\n"

    ok = response(b"GET /metrics HTTP/1.1\r\nHost: h", body)
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\nx 1\n")
    assert f"Content-Type: {CONTENT_TYPE}\r\n".encode() in ok and b"Content-Length: 4\r\n" in ok
    assert b"Connection: close\r\n" in ok
    assert response(b"GET /metrics?x=1 HTTP/1.0", body).endswith(b"x 1\n")
    head = response(b"HEAD /metrics HTTP/1.1", body)
    assert b"Content-Length: 4\r\n" in head and head.endswith(b"\r\n\r\n")
    assert response(b"POST /metrics HTTP/1.1", body).startswith(b"HTTP/1.1 405 ")
    assert response(b"GET /other HTTP/1.1", body).startswith(b"HTTP/1.1 404 ")
    assert response(b"\x00\xff garbage", body).startswith(b"HTTP/1.1 400 ")

    def broken() -> str:
        raise RuntimeError("boom")

    assert response(b"GET /metrics HTTP/1.1", broken).startswith(b"HTTP/1.1 500 ")


class Loop:
    """A selector loop in the test, standing in for the gateway's."""

    def __init__(self, body: Callable[[], str]) -> None:
        self.sel = selectors.DefaultSelector()
        self.server = MetricsServer(("127.0.0.1", 0), body, self.sel)

    def spin(self, until: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "timed out"
            for key, mask in self.sel.select(0.05):
                key.data(mask)
            self.server.expire(time.monotonic())

    def client(self) -> socket.socket:
        c = socket.create_connection(self.server.address, timeout=5)
        c.setblocking(False)
        return c

    def answer(self, c: socket.socket, timeout: float = 5.0) -> bytes:
        got = bytearray()
        closed = False

        def done() -> bool:
            nonlocal closed
            try:
                d = c.recv(65536)
            except BlockingIOError:
                return False
            if not d:
                closed = True
                return True
            got.extend(d)
            return False

        self.spin(done, timeout)
        return bytes(got)

    def close(self) -> None:
        self.server.close()
        self.sel.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    big = "y " * 200_000  # more than one send() takes: the answer goes out in pieces
    lp = Loop(lambda: f"x 1\n# {big}\n")
    yield lp
    lp.close()


def test_server_answers_scrapes(loop: Loop) -> None:
    for _ in range(3):
        c = loop.client()
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n")
        a = loop.answer(c)
        head, body = a.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 OK") and body.startswith(b"x 1\n") and len(body) > 400_000
        c.close()
    loop.spin(lambda: not loop.server.clients)  # each went when its client closed (the lingering close)
    assert loop.server.requests == 3


def test_server_bounds_requests_clients_and_time(loop: Loop, monkeypatch: pytest.MonkeyPatch) -> None:
    # a request that never ends its headers
    c = loop.client()
    c.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"a" * MAX_REQUEST)
    assert loop.answer(c).startswith(b"HTTP/1.1 431 ")
    # more clients than allowed: the extra ones are closed at once
    idle = [loop.client() for _ in range(MAX_CLIENTS)]
    loop.spin(lambda: len(loop.server.clients) == MAX_CLIENTS)
    extra = loop.client()
    assert loop.answer(extra) == b""
    # a client that says nothing is dropped at its deadline
    monkeypatch.setattr(time, "monotonic", lambda real=time.monotonic: real() + 60)
    loop.server.expire(time.monotonic())
    assert not loop.server.clients
    for s in [*idle, c, extra]:
        s.close()


def test_server_takes_loopback_only() -> None:
    sel = selectors.DefaultSelector()
    with pytest.raises(ValueError):
        MetricsServer(("0.0.0.0", 0), lambda: "", sel)
    sel.close()


# -- what a gateway exports -----------------------------------------------------------------------------------
CONF = """\
ip link add lan0 type dummy
ip link add wan0 type dummy
ip addr add 192.168.10.1/24 dev lan0
ip addr add 203.0.113.1/24 dev wan0
ip link set lan0 up
ip link set wan0 up
echo 1 > /proc/sys/net/ipv4/ip_forward
iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE
iptables -A FORWARD -p udp --dport 9 -j DROP
"""


def test_collect_reads_the_gateway(tmp_path: Path) -> None:
    """A gateway that never opened a device: its engine fed by hand, its results handled as the loop does."""
    gw = Gateway(str(tmp_path / "gw.conf"), [])
    gw.stack = load_script(CONF, "gw.conf")
    gw.engine.rebind(gw.stack)
    now = 1.0
    for pkt in (build_tcp(aton("192.168.10.2"), aton("203.0.113.2"), 40000, 80, flags=0x02),
                build_udp(aton("192.168.10.2"), aton("203.0.113.2"), 5000, 9, b"x"), b"\x45junk"):
        gw._emit(gw.engine.receive("lan0", pkt, now), now)
    samples = check_exposition(render(collect(gw)))
    assert samples["ipgate_conntrack_entries"] == 1
    assert samples["ipgate_conntrack_max"] == 262144
    assert samples['ipgate_conntrack_stat_total{stat="insert"}'] == 1
    assert samples["ipgate_packets_forwarded_total"] == 1  # the SYN: a Tx for wan0 ...
    assert samples['ipgate_packets_dropped_total{reason="no device attached for wan0"}'] == 1  # ... not attached
    assert samples['ipgate_packets_dropped_total{reason="filter/FORWARD"}'] == 1
    assert samples['ipgate_engine_counter_total{name="IP_INHDR"}'] == 1
    assert samples["ipgate_ipnat_sessions"] == 0
    assert samples['ipgate_neighbours{state="REACHABLE"}'] == 0
    assert samples['ipgate_log_lines_suppressed_total{source="ipgate"}'] == 0


# -- a running gateway ------------------------------------------------------------------------------------------
NS_CONF = """\
ip link add tun0 type dummy
ip addr add 192.0.2.1/24 dev tun0
ip link set tun0 up
echo 1 > /proc/sys/net/ipv4/ip_forward
iptables -t nat -A POSTROUTING -o tun0 -j MASQUERADE
"""
FETCH = """\
import sys, urllib.request
with urllib.request.urlopen("http://127.0.0.1:9109/metrics", timeout=5) as r:
    sys.stdout.write(r.headers["Content-Type"] + "\\n" + r.read().decode())
"""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=WAIT)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {r.returncode}\n{r.stdout}{r.stderr}")
    return r


@pytest.mark.netns
def test_a_running_gateway_serves_metrics(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        pytest.skip("needs root and /dev/net/tun")
    if subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10).returncode != 0:
        pytest.skip("`ip netns` unusable")
    ns = f"ipgt-met-{os.getpid()}"
    conf, sock, logfile = tmp_path / "gw.conf", str(tmp_path / "ctl.sock"), tmp_path / "gw.log"
    conf.write_text(NS_CONF)
    gw: subprocess.Popen[str] | None = None
    try:
        _run("ip", "netns", "add", ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        env = dict(os.environ, PYTHONPATH=str(HERE.parents[1] / "src"))
        gw = subprocess.Popen(["ip", "netns", "exec", ns, PY, "-m", "ipgate.cli", "run", "-c", str(conf),
                               "--attach", "tun0=tun", "--control", sock, "--log", str(logfile),
                               "--metrics", "127.0.0.1:9109"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                              env=env)
        deadline = time.monotonic() + WAIT
        while not os.path.exists(sock) and gw.poll() is None:
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.05)
        assert gw.poll() is None, gw.communicate(timeout=WAIT)[0]
        assert "metrics on http://127.0.0.1:9109/metrics" in logfile.read_text()
        # the kernel side of the TUN is a host on 192.0.2.0/24; it pings the gateway
        _run("ip", "-n", ns, "addr", "add", "192.0.2.2/24", "dev", "tun0")
        _run("ip", "-n", ns, "link", "set", "tun0", "up")
        ping = _run("ip", "netns", "exec", ns, PY, str(HERE / "netns_hosts.py"), "ping", "192.0.2.1", "3", check=False)
        assert ping.returncode == 0, ping.stdout + logfile.read_text()
        got = _run("ip", "netns", "exec", ns, PY, "-c", FETCH)
        ctype, text = got.stdout.split("\n", 1)
        assert ctype == CONTENT_TYPE
        samples = check_exposition(text)
        assert samples['ipgate_device_receive_packets_total{device="tun0"}'] >= 3
        assert samples['ipgate_device_receive_bytes_total{device="tun0"}'] >= 3 * 62
        assert samples['ipgate_device_transmit_packets_total{device="tun0"}'] >= 3
        assert samples['ipgate_device_transmit_bytes_total{device="tun0"}'] >= 3 * 62
        assert samples["ipgate_packets_forwarded_total"] >= 3  # the echo replies
        assert samples["ipgate_internal_errors_total"] == 0
        # only loopback: the port is not open on the TUN's address
        probe = _run("ip", "netns", "exec", ns, PY, "-c",
                     "import socket; socket.create_connection(('192.0.2.1', 9109), timeout=2)", check=False)
        assert probe.returncode != 0
        os.kill(gw.pid, signal.SIGTERM)
        gw.communicate(timeout=WAIT)
        assert gw.returncode == 0
    finally:
        if gw is not None and gw.poll() is None:
            try:
                os.killpg(gw.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            gw.communicate(timeout=5)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=WAIT)
