"""The lab's clients beyond ping and the line client (agent.py): HTTP, a DNS-like UDP query, FTP, a table filler.

Each prints one line and returns 0 when the exchange went through:

    http DST PORT                  http.client GET /; "local A:P server NAME seen B:Q"
    udp DST PORT                   a DNS query (TXT); "local A:P seen B:Q" from the answer
    ftp DST PORT MODE              ftplib: login, PWD, LIST, RETR of the server's file; MODE active (PORT),
                                   eprt, passive (PASV) or epsv; "local A:P list N retr BYTES"
    fill DST TPORT UPORT MAX FLOWS hold MAX-1 TCP connections, send FLOWS new UDP flows (one datagram
                                   each, one after the other), hold one more TCP connection (now MAX),
                                   send FLOWS more at once, then use every TCP connection again;
                                   "held H room A full B after K" (UDP flows answered in each burst)
"""

from __future__ import annotations

import ftplib
import http.client
import os
import selectors
import socket
import time

from ipgate.lab.wire import FTP_FILE, IO_TIMEOUT, dns_query, dns_text, ftp_file, recv_line

MAX_BODY = 4096
UDP_TRIES = 2
FLOW_WAIT = 1.0  # seconds for the answer to one UDP flow while there is room
FULL_WAIT = 1.5  # seconds for any answer to the burst sent at a full table


def _fail(what: str) -> int:
    print(f"error {what}", flush=True)
    return 1


def http_get(dst: str, port: int) -> int:
    conn = http.client.HTTPConnection(dst, port, timeout=IO_TIMEOUT)
    try:
        conn.request("GET", "/", headers={"User-Agent": "ipgate-lab"})
        assert conn.sock is not None
        local = conn.sock.getsockname()
        resp = conn.getresponse()
        body = resp.read(MAX_BODY).decode(errors="replace").split()
    except (OSError, http.client.HTTPException) as e:
        return _fail(str(e) or type(e).__name__)
    finally:
        conn.close()
    if resp.status != 200 or len(body) != 4 or body[1] != "seen":
        return _fail(f"unexpected answer {resp.status} {' '.join(body)!r}")
    print(f"local {local[0]}:{local[1]} server {body[0]} seen {body[2]}:{body[3]}", flush=True)
    return 0


def udp_query(dst: str, port: int) -> int:
    ident = int.from_bytes(os.urandom(2), "big")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((dst, port))
        local = s.getsockname()
        for _ in range(UDP_TRIES):
            s.send(dns_query(ident))
            s.settimeout(IO_TIMEOUT / UDP_TRIES)
            try:
                text = dns_text(s.recv(2048), ident)
            except OSError:
                continue
            words = (text or "").split()
            if len(words) == 3 and words[0] == "seen":
                print(f"local {local[0]}:{local[1]} seen {words[1]}:{words[2]}", flush=True)
                return 0
            return _fail(f"unexpected answer {text!r}")
    return _fail(f"no answer in {IO_TIMEOUT:g} s")


class LabFTP(ftplib.FTP):
    """ftplib with the extended commands on IPv4 too: EPRT for `eprt`, EPSV for `epsv`."""

    mode = "passive"

    def makeport(self) -> socket.socket:
        if self.mode != "eprt":
            return super().makeport()
        assert self.sock is not None
        sock = socket.create_server(("", 0), backlog=1)
        sock.settimeout(IO_TIMEOUT)
        self.sendeprt(self.sock.getsockname()[0], sock.getsockname()[1])
        return sock

    def makepasv(self) -> tuple[str, int]:
        if self.mode != "epsv":
            return super().makepasv()
        assert self.sock is not None
        host, port = ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())
        return str(host), int(port)


def ftp_get(dst: str, port: int, mode: str) -> int:
    ftp = LabFTP(timeout=IO_TIMEOUT)
    ftp.mode = mode
    ftp.set_pasv(mode in ("passive", "epsv"))
    listing: list[str] = []
    data = bytearray()
    try:
        ftp.connect(dst, port)
        assert ftp.sock is not None
        local = ftp.sock.getsockname()
        ftp.login()
        ftp.pwd()
        ftp.retrlines("LIST", listing.append)
        ftp.retrbinary(f"RETR {FTP_FILE}", data.extend)
        ftp.quit()
    except (OSError, EOFError, ftplib.Error) as e:
        ftp.close()
        return _fail(f"{mode}: {e or type(e).__name__}")
    if len(listing) != 1 or not listing[0].endswith(FTP_FILE):
        return _fail(f"unexpected listing {listing!r}")
    if bytes(data) != ftp_file():
        return _fail(f"RETR gave {len(data)} bytes, not the server's {len(ftp_file())}")
    print(f"local {local[0]}:{local[1]} list {len(listing)} retr {len(data)}", flush=True)
    return 0


def _hold(dst: str, port: int, conns: list[socket.socket]) -> bool:
    try:
        c = socket.create_connection((dst, port), timeout=IO_TIMEOUT)
    except OSError:
        return False
    conns.append(c)
    return _talk(c)


def _talk(c: socket.socket) -> bool:
    try:
        c.sendall(b"hold\n")
    except OSError:
        return False
    return (recv_line(c) or "").startswith("seen ")


def _flows(dst: str, port: int, count: int, together: bool) -> int:
    """New UDP flows, one datagram each; how many were answered."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    answered = 0
    try:
        if not together:
            for i, s in enumerate(socks):
                s.settimeout(FLOW_WAIT)
                s.sendto(b"flow %d\n" % i, (dst, port))
                try:
                    answered += s.recv(256).startswith(b"seen ")
                except OSError:
                    pass
            return answered
        sel = selectors.DefaultSelector()
        for i, s in enumerate(socks):
            s.sendto(b"flow %d\n" % i, (dst, port))
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + FULL_WAIT
        while (left := deadline - time.monotonic()) > 0 and answered < count:
            for key, _ in sel.select(left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                sel.unregister(sock)
                try:
                    answered += sock.recv(256).startswith(b"seen ")
                except OSError:
                    pass
        return answered
    finally:
        for s in socks:
            s.close()


def fill(dst: str, tport: int, uport: int, maximum: int, flows: int) -> int:
    conns: list[socket.socket] = []
    try:
        held = sum(_hold(dst, tport, conns) for _ in range(maximum - 1))
        room = _flows(dst, uport, flows, together=False)
        held += _hold(dst, tport, conns)
        full = _flows(dst, uport, flows, together=True)
        after = sum(_talk(c) for c in conns)
    finally:
        for c in conns:
            c.close()
    print(f"held {held} room {room} full {full} after {after}", flush=True)
    return 0 if held == after == maximum else 1
