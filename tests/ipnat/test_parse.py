"""ipnat.conf parsing and printing, checked against IP Filter's own regression tests.

The oracle is IP Filter's test suite (test/regress/inN are ipnat.conf files,
test/expected/inN what ``ipnat -Rnvf regress/inN`` prints), read from FreeBSD's
contrib/ipfilter history, IP Filter 4.1.x era.  The regress and expected files
there come from different revisions, so only the lines both revisions share are
paired below (in1: the 24 common lines plus the fxp0 proxy line, written as the
later regress file writes it; in5: the 22 rdr lines).  in2, in5 and in6 match
under -R (numeric ports, as intest runs); in1's expected output names services
(``port = ftp``, ``proxy port ftp``), which IP Filter 4.1's portname() only does
without -R, so in1 is compared without it.

The grammar facts behind the other cases are ipnat_y.y's (4.1.28) and are
noted next to them.
"""

from __future__ import annotations

import pytest

from ipgate.errors import ConfigError
from ipgate.nat.ipnat.parse import parse
from ipgate.nat.ipnat.printer import printnat
from ipgate.nat.ipnat.rule import (
    FR_EQUAL,
    FR_GREATERT,
    FR_GREATERTE,
    FR_INCRANGE,
    FR_INRANGE,
    FR_LESST,
    FR_LESSTE,
    FR_NEQUAL,
    FR_OUTRANGE,
    IPN_AUTOPORTMAP,
    IPN_FILTER,
    IPN_FIXEDDPORT,
    IPN_FRAG,
    IPN_ICMPQUERY,
    IPN_IPRANGE,
    IPN_NOTDST,
    IPN_NOTSRC,
    IPN_ROUNDR,
    IPN_SEQUENTIAL,
    IPN_SPLIT,
    IPN_STICKY,
    IPN_TCP,
    IPN_TCPUDP,
    IPN_UDP,
    NAT_BIMAP,
    NAT_MAP,
    NAT_MAPBLK,
    NAT_REDIRECT,
    NatRule,
    PortCmp,
)
from ipgate.netfilter.names import Resolver

NAMES = Resolver.builtin()


def ip(s: str) -> int:
    a, b, c, d = (int(x) for x in s.split("."))
    return a << 24 | b << 16 | c << 8 | d


def one(text: str) -> NatRule:
    rules = parse(text, "t.conf", NAMES).rules
    assert len(rules) == 1
    return rules[0]


def show(text: str, numeric: bool = False) -> str:
    return "".join(printnat(r, NAMES, numeric) for r in parse(text, "t.conf", NAMES).rules)


# -- IP Filter's regression files ------------------------------------------------

