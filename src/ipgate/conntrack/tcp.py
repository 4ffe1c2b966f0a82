"""TCP connection tracking (net/netfilter/nf_conntrack_proto_tcp.c, Linux 6.x).

Theory of operation.  Conntrack is the man in the middle: it sees every
segment but cannot know which ones reach the far end, so it keeps a guess of
the connection's state and checks each segment against it in two steps:

1. The *state table* below, indexed ``[direction][packet kind][state]``,
   says where a segment moves the connection.  The packet kind is
   get_conntrack_index(): RST, else SYN or SYN-ACK, else FIN, else ACK, else
   NONE, in that priority.  Two outcomes are not states: sIV (invalid: the
   segment is marked INVALID and changes nothing) and sIG (ignore: the
   segment may be valid for the endpoints even though it contradicts our
   guess -- a SYN in an old connection, a late SYN-ACK -- so it passes but
   only records what it saw, to resynchronise if the other side agrees).
2. tcp_in_window(), the window tracking of Guido van Rooij's "Real Stateful
   TCP Packet Filtering in IP Filter": per direction the highest sequence
   end seen (td_end), the highest acceptable end (td_maxend) and the largest
   window (td_maxwin); a segment must overlap the receiver's window and ACK
   only data that was seen.  ``nf_conntrack_tcp_be_liberal`` (or a
   picked-up connection) turns failures into passes, except for the state
   machine's own sIV.

The exceptions the table cannot express are handled in tcp_packet() exactly
where nf_conntrack_tcp_packet() handles them: reopening from TIME_WAIT or
CLOSE, the simultaneous-open flag, RFC 5961 challenge ACKs, RST sequence
checks, and the timeout choice (RETRANS after 3 identical retransmissions,
UNACK while data is unacknowledged, CLOSE after RST).

Per-connection state is `ip_ct_tcp` packed into 56 bytes (`Conn.proto`) and
unpacked into `IpCtTcp` for the duration of one segment.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ipgate.conntrack.conn import (
    IP_CT_IS_REPLY,
    IPCT_ASSURED,
    IPCT_PROTOINFO,
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_FIXED_TIMEOUT,
    IPS_SEEN_REPLY,
    NF_ACCEPT,
    NF_DROP,
    NF_INET_PRE_ROUTING,
    NF_REPEAT,
    Conn,
    acct_update,
    refresh_acct,
)
from ipgate.conntrack.sysctl import (
    TCP_CONNTRACK_CLOSE,
    TCP_CONNTRACK_CLOSE_WAIT,
    TCP_CONNTRACK_ESTABLISHED,
    TCP_CONNTRACK_FIN_WAIT,
    TCP_CONNTRACK_IGNORE,
    TCP_CONNTRACK_LAST_ACK,
    TCP_CONNTRACK_MAX,
    TCP_CONNTRACK_NONE,
    TCP_CONNTRACK_RETRANS,
    TCP_CONNTRACK_SYN_RECV,
    TCP_CONNTRACK_SYN_SENT,
    TCP_CONNTRACK_SYN_SENT2,
    TCP_CONNTRACK_TIME_WAIT,
    TCP_CONNTRACK_UNACK,
)
from ipgate.packet.checksum import Buffer as Buf
from ipgate.packet.checksum import l4_checksum_ok

if TYPE_CHECKING:
    from ipgate.conntrack.sysctl import CtSysctl
    from ipgate.conntrack.table import ConntrackTable

TCP_CONNTRACK_NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
                       "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")

sNO = TCP_CONNTRACK_NONE
sSS = TCP_CONNTRACK_SYN_SENT
sSR = TCP_CONNTRACK_SYN_RECV
sES = TCP_CONNTRACK_ESTABLISHED
sFW = TCP_CONNTRACK_FIN_WAIT
sCW = TCP_CONNTRACK_CLOSE_WAIT
sLA = TCP_CONNTRACK_LAST_ACK
sTW = TCP_CONNTRACK_TIME_WAIT
sCL = TCP_CONNTRACK_CLOSE
sS2 = TCP_CONNTRACK_SYN_SENT2
sIV = TCP_CONNTRACK_MAX
sIG = TCP_CONNTRACK_IGNORE

# enum tcp_bit_set: the packet kinds, in get_conntrack_index() order.
TCP_SYN_SET = 0
TCP_SYNACK_SET = 1
TCP_FIN_SET = 2
TCP_ACK_SET = 3
TCP_RST_SET = 4
TCP_NONE_SET = 5

# tcp_conntracks[2][6][TCP_CONNTRACK_MAX], verbatim.  The kernel's comments
# beside each row explain every cell; the notable ones are kept here.
TCP_CONNTRACKS: tuple[tuple[tuple[int, ...], ...], ...] = (
    (   # ORIGINAL
        #  sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
        (sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2),  # syn: new, retransmit, reopen from TW/CL
        (sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR),  # synack: only in simultaneous open
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),  # fin: close starts, or both FINs seen
        (sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV),  # ack: sNO->sES is a picked-up connection
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),  # rst
        (sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV),  # none
    ),
    (   # REPLY
        #  sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
        (sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2),  # syn: simultaneous open; TW reopened by server
        (sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR),  # synack: the normal answer; late ones ignored
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),  # fin
        (sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG),  # ack: in sSS may be a half-open answer
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),  # rst
        (sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV),  # none
    ),
)

# ip_ct_tcp_state.flags (uapi nf_conntrack_tcp.h)
IP_CT_TCP_FLAG_WINDOW_SCALE = 0x01
IP_CT_TCP_FLAG_SACK_PERM = 0x02
IP_CT_TCP_FLAG_CLOSE_INIT = 0x04
IP_CT_TCP_FLAG_BE_LIBERAL = 0x08
IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED = 0x10
IP_CT_TCP_FLAG_MAXACK_SET = 0x20
IP_CT_EXP_CHALLENGE_ACK = 0x40
IP_CT_TCP_SIMULTANEOUS_OPEN = 0x80

TCP_MAX_WSCALE = 14
MAXACKWINCONST = 66000

TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PUSH = 0x08
TH_ACK = 0x10
TH_URG = 0x20
TH_ECE = 0x40
TH_CWR = 0x80

# tcp_valid_flags[]: PUSH, ECE and CWR are always allowed.
TCP_VALID_FLAGS = frozenset((
    TH_SYN, TH_SYN | TH_URG, TH_SYN | TH_ACK, TH_RST, TH_RST | TH_ACK,
    TH_FIN | TH_ACK, TH_FIN | TH_ACK | TH_URG, TH_ACK, TH_ACK | TH_URG,
))

# enum nf_ct_tcp_action
NFCT_TCP_IGNORE = 0
NFCT_TCP_INVALID = 1
NFCT_TCP_ACCEPT = 2

_M32 = 0xFFFFFFFF
_TCPH = struct.Struct("!HHIIHHHH")
# state | seen[0]: end maxend maxwin maxack scale flags | seen[1] | last_dir last_index
# last_seq last_ack last_end last_win last_wscale last_flags retrans
_PACK = struct.Struct("<BIIIIBBIIIIBBBBIIIHBBB")
PACKED_SIZE = _PACK.size


def before(a: int, b: int) -> bool:
    """before(seq1, seq2): (s32)(seq1 - seq2) < 0."""
    return ((a - b) & _M32) >= 0x80000000


def after(a: int, b: int) -> bool:
    return ((b - a) & _M32) >= 0x80000000


class IpCtTcpState:
    """struct ip_ct_tcp_state: what one direction has shown."""

    __slots__ = ("td_end", "td_maxend", "td_maxwin", "td_maxack", "td_scale", "flags")

    def __init__(self, td_end: int = 0, td_maxend: int = 0, td_maxwin: int = 0, td_maxack: int = 0,
                 td_scale: int = 0, flags: int = 0) -> None:
        self.td_end = td_end        # max of seq + len
        self.td_maxend = td_maxend  # max of ack + max(win, 1)
        self.td_maxwin = td_maxwin  # max(win)
        self.td_maxack = td_maxack  # max of ack
        self.td_scale = td_scale    # window scale factor
        self.flags = flags


class IpCtTcp:
    """struct ip_ct_tcp, the working copy of `Conn.proto` for one segment."""

    __slots__ = ("state", "seen", "last_dir", "last_index", "last_seq", "last_ack", "last_end", "last_win",
                 "last_wscale", "last_flags", "retrans")

    def __init__(self) -> None:
        self.state = TCP_CONNTRACK_NONE
        self.seen = (IpCtTcpState(), IpCtTcpState())
        self.last_dir = 0
        self.last_index = 0
        self.last_seq = 0
        self.last_ack = 0
        self.last_end = 0
        self.last_win = 0
        self.last_wscale = 0
        self.last_flags = 0
        self.retrans = 0

    @classmethod
    def load(cls, data: bytes) -> IpCtTcp:
        v = _PACK.unpack(data)
        t = cls.__new__(cls)
        t.state = v[0]
        t.seen = (IpCtTcpState(*v[1:7]), IpCtTcpState(*v[7:13]))
        (t.last_dir, t.last_index, t.last_seq, t.last_ack, t.last_end, t.last_win, t.last_wscale,
         t.last_flags, t.retrans) = v[13:]
        return t

    def dump(self) -> bytes:
        a, b = self.seen
        return _PACK.pack(self.state, a.td_end, a.td_maxend, a.td_maxwin, a.td_maxack, a.td_scale, a.flags,
                          b.td_end, b.td_maxend, b.td_maxwin, b.td_maxack, b.td_scale, b.flags,
                          self.last_dir, self.last_index, self.last_seq & _M32, self.last_ack & _M32,
                          self.last_end & _M32, self.last_win, self.last_wscale, self.last_flags,
                          min(self.retrans, 255))


def tcp_state_of(ct: Conn) -> IpCtTcp:
    """The unpacked TCP state of a connection (a fresh zeroed one if none yet)."""
    p = ct.proto
    return IpCtTcp.load(p) if isinstance(p, bytes) else IpCtTcp()


def seen_td_end(ct: Conn, direction: int) -> int:
    """ct->proto.tcp.seen[dir].td_end without unpacking everything (used by NAT)."""
    p = ct.proto
    if not isinstance(p, bytes):
        return 0
    off = 1 if direction == 0 else 19
    return int.from_bytes(p[off:off + 4], "little")


def get_conntrack_index(flags: int) -> int:
    """get_conntrack_index(): RST > SYN(-ACK) > FIN > ACK > NONE."""
    if flags & TH_RST:
        return TCP_RST_SET
    if flags & TH_SYN:
        return TCP_SYNACK_SET if flags & TH_ACK else TCP_SYN_SET
    if flags & TH_FIN:
        return TCP_FIN_SET
    if flags & TH_ACK:
        return TCP_ACK_SET
    return TCP_NONE_SET


class TcpSeg:
    """The parts of one segment the tracker reads (what skb_header_pointer would give)."""

    __slots__ = ("seq", "ack_seq", "window", "doff", "flags", "tcplen", "pkt", "dataoff", "skblen", "end")
    seq: int
    ack_seq: int
    window: int
    doff: int
    flags: int
    end: int  # segment_seq_plus_len(): seq + payload + SYN + FIN

    def __init__(self, pkt: Buf, dataoff: int, tcplen: int, skblen: int) -> None:
        _sp, _dp, self.seq, self.ack_seq, off_flags, self.window, _ck, _urg = _TCPH.unpack_from(pkt, dataoff)
        self.doff = off_flags >> 12
        self.flags = off_flags & 0xFF
        self.tcplen = tcplen
        self.pkt = pkt
        self.dataoff = dataoff
        self.skblen = skblen
        f = self.flags
        self.end = (self.seq + tcplen - self.doff * 4 + (f & TH_SYN) // TH_SYN + (f & TH_FIN)) & _M32

    def options(self) -> bytes:
        return bytes(memoryview(self.pkt)[self.dataoff + 20:self.dataoff + self.doff * 4])


def tcp_options(th: TcpSeg, state: IpCtTcpState) -> None:
    """tcp_options(): window scale and SACK-permitted from a SYN's options."""
    opts = th.options()
    length = len(opts)
    if not length:
        return
    state.td_scale = 0
    state.flags &= IP_CT_TCP_FLAG_BE_LIBERAL
    i = 0
    while length > 0:
        opcode = opts[i]
        i += 1
        if opcode == 0:  # TCPOPT_EOL
            return
        if opcode == 1:  # TCPOPT_NOP
            length -= 1
            continue
        if length < 2:
            return
        opsize = opts[i]
        i += 1
        if opsize < 2 or opsize > length:  # silly or partial options
            return
        if opcode == 4 and opsize == 2:  # TCPOPT_SACK_PERM
            state.flags |= IP_CT_TCP_FLAG_SACK_PERM
        elif opcode == 3 and opsize == 3:  # TCPOPT_WINDOW
            state.td_scale = min(opts[i], TCP_MAX_WSCALE)
            state.flags |= IP_CT_TCP_FLAG_WINDOW_SCALE
        i += opsize - 2
        length -= opsize


