"""ARP for IPv4 over Ethernet (RFC 826; net/ipv4/arp.c), sans-IO.

`parse()` checks a received ARP packet as arp_rcv() and the top of
arp_process() do; `process()` makes arp_process()'s decisions for it: answer,
learn into the neighbour cache, or ignore.  `solicit()` builds the requests
the neighbour cache asks for (arp_solicit), `gratuitous()` the announcements
of an address (inetdev_send_gratuitous_arp).

What decides an answer, with the kernel's defaults (all sysctls 0):

* A request is answered when its target is a local address of the box
  (ip_route_input says RTN_LOCAL) - of any interface, primary or secondary
  ("alias"): that is what makes the IP Alias HOWTO work.  arp_ignore (the
  larger of conf/all and conf/DEV) narrows it: 1 only addresses of the
  receiving interface, 2 also in the sender's subnet there, 3 not scope host,
  8 never (arp_ignore() -> inet_confirm_addr()).  arp_filter (all || DEV)
  answers only if our route back to the sender leaves by this interface.
* The requester is learned as STALE with NEIGH_UPDATE_F_OVERRIDE
  (neigh_event_ns).  A request not for us, and any reply, only updates an
  entry that already exists (arp_accept=0 creates none; 1 and 2 are honoured):
  REACHABLE for a unicast reply, else STALE; a different address overrides
  only outside locktime (1 s) or for a gratuitous ARP (arp_is_garp).
* A duplicate-address probe (sender 0.0.0.0) for a local address is
  answered to the prober, with target 0.0.0.0, and learns nothing.
* Requests for multicast or loopback targets, ARP for other hardware or
  protocol types, other opcodes, wrong address lengths: dropped with a reason.

Not mirrored: proxy ARP (proxy_arp, proxy_arp_pvlan, published entries) and
arptables.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ipgate.errors import NetlinkError
from ipgate.inet import (
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RTN_BROADCAST,
    RTN_LOCAL,
    RTN_MULTICAST,
    RTN_UNICAST,
    is_loopback,
    is_multicast,
)
from ipgate.link.device import IFF_NOARP, IFF_POINTOPOINT, Device
from ipgate.link.ether import (
    BROADCAST_MAC,
    ETH_ALEN,
    ETH_P_ARP,
    ETH_P_IP,
    ZERO_MAC,
    PktType,
    build,
    ip_eth_mc_map,
)
from ipgate.link.neigh import NEIGH_UPDATE_F_OVERRIDE, Action, NeighTable, Nud, Solicit
from ipgate.route.lookup import route_input, route_output
from ipgate.route.rules import Flow

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipgate.stack import Stack

ARPHRD_ETHER = 1
ARPHRD_IEEE802 = 6
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
ARP_HDR_LEN = 8
ARP_LEN = ARP_HDR_LEN + 2 * (ETH_ALEN + 4)  # arp_hdr_len() for Ethernet: 28

_ARP = struct.Struct("!HHBBH6sI6sI")


class Arp(NamedTuple):
    hrd: int
    pro: int
    hln: int
    pln: int
    op: int
    sha: bytes
    sip: int
    tha: bytes
    tip: int


class ArpDrop(NamedTuple):
    reason: str


def parse(payload: bytes) -> Arp | ArpDrop:
    """arp_rcv()'s length checks, then arp_process()'s type and opcode checks."""
    if len(payload) < ARP_LEN:
        return ArpDrop("PKT_TOO_SMALL")  # pskb_may_pull(arp_hdr_len(dev))
    a = Arp(*_ARP.unpack_from(payload, 0))
    if a.hln != ETH_ALEN or a.pln != 4:
        return ArpDrop("ARP_BAD_ADDR_LEN")  # NOT_SPECIFIED in the kernel
    if a.hrd not in (ARPHRD_ETHER, ARPHRD_IEEE802) or a.pro != ETH_P_IP:
        return ArpDrop("ARP_BAD_HRD_PRO")
    if a.op not in (ARPOP_REQUEST, ARPOP_REPLY):
        return ArpDrop("ARP_BAD_OP")
    return a


def build_arp(op: int, sha: bytes, sip: int, tha: bytes, tip: int) -> bytes:
    """The 28-byte ARP packet (arp_create: ar_hrd is the device type, ARPHRD_ETHER)."""
    return _ARP.pack(ARPHRD_ETHER, ETH_P_IP, ETH_ALEN, 4, op, sha, sip, tha, tip)


def arp_create(op: int, dest_ip: int, dev_mac: bytes, src_ip: int, dest_hw: bytes | None,
               target_hw: bytes | None) -> bytes:
    """arp_create(): an Ethernet frame; no dest_hw means broadcast, no target_hw means zeros."""
    payload = build_arp(op, dev_mac, src_ip, target_hw or ZERO_MAC, dest_ip)
    return build(dest_hw or BROADCAST_MAC, dev_mac, ETH_P_ARP, payload)


# -- per-device settings (include/linux/inetdevice.h) ------------------------
def conf(stack: Stack, dev: Device, key: str) -> int:
    """net.ipv4.conf.DEV.key: a device's own value, else conf/default's (devinet_copy_dflt_conf)."""
    v = stack.sysctl.get(f"net.ipv4.conf.{dev.name}.{key}")
    if v is None:
        v = stack.sysctl.get(f"net.ipv4.conf.default.{key}", 0)
    return v


def maxconf(stack: Stack, dev: Device, key: str) -> int:
    """IN_DEV_MAXCONF(): the larger of conf/all and the device's."""
    return max(stack.sysctl.get(f"net.ipv4.conf.all.{key}", 0), conf(stack, dev, key))


