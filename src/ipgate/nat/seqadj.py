"""TCP sequence adjustment after a NAT helper resized a payload (nf_conntrack_seqadj.c).

When nf_nat_ftp rewrites ``PORT 192,0,2,10,4,1`` into a longer or shorter
text, every later byte of that direction moves: the sender's sequence numbers
must be shifted by the difference, and the other side's acknowledgements (and
SACK blocks) shifted back, for the rest of the connection.  Per direction the
kernel keeps one correction point and the offsets before and after it
(struct nf_ct_seqadj): a retransmission of data sent before the last resize
still gets the old offset.

The state hangs off the connection (``ct.ext.seqadj``), so the TCP tracker
can read `SeqAdj.offset` (nf_ct_seq_offset) through it without importing
this module (``ipgate.nat`` imports the table: an import cycle).
"""

from __future__ import annotations

import struct

from ipgate.conntrack.conn import IPS_SEQ_ADJUST, Conn, ctinfo2dir
from ipgate.packet.checksum import csum_replace4

_M32 = 0xFFFFFFFF
_H = 0x80000000
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U32X2 = struct.Struct("!II")

TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_SACK = 5
TCPOLEN_SACK_PERBLOCK = 8
_TH_ACK = 0x10


def after(seq1: int, seq2: int) -> bool:
    """after(): seq1 is later than seq2 in sequence space."""
    return (seq2 - seq1) & _M32 >= _H


class SeqAdjDir:
    """struct nf_ct_seqadj: one direction's correction point and offsets."""

    __slots__ = ("correction_pos", "offset_before", "offset_after")

    def __init__(self) -> None:
        self.correction_pos = 0
        self.offset_before = 0
        self.offset_after = 0

    def offset(self, seq: int) -> int:
        """The offset for a sequence number of this direction."""
        return self.offset_after if after(seq, self.correction_pos) else self.offset_before

    def __repr__(self) -> str:
        return f"<SeqAdjDir pos={self.correction_pos} before={self.offset_before} after={self.offset_after}>"


class SeqAdj:
    """struct nf_conn_seqadj: both directions (index: IP_CT_DIR_*)."""

    __slots__ = ("seq",)

    def __init__(self) -> None:
        self.seq = (SeqAdjDir(), SeqAdjDir())

    def offset(self, direction: int, seq: int) -> int:
        """nf_ct_seq_offset(): how far `direction`'s data at `seq` has moved.

        The TCP tracker subtracts ``offset(!dir, ack - 1)`` from a packet's
        ACK and SACK edge before its window checks (tcp_in_window()).
        """
        return self.seq[direction].offset(seq)


def _seqadj(ct: Conn) -> SeqAdj:
    ext = ct.get_ext()
    if ext.seqadj is None:
        ext.seqadj = SeqAdj()  # nfct_seqadj_ext_add()
    return ext.seqadj


def nf_ct_seqadj_init(ct: Conn, ctinfo: int, off: int) -> None:
    """nf_ct_seqadj_init(): a fixed offset from the start (synproxy's use)."""
    if off == 0:
        return
    ct.set_status(IPS_SEQ_ADJUST)
    this_way = _seqadj(ct).seq[ctinfo2dir(ctinfo)]
    this_way.offset_before = this_way.offset_after = off


def nf_ct_seqadj_set(ct: Conn, ctinfo: int, seq: int, off: int) -> None:
    """nf_ct_seqadj_set(): the payload of the segment at `seq` grew (or shrank) by `off`.

    Only a segment past the current correction point moves it: a
    retransmitted resize is not counted twice.
    """
    if off == 0:
        return
    ct.set_status(IPS_SEQ_ADJUST)
    this_way = _seqadj(ct).seq[ctinfo2dir(ctinfo)]
    if this_way.offset_before == this_way.offset_after or after(seq, this_way.correction_pos):
        this_way.correction_pos = seq
        this_way.offset_before = this_way.offset_after
        this_way.offset_after += off