def tcp_sack(th: TcpSeg, sack: int) -> int:
    """tcp_sack(): the highest right edge of the SACK blocks, if above `sack`."""
    opts = th.options()
    length = len(opts)
    if not length:
        return sack
    # Fast path for the timestamp-only option (NOP NOP TIMESTAMP 10).
    if length == 12 and opts[:4] == b"\x01\x01\x08\x0a":
        return sack
    i = 0
    while length > 0:
        opcode = opts[i]
        i += 1
        if opcode == 0:
            return sack
        if opcode == 1:
            length -= 1
            continue
        if length < 2:
            return sack
        opsize = opts[i]
        i += 1
        if opsize < 2 or opsize > length:
            return sack
        if opcode == 5 and opsize >= 10 and (opsize - 2) % 8 == 0:  # TCPOPT_SACK
            for b in range(0, opsize - 2, 8):
                tmp = int.from_bytes(opts[i + b + 4:i + b + 8], "big")
                if after(tmp, sack):
                    sack = tmp
            return sack
        i += opsize - 2
        length -= opsize
    return sack


def tcp_init_sender(sender: IpCtTcpState, receiver: IpCtTcpState, th: TcpSeg, end: int, win: int,
                    direction: int) -> None:
    """tcp_init_sender(): a SYN-ACK, or a SYN from the reply side, starts a direction."""
    sender.td_end = sender.td_maxend = end
    sender.td_maxwin = 1 if win == 0 else win
    tcp_options(th, sender)
    # RFC 1323: scaling applies only when both sides offered it.
    if direction == 1 and not (sender.flags & IP_CT_TCP_FLAG_WINDOW_SCALE
                               and receiver.flags & IP_CT_TCP_FLAG_WINDOW_SCALE):
        sender.td_scale = 0
        receiver.td_scale = 0


