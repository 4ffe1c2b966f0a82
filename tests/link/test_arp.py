"""Ethernet framing and ARP (link/ether.py, link/arp.py, through link/layer.LinkLayer).

Frames are written here by hand with struct (not with ipgate's builders), and
the expected answers come from net/ipv4/arp.c (arp_process, arp_ignore,
arp_filter, arp_solicit).  The `netns` tests send the same frames to a real
kernel in a network namespace and compare its replies and its neighbour table
with ipgate's; `KernelPair` is their harness (test_neigh.py uses it too).
"""

from __future__ import annotations

import ctypes
import os
import random
import secrets
import select
import shlex
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from ipgate.commands.script import split_line
from ipgate.inet import aton
from ipgate.link import arp, ether
from ipgate.link.layer import LinkLayer, format_neigh_show
from ipgate.link.neigh import Nud
from ipgate.shell import Shell, load_script
from ipgate.stack import Stack

BCAST = b"\xff" * 6
ZERO = b"\x00" * 6
KMAC = bytes.fromhex("020000000001")  # veth0: the interface under test, on both sides
PEER = bytes.fromhex("020000000010")
PEER2 = bytes.fromhex("020000000011")
PEER3 = bytes.fromhex("020000000012")

_ARP = struct.Struct("!HHBBH6s4s6s4s")


def ip(text: str) -> bytes:
    return socket.inet_aton(text)


def eth(dst: bytes, src: bytes, etype: int, payload: bytes, tags: tuple[int, ...] = (), pad: bool = True) -> bytes:
    hdr = dst + src
    for tci in tags:
        hdr += struct.pack("!HH", 0x8100, tci)
    f = hdr + struct.pack("!H", etype) + payload
    return f + bytes(max(0, 60 - len(f))) if pad else f


def arp_pkt(op: int, sha: bytes, sip: str, tha: bytes, tip: str, hrd: int = 1, hln: int = 6, pln: int = 4,
            pro: int = 0x0800) -> bytes:
    return _ARP.pack(hrd, pro, hln, pln, op, sha, ip(sip), tha, ip(tip))


def request(sha: bytes, sip: str, tip: str, dst: bytes = BCAST, **kw: int) -> bytes:
    return eth(dst, sha, 0x0806, arp_pkt(1, sha, sip, ZERO, tip, **kw))


def reply(sha: bytes, sip: str, tip: str, tha: bytes = KMAC, dst: bytes = KMAC) -> bytes:
    return eth(dst, sha, 0x0806, arp_pkt(2, sha, sip, tha, tip))


def expected_reply(asker: bytes, asker_ip: str, our_ip: str) -> bytes:
    """arp_send_dst(ARPOP_REPLY, ..., dest_hw=sha, src_hw=dev_addr, target_hw=sha), padded."""
    return eth(asker, KMAC, 0x0806, arp_pkt(2, KMAC, our_ip, asker, asker_ip))


def parse_arp(frame: bytes) -> tuple[bytes, bytes, int, bytes, str, bytes, str]:
    """(eth dst, eth src, op, sha, sip, tha, tip) of an ARP frame."""
    assert frame[12:14] == b"\x08\x06", frame.hex()
    _, _, _, _, op, sha, sip, tha, tip = _ARP.unpack_from(frame, 14)
    return frame[:6], frame[6:12], op, sha, socket.inet_ntoa(sip), tha, socket.inet_ntoa(tip)


BASE = """
ip link add veth0 type veth peer name veth1
ip link set veth0 up
ip addr add 192.0.2.1/24 dev veth0
ip addr add 192.0.2.2/24 dev veth0
ip addr add 192.0.2.3/32 dev veth0 scope host
ip link add other0 type veth peer name other1
ip link set other0 up
ip addr add 198.51.100.1/24 dev other0
"""


DUMMY = "ip link add dummy0 type dummy\nip link set dummy0 up\nip addr add 203.0.113.161/28 dev dummy0\n"


def make(conf: str = BASE, seed: int = 0) -> tuple[LinkLayer, Stack]:
    st = load_script(conf, "test.conf")
    st.devices["veth0"].mac = KMAC
    return LinkLayer(st, rng=random.Random(seed)), st


def apply(st: Stack, text: str) -> None:
    """Configuration lines run on `st` itself (load_script works on a copy)."""
    sh = Shell(st)
    for line in text.strip().splitlines():
        words = split_line(line)
        if words:
            res = sh.run_argv(words)
            assert res.status == 0, (line, res.err)


def sysctl(st: Stack, **values: int) -> None:
    for k, v in values.items():
        st.set_sysctl(k.replace("__", "."), v)


def frames_of(out: tuple[bytes | None, list[tuple[str, bytes]]], dev: str = "veth0") -> list[bytes]:
    pkt, frames = out
    assert pkt is None
    assert all(d == dev for d, _ in frames)
    return [f for _, f in frames]


# ---------------------------------------------------------------------------
# Ethernet framing
# ---------------------------------------------------------------------------
def test_ether_parse_and_pkt_type() -> None:
    payload = bytes(range(46))
    f = ether.parse(eth(KMAC, PEER, 0x0800, payload), KMAC)
    assert isinstance(f, ether.EthFrame)
    assert (f.dst, f.src, f.ethertype, f.payload, f.pkt_type) == (KMAC, PEER, 0x0800, payload, ether.PktType.HOST)
    assert ether.parse(eth(BCAST, PEER, 0x0800, payload), KMAC).pkt_type == ether.PktType.BROADCAST  # type: ignore[union-attr]
    mc = bytes.fromhex("01005e000001")
    assert ether.parse(eth(mc, PEER, 0x0800, payload), KMAC).pkt_type == ether.PktType.MULTICAST  # type: ignore[union-attr]
    assert ether.parse(eth(PEER2, PEER, 0x0800, payload), KMAC).pkt_type == ether.PktType.OTHERHOST  # type: ignore[union-attr]


