"""The running gateway's counters as Prometheus metrics, over HTTP on a loopback port.

    ipgate run -c FILE ... --metrics 127.0.0.1:9109        curl http://127.0.0.1:9109/metrics

The body is the Prometheus text exposition format, version 0.0.4 (`# HELP`,
`# TYPE`, then `name{label="value"} value` lines; label values and help text
escaped as that format says).  What is exported:

- packets: received from the devices, sent by the engine (forwarded, and the
  gateway's own answers: echo replies, ICMP errors), delivered locally,
  dropped by reason (the engine's Drop results), the engine's own counters
  (kernel drop reasons, IPSTATS MIB counters), link-layer drops;
- per device: rx/tx packets and bytes (frames as read and written), tx drops
  and I/O errors, like /sys/class/net/DEV/statistics;
- conntrack: entries, nf_conntrack_max, expectations, /proc/net/stat/nf_conntrack;
- IP Filter NAT: sessions and the natstat_t counters `ipnat -s` prints;
- neighbour cache entries by NUD state; log lines suppressed by the rate limits.

The server lives in the gateway's selector like the control socket: non-blocking
sockets, no thread.  A scrape is computed between two packet batches.  Only
loopback addresses are accepted (the port must not be reachable from the
networks the gateway routes); one request per connection (`Connection: close`);
the request is bounded in size (8 KiB), the clients in number and in time.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import selectors
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ipgate.io.sockserver import Client, RequestServer
from ipgate.io.syslog import SyslogWriter
from ipgate.link.neigh import Nud
from ipgate.nat.ipnat.core import IpnatTable

if TYPE_CHECKING:
    from ipgate.io.gateway import Gateway

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST = 8192  # bytes of request line and headers
MAX_CLIENTS = 16
CLIENT_TIMEOUT = 5.0  # seconds a client may take to send its request and read the answer
LINGER = 1.0  # seconds, and at most MAX_DRAIN bytes, read and discarded after the answer (see _done)
MAX_DRAIN = 1 << 16

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


# -- the listening address --------------------------------------------------------------------------------
def parse_listen(text: str) -> tuple[str, int]:
    """ADDR:PORT (`127.0.0.1:9109`, `[::1]:9109`, `localhost:9109`) -> (address, port).

    ValueError unless the address is a loopback one; port 0 takes any free port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"--metrics {text!r}: expected ADDR:PORT, e.g. 127.0.0.1:9109")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        host = "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"--metrics {text!r}: {host!r} is not an IP address") from None
    if not addr.is_loopback:
        raise ValueError(f"--metrics {text!r}: only a loopback address (127.0.0.0/8, ::1) is allowed")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"--metrics {text!r}: bad port")
    return str(addr), port


# -- the exposition format -------------------------------------------------------------------------------
Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Metric:
    """One metric family: name, type (counter, gauge), help, and its samples."""

    name: str
    kind: str
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Metric:
        self.samples.append((tuple(labels.items()), value))
        return self


