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
    same = dev.subnets.get(_key(ifa), [])
    for other in same:
        if other.local == ifa.local:
            raise NetlinkError(errno.EEXIST, "ipv4: Address already assigned")
        if other.scope != ifa.scope:
            raise NetlinkError(errno.EINVAL, "ipv4: Invalid scope value")
    if same:
        ifa.flags |= IFA_F_SECONDARY
        dev.addrs.append(ifa)
    else:
        ifa.flags &= ~IFA_F_SECONDARY
        dev.addrs.insert(_primary_slot(dev, ifa.scope), ifa)
        dev.nprim += 1
    dev.subnets.setdefault(_key(ifa), []).append(ifa)


def _primary_slot(dev: Device, scope: int) -> int:
    """Just after the last primary whose scope is >= `scope` (last_primary)."""
    for i in range(dev.nprim - 1, -1, -1):
        if scope <= dev.addrs[i].scope:
            return i + 1
    return 0


def _unlink(dev: Device, ifa: IfAddr) -> None:
    idx = dev.addrs.index(ifa)
    del dev.addrs[idx]
    if idx < dev.nprim:
        dev.nprim -= 1
    lst = dev.subnets[_key(ifa)]
    lst.remove(ifa)
    if not lst:
        del dev.subnets[_key(ifa)]


def delete_ifa(dev: Device, ifa: IfAddr, promote: bool) -> tuple[list[IfAddr], IfAddr | None, list[IfAddr]]:
    """__inet_del_ifa(): remove `ifa`.

    Returns (secondaries deleted with it, the promoted address or None, the other
    secondaries of the subnet whose routes must be re-added after promotion).
    """
    removed: list[IfAddr] = []
    promoted: IfAddr | None = None
    followers: list[IfAddr] = []
    if not ifa.secondary:
        subnet_secs = [a for a in dev.subnets.get(_key(ifa), []) if a is not ifa and a.secondary]
        subnet_secs.sort(key=dev.addrs.index)
        if promote and subnet_secs:
            promoted, followers = subnet_secs[0], subnet_secs[1:]
        else:
            for sec in subnet_secs:
                _unlink(dev, sec)
                removed.append(sec)
    _unlink(dev, ifa)
    if promoted is not None:
        # Move the promoted address among the primaries.
        dev.addrs.remove(promoted)
        promoted.flags &= ~IFA_F_SECONDARY
        dev.addrs.insert(_primary_slot(dev, promoted.scope), promoted)
        dev.nprim += 1
    return removed, promoted, followers
