"""IP Filter's FTP proxy (4.1.x ip_ftp_pxy.c), the `ftp` of `proxy port ftp ftp/tcp`.

The control connection is read line by line per side (ftpside_t: a 120-byte
buffer, FTP_BUFSZ, filled from each segment whose sequence number is the
expected one; ippr_ftp_process()).  Side 0 is the client's, side 1 the
server's, whichever of map/rdr made the session.

* Client lines (ippr_ftp_client_valid(), ippr_ftp_client()): a login state
  machine (USER/PASS/ACCT/AUTH/ADAT and the server's 2xx/3xx answers,
  ftp_passok) must reach FTPXY_GO before `PORT` is acted on.  A PORT from
  the session's own client (ippr_ftp_port()) naming a port >= 1024 is
  rewritten to "PORT a,b,c,d,p1,p2\\r\\n" with the address the server must
  see (the translated source for map, unchanged for rdr), and a slave
  session waits for the server's connection, from any port (SI_W_DPORT;
  port 20 is only used to look for one already there), to that port.
* Server lines (ippr_ftp_server_valid(), ippr_ftp_server()): a
  "227 Entering Passive Mode" reply from the session's server
  (ippr_ftp_pasv()) is rewritten in IP Filter's form (with an rdr, to the
  outside address) and a slave session waits for the client's data
  connection from any port (SI_W_SPORT); "229 Entering Extended Passive
  Mode" likewise (ippr_ftp_epsv()).  4.1 has no EPRT.
* A rewrite that changes the length is passed back as APR_INC(inc) and
  appr_check() (proxy.py) shifts the sequence numbers.

Kept from the kernel, on purpose: a segment that is neither the expected
one nor a retransmission of the last blocks the packet (APR_ERR(1)); a
client line that cannot be parsed after a command other than PASV drops
the proxy and blocks (APR_ERR(2)); a PORT naming another address is left
alone (its APR_ERR(1) is masked by ippr_ftp_process()'s APR_INC()).

Deviation: IP Filter writes the new text at the start of the segment's
payload; here exactly the line's bytes are replaced, and a line that began
in an earlier segment is not rewritten (nor acted on).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipgate.nat.ipnat.proxy import APR_ERR, APR_INC, SI_W_DPORT, SI_W_SPORT, ApSession, ProxyPacket
from ipgate.nat.ipnat.session import NAT_INBOUND, NAT_OUTBOUND, NatSession
from ipgate.packet.ipv4 import IPPROTO_TCP
from ipgate.packet.l4 import TH_ACK, TH_FIN, TH_SYN

IPF_MINPORTLEN = 18
IPF_MAXPORTLEN = 30
IPF_MIN227LEN = 39
IPF_MAX227LEN = 51
IPF_MIN229LEN = 47
IPF_MAX229LEN = 51
FTP_BUFSZ = 120

FTPXY_GO = 0
FTPXY_INIT = 1
FTPXY_USER_1 = 2
FTPXY_USOK_1 = 3
FTPXY_PASS_1 = 4
FTPXY_PAOK_1 = 5
FTPXY_AUTH_1 = 6
FTPXY_AUOK_1 = 7
FTPXY_ADAT_1 = 8
FTPXY_ADOK_1 = 9
FTPXY_ACCT_1 = 10
FTPXY_ACOK_1 = 11
FTPXY_USER_2 = 12
FTPXY_USOK_2 = 13
FTPXY_PASS_2 = 14
FTPXY_PAOK_2 = 15

FTPXY_C_PASV = 1000

TH_OPENING = TH_SYN | TH_ACK
_M32 = 0xFFFFFFFF
_PASV_PREFIX = b"227 Entering Passive Mod"            # PASV_REPLEN 24
_EPSV_PREFIX = b"229 Entering Extended Passive Mod"   # EPSV_REPLEN 33


def _isdigit(c: int) -> bool:
    return 0x30 <= c <= 0x39


def _isalpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _upper(c: int) -> int:
    return c - 0x20 if 0x61 <= c <= 0x7A else c


@dataclass
class FtpSide:
    """ftpside_t.  `buf[:wptr]` is ftps_buf up to ftps_wptr; `rptr` ftps_rptr."""

    buf: bytearray = field(default_factory=lambda: bytearray(FTP_BUFSZ))
    rptr: int = 0
    wptr: int = 0
    seq: list[int] = field(default_factory=lambda: [0, 0])  # ftps_seq[2]
    len: int = 0
    junk: int = 0       # 2: no CR/LF yet, 1: cannot parse
    cmds: int = 0
    # Where this segment's bytes sit in the buffer (for the rewrite): buffer
    # index i is payload offset i + pkt_delta when i >= pkt_start.
    pkt_start: int = 0
    pkt_delta: int = 0

    def at(self, i: int) -> int:
        """*s, with '\\0' past what was read (never past the buffer)."""
        return self.buf[i] if 0 <= i < self.wptr else 0


@dataclass
class FtpInfo:
    """ftpinfo_t."""

    passok: int = FTPXY_INIT
    incok: int = 0
    side: tuple[FtpSide, FtpSide] = field(default_factory=lambda: (FtpSide(), FtpSide()))
    shift: int = 0      # bytes this segment has grown by so far (several rewrites in one)


def ippr_ftp_atoi(f: FtpSide, s: int) -> tuple[int, int | None]:
    """ippr_ftp_atoi(): "h,l" -> (h << 8 | l) with u_char arithmetic; the
    position after the character that ended the second number, or None."""
    i = j = 0
    while True:
        c = f.at(s)
        s += 1
        if c == 0 or not _isdigit(c):
            break
        i = (i * 10 + c - 0x30) & 0xFF
    if c != 0x2C:
        return 0, None
    while True:
        c = f.at(s)
        s += 1
        if c == 0 or not _isdigit(c):
            break
        j = (j * 10 + c - 0x30) & 0xFF
    return (i << 8) | j, s


class FtpProxy:
    """ap_proxies[] entry "ftp"/TCP: ippr_ftp_new, ippr_ftp_in, ippr_ftp_out."""

    label = "ftp"
    p = IPPROTO_TCP

    def __init__(self, pasvonly: bool = False, insecure: bool = False, forcepasv: bool = False) -> None:
        self.pasvonly = pasvonly      # ippr_ftp_pasvonly
        self.insecure = insecure      # ippr_ftp_insecure
        self.forcepasv = forcepasv    # ippr_ftp_forcepasv

    # -- aproxy_t hooks ----------------------------------------------------------------
    def new(self, fin: ProxyPacket, aps: ApSession, nat: NatSession) -> int:
        """ippr_ftp_new()."""
        aps.data = FtpInfo()
        return 0

    def outpkt(self, fin: ProxyPacket, aps: ApSession, nat: NatSession) -> int:
        """ippr_ftp_out(): a map session's client, an rdr session's server."""
        ftp = aps.data
        if not isinstance(ftp, FtpInfo):
            return 0
        rev = 0 if nat.dir == NAT_OUTBOUND else 1
        return self.process(fin, aps, nat, ftp, rev)

    def inpkt(self, fin: ProxyPacket, aps: ApSession, nat: NatSession) -> int:
        """ippr_ftp_in()."""
        ftp = aps.data
        if not isinstance(ftp, FtpInfo):
            return 0
        rev = 0 if nat.dir == NAT_OUTBOUND else 1
        return self.process(fin, aps, nat, ftp, 1 - rev)

    # -- ippr_ftp_process() ----------------------------------------------------------------
    def process(self, fin: ProxyPacket, aps: ApSession, nat: NatSession, ftp: FtpInfo, rv: int) -> int:
        """ippr_ftp_process(): rv 0 for the client's bytes, 1 for the server's."""
        f = ftp.side[rv]
        t = ftp.side[1 - rv]
        thseq = fin.seq
        thack = fin.ack
        mlen = fin.mlen
        if mlen <= 0:
            if fin.flags & TH_OPENING == TH_OPENING:
                f.seq[0] = (thseq + 1) & _M32
                t.seq[0] = thack
            return 0
        self._track_ack(aps, f, t, rv, thack)
        ok = thseq in (f.seq[0], f.seq[1]) or ((thseq + mlen) & _M32) in (f.seq[0], f.seq[1])
        if not ok:
            return APR_ERR(1)

        data = fin.payload()
        inc = 0
        f.seq[0] = thseq
        f.seq[1] = (thseq + mlen) & _M32
        f.len = mlen
        ftp.shift = 0
        off = 0
        guard = 4 * (mlen + FTP_BUFSZ)
        while mlen > 0 and guard > 0:
            guard -= 1
            room = FTP_BUFSZ - (f.wptr - f.rptr)
            n = min(mlen, room)
            f.pkt_start = f.wptr
            f.pkt_delta = off - f.wptr
            f.buf[f.wptr:f.wptr + n] = data[off:off + n]
            mlen -= n
            off += n
            f.wptr += n
            if f.junk != 0:
                f.junk = self.valid(ftp, rv, f.rptr, f.wptr - f.rptr)
                if f.junk != 0 and f.wptr - f.rptr == FTP_BUFSZ:
                    # A full buffer of what cannot be parsed: forget it up to the next CR/LF.
                    f.rptr = f.wptr = 0
                    f.junk = 1
                    continue
            while f.junk == 0 and f.wptr > f.rptr:
                f.junk = self.valid(ftp, rv, f.rptr, f.wptr - f.rptr)
                if f.junk == 0:
                    if rv:
                        inc += self.server(fin, nat, ftp, f.wptr - f.rptr)
                    else:
                        inc += self.client(fin, nat, ftp, f.wptr - f.rptr)
            if f.cmds == 0 and f.junk == 1:
                return APR_ERR(2)  # off to a bad start: no proxy for this connection
            if f.junk != 0 and f.rptr < f.wptr:
                i = f.buf.find(b"\r\n", f.rptr, f.wptr)
                if i >= 0:
                    f.rptr = i + 2
                    f.junk = 0
            if f.rptr == f.wptr:
                f.rptr = f.wptr = 0
            elif f.rptr > 0:  # compact the buffer back to the start
                left = f.wptr - f.rptr
                f.buf[0:left] = f.buf[f.rptr:f.wptr]
                f.wptr = left
                f.rptr = 0
        if fin.flags & TH_FIN:
            f.seq[1] = (f.seq[1] + 1) & _M32
        return APR_INC(inc)

    @staticmethod
    def _track_ack(aps: ApSession, f: FtpSide, t: FtpSide, rv: int, thack: int) -> None:
        """ippr_ftp_process()'s check of the ACK against the other side's
        sequence numbers (ackoff from aps_sel[rv]'s set): its verdict is
        never used, but it moves t->ftps_seq[0]."""
        sel2 = aps.sel[rv]
        if rv == 0:
            ackoff = aps.ackoff[sel2]
            if aps.ackmin[sel2] > ((ackoff + thack) & _M32):
                ackoff = aps.ackoff[1 - sel2]
        else:
            ackoff = aps.seqoff[sel2]
            if ackoff > 0:
                if aps.seqmin[sel2] > ((ackoff + thack) & _M32):
                    ackoff = aps.seqoff[1 - sel2]
            elif aps.seqmin[sel2] > thack:
                ackoff = aps.seqoff[1 - sel2]
        if t.seq[0] == 0:
            t.seq[0] = thack
        elif ackoff == 0:
            if t.seq[1] == thack and t.seq[0] != thack:
                t.seq[0] = thack
        elif ((t.seq[0] + ackoff) & _M32) == thack or t.seq[0] == ((thack + ackoff) & _M32):
            pass
        elif ((t.seq[1] + ackoff) & _M32) == thack or t.seq[1] == ((thack + ackoff) & _M32):
            t.seq[0] = (thack - ackoff) & _M32

    # -- line syntax -------------------------------------------------------------------
    def valid(self, ftp: FtpInfo, side: int, r: int, length: int) -> int:
        """ippr_ftp_valid(): 0 a whole line, 1 cannot parse, 2 no CR/LF yet."""
        f = ftp.side[side]
        return self._client_valid(f, r, length) if side == 0 else self._server_valid(f, r, length)

    @staticmethod
    def _client_valid(f: FtpSide, r: int, i: int) -> int:
        """ippr_ftp_client_valid(): a 3 or 4 letter command, then to CR/LF."""
        if f.junk == 1:
            return 1
        if i < 5:
            return 2
        buf = f.buf
        s = r
        cmd = bytearray()
        i -= 1
        c = buf[s]
        s += 1
        ok = False
        if _isalpha(c):
            cmd.append(_upper(c))
            c, s, i = buf[s], s + 1, i - 1
            if _isalpha(c):
                cmd.append(_upper(c))
                c, s, i = buf[s], s + 1, i - 1
                if _isalpha(c):
                    cmd.append(_upper(c))
                    c, s, i = buf[s], s + 1, i - 1
                    if _isalpha(c):
                        cmd.append(_upper(c))
                        c, s, i = buf[s], s + 1, i - 1
                        ok = c in (0x20, 0x0D)
                    else:
                        ok = c in (0x20, 0x0D)
        if not ok:
            return 1
        while i > 0:
            pc = c
            c = buf[s]
            s += 1
            i -= 1
            if pc == 0x0D and c == 0x0A:
                f.cmds = FTPXY_C_PASV if bytes(cmd) == b"PASV" else 0
                return 0
        return 2

    @staticmethod
    def _server_valid(f: FtpSide, r: int, i: int) -> int:
        """ippr_ftp_server_valid(): "ddd " / "ddd-" or a continuation " ...", to CR/LF."""
        if f.junk == 1:
            return 1
        if i < 5:
            return 2
        buf = f.buf
        s = r
        cmd = 0
        c = buf[s]
        s += 1
        i -= 1
        if c != 0x20:
            ok = False
            if _isdigit(c):
                cmd = (c - 0x30) * 100
                c, s, i = buf[s], s + 1, i - 1
                if _isdigit(c):
                    cmd += (c - 0x30) * 10
                    c, s, i = buf[s], s + 1, i - 1
                    if _isdigit(c):
                        cmd += c - 0x30
                        c, s, i = buf[s], s + 1, i - 1
                        ok = c in (0x2D, 0x20)
            if not ok:
                return 1
        while i > 0:
            pc = c
            c = buf[s]
            s += 1
            i -= 1
            if pc == 0x0D and c == 0x0A:
                f.cmds = cmd
                return 0
        return 2

    # -- one line ----------------------------------------------------------------------
    @staticmethod
    def _eol(f: FtpSide) -> None:
        """while ((*rptr++ != '\\n') && (rptr < wptr)); -- past this line."""
        r = f.rptr
        while True:
            c = f.at(r)
            r += 1
            if c == 0x0A or r >= f.wptr:
                break
        f.rptr = r

    def client(self, fin: ProxyPacket, nat: NatSession, ftp: FtpInfo, dlen: int) -> int:
        """ippr_ftp_client(): the login state machine and PORT."""
        f = ftp.side[0]
        cmd = bytes(_upper(f.at(f.rptr + i)) for i in range(min(5, dlen)))
        inc = 0
        ftp.incok = 0
        p = ftp.passok
        if cmd in (b"USER ", b"XAUT "):
            ftp.passok = FTPXY_USER_2 if p in (FTPXY_ADOK_1, FTPXY_AUOK_1) else FTPXY_USER_1
            ftp.incok = 1
        elif cmd == b"AUTH ":
            ftp.passok = FTPXY_AUTH_1
            ftp.incok = 1
        elif cmd == b"PASS ":
            if p == FTPXY_USOK_1:
                ftp.passok = FTPXY_PASS_1
                ftp.incok = 1
            elif p == FTPXY_USOK_2:
                ftp.passok = FTPXY_PASS_2
                ftp.incok = 1
        elif p == FTPXY_AUOK_1 and cmd == b"ADAT ":
            ftp.passok = FTPXY_ADAT_1
            ftp.incok = 1
        elif p in (FTPXY_PAOK_1, FTPXY_PAOK_2) and cmd == b"ACCT ":
            ftp.passok = FTPXY_ACCT_1
            ftp.incok = 1
        elif (p == FTPXY_GO or self.insecure) and not self.pasvonly and cmd == b"PORT ":
            inc = self.port(fin, nat, ftp, f, dlen)
        self._eol(f)
        return inc

    def server(self, fin: ProxyPacket, nat: NatSession, ftp: FtpInfo, dlen: int) -> int:
        """ippr_ftp_server(): replies move the login state on; 227/229 after login."""
        f = ftp.side[1]
        r = f.rptr
        inc = 0
        c0 = f.at(r)
        if c0 != 0x20:
            if not (_isdigit(c0) and _isdigit(f.at(r + 1)) and _isdigit(f.at(r + 2))):
                return 0
            head = bytes(f.buf[r:r + 4]) if r + 4 <= f.wptr else b""
            if ftp.passok == FTPXY_GO or (self.insecure and head in (b"227 ", b"229 ")):
                if head == b"227 ":
                    inc = self.pasv(fin, nat, ftp, dlen)
                elif head == b"229 ":
                    inc = self.epsv(fin, nat, ftp, f, dlen)
            elif c0 in (0x35, 0x34):  # 5xx, 4xx
                ftp.passok = FTPXY_INIT
            elif ftp.incok:
                if c0 == 0x33:  # 3xx
                    ftp.passok = FTPXY_GO if ftp.passok == FTPXY_ACCT_1 else ftp.passok + 1
                elif c0 == 0x32:  # 2xx
                    if ftp.passok in (FTPXY_USER_1, FTPXY_USER_2, FTPXY_PASS_1, FTPXY_PASS_2, FTPXY_ACCT_1):
                        ftp.passok = FTPXY_GO
                    else:
                        ftp.passok += 3
        ftp.incok = 0
        self._eol(f)
        return inc

    # -- rewriting ---------------------------------------------------------------------
    @staticmethod
    def _rewrite(fin: ProxyPacket, ftp: FtpInfo, f: FtpSide, end: int, text: bytes) -> int | None:
        """COPYBACK() of the new line over [rptr, end): the size change, or
        None when it cannot be done (the line is not all in this segment, or
        the packet would pass 65535 bytes)."""
        if f.rptr < f.pkt_start:
            return None
        start = f.rptr + f.pkt_delta + ftp.shift
        stop = end + f.pkt_delta + ftp.shift
        if not fin.replace(start, stop, text):
            return None
        inc = len(text) - (end - f.rptr)
        ftp.shift += inc
        return inc

    def port(self, fin: ProxyPacket, nat: NatSession, ftp: FtpInfo, f: FtpSide, dlen: int) -> int:
        """ippr_ftp_port(): PORT from the client."""
        if dlen < IPF_MINPORTLEN:
            return 0
        a1, s = ippr_ftp_atoi(f, f.rptr + 5)  # past "PORT "
        if s is None:
            return 0
        a2, s = ippr_ftp_atoi(f, s)
        if s is None:
            return 0
        addr = (a1 << 16) | a2
        # The address must be the sender's: no PORT bouncing to third parties.
        if addr != (nat.inip if nat.dir == NAT_OUTBOUND else nat.oip):
            return APR_ERR(1)
        a5, s = ippr_ftp_atoi(f, s)
        if s is None:
            return 0
        if f.at(s) == 0x29:  # ')'
            s += 1
        if f.at(s) == 0x0A:
            s -= 1
        if not (f.at(s) == 0x0D and f.at(s + 1) == 0x0A):
            return 0
        s += 2
        a6 = a5 & 0xFF
        a5 = (a5 >> 8) & 0xFF
        sp = a5 << 8 | a6
        if sp < 1024:  # no PORT to a reserved port
            return 0
        new = nat.oip if nat.dir == NAT_INBOUND else fin.saddr
        text = f"PORT {new >> 24},{new >> 16 & 255},{new >> 8 & 255},{new & 255},{a5},{a6}\r\n".encode()
        inc = self._rewrite(fin, ftp, f, s, text)
        if inc is None:
            return 0
        # The server most likely connects from port 20: look for a session there first.
        proxies = fin.table.proxy
        dport20 = (fin.fin.data1 - 1) & 0xFFFF
        if nat.dir == NAT_OUTBOUND:
            exists = (fin.table.outlookup("", IPPROTO_TCP, nat.inip, nat.oip, sp, dport20) is not None
                      or proxies.find_wild(NAT_OUTBOUND, IPPROTO_TCP, nat.inip, nat.oip, sp, dport20) is not None)
            src = nat.inip
        else:
            exists = (fin.table.inlookup("", IPPROTO_TCP, nat.oip, nat.outip, sp, 0) is not None
                      or proxies.find_wild(NAT_INBOUND, IPPROTO_TCP, nat.oip, nat.outip, sp, 0) is not None)
            src = nat.oip
        if not exists:
            proxies.nat_slave(fin, nat, src, fin.daddr, sp, 0, SI_W_DPORT)
        return APR_INC(inc)

    def pasv(self, fin: ProxyPacket, nat: NatSession, ftp: FtpInfo, dlen: int) -> int:
        """ippr_ftp_pasv(): a 227 reply from the server."""
        if self.forcepasv and ftp.side[0].cmds != FTPXY_C_PASV:
            return 0
        f = ftp.side[1]
        if dlen < IPF_MIN227LEN:
            return 0
        if bytes(f.buf[f.rptr:f.rptr + len(_PASV_PREFIX)]) != _PASV_PREFIX:
            return 0
        br0 = br1 = ""
        p = f.rptr + len(_PASV_PREFIX)
        while f.at(p) and not _isdigit(f.at(p)):
            if f.at(p) == 0x28:  # '('
                br0, br1 = "(", ")"
            p += 1
        a1, s = ippr_ftp_atoi(f, p)
        if s is None:
            return 0
        a2, s = ippr_ftp_atoi(f, s)
        if s is None:
            return 0
        addr = (a1 << 16) | a2
        if addr != (nat.inip if nat.dir == NAT_INBOUND else nat.oip):
            return 0
        a5, s = ippr_ftp_atoi(f, s)
        if s is None:
            return 0
        if f.at(s) == 0x29:
            s += 1
        if f.at(s) == 0x2E:  # '.'
            s += 1
        if f.at(s) == 0x0A:
            s -= 1
        if not (f.at(s) == 0x0D and f.at(s + 1) == 0x0A):
            return 0
        s += 2
        a6 = a5 & 0xFF
        a5 >>= 8
        data_ip = nat.outip if nat.dir == NAT_INBOUND else addr
        d = data_ip
        text = (f"227 Entering Passive Mode {br0}{d >> 24},{d >> 16 & 255},{d >> 8 & 255},{d & 255},"
                f"{a5},{a6}{br1}\r\n").encode()
        return self.pasvreply(fin, nat, ftp, f, a5 << 8 | a6, text, s, data_ip)

    def epsv(self, fin: ProxyPacket, nat: NatSession, ftp: FtpInfo, f: FtpSide, dlen: int) -> int:
        """ippr_ftp_epsv(): a 229 reply; its port, no address (RFC 2428)."""
        if dlen < IPF_MIN229LEN:
            return 0
        if bytes(f.buf[f.rptr:f.rptr + len(_EPSV_PREFIX)]) != _EPSV_PREFIX:
            return 0
        s = f.rptr + len(_EPSV_PREFIX)
        while f.at(s) and not _isdigit(f.at(s)):
            s += 1
        ap = 0
        while f.at(s) and _isdigit(f.at(s)):
            ap = (ap * 10 + f.at(s) - 0x30) & 0xFFFF
            s += 1
        if f.at(s) == 0x7C:  # '|'
            s += 1
        if f.at(s) == 0x29:
            s += 1
        if f.at(s) == 0x0A:
            s -= 1
        if not (f.at(s) == 0x0D and f.at(s + 1) == 0x0A):
            return 0
        s += 2
        text = f"229 Entering Extended Passive Mode (|||{ap}|)\r\n".encode()
        return self.pasvreply(fin, nat, ftp, f, ap, text, s, fin.saddr)

    def pasvreply(self, fin: ProxyPacket, nat: NatSession, ftp: FtpInfo, f: FtpSide, port: int, text: bytes,
                  s: int, data_ip: int) -> int:
        """ippr_ftp_pasvreply(): rewrite the reply, then a slave session for
        the client's data connection, from any port (SI_W_SPORT)."""
        inc = self._rewrite(fin, ftp, f, s, text)
        if inc is None:
            return 0
        proxies = fin.table.proxy
        if nat.dir == NAT_OUTBOUND:
            src, dst = nat.inip, data_ip
            exists = proxies.find_wild(NAT_OUTBOUND, IPPROTO_TCP, src, dst, 0, port) is not None
        else:
            src, dst = nat.oip, nat.outip
            exists = proxies.find_wild(NAT_INBOUND, IPPROTO_TCP, src, dst, 0, port) is not None
        if not exists:
            proxies.nat_slave(fin, nat, src, dst, 0, port, SI_W_SPORT)
        return inc

