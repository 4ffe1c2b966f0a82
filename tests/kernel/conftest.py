"""Fixtures for the kernel-oracle tests: skip cleanly where netns is unusable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .oracle import KernelOracle, netns_usable


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "netns: needs root and `ip netns` (uses the kernel as an oracle)")


@pytest.fixture(scope="session")
def netns_ok() -> None:
    ok, reason = netns_usable()
    if not ok:
        pytest.skip(f"kernel oracle unavailable: {reason}")


@pytest.fixture
def oracle(netns_ok: None) -> Iterator[KernelOracle]:
    with KernelOracle() as o:
        yield o
