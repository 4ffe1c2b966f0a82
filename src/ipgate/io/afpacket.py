"""AF_PACKET sockets bound to one existing interface (packet(7)).

`PacketSocket(ifname)` is SOCK_RAW with ETH_P_ALL: whole Ethernet frames in
and out.  It is created with protocol 0 (it receives nothing) and only then
bound to the interface with ETH_P_ALL, so no frame of another interface
slips in.  Our own transmitted frames would come back as PACKET_OUTGOING
copies: PACKET_IGNORE_OUTGOING (Linux 4.20) stops them in the kernel.

PACKET_VNET_HDR is on: every frame read starts with a virtio_net_hdr saying
which checksum or segmentation offload is still pending (veth peers and GRO
hand such packets up); vnet.finish_batch() completes them and says which
checksums are known good.  Frames written carry an all-zero header (nothing
to offload).

Two receive paths: plain recv() (one system call per frame, the default),
and an optional TPACKET_V3 mmap RX ring (PACKET_RX_RING,
Documentation/networking/packet_mmap.rst): the kernel fills blocks of
frames and hands over a block when it is full or after retire_blk_tov ms;
the reader walks the block in shared memory with no system call per frame.
"""

from __future__ import annotations

import errno
import mmap
import select
import socket
import struct
from collections import Counter
from collections.abc import Sequence

from ipgate.io import netdev
from ipgate.io.vnet import VNET_HDR_LEN, ZERO_HDR, finish_batch, gso_header
from ipgate.packet.checksum import Buffer

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
PACKET_VNET_HDR = 15
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1

# struct tpacket_req3: block_size, block_nr, frame_size, frame_nr, retire_blk_tov, sizeof_priv, feature_req_word
_REQ3 = struct.Struct("IIIIIII")
# struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1: block_status, num_pkts,
# offset_to_first_pkt, blk_len, seq_num (aligned to 8), ...
_BLOCK = struct.Struct("IIIIIIQ")
# struct tpacket3_hdr: tp_next_offset, tp_sec, tp_nsec, tp_snaplen, tp_len, tp_status, tp_mac, tp_net
_PKT3 = struct.Struct("IIIIIIHH")
_STATUS = struct.Struct("I")
_STATS = struct.Struct("II")  # struct tpacket_stats: tp_packets, tp_drops (the start of tpacket_stats_v3)
_BLOCK_STATUS_OFF = 8
SO_RCVBUFFORCE = 33  # asm-generic/socket.h (not in Python's socket module)
RCVBUF = 4 << 20  # SO_RCVBUFFORCE: room for bursts on the plain path
MAX_FRAME = 65536 + VNET_HDR_LEN


