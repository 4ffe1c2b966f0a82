"""`ipnat` (IP Filter 4.1.x tools/ipnat.c) run through the shell, scripts and the command line.

Expected texts: `ipnat -Rnvf` is IP Filter's own test/expected/in2 (see
test_parse.py); the `-l`, `-s`, `-F`/`-C` and usage texts follow ipnat.c's
printf()s (dostats(), dotable(), printtqtable(), flushtable(), usage()) and
lib/printactivenat.c; getopt messages are the BSD libc's.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.ipnat.test_parse import IN2_EXPECTED, IN2_REGRESS

from ipgate.cli import main
from ipgate.nat.ipnat.rule import IPN_TCP, IPN_UDP, NAT_MAP, NAT_REDIRECT
from ipgate.nat.ipnat.state import NatSessionView, NatStats
from ipgate.shell import ScriptErrors, Shell, load_script

RULES = """\
# the ISP link
map ppp0 10.0.0.0/8 -> 0/32 portmap tcp/udp 40000:60000
map ppp0 10.0.0.0/8 -> 0/32
rdr ppp0 0/0 port 80 -> 10.0.0.5 port 8080 tcp
"""
RULES_LISTED = """\
map ppp0 10.0.0.0/8 -> 0.0.0.0/32 portmap tcp/udp 40000:60000
map ppp0 10.0.0.0/8 -> 0.0.0.0/32
rdr ppp0 0.0.0.0/0 port 80 -> 10.0.0.5 port 8080 tcp
"""
EMPTY_LIST = "List of active MAP/Redirect filters:\n\nList of active sessions:\n"
USAGE = "Usage: ipnat [-CFhlnrRsv] [-f filename]\n"


def conf(tmp_path: Path, text: str, name: str = "nat.conf") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_rnvf_prints_ipfilters_expected_in2_and_loads_nothing(tmp_path: Path) -> None:
    sh = Shell()
    res = sh.run_line(f"ipnat -Rnvf {conf(tmp_path, IN2_REGRESS)}")
    assert res.status == 0 and res.out == IN2_EXPECTED
    assert res.err.count("'sticky' for use with round-robin/IP splitting only") == 18
    assert sh.stack.ipnat.rules == [] and sh.stack.ipnat.generation == 0


def test_load_then_list(tmp_path: Path) -> None:
    sh = Shell()
    f = conf(tmp_path, RULES)
    assert sh.run_line(f"ipnat -f {f}") == sh.run_line("true")  # silent, status 0
    assert [r.kind for r in sh.stack.ipnat.rules] == ["map", "map", "rdr"]
    res = sh.run_line("ipnat -l")
    assert res.status == 0 and res.err == ""
    assert res.out == "List of active MAP/Redirect filters:\n" + RULES_LISTED + "\nList of active sessions:\n"
    verbose = sh.run_line("ipnat -lv").out
    assert verbose.endswith("\nList of active sessions:\n\nList of active host mappings:\n")


def test_verbose_load_echoes_each_rule(tmp_path: Path) -> None:
    res = Shell().run_line(f"ipnat -vf {conf(tmp_path, RULES)}")
    assert res.status == 0 and res.out == RULES_LISTED


def test_clear_flush_and_reload_in_one_command(tmp_path: Path) -> None:
    sh = Shell()
    f = conf(tmp_path, RULES)
    sh.run_line(f"ipnat -f {f}")
    other = conf(tmp_path, "map le0 192.168.0.0/16 -> 0/32\n", "other.conf")
    res = sh.run_line(f"ipnat -CF -f {other}")
    assert res.status == 0
    assert res.out == "0 entries flushed from NAT table\n3 entries flushed from NAT list\n"
    assert [r.ifname for r in sh.stack.ipnat.rules] == ["le0"]
    assert sh.run_line("ipnat -C").out == "1 entries flushed from NAT list\n"
    assert sh.stack.ipnat.rules == []


def test_donothing_flush_messages() -> None:
    # ipnat.c flushtable(): with -n no ioctl is made and n keeps its initial value (0, then 1).
    res = Shell().run_line("ipnat -nCF")
    assert res.out == "0 entries flushed from NAT table\n1 entries flushed from NAT list\n"


def test_remove_rules(tmp_path: Path) -> None:
    sh = Shell()
    sh.run_line(f"ipnat -f {conf(tmp_path, RULES)}")
    gone = conf(tmp_path, "map ppp0 10.0.0.0/8 -> 0/32\n", "gone.conf")
    assert sh.run_line(f"ipnat -rf {gone}").status == 0
    assert [r.line for r in sh.stack.ipnat.rules] == [2, 4]
    res = sh.run_line(f"ipnat -r -f {gone}")  # not there any more
    assert res.status == 1
    assert res.err == f"{gone}:1:1: ioctl(delete nat rule): No such process\n"
    assert [r.line for r in sh.stack.ipnat.rules] == [2, 4]


def test_remove_is_all_or_nothing(tmp_path: Path) -> None:
    sh = Shell()
    sh.run_line(f"ipnat -f {conf(tmp_path, RULES)}")
    mixed = conf(tmp_path, "map ppp0 10.0.0.0/8 -> 0/32\nmap ppp0 10.0.0.0/8 -> 0/32 frag\n", "mixed.conf")
    res = sh.run_line(f"ipnat -rf {mixed}")
    assert res.status == 1 and res.err == f"{mixed}:2:1: ioctl(delete nat rule): No such process\n"
    assert len(sh.stack.ipnat.rules) == 3


def test_rdr_rules_differ_by_their_new_port(tmp_path: Path) -> None:
    sh = Shell()
    sh.run_line(f"ipnat -f {conf(tmp_path, RULES)}")
    other_port = conf(tmp_path, "rdr ppp0 0/0 port 80 -> 10.0.0.5 port 8081 tcp\n", "p.conf")
    assert sh.run_line(f"ipnat -rf {other_port}").status == 1
    assert sh.run_line(f"ipnat -f {other_port}").status == 0
    assert len(sh.stack.ipnat.rules) == 4


def test_loading_twice_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    sh = Shell()
    f = conf(tmp_path, RULES)
    sh.run_line(f"ipnat -f {f}")
    before = list(sh.stack.ipnat.rules)
    res = sh.run_line(f"ipnat -f {f}")
    assert res.status == 1
    assert res.err == "".join(f"{f}:{n}:1: ioctl(add/insert nat rule): File exists\n" for n in (2, 3, 4))
    assert sh.stack.ipnat.rules == before


def test_a_bad_line_loads_nothing(tmp_path: Path) -> None:
    sh = Shell()
    sh.run_line(f"ipnat -f {conf(tmp_path, RULES)}")
    before, gen = list(sh.stack.ipnat.rules), sh.stack.ipnat.generation
    bad = conf(tmp_path, "map le0 10.0.0.0/8 -> 0/32\nmap le0 10.0.0.0/8 -> 0/32 portmap tcp 1:70000\n"
                         "map le1 10.0.0.0/8 -> 0/32\n", "bad.conf")
    res = sh.run_line(f"ipnat -f {bad}")
    assert res.status == 1 and res.out == ""
    assert res.err == f'{bad}:2:42: invalid port number error at "70000"\n'
    assert sh.stack.ipnat.rules == before and sh.stack.ipnat.generation == gen


def test_kernel_refusals(tmp_path: Path) -> None:
    # nat_resolverule(): no such proxy for the protocol -> ENOENT; nat_siocaddnat(): age 0/N -> EINVAL.
    sh = Shell()
    f = conf(tmp_path, "map le0 10.0.0.0/8 -> 0/32 proxy port 6667 irc/tcp\n"
                       "map le0 10.0.0.0/8 -> 0/32 age 0/10\n"
                       "map le0 10.0.0.0/8 -> 0/32 proxy port ftp ftp/tcp\n")
    res = sh.run_line(f"ipnat -f {f}")
    assert res.status == 1
    assert res.err == (f"{f}:1:1: ioctl(add/insert nat rule): No such file or directory\n"
                       f"{f}:2:1: ioctl(add/insert nat rule): Invalid argument\n")
    assert sh.stack.ipnat.rules == []


def test_kernel_copy_is_normalised(tmp_path: Path) -> None:
    # SIOCADNAT: a bimap loses IPN_NOTDST (it redirects) and IPN_NOTSRC (it maps).
    sh = Shell()
    f = conf(tmp_path, "bimap le0 from 10.1.1.1/32 to ! 10.0.0.0/8 -> 192.0.2.1/32\n")
    sh.run_line(f"ipnat -f {f}")
    assert sh.run_line("ipnat -l").out == ("List of active MAP/Redirect filters:\n"
                                           "bimap le0 from 10.1.1.1/32 to 10.0.0.0/8 -> 192.0.2.1/32\n"
                                           "\nList of active sessions:\n")


STATS_EMPTY = ("mapped\tin\t0\tout\t0\nadded\t0\texpired\t0\nno memory\t0\tbad nat\t0\n"
               "inuse\t0\norphans\t0\nrules\t{rules}\nwilds\t0\n")
TABLE_EMPTY = ("hash efficiency\t0.00%\nbucket usage\t0.00%\nminimal length\t0\nmaximal length\t0\n"
               "average length\t0.000\nTCP Entries per state\n"
               "     0     1     2     3     4     5     6     7     8     9    10\n"
               "     0     0     0     0     0     0     0     0     0     0     0\n")


def test_statistics(tmp_path: Path) -> None:
    sh = Shell()
    sh.run_line(f"ipnat -f {conf(tmp_path, RULES)}")
    assert sh.run_line("ipnat -s").out == STATS_EMPTY.format(rules=3) + TABLE_EMPTY
    # -n: no kernel is asked: zero counters, and dotable()/showtqtable_live() find nothing to print.
    assert sh.run_line("ipnat -ns").out == STATS_EMPTY.format(rules=0)
    assert sh.run_line("ipnat -sl").out == STATS_EMPTY.format(rules=3) + TABLE_EMPTY + (
        "List of active MAP/Redirect filters:\n" + RULES_LISTED + "\nList of active sessions:\n")
    assert sh.run_line("ipnat -nl").out == EMPTY_LIST


@pytest.mark.parametrize(("line", "err"), [
    ("ipnat -x", "ipnat: illegal option -- x\n" + USAGE),
    ("ipnat -lx", "ipnat: illegal option -- x\n" + USAGE),
    ("ipnat -f", "ipnat: option requires an argument -- f\n" + USAGE),
    ("/sbin/ipnat -q", "ipnat: illegal option -- q\nUsage: /sbin/ipnat [-CFhlnrRsv] [-f filename]\n"),
])
def test_usage(line: str, err: str) -> None:
    res = Shell().run_line(line)
    assert (res.status, res.out, res.err) == (1, "", err)


def test_no_option_does_nothing_and_operands_are_ignored() -> None:
    sh = Shell()
    assert sh.run_line("ipnat").status == 0
    res = sh.run_line("ipnat -l extra words")  # getopt stops at the first operand
    assert (res.status, res.out) == (0, EMPTY_LIST)


def test_missing_file() -> None:
    res = Shell().run_line("ipnat -f /nonexistent/nat.conf")
    assert (res.status, res.err) == (1, "fopen(/nonexistent/nat.conf) failed: No such file or directory\n")


def test_stdin() -> None:
    sh = Shell()
    sh.stdin = lambda: RULES
    res = sh.run_line("ipnat -nvf -")
    assert (res.status, res.out) == (0, RULES_LISTED)
    assert sh.run_line("ipnat -f -").status == 0 and len(sh.stack.ipnat.rules) == 3
    sh.stdin = lambda: "map le0 10/8 ->\n"
    assert sh.run_line("ipnat -f -").err == '(stdin):1:16: syntax error at ""\n'


def test_script_files_are_relative_to_the_script(tmp_path: Path) -> None:
    conf(tmp_path, RULES)
    script = tmp_path / "rc.conf"
    script.write_text("ip link add ppp0 type dummy\nipnat -CF -f nat.conf\n")
    stack = load_script(script.read_text(), str(script))
    assert [r.kind for r in stack.ipnat.rules] == ["map", "map", "rdr"]
    assert str(tmp_path) != os.getcwd()


def test_script_with_a_bad_nat_file_changes_nothing(tmp_path: Path) -> None:
    conf(tmp_path, "map ppp0 10.0.0.0/8 -> 0/32\nmap ppp0 10.0.0.0/8 => 0/32\n")
    script = tmp_path / "rc.conf"
    script.write_text("ipnat -f nat.conf\n")
    base = load_script("", "empty")
    with pytest.raises(ScriptErrors) as e:
        load_script(script.read_text(), str(script), base)
    assert str(e.value) == f'{script}:1: nat.conf:2:21: syntax error at "="'
    assert base.ipnat.rules == []


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "rc.conf"
    conf(tmp_path, RULES)
    script.write_text("ipnat -f nat.conf\n")
    assert main(["-c", str(script), "ipnat", "-l"]) == 0
    assert capsys.readouterr().out == "List of active MAP/Redirect filters:\n" + RULES_LISTED + (
        "\nList of active sessions:\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(IN2_REGRESS))
    assert main(["ipnat", "-Rnvf", "-"]) == 0
    assert capsys.readouterr().out == IN2_EXPECTED


# -- sessions, through the session-table hook ------------------------------------------

@dataclass(frozen=True)
class FakeSession:
    redir: int
    flags: int
    inip: int
    inport: int
    outip: int
    outport: int
    oip: int
    oport: int
    p: int = 6
    use: int = 0
    hv: tuple[int, int] = (17, 1030)
    ifnames: tuple[str, str] = ("ppp0", "ppp0")
    pkts: tuple[int, int] = (3, 4)
    bytes: tuple[int, int] = (180, 240)

    def age(self, ticks: int) -> int:
        return 1200 - ticks


@dataclass(frozen=True)
class FakeHostMap:
    src: int
    dst: int
    mapip: int
    ref: int


@dataclass
class FakeTable:
    items: list[FakeSession] = field(default_factory=list)

    def hostmaps(self) -> list[FakeHostMap]:
        return [FakeHostMap(ip("10.1.1.1"), ip("198.51.100.7"), ip("192.0.2.1"), 2)]

    def sessions(self) -> Iterable[NatSessionView]:
        return list(self.items)

    def flush(self) -> int:
        n = len(self.items)
        self.items.clear()
        return n

    def stats(self) -> NatStats:
        buckets = [0] * 2047
        buckets[17] = 2
        buckets[5] = 1
        return NatStats(mapped=(5, 7), added=3, expired=1, inuse=len(self.items), buckets=tuple(buckets),
                        tcp_states=(0, 0, 0, 0, 2), rule_hits=(9, 0, 4))

    def now(self) -> int:
        return 200


def ip(s: str) -> int:
    a, b, c, d = (int(x) for x in s.split("."))
    return a << 24 | b << 16 | c << 8 | d


SESSIONS = [
    FakeSession(NAT_MAP, IPN_TCP, ip("10.1.1.1"), 1025, ip("192.0.2.1"), 40000, ip("198.51.100.7"), 80),
    FakeSession(NAT_MAP, 0, ip("10.1.1.2"), 0, ip("192.0.2.1"), 0, ip("198.51.100.7"), 0, p=1),
    FakeSession(NAT_REDIRECT, IPN_UDP, ip("10.0.0.5"), 8080, ip("192.0.2.1"), 80, ip("203.0.113.9"), 5353, p=17),
]
SESSION_LINES = (
    "MAP 10.1.1.1        1025  <- -> 192.0.2.1       40000 [198.51.100.7 80]\n"
    "MAP 10.1.1.2        <- -> 192.0.2.1       [198.51.100.7]\n"
    "RDR 10.0.0.5        8080  <- -> 192.0.2.1       80    [203.0.113.9 5353]\n"
)


def loaded_with_sessions(tmp_path: Path) -> Shell:
    sh = Shell()
    sh.run_line(f"ipnat -f {conf(tmp_path, RULES)}")
    sh.stack.ipnat.sessions = FakeTable(list(SESSIONS))
    return sh


def test_sessions_listed_as_printactivenat(tmp_path: Path) -> None:
    sh = loaded_with_sessions(tmp_path)
    res = sh.run_line("ipnat -l")
    assert res.out == "List of active MAP/Redirect filters:\n" + RULES_LISTED + (
        "\nList of active sessions:\n" + SESSION_LINES)
    hits = sh.run_line("ipnat -hl").out.splitlines()
    assert hits[1:4] == ["9 " + RULES_LISTED.splitlines()[0], "0 " + RULES_LISTED.splitlines()[1],
                         "4 " + RULES_LISTED.splitlines()[2]]


def test_sessions_verbose(tmp_path: Path) -> None:
    out = loaded_with_sessions(tmp_path).run_line("ipnat -lv").out
    first = out.split("List of active sessions:\n")[1].split("\n")[:3]
    assert first == ["MAP 10.1.1.1        1025  <- -> 192.0.2.1       40000 [198.51.100.7 80]",
                     "\tttl 1000 use 0 sumd 0/0 pr 6 bkt 17/1030 flags 1",
                     "\tifp ppp0,ppp0 bytes 180/240 pkts 3/4 ipsumd 0"]
    assert out.endswith("\nList of active host mappings:\n10.1.1.1,198.51.100.7 -> 192.0.2.1 (use = 2 hv = 0)\n")


def test_flush_sessions(tmp_path: Path) -> None:
    sh = loaded_with_sessions(tmp_path)
    assert sh.run_line("ipnat -F").out == "3 entries flushed from NAT table\n"
    assert sh.run_line("ipnat -l").out.endswith("List of active sessions:\n")
    assert len(sh.stack.ipnat.rules) == 3  # -F leaves the rules


def test_statistics_from_the_session_table(tmp_path: Path) -> None:
    out = loaded_with_sessions(tmp_path).run_line("ipnat -s").out
    assert out == ("mapped\tin\t5\tout\t7\nadded\t3\texpired\t1\nno memory\t0\tbad nat\t0\n"
                   "inuse\t3\norphans\t0\nrules\t3\nwilds\t0\n"
                   "hash efficiency\t66.67%\nbucket usage\t0.10%\nminimal length\t0\nmaximal length\t2\n"
                   "average length\t1.500\nTCP Entries per state\n"
                   "     0     1     2     3     4     5     6     7     8     9    10\n"
                   "     0     0     0     0     2     0     0     0     0     0     0\n")
