"""The kernel log line of the iptables LOG target for an IPv4 packet.

Mirrors net/netfilter/nf_log_syslog.c of Linux 6.x: nf_log_ip_packet() =
nf_log_dump_packet_common() + dump_mac_header() (only with an input device)
+ dump_ipv4_packet(), which recurses once into the packet an ICMP error
quotes.  Every field is written with its trailing space, as the kernel's
nf_log_buf_add() calls leave them, and the early returns (INCOMPLETE,
TRUNCATED) skip the trailing UID/MARK as they do in the kernel.

`pkt` plays skb->data from the IP header on and len(pkt) skb->len: at the
netfilter hooks ip_rcv_core() has already trimmed the skb to the header's
total length, so pass exactly the IP packet.  The header is not validated:
the kernel logs what it finds (only ip_rcv_core() stood in front of it).
"""

from __future__ import annotations

import struct

from ipgate.netfilter.targets import XT_LOG_IPOPT, XT_LOG_MACDECODE, XT_LOG_TCPOPT, XT_LOG_TCPSEQ, XT_LOG_UID
from ipgate.packet.ipv4 import IP_CE, IP_DF, IP_MF, IP_OFFSET, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPTOS_TOS_MASK
from ipgate.packet.l4 import (
    ICMP_ADDRESS,
    ICMP_ADDRESSREPLY,
    ICMP_DEST_UNREACH,
    ICMP_ECHO,
    ICMP_ECHOREPLY,
    ICMP_FRAG_NEEDED,
    ICMP_PARAMETERPROB,
    ICMP_REDIRECT,
    ICMP_SOURCE_QUENCH,
    ICMP_TIME_EXCEEDED,
    ICMP_TIMESTAMP,
    ICMP_TIMESTAMPREPLY,
    NR_ICMP_TYPES,
)

IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_UDPLITE = 136
IPTOS_PREC_MASK = 0xE0

ETH_HLEN = 14
IPH_LEN = 20  # sizeof(struct iphdr)
TCPH_LEN = 20  # sizeof(struct tcphdr)
UDPH_LEN = 8
ICMPH_LEN = 8  # sizeof(struct icmphdr): type, code, checksum, 32-bit union
AH_LEN = 12  # sizeof(struct ip_auth_hdr) without the auth data
ESP_LEN = 8  # sizeof(struct ip_esp_hdr)

# The 3 reserved bits of the TCP flag word since the AE (AccECN) bit was split
# off them (include/net/tcp.h); RES= prints them shifted right by 22.
TCP_RESERVED_BITS = 0x0E000000
TH_AE_WORD = 0x01000000
# include/net/tcp.h's tcp_flag_word() bits for the printed flags, in print order.
_TCP_FLAG_WORDS = ((TH_AE_WORD, "AE"), (0x00800000, "CWR"), (0x00400000, "ECE"), (0x00200000, "URG"),
                   (0x00100000, "ACK"), (0x00080000, "PSH"), (0x00040000, "RST"), (0x00020000, "SYN"),
                   (0x00010000, "FIN"))

# dump_ipv4_packet()'s required_len[]: bytes an ICMP message of that type needs
# (from its ICMP header on) before its type-specific fields are printed.
_ICMP_REQUIRED_LEN = {ICMP_ECHOREPLY: 4, ICMP_DEST_UNREACH: 8 + IPH_LEN, ICMP_SOURCE_QUENCH: 8 + IPH_LEN,
                      ICMP_REDIRECT: 8 + IPH_LEN, ICMP_ECHO: 4, ICMP_TIME_EXCEEDED: 8 + IPH_LEN,
                      ICMP_PARAMETERPROB: 8 + IPH_LEN, ICMP_TIMESTAMP: 20, ICMP_TIMESTAMPREPLY: 20,
                      ICMP_ADDRESS: 12, ICMP_ADDRESSREPLY: 12}
_ICMP_QUOTING = frozenset((ICMP_REDIRECT, ICMP_DEST_UNREACH, ICMP_SOURCE_QUENCH, ICMP_TIME_EXCEEDED))

# net/netfilter/nf_log.c: struct nf_log_buf holds S_SIZE = 1024 - 5 bytes; on
# overflow nf_log_buf_add() keeps the first S_SIZE - 1, of which the leading
# KERN_SOH and level character are not part of the message.
NF_LOG_TEXT_MAX = 1024 - 5 - 1 - 2

_IPH = struct.Struct("!BBHHHBBHII")
_TCP = struct.Struct("!HHIII2xH")  # ports, seq, ack_seq, flag word (doff..window), urg_ptr
_UDP = struct.Struct("!HHH")
_ICMP = struct.Struct("!BB2xHH")  # type, code, then the union as two 16-bit halves
_U32 = struct.Struct("!I")


