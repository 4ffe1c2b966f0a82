"""ipgate's engine against the kernel as a gateway, on random configurations and packets (tests/engine/diff.py)."""

from __future__ import annotations

import pytest

from .diff import run_case
from .kernel_gw import netns_usable

pytestmark = pytest.mark.netns

SEEDS = range(40)
AGREEMENT_FLOOR = 0.99  # per packet; timing-dependent kernel rate limits are the only known source of noise


def test_engine_matches_the_kernel() -> None:
    ok, reason = netns_usable()
    if not ok:
        pytest.skip(f"kernel gateway unavailable: {reason}")
    sent = agreed = 0
    bad_counters: list[int] = []
    report: list[str] = []
    for seed in SEEDS:
        case = run_case(seed)
        sent += case.sent
        agreed += case.agreed
        if not case.counters_agree:
            bad_counters.append(seed)
        report += [f"seed {seed}: {d}" for d in case.diffs[:2]]
    print(f"engine vs kernel: {agreed}/{sent} packets agree; counters differ in seeds {bad_counters}")
    assert sent >= 20 * len(SEEDS)
    assert agreed / sent >= AGREEMENT_FLOOR, "\n".join(report[:10])
    assert len(bad_counters) <= len(SEEDS) // 20, "\n".join(report[:10])