def test_ether_malformed_and_vlan() -> None:
    assert ether.parse(b"", KMAC) == ether.EthDrop("PKT_TOO_SMALL")
    assert ether.parse(KMAC + PEER + b"\x08", KMAC) == ether.EthDrop("PKT_TOO_SMALL")
    assert ether.parse(KMAC + PEER + b"\x81\x00\x00", KMAC) == ether.EthDrop("PKT_TOO_SMALL")  # cut tag
    assert ether.parse(eth(KMAC, PEER, 0x05DC, b"x"), KMAC) == ether.EthDrop("UNHANDLED_PROTO")  # 802.3 length
    # 802.1p priority tag (VLAN 0): skipped, the frame goes on; QinQ with an outer priority tag too
    f = ether.parse(eth(KMAC, PEER, 0x0806, b"a" * 28, tags=(0xE000,)), KMAC)
    assert isinstance(f, ether.EthFrame) and f.ethertype == 0x0806 and f.payload[:28] == b"a" * 28
    assert ether.parse(eth(KMAC, PEER, 0x0806, b"a" * 28, tags=(0x0000, 0x0000)), KMAC).ethertype == 0x0806  # type: ignore[union-attr]
    # a real VLAN ID: no VLAN device on a gateway interface -> dropped
    assert ether.parse(eth(KMAC, PEER, 0x0806, b"a" * 28, tags=(5,)), KMAC) == ether.EthDrop("VLAN_NO_DEVICE")
    assert ether.parse(eth(KMAC, PEER, 0x0806, b"a" * 28, tags=(0, 7)), KMAC) == ether.EthDrop("VLAN_NO_DEVICE")
    assert ether.parse(eth(KMAC, PEER, 0x0806, b"", tags=(0, 0, 0, 0)), KMAC) == ether.EthDrop("VLAN_NO_DEVICE")


def test_ether_build_pads_to_60() -> None:
    f = ether.build(BCAST, KMAC, 0x0806, b"z" * 28)
    assert len(f) == 60 and f[:14] == BCAST + KMAC + b"\x08\x06" and f[14:42] == b"z" * 28 and f[42:] == bytes(18)
    big = ether.build(PEER, KMAC, 0x0800, b"q" * 100)
    assert len(big) == 114 and big[14:] == b"q" * 100
    assert ether.ip_eth_mc_map(aton("239.129.2.3")) == bytes.fromhex("01005e010203")
    assert ether.mac_parse("02:00:00:00:00:0a") == bytes.fromhex("02000000000a")
    for bad in ("02:00:00:00:00", "02:00:00:00:00:100", "zz:00:00:00:00:00", "02::00:00:00:00"):
        with pytest.raises(ValueError):
            ether.mac_parse(bad)


# ---------------------------------------------------------------------------
# ARP codec
# ---------------------------------------------------------------------------
def test_arp_codec_round_trip() -> None:
    raw = arp.build_arp(arp.ARPOP_REQUEST, PEER, aton("192.0.2.10"), ZERO, aton("192.0.2.1"))
    assert raw == arp_pkt(1, PEER, "192.0.2.10", ZERO, "192.0.2.1")
    a = arp.parse(raw + b"trailer")
    assert a == arp.Arp(1, 0x0800, 6, 4, 1, PEER, aton("192.0.2.10"), ZERO, aton("192.0.2.1"))
    assert arp.parse(arp_pkt(2, PEER, "0.0.0.0", PEER, "1.2.3.4", hrd=6)).op == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("raw,reason", [
    (b"", "PKT_TOO_SMALL"),
    (arp_pkt(1, PEER, "192.0.2.10", ZERO, "192.0.2.1")[:27], "PKT_TOO_SMALL"),
    (arp_pkt(1, PEER, "192.0.2.10", ZERO, "192.0.2.1", hln=8), "ARP_BAD_ADDR_LEN"),
    (arp_pkt(1, PEER, "192.0.2.10", ZERO, "192.0.2.1", pln=16), "ARP_BAD_ADDR_LEN"),
    (arp_pkt(1, PEER, "192.0.2.10", ZERO, "192.0.2.1", hrd=0x18), "ARP_BAD_HRD_PRO"),
    (arp_pkt(1, PEER, "192.0.2.10", ZERO, "192.0.2.1", pro=0x86DD), "ARP_BAD_HRD_PRO"),
    (_ARP.pack(1, 0x0800, 6, 4, 3, PEER, ip("192.0.2.10"), ZERO, ip("192.0.2.1")), "ARP_BAD_OP"),
    (_ARP.pack(1, 0x0800, 6, 4, 0, PEER, ip("192.0.2.10"), ZERO, ip("192.0.2.1")), "ARP_BAD_OP"),
])
def test_malformed_arp_is_dropped_with_a_reason(raw: bytes, reason: str) -> None:
    assert arp.parse(raw) == arp.ArpDrop(reason)
    ll, _ = make()
    assert ll.frame_in("veth0", eth(BCAST, PEER, 0x0806, raw, pad=False), 1.0) == (None, [])
    assert ll.drops[reason] == 1
    assert ll.neighbours() == []


def test_frames_that_are_not_for_us() -> None:
    ll, _ = make()
    f = request(PEER, "192.0.2.10", "192.0.2.1", dst=PEER2)  # unicast to another MAC
    assert ll.frame_in("veth0", f, 1.0) == (None, [])
    assert ll.drops["OTHERHOST"] == 1
    assert ll.frame_in("veth0", eth(PEER2, PEER, 0x0800, b"E" * 46), 1.0) == (None, [])
    assert ll.frame_in("veth0", eth(KMAC, PEER, 0x86DD, b"6" * 46), 1.0) == (None, [])
    assert ll.drops["UNHANDLED_PROTO"] == 1
    assert ll.frame_in("veth0", b"\x01\x02", 1.0) == (None, [])
    assert ll.frame_in("nosuch", f, 1.0) == (None, [])
    assert ll.frame_in("lo", f, 1.0) == (None, [])  # no link layer on loopback
    assert ll.drops["NO_DEVICE"] == 1 and ll.drops["NO_LINK_LAYER"] == 1
    assert ll.neighbours() == []