IN1_REGRESS = """\
map le0 0/0 -> 0/32
map le0 1/32 -> 1/32
map le0 128.0.0.0/1 -> 0/0
map le0 10.0.0.0/8 -> 1.2.3.0/24
map le0 10.0.0.5/8 -> 1.2.3.4/24
map le0 192.168.0.0/16 -> range 203.1.1.23-203.1.3.45
map ppp0 192.168.0.0/16 -> 0/32 portmap tcp 10000:19999
map ppp0 192.168.0.0/16 -> 0/32 portmap udp 20000:29999
map ppp0 192.168.0.0/16 -> 0/32 portmap tcp/udp 30000:39999
map ppp0 192.168.0.0/16 -> 0/32 portmap tcp auto
map ppp0 192.168.0.0/16 -> 0/32 portmap udp auto
map ppp0 192.168.0.0/16 -> 0/32 portmap tcp/udp auto
map ppp0 192.168.0.0/16 -> 0/32 proxy port ftp ftp/tcp
map ppp0 192.168.0.0/16 -> 0/32 proxy port 1010 ftp/tcp
map le0 0/0 -> 0/32 frag
map le0 192.168.0.0/16 -> range 203.1.1.23-203.1.3.45 frag
map ppp0 192.168.0.0/16 -> 0/32 portmap tcp 10000:19999 frag
map ppp0 192.168.0.0/16 -> 0/32 proxy port ftp ftp/tcp frag
map le0 0/0 -> 0/32 age 10
map le0 192.168.0.0/16 -> range 203.1.1.23-203.1.3.45 age 10/20
map ppp0 192.168.0.0/16 -> 0/32 portmap tcp 10000:19999 age 30
map le0 0/0 -> 0/32 frag age 10
map le0 192.168.0.0/16 -> range 203.1.1.23-203.1.3.45 frag age 10/20
map ppp0 192.168.0.0/16 -> 0/32 portmap tcp 10000:19999 frag age 30
map fxp0 from 192.168.0.0/18 to 0/0 port = 21 -> 1.2.3.4/32 proxy port 21 ftp/tcp
"""
IN1_EXPECTED = """\
map le0 0.0.0.0/0 -> 0.0.0.0/32
map le0 0.0.0.1/32 -> 0.0.0.1/32
map le0 128.0.0.0/1 -> 0.0.0.0/0
map le0 10.0.0.0/8 -> 1.2.3.0/24
map le0 10.0.0.0/8 -> 1.2.3.0/24
map le0 192.168.0.0/16 -> range 203.1.1.23-203.1.3.45
map ppp0 192.168.0.0/16 -> 0.0.0.0/32 portmap tcp 10000:19999
map ppp0 192.168.0.0/16 -> 0.0.0.0/32 portmap udp 20000:29999
map ppp0 192.168.0.0/16 -> 0.0.0.0/32 portmap tcp/udp 30000:39999
map ppp0 192.168.0.0/16 -> 0.0.0.0/32 portmap tcp auto
map ppp0 192.168.0.0/16 -> 0.0.0.0/32 portmap udp auto
map ppp0 192.168.0.0/16 -> 0.0.0.0/32 portmap tcp/udp auto
map ppp0 192.168.0.0/16 -> 0.0.0.0/32 proxy port ftp ftp/tcp
map ppp0 192.168.0.0/16 -> 0.0.0.0/32 proxy port 1010 ftp/tcp
map le0 0.0.0.0/0 -> 0.0.0.0/32 frag
map le0 192.168.0.0/16 -> range 203.1.1.23-203.1.3.45 frag
map ppp0 192.168.0.0/16 -> 0.0.0.0/32 portmap tcp 10000:19999 frag
map ppp0 192.168.0.0/16 -> 0.0.0.0/32 proxy port ftp ftp/tcp frag
map le0 0.0.0.0/0 -> 0.0.0.0/32 age 10/10
map le0 192.168.0.0/16 -> range 203.1.1.23-203.1.3.45 age 10/20
map ppp0 192.168.0.0/16 -> 0.0.0.0/32 portmap tcp 10000:19999 age 30/30
map le0 0.0.0.0/0 -> 0.0.0.0/32 frag age 10/10
map le0 192.168.0.0/16 -> range 203.1.1.23-203.1.3.45 frag age 10/20
map ppp0 192.168.0.0/16 -> 0.0.0.0/32 portmap tcp 10000:19999 frag age 30/30
map fxp0 from 192.168.0.0/18 to any port = ftp -> 1.2.3.4/32 proxy port ftp ftp/tcp
"""
IN2_REGRESS = """\
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 tcp
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 udp
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp/udp
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 icmp
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip frag
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 icmp frag
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip frag age 10
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip frag age 10/20
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 icmp frag age 10
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag age 20
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag age 30
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag age 40
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip sticky
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip frag sticky
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 icmp frag sticky
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag sticky
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag sticky
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag sticky
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip frag age 10 sticky
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip frag age 10/20 sticky
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 icmp frag age 10 sticky
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag age 20 sticky
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag age 30 sticky
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag age 40 sticky
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip mssclamp 1000
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip frag sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 icmp frag sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip frag age 10 sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip frag age 10/20 sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 icmp frag age 10 sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag age 20 sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag age 30 sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag age 40 sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip tag TAG
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip frag sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 icmp frag sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip frag age 10 sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 ip frag age 10/20 sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 icmp frag age 10 sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag age 20 sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag age 30 sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag age 40 sticky mssclamp 1000 tag TAG
rdr ge0 9.8.7.6/32 -> 1.1.1.1 proxy port 21 ftp/tcp
rdr ge0 9.8.7.6/32 port 21 -> 1.1.1.1 port 21 tcp proxy ftp
rdr le0 9.8.7.6/32 port 1000-2000 -> 1.1.1.1 port 5555 tcp
rdr le0 9.8.7.6/32 port 1000-2000 -> 1.1.1.1 port = 5555 tcp
rdr le0 0/0 -> test.host.dots
rdr le0 0/0 -> test.host.dots,test.host.dots
""".replace("TAG", "nattagcacheline")  # (kept under the line length)
IN2_EXPECTED = """\
rdr le0 9.8.7.6/32 port 0 -> 1.1.1.1 port 0 tcp
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 udp
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp/udp
rdr le0 9.8.7.6/32 -> 1.1.1.1 icmp
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip frag
rdr le0 9.8.7.6/32 -> 1.1.1.1 icmp frag
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip frag age 10/10
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip frag age 10/20
rdr le0 9.8.7.6/32 -> 1.1.1.1 icmp frag age 10/10
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag age 20/20
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag age 30/30
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag age 40/40
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip frag
rdr le0 9.8.7.6/32 -> 1.1.1.1 icmp frag
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag sticky
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag sticky
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag sticky
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip frag age 10/10
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip frag age 10/20
rdr le0 9.8.7.6/32 -> 1.1.1.1 icmp frag age 10/10
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag age 20/20 sticky
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag age 30/30 sticky
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag age 40/40 sticky
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip mssclamp 1000
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip mssclamp 1000
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip frag mssclamp 1000
rdr le0 9.8.7.6/32 -> 1.1.1.1 icmp frag mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag sticky mssclamp 1000
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip frag age 10/10 mssclamp 1000
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip frag age 10/20 mssclamp 1000
rdr le0 9.8.7.6/32 -> 1.1.1.1 icmp frag age 10/10 mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag age 20/20 sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag age 30/30 sticky mssclamp 1000
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag age 40/40 sticky mssclamp 1000
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip tag TAG
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip frag mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 -> 1.1.1.1 icmp frag mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip frag age 10/10 mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip frag age 10/20 mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 -> 1.1.1.1 icmp frag age 10/10 mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp frag age 20/20 sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 80 tcp round-robin frag age 30/30 sticky mssclamp 1000 tag TAG
rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag age 40/40 sticky mssclamp 1000 tag TAG
rdr ge0 9.8.7.6/32 port 21 -> 1.1.1.1 port 21 tcp proxy ftp
rdr ge0 9.8.7.6/32 port 21 -> 1.1.1.1 port 21 tcp proxy ftp
rdr le0 9.8.7.6/32 port 1000-2000 -> 1.1.1.1 port 5555 tcp
rdr le0 9.8.7.6/32 port 1000-2000 -> 1.1.1.1 port = 5555 tcp
rdr le0 0.0.0.0/0 -> 254.220.186.152 ip
rdr le0 0.0.0.0/0 -> 254.220.186.152,254.220.186.152 ip
""".replace("TAG", "nattagcacheline")
IN5_REGRESS = """\
rdr le0 from any to 9.8.7.6/32 port = 0 -> 1.1.1.1 port 0 tcp
rdr le0 from any to 9.8.7.6/0xffffffff port = 0 -> 1.1.1.1 port 0 ip
rdr le0 from any to 9.8.7.6 port = 8888 -> 1.1.1.1 port 888 tcp
rdr le0 from any to 9.8.7.6/255.255.255.255 port = 8888 -> 1.1.1.1 port 888 ip
rdr le0 from any to 9.8.7.6 mask 0xffffffff port = 8888 -> 1.1.1.1 port 888 tcp
rdr le0 from any to 9.8.7.6 mask 255.255.255.255 port = 8888 -> 1.1.1.1 port 888 udp
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 tcp/udp
rdr le0 from any to 9.8.7.6/32 -> 1.1.1.1 port 888 icmp
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1,1.1.1.2 port 888 tcp
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 tcp round-robin
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1,1.1.1.2 port 888 tcp round-robin
rdr le0 from any to 9.8.7.6/32 -> 1.1.1.1 port 0 ip frag
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 icmp frag
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1,1.1.1.2 port 888 tcp frag
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 tcp round-robin frag
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1,1.1.1.2 port 888 tcp round-robin frag
rdr le0 from any to 9.8.7.6/32 -> 1.1.1.1 port 0 ip frag age 10
rdr le0 from any to 9.8.7.6/32 port = 0 -> 1.1.1.1 port 0 ip frag age 10/20
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 icmp frag age 10
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1,1.1.1.2 port 888 tcp frag age 20
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 tcp round-robin frag age 30
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1,1.1.1.2 port 888 tcp round-robin frag age 40
"""
IN5_EXPECTED = """\
rdr le0 from any to 9.8.7.6/32 port = 0 -> 1.1.1.1 port 0 tcp
rdr le0 from any to 9.8.7.6/32 -> 1.1.1.1 ip
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 tcp
rdr le0 from any to 9.8.7.6/32 -> 1.1.1.1 ip
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 tcp
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 udp
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 tcp/udp
rdr le0 from any to 9.8.7.6/32 -> 1.1.1.1 icmp
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1,1.1.1.2 port 888 tcp
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 tcp round-robin
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1,1.1.1.2 port 888 tcp round-robin
rdr le0 from any to 9.8.7.6/32 -> 1.1.1.1 ip frag
rdr le0 from any to 9.8.7.6/32 -> 1.1.1.1 icmp frag
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1,1.1.1.2 port 888 tcp frag
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 tcp round-robin frag
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1,1.1.1.2 port 888 tcp round-robin frag
rdr le0 from any to 9.8.7.6/32 -> 1.1.1.1 ip frag age 10/10
rdr le0 from any to 9.8.7.6/32 -> 1.1.1.1 ip frag age 10/20
rdr le0 from any to 9.8.7.6/32 -> 1.1.1.1 icmp frag age 10/10
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1,1.1.1.2 port 888 tcp frag age 20/20
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 tcp round-robin frag age 30/30
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1,1.1.1.2 port 888 tcp round-robin frag age 40/40
"""
IN6_REGRESS = """\
map foo0 from any port = 1 to any port != 0 -> 0/32 udp
map foo0 from any port < 1 to any port > 0 -> 0/32 tcp
map foo0 from any port <= 1 to any port >= 0 -> 0/32 tcp/udp
"""
IN6_EXPECTED = """\
map foo0 from any port = 1 to any port != 0 -> 0.0.0.0/32 udp
map foo0 from any port < 1 to any port > 0 -> 0.0.0.0/32 tcp
map foo0 from any port <= 1 to any port >= 0 -> 0.0.0.0/32 tcp/udp
"""

