"""A listening socket on the event loop whose clients each send one request and get one answer.

The control socket (control.py) and the metrics endpoint (metrics.py) are this
with their own request formats: `_read` parses what came in and calls `_reply`;
the answer is written as the socket takes it, then `_done` ends the client.
Every client has a deadline (`next_deadline`, `expire`), and at most
`max_clients` are served at once: more are closed as they come.
"""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)
class Client:
    sock: socket.socket
    deadline: float
    rbuf: bytearray = field(default_factory=bytearray)
    wbuf: memoryview | None = None
    draining: int = -1  # after the answer, bytes read and discarded (metrics' lingering close); -1 until then


class RequestServer:
    """The listening socket and its clients, registered in `sel` with callbacks as the key data."""

    max_clients = 16
    client_timeout = 5.0  # seconds a client may take to send its request and read the answer

    def __init__(self, sock: socket.socket, sel: selectors.BaseSelector) -> None:
        self.sock = sock
        self.sel = sel
        self.clients: dict[int, Client] = {}
        self.errors = 0
        sel.register(sock, selectors.EVENT_READ, self._accept)

    # -- what a server says ---------------------------------------------------------------------
    def _admit(self, conn: socket.socket) -> bool:
        """May this peer be served?"""
        return True

    def _read(self, c: Client) -> None:
        raise NotImplementedError

    def _done(self, c: Client) -> None:
        """The answer is out."""
        self._drop(c)

    # -- events ---------------------------------------------------------------------------------
    def _accept(self, _mask: int) -> None:
        for _ in range(self.max_clients):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.errors += 1
                return
            conn.setblocking(False)
            if len(self.clients) >= self.max_clients or not self._admit(conn):
                self.errors += 1
                conn.close()
                continue
            c = Client(conn, time.monotonic() + self.client_timeout)
            self.clients[conn.fileno()] = c
            self.sel.register(conn, selectors.EVENT_READ, lambda mask, c=c: self._event(c, mask))

    def _event(self, c: Client, _mask: int) -> None:
        if c.wbuf is None:
            self._read(c)
        else:
            self._write(c)

    def _recv(self, c: Client, size: int) -> bytes | None:
        """What the client sent (b"" when nothing is there yet); None once it closed or failed (dropped)."""
        try:
            data = c.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            self._drop(c)
            return None
        if not data:
            self._drop(c)
            return None
        return data

    def _reply(self, c: Client, data: bytes) -> None:
        c.wbuf = memoryview(data)
        c.rbuf.clear()
        c.deadline = time.monotonic() + self.client_timeout
        self.sel.modify(c.sock, selectors.EVENT_WRITE, lambda mask, c=c: self._event(c, mask))
        self._write(c)

    def _write(self, c: Client) -> None:
        assert c.wbuf is not None
        try:
            n = c.sock.send(c.wbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self._drop(c)
        c.wbuf = c.wbuf[n:]
        if not len(c.wbuf):
            self._done(c)

    def _drop(self, c: Client) -> None:
        if self.clients.pop(c.sock.fileno(), None) is not None:
            self.sel.unregister(c.sock)
        c.sock.close()

    # -- housekeeping ---------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return min((c.deadline for c in self.clients.values()), default=None)

    def expire(self, now: float) -> None:
        for c in [c for c in self.clients.values() if c.deadline <= now]:
            self._drop(c)

    def close(self) -> None:
        for c in list(self.clients.values()):
            self._drop(c)
        try:
            self.sel.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.sock.close()
