"""Pure tests of the routing box: each expectation was checked on Linux 6.18 + iproute2 6.1."""

from __future__ import annotations

import json

import pytest

from ipgate.shell import ScriptErrors, Shell, load_script


def box(*lines: str) -> Shell:
    sh = Shell()
    for line in lines:
        r = sh.run_line(line)
        assert r.status == 0, (line, r.err)
    return sh


def two_nics() -> Shell:
    return box(
        "ip link add eth0 type dummy", "ip link add eth1 type dummy",
        "ip link set eth0 up", "ip link set eth1 up",
        "ip addr add 192.0.2.1/24 dev eth0", "ip addr add 198.51.100.1/24 dev eth1",
    )


def out(sh: Shell, line: str) -> str:
    r = sh.run_line(line)
    assert r.status == 0, (line, r.err)
    return r.out


def test_kernel_routes_for_primary_and_secondary() -> None:
    sh = box("ip link add eth0 type dummy", "ip link set eth0 up", "ip addr add 192.0.2.1/24 dev eth0",
             "ip addr add 192.0.2.2/24 dev eth0 label eth0:1")
    assert out(sh, "ip route show table local").splitlines()[3:] == [
        "local 192.0.2.1 dev eth0 table local proto kernel scope host src 192.0.2.1 ",
        # a secondary's local route carries the primary as prefsrc (fib_magic uses prim)
        "local 192.0.2.2 dev eth0 table local proto kernel scope host src 192.0.2.1 ",
        "broadcast 192.0.2.255 dev eth0 table local proto kernel scope link src 192.0.2.1 ",
    ]
    assert out(sh, "ip route") == "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.1 \n"
    assert "inet 192.0.2.2/24 scope global secondary eth0:1" in out(sh, "ip addr show dev eth0")


def test_deleting_primary_deletes_secondaries_unless_promoted() -> None:
    sh = box("ip link add eth0 type dummy", "ip link set eth0 up", "ip addr add 192.0.2.1/24 dev eth0",
             "ip addr add 192.0.2.2/24 dev eth0")
    assert out(sh, "ip addr del 192.0.2.1/24 dev eth0") == ""
    assert "192.0.2.2" not in out(sh, "ip addr show dev eth0")
    sh = box("ip link add eth0 type dummy", "ip link set eth0 up", "ip addr add 192.0.2.1/24 dev eth0",
             "ip addr add 192.0.2.2/24 dev eth0", "ip addr add 192.0.2.3/24 dev eth0",
             "echo 1 > /proc/sys/net/ipv4/conf/eth0/promote_secondaries",
             "ip addr del 192.0.2.1/24 dev eth0")
    text = out(sh, "ip addr show dev eth0")
    assert "inet 192.0.2.2/24 scope global eth0" in text
    assert "inet 192.0.2.3/24 scope global secondary eth0" in text
    # routes now carry the promoted address as source
    assert out(sh, "ip route") == "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2 \n"
    assert "local 192.0.2.3 dev eth0 table local proto kernel scope host src 192.0.2.2 " in out(
        sh, "ip route show table local")


def test_duplicate_and_bad_routes_answer_like_rtnetlink() -> None:
    sh = two_nics()
    assert sh.run_line("ip route add 10.0.0.0/8 via 192.0.2.254").status == 0
    r = sh.run_line("ip route add 10.0.0.0/8 via 198.51.100.254")
    assert (r.status, r.err) == (2, "RTNETLINK answers: File exists\n")
    r = sh.run_line("ip route add 10.0.0.0/8 via 203.0.113.1 metric 5")
    assert (r.status, r.err) == (2, "Error: Nexthop has invalid gateway.\n")
    r = sh.run_line("ip route add 10.1.0.0/8 dev eth0")
    assert r.err == "Error: Invalid prefix for given prefix length.\n"
    r = sh.run_line("ip route add 1.2.3.4/33 dev eth0")
    assert (r.status, r.err) == (1, 'Error: any valid prefix is expected rather than "1.2.3.4/33".\n')
    r = sh.run_line("ip route del 10.0.0.0/8 via 198.51.100.254")
    assert (r.status, r.err) == (2, "RTNETLINK answers: No such process\n")


