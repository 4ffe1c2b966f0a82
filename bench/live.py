"""Live forwarding through MASQUERADE: ipgate (AF_PACKET) against the kernel, same run (root, by hand).

    .venv/bin/python bench/live.py [--seconds N] [--quick]

For each gateway the namespace lab of tests/io/bench_live.py (ipgt-{lan,gw,wan}-benchPID, veth pairs,
192.168.10.2 -> 203.0.113.2 masqueraded to 203.0.113.1) is built afresh and measured:

- UDP: one 64-byte flow flooded LAN -> WAN (netns_hosts.py flood/sink): datagrams/s received;
- TCP: one bulk stream LAN -> WAN, TSO/GSO off on the LAN host so it sends MTU-sized segments, and GRO on
  the gateway's veth ends during this test (as a NIC driver would have it) for both gateways: the kernel
  forwards the merged super-packets whole and so does ipgate when they go as vectors (the kernel segments
  them on the way out); MB/s received, and the 1448-byte segments/s they make;
- latency: sequential UDP request/response (64 bytes) LAN -> WAN, p50/p99; "added" is ipgate minus kernel;
- memory: 100,000 UDP flows opened (400 source ports x 250 destination ports, 5,000/s; a pass is repeated,
  at most 3 times, while the gateway has fewer), then the gateway's VmRSS and its conntrack count (the
  kernel: its nf_conntrack_count, for reference).

The gateway has CPU 1: ipgate's process is pinned there; the kernel's forwarding is steered there with
RPS on the gateway's veth ends.  Generators run on CPU 0.  Figures only, no thresholds.
Internal subcommands (`_tcpsink`, `_tcpsrc`, `_echo`, `_rtt`, `_flows`) run inside the namespaces.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "io"))
from bench_live import Lab, _cpu, kernel_gateway  # type: ignore[attr-defined]  # noqa: E402  (Lab: re-exported)

PY = sys.executable
ME = str(Path(__file__).resolve())
HOSTS = str(ROOT / "tests" / "io" / "netns_hosts.py")
WAN, WAN_NET = "203.0.113.2", "203.0.113.0/24"
GW_CPU, GEN_CPU = 1, 0
FLOW_SRC, FLOW_DST, FLOW_PORT0, FLOW_SPORT0 = 400, 250, 20000, 40000  # 100,000 UDP flows
FLOW_RATE = 5000  # datagrams per second: a pass of 100,000 takes 20 s (UDP timeout 30 s)
FLOW_PASSES = 3  # passes at most, until the gateway has them all
WAIT = 30.0  # any single wait
MSS = 1448  # TCP payload bytes per segment on a 1500-byte MTU with timestamps


# -- helpers run inside the namespaces --------------------------------------------------------
def tcpsink(addr: str, port: int, seconds: float, ready: str) -> int:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    s.settimeout(WAIT)
    Path(ready).touch()
    c, _ = s.accept()
    c.settimeout(2.0)
    n, start = 0, time.monotonic()
    end = start + seconds + 5
    while time.monotonic() < end:
        try:
            d = c.recv(1 << 20)
        except TimeoutError:
            break
        if not d:
            break
        n += len(d)
    print(n, f"{time.monotonic() - start:.3f}")
    return 0


def tcpsrc(dst: str, port: int, seconds: float) -> int:
    c = socket.create_connection((dst, port), timeout=5)
    c.settimeout(5)
    block, n = b"t" * 65536, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        c.sendall(block)
        n += len(block)
    c.close()
    print(n)
    return 0


def echo(addr: str, port: int, seconds: float, ready: str) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    s.settimeout(1.0)
    Path(ready).touch()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            d, peer = s.recvfrom(2048)
        except TimeoutError:
            continue
        s.sendto(d, peer)
    return 0


def rtt(dst: str, port: int, count: int) -> int:
    """Sequential request/response; prints answered count, p50 and p99 in microseconds."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((dst, port))
    s.settimeout(1.0)
    times: list[float] = []
    for i in range(count):
        msg = struct.pack("!I", i) + b"r" * 60
        t0 = time.perf_counter()
        s.send(msg)
        try:
            while s.recv(2048) != msg:  # a late answer to an earlier request: skip it
                pass
        except TimeoutError:
            continue
        times.append(time.perf_counter() - t0)
    times.sort()
    if not times:
        print("0 0 0")
        return 1
    p = [1e6 * times[min(len(times) - 1, int(q * len(times)))] for q in (0.5, 0.99)]
    print(len(times), f"{p[0]:.0f}", f"{p[1]:.0f}")
    return 0


