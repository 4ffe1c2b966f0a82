"""`ipgate -c FILE trace`: explain a packet's path (or a whole exchange) through the gateway, offline.

    trace [--json] SPEC [then SPEC ...]
    SPEC := PROTO SRC[:PORT] DST[:PORT] (iif DEV | local) [mark N] [tos T] [ttl N]
            [flags S|SA|A|PA|F|FA|R...] [len N] [type T] [code C] [id N] [seq N] [ack N]

Packets go through one engine in turn, so conntrack state carries from one
to the next.  TCP sequence numbers are filled in when not given: each side
starts at its own ISN and acknowledges what the other side last sent as it
left the gateway (translated addresses included), so a handshake traced as
the hosts see it is in window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ipgate.commands.base import Exit, Output
from ipgate.engine.engine import Engine
from ipgate.engine.result import Drop, Local, Result, Tx
from ipgate.engine.trace import Event, Trace
from ipgate.engine.xtables import TraceStep
from ipgate.inet import aton, ntoa
from ipgate.netfilter.listing import save_rule
from ipgate.packet.build import build_icmp, build_ipv4, build_tcp, build_udp
from ipgate.packet.describe import TCP_FLAGS, packet_text
from ipgate.stack import Stack

USAGE = ("usage: ipgate trace [--json] PROTO SRC[:PORT] DST[:PORT] (iif DEV | local) [mark N] [tos T] [ttl N]\n"
         "                    [flags S|SA|A|PA|F|R] [len N] [type T] [code C] [id N] [seq N] [ack N]"
         " [then SPEC ...]")
PROTOS = {"tcp": 6, "udp": 17, "icmp": 1}


@dataclass
class Spec:
    proto: int
    src: int
    sport: int
    dst: int
    dport: int
    iif: str  # "" = local
    mark: int = 0
    tos: int = 0
    ttl: int = 64
    flags: int | None = None
    length: int = 0
    icmp_type: int = 8
    icmp_code: int = 0
    ident: int = 0
    seq: int | None = None
    ack: int | None = None
    text: str = ""


def _num(word: str, what: str) -> int:
    try:
        return int(word, 0)
    except ValueError:
        raise Exit(2, f"ipgate trace: bad {what} {word!r}") from None


def _endpoint(word: str, ported: bool) -> tuple[int, int]:
    host, _, port = word.partition(":")
    try:
        addr = aton(host)
    except ValueError:
        raise Exit(2, f"ipgate trace: bad address {host!r}") from None
    if port and not ported:
        raise Exit(2, f"ipgate trace: {word!r}: this protocol has no ports")
    p = _num(port, "port") if port else 0
    if not 0 <= p <= 0xFFFF:
        raise Exit(2, f"ipgate trace: bad port {port!r}")
    return addr, p


def parse_spec(words: list[str]) -> Spec:
    if len(words) < 4:
        raise Exit(2, USAGE)
    proto = PROTOS.get(words[0].lower())
    if proto is None:
        proto = _num(words[0], "protocol")
    ported = proto in (6, 17)
    src, sport = _endpoint(words[1], ported)
    dst, dport = _endpoint(words[2], ported)
    spec = Spec(proto, src, sport, dst, dport, "", text=" ".join(words))
    i = 3
    if words[i] == "local":
        i += 1
    elif words[i] == "iif" and i + 1 < len(words):
        spec.iif = words[i + 1]
        i += 2
    else:
        raise Exit(2, USAGE)
    while i < len(words):
        key = words[i]
        if i + 1 >= len(words):
            raise Exit(2, f"ipgate trace: {key!r} needs a value")
        val = words[i + 1]
        i += 2
        if key == "mark":
            spec.mark = _num(val, "mark")
        elif key == "tos":
            spec.tos = _num(val, "tos")
        elif key == "ttl":
            spec.ttl = _num(val, "ttl")
        elif key == "flags":
            f = 0
            for ch in val.upper().replace(",", ""):
                if ch not in TCP_FLAGS:
                    raise Exit(2, f"ipgate trace: bad TCP flag {ch!r}")
                f |= TCP_FLAGS[ch]
            spec.flags = f
        elif key == "len":
            spec.length = _num(val, "length")
        elif key == "type":
            spec.icmp_type = _num(val, "ICMP type")
        elif key == "code":
            spec.icmp_code = _num(val, "ICMP code")
        elif key == "id":
            spec.ident = _num(val, "id")
        elif key == "seq":
            spec.seq = _num(val, "seq")
        elif key == "ack":
            spec.ack = _num(val, "ack")
        else:
            raise Exit(2, f"ipgate trace: unknown word {key!r}\n{USAGE}")
    return spec


@dataclass
class TcpState:
    """Sequence numbers per sender (as the packet is given) and what each packet acknowledged when it left."""

    next_seq: dict[tuple[int, int, int, int], int] = field(default_factory=dict)
    left: dict[tuple[int, int, int, int], int] = field(default_factory=dict)  # tuple as it left -> seq end
    isn: int = 1000

    def fill(self, s: Spec) -> tuple[int, int, int]:
        key = (s.src, s.sport, s.dst, s.dport)
        flags = s.flags if s.flags is not None else (0x02 if key not in self.next_seq else 0x10)
        if s.seq is not None:
            seq = s.seq
        elif key in self.next_seq:
            seq = self.next_seq[key]
        else:
            seq = self.isn
            self.isn += 100000
        ack = s.ack if s.ack is not None else self.left.get((s.dst, s.dport, s.src, s.sport), 0)
        if ack and s.flags is None:
            flags |= 0x10
        self.next_seq[key] = (seq + s.length + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF
        return seq, ack, flags

    def record(self, data: bytes) -> None:
        if len(data) < 40 or data[9] != 6:
            return
        ihl = (data[0] & 0x0F) * 4
        tot = int.from_bytes(data[2:4], "big")
        doff = (data[ihl + 12] >> 4) * 4
        flags = data[ihl + 13]
        seq = int.from_bytes(data[ihl + 4:ihl + 8], "big")
        end = seq + (tot - ihl - doff) + (1 if flags & 0x03 else 0)
        key = (int.from_bytes(data[12:16], "big"), int.from_bytes(data[ihl:ihl + 2], "big"),
               int.from_bytes(data[16:20], "big"), int.from_bytes(data[ihl + 2:ihl + 4], "big"))
        self.left[key] = end & 0xFFFFFFFF


def build(s: Spec, tcp: TcpState) -> bytearray:
    payload = bytes(s.length)
    if s.proto == 6:
        seq, ack, flags = tcp.fill(s)
        return build_tcp(s.src, s.dst, s.sport, s.dport, payload, seq=seq, ack_seq=ack, flags=flags, tos=s.tos,
                         ttl=s.ttl)
    if s.proto == 17:
        return build_udp(s.src, s.dst, s.sport, s.dport, payload, tos=s.tos, ttl=s.ttl)
    if s.proto == 1:
        un = (s.ident << 16) | 1 if s.icmp_type in (0, 8, 13, 14) else 0
        return build_icmp(s.src, s.dst, s.icmp_type, s.icmp_code, un, payload, tos=s.tos, ttl=s.ttl)
    return build_ipv4(s.src, s.dst, s.proto, payload, tos=s.tos, ttl=s.ttl)


def _event_dict(ev: Event | TraceStep, stack: Stack) -> dict[str, object]:
    if isinstance(ev, TraceStep):
        d: dict[str, object] = {"kind": "rule", "table": ev.table, "chain": ev.chain, "step": ev.kind,
                                "num": ev.num, "verdict": ev.verdict}
        if ev.rule is not None:
            d["rule"] = save_rule(ev.chain, ev.rule, 0, stack.netfilter.resolver).strip()
        return d
    return {"kind": ev.kind, "text": ev.text}


def _event_line(ev: Event | TraceStep, stack: Stack) -> str:
    if isinstance(ev, TraceStep):
        where = f"{ev.table}:{ev.chain}"
        if ev.rule is None:
            what = f"{ev.kind} {ev.verdict}" if ev.kind == "policy" else "return"
            return f"  {where:<22} {what}"
        text = save_rule(ev.chain, ev.rule, 0, stack.netfilter.resolver).strip()
        arrow = f"  => {ev.verdict}" if ev.verdict else ""
        return f"  {where:<22} rule {ev.num}: {text}{arrow}"
    return f"  {ev.kind:<22} {ev.text}"


def _result_dict(r: Result) -> dict[str, object]:
    if isinstance(r, Tx):
        return {"result": "out", "dev": r.dev, "nexthop": ntoa(r.nexthop), "packet": packet_text(r.data),
                "hex": r.data.hex()}
    if isinstance(r, Local):
        return {"result": "local", "dev": r.dev, "packet": packet_text(r.data)}
    return {"result": "drop", "reason": r.reason, "packet": packet_text(r.data)}


def _result_line(r: Result) -> str:
    if isinstance(r, Tx):
        return f"  => out {r.dev} via {ntoa(r.nexthop)}: {packet_text(r.data)}"
    if isinstance(r, Local):
        return f"  => delivered locally (in {r.dev}): {packet_text(r.data)}"
    assert isinstance(r, Drop)
    return f"  => DROP ({r.reason}): {packet_text(r.data)}"


def trace(stack: Stack, args: list[str], o: Output, now: float = 0.0) -> int:
    as_json = False
    if args and args[0] == "--json":
        as_json = True
        args = args[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        raise Exit(2 if not args else 0, USAGE)
    groups: list[list[str]] = [[]]
    for w in args:
        if w == "then":
            groups.append([])
        else:
            groups[-1].append(w)
    specs = [parse_spec(g) for g in groups]
    for s in specs:
        if s.iif and s.iif not in stack.devices:
            raise Exit(1, f'Cannot find device "{s.iif}"')
    eng = Engine(stack)
    eng.trace = Trace()
    tcp = TcpState()
    report: list[dict[str, object]] = []
    for n, s in enumerate(specs, 1):
        pkt = build(s, tcp)
        t = now + n * 0.001  # packets a millisecond apart
        results = eng.receive(s.iif, pkt, t, mark=s.mark) if s.iif else eng.output(pkt, t, mark=s.mark)
        events = eng.trace.flush()
        for r in results:
            if isinstance(r, Tx):
                tcp.record(r.data)
        if as_json:
            report.append({"packet": n, "spec": s.text, "in": s.iif or "local", "sent": packet_text(bytes(pkt)),
                           "events": [_event_dict(e, stack) for e in events],
                           "results": [_result_dict(r) for r in results]})
            continue
        o.write(f"packet {n}: {packet_text(bytes(pkt))} {'in ' + s.iif if s.iif else 'from the gateway'}"
                + (f" mark {s.mark:#x}" if s.mark else "") + "\n")
        for e in events:
            if isinstance(e, Event) and e.kind in ("receive", "output") and not e.text.startswith("generated"):
                continue
            o.write(_event_line(e, stack) + "\n")
        for r in results:
            o.write(_result_line(r) + "\n")
        if not results:
            o.write("  => held (queued, nothing leaves yet)\n")
    if as_json:
        o.write(json.dumps(report, indent=2) + "\n")
    return 0