def test_append_prepend_replace_order() -> None:
    sh = two_nics()
    for line in ("ip route add 10.0.0.0/8 dev eth0", "ip route append 10.0.0.0/8 dev eth1",
                 "ip route prepend 10.0.0.0/8 via 198.51.100.9"):
        assert sh.run_line(line).status == 0
    assert out(sh, "ip route show 10.0.0.0/8") == (
        "10.0.0.0/8 via 198.51.100.9 dev eth1 \n10.0.0.0/8 dev eth0 scope link \n10.0.0.0/8 dev eth1 scope link \n")
    assert sh.run_line("ip route replace 10.0.0.0/8 via 192.0.2.9").status == 0
    assert out(sh, "ip route show 10.0.0.0/8").splitlines()[0] == "10.0.0.0/8 via 192.0.2.9 dev eth0 "
    assert sh.run_line("ip route change 172.16.0.0/12 dev eth0").err == (
        "RTNETLINK answers: No such file or directory\n")


def test_tos_routes_sorted_and_matched_with_legacy_mask() -> None:
    sh = two_nics()
    for t in ("0x10", "0x20", "0xfc", "0x04"):
        assert sh.run_line(f"ip route add 10.0.0.0/8 tos {t} dev eth0 metric 5").status == 0
    assert sh.run_line("ip route add 10.0.0.0/8 dev eth1").status == 0
    assert [ln.split(" dev")[0] for ln in out(sh, "ip route show 10.0.0.0/8").splitlines()] == [
        "10.0.0.0/8 tos 0xfc", "10.0.0.0/8 tos CS1", "10.0.0.0/8 tos 0x10", "10.0.0.0/8 tos 0x04", "10.0.0.0/8"]

    def dev_for(tos: str) -> str:
        return str(json.loads(out(sh, f"ip -j route get 10.1.1.1 tos {tos}"))[0]["dev"])

    # flow TOS is masked with IPTOS_RT_MASK (0x1c): 0x30 -> 0x10; 0x20 never matches tos CS1
    assert [dev_for(t) for t in ("0x10", "0x13", "0x30", "0x14", "0x20", "0x04")] == [
        "eth0", "eth0", "eth0", "eth1", "eth1", "eth0"]
    assert sh.run_line("ip route add 10.0.0.0/8 tos 0x11 dev eth0").err == (
        "Error: Invalid dsfield (tos): ECN bits must be 0.\n")


def test_route_get_text_and_json() -> None:
    sh = two_nics()
    assert sh.run_line("ip route add default via 198.51.100.254").status == 0
    assert out(sh, "ip route get 8.8.8.8 mark 3") == (
        "8.8.8.8 via 198.51.100.254 dev eth1 src 198.51.100.1 mark 3 uid 0 \n    cache \n")
    assert json.loads(out(sh, "ip -j route get 192.0.2.7")) == [
        {"dst": "192.0.2.7", "dev": "eth0", "prefsrc": "192.0.2.1", "flags": [], "uid": 0, "cache": []}]
    assert out(sh, "ip route get 192.0.2.255") == (
        "broadcast 192.0.2.255 dev eth0 src 192.0.2.1 uid 0 \n    cache <local,brd> \n")
    # no rule added yet: local hits come from the merged main trie, no "table local"
    assert out(sh, "ip route get 127.0.0.1") == "local 127.0.0.1 dev lo src 127.0.0.1 uid 0 \n    cache <local> \n"
    assert sh.run_line("ip rule add from 203.0.113.9 lookup 9").status == 0
    assert out(sh, "ip route get 127.0.0.1") == (
        "local 127.0.0.1 dev lo table local src 127.0.0.1 uid 0 \n    cache <local> \n")
    # a source that is not ours, without iif: ENETUNREACH (ip_route_output_key_hash_rcu)
    assert sh.run_line("ip route get 8.8.8.8 from 192.0.2.9").err == "RTNETLINK answers: Network is unreachable\n"
    # no route but oif given: assumed on-link
    assert out(sh, "ip route get 8.8.8.8 oif eth0") == "8.8.8.8 dev eth0 src 192.0.2.1 uid 0 \n    cache \n"