IPF_TESTS = {
    "in1": (IN1_REGRESS, IN1_EXPECTED, False),
    "in2": (IN2_REGRESS, IN2_EXPECTED, True),
    "in5": (IN5_REGRESS, IN5_EXPECTED, True),
    "in6": (IN6_REGRESS, IN6_EXPECTED, True),
}
IPF_LINES = [(name, i, line, want, numeric)
             for name, (reg, exp, numeric) in IPF_TESTS.items()
             for i, (line, want) in enumerate(zip(reg.splitlines(), exp.splitlines(), strict=True), 1)]


@pytest.mark.parametrize(("name", "i", "line", "want", "numeric"), IPF_LINES,
                         ids=[f"{n}:{i}" for n, i, *_ in IPF_LINES])
def test_ipfilter_regression_line(name: str, i: int, line: str, want: str, numeric: bool) -> None:
    assert show(line, numeric) == want + "\n"


@pytest.mark.parametrize("name", sorted(IPF_TESTS))
def test_ipfilter_regression_file(name: str) -> None:
    reg, exp, numeric = IPF_TESTS[name]
    assert show(reg, numeric) == exp


@pytest.mark.parametrize("name", sorted(IPF_TESTS))
def test_printed_rules_read_back_the_same(name: str) -> None:
    # The normalised form is a fixed point: what printnat() prints parses to rules printed the same.
    # (Not always the same struct: `port = 8888 ... ip` keeps a port value that is no longer used.)
    _reg, exp, numeric = IPF_TESTS[name]
    assert show(exp, numeric) == exp


def test_in2_sticky_warnings_are_ipnats_text() -> None:
    # `sticky` without round-robin or a split target: ipnat warns and ignores it.
    res = parse(IN2_REGRESS, "in2", NAMES)
    assert res.warnings[0] == "in2:23:48: 'sticky' for use with round-robin/IP splitting only"
    assert len(res.warnings) == 18
    assert not res.rules[22].flags & IPN_STICKY
    assert res.rules[25].flags & IPN_STICKY  # 1.1.1.1,1.1.1.2: a split target