def test_ipv4_frames_go_up() -> None:
    ll, _ = make()
    payload = b"E" + bytes(45)
    assert ll.frame_in("veth0", eth(KMAC, PEER, 0x0800, payload), 1.0) == (payload, [])
    assert ll.frame_in("veth0", eth(BCAST, PEER, 0x0800, payload), 1.0) == (payload, [])
    assert ll.frame_in("veth0", eth(bytes.fromhex("01005e000001"), PEER, 0x0800, payload), 1.0) == (payload, [])
    assert ll.frame_in("veth0", eth(KMAC, PEER, 0x0800, payload, tags=(0x2000,)), 1.0) == (payload, [])
    assert ll.frame_in("veth0", eth(KMAC, PEER, 0x0800, payload, tags=(12,)), 1.0) == (None, [])


def test_down_device_and_noarp_device() -> None:
    ll, st = make(BASE + DUMMY)
    st.link_set_up(st.devices["veth0"], False)
    assert ll.frame_in("veth0", request(PEER, "192.0.2.10", "192.0.2.1"), 1.0) == (None, [])
    assert ll.drops["DEV_DOWN"] == 1
    # dummy is IFF_NOARP: arp_rcv() ignores ARP there
    assert ll.frame_in("dummy0", request(PEER, "203.0.113.170", "203.0.113.161"), 1.0) == (None, [])
    assert ll.drops["ARP_NOARP_DEVICE"] == 1


@settings(max_examples=300, deadline=None)
@given(hst.binary(max_size=80), hst.integers(0, 59), hst.binary(min_size=1, max_size=4))
def test_garbage_never_raises(junk: bytes, at: int, patch: bytes) -> None:
    ll, _ = make()
    ll.frame_in("veth0", junk, 1.0)
    base = bytearray(request(PEER, "192.0.2.10", "192.0.2.1"))
    base[at:at + len(patch)] = patch
    pkt, frames = ll.frame_in("veth0", bytes(base), 2.0)
    for _, f in frames:
        assert len(f) >= 60
    ll.handle_timer(100.0)


# ---------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------
def test_ten_aliases_each_answered_with_the_device_mac() -> None:
    """The IP Alias HOWTO: every address of the interface is answered for, primary or secondary, any label."""
    conf = "ip link add eth0 type veth peer name eth0p\nip link set eth0 up\n" + "".join(
        f"ip addr add 192.0.2.{i}/24 dev eth0 label eth0:{i}\n" for i in range(1, 11))
    st = load_script(conf, "alias.conf")
    st.devices["eth0"].mac = KMAC
    ll = LinkLayer(st, rng=random.Random(1))
    assert sum(1 for a in st.devices["eth0"].addrs if a.secondary) == 9
    for i in range(1, 11):
        out = ll.frame_in("eth0", request(PEER, "192.0.2.200", f"192.0.2.{i}"), 1.0 + i)
        assert out == (None, [("eth0", expected_reply(PEER, "192.0.2.200", f"192.0.2.{i}"))])
    # ifconfig-style aliases on a /32 in another subnet are answered too
    apply(st, "ifconfig eth0:20 203.0.113.20 netmask 255.255.255.255 up")
    assert frames_of(ll.frame_in("eth0", request(PEER, "192.0.2.200", "203.0.113.20"), 20.0), "eth0") == \
        [expected_reply(PEER, "192.0.2.200", "203.0.113.20")]
    assert format_neigh_show(ll.neighbours()) == "192.0.2.200 dev eth0 lladdr 02:00:00:00:00:10 STALE \n"


def test_answers_for_addresses_of_other_interfaces_by_default() -> None:
    ll, _ = make()
    assert frames_of(ll.frame_in("veth0", request(PEER, "192.0.2.10", "198.51.100.1"), 1.0)) == \
        [expected_reply(PEER, "192.0.2.10", "198.51.100.1")]
    assert frames_of(ll.frame_in("veth0", request(PEER, "192.0.2.10", "192.0.2.3"), 1.0)) == \
        [expected_reply(PEER, "192.0.2.10", "192.0.2.3")]  # scope host: answered with arp_ignore=0


def test_not_answered() -> None:
    ll, _ = make()
    for tip in ("192.0.2.99", "192.0.2.255", "192.0.2.0", "0.0.0.0", "255.255.255.255"):
        assert ll.frame_in("veth0", request(PEER, "192.0.2.10", tip), 1.0) == (None, []), tip
    for tip, reason in (("127.0.0.1", "ARP_BAD_TARGET"), ("224.0.0.1", "ARP_BAD_TARGET")):
        assert ll.frame_in("veth0", request(PEER, "192.0.2.10", tip), 1.0) == (None, [])
        assert ll.drops[reason] > 0
    # a sender claiming one of our addresses is a martian source: no answer
    assert ll.frame_in("veth0", request(PEER, "192.0.2.2", "192.0.2.1"), 1.0) == (None, [])
    assert ll.neighbours() == []  # requests not for us learn nothing new


@pytest.mark.parametrize("mode,answered", [
    (0, {"192.0.2.1", "192.0.2.3", "198.51.100.1"}),
    (1, {"192.0.2.1", "192.0.2.3"}),  # only addresses of the receiving interface
    (2, {"192.0.2.1", "192.0.2.3"}),  # ... and in the sender's subnet (.3/32 lies in .1/24's: confirmed)
    (3, {"192.0.2.1", "198.51.100.1"}),  # not scope host
    (4, {"192.0.2.1", "192.0.2.3", "198.51.100.1"}),  # reserved: as 0
    (8, set()),
])
def test_arp_ignore(mode: int, answered: set[str]) -> None:
    ll, st = make()
    sysctl(st, net__ipv4__conf__veth0__arp_ignore=mode)
    got = set()
    for tip in ("192.0.2.1", "192.0.2.3", "198.51.100.1"):
        if frames_of(ll.frame_in("veth0", request(PEER, "192.0.2.10", tip), 1.0)):
            got.add(tip)
    assert got == answered
    # the larger of conf/all and conf/DEV counts
    ll, st = make()
    sysctl(st, net__ipv4__conf__all__arp_ignore=mode)
    assert bool(frames_of(ll.frame_in("veth0", request(PEER, "192.0.2.10", "198.51.100.1"), 1.0))) == \
        ("198.51.100.1" in answered)


