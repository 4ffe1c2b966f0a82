"""`Engine.receive_batch` against `Engine.receive` one packet at a time.

Two engines load the same configuration; one is given random traffic packet
by packet, the other the same packets in batches of random sizes.  Every
result (in order), every rule counter, every conntrack entry (status,
timeout, private state, mark, accounting) and conntrack's statistics must be
identical.  The traffic mixes what goes as vectors (established UDP flows)
with everything that must not: new flows, replies, TCP, ICMP, bad
checksums, TTL 1, packets over the MTU with DF, padding, IP options, another
TOS, short and truncated packets; between batches the clock jumps (entries
expire), entries are deleted, rules and routes change.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from ipgate.engine import fastpath, vector
from ipgate.engine.engine import Engine
from ipgate.engine.result import Drop, Result, Tx
from ipgate.inet import aton
from ipgate.packet.build import build_icmp, build_tcp, build_udp
from ipgate.packet.checksum import csum_fold, csum_tcpudp_nofold, ip_compute_csum
from ipgate.packet.gso import segment
from ipgate.shell import Shell, load_script

CONF = """
ip link add eth0 type dummy
ip link add eth1 type dummy
ip link set eth0 up
ip link set eth1 up
ip link set eth1 mtu 1000
ip addr add 192.168.1.1/24 dev eth0
ip addr add 203.0.113.1/24 dev eth1
ip route add default via 203.0.113.254
echo 1 > /proc/sys/net/ipv4/ip_forward
iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE
iptables -A FORWARD -s 172.16.0.0/24 -p udp --dport 9 -j DROP
iptables -A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT
iptables -A FORWARD -i eth0 -p udp --dport 53 -j ACCEPT
iptables -A FORWARD -i eth0 -j ACCEPT
"""
SERVER, PUBLIC = aton("198.51.100.7"), aton("203.0.113.1")


@pytest.fixture(autouse=True)
def _small_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Vectors from 2 packets on (not the 16 that pays off), so that short batches and runs are exercised."""
    monkeypatch.setattr(vector, "VECTOR_MIN", 2)
CLIENTS = [aton(f"192.168.1.{i}") for i in range(2, 12)]
SPORTS = [4000 + i for i in range(6)]