# -- the seed's examples (ipnat(4)); the addresses are IP Filter's ipnat.5 ones ------------

def test_seed_simple_map_and_its_from_to_form() -> None:
    a = one("map de0 10.1.0.0/16 -> 201.2.3.4/32")
    b = one("map de0 from 10.1.0.0/16 to any -> 201.2.3.4/32")
    assert (a.in_addr, a.in_mask, a.out_addr, a.out_mask) == (ip("10.1.0.0"), ip("255.255.0.0"), ip("201.2.3.4"),
                                                              0xFFFFFFFF)
    assert b.flags & IPN_FILTER and (b.in_addr, b.in_mask) == (a.in_addr, a.in_mask)
    assert (b.src_addr, b.src_mask) == (0, 0)  # `to any`
    assert printnat(b, NAMES) == "map de0 from 10.1.0.0/16 to any -> 201.2.3.4/32\n"


def test_seed_ppp0_maps_with_portmap() -> None:
    text = ("map ppp0 10.0.0.0/8 -> 209.1.2.0/24 portmap tcp/udp 1025:65000\n"
            "map ppp0 10.0.0.0/8 -> 209.1.2.0/24\n")
    tcpudp, plain = parse(text, "t", NAMES).rules
    assert show(text) == text
    assert tcpudp.flags & IPN_TCPUDP == IPN_TCPUDP and tcpudp.proto == 0
    assert (tcpudp.pmin, tcpudp.pmax) == (1025, 65000)
    assert plain.flags & IPN_TCPUDP == 0 and (plain.pmin, plain.pmax) == (0, 0)
    # 24 bits of inside addresses onto 254 usable outside addresses: the man page's "527,566 short"
    # is 2**24 - 254 * (65000 - 1025).
    usable = (~tcpudp.out_mask & 0xFFFFFFFF) - 1
    assert usable == 254 and 2 ** 24 - usable * (tcpudp.pmax - tcpudp.pmin) == 527566


def test_seed_portmap_auto_gives_252_ports_per_address() -> None:
    r = one("map ppp0 172.192.0.0/16 -> 209.1.2.0/24 portmap tcp/udp auto")
    assert r.flags & IPN_AUTOPORTMAP and (r.pmin, r.pmax) == (1024, 65535)
    assert (r.ippip, r.ppip) == (256, 252)  # nat_setgroupmap(): 256 inside hosts per address, 252 ports each
    assert printnat(r, NAMES) == "map ppp0 172.192.0.0/16 -> 209.1.2.0/24 portmap tcp/udp auto\n"


@pytest.mark.parametrize("inside", ["172.192.0.0/16", "10.0.0.0/8"])
def test_seed_map_block_252_ports_each(inside: str) -> None:
    r = one(f"map-block ppp0 {inside} -> 209.1.2.0/24 ports auto")
    assert r.redir == NAT_MAPBLK and r.flags & IPN_AUTOPORTMAP and r.pmin == 0
    assert r.ippip == 256 and r.ppip == 252  # (65536 - 1024) // 256
    assert printnat(r, NAMES) == f"map-block ppp0 {inside} -> 209.1.2.0/24 ports auto\n"


def test_seed_map_block_fixed_ports() -> None:
    r = one("map-block ppp0 10.0.0.0/24 -> 209.1.2.0/30 ports 1000")
    assert (r.pmin, r.ppip, r.ippip) == (1000, 1000, 64)  # 64512 // 1000 inside hosts per address
    assert printnat(r, NAMES) == "map-block ppp0 10.0.0.0/24 -> 209.1.2.0/30 ports 1000\n"


def test_seed_rdr_two_targets_and_round_robin() -> None:
    text = ("rdr le0 203.1.2.3/32 port 80 -> 203.1.2.3,203.1.2.4 port 80 tcp\n"
            "rdr le0 203.1.2.3/32 port 80 -> 203.1.2.3,203.1.2.4 port 80 tcp round-robin\n"
            "rdr le0 203.1.2.3/32 port 80 -> 203.1.2.5 port 80 tcp round-robin\n")
    split, rr_split, rr = parse(text, "t", NAMES).rules
    assert show(text) == text
    assert split.flags & IPN_SPLIT and not split.flags & IPN_ROUNDR
    assert (split.in_addr, split.in_mask) == (ip("203.1.2.3"), ip("203.1.2.4"))  # in_mask holds the 2nd target
    assert rr_split.flags & (IPN_SPLIT | IPN_ROUNDR) == IPN_SPLIT | IPN_ROUNDR
    assert rr.flags & IPN_ROUNDR and not rr.flags & IPN_SPLIT and rr.in_mask == 0xFFFFFFFF
    for r in (split, rr_split, rr):
        assert (r.out_addr, r.pmin, r.pmax, r.pnext, r.proto) == (ip("203.1.2.3"), 80, 80, 80, 6)


# -- the model, kind by kind -----------------------------------------------------

def test_map_fields() -> None:
    r = one("map le0 from 10.0.0.0/8 port > 1023 to 192.0.2.0/24 port = 53 -> 198.51.100.1/32 udp")
    assert r.redir == NAT_MAP and r.is_map and not r.is_rdr and r.kind == "map"
    assert (r.in_addr, r.in_mask) == (ip("10.0.0.0"), ip("255.0.0.0"))          # from: the inside source
    assert (r.src_addr, r.src_mask) == (ip("192.0.2.0"), ip("255.255.255.0"))   # to: the destination
    assert (r.out_addr, r.out_mask) == (ip("198.51.100.1"), 0xFFFFFFFF)         # what the source becomes
    assert r.sport == PortCmp(FR_GREATERT, 1023, 0) and r.dport == PortCmp(FR_EQUAL, 53, 0)
    assert r.from_obj is not None and r.from_obj.matches(ip("10.9.9.9"), 2000)
    assert not r.from_obj.matches(ip("10.9.9.9"), 1000)
    assert r.to_obj is not None and r.to_obj.matches(ip("192.0.2.7"), 53)
    assert r.proto == 17 and r.flags & IPN_UDP and not r.flags & IPN_TCP


