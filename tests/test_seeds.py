"""The seed documents' examples (`examples/*.conf`) against the real kernel's answers.

Each example is loaded with `ipgate.shell.load_script`; then the listing commands
its document shows (`ip rule show`, `ip route show table X`, `route -n`,
`ifconfig`) and a few `ip route get` answers that make the document's point
must come out exactly as Linux prints them.

EXPECTED below was captured, not written by hand: from Linux 6.18 with
iproute2 6.1 and net-tools 2.10, in a throw-away network namespace (see
`KernelBox`).  Where ipgate disagrees, ipgate is wrong: fix ipgate, not the
expected text.  To re-capture (root):

    python tests/test_seeds.py > /tmp/expected.py   # prints a new EXPECTED

The `netns` test at the end re-runs the capture and checks that EXPECTED still
is what this machine's kernel says (skipped where namespaces are unavailable).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from ipgate.shell import Shell, load_script
from ipgate.stack import Stack

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@dataclass(frozen=True)
class Case:
    """One command run after the example is loaded, with the kernel's answer."""

    cmd: str
    status: int
    out: str
    err: str = ""


# The net-tools commands are being written (ipgate.commands.ifconfig,
# ipgate.commands.nettools_route); until they exist, what needs them is xfail.
NETTOOLS = {"ifconfig": "ipgate.commands.ifconfig", "route": "ipgate.commands.nettools_route"}
# Examples whose configuration itself runs ifconfig/route.
NEEDS_NETTOOLS = {"ip-alias.conf": ("ifconfig", "route")}


def _missing(tools: tuple[str, ...]) -> list[str]:
    return [NETTOOLS[t] for t in tools if importlib.util.find_spec(NETTOOLS[t]) is None]


def _tools_of(cmd: str) -> tuple[str, ...]:
    word = cmd.split()[0].rsplit("/", 1)[-1]
    return (word,) if word in NETTOOLS else ()


# fmt: off
# Captured from Linux 6.18 + iproute2 6.1 + net-tools 2.10 (see the module docstring).
EXPECTED: dict[str, tuple[Case, ...]] = {
}
# fmt: on


# -- ipgate side ---------------------------------------------------------------------

@functools.cache
def _loaded(name: str) -> Stack:
    path = EXAMPLES / name
    return load_script(path.read_text(), str(path))


def _xfail_if_nettools_missing(name: str, cmd: str | None = None) -> None:
    missing = _missing(NEEDS_NETTOOLS.get(name, ()) + (_tools_of(cmd) if cmd else ()))
    if missing:
        pytest.xfail(f"not written yet: {', '.join(missing)}")


def test_every_example_has_expectations() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.conf")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_loads(name: str) -> None:
    _xfail_if_nettools_missing(name)
    _loaded(name)


CASES = [pytest.param(name, case, id=f"{name}: {case.cmd}")
         for name, cases in EXPECTED.items() for case in cases]


@pytest.mark.parametrize(("name", "case"), CASES)
def test_answer_matches_kernel(name: str, case: Case) -> None:
    _xfail_if_nettools_missing(name, case.cmd)
    stack = copy.deepcopy(_loaded(name))
    res = Shell(stack).run_line(case.cmd)
    assert (res.status, res.out, res.err) == (case.status, case.out, case.err)


# -- kernel side: how EXPECTED is captured -----------------------------------------

# iproute2's own rt_tables, so the host's file (and rt_tables.d) never matter.
RT_TABLES = "#\n# reserved values\n#\n255\tlocal\n254\tmain\n253\tdefault\n0\tunspec\n#\n# local\n#\n"

# Written in both namespaces before any link exists: a new netns inherits IPv4
# conf/all and conf/default from the host, and veth would get IPv6 traffic and
# addresses (ifconfig would show inet6 lines and non-zero counters).
SYSCTLS = {
    "net/ipv4/ip_forward": "0",
    "net/ipv6/conf/all/disable_ipv6": "1",
    "net/ipv6/conf/default/disable_ipv6": "1",
    **{f"net/ipv4/conf/{d}/{k}": "0" for d in ("all", "default")
       for k in ("forwarding", "rp_filter", "accept_local", "route_localnet", "src_valid_mark",
                 "promote_secondaries")},
}
DUMMY_RE = re.compile(r"^\s*(?:/s?bin/)?ip\s+link\s+add\s+(?:dev\s+|name\s+)?(\S+)\s+type\s+dummy\s*$")
TIMEOUT = 60.0


def ipgate_mac(name: str) -> str:
    """The made-up MAC ipgate gives a new link (Stack._new_device).

    A dummy link gets a random MAC in Linux, so there is no "right" one; the
    kernel side copies ipgate's so that `ifconfig`'s ether column can compare.
    """
    b = [0x02, *hashlib.sha256(name.encode()).digest()[:5]]
    return ":".join(f"{x:02x}" for x in b)


