"""`ifconfig` as net-tools 2.10 (Debian 12) runs it: ioctls against the core.

Each keyword issues the ioctl that net-tools' ifconfig.c main() issues, and
each ioctl does what the kernel does with it:

* SIOCSIFADDR, SIOCSIFNETMASK, SIOCSIFBRDADDR, SIOCSIFDSTADDR, and
  SIOCSIFFLAGS on a name with a colon, are devinet_ioctl() (net/ipv4/devinet.c):
  the name (``eth0`` or ``eth0:0``) selects the first address of the device
  *labelled* with it, and a new label creates one.  A change is
  inet_del_ifa() then inet_insert_ifa(), so re-addressing a primary takes its
  secondaries with it, exactly as on Linux.  SIOCSIFFLAGS without IFF_UP on an
  alias deletes that address; nothing else about an alias's flags exists.
* SIOCGIFFLAGS, SIOCSIFFLAGS on a device, SIOCSIFMTU, SIOCSIFHWADDR,
  SIOCSIFTXQLEN and SIOCSIFNAME are dev_ioctl() (net/core/dev_ioctl.c), which
  drops the ``:N`` suffix: ``ifconfig eth0:0 mtu 1400`` changes eth0.
* Setting an address also sets IFF_UP|IFF_RUNNING on the name given (net-tools
  does that), which brings a device up but does nothing for an alias.

Listing follows lib/interface.c: one block per device (/proc/net/dev) plus one
per address label (SIOCGIFCONF), in add_interface()'s nstrcmp() order; a label
block shows the first address with that label and the device's flags, MAC and
MTU, and no counters (net-tools has statistics for devices only).

What ipgate does differently, on purpose:

* IPv4 only: no ``inet6`` lines, and inet6 addresses, ``tunnel`` and the
  address families other than inet are refused.
* Counters are always zero: the core does not count packets.
* No resolver: an address is what inet_aton() accepts, or ``default``
  (0.0.0.0); any other name fails like an unknown host ("NAME: Unknown host").
  The real tool's text depends on the resolver (e.g. "Host name lookup
  failure" when DNS is unreachable).
* Device flags other than IFF_UP (NOARP, PROMISC, ALLMULTI, MULTICAST,
  NOTRAILERS, DYNAMIC, AUTOMEDIA) are accepted but not stored, since the core
  keeps none: ``-arp`` is accepted and NOARP is never shown.
* SIOCSIFMAP (mem_start, io_addr, irq, media), keepalive and outfill fail with
  "Operation not supported", as they do on virtual devices.
* ``hw`` sets Ethernet addresses only; other hardware types fail as the
  kernel fails them for an Ethernet device (EINVAL).
"""

from __future__ import annotations

import errno
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ipgate.commands.base import Exit, Output
from ipgate.errors import NetlinkError
from ipgate.inet import MASKS, RT_SCOPE_HOST, RT_SCOPE_UNIVERSE, is_loopback, ntoa
from ipgate.link import devinet
from ipgate.link.device import (
    IFA_F_SECONDARY,
    IFF_BROADCAST,
    IFF_LOOPBACK,
    IFF_MULTICAST,
    IFF_NOARP,
    IFF_POINTOPOINT,
    IFF_RUNNING,
    IFF_UP,
    Device,
    IfAddr,
)
from ipgate.stack import Stack

IFF_DEBUG = 0x4
IFF_NOTRAILERS = 0x20
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200
IFF_MASTER = 0x400
IFF_SLAVE = 0x800
IFF_AUTOMEDIA = 0x4000
IFF_DYNAMIC = 0x8000

_T = TypeVar("_T")

IFNAMSIZ = 16
E_OPTERR = 3  # net-support.h: what usage() exits with after a bad argument

# ife_print_long()'s order of flag names.
_FLAG_NAMES = (
    (IFF_UP, "UP"), (IFF_BROADCAST, "BROADCAST"), (IFF_DEBUG, "DEBUG"), (IFF_LOOPBACK, "LOOPBACK"),
    (IFF_POINTOPOINT, "POINTOPOINT"), (IFF_NOTRAILERS, "NOTRAILERS"), (IFF_RUNNING, "RUNNING"),
    (IFF_NOARP, "NOARP"), (IFF_PROMISC, "PROMISC"), (IFF_ALLMULTI, "ALLMULTI"), (IFF_SLAVE, "SLAVE"),
    (IFF_MASTER, "MASTER"), (IFF_MULTICAST, "MULTICAST"), (IFF_DYNAMIC, "DYNAMIC"),
)
# ife_print_short()'s letters.
_FLAG_LETTERS = (
    (IFF_ALLMULTI, "A"), (IFF_BROADCAST, "B"), (IFF_DEBUG, "D"), (IFF_LOOPBACK, "L"), (IFF_MULTICAST, "M"),
    (IFF_DYNAMIC, "d"), (IFF_PROMISC, "P"), (IFF_NOTRAILERS, "N"), (IFF_NOARP, "O"), (IFF_POINTOPOINT, "P"),
    (IFF_SLAVE, "s"), (IFF_MASTER, "m"), (IFF_RUNNING, "R"), (IFF_UP, "U"),
)

