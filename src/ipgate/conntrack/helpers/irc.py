"""The IRC helper (nf_conntrack_irc.c): DCC offers a client sends through its server.

A client offering a file or a chat sends ``PRIVMSG nick :\\1DCC SEND name
IP PORT size\\1`` (or CHAT, MOVE, TSEND, SCHAT), IP being the client's
address as one decimal number.  The helper expects a TCP connection from
anywhere to that address and port.  Only the client's direction is read,
only the first DCC of a segment counts, and the text must hold a newline
inside the segment.  The address must be the client's, as seen before or
after NAT (a forged one only gets a warning); with NAT on the connection
the NAT half (nat/helper.py nf_nat_irc) rewrites ``IP PORT``.
"""

from __future__ import annotations

from collections.abc import Callable

from ipgate.conntrack.conn import (
    IP_CT_ESTABLISHED,
    IP_CT_ESTABLISHED_REPLY,
    IPS_NAT_MASK,
    NF_ACCEPT,
    NF_DROP,
    ctinfo2dir,
)
from ipgate.conntrack.expect import Expectation
from ipgate.conntrack.helpers import NF_CT_EXPECT_CLASS_DEFAULT, ExpectPolicy, HelpCtx
from ipgate.conntrack.tuple import IP_CT_DIR_REPLY, IPPROTO_TCP, Tuple
from ipgate.inet import ntoa

IRC_PORT = 6667
MAX_SEARCH_SIZE = 4095
MINMATCHLEN = 5
# Module parameters max_dcc_channels=8, dcc_timeout=300.
IRC_POLICY = ExpectPolicy(max_expected=8, timeout=300.0)
DCCPROTOS = (b"SEND ", b"CHAT ", b"MOVE ", b"TSEND ", b"SCHAT ")

_M32 = 0xFFFFFFFF

# nf_nat_irc_hook: (ctx, match offset in the TCP payload, match length, expectation) -> verdict
NatIrcHook = Callable[[HelpCtx, int, int, Expectation], int]


def simple_strtoul(data: bytes, p: int) -> tuple[int, int]:
    """simple_strtoul(s, &end, 10): the decimal digits at `p` (none: 0), and where they end."""
    value = 0
    n = len(data)
    while p < n and 0x30 <= data[p] <= 0x39:
        value = (value * 10 + data[p] - 0x30) & 0xFFFFFFFFFFFFFFFF
        p += 1
    return value, p


def parse_dcc(data: bytes, p: int, end: int) -> tuple[int, int, int, int] | None:
    """parse_dcc(): (ip, port, start of "IP PORT", end of it) from the word after the DCC type.

    The file name (or "chat") is skipped up to a space; at least
    ``AAAAAAAA P\\1\\n`` must follow, and a newline must be in the segment.
    The IP is truncated to 32 bits (cpu_to_be32()); a port above 65535
    fails.  (This is the current parse_dcc(), with the 2026 fixes: older
    kernels also read the byte past the segment looking for the newline,
    truncated the port, and tried the next DCC type after a failure.)
    """
    while True:
        c = data[p]
        p += 1
        if c == 0x20:
            break
        if p > end - 12:
            return None
    if data.find(b"\n", p, end) < 0:
        return None
    ad_beg = p
    ip, p = simple_strtoul(data, p)
    while data[p] == 0x20:  # blanks between ip and port; the newline stops this
        if p >= end:
            return None
        p += 1
    port, p = simple_strtoul(data, p)
    if port > 65535:
        return None
    return ip & _M32, port, ad_beg, p


def help(ctx: HelpCtx, nat: NatIrcHook | None) -> int:
    """help() of nf_conntrack_irc.c; `nat` is nf_nat_irc_hook (None: conntrack only)."""
    ctinfo = ctx.ctinfo
    direction = ctinfo2dir(ctinfo)
    if direction == IP_CT_DIR_REPLY:
        return NF_ACCEPT  # from the IRC server
    if ctinfo != IP_CT_ESTABLISHED and ctinfo != IP_CT_ESTABLISHED_REPLY:
        return NF_ACCEPT  # until there's been traffic both ways
    buf, protoff, end = ctx.buf, ctx.protoff, ctx.end
    if protoff + 20 > end:
        return NF_ACCEPT
    dataoff = protoff + (buf[protoff + 12] >> 4) * 4
    if dataoff >= end:
        return NF_ACCEPT
    data = bytes(buf[dataoff:min(end, dataoff + MAX_SEARCH_SIZE)])
    limit = len(data)

    p = 0
    while p < limit - 10 and data[p] in b" \r\n":  # skip any whitespace
        p += 1
    if p < limit - 10:  # len("PRIVMSG x ")
        if data[p:p + 8].lower() != b"privmsg ":
            return NF_ACCEPT
        p += 8

    # len(" :\1DCC SENT t AAAAAAAA P\1\n") = 26
    while p < limit - (21 + MINMATCHLEN):
        if data[p:p + 2] != b" :":  # the first " :" starts the message
            p += 1
            continue
        p += 2
        if data[p:p + 5] != b"\x01DCC ":  # only there may the DCC be
            return NF_ACCEPT
        p += 5
        for proto in DCCPROTOS:
            if data[p:p + len(proto)] != proto:
                continue
            p += len(proto)
            parsed = parse_dcc(data, p, limit)
            if parsed is None:
                return NF_ACCEPT  # unparsable: no other DCC type is tried
            dcc_ip, dcc_port, ad_beg, ad_end = parsed
            return _expect(ctx, nat, direction, dcc_ip, dcc_port, ad_beg, ad_end)
    return NF_ACCEPT


def _expect(ctx: HelpCtx, nat: NatIrcHook | None, direction: int, dcc_ip: int, dcc_port: int,
            ad_beg: int, ad_end: int) -> int:
    ct = ctx.ct
    this = ct.tuple(direction)
    other = ct.tuple(1 - direction)
    # The address may be the internal or the external (NATed) one.
    if (this.src != dcc_ip and other.dst != dcc_ip) or dcc_port == 0:
        ctx.warn(f"nf_conntrack_irc: Forged DCC command from {ntoa(this.src)}: {ntoa(dcc_ip)}:{dcc_port}")
        return NF_ACCEPT
    exp = Expectation(ct, Tuple(0, other.dst, IPPROTO_TCP, 0, dcc_port), mask_src=0, mask_sport=0,
                      timeout=ctx.policy.timeout, cls=NF_CT_EXPECT_CLASS_DEFAULT)
    if nat is not None and ct.status & IPS_NAT_MASK:
        return nat(ctx, ad_beg, ad_end - ad_beg, exp)
    if ctx.expect_related(exp) != 0:
        ctx.helper_log("cannot add expectation")
        return NF_DROP
    return NF_ACCEPT
