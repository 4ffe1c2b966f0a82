"""tcp_ack_fast() against tcp_packet(): same state, same timeout, same counters, whenever it accepts.

Random walks over established connections with segments drawn at and around
every bound of tcp_in_window() (td_end, td_maxend, the receiver's window,
MAXACKWINDOW), zero windows, window scaling, SACK and timestamp options,
retransmissions.  At each step the fast function runs on the entry; if it
takes the segment, its result is kept, the entry restored, and the full
tracker run on the same segment: both must leave identical entries.
"""

from __future__ import annotations

import random

import pytest

from ipgate.conntrack.conn import IP_CT_IS_REPLY, IPS_ASSURED, Conn
from ipgate.conntrack.tcp import MAXACKWINCONST, IpCtTcp, tcp_ack_fast

from .helpers import A, B, Harness
from .pkts import ACK, FIN, PSH, RST, SYN, URG, tcp

WS_SACK = b"\x01\x03\x03\x02\x04\x02"  # window scale 2, SACK permitted


def _snapshot(ct: Conn) -> tuple[object, ...]:
    return ct.proto, ct.timeout, ct.status, None if ct.acct is None else list(ct.acct)


def _restore(ct: Conn, snap: tuple[object, ...]) -> None:
    ct.proto, ct.timeout, ct.status, acct = snap  # type: ignore[assignment]
    ct.acct = None if acct is None else list(acct)  # type: ignore[call-overload]


def _segment(rng: random.Random, ct: Conn, sport: int) -> tuple[int, bytes]:
    """(direction, segment) with sequence and acknowledgement numbers near the tracked bounds."""
    st = IpCtTcp.load(ct.proto)
    d = rng.randrange(2)
    snd, rcv = st.seen[d], st.seen[1 - d]
    M = 0xFFFFFFFF
    seq = rng.choice((snd.td_end, snd.td_end, snd.td_maxend, snd.td_maxend + 1, snd.td_end - rcv.td_maxwin,
                      snd.td_end - rcv.td_maxwin - 1, snd.td_end - 100, rng.randrange(1 << 32))) & M
    ack = rng.choice((rcv.td_end, rcv.td_end, rcv.td_end + 1, rcv.td_end - 1000,
                      rcv.td_end - max(snd.td_maxwin, MAXACKWINCONST), rcv.td_end - max(snd.td_maxwin, MAXACKWINCONST)
                      - 1, rng.randrange(1 << 32))) & M
    n = rng.choice((0, 0, 1, 10, 1400, 70000 // 4))
    win = rng.choice((0, 0, 1, 16, 1000, 65535))
    flags = rng.choice((ACK,) * 6 + (ACK | PSH, ACK | PSH, ACK | URG, ACK | 0x40, ACK | FIN, RST | ACK, SYN | ACK, 0))
    opts = rng.choice((b"", b"", b"\x01\x01\x08\x0a" + rng.randbytes(8),
                       b"\x01\x01\x05\x0a" + ((ack + rng.randrange(3000)) & M).to_bytes(4, "big") * 2))
    payload = bytes(min(n, 1400))
    if d == 0:
        return 0, tcp(A, B, sport, 80, flags, seq=seq, ack=ack, win=win, payload=payload, opts=opts)
    return 1, tcp(B, A, 80, sport, flags, seq=seq, ack=ack, win=win, payload=payload, opts=opts)


def _connect(h: Harness, rng: random.Random, sport: int, opts: bytes) -> Conn:
    """A three-way handshake with random initial sequence numbers; the ESTABLISHED, assured entry."""
    x, y = rng.randrange(1 << 32), rng.randrange(1 << 32)
    h.send(tcp(A, B, sport, 80, SYN, seq=x, opts=opts))
    h.send(tcp(B, A, 80, sport, SYN | ACK, seq=y, ack=x + 1, opts=opts))
    r = h.send(tcp(A, B, sport, 80, ACK, seq=x + 1, ack=y + 1))
    assert r.ct is not None and r.ct.status & IPS_ASSURED
    return r.ct


@pytest.mark.parametrize("seed", range(20))
def test_fast_ack_leaves_what_tcp_packet_leaves(seed: int) -> None:
    rng = random.Random(seed)
    h = Harness(acct=seed % 2)
    opts = WS_SACK if seed % 3 else b""
    sport = 40000
    ct = _connect(h, rng, sport, opts)
    taken = 0
    for _ in range(1500):
        if ct.status & 0x200 or ct.tcp_state != 3:  # IPS_DYING, or no longer ESTABLISHED: another connection
            sport += 1
            ct = _connect(h, rng, sport, opts)
        h.tick(rng.choice((0.0, 0.01, 1.0)))
        d, seg = _segment(rng, ct, sport)
        before = _snapshot(ct)
        if tcp_ack_fast(h.table, ct, seg, 20, len(seg), d, h.now):
            fast = _snapshot(ct)
            _restore(ct, before)
            r = h.send(seg)
            assert r.ct is ct and r.ctinfo == (IP_CT_IS_REPLY if d else 0)
            assert _snapshot(ct) == fast
            taken += 1
        else:
            assert _snapshot(ct) == before  # refused: nothing changed
            h.send(seg)
    assert taken > 150