def test_rdr_fields() -> None:
    r = one("rdr le0 ! from 192.0.2.0/24 to 203.0.113.5/32 port = 80 -> 10.0.0.5 port 8080 tcp")
    assert r.redir == NAT_REDIRECT and r.is_rdr and not r.is_map
    assert (r.src_addr, r.src_mask) == (ip("192.0.2.0"), ip("255.255.255.0"))    # from: the remote source
    assert (r.out_addr, r.out_mask) == (ip("203.0.113.5"), 0xFFFFFFFF)           # to: the address matched
    assert (r.in_addr, r.in_mask) == (ip("10.0.0.5"), 0xFFFFFFFF)                # where it is redirected
    assert (r.pmin, r.pnext) == (80, 8080)
    assert r.flags & IPN_NOTSRC and r.from_obj is not None and r.from_obj.negate
    assert not r.from_obj.matches(ip("192.0.2.9")) and r.from_obj.matches(ip("198.51.100.1"))
    assert printnat(r, NAMES, numeric=True) == (
        "rdr le0 ! from 192.0.2.0/24 to 203.0.113.5/32 port = 80 -> 10.0.0.5 port 8080 tcp\n")


def test_bimap_is_both_kinds() -> None:
    r = one("bimap le0 10.1.1.1/32 -> 192.0.2.1/32")
    assert r.redir == NAT_BIMAP == NAT_MAP | NAT_REDIRECT and r.is_map and r.is_rdr
    assert (r.in_addr, r.out_addr) == (ip("10.1.1.1"), ip("192.0.2.1"))
    assert printnat(r, NAMES) == "bimap le0 10.1.1.1/32 -> 192.0.2.1/32\n"


def test_zero_slash_32_is_the_interface_address() -> None:
    # IP Filter stores 0/32 as address 0, mask all ones; nat_newmap() then asks the interface.
    r = one("map ppp0 10.0.0.0/8 -> 0/32")
    assert (r.out_addr, r.out_mask) == (0, 0xFFFFFFFF) and r.map_to_ifaddr
    assert not one("map ppp0 10.0.0.0/8 -> 0/0").map_to_ifaddr
    assert not one("map ppp0 10.0.0.0/8 -> 1.2.3.4/32").map_to_ifaddr
    assert printnat(r, NAMES) == "map ppp0 10.0.0.0/8 -> 0.0.0.0/32\n"
    here = one("rdr le0 0/0 port 80 -> 0 port 8080")  # a bare 0 is 0/32: nat_newrdr() asks the interface
    assert (here.in_addr, here.in_mask) == (0, 0xFFFFFFFF) and here.rdr_to_ifaddr
    assert printnat(here, NAMES) == "rdr le0 0.0.0.0/0 port 80 -> 0.0.0.0 port 8080 tcp\n"
    keep = one("rdr le0 0/0 port 80 -> 0/0 port 80")  # rdr to 0/0: keep the destination address
    assert (keep.in_addr, keep.in_mask) == (0, 0) and not keep.rdr_to_ifaddr
    assert printnat(keep, NAMES) == "rdr le0 0.0.0.0/0 port 80 -> 0.0.0.0/0 port 80 tcp\n"


def test_range_keeps_the_last_address_in_out_mask() -> None:
    r = one("map le0 192.168.0.0/16 -> range 203.1.1.23-203.1.3.45")
    assert r.flags & IPN_IPRANGE and (r.out_addr, r.out_mask) == (ip("203.1.1.23"), ip("203.1.3.45"))


@pytest.mark.parametrize(("text", "addr", "mask"), [
    ("10.1.2.3/8", "10.0.0.0", "255.0.0.0"),                  # ip/bits, the address masked
    ("10.1.2.3/255.255.0.0", "10.1.0.0", "255.255.0.0"),      # ip/mask
    ("10.1.2.3/0xffffff00", "10.1.2.0", "255.255.255.0"),     # ip/hex
    ("10.1.2.3 netmask 255.255.255.0", "10.1.2.0", "255.255.255.0"),
    ("10.1.2.3 mask 0xffff0000", "10.1.0.0", "255.255.0.0"),
    ("10.1.2.3", "10.1.2.3", "255.255.255.255"),              # a host
    ("10.1.2.3/255.0.255.0", "10.0.2.0", "255.0.255.0"),      # not contiguous: printed as a mask
    ("1/32", "0.0.0.1", "255.255.255.255"),                   # a bare number is a 32-bit address
    ("localhost/32", "127.0.0.1", "255.255.255.255"),         # /etc/hosts
    ("loopback/8", "127.0.0.0", "255.0.0.0"),                 # /etc/networks
])
def test_ipmask_forms(text: str, addr: str, mask: str) -> None:
    r = one(f"map le0 {text} -> 0/32")
    assert (r.in_addr, r.in_mask) == (ip(addr), ip(mask))


def test_noncontiguous_mask_prints_dotted() -> None:
    assert show("map le0 10.1.2.3/255.0.255.0 -> 0/32") == "map le0 10.0.2.0/255.0.255.0 -> 0.0.0.0/32\n"


