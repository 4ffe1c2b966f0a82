"""The engine never raises on malformed packets; every drop has a reason (tests/engine/fuzz.py, bounded here)."""

from __future__ import annotations

from .fuzz import run


def test_twenty_thousand_malformed_packets() -> None:
    assert run(20000, seed=1) > 0
