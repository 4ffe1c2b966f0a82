"""Primary and secondary addresses, as __inet_insert_ifa()/__inet_del_ifa() keep them.

Theory of operation.  An address whose subnet (same mask, address inside)
already has an address on the device becomes *secondary*; the first one is
*primary*.  Primaries are kept before secondaries, ordered by scope.  Deleting a
primary deletes its secondaries too, unless `promote_secondaries` is set: then
the first secondary of the subnet becomes primary and the rest follow it.

These functions only edit the device's list; the caller (`ipgate.stack`) keeps
the FIB in step with the events they return, as the inetaddr notifier does.
"""

from __future__ import annotations

import errno

from ipgate.errors import NetlinkError
from ipgate.link.device import IFA_F_SECONDARY, Device, IfAddr


def _key(ifa: IfAddr) -> tuple[int, int]:
    return ifa.mask, ifa.address & ifa.mask


def insert_ifa(dev: Device, ifa: IfAddr) -> None:
    """__inet_insert_ifa(): mark secondary if needed and link it in place."""
    key = _key(ifa)
    same = dev.subnets.get(key, [])
    if same:
        # The kernel walks the subnet and stops at the first address with the
        # same local (EEXIST) or another scope (EINVAL).  All addresses of a
        # subnet share one scope (this check keeps it so), so the first one
        # decides the scope question; a set answers the local one.
        first = same[0]
        if first.local == ifa.local:
            raise NetlinkError(errno.EEXIST, "ipv4: Address already assigned")
        if first.scope != ifa.scope:
            raise NetlinkError(errno.EINVAL, "ipv4: Invalid scope value")
        if ifa.local in dev.subnet_locals[key]:
            raise NetlinkError(errno.EEXIST, "ipv4: Address already assigned")
        ifa.flags |= IFA_F_SECONDARY
        dev.addrs.append(ifa)
    else:
        ifa.flags &= ~IFA_F_SECONDARY
        dev.addrs.insert(_primary_slot(dev, ifa.scope), ifa)
        dev.nprim += 1
    dev.subnets.setdefault(key, []).append(ifa)
    dev.subnet_locals.setdefault(key, set()).add(ifa.local)


def _primary_slot(dev: Device, scope: int) -> int:
    """Just after the last primary whose scope is >= `scope` (last_primary)."""
    for i in range(dev.nprim - 1, -1, -1):
        if scope <= dev.addrs[i].scope:
            return i + 1
    return 0


def unlink(dev: Device, ifa: IfAddr) -> None:
    """Take `ifa` off the device's list."""
    idx = dev.addrs.index(ifa)
    del dev.addrs[idx]
    if idx < dev.nprim:
        dev.nprim -= 1
    key = _key(ifa)
    lst = dev.subnets[key]
    lst.remove(ifa)
    dev.subnet_locals[key].discard(ifa.local)
    if not lst:
        del dev.subnets[key]
        del dev.subnet_locals[key]


def subnet_secondaries(dev: Device, prim: IfAddr) -> list[IfAddr]:
    """The secondaries of a primary's subnet, in list order."""
    secs = [a for a in dev.subnets.get(_key(prim), []) if a is not prim and a.secondary]
    secs.sort(key=dev.addrs.index)
    return secs


def promote(dev: Device, ifa: IfAddr) -> None:
    """Make a secondary primary and move it among the primaries (__inet_del_ifa)."""
    dev.addrs.remove(ifa)
    ifa.flags &= ~IFA_F_SECONDARY
    dev.addrs.insert(_primary_slot(dev, ifa.scope), ifa)
    dev.nprim += 1
