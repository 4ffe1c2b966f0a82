"""Errors raised by the core and by the command languages.

`NetlinkError` is what the kernel would answer over rtnetlink: an errno, and
optionally the extended-ack message that iproute2 prints as ``Error: ....``.
`UsageError` is what a tool itself rejects before anything reaches the kernel.
`ConfigError` names the file, line and column of a bad configuration line.
"""

from __future__ import annotations

import errno
import os


class NetlinkError(Exception):
    """An rtnetlink request refused: `errno` plus an optional extack text."""

    def __init__(self, code: int, extack: str | None = None) -> None:
        super().__init__(extack or os.strerror(code))
        self.errno = code
        self.extack = extack

    def iproute2_text(self) -> str:
        # iproute2 prints the extack when the kernel sends one, else strerror.
        if self.extack:
            return f"Error: {self.extack}."
        return f"RTNETLINK answers: {os.strerror(self.errno)}"


def enetunreach() -> NetlinkError:
    return NetlinkError(errno.ENETUNREACH)


class UsageError(Exception):
    """A command line the tool itself refuses (bad keyword, bad address...)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class ConfigError(Exception):
    """A bad line in a configuration file, reported as ``file:line:col: message``."""

    def __init__(self, filename: str, line: int, message: str, column: int = 0) -> None:
        self.filename = filename
        self.line = line
        self.column = column
        self.message = message
        where = f"{filename}:{line}" + (f":{column}" if column else "")
        super().__init__(f"{where}: {message}")
