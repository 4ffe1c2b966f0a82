"""The TCP tracker against cases read off nf_conntrack_proto_tcp.c (Linux 6.x)."""

from __future__ import annotations

from ipgate.conntrack.conn import (
    IP_CT_ESTABLISHED,
    IP_CT_ESTABLISHED_REPLY,
    IP_CT_NEW,
    IPS_ASSURED,
    IPS_SEEN_REPLY,
    NF_ACCEPT,
    NF_INET_LOCAL_OUT,
)
from ipgate.conntrack.sysctl import DAYS, TCP_TIMEOUTS
from ipgate.conntrack.table import CT_INVALID
from ipgate.conntrack.tcp import (
    TCP_ACK_SET,
    TCP_CONNTRACKS,
    TCP_FIN_SET,
    TCP_NONE_SET,
    TCP_RST_SET,
    TCP_SYN_SET,
    TCP_SYNACK_SET,
    get_conntrack_index,
    sCL,
    sCW,
    sES,
    sFW,
    sIG,
    sIV,
    sLA,
    sNO,
    sS2,
    sSR,
    sSS,
    sTW,
)

from .helpers import A, B, Harness
from .pkts import ACK, FIN, PSH, RST, SYN, URG, tcp

ORIG, REPLY = 0, 1


def test_table_shape_and_the_cells_the_kernel_comments_explain() -> None:
    assert len(TCP_CONNTRACKS) == 2
    assert all(len(rows) == 6 and all(len(r) == 10 for r in rows) for rows in TCP_CONNTRACKS)
    cells = {
        (ORIG, TCP_SYN_SET, sNO): sSS,      # initialize a new connection
        (ORIG, TCP_SYN_SET, sSS): sSS,      # retransmitted SYN
        (ORIG, TCP_SYN_SET, sES): sIG,      # SYN in window: receiver will RST
        (ORIG, TCP_SYN_SET, sTW): sSS,      # reopened connection (RFC 1122)
        (ORIG, TCP_SYNACK_SET, sSS): sIV,   # client can't send SYN then SYN/ACK
        (ORIG, TCP_SYNACK_SET, sSR): sSR,   # late retransmitted SYN/ACK in simultaneous open
        (ORIG, TCP_SYNACK_SET, sS2): sSR,
        (ORIG, TCP_FIN_SET, sSS): sIV,      # wait for the SYN/ACK first
        (ORIG, TCP_FIN_SET, sFW): sLA,      # FIN seen in both directions
        (ORIG, TCP_ACK_SET, sNO): sES,      # assumed (picked up)
        (ORIG, TCP_ACK_SET, sSS): sIV,      # no SYN/ACK seen yet
        (ORIG, TCP_ACK_SET, sLA): sTW,      # last ACK
        (ORIG, TCP_RST_SET, sNO): sIV,
        (ORIG, TCP_RST_SET, sES): sCL,
        (REPLY, TCP_SYN_SET, sSS): sS2,     # simultaneous open
        (REPLY, TCP_SYN_SET, sTW): sSS,     # reopened, server switched role
        (REPLY, TCP_SYN_SET, sCL): sIV,
        (REPLY, TCP_SYNACK_SET, sSS): sSR,  # standard open
        (REPLY, TCP_SYNACK_SET, sES): sIG,  # late retransmitted SYN/ACK
        (REPLY, TCP_ACK_SET, sSS): sIG,     # might be a half-open connection
        (REPLY, TCP_ACK_SET, sSR): sSR,     # might answer a late resent SYN
        (REPLY, TCP_ACK_SET, sFW): sCW,
        (REPLY, TCP_FIN_SET, sCW): sLA,
    }
    for (d, i, s), want in cells.items():
        assert TCP_CONNTRACKS[d][i][s] == want, (d, i, s)
    for d in (ORIG, REPLY):
        assert all(x == sIV for x in TCP_CONNTRACKS[d][TCP_NONE_SET])
        assert TCP_CONNTRACKS[d][TCP_RST_SET][1:] == (sCL,) * 9


def test_get_conntrack_index_priority() -> None:
    assert get_conntrack_index(RST | SYN | ACK) == TCP_RST_SET
    assert get_conntrack_index(SYN | ACK) == TCP_SYNACK_SET
    assert get_conntrack_index(SYN) == TCP_SYN_SET
    assert get_conntrack_index(FIN | ACK) == TCP_FIN_SET
    assert get_conntrack_index(ACK | PSH) == TCP_ACK_SET
    assert get_conntrack_index(PSH) == TCP_NONE_SET


def test_timeouts_are_the_kernel_defaults() -> None:
    # SYN_SENT 2m, SYN_RECV 60s, ESTABLISHED 5d, FIN_WAIT 2m, CLOSE_WAIT 60s,
    # LAST_ACK 30s, TIME_WAIT 2m, CLOSE 10s, SYN_SENT2 2m, RETRANS 5m, UNACK 5m.
    assert TCP_TIMEOUTS[1:10] == (120, 60, 5 * DAYS, 120, 60, 30, 120, 10, 120)
    assert TCP_TIMEOUTS[12:] == (300, 300)


