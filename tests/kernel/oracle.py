"""The real Linux kernel, in a throw-away network namespace, as a routing oracle.

`KernelOracle` runs iproute2 command lines inside its own netns so that the
host is never touched.  Three translations make the kernel side accept the
same lines that ipgate's `Shell` accepts:

* `ip link add NAME type dummy` -> a veth pair whose peer lives (up) in a
  second "sink" namespace: this kernel has no dummy driver, and a veth whose
  peer is up has carrier exactly like a dummy once NAME is set up.
* `echo V > /proc/sys/net/...` -> the sysctl is written inside the namespace.
* `echo "N NAME" >> /etc/iproute2/rt_tables` -> recorded in a private map
  (the real file is never touched); `table NAME` / `lookup NAME` words are
  rewritten to numbers before iproute2 sees them.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

NS_PREFIX = "ipgt-"
# Per-command bound; a healthy `ip` call takes ~2 ms.
CMD_TIMEOUT = 10.0

# Names iproute2 knows without any rt_tables file.
STD_TABLES: dict[str, int] = {"unspec": 0, "default": 253, "main": 254, "local": 255}

# Kernel defaults, written explicitly: a new netns inherits IPv4 conf/all and
# conf/default from the host's init_net (net.core.devconf_inherit_init_net=0),
# so a host with e.g. rp_filter=2 would otherwise change the answers.
_CONF_DEFAULTS: dict[str, str] = {
    "forwarding": "0",
    "rp_filter": "0",
    "accept_local": "0",
    "route_localnet": "0",
    "src_valid_mark": "0",
    "promote_secondaries": "0",
    "ignore_routes_with_linkdown": "0",
}
_GLOBAL_SYSCTLS: dict[str, str] = {
    "ipv4/ip_forward": "0",
    "ipv4/fib_multipath_hash_policy": "0",
    "ipv4/fib_multipath_use_neigh": "0",
    # Fixed seed (kernel >= 6.11) so multipath choices repeat run to run.
    "ipv4/fib_multipath_hash_seed": "1",
    # veth gets IPv6 link-local routes otherwise; ipgate is IPv4 only.
    "ipv6/conf/all/disable_ipv6": "1",
    "ipv6/conf/default/disable_ipv6": "1",
}
_OPTIONAL_SYSCTLS = {"ipv4/fib_multipath_hash_seed", "ipv6/conf/all/disable_ipv6",
                     "ipv6/conf/default/disable_ipv6"}

_ECHO_RE = re.compile(r"^/proc/sys/net/[A-Za-z0-9_./-]+$")
_RT_TABLES = "/etc/iproute2/rt_tables"


@dataclass(frozen=True)
class Result:
    status: int
    out: str
    err: str


class OracleError(RuntimeError):
    """The harness itself failed (not a command the kernel rejected)."""


def _run(argv: list[str], stdin: str | None = None, timeout: float = CMD_TIMEOUT) -> Result:
    try:
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                           timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise OracleError(f"timeout after {timeout}s: {argv!r}") from e
    return Result(p.returncode, p.stdout, p.stderr)


def netns_usable() -> tuple[bool, str]:
    """Can we create namespaces here?  Returns (ok, reason-if-not)."""
    if os.geteuid() != 0:
        return False, "needs root (ip netns add)"
    name = f"{NS_PREFIX}{os.getpid()}-probe{secrets.token_hex(3)}"
    try:
        r = _run(["ip", "netns", "add", name])
    except (OSError, OracleError) as e:
        return False, f"ip netns unusable: {e}"
    if r.status != 0:
        return False, f"ip netns add failed: {r.err.strip()}"
    _run(["ip", "netns", "del", name])
    return True, ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Delete `ipgt-<pid>-*` namespaces whose creating process is gone.

    Only our prefix, and only dead owners, so a concurrent run is left alone.
    """
    r = _run(["ip", "netns", "list"])
    removed: list[str] = []
    for line in r.out.splitlines()[:10000]:
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"^{re.escape(NS_PREFIX)}(\d+)-", name)
        if not m or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        if _run(["ip", "netns", "del", name]).status == 0:
            removed.append(name)
    return removed


_stale_cleaned = False


