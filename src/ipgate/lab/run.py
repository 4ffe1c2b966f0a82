"""Bring a lab up, run its gateway and its steps, tear everything down, even on failure.

    with Lab(load("demo")) as lab:        # namespaces, veths, bridges, addresses, the gateway
        run_step(lab, step) ...
                                          # gone: processes, namespaces (with their veths), temp files

The gateway is `ipgate run` in its namespace, attached with AF_PACKET to its
veth ends, a control socket and a log in a temp dir; or, with kernel=True,
the namespace's own kernel, configured by the same script (kernel.py).
Teardown runs from `__exit__`, from atexit, and after SIGTERM/SIGHUP (turned
into SystemExit by `run_lab`); `netns.cleanup_stale()` removes what a
killed run left.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import TextIO

import ipgate
from ipgate.io.control import ControlError, request
from ipgate.lab import netns
from ipgate.lab.kernel import KernelScriptError, load_module, modules, named, numbered, table_names, translate
from ipgate.lab.netns import PREFIX, Done, Namespaces, NetnsError
from ipgate.lab.steps import Outcome, run_step
from ipgate.lab.topology import Topology

GATEWAY_WAIT = 20.0  # seconds for `ipgate run` to answer on its control socket
STOP_WAIT = 5.0  # seconds for it to stop after SIGTERM
SERVE_WAIT = 10.0  # seconds for a server to listen
SERVE_LIFETIME = 600.0  # a server stops by itself after this, whatever happens to the lab
SERVE_MAXCONN = 1000
CONTROL_TIMEOUT = 10.0
KEEP_MAX = 3600.0
KERNEL_TOOLS = {"iptables": "iptables-legacy", "iptables-save": "iptables-legacy-save"}


class LabError(RuntimeError):
    """The lab could not be brought up."""


class KernelModuleError(LabError):
    """--kernel: a kernel module the configuration needs cannot be loaded here."""


def _env() -> dict[str, str]:
    """Children find this ipgate, installed or not."""
    src = str(Path(ipgate.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{path}" if path else src)


def _wait(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


@contextmanager
def _quiet_signals() -> Iterator[None]:
    """Teardown is not interrupted by a second Ctrl-C or SIGTERM (it is bounded anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def signals_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP raise SystemExit, so that `finally` blocks tear the lab down."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@dataclass
class ServerConn:
    host: str  # the server's host
    port: int
    peer: str  # ADDR:PORT as the server saw it
    kind: str = "tcp"  # tcp, udp, ftp-ctl, ftp-port (the address a PORT/EPRT named), ftp-data


@dataclass(eq=False)
class Lab:
    topo: Topology
    kernel: bool = False
    ns: Namespaces = field(default_factory=Namespaces)
    tmp: Path | None = None
    gw: subprocess.Popen[str] | None = None
    gw_status: int | None = None  # exit status of `ipgate run` after teardown
    gw_log: str = ""  # its log, kept after teardown
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    servers: list[tuple[str, Path]] = field(default_factory=list)  # (host, output file)
    seen: list[ServerConn] = field(default_factory=list)  # what the servers saw, read at teardown
    _down: bool = True

    # -- paths ----------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        if self.tmp is None:
            raise LabError("the lab is not up")
        return self.tmp / name

    @property
    def sock(self) -> str:
        return str(self._path("ctl.sock"))

    @property
    def gw_ns(self) -> str:
        return self.topo.gateway.name

    def log(self) -> str:
        return self.gw_log if self.tmp is None else _read(self._path("gw.log")) + _read(self._path("gw.out"))

    # -- up -------------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.down()

    def up(self) -> None:
        self._down = False
        atexit.register(self.down)
        netns.cleanup_stale()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{self.ns.tag}-"))
        self._network()
        if self.kernel:
            self._kernel_gateway()
        else:
            self._ipgate_gateway()

    def _network(self) -> None:
        topo, ns = self.topo, self.ns
        ns.add(topo.gateway.name)
        for h in topo.hosts:
            ns.add(h.name)
            if h.forward:
                ns.sysctl(h.name, {"net.ipv4.ip_forward": "1"})
        for lan, members in topo.lans().items():
            if len(members) == 2:
                a, b = members
                ns.veth(a.node, a.ifname, b.node, b.ifname)
                continue
            sw = f"sw-{lan}"
            ns.add(sw)
            for i, m in enumerate(members):
                ns.veth(sw, f"p{i}", m.node, m.ifname)
            ns.bridge(sw, "br0", [f"p{i}" for i in range(len(members))])
        for h in topo.hosts:
            for lk in h.links:
                for addr in lk.addrs:
                    ns.ip(h.name, "addr", "add", addr, "dev", lk.ifname)
            for route in h.routes:
                ns.ip(h.name, "route", "add", *route)

    def _ipgate_gateway(self) -> None:
        conf = self._path("gw.conf")
        conf.write_text(self.topo.gateway.config)
        for name, text in self.topo.gateway.files:
            self._path(name).write_text(text)
        attach = [w for lk in self.topo.gateway.links for w in ("--attach", f"{lk.ifname}={lk.ifname}")]
        argv = [sys.executable, "-m", "ipgate", "run", "-c", str(conf), *attach, "--control", self.sock,
                "--log", str(self._path("gw.log"))]
        with open(self._path("gw.out"), "w") as out:
            self.gw = self.ns.spawn(self.gw_ns, argv, env=_env(), stdout=out.fileno())
        gw = self.gw

        def answers() -> bool:
            if gw.poll() is not None:
                return True
            if not os.path.exists(self.sock):
                return False
            try:
                return request(self.sock, ["ip", "link", "show"], timeout=2.0)[0] == 0
            except ControlError:
                return False

        if not _wait(answers, GATEWAY_WAIT) or gw.poll() is not None:
            raise LabError(f"ipgate run did not come up (status {gw.poll()}):\n{self.log()}")

    def _kernel_gateway(self) -> None:
        gw = self.topo.gateway
        try:
            lines = translate(gw.config, {lk.ifname for lk in gw.links})
        except KernelScriptError as e:
            raise LabError(f"{gw.config_name}: {e}") from None
        for module in modules(gw.config):
            why = load_module(module)
            if why is not None:
                raise KernelModuleError(f"{gw.config_name}: {why}")
        for n, argv in lines:
            d = self.ns.exec(self.gw_ns, argv)
            if d.status != 0 or (argv[0] == "sysctl" and d.err.strip()):  # procps sysctl exits 0 on EINVAL
                raise LabError(f"{gw.config_name}:{n}: the kernel refused `{' '.join(argv)}`: {d.err.strip()}")

    # -- used by the steps ----------------------------------------------------------------
    def agent(self, host: str, *args: str, timeout: float = 10.0) -> Done:
        return self.ns.exec(host, [sys.executable, "-m", "ipgate.lab.agent", *args], timeout=timeout, env=_env())

    def serve(self, host: str, specs: list[str]) -> str:
        """Start servers on `host` (PORT, PORT/udp, PORT/ftp); "" once they listen, else what went wrong."""
        out_path = self._path(f"serve-{host}-{len(self.servers)}.out")
        argv = [sys.executable, "-m", "ipgate.lab.agent", "serve", ",".join(specs),
                str(SERVE_LIFETIME), str(SERVE_MAXCONN), host]
        with open(out_path, "w") as out:
            p = self.ns.spawn(host, argv, env=_env(), stdout=out.fileno())
        self.procs.append(p)
        self.servers.append((host, out_path))
        if not _wait(lambda: "listening" in _read(out_path) or p.poll() is not None, SERVE_WAIT):
            return "not listening in time"
        return "" if p.poll() is None else f"exited: {_read(out_path).strip()}"

    def gateway_cmd(self, argv: list[str]) -> Done:
        """A command on the gateway: over the control socket, or the real tool in the kernel's namespace."""
        if self.kernel:
            names = table_names(self.topo.gateway.config)
            if argv[0] == "ip":
                d = self.ns.exec(self.gw_ns, ["ip", *numbered(argv[1:], names)])
                return Done(d.status, named(d.out, names), d.err)
            return self.ns.exec(self.gw_ns, [KERNEL_TOOLS.get(argv[0], argv[0]), *argv[1:]])
        try:
            return Done(*request(self.sock, argv, timeout=CONTROL_TIMEOUT))
        except ControlError as e:
            return Done(1, "", f"control socket: {e}\n")

    def server_view(self) -> list[ServerConn]:
        """Each connection the servers accepted so far: (host, port, client address they saw)."""
        conns: list[ServerConn] = []
        for host, path in self.servers:
            for line in _read(path).splitlines():
                w = line.split()
                if len(w) == 4 and w[0] in ("conn", "udp") and w[1].isdigit():
                    conns.append(ServerConn(host, int(w[1]), f"{w[2]}:{w[3]}", "tcp" if w[0] == "conn" else "udp"))
                elif len(w) == 5 and w[0] == "ftp" and w[1].isdigit():
                    conns.append(ServerConn(host, int(w[1]), f"{w[3]}:{w[4]}", f"ftp-{w[2]}"))
        return conns

    def host_cmd(self, host: str, argv: list[str]) -> Done:
        """A command in a host's namespace (`ip neigh` for the arp step)."""
        return self.ns.exec(host, argv)

    # -- down -----------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Stop everything, delete everything; what could not be removed (empty when all went)."""
        if self._down:
            return []
        self._down = True
        atexit.unregister(self.down)
        with _quiet_signals():
            return self._teardown()

    def _teardown(self) -> list[str]:
        problems: list[str] = []
        if self.gw is not None and self.gw.poll() is None:
            self.gw.send_signal(signal.SIGTERM)  # a clean stop: its control socket goes
            try:
                self.gw.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                problems.append("ipgate run did not stop on SIGTERM: killed")
        for p in [*self.procs, *([self.gw] if self.gw is not None else [])]:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                p.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                problems.append(f"process {p.pid} still running")
        self.gw_status = self.gw.returncode if self.gw is not None else None
        if self.tmp is not None:
            self.seen = self.server_view()
            self.gw_log = self.log()
        problems += [f"namespace {n} not deleted" for n in self.ns.delete_all()]
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        return problems


@dataclass
class Report:
    topo: Topology
    kernel: bool
    tag: str  # the namespaces were ipgt-lab-TAG-*
    outcomes: list[Outcome] = field(default_factory=list)
    seen: list[ServerConn] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # teardown
    seconds: float = 0.0
    gw_status: int | None = None
    gw_log: str = ""

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes) and not self.problems and self.gw_status in (None, 0)