_USAGE_HEAD = """\
Usage:
  ifconfig [-a] [-v] [-s] <interface> [[<AF>] <address>]
  [add <address>[/<prefixlen>]]
  [del <address>[/<prefixlen>]]
  [[-]broadcast [<address>]]  [[-]pointopoint [<address>]]
  [netmask <address>]  [dstaddr <address>]  [tunnel <address>]
  [outfill <NN>] [keepalive <NN>]
  [hw <HW> <address>]  [mtu <NN>]
  [[-]trailers]  [[-]arp]  [[-]allmulti]
  [multicast]  [[-]promisc]
  [mem_start <NN>]  [io_addr <NN>]  [irq <NN>]  [media <type>]
  [txqueuelen <NN>]
  [name <newname>]
  [[-]dynamic]
  [up|down] ...

  <HW>=Hardware Type.
  List of possible hardware types:
"""
# print_hwlist()/print_aflist() always write to stderr (note the trailing blanks).
_HW_LIST = (
    "    loop (Local Loopback) slip (Serial Line IP) cslip (VJ Serial Line IP) \n"
    "    slip6 (6-bit Serial Line IP) cslip6 (VJ 6-bit Serial Line IP) adaptive (Adaptive Serial Line IP) \n"
    "    ash (Ash) ether (Ethernet) ax25 (AMPR AX.25) \n"
    "    netrom (AMPR NET/ROM) rose (AMPR ROSE) tunnel (IPIP Tunnel) \n"
    "    ppp (Point-to-Point Protocol) hdlc ((Cisco)-HDLC) lapb (LAPB) \n"
    "    arcnet (ARCnet) dlci (Frame Relay DLCI) frad (Frame Relay Access Device) \n"
    "    sit (IPv6-in-IPv4) fddi (Fiber Distributed Data Interface) hippi (HIPPI) \n"
    "    irda (IrLAP) ec (Econet) x25 (generic X.25) \n"
    "    eui64 (Generic EUI-64) \n"
)
_AF_HEAD = "  <AF>=Address family. Default: inet\n  List of possible address families:\n"
_AF_LIST = (
    "    unix (UNIX Domain) inet (DARPA Internet) inet6 (IPv6) \n"
    "    ax25 (AMPR AX.25) netrom (AMPR NET/ROM) rose (AMPR ROSE) \n"
    "    ipx (Novell IPX) ddp (Appletalk DDP) ec (Econet) \n"
    "    ash (Ash) x25 (CCITT X.25) \n"
)
_OTHER_AFS = ("unix", "inet6", "ax25", "netrom", "rose", "ipx", "ddp", "ec", "ash", "x25")
_HW_TYPES = ("loop", "slip", "cslip", "slip6", "cslip6", "adaptive", "ash", "ether", "ax25", "netrom",
             "rose", "tunnel", "ppp", "hdlc", "lapb", "arcnet", "dlci", "frad", "sit", "fddi", "hippi",
             "irda", "ec", "x25", "eui64")
# if_port_text[] of lib/interface.c: the media names SIOCSIFMAP would take.
_MEDIA = ("unknown", "10base2", "bnc", "coax", "10baset", "utp", "tpe", "aui", "thick", "db15",
          "100baset", "100basetx", "100basefx")
_HELP_HINT = "ifconfig: `--help' gives usage information.\n"


def _usage(o: Output, to_stdout: bool = False) -> None:
    """usage(): the text on stdout for --help, all of it on stderr after an error."""
    if to_stdout:
        o.write(_USAGE_HEAD + _AF_HEAD)
        o.err.append(_HW_LIST + _AF_LIST)
    else:
        o.err.append(_USAGE_HEAD + _HW_LIST + _AF_HEAD + _AF_LIST)


def _usage_exit(o: Output) -> Exit:
    _usage(o)
    return Exit(E_OPTERR)


# -- address parsing (glibc inet_aton, net-tools lib/inet.c) ---------------

