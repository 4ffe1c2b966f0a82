"""Why a packet was dropped, and counters for it.

`DropReason` takes the kernel's names (enum skb_drop_reason,
include/net/dropreason-core.h, without the SKB_DROP_REASON_ prefix) where the
kernel has one.  The few it lacks are marked "ipgate": the kernel drops those
packets with NOT_SPECIFIED and counts them only in an IPSTATS_MIB_* counter,
which `Mib` names (include/uapi/linux/snmp.h), with the label /proc/net/snmp
and `nstat` print.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator


class DropReason(enum.IntEnum):
    NOT_SPECIFIED = enum.auto()
    PKT_TOO_SMALL = enum.auto()  # a length field says more than the packet holds
    TCP_CSUM = enum.auto()
    UDP_CSUM = enum.auto()
    ICMP_CSUM = enum.auto()
    OTHERHOST = enum.auto()
    IP_CSUM = enum.auto()
    IP_INHDR = enum.auto()  # version, IHL, total length, options (IPSTATS_MIB_INHDRERRORS)
    IP_NOPROTO = enum.auto()
    IP_INADDRERRORS = enum.auto()
    IP_INNOROUTES = enum.auto()
    UNHANDLED_PROTO = enum.auto()
    INVALID_PROTO = enum.auto()  # not what the RFC allows (e.g. an ICMP type > NR_ICMP_TYPES)
    NOMEM = enum.auto()  # fragment memory above ipfrag_high_thresh
    HDR_TRUNC = enum.auto()  # a header is cut short (or absent: a non-first fragment)
    PKT_TOO_BIG = enum.auto()
    DUP_FRAG = enum.auto()
    FRAG_REASM_TIMEOUT = enum.auto()
    FRAG_TOO_FAR = enum.auto()  # ipfrag_max_dist
    # ipgate: the kernel says NOT_SPECIFIED for these
    FRAG_OVERLAP = enum.auto()  # IPSTATS_MIB_REASM_OVERLAPS: the whole queue goes (RFC 5722)
    FRAG_INVALID = enum.auto()  # ip_frag_queue()'s discard_qp: inconsistent ends, empty fragment
    FRAG_OVERSIZE = enum.auto()  # reassembled length > 65535 (ip_frag_reasm(): -E2BIG)
    FRAG_ECN = enum.auto()  # CE mixed with Not-ECT fragments (ip_frag_ecn_table)

    @property
    def kernel_name(self) -> str:
        return "SKB_DROP_REASON_" + self.name


class Mib(enum.IntEnum):
    """IPSTATS_MIB_* counters this layer bumps (the Ip: lines of /proc/net/snmp)."""

    INHDRERRORS = enum.auto()
    INTRUNCATEDPKTS = enum.auto()
    CSUMERRORS = enum.auto()
    REASMREQDS = enum.auto()
    REASMOKS = enum.auto()
    REASMFAILS = enum.auto()
    REASMTIMEOUT = enum.auto()
    REASM_OVERLAPS = enum.auto()
    FRAGOKS = enum.auto()
    FRAGFAILS = enum.auto()
    FRAGCREATES = enum.auto()

    @property
    def snmp_name(self) -> str:
        return _SNMP_NAMES[self]


_SNMP_NAMES = {
    Mib.INHDRERRORS: "InHdrErrors", Mib.INTRUNCATEDPKTS: "InTruncatedPkts", Mib.CSUMERRORS: "InCsumErrors",
    Mib.REASMREQDS: "ReasmReqds", Mib.REASMOKS: "ReasmOKs", Mib.REASMFAILS: "ReasmFails",
    Mib.REASMTIMEOUT: "ReasmTimeout", Mib.REASM_OVERLAPS: "ReasmOverlaps", Mib.FRAGOKS: "FragOKs",
    Mib.FRAGFAILS: "FragFails", Mib.FRAGCREATES: "FragCreates",
}

# What ip_rcv_core() counts besides the drop reason (net/ipv4/ip_input.c).
RCV_MIBS: dict[DropReason, tuple[Mib, ...]] = {
    DropReason.IP_INHDR: (Mib.INHDRERRORS,),
    DropReason.IP_CSUM: (Mib.CSUMERRORS, Mib.INHDRERRORS),
    DropReason.PKT_TOO_SMALL: (Mib.INTRUNCATEDPKTS,),
}


class Counters:
    """Counts by key (a DropReason, a Mib, or any hashable); missing keys read 0."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[object, int] = {}

    def inc(self, key: object, n: int = 1) -> None:
        c = self.counts
        c[key] = c.get(key, 0) + n

    def drop(self, reason: DropReason) -> None:
        """Count a drop at IP input: the reason and the MIB counters ip_rcv_core() bumps."""
        c = self.counts
        c[reason] = c.get(reason, 0) + 1
        for m in RCV_MIBS.get(reason, ()):
            c[m] = c.get(m, 0) + 1

    def __getitem__(self, key: object) -> int:
        return self.counts.get(key, 0)

    def __iter__(self) -> Iterator[object]:
        return iter(self.counts)

    def __len__(self) -> int:
        return len(self.counts)

    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        """Names to counts, for printing: enum members by name."""
        return {getattr(k, "name", str(k)): v for k, v in self.counts.items()}

    def clear(self) -> None:
        self.counts.clear()
