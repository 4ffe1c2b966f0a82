"""A tracked connection (struct nf_conn) and the constants around it.

Memory is the constraint here: the gateway must hold a million entries in
well under 512 MB.  A `Conn` is a `__slots__` object of eight references
(96 bytes); the two directions are ints (see tuple.py); the TCP tracker's
private state is one packed `bytes` (tcp.py); rarely used parts (helper,
master, expectations) live in an optional `ConnExt`, like
the kernel's nf_ct_ext; per-direction counters exist only when
``nf_conntrack_acct`` was on when the entry was created, as in the kernel.
Status values are interned so that a thousand entries with the same bits
share one int object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ipgate.conntrack.tuple import IP_CT_DIR_ORIGINAL, IP_CT_DIR_REPLY, IPPROTO_TCP, Tuple

if TYPE_CHECKING:
    from ipgate.conntrack.expect import Expectation
    from ipgate.nat.seqadj import SeqAdj

# enum ip_conntrack_status (uapi/linux/netfilter/nf_conntrack_common.h)
IPS_EXPECTED = 1 << 0
IPS_SEEN_REPLY = 1 << 1
IPS_ASSURED = 1 << 2
IPS_CONFIRMED = 1 << 3
IPS_SRC_NAT = 1 << 4
IPS_DST_NAT = 1 << 5
IPS_NAT_MASK = IPS_SRC_NAT | IPS_DST_NAT
IPS_SEQ_ADJUST = 1 << 6
IPS_SRC_NAT_DONE = 1 << 7
IPS_DST_NAT_DONE = 1 << 8
IPS_NAT_DONE_MASK = IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE
IPS_DYING = 1 << 9
IPS_FIXED_TIMEOUT = 1 << 10
IPS_TEMPLATE = 1 << 11
IPS_NAT_CLASH = 1 << 12
IPS_HELPER = 1 << 13
IPS_OFFLOAD = 1 << 14
IPS_HW_OFFLOAD = 1 << 15

# enum ip_conntrack_info
IP_CT_ESTABLISHED = 0
IP_CT_RELATED = 1
IP_CT_NEW = 2
IP_CT_IS_REPLY = 3
IP_CT_ESTABLISHED_REPLY = 3
IP_CT_RELATED_REPLY = 4
IP_CT_UNTRACKED = 7

# Netfilter verdicts (uapi/linux/netfilter.h); trackers return -NF_ACCEPT for
# "invalid, let the ruleset decide" and -NF_REPEAT for "look up again".
NF_DROP = 0
NF_ACCEPT = 1
NF_STOLEN = 2
NF_QUEUE = 3
NF_REPEAT = 4

# enum nf_inet_hooks
NF_INET_PRE_ROUTING = 0
NF_INET_LOCAL_IN = 1
NF_INET_FORWARD = 2
NF_INET_LOCAL_OUT = 3
NF_INET_POST_ROUTING = 4

# enum ip_conntrack_events (the ones ipgate reports)
IPCT_NEW = 0
IPCT_RELATED = 1
IPCT_DESTROY = 2
IPCT_REPLY = 3
IPCT_ASSURED = 4
IPCT_PROTOINFO = 5


def ctinfo2dir(ctinfo: int) -> int:
    """CTINFO2DIR()."""
    return IP_CT_DIR_REPLY if ctinfo >= IP_CT_IS_REPLY else IP_CT_DIR_ORIGINAL


_STATUS: dict[int, int] = {}


def intern_status(value: int) -> int:
    """One int object per distinct status value (values >= 257 are not cached by CPython)."""
    return _STATUS.setdefault(value, value)


class ConnExt:
    """The rarely present parts of a connection (struct nf_ct_ext and friends)."""

    __slots__ = ("helper", "master", "expectations", "masq_index", "secmark", "zone", "labels", "data", "seqadj")

    def __init__(self) -> None:
        self.helper: str | None = None            # nf_conn_help.helper (by name)
        self.master: Conn | None = None           # nf_conn.master (expected connections)
        self.expectations: list[Expectation] | None = None  # nf_conn_help.expectations
        self.masq_index = 0                       # nf_conn_nat.masq_index
        self.secmark = 0
        self.zone = 0
        self.labels = 0
        self.data: Any = None                     # helper private data
        self.seqadj: SeqAdj | None = None         # nf_conn_seqadj (NAT helpers' TCP sequence offsets)


class Conn:
    """struct nf_conn.

    `timeout` is relative (seconds) until the entry is confirmed, then the
    absolute expiry time on the caller's clock, as the kernel adds
    ``nfct_time_stamp`` in __nf_conntrack_confirm().  `proto` is the tracker's
    private state: packed ip_ct_tcp bytes for TCP, the stream timestamp for
    UDP, the (timeout, stream_timeout) pair for GRE, None otherwise.
    """

    __slots__ = ("okey", "rkey", "status", "timeout", "proto", "mark", "ext", "acct")

    def __init__(self, okey: int, rkey: int) -> None:
        self.okey = okey
        self.rkey = rkey
        self.status = 0
        self.timeout: float = 0.0
        self.proto: Any = None
        self.mark = 0
        self.ext: ConnExt | None = None
        self.acct: list[int] | None = None  # [packets, bytes] x [ORIGINAL, REPLY]

    # -- views ------------------------------------------------------------
    @property
    def orig(self) -> Tuple:
        """ct->tuplehash[IP_CT_DIR_ORIGINAL].tuple"""
        return Tuple.from_key(self.okey)

    @property
    def reply(self) -> Tuple:
        """ct->tuplehash[IP_CT_DIR_REPLY].tuple"""
        return Tuple.from_key(self.rkey)

    def tuple(self, direction: int) -> Tuple:
        return Tuple.from_key(self.rkey if direction else self.okey)

    @property
    def protonum(self) -> int:
        return self.okey & 0xFF

    @property
    def tcp_state(self) -> int:
        """ct->proto.tcp.state (0 = NONE for other protocols); byte 0 of the packed state."""
        p = self.proto
        return p[0] if self.okey & 0xFF == IPPROTO_TCP and isinstance(p, bytes) else 0

    @property
    def confirmed(self) -> bool:
        return bool(self.status & IPS_CONFIRMED)

    @property
    def dying(self) -> bool:
        return bool(self.status & IPS_DYING)

    @property
    def helper(self) -> str | None:
        return self.ext.helper if self.ext is not None else None

    @property
    def master(self) -> Conn | None:
        return self.ext.master if self.ext is not None else None

    def get_ext(self) -> ConnExt:
        if self.ext is None:
            self.ext = ConnExt()
        return self.ext

    def set_status(self, bits: int) -> None:
        v = self.status | bits
        self.status = _STATUS.setdefault(v, v)  # intern_status(), inlined: once or more per new connection

    def clear_status(self, bits: int) -> None:
        self.status = intern_status(self.status & ~bits)

    def expires(self, now: float) -> float:
        """nf_ct_expires(): seconds left, never negative."""
        left = self.timeout - now
        return left if left > 0 else 0.0

    def __repr__(self) -> str:
        return f"<Conn {self.orig} / {self.reply} status={self.status:#x}>"


def refresh_acct(ct: Conn, ctinfo: int, length: int, extra: float, now: float) -> None:
    """__nf_ct_refresh_acct(): set the timeout (unless fixed) and count the packet.

    An unconfirmed entry keeps a relative timeout; confirmation adds `now`.
    """
    if not ct.status & IPS_FIXED_TIMEOUT:
        ct.timeout = extra + now if ct.status & IPS_CONFIRMED else extra
    acct = ct.acct
    if acct is not None and length:
        i = 2 if ctinfo >= IP_CT_IS_REPLY else 0
        acct[i] += 1
        acct[i + 1] += length


def acct_update(ct: Conn, ctinfo: int, length: int) -> None:
    """nf_ct_acct_update() alone (nf_ct_kill_acct counts the packet that kills)."""
    acct = ct.acct
    if acct is not None:
        i = 2 if ctinfo >= IP_CT_IS_REPLY else 0
        acct[i] += 1
        acct[i + 1] += length
