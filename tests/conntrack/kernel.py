"""The real kernel as an oracle: client -- router (conntrack) -- server namespaces.

One Python process joins each namespace with setns(2) to open its sockets,
then stays in the router's namespace: it sends crafted IPv4 packets from the
client's or the server's raw socket and reads the router's
/proc/net/nf_conntrack between steps, without a subprocess per packet.
Client and server drop all TCP/UDP in raw PREROUTING, so their own stacks
never answer.  Only documentation addresses; the namespaces are removed on
close.  Root only.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess

CLONE_NEWNET = 0x40000000


def usable() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "not root"
    for tool in ("ip", "iptables-legacy"):
        if shutil.which(tool) is None:
            return False, f"{tool} missing"
    return True, ""


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


class Netns:
    """Three namespaces; the calling thread ends up in the router's."""

    def __init__(self, tag: str = "") -> None:
        p = f"ipgct{tag}-{os.getpid()}"
        self.c, self.r, self.s = f"{p}-c", f"{p}-r", f"{p}-s"
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.socks: dict[str, socket.socket] = {}
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        c, r, s = self.c, self.r, self.s
        for ns in (c, r, s):
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "link", "add", "rc", "netns", r, "type", "veth", "peer", "name", "cr", "netns", c)
        _run("ip", "link", "add", "rs", "netns", r, "type", "veth", "peer", "name", "sr", "netns", s)
        for ns, dev, addr in ((c, "cr", "192.0.2.1/24"), (r, "rc", "192.0.2.254/24"),
                              (r, "rs", "198.51.100.254/24"), (s, "sr", "198.51.100.2/24")):
            _run("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
        _run("ip", "-n", c, "route", "add", "default", "via", "192.0.2.254")
        _run("ip", "-n", s, "route", "add", "default", "via", "198.51.100.254")
        _run("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        _run("ip", "netns", "exec", r, "iptables-legacy", "-A", "FORWARD", "-m", "conntrack", "--ctstate",
             "INVALID,NEW,ESTABLISHED,RELATED,UNTRACKED", "-j", "ACCEPT")
        for ns in (c, s):
            for proto in ("tcp", "udp", "icmp"):
                _run("ip", "netns", "exec", ns, "iptables-legacy", "-t", "raw", "-A", "PREROUTING", "-p", proto,
                     "-j", "DROP")
        for name, ns in (("c", c), ("s", s)):
            self._enter(ns)
            self.socks[name] = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._enter(r)

    def _enter(self, ns: str) -> None:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if self._libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {ns}")
        finally:
            os.close(fd)

    def send(self, from_client: bool, pkt: bytes) -> None:
        dst = socket.inet_ntoa(pkt[16:20])
        self.socks["c" if from_client else "s"].sendto(pkt, (dst, 0))

    def router(self, *args: str) -> str:
        return subprocess.run(("ip", "netns", "exec", self.r) + args, check=True, capture_output=True,
                              text=True, timeout=20).stdout

    def proc(self) -> list[str]:
        with open("/proc/self/net/nf_conntrack") as f:
            return f.read().splitlines()

    def close(self) -> None:
        for sk in self.socks.values():
            sk.close()
        if self._libc.setns(self._home, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
        os.close(self._home)
        for ns in (self.c, self.r, self.s):
            subprocess.run(("ip", "netns", "del", ns), capture_output=True, timeout=20)


def tcp_entry(lines: list[str], sport: int) -> list[object] | None:
    """[state, timeout, unreplied, assured] of the TCP entry whose client port is `sport`."""
    needle = f" sport={sport} "
    for line in lines:
        if " tcp " in line and needle in line.split("src=", 2)[1]:
            f = line.split()
            return [f[5], int(f[4]), "[UNREPLIED]" in line, "[ASSURED]" in line]
    return None
