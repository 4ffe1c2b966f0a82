"""The real Linux kernel as a gateway that IPv4 packets can be injected into.

Two namespaces: `<p>-gw` holds one veth per interface name asked for; every
peer end (`p0`, `p1`, ...) sits, up and without addresses, in `<p>-w` (the
"world"), whose own stack is silenced.  Frames are injected from the world
side with AF_PACKET; the gateway's transmissions are read in the gateway's
namespace by one ETH_P_ALL socket, so the frames of all interfaces arrive in
the order the kernel sent them, at transmit time.

Completion is known without sleeping: after each packet a barrier frame (an
ethertype nobody handles) follows it into the same per-CPU backlog (the
thread is pinned to one CPU while injecting).  The gateway finishes the packet,
transmitting whatever it causes, before the barrier reaches the socket.  ARP
requests are answered with 02:00:<IPv4 address> and a frame's destination MAC
is decoded back into that nexthop.  `settle` is only the fallback quiet time
for when the barrier cannot come back (the gateway's interface is down).

Root only; documentation addresses only; the namespaces are removed on close.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import secrets
import select
import shlex
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from types import TracebackType

NS_PREFIX = "ipgt-"
CMD_TIMEOUT = 10.0
CLONE_NEWNET = 0x40000000

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_BARRIER = 0x88B5  # IEEE local experimental: no handler, the gateway drops it silently
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM = 0x16
ETHTOOL_STXCSUM = 0x17

BROADCAST = 0xFFFFFFFF  # nexthop of a frame sent to ff:ff:ff:ff:ff:ff
UNKNOWN_NEXTHOP = -1  # a destination MAC that is not 02:00:<ip>, broadcast or multicast

Out = tuple[str, int, bytes]  # (ifname, nexthop, ip_bytes)

_MAGIC = b"ipgt-barrier"
_BCAST_MAC = b"\xff" * 6
_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_MAX_FRAMES = 100_000  # per packet: bounds every read loop
_MAX_ARP = 64  # ARP answers per packet
_BUF = 1 << 17  # > 65535 + link header

# Kernel defaults (net/ipv4/devinet.c), written explicitly: a new netns copies
# conf/all and conf/default from the host's init_net, whatever the host set.
_CONF_DEFAULTS: dict[str, str] = {
    "forwarding": "0", "rp_filter": "0", "accept_local": "0", "route_localnet": "0",
    "src_valid_mark": "0", "send_redirects": "1", "accept_redirects": "1", "secure_redirects": "1",
    "shared_media": "1", "proxy_arp": "0", "proxy_arp_pvlan": "0", "arp_filter": "0", "arp_ignore": "0",
    "arp_announce": "0", "arp_accept": "0", "arp_notify": "0", "bootp_relay": "0", "log_martians": "0",
    "promote_secondaries": "0", "ignore_routes_with_linkdown": "0", "bc_forwarding": "0",
    "drop_unicast_in_l2_multicast": "0", "drop_gratuitous_arp": "0", "disable_policy": "0",
    "disable_xfrm": "0",
}
_SOURCE_ROUTE = {"all": "0", "default": "1", "lo": "1"}  # ipv4_devconf vs ipv4_devconf_dflt
_GW_GLOBALS: dict[str, str] = {
    "ipv6/conf/all/disable_ipv6": "1",
    "ipv6/conf/default/disable_ipv6": "1",
    "ipv4/ip_forward": "0",
    # every ICMP error the kernel decides on is sent
    "ipv4/icmp_ratelimit": "0",
    "ipv4/icmp_msgs_per_sec": "1000000",
    "ipv4/icmp_msgs_burst": "1000000",
}
# Fixed multipath seed (>= 6.11), as tests/kernel/oracle.py: choices repeat run to run.
_GW_OPTIONAL = {"ipv4/fib_multipath_hash_seed": "1"}
_WORLD_SYSCTLS: dict[str, str] = {
    "ipv6/conf/all/disable_ipv6": "1",
    "ipv6/conf/default/disable_ipv6": "1",
    "ipv4/ip_forward": "0",
    "ipv4/conf/all/arp_ignore": "8",  # never answer ARP
    "ipv4/conf/default/arp_ignore": "8",
}
# Neighbour entries stay REACHABLE: fewer ARP probes (harness plumbing only).
_REACHABLE_MS = "3600000"

_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_ECHO_RE = re.compile(r"^/proc/sys/net/[A-Za-z0-9_./:-]+$")
_SYSCTL_OPT_RE = re.compile(r"^-[wqneNaAX]+$|^--(write|quiet|values|names|all)$")
_IPTABLES = {
    "iptables": "iptables-legacy", "iptables-legacy": "iptables-legacy",
    "iptables-save": "iptables-legacy-save", "iptables-legacy-save": "iptables-legacy-save",
    "iptables-restore": "iptables-legacy-restore", "iptables-legacy-restore": "iptables-legacy-restore",
}
_TOOLS = ("ip", "iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore", "conntrack", "sysctl", "sh")

_libc = ctypes.CDLL(None, use_errno=True)


class GatewayError(RuntimeError):
    """The harness itself failed (not a command the kernel rejected)."""


def _exec(argv: Sequence[str], stdin: str | None = None, env: dict[str, str] | None = None,
          timeout: float = CMD_TIMEOUT) -> tuple[int, str, str]:
    try:
        p = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout,
                           check=False, env=env)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out, f"kernel_gw: timeout after {timeout}s: {' '.join(argv)}\n"
    return p.returncode, p.stdout, p.stderr


def _must(argv: Sequence[str], stdin: str | None = None) -> str:
    st, out, err = _exec(argv, stdin)
    if st != 0:
        raise GatewayError(f"{' '.join(argv)}: {err.strip()}")
    return out


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns {what}: {os.strerror(e)}")


def netns_usable() -> tuple[bool, str]:
    """Can a gateway be built here?  (ok, reason if not)."""
    if os.geteuid() != 0:
        return False, "needs root"
    for tool in _TOOLS:
        if shutil.which(tool) is None:
            return False, f"{tool} missing"
    name = f"{NS_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-probe"
    st, _, err = _exec(["ip", "netns", "add", name])
    if st != 0:
        return False, f"ip netns add: {err.strip()}"
    _exec(["ip", "netns", "del", name])
    return True, ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_STALE_RE = re.compile(rf"^{re.escape(NS_PREFIX)}(\d+)-[0-9a-f]{{8}}-(gw|w|probe)$")
_stale_done = False


def cleanup_stale() -> list[str]:
    """Delete this module's namespaces left by dead processes (never a live owner's)."""
    st, out, _ = _exec(["ip", "netns", "list"])
    gone: list[str] = []
    for line in out.splitlines()[:10_000] if st == 0 else []:
        name = line.split()[0] if line.split() else ""
        m = _STALE_RE.match(name)
        if m is None or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        if _exec(["ip", "netns", "del", name])[0] == 0:
            gone.append(name)
    return gone


def _mac(kind: int, i: int) -> bytes:
    return bytes((0x02, kind, 0, 0, i >> 8 & 0xFF, i & 0xFF))


def _mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def nexthop_of(dst_mac: bytes, ip: bytes) -> int:
    """The IPv4 nexthop a frame's destination MAC stands for."""
    if dst_mac == _BCAST_MAC:
        return BROADCAST
    if dst_mac[:2] == b"\x02\x00":
        return int.from_bytes(dst_mac[2:6], "big")
    if dst_mac[:3] == b"\x01\x00\x5e" and len(ip) >= 20:
        return int.from_bytes(ip[16:20], "big")  # ip_eth_mc_map(daddr): the destination itself
    return UNKNOWN_NEXTHOP