class UnknownHost(Exception):
    """INET_resolve() failed: printed by herror() as ``NAME: Unknown host``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name}: Unknown host")
        self.name = name


def inet_aton(text: str) -> int | None:
    """glibc inet_aton(): 1 to 4 parts in C notation (0x.., 0.., decimal), or None."""
    quad = text.split(".")
    if len(quad) == 4 and all(q.isdigit() and q.isascii() and len(q) <= 3 and (q[0] != "0" or q == "0")
                              for q in quad):
        octets = [int(q) for q in quad]  # plain dotted decimal: the usual case
        if max(octets) > 255:
            return None
        return (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]
    parts: list[int] = []
    i, n = 0, len(text)
    val = 0
    while True:
        if i >= n or not text[i].isdigit():
            return None
        base, val = 10, 0
        start = i
        if text[i] == "0":
            i += 1
            if i < n and text[i] in "xX":
                base = 16
                i += 1
                start = i
            else:
                base = 8
        while i < n:
            c = text[i]
            if c in "0123456789" and not (base == 8 and c in "89"):
                val = val * base + int(c)
            elif base == 8 and c in "89":
                return None
            elif base == 16 and c in "abcdefABCDEF":
                val = val * 16 + int(c, 16)
            else:
                break
            if val > 0xFFFFFFFF:
                return None
            i += 1
        if base == 16 and i == start:  # "0x" needs a hex digit
            return None
        if i < n and text[i] == ".":
            if len(parts) > 2 or val > 0xFF:
                return None
            parts.append(val)
            i += 1
            continue
        break
    # Trailing characters are allowed only after white space.
    if i < n and not text[i].isspace():
        return None
    if val > (0xFFFFFFFF >> (8 * len(parts))):
        return None
    for k, p in enumerate(parts):
        val |= p << (24 - 8 * k)
    return val


def resolve(name: str) -> tuple[int, bool]:
    """INET_resolve(): (address, is_network).  ipgate has no hosts/networks/DNS."""
    if name == "default":
        return 0, True
    a = inet_aton(name)
    if a is None:
        raise UnknownHost(name)
    return a, False


def c_atoi(text: str) -> int:
    """C atoi(): optional blanks and sign, then digits; 0 when there are none."""
    s = text.lstrip(" \t\n\r\f\v")
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    digits = ""
    for c in s:
        if not c.isdigit():
            break
        digits += c
    v = sign * int(digits) if digits else 0
    # Wrap to a 32-bit int as the ioctl field would hold it.
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def c_strtoul(text: str) -> int:
    """C strtoul(text, NULL, 0) as an unsigned long, 0 when nothing parses."""
    s = text.lstrip(" \t\n\r\f\v")
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    base = 10
    if s[:2].lower() == "0x" and len(s) > 2 and s[2] in "0123456789abcdefABCDEF":
        base, s = 16, s[2:]
    elif s[:1] == "0":
        base = 8
    digits = ""
    for c in s:
        if c.isdigit() and int(c) < base or (base == 16 and c in "abcdefABCDEF"):
            digits += c
        else:
            break
    v = int(digits, base) if digits else 0
    v = min(v, 0xFFFFFFFFFFFFFFFF)
    return (-v) & 0xFFFFFFFFFFFFFFFF if neg else v


def getmask(host: str) -> tuple[str, int | None]:
    """INET_getnetmask(): split ``ADDR/PREFIX``; the mask as C computes it (shift mod 32)."""
    addr, slash, rest = host.partition("/")
    if not slash:
        return host, None
    if not rest or not _full_strtoul(rest):
        raise ValueError(rest)
    prefix = c_strtoul(rest) & 0xFFFFFFFF
    # htonl(~(0xffffffffU >> prefix)): x86 masks the shift count to 5 bits.
    return addr, ~(0xFFFFFFFF >> (prefix & 31)) & 0xFFFFFFFF


def _full_strtoul(text: str) -> bool:
    """strtoul() consumes the whole string (no trailing junk)."""
    s = text.lstrip(" \t\n\r\f\v")
    if s[:1] in ("+", "-"):
        s = s[1:]
    if s[:2].lower() == "0x" and len(s) > 2:
        return all(c in "0123456789abcdefABCDEF" for c in s[2:])
    if s[:1] == "0":
        return all(c in "01234567" for c in s)
    return bool(s) and all(c.isdigit() for c in s)


def in_ether(text: str) -> bytes | None:
    """lib/ether.c in_ether(): hex octets, ``:`` optional, at most 6 (the rest ignored)."""
    out: list[int] = []
    i, n = 0, len(text)
    hexd = "0123456789abcdefABCDEF"
    while i < n and len(out) < 6:
        c = text[i]
        i += 1
        if c not in hexd:
            return None
        val = int(c, 16) << 4
        c2 = text[i] if i < n else ""
        if c2 and c2 in hexd:
            val |= int(c2, 16)
        elif c2 in (":", ""):
            val >>= 4
        else:
            return None
        if c2:
            i += 1
        out.append(val)
        if i < n and text[i] == ":":
            i += 1
    return bytes(out + [0] * (6 - len(out)))


# -- interface list (lib/interface.c, lib/nstrcmp.c) -----------------------

def _cutalias(name: str) -> tuple[str, str | None]:
    """cutalias(): split off a numeric ``:NNN`` suffix."""
    head, colon, tail = name.rpartition(":")
    if colon and tail.isdigit() and tail.isascii():
        return head, tail
    return name, None


def nstrcmp_key(name: str) -> tuple[bytes, int, bytes, int, bytes]:
    """A sort key with the order of net-tools' nstrcmp() (the 2004 rewrite for aliases).

    nstrcmp() compares the part before the trailing digits, then the trailing
    number, then the names without alias, then the alias numbers (none is -1),
    then the alias texts: a total order, so a key reproduces it.
    """
    base, alias = _cutalias(name)
    k = len(base)
    while k > 0 and base[k - 1] in "0123456789":
        k -= 1
    num = int(base[k:]) if k < len(base) else 0
    enc = base.encode(errors="surrogateescape")
    return (enc[: len(base[:k].encode(errors="surrogateescape"))], num, enc,
            int(alias) if alias is not None else -1,
            alias.encode() if alias is not None else b"")


def nstrcmp(a: str, b: str) -> int:
    ka, kb = nstrcmp_key(a), nstrcmp_key(b)
    return (ka > kb) - (ka < kb)


def interface_names(stack: Stack) -> list[str]:
    """if_readlist(): /proc/net/dev names, then SIOCGIFCONF labels, in add_interface()'s order.

    add_interface() keeps its list sorted with nstrcmp() and drops duplicates.
    """
    names = {d.name[: IFNAMSIZ - 1] for d in stack.by_index.values()}
    for d in stack.by_index.values():  # inet_gifconf(): every address of every device
        for ifa in d.addrs:
            names.add(ifa.label[: IFNAMSIZ - 1])
    return sorted(names, key=nstrcmp_key)


# -- finding an address by label (devinet_ioctl's label match) --------------

@dataclass(slots=True)
class _LabelIndex:
    """(ifindex, label) -> the device's addresses with that label, in list order."""

    stamp: tuple[int, tuple[tuple[int, str], ...]]
    by_label: dict[tuple[int, str], list[IfAddr]]


_INDEX: weakref.WeakKeyDictionary[Stack, _LabelIndex] = weakref.WeakKeyDictionary()


def _stamp(stack: Stack) -> tuple[int, tuple[tuple[int, str], ...]]:
    # Every address change bumps addr_genid; labels otherwise change only on rename.
    return stack.addr_genid, tuple((d.ifindex, d.name) for d in stack.by_index.values())