def _log_invalid(table: ConntrackTable, sender: IpCtTcpState, ret: int, msg: str) -> tuple[int, str]:
    """nf_tcp_log_invalid(): liberal senders (or the sysctl) pass anyway."""
    if sender.flags & IP_CT_TCP_FLAG_BE_LIBERAL or table.sysctl.tcp_be_liberal:
        return NFCT_TCP_ACCEPT, ""
    return ret, msg


def tcp_in_window(table: ConntrackTable, st: IpCtTcp, direction: int, index: int,
                  th: TcpSeg, ct: Conn | None = None) -> tuple[int, str]:
    """tcp_in_window(): the four bounds of window tracking (see the module docstring).

    before(a, b) is written inline as ``(a - b) & M >= H`` and after(a, b) as
    ``(b - a) & M >= H`` (sequence space arithmetic), this being the hot path.
    """
    M = _M32
    H = 0x80000000
    sender = st.seen[direction]
    receiver = st.seen[1 - direction]
    seq = th.seq
    ack = sack = th.ack_seq
    win_raw = th.window
    win = win_raw
    end = th.end
    flags = th.flags

    if receiver.flags & IP_CT_TCP_FLAG_SACK_PERM and th.doff > 5:
        sack = tcp_sack(th, sack)
    # NAT helpers moved the other side's data: take their offset off the ACK and SACK (nf_ct_seq_offset)
    adj = ct.ext.seqadj if ct is not None and ct.ext is not None else None
    if adj is not None:
        off = adj.offset(1 - direction, (ack - 1) & M)
        ack = (ack - off) & M
        sack = (sack - off) & M

    if sender.td_maxwin == 0:
        # Initialize sender data.
        if flags & TH_SYN:
            tcp_init_sender(sender, receiver, th, end, win, direction)
            if not flags & TH_ACK:
                return NFCT_TCP_ACCEPT, ""  # simultaneous open
        else:
            # Mid-connection: history lost, take what the packet says.
            sender.td_end = end
            swin = (win << sender.td_scale) & M
            sender.td_maxwin = 1 if swin == 0 else swin
            sender.td_maxend = (end + sender.td_maxwin) & M
            if receiver.td_maxwin == 0:
                # Nothing seen the other way yet: let III and IV pass until then.
                receiver.td_end = receiver.td_maxend = sack
            elif sack == (receiver.td_end + 1) & M:
                receiver.td_end = (receiver.td_end + 1) & M  # likely a keepalive answer
    elif (flags & TH_SYN and (sender.td_end - end) & M >= H
          and st.state in (TCP_CONNTRACK_SYN_SENT, TCP_CONNTRACK_SYN_RECV)):
        # RFC 793: a reinitialised TCP may reuse the connection with higher sequence numbers.
        tcp_init_sender(sender, receiver, th, end, win, direction)
        if direction == 1 and not flags & TH_ACK:
            return NFCT_TCP_ACCEPT, ""

    if not flags & TH_ACK:
        ack = sack = receiver.td_end  # no ACK: pretend it acks everything seen
    elif flags & (TH_ACK | TH_RST) == TH_ACK | TH_RST and ack == 0:
        ack = sack = receiver.td_end  # broken stacks set ACK in RST with ack 0

    if flags & TH_RST and seq == 0 and st.state == TCP_CONNTRACK_SYN_SENT:
        seq = end = sender.td_end  # RST answering a SYN

    maxackwin = sender.td_maxwin if sender.td_maxwin > MAXACKWINCONST else MAXACKWINCONST
    r_end = receiver.td_end
    if (seq - sender.td_maxend - 1) & M < H:  # I: !before(seq, td_maxend + 1)
        overshot = (end - sender.td_maxend + 1) & M
        ack_ok = (r_end - maxackwin - 1 - sack) & M >= H
        in_recv_win = bool(receiver.td_maxwin) and (sender.td_end - receiver.td_maxwin - 1 - end) & M >= H
        if in_recv_win and ack_ok and overshot <= receiver.td_maxwin and (sack - r_end - 1) & M >= H:
            # The peer may ack data sent beyond its window: keep td_end in step.
            sender.td_end = end
            sender.flags |= IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
            return _log_invalid(table, sender, NFCT_TCP_IGNORE, f"{overshot} bytes more than expected")
        return _log_invalid(table, sender, NFCT_TCP_INVALID,
                            f"SEQ is over upper bound {(sender.td_maxend + 1) & M} "
                            "(over the window of the receiver)")

    if (sack - r_end - 1) & M < H:  # III: !before(sack, receiver.td_end + 1)
        return _log_invalid(table, sender, NFCT_TCP_INVALID,
                            f"ACK is over upper bound {(r_end + 1) & M} (ACKed data not seen yet)")

    # II: is the ending sequence in the receive window (if available)?
    if receiver.td_maxwin and (sender.td_end - receiver.td_maxwin - 1 - end) & M < H:
        return _log_invalid(table, sender, NFCT_TCP_IGNORE,
                            f"SEQ is under lower bound {(sender.td_end - receiver.td_maxwin - 1) & M} "
                            "(already ACKed data retransmitted)")
    if (r_end - maxackwin - 1 - sack) & M < H:  # IV: !after(sack, td_end - MAXACKWINDOW - 1)
        return _log_invalid(table, sender, NFCT_TCP_IGNORE,
                            f"ignored ACK under lower bound {(r_end - maxackwin - 1) & M} "
                            "(possible overly delayed)")

    if not flags & TH_SYN:
        win = (win << sender.td_scale) & M  # RFC 1323 scaling

    # Update sender data.
    swin = (win + ((sack - ack) & M)) & M
    if sender.td_maxwin < swin:
        sender.td_maxwin = swin
    if (sender.td_end - end) & M >= H:  # after(end, td_end)
        sender.td_end = end
        sender.flags |= IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
    if flags & TH_ACK:
        if not sender.flags & IP_CT_TCP_FLAG_MAXACK_SET:
            sender.td_maxack = ack
            sender.flags |= IP_CT_TCP_FLAG_MAXACK_SET
        elif (sender.td_maxack - ack) & M >= H:
            sender.td_maxack = ack

    # Update receiver data.
    if receiver.td_maxwin != 0 and (sender.td_maxend - end) & M >= H:
        receiver.td_maxwin = (receiver.td_maxwin + ((end - sender.td_maxend) & M)) & M
    if (receiver.td_maxend - 1 - sack - win) & M >= H:  # after(sack + win, td_maxend - 1)
        receiver.td_maxend = (sack + win) & M
        if win == 0:
            receiver.td_maxend = (receiver.td_maxend + 1) & M
    if ack == receiver.td_end:
        receiver.flags &= ~IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED

    # Check retransmissions.
    if index == TCP_ACK_SET:
        if (st.last_dir == direction and st.last_seq == seq and st.last_ack == ack
                and st.last_end == end and st.last_win == win_raw):
            st.retrans += 1
        else:
            st.last_dir = direction
            st.last_seq = seq
            st.last_ack = ack
            st.last_end = end
            st.last_win = win_raw
            st.retrans = 0
    return NFCT_TCP_ACCEPT, ""


