"""The legacy masquerading lines of the IP Masquerade HOWTO: ipchains, ipfwadm, modprobe/insmod, netstat -M.

Each legacy line runs in a configuration script (`load_script`) and must
leave the iptables rules (as `iptables-save` prints them), conntrack
sysctls and helpers that a Linux 6.x box would have for it (the mapping is
in ipgate/commands/legacy_fw.py); a bad line fails with `file:line: message`
(the tool's own message where it has one) and changes nothing.  The
masquerading listings are checked against a conntrack table filled by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ipgate.conntrack.conn import IP_CT_NEW, IPS_SRC_NAT, IPS_SRC_NAT_DONE, Conn
from ipgate.conntrack.tuple import ICMP_ECHO, ICMP_ECHOREPLY, IPPROTO_TCP, IPPROTO_UDP, Tuple
from ipgate.inet import aton
from ipgate.netfilter.names import Resolver
from ipgate.shell import ScriptErrors, Shell, load_script
from ipgate.stack import Stack

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"

# Every legacy command line of the seed documents, as written there (ip-masquerade-howto-faq.txt
# sections 7.13, 7.14, 7.25, 7.31, 7.36; ip-alias-mini-howto.txt for insmod).  7.25's
# "/sbin/rmmod ip_masq_irc /etc/rc.d/rc.firewall" is two commands run together: see
# test_seed_rmmod_line_run_together.
SEED_LINES = [
    "/sbin/ipfwadm -M -s 7200 10 60",
    "/ipchains -M -S 7200 10 60",
    'echo "1" > /proc/sys/net/ipv4/ip_dynaddr',
    "modprobe ip_masq_irc ports=6667,6969",
    "/sbin/rmmod ip_masq_irc",
    "netstat -M",
    "/sbin/ipfwadm -M -l",
    "/sbin/ipchains -A forward -i ppp+ -j MASQ",
    "/sbin/insmod /lib/modules/`uname \u2212r`/ipv4/ip_alias.o",
]
LEGACY_PROGRAMS = ("ipchains", "ipfwadm", "modprobe", "insmod", "rmmod", "depmod", "netstat")


def save(stack: Stack) -> str:
    """`iptables-save` without its dated comment lines."""
    res = Shell(stack).run_line("iptables-save")
    assert res.status == 0, res.err
    return "".join(line + "\n" for line in res.out.splitlines() if not line.startswith("#"))


def rules(stack: Stack, table: str = "filter") -> list[str]:
    """`iptables -t TABLE -S` lines."""
    res = Shell(stack).run_line(f"iptables -t {table} -S")
    assert res.status == 0, res.err
    return res.out.splitlines()


def fresh() -> Stack:
    """A box whose names (services, hosts) do not depend on this machine's /etc."""
    stack = Stack()
    stack.netfilter.resolver = Resolver.builtin()
    return stack


def run(text: str, stack: Stack | None = None) -> Stack:
    return load_script(text, "rc.firewall", stack if stack is not None else fresh())


def failure(text: str, stack: Stack | None = None) -> str:
    with pytest.raises(ScriptErrors) as info:
        load_script(text, "rc.firewall", stack if stack is not None else fresh())
    assert len(info.value.errors) == 1
    return str(info.value.errors[0])


def state(stack: Stack) -> tuple[object, ...]:
    ct = stack.conntrack.sysctl
    return (save(stack), dict(stack.sysctl), dict(stack.ct_helpers.ports), list(ct.tcp_timeouts), ct.udp_timeout,
            ct.udp_timeout_stream)


# -- the seed documents' lines --------------------------------------------------------------------

def test_seed_masq_timeouts_ipfwadm_and_ipchains() -> None:
    for line in ("/sbin/ipfwadm -M -s 7200 10 60", "/ipchains -M -S 7200 10 60"):
        ct = run(line + "\n").conntrack.sysctl
        assert ct.get("nf_conntrack_tcp_timeout_established") == 7200
        for st in ("fin_wait", "close_wait", "last_ack", "time_wait"):
            assert ct.get(f"nf_conntrack_tcp_timeout_{st}") == 10
        assert (ct.udp_timeout, ct.udp_timeout_stream) == (60, 60)
        assert ct.get("nf_conntrack_tcp_timeout_syn_sent") == 120  # the others are untouched


def test_masq_timeout_zero_means_unchanged() -> None:
    ct = run("ipchains -M -S 0 10 0\n").conntrack.sysctl
    assert ct.get("nf_conntrack_tcp_timeout_established") == 5 * 24 * 3600
    assert ct.get("nf_conntrack_tcp_timeout_fin_wait") == 10
    assert (ct.udp_timeout, ct.udp_timeout_stream) == (30, 120)