def _index(stack: Stack) -> _LabelIndex:
    st = _stamp(stack)
    idx = _INDEX.get(stack)
    if idx is None or idx.stamp != st:
        by: dict[tuple[int, str], list[IfAddr]] = {}
        for d in stack.by_index.values():
            for a in d.addrs:
                by.setdefault((d.ifindex, a.label), []).append(a)
        idx = _INDEX[stack] = _LabelIndex(st, by)
    return idx


def ifa_by_label(stack: Stack, d: Device, label: str) -> IfAddr | None:
    """The first address of d labelled `label` (devinet_ioctl()'s ifap loop)."""
    lst = _index(stack).by_label.get((d.ifindex, label))
    return lst[0] if lst else None


def _note_added(stack: Stack, before: tuple[int, tuple[tuple[int, str], ...]], ifa: IfAddr) -> None:
    idx = _INDEX.get(stack)
    if idx is None or idx.stamp != before:
        return
    lst = idx.by_label.setdefault((ifa.ifindex, ifa.label), [])
    if lst:  # a duplicate label: its place in list order is not known here
        del _INDEX[stack]
        return
    lst.append(ifa)
    idx.stamp = _stamp(stack)


def _note_removed(stack: Stack, before: tuple[int, tuple[tuple[int, str], ...]], gone: list[IfAddr]) -> None:
    idx = _INDEX.get(stack)
    if idx is None or idx.stamp != before:
        return
    for a in gone:
        lst = idx.by_label.get((a.ifindex, a.label))
        if lst is not None and a in lst:
            lst.remove(a)
            if not lst:
                del idx.by_label[(a.ifindex, a.label)]
    idx.stamp = _stamp(stack)


def _note_flags(stack: Stack, before: tuple[int, tuple[tuple[int, str], ...]]) -> None:
    idx = _INDEX.get(stack)
    if idx is not None and idx.stamp == before:
        idx.stamp = _stamp(stack)


def add_ifa(stack: Stack, d: Device, ifa: IfAddr) -> None:
    """inet_insert_ifa() through the core, keeping the label index current."""
    before = _stamp(stack)
    stack.addr_add(d, ifa)
    _note_added(stack, before, ifa)


def del_ifa(stack: Stack, d: Device, ifa: IfAddr) -> None:
    """inet_del_ifa(): a primary takes its subnet's secondaries unless they are promoted."""
    before = _stamp(stack)
    gone = [ifa]
    if not ifa.secondary:
        secs = devinet.subnet_secondaries(d, ifa)
        if secs and stack.promote_secondaries(d):
            _INDEX.pop(stack, None)  # promotion reorders the list
            stack.addr_del(d, ifa)
            return
        gone += secs
    stack.addr_del(d, ifa)
    _note_removed(stack, before, gone)


def set_up(stack: Stack, d: Device, up: bool) -> None:
    before = _stamp(stack)
    stack.link_set_up(d, up)
    _note_flags(stack, before)


# -- the ioctls -------------------------------------------------------------

class IoctlError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(os.strerror(code))
        self.errno = code


def dev_flags(d: Device) -> int:
    """SIOCGIFFLAGS: dev_get_flags() as ifconfig sees it."""
    f = d.flags
    if d.kind == "dummy":  # dummy_setup(): IFF_NOARP, and no IFF_MULTICAST
        f = (f | IFF_NOARP) & ~IFF_MULTICAST
    return f


def _base(stack: Stack, name: str) -> Device:
    """dev_ioctl()/devinet_ioctl(): the device named before the colon."""
    d = stack.devices.get(name.split(":", 1)[0])
    if d is None:
        raise IoctlError(errno.ENODEV)
    return d


def inet_abc_len(addr: int) -> int:
    """inet_abc_len(): the classful prefix length, -1 for class D."""
    if addr == 0 or addr == 0xFFFFFFFF:
        return 0
    if addr & 0x80000000 == 0:
        return 8
    if addr & 0xC0000000 == 0x80000000:
        return 16
    if addr & 0xE0000000 == 0xC0000000:
        return 24
    if addr & 0xF0000000 == 0xF0000000:
        return 32
    return -1


def _mask_len(mask: int) -> int:
    return 32 - ((~mask) & 0xFFFFFFFF).bit_length()


def _bad_mask(mask: int, addr: int) -> bool:
    """bad_mask(): host bits of addr set, or a non-contiguous mask."""
    inv = (~mask) & 0xFFFFFFFF
    if addr & inv:
        return True
    return bool(inv & (inv + 1))


