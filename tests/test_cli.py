"""`ipgate` on the command line: `check`, `-c FILE ip ...`, `ip -batch` / `-force`, `demo`.

The expected `ip` outputs and error texts were captured from Linux 6.18 with
iproute2 6.1: a network namespace loaded with the same configuration
(examples/split-access.conf, or the bad lines below one by one), through
tests/test_seeds.py's KernelBox, with the same batch files.  "F" in the
batch expectations stands for the batch file's name as given on the command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ipgate.cli import main
from ipgate.shell import ScriptErrors, Shell, load_script

ROOT = Path(__file__).resolve().parents[1]
SPLIT = str(ROOT / "examples" / "split-access.conf")

# A configuration whose lines 4-8 are bad, with what iproute2/Linux print for each
# (stderr of the same line run alone in the namespace; ipgate check joins lines).
BAD_CONF = """\
ip link add eth0 type dummy
ip addr add 192.0.2.2/24 dev eth0
ip link set eth0 up
ip route add 198.51.100.0/24 via 203.0.113.1
ip rule add from 192.0.2.2 table nosuchtable
ip route add 192.0.2.0/24 dev eth9
ip addr add 192.0.2.300/24 dev eth0
ip route add 10.0.0.0/8 via 192.0.2.1 metric
ip route add 10.0.0.0/8 via 192.0.2.1
"""
BAD_LINES = {
    4: "Error: Nexthop has invalid gateway.",
    5: 'Error: argument "nosuchtable" is wrong: invalid table ID',
    6: 'Cannot find device "eth9"',
    7: 'Error: any valid prefix is expected rather than "192.0.2.300/24".',
    8: 'Command line is not complete. Try option "help"',
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# -- ipgate check --------------------------------------------------------------------

def test_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "check", SPLIT) == (0, f"{SPLIT}: OK\n", "")


def test_check_reports_the_first_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.conf"
    f.write_text(BAD_CONF)
    rc, out, err = run(capsys, "check", str(f))
    assert rc != 0
    assert out == ""
    assert err == f"{f}:4: {BAD_LINES[4]}\n"


def test_check_keep_going_reports_every_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.conf"
    f.write_text(BAD_CONF)
    rc, out, err = run(capsys, "check", "--keep-going", str(f))
    assert rc != 0
    assert out == ""
    assert err == "".join(f"{f}:{n}: {msg}\n" for n, msg in BAD_LINES.items())


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "absent.conf"
    rc, out, err = run(capsys, "check", str(f))
    assert (rc, out, err) == (1, "", f"ipgate: {f}: No such file or directory\n")


def test_check_line_numbers_count_continuations_and_comments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "cont.conf"
    f.write_text("# comment\n\nip link add eth0 \\\n   type dummy\nip route add 192.0.2.0/24 \\\n  dev eth9\n")
    rc, _out, err = run(capsys, "check", str(f))
    assert rc != 0
    assert err == f'{f}:5: Cannot find device "eth9"\n'


def listings(sh: Shell) -> list[str]:
    cmds = ["ip rule show", "ip route show table all", "ip addr show", "ip link show"]
    return [sh.run_line(c).out for c in cmds]


def test_loading_a_bad_file_changes_nothing() -> None:
    base = load_script(Path(SPLIT).read_text(), SPLIT)
    before = listings(Shell(base))
    # The first three lines succeed (on the working copy), the fourth fails.
    bad = ("ip route add 203.0.113.0/24 via 198.51.100.1\n"
           "ip rule add from 192.0.2.99 table T1 pref 1000\n"
           "ip link add eth7 type dummy\n"
           "ip route add 10.0.0.0/8 via 10.99.99.1\n")
    for keep_going in (False, True):
        with pytest.raises(ScriptErrors) as ei:
            load_script(bad, "bad.conf", stack=base, keep_going=keep_going)
        assert [str(e) for e in ei.value.errors] == ["bad.conf:4: Error: Nexthop has invalid gateway."]
        assert listings(Shell(base)) == before


def test_config_with_bad_lines_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.conf"
    f.write_text(BAD_CONF)
    rc, out, err = run(capsys, "-c", str(f), "ip", "route", "show")
    assert rc != 0
    assert out == ""
    assert err == f"{f}:4: {BAD_LINES[4]}\n"


# -- ipgate -c FILE ip ... -------------------------------------------------------------

def test_route_get_with_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "-c", SPLIT, "ip", "route", "get", "203.0.113.50", "from", "198.51.100.2") == (
        0, "203.0.113.50 from 198.51.100.2 via 198.51.100.1 dev eth1 table T2 uid 0 \n    cache \n", "")


def test_route_get_error_with_config(capsys: pytest.CaptureFixture[str]) -> None:
    # 198.51.100.99 is not an address of the box: ip_route_output_key_hash_rcu() refuses it.
    assert run(capsys, "-c", SPLIT, "ip", "route", "get", "203.0.113.50", "from", "198.51.100.99") == (
        2, "", "RTNETLINK answers: Network is unreachable\n")


def test_route_add_without_destination_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    # FAQ 7.36's "iproute add table 101 via ..." as written: iproute2 needs a
    # destination, and its usage() prints the help and exits 255.
    rc, out, err = run(capsys, "-c", SPLIT, "ip", "route", "add", "table", "101", "via", "192.0.2.1")
    assert (rc, out) == (255, "")
    assert err.startswith("Usage: ip route { list | flush } SELECTOR\n")
    assert err.endswith("ROUTE_GET_FLAGS := [ fibmatch ]\n")


def test_json_rule_list(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "-c", SPLIT, "ip", "-j", "rule", "list")
    assert (rc, err) == (0, "")
    assert json.loads(out) == [
        {"priority": 0, "src": "all", "table": "local"},
        {"priority": 32764, "src": "198.51.100.2", "table": "T2"},
        {"priority": 32765, "src": "192.0.2.2", "table": "T1"},
        {"priority": 32766, "src": "all", "table": "main"},
        {"priority": 32767, "src": "all", "table": "default"},
    ]
    # iproute2 prints it compact, on one line.
    assert out == json.dumps(json.loads(out), separators=(",", ":")) + "\n"


def test_json_route_get(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "-c", SPLIT, "ip", "-j", "route", "get", "203.0.113.50", "from", "198.51.100.2")
    assert (rc, err) == (0, "")
    assert out == ('[{"dst":"203.0.113.50","from":"198.51.100.2","gateway":"198.51.100.1","dev":"eth1",'
                   '"table":"T2","flags":[],"uid":0,"cache":[]}]\n')


def test_console_entry_point() -> None:
    p = subprocess.run([sys.executable, "-m", "ipgate.cli", "-c", SPLIT, "ip", "rule", "show"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert (p.returncode, p.stderr) == (0, "")
    assert "32764:\tfrom 198.51.100.2 lookup T2\n" in p.stdout


# -- ip -batch / -force -----------------------------------------------------------------

ROUTES_BATCH = """\
# against examples/split-access.conf
route add 203.0.113.0/24 via 198.51.100.1
route add 203.0.113.0/24 via 198.51.100.1