def _handle_invalid(table: ConntrackTable, ct: Conn, st: IpCtTcp, direction: int, index: int,
                    now: float) -> None:
    """nf_tcp_handle_invalid(): out-of-window FIN/RST answered by FIN/RST shortens an assured entry."""
    if not ct.status & IPS_ASSURED or ct.status & IPS_FIXED_TIMEOUT:
        return
    if index not in (TCP_RST_SET, TCP_FIN_SET):
        return
    if st.last_dir != direction and st.last_index in (TCP_FIN_SET, TCP_RST_SET):
        expires = ct.expires(now)
        if expires < 120:
            return
        timeout = table.sysctl.tcp_timeouts[TCP_CONNTRACK_UNACK]
        if expires > timeout:
            ct.timeout = timeout + now
    else:
        st.last_index = index
        st.last_dir = direction


def tcp_error(th: TcpSeg, hook: int, checksum: bool) -> str:
    """tcp_error(): a reason if the segment is malformed, else ''."""
    if th.doff * 4 < 20 or th.tcplen < th.doff * 4:
        return "truncated packet"
    if checksum and hook == NF_INET_PRE_ROUTING and not l4_checksum_ok(th.pkt, th.dataoff, th.tcplen, 6):
        return "bad checksum"
    if th.flags & ~(TH_ECE | TH_CWR | TH_PUSH) not in TCP_VALID_FLAGS:
        return "invalid tcp flag combination"
    return ""


