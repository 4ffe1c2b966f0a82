"""Log lines in syslog's file format (RFC 3164 as rsyslog writes /var/log/messages).

    Nov 22 10:04:01 gw kernel: [FTP] IN=eth0 OUT=eth1 SRC=...
    Nov 22 10:04:01 gw ipgate[812]: reloaded /etc/ipgate.conf

The engine's lines (LOG target, "no free ports", conntrack warnings) carry
the tag `kernel:` as the kernel's would; the gateway's own messages carry
`ipgate[PID]:`.  Drops are summarised under a net_ratelimit()-like budget
(10 lines per 5 seconds) so a flood cannot fill the disk; every drop is
counted anyway.  `reopen()` (on SIGHUP) follows logrotate's convention.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import TextIO

BURST = 10  # net.core.message_burst
COST = 5.0  # net.core.message_cost, seconds


class SyslogWriter:
    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.host = socket.gethostname().split(".")[0] or "localhost"
        self.pid = os.getpid()
        self._fh: TextIO = sys.stderr
        self._window = (float("-inf"), 0)
        self.suppressed = 0
        self.reopen()

    def reopen(self) -> None:
        if self.path is None:
            return
        old = self._fh
        self._fh = open(self.path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - kept open
        if old is not sys.stderr:
            old.close()

    def _write(self, tag: str, line: str) -> None:
        stamp = time.strftime("%b %e %H:%M:%S")
        try:
            self._fh.write(f"{stamp} {self.host} {tag}: {line}\n")
            self._fh.flush()
        except (OSError, ValueError):
            pass  # a full disk or a closed stderr must not stop the gateway

    def kernel(self, line: str) -> None:
        """A line the engine logged (it applies the kernel's own rate limits)."""
        self._write("kernel", line)

    def info(self, line: str) -> None:
        self._write(f"ipgate[{self.pid}]", line)

    def limited(self, line: str, now: float) -> None:
        """A line under the drop budget; lines over it are counted and reported with the next one allowed."""
        start, n = self._window
        if now - start >= COST:
            self._window = (now, 1)
        elif n < BURST:
            self._window = (start, n + 1)
        else:
            self.suppressed += 1
            return
        if self.suppressed:
            self.info(f"{self.suppressed} messages suppressed")
            self.suppressed = 0
        self.info(line)

    def close(self) -> None:
        if self._fh is not sys.stderr:
            self._fh.close()
            self._fh = sys.stderr