def _escape_help(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def render(metrics: Iterable[Metric]) -> str:
    """The text exposition format 0.0.4 of `metrics` (ValueError on a bad metric or label name)."""
    out: list[str] = []
    for m in metrics:
        if not _NAME.match(m.name) or m.kind not in ("counter", "gauge", "untyped"):
            raise ValueError(f"bad metric {m.name!r} ({m.kind})")
        out.append(f"# HELP {m.name} {_escape_help(m.help)}\n# TYPE {m.name} {m.kind}\n")
        for labels, value in m.samples:
            if labels:
                for k, _ in labels:
                    if not _LABEL.match(k) or k.startswith("__"):
                        raise ValueError(f"bad label name {k!r}")
                text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
                out.append(f"{m.name}{{{text}}} {_value(value)}\n")
            else:
                out.append(f"{m.name} {_value(value)}\n")
    return "".join(out)


# -- what the gateway exports -------------------------------------------------------------------------------
class CountingSyslogWriter(SyslogWriter):
    """A SyslogWriter that keeps the total of the lines its drop budget suppressed
    (SyslogWriter.suppressed only holds those not yet reported)."""

    def __init__(self, path: str | None = None) -> None:
        super().__init__(path)
        self.suppressed_total = 0

    def limited(self, line: str, now: float) -> None:
        before = self.suppressed
        super().limited(line, now)
        if self.suppressed > before:
            self.suppressed_total += 1


def collect(gw: Gateway) -> list[Metric]:
    """The metrics of a running gateway, read from its counters at this moment."""
    stack = gw.stack
    ports = list(gw.ports.values())
    m = [
        Metric("ipgate_packets_received_total", "counter", "Packets (frames on Ethernet ports) read from the devices.")
        .add(sum(p.rx for p in ports)),
        Metric("ipgate_packets_forwarded_total", "counter",
               "IPv4 packets the engine sent out of a device: forwarded ones and the gateway's own "
               "(echo replies, ICMP errors).").add(gw.forwarded),
        Metric("ipgate_packets_delivered_total", "counter", "IPv4 packets delivered to the gateway itself.")
        .add(gw.local),
        _by("ipgate_packets_dropped_total", "counter", "Packets the gateway dropped, by reason.", "reason",
            gw.drops),
        _by("ipgate_engine_counter_total", "counter",
            "The engine's counters: kernel drop reasons, IPSTATS MIB counters, ipgate's own.", "name",
            gw.engine.counters.as_dict()),
        Metric("ipgate_fastpath_hits_total", "counter", "Packets forwarded by the established-flow fast path.")
        .add(gw.engine.fastpath.hits),
        Metric("ipgate_internal_errors_total", "counter", "Unexpected exceptions while handling a packet.")
        .add(gw.errors),
    ]
    m += _devices(gw)
    ct = stack.conntrack
    m += [
        Metric("ipgate_conntrack_entries", "gauge", "Connections in the conntrack table.").add(len(ct)),
        Metric("ipgate_conntrack_max", "gauge", "nf_conntrack_max.").add(ct.sysctl.max),
        Metric("ipgate_conntrack_expectations", "gauge", "Expectations (helpers' announced connections).")
        .add(len(ct.expect)),
        _by("ipgate_conntrack_stat_total", "counter", "/proc/net/stat/nf_conntrack.", "stat",
            {f.name: getattr(ct.stats, f.name) for f in dataclasses.fields(ct.stats)}),
    ]
    nat = stack.ipnat.sessions
    sessions = Metric("ipgate_ipnat_sessions", "gauge", "IP Filter NAT sessions (ipnat -l).")
    natstat = Metric("ipgate_ipnat_stat_total", "counter", "IP Filter NAT natstat_t counters (ipnat -s).")
    if isinstance(nat, IpnatTable):
        sessions.add(len(nat))
        for name, v in (("mapped_in", nat.mapped[0]), ("mapped_out", nat.mapped[1]), ("added", nat.added),
                        ("expired", nat.expired), ("memfail", nat.memfail), ("badnat", nat.badnat)):
            natstat.add(v, stat=name)
    else:
        sessions.add(0)
    m += [sessions, natstat]
    link = gw.link
    states: Counter[str] = Counter({_nud(n): 0 for n in Nud})
    if link is not None:
        for n in link.table:
            states[_nud(n.state)] += 1
    m.append(_by("ipgate_neighbours", "gauge", "Neighbour cache entries by NUD state.", "state", states))
    m.append(_by("ipgate_link_dropped_total", "counter", "Frames the link layer dropped, by reason.", "reason",
                 link.drops if link is not None else {}))
    log = gw.log
    ours = log.suppressed_total if isinstance(log, CountingSyslogWriter) else log.suppressed
    m.append(Metric("ipgate_log_lines_suppressed_total", "counter", "Log lines suppressed by the rate limits.")
             .add(ours, source="ipgate").add(gw.engine.counters["LOG_SUPPRESSED"], source="kernel"))
    return m


def _nud(state: int) -> str:
    try:
        return Nud(state).name or hex(state)
    except ValueError:
        return hex(state)


def _by(name: str, kind: str, help_: str, label: str, values: Counter[str] | dict[str, int]) -> Metric:
    m = Metric(name, kind, help_)
    for k in sorted(values):
        m.samples.append((((label, k),), values[k]))
    return m


def _devices(gw: Gateway) -> list[Metric]:
    rx_p = Metric("ipgate_device_receive_packets_total", "counter", "Packets (frames) read from the device.")
    rx_b = Metric("ipgate_device_receive_bytes_total", "counter", "Bytes read from the device.")
    tx_p = Metric("ipgate_device_transmit_packets_total", "counter", "Packets (frames) written to the device.")
    tx_b = Metric("ipgate_device_transmit_bytes_total", "counter", "Bytes written to the device.")
    tx_d = Metric("ipgate_device_transmit_dropped_total", "counter", "Writes the device refused.")
    errs = Metric("ipgate_device_errors_total", "counter", "Read and write errors on the device.")
    for name, p in gw.ports.items():
        labels = {"device": name}
        rx_p.add(p.rx, **labels)
        rx_b.add(gw.rx_bytes[name], **labels)
        tx_p.add(p.tx, **labels)
        tx_b.add(gw.tx_bytes[name], **labels)
        tx_d.add(p.tx_dropped, **labels)
        errs.add(p.io.rx_errors, direction="rx", **labels).add(p.io.tx_errors, direction="tx", **labels)
    return [rx_p, rx_b, tx_p, tx_b, tx_d, errs]


# -- the HTTP server ------------------------------------------------------------------------------------------
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error"}


def response(request: bytes, body: Callable[[], str]) -> bytes:
    """The answer to one request (its line and headers): /metrics, or an error."""
    line = request.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    parts = line.split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return _answer(400, "bad request\n")
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    if method not in (b"GET", b"HEAD"):
        return _answer(405, "only GET and HEAD\n", extra="Allow: GET, HEAD\r\n")
    if target == b"/metrics":
        try:
            text = body()
        except Exception as e:  # noqa: BLE001 - a scrape must never stop the gateway
            return _answer(500, f"{type(e).__name__}: {e}\n")
        return _answer(200, text, CONTENT_TYPE, head=method == b"HEAD")
    if target == b"/":
        return _answer(200, "ipgate: metrics at /metrics\n", head=method == b"HEAD")
    return _answer(404, "not found: try /metrics\n", head=method == b"HEAD")


def _answer(code: int, text: str, ctype: str = "text/plain; charset=utf-8", *, head: bool = False,
            extra: str = "") -> bytes:
    body = text.encode()
    head_text = (f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                 f"{extra}Connection: close\r\n\r\n")
    return head_text.encode() + (b"" if head else body)


class MetricsServer(RequestServer):
    """Prometheus' scrapes over HTTP on a loopback address, answered from the event loop."""

    max_clients = MAX_CLIENTS
    client_timeout = CLIENT_TIMEOUT

    def __init__(self, addr: tuple[str, int], body: Callable[[], str], sel: selectors.BaseSelector) -> None:
        host, port = addr
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"metrics: {host} is not a loopback address")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(MAX_CLIENTS)
        except BaseException:
            sock.close()
            raise
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self.body = body
        self.requests = 0
        super().__init__(sock, sel)

    def _event(self, c: Client, mask: int) -> None:
        if c.draining >= 0:
            self._drain(c)
        else:
            super()._event(c, mask)

    def _read(self, c: Client) -> None:
        data = self._recv(c, MAX_REQUEST + 1 - len(c.rbuf))
        if not data:
            return
        c.rbuf += data
        end = c.rbuf.find(b"\r\n\r\n")
        if end < 0:
            end = c.rbuf.find(b"\n\n")
        if end < 0:
            if len(c.rbuf) > MAX_REQUEST:
                self._reply(c, _answer(431, "request too large\n"))
            return
        self.requests += 1
        self._reply(c, response(bytes(c.rbuf[:end]), self.body))

    def _done(self, c: Client) -> None:
        """The answer is out: half-close, and read what the client may still be sending until it closes
        too (a lingering close: closing with unread input would reset the connection, and the client could
        lose the answer, e.g. the 431 of an oversized request)."""
        try:
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return self._drop(c)
        c.draining = 0
        c.deadline = time.monotonic() + LINGER
        self.sel.modify(c.sock, selectors.EVENT_READ, lambda mask, c=c: self._event(c, mask))

    def _drain(self, c: Client) -> None:
        data = self._recv(c, MAX_DRAIN)
        if data is None:
            return
        c.draining += len(data)
        if c.draining > MAX_DRAIN:
            self._drop(c)


__all__ = ["CONTENT_TYPE", "CountingSyslogWriter", "Metric", "MetricsServer", "collect", "parse_listen", "render",
           "response"]