def tcp_new(table: ConntrackTable, th: TcpSeg) -> tuple[IpCtTcp | None, str]:
    """tcp_new(): the first segment of an unconfirmed entry; None if it cannot start one."""
    new_state = TCP_CONNTRACKS[0][get_conntrack_index(th.flags)][TCP_CONNTRACK_NONE]
    if new_state >= TCP_CONNTRACK_MAX:
        return None, "invalid new"
    st = IpCtTcp()
    s0 = st.seen[0]
    s0.td_end = th.end
    s0.td_maxwin = th.window or 1
    if new_state == TCP_CONNTRACK_SYN_SENT:
        s0.td_maxend = s0.td_end
        tcp_options(th, s0)
    elif not table.sysctl.tcp_loose:
        return None, "nf_conntrack_tcp_loose=0: not picking up"
    else:
        # Picked up mid-connection: assume SACK and be liberal (window scale unknown).
        s0.td_maxend = (s0.td_end + s0.td_maxwin) & _M32
        s0.flags = st.seen[1].flags = IP_CT_TCP_FLAG_SACK_PERM | IP_CT_TCP_FLAG_BE_LIBERAL
    st.last_index = TCP_NONE_SET
    return st, ""


def tcp_can_early_drop(ct: Conn) -> bool:
    """tcp_can_early_drop(): closing connections may go under table pressure."""
    return ct.tcp_state in (TCP_CONNTRACK_FIN_WAIT, TCP_CONNTRACK_LAST_ACK, TCP_CONNTRACK_TIME_WAIT,
                            TCP_CONNTRACK_CLOSE, TCP_CONNTRACK_CLOSE_WAIT)


def nf_conntrack_tcp_established(ct: Conn) -> bool:
    return ct.tcp_state == TCP_CONNTRACK_ESTABLISHED and bool(ct.status & IPS_ASSURED)


