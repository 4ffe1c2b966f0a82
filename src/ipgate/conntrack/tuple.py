"""Connection tuples (include/net/netfilter/nf_conntrack_tuple.h).

A `Tuple` is what the kernel's `struct nf_conntrack_tuple` holds for IPv4:
source and destination address, protocol, and the per-protocol "ports":

- TCP, UDP, UDP-Lite, SCTP, DCCP: source and destination port;
- ICMP: ``sport`` is the echo identifier (``src.u.icmp.id``) and ``dport``
  packs ``type << 8 | code`` (``dst.u.icmp.type``/``code``);
- GRE: the PPTP keys (``srckey``/``dstkey``), 0 outside PPTP;
- anything else: both 0 (the generic tracker sees addresses only).

The table does not store `Tuple` objects: each direction is stored as one
int, the *key* (``src<<72 | dst<<40 | sport<<24 | dport<<8 | proto``),
built straight from the packet bytes.  A 104-bit int costs 48 bytes against
80 for a 5-field tuple (plus its fields), and a million connections have two
of them each; `Tuple` is the readable form for NAT, commands and tests.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from ipgate.inet import ntoa

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_DCCP = 33
IPPROTO_GRE = 47
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132
IPPROTO_UDPLITE = 136

ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_SOURCE_QUENCH = 4
ICMP_REDIRECT = 5
ICMP_ECHO = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAMETERPROB = 12
ICMP_TIMESTAMP = 13
ICMP_TIMESTAMPREPLY = 14
ICMP_INFO_REQUEST = 15
ICMP_INFO_REPLY = 16
ICMP_ADDRESS = 17
ICMP_ADDRESSREPLY = 18
NR_ICMP_TYPES = 18

# invmap[] of nf_conntrack_proto_icmp.c: the type a reply carries.  A type
# without an entry cannot be inverted, so it never starts a connection.
ICMP_INVMAP: dict[int, int] = {
    ICMP_ECHO: ICMP_ECHOREPLY, ICMP_ECHOREPLY: ICMP_ECHO,
    ICMP_TIMESTAMP: ICMP_TIMESTAMPREPLY, ICMP_TIMESTAMPREPLY: ICMP_TIMESTAMP,
    ICMP_INFO_REQUEST: ICMP_INFO_REPLY, ICMP_INFO_REPLY: ICMP_INFO_REQUEST,
    ICMP_ADDRESS: ICMP_ADDRESSREPLY, ICMP_ADDRESSREPLY: ICMP_ADDRESS,
}

# Protocols whose tuple carries ports (nf_ct_port_* users) and that print them.
PORT_PROTOS = frozenset((IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_SCTP, IPPROTO_DCCP))

_M32 = 0xFFFFFFFF


class Direction(IntEnum):
    """enum ip_conntrack_dir."""

    ORIGINAL = 0
    REPLY = 1


IP_CT_DIR_ORIGINAL = 0
IP_CT_DIR_REPLY = 1


def make_key(src: int, dst: int, proto: int, sport: int = 0, dport: int = 0) -> int:
    """The table key of a tuple (see the module docstring)."""
    return (src << 72) | (dst << 40) | (sport << 24) | (dport << 8) | proto


def invert_key(key: int) -> int:
    """nf_ct_invert_tuple() on a key; -1 if the tuple cannot be inverted.

    Addresses swap; ports swap (zero ports stay zero); an ICMP query keeps its
    id and takes the reply type (echo <-> echo reply and the other pairs).
    """
    proto = key & 0xFF
    src = key >> 72
    dst = (key >> 40) & _M32
    sport = (key >> 24) & 0xFFFF
    dport = (key >> 8) & 0xFFFF
    if proto == IPPROTO_ICMP:
        rtype = ICMP_INVMAP.get(dport >> 8)
        if rtype is None:
            return -1
        return (dst << 72) | (src << 40) | (sport << 24) | (((rtype << 8) | (dport & 0xFF)) << 8) | proto
    return (dst << 72) | (src << 40) | (dport << 24) | (sport << 8) | proto


class Tuple(NamedTuple):
    """struct nf_conntrack_tuple for IPv4 (addresses are host-order ints)."""

    src: int
    dst: int
    proto: int
    sport: int = 0  # source port, ICMP id, GRE source key
    dport: int = 0  # destination port, ICMP type<<8|code, GRE destination key

    @property
    def key(self) -> int:
        return (self.src << 72) | (self.dst << 40) | (self.sport << 24) | (self.dport << 8) | self.proto

    @classmethod
    def from_key(cls, key: int) -> Tuple:
        return cls(key >> 72, (key >> 40) & _M32, key & 0xFF, (key >> 24) & 0xFFFF, (key >> 8) & 0xFFFF)

    @classmethod
    def icmp(cls, src: int, dst: int, type_: int, code: int = 0, id_: int = 0) -> Tuple:
        return cls(src, dst, IPPROTO_ICMP, id_, (type_ << 8) | code)

    @property
    def icmp_type(self) -> int:
        return self.dport >> 8

    @property
    def icmp_code(self) -> int:
        return self.dport & 0xFF

    @property
    def icmp_id(self) -> int:
        return self.sport

    def invert(self) -> Tuple | None:
        """nf_ct_invert_tuple(); None for an ICMP type without a reply."""
        k = invert_key(self.key)
        return None if k < 0 else Tuple.from_key(k)

    def __str__(self) -> str:
        # nf_ct_dump_tuple_ip() style, for debugging and log lines.
        if self.proto == IPPROTO_ICMP:
            l4 = f" type={self.icmp_type} code={self.icmp_code} id={self.icmp_id}"
        elif self.proto in PORT_PROTOS:
            l4 = f" sport={self.sport} dport={self.dport}"
        else:
            l4 = ""
        return f"proto={self.proto} src={ntoa(self.src)} dst={ntoa(self.dst)}{l4}"