def handshake(h: Harness, sport: int = 40000) -> None:
    h.send(tcp(A, B, sport, 80, SYN, seq=100))
    h.send(tcp(B, A, 80, sport, SYN | ACK, seq=5000, ack=101))
    h.send(tcp(A, B, sport, 80, ACK, seq=101, ack=5001))


def test_three_way_handshake() -> None:
    h = Harness()
    r = h.send(tcp(A, B, 40000, 80, SYN, seq=100))
    assert (r.ctinfo, h.state(r.ct), h.left(r.ct)) == (IP_CT_NEW, "SYN_SENT", 120)
    assert r.ct is not None and not r.ct.status & IPS_SEEN_REPLY
    r = h.send(tcp(B, A, 80, 40000, SYN | ACK, seq=5000, ack=101))
    assert (r.ctinfo, h.state(r.ct), h.left(r.ct)) == (IP_CT_ESTABLISHED_REPLY, "SYN_RECV", 60)
    assert r.ct is not None and r.ct.status & IPS_SEEN_REPLY and not r.ct.status & IPS_ASSURED
    r = h.send(tcp(A, B, 40000, 80, ACK, seq=101, ack=5001))
    assert (r.ctinfo, h.state(r.ct), h.left(r.ct)) == (IP_CT_ESTABLISHED, "ESTABLISHED", 5 * DAYS)
    assert r.ct is not None and r.ct.status & IPS_ASSURED
    assert len(h.table) == 1


def test_unacknowledged_data_shortens_the_timeout() -> None:
    h = Harness()
    handshake(h)
    r = h.send(tcp(A, B, 40000, 80, ACK | PSH, seq=101, ack=5001, payload=b"hello"))
    assert h.left(r.ct) == 300  # IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED -> UNACK
    r = h.send(tcp(B, A, 80, 40000, ACK, seq=5001, ack=106))
    assert h.left(r.ct) == 5 * DAYS


def test_close_sequence() -> None:
    h = Harness()
    handshake(h)
    steps = [
        (tcp(A, B, 40000, 80, FIN | ACK, seq=101, ack=5001), "FIN_WAIT", 120),
        (tcp(B, A, 80, 40000, ACK, seq=5001, ack=102), "CLOSE_WAIT", 60),
        (tcp(B, A, 80, 40000, FIN | ACK, seq=5001, ack=102), "LAST_ACK", 30),
        (tcp(A, B, 40000, 80, ACK, seq=102, ack=5002), "TIME_WAIT", 120),
    ]
    for pkt, state, left in steps:
        r = h.send(pkt)
        assert r.verdict == NF_ACCEPT and r.ct is not None, r.reason
        assert (h.state(r.ct), h.left(r.ct)) == (state, left)


def test_rst_closes_with_the_close_timeout() -> None:
    h = Harness()
    handshake(h)
    r = h.send(tcp(B, A, 80, 40000, RST | ACK, seq=5001, ack=101))
    assert (h.state(r.ct), h.left(r.ct)) == ("CLOSE", 10)


def test_rst_as_the_only_answer_deletes_the_entry() -> None:
    h = Harness()
    r = h.send(tcp(A, B, 40000, 81, SYN, seq=100))
    ct = r.ct
    r = h.send(tcp(B, A, 81, 40000, RST | ACK, seq=0, ack=101))
    assert r.ct is ct and ct is not None and ct.dying
    assert len(h.table) == 0


def test_retransmitted_syn_does_not_extend_the_entry() -> None:
    h = Harness()
    r = h.send(tcp(A, B, 40000, 80, SYN, seq=100))
    h.tick(50)
    r2 = h.send(tcp(A, B, 40000, 80, SYN, seq=100))
    assert r2.ct is r.ct and r2.ctinfo == IP_CT_NEW
    assert h.left(r2.ct) == 70


def test_simultaneous_open() -> None:
    h = Harness()
    h.send(tcp(A, B, 40000, 5000, SYN, seq=100))
    r = h.send(tcp(B, A, 5000, 40000, SYN, seq=900))
    assert h.state(r.ct) == "SYN_SENT2"
    r = h.send(tcp(A, B, 40000, 5000, SYN | ACK, seq=100, ack=901))
    assert h.state(r.ct) == "SYN_RECV"
    # The reply-side ACK completes it: the SIMULTANEOUS_OPEN flag turns sSR into sES.
    r = h.send(tcp(B, A, 5000, 40000, ACK, seq=901, ack=101))
    assert r.verdict == NF_ACCEPT and r.ct is not None, r.reason
    assert h.state(r.ct) == "ESTABLISHED"


