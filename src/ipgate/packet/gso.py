"""Generic segmentation of IPv4 super-packets (tcp_gso_segment(), __udp_gso_segment()).

A GRO or TSO "super packet" carries up to 64 KB of one flow's payload behind
one set of headers; `segment` cuts it into packets of at most `mss` payload
bytes each, with their own IP length, id and checksum, TCP sequence number
and flags (FIN and PSH on the last only, CWR on the first only), and a full
TCP/UDP checksum computed from scratch (whatever the field held before: a
partial, pseudo-header-only sum, or a stale one).
"""

from __future__ import annotations

import struct

from ipgate.packet.checksum import Buffer, csum_fold, csum_partial, csum_tcpudp_nofold, ip_compute_csum

MAX_SEGMENTS = 64  # a 64 KB GSO packet at MSS 1024; more is malformed

_IPH = struct.Struct("!BBHHHBBHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class GsoError(ValueError):
    """A super-packet that cannot be segmented (not IPv4, not the protocol said, a bad size)."""


def segment(pkt: Buffer, mss: int, *, tcp: bool) -> list[bytes]:
    """The packets the IPv4 super-packet `pkt` stands for."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        raise GsoError("GSO packet without IPv4")
    ihl = (pkt[0] & 0xF) * 4
    if ihl < 20:  # inet_gso_segment()
        raise GsoError("GSO packet with a bad IP header length")
    _v, tos, _tot, ip_id, frag_off, ttl, proto, _c, saddr, daddr = _IPH.unpack_from(pkt, 0)
    if tcp:
        if proto != 6 or len(pkt) < ihl + 20:
            raise GsoError("TCP GSO packet without TCP")
        l4len = (pkt[ihl + 12] >> 4) * 4
        if l4len < 20:  # tcp_gso_segment(): thlen < sizeof(*th)
            raise GsoError("TCP GSO packet with a bad data offset")
    else:
        if proto != 17 or len(pkt) < ihl + 8:
            raise GsoError("UDP GSO packet without UDP")
        l4len = 8
    data_off = ihl + l4len
    payload = memoryview(pkt)[data_off:]
    if mss <= 0 or len(payload) > mss * MAX_SEGMENTS or data_off > len(pkt):
        raise GsoError("bad GSO size")
    iphdr = bytearray(pkt[:ihl])
    l4hdr = bytearray(pkt[ihl:data_off])
    seq = _U32.unpack_from(l4hdr, 4)[0] if tcp else 0
    tcp_flags = l4hdr[13] if tcp else 0
    out: list[bytes] = []
    n = (len(payload) + mss - 1) // mss or 1
    for i in range(n):
        chunk = payload[i * mss:(i + 1) * mss]
        last = i == n - 1
        ip = bytearray(iphdr)
        _IPH.pack_into(ip, 0, ip[0], tos, ihl + l4len + len(chunk), (ip_id + i) & 0xFFFF, frag_off, ttl, proto, 0,
                       saddr, daddr)
        ip[20:ihl] = iphdr[20:ihl]
        _U16.pack_into(ip, 10, ip_compute_csum(ip))
        h = bytearray(l4hdr)
        if tcp:
            _U32.pack_into(h, 4, (seq + i * mss) & 0xFFFFFFFF)
            f = tcp_flags
            if not last:
                f &= ~0x09  # FIN and PSH only on the last segment
            if i:
                f &= ~0x80  # CWR only on the first
            h[13] = f
        else:
            _U16.pack_into(h, 4, 8 + len(chunk))
        _U16.pack_into(h, 16 if tcp else 6, 0)
        seg_len = l4len + len(chunk)
        # the header's length is even, so header and payload can be summed apart
        s = csum_fold(csum_partial(h, csum_tcpudp_nofold(saddr, daddr, seg_len, proto)) + csum_partial(chunk))
        check = ~s & 0xFFFF
        if not tcp and check == 0:
            check = 0xFFFF
        _U16.pack_into(h, 16 if tcp else 6, check)
        out.append(bytes(ip) + bytes(h) + bytes(chunk))
    return out