class KernelOracle:
    """Context manager owning an oracle netns and its sink netns."""

    def __init__(self) -> None:
        tag = f"{NS_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.ns = tag
        self.sink = tag + "-sink"
        self.tables: dict[str, int] = {}
        self._peer_seq = 0
        self._created: list[str] = []

    # -- lifecycle -----------------------------------------------------
    def __enter__(self) -> KernelOracle:
        global _stale_cleaned
        if not _stale_cleaned:
            cleanup_stale()
            _stale_cleaned = True
        try:
            for name in (self.ns, self.sink):
                r = _run(["ip", "netns", "add", name])
                if r.status != 0:
                    raise OracleError(f"ip netns add {name}: {r.err.strip()}")
                self._created.append(name)
            self._setup_sysctls()
            self._must(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        # Oracle first: deleting it destroys the veth pairs and their peers.
        for name in list(self._created):
            _run(["ip", "netns", "del", name])
            self._created.remove(name)

    def _must(self, argv: list[str]) -> None:
        r = _run(argv)
        if r.status != 0:
            raise OracleError(f"{' '.join(argv)}: {r.err.strip()}")

    def _setup_sysctls(self) -> None:
        lines: list[str] = []
        for key, val in _GLOBAL_SYSCTLS.items():
            path = f"/proc/sys/net/{key}"
            tail = " 2>/dev/null || true" if key in _OPTIONAL_SYSCTLS else ""
            lines.append(f"echo {val} > {path}{tail}")
        for dev in ("all", "default", "lo"):
            for key, val in _CONF_DEFAULTS.items():
                lines.append(f"echo {val} > /proc/sys/net/ipv4/conf/{dev}/{key}")
        for ns in (self.ns, self.sink):
            self._must(["ip", "netns", "exec", ns, "sh", "-ec", "\n".join(lines)])

    # -- commands ------------------------------------------------------
    def run(self, line: str) -> Result:
        """Run one shell-like command line inside the oracle namespace."""
        try:
            words = _split(line)
        except ValueError as e:
            return Result(2, "", f"oracle: cannot parse: {e}\n")
        if not words:
            return Result(0, "", "")
        if words[0] == "echo":
            return self._echo(words)
        if words[0] == "ip":
            return self._ip(words[1:])
        return Result(127, "", f"oracle: unsupported command: {words[0]}\n")

    def route_get_json(self, args: str) -> Result:
        """`ip -j route get ARGS` inside the oracle namespace."""
        return self.run(f"ip -j route get {args}")

    def sysctl(self, key: str) -> str:
        """Read a sysctl (dotted or slash form) inside the oracle namespace."""
        path = "/proc/sys/" + key.replace(".", "/")
        r = _run(["ip", "netns", "exec", self.ns, "cat", path])
        if r.status != 0:
            raise OracleError(f"read {path}: {r.err.strip()}")
        return r.out.strip()

    def _ip(self, args: list[str]) -> Result:
        opts: list[str] = []
        i = 0
        while i < len(args) and args[i].startswith("-"):
            # -n/-netns/-batch would escape the namespace or the one-line model.
            if args[i].lstrip("-") in ("n", "netns", "b", "batch", "force"):
                return Result(2, "", f"oracle: option {args[i]} not allowed\n")
            opts.append(args[i])
            i += 1
        rest = self._translate_tables(args[i:])
        if len(rest) >= 2 and rest[0] == "link" and rest[1] == "add":
            dummy = _parse_dummy_add(rest[2:])
            if dummy is not None:
                return self._add_dummy(opts, *dummy)
        if rest and rest[0] == "netns":
            return Result(2, "", "oracle: ip netns not allowed\n")
        return _run(["ip", "-n", self.ns, *opts, *rest])

    def _add_dummy(self, opts: list[str], name: str, extra: list[str]) -> Result:
        self._peer_seq += 1
        peer = f"pk{self._peer_seq}"
        r = _run(["ip", "-n", self.ns, *opts, "link", "add", name, *extra,
                  "type", "veth", "peer", "name", peer, "netns", self.sink])
        if r.status == 0:
            up = _run(["ip", "-n", self.sink, "link", "set", peer, "up"])
            if up.status != 0:
                raise OracleError(f"sink peer {peer} up: {up.err.strip()}")
        return r

    def _translate_tables(self, words: list[str]) -> list[str]:
        if not words or words[0] not in ("route", "rule"):
            return words
        out = list(words)
        for i in range(len(out) - 1):
            if out[i] in ("table", "lookup") and out[i + 1] in self.tables:
                out[i + 1] = str(self.tables[out[i + 1]])
        return out

    def _echo(self, words: list[str]) -> Result:
        # Accept exactly: echo VALUE (>|>>) PATH
        if len(words) != 4 or words[2] not in (">", ">>"):
            return Result(2, "", "oracle: unsupported echo form\n")
        value, redir, path = words[1], words[2], words[3]
        if path == _RT_TABLES:
            return self._rt_tables(value, append=redir == ">>")
        if not _ECHO_RE.match(path) or ".." in path:
            return Result(2, "", f"oracle: refusing to write {path}\n")
        return _run(["ip", "netns", "exec", self.ns, "sh", "-c",
                     'echo "$1" > "$2"', "sh", value, path])

    def _rt_tables(self, value: str, append: bool) -> Result:
        if not append:
            self.tables.clear()
        parts = value.split()
        if len(parts) == 2:
            num, name = parts
            try:
                n = int(num, 0)
            except ValueError:
                n = -1
            # iproute2 silently skips malformed lines; so do we.
            if 0 <= n <= 0xFFFFFFFF and name not in STD_TABLES:
                self.tables.setdefault(name, n)
        return Result(0, "", "")


def _split(line: str) -> list[str]:
    lex = shlex.shlex(line, posix=True, punctuation_chars="<>|;&")
    lex.whitespace_split = True
    return list(lex)


def _parse_dummy_add(words: list[str]) -> tuple[str, list[str]] | None:
    """For `link add [dev|name] NAME OPTS... type dummy` return (NAME, OPTS)."""
    if len(words) < 3 or words[-2:] != ["type", "dummy"]:
        return None
    body = words[:-2]
    if body and body[0] in ("dev", "name"):
        body = body[1:]
    if not body:
        return None
    return body[0], body[1:]


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