def test_arp_ignore_2_sender_subnet() -> None:
    ll, st = make(BASE + "ip addr add 203.0.113.1/24 dev veth0\n")
    sysctl(st, net__ipv4__conf__veth0__arp_ignore=2)
    assert ll.frame_in("veth0", request(PEER, "203.0.113.9", "192.0.2.1"), 1.0) == (None, [])
    assert frames_of(ll.frame_in("veth0", request(PEER, "203.0.113.9", "203.0.113.1"), 1.0))
    assert ll.drops["ARP_IGNORED"] == 1


def test_arp_filter() -> None:
    ll, st = make(BASE + "ip route add 203.0.113.0/24 dev other0\n")
    assert frames_of(ll.frame_in("veth0", request(PEER, "203.0.113.9", "192.0.2.1"), 1.0))
    sysctl(st, net__ipv4__conf__veth0__arp_filter=1)
    # our route back to 203.0.113.9 leaves by other0, not veth0: no answer
    assert ll.frame_in("veth0", request(PEER2, "203.0.113.10", "192.0.2.1"), 2.0) == (None, [])
    assert frames_of(ll.frame_in("veth0", request(PEER2, "192.0.2.10", "192.0.2.1"), 2.0))


def test_duplicate_address_probe() -> None:
    """sip 0.0.0.0 (RFC 5227 probe): answered to the prober with target 0.0.0.0, nothing learned."""
    ll, st = make()
    got = frames_of(ll.frame_in("veth0", request(PEER, "0.0.0.0", "192.0.2.2"), 1.0))
    assert got == [eth(PEER, KMAC, 0x0806, arp_pkt(2, KMAC, "192.0.2.2", PEER, "0.0.0.0"))]
    assert frames_of(ll.frame_in("veth0", request(PEER, "0.0.0.0", "198.51.100.1"), 1.0))  # any local address
    assert ll.frame_in("veth0", request(PEER, "0.0.0.0", "192.0.2.77"), 1.0) == (None, [])
    assert ll.neighbours() == []
    sysctl(st, net__ipv4__conf__veth0__arp_ignore=1)
    assert ll.frame_in("veth0", request(PEER, "0.0.0.0", "198.51.100.1"), 1.0) == (None, [])


def test_request_with_ieee802_hardware_type_and_priority_tag() -> None:
    ll, _ = make()
    f = eth(BCAST, PEER, 0x0806, arp_pkt(1, PEER, "192.0.2.10", ZERO, "192.0.2.1", hrd=6))
    assert frames_of(ll.frame_in("veth0", f, 1.0)) == [expected_reply(PEER, "192.0.2.10", "192.0.2.1")]
    tagged = eth(BCAST, PEER, 0x0806, arp_pkt(1, PEER, "192.0.2.10", ZERO, "192.0.2.2"), tags=(0xA000,))
    assert frames_of(ll.frame_in("veth0", tagged, 1.0)) == [expected_reply(PEER, "192.0.2.10", "192.0.2.2")]
    vlan = eth(BCAST, PEER, 0x0806, arp_pkt(1, PEER, "192.0.2.10", ZERO, "192.0.2.2"), tags=(0xA005,))
    assert ll.frame_in("veth0", vlan, 1.0) == (None, [])


def test_reply_goes_to_the_arp_sender_not_the_ethernet_source() -> None:
    ll, _ = make()
    f = eth(BCAST, PEER2, 0x0806, arp_pkt(1, PEER, "192.0.2.10", ZERO, "192.0.2.1"))
    dst, src, op, sha, sip, tha, tip = parse_arp(frames_of(ll.frame_in("veth0", f, 1.0))[0])
    assert (dst, src, op, sha, sip, tha, tip) == (PEER, KMAC, 2, KMAC, "192.0.2.1", PEER, "192.0.2.10")


# ---------------------------------------------------------------------------
# Learning (what arp_process puts in the neighbour table)
# ---------------------------------------------------------------------------
def _state(ll: LinkLayer, addr: str) -> tuple[Nud, bytes] | None:
    n = ll.table.lookup("veth0", aton(addr))
    return None if n is None else (n.state, n.ha)


def test_learning_rules() -> None:
    ll, _ = make()
    # a request for us creates the requester, STALE
    ll.frame_in("veth0", request(PEER, "192.0.2.10", "192.0.2.1"), 10.0)
    assert _state(ll, "192.0.2.10") == (Nud.STALE, PEER)
    # requests and replies from strangers create nothing (arp_accept=0)
    ll.frame_in("veth0", request(PEER2, "192.0.2.11", "192.0.2.99"), 10.0)
    ll.frame_in("veth0", reply(PEER2, "192.0.2.12", "192.0.2.1"), 10.0)
    ll.frame_in("veth0", request(PEER2, "192.0.2.13", "192.0.2.13"), 10.0)  # gratuitous
    assert _state(ll, "192.0.2.11") is None and _state(ll, "192.0.2.12") is None
    assert ll.drops["ARP_UNSOLICITED"] == 1
    # a unicast reply from a known neighbour: REACHABLE
    ll.frame_in("veth0", reply(PEER, "192.0.2.10", "192.0.2.1"), 10.5)
    assert _state(ll, "192.0.2.10") == (Nud.REACHABLE, PEER)
    # a different address within locktime (1 s after the last change): the first one stays
    ll.frame_in("veth0", reply(PEER2, "192.0.2.10", "192.0.2.1"), 11.0)
    assert _state(ll, "192.0.2.10") == (Nud.REACHABLE, PEER)
    # after locktime, a broadcast reply overrides, but only as STALE
    ll.frame_in("veth0", reply(PEER2, "192.0.2.10", "192.0.2.1", dst=BCAST), 12.0)
    assert _state(ll, "192.0.2.10") == (Nud.STALE, PEER2)
    # a request not for us, same address: nothing changes
    ll.frame_in("veth0", request(PEER2, "192.0.2.10", "192.0.2.99"), 12.1)
    assert _state(ll, "192.0.2.10") == (Nud.STALE, PEER2)
    # a gratuitous ARP overrides at once, even within locktime
    ll.frame_in("veth0", request(PEER3, "192.0.2.10", "192.0.2.10"), 12.2)
    assert _state(ll, "192.0.2.10") == (Nud.STALE, PEER3)
    # a request for us always overrides (neigh_event_ns)
    ll.frame_in("veth0", request(PEER, "192.0.2.10", "192.0.2.2"), 12.3)
    assert _state(ll, "192.0.2.10") == (Nud.STALE, PEER)


