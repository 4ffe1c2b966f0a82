"""Addresses, masks and numbers as ipchains 1.3.9 and ipfwadm 2.3.0 parse them (the same code in both).

`addr[/mask]`: the address is a dotted quad, else a network name
(getnetbyname), else a host name (gethostbyname, which also takes short
numeric forms like "10.1"); the mask is a dotted quad or a bit count; a zero
mask ignores the name ("any/0").  Addresses are masked and duplicates
dropped.  Errors raise `AddrError` with the tool's words; the tools quote
differently (ipchains `x', ipfwadm "x"), so callers pass their quotes.
"""

from __future__ import annotations

from ipgate.netfilter.names import Resolver, inet_aton, ntoa


class AddrError(Exception):
    """A PARAMETER_PROBLEM: the message without the program name."""


def is_hexbyte(s: str) -> bool:
    """A MAC address byte as the tools' parsers take it (strtol base 16, 0..255)."""
    try:
        return 0 <= int(s, 16) <= 255
    except ValueError:
        return False


def string_to_number(s: str, lo: int, hi: int) -> int | None:
    """strtol(s, &end, 10) that must use the whole (non-empty) string and fall in [lo, hi]."""
    t = s.lstrip(" \t\n\v\f\r")
    body = t[1:] if t[:1] in ("+", "-") else t
    if not body or not body.isdigit() or not body.isascii():
        return None
    n = int(t)
    return n if lo <= n <= hi else None


def dotted_to_addr(text: str) -> int | None:
    """Exactly four dot-separated numbers 0-255 (of the first 19 characters, as the C copies them)."""
    parts = text[:19].split(".")
    if len(parts) != 4:
        return None
    out = 0
    for p in parts:
        b = string_to_number(p, 0, 255)
        if b is None:
            return None
        out = out << 8 | b
    return out


def parse_mask(mask: str | None, quote: tuple[str, str]) -> int:
    if mask is None:
        return 0xFFFFFFFF  # no mask at all: 32 bits
    dotted = dotted_to_addr(mask)
    if dotted is not None:
        return dotted
    bits = string_to_number(mask, 0, 32)
    if bits is None:
        raise AddrError(f"invalid mask {quote[0]}{mask}{quote[1]} specified")
    return (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF


def parse_hostnetworkmask(name: str, names: Resolver, quote: tuple[str, str]) -> tuple[list[int], int]:
    """(addresses, mask) of `addr[/mask]`."""
    host, slash, m = name.rpartition("/")
    if not slash:
        host = name
    mask = parse_mask(m if slash else None, quote)
    if mask == 0:
        host = "0.0.0.0"
    dotted = dotted_to_addr(host)
    net = names.net_number(host) if dotted is None else None
    if dotted is not None:
        addrs = [dotted]
    elif net is not None:
        addrs = [net]
    else:
        addrs = names.host_addrs(host)
        if not addrs and host and all(c.isdigit() or c == "." for c in host):
            numeric = inet_aton(host)
            addrs = [numeric] if numeric is not None else []
        if not addrs:
            raise AddrError(f"host/network {quote[0]}{host}{quote[1]} not found")
    out: list[int] = []
    for a in addrs:
        if a & mask not in out:
            out.append(a & mask)
    return out, mask


def addr_arg(addr: int, mask: int) -> str:
    """The iptables -s/-d argument: ADDR/BITS, or ADDR/MASK for a non-contiguous mask."""
    bits = bin(mask).count("1")
    contiguous = mask == (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    return f"{ntoa(addr)}/{bits if contiguous else ntoa(mask)}"