class Ioctls:
    """The kernel side of the ifconfig ioctls, on a Stack."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def get_flags(self, name: str) -> int:
        return dev_flags(_base(self.stack, name))

    def set_flags(self, name: str, flags: int) -> None:
        """SIOCSIFFLAGS: devinet_ioctl() for an alias, dev_change_flags() for a device."""
        d = _base(self.stack, name)
        if ":" in name:
            ifa = ifa_by_label(self.stack, d, name)
            if ifa is None:
                raise IoctlError(errno.EADDRNOTAVAIL)
            if not flags & IFF_UP:
                del_ifa(self.stack, d, ifa)
            return
        # Only IFF_UP is modelled (see the module docstring).
        up = bool(flags & IFF_UP)
        if up != d.up:
            set_up(self.stack, d, up)

    def _ifa(self, name: str) -> tuple[Device, IfAddr]:
        d = _base(self.stack, name)
        ifa = ifa_by_label(self.stack, d, name)
        if ifa is None:
            raise IoctlError(errno.EADDRNOTAVAIL)
        return d, ifa

    def _reinsert(self, d: Device, old: IfAddr, new: IfAddr, check: bool) -> None:
        del_ifa(self.stack, d, old)
        if not new.local:  # __inet_insert_ifa(): an address 0.0.0.0 is just freed
            return
        try:
            add_ifa(self.stack, d, new)
        except NetlinkError as e:
            # SIOCSIFADDR returns inet_set_ifa()'s error; the others ignore it
            # (the address is gone either way).
            if check:
                raise IoctlError(e.errno) from None

    def set_addr(self, name: str, addr: int) -> None:
        """SIOCSIFADDR."""
        d = _base(self.stack, name)
        plen = inet_abc_len(addr)
        if plen < 0:
            raise IoctlError(errno.EINVAL)
        old = ifa_by_label(self.stack, d, name)
        if old is not None and old.local == addr:
            return
        flags = 0x80 if old is None else old.flags & ~IFA_F_SECONDARY
        label = name[: IFNAMSIZ - 1] if ":" in name else d.name
        dflags = dev_flags(d)
        brd = 0
        if dflags & IFF_POINTOPOINT:
            plen = 32
        elif dflags & IFF_BROADCAST and plen < 31:
            brd = addr | (~MASKS[plen] & 0xFFFFFFFF)
        scope = RT_SCOPE_HOST if is_loopback(addr) else RT_SCOPE_UNIVERSE  # inet_set_ifa()
        new = IfAddr(local=addr, prefixlen=plen, address=addr, broadcast=brd, scope=scope,
                     label=label, flags=flags)
        if old is None:
            if addr:
                try:
                    add_ifa(self.stack, d, new)
                except NetlinkError as e:
                    raise IoctlError(e.errno) from None
            return
        self._reinsert(d, old, new, check=True)

    def set_netmask(self, name: str, mask: int) -> None:
        """SIOCSIFNETMASK: the broadcast follows the mask only if it was the derived one."""
        d, ifa = self._ifa(name)
        if _bad_mask(mask, 0):
            raise IoctlError(errno.EINVAL)
        if ifa.mask == mask:
            return
        plen = _mask_len(mask)
        brd = ifa.broadcast
        if (dev_flags(d) & IFF_BROADCAST and plen < 31
                and ifa.broadcast == (ifa.local | (~ifa.mask & 0xFFFFFFFF))):
            brd = ifa.local | (~mask & 0xFFFFFFFF)
        self._reinsert(d, ifa, _copy(ifa, prefixlen=plen, broadcast=brd), check=False)

    def set_broadcast(self, name: str, brd: int) -> None:
        """SIOCSIFBRDADDR."""
        d, ifa = self._ifa(name)
        if ifa.broadcast != brd:
            self._reinsert(d, ifa, _copy(ifa, broadcast=brd), check=False)

    def set_dstaddr(self, name: str, dst: int) -> None:
        """SIOCSIFDSTADDR: the peer address (IFA_ADDRESS)."""
        d, ifa = self._ifa(name)
        if ifa.address == dst:
            return
        if inet_abc_len(dst) < 0:
            raise IoctlError(errno.EINVAL)
        self._reinsert(d, ifa, _copy(ifa, address=dst), check=False)

    def set_mtu(self, name: str, mtu: int) -> None:
        """SIOCSIFMTU: dev_set_mtu() against the driver's min/max."""
        d = _base(self.stack, name)
        lo, hi = _mtu_range(d)
        if mtu < 0 or mtu < lo or (hi and mtu > hi):
            raise IoctlError(errno.EINVAL)
        d.mtu = mtu

    def set_txqlen(self, name: str, qlen: int) -> None:
        """SIOCSIFTXQLEN: ifr_qlen is an int; negative is EINVAL."""
        d = _base(self.stack, name)
        q = qlen & 0xFFFFFFFF
        if q & 0x80000000:
            raise IoctlError(errno.EINVAL)
        d.qlen = q

    def set_hwaddr(self, name: str, mac: bytes | None) -> None:
        """SIOCSIFHWADDR: only Ethernet-like devices take an Ethernet address."""
        d = _base(self.stack, name)
        if mac is None or d.kind in ("loopback", "tun"):
            raise IoctlError(errno.EINVAL)
        if mac[0] & 1 or not any(mac):  # eth_prepare_mac_addr_change(): is_valid_ether_addr()
            raise IoctlError(errno.EADDRNOTAVAIL)
        d.mac = mac

    def set_name(self, name: str, new: str) -> None:
        """SIOCSIFNAME."""
        d = _base(self.stack, name)
        try:
            self.stack.link_rename(d, new[: IFNAMSIZ - 1])
        except NetlinkError as e:
            raise IoctlError(e.errno) from None


def _no_map(name: str, value: None) -> None:
    """SIOCSIFMAP, SIOCSKEEPALIVE, SIOCSOUTFILL: virtual devices have no such operation."""
    raise IoctlError(errno.EOPNOTSUPP)


def _mtu_range(d: Device) -> tuple[int, int]:
    """(min_mtu, max_mtu) of the driver; 0 means no maximum."""
    if d.kind in ("loopback", "dummy"):
        return 0, 0
    return 68, 65535


def _copy(ifa: IfAddr, **changes: int) -> IfAddr:
    new = IfAddr(local=ifa.local, prefixlen=ifa.prefixlen, address=ifa.address, broadcast=ifa.broadcast,
                 scope=ifa.scope, label=ifa.label, flags=ifa.flags & ~IFA_F_SECONDARY, has_peer=ifa.has_peer)
    for k, v in changes.items():
        setattr(new, k, v)
    new.has_peer = new.address != new.local
    return new