def test_arp_accept_and_drop_gratuitous() -> None:
    ll, st = make()
    sysctl(st, net__ipv4__conf__veth0__arp_accept=1)
    ll.frame_in("veth0", reply(PEER, "192.0.2.40", "192.0.2.1"), 1.0)
    ll.frame_in("veth0", request(PEER2, "192.0.2.41", "192.0.2.41"), 1.0)
    ll.frame_in("veth0", request(PEER2, "192.0.2.42", "192.0.2.99"), 1.0)  # plain request: still nothing
    assert _state(ll, "192.0.2.40") == (Nud.REACHABLE, PEER)
    assert _state(ll, "192.0.2.41") == (Nud.STALE, PEER2)
    assert _state(ll, "192.0.2.42") is None
    sysctl(st, net__ipv4__conf__veth0__arp_accept=2)  # only senders in a subnet of the interface
    ll.frame_in("veth0", reply(PEER, "203.0.113.40", "192.0.2.1"), 1.0)
    ll.frame_in("veth0", reply(PEER, "192.0.2.43", "192.0.2.1"), 1.0)
    assert _state(ll, "203.0.113.40") is None and _state(ll, "192.0.2.43") == (Nud.REACHABLE, PEER)
    sysctl(st, net__ipv4__conf__all__drop_gratuitous_arp=1)
    assert ll.frame_in("veth0", request(PEER3, "192.0.2.41", "192.0.2.41"), 5.0) == (None, [])
    assert _state(ll, "192.0.2.41") == (Nud.STALE, PEER2)
    assert ll.drops["ARP_GRATUITOUS_DROPPED"] == 1


def test_permanent_entries_ignore_arp() -> None:
    ll, _ = make()
    ll.neigh_add("veth0", aton("192.0.2.10"), PEER, 1.0)
    ll.frame_in("veth0", request(PEER2, "192.0.2.10", "192.0.2.1"), 5.0)
    ll.frame_in("veth0", request(PEER2, "192.0.2.10", "192.0.2.10"), 5.0)
    assert _state(ll, "192.0.2.10") == (Nud.PERMANENT, PEER)


def test_request_from_a_neighbour_being_resolved_releases_its_queue() -> None:
    """A request for us while we resolve its sender: neigh_event_ns makes it STALE, the queue leaves
    (before our reply), and the entry goes on to DELAY as the first queued packet is sent."""
    ll, _ = make()
    ll.ip_out("veth0", aton("192.0.2.10"), b"P1" + bytes(26), 1.0)
    ll.ip_out("veth0", aton("192.0.2.10"), b"P2" + bytes(26), 1.1)
    got = frames_of(ll.frame_in("veth0", request(PEER, "192.0.2.10", "192.0.2.1"), 1.2))
    assert [f[:16] for f in got[:2]] == [PEER + KMAC + b"\x08\x00P1", PEER + KMAC + b"\x08\x00P2"]
    assert got[2] == expected_reply(PEER, "192.0.2.10", "192.0.2.1")
    assert _state(ll, "192.0.2.10") == (Nud.DELAY, PEER)


# ---------------------------------------------------------------------------
# Requests we send: gratuitous, and for resolution (arp_solicit)
# ---------------------------------------------------------------------------
def garp(addr: str) -> bytes:
    return eth(BCAST, KMAC, 0x0806, arp_pkt(1, KMAC, addr, ZERO, addr))


def test_gratuitous_arp_on_address_add_and_device_up() -> None:
    ll, st = make(BASE + DUMMY)
    apply(st, "ip addr add 192.0.2.9/24 dev veth0")
    assert ll.address_added("veth0", aton("192.0.2.9"), 1.0) == [("veth0", garp("192.0.2.9"))]
    st.link_set_up(st.devices["veth0"], False)
    assert ll.address_added("veth0", aton("192.0.2.9"), 1.0) == []  # down: nothing
    st.link_set_up(st.devices["veth0"], True)
    order = [socket.inet_ntoa(a.local.to_bytes(4, "big")) for a in st.devices["veth0"].addrs]
    assert sorted(order) == ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.9"]
    assert ll.device_up("veth0", 2.0) == [("veth0", garp(a)) for a in order]
    assert ll.address_added("dummy0", aton("203.0.113.161"), 1.0) == []  # IFF_NOARP
    assert ll.address_added("lo", aton("127.0.0.2"), 1.0) == []
    sysctl(st, net__ipv4__conf__veth0__arp_notify=0)
    assert ll.device_up("veth0", 3.0) == []
    sysctl(st, net__ipv4__conf__all__arp_notify=1)
    assert len(ll.device_up("veth0", 3.0)) == 4


