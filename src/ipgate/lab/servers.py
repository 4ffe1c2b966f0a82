"""The lab's bounded servers, run by ``python -m ipgate.lab.agent serve SPECS LIFETIME MAXCONN NAME``.

SPECS is a comma-separated list of PORT (TCP), PORT/udp, PORT/ftp.  One line is printed
per event, flushed, for the lab to read:

    listening                            every socket is bound
    conn PORT ADDR APORT                 TCP: a client as this server saw it; each line it sends is
                                         answered "seen ADDR APORT"; an HTTP GET is answered
                                         "NAME seen ADDR APORT" (so a client knows which server it reached)
    udp PORT ADDR APORT                  a datagram; a DNS query gets a TXT record "seen ADDR APORT",
                                         anything else the line "seen ADDR APORT"
    ftp PORT ctl|port|data ADDR APORT    FTP: the control connection's peer; the address a PORT/EPRT
                                         named; the peer of a passive data connection

Each TCP connection has its own thread, with timeouts on every read and a cap on lines; the whole
server stops after LIFETIME seconds or MAXCONN connections and datagrams.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable

from ipgate.lab.wire import FTP_FILE, IO_TIMEOUT, dns_answer, ftp_file, recv_line

IDLE = 30.0  # seconds a TCP client may stay silent between lines
MAX_LINES = 1000  # lines per TCP connection
MAX_CMDS = 100  # commands per FTP session
MAX_HEADERS = 50
FTP_DATA_PORT = 20

Log = Callable[[str], None]


def _logger() -> Log:
    lock = threading.Lock()

    def log(line: str) -> None:
        with lock:
            print(line, flush=True)

    return log


def _http(c: socket.socket, peer: tuple[str, int], name: str) -> None:
    for _ in range(MAX_HEADERS):  # the request's headers, up to the blank line
        if not recv_line(c):
            break
    body = f"{name} seen {peer[0]} {peer[1]}\n".encode()
    c.sendall(b"HTTP/1.0 200 OK\r\nServer: ipgate-lab\r\nContent-Type: text/plain\r\n"
              b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)


def line_conn(c: socket.socket, peer: tuple[str, int], name: str) -> None:
    """A line client ("seen" per line) or an HTTP client (one answer, then close)."""
    with c:
        try:
            line = recv_line(c)
            if line is not None and line.startswith(("GET ", "HEAD ")):
                _http(c, peer, name)
                return
            for _ in range(MAX_LINES):
                if line is None:
                    return
                c.sendall(f"seen {peer[0]} {peer[1]}\n".encode())
                line = recv_line(c, IDLE)
        except OSError:
            pass


def _hostport(cmd: str, arg: str) -> tuple[str, int] | None:
    """PORT h1,h2,h3,h4,p1,p2 or EPRT |1|ADDR|PORT|."""
    try:
        if cmd == "PORT":
            n = [int(x) for x in arg.split(",")]
            if len(n) == 6 and all(0 <= x < 256 for x in n):
                return ".".join(map(str, n[:4])), n[4] * 256 + n[5]
        else:
            parts = arg.split(arg[0]) if arg else []
            if len(parts) == 5 and parts[1] == "1" and 0 < int(parts[3]) < 65536:
                socket.inet_aton(parts[2])
                return parts[2], int(parts[3])
    except (ValueError, OSError):
        pass
    return None


class FtpSession:
    """One FTP control connection: USER PASS PWD TYPE SYST NOOP PORT EPRT PASV EPSV LIST NLST RETR QUIT."""

    def __init__(self, c: socket.socket, port: int, log: Log) -> None:
        self.c, self.port, self.log = c, port, log
        self.active: tuple[str, int] | None = None
        self.passive: socket.socket | None = None

    def reply(self, text: str) -> None:
        self.c.sendall(f"{text}\r\n".encode())

    def run(self) -> None:
        self.reply("220 ipgate lab FTP server")
        for _ in range(MAX_CMDS):
            line = recv_line(self.c, IDLE)
            if line is None:
                return
            cmd, _, arg = line.strip().partition(" ")
            if not self.command(cmd.upper(), arg.strip()):
                return

    def command(self, cmd: str, arg: str) -> bool:
        simple = {"USER": "331 any password will do", "PASS": "230 logged in", "SYST": "215 UNIX Type: L8",
                  "PWD": '257 "/" is the current directory', "NOOP": "200 ok", "CWD": "250 ok"}
        if cmd in simple:
            self.reply(simple[cmd])
        elif cmd == "TYPE":
            self.reply(f"200 type set to {arg or 'A'}")
        elif cmd in ("PORT", "EPRT"):
            self.close_passive()
            self.active = _hostport(cmd, arg)
            if self.active is None:
                self.reply("501 bad address")
            else:
                self.log(f"ftp {self.port} port {self.active[0]} {self.active[1]}")
                self.reply(f"200 {cmd} ok")
        elif cmd in ("PASV", "EPSV"):
            self._listen(cmd)
        elif cmd in ("LIST", "NLST"):
            size = len(ftp_file())
            text = f"-rw-r--r--   1 ftp      ftp      {size:>8} Jan  1 00:00 {FTP_FILE}" if cmd == "LIST" else FTP_FILE
            self._transfer((text + "\r\n").encode())
        elif cmd == "RETR":
            if arg.lstrip("/") == FTP_FILE:
                self._transfer(ftp_file())
            else:
                self.reply("550 no such file")
        elif cmd == "QUIT":
            self.reply("221 bye")
            return False
        else:
            self.reply("502 not implemented")
        return True

    def _listen(self, cmd: str) -> None:
        self.close_passive()
        self.active = None
        here = self.c.getsockname()[0]
        s = socket.socket()
        s.bind((here, 0))
        s.listen(1)
        s.settimeout(IO_TIMEOUT)
        self.passive = s
        port = s.getsockname()[1]
        if cmd == "PASV":
            self.reply(f"227 Entering Passive Mode ({here.replace('.', ',')},{port >> 8},{port & 255})")
        else:
            self.reply(f"229 Entering Extended Passive Mode (|||{port}|)")

    def close_passive(self) -> None:
        if self.passive is not None:
            self.passive.close()
            self.passive = None

    def _data(self) -> socket.socket:
        if self.passive is not None:
            d, peer = self.passive.accept()
            self.log(f"ftp {self.port} data {peer[0]} {peer[1]}")
            self.close_passive()
            return d
        if self.active is None:
            raise OSError("no PORT or PASV first")
        d = socket.socket()
        d.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            d.bind((self.c.getsockname()[0], FTP_DATA_PORT))  # active data comes from port 20
        except OSError:
            d.bind((self.c.getsockname()[0], 0))
        d.settimeout(IO_TIMEOUT)
        target, self.active = self.active, None
        try:
            d.connect(target)
        except OSError:
            d.close()
            raise
        return d

    def _transfer(self, payload: bytes) -> None:
        passive = self.passive is not None
        if passive:  # the client is connecting already; active: connect first, so a failure is a quick 425
            self.reply("150 opening data connection")
        try:
            d = self._data()
        except OSError as e:
            self.reply(f"425 cannot open data connection: {e}")
            return
        if not passive:
            self.reply("150 data connection open")
        with d:
            d.settimeout(IO_TIMEOUT)
            d.sendall(payload)
        self.reply("226 transfer complete")


def ftp_conn(c: socket.socket, peer: tuple[str, int], port: int, log: Log) -> None:
    log(f"ftp {port} ctl {peer[0]} {peer[1]}")
    with c:
        s = FtpSession(c, port, log)
        try:
            s.run()
        except OSError:
            pass
        finally:
            s.close_passive()


def _udp(s: socket.socket, port: int, log: Log) -> None:
    try:
        data, peer = s.recvfrom(2048)
    except OSError:
        return
    log(f"udp {port} {peer[0]} {peer[1]}")
    text = f"seen {peer[0]} {peer[1]}"
    answer = dns_answer(data, text)
    try:
        s.sendto(answer if answer is not None else (text + "\n").encode(), peer)
    except OSError:
        pass


def _bind(spec: str, sel: selectors.BaseSelector) -> None:
    port_s, _, proto = spec.partition("/")
    port, kind = int(port_s), proto or "tcp"
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", port))
    else:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(64)
    sel.register(s, selectors.EVENT_READ, (port, kind))


def serve(specs: list[str], lifetime: float, maxconn: int, name: str) -> int:
    sel = selectors.DefaultSelector()
    for spec in specs:
        _bind(spec, sel)
    log = _logger()
    log("listening")
    deadline = time.monotonic() + lifetime
    served = 0
    while served < maxconn and (left := deadline - time.monotonic()) > 0:
        for key, _ in sel.select(left):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            port, kind = key.data
            served += 1
            if kind == "udp":
                _udp(sock, port, log)
                continue
            c, peer = sock.accept()
            if kind == "ftp":
                threading.Thread(target=ftp_conn, args=(c, peer, port, log), daemon=True).start()
            else:
                log(f"conn {port} {peer[0]} {peer[1]}")
                threading.Thread(target=line_conn, args=(c, peer, name), daemon=True).start()
    return 0
