"""The 2.0/2.2 masquerading table (/proc/net/ip_masquerade) as conntrack holds it today.

A masquerading entry is a source-NATed connection (IPS_SRC_NAT): its source
is the inside host (original tuple), its destination the remote end, its
masquerading port where the reply comes back to (the reply tuple's
destination port; for ICMP the reply's id).  ICMP entries show the type and
code as 2.2's icmp_hv_req() packed them (type << 8 | code) as destination
port.  Expiry is printed as 2.2 printed jiffies at HZ=100: mm:ss.hh.

Three printers read it: `ipchains -M -L` (ipchains 1.3.9 print_masq),
`ipfwadm -M -l` (ipfwadm 2.3.0 print_masq: TCP and UDP only, as 2.0 had no
other) and `netstat -M` (net-tools lib/masq_info.c).  There were no sequence
deltas to show (-v/-e columns print 0): 6.x adjusts sequence numbers in the
helpers only.

`set_timeouts` is IP_FW_MASQ_TIMEOUTS (ipchains -M -S, ipfwadm -M -s): 2.2
had one timeout per class, conntrack has one per state, so
tcp sets nf_conntrack_tcp_timeout_established, tcpfin the states after a FIN
(fin_wait, close_wait, last_ack, time_wait) and udp both UDP timeouts; 0
leaves a class unchanged, as ip_fw_masq_timeouts() did.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipgate.conntrack.conn import IPS_SRC_NAT
from ipgate.conntrack.sysctl import CtSysctl
from ipgate.conntrack.table import ConntrackTable
from ipgate.conntrack.tuple import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP
from ipgate.inet import ntoa
from ipgate.netfilter.names import Resolver

HZ = 100
PROTO_NAMES = {IPPROTO_TCP: "TCP", IPPROTO_UDP: "UDP", IPPROTO_ICMP: "ICMP"}  # masq_proto_name()
FIN_STATES = ("fin_wait", "close_wait", "last_ack", "time_wait")


@dataclass(frozen=True, slots=True)
class MasqEntry:
    proto: int
    src: int
    sport: int
    dst: int
    dport: int
    mport: int
    expires: int  # jiffies (HZ=100)


def entries(table: ConntrackTable, now: float) -> list[MasqEntry]:
    out = []
    for ct in table.entries(now):
        if not ct.status & IPS_SRC_NAT or ct.protonum not in PROTO_NAMES:
            continue
        o, r = ct.orig, ct.reply
        mport = r.sport if o.proto == IPPROTO_ICMP else r.dport
        out.append(MasqEntry(o.proto, o.src, o.sport, o.dst, o.dport, mport, int(ct.expires(now) * HZ)))
    return out


def _expire(jiffies: int) -> tuple[int, int, int]:
    return jiffies // (60 * HZ), (jiffies // HZ) % 60, (jiffies % HZ) * 100 // HZ


def _service(names: Resolver, port: int, proto: int) -> str:
    name = names.port_name(port, "tcp" if proto == IPPROTO_TCP else "udp") if proto != IPPROTO_ICMP else None
    return name or str(port)


def format_legacy(rows: list[MasqEntry], names: Resolver, numeric: bool, deltas: bool, lower: bool) -> str:
    """ipchains (lower=False: the /proc names) and ipfwadm (lower=True) `-M -l`."""
    out = ["IP masquerading entries\n"]
    for i, e in enumerate(rows):
        if i == 0:
            out.append("prot " + f"{'expire':<8} " + (f"{'initseq':>10} delta prevd " if deltas else "")
                       + f"{'source':<20} {'destination':<20} ports\n")
        name = PROTO_NAMES[e.proto]
        m, s, h = _expire(e.expires)
        line = f"{name.lower() if lower else name:<5}{m:02d}:{s:02d}.{h:02d} " + (f"{0:>10} {0:>5} {0:>5} " if deltas
                                                                                 else "")
        addr = ntoa if numeric else names.addr_to_anyname
        line += f"{addr(e.src):<20} {addr(e.dst):<20} "
        if numeric or e.proto == IPPROTO_ICMP:
            line += f"{e.sport} ({e.mport}) -> {e.dport}\n"
        else:
            line += f"{_service(names, e.sport, e.proto)} ({e.mport}) -> {_service(names, e.dport, e.proto)}\n"
        out.append(line)
    return "".join(out)


def _inet_rresolve(names: Resolver, addr: int, numeric: bool) -> str:
    """net-tools INET_rresolve() with netmask 0xffffff00: "*" for 0.0.0.0, .0 addresses are networks."""
    if addr == 0 and not numeric:
        return "*"
    if numeric:
        return ntoa(addr)
    found = names.host_name(addr) if addr & 0xFF else names.net_name(addr)
    return found or ntoa(addr)


def format_netstat(rows: list[MasqEntry], names: Resolver, numeric_host: bool, numeric_port: bool, ext: int) -> str:
    """net-tools ip_masq_info(): nothing at all when the table is empty."""
    if not rows:
        return ""
    out = ["IP masquerading entries\n"]
    if ext > 1:
        out.append("prot   expire    initseq delta prevd source               destination          ports\n")
    else:
        out.append("prot   expire source               destination          ports\n")

    def port(p: int, proto: int) -> str:
        return str(p) if numeric_port else _service(names, p, proto)

    for e in rows:
        m, s, h = _expire(e.expires)
        line = f"{PROTO_NAMES[e.proto].lower():<4}{m:3d}:{s:02d}.{h:02d} " + (f"{0:>10} {0:>5} {0:>5} " if ext > 1
                                                                              else "")
        line += f"{_inet_rresolve(names, e.src, numeric_host):<20} {_inet_rresolve(names, e.dst, numeric_host):<20} "
        line += f"{port(e.sport, e.proto)} -> {port(e.dport, e.proto)} ({port(e.mport, e.proto)})\n"
        out.append(line)
    return "".join(out)


def set_timeouts(sysctl: CtSysctl, tcp: int, tcpfin: int, udp: int) -> None:
    """IP_FW_MASQ_TIMEOUTS in seconds; 0 keeps a class's timeout."""
    if tcp:
        sysctl.set("nf_conntrack_tcp_timeout_established", tcp)
    if tcpfin:
        for state in FIN_STATES:
            sysctl.set(f"nf_conntrack_tcp_timeout_{state}", tcpfin)
    if udp:
        sysctl.set("nf_conntrack_udp_timeout", udp)
        sysctl.set("nf_conntrack_udp_timeout_stream", udp)
