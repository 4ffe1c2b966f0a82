"""Differential tests: ipgate's routing box against the Linux kernel.

Seeds: `IPGATE_DIFF_SEEDS` is either a count (first N seeds, default below)
or an explicit list/range such as `7,12,40-49`.  `IPGATE_DIFF_QUERIES`
sets queries per seed, `IPGATE_DIFF_STATE=1` also compares route/rule/addr
dumps, `IPGATE_DIFF_IGNORE_ORDER=1` ignores JSON key order.
"""

from __future__ import annotations

import json
import os

import pytest

from .compare import compare_query, table_map
from .gen import generate
from .oracle import KernelOracle, Result
from .report import compare_case, load_shell_class, run_ipgate, run_kernel

# ~0.3 s per seed (kernel + ipgate) measured: ~35 s for the file, well inside 3 min.
DEFAULT_SEEDS = 100


def _seeds() -> list[int]:
    spec = os.environ.get("IPGATE_DIFF_SEEDS", "").strip()
    if not spec:
        return list(range(DEFAULT_SEEDS))
    if spec.isdigit():
        return list(range(int(spec)))
    out: list[int] = []
    for part in spec.split(","):
        a, _, b = part.strip().partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


netns = pytest.mark.netns


# -- the oracle on its own (independent of ipgate) -------------------------------

@netns
def test_oracle_fresh_box(oracle: KernelOracle) -> None:
    assert oracle.sysctl("net.ipv4.ip_forward") == "0"
    assert oracle.sysctl("net.ipv4.conf.all.rp_filter") == "0"
    r = oracle.route_get_json("127.0.0.1")
    assert r.status == 0, r.err
    assert json.loads(r.out) == [{"type": "local", "dst": "127.0.0.1", "dev": "lo",
                                  "prefsrc": "127.0.0.1", "flags": [], "uid": 0,
                                  "cache": ["local"]}]
    r = oracle.route_get_json("192.0.2.1")
    assert (r.status, r.err.strip()) == (2, "RTNETLINK answers: Network is unreachable")


@netns
def test_oracle_connected_and_gateway(oracle: KernelOracle) -> None:
    for line in ("ip link add eth0 type dummy", "ip link set eth0 up",
                 "ip addr add 192.0.2.1/24 dev eth0",
                 "ip route add 198.51.100.0/24 via 192.0.2.254"):
        r = oracle.run(line)
        assert r.status == 0, (line, r.err)
    r = oracle.route_get_json("192.0.2.77")
    assert json.loads(r.out) == [{"dst": "192.0.2.77", "dev": "eth0", "prefsrc": "192.0.2.1",
                                  "flags": [], "uid": 0, "cache": []}]
    r = oracle.route_get_json("198.51.100.9")
    assert json.loads(r.out)[0]["gateway"] == "192.0.2.254"
    # The local-table hit shows no "table" while local and main are merged (no rules yet).
    assert "table" not in json.loads(oracle.route_get_json("192.0.2.1").out)[0]
    r = oracle.run("ip route add 203.0.113.0/24 via 10.9.9.9")
    assert (r.status, r.err.strip()) == (2, "Error: Nexthop has invalid gateway.")


@netns
def test_oracle_tables_rules_and_forwarding(oracle: KernelOracle) -> None:
    for line in ('echo "100 smtp" >> /etc/iproute2/rt_tables',
                 "ip link add eth0 type dummy", "ip link add eth1 type dummy",
                 "ip link set eth0 up", "ip link set eth1 up",
                 "ip addr add 192.0.2.1/24 dev eth0", "ip addr add 10.1.0.1/16 dev eth1",
                 "ip route add default via 192.0.2.254 table smtp",
                 "ip rule add pref 100 from 10.1.0.0/16 lookup smtp"):
        r = oracle.run(line)
        assert r.status == 0, (line, r.err)
    assert oracle.tables == {"smtp": 100}
    out = json.loads(oracle.route_get_json("203.0.113.5 from 10.1.0.1").out)[0]
    assert (out["gateway"], out["table"]) == ("192.0.2.254", "100")
    # Forwarding off: input-path lookups for non-local destinations fail.
    q = "203.0.113.5 from 10.1.2.3 iif eth1"
    r = oracle.route_get_json(q)
    assert (r.status, r.err.strip()) == (2, "RTNETLINK answers: No route to host")
    assert oracle.run("echo 1 > /proc/sys/net/ipv4/ip_forward").status == 0
    out = json.loads(oracle.route_get_json(q).out)[0]
    assert out["iif"] == "eth1" and out["gateway"] == "192.0.2.254" and "uid" not in out
    # Once any rule exists, local/main are unmerged and local hits say so.
    assert json.loads(oracle.route_get_json("192.0.2.1").out)[0]["table"] == "local"


