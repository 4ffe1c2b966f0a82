"""TCP segment sequences shared by the ipgate tests and the kernel oracle.

Each scenario is a list of steps ``(from_client, packet bytes)`` between the
client 192.0.2.1 and the server 198.51.100.2, each with its own client port,
so that all of them can run through one router namespace.  After every step
the router's entry for the flow is compared: present or not, TCP state,
[UNREPLIED], [ASSURED], and the timeout.
"""

from __future__ import annotations

from .pkts import ACK, FIN, PSH, RST, SYN, tcp

C = "192.0.2.1"
S = "198.51.100.2"

Step = tuple[bool, bytes]


def _mk(sport: int, dport: int = 80):  # type: ignore[no-untyped-def]
    def c(flags: int, seq: int, ack: int = 0, payload: bytes = b"", win: int = 64240, opts: bytes = b"") -> Step:
        return True, tcp(C, S, sport, dport, flags, seq=seq, ack=ack, payload=payload, win=win, opts=opts)

    def s(flags: int, seq: int, ack: int = 0, payload: bytes = b"", win: int = 65160, opts: bytes = b"") -> Step:
        return False, tcp(S, C, dport, sport, flags, seq=seq, ack=ack, payload=payload, win=win, opts=opts)

    return c, s


MSS_WS_SACK = b"\x02\x04\x05\xb4\x04\x02\x01\x03\x03\x07"  # MSS 1460, SACK-permitted, NOP, WS 7


def scenarios() -> dict[str, tuple[int, list[Step]]]:
    out: dict[str, tuple[int, list[Step]]] = {}

    c, s = _mk(41001)
    out["handshake_data_close"] = (41001, [
        c(SYN, 1000, opts=MSS_WS_SACK), s(SYN | ACK, 9000, 1001, opts=MSS_WS_SACK), c(ACK, 1001, 9001, win=502),
        c(ACK | PSH, 1001, 9001, b"GET / HTTP/1.0\r\n\r\n", win=502), s(ACK, 9001, 1019, win=509),
        s(ACK | PSH, 9001, 1019, b"HTTP/1.0 200 OK\r\n\r\nhello", win=509), c(ACK, 1019, 9025, win=502),
        c(FIN | ACK, 1019, 9025, win=502), s(ACK, 9025, 1020, win=509), s(FIN | ACK, 9025, 1020, win=509),
        c(ACK, 1020, 9026, win=502),
    ])
    c, s = _mk(41002)
    out["server_closes_first"] = (41002, [
        c(SYN, 5000), s(SYN | ACK, 7000, 5001), c(ACK, 5001, 7001),
        s(FIN | ACK, 7001, 5001), c(FIN | ACK, 5001, 7002), s(ACK, 7002, 5002),
    ])
    c, s = _mk(41003)
    out["rst_after_established"] = (41003, [
        c(SYN, 100), s(SYN | ACK, 200, 101), c(ACK, 101, 201), s(RST | ACK, 201, 101),
    ])
    c, s = _mk(41004, 81)
    out["rst_answers_syn"] = (41004, [c(SYN, 300), s(RST | ACK, 0, 301)])
    c, s = _mk(41005)
    out["syn_retransmit"] = (41005, [c(SYN, 400), c(SYN, 400), c(SYN, 400)])
    c, s = _mk(41006, 5000)
    out["simultaneous_open"] = (41006, [
        c(SYN, 500), s(SYN, 600), c(SYN | ACK, 500, 601), s(SYN | ACK, 600, 501), s(ACK, 601, 501),
        c(ACK, 501, 601),
    ])
    c, s = _mk(41007)
    out["ack_before_synack"] = (41007, [c(SYN, 700), c(ACK, 701, 1), s(SYN | ACK, 800, 701), c(ACK, 701, 801)])
    c, s = _mk(41008)
    out["out_of_window"] = (41008, [
        c(SYN, 900), s(SYN | ACK, 1900, 901), c(ACK, 901, 1901),
        c(ACK | PSH, 901 + 5_000_000, 1901, b"far"), c(ACK, 901, 1901 + 5_000_000), c(ACK | PSH, 901, 1901, b"ok"),
    ])
    c, s = _mk(41009, 22)
    out["pickup"] = (41009, [c(ACK | PSH, 12345, 54321, b"mid"), s(ACK, 54321, 12348), c(ACK, 12348, 54321)])
    c, s = _mk(41010)
    out["reopen_time_wait"] = (41010, [
        c(SYN, 1100), s(SYN | ACK, 2100, 1101), c(ACK, 1101, 2101),
        c(FIN | ACK, 1101, 2101), s(FIN | ACK, 2101, 1102), c(ACK, 1102, 2102),
        c(SYN, 99000), s(SYN | ACK, 3000, 99001), c(ACK, 99001, 3001),
    ])
    c, s = _mk(41011)
    out["syn_in_established_resync"] = (41011, [
        c(SYN, 1200), s(SYN | ACK, 2200, 1201), c(ACK, 1201, 2201),
        c(SYN, 777000), s(SYN | ACK, 888000, 777001), c(ACK, 777001, 888001),
    ])
    c, s = _mk(41012)
    out["bad_flags"] = (41012, [c(SYN | FIN, 1300), c(FIN, 1300), c(RST, 1300), c(PSH, 1300)])
    c, s = _mk(41013)
    out["unacked_then_retrans"] = (41013, [
        c(SYN, 1400), s(SYN | ACK, 2400, 1401), c(ACK, 1401, 2401),
        c(ACK | PSH, 1401, 2401, b"data"), c(ACK | PSH, 1401, 2401, b"data"), c(ACK | PSH, 1401, 2401, b"data"),
        c(ACK | PSH, 1401, 2401, b"data"), c(ACK | PSH, 1401, 2401, b"data"), s(ACK, 2401, 1405),
    ])
    c, s = _mk(41014)
    out["fin_in_syn_sent"] = (41014, [c(SYN, 1500), c(FIN | ACK, 1501, 0), s(SYN | ACK, 2500, 1501)])
    c, s = _mk(41015)
    out["half_open_reply_ack"] = (41015, [c(SYN, 1600), s(ACK, 2600, 1601), s(RST, 1601)])
    c, s = _mk(41016)
    out["last_ack_challenge"] = (41016, [
        c(SYN, 1700), s(SYN | ACK, 2700, 1701), c(ACK, 1701, 2701),
        c(FIN | ACK, 1701, 2701), s(FIN | ACK, 2701, 1702), c(SYN, 50000), s(ACK, 2702, 1702),
    ])
    return out