def orconf(stack: Stack, dev: Device, key: str) -> bool:
    """IN_DEV_ORCONF(): conf/all or the device's."""
    return bool(stack.sysctl.get(f"net.ipv4.conf.all.{key}", 0) or conf(stack, dev, key))


def arp_notify(stack: Stack, dev: Device) -> bool:
    """IN_DEV_ARP_NOTIFY().  ipgate's default is on (issue 5 asks for gratuitous ARP); an explicit 0 turns it off."""
    keys = ("net.ipv4.conf.all.arp_notify", f"net.ipv4.conf.{dev.name}.arp_notify",
            "net.ipv4.conf.default.arp_notify")
    if not any(k in stack.sysctl for k in keys):
        return True
    return bool(maxconf(stack, dev, "arp_notify"))


# -- address checks (net/ipv4/devinet.c) --------------------------------------
def _confirm_addr_indev(stack: Stack, dev: Device, dst: int, local: int, scope: int) -> int:
    """confirm_addr_indev()."""
    localnet_scope = RT_SCOPE_LINK if stack.route_localnet(dev) else RT_SCOPE_HOST
    addr = 0
    same = False
    for ifa in dev.addrs:
        min_scope = min(ifa.scope, localnet_scope)
        if not addr and (local == ifa.local or not local) and min_scope <= scope:
            addr = ifa.local
            if same:
                break
        if not same:
            same = (not local or ifa.match(local)) and (not dst or ifa.match(dst))
            if same and addr:
                if local or not dst:
                    break
                if ifa.match(addr):  # is the selected addr in dst's subnet?
                    break
                if min_scope <= scope:  # no: can we use this one instead?
                    addr = ifa.local
                    break
                same = False  # look for a larger subnet of dst
    return addr if same else 0


def confirm_addr(stack: Stack, dev: Device | None, dst: int, local: int, scope: int) -> int:
    """inet_confirm_addr(): a local address on `dev` (any device if None) matching dst/local/scope, or 0."""
    if dev is not None:
        return _confirm_addr_indev(stack, dev, dst, local, scope)
    for d in sorted(stack.by_index.values(), key=lambda x: x.ifindex):
        addr = _confirm_addr_indev(stack, d, dst, local, scope)
        if addr:
            return addr
    return 0