class KernelBox:
    """A network namespace (plus a sink namespace for veth peers), deleted on exit.

    Lines run through `sh` inside `ip netns exec`, whose private mount namespace
    lets a private rt_tables be bind-mounted over /etc/iproute2/rt_tables: the
    scripts' `echo "1 admin" >> /etc/iproute2/rt_tables` then works as written
    and iproute2 prints the names.  The kernel has no dummy driver, so
    `ip link add X type dummy` becomes a veth pair whose peer is up in the sink.
    """

    def __init__(self) -> None:
        tag = f"ipgt-seed-{os.getpid()}-{secrets.token_hex(3)}"
        self.ns, self.sink = tag, tag + "-sink"
        self._created: list[str] = []
        self._dir = ""

    def __enter__(self) -> KernelBox:
        try:
            self._dir = tempfile.mkdtemp(prefix="ipgt-seed-")
            Path(self._dir, "rt_tables").write_text(RT_TABLES)
            Path(self._dir, "rt_tables.d").mkdir()
            for ns in (self.ns, self.sink):
                _must(["ip", "netns", "add", ns])
                self._created.append(ns)
                body = "".join(f"echo {v} > /proc/sys/{k}\n" for k, v in SYSCTLS.items())
                _must(["ip", "netns", "exec", ns, "sh", "-ec", body])
            _must(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for ns in reversed(self._created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=TIMEOUT, check=False)
        self._created.clear()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""

    def translate(self, line: str, seq: int) -> str:
        m = DUMMY_RE.match(line)
        if not m:
            return line
        name, peer = m.group(1), f"pk{seq}"
        return (f"ip link add {name} type veth peer name {peer} netns {self.sink}"
                f" && ip -n {self.sink} link set {peer} up"
                f" && ip link set {name} address {ipgate_mac(name)}")

    def settle(self) -> None:
        """Wait until every link that is up is operationally up.

        veth's carrier and IFF_RUNNING are set by the linkwatch work queue a moment
        after `ip link set up`; a dummy link is RUNNING at once.
        """
        _must(["ip", "netns", "exec", self.ns, "sh", "-c",
               "n=0; while ip -o link show up | grep -Eq 'state (DOWN|LOWERLAYERDOWN)|NO-CARRIER'; do"
               " n=$((n+1)); [ $n -ge 200 ] && exit 1; sleep 0.01; done"])

    def run(self, lines: list[str]) -> list[tuple[int, str, str]]:
        """Run shell lines in order; (status, stdout, stderr) of each."""
        d = self._dir
        body = [f"mount --bind {d}/rt_tables /etc/iproute2/rt_tables",
                f"mount --bind {d}/rt_tables.d /etc/iproute2/rt_tables.d"]
        for i, line in enumerate(lines):
            body.append(f"( {self.translate(line, i)}\n) >{d}/{i}.out 2>{d}/{i}.err </dev/null;"
                        f" echo $? >{d}/{i}.rc")
        _must(["ip", "netns", "exec", self.ns, "sh", "-c", "\n".join(body)])
        out = []
        for i in range(len(lines)):
            p = Path(d)
            out.append((int(p.joinpath(f"{i}.rc").read_text()), p.joinpath(f"{i}.out").read_text(),
                        p.joinpath(f"{i}.err").read_text()))
        return out


def _must(argv: list[str]) -> None:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip()}")


def script_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the commands of a configuration script."""
    return [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]


def capture(name: str, cmds: list[str]) -> list[Case]:
    """Load examples/NAME in a fresh namespace, then run CMDS there."""
    lines = script_lines((EXAMPLES / name).read_text())
    with KernelBox() as box:
        loaded = box.run([ln for _n, ln in lines])
        for (n, ln), (rc, _out, err) in zip(lines, loaded, strict=True):
            if rc != 0:
                raise AssertionError(f"{name}:{n}: the kernel refuses {ln.strip()!r}: {err.strip()}")
        box.settle()
        answers = box.run(cmds)
    return [Case(c, rc, out, err) for c, (rc, out, err) in zip(cmds, answers, strict=True)]


def netns_ok() -> str:
    """'' when namespaces can be used here, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    if shutil.which("ip") is None or shutil.which("ifconfig") is None:
        return "needs iproute2 and net-tools"
    return ""


@pytest.mark.netns
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_expected_is_still_the_kernels(name: str) -> None:
    why = netns_ok()
    if why:
        pytest.skip(why)
    got = capture(name, [c.cmd for c in EXPECTED[name]])
    assert got == list(EXPECTED[name])


# -- regenerating EXPECTED -----------------------------------------------------------

def _literal(s: str, indent: str) -> str:
    if not s:
        return '""'
    parts = [repr(line) for line in s.splitlines(keepends=True)]
    return ("\n" + indent).join(parts) if len(parts) > 1 else parts[0]


def render(expected: dict[str, list[Case]]) -> str:
    out = ["EXPECTED: dict[str, tuple[Case, ...]] = {"]
    for name, cases in expected.items():
        out.append(f"    {name!r}: (")
        for c in cases:
            out.append(f"        Case({c.cmd!r}, {c.status},")
            out.append(f"             {_literal(c.out, ' ' * 13)}"
                       + (f",\n             {_literal(c.err, ' ' * 13)}" if c.err else "") + "),")
        out.append("    ),")
    out.append("}")
    return "\n".join(out)


def main() -> int:
    why = netns_ok()
    if why:
        print(why, file=sys.stderr)
        return 1
    fresh = {name: capture(name, [c.cmd for c in cases]) for name, cases in EXPECTED.items()}
    print(render(fresh))
    return 0


if __name__ == "__main__":
    sys.exit(main())
