"""The gateway's link layer: Ethernet frames in and out, ARP, the neighbour cache (sans-IO).

`LinkLayer` sits between the I/O loop and the packet engine:

    frame_in(dev, frame, now)  -> (IPv4 packet for Engine.receive or None, frames to send)
    ip_out(dev, nexthop, pkt, now) -> frames to send (the packet framed, or an ARP request while it waits)
    handle_timer(now)          -> (frames: ARP retransmissions and probes, packets for Engine.link_failure)
    address_added / device_up  -> gratuitous ARP

It mirrors the kernel path for an Ethernet device: eth_type_trans -> ip_rcv or
arp_rcv on input; ip_finish_output2 -> neigh_output on output (ether.py,
arp.py, neigh.py hold the pieces).  Devices of kind tun and loopback have no
link layer and are refused here (their packets bypass this object).  Nothing
here reads a clock or touches a socket: every time is the caller's `now`, and
randomness (reachable_time) comes from the injected `random.Random`.

What the caller (the I/O loop) owes it: `device_down(dev)` when a device goes
down, away or is renamed (arp_ifdown: its entries go, permanent ones too),
`device_up` / `address_added` after the stack changed (their frames are the
gratuitous ARP to send), `neigh_add` / `neigh_del` for `ip neigh`, and a call
to `handle_timer` at `next_timer()`.

Frames dropped on input are counted in `drops` by reason (never raised).
Gratuitous ARP: the kernel sends it only on NETDEV_UP with arp_notify=1 and
never on `ip addr add`; ipgate, as issue 5 asks, announces every added
address, and every address when a device comes up unless arp_notify was
explicitly set to 0.

Neighbour parameters come from the stack's sysctls as the kernel names them
(net.ipv4.neigh.DEV.* falling back to net.ipv4.neigh.default.*, then the
kernel's defaults): mcast_solicit, ucast_solicit, app_solicit,
mcast_resolicit, retrans_time(_ms), base_reachable_time(_ms),
delay_first_probe_time, gc_stale_time, locktime, unres_qlen(_bytes), and
net.ipv4.neigh.default.gc_thresh1/2/3.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from ipgate.inet import ntoa
from ipgate.link import arp, ether
from ipgate.link.device import IFF_NOARP, Device
from ipgate.link.neigh import (
    NEIGH_UPDATE_F_ADMIN,
    NEIGH_UPDATE_F_OVERRIDE,
    NUD_CONNECTED,
    NUD_VALID,
    Action,
    Failed,
    NeighParms,
    NeighTable,
    Nud,
    Solicit,
    TableParms,
    Xmit,
    unres_qlen_bytes,
)
from ipgate.packet.checksum import Buffer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipgate.stack import Stack

Frames = list[tuple[str, bytes]]

NO_LINK_LAYER_KINDS = ("tun", "loopback")

# sysctl name -> (NeighParms field, scale to seconds; 0 for a plain count).  In each group the
# later name wins, so an _ms value beats its USER_HZ/seconds twin (both are views of one value).
_NEIGH_SYSCTLS: dict[str, tuple[str, float]] = {
    "mcast_solicit": ("mcast_probes", 0),
    "ucast_solicit": ("ucast_probes", 0),
    "app_solicit": ("app_probes", 0),
    "mcast_resolicit": ("mcast_reprobes", 0),
    "retrans_time": ("retrans_time", 0.01),  # USER_HZ
    "retrans_time_ms": ("retrans_time", 0.001),
    "base_reachable_time": ("base_reachable_time", 1.0),
    "base_reachable_time_ms": ("base_reachable_time", 0.001),
    "delay_first_probe_time": ("delay_probe_time", 1.0),
    "gc_stale_time": ("gc_staletime", 1.0),
    "locktime": ("locktime", 0.01),  # USER_HZ
    "unres_qlen": ("queue_len_bytes", -1),  # packets: converted
    "unres_qlen_bytes": ("queue_len_bytes", 0),
}


def neigh_parms(sysctl: Mapping[str, int], dev: str) -> NeighParms:
    """The neighbour parameters of `dev` ("" for the table's default) from sysctl values."""
    values: dict[str, float | int] = {}
    for scope in ("default", dev) if dev else ("default",):
        for name, (fld, scale) in _NEIGH_SYSCTLS.items():
            v = sysctl.get(f"net.ipv4.neigh.{scope}.{name}")
            if v is None:
                continue
            if scale < 0:
                values[fld] = unres_qlen_bytes(v)
            elif scale:
                values[fld] = v * scale
            else:
                values[fld] = v
    return NeighParms(**values)  # type: ignore[arg-type]


def table_parms(sysctl: Mapping[str, int]) -> TableParms:
    d = TableParms()
    return TableParms(
        gc_thresh1=sysctl.get("net.ipv4.neigh.default.gc_thresh1", d.gc_thresh1),
        gc_thresh2=sysctl.get("net.ipv4.neigh.default.gc_thresh2", d.gc_thresh2),
        gc_thresh3=sysctl.get("net.ipv4.neigh.default.gc_thresh3", d.gc_thresh3),
    )


class NeighEntry(NamedTuple):
    """One line of `ip neigh show`."""

    dst: int
    dev: str
    lladdr: bytes | None  # known only in valid states (neigh_fill_info sends NDA_LLADDR then)
    state: Nud


class LinkLayer:
    def __init__(self, stack: Stack, *, rng: random.Random | None = None) -> None:
        self.stack = stack
        self.rng = rng if rng is not None else random.Random()
        self.table = NeighTable(self._parms, self._tparms, self.rng)
        self.drops: Counter[str] = Counter()
        self._parms_cache: dict[str, NeighParms] = {}
        self._tparms_cache = TableParms()
        self._parms_gen = -1
        self._failed: list[bytes] = []  # failed packets not yet handed out

    def rebind(self, stack: Stack) -> None:
        """Carry on over a new stack (a reloaded configuration): the neighbour cache is kept."""
        self.stack = stack
        self._parms_gen = -1

    # -- parameters (cached until the stack changes: sysctl writes bump stack.gen) --------
    def _sync_parms(self) -> None:
        gen = self.stack.gen.value
        if gen != self._parms_gen:
            self._parms_gen = gen
            self._parms_cache.clear()
            self._tparms_cache = table_parms(self.stack.sysctl)

    def _parms(self, dev: str) -> NeighParms:
        self._sync_parms()
        p = self._parms_cache.get(dev)
        if p is None:
            p = self._parms_cache[dev] = neigh_parms(self.stack.sysctl, dev)
        return p

    def _tparms(self) -> TableParms:
        self._sync_parms()
        return self._tparms_cache

    def _device(self, dev: str) -> Device | None:
        """An up Ethernet device, or None (the reason counted)."""
        d = self.stack.devices.get(dev)
        if d is None:
            self.drops["NO_DEVICE"] += 1
            return None
        if d.kind in NO_LINK_LAYER_KINDS:
            self.drops["NO_LINK_LAYER"] += 1
            return None
        if not d.up:
            self.drops["DEV_DOWN"] += 1
            return None
        return d

    # -- input --------------------------------------------------------------
    def ip_payloads(self, dev: str, frames: Sequence[Buffer]) -> list[Buffer | None]:
        """The common case of `frame_in`, for a batch: the IPv4 packet of each untagged frame for our address
        or a group address on an up Ethernet device; None for anything else (which `frame_in` then handles)."""
        d = self.stack.devices.get(dev)
        if d is None or not d.up or d.kind in NO_LINK_LAYER_KINDS:
            return [None] * len(frames)
        mac = d.mac
        return [f[ether.ETH_HLEN:] if f[12:14] == b"\x08\x00" and (f[:6] == mac or f[0] & 1) else None
                for f in frames]

    def frame_in(self, dev: str, frame: Buffer, now: float) -> tuple[Buffer | None, Frames]:
        """An Ethernet frame received on `dev`: (the IPv4 packet inside for the engine, or None;
        frames to send now, e.g. ARP replies).  Frames not for us (other unicast MACs) give (None, [])."""
        [ip] = self.ip_payloads(dev, [frame])
        if ip is not None:
            return ip, []
        d = self._device(dev)
        if d is None:
            return None, []
        self.table.start(now)
        eth = ether.parse(frame, d.mac)
        if isinstance(eth, ether.EthDrop):
            self.drops[eth.reason] += 1
            return None, []
        if eth.pkt_type == ether.PktType.OTHERHOST:
            self.drops["OTHERHOST"] += 1
            return None, []
        if eth.ethertype == ether.ETH_P_IP:
            return eth.payload, []
        if eth.ethertype != ether.ETH_P_ARP:
            self.drops["UNHANDLED_PROTO"] += 1
            return None, []
        if d.flags & IFF_NOARP:
            self.drops["ARP_NOARP_DEVICE"] += 1  # arp_rcv(): IFF_NOARP
            return None, []
        a = arp.parse(eth.payload)
        if isinstance(a, arp.ArpDrop):
            self.drops[a.reason] += 1
            return None, []
        res = arp.process(self.stack, self.table, d, a, eth.pkt_type, now)
        if res.drop is not None:
            self.drops[res.drop] += 1
        # neigh_event_ns() releases queued packets before arp_send_dst() sends the reply
        frames, failed = self._frames(res.actions)
        self._failed += failed  # (ARP news never fails an entry; kept for handle_timer should that change)
        frames += [(dev, f) for f in res.frames]
        return None, frames

    # -- output -------------------------------------------------------------
    def hh_header(self, dev: str, nexthop: int) -> bytes | None:
        """neigh_hh_output(): the cached Ethernet header towards a connected neighbour, or None when the
        packet has to go through the neighbour's state machine (`ip_out`)."""
        n = self.table.entries.get((dev, nexthop))
        if n is not None and n.hh and n.state & NUD_CONNECTED:
            d = self.stack.devices.get(dev)
            if d is not None and d.up:
                return n.ha + d.mac + b"\x08\x00"
        return None

    def ip_out(self, dev: str, nexthop: int, packet: bytes, now: float) -> Frames:
        """An IPv4 packet the engine sends to `nexthop` on `dev`: frames to send now (the packet framed,
        or an ARP request while it waits in the queue).  0xFFFFFFFF / subnet broadcast -> broadcast MAC."""
        head = self.hh_header(dev, nexthop)
        if head is not None:
            return [(dev, ether.pad(head + packet))]
        n = self.table.entries.get((dev, nexthop))
        d = self._device(dev)
        if d is None:
            return []
        if n is None:
            n = self.table.create(dev, nexthop, now, arp.constructor(self.stack, d, nexthop))
            if n is None:
                self.drops["NEIGH_CREATEFAIL"] += 1  # neighbor table overflow
                return []
        frames, _ = self._frames(self.table.output(n, bytes(packet), now))
        return frames

    def _frames(self, actions: Iterable[Action]) -> tuple[Frames, list[bytes]]:
        frames: Frames = []
        failed: list[bytes] = []
        for act in actions:
            if isinstance(act, Failed):
                failed.append(act.packet)
                continue
            d = self.stack.devices.get(act.dev)
            if d is None or not d.up:
                continue
            if isinstance(act, Xmit):
                frames.append((act.dev, ether.build(act.dst_mac, d.mac, ether.ETH_P_IP, act.packet)))
            elif isinstance(act, Solicit):
                f = arp.solicit(self.stack, d, act)
                if f is not None:
                    frames.append((act.dev, f))
        return frames, failed

    # -- timers -------------------------------------------------------------
    def next_timer(self) -> float | None:
        """When `handle_timer` has work: a neighbour timer, or the periodic garbage collection."""
        if self._failed:
            return self.table.started  # a time already past: due now
        return self.table.next_timer()

    def handle_timer(self, now: float) -> tuple[Frames, list[bytes]]:
        """(frames to send: probes, retransmitted requests; packets whose next hop FAILED, for link_failure)."""
        frames, failed = self._frames(self.table.handle_timer(now))
        if self._failed:
            failed, self._failed = self._failed + failed, []
        return frames, failed

    # -- device and address events -------------------------------------------
    def address_added(self, dev: str, addr: int, now: float) -> Frames:
        """Gratuitous ARP for a new address (arp_notify behaviour)."""
        d = self.stack.devices.get(dev)
        if d is None or d.kind in NO_LINK_LAYER_KINDS or not d.up:
            return []
        self.table.start(now)
        f = arp.gratuitous(d, addr)
        return [(dev, f)] if f is not None else []

    def device_up(self, dev: str, now: float) -> Frames:
        """NETDEV_UP: gratuitous ARP for every address of the device (inetdev_send_gratuitous_arp)."""
        d = self.stack.devices.get(dev)
        if d is None or d.kind in NO_LINK_LAYER_KINDS or not d.up or not arp.arp_notify(self.stack, d):
            return []
        self.table.start(now)
        out: Frames = []
        for ifa in d.addrs:
            f = arp.gratuitous(d, ifa.local)
            if f is not None:
                out.append((dev, f))
        return out

    def device_down(self, dev: str) -> None:
        """NETDEV_DOWN / unregister: arp_ifdown() -> neigh_ifdown(): the device's entries go, queues purged."""
        self.table.flush_dev(dev)

    # -- administration (ip neigh add/replace/del) ----------------------------
    def neigh_add(self, dev: str, addr: int, lladdr: bytes | None, now: float,
                  state: Nud = Nud.PERMANENT) -> Frames:
        """`ip neigh replace ADDR lladdr LLADDR dev DEV nud STATE` (permanent, noarp, reachable, stale)."""
        if state not in (Nud.PERMANENT, Nud.NOARP, Nud.REACHABLE, Nud.STALE):
            raise ValueError(f"nud {state.name.lower()} is not supported")
        d = self.stack.devices.get(dev)
        if d is None or d.kind in NO_LINK_LAYER_KINDS:
            raise ValueError(f"no Ethernet device {dev!r}")
        n = self.table.lookup(dev, addr) or self.table.create(dev, addr, now, arp.constructor(self.stack, d, addr))
        if n is None:
            raise ValueError("neighbor table overflow")
        if lladdr is None and not n.state & NUD_VALID:
            raise ValueError("No link layer address given")  # __neigh_update(): -EINVAL (the entry stays)
        frames, _ = self._frames(self.table.update(n, lladdr, state, NEIGH_UPDATE_F_OVERRIDE | NEIGH_UPDATE_F_ADMIN,
                                                   now))
        return frames

    def neigh_del(self, dev: str, addr: int, now: float) -> list[bytes]:
        """`ip neigh del`: neigh_update(NUD_FAILED, OVERRIDE | ADMIN) then removal; packets that were waiting
        come back for link_failure, as the kernel reports them."""
        n = self.table.lookup(dev, addr)
        if n is None:
            return []
        _, failed = self._frames(self.table.update(n, None, Nud.FAILED, NEIGH_UPDATE_F_OVERRIDE |
                                                   NEIGH_UPDATE_F_ADMIN, now))
        self.table.remove(n)
        return failed

    def neighbours(self) -> list[NeighEntry]:
        """For `ip neigh show`: by device index, then address."""
        order = {name: d.ifindex for name, d in self.stack.devices.items()}
        out = [NeighEntry(n.key, n.dev, n.ha if n.state & NUD_VALID else None, n.state) for n in self.table]
        out.sort(key=lambda e: (order.get(e.dev, 1 << 30), e.dev, e.dst))
        return out


def format_neigh_show(entries: Iterable[NeighEntry], dev: str | None = None, show_all: bool = False) -> str:
    """`ip neigh show [dev DEV] [nud all]` as iproute2 6.1 prints it (print_neigh: every field ends in a space).

    The default filter is 0xFF & ~NUD_NOARP: NOARP entries and NONE (state 0) are shown only with `nud all`.
    """
    lines: list[str] = []
    for e in entries:
        if dev is not None and e.dev != dev:
            continue
        if not show_all and e.state in (Nud.NONE, Nud.NOARP):
            continue
        line = f"{ntoa(e.dst)} "
        if dev is None:
            line += f"dev {e.dev} "
        if e.lladdr is not None:
            line += f"lladdr {ether.mac_text(e.lladdr)} "
        if e.state != Nud.NONE:
            line += f"{e.state.name} "
        lines.append(line + "\n")
    return "".join(lines)
