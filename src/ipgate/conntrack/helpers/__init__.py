"""The helpers' code (ftp.py, irc.py): what they read in a master connection's payload.

A helper's ``help()`` runs from nf_confirm (conntrack/confirm.py) on each
packet of a connection that has the helper, after NAT rewrote the headers.
It may register expectations (conntrack/expect.py) and, when the connection
is NATed, hand the match to its NAT half (nat/helper.py), which rewrites the
payload and may resize the packet: hence `HelpCtx.buf` is replaced, not only
written.  Which connections get a helper is conntrack/helper.py's business.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ipgate.conntrack.conn import Conn

if TYPE_CHECKING:
    from ipgate.conntrack.expect import Expectation
    from ipgate.conntrack.table import ConntrackTable

NF_CT_EXPECT_CLASS_DEFAULT = 0


class ExpectPolicy(NamedTuple):
    """struct nf_conntrack_expect_policy (one class)."""

    max_expected: int
    timeout: float  # seconds


@dataclass(slots=True)
class HelpCtx:
    """What a help() call works on: the kernel's (skb, protoff, ct, ctinfo) plus ipgate's
    explicit table, clock and randomness, the helper's name and expectation policy,
    and where nf_ct_helper_log() messages and warnings go."""

    table: ConntrackTable
    ct: Conn
    ctinfo: int
    buf: bytearray  # from the IP header; replaced when a mangle resizes the packet
    protoff: int    # offset of the TCP header
    now: float
    rng: random.Random
    name: str
    policy: ExpectPolicy
    log: list[str] | None = None

    @property
    def end(self) -> int:
        """skb->len: the IP total length (trailing link padding is not data)."""
        tot_len = (self.buf[2] << 8) | self.buf[3]
        return min(tot_len, len(self.buf))

    def helper_log(self, msg: str) -> None:
        """nf_ct_helper_log(): "nf_ct_<helper>: dropping packet: <why>"."""
        if self.log is not None:
            self.log.append(f"nf_ct_{self.name}: dropping packet: {msg}")

    def warn(self, msg: str) -> None:
        """A kernel warning that drops nothing (net_warn_ratelimited())."""
        if self.log is not None:
            self.log.append(msg)

    def expect_related(self, exp: Expectation) -> int:
        """nf_ct_expect_related(): 0, or -errno; the master's helper's policy applies."""
        return self.table.expect.related(exp, self.now, self.policy.max_expected)

    def unexpect_related(self, exp: Expectation) -> None:
        """nf_ct_unexpect_related()."""
        self.table.expect.unlink(exp)
