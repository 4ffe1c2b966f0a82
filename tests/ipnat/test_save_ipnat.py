"""`ipgate save` with IP Filter NAT rules: one ``echo 'RULE' | ipnat -f -`` line each, loading back the same rules.

Checked: the rules (the `NatRule` objects, in order) and `ipnat -l`/`-lR` after save -> load; the saved
script is a fixed point.  Rule sets: IP Filter's regression files (test_parse.py), a form of every kind and
option, the values IP Filter's grammar actions leave behind that printnat() does not show, names that need
quoting for ipnat.conf and for sh, and `conf_rule` against a seeded generator of rule texts.  The lines are
also run by the real sh, whose echo must give the rule text.  The pipe itself is the script shell's
(shell.py): `echo`/`printf` output becomes the standard input `ipnat -f -` reads.
"""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest
from tests.ipnat.test_parse import IPF_TESTS

from ipgate.errors import ConfigError
from ipgate.nat.ipnat.parse import parse
from ipgate.nat.ipnat.printer import conf_rule, printnat
from ipgate.nat.ipnat.rule import NatRule
from ipgate.nat.ipnat.state import IpnatState, NatIoctlError
from ipgate.netfilter.names import Resolver
from ipgate.save import save
from ipgate.shell import ScriptErrors, Shell, load_script
from ipgate.stack import Stack

NAMES = Resolver.builtin()
PIPE = " | ipnat -f -"


def with_rules(text: str, stack: Stack | None = None) -> Stack:
    """A stack holding the rules of `text` that the kernel takes, one by one (duplicates refused)."""
    st = stack if stack is not None else Stack()
    for r in parse(text, "t.conf", st.netfilter.resolver).rules:
        try:
            st.ipnat.add(r)
        except NatIoctlError:
            pass
    return st


def listings(st: Stack) -> tuple[str, str]:
    sh = Shell(st)
    return sh.run_line("ipnat -l").out, sh.run_line("ipnat -lR").out


def round_trip(st: Stack) -> str:
    text = save(st)
    again = load_script(text, "<saved>")
    assert again.ipnat.rules == st.ipnat.rules, text
    assert listings(again) == listings(st)
    assert save(again) == text
    return text


def ipnat_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.endswith(PIPE)]


# -- the pipe in the script shell ------------------------------------------------------

def test_echo_and_printf_pipe_into_ipnat_stdin() -> None:
    sh = Shell()
    res = sh.run_line("echo 'map le0 10.0.0.0/8 -> 192.0.2.1/32 portmap tcp/udp auto' | ipnat -f -")
    assert (res.status, res.out, res.err) == (0, "", "")
    assert sh.run_line("printf '%s\\n' 'rdr le0 0/0 port 80 -> 10.0.0.5 port 8080' | /sbin/ipnat -f -").status == 0
    assert sh.run_line("ipnat -l").out == (
        "List of active MAP/Redirect filters:\n"
        "map le0 10.0.0.0/8 -> 192.0.2.1/32 portmap tcp/udp auto\n"
        "rdr le0 0.0.0.0/0 port 80 -> 10.0.0.5 port 8080 tcp\n\nList of active sessions:\n")
    assert sh.stdin is None  # the pipe's input is gone after the line


def test_pipe_errors() -> None:
    sh = Shell()
    sh.stdin = lambda: "map le1 0/0 -> 0/32\n"
    line = "echo 'map le0 10.0.0.0/8 -> 0/32' | ipnat -f -"
    assert sh.run_line(line).status == 0
    assert sh.run_line(line).err == "(stdin):1:1: ioctl(add/insert nat rule): File exists\n"
    assert sh.run_line("echo 'map le0 10/8 ->' | ipnat -f -").err == '(stdin):1:16: syntax error at ""\n'
    assert sh.run_line("echo x |").status == 2
    assert sh.run_line("echo x | frob").status == 127
    assert sh.run_line("ipnat -f -").status == 0  # without a pipe: the shell's own stdin, as before
    assert [r.ifname for r in sh.stack.ipnat.rules] == ["le0", "le1"]