def test_invalid_segments() -> None:
    h = Harness()
    # SYN+FIN is not a valid flag combination (tcp_error).
    r = h.send(tcp(A, B, 40001, 80, SYN | FIN, seq=1))
    assert (r.ct, r.ctinfo, r.reason) == (None, CT_INVALID, "invalid tcp flag combination")
    # A FIN without ACK neither; an ACK+URG is fine.
    assert h.send(tcp(A, B, 40001, 80, FIN, seq=1)).ct is None
    # A lone RST cannot start a connection.
    assert h.send(tcp(A, B, 40001, 80, RST, seq=1)).reason == "invalid new"
    # ACK from the client before the SYN/ACK: sSS -> sIV.
    h.send(tcp(A, B, 40002, 80, SYN, seq=100))
    r = h.send(tcp(A, B, 40002, 80, ACK | URG, seq=101, ack=1))
    assert r.ct is None and "invalid, state SYN_SENT" in r.reason
    assert len(h.table) == 1


def test_checksum_checked_at_prerouting_only() -> None:
    h = Harness()
    bad = tcp(A, B, 40003, 80, SYN, seq=7, bad_csum=True)
    assert h.send(bad).reason == "bad checksum"
    r = h.send(bad, hook=NF_INET_LOCAL_OUT)
    assert r.ctinfo == IP_CT_NEW
    h2 = Harness(checksum=0)
    assert h2.send(bad).ctinfo == IP_CT_NEW


def test_window_tracking_rejects_out_of_window_data_unless_liberal() -> None:
    for liberal, ok in ((0, False), (1, True)):
        h = Harness(tcp_be_liberal=liberal)
        handshake(h)
        # Far beyond what the server's window (64240) allows.
        r = h.send(tcp(A, B, 40000, 80, ACK | PSH, seq=101 + 10_000_000, ack=5001, payload=b"x"))
        assert (r.ct is not None) == ok
        if not ok:
            assert r.reason.startswith("SEQ is over upper bound")
        # Acking data the server never sent.
        r = h.send(tcp(A, B, 40000, 80, ACK, seq=101, ack=5001 + 1_000_000))
        assert (r.ct is not None) == ok


def test_mid_connection_pickup() -> None:
    h = Harness()
    r = h.send(tcp(A, B, 40010, 22, ACK | PSH, seq=777, ack=888, payload=b"data"))
    assert (r.ctinfo, h.state(r.ct)) == (IP_CT_NEW, "ESTABLISHED")
    assert h.left(r.ct) == 300  # not answered yet: UNACK, not five days
    # The answer sets SEEN_REPLY (after the tracker ran); the next valid segment assures.
    r = h.send(tcp(B, A, 22, 40010, ACK, seq=888, ack=781))
    assert r.ct is not None and r.ct.status & IPS_SEEN_REPLY and not r.ct.status & IPS_ASSURED
    r = h.send(tcp(A, B, 40010, 22, ACK, seq=781, ack=888))
    assert r.ct is not None and r.ct.status & IPS_ASSURED
    h2 = Harness(tcp_loose=0)
    assert h2.send(tcp(A, B, 40010, 22, ACK, seq=777, ack=888)).ct is None


def test_reopen_from_time_wait() -> None:
    h = Harness()
    handshake(h)
    for pkt in (tcp(A, B, 40000, 80, FIN | ACK, seq=101, ack=5001), tcp(B, A, 80, 40000, FIN | ACK, seq=5001, ack=102),
                tcp(A, B, 40000, 80, ACK, seq=102, ack=5002)):
        old = h.send(pkt).ct
    assert h.state(old) == "TIME_WAIT"
    # The same 4-tuple again: CLOSE_INIT is set, so the entry is killed and looked up again.
    r = h.send(tcp(A, B, 40000, 80, SYN, seq=90000))
    assert r.ctinfo == IP_CT_NEW and r.ct is not old and h.state(r.ct) == "SYN_SENT"
    assert old is not None and old.dying and len(h.table) == 1


def test_repeated_retransmissions_use_the_retrans_timeout() -> None:
    h = Harness()
    handshake(h)
    pkt = tcp(A, B, 40000, 80, ACK | PSH, seq=101, ack=5001, payload=b"again")
    lefts = [h.left(h.send(pkt).ct) for _ in range(5)]
    assert lefts[0] == 300 and lefts[-1] == 300  # unacked data, then RETRANS (both 5 min)
    # The retransmission counter reached nf_conntrack_tcp_max_retrans: even acked, RETRANS applies.
    r = h.send(tcp(B, A, 80, 40000, ACK, seq=5001, ack=106))
    assert h.left(r.ct) == 5 * DAYS


def test_syn_in_established_is_ignored_and_resyncs_on_the_answer() -> None:
    h = Harness()
    handshake(h)
    # The client restarts with a new ISN: conntrack ignores the SYN (sES -> sIG)...
    r = h.send(tcp(A, B, 40000, 80, SYN, seq=777777))
    assert r.verdict == NF_ACCEPT and r.ctinfo == IP_CT_ESTABLISHED and "ignored" in r.reason
    assert h.state(r.ct) == "ESTABLISHED"
    # ...and the server's SYN/ACK for it proves both ends agree: SYN_RECV from the noted values.
    r = h.send(tcp(B, A, 80, 40000, SYN | ACK, seq=424242, ack=777778))
    assert r.ct is not None and h.state(r.ct) == "SYN_RECV"
