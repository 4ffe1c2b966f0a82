"""ipchains 1.3.9's fixed texts: its version, help (-h), ICMP type table and list (-h icmp)."""

from __future__ import annotations

VERSION = "ipchains 1.3.9, 17-Mar-1999"

# icmp_codes[]: name, type, code_min, code_max (ipchains' own table)
ICMP_CODES: tuple[tuple[str, int, int, int], ...] = (
    ("echo-reply", 0, 0, 0xFFFF), ("pong", 0, 0, 0xFFFF), ("destination-unreachable", 3, 0, 0xFFFF),
    ("network-unreachable", 3, 0, 0), ("host-unreachable", 3, 1, 1), ("protocol-unreachable", 3, 2, 2),
    ("port-unreachable", 3, 3, 3), ("fragmentation-needed", 3, 4, 4), ("source-route-failed", 3, 5, 5),
    ("network-unknown", 3, 6, 6), ("host-unknown", 3, 7, 7), ("network-prohibited", 3, 9, 9),
    ("host-prohibited", 3, 10, 10), ("TOS-network-unreachable", 3, 11, 11), ("TOS-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13), ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15), ("source-quench", 4, 0, 0xFFFF), ("redirect", 5, 0, 0xFFFF),
    ("network-redirect", 5, 0, 0), ("host-redirect", 5, 1, 1), ("TOS-network-redirect", 5, 2, 2),
    ("TOS-host-redirect", 5, 3, 3), ("echo-request", 8, 0, 0xFFFF), ("ping", 8, 0, 0xFFFF),
    ("router-advertisement", 9, 0, 0xFFFF), ("router-solicitation", 10, 0, 0xFFFF),
    ("time-exceeded", 11, 0, 0xFFFF), ("ttl-exceeded", 11, 0, 0xFFFF), ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1), ("parameter-problem", 12, 0, 0xFFFF), ("ip-header-bad", 12, 0, 0),
    ("required-option-missing", 12, 1, 1), ("timestamp-request", 13, 0, 0xFFFF),
    ("timestamp-reply", 14, 0, 0xFFFF), ("address-mask-request", 17, 0, 0xFFFF),
    ("address-mask-reply", 18, 0, 0xFFFF))

HELP = """{v}

Usage: {p} -[ADC] chain rule-specification [options]
       {p} -[RI] chain rulenum rule-specification [options]
       {p} -D chain rulenum [options]
       {p} -[LFZNX] [chain] [options]
       {p} -P chain target [options]
       {p} -M [ -L | -S ] [options]
       {p} -h [icmp] (print this help information, or ICMP list)

Commands:
Either long or short options are allowed.
  --add     -A chain\t\tAppend to chain
  --delete  -D chain\t\tDelete matching rule from chain
  --delete  -D chain rulenum
\t\t\t\tDelete rule rulenum (1 = first) from chain
  --insert  -I chain [rulenum]
\t\t\t\tInsert in chain as rulenum (default 1=first)
  --replace -R chain rulenum
\t\t\t\tReplace rule rulenum (1 = first) in chain
  --list    -L [chain]\t\tList the rules in a chain or all chains
  --flush   -F [chain]\t\tDelete all rules in  chain or all chains
  --zero    -Z [chain]\t\tZero counters in chain or all chains
  --check   -C chain\t\tTest this packet on chain
  --new     -N chain\t\tCreate a new user-defined chain
  --delete-chain
            -X chain\t\tDelete a user-defined chain
  --policy  -P chain target
\t\t\t\tChange policy on chain to target
  --masquerade -M -L\t\tList current masqerading connections
  --set\t-M -S tcp tcpfin udp
\t\t\t\tSet masquerading timeout values

Options:
  --bidirectional -b\t\tinsert two rules: one with -s & -d reversed
  --proto\t-p [!] proto\tprotocol: by number or name, eg. `tcp'
  --source\t-s [!] address[/mask] [!] [port[:port]]
\t\t\t\tsource specification
  --source-port [!] [port[:port]]
\t\t\t\tsource port specification
  --destination -d [!] address[/mask] [!] [port[:port]]
\t\t\t\tdestination specification
  --destination-port [!] [port[:port]]
\t\t\t\tdestination port specification
  --icmp-type [!] typename\tspecify ICMP type
  --interface\t-i [!] name[+]
\t\t\t\tnetwork interface name ([+] for wildcard)
  --jump\t-j target [port]
\t\t\t\ttarget for rule ([port] for REDIRECT)
  --mark\t-m [+-]mark\tnumber to mark on matching packet
  --numeric\t-n\t\tnumeric output of addresses and ports
  --log\t\t-l\t\tturn on kernel logging for matching packets
  --output\t-o [maxsize]\toutput matching packet to netlink device
  --TOS\t\t-t and xor\tand/xor masks for TOS field
  --verbose\t-v\t\tverbose mode
  --exact\t-x\t\texpand numbers (display exact values)
[!] --fragment\t-f\t\tmatch second or further fragments only
[!] --syn\t-y\t\tmatch TCP packets only when SYN set
[!] --version\t-V\t\tprint package version.
"""


def icmp_help() -> str:
    out = [f"{VERSION}\n\nValid ICMP Types:"]
    for i, (name, t, lo, hi) in enumerate(ICMP_CODES):
        prev = ICMP_CODES[i - 1] if i else None
        if prev is not None and prev[1] == t:
            out.append(f" ({name})" if (prev[2], prev[3]) == (lo, hi) else f"\n   {name}")
        else:
            out.append(f"\n{name}")
    return "".join(out) + "\n"