@pytest.mark.parametrize("announce,src_of_local,src_of_forwarded", [
    (0, "192.0.2.2", "192.0.2.1"),  # any local source of the packet; else inet_select_addr: the primary
    (1, "192.0.2.2", "192.0.2.1"),
    (2, "192.0.2.1", "192.0.2.1"),  # always the primary for the target
])
def test_solicit_sender_address(announce: int, src_of_local: str, src_of_forwarded: str) -> None:
    def sender(src: str, target: str) -> str:
        ll, st = make()
        sysctl(st, net__ipv4__conf__veth0__arp_announce=announce)
        pkt = bytes(12) + ip(src) + ip(target)
        (_, f), = ll.ip_out("veth0", aton(target), pkt, 1.0)
        dst, smac, op, sha, sip, tha, tip = parse_arp(f)
        assert (dst, smac, op, sha, tha, tip) == (BCAST, KMAC, 1, KMAC, ZERO, target)
        return sip

    assert sender("192.0.2.2", "192.0.2.50") == src_of_local
    assert sender("203.0.113.7", "192.0.2.50") == src_of_forwarded
    # a local source in another subnet: announce 1 refuses it, 0 uses it
    assert sender("198.51.100.1", "192.0.2.50") == {0: "198.51.100.1"}.get(announce, "192.0.2.1")


def test_ip_out_broadcast_multicast_and_noarp() -> None:
    ll, _ = make(BASE + DUMMY)
    pkt = b"E" + bytes(27)
    for dst in ("255.255.255.255", "192.0.2.255"):
        assert ll.ip_out("veth0", aton(dst), pkt, 1.0) == [("veth0", eth(BCAST, KMAC, 0x0800, pkt))]
    assert ll.ip_out("veth0", aton("224.0.0.251"), pkt, 1.0) == \
        [("veth0", eth(bytes.fromhex("01005e0000fb"), KMAC, 0x0800, pkt))]
    dummy_mac = ll.stack.devices["dummy0"].mac
    assert ll.ip_out("dummy0", aton("203.0.113.167"), pkt, 1.0) == [("dummy0", eth(dummy_mac, dummy_mac, 0x0800, pkt))]
    assert ll.ip_out("lo", aton("127.0.0.1"), pkt, 1.0) == []
    assert format_neigh_show(ll.neighbours()) == ""  # NOARP entries are not listed by default
    assert format_neigh_show(ll.neighbours(), show_all=True).count("NOARP") == 4


# ---------------------------------------------------------------------------
# The kernel as an oracle
# ---------------------------------------------------------------------------
NS_PREFIX = "ipgt-"
CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
CMD_TIMEOUT = 15.0
BARRIER_MAC = bytes.fromhex("02000000ba99")
PMAC = bytes.fromhex("0200000000fe")

_libc = ctypes.CDLL(None, use_errno=True)

# What the kernel namespace starts from: a new netns copies conf/all and conf/default from the host,
# so the defaults ipgate mirrors are written explicitly.
KERNEL_CONF = {
    "arp_ignore": 0, "arp_announce": 0, "arp_filter": 0, "arp_accept": 0, "arp_notify": 0,
    "drop_gratuitous_arp": 0, "rp_filter": 0, "accept_local": 0, "route_localnet": 0, "proxy_arp": 0,
    "proxy_arp_pvlan": 0, "forwarding": 0, "promote_secondaries": 0, "shared_media": 1,
}
KERNEL_NEIGH = {
    "mcast_solicit": 3, "ucast_solicit": 3, "app_solicit": 0, "mcast_resolicit": 0, "retrans_time_ms": 1000,
    "base_reachable_time_ms": 30000, "delay_first_probe_time": 5, "locktime": 100, "gc_stale_time": 60,
    "unres_qlen_bytes": 212992,
}


def _run(argv: list[str], timeout: float = CMD_TIMEOUT) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if p.returncode:
        raise RuntimeError(f"{shlex.join(argv)}: {p.stderr.strip()}")
    return p.stdout


def netns_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None or shutil.which("sysctl") is None:
        return "needs ip and sysctl"
    return None


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


@contextmanager
def pinned() -> Iterator[None]:
    """The thread on one CPU: frames sent one after another are handled in order (one backlog)."""
    old = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(old)})
        yield
    finally:
        os.sched_setaffinity(0, old)