def addr_onlink(dev: Device, a: int, b: int) -> bool:
    """inet_addr_onlink(): a (and b, unless 0) inside one subnet of dev."""
    return any(ifa.match(a) and (not b or ifa.match(b)) for ifa in dev.addrs)


# -- the policies ------------------------------------------------------------
def arp_ignore(stack: Stack, dev: Device, sip: int, tip: int) -> bool:
    """arp_ignore(): True when the request must not be answered."""
    mode = maxconf(stack, dev, "arp_ignore")
    scope = RT_SCOPE_HOST
    on: Device | None = dev
    if mode == 1:  # only addresses of the receiving interface
        sip = 0
    elif mode == 2:  # ... in the sender's subnet there
        pass
    elif mode == 3:  # not for scope host addresses
        sip = 0
        scope = RT_SCOPE_LINK
        on = None
    elif mode == 8:
        return True
    else:  # 0, reserved 4-7 and anything else: answer (tip was validated by routing)
        return False
    return not confirm_addr(stack, on, sip, tip, scope)


def arp_filter(stack: Stack, dev: Device, sip: int, tip: int) -> bool:
    """arp_filter(): True unless our route to the sender (from tip) leaves by dev."""
    try:
        rt = route_output(stack, Flow(daddr=sip, saddr=tip))
    except NetlinkError:
        return True
    return rt.dev is not dev


def arp_accept(stack: Stack, dev: Device, sip: int) -> bool:
    """arp_accept(): may unsolicited ARP create an entry?"""
    mode = maxconf(stack, dev, "arp_accept")
    if mode == 1:
        return True
    if mode == 2:  # only for senders in a subnet of the receiving interface
        return bool(confirm_addr(stack, dev, sip, 0, RT_SCOPE_LINK))
    return False


def is_garp(stack: Stack, op: int, sip: int, tip: int, sha: bytes, tha: bytes) -> tuple[bool, int]:
    """arp_is_garp(): (gratuitous?, inet_addr_type of sip or -1 if not looked up)."""
    garp = tip == sip
    if garp and op == ARPOP_REPLY:
        garp = tha == sha  # gratuitous replies also carry the sender's address as target
    addr_type = -1
    if garp:
        addr_type = stack.addr_type(sip)
        if addr_type != RTN_UNICAST:
            garp = False
    return garp, addr_type


def constructor(stack: Stack, dev: Device, key: int) -> bytes | None:
    """arp_constructor(): the fixed address of a NOARP entry, or None when ARP must resolve it."""
    rtype = stack.addr_type(key)  # inet_addr_type_dev_table(): the local table, any device
    if rtype == RTN_MULTICAST:
        return ip_eth_mc_map(key)
    flags = dev.flags
    if flags & IFF_NOARP or dev.loopback:
        return dev.mac
    if rtype == RTN_BROADCAST or flags & IFF_POINTOPOINT:
        return BROADCAST_MAC
    return None


# -- output ------------------------------------------------------------------
def solicit(stack: Stack, dev: Device, s: Solicit) -> bytes | None:
    """arp_solicit(): the request the neighbour cache asked for, with arp_announce's choice of sender."""
    if dev.flags & IFF_NOARP:
        return None
    mode = maxconf(stack, dev, "arp_announce")
    saddr = 0
    if mode == 1:  # the packet's source only if the target can know it (same subnet)
        if s.saddr is not None and stack.addr_type(s.saddr) == RTN_LOCAL and addr_onlink(dev, s.target, s.saddr):
            saddr = s.saddr
    elif mode != 2:  # 0 (and values above 2): any local source the packet had
        if s.saddr is not None and stack.addr_type(s.saddr) == RTN_LOCAL:
            saddr = s.saddr
    if not saddr:
        saddr = stack.select_addr(dev, s.target, RT_SCOPE_LINK)
    return arp_create(ARPOP_REQUEST, s.target, dev.mac, saddr, s.dst_mac, None)


def gratuitous(dev: Device, addr: int) -> bytes | None:
    """inetdev_send_gratuitous_arp(): a broadcast request from and for `addr` (arp_send)."""
    if dev.flags & IFF_NOARP:
        return None
    return arp_create(ARPOP_REQUEST, addr, dev.mac, addr, None, None)