def test_seed_ip_dynaddr_is_a_stored_sysctl() -> None:
    stack = run('echo "1" > /proc/sys/net/ipv4/ip_dynaddr\n')
    assert stack.sysctl["net.ipv4.ip_dynaddr"] == 1
    assert Shell(stack).run_line("sysctl net.ipv4.ip_dynaddr").out == "net.ipv4.ip_dynaddr = 1\n"


def test_seed_irc_helper_on_more_ports_then_unloaded() -> None:
    stack = run("modprobe ip_masq_irc ports=6667,6969\n")
    assert stack.ct_helpers.ports == {"irc": (6667, 6969)}
    assert stack.ct_helpers.find(IPPROTO_TCP, 6969) == "irc"
    stack = run("/sbin/rmmod ip_masq_irc\n", stack)
    assert not stack.ct_helpers.loaded("irc")
    # FAQ 7.25: unload, then load again with the new ports
    stack = run("modprobe ip_masq_irc\n/sbin/rmmod ip_masq_irc\nmodprobe ip_masq_irc ports=6667,7000\n")
    assert stack.ct_helpers.ports == {"irc": (6667, 7000)}


def test_seed_rmmod_line_run_together() -> None:
    """FAQ 7.25 prints "/sbin/rmmod ip_masq_irc /etc/rc.d/rc.firewall" on one line: as a line it fails whole."""
    stack = run("modprobe ip_masq_irc ports=6667,6969\n")
    assert failure("/sbin/rmmod ip_masq_irc /etc/rc.d/rc.firewall\n", stack) == \
        "rc.firewall:1: rmmod: ERROR: Module rc.firewall is not currently loaded"
    assert stack.ct_helpers.ports == {"irc": (6667, 6969)}


def test_seed_listings_on_an_empty_table() -> None:
    sh = Shell(run("netstat -M\n/sbin/ipfwadm -M -l\n"))
    assert (sh.run_line("netstat -M").out, sh.run_line("/sbin/ipfwadm -M -l").out) == ("", "IP masquerading entries\n")


def test_seed_masq_out_of_ppp_links() -> None:
    """FAQ 7.36: ipchains' -i on forward is the outgoing interface."""
    assert save(run("/sbin/ipchains -A forward -i ppp+ -j MASQ\n")) == """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o ppp+ -m comment --comment MASQ -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o ppp+ -m comment --comment MASQ -j ACCEPT
COMMIT
"""


def test_seed_insmod_ip_alias_with_uname() -> None:
    stack = run("/sbin/insmod /lib/modules/`uname \u2212r`/ipv4/ip_alias.o\n")
    assert state(stack) == state(Stack())


def test_every_seed_line_runs_in_one_script() -> None:
    stack = run("\n".join(["modprobe ip_masq_irc"] + SEED_LINES) + "\n")
    assert stack.sysctl["net.ipv4.ip_dynaddr"] == 1
    assert rules(stack, "nat")[-1] == "-A POSTROUTING -o ppp+ -m comment --comment MASQ -j MASQUERADE"


@pytest.mark.skipif(not SEEDS.is_dir(), reason="shared/seeds not beside the repository")
def test_seed_documents_have_no_other_legacy_lines() -> None:
    found = set()
    for doc in SEEDS.glob("*.txt"):
        for raw in doc.read_text(encoding="utf-8").splitlines():
            words = raw.split()
            prog = words[0].rsplit("/", 1)[-1] if words else ""
            if prog == "netstat" and "M" not in words[1]:
                continue  # netstat -r and friends are the routing table, not masquerading
            if prog in LEGACY_PROGRAMS and len(words) > 1 and re.match(r"^[-\w./`]", words[1]):
                found.add(raw.strip())
    known = set(SEED_LINES) | {"/sbin/rmmod ip_masq_irc /etc/rc.d/rc.firewall"}
    assert found <= known, found - known


# -- whole rc.firewall scripts --------------------------------------------------------------------

RC_FIREWALL_22 = """\
#!/bin/sh
# rc.firewall - Initial SIMPLE IP Masquerade test for 2.1.x and 2.2.x kernels using IPCHAINS
/sbin/depmod -a
/sbin/modprobe ip_masq_ftp
/sbin/modprobe ip_masq_irc
echo "1" > /proc/sys/net/ipv4/ip_forward
echo "1" > /proc/sys/net/ipv4/ip_dynaddr
/sbin/ipchains -M -S 7200 10 160
/sbin/ipchains -P forward DENY
/sbin/ipchains -A forward -s 192.168.0.0/24 -j MASQ
"""