def test_pipe_in_a_script_reports_its_line() -> None:
    script = "echo 'map le0 10.0.0.0/8 -> 0/32' | ipnat -f -\necho 'map le0 10.0.0.0/8 => 0/32' | ipnat -f -\n"
    with pytest.raises(ScriptErrors) as e:
        load_script(script, "rc.conf")
    assert str(e.value) == 'rc.conf:2: (stdin):1:20: syntax error at "="'


# -- save -> load ----------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(IPF_TESTS))
def test_ipfilter_regression_rules_round_trip(name: str) -> None:
    reg, _exp, _numeric = IPF_TESTS[name]
    st = with_rules(reg)
    assert len(st.ipnat.rules) >= 3
    text = round_trip(st)
    assert "not saved" not in text and len(ipnat_lines(text)) == len(st.ipnat.rules)


# Every kind and option, and what printnat() gets wrong for reading back (marked *).
FORMS = """\
map ppp0 10.0.0.0/8 -> 209.1.2.0/24 portmap tcp/udp 1025:65000
map ppp0 10.0.0.0/8 -> 0/32 portmap tcp auto
map ppp0 10.0.0.0/8 -> 0/32 portmap udp 20000:29999 sequential
map ppp0 10.0.0.0/8 -> 0/32 portmap tcp/udp 30000:39999 sequential frag
map ppp0 10.1.0.0/16 -> 0/32 portmap 1025:65000
map le0 10.2.0.0/16 -> range 203.1.1.23-203.1.3.45 round-robin frag age 30/60 mssclamp 1452 tag webfarm
map le0 from 10.3.0.0/16 port > 1023 ! to 192.0.2.0/24 port = 53 -> 198.51.100.1/32 udp
map le0 from 10.4.0.0/16 to any port 1 <> 1023 -> 0/32
map le0 from 10.5.0.0/16 to any port 1 >< 1023 -> 0/32 tcp
map le0 from 10.6.0.0/16 to any port 1:1023 -> 0/32 udp
map le0 from 10.7.0.0/16 port != 0 to any port <= 80 -> 0/32 tcp
map le0,le1 10.8.0.0/16 -> 0/32 gre
map le0 10.9.0.0/255.0.255.0 -> 0/32 250
map ppp0 192.168.0.0/16 -> 0/32 proxy port ftp ftp/tcp
map ppp0 192.168.1.0/24 -> 0/32 proxy port 0 ftp/tcp
map fxp0 from 192.168.0.0/18 to 0/0 port = 21 -> 1.2.3.4/32 proxy port 21 ftp/tcp
map bar0 0/0 -> 0/32 icmpidmap icmp 1000:2000
map bar0 10.0.0.0/8 -> 0/32 icmpidmap icmp 0:0
map bar0 from 10.1.0.0/16 to 192.0.2.0/24 -> 0/32 icmpidmap icmp 1:2
map le0 10.10.0.0/16 -> 0/32 age 4294967295/4294967295 mssclamp 4294967295
map le0 from 10.11.0.0/16 to any port = 53 -> 0/32 icmp
map le0 from 10.12.0.0/16 port = 5 to any -> 0/32 proxy port 21 ftp/ip tcp
map le0 10.13.0.0/16 -> 0/32 portmap auto gre
bimap le0 10.1.1.1/32 -> 192.0.2.1/32
bimap le0 from 10.1.1.2/32 to any port = 80 -> 192.0.2.2/32 tcp
map-block ppp0 172.192.0.0/16 -> 209.1.2.0/24 ports auto
map-block ppp0 10.0.0.0/24 -> 209.1.2.0/30 ports 1000 round-robin tcp
map-block ppp0 10.0.1.0/24 -> 209.1.3.0/30 ports 1000 icmp
map-block ppp0 10.0.2.0/24 -> 209.1.4.0/30
rdr le0 203.1.2.3/32 port 80 -> 203.1.2.3,203.1.2.4 port 80 tcp round-robin sticky
rdr le0 203.1.2.3/32 port 81 -> 203.1.2.5 port 80 tcp round-robin frag age 10/20 sticky mssclamp 1000 tag t
rdr le0 9.8.7.6/32 port 1000-2000 -> 1.1.1.1 port = 5555 tcp/udp
rdr le0 9.8.7.6/32 port 1000:2000 -> 1.1.1.1 port 5555 udp
rdr le0 0/0 port 80 -> 0 port 8080
rdr le0 0/0 port 80 -> 0/0 port 80
rdr le0 9.8.7.6/32 -> 1.1.1.1 ip
rdr le0 9.8.7.7/32 -> 1.1.1.1 47
rdr le0 9.8.7.8/32 port 0 -> 1.1.1.1 port = 0
rdr le0 ! from 192.0.2.0/24 to 203.0.113.5/32 port = 80 -> 10.0.0.5 port 8080 tcp
rdr le0 from any port > 1023 to 203.0.113.6/32 port 1 <> 1023 -> 10.0.0.5 udp
rdr le0 from any to 9.8.7.6/32 port = 8888 -> 1.1.1.1 port 888 icmp frag
rdr le0 from any to 9.8.7.9/32 port = 80 -> 1.1.1.1 port 81 tcp proxy ftp
rdr ge0 9.8.7.6/32 port 21 -> 1.1.1.1 port 21 tcp proxy ftp
rdr ge0 9.8.7.7/32 -> 1.1.1.1 proxy port 21 ftp/tcp
rdr ge0 from any port = 5 to 9.8.7.8/32 port = 80 -> 1.1.1.1 port 80 gre proxy port 21 ftp/tcp
rdr le0 0/0 -> test.host.dots,localhost
"""


