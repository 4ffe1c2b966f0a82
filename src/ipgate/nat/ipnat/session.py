"""One NAT session: IP Filter 4.1's `nat_t` (netinet/ip_nat.h).

Three endpoints, named as IP Filter names them whatever the rule kind:

* in  (nat_inip/nat_inport):   the address behind the NAT box, real;
* out (nat_outip/nat_outport): how that address is seen outside;
* o   (nat_oip/nat_oport):     the other end, never rewritten.

A `map` session (nat_dir NAT_OUTBOUND) is made by a packet in -> o leaving
the box, an `rdr` session (NAT_INBOUND) by a packet o -> out arriving; either
way packets leaving get their source rewritten in -> out (fr_natout()) and
packets arriving their destination out -> in (fr_natin()).

For ICMP query sessions the ports hold the ICMP ids: inport the id the inside
host uses, outport the id seen outside (IP Filter 5's nat_oicmpid /
nat_nicmpid; 4.1 keeps one id in both fields), oport 0.

`key_in`/`key_out` are the two hash keys (nat_table[0] by inside address,
nat_table[1] by outside address); `hv` are the bucket numbers IP Filter's
NAT_HASH_FN gives the same entry, kept for `ipnat -lv` and the bucket limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipgate.nat.ipnat.rule import IPN_TCPUDP, IPN_TCPUDPICMP, NAT_BIMAP, NAT_MAP, NAT_MAPBLK, NAT_REDIRECT

if TYPE_CHECKING:
    from ipgate.nat.ipnat.natrules import ActiveRule
    from ipgate.nat.ipnat.timeouts import TimeoutQueue

NAT_INBOUND = 0
NAT_OUTBOUND = 1

Key = tuple[int, int, int, int, int]  # proto, local addr, remote addr, local port, remote port

def _long_sum(a: int) -> int:
    """LONG_SUM(): the two 16-bit halves of an address added."""
    return (a & 0xFFFF) + (a >> 16)


def _calc_sumd(s1: int, s2: int) -> int:
    """CALC_SUMD() (ip_nat.h): the ones' complement difference s2 - s1, in u_32."""
    s1 = (s1 & 0xFFFF) + (s1 >> 16)
    s2 = (s2 & 0xFFFF) + (s2 >> 16)
    s1 = (s1 & 0xFFFF) + (s1 >> 16)
    s2 = (s2 & 0xFFFF) + (s2 >> 16)
    if s1 > s2:
        s2 -= 1
    sd = (s2 - s1) & 0xFFFFFFFF
    return (sd & 0xFFFF) + (sd >> 16)


_TYPES = {NAT_MAP: "MAP", NAT_REDIRECT: "RDR", NAT_BIMAP: "BIMAP", NAT_MAPBLK: "MAP-BLOCK"}


