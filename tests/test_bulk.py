"""route/bulk.py: the fast loader must leave exactly what the general path leaves."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import pytest

from ipgate.errors import ConfigError
from ipgate.route.bulk import NotBulk, load_lines, load_routes
from ipgate.route.rules import RuleSet
from ipgate.shell import ScriptErrors, Shell, load_script
from ipgate.stack import Stack

SETUP = """\
ip link add veth0 type veth peer name veth1
ip link set veth0 up
ip link set veth1 up
ip link add dum0 type dummy
ip addr add 192.0.2.2/24 dev veth0
ip addr add 198.51.100.2/24 dev veth1
echo "100 isp1" >> /etc/iproute2/rt_tables
ip route add 10.99.0.0/16 dev veth1 table 100
ip route add 10.98.0.0/16 dev veth0 table 7
"""

# gateway words: reachable in main, only in table 100, on the other device, unreachable
GWS = ["192.0.2.1", "192.0.2.254", "198.51.100.9", "10.99.0.1", "203.0.113.5", "192.0.2.010", "198.51.100"]


def base() -> Stack:
    return load_script(SETUP, "setup")


def dump(st: Stack) -> str:
    sh = Shell(st)
    out = sh.run_line("ip route show table all").out
    out += sh.run_line("ip -d -j route show table all").out
    out += repr(sorted((tb, len(t), t.num_default) for tb, t in st.tables.items()))
    # and whatever else route_add() might touch (flags, counters...); caches and the
    # packet-path state (netfilter, conntrack) are not the routes' business
    return out + repr(sorted((k, repr(v.rules if isinstance(v, RuleSet) else v)) for k, v in vars(st).items()
                             if k not in NOT_COMPARED))


NOT_COMPARED = ("tables", "interner", "gen", "route_cache", "route_cache_gen", "netfilter", "conntrack")


def gen(rng: random.Random, n: int) -> list[str]:
    """`route add` lines: random prefixes and options, some host bits, many repeats."""
    lines: list[str] = []
    seen: list[str] = []
    for _ in range(n):
        r = rng.random()
        if seen and r < 0.15:
            line = rng.choice(seen)  # exact duplicate: File exists
            if rng.random() < 0.5:
                line += f" metric {rng.choice([5, 10, 20])}"  # or a sibling with another metric
            lines.append(line)
            continue
        plen = rng.choice([0, 8, 12, 16, 19, 20, 22, 23, 24, 24, 24, 24, 25, 28, 30, 32])
        addr = rng.getrandbits(32) & ~(0xFFFFFFFF >> plen if plen else 0xFFFFFFFF)
        if rng.random() < 0.02 and plen < 32:
            addr |= 1  # host bits set: Invalid prefix
        dst = "default" if plen == 0 and rng.random() < 0.5 else \
            f"{addr >> 24}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}" + ("" if plen == 32 and
                                                                                rng.random() < 0.5 else f"/{plen}")
        parts = [[dst], ["via", rng.choice(GWS)]]
        if rng.random() < 0.3:
            parts.append(["dev", rng.choice(["veth0", "veth1", "dum0"])])
        if rng.random() < 0.3:
            parts.append(["table", rng.choice(["100", "isp1", "main", "7", "200", "0x64", "0", "unspec"])])
        if rng.random() < 0.2:
            parts.append([rng.choice(["metric", "priority", "preference"]), rng.choice(["0", "7", "100", "0x10"])])
        if rng.random() < 0.2:
            parts.append([rng.choice(["proto", "protocol"]), rng.choice(["static", "zebra", "bird", "42"])])
        if rng.random() < 0.2:
            rng.shuffle(parts)  # ip accepts the words in any order
        words = [w for part in parts for w in part]
        line = f"route {rng.choice(['add', 'a', 'add'])} " + " ".join(words)
        seen.append(line)
        lines.append(line)
    return lines


def slow_run(st: Stack, lines: list[str]) -> tuple[list[str], list[tuple[int, str]]]:
    """Every line through the general path: (lines that worked, (index, error) of the others)."""
    sh = Shell(st)
    good: list[str] = []
    bad: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        res = sh.run_line("ip " + line)
        if res.status:
            bad.append((i, res.err.strip().replace("\n", " ")))
        else:
            good.append(line)
    return good, bad


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str], list[tuple[int, str]], Stack]:
    lines = gen(random.Random(7), 4000)
    st = base()
    good, bad = slow_run(st, lines)
    kinds = {msg for _, msg in bad}
    # the corpus exercises every kind of refusal
    assert "RTNETLINK answers: File exists" in kinds
    assert "Error: Invalid prefix for given prefix length." in kinds
    assert "Error: Nexthop has invalid gateway." in kinds
    assert len(good) > 1500
    return lines, good, bad, st


def test_same_tables_as_slow_path(corpus: tuple[list[str], list[str], list[tuple[int, str]], Stack]) -> None:
    _, good, _, slow = corpus
    fast = base()
    # half with the leading `ip`, as `ip -batch` files may have it
    assert load_routes(fast, [("ip " if i % 2 else "") + g for i, g in enumerate(good)], "f") == len(good)
    assert dump(fast) == dump(slow)
    assert fast.tables[254].index is None  # small: no index
    # the corpus has prefixes holding several routes (other metrics), also the fast way
    assert any(len(t.leaf(p, n)) > 1 for t in fast.tables.values() for p, n, _ in t.entries())


def test_errors_match_slow_path_and_leave_stack_unchanged(
        corpus: tuple[list[str], list[str], list[tuple[int, str]], Stack]) -> None:
    lines, _, bad, _ = corpus
    rng = random.Random(3)
    st = base()
    before = dump(st)
    bad_at = {k for k, _ in bad}
    for n, (i, msg) in enumerate(rng.sample(bad, 25)):
        # the good lines before the bad one, then the bad one: same line, same text
        prefix = [ln for j, ln in enumerate(lines[:i]) if j not in bad_at]
        with pytest.raises(ConfigError) as fast_err:
            load_routes(st, ["ip " + ln for ln in prefix + [lines[i]]], "t.conf")
        assert (fast_err.value.line, fast_err.value.message) == (len(prefix) + 1, msg)
        assert not isinstance(fast_err.value, NotBulk)
        assert dump(st) == before
        if n < 3:  # and through shell.load_script itself
            text = "".join(f"ip {ln}\n" for ln in prefix + [lines[i]])
            with pytest.raises(ScriptErrors) as slow_err:
                load_script(text, "t.conf", base())
            assert str(fast_err.value) == str(slow_err.value.errors[0])


def test_mixed_errors_keep_the_lines_before(
        corpus: tuple[list[str], list[str], list[tuple[int, str]], Stack]) -> None:
    # load_lines (scripts, ip -batch) is not atomic: like line-by-line execution,
    # the lines before a refused one stay applied, the rest never runs
    lines, _, bad, _ = corpus
    rng = random.Random(4)
    bad_at = {k for k, _ in bad}
    by_msg: dict[str, list[int]] = {}
    for i, msg in bad:
        by_msg.setdefault(msg, []).append(i)
    for msg, where in sorted(by_msg.items()):
        i = rng.choice(where)
        head = ["ip " + ln for j, ln in enumerate(lines[:i]) if j not in bad_at] + ["ip " + lines[i]]
        want = base()
        sh = Shell(want)
        assert [sh.run_line(ln).status == 0 for ln in head] == [True] * (len(head) - 1) + [False]
        got = base()
        with pytest.raises(ConfigError) as e:
            seq = head + ["ip " + ln for ln in lines[i + 1: i + 50]]
            load_lines(got, enumerate(seq, 1), "m", _other(Shell(got), "m"))
        assert e.value.line == len(head)
        assert e.value.message == msg
        assert dump(got) == dump(want)


def test_not_bulk_lines_are_refused_untouched() -> None:
    st = base()
    before = dump(st)
    for odd in ["route add 10/8 via 192.0.2.1", "route add 10.0.0.0/8 dev veth0",
                "route add 10.0.0.0/8 via 192.0.2.1 onlink", "route replace 10.0.0.0/8 via 192.0.2.1",
                "route add 10.0.0.0/8 via 192.0.2.1 dev nosuch", "route add 10.0.0.0/8 via 192.0.2.1 table x",
                "route add 10.0.0.0/8 via 192.0.2.1 # comment", "route add 01.0.0.0/8 via 192.0.2.1",
                "route add 10.0.0.0/255.0.0.0 via 192.0.2.1", "-4 route add 10.0.0.0/8 via 192.0.2.1",
                "route add unicast 10.0.0.0/8 via 192.0.2.1", "route add 10.0.0.0/8 via 192.0.2.1 metric -1"]:
        with pytest.raises(NotBulk) as e:
            load_routes(st, ["route add 172.16.0.0/12 via 192.0.2.1", "", "# c", odd], "n")
        assert e.value.line == 4
        assert dump(st) == before
    # bare `route` is net-tools' command in a shell script; `ip -batch` files have no `ip`
    with pytest.raises(NotBulk):
        load_routes(st, ["route add 172.16.0.0/12 via 192.0.2.1"], "n", dialect="script")
    with pytest.raises(NotBulk):
        load_routes(st, ["ip route add 172.16.0.0/12 via 192.0.2.1"], "n", dialect="batch")
    assert load_routes(st, ["/sbin/ip route add 172.16.0.0/12 via 192.0.2.1"], "n", dialect="script") == 1


def _other(sh: Shell, filename: str) -> Callable[[int, str], None]:
    def other(lineno: int, line: str) -> None:
        res = sh.run_line(line)
        if res.status:
            raise ConfigError(filename, lineno, res.err.strip().replace("\n", " "))
    return other


def test_mixed_script_matches_load_script() -> None:
    rng = random.Random(11)
    routes = ["ip " + ln for ln in slow_run(base(), gen(rng, 1200))[0]]
    extra = ["ip link add dum1 type dummy", "ip link set dum1 up", "ip addr add 203.0.113.1/24 dev dum1",
             "ip route add 10.4/16 via 203.0.113.9", "# comment", "ip route add 10.3.0.0/16 dev dum1",
             "ip route add 10.5.0.0/16 via 203.0.113.5 metric 5",  # valid only after the address
             "/sbin/ip route add 10.6.0.0/16 via 203.0.113.5 table 100"]
    for k, e in enumerate(extra):
        routes.insert(40 * (k + 1), e)
    routes += ["ip link set veth1 down", "ip route add 10.7.0.0/16 via 192.0.2.1"]
    text = "\n".join(routes) + "\n"
    want = load_script(text, "m", base())
    got = base()
    n = load_lines(got, enumerate(routes, 1), "m", _other(Shell(got), "m"))
    assert n > 450
    assert dump(got) == dump(want)


def test_mixed_script_sees_changes_made_by_other_lines() -> None:
    # the per-gateway validation is redone after every general-path line
    lines = ["ip route add 10.8.0.0/16 via 198.51.100.9", "ip link set veth1 down",
             "ip route add 10.9.0.0/16 via 198.51.100.9"]
    with pytest.raises(ScriptErrors) as slow_err:
        load_script("\n".join(lines), "x", base())
    got = base()
    with pytest.raises(ConfigError) as fast_err:
        load_lines(got, enumerate(lines, 1), "x", _other(Shell(got), "x"))
    assert str(fast_err.value) == str(slow_err.value.errors[0])
    assert fast_err.value.line == 3


def test_big_table_gets_index_and_copies() -> None:
    rng = random.Random(5)
    st = base()
    lines = sorted({f"route add {rng.randrange(1, 100)}.{rng.randrange(256)}.{rng.randrange(256)}.0/24 "
                    f"via 192.0.2.1" for _ in range(20000)})
    assert load_routes(st, lines, "big") == len(lines)
    t = st.tables[254]
    assert t.index is not None
    st2 = copy.deepcopy(st)  # as load_script copies the stack
    # more routes into the indexed table: some incremental, then a detach/rebuild
    more = [f"route add 100.{i >> 8}.{i & 255}.0/24 via 192.0.2.254" for i in range(6000)]
    assert load_routes(st, more, "more") == 6000
    assert t.index is not None and t.index.longest(0x64000005) == 24
    assert st2.tables[254].index is not None and st2.tables[254].index.longest(0x64000005) == -1
    sh = Shell(st)
    assert "via 192.0.2.254" in sh.run_line("ip route get 100.0.1.9").out