RC_FIREWALL_20 = """\
#!/bin/sh
/sbin/depmod -a
/sbin/modprobe ip_masq_ftp
echo "1" > /proc/sys/net/ipv4/ip_forward
/sbin/ipfwadm -M -s 7200 10 60
/sbin/ipfwadm -F -p deny
/sbin/ipfwadm -F -a m -S 192.168.0.0/24 -D 0.0.0.0/0
"""

SIMPLE_MASQ_SAVE = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 192.168.0.0/24 -m comment --comment MASQ -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -s 192.168.0.0/24 -m comment --comment MASQ -j ACCEPT
COMMIT
"""


def test_howto_rc_firewall_for_2_2() -> None:
    stack = run(RC_FIREWALL_22)
    assert save(stack) == SIMPLE_MASQ_SAVE
    assert stack.ct_helpers.ports == {"ftp": (21,), "irc": (6667,)}
    assert stack.sysctl["net.ipv4.ip_forward"] == 1
    assert stack.conntrack.sysctl.udp_timeout == 160


def test_howto_rc_firewall_for_2_0_is_the_same_box() -> None:
    assert save(run(RC_FIREWALL_20)) == SIMPLE_MASQ_SAVE


def test_a_helper_ipgate_lacks_is_accepted_with_a_warning() -> None:
    """An existing rc.firewall must run: modules for helpers ipgate lacks load as nothing, with a warning."""
    text = RC_FIREWALL_22.replace("/sbin/modprobe ip_masq_irc\n", "/sbin/modprobe ip_masq_irc\n/sbin/modprobe"
                                  " ip_masq_raudio\n")
    stack = run(text)
    assert state(stack) == state(run(RC_FIREWALL_22))
    for line, what in (("modprobe ip_masq_raudio", "RealAudio masquerading helper"),
                       ("modprobe ip_masq_quake 26000,27000", "Quake masquerading helper"),
                       ("modprobe nf_conntrack_tftp", "TFTP helper")):
        res = Shell(fresh()).run_line(line)
        assert res.status == 0 and f"the {what} is not implemented" in res.err
    assert Shell(fresh()).run_line("modprobe -q ip_masq_cuseeme").err == ""


# -- ipchains -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("lines", "expected"), [
    # policies: DENY is DROP; REJECT is DROP plus a last rule that later appends go in front of
    (["ipchains -P forward DENY"], ["-P FORWARD DROP"]),
    (["ipchains -P input REJECT", "ipchains -A input -i eth0 -s 192.168.0.0/24 -j ACCEPT"],
     ["-P INPUT DROP", "-A INPUT -s 192.168.0.0/24 -i eth0 -j ACCEPT",
      '-A INPUT -m comment --comment "policy REJECT" -j REJECT --reject-with icmp-port-unreachable']),
    (["ipchains -P output REJECT", "ipchains -P output REJECT", "ipchains -P output ACCEPT"], ["-P OUTPUT ACCEPT"]),
    # ports after the address, services, open ranges, a dotted mask
    (["ipchains -A forward -p tcp -s 10.0.0.0/255.0.0.0 1024: -d 0/0 www -j ACCEPT"],
     ["-A FORWARD -s 10.0.0.0/8 -p tcp -m tcp --sport 1024:65535 --dport 80 -j ACCEPT"]),
    (["ipchains -A output -p udp -d 0/0 ! 53 -j REJECT"],
     ["-A OUTPUT -p udp -m udp ! --dport 53 -j REJECT --reject-with icmp-host-unreachable"]),
    (["ipchains -A forward -p tcp -s ! 192.168.1.0/24 -d 0/0 :1023 -y -j DENY"],
     ["-A FORWARD ! -s 192.168.1.0/24 -p tcp -m tcp --dport 0:1023 --tcp-flags FIN,SYN,RST,ACK SYN -j DROP"]),
    (["ipchains -A input -p icmp -s 0/0 echo-request -j ACCEPT", "ipchains -A input -p icmp -s 0/0 3 -d 0/0 4 -j DENY"],
     ["-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT", "-A INPUT -p icmp -m icmp --icmp-type 3/4 -j DROP"]),
    # -l logs first, -b adds the reversed rule, -f and inversions
    (["ipchains -A input -s 0/0 -d 192.168.0.1 -l -j DENY"],
     ["-A INPUT -d 192.168.0.1/32 -m comment --comment log -j LOG", "-A INPUT -d 192.168.0.1/32 -j DROP"]),
    (["ipchains -A forward -b -p udp -s 1.2.3.4 53 -d 5.6.7.8 -j ACCEPT"],
     ["-A FORWARD -s 1.2.3.4/32 -d 5.6.7.8/32 -p udp -m udp --sport 53 -j ACCEPT",
      "-A FORWARD -s 5.6.7.8/32 -d 1.2.3.4/32 -p udp -m udp --dport 53 -j ACCEPT"]),
    (["ipchains -A forward ! -i eth1 -f -j DENY", "ipchains -A forward -p ! tcp -j REJECT"],
     ["-A FORWARD ! -o eth1 -f -j DROP", "-A FORWARD ! -p tcp -j REJECT --reject-with icmp-host-unreachable"]),
    # user chains
    (["ipchains -N spoof", "ipchains -A spoof -s 10.0.0.0/8 -j DENY", "ipchains -A input -j spoof",
      "ipchains -A spoof -j RETURN"],
     ["-N spoof", "-A INPUT -j spoof", "-A spoof -s 10.0.0.0/8 -j DROP", "-A spoof -j RETURN"]),
])
def test_ipchains_rules(lines: list[str], expected: list[str]) -> None:
    got = [r for r in rules(run("\n".join(lines) + "\n")) if not r.startswith("-P") or r in expected]
    assert got == [r for r in expected if r.startswith("-P")] + [r for r in expected if not r.startswith("-P")]


def test_ipchains_masq_with_ports_and_the_state_rule_once() -> None:
    stack = run("ipchains -A forward -p tcp -s 192.168.0.0/24 1024:65535 -j MASQ\n"
                "ipchains -A forward -s 192.168.1.0/24 -j MASQ\n")
    assert rules(stack) == [
        "-P INPUT ACCEPT", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT",
        "-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT",
        "-A FORWARD -s 192.168.0.0/24 -p tcp -m tcp --sport 1024:65535 -m comment --comment MASQ -j ACCEPT",
        "-A FORWARD -s 192.168.1.0/24 -m comment --comment MASQ -j ACCEPT"]
    assert rules(stack, "nat")[4:] == [
        "-A POSTROUTING -s 192.168.0.0/24 -p tcp -m tcp --sport 1024:65535 -m comment --comment MASQ -j MASQUERADE",
        "-A POSTROUTING -s 192.168.1.0/24 -m comment --comment MASQ -j MASQUERADE"]


def test_ipchains_rule_numbers_skip_the_state_and_policy_rules() -> None:
    stack = run("ipchains -P forward REJECT\n"
                "ipchains -A forward -s 10.0.0.1 -j MASQ\n"
                "ipchains -A forward -s 10.0.0.2 -l -j ACCEPT\n"
                "ipchains -I forward -s 10.0.0.3 -j DENY\n"
                "ipchains -I forward 3 -s 10.0.0.4 -j DENY\n")
    assert rules(stack)[3:] == [
        "-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT",
        "-A FORWARD -s 10.0.0.3/32 -j DROP",
        "-A FORWARD -s 10.0.0.1/32 -m comment --comment MASQ -j ACCEPT",
        "-A FORWARD -s 10.0.0.4/32 -j DROP",
        "-A FORWARD -s 10.0.0.2/32 -m comment --comment log -j LOG",
        "-A FORWARD -s 10.0.0.2/32 -j ACCEPT",
        '-A FORWARD -m comment --comment "policy REJECT" -j REJECT --reject-with icmp-host-unreachable']
    stack = run("ipchains -D forward 2\nipchains -R forward 3 -s 10.0.0.5 -j ACCEPT\n"
                "ipchains -D forward -s 10.0.0.3 -j DENY\n", stack)
    assert rules(stack)[3:] == [
        "-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT",
        "-A FORWARD -s 10.0.0.4/32 -j DROP",
        "-A FORWARD -s 10.0.0.5/32 -j ACCEPT",
        '-A FORWARD -m comment --comment "policy REJECT" -j REJECT --reject-with icmp-host-unreachable']
    assert rules(stack, "nat")[4:] == []  # the MASQ rule's twin went with it


def test_ipchains_flush_keeps_policy_and_demasquerading() -> None:
    stack = run("ipchains -P forward REJECT\nipchains -A forward -s 10.0.0.0/8 -j MASQ\n"
                "ipchains -A input -s 1.2.3.4 -j DENY\nipchains -F forward\n")
    assert rules(stack)[3:] == [
        "-A INPUT -s 1.2.3.4/32 -j DROP",
        "-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT",
        '-A FORWARD -m comment --comment "policy REJECT" -j REJECT --reject-with icmp-host-unreachable']
    assert rules(stack, "nat")[4:] == []
    stack = run("ipchains -N x\nipchains -A x -j DENY\nipchains -F\n", stack)
    assert rules(stack)[4:] == [
        "-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT",
        '-A FORWARD -m comment --comment "policy REJECT" -j REJECT --reject-with icmp-host-unreachable']


def test_ipchains_delete_needs_the_same_log_flag() -> None:
    stack = run("ipchains -A input -s 1.2.3.4 -l -j DENY\n")
    assert failure("ipchains -D input -s 1.2.3.4 -j DENY\n", stack) == \
        "rc.firewall:1: ipchains: bad rule (does a matching rule exist in that chain?)"
    assert rules(run("ipchains -D input -s 1.2.3.4 -l -j DENY\n", stack)) == rules(Stack())


def test_ipchains_masq_listing() -> None:
    sh = Shell(masq_stack())
    assert sh.run_line("ipchains -M -L").out == """\
