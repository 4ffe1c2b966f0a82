"""A route request (struct fib_config), as `ip route` builds it and the FIB checks it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ipgate.inet import RT_SCOPE_NOWHERE, RT_TABLE_MAIN, RTN_UNICAST


@dataclass(slots=True)
class NhConfig:
    gw: int = 0
    oif: int = 0
    weight: int = 1
    onlink: bool = False


@dataclass(slots=True)
class FibConfig:
    dst: int = 0
    dst_len: int = 0
    tos: int = 0
    table: int = RT_TABLE_MAIN
    protocol: int = 0
    scope: int = RT_SCOPE_NOWHERE
    type: int = RTN_UNICAST
    priority: int = 0
    prefsrc: int = 0
    gw: int = 0
    oif: int = 0
    onlink: bool = False
    multipath: list[NhConfig] = field(default_factory=list)
    metrics: dict[str, int] = field(default_factory=dict)
    # netlink flags of the request
    create: bool = True
    excl: bool = True
    replace: bool = False
    append: bool = False
