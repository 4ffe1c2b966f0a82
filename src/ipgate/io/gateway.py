"""The live gateway: one event loop around the sans-IO engine and link layer.

    selectors ──> Port.read_batch ──> LinkLayer.frame_in (TAP, AF_PACKET) ──> Engine.receive_batch
                                                                              │
    Port.write <── LinkLayer.ip_out (Ethernet) or the packet as is (TUN) <── Tx

The loop sleeps until a device is readable, the control socket has a
client, a signal arrives (signal.set_wakeup_fd), or the earliest of the
engine's and the link layer's `next_timer()`; it reads at most `batch`
packets per device per wake-up so one busy device cannot starve the others.
The clock is `time.monotonic()`, read here and handed to the core as `now`.

Nothing a packet carries can stop the loop: the core drops malformed input
with a reason, and an unexpected exception while handling one packet is
counted and logged (rate-limited) and the packet dropped.

SIGHUP reloads the configuration (validated first, connections kept, see
rebind.py); SIGTERM and SIGINT stop: devices the gateway created go away
with their descriptors, the control socket is removed.

With a state file (--state) the connections also survive a restart: they are
loaded before the first packet and saved on a clean stop, and every
--state-interval seconds if asked (conntrack/persist.py).  With --metrics the
counters are served to Prometheus from the same loop (metrics.py).
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from ipgate.conntrack.persist import StateError, load_state, save_state
from ipgate.engine.engine import Engine
from ipgate.engine.result import Drop, Result, Tx
from ipgate.inet import ntoa
from ipgate.io import netdev
from ipgate.io.afpacket import PacketSocket
from ipgate.io.control import ControlServer
from ipgate.io.live import LiveCommands
from ipgate.io.metrics import MetricsServer, collect, render
from ipgate.io.ports import AttachSpec, Port, default_spec, open_port
from ipgate.io.rebind import carry_state, rebind_engine, rebind_link
from ipgate.io.syslog import SyslogWriter
from ipgate.link import ether
from ipgate.link.layer import Frames, LinkLayer
from ipgate.packet.checksum import Buffer
from ipgate.packet.gso import GsoError, segment
from ipgate.shell import ScriptErrors, load_script
from ipgate.stack import Stack

BATCH = 256  # packets read from one device per wake-up (and handed to the engine together)
MAX_SLEEP = 60.0  # seconds: wake up at least this often even with no timer
RING_SLEEP = 0.01  # with receive rings: look at them this often even without a wake-up (_poll_rings)
GC_INTERVAL = 1.0  # seconds between conntrack sweeps (the kernel's gc_worker; expired entries also die on lookup)
MAX_REASONS = 1024  # distinct drop reasons counted; later ones go under "other"
FAILED_WAKEUPS = 3  # wake-ups in a row that only gave read errors: the device is gone or broken
PAUSE = 1.0  # seconds such a device is left alone at first (its descriptor would keep the loop spinning)
MAX_PAUSE = 30.0  # the pause doubles while the errors go on, up to this
DevState = dict[str, tuple[bool, frozenset[int]]]


class Gateway:
    def __init__(self, config: str, attach: list[AttachSpec], *, control: str | None = None,
                 log: SyslogWriter | None = None, batch: int = BATCH, ring: bool = False,
                 state: str | None = None, state_interval: float = 0.0,
                 metrics: tuple[str, int] | None = None) -> None:
        self.config = config
        self.attach = {a.ifname: a for a in attach}
        self.control_path = control
        self.log = log if log is not None else SyslogWriter()
        self.batch = batch
        self.ring = ring
        self.sel = selectors.DefaultSelector()
        self.ports: dict[str, Port] = {}
        self.stack = Stack()
        self.engine = Engine(self.stack, syslog=self.log.kernel)
        self.link: LinkLayer | None = None
        self.control: ControlServer | None = None
        self.commands = LiveCommands(self)
        self.drops: Counter[str] = Counter()
        self.local = 0
        self.errors = 0
        self._stop = False
        self._reload_asked = False
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._old_signals: dict[int, object] = {}
        self._devstate: DevState = {}
        self._paused: dict[str, float] = {}  # port -> when to listen to it again
        self._next_sweep = 0.0
        self._failed: Counter[str] = Counter()  # port -> wake-ups in a row with only read errors
        self._pause_for: dict[str, float] = {}  # port -> its next pause, doubling while it keeps failing
        # the state file and the metrics (see start, serve and the section at the end)
        self.state_path = state
        self.state_interval = state_interval
        self._next_save = 0.0
        self.metrics_addr = metrics
        self.metrics: MetricsServer | None = None
        self.forwarded = 0  # Tx results
        self.rx_bytes: Counter[str] = Counter()  # port -> bytes read
        self.tx_bytes: Counter[str] = Counter()  # port -> bytes written

    # -- start and stop -----------------------------------------------------------------------
    def start(self) -> None:
        """Load the configuration, attach every interface, open the control socket, take the signals.

        On failure everything opened so far is closed again and the error raised."""
        try:
            stack = self._load()
            unknown = set(self.attach) - set(_interfaces(stack))
            if unknown:
                raise ValueError(f"--attach names interfaces the configuration lacks: {', '.join(sorted(unknown))}")
            self._restore_state(stack)  # before any device is open: before the first packet
            for name in _interfaces(stack):
                self._open(name, stack)
            self._bind(stack)
            self.stack = stack
            rebind_engine(self.engine, stack)
            if any(p.l2 for p in self.ports.values()):
                self.link = LinkLayer(stack)
            self._signals()
            if self.control_path:
                self.control = ControlServer(self.control_path, self.commands.run, self.sel)
            if self.metrics_addr is not None:
                self.metrics = MetricsServer(self.metrics_addr, lambda: render(collect(self)), self.sel)
                host, port = self.metrics.address
                self.log.info(f"metrics on http://{f'[{host}]' if ':' in host else host}:{port}/metrics")
            now = time.monotonic()
            self._devstate = {}
            self._announce(now)
            self.log.info(f"started with {self.config}: " + ", ".join(
                f"{p.name}={p.spec.dev}({p.spec.mode})" for p in self.ports.values()))
        except BaseException:
            self.close()
            raise

    def _load(self) -> Stack:
        return load_script(Path(self.config).read_text(), self.config)

    def _open(self, name: str, stack: Stack) -> None:
        spec = self.attach.get(name) or default_spec(name)
        try:
            port = open_port(spec, stack.devices[name].mtu, ring=self.ring)
        except OSError as e:
            raise OSError(f"{name}: {spec.mode} {spec.dev}: {e.strerror or e}") from None
        self.ports[name] = port
        self.sel.register(port.io, selectors.EVENT_READ, lambda _m, p=port: self._on_port(p))
        if not port.created:
            kmtu = netdev.mtu(spec.dev)
            if kmtu != stack.devices[name].mtu:
                self.log.info(f"{name}: {spec.dev} has MTU {kmtu}, the configuration {stack.devices[name].mtu}")

    def _bind(self, stack: Stack) -> None:
        """The configuration's devices become what they are bound to (type, MAC address)."""
        for name, port in self.ports.items():
            d = stack.devices.get(name)
            if d is None:
                continue
            d.kind = port.kind
            if port.mac is not None:
                d.mac = port.mac

    def _signals(self) -> None:
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        for sig, handler in ((signal.SIGHUP, self._on_hup), (signal.SIGTERM, self._on_term),
                             (signal.SIGINT, self._on_term)):
            self._old_signals[sig] = signal.signal(sig, handler)

    def _on_hup(self, _sig: int, _frame: object) -> None:
        self._reload_asked = True

    def _on_term(self, _sig: int, _frame: object) -> None:
        self._stop = True

    def _on_wake(self, _mask: int) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(256):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        """Close every descriptor; TUN/TAP devices we made disappear with theirs."""
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        for port in self.ports.values():
            try:
                self.sel.unregister(port.io)
            except (KeyError, ValueError):
                pass  # paused
            port.close()
        self.ports.clear()
        for sig, old in self._old_signals.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self._old_signals.clear()
        if self._wake_r is not None:
            signal.set_wakeup_fd(-1)
            self.sel.unregister(self._wake_r)
            self._wake_r.close()
            assert self._wake_w is not None
            self._wake_w.close()
            self._wake_r = self._wake_w = None
        self.sel.close()
        self.log.close()

    # -- the loop -----------------------------------------------------------------------------
    def serve(self) -> None:
        """Run until stop() or SIGTERM/SIGINT."""
        sel = self.sel
        while not self._stop:
            events = sel.select(self._timeout())
            for key, mask in events:
                key.data(mask)
            if self.ring:
                self._poll_rings({key.fileobj for key, _ in events})
            if self._reload_asked:
                self._reload_asked = False
                ok, msg = self.reload()
                self.log.info(msg)
            self._timers(time.monotonic())
        self.log.info("stopping")
        self.save_state()

    def _poll_rings(self, woken: set[object]) -> None:
        """Read the receive rings that have a block ready but did not wake us.  Seen under overload
        (tests/io/bench_live.py, 3 runs of 10): a ring full of unread blocks and the gateway asleep.  A
        TPACKET_V3 socket polls readable only while the block before the kernel's current one is ours
        (packet_poll(), prb_previous_blk_num()), so once the kernel has frozen the ring no wake-up comes.
        With this and RxRing.read_blocks taking whichever blocks are ours, oldest first, 16 runs of 16 went
        through."""
        for port in list(self.ports.values()):
            io = port.io
            if (isinstance(io, PacketSocket) and io.ring is not None and io not in woken
                    and port.name not in self._paused and io.ring.ready()):
                self._on_port(port)

    def _engine_due(self) -> float:
        """When the engine has timer work: its fragment queues' own deadlines, and a conntrack sweep every
        GC_INTERVAL.  (Engine.next_timer() would also give the earliest conntrack expiry, but finding it
        walks the whole table: too dear for every wake-up.)"""
        frag = self.engine.defrag.next_timer()
        return self._next_sweep if frag is None else min(frag, self._next_sweep)

    def _timeout(self) -> float:
        due = [t for t in (self._engine_due(), self.link.next_timer() if self.link else None,
                           self.control.next_deadline() if self.control else None,
                           min(self._paused.values(), default=None),
                           self.metrics.next_deadline() if self.metrics else None,
                           self._next_save if self.state_interval and self.state_path else None) if t is not None]
        longest = RING_SLEEP if self.ring else MAX_SLEEP
        if not due:
            return longest
        return min(max(min(due) - time.monotonic(), 0.0), longest)

    def _timers(self, now: float) -> None:
        if self._engine_due() <= now:
            if self._next_sweep <= now:
                self._next_sweep = now + GC_INTERVAL
            self._guard(lambda: self._emit(self.engine.handle_timer(now), now))
        link = self.link
        if link is not None:
            t = link.next_timer()
            if t is not None and t <= now:
                def run() -> None:
                    assert link is not None
                    frames, failed = link.handle_timer(now)
                    self._send(frames)
                    for pkt in failed:
                        self._emit(self.engine.link_failure(pkt, now), now)
                self._guard(run)
        if self.control is not None:
            self.control.expire(now)
        if self.metrics is not None:
            self.metrics.expire(now)
        if self.state_interval and self.state_path and self._next_save <= now:
            if self._next_save:
                self.save_state(quiet=True)
            self._next_save = now + self.state_interval
        for name, when in list(self._paused.items()):
            if when <= now:
                del self._paused[name]
                port = self.ports.get(name)
                if port is not None:
                    self.sel.register(port.io, selectors.EVENT_READ, lambda _m, p=port: self._on_port(p))

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a bug in one packet's path must not stop the gateway
            self.errors += 1
            self.log.limited(f"internal error: {type(e).__name__}: {e}", time.monotonic())

    def _on_port(self, port: Port) -> None:
        errors = port.io.rx_errors
        items, known, sizes = port.io.read_batch(self.batch)
        if not items:
            if port.io.rx_errors > errors:
                self._read_failed(port)
            return
        self._failed.pop(port.name, None)
        self._pause_for.pop(port.name, None)
        port.rx += len(items)
        port.reads += 1
        self.rx_bytes[port.name] += sum(map(len, items))
        now = time.monotonic()
        name = port.name
        link = self.link
        valid = known if known is not None else [False] * len(items)
        gso = sizes if sizes is not None else [0] * len(items)
        if not port.l2:
            self._receive(name, items, valid, gso, now)
            return
        assert link is not None
        # plain IPv4 frames for us go to the engine together (Engine.receive_batch); any other frame (ARP...)
        # first lets the packets before it through, so the link layer sees everything in arrival order
        pending: list[Buffer] = []
        pending_valid: list[bool] = []
        pending_gso: list[int] = []
        for data, ip, v, g in zip(items, link.ip_payloads(name, items), valid, gso, strict=True):
            if ip is None:
                if pending:
                    self._receive(name, pending, pending_valid, pending_gso, now)
                    pending, pending_valid, pending_gso = [], [], []
                try:
                    ip, frames = link.frame_in(name, data, now)
                    if frames:
                        self._send(frames)
                except Exception as e:  # noqa: BLE001
                    self.errors += 1
                    self.log.limited(f"internal error on {name}: {type(e).__name__}: {e}", now)
                    continue
                if ip is None:
                    continue
            pending.append(ip)
            pending_valid.append(v)
            pending_gso.append(g)
        if pending:
            self._receive(name, pending, pending_valid, pending_gso, now)

    def _receive(self, name: str, packets: Sequence[Buffer], valid: list[bool], gso: list[int], now: float) -> None:
        """Packets in from `name` (`valid`: their checksums known good; `gso`: super-packets' segment sizes),
        their results out."""
        try:
            results = self.engine.receive_batch(name, packets, now, csum_valid=valid, gso=gso)
        except Exception as e:  # noqa: BLE001 - a bug must not stop the gateway: the batch is lost, and counted
            self.errors += 1
            self.drops["internal error"] += len(packets)
            self.log.limited(f"internal error on {name}: {type(e).__name__}: {e}", now)
            return
        try:
            self._emit(results, now)
        except Exception as e:  # noqa: BLE001
            self.errors += 1
            self.log.limited(f"internal error on {name}: {type(e).__name__}: {e}", now)

    def _read_failed(self, port: Port) -> None:
        """A descriptor that is readable but only gives errors (a TUN whose device was destroyed, an AF_PACKET
        socket whose interface went away) would spin the loop: leave it alone for a while."""
        self._failed[port.name] += 1
        if self._failed[port.name] < FAILED_WAKEUPS:
            return
        self._failed.pop(port.name)
        now = time.monotonic()
        pause = self._pause_for.get(port.name, PAUSE)
        self._pause_for[port.name] = min(pause * 2, MAX_PAUSE)
        self.sel.unregister(port.io)
        self._paused[port.name] = now + pause
        errs = ", ".join(f"{k} {v}" for k, v in port.io.errnos.most_common(3))
        self.log.limited(f"{port.name}: {port.spec.dev} gives only read errors ({errs}); paused {pause:g} s", now)

    def _emit(self, results: list[Result], now: float) -> None:
        ports = self.ports
        link = self.link
        # by next hop, for this batch: (port, its Ethernet header) once the neighbour is connected; frames
        # for such hops wait in `ready` and go out together (in order: anything else flushes them first)
        heads: dict[tuple[str, int], tuple[Port, bytes] | None] = {}
        ready: dict[Port, list[bytes]] = {}
        for r in results:
            if type(r) is Tx:
                self.forwarded += 1
                if r.gso:
                    self._flush(ready)
                    self._emit_gso(r, now)
                    continue
                key = (r.dev, r.nexthop)
                pair = heads.get(key)
                if pair is not None:  # neigh_hh_output(): the common case
                    frame = pair[1] + r.data
                    ready.setdefault(pair[0], []).append(frame if len(frame) >= ether.ETH_ZLEN else ether.pad(frame))
                    continue
                self._flush(ready)
                out = ports.get(r.dev)
                if out is None:
                    self._drop(f"no device attached for {r.dev}", r.data, now)
                elif out.l2:
                    assert link is not None
                    head = link.hh_header(*key)
                    if head is None:  # not resolved: the neighbour code queues it and asks
                        self._send(link.ip_out(r.dev, r.nexthop, r.data, now))
                    else:
                        heads[key] = (out, head)
                        self._write(out, ether.pad(head + r.data))
                else:
                    self._write(out, r.data)
            else:
                self._flush(ready)
                if type(r) is Drop:
                    self._drop(r.reason, r.data, now)
                else:
                    self.local += 1
        self._flush(ready)

    def _emit_gso(self, r: Tx, now: float) -> None:
        """A TCP super-packet: whole, for the kernel to segment, to a connected neighbour on an AF_PACKET
        port with a virtio_net_hdr; else cut into its segments here (packet/gso.py) and sent as any packet."""
        port = self.ports.get(r.dev)
        head = self.link.hh_header(r.dev, r.nexthop) if self.link is not None and port is not None else None
        if port is not None and head is not None and isinstance(port.io, PacketSocket) and port.io.vnet:
            if port.write_gso(head, r.data, r.gso):
                self.tx_bytes[port.name] += len(head) + len(r.data)
            return
        try:
            segments = segment(r.data, r.gso, tcp=True)
        except GsoError as e:
            self._drop(str(e), r.data, now)
            return
        self._emit([Tx(r.dev, r.nexthop, p) for p in segments], now)

    def _flush(self, ready: dict[Port, list[bytes]]) -> None:
        for port, frames in ready.items():
            self.tx_bytes[port.name] += port.write_many(frames)
        ready.clear()

    def _send(self, frames: Frames) -> None:
        ports = self.ports
        for dev, frame in frames:
            port = ports.get(dev)
            if port is not None:
                self._write(port, frame)

    def _write(self, port: Port, data: bytes) -> None:
        """Port.write, and the bytes it took for the metrics."""
        if port.write(data):
            self.tx_bytes[port.name] += len(data)

    def _drop(self, reason: str, data: bytes, now: float) -> None:
        drops = self.drops
        if reason not in drops and len(drops) >= MAX_REASONS:
            reason = "other"
        drops[reason] += 1
        if len(data) >= 20 and data[0] >> 4 == 4 and data[16] >> 4 == 0xE:
            return  # multicast (IGMP reports, mDNS...): counted, not logged; the kernel drops these silently
        self.log.limited(f"drop: {reason}: {_summary(data)}", now)

    # -- configuration changes ----------------------------------------------------------------
    def reload(self) -> tuple[bool, str]:
        """SIGHUP: load the file; on any error keep running with the old state."""
        self.log.reopen()
        try:
            new = self._load()
        except ScriptErrors as e:
            return False, f"reload of {self.config} failed, keeping the running configuration: {e}"
        except OSError as e:
            return False, f"reload of {self.config} failed, keeping the running configuration: {e.strerror or e}"
        names = set(_interfaces(new))
        unknown = set(self.attach) - names
        if unknown:
            return False, f"reload refused: --attach names interfaces the new configuration lacks: {sorted(unknown)}"
        opened: list[str] = []
        try:
            for name in sorted(names - set(self.ports)):
                self._open(name, new)
                opened.append(name)
        except (OSError, ValueError) as e:
            for name in opened:
                self._close_port(name)
            return False, f"reload refused: cannot attach a new interface: {e}"
        for name in sorted(set(self.ports) - names):
            self._close_port(name)
        self._bind(new)
        carry_state(self.stack, new)
        self.stack = new
        rebind_engine(self.engine, new)
        if self.link is not None:
            rebind_link(self.link, new)
        elif any(p.l2 for p in self.ports.values()):
            self.link = LinkLayer(new)
        self._announce(time.monotonic())
        return True, f"reloaded {self.config} ({len(new.conntrack)} connections kept)"

    def _close_port(self, name: str) -> None:
        port = self.ports.pop(name)
        if self._paused.pop(name, None) is None:
            self.sel.unregister(port.io)
        if self.link is not None:
            self.link.device_down(name)
        port.close()

    def after_command(self) -> None:
        """A control command may have changed devices or addresses: tell the link layer."""
        self._announce(time.monotonic())

    def _announce(self, now: float) -> None:
        """Gratuitous ARP for devices that came up and addresses that were added; forget the
        neighbours of devices that went down."""
        stack = self.stack
        state: DevState = {name: (d.up, frozenset(a.local for a in d.addrs)) for name, d in stack.devices.items()
                           if name in self.ports}
        link = self.link
        if link is not None:
            for name, (up, addrs) in state.items():
                was_up, had = self._devstate.get(name, (False, frozenset()))
                if up and not was_up:
                    self._send(link.device_up(name, now))
                elif up:
                    for a in sorted(addrs - had):
                        self._send(link.address_added(name, a, now))
                elif was_up:
                    link.device_down(name)
        self._devstate = state

    # -- reporting ----------------------------------------------------------------------------
    def stats(self) -> str:
        lines = [f"{'port':<16}{'device':<16}{'mode':<8}{'rx':>12}{'tx':>12}{'tx_dropped':>12}{'io_errors':>10}"]
        notes: list[str] = []
        for p in self.ports.values():
            errs = p.io.rx_errors + p.io.tx_errors
            lines.append(f"{p.name:<16}{p.spec.dev:<16}{p.spec.mode:<8}{p.rx:>12}{p.tx:>12}{p.tx_dropped:>12}"
                         f"{errs:>10}")
            if p.reads:
                notes.append(f"{p.name}: {p.reads} reads, {p.rx / p.reads:.1f} frames a read")
            if p.io.errnos:
                notes.append(f"{p.name} i/o errors: " + ", ".join(f"{k} {v}" for k, v in p.io.errnos.most_common()))
            if isinstance(p.io, PacketSocket):
                if p.io.offloads:
                    notes.append(f"{p.name}: {p.io.offloads} frames with checksum/segmentation offload finished")
                kdrops = p.io.kernel_drops()
                if kdrops:
                    notes.append(f"{p.name}: {kdrops} frames dropped by the kernel (socket queue full)")
                if p.io.ring is not None:
                    notes.append(f"{p.name}: receive ring: {p.io.ring.state()}")
        lines += notes
        lines.append(f"delivered locally: {self.local}")
        lines.append(f"connections: {len(self.stack.conntrack)}")
        fp = self.engine.fastpath
        lines.append(f"fast path hits: {fp.hits} ({fp.vector.vectored} in batches as vectors, "
                     f"{fp.vector.supers} TCP super-packets forwarded whole)")
        lines.append(f"internal errors: {self.errors}")
        for reason, n in self.drops.most_common():
            lines.append(f"drop {n:>10} {reason}")
        if self.link is not None:
            for reason, n in self.link.drops.most_common():
                lines.append(f"link drop {n:>10} {reason}")
        return "\n".join(lines) + "\n"

    # -- the state file (conntrack/persist.py) ----------------------------------------------------
    def _restore_state(self, stack: Stack) -> None:
        """Load the saved connections into `stack` before it carries any packet.  No file: a clean
        start, silently; a corrupt or incompatible one: a clean start with one warning."""
        path = self.state_path
        if not path:
            return
        try:
            r = load_state(path, stack, time.monotonic(), rng=self.engine.rng)
        except (StateError, OSError) as e:
            why = f"{e.strerror or e}" if isinstance(e, OSError) else str(e)
            self.log.info(f"warning: state file {path} not loaded ({why}): starting with no connections")
            return
        if r is not None:
            gone = f", {r.dropped} gone meanwhile" if r.dropped else ""
            self.log.info(f"restored {r.connections} connections, {r.expectations} expectations and "
                          f"{r.nat_sessions} NAT sessions from {path} (down {r.downtime:.1f} s{gone})")

    def save_state(self, *, quiet: bool = False) -> bool:
        """Write the connections to the state file, if there is one; a failure is logged, never raised
        (`quiet`: the periodic saves log only their failures)."""
        path = self.state_path
        if not path:
            return False
        try:
            s = save_state(path, self.stack, time.monotonic())
        except (OSError, ValueError) as e:
            why = f"{e.strerror or e}" if isinstance(e, OSError) else str(e)
            self.log.info(f"warning: cannot save the state to {path}: {why}")
            return False
        if not quiet:
            self.log.info(f"saved {s.connections} connections, {s.expectations} expectations and "
                          f"{s.nat_sessions} NAT sessions to {path}")
        return True