class RxRing:
    """A TPACKET_V3 receive ring: `block_nr` blocks of `block_size` bytes, walked block by block."""

    def __init__(self, sock: socket.socket, hdrlen: int, *, block_size: int = 1 << 20, block_nr: int = 8,
                 frame_size: int = 2048, retire_ms: int = 1) -> None:
        self.hdrlen = hdrlen  # the virtio_net_hdr before each frame, or 0
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        req = _REQ3.pack(block_size, block_nr, frame_size, block_size * block_nr // frame_size, retire_ms, 0, 0)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.block_size = block_size
        self.block_nr = block_nr
        self.map = mmap.mmap(sock.fileno(), block_size * block_nr, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.map)

    def _ours(self) -> list[tuple[int, int]]:
        """(sequence number, index) of the blocks the kernel handed us, oldest first."""
        unpack, mm, bs = _BLOCK.unpack_from, self.map, self.block_size
        blocks = (unpack(mm, i * bs) for i in range(self.block_nr))
        return sorted((b[6], i) for i, b in enumerate(blocks) if b[2] & TP_STATUS_USER)

    def ready(self) -> bool:
        return bool(self._ours())

    def read_blocks(self, limit: int) -> list[bytes]:
        """Frames of the blocks handed to us, oldest first by their sequence numbers (whole blocks, while
        fewer than `limit` frames were read), as they are in the ring: with their virtio_net_hdr if the
        socket has one.  The kernel does not always close them in ring order (seen under overload), so a
        reader that only waits for the next block in turn can sit on a ring full of unread ones."""
        out: list[bytes] = []
        mm, view, bs = self.map, self.view, self.block_size
        pkt3 = _PKT3.unpack_from
        for _seq, i in self._ours():
            if len(out) >= limit:
                break
            base = i * bs
            _ver, _priv, _status, num, first, _len, _seq = _BLOCK.unpack_from(mm, base)
            p = base + first
            for _ in range(num):
                nxt, _s, _ns, snaplen, _len, _st, mac, _net = pkt3(mm, p)
                out.append(bytes(view[p + mac - self.hdrlen:p + mac + snaplen]))
                if not nxt:
                    break
                p += nxt
            _STATUS.pack_into(mm, base + _BLOCK_STATUS_OFF, TP_STATUS_KERNEL)  # hand the block back
        return out

    def state(self) -> str:
        """The blocks as `stats` shows them: ours (U) or the kernel's (k), and the sequence numbers of ours."""
        ours = self._ours()
        mine = {i for _, i in ours}
        marks = "".join("U" if i in mine else "k" for i in range(self.block_nr))
        return f"blocks {marks}, unread {[seq for seq, _ in ours]}"

    def close(self) -> None:
        self.view.release()
        self.map.close()


class PacketSocket:
    """Frames of one interface: `read_batch` and `write`; malformed offload headers are counted and dropped."""

    def __init__(self, ifname: str, *, ring: bool = False, vnet: bool = True) -> None:
        self.name = ifname
        self.ifindex = netdev.ifindex(ifname)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 0)
        try:
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                self.filter_outgoing = False
            except OSError:
                self.filter_outgoing = True  # older kernels: drop PACKET_OUTGOING copies ourselves
            if vnet:
                sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self.ring = RxRing(sock, VNET_HDR_LEN if vnet else 0) if ring else None
            sock.bind((ifname, ETH_P_ALL))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.vnet = vnet
        self.rx_errors = 0  # malformed offload headers, failed reads
        self.tx_errors = 0
        self.offloads = 0  # frames whose checksum or segmentation we finished (vnet.finish_batch)
        self.errnos: Counter[str] = Counter()  # why reads and writes failed
        self._kdrops = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_batch(self, limit: int) -> tuple[Sequence[Buffer], list[bool] | None, list[int] | None]:
        """Up to `limit` frames that are waiting, and for each whether its checksum is known good and its
        GSO segment size when it is a TCP super-packet left whole (from the virtio_net_hdr; None without)."""
        if self.ring is not None:
            raw = self.ring.read_blocks(limit)
        else:
            raw = self._recv_batch(limit)
        if not self.vnet or not raw:
            return raw, None, None
        got = finish_batch(raw, keep_gso=True)
        if got.bad:
            self.rx_errors += got.bad
            self.errnos["bad virtio_net_hdr"] += got.bad
        self.offloads += got.fixed
        return got.frames, got.csum_valid, got.gso

    def _recv_batch(self, limit: int) -> list[bytes]:
        out: list[bytes] = []
        if self.filter_outgoing:
            recvfrom = self.sock.recvfrom
            for _ in range(limit):
                try:
                    data, addr = recvfrom(MAX_FRAME)
                except BlockingIOError:
                    break
                except OSError as e:
                    self._error(e)
                    break
                if addr[2] != PACKET_OUTGOING:
                    out.append(data)
            return out
        recv = self.sock.recv
        for _ in range(limit):
            try:
                out.append(recv(MAX_FRAME))
            except BlockingIOError:
                break
            except OSError as e:  # ENETDOWN while the interface is down...
                self._error(e)
                break
        return out

    def _error(self, e: OSError) -> None:
        self.rx_errors += 1
        self.errnos[errno.errorcode.get(e.errno or 0, "?")] += 1

    def write(self, frame: bytes) -> bool:
        return self.write_many([frame])[0] == 1

    def write_gso(self, head: bytes, packet: bytes, gso_size: int) -> bool:
        """A TCP super-packet behind Ethernet header `head`, for the kernel to cut into `gso_size` segments and
        checksum (only on a socket with a virtio_net_hdr).  Gathered by sendmsg: copying 64 KB costs more
        than the iovec."""
        return self._send(gso_header(head, packet, gso_size) + head, packet)

    def write_many(self, frames: list[bytes]) -> tuple[int, int]:
        """Each frame, with an all-zero virtio_net_hdr if the socket has them (one copy is cheaper than
        sendmsg's iovec; one system call a frame: Python has no sendmmsg); (frames, bytes) that went."""
        send = self._send
        prefix = ZERO_HDR if self.vnet else b""
        sent = nbytes = 0
        for frame in frames:
            if send(prefix + frame):
                sent += 1
                nbytes += len(frame)
        return sent, nbytes

    def _send(self, data: bytes, more: bytes = b"") -> bool:
        try:
            if more:
                self.sock.sendmsg((data, more))
            else:
                self.sock.send(data)
        except OSError as e:  # ENOBUFS, ENETDOWN, EMSGSIZE: dropped, as a full queue would
            self.tx_errors += 1
            self.errnos[errno.errorcode.get(e.errno or 0, "?")] += 1
            return False
        return True

    def kernel_drops(self) -> int:
        """Frames the kernel dropped because this socket's queue or ring was full (PACKET_STATISTICS, which
        resets on reading: kept as a running total)."""
        try:
            _packets, drops = _STATS.unpack(self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))
        except OSError:
            return self._kdrops
        self._kdrops += drops
        return self._kdrops

    def wait(self, timeout: float) -> bool:
        """For tests and benchmarks: is a frame ready within `timeout` seconds?"""
        return bool(select.select([self.sock], [], [], timeout)[0])

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        self.sock.close()