def test_route_get_input_path_needs_forwarding() -> None:
    sh = two_nics()
    assert sh.run_line("ip route add default via 198.51.100.254").status == 0
    r = sh.run_line("ip route get 8.8.8.8 from 192.0.2.9 iif eth0")
    assert (r.status, r.err) == (2, "RTNETLINK answers: No route to host\n")
    assert sh.run_line("echo 1 > /proc/sys/net/ipv4/ip_forward").status == 0
    assert out(sh, "ip route get 8.8.8.8 from 192.0.2.9 iif eth0") == (
        "8.8.8.8 from 192.0.2.9 via 198.51.100.254 dev eth1 \n    cache iif eth0 \n")
    # our own address as source is a martian
    assert sh.run_line("ip route get 8.8.8.8 from 192.0.2.1 iif eth0").err == "RTNETLINK answers: Invalid argument\n"


def test_route_types_errors() -> None:
    sh = two_nics()
    for line in ("ip route add unreachable 172.17.0.0/16", "ip route add prohibit 172.18.0.0/16",
                 "ip route add blackhole 172.19.0.0/16", "ip route add throw 172.20.0.0/16"):
        assert sh.run_line(line).status == 0
    errs = [sh.run_line(f"ip route get {d}").err for d in ("172.17.1.1", "172.18.1.1", "172.19.1.1", "172.20.1.1")]
    assert errs == ["RTNETLINK answers: No route to host\n", "RTNETLINK answers: Permission denied\n",
                    "RTNETLINK answers: Invalid argument\n", "RTNETLINK answers: Network is unreachable\n"]


def test_rules_defaults_pref_and_listing() -> None:
    sh = two_nics()
    for line in ("ip rule add from 192.0.2.0/24 tos 0x10 fwmark 3/0xff iif eth0 ipproto tcp sport 80 "
                 "dport 1-2 lookup 100 suppress_prefixlength 0",
                 "ip rule add not to 1.2.3.4 goto 32766", "ip rule add blackhole"):
        assert sh.run_line(line).status == 0
    assert out(sh, "ip rule") == (
        "0:\tfrom all lookup local\n"
        "32763:\tfrom all blackhole\n"
        "32764:\tnot from all to 1.2.3.4 goto 32766\n"
        "32765:\tfrom 192.0.2.0/24 tos 0x10 fwmark 0x3/0xff iif eth0 ipproto tcp sport 80 dport 1-2 "
        "lookup 100 suppress_prefixlength 0\n"
        "32766:\tfrom all lookup main\n"
        "32767:\tfrom all lookup default\n")
    assert json.loads(out(sh, "ip -j rule"))[3] == {
        "priority": 32765, "src": "192.0.2.0", "srclen": 24, "tos": "0x10", "fwmark": "0x3", "fwmask": "0xff",
        "iif": "eth0", "ipproto": "tcp", "sport": 80, "dport_start": 1, "dport_end": 2, "table": "100",
        "suppress_prefixlen": 0}
    assert sh.run_line("ip rule add pref 32763 blackhole").err == "RTNETLINK answers: File exists\n"
    assert sh.run_line("ip rule add pref 200 goto 100").err == "Error: Backward goto not supported.\n"


def test_rule_flush_keeps_rule_zero_and_del_pref_zero_works() -> None:
    sh = box("ip rule add from 1.2.3.4 lookup 7")
    assert sh.run_line("ip rule flush").status == 0
    assert out(sh, "ip rule") == "0:\tfrom all lookup local\n"
    sh = box("ip rule del pref 0")
    assert out(sh, "ip rule") == "32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n"
    # fib_default_rule_pref(): one below the second rule
    assert sh.run_line("ip rule add from 1.2.3.4").status == 0
    assert "32766:\tfrom 1.2.3.4 lookup main" in out(sh, "ip rule")


def test_fwmark_rule_steers_to_second_gateway() -> None:
    sh = two_nics()
    for line in ('echo "100 smtp" >> /etc/iproute2/rt_tables', "ip route add default via 192.0.2.254",
                 "ip route add default via 198.51.100.254 table smtp", "ip rule add fwmark 1 table smtp"):
        assert sh.run_line(line).status == 0
    assert out(sh, "ip route get 203.0.113.25 mark 1").startswith("203.0.113.25 via 198.51.100.254 dev eth1 table smtp")
    assert out(sh, "ip route get 203.0.113.25").startswith("203.0.113.25 via 192.0.2.254 dev eth0 src 192.0.2.1")
    assert out(sh, "ip route show table smtp") == "default via 198.51.100.254 dev eth1 \n"