def kmsg_priority(level: int) -> str:
    """The `<N>` printk's syslog format puts before the line (N = facility << 3 | level).

    Kernel messages have facility 0 (LOG_KERN), so N is the LOG --log-level,
    the same number /dev/kmsg gives as its first field.
    """
    if not 0 <= level <= 7:
        raise ValueError(f"log level {level} is not 0..7")
    return f"<{level}>"


def log_packet_line(prefix: str, logflags: int, indev: str, outdev: str, pkt: bytes, *,
                    mac: bytes | None = None, mark: int = 0, uid_gid: tuple[int, int] | None = None) -> str:
    """The message nf_log_ip_packet() prints for `pkt`, without printk's level.

    `mac` is the link-layer header the packet came in with; a 14-byte one is
    taken as Ethernet (an ARPHRD_ETHER device, decoded with XT_LOG_MACDECODE),
    None as a device without a hard header.  `uid_gid` is the (fsuid, fsgid)
    of the local socket owning the skb, printed with XT_LOG_UID.
    """
    out = [f"{prefix}IN={indev} OUT={outdev} "]
    if indev:
        out.append(_mac_header(logflags, mac))
    _dump_ipv4(out, logflags, pkt, 0, mark, uid_gid)
    line = "".join(out)
    raw = line.encode()
    if len(raw) > NF_LOG_TEXT_MAX:
        line = raw[:NF_LOG_TEXT_MAX].decode(errors="ignore")
    return line


def _mac_header(logflags: int, mac: bytes | None) -> str:
    """dump_mac_header(): decoded Ethernet, or the raw hard header (empty without one)."""
    if logflags & XT_LOG_MACDECODE and mac is not None and len(mac) == ETH_HLEN:
        return f"MACSRC={_hexcolon(mac[6:12])} MACDST={_hexcolon(mac[0:6])} MACPROTO={mac[12]:02x}{mac[13]:02x} "
    return f"MAC={_hexcolon(mac or b'')} "