@pytest.mark.parametrize(("cmp", "code", "printed"), [
    ("=", FR_EQUAL, "="), ("eq", FR_EQUAL, "="), ("!=", FR_NEQUAL, "!="), ("ne", FR_NEQUAL, "!="),
    ("<", FR_LESST, "<"), ("lt", FR_LESST, "<"), (">", FR_GREATERT, ">"), ("gt", FR_GREATERT, ">"),
    ("<=", FR_LESSTE, "<="), ("le", FR_LESSTE, "<="), (">=", FR_GREATERTE, ">="), ("ge", FR_GREATERTE, ">="),
])
def test_port_comparisons(cmp: str, code: int, printed: str) -> None:
    r = one(f"map le0 from 10.0.0.0/8 port {cmp} 1024 to any -> 0/32 tcp")
    assert r.sport == PortCmp(code, 1024, 0)
    assert printnat(r, NAMES, numeric=True) == (
        f"map le0 from 10.0.0.0/8 port {printed} 1024 to any -> 0.0.0.0/32 tcp\n")


@pytest.mark.parametrize(("rng", "code", "printed"), [
    ("<>", FR_OUTRANGE, "1 <> 1023"), ("><", FR_INRANGE, "1 >< 1023"), (":", FR_INCRANGE, "1:1023")])
def test_port_ranges(rng: str, code: int, printed: str) -> None:
    r = one(f"rdr le0 from any to 203.0.113.5/32 port 1 {rng} 1023 -> 10.0.0.5 port 80 tcp")
    assert r.dport == PortCmp(code, 1, 1023)
    assert printnat(r, NAMES) == f"rdr le0 from any to 203.0.113.5/32 port {printed} -> 10.0.0.5 port 80 tcp\n"


def test_port_cmp_semantics() -> None:
    assert [p for p in (0, 1, 5, 9, 10) if PortCmp(FR_OUTRANGE, 1, 9).matches(p)] == [0, 10]
    assert [p for p in (0, 1, 5, 9, 10) if PortCmp(FR_INRANGE, 1, 9).matches(p)] == [5]
    assert [p for p in (0, 1, 5, 9, 10) if PortCmp(FR_INCRANGE, 1, 9).matches(p)] == [1, 5, 9]
    assert PortCmp().matches(12345)


def test_from_to_port_means_tcp_udp() -> None:
    # ipnat_y.y's suggest_port: a from/to rule naming a port without a protocol becomes tcp/udp.
    r = one("map le0 from 10.0.0.0/8 to any port = 53 -> 0/32")
    assert r.flags & IPN_TCPUDP == IPN_TCPUDP and r.proto == 0
    assert printnat(r, NAMES) == "map le0 from 10.0.0.0/8 to any port = 53 -> 0.0.0.0/32 tcp/udp\n"
    icmp = one("map le0 from 10.0.0.0/8 to any port = 53 -> 0/32 icmp")  # setnatproto(1): ports dropped
    assert icmp.proto == 1 and icmp.dport.cmp == 0
    assert printnat(icmp, NAMES) == "map le0 from 10.0.0.0/8 to any -> 0.0.0.0/32 icmp\n"


def test_negated_destination_of_map() -> None:
    for text in ("map le0 from 10.0.0.0/8 ! to 10.0.0.0/8 -> 0/32", "map le0 from 10.0.0.0/8 to ! 10.0.0.0/8 -> 0/32"):
        r = one(text)
        assert r.flags & IPN_NOTDST and r.to_obj is not None and r.to_obj.negate
        assert printnat(r, NAMES) == "map le0 from 10.0.0.0/8 ! to 10.0.0.0/8 -> 0.0.0.0/32\n"


def test_portmap_protocols_and_sequential() -> None:
    assert one("map le0 10.0.0.0/8 -> 0/32 portmap tcp 1:2").flags & IPN_TCPUDP == IPN_TCP
    assert one("map le0 10.0.0.0/8 -> 0/32 portmap udp 1:2").flags & IPN_TCPUDP == IPN_UDP
    for both in ("tcp/udp", "tcpudp"):
        assert one(f"map le0 10.0.0.0/8 -> 0/32 portmap {both} 1:2").flags & IPN_TCPUDP == IPN_TCPUDP
    r = one("map le0 10.0.0.0/8 -> 0/32 portmap tcp/udp 40000:60000 sequential")
    assert r.flags & IPN_SEQUENTIAL
    assert printnat(r, NAMES) == "map le0 10.0.0.0/8 -> 0.0.0.0/32 portmap tcp/udp 40000:60000 sequential\n"
    named = one("map le0 10.0.0.0/8 -> 0/32 portmap tcp ftp:telnet")  # portspec: service names
    assert (named.pmin, named.pmax) == (21, 23)


def test_icmpidmap() -> None:
    r = one("map bar0 0/0 -> 0/32 icmpidmap icmp 1000:2000")
    assert r.flags == IPN_ICMPQUERY and r.icmpidmap == (1000, 2000)
    assert printnat(r, NAMES) == "map bar0 0.0.0.0/0 -> 0.0.0.0/32 icmpidmap icmp 1000:2000\n"
    # ipnat_y.y *assigns* in_flags here: the from/to flag set before is lost.
    lost = one("map bar0 from 10.0.0.0/8 to any -> 0/32 icmpidmap icmp 1:2")
    assert lost.flags == IPN_ICMPQUERY and lost.from_obj is None


def test_frag_age_mssclamp_tag_and_long_names() -> None:
    r = one("map thisisalonginterfacename 0/0 -> 0/32 frag age 30 mssclamp 1452 tag freddyliveshere")
    assert r.ifname == r.ifname2 == "thisisalonginte"  # LIFNAMSIZ 16, NUL included
    assert r.flags & IPN_FRAG and r.age == (30, 30) and r.mssclamp == 1452 and r.tag == "freddyliveshere"
    assert printnat(r, NAMES) == (
        "map thisisalonginte 0.0.0.0/0 -> 0.0.0.0/32 frag age 30/30 mssclamp 1452 tag freddyliveshere\n")
    assert one("rdr le0 1.2.3.4/32 port 80 -> 5.6.7.8 port 80 tcp age 10/20").age == (10, 20)