def test_suppress_prefixlength_skips_default_route() -> None:
    sh = two_nics()
    for line in ("ip route add default via 192.0.2.254", "ip route add default via 198.51.100.254 table 7",
                 "ip rule add pref 100 lookup main suppress_prefixlength 0", "ip rule add pref 200 lookup 7"):
        assert sh.run_line(line).status == 0
    assert " dev eth1 " in out(sh, "ip route get 203.0.113.1")  # main's default suppressed
    assert " dev eth0 " in out(sh, "ip route get 192.0.2.77")  # the connected /24 is kept


def test_link_down_flushes_routes_but_keeps_local() -> None:
    sh = two_nics()
    assert sh.run_line("ip route add 10.0.0.0/8 via 192.0.2.254").status == 0
    assert sh.run_line("ip link set eth0 down").status == 0
    assert "10.0.0.0/8" not in out(sh, "ip route")
    local = out(sh, "ip route show table local")
    assert "local 192.0.2.1 dev eth0" in local and "broadcast 192.0.2.255" not in local
    assert sh.run_line("ip link set eth0 up").status == 0
    assert "192.0.2.0/24 dev eth0" in out(sh, "ip route")


def test_deleting_address_flushes_routes_using_it_as_src() -> None:
    sh = two_nics()
    assert sh.run_line("ip route add 10.0.0.0/8 via 192.0.2.254 src 198.51.100.1").status == 0
    assert sh.run_line("ip addr del 198.51.100.1/24 dev eth1").status == 0
    assert "10.0.0.0/8" not in out(sh, "ip route")


def test_batch_and_force(tmp_path: pytest.TempPathFactory) -> None:
    sh = two_nics()
    f = tmp_path / "b"  # type: ignore[operator]
    f.write_text("route add 10.0.0.0/8 dev eth0\nroute add 10.0.0.0/8 dev eth0\nroute add 11.0.0.0/8 dev eth0\n")
    r = sh.run_line(f"ip -batch {f}")
    assert (r.status, r.err) == (1, f"RTNETLINK answers: File exists\nCommand failed {f}:2\n")
    assert "11.0.0.0/8" not in out(sh, "ip route")
    r = sh.run_line(f"ip -force -batch {f}")
    assert r.status == 1 and "11.0.0.0/8" in out(sh, "ip route")


def test_bad_script_changes_nothing_and_names_the_line() -> None:
    good = load_script("ip link add eth0 type dummy\nip link set eth0 up\n", "gw.conf")
    text = "ip addr add 192.0.2.1/24 dev eth0\n# comment\nip route add 10.0.0.0/8 \\\n  via 203.0.113.1\n"
    with pytest.raises(ScriptErrors) as e:
        load_script(text, "gw.conf", stack=good)
    assert str(e.value.errors[0]) == "gw.conf:3: Error: Nexthop has invalid gateway."
    assert not good.devices["eth0"].addrs  # the first line's address was not kept
    with pytest.raises(ScriptErrors) as e2:
        load_script("ip bogus\nip route add 1.2.3.4/40 dev lo\nip link set lo up\n", "x.conf", keep_going=True)
    assert [(err.line, err.message) for err in e2.value.errors] == [
        (1, 'Object "bogus" is unknown, try "ip help".'),
        (2, 'Error: any valid prefix is expected rather than "1.2.3.4/40".')]


def test_ten_thousand_rules_give_same_answers_as_few() -> None:
    sh = two_nics()
    assert sh.run_line("ip route add default via 198.51.100.254 table 7").status == 0
    for i in range(10_000):
        a = 0x0A000000 + i
        r = sh.run_line(f"ip rule add pref {1000 + i} from {a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255} "
                        "lookup 7")
        assert r.status == 0
    assert sh.run_line("echo 1 > /proc/sys/net/ipv4/ip_forward").status == 0
    assert "dev eth1 table 7" in out(sh, "ip route get 203.0.113.1 from 10.0.39.15 iif eth0")
    assert sh.run_line("ip route get 203.0.113.1 from 10.1.0.0 iif eth0").err == (
        "RTNETLINK answers: Network is unreachable\n")


def test_masked_fwmark_rule_matches_like_the_kernel() -> None:
    # (rule.mark ^ flow.mark) & mask: 0x3/0xf0 matches every mark whose high nibble is 0
    sh = two_nics()
    for line in ("ip route add default via 198.51.100.254 table 9", "ip rule add fwmark 0x3/0xf0 lookup 9",
                 "ip route add default via 192.0.2.254"):
        assert sh.run_line(line).status == 0
    for mark in ("0", "2", "0xf"):
        assert " dev eth1 table 9 " in out(sh, f"ip route get 203.0.113.1 mark {mark}")
    for mark in ("0x13", "0x23"):
        assert " dev eth0 " in out(sh, f"ip route get 203.0.113.1 mark {mark}")


