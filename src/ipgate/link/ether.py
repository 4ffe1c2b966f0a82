"""Ethernet II framing (net/ethernet/eth.c: eth_type_trans, eth_header; net/core/dev.c VLAN handling).

Input: `parse(frame, own_mac)` gives the destination, source, EtherType, payload
and the packet type the kernel's eth_type_trans() would set (HOST, BROADCAST,
MULTICAST, OTHERHOST), or an `EthDrop` with a reason; it never raises.

802.1Q / 802.1ad tags: a gateway interface has no VLAN sub-devices, so a
tagged frame is handled as __netif_receive_skb_core() handles one that no VLAN
device claims: a priority tag (VLAN ID 0, 802.1p) is stripped and the frame
goes on; any other VLAN ID is dropped (the kernel marks it PACKET_OTHERHOST
and IP/ARP discard it) with the reason VLAN_NO_DEVICE.

Output: `build()` writes the 14-byte header and pads to ETH_ZLEN (60 bytes,
the 64-byte minimum less the FCS the NIC appends), as a driver without
hardware padding does (eth_skb_pad / skb_put_padto).  The padding is zeros.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from ipgate.packet.checksum import Buffer

ETH_ALEN = 6
ETH_HLEN = 14
ETH_ZLEN = 60  # minimum frame length without the FCS
ETH_FRAME_LEN = 1514
VLAN_HLEN = 4

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_802_3_MIN = 0x0600  # below: an 802.3 length field, not an EtherType

BROADCAST_MAC = b"\xff" * ETH_ALEN
ZERO_MAC = b"\x00" * ETH_ALEN

_HDR = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")  # TCI, inner EtherType
_MAX_TAGS = 2  # a priority tag in front of one more (QinQ) is the most we unwrap


class PktType(enum.IntEnum):
    """skb->pkt_type (include/uapi/linux/if_packet.h)."""

    HOST = 0
    BROADCAST = 1
    MULTICAST = 2
    OTHERHOST = 3


class EthFrame(NamedTuple):
    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes
    pkt_type: PktType


class EthDrop(NamedTuple):
    """Why a frame was not passed up; names follow enum skb_drop_reason where the kernel has one."""

    reason: str


def pkt_type_of(dst: bytes, own_mac: bytes) -> PktType:
    """eth_type_trans(): the group bit decides broadcast/multicast, else is it our address."""
    if dst[0] & 1:
        return PktType.BROADCAST if dst == BROADCAST_MAC else PktType.MULTICAST
    return PktType.HOST if dst == own_mac else PktType.OTHERHOST


def parse(frame: Buffer, own_mac: bytes) -> EthFrame | EthDrop:
    """A received Ethernet II frame, or why it is dropped (never raises)."""
    if len(frame) < ETH_HLEN:
        return EthDrop("PKT_TOO_SMALL")
    dst, src, etype = _HDR.unpack_from(frame, 0)
    off = ETH_HLEN
    for _ in range(_MAX_TAGS + 1):
        if etype not in (ETH_P_8021Q, ETH_P_8021AD):
            break
        if len(frame) < off + VLAN_HLEN:
            return EthDrop("PKT_TOO_SMALL")
        tci, etype = _TAG.unpack_from(frame, off)
        if tci & 0x0FFF:
            return EthDrop("VLAN_NO_DEVICE")  # no VLAN device for this ID: PACKET_OTHERHOST
        off += VLAN_HLEN  # 802.1p priority tag: the kernel ignores the PCP and goes on
    else:
        return EthDrop("VLAN_NO_DEVICE")
    if etype < ETH_P_802_3_MIN:
        return EthDrop("UNHANDLED_PROTO")  # 802.3 + LLC: no IPv4 or ARP there for us
    return EthFrame(bytes(dst), bytes(src), etype, bytes(frame[off:]), pkt_type_of(dst, own_mac))


def build(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    """eth_header() + padding to the minimum frame length."""
    return pad(_HDR.pack(dst, src, ethertype) + payload)


def pad(frame: bytes) -> bytes:
    """A frame padded to the minimum length (ETH_ZLEN), as the driver would."""
    if len(frame) < ETH_ZLEN:
        frame += bytes(ETH_ZLEN - len(frame))
    return frame


def ip_eth_mc_map(addr: int) -> bytes:
    """ip_eth_mc_map(): 01:00:5e + the low 23 bits of the IPv4 multicast group."""
    return bytes((0x01, 0x00, 0x5E, (addr >> 16) & 0x7F, (addr >> 8) & 0xFF, addr & 0xFF))


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_parse(text: str) -> bytes:
    """aa:bb:cc:dd:ee:ff (also with '-'), as iproute2's ll_addr_a2n accepts for Ethernet."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != ETH_ALEN or any(not 1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"invalid link-layer address {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"invalid link-layer address {text!r}") from None
