"""Binding the configuration's interfaces to real devices (`--attach`).

    --attach IF=DEV   AF_PACKET on the existing kernel interface DEV
    --attach IF=tun   create the TUN device IF (IPv4 packets, no link layer)
    --attach IF=tap   create the TAP device IF (Ethernet frames)
    (nothing)         the kernel interface IF if it exists (AF_PACKET), else a new TUN named IF

A `Port` is one such binding.  It also says what the configuration's device
becomes: `ether` (ARP, a neighbour cache) on AF_PACKET and TAP, `tun` (no
link layer) on TUN, whatever type the script gave (`type dummy` is the usual
placeholder).  On AF_PACKET the gateway's MAC address is the interface's own:
the gateway owns that NIC.  On TAP it keeps the configuration's: the TAP's own
address belongs to the kernel side of the wire, the host the gateway talks to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipgate.io import netdev
from ipgate.io.afpacket import PacketSocket
from ipgate.io.tun import TunDevice, open_tun

ARPHRD_NONE = 0xFFFE  # a TUN interface seen from AF_PACKET: bare IP packets


@dataclass(frozen=True, slots=True)
class AttachSpec:
    ifname: str  # the configuration's interface
    mode: str  # "packet", "tun" or "tap"
    dev: str  # the kernel interface (same as ifname for tun/tap)


def parse_attach(text: str) -> AttachSpec:
    name, sep, dev = text.partition("=")
    if not sep or not name or not dev:
        raise ValueError(f"--attach {text!r}: expected IF=DEV, IF=tun or IF=tap")
    for n in (name, dev):
        if len(n.encode()) >= netdev.IFNAMSIZ or "/" in n or " " in n:
            raise ValueError(f"--attach {text!r}: bad interface name {n!r}")
    if dev in ("tun", "tap"):
        return AttachSpec(name, dev, name)
    return AttachSpec(name, "packet", dev)


def default_spec(ifname: str) -> AttachSpec:
    return AttachSpec(ifname, "packet", ifname) if netdev.exists(ifname) else AttachSpec(ifname, "tun", ifname)


@dataclass(slots=True, eq=False)
class Port:
    spec: AttachSpec
    io: TunDevice | PacketSocket
    l2: bool  # Ethernet frames (LinkLayer) or bare IPv4 packets
    mac: bytes | None  # the gateway's MAC on this port, when the device dictates it
    created: bool  # we made the device (TUN/TAP): it goes when we close it
    rx: int = 0
    reads: int = 0  # wake-ups that read at least one frame
    tx: int = 0
    tx_dropped: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.ifname

    @property
    def kind(self) -> str:
        return "ether" if self.l2 else "tun"

    def fileno(self) -> int:
        return self.io.fileno()

    def write(self, data: bytes) -> bool:
        """One frame or packet; did it go?"""
        return self._count(self.io.write(data))

    def write_gso(self, head: bytes, packet: bytes, gso: int) -> bool:
        """A TCP super-packet behind link header `head`, for the kernel to segment (AF_PACKET only)."""
        assert isinstance(self.io, PacketSocket)
        return self._count(self.io.write_gso(head, packet, gso))

    def _count(self, went: bool) -> bool:
        if went:
            self.tx += 1
        else:
            self.tx_dropped += 1
        return went

    def write_many(self, frames: list[bytes]) -> int:
        """`write` for a batch of frames; how many bytes went (for the metrics)."""
        sent, nbytes = self.io.write_many(frames)
        self.tx += sent
        self.tx_dropped += len(frames) - sent
        return nbytes

    def close(self) -> None:
        self.io.close()


def open_port(spec: AttachSpec, mtu: int, *, ring: bool = False) -> Port:
    """Open the device of `spec` (OSError, ValueError when it cannot be)."""
    if spec.mode in ("tun", "tap"):
        if netdev.exists(spec.dev):
            raise OSError(f"{spec.dev}: a device of that name exists already (use --attach {spec.ifname}={spec.dev})")
        tun = open_tun(spec.dev, tap=spec.mode == "tap", mtu=mtu)
        return Port(spec, tun, l2=spec.mode == "tap", mac=None, created=True)
    hatype, mac = netdev.hwaddr(spec.dev)
    if hatype not in (netdev.ARPHRD_ETHER, ARPHRD_NONE):
        raise OSError(f"{spec.dev}: not an Ethernet or TUN interface (ARPHRD {hatype})")
    l2 = hatype == netdev.ARPHRD_ETHER
    sock = PacketSocket(spec.dev, ring=ring and l2, vnet=l2)
    try:
        netdev.set_up(spec.dev)
    except OSError:
        sock.close()
        raise
    return Port(spec, sock, l2=l2, mac=mac if l2 else None, created=False)
