"""Network namespaces for a lab: create, wire, run commands inside, delete.

Every namespace of one lab is named ``ipgt-lab-<pid>-<token>-<short>``: the
pid says which process owns it, so `cleanup_stale()` can remove what a
killed run left behind without touching a live lab.  Everything goes
through the `ip` tool (iproute2) with a timeout; nothing here waits forever.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "ipgt-lab-"
TIMEOUT = 10.0  # seconds any one command may take
KILL_WAIT = 3.0  # seconds to wait for killed processes to go
MAX_NAMESPACES = 10_000  # lines of `ip netns list` looked at

_STALE = re.compile(rf"^{re.escape(PREFIX)}(\d+)-[0-9a-f]{{4}}-[a-z0-9-]+$")
_STALE_DIR = re.compile(rf"^{re.escape(PREFIX)}(\d+)-[0-9a-f]{{4}}-")

# Every namespace starts from the kernel's defaults for what matters here,
# whatever the host set (a new netns copies conf/all and conf/default from it).
BASE_SYSCTLS: dict[str, str] = {
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
    "net.ipv4.ip_forward": "0",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}


class NetnsError(RuntimeError):
    """A command that builds the lab failed."""


@dataclass(frozen=True, slots=True)
class Done:
    status: int
    out: str
    err: str


def run(argv: Sequence[str], *, stdin: str | None = None, timeout: float = TIMEOUT,
        env: Mapping[str, str] | None = None) -> Done:
    """Run a command; a timeout is status 124, a missing program 127."""
    try:
        p = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout,
                           check=False, env=None if env is None else dict(env))
    except subprocess.TimeoutExpired:
        return Done(124, "", f"timed out after {timeout:g} s: {' '.join(argv)}\n")
    except FileNotFoundError:
        return Done(127, "", f"{argv[0]}: not found\n")
    return Done(p.returncode, p.stdout, p.stderr)


def must(argv: Sequence[str], stdin: str | None = None) -> str:
    d = run(argv, stdin=stdin)
    if d.status != 0:
        raise NetnsError(f"{' '.join(argv)}: {d.err.strip() or f'status {d.status}'}")
    return d.out


def usable() -> str | None:
    """Why a lab cannot be built here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is missing"
    probe = f"{PREFIX}{os.getpid()}-{secrets.token_hex(2)}-probe"
    d = run(["ip", "netns", "add", probe])
    if d.status != 0:
        return f"`ip netns add` fails: {d.err.strip()}"
    run(["ip", "netns", "del", probe])
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    d = run(["ip", "netns", "list"])
    names = [ln.split()[0] for ln in d.out.splitlines()[:MAX_NAMESPACES] if ln.split()]
    return names if d.status == 0 else []


def pids_in(ns: str) -> list[int]:
    d = run(["ip", "netns", "pids", ns])
    return [int(w) for w in d.out.split() if w.isdigit()] if d.status == 0 else []


def kill_pids(pids: Sequence[int]) -> None:
    """SIGKILL these processes (all in a namespace this module made) and wait, bounded, for them to go."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + KILL_WAIT
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def delete(ns: str) -> bool:
    """Kill what runs in `ns`, then delete it (its veth ends and bridges go with it)."""
    kill_pids(pids_in(ns))
    return run(["ip", "netns", "del", ns]).status == 0


def cleanup_stale() -> list[str]:
    """Delete lab namespaces and temp dirs whose owning process is dead; never a live lab's."""
    gone: list[str] = []
    for ns in list_namespaces():
        m = _STALE.match(ns)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))) and delete(ns):
            gone.append(ns)
    tmp = Path(tempfile.gettempdir())
    for d in sorted(tmp.glob(f"{PREFIX}*"))[:MAX_NAMESPACES]:
        m = _STALE_DIR.match(d.name)
        if m and d.is_dir() and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(str(d))
    return gone


@dataclass
class Namespaces:
    """The namespaces of one lab, by short name ("gw", "lan1", ...)."""

    tag: str = field(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(2)}")
    created: list[str] = field(default_factory=list)  # full names, in creation order

    def name(self, short: str) -> str:
        return f"{PREFIX}{self.tag}-{short}"

    def add(self, short: str, sysctls: Mapping[str, str] = BASE_SYSCTLS) -> str:
        ns = self.name(short)
        must(["ip", "netns", "add", ns])
        self.created.append(ns)
        must(["ip", "-n", ns, "link", "set", "lo", "up"])
        if sysctls:
            self.sysctl(short, sysctls)
        return ns

    def sysctl(self, short: str, values: Mapping[str, str]) -> None:
        # -e: a kernel without IPv6 has no ipv6 keys, which is fine
        must(["ip", "netns", "exec", self.name(short), "sysctl", "-qew",
              *(f"{k}={v}" for k, v in values.items())])

    def ip(self, short: str, *args: str) -> str:
        return must(["ip", "-n", self.name(short), *args])

    def veth(self, a: str, a_if: str, b: str, b_if: str) -> None:
        """A veth pair: `a_if` in namespace a, `b_if` in namespace b, both up."""
        must(["ip", "-n", self.name(a), "link", "add", a_if, "type", "veth", "peer", "name", b_if,
              "netns", self.name(b)])
        self.ip(a, "link", "set", a_if, "up")
        self.ip(b, "link", "set", b_if, "up")

    def bridge(self, short: str, name: str, ports: Sequence[str]) -> None:
        """A bridge (no STP, forwarding at once) over `ports`, all in namespace `short`."""
        self.ip(short, "link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        for port in ports:
            self.ip(short, "link", "set", port, "master", name)
        self.ip(short, "link", "set", name, "up")

    def exec(self, short: str, argv: Sequence[str], *, stdin: str | None = None, timeout: float = TIMEOUT,
             env: Mapping[str, str] | None = None) -> Done:
        return run(["ip", "netns", "exec", self.name(short), *argv], stdin=stdin, timeout=timeout, env=env)

    def spawn(self, short: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              stdout: int | None = subprocess.PIPE) -> subprocess.Popen[str]:
        """A background process in the namespace, in its own session (its group is killed at teardown)."""
        return subprocess.Popen(["ip", "netns", "exec", self.name(short), *argv], stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                env=None if env is None else dict(env))

    def delete_all(self) -> list[str]:
        """Delete every namespace made here, last first; the names that could not be deleted."""
        failed = [ns for ns in reversed(self.created) if not delete(ns)]
        self.created = [ns for ns in self.created if ns in failed]
        return failed
