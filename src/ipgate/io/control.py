"""The control socket: `ipgate ip addr show` and friends against the running gateway.

A Unix stream socket (default /run/ipgate.sock, mode 0600, and only root or
the gateway's own user may talk to it: SO_PEERCRED is checked).  One request
per connection, one JSON line each way:

    -> {"argv": ["ip", "addr", "show"], "stdin": null}
    <- {"status": 0, "out": "1: lo: ...", "err": ""}

The server is non-blocking and lives in the gateway's selector, so commands
run between packet batches against the live state.  Everything is bounded:
request size, number of clients, and how long a client may take.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import stat
import struct
import time
from collections.abc import Callable

from ipgate.io.sockserver import Client, RequestServer

DEFAULT_PATH = "/run/ipgate.sock"
MAX_REQUEST = 16 << 20  # argv plus stdin (an iptables-restore file)
MAX_CLIENTS = 32
CLIENT_TIMEOUT = 10.0  # seconds a client may take to send its request and read the answer
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid

Handler = Callable[[list[str], "str | None"], tuple[int, str, str]]


class ControlError(Exception):
    """The control socket cannot be reached or answered nonsense."""


def _decode_request(line: bytes) -> tuple[list[str], str | None]:
    req = json.loads(line)
    if not isinstance(req, dict):
        raise ValueError("request is not an object")
    argv = req.get("argv")
    stdin = req.get("stdin")
    if not isinstance(argv, list) or not all(isinstance(w, str) for w in argv):
        raise ValueError("argv must be a list of strings")
    if stdin is not None and not isinstance(stdin, str):
        raise ValueError("stdin must be a string")
    return argv, stdin


def _encode(status: int, out: str, err: str) -> bytes:
    return json.dumps({"status": status, "out": out, "err": err}).encode() + b"\n"


class ControlServer(RequestServer):
    """The control socket: one JSON request line (argv, stdin) in, one answer (status, stdout, stderr) out."""

    max_clients = MAX_CLIENTS
    client_timeout = CLIENT_TIMEOUT

    def __init__(self, path: str, handler: Handler, sel: selectors.BaseSelector) -> None:
        self.path = path
        self.handler = handler
        _clear_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)  # created 0600: no window where others could connect
        try:
            sock.bind(path)
        except BaseException:
            sock.close()
            raise
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(MAX_CLIENTS)
        self._ino = os.stat(path).st_ino
        super().__init__(sock, sel)

    def _admit(self, conn: socket.socket) -> bool:
        return _allowed(conn)

    def _read(self, c: Client) -> None:
        data = self._recv(c, 1 << 16)
        if not data:
            return
        c.rbuf += data
        nl = c.rbuf.find(b"\n")
        if nl < 0:
            if len(c.rbuf) > MAX_REQUEST:
                self._reply(c, _encode(2, "", "ipgate: control request too long\n"))
            return
        try:
            argv, stdin = _decode_request(bytes(c.rbuf[:nl]))
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            self._reply(c, _encode(2, "", f"ipgate: bad control request: {e}\n"))
            return
        try:
            status, out, err = self.handler(argv, stdin)
        except Exception as e:  # noqa: BLE001 - a command must never stop the gateway
            self.errors += 1
            status, out, err = 1, "", f"ipgate: internal error: {type(e).__name__}: {e}\n"
        self._reply(c, _encode(status, out, err))

    def close(self) -> None:
        super().close()
        try:
            if os.stat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        except OSError:
            pass


def _allowed(conn: socket.socket) -> bool:
    """Only root and the gateway's own user (SO_PEERCRED)."""
    try:
        _pid, uid, _gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except OSError:
        return False
    return uid in (0, os.geteuid())


def _clear_stale(path: str) -> None:
    """Remove a socket file nobody listens on; refuse to take over a live one or a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # stale: left by a gateway that did not stop cleanly
        return
    finally:
        probe.close()
    raise OSError(f"{path}: another gateway is listening there")


def request(path: str, argv: list[str], stdin: str | None = None, timeout: float = 60.0) -> tuple[int, str, str]:
    """Run `argv` on the gateway listening at `path`: (status, stdout, stderr)."""
    body = json.dumps({"argv": argv, "stdin": stdin}).encode() + b"\n"
    if len(body) > MAX_REQUEST:
        raise ControlError("request too long")
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(body)
            chunks: list[bytes] = []
            while True:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                data = s.recv(1 << 16)
                if not data:
                    break
                chunks.append(data)
    except OSError as e:
        raise ControlError(f"{path}: {e.strerror or e}") from None
    raw = b"".join(chunks)
    try:
        res = json.loads(raw)
        return int(res["status"]), str(res["out"]), str(res["err"])
    except (ValueError, KeyError, TypeError):
        raise ControlError(f"{path}: bad answer from the gateway") from None
