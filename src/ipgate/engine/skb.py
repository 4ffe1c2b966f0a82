"""The packet on its way through the engine (struct sk_buff, the parts netfilter reads).

The bytes live in `buf` (an IPv4 packet, header first).  The fields the
matches read are parsed once into slots by `load()`, and parsed again after
anything rewrites the packet (NAT, TOS, TCPMSS), so a match never reads a
stale address.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ipgate.conntrack.table import CT_INVALID
from ipgate.packet.ipv4 import IP_MF, IP_OFFSET, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP
from ipgate.packet.l4 import PORT_PROTOS as _PORTED

if TYPE_CHECKING:
    from ipgate.conntrack.conn import Conn
    from ipgate.link.device import Device
    from ipgate.route.lookup import Route

_IPH = struct.Struct("!BBHHHBBHII")
_PORTS = struct.Struct("!HH")
__all__ = ["IPPROTO_ICMP", "IPPROTO_TCP", "IPPROTO_UDP", "Skb"]


class Skb:
    """One packet and its metadata: devices, mark, conntrack entry, route."""

    __slots__ = ("buf", "indev", "outdev", "mark", "ct", "ctinfo", "ct_reason", "route", "nexthop",
                 "saddr", "daddr", "proto", "tos", "ttl", "ihl", "frag_off", "tot_len", "fragoff",
                 "sport", "dport", "l4len", "hotdrop", "mac", "frag_max_size", "hook", "ct_helper", "csum_valid")

    saddr: int
    daddr: int
    proto: int
    tos: int
    ttl: int
    ihl: int
    frag_off: int
    tot_len: int
    fragoff: int
    sport: int
    dport: int
    l4len: int

    def __init__(self, buf: bytearray, indev: Device | None, *, mark: int = 0, csum_valid: bool = False) -> None:
        self.buf = buf
        self.csum_valid = csum_valid  # CHECKSUM_UNNECESSARY: the L4 checksum is known good, not summed again
        self.indev = indev
        self.outdev: Device | None = None
        self.mark = mark
        self.ct: Conn | None = None
        self.ctinfo = CT_INVALID
        self.ct_reason = ""
        self.route: Route | None = None
        self.nexthop = 0
        self.hotdrop = False
        self.mac: bytes | None = None
        self.frag_max_size = 0
        self.hook = 0
        self.ct_helper = ""  # -j CT --helper: the template's helper for a new connection
        self.load()

    def load(self) -> None:
        """Parse the header fields the matches use (the packet was checked by ip_rcv_core before)."""
        buf = self.buf
        vihl, self.tos, self.tot_len, _id, self.frag_off, self.ttl, self.proto, _ck, self.saddr, self.daddr = (
            _IPH.unpack_from(buf))
        self.ihl = (vihl & 0x0F) << 2
        self.fragoff = self.frag_off & IP_OFFSET  # in 8-byte units, as ipt_do_table's acpar.fragoff
        self.l4len = self.tot_len - self.ihl
        if self.proto in _PORTED and not self.fragoff and self.l4len >= 4:
            self.sport, self.dport = _PORTS.unpack_from(buf, self.ihl)
        elif self.proto == IPPROTO_ICMP and not self.fragoff and self.l4len >= 2:
            self.sport, self.dport = buf[self.ihl], buf[self.ihl + 1]  # type, code
        else:
            self.sport = self.dport = 0

    @property
    def is_fragment(self) -> bool:
        return bool(self.frag_off & (IP_MF | IP_OFFSET))

    @property
    def indev_name(self) -> str:
        return self.indev.name if self.indev is not None else ""

    @property
    def outdev_name(self) -> str:
        return self.outdev.name if self.outdev is not None else ""
