"""The established-flow fast path (the kernel's nf_flowtable idea, offline).

A packet of a flow already seen whole by the slow path, with nothing in its
way that could decide differently (no rule walk can change the outcome, the
connection is ESTABLISHED and past its TCP handshake), is forwarded with one
dict lookup and a precomputed rewrite (`FlowRewrite`).  Entries are keyed on
(device, 5-tuple, mark) and die when any table, route or address changes
(`Stack.gen`, `Netfilter.gen`), or when the connection's state could change
(TCP flags other than ACK/PSH, a timeout about to expire).  Not built yet:
`receive` always answers None and the slow path handles every packet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipgate.engine.engine import Engine
    from ipgate.engine.result import Result
    from ipgate.link.device import Device


class FastPath:
    def __init__(self, eng: Engine) -> None:
        self.eng = eng

    def receive(self, dev: Device, data: bytes | bytearray, mark: int) -> Result | None:
        return None

    def flush(self) -> None:
        pass
