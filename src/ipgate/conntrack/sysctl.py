"""Connection tracking sysctls (net/netfilter/nf_conntrack_standalone.c).

Defaults are the kernel's (checked against Linux 6.18: /proc/sys/net/netfilter
in a fresh namespace).  Timeouts are seconds.  `set_sysctl` takes the names
scripts write: ``net.netfilter.nf_conntrack_max``,
``/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established`` and the
2.4/2.6-era ``/proc/sys/net/ipv4/netfilter/ip_conntrack_*`` aliases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# enum tcp_conntrack (uapi/linux/netfilter/nf_conntrack_tcp.h) plus the two
# timeout-only slots.
TCP_CONNTRACK_NONE = 0
TCP_CONNTRACK_SYN_SENT = 1
TCP_CONNTRACK_SYN_RECV = 2
TCP_CONNTRACK_ESTABLISHED = 3
TCP_CONNTRACK_FIN_WAIT = 4
TCP_CONNTRACK_CLOSE_WAIT = 5
TCP_CONNTRACK_LAST_ACK = 6
TCP_CONNTRACK_TIME_WAIT = 7
TCP_CONNTRACK_CLOSE = 8
TCP_CONNTRACK_SYN_SENT2 = 9
TCP_CONNTRACK_MAX = 10
TCP_CONNTRACK_IGNORE = 11
TCP_CONNTRACK_RETRANS = 12
TCP_CONNTRACK_UNACK = 13
TCP_CONNTRACK_TIMEOUT_MAX = 14

MINS = 60
DAYS = 24 * 60 * 60

# tcp_timeouts[] of nf_conntrack_proto_tcp.c; slot 0 (NONE) is SYN_SENT's, as
# nf_conntrack_tcp_init_net() sets it.
TCP_TIMEOUTS: tuple[float, ...] = (
    2 * MINS,   # NONE (unused; "new" timeout)
    2 * MINS,   # SYN_SENT
    60,         # SYN_RECV
    5 * DAYS,   # ESTABLISHED
    2 * MINS,   # FIN_WAIT
    60,         # CLOSE_WAIT
    30,         # LAST_ACK
    2 * MINS,   # TIME_WAIT
    10,         # CLOSE
    2 * MINS,   # SYN_SENT2
    0,          # MAX (no timeout)
    0,          # IGNORE
    5 * MINS,   # RETRANS: RFC 1122 R2, "nf_conntrack_tcp_timeout_max_retrans"
    5 * MINS,   # UNACK: "nf_conntrack_tcp_timeout_unacknowledged"
)

_TCP_TIMEOUT_NAMES = {
    "syn_sent": TCP_CONNTRACK_SYN_SENT,
    "syn_recv": TCP_CONNTRACK_SYN_RECV,
    "established": TCP_CONNTRACK_ESTABLISHED,
    "fin_wait": TCP_CONNTRACK_FIN_WAIT,
    "close_wait": TCP_CONNTRACK_CLOSE_WAIT,
    "last_ack": TCP_CONNTRACK_LAST_ACK,
    "time_wait": TCP_CONNTRACK_TIME_WAIT,
    "close": TCP_CONNTRACK_CLOSE,
    "max_retrans": TCP_CONNTRACK_RETRANS,
    "unacknowledged": TCP_CONNTRACK_UNACK,
}


@dataclass(slots=True)
class CtSysctl:
    """Per-namespace conntrack settings; field names are the sysctl names without the prefix."""

    max: int = 262144                # nf_conntrack_max (this host: 262144 buckets, max = buckets)
    expect_max: int = 4096           # nf_conntrack_expect_max
    checksum: int = 1                # nf_conntrack_checksum
    acct: int = 0                    # nf_conntrack_acct
    log_invalid: int = 0             # nf_conntrack_log_invalid
    tcp_loose: int = 1               # nf_conntrack_tcp_loose
    tcp_be_liberal: int = 0          # nf_conntrack_tcp_be_liberal
    tcp_ignore_invalid_rst: int = 0  # nf_conntrack_tcp_ignore_invalid_rst
    tcp_max_retrans: int = 3         # nf_conntrack_tcp_max_retrans
    tcp_timeouts: list[float] = field(default_factory=lambda: list(TCP_TIMEOUTS))
    udp_timeout: float = 30          # nf_conntrack_udp_timeout (UDP_CT_UNREPLIED)
    udp_timeout_stream: float = 120  # nf_conntrack_udp_timeout_stream (UDP_CT_REPLIED)
    icmp_timeout: float = 30         # nf_conntrack_icmp_timeout
    generic_timeout: float = 600     # nf_conntrack_generic_timeout
    gre_timeout: float = 30          # nf_conntrack_gre_timeout
    gre_timeout_stream: float = 180  # nf_conntrack_gre_timeout_stream

    def names(self) -> list[str]:
        """Every settable name, as `sysctl -a` would list them (net.netfilter.*)."""
        out = ["nf_conntrack_max", "nf_conntrack_expect_max", "nf_conntrack_checksum", "nf_conntrack_acct",
               "nf_conntrack_log_invalid", "nf_conntrack_tcp_loose", "nf_conntrack_tcp_be_liberal",
               "nf_conntrack_tcp_ignore_invalid_rst", "nf_conntrack_tcp_max_retrans",
               "nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream", "nf_conntrack_icmp_timeout",
               "nf_conntrack_generic_timeout", "nf_conntrack_gre_timeout", "nf_conntrack_gre_timeout_stream"]
        out += [f"nf_conntrack_tcp_timeout_{n}" for n in _TCP_TIMEOUT_NAMES]
        return sorted("net.netfilter." + n for n in out)

    def get(self, name: str) -> int:
        attr, idx = _resolve(name)
        value = self.tcp_timeouts[idx] if attr == "tcp_timeouts" else getattr(self, attr)
        return int(value)

    def set(self, name: str, value: int) -> None:
        """Write a sysctl; KeyError for an unknown name, ValueError for a bad value."""
        attr, idx = _resolve(name)
        if value < 0:
            raise ValueError(f"invalid value {value} for {name}")
        if attr == "tcp_timeouts":
            self.tcp_timeouts[idx] = value
        else:
            setattr(self, attr, value)


def _resolve(name: str) -> tuple[str, int]:
    """Map any accepted spelling to (field, tcp timeout index)."""
    n = name.strip()
    for prefix in ("/proc/sys/", ""):
        if n.startswith(prefix):
            n = n[len(prefix):]
    n = n.replace("/", ".")
    for prefix in ("net.netfilter.", "net.ipv4.netfilter.", "net.ipv4."):
        if n.startswith(prefix):
            n = n[len(prefix):]
            break
    for prefix in ("nf_conntrack_", "ip_conntrack_"):
        if n.startswith(prefix):
            n = n[len(prefix):]
            break
    else:
        raise KeyError(name)
    if n.startswith("tcp_timeout_") and n[len("tcp_timeout_"):] in _TCP_TIMEOUT_NAMES:
        return "tcp_timeouts", _TCP_TIMEOUT_NAMES[n[len("tcp_timeout_"):]]
    if n in ("max", "expect_max", "checksum", "acct", "log_invalid", "tcp_loose", "tcp_be_liberal",
             "tcp_ignore_invalid_rst", "tcp_max_retrans", "udp_timeout", "udp_timeout_stream",
             "icmp_timeout", "generic_timeout", "gre_timeout", "gre_timeout_stream"):
        return n, 0
    raise KeyError(name)
