"""What the lab's clients and servers say to each other: lines, a DNS-like TXT exchange, the FTP file.

Pure functions on bytes, shared by agent.py's clients and servers.py.
"""

from __future__ import annotations

import socket
import struct
import time

MAX_LINE = 256
IO_TIMEOUT = 5.0
FTP_FILE = "lab.bin"
FTP_LINES = 2048  # 64 KiB: many segments, so sequence adjustment after a rewritten PORT is exercised
QNAME = "seen.ipgate.lab"
TYPE_TXT = 16
_HDR = struct.Struct("!HHHHHH")


def ftp_file() -> bytes:
    """The one file the FTP server offers, the same on both sides."""
    return b"".join(b"ipgate lab ftp file, line %05d\n" % i for i in range(FTP_LINES))


def recv_line(c: socket.socket, timeout: float = IO_TIMEOUT) -> str | None:
    """One line (at most MAX_LINE bytes) without its end; None on EOF, timeout or error."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data and len(data) < MAX_LINE:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        c.settimeout(left)
        try:
            chunk = c.recv(1)  # byte by byte: what follows the line stays in the socket
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data.split(b"\n", 1)[0].rstrip(b"\r").decode(errors="replace")


def _name(qname: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in qname.split(".")) + b"\0"


def dns_query(ident: int) -> bytes:
    """A standard query (RD set) for QNAME, type TXT, class IN."""
    return _HDR.pack(ident, 0x0100, 1, 0, 0, 0) + _name(QNAME) + struct.pack("!HH", TYPE_TXT, 1)


def dns_answer(query: bytes, text: str) -> bytes | None:
    """The response to `query` with one TXT record holding `text`; None if `query` is not a DNS query."""
    if len(query) < _HDR.size + 5:
        return None
    ident, flags, qd, an, _, _ = _HDR.unpack_from(query)
    if flags & 0x8000 or qd != 1 or an != 0:
        return None
    end = _HDR.size
    for _ in range(64):  # labels of the one question
        if end >= len(query):
            return None
        n = query[end]
        end += 1 + n
        if n == 0:
            break
    question = query[_HDR.size:end + 4]
    if len(question) != end + 4 - _HDR.size:
        return None
    rdata = bytes([len(text)]) + text.encode()
    record = struct.pack("!HHHIH", 0xC00C, TYPE_TXT, 1, 0, len(rdata)) + rdata
    return _HDR.pack(ident, 0x8180, 1, 1, 0, 0) + question + record


def dns_text(answer: bytes, ident: int) -> str | None:
    """The TXT string of a response to our query `ident`; None if it is not one."""
    want_question = _name(QNAME) + struct.pack("!HH", TYPE_TXT, 1)
    if len(answer) < _HDR.size + len(want_question) + 12:
        return None
    rid, flags, qd, an, _, _ = _HDR.unpack_from(answer)
    if rid != ident or not flags & 0x8000 or flags & 0xF or qd != 1 or an != 1:
        return None
    at = _HDR.size
    if answer[at:at + len(want_question)] != want_question:
        return None
    at += len(want_question)
    _, rtype, _, _, rdlen = struct.unpack_from("!HHHIH", answer, at)
    rdata = answer[at + 12:at + 12 + rdlen]
    if rtype != TYPE_TXT or not rdata or rdata[0] + 1 != len(rdata):
        return None
    return rdata[1:].decode(errors="replace")
