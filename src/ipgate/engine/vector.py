"""Batches of established-flow packets as vectors (VPP's idea, the kernel's NAPI batch).

`Engine.receive_batch(dev, packets, now)` gives exactly what calling
`Engine.receive` on each packet in turn would give, in the same order; what
it saves is the per-packet interpreter cost of the fast path.  The packets
of a batch are joined into one buffer and every test and rewrite the fast
path would make one packet at a time is made on all of them at once with
numpy:

1. classify: each packet's key bytes (version/IHL, TOS, fragment field,
   protocol, addresses, ports, TCP flags) are looked up among the recorded
   decisions (`FastPath` entries this module was told about); the packet's
   own checks are vectors: the IP header checksum, TTL > 1, the length
   against the two MTUs, what udp_error() and tcp_error() check (lengths,
   the checksum when nf_conntrack_checksum asks);
2. rewrite every candidate at once (the entry's new addresses and ports, TTL,
   both checksums by the entry's precomputed RFC 1624 deltas);
3. walk the batch in order: a run of candidates is committed after checking
   its connections (still alive, same status and connmark, not expired) and
   tracking its TCP segments one by one with tcp_ack_fast() (window
   tracking is sequential by nature); UDP connections get their timeouts
   refreshed, all nf_conntrack_udp_packet() does when the status stays as it
   is.  Counters are added per set of rules matched.  The other packets, and
   a segment tcp_ack_fast() declines, go through `Engine.receive` one by
   one at their place, so the state changes they make are seen by the runs
   after them.

Vectorised: UDP entries of confirmed connections that saw a reply, without
a fixed timeout or a NAT clash, while a packet cannot change their status
(an unassured one becomes assured once its stream timestamp has passed:
that packet goes through `receive`); TCP entries of assured ESTABLISHED
connections for plain ACK segments (no SYN, FIN or RST).  Below VECTOR_MIN
packets a batch goes one by one.  A TCP super-packet (GRO) of such an entry
is not copied into the batch's buffer: `_super` does the same checks,
tracking and rewrite on it alone, at its place, and it leaves whole.  Slots of entries forgotten during a batch
are reused only after it, and a flush during a batch (the cache filled up)
sends the rest one by one, so a packet classified at the start of a batch
never meets another flow's entry.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ipgate.conntrack.conn import (
    IP_CT_IS_REPLY,
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_DYING,
    IPS_FIXED_TIMEOUT,
    IPS_NAT_CLASH,
    IPS_SEEN_REPLY,
)
from ipgate.conntrack.sysctl import TCP_CONNTRACK_ESTABLISHED
from ipgate.conntrack.tcp import tcp_ack_fast
from ipgate.engine.result import Result, Tx
from ipgate.packet.checksum import (
    CSUM_MANGLED_0,
    Buffer,
    csum_apply,
    csum_delta4,
    csum_fold,
    csum_partial,
    l4_checksum_ok,
)
from ipgate.packet.fastnew import new_tuple
from ipgate.packet.vcsum import windows, word_sums

if TYPE_CHECKING:
    from ipgate.engine.engine import Engine
    from ipgate.engine.fastpath import Entry
    from ipgate.link.device import Device
    from ipgate.netfilter.rule import Counters

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bools = npt.NDArray[np.bool_]

# key bytes: version/IHL, TOS, fragment field, protocol, addresses, ports, TCP flags (zeroed but for TCP)
_KEY_AT = np.array([0, 1, 6, 7, 9, *range(12, 24), 33], dtype=np.int64)
_KEY_DTYPE = np.dtype(f"S{len(_KEY_AT)}")
_KEY_GET = itemgetter(*_KEY_AT.tolist())
_HDR = 40  # bytes gathered: IPv4 header + TCP header without options, or UDP + 12 bytes
_PAD = bytes(64)  # after the last packet, so short packets can be gathered (and then refused)
_UDP_REPLIED = IPS_CONFIRMED | IPS_SEEN_REPLY
_TCP_ASSURED = IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED
_MIN_SLOTS = 1024
VECTOR_MIN = 16  # packets: below this numpy's fixed costs outweigh what it saves (bench: break-even ~16)


def vector_key(pkt: bytes) -> bytes:
    """The key bytes of `pkt` as `VectorPath.run` gathers them (numpy's fixed-width bytes drop trailing
    NULs; with a fixed width that stays one-to-one)."""
    if len(pkt) < 40:
        pkt = pkt + _PAD
    k = bytearray(_KEY_GET(pkt))
    if pkt[9] != 6:
        k[-1] = 0
    return bytes(k).rstrip(b"\0")


def _fold(x: I64) -> I64:
    """Ones' complement sum of 16-bit words, folded to 16 bits (inputs below 2**48)."""
    x = (x & 0xFFFF) + (x >> 16)
    x = (x & 0xFFFF) + (x >> 16)
    return (x & 0xFFFF) + (x >> 16)


