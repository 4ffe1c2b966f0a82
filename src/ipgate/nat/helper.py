"""NAT for helper payloads (nf_nat_helper.c, nf_nat_ftp.c, nf_nat_irc.c).

When a NATed connection's payload names an address ("PORT 192,0,2,10,4,1"
from a masqueraded client), the far end must be told the translated one.
The NAT half of a helper:

1. picks the port the expectation will wait on: the announced one if the
   expectation can be registered there, else up to 128 random ports above it
   (nf_nat_exp_find_port; Linux before 6.1 counted upwards instead);
2. rewrites the text (`mangle_tcp_packet`): the packet may grow or shrink,
   so the IP total length and both checksums are redone and the size
   difference is recorded for sequence adjustment (nat/seqadj.py);
3. makes the expected connection follow the master's NAT
   (`nf_nat_follow_master`): it appears to come from where the master's
   packets go, and is sent on to the address and port the payload named.
"""

from __future__ import annotations

import errno
import random
import struct
from collections.abc import Callable
from functools import partial

from ipgate.conntrack.conn import (
    IPS_NAT_DONE_MASK,
    NF_ACCEPT,
    NF_DROP,
    Conn,
    ctinfo2dir,
)
from ipgate.conntrack.expect import Expectation
from ipgate.conntrack.helpers import HelpCtx
from ipgate.conntrack.helpers.ftp import NF_CT_FTP_EPRT, NF_CT_FTP_EPSV, NF_CT_FTP_PASV, NF_CT_FTP_PORT
from ipgate.conntrack.table import ConntrackTable
from ipgate.conntrack.tuple import IP_CT_DIR_REPLY
from ipgate.inet import ntoa
from ipgate.nat.core import (
    NF_NAT_RANGE_MAP_IPS,
    NF_NAT_RANGE_PROTO_SPECIFIED,
    ManipType,
    NatRange2,
    nf_nat_setup_info,
)
from ipgate.nat.seqadj import nf_ct_seqadj_set
from ipgate.packet.checksum import csum_partial, csum_tcpudp_nofold
from ipgate.packet.ipv4 import IPPROTO_TCP, ip_send_check

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_ADDRS = struct.Struct("!II")

NF_NAT_EXP_MAX_ATTEMPTS = 128


def mangle_tcp_packet(ctx: HelpCtx, match_offset: int, match_len: int, rep: bytes, adjust: bool = True) -> bool:
    """__nf_nat_mangle_tcp_packet(): replace `match_len` bytes at `match_offset` of the TCP
    payload with `rep`.

    The IP total length and header checksum are redone (ip_send_check()),
    the TCP checksum is computed afresh (nf_nat_csum_recalc() without
    offload), and with `adjust` a size change is recorded for the
    direction's sequence numbers (nf_ct_seqadj_set() at this segment's
    SEQ).  A resized packet is a new bytearray in `ctx.buf`; False when it
    would exceed 65535 bytes (enlarge_skb()).
    """
    buf = ctx.buf
    end = ctx.end
    protoff = ctx.protoff
    diff = len(rep) - match_len
    if diff > 0 and end + diff > 0xFFFF:
        return False
    start = protoff + (buf[protoff + 12] >> 4) * 4 + match_offset
    stop = start + match_len
    if diff == 0 and end == len(buf):
        buf[start:stop] = rep  # in place
    else:
        new = bytearray(buf[:start])
        new += rep
        new += buf[stop:end]
        buf = new
    _U16.pack_into(buf, 2, len(buf))
    ip_send_check(buf)
    _U16.pack_into(buf, protoff + 16, 0)
    saddr, daddr = _ADDRS.unpack_from(buf, 12)
    seglen = len(buf) - protoff
    check = ~csum_partial(memoryview(buf)[protoff:], csum_tcpudp_nofold(saddr, daddr, seglen, IPPROTO_TCP)) & 0xFFFF
    _U16.pack_into(buf, protoff + 16, check)
    ctx.buf = buf
    if adjust and diff:
        nf_ct_seqadj_set(ctx.ct, ctx.ctinfo, _U32.unpack_from(buf, protoff + 4)[0], diff)
    return True


