"""Network devices and IPv4 interface addresses (struct net_device, struct in_ifaddr)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ipgate.inet import MASKS, RT_SCOPE_UNIVERSE

IFA_F_SECONDARY = 0x01
IFA_F_NOPREFIXROUTE = 0x200
IFA_F_PERMANENT = 0x80

IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_LOOPBACK = 0x8
IFF_POINTOPOINT = 0x10
IFF_RUNNING = 0x40
IFF_NOARP = 0x80
IFF_MULTICAST = 0x1000

LOOPBACK_IFINDEX = 1


@dataclass(slots=True, eq=False)
class IfAddr:
    """One IPv4 address on a device.  `address` is the peer when one was given.

    Compared by identity: two in_ifaddr are never "equal", and list.index() /
    remove() on a device's 10,000 addresses must not compare every field.
    """

    local: int
    prefixlen: int
    address: int
    broadcast: int = 0
    scope: int = RT_SCOPE_UNIVERSE
    label: str = ""
    flags: int = IFA_F_PERMANENT
    ifindex: int = 0
    has_peer: bool = False

    @property
    def mask(self) -> int:
        return MASKS[self.prefixlen]

    @property
    def secondary(self) -> bool:
        return bool(self.flags & IFA_F_SECONDARY)

    def match(self, addr: int) -> bool:
        """inet_ifa_match(): addr is inside this address's subnet."""
        return not ((addr ^ self.address) & self.mask)

    def same_subnet(self, other: IfAddr) -> bool:
        return self.prefixlen == other.prefixlen and self.match(other.address)


@dataclass(slots=True)
class Device:
    """A network device with its IPv4 configuration (in_device)."""

    ifindex: int
    name: str
    kind: str  # loopback, dummy, veth, tun, tap, ether
    mtu: int = 1500
    up: bool = False
    mac: bytes = b"\x00" * 6
    peer: str = ""  # veth peer name
    # ifa_list in the kernel's order: primaries (by scope) then secondaries.
    addrs: list[IfAddr] = field(default_factory=list)
    qlen: int = 1000
    conf: dict[str, int] = field(default_factory=dict)  # per-device sysctls
    nprim: int = 0  # addrs[:nprim] are the primaries
    # (mask, prefix) -> addresses of that subnet, for O(1) primary/secondary checks
    subnets: dict[tuple[int, int], list[IfAddr]] = field(default_factory=dict)
    # (mask, prefix) -> the local addresses of that subnet, for O(1) duplicate checks
    subnet_locals: dict[tuple[int, int], set[int]] = field(default_factory=dict)

    @property
    def loopback(self) -> bool:
        return self.kind == "loopback"

    @property
    def carrier(self) -> bool:
        return self.up

    @property
    def flags(self) -> int:
        f = IFF_UP if self.up else 0
        if self.loopback:
            f |= IFF_LOOPBACK
        elif self.kind == "tun":
            f |= IFF_POINTOPOINT | IFF_NOARP | IFF_MULTICAST
        elif self.kind == "dummy":
            f |= IFF_BROADCAST | IFF_NOARP  # dummy_setup(): NOARP, no MULTICAST
        else:
            f |= IFF_BROADCAST | IFF_MULTICAST
        if self.up and self.carrier:
            f |= IFF_RUNNING
        return f

    def primaries(self) -> list[IfAddr]:
        return self.addrs[: self.nprim]

    def primary_for(self, prefix: int, mask: int) -> IfAddr | None:
        """inet_ifa_byprefix(): the primary address of a subnet."""
        for a in self.subnets.get((mask, prefix & mask), ()):
            if not a.flags & IFA_F_SECONDARY:
                return a
        return None
