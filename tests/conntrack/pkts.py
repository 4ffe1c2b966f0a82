"""Small IPv4 packet builders for the conntrack tests (checksums included)."""

from __future__ import annotations

import struct

from ipgate.inet import aton


def _csum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip(src: str, dst: str, proto: int, payload: bytes, *, ident: int = 0, frag: int = 0, ttl: int = 64) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, ttl, proto, 0,
                      aton(src).to_bytes(4, "big"), aton(dst).to_bytes(4, "big"))
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + payload


def _pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    return aton(src).to_bytes(4, "big") + aton(dst).to_bytes(4, "big") + struct.pack("!BBH", 0, proto, length)


FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def tcp(src: str, dst: str, sport: int, dport: int, flags: int, seq: int = 0, ack: int = 0, win: int = 64240,
        payload: bytes = b"", opts: bytes = b"", bad_csum: bool = False) -> bytes:
    opts += b"\0" * (-len(opts) % 4)
    doff = (20 + len(opts)) // 4
    seg = struct.pack("!HHIIHHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (doff << 12) | flags, win,
                      0, 0) + opts + payload
    ck = _csum(_pseudo(src, dst, 6, len(seg)) + seg) ^ (0x5555 if bad_csum else 0)
    seg = seg[:16] + struct.pack("!H", ck) + seg[18:]
    return ip(src, dst, 6, seg)


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"x", proto: int = 17) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ck = _csum(_pseudo(src, dst, proto, len(seg)) + seg) or 0xFFFF
    seg = seg[:6] + struct.pack("!H", ck) + seg[8:]
    return ip(src, dst, proto, seg)


def icmp(src: str, dst: str, type_: int, code: int = 0, ident: int = 0, seq: int = 0,
         payload: bytes = b"abcdefgh") -> bytes:
    msg = struct.pack("!BBHHH", type_, code, 0, ident, seq) + payload
    msg = msg[:2] + struct.pack("!H", _csum(msg)) + msg[4:]
    return ip(src, dst, 1, msg)


def icmp_error(src: str, dst: str, type_: int, code: int, inner: bytes) -> bytes:
    """An ICMP error quoting `inner` (its IP header and first 8 bytes, as RFC 792 asks)."""
    ihl = (inner[0] & 0xF) * 4
    msg = struct.pack("!BBHI", type_, code, 0, 0) + inner[:ihl + 8]
    msg = msg[:2] + struct.pack("!H", _csum(msg)) + msg[4:]
    return ip(src, dst, 1, msg)


def raw(src: str, dst: str, proto: int, payload: bytes = b"0123456789abcdef") -> bytes:
    return ip(src, dst, proto, payload)