def test_every_kind_and_option_round_trips() -> None:
    st = with_rules(FORMS)
    assert len(st.ipnat.rules) == len(FORMS.splitlines())
    text = round_trip(st)
    assert ipnat_lines(text)[0] == (
        "echo 'map ppp0 10.0.0.0/8 -> 209.1.2.0/24 portmap tcp/udp 1025:65000' | ipnat -f -")


@pytest.mark.parametrize(("rule", "printed", "saved"), [
    # printnat() leaves `round-robin` out on a map
    ("map le0 10.2.0.0/16 -> range 1.1.1.1-1.1.1.9 round-robin",
     "map le0 10.2.0.0/16 -> range 1.1.1.1-1.1.1.9", "map le0 10.2.0.0/16 -> range 1.1.1.1-1.1.1.9 round-robin"),
    # ...prints forms its grammar refuses
    ("map le0 10.1.0.0/16 -> 0/32 portmap 1:2", "map le0 10.1.0.0/16 -> 0.0.0.0/32 portmap ip 1:2",
     "map le0 10.1.0.0/16 -> 0.0.0.0/32 portmap 1:2"),
    ("map le0 10.0.0.0/8 -> 0/32 portmap tcp 1:2 sequential frag",
     "map le0 10.0.0.0/8 -> 0.0.0.0/32 portmap tcp 1:2 frag sequential",
     "map le0 10.0.0.0/8 -> 0.0.0.0/32 portmap tcp 1:2 sequential frag"),
    ("map le0 10.0.0.0/8 -> 0/32 proxy port 0 ftp/tcp", "map le0 10.0.0.0/8 -> 0.0.0.0/32 proxy port  ftp/tcp",
     "map le0 10.0.0.0/8 -> 0.0.0.0/32 proxy port 0 ftp/tcp"),
    ("map le0 0/0 -> 0/32 mssclamp 4294967295", "map le0 0.0.0.0/0 -> 0.0.0.0/32 mssclamp -1",
     "map le0 0.0.0.0/0 -> 0.0.0.0/32 mssclamp 4294967295"),
    # ...and does not show a comparison the protocol cleared (in_dport keeps 53: `ipnat -r` compares it)
    ("map le0 from 10.0.0.0/8 to any port = 53 -> 0/32 icmp", "map le0 from 10.0.0.0/8 to any -> 0.0.0.0/32 icmp",
     "map le0 from 10.0.0.0/8 to any port = 53 -> 0.0.0.0/32 icmp"),
    # names that are not plain words are quoted
    ('map "port" 0/0 -> 0/32 tag "a b"', "map port 0.0.0.0/0 -> 0.0.0.0/32 tag a b",
     'map "port" 0.0.0.0/0 -> 0.0.0.0/32 tag "a b"'),
])
def test_conf_rule_where_printnat_does_not_read_back(rule: str, printed: str, saved: str) -> None:
    r = with_rules(rule).ipnat.rules[0]
    assert printnat(r, NAMES, numeric=True) == printed + "\n"
    assert conf_rule(r, NAMES) == saved + "\n"
    assert with_rules(saved).ipnat.rules == [r]


