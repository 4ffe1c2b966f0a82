"""One line about an IPv4 packet, for traces and logs: `tcp 10.0.0.2:1025 -> 203.0.113.7:80 [SA] ttl 63 len 40`."""

from __future__ import annotations

from ipgate.inet import ntoa

TCP_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}


def packet_text(data: bytes | bytearray) -> str:
    """Addresses, ports (or ICMP type and code), TCP flags, TTL and length; hex when there is no header."""
    if len(data) < 20:
        return bytes(data).hex()
    proto = data[9]
    ihl = (data[0] & 0x0F) * 4
    src, dst = ntoa(int.from_bytes(data[12:16], "big")), ntoa(int.from_bytes(data[16:20], "big"))
    frag = int.from_bytes(data[6:8], "big") & 0x1FFF
    if proto in (6, 17) and len(data) >= ihl + 4 and not frag:
        sp, dp = int.from_bytes(data[ihl:ihl + 2], "big"), int.from_bytes(data[ihl + 2:ihl + 4], "big")
        text = f"{'tcp' if proto == 6 else 'udp'} {src}:{sp} -> {dst}:{dp}"
        if proto == 6 and len(data) >= ihl + 14:
            f = data[ihl + 13]
            text += " [" + "".join(k for k, b in TCP_FLAGS.items() if f & b) + "]"
        return text + f" ttl {data[8]} len {int.from_bytes(data[2:4], 'big')}"
    if proto == 1 and len(data) >= ihl + 2 and not frag:
        return f"icmp {src} -> {dst} type {data[ihl]} code {data[ihl + 1]} ttl {data[8]}"
    name = {6: "tcp", 17: "udp", 1: "icmp"}.get(proto, f"proto {proto}")
    return f"{name} {src} -> {dst} ttl {data[8]}" + (f" fragment offset {frag * 8}" if frag else "")
