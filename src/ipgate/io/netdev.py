"""netdevice(7) ioctls on an AF_INET datagram socket: index, flags, MTU, hardware address.

struct ifreq (linux/if.h) is 16 bytes of name and a 24-byte union; only the
members used here are packed.
"""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
SIOCGIFHWADDR = 0x8927

IFF_UP = 0x1
IFNAMSIZ = 16
ARPHRD_ETHER = 1

_IFREQ = struct.Struct("16s24s")


def _ifreq(name: str, data: bytes = b"") -> bytes:
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ:
        raise ValueError(f"bad interface name {name!r}")
    return _IFREQ.pack(raw, data)


def _ioctl(name: str, req: int, data: bytes = b"") -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        out: bytes = fcntl.ioctl(s.fileno(), req, _ifreq(name, data))
        return out[IFNAMSIZ:]


def exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def ifindex(name: str) -> int:
    return socket.if_nametoindex(name)


def flags(name: str) -> int:
    return int(struct.unpack_from("H", _ioctl(name, SIOCGIFFLAGS))[0])


def set_up(name: str, up: bool = True) -> None:
    """`ip link set NAME up|down` (SIOCSIFFLAGS)."""
    f = flags(name)
    new = f | IFF_UP if up else f & ~IFF_UP
    if new != f:
        _ioctl(name, SIOCSIFFLAGS, struct.pack("H", new))


def mtu(name: str) -> int:
    return int(struct.unpack_from("i", _ioctl(name, SIOCGIFMTU))[0])


def set_mtu(name: str, value: int) -> None:
    _ioctl(name, SIOCSIFMTU, struct.pack("i", value))


def hwaddr(name: str) -> tuple[int, bytes]:
    """(ARPHRD type, address) from SIOCGIFHWADDR: a struct sockaddr (family, 14 bytes)."""
    data = _ioctl(name, SIOCGIFHWADDR)
    family = struct.unpack_from("H", data)[0]
    return int(family), bytes(data[2:8])
