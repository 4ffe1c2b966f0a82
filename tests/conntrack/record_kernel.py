"""Record what Linux's conntrack does with the TCP scenarios (needs root).

    python -m tests.conntrack.record_kernel   (from the repository root)

Writes kernel_tcp.json beside this file: for every scenario, the router's
entry after each step ([state, timeout, unreplied, assured] or null).  The
pure tests replay the scenarios through ipgate and compare with it; the
netns test does the same against the live kernel.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from .kernel import Netns, tcp_entry
from .tcp_scenarios import scenarios

OUT = Path(__file__).with_name("kernel_tcp.json")


def record() -> dict[str, object]:
    ns = Netns("rec")
    try:
        result: dict[str, object] = {}
        for name, (sport, steps) in scenarios().items():
            seen = []
            for from_client, pkt in steps:
                ns.send(from_client, pkt)
                time.sleep(0.02)
                seen.append(tcp_entry(ns.proc(), sport))
            result[name] = seen
        return result
    finally:
        ns.close()


def main() -> None:
    data = {"kernel": platform.release(), "scenarios": record()}
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