@netns
def test_oracle_cleans_up(netns_ok: None) -> None:
    import subprocess

    names: list[str] = []
    with KernelOracle() as o:
        names += [o.ns, o.sink]
    # An exception inside the block must still clean up.
    with pytest.raises(RuntimeError), KernelOracle() as inner:
        names += [inner.ns, inner.sink]
        raise RuntimeError("boom")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            timeout=10, check=True).stdout
    assert not any(n in listed.split() for n in names)


def test_generator_is_deterministic() -> None:
    assert generate(7) == generate(7)
    assert generate(7) != generate(8)


def test_compare_normalises_tables_tos_and_multipath() -> None:
    tables = table_map(['echo "100 smtp" >> /etc/iproute2/rt_tables'])
    k = Result(0, '[{"dst":"10.0.0.1","tos":"EF","gateway":"192.0.2.1","dev":"eth0",'
                  '"table":"100","flags":[],"uid":0,"cache":[]}]', "")
    g = Result(0, '[{"dst":"10.0.0.1","tos":"0xb8","gateway":"192.0.2.1","dev":"eth0",'
                  '"table":"smtp","flags":[],"uid":0,"cache":[]}]', "")
    assert compare_query(1, 0, "10.0.0.1", k, g, tables) == (None, None)
    g2 = Result(0, g.out.replace("192.0.2.1", "192.0.2.2").replace("eth0", "eth1"), "")
    mm, note = compare_query(1, 0, "10.0.0.1", k, g2, tables)
    assert mm is not None and "gateway" in mm.kind and note is None
    groups = [frozenset({("192.0.2.1", "eth0"), ("192.0.2.2", "eth1")})]
    mm, note = compare_query(1, 0, "10.0.0.1", k, g2, tables, groups)
    assert mm is None and note is not None
    err = Result(2, "", "RTNETLINK answers: Network is unreachable\n")
    mm, _ = compare_query(1, 0, "10.0.0.1", err, g, tables)
    assert mm is not None and "status" in mm.detail


# -- kernel vs ipgate ------------------------------------------------------------------

# Agreement measured when this floor was set (2026-11-22, 100 seeds x 50 queries, multipath exact): 99.9%.
# Raise it as deviations are fixed; IPGATE_DIFF_STRICT=1 demands 100% per seed.
AGREEMENT_FLOOR = 0.998


@netns
def test_differential(netns_ok: None) -> None:
    load_shell_class()  # fails (not skips) while ipgate.shell is missing
    state = _flag("IPGATE_DIFF_STATE")
    strict = _flag("IPGATE_DIFF_STRICT")
    items = agreed = 0
    reports = []
    for seed in _seeds():
        case = generate(seed, int(os.environ.get("IPGATE_DIFF_QUERIES", "50")))
        rep = compare_case(case, run_kernel(case, state), run_ipgate(case, state), state,
                           check_order=not _flag("IPGATE_DIFF_IGNORE_ORDER"))
        items += rep.total
        agreed += rep.agreed
        if rep.mismatches:
            reports.append(rep)
    crashes = [m for r in reports for m in r.mismatches if "exception" in m.detail.lower()]
    summary = "\n".join(r.format(limit=2) for r in reports[:5])
    print(f"differential agreement: {agreed}/{items} = {agreed / max(items, 1):.2%}")
    assert not crashes, f"ipgate raised on {len(crashes)} inputs:\n{summary}"
    if strict:
        assert not reports, summary
    assert agreed / max(items, 1) >= AGREEMENT_FLOOR, summary
