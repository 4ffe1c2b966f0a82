"""IPv4 addresses as ints, prefixes, and the rtnetlink constant names.

Addresses are plain ints in host order throughout the core: comparisons and
masks are cheap and dict keys are small.  Only the edges parse and print.
"""

from __future__ import annotations

import socket
import struct

_pack_I = struct.Struct("!I")

ALL_ONES = 0xFFFFFFFF
INADDR_LOOPBACK = 0x7F000001
INADDR_BROADCAST = 0xFFFFFFFF

# Masks indexed by prefix length (0..32).
MASKS: tuple[int, ...] = tuple((ALL_ONES << (32 - n)) & ALL_ONES for n in range(33))


def mask_of(plen: int) -> int:
    return MASKS[plen]


def ntoa(addr: int) -> str:
    return socket.inet_ntoa(_pack_I.pack(addr))


def aton(text: str) -> int:
    """Parse a dotted quad strictly (four parts, decimal), as inet_pton does."""
    try:
        return int(_pack_I.unpack(socket.inet_pton(socket.AF_INET, text))[0])
    except OSError:
        raise ValueError(f"invalid IPv4 address {text!r}") from None


def get_addr_1(text: str) -> int:
    """iproute2's get_addr_1 for IPv4: also accepts short forms like ``10`` or ``10.1``.

    The missing trailing bytes are zero, as in ``ip route add 10/8``.
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or any(not p.isdigit() or len(p) > 3 for p in parts):
        raise ValueError(f"invalid IPv4 address {text!r}")
    vals = [int(p) for p in parts]
    if any(v > 255 for v in vals):
        raise ValueError(f"invalid IPv4 address {text!r}")
    vals += [0] * (4 - len(vals))
    return (vals[0] << 24) | (vals[1] << 16) | (vals[2] << 8) | vals[3]


def parse_prefix(text: str, *, default_plen: int = 32) -> tuple[int, int, bool]:
    """Parse ``A[/N]``, ``default``, ``all``, ``any``: (address, plen, plen_given).

    Like iproute2's get_prefix_1, ``A/N`` keeps the host bits of A; callers that
    need a network (routes, rules) check them.
    """
    if text in ("default", "all", "any"):
        return 0, 0, True
    addr_s, slash, plen_s = text.partition("/")
    addr = get_addr_1(addr_s)
    if not slash:
        return addr, default_plen, False
    if not plen_s.isdigit():
        # iproute2 also takes a dotted netmask after the slash.
        m = get_addr_1(plen_s)
        plen = netmask_to_plen(m)
        if plen < 0:
            raise ValueError(f"invalid prefix {text!r}")
        return addr, plen, True
    plen = int(plen_s)
    if plen > 32:
        raise ValueError(f"invalid prefix {text!r}")
    return addr, plen, True


def netmask_to_plen(mask: int) -> int:
    """Length of a contiguous netmask, or -1 if it is not contiguous."""
    inv = (~mask) & ALL_ONES
    if inv & (inv + 1):
        return -1
    return 32 - inv.bit_length()


def prefix_str(addr: int, plen: int) -> str:
    return ntoa(addr) if plen == 32 else f"{ntoa(addr)}/{plen}"


def is_multicast(a: int) -> bool:
    return (a & 0xF0000000) == 0xE0000000


def is_lbcast(a: int) -> bool:
    return a == INADDR_BROADCAST


def is_zeronet(a: int) -> bool:
    return (a & 0xFF000000) == 0


def is_loopback(a: int) -> bool:
    return (a & 0xFF000000) == 0x7F000000


def is_local_multicast(a: int) -> bool:
    return (a & 0xFFFFFF00) == 0xE0000000


# --- rtnetlink constants (include/uapi/linux/rtnetlink.h) -----------------

RT_TABLE_UNSPEC = 0
RT_TABLE_COMPAT = 252
RT_TABLE_DEFAULT = 253
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255

RT_SCOPE_UNIVERSE = 0
RT_SCOPE_SITE = 200
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_SCOPE_NOWHERE = 255

SCOPE_NAMES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
SCOPE_BY_NAME = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}

RTN_UNSPEC = 0
RTN_UNICAST = 1
RTN_LOCAL = 2
RTN_BROADCAST = 3
RTN_ANYCAST = 4
RTN_MULTICAST = 5
RTN_BLACKHOLE = 6
RTN_UNREACHABLE = 7
RTN_PROHIBIT = 8
RTN_THROW = 9
RTN_NAT = 10

RTN_NAMES = {
    0: "none", 1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
    6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat", 11: "xresolve",
}
RTN_BY_NAME = {v: k for k, v in RTN_NAMES.items()}

RTPROT_UNSPEC = 0
RTPROT_REDIRECT = 1
RTPROT_KERNEL = 2
RTPROT_BOOT = 3
RTPROT_STATIC = 4

# /etc/iproute2/rt_protos as shipped by iproute2 6.1.
PROTO_NAMES = {
    0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra",
    10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp",
    18: "keepalived", 42: "babel", 99: "openr", 186: "bgp", 187: "isis", 188: "ospf",
    189: "rip", 192: "eigrp",
}
PROTO_BY_NAME = {v: k for k, v in PROTO_NAMES.items()}

IP_PROTO_NAMES = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 132: "sctp"}
IP_PROTO_BY_NAME = {v: k for k, v in IP_PROTO_NAMES.items()}

# /etc/iproute2/rt_dsfield names.
DSFIELD_NAMES = {
    0x10: "lowdelay", 0x08: "throughput", 0x04: "reliability",
    0x02: "mincost", 0x20: "CS1", 0x40: "CS2", 0x60: "CS3", 0x80: "CS4", 0xA0: "CS5",
    0xC0: "CS6", 0xE0: "CS7", 0x28: "AF11", 0x30: "AF12", 0x38: "AF13", 0x48: "AF21",
    0x50: "AF22", 0x58: "AF23", 0x68: "AF31", 0x70: "AF32", 0x78: "AF33", 0x88: "AF41",
    0x90: "AF42", 0x98: "AF43", 0xB8: "EF",
}
DSFIELD_BY_NAME = {v.lower(): k for k, v in DSFIELD_NAMES.items()}

# Legacy TOS bits that routing looks at (IPTOS_RT_MASK in include/net/route.h).
IPTOS_RT_MASK = 0x1C
