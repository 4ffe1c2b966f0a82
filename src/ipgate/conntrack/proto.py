"""UDP, UDP-Lite, ICMP, GRE and generic trackers (nf_conntrack_proto_{udp,icmp,gre,generic}.c).

- UDP: an entry lives ``nf_conntrack_udp_timeout`` (30 s) until a reply is
  seen; traffic still flowing two seconds after creation, with a reply seen,
  makes it a "stream": ``nf_conntrack_udp_timeout_stream`` (120 s) and
  ASSURED.  (So a DNS query and its answer stay unassured at 30 s, as
  ``conntrack -L`` shows on a real kernel.)
- UDP-Lite: the same tuple; assured at the first reply (no two-second rule).
- ICMP: only echo, timestamp, info and address-mask requests start an entry
  (``nf_conntrack_icmp_timeout``, 30 s); their replies match it; errors
  (unreachable, time exceeded, ...) never create entries but are RELATED to
  the connection their embedded header belongs to.
- GRE: 30 s, 180 s once replied (assured then); keys are 0 outside PPTP.
- Everything else: addresses only, ``nf_conntrack_generic_timeout`` (600 s).
  SCTP's own state machine is not implemented: SCTP is tracked as generic.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ipgate.conntrack.conn import (
    IP_CT_IS_REPLY,
    IP_CT_RELATED,
    IPCT_ASSURED,
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_NAT_CLASH,
    IPS_SEEN_REPLY,
    NF_ACCEPT,
    NF_INET_PRE_ROUTING,
    Conn,
    refresh_acct,
)
from ipgate.conntrack.tcp import tcp_can_early_drop
from ipgate.conntrack.tuple import (
    ICMP_ADDRESS,
    ICMP_DEST_UNREACH,
    ICMP_ECHO,
    ICMP_INFO_REQUEST,
    ICMP_PARAMETERPROB,
    ICMP_REDIRECT,
    ICMP_SOURCE_QUENCH,
    ICMP_TIME_EXCEEDED,
    ICMP_TIMESTAMP,
    IPPROTO_DCCP,
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPPROTO_UDPLITE,
    NR_ICMP_TYPES,
    invert_key,
)
from ipgate.packet.checksum import Buffer as Buf
from ipgate.packet.checksum import l4_checksum_ok

if TYPE_CHECKING:
    from ipgate.conntrack.table import ConntrackTable

# valid_new[] of nf_conntrack_icmp_packet(): the queries that may start an entry.
ICMP_VALID_NEW = frozenset((ICMP_ECHO, ICMP_TIMESTAMP, ICMP_INFO_REQUEST, ICMP_ADDRESS))
# icmp_is_err()
ICMP_ERRORS = frozenset((ICMP_DEST_UNREACH, ICMP_SOURCE_QUENCH, ICMP_REDIRECT, ICMP_TIME_EXCEEDED,
                         ICMP_PARAMETERPROB))

UDP_STREAM_DELAY = 2.0  # "still active after two seconds?"

_M32 = 0xFFFFFFFF
_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_I = struct.Struct("!I")


def get_key(pkt: Buf, dataoff: int, l4len: int, proto: int, saddr_daddr: int) -> int:
    """nf_ct_get_tuple(): the key of a packet's tuple; -1 when the header is too short.

    `saddr_daddr` is the 64-bit ``saddr << 32 | daddr`` of the IP header.
    """
    if proto in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_SCTP, IPPROTO_DCCP):
        if proto in (IPPROTO_SCTP, IPPROTO_DCCP):
            return (saddr_daddr << 40) | proto  # tracked as generic: no ports
        if l4len < 4:
            return -1
        return (saddr_daddr << 40) | (int(_I.unpack_from(pkt, dataoff)[0]) << 8) | proto
    if proto == IPPROTO_ICMP:
        if l4len < 8:
            return -1
        b = memoryview(pkt)
        type_code = (b[dataoff] << 8) | b[dataoff + 1]
        ident = int(_H.unpack_from(pkt, dataoff + 4)[0])
        return (saddr_daddr << 40) | (ident << 24) | (type_code << 8) | proto
    if proto == IPPROTO_GRE:
        # gre_pkt_to_tuple(): only enhanced GRE (version 1, PPTP) carries keys;
        # the source key comes from the PPTP helper's keymap (none here).
        if l4len >= 4 and _H.unpack_from(pkt, dataoff)[0] & 0x7 == 1:
            if l4len < 8 or _H.unpack_from(pkt, dataoff + 2)[0] != 0x880B:
                return -1  # version 1 is PPTP's: PPP payload only
            call_id = int(_H.unpack_from(pkt, dataoff + 6)[0])
            return (saddr_daddr << 40) | (call_id << 8) | proto
        return (saddr_daddr << 40) | proto
    return (saddr_daddr << 40) | proto


# -- UDP -------------------------------------------------------------------

def udp_error(pkt: Buf, dataoff: int, l4len: int, hook: int, checksum: bool) -> str:
    """udp_error()."""
    if l4len < 8:
        return "short packet"
    ulen, check = _HH.unpack_from(pkt, dataoff + 4)
    if ulen > l4len or ulen < 8:
        return "truncated/malformed packet"
    if check and checksum and hook == NF_INET_PRE_ROUTING and not l4_checksum_ok(pkt, dataoff, l4len, 17):
        return "bad checksum"
    return ""


def udp_packet(table: ConntrackTable, ct: Conn, ctinfo: int, skblen: int, now: float) -> None:
    """nf_conntrack_udp_packet() after udp_error()."""
    sysctl = table.sysctl
    status = ct.status
    if not status & IPS_CONFIRMED:
        ct.proto = now + UDP_STREAM_DELAY  # ct->proto.udp.stream_ts
    if status & IPS_SEEN_REPLY:
        extra = sysctl.udp_timeout
        stream = False
        if now > ct.proto:
            extra = sysctl.udp_timeout_stream
            stream = not status & IPS_ASSURED
        refresh_acct(ct, ctinfo, skblen, extra, now)
        if status & IPS_NAT_CLASH:
            return  # clash entries time out soon, never assured
        if stream and not ct.status & IPS_ASSURED:
            ct.set_status(IPS_ASSURED)
            table.event(IPCT_ASSURED, ct)
    else:
        refresh_acct(ct, ctinfo, skblen, sysctl.udp_timeout, now)


def udplite_packet(table: ConntrackTable, ct: Conn, ctinfo: int, skblen: int, now: float) -> None:
    """nf_conntrack_udplite_packet() (checksum coverage is not verified)."""
    sysctl = table.sysctl
    if ct.status & IPS_SEEN_REPLY:
        refresh_acct(ct, ctinfo, skblen, sysctl.udp_timeout_stream, now)
        if ct.status & IPS_NAT_CLASH:
            return
        if not ct.status & IPS_ASSURED:
            ct.set_status(IPS_ASSURED)
            table.event(IPCT_ASSURED, ct)
    else:
        refresh_acct(ct, ctinfo, skblen, sysctl.udp_timeout, now)


def udplite_error(pkt: Buf, dataoff: int, l4len: int) -> str:
    if l4len < 8:
        return "short packet"
    cscov, check = _HH.unpack_from(pkt, dataoff + 4)
    if cscov and (cscov < 8 or cscov > l4len):
        return "invalid checksum coverage"
    if not check:
        return "checksum missing"
    return ""


# -- ICMP ------------------------------------------------------------------

def icmp_packet(table: ConntrackTable, ct: Conn, ctinfo: int, skblen: int, now: float) -> tuple[int, str]:
    """nf_conntrack_icmp_packet(): only queries make an ICMP "connection"."""
    otype = (ct.okey >> 16) & 0xFF
    if otype not in ICMP_VALID_NEW:
        return -NF_ACCEPT, f"icmp: can't create new conn with type {otype}"
    refresh_acct(ct, ctinfo, skblen, table.sysctl.icmp_timeout, now)
    return NF_ACCEPT, ""


def icmp_error(table: ConntrackTable, pkt: Buf, dataoff: int, l4len: int, hook: int, now: float,
               daddr: int, csum: bool) -> tuple[int, Conn | None, int, str]:
    """nf_conntrack_icmpv4_error() + nf_conntrack_inet_error().

    Returns (verdict, ct, ctinfo, reason): verdict <= 0 is invalid; a
    non-None ct means the error is RELATED to it; (NF_ACCEPT, None) means "not
    an error, track it as a query".
    """
    if l4len < 8:
        return -NF_ACCEPT, None, 0, "short packet"
    if csum and hook == NF_INET_PRE_ROUTING and not l4_checksum_ok(pkt, dataoff, l4len, 1, False):
        return -NF_ACCEPT, None, 0, "bad hw icmp checksum"
    mv = memoryview(pkt)
    itype = mv[dataoff]
    if itype > NR_ICMP_TYPES:
        return -NF_ACCEPT, None, 0, "invalid icmp type"
    if itype not in ICMP_ERRORS:
        return NF_ACCEPT, None, 0, ""

    # The embedded header: are they talking about one of our connections?
    inner = dataoff + 8
    avail = dataoff + l4len - inner
    if avail < 20:
        return -NF_ACCEPT, None, 0, "inner header missing"
    ivhl = mv[inner]
    ihl = (ivhl & 0xF) * 4
    if _H.unpack_from(pkt, inner + 6)[0] & 0x1FFF:
        return -NF_ACCEPT, None, 0, "inner fragment"  # ipv4_get_l4proto(): IP_OFFSET set
    if ihl < 20 or ihl > avail:
        return -NF_ACCEPT, None, 0, "bogus inner header"
    iproto = mv[inner + 9]
    isd = int.from_bytes(mv[inner + 12:inner + 20], "big")
    origkey = get_key(pkt, inner + ihl, avail - ihl, iproto, isd)
    if origkey < 0:
        return -NF_ACCEPT, None, 0, "inner tuple"
    # Ordinarily we'd expect the inverted tuple, but it's preserved inside the ICMP.
    innerkey = invert_key(origkey)
    if innerkey < 0:
        return -NF_ACCEPT, None, 0, "inner tuple cannot be inverted"
    found = table.find(innerkey, now)
    if found is None:
        return -NF_ACCEPT, None, 0, "no connection for the inner tuple"
    ct, direction = found
    ct_daddr = ((ct.rkey if direction else ct.okey) >> 40) & _M32
    if daddr != ct_daddr:
        return -NF_ACCEPT, None, 0, "outer daddr != inner"
    return NF_ACCEPT, ct, IP_CT_RELATED + (IP_CT_IS_REPLY if direction else 0), ""


# -- GRE and generic ---------------------------------------------------------

def gre_packet(table: ConntrackTable, ct: Conn, ctinfo: int, skblen: int, now: float) -> None:
    """nf_conntrack_gre_packet(): the timeouts are copied into the entry when it is new."""
    if not ct.status & IPS_CONFIRMED:
        ct.proto = (table.sysctl.gre_timeout, table.sysctl.gre_timeout_stream)
    timeout, stream_timeout = ct.proto
    if ct.status & IPS_SEEN_REPLY:
        refresh_acct(ct, ctinfo, skblen, stream_timeout, now)
        if ct.status & IPS_NAT_CLASH:
            return
        if not ct.status & IPS_ASSURED:
            ct.set_status(IPS_ASSURED)
            table.event(IPCT_ASSURED, ct)
    else:
        refresh_acct(ct, ctinfo, skblen, timeout, now)


def generic_packet(table: ConntrackTable, ct: Conn, ctinfo: int, skblen: int, now: float) -> None:
    refresh_acct(ct, ctinfo, skblen, table.sysctl.generic_timeout, now)


def can_early_drop(ct: Conn) -> bool:
    """l4proto->can_early_drop: only TCP has one (its closing states)."""
    return ct.okey & 0xFF == IPPROTO_TCP and tcp_can_early_drop(ct)