def test_two_interfaces() -> None:
    r = one("map le0,le1 10.0.0.0/8 -> 0/32")
    assert (r.ifname, r.ifname2) == ("le0", "le1")
    assert printnat(r, NAMES) == "map le0,le1 10.0.0.0/8 -> 0.0.0.0/32\n"


def test_map_proxy() -> None:
    r = one("map ppp0 192.168.0.0/16 -> 0/32 proxy port ftp ftp/tcp")
    assert (r.plabel, r.proxy_port, r.proxy_proto, r.proto) == ("ftp", 21, 6, 6)
    assert printnat(r, NAMES) == "map ppp0 192.168.0.0/16 -> 0.0.0.0/32 proxy port ftp ftp/tcp\n"
    assert printnat(r, NAMES, numeric=True) == "map ppp0 192.168.0.0/16 -> 0.0.0.0/32 proxy port 21 ftp/tcp\n"


def test_rdr_proxy_forms() -> None:
    named = one("rdr ge0 9.8.7.6/32 port 21 -> 1.1.1.1 port 21 tcp proxy ftp")
    mapstyle = one("rdr ge0 9.8.7.6/32 -> 1.1.1.1 proxy port 21 ftp/tcp")
    for r in (named, mapstyle):
        assert (r.plabel, r.proxy_port, r.pmin, r.pmax, r.pnext, r.proto) == ("ftp", 21, 21, 21, 21, 6)
        assert printnat(r, NAMES) == "rdr ge0 9.8.7.6/32 port 21 -> 1.1.1.1 port 21 tcp proxy ftp\n"


def test_rdr_port_ranges_and_fixed_port() -> None:
    for sep in ("-", ":"):
        r = one(f"rdr le0 9.8.7.6/32 port 1000{sep}2000 -> 1.1.1.1 port 5555 tcp")
        assert (r.pmin, r.pmax, r.pnext) == (1000, 2000, 5555) and not r.flags & IPN_FIXEDDPORT
    fixed = one("rdr le0 9.8.7.6/32 port 1000-2000 -> 1.1.1.1 port = 5555 tcp")
    assert fixed.flags & IPN_FIXEDDPORT
    # IPN_FIXEDDPORT only means something with tcp/udp: setnatproto() drops it otherwise.
    assert not one("rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port = 80 icmp").flags & IPN_FIXEDDPORT


def test_rdr_defaults_to_tcp_when_ports_are_given() -> None:
    r = one("rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 8080")
    assert r.proto == 6 and printnat(r, NAMES) == "rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1 port 8080 tcp\n"
    assert show("rdr le0 9.8.7.6/32 -> 1.1.1.1") == "rdr le0 9.8.7.6/32 -> 1.1.1.1 ip\n"


def test_protocols_by_name_and_number() -> None:
    assert one("map le0 10.0.0.0/8 -> 0/32 47").proto == 47
    gre = one("map le0 10.0.0.0/8 -> 0/32 gre")
    assert gre.proto == 47 and printnat(gre, NAMES) == "map le0 10.0.0.0/8 -> 0.0.0.0/32 gre\n"
    assert show("map le0 10.0.0.0/8 -> 0/32 250") == "map le0 10.0.0.0/8 -> 0.0.0.0/32 250\n"


def test_round_robin_sticky_on_a_split() -> None:
    r = one("rdr le0 9.8.7.6/32 port 80 -> 1.1.1.1,1.1.1.2 port 80 tcp round-robin frag age 30 sticky")
    assert r.flags & (IPN_ROUNDR | IPN_FRAG | IPN_STICKY | IPN_SPLIT) == IPN_ROUNDR | IPN_FRAG | IPN_STICKY | IPN_SPLIT


def test_test_host_dots() -> None:
    # lib/gethost.c answers this name itself (0xfedcba98) for IP Filter's tests.
    assert one("rdr le0 0/0 -> test.host.dots").in_addr == ip("254.220.186.152")


def test_same_as_ignores_position_but_not_meaning() -> None:
    a = one("map le0 10.0.0.0/8 -> 0/32")
    b = parse("\n\n  map le0 10.0.0.0/8 -> 0/32", "other", NAMES).rules[0]
    assert (b.line, b.column, b.source) == (3, 3, "other") and a.same_as(b)
    assert not a.same_as(one("map le0 10.0.0.0/8 -> 0/32 frag"))
    # rdr rules also differ by their new port (fr_nat_ioctl() compares in_pnext for them).
    assert not one("rdr le0 1.2.3.4/32 port 80 -> 5.6.7.8 port 80 tcp").same_as(
        one("rdr le0 1.2.3.4/32 port 80 -> 5.6.7.8 port 81 tcp"))


# -- the lexer ---------------------------------------------------------------

def test_comments_blank_lines_and_keywords_in_any_case() -> None:
    text = "# NAT for the ISP link\n\nMAP ppp0 10.0.0.0/8 -> 0/32 PortMap TCP/UDP 1025:65000  # tcp and udp\n"
    assert show(text) == "map ppp0 10.0.0.0/8 -> 0.0.0.0/32 portmap tcp/udp 1025:65000\n"


def test_rules_span_lines_and_share_lines() -> None:
    # Newlines are only whitespace to IP Filter's lexer; `;` may end a rule.
    text = ("map le0 10.0.0.0/8\n   -> 0/32 \\\n portmap tcp 1:2\n"
            "map le1 10.0.0.0/8 -> 0/32; map le2 10.0.0.0/8 -> 0/32 rdr le3 1.2.3.4/32 -> 5.6.7.8\n")
    rules = parse(text, "t", NAMES).rules
    assert [r.ifname for r in rules] == ["le0", "le1", "le2", "le3"]
    assert [(r.line, r.column) for r in rules] == [(1, 1), (4, 1), (4, 29), (4, 56)]


