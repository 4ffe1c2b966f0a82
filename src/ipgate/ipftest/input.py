"""ipftest's packet readers, as IP Filter 4.1.28 reads them.

`read_text` is `-F text` (lib/ipft_tx.c 1.15.2.10 parseline()), one packet a
line::

    in|out [on IF] [tcp|udp|icmp|NUMBER] SRC[,PORT] DST[,PORT] [FLAGS] [seq=N] [ack=N]

The direction is any word starting with ``i`` or ``o``.  Without a protocol
the packet is protocol 0 (IPPROTO_IP) and the word is the source.  TCP
packets get a 20-byte header (offset 5, window 4096) and FLAGS from
``FSRPAUEC``; UDP packets get the first 8 bytes of that same header (so a
UDP length of 0, as ipftest builds them); ICMP packets are 28 bytes (8 of
header and 20 of zeros) of type echo-reply unless a type name
(``echo``, ``unreach,3``...) follows the destination.  TTL, id, TOS and
offset are 0.  As ipftest.c does for this reader (R_DO_CKSUM), the IP and
transport checksums are computed (`fix_sums`, fixv4sums() + fr_cksum()).

`read_hex` is `-F hex` (lib/ipft_hx.c 1.11.4.4): hex digits, two per byte,
white space ending a byte; a packet runs over lines until an empty line; a
line may start with ``[IF]`` or ``[in,IF]``/``[out,IF]``.  A character that
is neither hex nor space ends the line's data (readhex()).  Two quirks are
kept: an empty line when nothing was read ends the input, and bytes read
after the last empty line are dropped at the end of the file (hex_readip()
returns 0 at EOF).

Deviation: ipft_tx.c prints a message for a bad line and skips it, and uses
255.255.255.255 / 0 for an address or service it cannot read; here any such
line is an error ``FILE:LINE: message`` and no packet is processed at all.
IP options (``opt ...``, buildopts()) are refused.  A hex packet that is not
an IPv4 header with at least ip_len bytes behind it is an error too (ipftest
would hand fr_check() whatever was read).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ipgate.netfilter.names import Resolver, inet_aton
from ipgate.packet.checksum import csum_fold, csum_partial

IPPROTO_IP = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

IP_HLEN = 20
TCP_HLEN = 20            # sizeof(struct tcphdr)
UDP_HLEN = 8             # sizeof(struct udphdr)
ICMPERR_IPICMPHLEN = 28  # ip_fil.h: ICMP header + an IP header, what a text ICMP packet carries
TEXT_WINDOW = 4096       # parseline(): th_win

# parseline()'s myflagset[] / myflags[]
TCP_FLAG_LETTERS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}
TH_URG = 0x20

# ipft_tx.c tx_icmptypes[]: the index is the ICMP type.
ICMP_TYPE_NAMES: tuple[str | None, ...] = (
    "echorep", None, None, "unreach", "squench", "redir", None, None, "echo", "routerad", "routersol", "timex",
    "paramprob", "timest", "timestrep", "inforeq", "inforep", "maskreq", "maskrep")

TOKEN_SEPARATORS = " \b\t\r\n"  # strtok() delimiters in parseline()
MAX_TOKENS = 19                 # cps[20]
MAX_LINE = 511                  # fgets(line, sizeof(line) - 1, ...) with line[513]

_IPH = struct.Struct("!BBHHHBBHII")
_TCPH = struct.Struct("!HHIIBBHHH")
_U16 = struct.Struct("!H")


class InputError(Exception):
    """A packet file ipftest cannot use, as ``FILE:LINE: message``."""

    def __init__(self, filename: str, line: int, message: str) -> None:
        super().__init__(f"{filename}:{line}: {message}")
        self.filename = filename
        self.line = line
        self.message = message


@dataclass(slots=True)
class InputPacket:
    """What r_readip() hands back: the bytes, the interface named (None: ipftest's
    default, -I or anon0) and the direction (the `dir` out-parameter, 1 = out)."""

    data: bytearray
    ifname: str | None
    out: bool
    line: int


# -- checksums (ipftest.c fixv4sums(), fil.c ipf_cksum()/fr_cksum() in user space) --------
def fix_sums(pkt: bytearray) -> None:
    """fixv4sums(): the IP header checksum, then the TCP/UDP (with the pseudo
    header) or ICMP checksum over ip_len - hlen bytes.  No 0 -> 0xffff for UDP."""
    hlen = (pkt[0] & 0x0F) << 2
    ip_len = _U16.unpack_from(pkt, 2)[0]
    pkt[10:12] = b"\0\0"
    _U16.pack_into(pkt, 10, ~csum_fold(csum_partial(pkt[:hlen])) & 0xFFFF)
    p = pkt[9]
    if p == IPPROTO_TCP:
        at = hlen + 16
    elif p == IPPROTO_UDP:
        at = hlen + 6
    elif p == IPPROTO_ICMP:
        at = hlen + 2
    else:
        return
    end = min(ip_len, len(pkt))
    if at + 2 > end:
        return
    pkt[at:at + 2] = b"\0\0"
    seg = bytes(pkt[hlen:end])
    if len(seg) & 1:
        seg += b"\0"
    if p == IPPROTO_ICMP:
        start = 0  # fr_cksum(): sum = 0 for ICMP, no pseudo header
    else:
        slen = ip_len - hlen
        start = p + slen + (int.from_bytes(pkt[12:14], "big") + int.from_bytes(pkt[14:16], "big")
                            + int.from_bytes(pkt[16:18], "big") + int.from_bytes(pkt[18:20], "big"))
    _U16.pack_into(pkt, at, ~csum_fold(csum_partial(seg, start)) & 0xFFFF)


# -- -F text ---------------------------------------------------------------------------
class _TextReader:
    """ipft_tx.c: keeps tx_proto (the protocol services are looked up for)
    from one line to the next, as the static variable does."""

    def __init__(self, filename: str, names: Resolver) -> None:
        self.filename = filename
        self.names = names
        self.tx_proto = ""

    def fail(self, line: int, message: str) -> InputError:
        return InputError(self.filename, line, message)

    def hostnum(self, word: str, line: int) -> int:
        """tx_hostnum(): "any", a dotted number (inet_addr()), else a host name."""
        if word.lower() == "any":
            return 0
        if word[0].isdigit():
            addr = inet_aton(word)
            if addr is None:
                raise self.fail(line, f'bad address "{word}"')
            return addr
        if word == "test.host.dots":  # lib/gethost.c answers this one itself
            return 0xFEDCBA98
        addrs = self.names.host_addrs(word)
        if addrs:
            return addrs[0]
        net = self.names.net_number(word)
        if net is not None:
            return net
        raise self.fail(line, f"can't resolve hostname: {word}")

    def portnum(self, word: str, line: int) -> int:
        """tx_portnum(): atoi() when it starts with a digit, else getservbyname()."""
        if word[:1].isdigit():
            return _atoi(word) & 0xFFFF
        port = self.names.service_port(word, self.tx_proto or None)
        if port is None:
            raise self.fail(line, f'unknown service "{word}".')
        return port

    def parseline(self, text: str, line: int) -> InputPacket | None:
        """parseline(); None for a line with nothing on it."""
        words = _strtok(text)[:MAX_TOKENS]
        if not words:
            return None
        w = words[0]
        c = w[0]
        if not c.isalpha() or c.lower() not in "oi":
            raise self.fail(line, f'bad direction "{w}"')
        out = c.lower() == "o"
        i = 1

        def need() -> str:
            if i >= len(words):
                raise self.fail(line, "incomplete packet: expected more after " + " ".join(words[:i]))
            return words[i]

        ifname: str | None = None
        if need().lower() == "on":
            i += 1
            ifname = need()
            i += 1
        word = need()
        ip_len = IP_HLEN
        low = word.lower()
        if low in ("tcp", "udp", "icmp"):
            # The protocol is chosen by the first character as written: "TCP"
            # is not 't', so it reads as ICMP, as in ipft_tx.c.
            if word[0] == "t":
                p, ip_len, self.tx_proto = IPPROTO_TCP, ip_len + TCP_HLEN, "tcp"
            elif word[0] == "u":
                p, ip_len, self.tx_proto = IPPROTO_UDP, ip_len + UDP_HLEN, "udp"
            else:
                p, ip_len, self.tx_proto = IPPROTO_ICMP, ip_len + ICMPERR_IPICMPHLEN, "icmp"
            i += 1
        elif word[0].isdigit() and "." not in word:
            p = _atoi(word) & 0xFF
            i += 1
        else:
            p = IPPROTO_IP
        ports = p in (IPPROTO_TCP, IPPROTO_UDP)
        sport = dport = 0
        src_word = need()
        if ports:
            host, sep, svc = src_word.partition(",")
            if not sep:
                raise self.fail(line, "tcp/udp with no source port")
            sport = self.portnum(svc, line)
            src_word = host
        src = self.hostnum(src_word, line)
        i += 1
        dst_word = need()
        if ports:
            host, sep, svc = dst_word.partition(",")
            if not sep:
                raise self.fail(line, "tcp/udp with no destination port")
            dport = self.portnum(svc, line)
            dst_word = host
        dst = self.hostnum(dst_word, line)
        i += 1
        rest = words[i:]
        flags = seq = ack = 0
        icmp_type = icmp_code = 0
        if p == IPPROTO_TCP:
            if rest:
                for ch in rest[0]:
                    flags |= TCP_FLAG_LETTERS.get(ch, 0)
                if flags:
                    rest = rest[1:]
            if rest and rest[0][:4].lower() == "seq=":
                seq = _atoi(rest[0][4:]) & 0xFFFFFFFF
                rest = rest[1:]
            if rest and rest[0][:4].lower() == "ack=":
                ack = _atoi(rest[0][4:]) & 0xFFFFFFFF
                rest = rest[1:]
        elif rest and p == IPPROTO_ICMP:
            name, comma, code = rest[0].partition(",")
            for t, tname in enumerate(ICMP_TYPE_NAMES):
                if tname is not None and tname == name.lower():
                    icmp_type = t
                    if comma:
                        icmp_code = _atoi(code) & 0xFF
                    rest = rest[1:]
                    break
        if rest and rest[0].lower() == "opt":
            raise self.fail(line, 'IP options ("opt") are not supported')
        pkt = bytearray(ip_len)
        _IPH.pack_into(pkt, 0, 0x45, 0, ip_len, 0, 0, 0, p, 0, src, dst)
        if p == IPPROTO_TCP:
            urp = 1 if flags & TH_URG else 0
            _TCPH.pack_into(pkt, IP_HLEN, sport, dport, seq, ack, (TCP_HLEN >> 2) << 4, flags, TEXT_WINDOW, 0, urp)
        elif p == IPPROTO_UDP:
            pkt[IP_HLEN:IP_HLEN + 4] = struct.pack("!HH", sport, dport)  # the rest of the tcphdr copy: 0
        elif p == IPPROTO_ICMP:
            pkt[IP_HLEN] = icmp_type
            pkt[IP_HLEN + 1] = icmp_code
        fix_sums(pkt)
        return InputPacket(pkt, ifname, out, line)


def _strtok(text: str) -> list[str]:
    words: list[str] = []
    cur: list[str] = []
    for ch in text:
        if ch in TOKEN_SEPARATORS:
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    return words


def _atoi(text: str) -> int:
    """atoi(): optional sign and leading digits, 0 when there are none."""
    s = text.lstrip(" \t\n\v\f\r")
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    n = 0
    for ch in s:
        if not "0" <= ch <= "9":
            break
        n = n * 10 + ord(ch) - 48
    return sign * n


def read_text(text: str, filename: str, names: Resolver | None = None) -> list[InputPacket]:
    """text_readip() over a whole file: every packet, or InputError."""
    reader = _TextReader(filename, names if names is not None else Resolver.builtin())
    packets: list[InputPacket] = []
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw
        for stop in ("\r", "#"):
            cut = line.find(stop)
            if cut >= 0:
                line = line[:cut]
        if len(line) > MAX_LINE:
            raise InputError(filename, lineno, f"line longer than {MAX_LINE} characters")
        if not line:
            continue
        pkt = reader.parseline(line, lineno)
        if pkt is not None:
            packets.append(pkt)
    return packets


# -- -F hex ----------------------------------------------------------------------------
_HEXDIGITS = "0123456789abcdefABCDEF"


def _readhex(text: str, out: bytearray) -> None:
    """readhex(): pairs of hex digits; white space ends a byte; anything else
    ends the line.  A lone digit is the high half of its byte."""
    state = 0
    for ch in text:
        if ch.isspace():
            if state:
                state = 0
            continue
        if ch not in _HEXDIGITS:
            return
        v = int(ch, 16)
        if state == 0:
            out.append(v << 4)
            state = 1
        else:
            out[-1] |= v
            state = 0


def read_hex(text: str, filename: str) -> list[InputPacket]:
    """hex_readip() over a whole file: every packet, or InputError."""
    packets: list[InputPacket] = []
    buf = bytearray()
    ifname: str | None = None
    out = False
    first = 0
    lines = text.split("\n")
    ends_with_newline = text.endswith("\n")
    for lineno, raw in enumerate(lines, 1):
        if lineno == len(lines) and ends_with_newline:
            break  # the empty piece after the final newline is not a line
        if raw == "":
            if not buf:
                return _checked(packets, filename)  # an empty packet ends the input
            packets.append(InputPacket(buf, ifname, out, first))
            buf, ifname, out, first = bytearray(), None, False, 0
            continue
        line = raw
        cut = line.find("#")
        if cut >= 0:
            line = line[:cut]
        if not line:
            continue
        if not first:
            first = lineno
        data = line
        if line.startswith("[") and "]" in line:
            close = line.index("]")
            inner = line[1:close]
            if inner:
                data = line[close + 1:]
                if "," in inner:
                    ifname = inner[inner.index(",") + 1:]
                    if inner[0] == "i":
                        out = False
                    elif inner[0] == "o":
                        out = True
                else:
                    ifname = inner
            else:
                data = line[close:]  # "[]": readhex() stops at once on the ']'
        _readhex(data, buf)
    return _checked(packets, filename)  # at EOF, hex_readip() drops what it had read


def _checked(packets: list[InputPacket], filename: str) -> list[InputPacket]:
    """What fr_check() would need to see an IPv4 header at all."""
    for pkt in packets:
        d = pkt.data
        if len(d) < IP_HLEN:
            raise InputError(filename, pkt.line, f"packet of {len(d)} bytes is shorter than an IPv4 header")
        if d[0] >> 4 != 4:
            raise InputError(filename, pkt.line, f"not an IPv4 packet (version {d[0] >> 4})")
        hlen = (d[0] & 0x0F) << 2
        ip_len = _U16.unpack_from(d, 2)[0]
        if hlen < IP_HLEN or ip_len < hlen:
            raise InputError(filename, pkt.line, f"bad IPv4 header (header length {hlen}, total length {ip_len})")
        if ip_len > len(d):
            raise InputError(filename, pkt.line, f"ip_len {ip_len} but only {len(d)} bytes given")
    return packets