IP masquerading entries
prot expire   source               destination          ports
TCP  59:57.84 192.168.0.2          10.9.9.9             1035 (61000) -> telnet
UDP  00:59.50 gw                   10.9.9.9             1040 (61001) -> domain
ICMP 00:29.00 gw                   10.9.9.9             7 (61002) -> 2048
"""
    assert sh.run_line("ipchains -M -L -n -v").out == """\
IP masquerading entries
prot expire      initseq delta prevd source               destination          ports
TCP  59:57.84          0     0     0 192.168.0.2          10.9.9.9             1035 (61000) -> 23
UDP  00:59.50          0     0     0 192.168.0.3          10.9.9.9             1040 (61001) -> 53
ICMP 00:29.00          0     0     0 192.168.0.3          10.9.9.9             7 (61002) -> 2048
"""


def test_ipfwadm_masq_listing_has_tcp_and_udp_only() -> None:
    assert Shell(masq_stack()).run_line("ipfwadm -M -l -n").out == """\
IP masquerading entries
prot expire   source               destination          ports
tcp  59:57.84 192.168.0.2          10.9.9.9             1035 (61000) -> 23
udp  00:59.50 192.168.0.3          10.9.9.9             1040 (61001) -> 53
"""


def test_netstat_masq_listing() -> None:
    sh = Shell(masq_stack())
    assert sh.run_line("netstat -M").out == """\