def nf_nat_follow_master(table: ConntrackTable, rng: random.Random, ct: Conn, exp: Expectation) -> None:
    """nf_nat_follow_master(): NAT the expected connection `ct` like its master.

    Its source becomes where the master sends to (seen from the side the
    expectation faces), its destination the master's other end, at the port
    the payload originally named (``exp.saved_proto``).  Called when the
    expected connection is created (ConntrackTable._init_conntrack), at the
    time of that lookup (``table.expect.now``).  If no tuple is free, the
    connection is marked dying and its first packet is dropped at
    confirmation, as in the kernel.
    """
    if ct.status & IPS_NAT_DONE_MASK:
        raise RuntimeError("nf_nat_follow_master: the expected connection is already NATed")  # BUG_ON()
    master = ct.master or exp.master
    t = master.tuple(1 - exp.dir)
    now = table.expect.now
    src = NatRange2(NF_NAT_RANGE_MAP_IPS, t.dst, t.dst)
    ok = nf_nat_setup_info(table, ct, src, ManipType.SRC, rng, now) == NF_ACCEPT
    dst = NatRange2(NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED, t.src, t.src,
                    exp.saved_proto, exp.saved_proto)
    ok = nf_nat_setup_info(table, ct, dst, ManipType.DST, rng, now) == NF_ACCEPT and ok
    if not ok:
        table.kill(ct, now)


def follow_master(table: ConntrackTable, rng: random.Random) -> Callable[[Conn, Expectation], None]:
    """`nf_nat_follow_master` as an expectfn (called with the new connection and the expectation)."""
    return partial(nf_nat_follow_master, table, rng)


def nf_nat_exp_find_port(ctx: HelpCtx, exp: Expectation, port: int) -> int:
    """nf_nat_exp_find_port(): register `exp` on `port`, else on random ports in [port, 65535).

    Only a clash (EBUSY) makes it try another port, 128 times at most;
    returns the port, or 0.
    """
    lo = port
    span = 0xFFFF - port
    attempts_left = min(span, NF_NAT_EXP_MAX_ATTEMPTS)
    while True:
        exp.tuple = exp.tuple._replace(dport=port)
        res = ctx.expect_related(exp)
        if res == 0:
            return port
        attempts_left -= 1
        if res != -errno.EBUSY or attempts_left < 0:
            return 0
        port = lo + ctx.rng.randrange(span)  # get_random_u32_below(range)


def _prepare(ctx: HelpCtx, exp: Expectation, direction: int) -> int:
    """What nf_nat_ftp and nf_nat_irc share: remember the port, follow the master, find a port."""
    exp.saved_proto = exp.tuple.dport
    exp.dir = direction
    exp.expectfn = follow_master(ctx.table, ctx.rng)
    port = nf_nat_exp_find_port(ctx, exp, exp.saved_proto)
    if port == 0:
        ctx.helper_log("all ports in use")
    return port


def nf_nat_ftp_fmt_cmd(ftptype: int, addr: int, port: int) -> bytes:
    """nf_nat_ftp_fmt_cmd(): the text that replaces the match."""
    if ftptype in (NF_CT_FTP_PORT, NF_CT_FTP_PASV):
        a = addr.to_bytes(4, "big")
        return f"{a[0]},{a[1]},{a[2]},{a[3]},{port >> 8},{port & 0xFF}".encode()
    if ftptype == NF_CT_FTP_EPRT:
        return f"|1|{ntoa(addr)}|{port}|".encode()
    if ftptype == NF_CT_FTP_EPSV:
        return f"|||{port}|".encode()
    return b""


def nf_nat_ftp(ctx: HelpCtx, ftptype: int, matchoff: int, matchlen: int, exp: Expectation) -> int:
    """nf_nat_ftp(): the data connection will come from wherever this packet goes (!dir)."""
    direction = ctinfo2dir(ctx.ctinfo)
    ct = exp.master
    newaddr = ct.tuple(1 - direction).dst
    port = _prepare(ctx, exp, 1 - direction)
    if port == 0:
        return NF_DROP
    text = nf_nat_ftp_fmt_cmd(ftptype, newaddr, port)
    if not text or not mangle_tcp_packet(ctx, matchoff, matchlen, text):
        ctx.helper_log("cannot mangle packet")
        ctx.unexpect_related(exp)
        return NF_DROP
    return NF_ACCEPT


def nf_nat_irc(ctx: HelpCtx, matchoff: int, matchlen: int, exp: Expectation) -> int:
    """nf_nat_irc(): the DCC peer's connection comes from the server's side: announce
    the address the server sees ("IP PORT", the IP as one decimal number)."""
    ct = exp.master
    newaddr = ct.reply.dst
    port = _prepare(ctx, exp, IP_CT_DIR_REPLY)
    if port == 0:
        return NF_DROP
    if not mangle_tcp_packet(ctx, matchoff, matchlen, f"{newaddr} {port}".encode()):
        ctx.helper_log("cannot mangle packet")
        ctx.unexpect_related(exp)
        return NF_DROP
    return NF_ACCEPT