# Interface, proxy and tag names that need quoting: for ipnat.conf, for sh, or both.
QUOTED = r"""
map "it's" 10.0.0.0/8 -> 0/32 tag "o'clock"
map 'say "hi"' 10.0.0.0/8 -> 0/32
map "a b","c;d" 10.0.0.0/8 -> 0/32 tag "x y"
map "tcp" 10.0.0.0/8 -> 0/32
map "0eth" 10.0.0.0/8 -> 0/32
map "-" 10.0.0.0/8 -> 0/32
map "$ext" 10.0.0.0/8 -> 0/32 tag "$(reboot)"
map "#1" 10.0.0.0/8 -> 0/32 tag "a|b"
map "!x" from any to any port > 1 -> 0/32 tag "<>&"
map "a\b" 10.0.0.0/8 -> 0/32
map \"\'x 10.0.0.0/8 -> 0/32 tag "`id`"
"""


def test_names_that_need_quoting_round_trip() -> None:
    st = with_rules(QUOTED)
    assert [r.ifname for r in st.ipnat.rules] == [
        "it's", 'say "hi"', "a b", "tcp", "0eth", "-", "$ext", "#1", "!x", "a\\b", "\"'x"]
    text = round_trip(st)
    lines = ipnat_lines(text)
    assert len(lines) == len(st.ipnat.rules)
    assert lines[0] == """echo 'map "it'"'"'s" 10.0.0.0/8 -> 0.0.0.0/32 tag "o'"'"'clock"' | ipnat -f -"""
    assert lines[9] == r"""printf '%s\n' 'map "a\b" 10.0.0.0/8 -> 0.0.0.0/32' | ipnat -f -"""  # some echos eat \b
    assert lines[10] == r"""printf '%s\n' 'map \"\'"'"'\x 10.0.0.0/8 -> 0.0.0.0/32 tag `id`' | ipnat -f -"""


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_real_sh_echoes_the_rule_texts() -> None:
    st = with_rules(QUOTED + FORMS)
    lines = ipnat_lines(save(st))
    assert len(lines) == len(st.ipnat.rules)
    for line, r in zip(lines, st.ipnat.rules, strict=True):
        got = subprocess.run(["sh", "-c", line[:-len(PIPE)]], capture_output=True, text=True, check=True).stdout
        assert got == conf_rule(r, st.netfilter.resolver), line


def test_a_rule_no_line_can_hold_is_left_as_a_comment() -> None:
    # a backslash-newline inside a word puts a line break into the name; a script line cannot carry it
    st = with_rules("map le0 10.0.0.0/8 -> 0/32\nmap a\\\nb 0/0 -> 0/32\nmap le1 10.0.0.0/8 -> 0/32\n")
    assert st.ipnat.rules[1].ifname == "a\nb"
    text = save(st)
    assert "# not saved (cannot be written back): ipnat rule map a b 0.0.0.0/0 -> 0.0.0.0/32\n" in text
    assert load_script(text, "<saved>").ipnat.rules == [st.ipnat.rules[0], st.ipnat.rules[2]]


def test_with_the_rest_of_a_configuration() -> None:
    st = load_script(
        "ip link add ppp0 type dummy\nip addr add 192.0.2.1/24 dev ppp0\nip link set dev ppp0 up\n"
        "iptables -t nat -A POSTROUTING -o ppp0 -j MASQUERADE\n"
        "echo 'rdr ppp0 0/0 port 80 -> 10.0.0.5 port 8080 tcp' | ipnat -f -\n"
        "echo 'map ppp0 10.0.0.0/8 -> 0/32 portmap tcp/udp auto' | ipnat -f -\n", "rc.conf")
    text = round_trip(st)
    assert "ipnat" not in text.split("\n", 1)[0]
    assert ipnat_lines(text) == [
        "echo 'rdr ppp0 0.0.0.0/0 port 80 -> 10.0.0.5 port 8080 tcp' | ipnat -f -",
        "echo 'map ppp0 10.0.0.0/8 -> 0.0.0.0/32 portmap tcp/udp auto' | ipnat -f -"]
    assert save(Stack()).count("ipnat") == 0