def _interfaces(stack: Stack) -> list[str]:
    """The configuration's interfaces that need a real device: all but loopback."""
    return [d.name for d in sorted(stack.devices.values(), key=lambda d: d.ifindex) if not d.loopback]


def _summary(data: bytes) -> str:
    if data and data[0] >> 4 == 6:
        return f"IPv6 LEN={len(data)}"
    if len(data) < 20 or data[0] >> 4 != 4:
        return f"LEN={len(data)}"
    return f"SRC={ntoa(int.from_bytes(data[12:16], 'big'))} DST={ntoa(int.from_bytes(data[16:20], 'big'))} " \
           f"LEN={len(data)} PROTO={data[9]}"


def run(config: str, attach: list[AttachSpec], *, control: str | None, log: SyslogWriter,
        ring: bool = False, batch: int = BATCH, state: str | None = None, state_interval: float = 0.0,
        metrics: tuple[str, int] | None = None) -> int:
    gw = Gateway(config, attach, control=control, log=log, ring=ring, batch=batch, state=state,
                 state_interval=state_interval, metrics=metrics)
    try:
        gw.start()
    except (ScriptErrors, OSError, ValueError) as e:
        msg = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else str(e)
        if log.path is not None:
            print(f"ipgate run: {msg}", file=sys.stderr)
        log.info(f"cannot start: {msg}")
        return 1
    try:
        gw.serve()
    finally:
        gw.close()
    return 0


__all__ = ["Gateway", "run"]