class NatSession:
    """nat_t.  Mutable: ages, counters and (fr_natsync) the outside address change."""

    __slots__ = ("inip", "inport", "outip", "outport", "oip", "oport", "p", "flags", "dir", "redir", "rule",
                 "ifnames", "die", "touched", "queue", "tcpstate", "pkts", "bytes", "hv", "mssclamp",
                 "created", "alive", "hostmap", "use")

    def __init__(self, *, inip: int, inport: int, outip: int, outport: int, oip: int, oport: int, p: int,
                 flags: int, dir: int, rule: ActiveRule | None, ifnames: tuple[str, str], created: int) -> None:
        self.inip = inip
        self.inport = inport
        self.outip = outip
        self.outport = outport
        self.oip = oip
        self.oport = oport
        self.p = p                    # nat_p
        self.flags = flags            # nat_flags: the packet's IPN_TCP/UDP/ICMPQUERY when it was made
        self.dir = dir                # nat_dir
        self.redir = rule.redir if rule is not None else 0  # nat_redir
        self.rule = rule              # nat_ptr
        self.ifnames = ifnames        # nat_ifnames[0] (in side), [1] (out side)
        self.die = 0                  # tqe_die, in ticks
        self.touched = created        # tqe_touched (nat_touched)
        self.queue: TimeoutQueue[NatSession] | None = None  # tqe_ifq
        self.tcpstate = [0, 0]        # tqe_state[2]: IPF_TCPS_* of the initiator and of the responder
        self.pkts = [0, 0]            # nat_pkts: [0] in (fr_natin), [1] out (fr_natout)
        self.bytes = [0, 0]
        self.hv = (0, 0)              # nat_hv[2]
        self.mssclamp = rule.mssclamp if rule is not None else 0
        self.created = created        # ticks when made
        self.alive = True
        self.hostmap: object | None = None  # nat_hm
        self.use = 0                  # nat_use (proxies; always 0 here)

    # -- keys of the two hash tables ---------------------------------------------
    @property
    def key_in(self) -> Key:
        """nat_table[0]: what a packet leaving from the inside host carries."""
        return (self.p, self.inip, self.oip, self.inport, self.oport)

    @property
    def key_out(self) -> Key:
        """nat_table[1]: what a packet arriving from the other end carries."""
        return (self.p, self.oip, self.outip, self.oport, self.outport)

    # -- views ---------------------------------------------------------------------
    @property
    def has_ports(self) -> bool:
        return bool(self.flags & IPN_TCPUDP)

    @property
    def kind(self) -> str:
        """getnattype() of lib/printactivenat.c: MAP, RDR, BIMAP, MAP-BLOCK."""
        return _TYPES.get(self.redir, "???")

    @property
    def sumd(self) -> tuple[int, int]:
        """nat_sumd[2]: the transport checksum adjustment nat_new() computed
        (addresses and ports, CALC_SUMD), 0 for sessions without ports."""
        if not self.flags & IPN_TCPUDPICMP:
            return (0, 0)
        if self.dir == NAT_OUTBOUND:  # nat_newmap(): ports only for TCP/UDP
            s1 = _long_sum(self.inip) + (self.inport if self.flags & IPN_TCPUDP else 0)
            s2 = _long_sum(self.outip) + (self.outport if self.flags & IPN_TCPUDP else 0)
        else:  # nat_newrdr()
            s1 = _long_sum(self.outip) + self.outport
            s2 = _long_sum(self.inip) + self.inport
        d = _calc_sumd(s1, s2)
        d = (d & 0xFFFF) + (d >> 16)
        return (d, d)

    @property
    def ipsumd(self) -> int:
        """nat_ipsumd: the IP header checksum adjustment (the address change only)."""
        if self.flags & IPN_TCPUDPICMP and (self.inport != self.outport):
            if self.dir == NAT_OUTBOUND:
                d = _calc_sumd(_long_sum(self.inip), _long_sum(self.outip))
            else:
                d = _calc_sumd(_long_sum(self.outip), _long_sum(self.inip))
            return (d & 0xFFFF) + (d >> 16)
        if not self.flags & IPN_TCPUDPICMP:  # nat_new(): sumd[0] before it was zeroed
            a, b = (self.inip, self.outip) if self.dir == NAT_OUTBOUND else (self.outip, self.inip)
            d = _calc_sumd(_long_sum(a), _long_sum(b))
            return (d & 0xFFFF) + (d >> 16)
        return self.sumd[0]

    def age(self, ticks: int) -> int:
        """Ticks left to live (`ipnat -lv` prints nat_age - now)."""
        return self.die - ticks

    def __repr__(self) -> str:
        def a(x: int) -> str:
            return f"{x >> 24}.{x >> 16 & 255}.{x >> 8 & 255}.{x & 255}"

        return (f"<{self.kind} {a(self.inip)}:{self.inport} <- -> {a(self.outip)}:{self.outport} "
                f"[{a(self.oip)}:{self.oport}] p {self.p}>")
