"""Seeded random iptables command lines (valid and invalid), for the differential test.

Everything comes from one `random.Random(seed)`, so a seed reproduces a run.
The pools mix what iptables accepts with what it refuses (bad ports, unknown
protocols, hooks a target may not be used in, jumps to built-in chains...).
"""

from __future__ import annotations

import random

TABLES = {"filter": ["INPUT", "FORWARD", "OUTPUT"], "nat": ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
          "mangle": ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"], "raw": ["PREROUTING", "OUTPUT"]}
USERS = ["u1", "u2", "LOGDROP"]
ADDRS = ["1.2.3.4", "10.0.0.0/8", "192.168.1.0/255.255.255.0", "0/0", "127.0.0.1", "localhost", "1.2.3.4,5.6.7.8",
         "169.254.0.0/16", "10.1.2.3/16", "0.0.0.0/1", "1.2.3.4/255.0.255.0", "foo.invalid", "1.2.3.4/40"]
PROTOS = ["tcp", "udp", "icmp", "all", "6", "17", "1", "gre", "47", "TCP", "esp", "sctp", "foo", "0", "300"]
IFACES = ["eth0", "eth+", "ppp0", "+", "lo", "wlan0:1", "veryveryverylongname0"]
TCP = ["--dport 22", "--sport 1024:", "--dport :80", "--dport ssh", "--dport 80:443", "! --dport 22", "--syn",
       "! --syn", "--tcp-flags ALL NONE", "--tcp-flags SYN,ACK,FIN SYN", "--tcp-option 2", "--dport 0:65535",
       "--dport 99999", "--dport 10:5", "--dport http-alt", "--tcp-flags ALL"]
UDP = ["--dport 53", "--sport 67:68", "! --sport 123", "--dport domain", "--dport 1:2:3", "--dport 5:"]
ICMP = ["--icmp-type echo-request", "--icmp-type 3/4", "! --icmp-type 0", "--icmp-type any",
        "--icmp-type time-exceeded", "--icmp-type 300", "--icmp-type e", "--icmp-type 11/1"]
MODULES = ["-m multiport --dports 22,80,443", "-m multiport --sports 1000:2000,3000", "-m multiport ! --ports 1,2",
           "-m state --state NEW", "-m state --state ESTABLISHED,RELATED", "-m state ! --state INVALID",
           "-m conntrack --ctstate NEW,DNAT", "-m conntrack ! --ctstatus ASSURED",
           "-m conntrack --ctorigdst 10.0.0.0/8 --ctproto udp", "-m conntrack --ctexpire 10:20",
           "-m mark --mark 0x1/0x1", "-m mark ! --mark 5", "-m connmark --mark 7",
           "-m iprange --src-range 10.0.0.1-10.0.0.50", "-m iprange ! --dst-range 1.1.1.1-1.1.1.9",
           "-m tos --tos Minimize-Cost", "-m tos ! --tos 0x04/0x0f", "-m dscp --dscp 46", "-m dscp ! --dscp-class CS3",
           "-m limit --limit 10/min --limit-burst 20", "-m limit", "-m limit --limit 2/day",
           '-m comment --comment "hello world"', "-m comment --comment x", "-m addrtype --dst-type LOCAL",
           "-m addrtype ! --src-type BROADCAST,MULTICAST", "-m addrtype --dst-type LOCAL --limit-iface-in",
           "-m addrtype --dst-type LOCAL --limit-iface-out", "-m tcp", "-m udp --dport 5", "-m icmp --icmp-type 8",
           "-m state", "-m mark --mark x"]
TARGETS = ["-j ACCEPT", "-j DROP", "-j RETURN", "-j REJECT", "-j REJECT --reject-with tcp-reset",
           "-j REJECT --reject-with icmp-host-prohibited", "-j LOG",
           '-j LOG --log-prefix "x: " --log-level info --log-uid', "-j MARK --set-mark 5", "-j MARK --or-mark 0x10",
           "-j CONNMARK --save-mark", "-j CONNMARK --restore-mark --mask 0xff", "-j TOS --set-tos 0x10",
           "-j DSCP --set-dscp 10", "-j TCPMSS --clamp-mss-to-pmtu", "-j TCPMSS --set-mss 1400", "-j MASQUERADE",
           "-j MASQUERADE --to-ports 1024-2048", "-j MASQUERADE --random-fully", "-j SNAT --to-source 1.2.3.4",
           "-j SNAT --to-source 1.2.3.4-1.2.3.10:1000-2000", "-j DNAT --to-destination 10.0.0.1:8080",
           "-j DNAT --to 10.0.0.2", "-j REDIRECT --to-ports 3128", "-j NETMAP --to 10.1.0.0/16", "-j CT --notrack",
           "-j CT --helper ftp", "-j NOTRACK", "-j u1", "-g u2", "-j nosuchchain", "-j INPUT", "-j LOGDROP", ""]


def gen_lines(seed: int, n: int) -> list[str]:
    rnd = random.Random(seed)
    lines = ["-N u1", "-N u2", "-N LOGDROP", "-t nat -N u1", "-t mangle -N u1", "-t raw -N u1",
             "-A LOGDROP -j LOG", "-A LOGDROP -j DROP"]
    for _ in range(n):
        t = rnd.choice(list(TABLES))
        chain = rnd.choice(TABLES[t] + ["u1"] * 2 + (USERS if t == "filter" else []))
        cmd = rnd.choices(["-A", "-I", "-D", "-C", "-R", "-L", "-S", "-F", "-Z", "-X", "-N", "-E", "-P"],
                          [40, 8, 8, 5, 4, 3, 3, 1, 1, 1, 1, 1, 2])[0]
        parts = [] if t == "filter" and rnd.random() < 0.5 else ["-t", t]
        if cmd in ("-A", "-I", "-D", "-C", "-R"):
            parts += [cmd, chain]
            if cmd == "-I" and rnd.random() < 0.5:
                parts.append(str(rnd.randint(1, 4)))
            if cmd == "-R":
                parts.append(str(rnd.randint(1, 3)))
            if cmd == "-D" and rnd.random() < 0.3:
                lines.append(" ".join(parts + [str(rnd.randint(1, 3))]))
                continue
            proto = None
            if rnd.random() < 0.6:
                proto = rnd.choice(PROTOS)
                parts += (["!"] if rnd.random() < 0.1 else []) + ["-p", proto]
            for opt, pool, prob in (("-s", ADDRS, 0.3), ("-d", ADDRS, 0.3), ("-i", IFACES, 0.2), ("-o", IFACES, 0.2)):
                if rnd.random() < prob:
                    parts += (["!"] if rnd.random() < 0.15 else []) + [opt, rnd.choice(pool)]
            if rnd.random() < 0.05:
                parts += (["!"] if rnd.random() < 0.3 else []) + ["-f"]
            if proto in ("tcp", "6", "TCP") and rnd.random() < 0.7:
                parts.append(rnd.choice(TCP))
            elif proto in ("udp", "17") and rnd.random() < 0.7:
                parts.append(rnd.choice(UDP))
            elif proto in ("icmp", "1") and rnd.random() < 0.7:
                parts.append(rnd.choice(ICMP))
            for _ in range(rnd.choice([0, 0, 1, 1, 2])):
                parts.append(rnd.choice(MODULES))
            if rnd.random() < 0.05:
                parts += ["-c", str(rnd.randint(0, 10**7)), str(rnd.randint(0, 10**10))]
            parts.append(rnd.choice(TARGETS))
            if rnd.random() < 0.1:
                parts.insert(0, "-v")
        elif cmd in ("-L", "-S"):
            parts += [cmd] + ([chain] if rnd.random() < 0.5 else [])
            parts += rnd.choice([[], ["-n"], ["-v"], ["-n", "-v", "--line-numbers"], ["-v", "-x"]]
                                if cmd == "-L" else [[], ["-v"]])
        elif cmd in ("-F", "-Z", "-X"):
            parts += [cmd] + ([chain] if rnd.random() < 0.7 else [])
        elif cmd == "-N":
            parts += [cmd, rnd.choice(USERS + ["new1", "LOG", '"x y"'])]
        elif cmd == "-E":
            parts += [cmd, rnd.choice(USERS), rnd.choice(["ren1", "ren2", *USERS])]
        else:
            parts += [cmd, chain, rnd.choice(["ACCEPT", "DROP", "RETURN"])]
        lines.append(" ".join(parts))
    return lines