# -- printing (lib/interface.c ife_print_long / ife_print_short) -----------

def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _flags_text(f: int) -> str:
    s = f"flags={f}<"
    if f == 0:
        s += ">"
    s += "".join(f"{name}," for bit, name in _FLAG_NAMES if f & bit)
    # The last character becomes '>' if it is a comma, else it is dropped.
    return s[:-1] + ">" if s.endswith(",") else s[:-1]


def _hw_text(d: Device) -> str:
    if d.loopback:
        return f"        loop  txqueuelen {d.qlen}  (Local Loopback)\n"
    if d.kind == "tun":
        return f"        unspec {'-'.join(['00'] * 16)}  txqueuelen {d.qlen}  (UNSPEC)\n"
    return f"        ether {_mac(d.mac)}  txqueuelen {d.qlen}  (Ethernet)\n"


_STATS_LONG = (
    "        RX packets 0  bytes 0 (0.0 B)\n"
    "        RX errors 0  dropped 0  overruns 0  frame 0\n"
    "        TX packets 0  bytes 0 (0.0 B)\n"
    "        TX errors 0  dropped 0 overruns 0  carrier 0  collisions 0\n"
)


def block_long(name: str, d: Device, ifa: IfAddr | None, stats: bool) -> str:
    """One interface's block, blank line included."""
    f = dev_flags(d)
    s = f"{name}: {_flags_text(f)}  mtu {d.mtu}\n"
    if ifa is not None:
        s += f"        inet {ntoa(ifa.local)}  netmask {ntoa(ifa.mask)}"
        if f & IFF_BROADCAST:
            s += f"  broadcast {ntoa(ifa.broadcast)}"
        if f & IFF_POINTOPOINT:
            s += f"  destination {ntoa(ifa.address)}"
        s += "\n"
    s += _hw_text(d)
    if stats:
        s += _STATS_LONG
    return s + "\n"


SHORT_HEADER = "Iface      MTU    RX-OK RX-ERR RX-DRP RX-OVR    TX-OK TX-ERR TX-DRP TX-OVR Flg\n"


def block_short(name: str, d: Device, stats: bool) -> str:
    f = dev_flags(d)
    s = f"{name[:15]:<15} {d.mtu:5d} "
    if stats:
        s += f"{0:8d} {0:6d} {0:6d} {0:<6d} {0:8d} {0:6d} {0:6d} {0:6d} "
    else:
        s += f"{'     - no statistics available -':<56}"
    if f == 0:
        s += "[NO FLAGS]"
    s += "".join(letter for bit, letter in _FLAG_LETTERS if f & bit)
    return s + "\n"


def _fetch(stack: Stack, name: str) -> tuple[Device, IfAddr | None] | None:
    """if_fetch(): SIOCGIFFLAGS (base device) then SIOCGIFADDR (label)."""
    d = stack.devices.get(name.split(":", 1)[0])
    if d is None:
        return None
    return d, ifa_by_label(stack, d, name)


def _fetch_error(o: Output, name: str) -> None:
    o.error(f"{name}: error fetching interface information: Device not found")


def print_all(stack: Stack, o: Output, show_all: bool, short: bool) -> int:
    """for_all_interfaces(do_if_print): stops at the first name that cannot be fetched."""
    out: list[str] = [SHORT_HEADER] if short else []
    status = 0
    for name in interface_names(stack):
        got = _fetch(stack, name)
        if got is None:
            _fetch_error(o, name)
            status = 1
            break
        d, ifa = got
        if not (dev_flags(d) & IFF_UP or show_all):
            continue
        stats = name in stack.devices
        out.append(block_short(name, d, stats) if short else block_long(name, d, ifa, stats))
    o.write("".join(out))
    return status


def print_one(stack: Stack, o: Output, name: str, short: bool) -> int:
    if short:
        o.write(SHORT_HEADER)
    got = _fetch(stack, name)
    if got is None:
        _fetch_error(o, name)
        return 1
    d, ifa = got
    stats = name in stack.devices
    o.write(block_short(name, d, stats) if short else block_long(name, d, ifa, stats))
    return 0


# -- the command -------------------------------------------------------------

def ifconfig(stack: Stack, args: list[str], o: Output) -> int:
    """net-tools 2.10 ifconfig: list, or apply each keyword in order (main())."""
    show_all = short = False
    i = 0
    while i < len(args) and args[i].startswith("-"):
        a = args[i]
        if a == "-a":
            show_all = True
        elif a == "-s":
            short = True
        elif a == "-v":
            pass
        elif a in ("-V", "-version", "--version"):
            o.write("net-tools 2.10\n")
            return 0
        elif a in ("-?", "-h", "-help", "--help"):
            _usage(o, to_stdout=True)
            return 0
        else:
            o.err.append(f"ifconfig: option `{a}' not recognised.\n" + _HELP_HINT)
            return 1
        i += 1
    rest = args[i:]
    if not rest:
        return print_all(stack, o, show_all, short)
    name = rest[0][: IFNAMSIZ - 1]
    if len(rest) == 1:
        return print_one(stack, o, name, short)
    return _Setter(stack, o, name).run(rest[1:])