class KernelPair:
    """Namespace `k` holds veth0 (MAC KMAC) configured by a script: the kernel under test.  Namespace `p` holds
    the peer end veth1, up, NOARP, without addresses: frames are injected and captured there (AF_PACKET)."""

    def __init__(self, script: str) -> None:
        tag = f"{NS_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.k, self.p = f"{tag}-k", f"{tag}-p"
        self.sock: socket.socket | None = None
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY)
        self._made: list[str] = []
        try:
            for ns in (self.k, self.p):
                _run(["ip", "netns", "add", ns])
                self._made.append(ns)
            self.sysctl(self.k, {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1})
            self.sysctl(self.p, {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1,
                                 "net.ipv4.conf.all.arp_ignore": 8})
            for scope in ("all", "default"):
                self.sysctl(self.k, {f"net.ipv4.conf.{scope}.{k}": v for k, v in KERNEL_CONF.items()})
            self.sysctl(self.k, {f"net.ipv4.neigh.default.{k}": v for k, v in KERNEL_NEIGH.items()})
            _run(["ip", "link", "add", "veth0", "netns", self.k, "address", ether.mac_text(KMAC), "type", "veth",
                  "peer", "name", "veth1", "netns", self.p, "address", ether.mac_text(PMAC)])
            self.sysctl(self.k, {f"net.ipv4.conf.veth0.{k}": v for k, v in KERNEL_CONF.items()})
            self.sysctl(self.k, {f"net.ipv4.neigh.veth0.{k}": v for k, v in KERNEL_NEIGH.items()})
            _run(["ip", "-n", self.p, "link", "set", "veth1", "arp", "off", "up"])
            _run(["ip", "-n", self.k, "link", "set", "lo", "up"])  # as ipgate's Stack starts
            self.script(script)
            with self.entered(self.p):
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock = s
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 24)  # room for a whole burst
            s.bind(("veth1", 0))
            s.setblocking(False)
        except BaseException:
            self.close()
            raise

    # -- plumbing -----------------------------------------------------------
    @contextmanager
    def entered(self, ns: str) -> Iterator[None]:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _setns(fd)
            try:
                yield
            finally:
                _setns(self._home)
        finally:
            os.close(fd)

    def sysctl(self, ns: str, values: dict[str, int]) -> None:
        _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-e", "-w"] + [f"{k}={v}" for k, v in values.items()])

    def script(self, text: str) -> None:
        """`ip ...` and `sysctl -w k=v` lines, run in the kernel namespace."""
        for line in text.strip().splitlines():
            words = shlex.split(line)
            if not words:
                continue
            if words[0] == "ip":
                if words[1:4] == ["link", "add", "veth0"]:
                    continue  # the harness made it
                _run(["ip", "-n", self.k] + words[1:])
            elif words[0] == "sysctl":
                _run(["ip", "netns", "exec", self.k] + words)
            else:
                raise ValueError(line)

    def neigh_show(self) -> list[str]:
        return sorted(_run(["ip", "-n", self.k, "-4", "neigh", "show"]).splitlines())

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for ns in reversed(self._made):
            with suppress(RuntimeError, subprocess.TimeoutExpired):
                _run(["ip", "netns", "del", ns])
        self._made = []
        with suppress(OSError):
            os.close(self._home)

    # -- frames -------------------------------------------------------------
    def send(self, frame: bytes) -> None:
        assert self.sock is not None
        self.sock.send(frame)

    def recv(self, deadline: float) -> Iterator[tuple[float, bytes]]:
        """Frames veth0 sent (ARP and IPv4), with their arrival time, until `deadline`."""
        assert self.sock is not None
        poll = select.poll()
        poll.register(self.sock.fileno(), select.POLLIN)
        for _ in range(100_000):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if not poll.poll(max(1, int(left * 1000))):
                continue
            while True:
                try:
                    data, addr = self.sock.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] != PACKET_OUTGOING and data[12:14] in (b"\x08\x06", b"\x08\x00"):
                    yield time.monotonic(), data

    def drain(self) -> None:
        for _ in self.recv(time.monotonic() + 0.05):
            pass

    def exchange(self, frame: bytes, barrier_ip: str = "192.0.2.1") -> list[bytes]:
        """Send `frame`, then a duplicate-address probe as a barrier; the kernel's frames before the barrier's
        answer are its response to `frame`."""
        self.drain()
        with pinned():
            self.send(frame)
            self.send(request(BARRIER_MAC, "0.0.0.0", barrier_ip))
        got: list[bytes] = []
        for _, f in self.recv(time.monotonic() + 3.0):
            if f[:6] == BARRIER_MAC:
                return got
            got.append(f)
        raise TimeoutError("the barrier never came back")


@pytest.fixture
def kernel_factory() -> Iterator[list[KernelPair]]:
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    made: list[KernelPair] = []
    try:
        yield made
    finally:
        for kp in made:
            kp.close()


def kernel_pair(made: list[KernelPair], script: str) -> KernelPair:
    kp = KernelPair(script)
    made.append(kp)
    return kp