IP masquerading entries
prot   expire source               destination          ports
tcp  59:57.84 192.168.0.2          10.9.9.9             1035 -> telnet (61000)
udp   0:59.50 gw                   10.9.9.9             1040 -> domain (61001)
icmp  0:29.00 gw                   10.9.9.9             7 -> 2048 (61002)
"""
    assert sh.run_line("netstat -Mn").out == sh.run_line("netstat --masquerade --numeric").out == """\
IP masquerading entries
prot   expire source               destination          ports
tcp  59:57.84 192.168.0.2          10.9.9.9             1035 -> 23 (61000)
udp   0:59.50 192.168.0.3          10.9.9.9             1040 -> 53 (61001)
icmp  0:29.00 192.168.0.3          10.9.9.9             7 -> 2048 (61002)
"""
    assert sh.run_line("netstat -M -n -e").out.splitlines()[1:3] == [
        "prot   expire    initseq delta prevd source               destination          ports",
        "tcp  59:57.84          0     0     0 192.168.0.2          10.9.9.9             1035 -> 23 (61000)"]


def masq_stack() -> Stack:
    """Three source-NATed connections and one that is not NATed, entered by hand (confirmed at time 0)."""
    stack = fresh()
    stack.netfilter.resolver = Resolver(services=Resolver.builtin().services,
                                        hosts=[(aton("192.168.0.3"), ("gw",))])
    pub, srv = aton("203.0.113.1"), aton("10.9.9.9")

    def add(orig: Tuple, reply: Tuple, timeout: float, status: int = IPS_SRC_NAT | IPS_SRC_NAT_DONE) -> None:
        ct = Conn(orig.key, reply.key)
        ct.timeout = timeout
        ct.set_status(status)
        stack.conntrack.confirm(ct, IP_CT_NEW, 0.0)

    add(Tuple(aton("192.168.0.2"), srv, IPPROTO_TCP, 1035, 23), Tuple(srv, pub, IPPROTO_TCP, 23, 61000), 3597.84)
    add(Tuple(aton("192.168.0.3"), srv, IPPROTO_UDP, 1040, 53), Tuple(srv, pub, IPPROTO_UDP, 53, 61001), 59.5)
    add(Tuple.icmp(aton("192.168.0.3"), srv, ICMP_ECHO, 0, 7), Tuple.icmp(srv, pub, ICMP_ECHOREPLY, 0, 61002), 29.0)
    add(Tuple(aton("192.168.0.4"), srv, IPPROTO_TCP, 1050, 80), Tuple(srv, aton("192.168.0.4"), IPPROTO_TCP, 80, 1050),
        100.0, status=0)
    return stack


# -- ipfwadm ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("lines", "expected"), [
    (["ipfwadm -F -p reject"],
     ["-P FORWARD DROP",
      '-A FORWARD -m comment --comment "policy REJECT" -j REJECT --reject-with icmp-host-unreachable']),
    (["ipfwadm -I -p accept", "ipfwadm -O -p deny"], ["-P INPUT ACCEPT", "-P OUTPUT DROP"]),
    (["ipfwadm -F -a accept -m -P tcp -S 192.168.0.0/24 -D 0/0 -W ppp0"],
     ["-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT",
      "-A FORWARD -s 192.168.0.0/24 -o ppp0 -p tcp -m comment --comment MASQ -j ACCEPT"]),
    (["ipfwadm -I -a deny -P tcp -S 0/0 -D 192.168.0.1 20 21 1024:2000 -W eth0 -o"],
     ["-A INPUT -d 192.168.0.1/32 -i eth0 -p tcp -m multiport --dports 1024:2000,20,21 -m comment --comment log"
      " -j LOG",
      "-A INPUT -d 192.168.0.1/32 -i eth0 -p tcp -m multiport --dports 1024:2000,20,21 -j DROP"]),
    (["ipfwadm -I -a reject -P icmp -S 0/0 8", "ipfwadm -O -a accept -P tcp -S 0/0 telnet -y",
      "ipfwadm -O -a accept -P tcp -S 0/0 telnet -k"],
     ["-A INPUT -p icmp -m icmp --icmp-type 8 -j REJECT --reject-with icmp-port-unreachable",
      "-A OUTPUT -p tcp -m tcp --sport 23 --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT",
      "-A OUTPUT -p tcp -m tcp --sport 23 --tcp-flags ACK ACK -j ACCEPT"]),
    (["ipfwadm -F -a a -P udp -S 1.2.3.4 53 -D 5.6.7.8 -b"],
     ["-A FORWARD -s 1.2.3.4/32 -d 5.6.7.8/32 -p udp -m udp --sport 53 -j ACCEPT",
      "-A FORWARD -s 5.6.7.8/32 -d 1.2.3.4/32 -p udp -m udp --dport 53 -j ACCEPT"]),
])
def test_ipfwadm_rules(lines: list[str], expected: list[str]) -> None:
    got = [r for r in rules(run("\n".join(lines) + "\n")) if not r.startswith("-P") or r in expected]
    assert got == [r for r in expected if r.startswith("-P")] + [r for r in expected if not r.startswith("-P")]


def test_ipfwadm_insert_goes_below_the_state_rule_and_flush_removes_masq() -> None:
    stack = run("ipfwadm -F -a m -S 192.168.0.0/24 -D 0.0.0.0/0\nipfwadm -F -i deny -S 192.168.0.66\n")
    assert rules(stack)[3:5] == ["-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT",
                                 "-A FORWARD -s 192.168.0.66/32 -j DROP"]
    stack = run("ipfwadm -F -d masquerade -S 192.168.0.0/24 -D 0.0.0.0/0\n", stack)
    assert rules(stack, "nat")[4:] == []
    stack = run("ipfwadm -F -a m -S 192.168.0.0/24\nipfwadm -F -f\n", stack)
    assert rules(stack)[3:] == ["-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT"]
    assert rules(stack, "nat")[4:] == []


# -- modprobe and friends ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "helpers"), [
    ("modprobe ip_masq_ftp", {"ftp": (21,)}),
    ("modprobe ip_conntrack_ftp", {"ftp": (21,)}),
    ("modprobe nf_conntrack_ftp ports=21,2121", {"ftp": (21, 2121)}),
    ("modprobe nf-conntrack-ftp ports=0x15", {"ftp": (21,)}),
    ("modprobe nf_nat_ftp", {"ftp": (21,)}),
    ("modprobe ip_nat_irc", {"irc": (6667,)}),
    ("insmod ip_masq_irc.o ports=6667,6969", {"irc": (6667, 6969)}),
    ("modprobe -a ip_masq_ftp ip_masq_irc", {"ftp": (21,), "irc": (6667,)}),
])
def test_modprobe_helpers(line: str, helpers: dict[str, tuple[int, ...]]) -> None:
    assert run(line + "\n").ct_helpers.ports == helpers


def test_modprobe_of_a_loaded_helper_keeps_its_ports() -> None:
    stack = run("modprobe nf_conntrack_ftp ports=2121\nmodprobe nf_nat_ftp\nmodprobe ip_conntrack_ftp\n")
    assert stack.ct_helpers.ports == {"ftp": (2121,)}
    assert not run("modprobe -r nf_conntrack_ftp\n", stack).ct_helpers.loaded("ftp")


@pytest.mark.parametrize("line", [
    "modprobe ip_tables", "modprobe iptable_nat", "modprobe ip_conntrack", "modprobe ipt_MASQUERADE",
    "modprobe ip_masq_portfw", "modprobe ip_masq_mfw", "/sbin/depmod -a", "modprobe -r ip_tables",
    "insmod /lib/modules/2.0.36/ipv4/ip_alias.o",
])
def test_modules_ipgate_always_has(line: str) -> None:
    stack = run(line + "\n")
    assert state(stack) == state(Stack())


@pytest.mark.parametrize(("line", "message"), [
    ("modprobe foo", "modprobe: FATAL: Module foo not found in directory /lib/modules/6.18.0-ipgate"),
    ("modprobe", "modprobe: ERROR: missing parameters. See -h."),
    ("insmod /tmp/foo.o", "insmod: ERROR: could not load module /tmp/foo.o: No such file or directory"),
    ("modprobe ip_masq_irc ports=6667,abc", "modprobe: ERROR: could not insert 'ip_masq_irc': Invalid argument"),
    ("modprobe nf_conntrack_irc ports=1,2,3,4,5,6,7,8,9",
     "modprobe: ERROR: could not insert 'nf_conntrack_irc': Invalid argument"),
    ("modprobe nf_conntrack_ftp port=21", "modprobe: ERROR: could not insert 'nf_conntrack_ftp': Unknown symbol in"
                                          " module, or unknown parameter (see dmesg)"),
    ("rmmod ip_masq_raudio", "rmmod: ERROR: Module ip_masq_raudio is not currently loaded"),
])
def test_module_errors(line: str, message: str) -> None:
    stack = run("modprobe ip_masq_irc\n")
    before = state(stack)
    assert failure("modprobe ip_conntrack_ftp\n" + line + "\n", stack) == f"rc.firewall:2: {message}"
    assert state(stack) == before


# -- bad lines: the tool's message, nothing changed -----------------------------------------------------------

BASE = "ipchains -P forward DENY\nipchains -A forward -s 192.168.0.0/24 -j MASQ\nipchains -M -S 7200 10 60\n"
TRY = "Try `ipchains -h' or 'ipchains --help' for more information."


@pytest.mark.parametrize(("line", "message"), [
    ("ipchains -A forward -s 192.168.0.0/33 -j MASQ", f"ipchains: invalid mask `33' specified {TRY}"),
    ("ipchains -A forward -s nowhere.invalid -j MASQ", f"ipchains: host/network `nowhere.invalid' not found {TRY}"),
    ("ipchains -A input -j MASQ", f"ipchains: masquerading not allowed for input and output chains {TRY}"),
    ("ipchains -P forward MASQUERADE", f"ipchains: Invalid policy `MASQUERADE' for -P {TRY}"),
    ("ipchains -P mychain DENY", f"ipchains: Can only set policy in built-in chains. {TRY}"),
    ("ipchains -A forward -s 0/0 80 -j ACCEPT", f"ipchains: can only specify ports for icmp, tcp or udp {TRY}"),
    ("ipchains -A forward -p ! tcp --dport 80 -j ACCEPT",
     f"ipchains: no ports allowed without specific protocol {TRY}"),
    ("ipchains -A forward -p tcp -s 0/0 nosuchservice -j ACCEPT",
     f"ipchains: invalid port/service `nosuchservice' specified {TRY}"),
    ("ipchains -A forward -p udp -y -j ACCEPT", f"ipchains: -y only allowed with TCP protocol {TRY}"),
    ("ipchains -M -S 7200 10", f"ipchains: -S requires 3 timeout values {TRY}"),
    ("ipchains -M -S 7200 10 sixty", f"ipchains: invalid timeout value `sixty' specified {TRY}"),
    ("ipchains -M", f"ipchains: -M/--masquerading requires -L/--list or -S/--set {TRY}"),
    ("ipchains -A forward -j ACCEPT -n", f"ipchains: Illegal option `-n' with this command  {TRY}"),
    ("ipchains -Q", f"ipchains: invalid option -- 'Q' {TRY}"),
    ("ipchains", f"ipchains: no command specified {TRY}"),
    ("ipchains -D forward -s 10.0.0.0/8 -j ACCEPT", "ipchains: bad rule (does a matching rule exist in that chain?)"),
    ("ipchains -D forward 5", "ipchains: bad rule (does a matching rule exist in that chain?)"),
    ("ipchains -A nochain -j ACCEPT", "ipchains: No chain by that name"),
    ("ipchains -A forward -s 10.0.0.1 -d 10.0.0.2 -j notthere", "ipchains: No target by that name"),
    ("ipchains -L", "ipgate: ipchains -L is not supported: the rules are iptables rules now, list them with"
                    " `iptables -L -n -v' or `iptables-save'"),
    ("ipchains -P forward MASQ", "ipgate: ipchains: a MASQ policy has no netfilter equivalent; use"
                                 " `-A forward ... -j MASQ' rules"),
    ("ipchains -A input -p tcp -j REDIRECT 8080", "ipgate: ipchains -j REDIRECT (transparent proxying) is not"
                                                  " supported"),
    ("/sbin/ipfwadm -F -a m -P tcp -S 192.168.0.0/24 1024:80",
     "/sbin/ipfwadm: invalid range of ports (1024 > 80) Try `/sbin/ipfwadm -h' for more information."),
    ("ipfwadm -F -a frobnicate", "ipfwadm: invalid policy \"frobnicate\" specified Try `ipfwadm -h' for more"
                                 " information."),
    ("ipfwadm -F -a", "ipfwadm: policy required for firewall entries Try `ipfwadm -h' for more information."),
    ("ipfwadm -I -a m -S 1.2.3.4", "ipfwadm: masquerading only allowed in combination with -F Try `ipfwadm -h' for"
                                   " more information."),
    ("ipfwadm -F -a m -P icmp", "ipfwadm: masquerading not allowed with protocol ICMP Try `ipfwadm -h' for more"
                                " information."),
    ("ipfwadm -M -s 7200", "ipfwadm: -s requires 3 timeout values Try `ipfwadm -h' for more information."),
    ("ipfwadm -F -d accept -S 10.0.0.1", "ipfwadm: setsockopt failed: Invalid argument"),
    ("ipfwadm -F -l", "ipgate: ipfwadm -l (listing rules: they are iptables rules now, list them with"
                      " `iptables -L -n -v' or `iptables-save') is not supported"),
    ("ipfwadm -A -a -S 1.2.3.4", "ipgate: ipfwadm -A (accounting rules) is not supported"),
    ("netstat -rn", "ipgate: netstat: only -M (--masquerade, with -n and -e) is implemented, not -r"),
])
def test_bad_lines_change_nothing(line: str, message: str) -> None:
    stack = run(BASE)
    before = state(stack)
    assert failure(f"{line}\n", stack) == f"rc.firewall:1: {message}"
    assert state(stack) == before
    # the same line in the middle of a script: its line number, and the script as a whole changes nothing
    assert failure(BASE + line + "\nipchains -A forward -j DENY\n", stack) == f"rc.firewall:4: {message}"
    assert state(stack) == before


def test_exit_statuses_are_the_tools() -> None:
    sh = Shell(run(BASE))
    assert sh.run_line("ipchains -A forward -s 0/0 80 -j ACCEPT").status == 2  # PARAMETER_PROBLEM
    assert sh.run_line("ipchains -D forward 9").status == 1                    # exit(!ret)
    assert sh.run_line("ipfwadm -F -d deny -S 1.1.1.1").status == 255          # exit(-1)
    assert sh.run_line("ipfwadm -F").status == 2
    assert sh.run_line("ipchains -V").out == "ipchains 1.3.9, 17-Mar-1999\n"
    assert sh.run_line("ipchains -h").out.splitlines()[2] == "Usage: ipchains -[ADC] chain rule-specification [options]"


def test_a_failing_multi_rule_command_is_atomic() -> None:
    """-b makes two rules; the second one's delete fails, so the first stays."""
    stack = run("ipchains -A forward -p udp -s 1.2.3.4 53 -d 5.6.7.8 -j ACCEPT\n")
    before = rules(stack)
    assert failure("ipchains -D forward -b -p udp -s 1.2.3.4 53 -d 5.6.7.8 -j ACCEPT\n", stack) == \
        "rc.firewall:1: ipchains: bad rule (does a matching rule exist in that chain?)"
    assert rules(stack) == before
