"""Regenerate tests/netfilter/expected.py from the real iptables-legacy (run as root).

    python -m tests.netfilter.capture_expected

The captured outputs let `test_iptables.py` check ipgate's formats without
root.  They depend on the capturing host's /etc files: the hosts lines are
recorded next to the outputs; services, protocols and networks are netbase's,
which `Resolver.builtin()` carries.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from .oracle import Cmd, run_real, scenario
from .scenarios import SCENARIOS

INLINE = ["seed_rhel4", "seed_masq_faq", "matches", "targets", "counters", "mixed"] + [
    n for n in SCENARIOS if n.startswith("restore_")]
INLINE_STATE = ["iptables-save -c", "-t filter -L -n -v --line-numbers", "-t nat -L", "-t mangle -L -v"]


def inline_scenario(name: str) -> list[Cmd]:
    """The scenario's lines, then a few state dumps (iptables-save alone after a restore)."""
    state = INLINE_STATE[:1] if name.startswith("restore_") else INLINE_STATE
    return scenario(SCENARIOS[name], state=False) + [Cmd.parse(x) for x in state]


def main() -> None:
    hosts = Path("/etc/hosts").read_text()
    out = ['"""Outputs of iptables-legacy 1.8.9 for the scenarios of `scenarios.py` (capture_expected.py).',
           "",
           "EXPECTED[scenario] lists (command line, status, stdout, stderr) for the scenario's lines",
           "followed by `INLINE_STATE`; stdin comes from the scenario itself.",
           '"""',
           "# ruff: noqa: E501",
           "",
           f"HOSTS = {hosts!r}",
           "",
           "EXPECTED: dict[str, list[tuple[str, int, str, str]]] = {"]
    for name in INLINE:
        cmds = inline_scenario(name)
        out.append(f"    {name!r}: [")
        for c, r in zip(cmds, run_real(cmds), strict=True):
            out.append(f"        ({shlex.join(c.argv)!r}, {r.status}, {r.out!r}, {r.err!r}),")
        out.append("    ],")
    out.append("}")
    text = "\n".join(out) + "\n"
    Path(__file__).with_name("expected.py").write_text(text)


if __name__ == "__main__":
    main()