rule add from 192.0.2.99 lookup T1 pref 1000
route add 10.0.0.0/8 via 10.99.99.1
route show
rule show
"""
ROUTES_BATCH_FORCE_OUT = (
    "default via 192.0.2.1 dev eth0 \n"
    "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2 \n"
    "198.51.100.0/24 dev eth1 proto kernel scope link src 198.51.100.2 \n"
    "203.0.113.0/24 via 198.51.100.1 dev eth1 \n"
    "0:\tfrom all lookup local\n"
    "1000:\tfrom 192.0.2.99 lookup T1\n"
    "32764:\tfrom 198.51.100.2 lookup T2\n"
    "32765:\tfrom 192.0.2.2 lookup T1\n"
    "32766:\tfrom all lookup main\n"
    "32767:\tfrom all lookup default\n")


def batch(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *opts: str) -> tuple[int, str, str]:
    f = tmp_path / "cmds.batch"
    f.write_text(text)
    rc, out, err = run(capsys, "-c", SPLIT, "ip", *opts, "-batch", str(f))
    return rc, out, err.replace(str(f), "F")


def test_batch_stops_at_the_first_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert batch(tmp_path, capsys, ROUTES_BATCH) == (
        1, "", "RTNETLINK answers: File exists\nCommand failed F:3\n")


def test_batch_force_goes_on_and_reports_each_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert batch(tmp_path, capsys, ROUTES_BATCH, "-force") == (
        1, ROUTES_BATCH_FORCE_OUT,
        "RTNETLINK answers: File exists\nCommand failed F:3\n"
        "Error: Nexthop has invalid gateway.\nCommand failed F:6\n")


def test_batch_all_good(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = batch(tmp_path, capsys, "route add 203.0.113.0/24 via 198.51.100.1\nroute show table T2\n")
    assert (rc, out, err) == (0, "default via 198.51.100.1 dev eth1 src 198.51.100.2 \n"
                                 "198.51.100.0/24 dev eth1 scope link src 198.51.100.2 \n", "")


def test_batch_lines_do_not_start_with_ip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # In a batch file every line is already an `ip` command: "ip route ..." is object "ip".
    text = "route add 203.0.113.0/24 via 198.51.100.1\nip route add 203.0.113.128/25 via 198.51.100.1\nroute show\n"
    assert batch(tmp_path, capsys, text) == (
        1, "", 'Object "ip" is unknown, try "ip help".\nCommand failed F:2\n')


def test_batch_usage_error_ends_the_batch_even_with_force(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `route add` without a destination: iproute2's usage() exits the whole
    # process with 255, printing its help, and no "Command failed" line.
    text = "route add 203.0.113.0/24 via 198.51.100.1\nroute add table 101 via 192.0.2.1\nroute show\n"
    rc, out, err = batch(tmp_path, capsys, text, "-force")
    assert (rc, out) == (255, "")
    assert err.startswith("Usage: ip route { list | flush } SELECTOR\n")
    assert err.endswith("ROUTE_GET_FLAGS := [ fibmatch ]\n")
    assert "Command failed" not in err


def test_batch_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "absent.batch"
    assert run(capsys, "-c", SPLIT, "ip", "-batch", str(f)) == (
        1, "", f'Cannot open file "{f}" for reading: No such file or directory\n')


# -- ipgate demo -----------------------------------------------------------------------

def test_demo(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "demo")
    for conf in sorted((ROOT / "examples").glob("*.conf")):
        assert f"\n{conf.name}: " in out
    assert "$ ip route get 203.0.113.50 from 198.51.100.2\n" in out
    assert "could not load" not in out
    assert (rc, err) == (0, "")
