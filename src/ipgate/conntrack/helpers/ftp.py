"""The FTP helper (nf_conntrack_ftp.c): expect the data connection a control connection announces.

In the client's direction ``PORT h1,h2,h3,h4,p1,p2`` and ``EPRT |1|a.b.c.d|port|``
say "connect to me there"; in the server's, the replies ``227 ... (h1,...,p2)``
to PASV and ``229 ... (|||port|)`` to EPSV say "connect to me here".  Either
way the helper registers an expectation for a TCP connection from the other
side's address (any source port) to the announced address and port.

Commands are only looked for at the start of a segment that starts right
after a newline the helper has seen in that direction (``seq_aft_nl``, the
last two such sequence numbers per direction), so the first data segment of
each direction is never parsed and a command split across segments is not
either.  A segment that starts with a command cut short ("partial
matching") is dropped, so that the sender retransmits it whole.

With NAT on the connection the match goes to the NAT half (nat/helper.py
nf_nat_ftp), which picks the port, registers the expectation and rewrites
the text.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from ipgate.conntrack.conn import (
    IP_CT_ESTABLISHED,
    IP_CT_ESTABLISHED_REPLY,
    IPS_NAT_MASK,
    NF_ACCEPT,
    NF_DROP,
    Conn,
    ctinfo2dir,
)
from ipgate.conntrack.expect import Expectation
from ipgate.conntrack.helpers import NF_CT_EXPECT_CLASS_DEFAULT, ExpectPolicy, HelpCtx
from ipgate.conntrack.tuple import IPPROTO_TCP, Tuple

# enum nf_ct_ftp_type
NF_CT_FTP_PORT = 0
NF_CT_FTP_PASV = 1
NF_CT_FTP_EPRT = 2
NF_CT_FTP_EPSV = 3

FTP_PORT = 21
FTP_POLICY = ExpectPolicy(max_expected=1, timeout=5 * 60.0)  # ftp_exp_policy
NUM_SEQ_TO_REMEMBER = 2
# Module parameter "loose": also expect connections to an address other than
# the sender's (a PASV reply naming another host).  Off, as in the kernel.
LOOSE = False

_M32 = 0xFFFFFFFF
_H = 0x80000000
_U32 = struct.Struct("!I")

# nf_nat_ftp_hook: (ctx, ftp type, match offset in the TCP payload, match length, expectation) -> verdict
NatFtpHook = Callable[[HelpCtx, int, int, int, Expectation], int]


class FtpMaster:
    """struct nf_ct_ftp_master: where commands may start, per direction."""

    __slots__ = ("seq_aft_nl", "seq_aft_nl_num")

    def __init__(self) -> None:
        self.seq_aft_nl = ([0] * NUM_SEQ_TO_REMEMBER, [0] * NUM_SEQ_TO_REMEMBER)
        self.seq_aft_nl_num = [0, 0]


class FtpCmd:
    """struct nf_conntrack_man: the address and port a command announces."""

    __slots__ = ("ip", "port")

    def __init__(self, ip: int) -> None:
        self.ip = ip
        self.port = 0


# getnum(data from the numbers on, cmd, terminator) -> (length matched or 0, offset skipped)
GetNum = Callable[[bytes, FtpCmd, int], tuple[int, int]]


def _isdigit(c: int) -> bool:
    return 0x30 <= c <= 0x39


def try_number(data: bytes, size: int, sep: int, term: int) -> tuple[int, list[int]]:
    """try_number(): `size` u32 numbers separated by `sep`, ended by `term` (0: by anything).

    Returns (length up to the terminator, numbers), length 0 on failure.
    """
    array = [0] * size
    i = 0
    for length, c in enumerate(data):
        if i >= size:
            break
        if _isdigit(c):
            array[i] = (array[i] * 10 + c - 0x30) & _M32
        elif c == sep:
            i += 1
        else:
            # Unexpected character: fine if it is the terminator and we are finished.
            if (c == term or not term) and i == size - 1:
                return length, array
            return 0, array
    return 0, array


def try_rfc959(data: bytes, cmd: FtpCmd, term: int) -> tuple[int, int]:
    """try_rfc959(): ``h1,h2,h3,h4,p1,p2`` (numbers wrap as the kernel's u32s do)."""
    length, a = try_number(data, 6, 0x2C, term)
    if length == 0:
        return 0, 0
    cmd.ip = ((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) & _M32
    cmd.port = ((a[4] << 8) | a[5]) & 0xFFFF
    return length, 0


def try_rfc1123(data: bytes, cmd: FtpCmd, term: int) -> tuple[int, int]:
    """try_rfc1123(): a 227 reply's numbers start at its first digit (RFC 1123 4.1.2.6)."""
    for i, c in enumerate(data):
        if _isdigit(c):
            return try_rfc959(data[i:], cmd, 0)[0], i
    return 0, 0


def get_port(data: bytes, start: int, delim: int, cmd: FtpCmd) -> int:
    """get_port(): a non-zero port up to `delim`; the offset past it, or 0."""
    tmp = 0
    for i in range(start, len(data)):
        c = data[i]
        if c == delim:
            if tmp == 0:
                break
            cmd.port = tmp
            return i + 1
        if not _isdigit(c):
            break
        tmp = (tmp * 10 + c - 0x30) & 0xFFFF
    return 0


def _delim_ok(delim: int) -> bool:
    return not _isdigit(delim) and 33 <= delim <= 126


def try_eprt(data: bytes, cmd: FtpCmd, term: int) -> tuple[int, int]:
    """try_eprt(): ``|1|a.b.c.d|port|`` (RFC 2428; "2", IPv6, never matches an IPv4 connection)."""
    if len(data) <= 3:
        return 0, 0
    delim = data[0]
    if not _delim_ok(delim) or data[2] != delim or data[1] != 0x31:
        return 0, 0
    length, a = try_number(data[3:], 4, 0x2E, delim)
    if length == 0:
        return 0, 0
    cmd.ip = ((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) & _M32
    return get_port(data, 3 + length + 1, delim, cmd), 0


def try_epsv_response(data: bytes, cmd: FtpCmd, term: int) -> tuple[int, int]:
    """try_epsv_response(): ``|||port|``; the address stays the sender's."""
    if len(data) <= 3:
        return 0, 0
    delim = data[0]
    if not _delim_ok(delim) or data[1] != delim or data[2] != delim:
        return 0, 0
    return get_port(data, 3, delim, cmd), 0


class FtpSearch(NamedTuple):
    """struct ftp_search."""

    pattern: bytes
    skip: int
    term: int
    ftptype: int
    getnum: GetNum


# search[IP_CT_DIR_MAX][2]
SEARCH: tuple[tuple[FtpSearch, ...], ...] = (
    (FtpSearch(b"PORT", 0x20, 0x0D, NF_CT_FTP_PORT, try_rfc959),
     FtpSearch(b"EPRT", 0x20, 0x0D, NF_CT_FTP_EPRT, try_eprt)),
    (FtpSearch(b"227 ", 0, 0, NF_CT_FTP_PASV, try_rfc1123),
     FtpSearch(b"229 ", 0x28, 0x29, NF_CT_FTP_EPSV, try_epsv_response)),
)


def find_pattern(data: bytes, s: FtpSearch, cmd: FtpCmd) -> tuple[int, int, int]:
    """find_pattern(): (1 match / 0 none / -1 partial, offset of the numbers, their length)."""
    dlen = len(data)
    plen = len(s.pattern)
    if dlen <= plen:
        # Short packet: the start of the pattern is a partial match.
        return (-1 if data.lower() == s.pattern[:dlen].lower() else 0), 0, 0
    if data[:plen].lower() != s.pattern.lower():
        return 0, 0, 0
    i = plen
    if s.skip:
        while data[i] != s.skip:
            if i == dlen - 1:
                return -1, 0, 0
            i += 1
        i += 1  # skip over the skip character
    numlen, skipped = s.getnum(data[i:], cmd, s.term)
    if not numlen:
        return -1, 0, 0
    return 1, i + skipped, numlen


def find_nl_seq(seq: int, info: FtpMaster, direction: int) -> bool:
    """find_nl_seq(): does this segment start right after a newline?"""
    return seq in info.seq_aft_nl[direction][:info.seq_aft_nl_num[direction]]


def update_nl_seq(info: FtpMaster, direction: int, nl_seq: int) -> None:
    """update_nl_seq(): remember where the next command may start; never an older position."""
    seqs = info.seq_aft_nl[direction]
    num = info.seq_aft_nl_num[direction]
    if nl_seq in seqs[:num]:
        return
    if num < NUM_SEQ_TO_REMEMBER:
        seqs[num] = nl_seq
        info.seq_aft_nl_num[direction] = num + 1
        return
    oldest = 0 if (seqs[0] - seqs[1]) & _M32 >= _H else 1  # before(seqs[0], seqs[1])
    if (seqs[oldest] - nl_seq) & _M32 >= _H:  # after(nl_seq, seqs[oldest])
        seqs[oldest] = nl_seq


def master_data(ct: Conn) -> FtpMaster:
    """nfct_help_data(): the helper's area, zeroed when first used (nf_ct_helper_ext_add())."""
    ext = ct.get_ext()
    if not isinstance(ext.data, FtpMaster):
        ext.data = FtpMaster()
    return ext.data


def help(ctx: HelpCtx, nat: NatFtpHook | None) -> int:
    """help() of nf_conntrack_ftp.c; `nat` is nf_nat_ftp_hook (None: conntrack only)."""
    ctinfo = ctx.ctinfo
    # Until there's been traffic both ways, don't look in packets.
    if ctinfo != IP_CT_ESTABLISHED and ctinfo != IP_CT_ESTABLISHED_REPLY:
        return NF_ACCEPT
    buf, protoff, end = ctx.buf, ctx.protoff, ctx.end
    if protoff + 20 > end:
        return NF_ACCEPT
    dataoff = protoff + (buf[protoff + 12] >> 4) * 4
    if dataoff >= end:
        return NF_ACCEPT  # no data
    data = bytes(buf[dataoff:end])
    direction = ctinfo2dir(ctinfo)
    info = master_data(ctx.ct)
    th_seq = _U32.unpack_from(buf, protoff + 4)[0]
    ends_in_nl = data[-1] == 0x0A
    seq = (th_seq + len(data)) & _M32  # before any NAT resize, as the next segment's seq will be

    if not find_nl_seq(th_seq, info, direction):
        verdict = NF_ACCEPT
    else:
        verdict, update = _parse(ctx, nat, data, direction)
        if not update:
            return verdict
    if ends_in_nl:
        update_nl_seq(info, direction, seq)
    return verdict


def _parse(ctx: HelpCtx, nat: NatFtpHook | None, data: bytes, direction: int) -> tuple[int, bool]:
    """The matching part of help(): (verdict, whether the newline position is recorded)."""
    ct = ctx.ct
    this = ct.tuple(direction)
    other = ct.tuple(1 - direction)
    # The address defaults to the sender's (EPSV replies do not mention it).
    cmd = FtpCmd(this.src)
    found, matchoff, matchlen = 0, 0, 0
    s = SEARCH[direction][0]
    for s in SEARCH[direction]:
        found, matchoff, matchlen = find_pattern(data, s, cmd)
        if found:
            break
    if found == -1:
        # Not usually dropped (this is tracking, not filtering), but needed to track accurately.
        ctx.helper_log(f"partial matching of `{s.pattern.decode()}'")
        return NF_DROP, False
    if found == 0:
        return NF_ACCEPT, True

    # The reverse direction's tuple: the connection comes from the other side.
    daddr = other.dst
    if cmd.ip != this.src:
        # A PASV reply from a partially reverse-NATed server naming another
        # address: not recorded (it could open holes to internal hosts).
        if not LOOSE:
            return NF_ACCEPT, True
        daddr = cmd.ip
    exp = Expectation(ct, Tuple(other.src, daddr, IPPROTO_TCP, 0, cmd.port), timeout=ctx.policy.timeout,
                      cls=NF_CT_EXPECT_CLASS_DEFAULT)
    # NAT may mangle the packet and register the (possibly changed) expectation itself.
    if nat is not None and ct.status & IPS_NAT_MASK:
        return nat(ctx, s.ftptype, matchoff, matchlen, exp), True
    if ctx.expect_related(exp) != 0:
        ctx.helper_log("cannot add expectation")
        return NF_DROP, True
    return NF_ACCEPT, True