def tcp_packet(table: ConntrackTable, ct: Conn, th: TcpSeg, ctinfo: int, now: float,
               hook: int, csum: bool) -> tuple[int, str]:
    """nf_conntrack_tcp_packet(): (verdict, reason).

    Verdicts as the kernel's: NF_ACCEPT, -NF_ACCEPT (invalid: passes untracked,
    ``--ctstate INVALID``), NF_DROP, -NF_REPEAT (entry killed to reopen: look up again).
    `csum`: verify the checksum (nf_conntrack_checksum set, and the checksum not known good).
    """
    sysctl = table.sysctl
    err = tcp_error(th, hook, csum)
    if err:
        return -NF_ACCEPT, err

    if not ct.status & IPS_CONFIRMED and ct.proto is None:
        st0, err = tcp_new(table, th)
        if st0 is None:
            return -NF_ACCEPT, err
        st = st0
    else:
        st = IpCtTcp.load(ct.proto)

    old_state = st.state
    direction = 1 if ctinfo >= IP_CT_IS_REPLY else 0
    index = get_conntrack_index(th.flags)
    new_state = TCP_CONNTRACKS[direction][index][old_state]
    seen = st.seen
    skip_window = False

    if new_state == TCP_CONNTRACK_SYN_SENT and old_state >= TCP_CONNTRACK_TIME_WAIT:
        # RFC 1122: a SYN may reopen a connection in TIME_WAIT; also an aborted
        # connection the client restarts.  Kill this entry and look up again.
        if ((seen[direction].flags | seen[1 - direction].flags) & IP_CT_TCP_FLAG_CLOSE_INIT
                or (st.last_dir == direction and st.last_index == TCP_RST_SET)):
            ct.proto = st.dump()
            if table.kill(ct, now):
                return -NF_REPEAT, "reopen"
            return NF_DROP, "reopen"
        new_state = TCP_CONNTRACK_IGNORE  # falls through to the ignore case
    if new_state == TCP_CONNTRACK_SYN_SENT and old_state < TCP_CONNTRACK_TIME_WAIT:
        pass
    elif new_state == TCP_CONNTRACK_IGNORE:
        if (index == TCP_SYNACK_SET and st.last_index == TCP_SYN_SET and st.last_dir != direction
                and th.ack_seq == st.last_end):
            # b) This SYN-ACK answers a SYN we ignored: the endpoints agree, resync to them.
            old_state = TCP_CONNTRACK_SYN_SENT
            new_state = TCP_CONNTRACK_SYN_RECV
            ld = seen[st.last_dir]
            ld.td_end = st.last_end
            ld.td_maxend = st.last_end
            ld.td_maxwin = 1 if st.last_win == 0 else st.last_win
            ld.td_scale = st.last_wscale
            st.last_flags &= ~IP_CT_EXP_CHALLENGE_ACK
            ld.flags = st.last_flags
            sd = seen[direction]
            sd.td_end = sd.td_maxend = sd.td_maxwin = sd.td_maxack = sd.td_scale = 0
            sd.flags &= IP_CT_TCP_FLAG_BE_LIBERAL
        else:
            st.last_index = index
            st.last_dir = direction
            st.last_seq = th.seq
            st.last_end = th.end
            st.last_win = th.window
            if index == TCP_SYN_SET and direction == 0:
                # a) A SYN in ORIGINAL: note its options in case the server answers it.
                s = IpCtTcpState()
                st.last_flags = st.last_wscale = 0
                tcp_options(th, s)
                if s.flags & IP_CT_TCP_FLAG_WINDOW_SCALE:
                    st.last_flags |= IP_CT_TCP_FLAG_WINDOW_SCALE
                    st.last_wscale = s.td_scale
                if s.flags & IP_CT_TCP_FLAG_SACK_PERM:
                    st.last_flags |= IP_CT_TCP_FLAG_SACK_PERM
                # A later ACK may be an RFC 5961 challenge ACK, not the last ACK.
                if old_state == TCP_CONNTRACK_LAST_ACK:
                    st.last_flags |= IP_CT_EXP_CHALLENGE_ACK
            if old_state == TCP_CONNTRACK_SYN_SENT and index == TCP_ACK_SET and direction == 1:
                st.last_ack = th.ack_seq  # possible challenge ACK answering the SYN
            ct.proto = st.dump()
            return NF_ACCEPT, f"packet (index {index}) in dir {direction} ignored, " \
                              f"state {TCP_CONNTRACK_NAMES[old_state]}"
    elif new_state == TCP_CONNTRACK_MAX:
        ct.proto = st.dump()
        return -NF_ACCEPT, f"packet (index {index}) in dir {direction} invalid, " \
                           f"state {TCP_CONNTRACK_NAMES[old_state]}"
    elif new_state == TCP_CONNTRACK_TIME_WAIT:
        if (old_state == TCP_CONNTRACK_LAST_ACK and index == TCP_ACK_SET and st.last_dir != direction
                and st.last_index == TCP_SYN_SET and st.last_flags & IP_CT_EXP_CHALLENGE_ACK):
            st.last_flags &= ~IP_CT_EXP_CHALLENGE_ACK  # RFC 5961 challenge ACK, not the last ACK
            ct.proto = st.dump()
            return NF_ACCEPT, "challenge-ack ignored"
    elif new_state == TCP_CONNTRACK_SYN_SENT2:
        st.last_flags |= IP_CT_TCP_SIMULTANEOUS_OPEN  # the table cannot follow simultaneous open
    elif new_state == TCP_CONNTRACK_SYN_RECV:
        if direction == 1 and index == TCP_ACK_SET and st.last_flags & IP_CT_TCP_SIMULTANEOUS_OPEN:
            new_state = TCP_CONNTRACK_ESTABLISHED
    elif new_state == TCP_CONNTRACK_CLOSE and index == TCP_RST_SET:
        skip_window, new_state, reason = _rst_checks(table, ct, st, direction, old_state, new_state, th)
        if reason:
            ct.proto = st.dump()
            return -NF_ACCEPT, reason

    if not skip_window:
        res, reason = tcp_in_window(table, st, direction, index, th, ct)
        if res == NFCT_TCP_IGNORE:
            ct.proto = st.dump()
            return NF_ACCEPT, reason
        if res == NFCT_TCP_INVALID:
            _handle_invalid(table, ct, st, direction, index, now)
            ct.proto = st.dump()
            return -NF_ACCEPT, reason

    # From now on we have got in-window packets.
    st.last_index = index
    st.last_dir = direction
    st.state = new_state
    if old_state != new_state and new_state == TCP_CONNTRACK_FIN_WAIT:
        seen[direction].flags |= IP_CT_TCP_FLAG_CLOSE_INIT

    timeout = _timeout(sysctl, new_state, st.retrans, index == TCP_RST_SET,
                       bool((seen[0].flags | seen[1].flags) & IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED),
                       st.last_win == 0)
    ct.proto = st.dump()

    if new_state != old_state:
        table.event(IPCT_PROTOINFO, ct)

    if not ct.status & IPS_SEEN_REPLY:
        if th.flags & TH_RST:
            # The only answer is a RST: not a connection worth keeping.
            acct_update(ct, ctinfo, th.skblen)
            table.kill(ct, now)
            return NF_ACCEPT, ""
        if index == TCP_SYN_SET and old_state == TCP_CONNTRACK_SYN_SENT:
            return NF_ACCEPT, ""  # SYN retransmits do not extend the entry's life
        if new_state == TCP_CONNTRACK_ESTABLISHED and timeout > sysctl.tcp_timeouts[TCP_CONNTRACK_UNACK]:
            timeout = sysctl.tcp_timeouts[TCP_CONNTRACK_UNACK]  # picked up, not answered yet
    elif (not ct.status & IPS_ASSURED and old_state in (TCP_CONNTRACK_SYN_RECV, TCP_CONNTRACK_ESTABLISHED)
          and new_state == TCP_CONNTRACK_ESTABLISHED):
        ct.set_status(IPS_ASSURED)
        table.event(IPCT_ASSURED, ct)
    refresh_acct(ct, ctinfo, th.skblen, timeout, now)
    return NF_ACCEPT, ""