@contextmanager
def _pinned() -> Iterator[None]:
    """Keep the calling thread on its current CPU (one backlog queue: FIFO)."""
    old: set[int] | None = None
    try:
        cur = int(_libc.sched_getcpu())
        mask = os.sched_getaffinity(0)
        if cur >= 0 and cur in mask and len(mask) > 1:
            os.sched_setaffinity(0, {cur})
            old = mask
    except OSError:
        old = None
    try:
        yield
    finally:
        if old is not None:
            os.sched_setaffinity(0, old)


class KernelGateway:
    """A gateway namespace with veths `ifaces`; a context manager."""

    def __init__(self, ifaces: Sequence[str]) -> None:
        names = list(ifaces)
        if not names or len(set(names)) != len(names) or len(names) > 64:
            raise ValueError(f"need 1..64 distinct interface names: {names!r}")
        for n in names:
            if not _IFNAME_RE.match(n) or n in ("lo", ".", ".."):
                raise ValueError(f"bad interface name {n!r}")
        self.ifaces: tuple[str, ...] = tuple(names)
        tag = f"{NS_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.ns = f"{tag}-gw"
        self.world = f"{tag}-w"
        self.macs: dict[str, bytes] = {n: _mac(0x01, i + 1) for i, n in enumerate(names)}
        self._peer_macs: dict[str, bytes] = {n: _mac(0xFE, i + 1) for i, n in enumerate(names)}
        self._peers: dict[str, str] = {n: f"p{i}" for i, n in enumerate(names)}
        self._created: list[str] = []
        self._fds: dict[str, int] = {}
        self._tx: dict[str, socket.socket] = {}
        self._cap: socket.socket | None = None
        self._poll = select.poll()
        self._buf = bytearray(_BUF)
        self._view = memoryview(self._buf)
        self._seq = 0
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        fd, self._lock = tempfile.mkstemp(prefix=f"{tag}-", suffix=".xtables.lock")
        os.close(fd)
        # a private xtables lock: only this process edits these namespaces' tables
        self._env = {**os.environ, "XTABLES_LOCKFILE": self._lock, "LC_ALL": "C"}
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------
    def __enter__(self) -> KernelGateway:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the sockets and delete both namespaces; safe to call twice."""
        for sk in [*self._tx.values(), *([self._cap] if self._cap is not None else [])]:
            sk.close()
        self._tx.clear()
        self._cap = None
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        for name in list(self._created):  # gateway first: its veths take the peers along
            _exec(["ip", "netns", "del", name])
            self._created.remove(name)
        if self._home >= 0:
            os.close(self._home)
            self._home = -1
        with suppress(FileNotFoundError):
            os.unlink(self._lock)

    def _setup(self) -> None:
        global _stale_done
        if not _stale_done:
            cleanup_stale()
            _stale_done = True
        for name in (self.ns, self.world):
            _must(["ip", "netns", "add", name])
            self._created.append(name)
            self._fds[name] = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        gw: dict[str, str] = dict(_GW_GLOBALS)
        for dev in ("default", "all", "lo"):  # default first: devices made later copy it
            for key, val in _CONF_DEFAULTS.items():
                gw[f"ipv4/conf/{dev}/{key}"] = val
            gw[f"ipv4/conf/{dev}/accept_source_route"] = _SOURCE_ROUTE[dev]
        self._sysctls(self.ns, gw)
        self._sysctls(self.ns, _GW_OPTIONAL, optional=True)
        self._sysctls(self.world, _WORLD_SYSCTLS)
        for n in self.ifaces:
            _must(["ip", "link", "add", n, "netns", self.ns, "address", _mac_text(self.macs[n]), "type", "veth",
                   "peer", "name", self._peers[n], "netns", self.world,
                   "address", _mac_text(self._peer_macs[n]), "mtu", "65535"])
        _must(["ip", "-n", self.ns, "-batch", "-"],
              "link set lo up\n" + "".join(f"link set {n} up\n" for n in self.ifaces))
        _must(["ip", "-n", self.world, "-batch", "-"],
              "".join(f"link set {p} up\n" for p in self._peers.values()))
        self._sysctls(self.ns, {f"ipv4/neigh/{n}/base_reachable_time_ms": _REACHABLE_MS for n in self.ifaces})
        for chain in ("PREROUTING", "OUTPUT"):  # the world's stack stays silent
            st, _, err = self._in(self.world, ["iptables-legacy", "-t", "raw", "-A", chain, "-j", "DROP"])
            if st != 0:
                raise GatewayError(f"world iptables: {err.strip()}")
        with self._entered(self.world):
            for n in self.ifaces:
                # protocol 0: send only, nothing is queued to it
                sk = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                self._tx[n] = sk
                sk.bind((self._peers[n], 0))
        with self._entered(self.ns):
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self._cap = cap
            cap.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ctl:
                for n in self.ifaces:
                    # software checksums: the capture would see CHECKSUM_PARTIAL otherwise
                    _ethtool(ctl, n, ETHTOOL_STXCSUM, 0)
                    if _ethtool(ctl, n, ETHTOOL_GTXCSUM, 0) != 0:
                        raise GatewayError(f"{n}: tx checksumming still on")
        self._poll.register(cap.fileno(), select.POLLIN)

    def _sysctls(self, ns: str, values: dict[str, str], optional: bool = False) -> None:
        with self._entered(ns):
            for key, val in values.items():
                try:
                    with open(f"/proc/sys/net/{key}", "w") as f:
                        f.write(val + "\n")
                except OSError as e:
                    if not (optional or key.startswith("ipv6/")):  # a kernel without IPv6 is fine
                        raise GatewayError(f"{ns}: {key}={val}: {e}") from e

    @contextmanager
    def _entered(self, ns: str) -> Iterator[None]:
        """The calling thread in `ns` for the block, then home again."""
        _setns(self._fds[ns], ns)
        try:
            yield
        finally:
            _setns(self._home, "home")

    def _in(self, ns: str, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
        with self._entered(ns):  # a child inherits the thread's namespace
            return _exec(argv, stdin, self._env)

    # -- configuration ---------------------------------------------------
    def run(self, line: str, stdin: str | None = None) -> tuple[int, str, str]:
        """One configuration line inside the gateway namespace: (status, stdout, stderr)."""
        try:
            lex = shlex.shlex(line, posix=True, punctuation_chars="<>|;&")
            lex.whitespace_split = True
            words = list(lex)
        except ValueError as e:
            return 2, "", f"kernel_gw: cannot parse: {e}\n"
        if not words:
            return 0, "", ""
        cmd, args = words[0], words[1:]
        if any(w and w[0] in "<>|;&" for w in words) and cmd != "echo":
            return 2, "", "kernel_gw: no redirections or pipes\n"
        if cmd == "ip":
            bad = _ip_refusal(args)
            if bad:
                return 2, "", f"kernel_gw: {bad}\n"
            return _exec(["ip", "-n", self.ns, *args], stdin, self._env)
        if cmd in _IPTABLES:
            return self._in(self.ns, [_IPTABLES[cmd], *args], stdin)
        if cmd == "conntrack":
            return self._in(self.ns, ["conntrack", *args], stdin)
        if cmd == "sysctl":
            bad = _sysctl_refusal(args)
            if bad:
                return 2, "", f"kernel_gw: {bad}\n"
            return self._in(self.ns, ["sysctl", *args])
        if cmd == "echo":
            if len(words) < 4 or words[-2] not in (">", ">>") or any(w[0] in "<>|;&" for w in words[1:-2]):
                return 2, "", "kernel_gw: only `echo VALUE > /proc/sys/net/...`\n"
            path = words[-1]
            if not _ECHO_RE.match(path) or ".." in path:
                return 2, "", f"kernel_gw: refusing to write {path}\n"
            return self._in(self.ns, ["sh", "-c", 'echo "$1" > "$2"', "sh", " ".join(words[1:-2]), path])
        return 127, "", f"kernel_gw: unsupported command: {cmd}\n"

    def conntrack_list(self) -> list[str]:
        """`conntrack -L` lines of the gateway namespace."""
        st, out, err = self._in(self.ns, ["conntrack", "-L"])
        if st != 0:
            raise GatewayError(f"conntrack -L: {err.strip()}")
        return out.splitlines()

    # -- packets ---------------------------------------------------------
    def inject(self, dev: str, packets: Sequence[bytes], *, settle: float = 0.05, timeout: float = 2.0
               ) -> list[list[Out]]:
        """Each packet arrives at the gateway on `dev`; per packet, what the gateway sent: (ifname, nexthop, ip).

        Done at the barrier; `settle` (quiet time) and `timeout` (per packet) only bound a lost barrier.
        """
        if dev not in self._tx:
            raise ValueError(f"no interface {dev!r} (have {', '.join(self.ifaces)})")
        if self._cap is None:
            raise GatewayError("closed")
        out: list[list[Out]] = []
        with _pinned():
            for pkt in packets:
                out.append(self._one(dev, bytes(pkt), settle, timeout))
        return out

    def _one(self, dev: str, pkt: bytes, settle: float, timeout: float) -> list[Out]:
        deadline = time.monotonic() + timeout
        self._drain(settle, deadline)
        if not self._send(dev, _ETH.pack(self.macs[dev], self._peer_macs[dev], ETH_P_IP) + pkt):
            return []  # the link dropped it: the gateway saw nothing
        return self._collect(self._barrier(dev), settle, deadline)

    def _send(self, dev: str, frame: bytes) -> bool:
        """False when the veth drops the frame (gateway end down, frame above its MTU)."""
        try:
            self._tx[dev].send(frame)
        except OSError as e:
            if e.errno in (errno.ENOBUFS, errno.ENETDOWN, errno.EMSGSIZE):
                return False
            raise
        return True

    def _barrier(self, dev: str) -> int:
        self._seq += 1
        frame = _ETH.pack(self.macs[dev], self._peer_macs[dev], ETH_P_BARRIER) + _MAGIC + struct.pack(
            "!I", self._seq)
        self._send(dev, frame.ljust(60, b"\0"))  # if lost, `settle` ends the wait
        return self._seq

    def _recv(self) -> tuple[bytes, str, int] | None:
        """One captured frame (frame, ifname, pkttype), or None when the queue is empty."""
        assert self._cap is not None
        try:
            n, addr = self._cap.recvfrom_into(self._buf, _BUF, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        return bytes(self._view[:n]), addr[0], addr[2]

    def _handle(self, frame: bytes, ifname: str, pkttype: int, out: list[Out] | None) -> int:
        """Account for one frame: 1 = ARP answered, -seq = barrier seen, 0 = anything else."""
        if len(frame) < 14:
            return 0
        dst, _src, etype = _ETH.unpack_from(frame)
        if pkttype != PACKET_OUTGOING:
            if etype == ETH_P_BARRIER and frame[14:14 + len(_MAGIC)] == _MAGIC:
                return -int.from_bytes(frame[14 + len(_MAGIC):18 + len(_MAGIC)], "big")
            return 0  # injected frames, and lo's incoming copies
        if ifname not in self._tx:
            return 0  # lo, or a device the configuration added
        if etype == ETH_P_IP:
            if out is not None:
                ip = frame[14:]
                out.append((ifname, nexthop_of(dst, ip), ip))
            return 0
        if etype == ETH_P_ARP and self._answer_arp(ifname, frame):
            return 1
        return 0

    def _answer_arp(self, ifname: str, frame: bytes) -> bool:
        if len(frame) < 14 + _ARP.size:
            return False
        htype, ptype, hlen, plen, op, sha, spa, _tha, tpa = _ARP.unpack_from(frame, 14)
        if (htype, ptype, hlen, plen, op) != (1, ETH_P_IP, 6, 4, 1):
            return False
        mac = b"\x02\x00" + tpa
        reply = _ETH.pack(sha, mac, ETH_P_ARP) + _ARP.pack(1, ETH_P_IP, 6, 4, 2, mac, tpa, sha, spa)
        return self._send(ifname, reply)

    def _collect(self, want: int, settle: float, deadline: float, keep: bool = True) -> list[Out]:
        """Frames up to barrier `want`; an answered ARP request moves the barrier after the answer."""
        assert self._cap is not None
        out: list[Out] = []
        quiet = time.monotonic() + settle
        arps = 0
        for _ in range(_MAX_FRAMES):
            got = self._recv()
            if got is None:
                now = time.monotonic()
                wait = min(deadline, quiet) - now
                if wait <= 0:
                    break
                self._poll.poll(wait * 1000)  # rounded up to whole ms
                continue
            quiet = time.monotonic() + settle
            frame, ifname, pkttype = got
            r = self._handle(frame, ifname, pkttype, out if keep else None)
            if r == -want:
                return out
            if r == 1 and arps < _MAX_ARP:
                arps += 1
                want = self._barrier(ifname)
        return out

    def _drain(self, settle: float, deadline: float) -> None:
        """Discard what is queued (background); answer ARP probes, then wait out what the answers release."""
        answered = ""
        for _ in range(_MAX_FRAMES):
            got = self._recv()
            if got is None:
                break
            if self._handle(*got, None) == 1:
                answered = got[1]
        if answered:
            self._collect(self._barrier(answered), settle, deadline, keep=False)


def _ethtool(sk: socket.socket, ifname: str, cmd: int, data: int) -> int:
    """A legacy ethtool_value ioctl on `ifname`; returns the data the kernel wrote back."""
    val = ctypes.create_string_buffer(struct.pack("II", cmd, data), 8)
    ifr = struct.pack("16sP", ifname.encode(), ctypes.addressof(val)).ljust(40, b"\0")
    fcntl.ioctl(sk.fileno(), SIOCETHTOOL, ifr)
    return int(struct.unpack("II", val.raw)[1])


def _ip_refusal(args: list[str]) -> str:
    """Why an `ip` argument list could leave the gateway namespace ('' if it cannot)."""
    for w in args:
        if w.startswith("-"):
            o = "-" + w.lstrip("-")
            if len(o) >= 2 and any(opt.startswith(o) for opt in ("-netns", "-all", "-batch")):
                return f"option {w} not allowed"
        elif (len(w) >= 3 and "netns".startswith(w)) or w in ("link-netns", "link-netnsid", "exec"):
            return f"`{w}` not allowed"
    return ""


def _sysctl_refusal(args: list[str]) -> str:
    for a in args:
        if a.startswith("-"):
            if not _SYSCTL_OPT_RE.match(a):
                return f"sysctl option {a} not allowed"
            continue
        key = a.split("=", 1)[0].replace("/", ".")
        if not key.startswith("net.") or ".." in key:
            return f"sysctl {key}: only net.* keys"
    return ""