def _alive(e: Entry, now: float) -> bool:
    """What FastPath.lookup checks of the connection, and that nf_conntrack_udp_packet() will not make it
    assured (TCP entries are all assured)."""
    ct = e.ct
    return (ct.status == e.status and ct.mark == e.ctmark and ct.timeout > now
            and bool(e.status & IPS_ASSURED or now <= ct.proto))


@dataclass(slots=True)
class _Batch:
    """One batch as `_walk` and `_commit` share it."""

    pkts: Sequence[Buffer]
    slots: list[int]  # each packet's slot (0 for non-candidates)
    slot_array: I64  # the same
    starts: list[int]  # each packet's place in `outbuf`
    ends: list[int]
    lens: I64
    outbuf: bytes  # the candidates rewritten, the others as they came
    tcp_pos: list[int]  # where the TCP candidates are
    epoch: int  # VectorPath.epoch when the batch was classified


class VectorPath:
    """The fast path's vectorisable decisions, indexed by key bytes per (ifindex, mark), their rewrites as
    arrays indexed by slot."""

    def __init__(self, eng: Engine) -> None:
        self.eng = eng
        self.index: dict[tuple[int, int], dict[bytes, int]] = {}
        self.entries: list[Entry | None] = []
        self._free: list[int] = []
        self._freed: list[int] = []  # forgotten during the current batch: reusable after it
        self._in_batch = False
        self._sigs: dict[tuple[int, ...], int] = {}
        self._sig_counters: list[tuple[Counters, ...]] = []
        self.dev: list[str] = []
        self.nexthop: list[int] = []
        self.udp: list[bool] = []
        cap = _MIN_SLOTS
        self.hdr = np.zeros((cap, 12), dtype=np.uint8)
        self.ip_delta = np.zeros(cap, dtype=np.int64)
        self.l4_delta = np.zeros(cap, dtype=np.int64)
        self.addr_delta = np.zeros(cap, dtype=np.int64)  # the addresses' part of l4_delta (pseudo-header)
        self.mtu = np.zeros(cap, dtype=np.int64)
        self.sig = np.zeros(cap, dtype=np.int64)
        self.epoch = 0
        self.vectored = 0  # packets that went as vectors
        self.supers = 0  # of which TCP super-packets (GRO) forwarded whole

    # -- the index, kept by FastPath --------------------------------------------------------------------
    def clear(self) -> None:
        self.epoch += 1  # a batch under way must not meet the slots' next owners
        self.index.clear()
        self.entries.clear()
        self._free.clear()
        self._freed.clear()
        self._sigs.clear()
        self._sig_counters.clear()
        self.dev.clear()
        self.nexthop.clear()
        self.udp.clear()

    def add(self, e: Entry, before: bytes, ifindex: int, mark: int) -> None:
        """Index entry `e`, recorded from packet `before`, if its packets can go as vectors."""
        ct = e.ct
        status = ct.status
        if before[0] != 0x45 or not e.rewrite.dec_ttl or status & (IPS_FIXED_TIMEOUT | IPS_NAT_CLASH | IPS_DYING):
            return
        if before[9] == 17:
            if status & _UDP_REPLIED != _UDP_REPLIED:
                return
        elif (before[9] != 6 or status & _TCP_ASSURED != _TCP_ASSURED or e.tcp_state != TCP_CONNTRACK_ESTABLISHED
              or before[33] & 0x17 != 0x10):  # an ACK without SYN, RST, FIN: what tcp_ack_fast() takes
            return
        rw = e.rewrite
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self.entries)
            self.entries.append(None)
            self.dev.append("")
            self.nexthop.append(0)
            self.udp.append(False)
            if slot >= len(self.mtu):
                self._grow()
        self.entries[slot] = e
        self.dev[slot] = e.dev
        self.nexthop[slot] = e.nexthop
        self.udp[slot] = before[9] == 17
        self.hdr[slot] = np.frombuffer(
            rw.saddr.to_bytes(4, "big") + rw.daddr.to_bytes(4, "big") + rw.sport.to_bytes(2, "big")
            + rw.dport.to_bytes(2, "big"), dtype=np.uint8)
        self.ip_delta[slot] = rw.ip_delta
        self.l4_delta[slot] = rw.l4_delta
        osa, oda = int.from_bytes(before[12:16], "big"), int.from_bytes(before[16:20], "big")
        self.addr_delta[slot] = csum_fold(csum_delta4(osa, rw.saddr) + csum_delta4(oda, rw.daddr))
        self.mtu[slot] = e.mtu
        ids = tuple(map(id, e.counters))
        g = self._sigs.get(ids)
        if g is None:
            g = self._sigs[ids] = len(self._sig_counters)
            self._sig_counters.append(e.counters)
        self.sig[slot] = g
        key = vector_key(before)
        index = self.index.setdefault((ifindex, mark), {})
        old = index.get(key)
        if old is not None:
            prev = self.entries[old]
            if prev is not None:
                prev.vkey = None
            self._forget_slot(old)
        index[key] = slot
        e.vslot = slot
        e.vkey = (ifindex, mark, key)

    def forget(self, e: Entry) -> None:
        if e.vkey is None:
            return
        ifindex, mark, key = e.vkey
        index = self.index.get((ifindex, mark))
        if index is not None and index.get(key) == e.vslot:
            del index[key]
        if e.vslot < len(self.entries) and self.entries[e.vslot] is e:
            self._forget_slot(e.vslot)
        e.vkey = None

    def _forget_slot(self, slot: int) -> None:
        if self.entries[slot] is not None:
            self.entries[slot] = None
            (self._freed if self._in_batch else self._free).append(slot)

    def _grow(self) -> None:
        cap = 2 * len(self.mtu)
        self.hdr = np.resize(self.hdr, (cap, 12))
        self.ip_delta = np.resize(self.ip_delta, cap)
        self.l4_delta = np.resize(self.l4_delta, cap)
        self.addr_delta = np.resize(self.addr_delta, cap)
        self.mtu = np.resize(self.mtu, cap)
        self.sig = np.resize(self.sig, cap)

    # -- a batch ---------------------------------------------------------------------------------------
    def run(self, d: Device, pkts: Sequence[Buffer], now: float, mark: int, valid: list[bool], gso: list[int]
            ) -> list[Result]:
        """Every packet of `pkts` (arrived on `d`; `valid`: checksum known good; `gso`: super-packets' segment
        sizes) in order; the caller checked that the fast path is on."""
        self._in_batch = True
        try:
            return self._run(d, pkts, now, mark, valid, gso)
        finally:
            self._in_batch = False
            self._free += self._freed
            self._freed.clear()

    def _run(self, d: Device, pkts: Sequence[Buffer], now: float, mark: int, valid: list[bool], gso: list[int]
             ) -> list[Result]:
        out: list[Result] = []
        index = self.index.get((d.ifindex, mark))
        if not index:
            return self.eng.receive_each(d.name, pkts, now, mark, valid, gso)
        c = self._classify(d, pkts, valid, gso, index) if len(pkts) >= VECTOR_MIN else None
        if c is None:  # too few packets for numpy's fixed costs, or none of them can go as a vector
            for p, v, g in zip(pkts, valid, gso, strict=True):
                out.extend(self._one(d, index, p, v, g, now, mark))
            return out
        a, offs, lens, h, w, s, cand, tcp = c
        outbuf = self._rewrite(a, offs, s, cand, h, w, tcp)
        self._walk(d, index, pkts, valid, gso, now, mark, cand, s, offs, lens, outbuf, tcp, out)
        return out

    def _one(self, d: Device, index: dict[bytes, int], pkt: Buffer, valid: bool, gso: int, now: float, mark: int
             ) -> list[Result]:
        """A packet that does not go as a vector: through `receive`, but a super-packet that can leaves whole
        (cut, it would be dozens of packets one by one)."""
        r = self._super(index, pkt, valid, gso, now) if gso else None
        return r if r is not None else self.eng.receive_one(d.name, pkt, now, mark, valid, gso)

    def _super(self, index: dict[bytes, int], pkt: Buffer, valid: bool, gso: int, now: float) -> list[Result] | None:
        """A TCP super-packet of a vectorisable entry, by the vector path's checks, tracking and rewrite in
        plain Python (one 64 KB packet: copying it into a batch's buffer would cost more than numpy saves),
        leaving whole as Linux forwards a GRO packet; None when it cannot go that way.  The MTU is checked
        per segment (skb_gso_validate_network_len()); its TCP checksum field holds the pseudo-header sum, not
        inverted (CHECKSUM_PARTIAL): only the addresses change it, the other way round
        (inet_proto_csum_replace4() with pseudohdr on a partial checksum)."""
        if len(pkt) < 40:
            return None
        h = bytes(pkt[:40])
        slot = index.get(vector_key(h))
        if slot is None:
            return None
        e = self.entries[slot]
        tot = int.from_bytes(h[2:4], "big")
        doff4 = (h[32] >> 4) << 2
        if (e is None or self.udp[slot] or tot != len(pkt) or h[8] <= 1 or 20 + doff4 + gso > self.mtu[slot]
                or csum_partial(h[:20]) != 0xFFFF or doff4 < 20 or doff4 > tot - 20):
            return None
        table = self.eng.conntrack
        if not valid and table.sysctl.checksum and not l4_checksum_ok(pkt, 20, tot - 20, 6):
            return None
        if not _alive(e, now) or not tcp_ack_fast(table, e.ct, pkt, 20, tot, e.ctinfo >= IP_CT_IS_REPLY, now):
            return None
        for c in e.counters:
            c.pkts += 1
            c.bytes += tot
        table.stats.found += 1
        self.eng.fastpath.hits += 1
        self.vectored += 1
        self.supers += 1
        hdr = bytearray(h)
        hdr[8] -= 1
        hdr[10:12] = csum_apply(int.from_bytes(h[10:12], "big"), int(self.ip_delta[slot])).to_bytes(2, "big")
        hdr[12:24] = self.hdr[slot].tobytes()
        partial = csum_fold(int.from_bytes(h[36:38], "big") + int(self.addr_delta[slot]))
        hdr[36:38] = partial.to_bytes(2, "big")
        return [new_tuple(Tx, (self.dev[slot], self.nexthop[slot], bytes(hdr) + memoryview(pkt)[40:], gso))]

    def _classify(self, d: Device, pkts: Sequence[Buffer], valid: list[bool], gso: list[int], index: dict[bytes, int]
                  ) -> tuple[U8, I64, I64, U8, I64, I64, Bools, Bools] | None:
        """The batch as arrays: (buffer, offsets, lengths, first 40 bytes, their 20 words, slots, candidates,
        TCP), or None when no packet can go as a vector.  Super-packets are left out of the buffer (`_super`
        takes them)."""
        n = len(pkts)
        supers = any(gso)
        if supers:
            pkts = [b"" if g else p for p, g in zip(pkts, gso, strict=True)]
        a = np.frombuffer(b"".join(pkts) + _PAD, dtype=np.uint8)
        lens = np.fromiter(map(len, pkts), dtype=np.int64, count=n)
        offs = np.zeros(n, dtype=np.int64)
        np.cumsum(lens[:-1], out=offs[1:])
        h = windows(a, _HDR)[offs]  # every packet's first 40 bytes (short ones run into the next: refused)
        keys = np.ascontiguousarray(h[:, _KEY_AT])
        tcp = keys[:, 4] == 6
        keys[:, -1] *= tcp
        slots = np.fromiter(map(index.get, keys.view(_KEY_DTYPE).ravel().tolist(), repeat(-1)),
                            dtype=np.int64, count=n)
        cand = slots >= 0
        if supers:
            cand &= np.array(gso, dtype=np.int64) == 0
        if not cand.any():
            return None
        s = np.where(cand, slots, 0)
        w = h.view(">u2").astype(np.int64)  # the 20 big-endian words of each header
        tot = w[:, 1]
        # ip_rcv_core(): the header's words sum to 0 mod 0xFFFF; no padding (receive() would trim it)
        cand &= ((w[:, :10].sum(1) % 0xFFFF == 0) & (tot == lens) & (lens <= d.mtu) & (tot <= self.mtu[s])
                 & (h[:, 8] > 1) & self._l4_ok(a, offs, lens, h, w, tcp, valid))
        if not cand.any():
            return None
        return a, offs, lens, h, w, s, cand, tcp

    def _l4_ok(self, a: U8, offs: I64, lens: I64, h: U8, w: I64, tcp: Bools, valid: list[bool]) -> Bools:
        """udp_error() and tcp_error(): the lengths (UDP's length field, TCP's data offset) within the packet,
        and the checksum (pseudo-header included) when nf_conntrack_checksum is set, unless it is known good
        (and, for UDP, when the sender filled it in).  TCP's flags are part of the key: the entry's are valid."""
        l4len = w[:, 1] - 20
        ulen = w[:, 12]
        doff4 = (h[:, 32] >> 4).astype(np.int64) << 2
        ok: Bools = np.where(tcp, (l4len >= 20) & (doff4 >= 20) & (doff4 <= l4len),
                             (l4len >= 8) & (ulen >= 8) & (ulen <= l4len))
        if not self.eng.conntrack.sysctl.checksum or all(valid):
            return ok
        end = offs + lens  # = offs + tot for the packets that matter; the others must stay in bounds
        l4 = word_sums(a, np.minimum(offs + 20, end), end)
        good = (l4 + w[:, 6:10].sum(1) + np.where(tcp, 6, 17) + l4len) % 0xFFFF == 0  # with the pseudo-header
        ok &= good | (~tcp & (w[:, 13] == 0)) | np.array(valid, dtype=bool)
        return ok

    def _rewrite(self, a: U8, offs: I64, s: I64, cand: Bools, h: U8, w: I64, tcp: Bools) -> bytes:
        """FlowRewrite.apply on every candidate: TTL, both checksums, addresses and ports, written in the
        candidates' bytes 8..27 (and, for TCP, its checksum at 36..37)."""
        ss = s[cand]
        t = tcp[cand]
        hc = h[cand]
        wc = w[cand]
        c = np.where(t, wc[:, 18], wc[:, 13])  # the L4 checksum
        ck = _fold((np.stack((wc[:, 5], c)) ^ 0xFFFF) + np.stack((self.ip_delta[ss], self.l4_delta[ss]))) ^ 0xFFFF
        y = np.where(t, ck[1], np.where(c == 0, 0, np.where(ck[1] == 0, CSUM_MANGLED_0, ck[1])))  # UDP 0: none
        hc[:, 8] -= 1
        hc[:, 10] = ck[0] >> 8
        hc[:, 11] = ck[0] & 0xFF
        hc[:, 12:24] = self.hdr[ss]
        hc[:, 26] = np.where(t, hc[:, 26], y >> 8)
        hc[:, 27] = np.where(t, hc[:, 27], y & 0xFF)
        hc[:, 36] = np.where(t, y >> 8, hc[:, 36])
        hc[:, 37] = np.where(t, y & 0xFF, hc[:, 37])
        o = offs[cand]
        b = a.copy()
        windows(b, 20)[o + 8] = hc[:, 8:28]  # TTL, checksum, addresses, ports, UDP checksum
        ot = o[t]
        windows(b, 2)[ot + 36] = hc[t][:, 36:38]
        return b.tobytes()

    def _walk(self, d: Device, index: dict[bytes, int], pkts: Sequence[Buffer], valid: list[bool], gso: list[int],
              now: float, mark: int, cand: Bools, s: I64, offs: I64, lens: I64, outbuf: bytes, tcp: Bools,
              out: list[Result]) -> None:
        eng = self.eng
        n = len(pkts)
        b = _Batch(pkts, s.tolist(), s, offs.tolist(), (offs + lens).tolist(), lens, outbuf,
                   np.flatnonzero(tcp & cand).tolist(), self.epoch)
        breaks = np.flatnonzero(~cand).tolist() + [n]
        i = 0
        bi = 0
        while i < n:
            if not cand[i]:
                out.extend(self._one(d, index, pkts[i], valid[i], gso[i], now, mark))
                i += 1
                continue
            while breaks[bi] < i:
                bi += 1
            j = self._commit(b, i, breaks[bi], now, out)
            if j < breaks[bi]:
                # its connection changed, or tcp_ack_fast() declined the segment: one by one
                out.extend(eng.receive(d.name, pkts[j], now, mark=mark, csum_valid=valid[j]))
                j += 1
            i = j

    def _commit(self, b: _Batch, i: int, j: int, now: float, out: list[Result]) -> int:
        """Commit packets i..j-1 (candidates), or the prefix before the first whose connection no longer
        matches its entry or (TCP) whose segment is not a plain in-window ACK; returns where the committed
        run ends."""
        if b.epoch != self.epoch:
            return i  # everything was forgotten meanwhile (the cache filled up): the rest goes one by one
        slots = b.slots
        run = slots[i:j]
        entries = self.entries
        table = self.eng.conntrack
        sysctl = table.sysctl
        dead = [slot for slot in set(run) if (e := entries[slot]) is None or not _alive(e, now)]
        if dead:
            j = i + min(map(run.index, dead))
        tcp_pos = b.tcp_pos
        lo = bisect_left(tcp_pos, i)
        for k in tcp_pos[lo:bisect_left(tcp_pos, j, lo)]:
            e = entries[slots[k]]
            assert e is not None
            if not tcp_ack_fast(table, e.ct, b.pkts[k], 20, b.ends[k] - b.starts[k], e.ctinfo >= IP_CT_IS_REPLY,
                                now):
                j = k
                break
        if i == j:
            return j
        run = slots[i:j]
        udp = self.udp
        stream, unreplied = sysctl.udp_timeout_stream, sysctl.udp_timeout
        for slot in set(run):
            if udp[slot]:
                ct = entries[slot].ct  # type: ignore[union-attr]
                # nf_conntrack_udp_packet() when the status stays: the timeout, nothing else
                ct.timeout = now + (stream if now > ct.proto else unreplied)
        k = j - i
        ln = b.lens[i:j]
        sig = self.sig[b.slot_array[i:j]]
        npk = np.bincount(sig)
        nby = np.bincount(sig, weights=ln)
        for g in np.flatnonzero(npk).tolist():
            p, nb = int(npk[g]), int(nby[g])
            for c in self._sig_counters[g]:
                c.pkts += p
                c.bytes += nb
        if sysctl.acct:
            self._acct(run, ln)
        table.stats.found += k
        self.eng.fastpath.hits += k
        self.vectored += k
        dev, nh, data = self.dev, self.nexthop, b.outbuf
        out += [new_tuple(Tx, (dev[x], nh[x], data[p:q], 0)) for x, p, q in zip(run, b.starts[i:j], b.ends[i:j],
                                                                               strict=True)]
        return j

    def _acct(self, run: list[int], ln: I64) -> None:
        """__nf_ct_refresh_acct()'s counters, per connection and direction, of the UDP packets."""
        entries = self.entries
        udp = self.udp
        for slot, length in zip(run, ln.tolist(), strict=True):
            e = entries[slot]
            assert e is not None
            acct = e.ct.acct
            if not udp[slot]:
                continue  # tcp_ack_fast() counted it
            if acct is not None:
                i = 2 if e.ctinfo >= IP_CT_IS_REPLY else 0
                acct[i] += 1
                acct[i + 1] += length

