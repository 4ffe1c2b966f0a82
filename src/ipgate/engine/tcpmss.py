"""The TCPMSS target (net/netfilter/xt_TCPMSS.c): clamp or set the MSS option of a SYN."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ipgate.conntrack.conn import NF_DROP
from ipgate.engine.skb import Skb
from ipgate.engine.xtables import XT_CONTINUE
from ipgate.netfilter.targets import XT_TCPMSS_CLAMP_PMTU
from ipgate.packet.checksum import csum_replace2, csum_replace4

if TYPE_CHECKING:
    from ipgate.engine.engine import Engine

_U16 = struct.Struct("!H")
TCPOPT_MSS = 2
TCPOLEN_MSS = 4
MINLEN = 20 + 20  # sizeof(struct iphdr) + sizeof(struct tcphdr)


def _fix_tcp(buf: bytearray, l4: int, old: int, new: int, wide: bool = False) -> None:
    ck = _U16.unpack_from(buf, l4 + 16)[0]
    _U16.pack_into(buf, l4 + 16, csum_replace4(ck, old, new) if wide else csum_replace2(ck, old, new))


def tcpmss_target(s: Skb, mss: int, eng: Engine) -> int:
    """tcpmss_tg4() -> tcpmss_mangle_packet()."""
    if s.fragoff:
        return XT_CONTINUE
    buf, l4 = s.buf, s.ihl
    if s.l4len < 20:
        return NF_DROP
    doff = (buf[l4 + 12] >> 4) * 4
    if doff < 20 or s.l4len < doff:
        return NF_DROP
    if mss == XT_TCPMSS_CLAMP_PMTU:
        mtu = eng.clamp_mtu(s)
        if mtu <= MINLEN:
            eng.syslog(f"unknown or invalid path-MTU ({mtu})")
            return NF_DROP
        newmss = mtu - MINLEN
    else:
        newmss = mss
    i = l4 + 20
    end = l4 + doff
    while i < end:
        kind = buf[i]
        if kind == TCPOPT_MSS and i + TCPOLEN_MSS <= end and buf[i + 1] == TCPOLEN_MSS:
            oldmss = _U16.unpack_from(buf, i + 2)[0]
            # Never increase the MSS, even when setting it: the host may not support it.
            if oldmss <= newmss:
                return XT_CONTINUE
            _U16.pack_into(buf, i + 2, newmss)
            _fix_tcp(buf, l4, oldmss, newmss)
            s.load()
            return XT_CONTINUE
        if kind < 2:
            i += 1
        else:
            if i + 1 >= end or buf[i + 1] < 2:
                break
            i += buf[i + 1]
    # No MSS option: add one, unless data follows the header or the header is full.
    if s.l4len > doff or doff >= 15 * 4:
        return XT_CONTINUE
    newmss = min(newmss, 536)  # RFC 1122: a peer that sent no MSS assumes 536
    old_word = _U16.unpack_from(buf, l4 + 12)[0]
    buf[end:end] = bytes((TCPOPT_MSS, TCPOLEN_MSS)) + _U16.pack(newmss)
    buf[l4 + 12] = (buf[l4 + 12] & 0x0F) | (((doff + 4) // 4) << 4)
    new_word = _U16.unpack_from(buf, l4 + 12)[0]
    # checksum: the new option words, the data offset, and the pseudo-header length
    _fix_tcp(buf, l4, 0, (TCPOPT_MSS << 24) | (TCPOLEN_MSS << 16) | newmss, wide=True)
    _fix_tcp(buf, l4, old_word, new_word)
    _fix_tcp(buf, l4, s.l4len, s.l4len + 4)
    old_len = s.tot_len
    _U16.pack_into(buf, 2, old_len + 4)
    _U16.pack_into(buf, 10, csum_replace2(_U16.unpack_from(buf, 10)[0], old_len, old_len + 4))
    s.load()
    return XT_CONTINUE