def test_variables_and_quoted_words() -> None:
    text = 'ext = "ppp0";\ninside = "10.0.0.0/8";\nmap $ext $inside -> 0/32\nmap "ppp0" ${inside} -> 0/32 tcp\n'
    rules = parse(text, "t", NAMES).rules
    assert [(r.ifname, r.in_addr, r.in_mask) for r in rules] == [("ppp0", ip("10.0.0.0"), ip("255.0.0.0"))] * 2
    # Inside quotes nothing is expanded (lexer.c reads a quoted string as it is).
    assert one('map "$ext" 0/0 -> 0/32').ifname == "$ext"


def test_keyword_valued_variable() -> None:
    # After `=` the lexer does not look the value up as a keyword (yyvarnext), so this assigns...
    assert parse("x = map;", "t", NAMES).rules == ()
    # ...but the expansion is lexed again, keywords and all.
    with pytest.raises(ConfigError, match=r'^t:2:5: syntax error at "map"$'):
        parse("x = map;\nmap $x 10.0.0.0/8 -> 0/32", "t", NAMES)


# -- bad input ------------------------------------------------------------------

BAD = [
    # what IP Filter's yyerror() says, here with the token's line and column
    ("map le0 10.0.0.0/8 -> 1.2.3.4/32 portmap tcp 70000:80000", 'invalid port number error at "70000"', 46),
    ("map le0 10.0.0.256/8 -> 1.2.3.4/32", 'Invalid octet string for IP address error at "256"', 16),
    ("map le0 10.0.0.0/8 1.2.3.4/32", 'syntax error at "1"', 20),
    ("rdr le0 1.2.3.4/32 port 80 -> 5.6.7.8/32 port 80 tcp", 'Only 0/0 supported error at "5"', 31),
    ("map le0 10.0.0.0/8 -> 1.2.3.4/32 icmpidmap icmp 1:70000", 'invalid ICMP Id number error at "70000"', 51),
    ("map le0 10.0.0.0/8 -> 0/32 icmpidmap echo 1:2", 'icmpidmap not followed by icmp error at "echo"', 38),
    ("map le0 from any to any port = 80 -> 1.2.3.4/32 proxy port 21 ftp/tcp",
     'proxy port numbers not consistant error at "21"', 60),
    ("map le0 10.0.0.0/8 -> 0/32 tcp udp", 'syntax error at "udp"', 32),
    ("rdr le0 1.2.3.4/32 port 80 -> 5.6.7.8 port 80 tcp udp", 'syntax error at "udp"', 51),
    ("rdr le0 1.2.3.4/32 port 80 -> 5.6.7.8 port 80 tcp/udp tcp", 'syntax error at "tcp"', 55),
    ("map le0 10.0.0.0/8 -> 0/32 portmap 1:2 tcp udp", 'syntax error at "udp"', 44),
    ("map le0 10.0.0.0/8 -> 0/32 portmap tcp 1:2 udp", 'protocol set twice error at "udp"', 44),
    ("map le0 10.0.0.0/8 -> 1.2.3.4/32 frag round-robin", 'syntax error at "round-robin"', 39),
    ("map le0 10.0.0.0/8 -> 1.2.3.4/32 portmap tcp 1000", 'syntax error at ""', 50),
    ("map le0 10.0.0.0/8 ->", 'syntax error at ""', 22),
    ("bogus le0", 'syntax error at "le0"', 7),
    ("map le0 10.0.0.0/8 < 1.2.3.4/32", 'syntax error at "lt"', 20),
    ("map le0 10.0.0.0/8 - 1.2.3.4/32", 'syntax error at "-"', 20),
    ("map any 10.0.0.0/8 -> 0/32", 'syntax error at "any"', 5),
    # rdr: without a port on the left yacc takes the no-port alternative, so a new port is an error...
    ("rdr le0 1.2.3.4/32 -> 5.6.7.8 port 80 tcp", 'syntax error at "port"', 31),
    # ...and with one, the new port is required
    ("rdr le0 1.2.3.4/32 port 80 -> 5.6.7.8 tcp", 'syntax error at "tcp"', 39),
    # checks IP Filter does not make (it loads garbage): refused here
    ("map le0 10.0.0.0/33 -> 1.2.3.4/32", 'invalid mask error at "33"', 18),
    ("map le0 10.0.0.0/8 -> 0/32 frob", 'unknown protocol error at "frob"', 28),
    ("map le0 10.0.0.0/8 -> 0/32 proxy port nosvc ftp/tcp", 'invalid port number error at "nosvc"', 39),
]


@pytest.mark.parametrize(("text", "message", "col"), BAD)
def test_bad_rules(text: str, message: str, col: int) -> None:
    with pytest.raises(ConfigError) as e:
        parse("map ok0 10.0.0.0/8 -> 0/32;\n" + text, "bad.conf", NAMES)
    assert str(e.value) == f"bad.conf:2:{col}: {message}"


def test_unknown_host_and_variable() -> None:
    with pytest.raises(ConfigError, match=r"^t:1:23: Unknown host 'nosuchhost'$"):
        parse("map le0 10.0.0.0/8 -> nosuchhost/32", "t", NAMES)
    with pytest.raises(ConfigError, match=r"^t:1:5: unknown variable 'ext'$"):
        parse("map $ext 10.0.0.0/8 -> 0/32", "t", NAMES)
    with pytest.raises(ConfigError, match=r'^t:1:17: unterminated string$'):
        parse('map le0 10/8 -> "0/32', "t", NAMES)
