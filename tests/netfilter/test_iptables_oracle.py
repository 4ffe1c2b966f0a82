"""ipgate's iptables against the real iptables-legacy 1.8.9 in network namespaces.

Every scenario of `scenarios.py` and a few seeded random ones run on both;
each command's stdout, stderr and exit status must be identical, and so must
the final `iptables-save -c`, `-S`, `-L -n -v -x --line-numbers` and `-L -v`
of all four tables (save timestamps masked).  Needs root, `ip netns` and
iptables-legacy; skipped otherwise.
"""

from __future__ import annotations

import pytest

from .capture_expected import INLINE, inline_scenario
from .fuzz import gen_lines
from .oracle import diff, netns_usable, run_ipgate, run_real, scenario
from .scenarios import SCENARIOS

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module", autouse=True)
def _netns_ok() -> None:
    ok, reason = netns_usable()
    if not ok:
        pytest.skip(f"iptables-legacy oracle unavailable: {reason}")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(name: str) -> None:
    cmds = scenario(SCENARIOS[name])
    mismatches = diff(cmds, run_real(cmds), run_ipgate(cmds))
    assert not mismatches, "\n".join(mismatches[:10])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_lines(seed: int) -> None:
    cmds = scenario(gen_lines(seed, 250))
    mismatches = diff(cmds, run_real(cmds), run_ipgate(cmds))
    assert not mismatches, f"seed {seed}:\n" + "\n".join(mismatches[:10])


def test_inline_expectations_still_hold() -> None:
    """The captured outputs of expected.py are what this host's iptables-legacy prints."""
    from .expected import EXPECTED

    name = INLINE[1]
    cmds = inline_scenario(name)
    real = [(r.status, r.out, r.err) for r in run_real(cmds)]
    stored = [(status, out, err) for _, status, out, err in EXPECTED[name]]
    assert real == stored