def _packet(rng: random.Random) -> tuple[str, bytes]:
    """One packet of the mix, and the device it arrives on."""
    c, sp = rng.choice(CLIENTS), rng.choice(SPORTS)
    roll = rng.random()
    payload = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 7, 64, 120))))
    if roll < 0.55:
        p = build_udp(c, SERVER, sp, 53, payload)
    elif roll < 0.75:
        p = build_udp(SERVER, PUBLIC, 53, sp, payload)
        return "eth1", bytes(p)
    elif roll < 0.80:
        p = build_tcp(c, SERVER, sp, 80, flags=rng.choice((0x02, 0x10, 0x18)), seq=rng.randrange(1 << 32))
    elif roll < 0.83:
        p = build_icmp(c, SERVER, 8, 0, 0x00070001, payload)
    elif roll < 0.86:
        p = build_udp(c, SERVER, sp, 53, payload, csum=False)
    elif roll < 0.88:
        p = build_udp(c, SERVER, sp, 53, payload, ttl=1)
    elif roll < 0.90:
        p = build_udp(c, SERVER, sp, 53, bytes(990), frag_off=0x4000)  # over eth1's MTU with DF
    elif roll < 0.92:
        p = build_udp(c, SERVER, sp, 53, payload) + b"\0\0\0\0"  # link-layer padding
    elif roll < 0.94:
        p = build_udp(c, SERVER, sp, 53, payload, ip_options=b"\x01\x01\x01\x00")
    elif roll < 0.96:
        p = build_udp(c, SERVER, sp, 53, payload, tos=0x10)
    elif roll < 0.98:
        p = build_udp(c, SERVER, sp, 53, payload)
        p[28 + (len(payload) // 2 if payload else -1)] ^= 0x40  # a bit flipped: bad UDP (or IP) checksum
    else:
        p = build_udp(c, SERVER, sp, 53, payload)[: rng.randrange(10, 40)]  # truncated
    return "eth0", bytes(p)


def _between(rng: random.Random, shells: tuple[Shell, Shell], now: float) -> float:
    """Something that happens between two batches, to both engines alike."""
    roll = rng.random()
    if roll < 0.15:
        return now + rng.choice((31.0, 125.0))  # unreplied (30 s) or every UDP entry (120 s) expires
    if roll < 0.2:
        line = f"conntrack -D -s 192.168.1.{rng.randrange(2, 12)}"
    elif roll < 0.23:
        line = f"iptables -I FORWARD -s 192.168.1.{rng.randrange(2, 12)} -j ACCEPT"
    elif roll < 0.25:
        line = "ip route replace default via 203.0.113.253"
    elif roll < 0.27:
        line = "echo 0 > /proc/sys/net/netfilter/nf_conntrack_checksum"
    elif roll < 0.29:
        line = "echo 1 > /proc/sys/net/netfilter/nf_conntrack_acct"
    else:
        return now + rng.choice((0.0, 0.5, 3.0))
    for sh in shells:
        sh.run_line(line)
    return now


def _state(eng: Engine, sh: Shell) -> tuple[object, ...]:
    ct = eng.conntrack
    conns = sorted((c.okey, c.rkey, c.status, c.timeout, c.proto, c.mark, c.acct) for c in ct._walk
                   if not c.status & 0x200)  # IPS_DYING
    return sh.run_line("iptables-save -c").out, conns, dataclasses.astuple(ct.stats)


@pytest.mark.parametrize("seed", range(12))
def test_batches_match_one_by_one(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if seed % 4 == 3:
        monkeypatch.setattr(fastpath, "MAX_ENTRIES", 6)  # the cache fills and empties in the middle of batches
    rng = random.Random(seed)
    one, many = (load_script(CONF, "v.conf") for _ in range(2))
    e1, e2 = Engine(one), Engine(many)
    shells = (Shell(one), Shell(many))
    now = 1.0
    vectored = 0
    for _ in range(40):
        batch = [_packet(rng) for _ in range(rng.randrange(1, 80))]
        want: list[Result] = []
        got: list[Result] = []
        i = 0
        while i < len(batch):  # runs of packets from the same device
            dev = batch[i][0]
            j = i
            while j < len(batch) and batch[j][0] == dev:
                j += 1
            pkts = [p for _, p in batch[i:j]]
            valid = [rng.random() < 0.3 for _ in pkts]  # checksums known good (CHECKSUM_UNNECESSARY)
            for p, v in zip(pkts, valid, strict=True):
                want.extend(e1.receive(dev, p, now, csum_valid=v))
            before = e2.fastpath.vector.vectored
            got.extend(e2.receive_batch(dev, pkts, now, csum_valid=valid))
            vectored += e2.fastpath.vector.vectored - before
            i = j
        assert got == want
        now = _between(rng, shells, now)
    assert _state(e1, shells[0]) == _state(e2, shells[1])
    assert vectored > 0  # the mix did exercise the vector path


def test_established_udp_goes_as_vectors() -> None:
    """A batch of established, assured UDP packets is handled as one vector, with the same result."""
    e1, e2 = Engine(load_script(CONF, "v.conf")), Engine(load_script(CONF, "v.conf"))
    flows = [(c, 5000 + i) for i, c in enumerate(CLIENTS)]
    for e in (e1, e2):
        for c, sp in flows:
            e.receive("eth0", build_udp(c, SERVER, sp, 53, b"q"), 1.0)
            e.receive("eth1", build_udp(SERVER, PUBLIC, 53, sp, b"a"), 1.0)
            e.receive("eth0", build_udp(c, SERVER, sp, 53, b"q"), 4.0)  # assured: a stream
    pkts = [bytes(build_udp(c, SERVER, sp, 53, b"x" * n)) for n in (3, 64) for c, sp in flows]
    want = [r for p in pkts for r in e1.receive("eth0", p, 5.0)]
    assert e2.receive_batch("eth0", pkts, 5.0) == want
    assert e2.fastpath.vector.vectored == len(pkts)  # the packets at 4.0 recorded the decisions
    assert e2.receive_batch("eth0", pkts, 6.0) == [r for p in pkts for r in e1.receive("eth0", p, 6.0)]
    assert e2.fastpath.vector.vectored == 2 * len(pkts)


TCP_CLIENTS = [(aton(f"192.168.1.{i}"), 6000 + i) for i in range(2, 8)]


def _tcp_setup(e: Engine, now: float) -> None:
    """A three-way handshake per client (window scaling and SACK on), so each is ESTABLISHED and assured."""
    ws_sack = b"\x01\x03\x03\x07\x04\x02\x01\x01"  # NOP, window scale 7, SACK permitted, NOP NOP
    for c, sp in TCP_CLIENTS:
        e.receive("eth0", build_tcp(c, SERVER, sp, 80, seq=1000, flags=0x02, options=ws_sack), now)
        e.receive("eth1", build_tcp(SERVER, PUBLIC, 80, sp, seq=9000, ack_seq=1001, flags=0x12, options=ws_sack),
                  now)
        e.receive("eth0", build_tcp(c, SERVER, sp, 80, seq=1001, ack_seq=9001, flags=0x10), now)


class _TcpTraffic:
    """Segments of the established connections, both ways, mostly in window: data, ACKs, retransmissions,
    SACK blocks and timestamps, zero windows, and now and then something out of window or a FIN or RST."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next = {(c, sp): [1001, 9001] for c, sp in TCP_CLIENTS}  # next seq of client, of server
        self.d = 0  # the direction of the current burst

    def segment(self) -> tuple[str, bytes]:
        rng = self.rng
        c, sp = rng.choice(TCP_CLIENTS)
        nxt = self.next[(c, sp)]
        if rng.random() < 0.15:
            self.d ^= 1
        d = self.d
        seq, ack = nxt[d], nxt[1 - d]
        n = rng.choice((0, 0, 1, 100, 1000))
        roll = rng.random()
        flags = 0x18 if n else 0x10
        opts = b""
        if roll < 0.1:
            seq = (seq - rng.choice((1, 100, 1000))) & 0xFFFFFFFF  # a retransmission
        elif roll < 0.14:
            seq = (seq + rng.choice((1 << 20, 1 << 30, 1 << 31))) & 0xFFFFFFFF  # out of window
        elif roll < 0.17:
            ack = (ack + rng.choice((5, 1 << 20))) & 0xFFFFFFFF  # acks data not seen
        elif roll < 0.25:
            opts = b"\x01\x01\x05\x0a" + (ack + 10).to_bytes(4, "big") + (ack + 20).to_bytes(4, "big")  # SACK
        elif roll < 0.35:
            opts = b"\x01\x01\x08\x0a" + rng.randbytes(8)  # timestamps
        elif roll < 0.355:
            flags = rng.choice((0x11, 0x14, 0x04, 0x02))
        else:
            nxt[d] = (seq + n) & 0xFFFFFFFF
        win = rng.choice((0, 1, 100, 5000, 65535))
        payload = bytes(n)
        if d == 0:
            return "eth0", bytes(build_tcp(c, SERVER, sp, 80, payload, seq=seq, ack_seq=ack, flags=flags, window=win,
                                           options=opts))
        return "eth1", bytes(build_tcp(SERVER, PUBLIC, 80, sp, payload, seq=seq, ack_seq=ack, flags=flags, window=win,
                                       options=opts))


@pytest.mark.parametrize("seed", range(8))
def test_tcp_batches_match_one_by_one(seed: int) -> None:
    """Window tracking done by tcp_ack_fast() for vectors leaves the state tcp_packet() would."""
    rng = random.Random(seed)
    one, many = (load_script(CONF, "v.conf") for _ in range(2))
    e1, e2 = Engine(one), Engine(many)
    if seed % 2:
        for st in (one, many):
            Shell(st).run_line("echo 1 > /proc/sys/net/netfilter/nf_conntrack_acct")
    for e in (e1, e2):
        _tcp_setup(e, 1.0)
    traffic = _TcpTraffic(rng)
    now = 2.0
    for _ in range(30):
        batch = [traffic.segment() for _ in range(rng.randrange(1, 60))]
        i = 0
        while i < len(batch):
            dev = batch[i][0]
            j = i
            while j < len(batch) and batch[j][0] == dev:
                j += 1
            pkts = [p for _, p in batch[i:j]]
            want = [r for p in pkts for r in e1.receive(dev, p, now)]
            assert e2.receive_batch(dev, pkts, now) == want
            i = j
        now += rng.choice((0.0, 0.1, 2.0))
    assert _state(e1, Shell(one)) == _state(e2, Shell(many))
    assert e2.fastpath.vector.vectored > 100


@pytest.mark.parametrize("seed", range(6))
def test_malformed_established_packets(seed: int) -> None:
    """Packets of established flows, cut, flipped and re-lengthed (tests/engine/fuzz.py's mutations), so
    that many still carry a recorded key: batches give what one by one gives, and nothing raises."""
    from .fuzz import mutate

    rng = random.Random(seed)
    one, many = (load_script(CONF, "v.conf") for _ in range(2))
    e1, e2 = Engine(one), Engine(many)
    flows = [(c, 7000 + i) for i, c in enumerate(CLIENTS)]
    for e in (e1, e2):
        for c, sp in flows:
            e.receive("eth0", build_udp(c, SERVER, sp, 53, b"q"), 1.0)
            e.receive("eth1", build_udp(SERVER, PUBLIC, 53, sp, b"a"), 1.0)
            e.receive("eth0", build_udp(c, SERVER, sp, 53, b"q"), 4.0)
        _tcp_setup(e, 4.0)
    now = 5.0
    for _ in range(60):
        pkts = []
        for _ in range(rng.randrange(4, 64)):
            if rng.random() < 0.5:
                c, sp = rng.choice(flows)
                p = build_udp(c, SERVER, sp, 53, bytes(rng.randrange(100)))
            else:
                c, sp = rng.choice(TCP_CLIENTS)
                p = build_tcp(c, SERVER, sp, 80, bytes(rng.randrange(100)), seq=1001, ack_seq=9001, flags=0x18)
            pkts.append(bytes(mutate(p, rng) if rng.random() < 0.4 else p))
        want = [r for p in pkts for r in e1.receive("eth0", p, now)]
        assert e2.receive_batch("eth0", pkts, now) == want
        now += 0.01
    assert _state(e1, Shell(one)) == _state(e2, Shell(many))
    assert e2.fastpath.vector.vectored > 100


def test_known_good_checksums_are_not_summed_again() -> None:
    """csum_valid (the kernel's skb_csum_unnecessary()): conntrack takes a datagram with a wrong checksum
    that the NIC vouched for, and calls the same datagram INVALID otherwise."""
    conf = CONF + "iptables -I FORWARD -m state --state INVALID -j DROP\n"
    e = Engine(load_script(conf, "v.conf"))
    p = build_udp(CLIENTS[0], SERVER, 5555, 53, b"hello")
    p[27] ^= 0xFF  # the UDP checksum, now wrong
    assert [type(r).__name__ for r in e.receive("eth0", bytes(p), 1.0)] == ["Drop"]
    assert [type(r).__name__ for r in e.receive("eth0", bytes(p), 1.0, csum_valid=True)] == ["Tx"]
    pkts = [bytes(p)] * 20
    assert [type(r).__name__ for r in e.receive_batch("eth0", pkts, 2.0, csum_valid=[True] * 20)] == ["Tx"] * 20
    assert [type(r).__name__ for r in e.receive_batch("eth0", pkts, 2.0)] == ["Drop"] * 20


def _super(c: int, sp: int, seq: int, n: int, mss: int) -> bytes:
    """A GRO super-packet of `n` full segments from client `c`: its TCP checksum field holds the
    pseudo-header sum only (CHECKSUM_PARTIAL), as GRO leaves it."""
    p = build_tcp(c, SERVER, sp, 80, bytes(range(256)) * (n * mss // 256) + bytes(n * mss % 256), seq=seq,
                  ack_seq=9001, flags=0x10, id=77)
    p[36:38] = csum_fold(csum_tcpudp_nofold(c, SERVER, len(p) - 20, 6)).to_bytes(2, "big")
    return bytes(p)


def test_gro_super_packets_leave_whole() -> None:
    """A TCP super-packet of an established flow goes as a vector and leaves whole (`Tx.gso`), its partial
    checksum moved to the new addresses; cut into segments it gives the very packets that its segments give
    through `receive` one by one.  One that cannot go as a vector is cut first."""
    mss = 900  # 940-byte segments: they fit eth1's MTU of 1000
    conf = CONF.replace("-o eth1 -j MASQUERADE", "-o eth1 -p tcp -j MASQUERADE --to-ports 30000-30100")  # ports too
    whole, cut = (Engine(load_script(conf, "v.conf")) for _ in range(2))
    ws_sack = b"\x01\x03\x03\x07\x04\x02\x01\x01"
    for e in (whole, cut):
        for c, sp in TCP_CLIENTS[:2]:  # the handshake, the server answering the port the client was given
            [syn] = e.receive("eth0", build_tcp(c, SERVER, sp, 80, seq=1000, flags=0x02, options=ws_sack), 1.0)
            port = int.from_bytes(syn.data[20:22], "big")
            e.receive("eth1", build_tcp(SERVER, PUBLIC, 80, port, seq=9000, ack_seq=1001, flags=0x12,
                                        options=ws_sack), 1.0)
            e.receive("eth0", build_tcp(c, SERVER, sp, 80, seq=1001, ack_seq=9001, flags=0x10), 1.0)
    (c, sp), (c2, sp2) = TCP_CLIENTS[0], TCP_CLIENTS[1]
    supers = [_super(c, sp, 1001 + i * 2 * mss, 2, mss) for i in range(20)]
    supers[5] = _super(c2, sp2, 1001, 2, mss)  # its key is not recorded yet: cut and received one by one
    want: list[Result] = []
    for p in supers:
        want += [r for s in segment(p, mss, tcp=True) for r in cut.receive("eth0", s, 2.0, csum_valid=True)]
    got = whole.receive_batch("eth0", supers, 2.0, csum_valid=[True] * 20, gso=[mss] * 20)
    assert whole.fastpath.vector.vectored >= 18
    sent: list[Result] = []
    for r in got:
        assert isinstance(r, Tx)
        if r.gso:
            assert r.gso == mss and len(r.data) == 20 + 20 + 2 * mss
            check = int.from_bytes(r.data[36:38], "big")
            pseudo = csum_fold(csum_tcpudp_nofold(int.from_bytes(r.data[12:16], "big"),
                                                  int.from_bytes(r.data[16:20], "big"), len(r.data) - 20, 6))
            assert check == pseudo or {check, pseudo} == {0, 0xFFFF}  # the partial sum of the new addresses
            assert int.from_bytes(r.data[20:22], "big") >= 30000
            sent += [Tx(r.dev, r.nexthop, s) for s in segment(r.data, r.gso, tcp=True)]
        else:
            sent.append(r)
    assert sent == want


@pytest.mark.parametrize("seed", range(6))
def test_super_packets_in_batches_match_one_by_one(seed: int) -> None:
    """Super-packets among plain segments that go as vectors: in one batch, or each alone, the same results
    (whole or cut), counters and conntrack state, for good ones and for every reason to cut one (TTL 1, a
    bad header checksum, segments over the MTU, out of window, a key not recorded, a checksum not known
    good, a flow not recorded); and what leaves, cut into segments, is what the segments give one by one."""
    rng = random.Random(seed)
    sts = [load_script(CONF, "v.conf") for _ in range(2)]
    many, lone, cut = (Engine(st) for st in [*sts, load_script(CONF, "v.conf")])
    for e in (many, lone, cut):
        _tcp_setup(e, 1.0)
    nxt = {c: 1001 for c, _ in TCP_CLIENTS}
    unrecorded = TCP_CLIENTS[-1][0]
    now = 2.0
    for _ in range(15):
        pkts, valid, gso = [], [], []
        for _ in range(rng.randrange(1, 12)):
            c, sp = rng.choice(TCP_CLIENTS)
            roll = rng.random()
            if roll < 0.3:  # a plain segment: a vector in `many`
                p = build_tcp(c, SERVER, sp, 80, bytes(100), seq=nxt[c], ack_seq=9001, flags=0x10)
                nxt[c] += 100
                pkts.append(bytes(p))
                valid.append(rng.random() < 0.5)
                gso.append(0)
                continue
            mss = rng.choice((400, 900, 900, 1200))  # 1200: 1240-byte segments, eth1's MTU is 1000
            n = rng.randrange(2, 5)
            seq = nxt[c] + (1 << 30 if roll < 0.35 else 0)
            p = bytearray(_super(c, sp, seq, n, mss))
            if 0.35 <= roll < 0.4:
                p[8], p[10:12] = 1, b"\0\0"  # TTL 1
                p[10:12] = ip_compute_csum(p[:20]).to_bytes(2, "big")
            elif 0.4 <= roll < 0.45:
                p[10] ^= 0x40  # a bad header checksum
            elif 0.45 <= roll < 0.5:
                p[33] |= 0x08  # PSH: another key (the partial checksum does not cover the flags)
            elif mss != 1200 and c != unrecorded:
                nxt[c] = seq + n * mss
            pkts.append(bytes(p))
            valid.append(roll < 0.5 or rng.random() < 0.9)
            gso.append(mss)
        want = many.receive_batch("eth0", pkts, now, csum_valid=valid, gso=gso)
        # alone, and as the live gateway hands them over: views of the frames read
        got = [r for p, v, g in zip(pkts, valid, gso, strict=True)
               for r in lone.receive_batch("eth0", [memoryview(p)], now, csum_valid=[v], gso=[g])]
        assert got == want
        # and on the wire, what every segment gives through `receive` (cut by the sender: no GRO)
        wire = [Tx(r.dev, r.nexthop, q) for r in got if isinstance(r, Tx)
                for q in (segment(r.data, r.gso, tcp=True) if r.gso else [r.data])]
        ref = [r for p, v, g in zip(pkts, valid, gso, strict=True)
               for q in (segment(p, g, tcp=True) if g else [p])
               for r in cut.receive("eth0", q, now, csum_valid=v or g > 0)]
        assert wire == [r for r in ref if isinstance(r, Tx)]
        now += 0.5
    assert _state(many, Shell(sts[0])) == _state(lone, Shell(sts[1]))
    assert lone.fastpath.vector.supers == many.fastpath.vector.supers >= 10
    assert many.fastpath.vector.vectored > many.fastpath.vector.supers


@pytest.mark.parametrize("seed", range(4))
def test_malformed_super_packets(seed: int) -> None:
    """Super-packets of established flows, mutated (tests/engine/fuzz.py), with any segment size, alone and
    among others: nothing raises, every result is a packet out or a drop with a reason."""
    from .fuzz import mutate

    rng = random.Random(seed)
    e = Engine(load_script(CONF, "v.conf"))
    _tcp_setup(e, 1.0)
    now = 2.0
    for _ in range(40):
        pkts, gso = [], []
        for _ in range(rng.choice((1, 3, 20))):
            c, sp = rng.choice(TCP_CLIENTS)
            p = _super(c, sp, 1001, rng.randrange(1, 4), 900)
            pkts.append(bytes(mutate(bytearray(p), rng)) if rng.random() < 0.7 else p)
            gso.append(rng.choice((0, 1, 900, 900, 1448, 70000)))
        for r in e.receive_batch("eth0", pkts, now, csum_valid=[rng.random() < 0.8 for _ in pkts], gso=gso):
            assert isinstance(r, Tx) or (isinstance(r, Drop) and r.reason)
        now += 0.1
    assert e.fastpath.vector.supers > 0


def test_super_packets_over_the_mtu_are_cut() -> None:
    """Segments that would not fit the way out (skb_gso_validate_network_len()): not as a vector; cut
    first, and then each segment meets the MTU as any packet does."""
    e = Engine(load_script(CONF, "v.conf"))
    _tcp_setup(e, 1.0)
    c, sp = TCP_CLIENTS[0]
    supers = [_super(c, sp, 1001 + i * 2 * 1200, 2, 1200) for i in range(20)]  # 1240-byte segments, MTU 1000
    got = e.receive_batch("eth0", supers, 2.0, csum_valid=[True] * 20, gso=[1200] * 20)
    assert not any(isinstance(r, Tx) and r.gso for r in got)
