"""TUN and TAP devices (linux/if_tun.h, Documentation/networking/tuntap.rst).

`open_tun(name)` creates (or attaches to) the device NAME with TUNSETIFF:
IFF_TUN carries bare IPv4 packets, IFF_TAP Ethernet frames; IFF_NO_PI drops
the 4-byte packet information header.  The file descriptor is non-blocking;
one read() returns one packet.  The device is not persistent (no
TUNSETPERSIST), so the kernel removes it when the descriptor is closed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections import Counter
from dataclasses import dataclass, field

from ipgate.io import netdev

TUNSETIFF = 0x400454CA  # _IOW('T', 202, int)
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
TUN_PATH = "/dev/net/tun"


@dataclass(slots=True)
class TunDevice:
    """An open TUN/TAP device: `read_batch` and `write` move whole packets (TUN) or frames (TAP)."""

    name: str
    fd: int
    tap: bool
    bufsize: int = 65536
    rx_errors: int = 0
    tx_errors: int = 0
    closed: bool = field(default=False)
    errnos: Counter[str] = field(default_factory=Counter)  # why reads and writes failed

    def fileno(self) -> int:
        return self.fd

    def read_batch(self, limit: int) -> tuple[list[bytes], None, None]:
        """Up to `limit` packets that are waiting (an empty list when none is); nothing is known of their
        checksums or offloads (None, as AF_PACKET's `read_batch` says without a virtio_net_hdr)."""
        out: list[bytes] = []
        read, fd, size = os.read, self.fd, self.bufsize
        for _ in range(limit):
            try:
                data = read(fd, size)
            except BlockingIOError:
                break
            except OSError as e:
                self.rx_errors += 1  # EIO while the device is down, EFAULT...: the next read may work
                self.errnos[errno.errorcode.get(e.errno or 0, "?")] += 1
                break
            if not data:
                break
            out.append(data)
        return out, None, None

    def write(self, data: bytes) -> bool:
        """One packet or frame; False (counted) when the kernel refuses it (EIO while the device is down,
        EAGAIN when its queue is full, EINVAL for a malformed frame): the packet is dropped, as a full qdisc would."""
        try:
            os.write(self.fd, data)
        except OSError as e:
            self.tx_errors += 1
            self.errnos[errno.errorcode.get(e.errno or 0, "?")] += 1
            return False
        return True

    def write_many(self, packets: list[bytes]) -> tuple[int, int]:
        """`write` for each packet; (packets, bytes) that went."""
        went = [p for p in packets if self.write(p)]
        return len(went), sum(map(len, went))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


def open_tun(name: str, *, tap: bool = False, mtu: int = 0, up: bool = True) -> TunDevice:
    """Create (or attach to an existing, unused) TUN or TAP device NAME in the current network namespace."""
    raw = name.encode()
    if not raw or len(raw) >= netdev.IFNAMSIZ:
        raise ValueError(f"bad interface name {name!r}")
    fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        flags = (IFF_TAP if tap else IFF_TUN) | IFF_NO_PI
        ifr = struct.pack("16sH22x", raw, flags)
        res = fcntl.ioctl(fd, TUNSETIFF, ifr)
        got = res[:16].rstrip(b"\0").decode()
        if got != name:
            raise OSError(errno.EINVAL, f"kernel named the device {got!r}")
        if mtu:
            netdev.set_mtu(name, mtu)
        if up:
            netdev.set_up(name)
    except BaseException:
        os.close(fd)
        raise
    bufsize = max(mtu or 1500, 1500) + 64 if mtu else 65536
    return TunDevice(name, fd, tap, bufsize=bufsize)