def tcp_ack_fast(table: ConntrackTable, ct: Conn, pkt: Buf, dataoff: int, skblen: int, direction: int,
                 now: float) -> bool:
    """nf_conntrack_tcp_packet() for its most common segment, on the packed state: an ACK (PSH, URG, ECE,
    CWR allowed) in ESTABLISHED, in window, of an assured connection without sequence adjustment.

    The caller has run tcp_error()'s checks (length, checksum, flags).  Returns False and changes nothing
    for any other segment, or one that fails a window bound: tcp_packet() then decides.  Same arithmetic as
    tcp_in_window() and the end of tcp_packet(), on the fields `_PACK` unpacks to: state, seen[0] and
    seen[1] (td_end, td_maxend, td_maxwin, td_maxack, td_scale, flags), last_dir, last_index, last_seq,
    last_ack, last_end, last_win, last_wscale, last_flags, retrans.
    """
    _sp, _dp, seq, ack, off_flags, win_raw, _ck, _urg = _TCPH.unpack_from(pkt, dataoff)
    doff = off_flags >> 12
    if (off_flags & (TH_SYN | TH_RST | TH_FIN | TH_ACK) != TH_ACK or doff < 5 or skblen - dataoff < doff * 4
            or (ct.ext is not None and ct.ext.seqadj is not None) or not isinstance(ct.proto, bytes)):
        return False
    (state, e0, me0, mw0, ma0, sc0, f0, e1, me1, mw1, ma1, sc1, f1,
     ldir, _lidx, lseq, lack, lend, lwin, lws, lflags, retrans) = _PACK.unpack(ct.proto)
    if direction == 0:
        s_end, s_maxend, s_maxwin, s_maxack, s_scale, s_flags = e0, me0, mw0, ma0, sc0, f0
        r_end, r_maxend, r_maxwin, r_flags = e1, me1, mw1, f1
    else:
        s_end, s_maxend, s_maxwin, s_maxack, s_scale, s_flags = e1, me1, mw1, ma1, sc1, f1
        r_end, r_maxend, r_maxwin, r_flags = e0, me0, mw0, f0
    if state != TCP_CONNTRACK_ESTABLISHED or not s_maxwin:  # sender.td_maxwin == 0: picked up, see tcp_in_window
        return False
    M = _M32
    H = 0x80000000
    end = (seq + skblen - dataoff - doff * 4) & M
    sack = ack
    if r_flags & IP_CT_TCP_FLAG_SACK_PERM and doff > 5 and not (
            doff == 8 and pkt[dataoff + 20:dataoff + 24] == b"\x01\x01\x08\x0a"):  # timestamps alone: no SACK
        sack = tcp_sack(TcpSeg(pkt, dataoff, skblen - dataoff, skblen), ack)
    maxackwin = s_maxwin if s_maxwin > MAXACKWINCONST else MAXACKWINCONST
    if ((seq - s_maxend - 1) & M < H or (sack - r_end - 1) & M < H  # I and III
            or (r_maxwin and (s_end - r_maxwin - 1 - end) & M < H)  # II
            or (r_end - maxackwin - 1 - sack) & M < H):  # IV
        return False
    win = (win_raw << s_scale) & M
    swin = (win + ((sack - ack) & M)) & M
    if s_maxwin < swin:
        s_maxwin = swin
    if (s_end - end) & M >= H:
        s_end = end
        s_flags |= IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
    if not s_flags & IP_CT_TCP_FLAG_MAXACK_SET:
        s_maxack = ack
        s_flags |= IP_CT_TCP_FLAG_MAXACK_SET
    elif (s_maxack - ack) & M >= H:
        s_maxack = ack
    if r_maxwin != 0 and (s_maxend - end) & M >= H:
        r_maxwin = (r_maxwin + ((end - s_maxend) & M)) & M
    if (r_maxend - 1 - sack - win) & M >= H:
        r_maxend = (sack + win + (win == 0)) & M
    if ack == r_end:
        r_flags &= ~IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
    if ldir == direction and lseq == seq and lack == ack and lend == end and lwin == win_raw:
        retrans = min(retrans + 1, 255)
    else:
        ldir, lseq, lack, lend, lwin, retrans = direction, seq, ack, end, win_raw, 0
    if direction == 0:
        ct.proto = _PACK.pack(state, s_end, s_maxend, s_maxwin, s_maxack, s_scale, s_flags,
                              r_end, r_maxend, r_maxwin, ma1, sc1, r_flags,
                              ldir, TCP_ACK_SET, lseq, lack, lend, lwin, lws, lflags, retrans)
    else:
        ct.proto = _PACK.pack(state, r_end, r_maxend, r_maxwin, ma0, sc0, r_flags,
                              s_end, s_maxend, s_maxwin, s_maxack, s_scale, s_flags,
                              ldir, TCP_ACK_SET, lseq, lack, lend, lwin, lws, lflags, retrans)
    timeout = _timeout(table.sysctl, TCP_CONNTRACK_ESTABLISHED, retrans, False,
                       bool((s_flags | r_flags) & IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED), win_raw == 0)
    refresh_acct(ct, IP_CT_IS_REPLY if direction else 0, skblen, timeout, now)
    return True