def run_lab(topo: Topology, *, kernel: bool = False, keep: float = 0.0, out: TextIO | None = None) -> Report:
    """Up, every step, down; progress on `out`.  Raises LabError/NetnsError if the lab cannot come up."""
    from ipgate.lab.report import print_header, print_keep, print_outcome, print_summary

    out = out if out is not None else sys.stdout
    start = time.monotonic()
    lab = Lab(topo, kernel)
    report = Report(topo, kernel, lab.ns.tag)
    try:
        with signals_exit(), lab:
            print_header(lab, out)
            for step in topo.steps:
                report.outcomes.append(outcome := run_step(lab, step))
                print_outcome(outcome, out)
            if keep > 0:
                print_keep(lab, out)
                try:
                    _wait(lambda: False, min(keep, KEEP_MAX), step=0.2)
                except KeyboardInterrupt:  # the usual way to end --keep
                    out.write("\n")
    finally:
        report.problems = lab.down()
        report.seen, report.gw_status, report.gw_log = lab.seen, lab.gw_status, lab.gw_log
        report.seconds = time.monotonic() - start
    print_summary(report, out)
    return report


def live_demo(out: TextIO) -> bool:
    """The live part of `ipgate demo`: the `demo` lab when root with `ip netns`; False if it failed."""
    from ipgate.lab.topology import load

    if os.geteuid() != 0:
        out.write("ipgate demo: the live lab (real hosts in network namespaces) needs root; "
                  "showing the offline part only.\n\n")
        return True
    why = netns.usable()
    if why is not None:
        out.write(f"ipgate demo: no live lab here ({why}); showing the offline part only.\n\n")
        return True
    out.write("ipgate demo: running as root with `ip netns`: first a live lab (`ipgate lab demo`),\n"
              "real hosts in network namespaces with `ipgate run` as their gateway.\n\n")
    try:
        ok = run_lab(load("demo"), out=out).ok
    except (LabError, NetnsError) as e:
        out.write(f"the live lab failed: {e}\n")
        ok = False
    out.write("\n")
    return ok


__all__ = ["KernelModuleError", "Lab", "LabError", "Report", "live_demo", "run_lab"]