# -- conf_rule against generated rule texts ---------------------------------------------

def _rule_text(rnd: random.Random) -> str:
    """A random rule of the grammar, often one the parser or the kernel refuses."""
    def c(*xs: str) -> str:
        return rnd.choice(xs)

    def addr() -> str:
        return c("any", "0/0", "10.1.2.3/8", "10.1.2.3", "10.1.2.3/255.0.255.0", "10.0.0.0 mask 0xffff0000",
                 "0/32", "0", "localhost/32")

    def port() -> str:
        return c("0", "1", "21", "80", "8888", "ftp", "65535")

    def obj() -> str:
        if rnd.random() < 0.5:
            return addr()
        cmp = (f"{c('=', '!=', '<', '>', '<=', '>=', 'eq', 'gt')} {port()}" if rnd.random() < 0.7
               else f"{port()} {c('<>', '><', ':')} {port()}")
        return f"{addr()} port {cmp}"

    def opts(sticky: bool) -> str:
        return "".join(w for w, p in ((" round-robin", 0.3), (" frag", 0.3), (" age " + c("10", "10/20", "0/5"), 0.3),
                                      (" sticky", 0.3 if sticky else 0), (" mssclamp " + c("1452", "4294967295"), 0.3),
                                      (" tag " + c("t1", '"a b"'), 0.2)) if rnd.random() < p)

    ifn = c("le0", '"a b"', "'x\"y'", '"port"', "eth0.100") + c("", "", ",le1")
    proto = c("", "", "", " tcp", " udp", " tcp/udp", " icmp", " ip", " gre", " 250")
    k = rnd.random()
    if k < 0.45:
        src = (f"from {c('', '! ')}{obj()} {c('', '! ')}to {c('', '! ')}{obj()}" if rnd.random() < 0.5 else addr())
        rhs = c(addr(), "range 203.1.1.23-203.1.3.45")
        tail = c("", "", f" portmap{c('', ' tcp', ' udp', ' tcp/udp')} {c('auto', '1025:65000', '0:0')}"
                 f"{c('', ' sequential')}", f" icmpidmap icmp {c('1:2', '0:0')}",
                 f" proxy port {c('ftp', '21', '0')} {c('ftp', 'nope')}/{c('tcp', 'udp', 'ip')}")
        return f"{c('map', 'bimap')} {ifn} {src} -> {rhs}{tail}{opts(False)}{proto}"
    if k < 0.6:
        return (f"map-block {ifn} {addr()} -> {c('1.2.3.0/24', '0/32')}{c('', ' ports auto', ' ports 1000')}"
                f"{opts(False)}{proto}")
    if rnd.random() < 0.5:
        left = f"{c('', '! ')}from {c('', '! ')}{obj()} to {obj()}"
    else:
        left = addr() + c("", f" port {port()}", f" port {port()}-{port()}")
    nport = c("", f" port {c('', '= ')}{port()}")
    proxy = c("", "", " proxy ftp", f" proxy port {c('21', 'ftp')} ftp/tcp")
    return (f"rdr {ifn} {left} -> {c('1.1.1.1', '1.1.1.1,1.1.1.2', '0/0', '0')}{nport}{proto}{opts(True)}"
            f"{proxy}")


def _loaded(text: str) -> NatRule | None:
    try:
        rules = parse(text, "gen", NAMES).rules
    except ConfigError:
        return None
    st = IpnatState()
    return st.rules[0] if len(rules) == 1 and not st.load(rules) else None


def test_conf_rule_reads_back_every_generated_rule() -> None:
    rnd = random.Random(4)
    seen = 0
    for _ in range(4000):
        r = _loaded(_rule_text(rnd))
        if r is None:
            continue
        seen += 1
        saved = conf_rule(r, NAMES)
        assert _loaded(saved) == r, (printnat(r, NAMES, True), saved)
    assert seen > 1500


def test_generated_rule_sets_round_trip() -> None:
    rnd = random.Random(5)
    st = Stack()
    while len(st.ipnat.rules) < 300:
        r = _loaded(_rule_text(rnd))
        if r is not None and not any(r.same_as(old) for old in st.ipnat.rules):
            st.ipnat.add(r)
    text = round_trip(st)
    assert "not saved" not in text