def flows(dst: str, nsrc: int, ndst: int, port0: int, rate: float) -> int:
    """nsrc sockets (fixed source ports, so that a repeated pass refreshes the same flows) each send one
    datagram to ndst ports: nsrc*ndst flows, at about `rate` per second."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(nsrc)]
    for i, s in enumerate(socks):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("", FLOW_SPORT0 + i))
    n, start = 0, time.monotonic()
    for p in range(port0, port0 + ndst):
        for s in socks:
            try:
                s.sendto(b"f", (dst, p))
                n += 1
            except OSError:
                pass
        ahead = n / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    print(n, f"{time.monotonic() - start:.2f}")
    return 0


def _offloads(lab: Lab, role: str, dev: str, tso: int, gro: int) -> None:
    """TSO/GSO and GRO of a lab interface (netns_hosts.py offloads)."""
    subprocess.run(["ip", "netns", "exec", lab.ns(role), PY, HOSTS, "offloads", dev, str(tso), str(gro)],
                   check=True, capture_output=True, timeout=WAIT)


def _gro(lab: Lab, on: int) -> None:
    """GRO on or off at the gateway's ends (a veth with GRO runs NAPI), TSO/GSO left on as they are."""
    for dev in ("gl0", "gw0"):
        _offloads(lab, "gw", dev, 1, on)