def nf_ct_seq_offset(ct: Conn, direction: int, seq: int) -> int:
    """nf_ct_seq_offset(): 0 for a connection no helper resized."""
    ext = ct.ext
    if ext is None or ext.seqadj is None:
        return 0
    return ext.seqadj.offset(direction, seq)


def _sack_block_adjust(buf: bytearray, protoff: int, sackoff: int, sackend: int, other: SeqAdjDir) -> None:
    """nf_ct_sack_block_adjust(): SACK edges are the other direction's sequence numbers."""
    check_off = protoff + 16
    while sackoff < sackend:
        start, end = _U32X2.unpack_from(buf, sackoff)
        new_start = (start - other.offset_after if after((start - other.offset_before) & _M32, other.correction_pos)
                     else start - other.offset_before) & _M32
        new_end = (end - other.offset_after if after((end - other.offset_before) & _M32, other.correction_pos)
                   else end - other.offset_before) & _M32
        check = _U16.unpack_from(buf, check_off)[0]
        check = csum_replace4(csum_replace4(check, start, new_start), end, new_end)
        _U16.pack_into(buf, check_off, check)
        _U32X2.pack_into(buf, sackoff, new_start, new_end)
        sackoff += TCPOLEN_SACK_PERBLOCK


def _sack_adjust(buf: bytearray, protoff: int, other: SeqAdjDir) -> bool:
    """nf_ct_sack_adjust(): walk the options; False on a truncated option (the packet is dropped)."""
    optoff = protoff + 20
    optend = protoff + (buf[protoff + 12] >> 4) * 4
    if optend > len(buf):
        return False  # skb_ensure_writable()
    while optoff < optend:
        kind = buf[optoff]
        if kind == TCPOPT_EOL:
            return True
        if kind == TCPOPT_NOP:
            optoff += 1
            continue
        # no partial options
        if optoff + 1 == optend:
            return False
        length = buf[optoff + 1]
        if optoff + length > optend or length < 2:
            return False
        if (kind == TCPOPT_SACK and length >= 2 + TCPOLEN_SACK_PERBLOCK
                and (length - 2) % TCPOLEN_SACK_PERBLOCK == 0):
            _sack_block_adjust(buf, protoff, optoff + 2, optoff + length, other)
        optoff += length
    return True


def nf_ct_seq_adjust(ct: Conn, ctinfo: int, buf: bytearray, protoff: int) -> bool:
    """nf_ct_seq_adjust(): shift this segment's SEQ by its direction's offset, and its
    ACK and SACK blocks back by the other direction's, fixing the TCP checksum
    incrementally.  False (drop) when the header or its options are cut short.
    """
    adj = _seqadj(ct)
    direction = ctinfo2dir(ctinfo)
    this_way = adj.seq[direction]
    other_way = adj.seq[1 - direction]
    if protoff + 20 > len(buf):
        return False  # skb_ensure_writable()
    check_off = protoff + 16
    seq = _U32.unpack_from(buf, protoff + 4)[0]
    newseq = (seq + this_way.offset(seq)) & _M32
    _U16.pack_into(buf, check_off, csum_replace4(_U16.unpack_from(buf, check_off)[0], seq, newseq))
    _U32.pack_into(buf, protoff + 4, newseq)
    if not buf[protoff + 13] & _TH_ACK:
        return True
    ack = _U32.unpack_from(buf, protoff + 8)[0]
    if after((ack - other_way.offset_before) & _M32, other_way.correction_pos):
        ackoff = other_way.offset_after
    else:
        ackoff = other_way.offset_before
    newack = (ack - ackoff) & _M32
    _U16.pack_into(buf, check_off, csum_replace4(_U16.unpack_from(buf, check_off)[0], ack, newack))
    _U32.pack_into(buf, protoff + 8, newack)
    return _sack_adjust(buf, protoff, other_way)