def _timeout(sysctl: CtSysctl, state: int, retrans: int, rst: bool, unacked: bool, zero_window: bool) -> float:
    """nf_conntrack_tcp_packet()'s choice of timeout for a segment in window that leaves `state`."""
    timeouts = sysctl.tcp_timeouts
    t: float = timeouts[state]
    if retrans >= sysctl.tcp_max_retrans and t > timeouts[TCP_CONNTRACK_RETRANS]:
        return timeouts[TCP_CONNTRACK_RETRANS]
    if rst:
        return timeouts[TCP_CONNTRACK_CLOSE]
    if unacked and t > timeouts[TCP_CONNTRACK_UNACK]:
        return timeouts[TCP_CONNTRACK_UNACK]
    if zero_window and t > timeouts[TCP_CONNTRACK_RETRANS]:
        return timeouts[TCP_CONNTRACK_RETRANS]
    return t


def _rst_checks(table: ConntrackTable, ct: Conn, st: IpCtTcp, direction: int, old_state: int, new_state: int,
                th: TcpSeg) -> tuple[bool, int, str]:
    """The TCP_CONNTRACK_CLOSE case for RST: (skip window check, new state, invalid reason)."""
    # Closing already: the tuple may have been reused, skip the checks.
    if tcp_can_early_drop(ct):
        return True, new_state, ""
    other = st.seen[1 - direction]
    if other.flags & IP_CT_TCP_FLAG_MAXACK_SET and st.last_index != TCP_SYN_SET:
        seq = th.seq
        if seq == 0 and not nf_conntrack_tcp_established(ct):
            return False, new_state, ""  # answers a SYN we let through
        if before(seq, other.td_maxack) and not table.sysctl.tcp_ignore_invalid_rst:
            return False, new_state, "invalid rst"
        if not nf_conntrack_tcp_established(ct) or seq == other.td_maxack:
            return False, new_state, ""
        if st.last_index == TCP_ACK_SET and st.last_dir == direction and seq == st.last_end:
            return False, new_state, ""  # RST closing a data train
        new_state = old_state  # inexact RST: keep the state for a possible challenge ACK
    if (((ct.status & IPS_SEEN_REPLY and st.last_index == TCP_SYN_SET)
         or (not ct.status & IPS_ASSURED and st.last_index == TCP_ACK_SET))
            and th.ack_seq == st.last_end):
        # RST to a SYN or ACK we let through at a) or c): delete, skip the window check.
        return True, new_state, ""
    if (old_state == TCP_CONNTRACK_SYN_SENT and st.last_index == TCP_ACK_SET and st.last_dir == 1
            and th.seq == st.last_ack):
        return True, new_state, ""  # reset answering a challenge ACK we let through
    return False, new_state, ""
