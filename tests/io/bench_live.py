"""Packets per second through the live gateway (not a test: run by hand, as root).

    .venv/bin/python tests/io/bench_live.py [--modes packet,packet-ring,tap,tun,kernel] [--seconds 5]
        [--size 64] [--pin]

Builds the namespace lab of test_gateway_netns.py for each mode, floods UDP from the LAN host to the WAN
host through MASQUERADE (one flow: the engine's fast path) and reports what the WAN host received per
second, what the gateway read and wrote (its `stats`), and the gateway's CPU time.  Mode `kernel` is the
baseline: the same veth topology with Linux itself forwarding and masquerading in ipgt-gw.  The sender, the
gateway and the receiver share this machine's cores, so the figures are a lower bound.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_gateway_netns import Lab, _wait  # noqa: E402


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kernel_gateway(lab: Lab) -> None:
    """The kernel as the gateway on the packet topology: addresses on the veth ends, forwarding, MASQUERADE."""
    gw = lab.ns("gw")
    for cmd in (["ip", "-n", gw, "addr", "add", "192.168.10.1/24", "dev", "gl0"],
                ["ip", "-n", gw, "addr", "add", "203.0.113.1/24", "dev", "gw0"],
                ["ip", "-n", gw, "link", "set", "gl0", "up"], ["ip", "-n", gw, "link", "set", "gw0", "up"],
                ["ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                ["ip", "netns", "exec", gw, "iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-o", "gw0", "-j",
                 "MASQUERADE"]):
        subprocess.run(cmd, check=True, capture_output=True, timeout=15)


def run(mode: str, seconds: float, size: int, pin: bool = False) -> str:
    ring = mode.endswith("-ring")
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(mode.removesuffix("-ring"), Path(tmp))
        lab.tag = f"bench{os.getpid()}"
        if ring:
            lab.gw_args.append("--ring")
        try:
            if mode == "kernel":
                lab.mode = "packet"
                lab.network()
                kernel_gateway(lab)
                lab.hosts()
            else:
                lab.up()
            ping = lab.host("lan", "ping", "203.0.113.2", "50").stdout.strip()
            ready = str(Path(tmp) / "sink-ready")
            last = (os.cpu_count() or 1) - 1
            if pin and lab.gw is not None:  # the gateway alone on the last CPU, sender and receiver on the first
                os.sched_setaffinity(lab.gw.pid, {last})
            sink = lab.spawn("wan", "sink", "203.0.113.2", "9000", str(seconds), ready)
            if pin:
                os.sched_setaffinity(sink.pid, {0})
            _wait("the sink", lambda: os.path.exists(ready))
            gwpid = lab.gw.pid if lab.gw is not None else os.getpid()
            cpu0, t0 = _cpu(gwpid), time.monotonic()
            flood = lab.spawn("lan", "flood", "203.0.113.2", "9000", str(seconds), str(size))
            if pin:
                os.sched_setaffinity(flood.pid, {0})
            sent = flood.communicate(timeout=seconds + 20)[0].split()[0]
            cpu1, t1 = _cpu(gwpid), time.monotonic()
            out, _ = sink.communicate(timeout=seconds + 20)
            n, elapsed, rate = out.split()[:3]
            stats = ""
            if lab.gw is not None:
                stats = lab.ctl("stats").stdout
                lab.gw.send_signal(signal.SIGTERM)
                lab.gw.communicate(timeout=20)
            cpu = f"{100 * (cpu1 - cpu0) / (t1 - t0):.0f}%" if lab.gw is not None else "(softirq)"
            return (f"{mode:<12} sent {int(sent) / seconds:>9.0f}/s  received {rate:>7}/s  "
                    f"gateway cpu {cpu}  ({n} in {elapsed} s)  ping {ping}\n{stats}")
        finally:
            lab.down()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--modes", default="packet,packet-ring,tap,tun,kernel")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--size", type=int, default=64, help="UDP payload bytes")
    p.add_argument("--pin", action="store_true", help="gateway on the last CPU, sender and receiver on CPU 0")
    a = p.parse_args()
    for mode in a.modes.split(","):
        print(run(mode, a.seconds, a.size, a.pin), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