# -- input -------------------------------------------------------------------
class ArpOutcome(NamedTuple):
    frames: list[bytes]  # ARP replies to send now
    actions: list[Action]  # what the neighbour cache released (queued packets, now resolved)
    drop: str | None  # why the packet was ignored, if it was


def process(stack: Stack, table: NeighTable, dev: Device, a: Arp, pkt_type: PktType, now: float) -> ArpOutcome:
    """arp_process() for a parsed ARP packet received on `dev`."""
    frames: list[bytes] = []
    actions: list[Action] = []
    sip, tip, sha = a.sip, a.tip, a.sha
    if is_multicast(tip) or (is_loopback(tip) and not stack.route_localnet(dev)):
        return ArpOutcome(frames, actions, "ARP_BAD_TARGET")
    if sip == tip and orconf(stack, dev, "drop_gratuitous_arp"):
        return ArpOutcome(frames, actions, "ARP_GRATUITOUS_DROPPED")
    if sip == 0:
        # IPv4 duplicate address detection (RFC 2131, RFC 5227): answer the prober, learn nothing
        if a.op == ARPOP_REQUEST and stack.addr_type(tip) == RTN_LOCAL and not arp_ignore(stack, dev, sip, tip):
            frames.append(arp_create(ARPOP_REPLY, sip, dev.mac, tip, sha, sha))
        return ArpOutcome(frames, actions, None)
    if a.op == ARPOP_REQUEST:
        try:
            rt = route_input(stack, Flow(daddr=tip, saddr=sip, iif=dev.ifindex), dev)
        except NetlinkError:
            rt = None  # martian source or destination, no route: only the learning below
        if rt is not None and rt.type == RTN_LOCAL:
            dont_send = arp_ignore(stack, dev, sip, tip)
            if not dont_send and orconf(stack, dev, "arp_filter"):
                dont_send = arp_filter(stack, dev, sip, tip)
            if dont_send:
                return ArpOutcome(frames, actions, "ARP_IGNORED")
            # neigh_event_ns(): learn the requester (created if need be) as STALE, overriding
            n = table.lookup(dev.name, sip) or table.create(dev.name, sip, now, constructor(stack, dev, sip))
            if n is None:
                return ArpOutcome(frames, actions, "NEIGH_CREATEFAIL")  # no entry, no reply
            actions += table.update(n, sha, Nud.STALE, NEIGH_UPDATE_F_OVERRIDE, now)
            frames.append(arp_create(ARPOP_REPLY, sip, dev.mac, tip, sha, sha))
            return ArpOutcome(frames, actions, None)
        # (proxy ARP would answer here for forwarded destinations: not mirrored)
    # Update our ARP tables: only entries that exist, unless arp_accept allows creating one.
    n = table.lookup(dev.name, sip)
    accept = arp_accept(stack, dev, sip)
    garp, addr_type = False, -1
    if n is not None or accept:
        garp, addr_type = is_garp(stack, a.op, sip, tip, sha, a.tha)
    if accept and n is None and (garp or (a.op == ARPOP_REPLY and (
            addr_type == RTN_UNICAST or (addr_type < 0 and stack.addr_type(sip) == RTN_UNICAST)))):
        n = table.create(dev.name, sip, now, constructor(stack, dev, sip))
    if n is None:
        return ArpOutcome(frames, actions, "ARP_UNSOLICITED" if a.op == ARPOP_REPLY else None)
    # "If several different ARP replies follow back-to-back, use the FIRST one."
    override = now > n.updated + table.parms(dev.name).locktime or garp
    # Broadcast replies and requests do not assert reachability.
    state = Nud.REACHABLE if a.op == ARPOP_REPLY and pkt_type == PktType.HOST else Nud.STALE
    actions += table.update(n, sha, state, NEIGH_UPDATE_F_OVERRIDE if override else 0, now)
    return ArpOutcome(frames, actions, None)
