"""Where the engine runs the helpers: assignment at creation, help and sequence adjustment at the last hook.

Two calls, at the kernel's places:

- `nf_ct_helper_assign(registry, ct)` when a packet created a new connection
  (__nf_ct_try_assign_helpers() from init_conntrack()), after the raw
  table's ``-j CT --helper NAME`` had its say;
- `nf_confirm(table, ct, ctinfo, buf, now, rng)` at the last hook
  (POSTROUTING, or LOCAL_IN), after every NAT rewrite of the packet and
  just before `ConntrackTable.confirm()`: the connection's helper reads
  (and, under NAT, rewrites) the payload, then a connection whose payload
  was resized gets this packet's SEQ/ACK shifted (nf_confirm() of
  nf_conntrack_proto.c).  The packet may grow: use the returned buffer.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import NamedTuple

from ipgate.conntrack.conn import (
    IP_CT_RELATED_REPLY,
    IPS_EXPECTED,
    IPS_HELPER,
    IPS_SEQ_ADJUST,
    NF_ACCEPT,
    NF_DROP,
    Conn,
)
from ipgate.conntrack.helper import HelperRegistry
from ipgate.conntrack.helpers import ExpectPolicy, HelpCtx, ftp, irc
from ipgate.conntrack.table import ConntrackTable
from ipgate.conntrack.tuple import IPPROTO_TCP
from ipgate.nat.helper import nf_nat_ftp, nf_nat_irc
from ipgate.nat.seqadj import nf_ct_seq_adjust

_U16 = struct.Struct("!H")


class HelperDef(NamedTuple):
    """The parts of struct nf_conntrack_helper nf_confirm needs."""

    l4proto: int
    policy: ExpectPolicy  # expect_policy[NF_CT_EXPECT_CLASS_DEFAULT]
    help: Callable[[HelpCtx], int]


# With the NAT halves hooked in, as when nf_nat_ftp / nf_nat_irc are loaded.
def _ftp_help(ctx: HelpCtx) -> int:
    return ftp.help(ctx, nf_nat_ftp)


def _irc_help(ctx: HelpCtx) -> int:
    return irc.help(ctx, nf_nat_irc)


HELPERS: dict[str, HelperDef] = {
    "ftp": HelperDef(IPPROTO_TCP, ftp.FTP_POLICY, _ftp_help),
    "irc": HelperDef(IPPROTO_TCP, irc.IRC_POLICY, _irc_help),
}


def nf_ct_helper_assign(registry: HelperRegistry, ct: Conn) -> None:
    """__nf_ct_try_assign_helpers() for a new connection.

    An expected connection keeps what its expectation gave it (none for FTP
    and IRC data).  A helper already set (``-j CT --helper``) stays and
    marks the connection IPS_HELPER; otherwise, with automatic assignment
    on, the helper registered for the reply tuple's protocol and source
    port (the server's port) is taken.
    """
    if ct.status & IPS_EXPECTED:
        return
    ext = ct.ext
    if ext is not None and ext.helper is not None:
        ct.set_status(IPS_HELPER)
        return
    if not registry.auto_assign:
        return
    rkey = ct.rkey  # the reply tuple's protocol and source port, read from its key
    name = registry.find(rkey & 0xFF, (rkey >> 24) & 0xFFFF) if registry.by_port else None
    if name is not None:
        ct.get_ext().helper = name


def _protoff(buf: bytearray, ct: Conn) -> int:
    """nf_confirm_get_protoff(): the transport header's offset, or -1 when the helper and
    sequence adjustment must leave the packet alone (a fragment, another protocol than
    the connection's, a cut or malformed TCP header)."""
    if len(buf) < 20:
        return -1
    end = min(_U16.unpack_from(buf, 2)[0], len(buf))
    if _U16.unpack_from(buf, 6)[0] & 0x3FFF:
        return -1
    protoff = (buf[0] & 0x0F) * 4
    if protoff > end or buf[9] != ct.protonum:
        return -1
    if buf[9] == IPPROTO_TCP:
        if protoff + 20 > end:
            return -1
        doff = (buf[protoff + 12] >> 4) * 4
        if doff < 20 or end - protoff < doff:
            return -1
    return protoff


def nf_confirm(table: ConntrackTable, ct: Conn | None, ctinfo: int, buf: bytearray, now: float,
               rng: random.Random, *, log: list[str] | None = None) -> tuple[int, bytearray]:
    """nf_confirm() up to, not including, nf_conntrack_confirm(): (verdict, buffer).

    `buf` starts at the IP header and may come back as a new, longer or
    shorter, bytearray.  `rng` chooses NAT ports for expectations and the
    data connections' mappings.  A drop's reason (nf_ct_helper_log()) and
    helper warnings are appended to `log` when given.
    """
    if ct is None:
        return NF_ACCEPT, buf
    helper = ct.helper
    seqadj_needed = bool(ct.status & IPS_SEQ_ADJUST)
    if helper is None and not seqadj_needed:
        return NF_ACCEPT, buf
    if ctinfo == IP_CT_RELATED_REPLY:
        return NF_ACCEPT, buf  # helpers do not expect ICMP errors
    protoff = _protoff(buf, ct)
    if protoff < 0:
        return NF_ACCEPT, buf
    hdef = HELPERS.get(helper) if helper is not None else None
    if hdef is not None and protoff < min(_U16.unpack_from(buf, 2)[0], len(buf)):
        if hdef.l4proto != buf[9]:
            return NF_ACCEPT, buf
        ctx = HelpCtx(table, ct, ctinfo, buf, protoff, now, rng, helper or "", hdef.policy, log)
        verdict = hdef.help(ctx)
        buf = ctx.buf
        if verdict != NF_ACCEPT:
            if verdict == NF_DROP:
                table.stats.drop += 1
            return verdict, buf
    if seqadj_needed and not nf_ct_seq_adjust(ct, ctinfo, buf, protoff):
        table.stats.drop += 1
        return NF_DROP, buf
    return NF_ACCEPT, buf