def _hexcolon(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _ntoa(addr: int) -> str:
    return f"{addr >> 24}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}"


def _u32(n: int) -> int:
    """The kernel's `skb->len - offset` is unsigned int: it wraps when offset overshoots."""
    return n & 0xFFFFFFFF


def _header(pkt: bytes, off: int, n: int) -> bytes | None:
    """skb_header_pointer(): n bytes at off, or None when the skb is too short."""
    return pkt[off:off + n] if off + n <= len(pkt) else None


def _dump_ipv4(out: list[str], logflags: int, pkt: bytes, iphoff: int, mark: int,
               uid_gid: tuple[int, int] | None) -> None:
    """dump_ipv4_packet(); iphoff > 0 is the packet quoted by an ICMP error."""
    ih = _header(pkt, iphoff, IPH_LEN)
    if ih is None:
        out.append("TRUNCATED")
        return
    vihl, tos, tot_len, ip_id, frag_off, ttl, proto, _check, saddr, daddr = _IPH.unpack(ih)
    ihl4 = (vihl & 0x0F) * 4
    out.append(f"SRC={_ntoa(saddr)} DST={_ntoa(daddr)} ")
    out.append(f"LEN={tot_len} TOS=0x{tos & IPTOS_TOS_MASK:02X} PREC=0x{tos & IPTOS_PREC_MASK:02X} "
               f"TTL={ttl} ID={ip_id} ")
    for bit, word in ((IP_CE, "CE "), (IP_DF, "DF "), (IP_MF, "MF ")):
        if frag_off & bit:
            out.append(word)
    fragment = frag_off & IP_OFFSET
    if fragment:
        out.append(f"FRAG:{fragment} ")
    if logflags & XT_LOG_IPOPT and ihl4 > IPH_LEN:
        opt = _header(pkt, iphoff + IPH_LEN, ihl4 - IPH_LEN)
        if opt is None:
            out.append("TRUNCATED")
            return
        out.append(f"OPT ({opt.hex().upper()}) ")

    l4off = iphoff + ihl4
    if proto == IPPROTO_TCP:
        if _dump_tcp(out, pkt, fragment, l4off, logflags):
            return
    elif proto in (IPPROTO_UDP, IPPROTO_UDPLITE):
        if _dump_udp(out, pkt, proto, fragment, l4off):
            return
    elif proto == IPPROTO_ICMP:
        _dump_icmp(out, logflags, pkt, iphoff, fragment, l4off)
    elif proto == IPPROTO_AH:
        # AH alone checks the fragment offset before naming itself: a later
        # fragment of AH logs no protocol at all.
        if not fragment:
            out.append("PROTO=AH ")
            _dump_spi(out, pkt, l4off, AH_LEN, 4)
    elif proto == IPPROTO_ESP:
        out.append("PROTO=ESP ")
        if not fragment:
            _dump_spi(out, pkt, l4off, ESP_LEN, 0)
    else:
        out.append(f"PROTO={proto} ")

    if iphoff:
        return
    # nf_log_dump_sk_uid_gid(): only for a full socket with a file (local traffic).
    if logflags & XT_LOG_UID and uid_gid is not None:
        out.append(f"UID={uid_gid[0]} GID={uid_gid[1]} ")
    if mark:
        out.append(f"MARK=0x{mark & 0xFFFFFFFF:x} ")


def _dump_spi(out: list[str], pkt: bytes, off: int, hlen: int, spi_at: int) -> None:
    """The AH/ESP arms of dump_ipv4_packet(): the SPI, or INCOMPLETE."""
    h = _header(pkt, off, hlen)
    if h is None:
        out.append(f"INCOMPLETE [{_u32(len(pkt) - off)} bytes] ")
        return
    out.append(f"SPI=0x{_U32.unpack_from(h, spi_at)[0]:x} ")


def _dump_tcp(out: list[str], pkt: bytes, fragment: int, off: int, logflags: int) -> bool:
    """nf_log_dump_tcp_header(); True when the dump ends here (no UID/MARK)."""
    out.append("PROTO=TCP ")
    if fragment:
        return False
    th = _header(pkt, off, TCPH_LEN)
    if th is None:
        out.append(f"INCOMPLETE [{_u32(len(pkt) - off)} bytes] ")
        return True
    sport, dport, seq, ack_seq, word, urg_ptr = _TCP.unpack(th)
    out.append(f"SPT={sport} DPT={dport} ")
    if logflags & XT_LOG_TCPSEQ:
        out.append(f"SEQ={seq} ACK={ack_seq} ")
    out.append(f"WINDOW={word & 0xFFFF} ")
    out.append(f"RES=0x{(word & TCP_RESERVED_BITS) >> 22:02x} ")
    out.extend(name + " " for bit, name in _TCP_FLAG_WORDS if word & bit)
    out.append(f"URGP={urg_ptr} ")
    doff4 = (word >> 28) * 4
    if logflags & XT_LOG_TCPOPT and doff4 > TCPH_LEN:
        opt = _header(pkt, off + TCPH_LEN, doff4 - TCPH_LEN)
        if opt is None:
            out.append("OPT (TRUNCATED)")
            return True
        out.append(f"OPT ({opt.hex().upper()}) ")
    return False


def _dump_udp(out: list[str], pkt: bytes, proto: int, fragment: int, off: int) -> bool:
    """nf_log_dump_udp_header(); True when the dump ends here (no UID/MARK)."""
    out.append("PROTO=UDP " if proto == IPPROTO_UDP else "PROTO=UDPLITE ")
    if fragment:
        return False
    uh = _header(pkt, off, UDPH_LEN)
    if uh is None:
        out.append(f"INCOMPLETE [{_u32(len(pkt) - off)} bytes] ")
        return True
    sport, dport, length = _UDP.unpack_from(uh)
    out.append(f"SPT={sport} DPT={dport} LEN={length} ")
    return False


def _dump_icmp(out: list[str], logflags: int, pkt: bytes, iphoff: int, fragment: int, off: int) -> None:
    """The IPPROTO_ICMP arm of dump_ipv4_packet(), with its one level of recursion."""
    out.append("PROTO=ICMP ")
    if fragment:
        return
    ich = _header(pkt, off, ICMPH_LEN)
    if ich is None:
        out.append(f"INCOMPLETE [{_u32(len(pkt) - off)} bytes] ")
        return
    itype, code, hi, lo = _ICMP.unpack(ich)
    out.append(f"TYPE={itype} CODE={code} ")
    avail = _u32(len(pkt) - off)
    if itype <= NR_ICMP_TYPES and avail < _ICMP_REQUIRED_LEN.get(itype, 0):
        out.append(f"INCOMPLETE [{avail} bytes] ")
        return
    if itype in (ICMP_ECHOREPLY, ICMP_ECHO):
        out.append(f"ID={hi} SEQ={lo} ")
    elif itype == ICMP_PARAMETERPROB:
        out.append(f"PARAMETER={hi >> 8} ")
    elif itype in _ICMP_QUOTING:
        if itype == ICMP_REDIRECT:
            out.append(f"GATEWAY={_ntoa(hi << 16 | lo)} ")
        if not iphoff:  # only the outer packet recurses
            out.append("[")
            _dump_ipv4(out, logflags, pkt, off + ICMPH_LEN, 0, None)
            out.append("] ")
        if itype == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED:
            out.append(f"MTU={lo} ")