def test_historical_nat_route_and_rule_are_kept_and_listed() -> None:
    # linux-policy-routing.txt / the old iproute2 docs: "ip route add nat ... via ..." and
    # "ip rule add ... nat ADDR"; gone from the kernel, kept by ipgate (see README).
    sh = two_nics()
    assert sh.run_line("ip route add nat 203.0.113.10 via 192.0.2.10").status == 0
    assert sh.run_line("ip rule add from 192.0.2.10 nat 203.0.113.10").status == 0
    assert "nat 203.0.113.10 table local scope host via 192.0.2.10" in out(sh, "ip route show table local")
    assert "32765:\tfrom 192.0.2.10 lookup main map-to 203.0.113.10" in out(sh, "ip rule")
    assert sh.run_line("echo 1 > /proc/sys/net/ipv4/ip_forward").status == 0
    assert " dev eth1 " in out(sh, "ip route get 198.51.100.7 from 192.0.2.10 iif eth0")


def test_rule_with_host_bits_and_masked_tos_match_like_the_kernel() -> None:
    # "from 10.1.0.1/16" is stored as given but matches the whole /16; rule TOS
    # compares with the flow's TOS masked by 0x1c, as route TOS does.
    sh = two_nics()
    for line in ("ip route add default via 198.51.100.254 table 9", "ip rule add from 192.0.2.77/24 lookup 9",
                 "ip rule add tos 0x10 lookup 9", "echo 1 > /proc/sys/net/ipv4/ip_forward"):
        assert sh.run_line(line).status == 0
    assert "32765:\tfrom 192.0.2.77/24 lookup 9" in out(sh, "ip rule")
    assert " table 9 " in out(sh, "ip route get 203.0.113.1 from 192.0.2.5 iif eth0")
    assert " table 9 " in out(sh, "ip route get 203.0.113.1 tos 0x30")
    unreachable = "RTNETLINK answers: Network is unreachable\n"  # main has no default route
    assert sh.run_line("ip route get 203.0.113.1 tos 0x08").err == unreachable


def test_many_port_rules_are_indexed_and_still_first_match() -> None:
    sh = two_nics()
    assert sh.run_line("ip route add default via 198.51.100.254 table 9").status == 0
    for port in range(1000, 3000):
        assert sh.run_line(f"ip rule add pref {port} ipproto tcp dport {port} lookup 9").status == 0
    assert sh.run_line("ip rule add pref 999 ipproto tcp dport 2500 blackhole").status == 0
    assert " table 9 " in out(sh, "ip route get 203.0.113.1 ipproto tcp dport 1500")
    assert sh.run_line("ip route get 203.0.113.1 ipproto tcp dport 2500").err == "RTNETLINK answers: Invalid argument\n"
    assert sh.run_line("ip route get 203.0.113.1 ipproto udp dport 1500").err == (
        "RTNETLINK answers: Network is unreachable\n")


def test_multipath_choice_is_the_kernels() -> None:
    # Expected nexthops captured from Linux 6.18 with fib_multipath_hash_seed=1
    # (policy 0), weights 1/2/3: the siphash of flow_keys and the hash-threshold bounds.
    sh = two_nics()
    for line in ("sysctl -qw net.ipv4.fib_multipath_hash_seed=1", "ip addr add 203.0.113.1/24 dev eth1",
                 "ip route add 10.0.0.0/8 nexthop via 192.0.2.254 weight 1 nexthop via 198.51.100.254 weight 2 "
                 "nexthop via 203.0.113.254 dev eth1 weight 3"):
        assert sh.run_line(line).status == 0
    got = [out(sh, f"ip route get {d}").split()[2] for d in ("10.3.7.13", "10.6.14.26", "10.9.21.39")]
    assert got == KERNEL_MP
    # a source address prefers the nexthop that has it (fib_select_multipath since 6.16)
    assert " via 198.51.100.254 " in out(sh, "ip route get 10.45.1.99 from 198.51.100.1")


KERNEL_MP = ["192.0.2.254", "198.51.100.254", "203.0.113.254"]