class _Setter:
    """The keyword loop of ifconfig.c main(); `goterr` becomes the exit status."""

    def __init__(self, stack: Stack, o: Output, name: str) -> None:
        self.stack = stack
        self.o = o
        self.name = name
        self.k = Ioctls(stack)
        self.goterr = 0

    # set_flag()/clr_flag()/test_flag(): SIOCGIFFLAGS then SIOCSIFFLAGS.
    def set_flag(self, flag: int, name: str | None = None) -> None:
        self._change_flag(flag, True, name or self.name)

    def clr_flag(self, flag: int) -> None:
        self._change_flag(flag, False, self.name)

    def _change_flag(self, flag: int, on: bool, name: str) -> None:
        try:
            cur = self.k.get_flags(name)
        except IoctlError as e:
            self.o.error(f"{name}: ERROR while getting interface flags: {os.strerror(e.errno)}")
            self.goterr |= -1
            return
        try:
            self.k.set_flags(name, cur | flag if on else cur & ~flag)
        except IoctlError as e:
            self.o.error(f"SIOCSIFFLAGS: {os.strerror(e.errno)}")
            self.goterr |= -1

    def _still_set(self, flag: int, what: str) -> None:
        """test_flag() after clearing a flag the kernel does not let go of."""
        try:
            cur = self.k.get_flags(self.name)
        except IoctlError as e:
            self.o.error(f"{self.name}: ERROR while testing interface flags: {os.strerror(e.errno)}")
            return
        if cur & flag:
            self.o.error(f"Warning: Interface {self.name} still in {what} mode.")

    def ioctl(self, label: str, fn: Callable[[str, _T], None], value: _T) -> None:
        """One ioctl on the name given; perror()-style report and goterr = 1 on failure."""
        try:
            fn(self.name, value)
        except IoctlError as e:
            self.o.error(f"{label}: {os.strerror(e.errno)}")
            self.goterr = 1

    def resolve_or_report(self, host: str) -> int | None:
        try:
            return resolve(host)[0]
        except UnknownHost as e:
            self.o.error(str(e))
            self.goterr = 1
            return None

    def run(self, spp: list[str]) -> int:
        i = 0
        if spp[0] == "inet":
            i = 1
        elif spp[0] in _OTHER_AFS:
            raise Exit(1, f"ifconfig: address family `{spp[0]}' is not modelled by ipgate (IPv4 only)")
        didnetmask = False
        neednetmask: int | None = None
        n = len(spp)

        def arg(j: int) -> str:
            if j >= n:
                raise _usage_exit(self.o)
            return spp[j]

        simple_flags = {
            "arp": (IFF_NOARP, False), "-arp": (IFF_NOARP, True),
            "trailers": (IFF_NOTRAILERS, False), "-trailers": (IFF_NOTRAILERS, True),
            "promisc": (IFF_PROMISC, True), "-promisc": (IFF_PROMISC, False),
            "multicast": (IFF_MULTICAST, True), "-multicast": (IFF_MULTICAST, False),
            "allmulti": (IFF_ALLMULTI, True), "-allmulti": (IFF_ALLMULTI, False),
            "dynamic": (IFF_DYNAMIC, True), "-dynamic": (IFF_DYNAMIC, False),
        }
        while i < n:
            w = spp[i]
            if w in simple_flags:
                bit, on = simple_flags[w]
                if on:
                    self.set_flag(bit)
                else:
                    self.clr_flag(bit)
                i += 1
            elif w in ("media", "port"):
                v = arg(i + 1)
                i += 1
                if v.lower() == "auto":
                    # net-tools sets IFF_AUTOMEDIA and does not step past "auto".
                    self.set_flag(IFF_AUTOMEDIA)
                    continue
                i += 1
                if v.lower() not in _MEDIA and not v.isdigit():
                    self.o.error("Unknown media type.")
                    self.goterr = 1
                else:
                    self.ioctl("port: SIOCSIFMAP", _no_map, None)
            elif w == "up":
                self.set_flag(IFF_UP | IFF_RUNNING)
                i += 1
            elif w == "down":
                self.clr_flag(IFF_UP)
                i += 1
            elif w == "mtu":
                mtu = c_atoi(arg(i + 1))
                self.ioctl("SIOCSIFMTU", self.k.set_mtu, mtu)
                i += 2
            elif w in ("keepalive", "outfill"):
                arg(i + 1)
                self.ioctl("SIOCSKEEPALIVE" if w == "keepalive" else "SIOCSOUTFILL", _no_map, None)
                i += 2
            elif w == "-broadcast":
                self.clr_flag(IFF_BROADCAST)
                self._still_set(IFF_BROADCAST, "BROADCAST")
                i += 1
            elif w == "broadcast":
                i += 1
                if i < n:
                    brd = self.resolve_or_report(spp[i])
                    i += 1
                    if brd is None:
                        continue
                    self.ioctl("SIOCSIFBRDADDR", self.k.set_broadcast, brd)
                self.set_flag(IFF_BROADCAST)
            elif w == "dstaddr":
                dst = self.resolve_or_report(arg(i + 1))
                i += 2
                if dst is not None:
                    self.ioctl("SIOCSIFDSTADDR", self.k.set_dstaddr, dst)
            elif w == "netmask":
                host = arg(i + 1)
                if didnetmask:
                    raise _usage_exit(self.o)
                i += 2
                mask = self.resolve_or_report(host)
                if mask is None:
                    continue
                didnetmask = True
                self.ioctl("SIOCSIFNETMASK", self.k.set_netmask, mask)
            elif w == "txqueuelen":
                q = c_strtoul(arg(i + 1))
                self.ioctl("SIOCSIFTXQLEN", self.k.set_txqlen, q)
                i += 2
            elif w in ("mem_start", "io_addr", "irq"):
                arg(i + 1)
                self.ioctl(f"{w}: SIOCSIFMAP", _no_map, None)
                i += 2
            elif w == "-pointopoint":
                self.clr_flag(IFF_POINTOPOINT)
                i += 1
                self._still_set(IFF_POINTOPOINT, "POINTOPOINT")
            elif w == "pointopoint":
                if i + 1 < n:
                    i += 1
                    try:
                        dst_a, isnet = resolve(spp[i])
                    except UnknownHost as e:
                        self.o.error(str(e))
                        self.goterr = 1
                        i += 1
                        continue
                    if isnet:  # ap->input() != 0 is an error here, h_errno unset
                        self.o.error(f"{spp[i]}: Resolver Error 0 (no error)")
                        self.goterr = 1
                        i += 1
                        continue
                    self.ioctl("SIOCSIFDSTADDR", self.k.set_dstaddr, dst_a)
                self.set_flag(IFF_POINTOPOINT)
                i += 1
            elif w == "hw":
                i = self._hw(spp, i)
            elif w == "name":
                new = arg(i + 1)
                self.ioctl("SIOCSIFNAME", self.k.set_name, new)
                i += 2
            elif w in ("add", "del"):
                host = arg(i + 1)
                i += 2
                self._add_del(host, w == "add")
            elif w == "tunnel":
                raise Exit(1, "ifconfig: `tunnel' (IPv6) is not modelled by ipgate")
            else:
                i, mask_given = self._address(spp, i, didnetmask)
                if mask_given is not None:
                    neednetmask = mask_given
        if neednetmask is not None:
            m = neednetmask
            self.ioctl("SIOCSIFNETMASK", self.k.set_netmask, m)
        return self.goterr & 0xFF

    def _address(self, spp: list[str], i: int, didnetmask: bool) -> tuple[int, int | None]:
        """A bare word is the address: getmask(), SIOCSIFADDR, then IFF_UP|IFF_RUNNING."""
        host = spp[i]
        if ":" in host and "/" in host or host.count(":") >= 2:
            raise Exit(1, f"ifconfig: {host}: IPv6 addresses are not modelled by ipgate")
        try:
            host, mask = getmask(host)
        except ValueError:
            raise _usage_exit(self.o) from None
        if mask is not None and didnetmask:
            raise _usage_exit(self.o)
        try:
            addr, _ = resolve(host)
        except UnknownHost as e:
            raise Exit(1, f"{e}\n{_HELP_HINT.rstrip()}") from None
        self.ioctl("SIOCSIFADDR", self.k.set_addr, addr)
        # No IFF_UP for a deleted alias ("eth0:0-"), says net-tools.
        if not (":" in self.name and self.name.endswith("-")):
            self.set_flag(IFF_UP | IFF_RUNNING)
        return i + 1, mask

    def _hw(self, spp: list[str], i: int) -> int:
        n = len(spp)
        if i + 1 >= n or spp[i + 1] not in _HW_TYPES:
            raise _usage_exit(self.o)
        hwtype = spp[i + 1]
        if hwtype == "loop":
            self.o.error(f"hw address type `{hwtype}' has no handler to set address. failed.")
            self.goterr = 1
            return i + 3
        if i + 2 >= n:
            raise _usage_exit(self.o)
        text = spp[i + 2]
        mac: bytes | None = None
        if hwtype == "ether":
            mac = in_ether(text)
            if mac is None:
                self.o.error(f"{text}: invalid ether address.")
                self.goterr = 1
                return i + 3
        # Other types parse, then the kernel refuses their family (EINVAL).
        self.ioctl("SIOCSIFHWADDR", self.k.set_hwaddr, mac)
        return i + 3

    def _add_del(self, host: str, add: bool) -> None:
        """``add``/``del``: set_ifstate() over the ``NAME:N`` aliases, numbered below 256."""
        if ":" in host:
            raise Exit(1, f"ifconfig: {host}: IPv6 addresses are not modelled by ipgate")
        try:
            ip, _ = resolve(host)
        except UnknownHost as e:
            self.o.error(str(e))
            self.goterr = 1
            return
        parent = self.name
        pd = self.stack.devices.get(parent.split(":", 1)[0])
        if pd is None:
            # get_nmbc_parent() and then set_ifstate()'s scan both fail to fetch it;
            # the SIOCSIFADDR that follows fails silently.
            _fetch_error(self.o, parent)
            _fetch_error(self.o, parent)
            return
        pifa = ifa_by_label(self.stack, pd, parent)
        nm = pifa.mask if pifa is not None else 0
        bc = pifa.broadcast if pifa is not None else 0
        used = [False] * 256
        for name in interface_names(self.stack):
            got = _fetch(self.stack, name)
            if got is None or not name.startswith(parent):
                continue
            colon = name.find(":")
            if colon < 0 or "-" in name[colon + 1:]:
                continue
            num = c_atoi(name[colon + 1:])
            if not 0 <= num <= 255:
                raise Exit(134)  # net-tools abort()s
            used[num] = True
            ifa = got[1]
            if (ifa.address if ifa is not None else 0) == ip:
                if add:
                    self.set_flag(IFF_UP | IFF_RUNNING, name)
                else:
                    self._change_flag(IFF_UP, False, name)
                return
        free = next((k for k in range(256) if not used[k]), None)
        if free is None:
            return
        alias = f"{parent}:{free}"[: IFNAMSIZ - 1]
        # Failures here are silent: set_ifstate()'s result is ignored.
        try:
            self.k.set_addr(alias, ip)
            self.k.set_netmask(alias, nm)
            self.k.set_broadcast(alias, bc)
        except IoctlError:
            return
        self.set_flag(IFF_BROADCAST, alias)