# -- the benchmark --------------------------------------------------------------------------
def _wait(what: str, cond: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _spawn(lab: Lab, role: str, script: str, *args: str) -> subprocess.Popen[str]:
    p = subprocess.Popen(["ip", "netns", "exec", lab.ns(role), PY, script, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lab.procs.append(p)
    os.sched_setaffinity(p.pid, {GEN_CPU})
    return p


def _out(p: subprocess.Popen[str], timeout: float) -> str:
    out = p.communicate(timeout=timeout)[0]
    if p.returncode != 0:
        raise RuntimeError(f"{p.args!r}: exit {p.returncode}: {out.strip()}")
    return out


def _nsread(lab: Lab, role: str, path: str) -> str:
    r = subprocess.run(["ip", "netns", "exec", lab.ns(role), "cat", path], capture_output=True, text=True,
                       timeout=WAIT)
    return r.stdout.strip()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _sh(lab: Lab, role: str, cmd: str) -> None:
    subprocess.run(["ip", "netns", "exec", lab.ns(role), "sh", "-c", cmd], check=True, capture_output=True,
                   timeout=WAIT)


def _ct_count(lab: Lab) -> int:
    if lab.gw is None:
        return int(_nsread(lab, "gw", "/proc/sys/net/netfilter/nf_conntrack_count") or 0)
    r = lab.ctl("conntrack", "-C")
    if r.returncode == 0 and r.stdout.strip().isdigit():
        return int(r.stdout.strip())
    r = lab.ctl("conntrack", "-L")
    return sum(1 for line in r.stdout.splitlines() if line.startswith(("udp", "tcp", "icmp")))


def measure(kind: str, seconds: float, quick: bool, tmp: Path, flows: bool = True) -> dict[str, float]:
    lab = Lab("packet", tmp)
    lab.tag = f"bench{os.getpid()}"
    res: dict[str, float] = {}
    try:
        if kind == "kernel":
            lab.network()
            kernel_gateway(lab)
            lab.hosts()
            for dev in ("gl0", "gw0"):  # the kernel's forwarding work on the gateway's CPU
                _sh(lab, "gw", f"echo {1 << GW_CPU:x} > /sys/class/net/{dev}/queues/rx-0/rps_cpus")
        else:
            lab.up()
            assert lab.gw is not None
            os.sched_setaffinity(lab.gw.pid, {GW_CPU})
        _offloads(lab, "lan", "eth0", 0, 0)  # the LAN host sends MTU-sized segments
        lab.host("lan", "ping", WAN, "5")  # ARP on both sides
        gwpid = lab.gw.pid if lab.gw is not None else None

        # UDP flood, one flow
        ready = str(tmp / "udp-ready")
        sink = _spawn(lab, "wan", HOSTS, "sink", WAN, "9000", str(seconds), ready)
        _wait("the UDP sink", lambda: os.path.exists(ready))
        cpu0, t0 = (_cpu(gwpid), time.monotonic()) if gwpid else (0.0, time.monotonic())
        flood = _spawn(lab, "lan", HOSTS, "flood", WAN, "9000", str(seconds), "64")
        res["udp_sent"] = int(_out(flood, seconds + WAIT).split()[0]) / seconds
        if gwpid:
            res["udp_cpu"] = 100 * (_cpu(gwpid) - cpu0) / (time.monotonic() - t0)
        res["udp_pps"] = float(_out(sink, seconds + WAIT).split()[2])

        # TCP bulk, one connection, MTU-sized segments, GRO on the gateway's ends for this test only
        _gro(lab, 1)
        ready = str(tmp / "tcp-ready")
        tsink = _spawn(lab, "wan", ME, "_tcpsink", WAN, "9001", str(seconds), ready)
        _wait("the TCP sink", lambda: os.path.exists(ready))
        src = _spawn(lab, "lan", ME, "_tcpsrc", WAN, "9001", str(seconds))
        _out(src, seconds + WAIT)
        nbytes, elapsed = _out(tsink, seconds + WAIT).split()
        # segments as the sender cut them (1448 payload bytes with timestamps); the WAN host's packet counter
        # would count super-packets where a gateway forwards them whole
        res["tcp_pps"] = int(nbytes) / MSS / float(elapsed)
        res["tcp_mbs"] = int(nbytes) / float(elapsed) / 1e6
        _gro(lab, 0)

        # latency: UDP request/response
        ready = str(tmp / "echo-ready")
        count = 300 if quick else 3000
        ech = _spawn(lab, "wan", ME, "_echo", WAN, "9002", str(count * 0.05 + WAIT), ready)
        _wait("the UDP echo", lambda: os.path.exists(ready))
        n, p50, p99 = _out(_spawn(lab, "lan", ME, "_rtt", WAN, "9002", str(count)), count + WAIT).split()
        res["rtt_n"], res["rtt_p50"], res["rtt_p99"] = float(n), float(p50), float(p99)
        ech.kill()

        if not flows:
            return res
        # memory with 100,000 UDP flows (the WAN host drops them quietly: no ICMP back)
        _sh(lab, "wan", f"iptables-legacy -A INPUT -p udp --dport {FLOW_PORT0}:{FLOW_PORT0 + FLOW_DST - 1} -j DROP")
        res["rss0"] = _rss_kb(gwpid) if gwpid else 0
        res["ct0"] = _ct_count(lab)
        nsrc = 40 if quick else FLOW_SRC
        res["flows_sent"] = res["flows_s"] = res["passes"] = 0.0
        for _ in range(FLOW_PASSES):  # again while some are missing: the known ones refresh, the lost ones open
            fl = _spawn(lab, "lan", ME, "_flows", WAN, str(nsrc), str(FLOW_DST), str(FLOW_PORT0), str(FLOW_RATE))
            sent, took = _out(fl, 60 + WAIT).split()
            time.sleep(1.0)  # the gateway's queue drains
            res["flows_sent"] += float(sent)
            res["flows_s"] += float(took)
            res["passes"] += 1
            res["ct1"] = _ct_count(lab)
            if res["ct1"] >= nsrc * FLOW_DST:
                break
        res["rss1"] = _rss_kb(gwpid) if gwpid else 0
        if lab.gw is not None:
            print("ipgate `stats` after its run:\n" + lab.ctl("stats").stdout.rstrip(), flush=True)
        return res
    finally:
        lab.down()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        cmd, a = sys.argv[1], list(sys.argv[2:])
        if cmd == "_tcpsink":
            return tcpsink(a[0], int(a[1]), float(a[2]), a[3])
        if cmd == "_tcpsrc":
            return tcpsrc(a[0], int(a[1]), float(a[2]))
        if cmd == "_echo":
            return echo(a[0], int(a[1]), float(a[2]), a[3])
        if cmd == "_rtt":
            return rtt(a[0], int(a[1]), int(a[2]))
        if cmd == "_flows":
            return flows(a[0], int(a[1]), int(a[2]), int(a[3]), float(a[4]))
        return 2
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="per throughput test")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 s tests, 300 RTTs, 10,000 flows")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="measure both gateways N times (flows only the first time) and report the median ratios")
    opts = p.parse_args()
    seconds = 2.0 if opts.quick else opts.seconds
    if (os.cpu_count() or 1) < 2:
        print("needs 2 CPUs (gateway on CPU 1, generators on CPU 0)")
        return 1
    runs: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="ipgt-bench-") as tmp:
        for i in range(max(1, opts.repeat)):
            r: dict[str, dict[str, float]] = {}
            for kind in ("ipgate", "kernel"):
                d = Path(tmp) / f"{kind}{i}"
                d.mkdir()
                r[kind] = measure(kind, seconds, opts.quick, d, flows=i == 0)
            runs.append(r)
    if len(runs) > 1:
        print(f"\n{len(runs)} runs, ipgate/kernel per run:")
        for key, label in (("udp_pps", "UDP"), ("tcp_mbs", "TCP")):
            ratios = sorted(x["ipgate"][key] / x["kernel"][key] for x in runs)
            print(f"  {label}: " + " ".join(f"{v:.2f}" for v in ratios) + f"  (median {ratios[len(ratios) // 2]:.2f})")
    r = runs[0]
    g, k = r["ipgate"], r["kernel"]
    print(f"\nMASQUERADE LAN -> WAN, {seconds:g} s per test, gateway on CPU {GW_CPU}, generators on CPU {GEN_CPU}")
    print(f"{'':22}{'ipgate':>12}{'kernel':>12}{'ipgate/kernel':>15}")
    rows = (("udp_pps", "UDP 64 B, packets/s"), ("tcp_pps", "TCP, segments/s"), ("tcp_mbs", "TCP, MB/s"))
    for key, label in rows:
        print(f"{label:22}{g[key]:>12.0f}{k[key]:>12.0f}{g[key] / k[key]:>15.2f}")
    print(f"(UDP offered: ipgate run {g['udp_sent']:.0f}/s, kernel run {k['udp_sent']:.0f}/s; "
          f"ipgate CPU during UDP {g.get('udp_cpu', 0):.0f}%)")
    print(f"UDP request/response RTT (us): ipgate p50 {g['rtt_p50']:.0f} p99 {g['rtt_p99']:.0f} "
          f"({g['rtt_n']:.0f} answered); kernel p50 {k['rtt_p50']:.0f} p99 {k['rtt_p99']:.0f} "
          f"({k['rtt_n']:.0f}); added by ipgate p50 {g['rtt_p50'] - k['rtt_p50']:.0f} "
          f"p99 {g['rtt_p99'] - k['rtt_p99']:.0f}")
    per_flow = 1024 * (g["rss1"] - g["rss0"]) / max(1, g["ct1"] - g["ct0"])
    print(f"UDP flows: ipgate: {g['flows_sent']:.0f} sent in {g['flows_s']:.1f} s ({g['passes']:.0f} passes), "
          f"conntrack {g['ct0']:.0f} -> "
          f"{g['ct1']:.0f}, VmRSS {g['rss0'] / 1024:.1f} -> {g['rss1'] / 1024:.1f} MiB "
          f"(+{(g['rss1'] - g['rss0']) / 1024:.1f} MiB, {per_flow:.0f} B/flow)")
    print(f"           kernel: {k['flows_sent']:.0f} sent in {k['flows_s']:.1f} s ({k['passes']:.0f} passes), "
          f"nf_conntrack_count {k['ct0']:.0f} -> {k['ct1']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
