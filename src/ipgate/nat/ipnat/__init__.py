"""IP Filter's NAT (ipnat.conf, ipnat(8)): the second NAT personality.

`rule.NatRule` mirrors IP Filter 4.1's `struct ipnat`; `parse` reads
ipnat.conf, `printer` prints rules and sessions as `ipnat -l`/`-nv` do,
`state.IpnatState` holds the loaded rules and the session-table hook.
"""

from ipgate.nat.ipnat.rule import (
    FR_EQUAL,
    FR_GREATERT,
    FR_GREATERTE,
    FR_INCRANGE,
    FR_INRANGE,
    FR_LESST,
    FR_LESSTE,
    FR_NEQUAL,
    FR_NONE,
    FR_OUTRANGE,
    IPN_AUTOPORTMAP,
    IPN_FILTER,
    IPN_FIXEDDPORT,
    IPN_FRAG,
    IPN_ICMPERR,
    IPN_ICMPQUERY,
    IPN_IPRANGE,
    IPN_NOTDST,
    IPN_NOTSRC,
    IPN_ROUNDR,
    IPN_SEQUENTIAL,
    IPN_SPLIT,
    IPN_STICKY,
    IPN_TCP,
    IPN_TCPUDP,
    IPN_UDP,
    MAPBLK_MINPORT,
    NAT_BIMAP,
    NAT_MAP,
    NAT_MAPBLK,
    NAT_REDIRECT,
    USABLE_PORTS,
    FilterObject,
    NatRule,
    PortCmp,
)

__all__ = [
    "FR_EQUAL", "FR_GREATERT", "FR_GREATERTE", "FR_INCRANGE", "FR_INRANGE", "FR_LESST", "FR_LESSTE", "FR_NEQUAL",
    "FR_NONE", "FR_OUTRANGE", "IPN_AUTOPORTMAP", "IPN_FILTER", "IPN_FIXEDDPORT", "IPN_FRAG", "IPN_ICMPERR",
    "IPN_ICMPQUERY",
    "IPN_IPRANGE", "IPN_NOTDST", "IPN_NOTSRC", "IPN_ROUNDR", "IPN_SEQUENTIAL", "IPN_SPLIT", "IPN_STICKY", "IPN_TCP",
    "IPN_TCPUDP", "IPN_UDP", "MAPBLK_MINPORT", "NAT_BIMAP", "NAT_MAP", "NAT_MAPBLK", "NAT_REDIRECT", "USABLE_PORTS",
    "FilterObject", "NatRule", "PortCmp",
]