# Phases: settings applied to both sides, then frames sent to both; replies and learning compared.
M = [bytes.fromhex(f"0200000001{i:02x}") for i in range(64)]
PHASES: list[tuple[str, list[tuple[str, bytes]]]] = [
    ("", [
        ("request for the primary", request(M[10], "192.0.2.10", "192.0.2.1")),
        ("request for a secondary", request(M[10], "192.0.2.10", "192.0.2.2")),
        ("request for a scope host address", request(M[10], "192.0.2.10", "192.0.2.3")),
        ("request for another interface's address", request(M[10], "192.0.2.10", "198.51.100.1")),
        ("request for a stranger", request(M[11], "192.0.2.11", "192.0.2.99")),
        ("request for loopback", request(M[11], "192.0.2.11", "127.0.0.1")),
        ("request for multicast", request(M[11], "192.0.2.11", "224.0.0.1")),
        ("request for the subnet broadcast", request(M[11], "192.0.2.11", "192.0.2.255")),
        ("gratuitous from a stranger", request(M[12], "192.0.2.12", "192.0.2.12")),
        ("gratuitous from a known neighbour, new MAC", request(M[13], "192.0.2.10", "192.0.2.10")),
        ("unicast to another MAC", request(M[14], "192.0.2.14", "192.0.2.1", dst=M[60])),
        ("unicast to us", request(M[15], "192.0.2.15", "192.0.2.1", dst=KMAC)),
        ("sender off-subnet", request(M[16], "203.0.113.9", "192.0.2.1")),
        ("sender claims our address", request(M[17], "192.0.2.2", "192.0.2.1")),
        ("unsolicited reply", reply(M[18], "192.0.2.18", "192.0.2.1")),
        ("reply from a known neighbour", reply(M[13], "192.0.2.10", "192.0.2.1")),
        ("conflicting reply within locktime", reply(M[19], "192.0.2.10", "192.0.2.1")),
        ("hardware type IEEE 802", eth(BCAST, M[20], 0x0806, arp_pkt(1, M[20], "192.0.2.20", ZERO, "192.0.2.1",
                                                                    hrd=6))),
        ("hardware length 8", eth(BCAST, M[21], 0x0806, arp_pkt(1, M[21], "192.0.2.21", ZERO, "192.0.2.1",
                                                               hln=8))),
        ("opcode 3", eth(BCAST, M[22], 0x0806, _ARP.pack(1, 0x0800, 6, 4, 3, M[22], ip("192.0.2.22"), ZERO,
                                                          ip("192.0.2.1")))),
        ("truncated ARP", eth(BCAST, M[23], 0x0806, arp_pkt(1, M[23], "192.0.2.23", ZERO, "192.0.2.1")[:20])),
        ("priority-tagged request", eth(BCAST, M[24], 0x0806, arp_pkt(1, M[24], "192.0.2.24", ZERO, "192.0.2.2"),
                                        tags=(0x6000,))),
        ("VLAN 5 request", eth(BCAST, M[25], 0x0806, arp_pkt(1, M[25], "192.0.2.25", ZERO, "192.0.2.2"),
                               tags=(5,))),
        ("duplicate address probe", request(M[26], "0.0.0.0", "192.0.2.2")),
        ("duplicate address probe, not ours", request(M[26], "0.0.0.0", "192.0.2.26")),
    ]),
    ("sysctl -w net.ipv4.conf.veth0.arp_ignore=1", [
        ("arp_ignore=1, other interface's address", request(M[30], "192.0.2.30", "198.51.100.1")),
        ("arp_ignore=1, own secondary", request(M[30], "192.0.2.30", "192.0.2.2")),
    ]),
    ("sysctl -w net.ipv4.conf.veth0.arp_ignore=2", [
        ("arp_ignore=2, sender off-subnet", request(M[31], "203.0.113.31", "192.0.2.1")),
        ("arp_ignore=2, sender on-subnet", request(M[32], "192.0.2.32", "192.0.2.1")),
        ("arp_ignore=2, scope host", request(M[32], "192.0.2.32", "192.0.2.3")),
    ]),
    ("sysctl -w net.ipv4.conf.veth0.arp_ignore=3", [
        ("arp_ignore=3, scope host", request(M[33], "192.0.2.33", "192.0.2.3")),
        ("arp_ignore=3, other interface", request(M[33], "192.0.2.33", "198.51.100.1")),
    ]),
    ("sysctl -w net.ipv4.conf.veth0.arp_ignore=0\nsysctl -w net.ipv4.conf.veth0.arp_filter=1\n"
     "ip route add 203.0.113.0/24 dev other0", [
        ("arp_filter, route back by another interface", request(M[34], "203.0.113.34", "192.0.2.1")),
        ("arp_filter, route back by veth0", request(M[35], "192.0.2.35", "192.0.2.1")),
    ]),
    ("sysctl -w net.ipv4.conf.veth0.arp_filter=0\nsysctl -w net.ipv4.conf.veth0.arp_accept=1", [
        ("arp_accept, unsolicited unicast reply", reply(M[40], "192.0.2.40", "192.0.2.1")),
        ("arp_accept, unsolicited broadcast reply", reply(M[41], "192.0.2.41", "192.0.2.1", dst=BCAST)),
        ("arp_accept, gratuitous request", request(M[42], "192.0.2.42", "192.0.2.42")),
        ("arp_accept, gratuitous reply", reply(M[43], "192.0.2.43", "192.0.2.43", tha=M[43], dst=BCAST)),
        ("arp_accept, request for a stranger", request(M[44], "192.0.2.44", "192.0.2.99")),
    ]),
    ("sysctl -w net.ipv4.conf.veth0.arp_accept=0\nsysctl -w net.ipv4.conf.veth0.drop_gratuitous_arp=1", [
        ("drop_gratuitous_arp", request(M[45], "192.0.2.10", "192.0.2.10")),
    ]),
]


@pytest.mark.netns
def test_kernel_replies_and_learning(kernel_factory: list[KernelPair]) -> None:
    kp = kernel_pair(kernel_factory, BASE)
    ll, st = make()
    compared = 0
    for setup, cases in PHASES:
        kp.script(setup)
        apply(st, setup)
        for name, frame in cases:
            want = kp.exchange(frame)
            got = frames_of(ll.frame_in("veth0", frame, time.monotonic()))
            assert [f[:42] for f in got] == [f[:42] for f in want], name
            assert all(len(f) == 60 and f[42:] == bytes(18) for f in got), name
            compared += 1
        assert format_neigh_show(ll.neighbours()).splitlines() == kp.neigh_show(), setup
    assert compared == sum(len(c) for _, c in PHASES)


@pytest.mark.netns
def test_kernel_ten_aliases(kernel_factory: list[KernelPair]) -> None:
    conf = "ip link add veth0 type veth peer name veth1\nip link set veth0 up\n" + "".join(
        f"ip addr add 192.0.2.{i}/24 dev veth0 label veth0:{i}\n" for i in range(1, 11))
    kp = kernel_pair(kernel_factory, conf)
    ll, _ = make(conf)
    for i in range(1, 11):
        frame = request(M[i], f"192.0.2.{100 + i}", f"192.0.2.{i}")
        want = kp.exchange(frame)
        assert want and [f[:42] for f in frames_of(ll.frame_in("veth0", frame, time.monotonic()))] == \
            [f[:42] for f in want]
        assert parse_arp(want[0])[3] == KMAC
    assert format_neigh_show(ll.neighbours()).splitlines() == kp.neigh_show()


@pytest.mark.netns
def test_kernel_gratuitous_arp(kernel_factory: list[KernelPair]) -> None:
    """With arp_notify=1 the kernel announces every address when the device comes up
    (inetdev_send_gratuitous_arp); it announces nothing on `ip addr add`, where ipgate does."""
    kp = kernel_pair(kernel_factory, BASE)
    ll, st = make()
    kp.script("sysctl -w net.ipv4.conf.veth0.arp_notify=1\nip link set veth0 down")
    kp.drain()
    kp.script("ip link set veth0 up")
    want = [f for _, f in kp.recv(time.monotonic() + 1.0) if f[12:14] == b"\x08\x06"]
    st.link_set_up(st.devices["veth0"], False)
    st.link_set_up(st.devices["veth0"], True)
    got = [f for _, f in ll.device_up("veth0", 1.0)]
    assert [f[:42] for f in got] == [f[:42] for f in want]
    assert sorted(parse_arp(f)[4] for f in want) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    kp.drain()
    kp.script("ip addr add 192.0.2.4/24 dev veth0")
    assert [f for _, f in kp.recv(time.monotonic() + 0.5)] == []
    assert [f for _, f in ll.address_added("veth0", aton("192.0.2.4"), 2.0)] == [garp("192.0.2.4")]
