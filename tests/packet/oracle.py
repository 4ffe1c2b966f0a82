"""dpkt as an independent oracle: packets built by dpkt, checksums checked by dpkt."""

from __future__ import annotations

import socket
import struct

import dpkt
from hypothesis import strategies as st


def a2i(b: bytes) -> int:
    return int.from_bytes(b, "big")


def i2a(i: int) -> bytes:
    return i.to_bytes(4, "big")


def ip_hdr_ok(raw: bytes, off: int = 0) -> bool:
    """dpkt.in_cksum over the header sums to zero."""
    ihl = (raw[off] & 0x0F) * 4
    return dpkt.in_cksum(raw[off:off + ihl]) == 0


def l4_ok(raw: bytes, off: int = 0) -> bool:
    """The TCP/UDP checksum (pseudo-header included) or ICMP checksum is right,
    by dpkt's own sum.  UDP 0 means none."""
    ihl = (raw[off] & 0x0F) * 4
    tot = struct.unpack_from("!H", raw, off + 2)[0]
    proto = raw[off + 9]
    seg = raw[off + ihl:off + tot]
    if proto not in (1, 6, 17):
        return True
    if proto == 1:
        return dpkt.in_cksum(seg) == 0
    if proto == 17:
        if struct.unpack_from("!H", seg, 6)[0] == 0:
            return True
        seg = seg[:struct.unpack_from("!H", seg, 4)[0]]
    pseudo = raw[off + 12:off + 20] + struct.pack("!BBH", 0, proto, len(seg))
    s = dpkt.in_cksum_add(0, pseudo)
    s = dpkt.in_cksum_add(s, seg)
    return dpkt.in_cksum_done(s) == 0


def dpkt_rebuilt(raw: bytes) -> bytes:
    """The same packet with every checksum zeroed and recomputed by dpkt."""
    ip = dpkt.ip.IP(raw)
    ip.sum = 0
    if isinstance(ip.data, dpkt.Packet) and ip.p in (1, 6, 17):
        ip.data.sum = 0
    return bytes(ip)


addrs = st.integers(0, 0xFFFFFFFF)
ports = st.integers(0, 0xFFFF)
payloads = st.binary(max_size=600)

# Options that ip_options_compile() accepts, as dpkt sees them (raw bytes).
valid_options = st.sampled_from([
    b"",
    b"\x01\x01\x01\x00",  # NOOPs, END
    b"\x07\x07\x04\x00\x00\x00\x00\x00",  # RR with room for one address
    b"\x07\x07\x08\x0a\x00\x00\x01\x00",  # RR full
    b"\x44\x0c\x05\x00" + bytes(8),  # TS only, room for two
    b"\x44\x0c\x05\x01" + bytes(8),  # TS and address, room for one pair
    b"\x83\x07\x04\xc0\x00\x02\x01\x00",  # LSRR one hop
    b"\x89\x0b\x04\xc0\x00\x02\x01\xc0\x00\x02\x02\x00",  # SSRR two hops
    b"\x94\x04\x00\x00",  # router alert
    b"\x82\x0b" + bytes(9) + b"\x00",  # SEC (RFC 1108 length 11)
])


@st.composite
def dpkt_ip(draw: st.DrawFn, protos: tuple[int, ...] = (6, 17, 1, 47)) -> bytes:
    """A well-formed IPv4 packet built by dpkt, checksums computed by dpkt."""
    p = draw(st.sampled_from(protos))
    payload = draw(payloads)
    if p == 6:
        opts = draw(st.sampled_from([b"", b"\x02\x04\x05\xb4", b"\x01\x03\x03\x07", b"\x02\x04\x05\xb4\x04\x02\x00\x00",
                                     b"\x01\x02\x04\x05\xb4\x00\x00\x00"]))
        data: dpkt.Packet | bytes = dpkt.tcp.TCP(
            sport=draw(ports), dport=draw(ports), seq=draw(addrs), ack=draw(addrs),
            flags=draw(st.integers(0, 0x1FF)), win=draw(ports), urp=draw(ports), opts=opts,
            off=(20 + len(opts)) // 4, data=payload)
    elif p == 17:
        data = dpkt.udp.UDP(sport=draw(ports), dport=draw(ports), data=payload)
        data.ulen = 8 + len(payload)
    elif p == 1:
        t = draw(st.sampled_from([0, 8, 13, 14]))
        data = dpkt.icmp.ICMP(type=t, code=0, data=dpkt.icmp.ICMP.Echo(id=draw(ports), seq=draw(ports),
                                                                        data=payload))
    else:
        data = payload
    opts = draw(valid_options)
    ip = dpkt.ip.IP(src=i2a(draw(addrs)), dst=i2a(draw(addrs)), p=p, tos=draw(st.integers(0, 255)),
                    id=draw(ports), ttl=draw(st.integers(2, 255)), opts=opts, data=data)
    ip.hl = (20 + len(opts)) // 4
    ip._flags_offset = draw(st.sampled_from([0, 0x4000]))
    raw = bytes(ip)
    if p == 17 and not draw(st.integers(0, 7)):  # now and then: no UDP checksum
        raw = bytearray(raw)
        raw[ip.hl * 4 + 6:ip.hl * 4 + 8] = b"\0\0"
        raw = bytes(raw)
    return raw


def ntoa(i: int) -> str:
    return socket.inet_ntoa(i2a(i))
