"""Soak: `ipgate run` as the `demo` lab's gateway under bounded mixed traffic (root, by hand).

    .venv/bin/python bench/soak.py [--minutes M]      # default 10

The `demo` lab (ipgate.lab: lan1 10.0.0.2 and lan2 10.0.0.3 behind the gateway, masqueraded to the
server 203.0.113.10 through isp1).  The server runs a TCP echo (port 7000), a one-shot TCP echo (7001) and
a UDP echo (7002).  Each LAN host, for M minutes:

- 4 long-lived TCP connections, each echoing a checked block every 0.2, 2, 20 or 90 s (the idle ones test
  the established timeout); any error is a lost connection (reconnected, and counted);
- short TCP connections opened, echoed, closed, about 5 a second;
- UDP request/response, about 5 a second; a raw ICMP ping each second.

The gateway runs on CPU 1, the hosts on CPU 0.  Its VmRSS is sampled every 10 s.  At the end: connections
opened/closed, long-lived connections lost (must be 0), RSS first/min/max/last, and every log line that is
not an expected one (none is expected).  Internal subcommands `_server` and `_client` run in the namespaces.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from ipgate.lab.run import Lab, _env, signals_exit
from ipgate.lab.topology import load

SERVER = "203.0.113.10"
P_LONG, P_SHORT, P_UDP = 7000, 7001, 7002
LONG_PERIODS = (0.2, 2.0, 20.0, 90.0)  # seconds between echoes on the long-lived connections
SAMPLE = 10.0  # seconds between RSS samples
GW_CPU, GEN_CPU = 1, 0
IO_TIMEOUT = 10.0
EXPECTED_LOG = (r"ipgate\[\d+\]: started with ", r"ipgate\[\d+\]: stopping$")  # asked for: start, stop


# -- the server (in the `server` namespace) ----------------------------------------------------
def _serve_conn(c: socket.socket, once: bool, stats: dict[str, int], lock: threading.Lock) -> None:
    c.settimeout(LONG_PERIODS[-1] * 2)
    try:
        while d := c.recv(65536):
            c.sendall(d)
            if once:
                break
    except OSError:
        with lock:
            stats["errors"] += 1
    finally:
        c.close()
        with lock:
            stats["closed"] += 1


def server(addr: str, seconds: float, ready: str) -> int:
    end = time.monotonic() + seconds
    stats, lock = {"accepted": 0, "closed": 0, "errors": 0, "udp": 0}, threading.Lock()

    def tcp(port: int, once: bool) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(64)
        s.settimeout(1.0)
        while time.monotonic() < end:
            try:
                c, _ = s.accept()
            except TimeoutError:
                continue
            with lock:
                stats["accepted"] += 1
            threading.Thread(target=_serve_conn, args=(c, once, stats, lock), daemon=True).start()

    def udp() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, P_UDP))
        s.settimeout(1.0)
        while time.monotonic() < end:
            try:
                d, peer = s.recvfrom(2048)
            except TimeoutError:
                continue
            s.sendto(d, peer)
            stats["udp"] += 1

    threads = [threading.Thread(target=tcp, args=(P_LONG, False), daemon=True),
               threading.Thread(target=tcp, args=(P_SHORT, True), daemon=True),
               threading.Thread(target=udp, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    Path(ready).touch()
    stop = Path(ready).with_suffix(".stop")
    while time.monotonic() < end and not stop.exists():
        time.sleep(0.5)
    with lock:
        print(json.dumps(stats), flush=True)
    return 0


# -- a client (in a LAN namespace) ------------------------------------------------------------
def _csum(b: bytes) -> int:
    v = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while v >> 16:
        v = (v & 0xFFFF) + (v >> 16)
    return int(~v & 0xFFFF)


def _echo(c: socket.socket, block: bytes) -> None:
    c.sendall(block)
    got = b""
    while len(got) < len(block):
        d = c.recv(65536)
        if not d:
            raise ConnectionError("closed by the peer")
        got += d
    if got != block:
        raise ValueError("echo differs")


def client(dst: str, seconds: float) -> int:
    end = time.monotonic() + seconds
    st: dict[str, int] = {k: 0 for k in ("long_opened", "long_lost", "long_echoes", "short_opened", "short_closed",
                                         "short_failed", "udp_ok", "udp_lost", "ping_ok", "ping_lost")}
    errors: list[str] = []
    lock = threading.Lock()

    def add(key: str, n: int = 1) -> None:
        with lock:
            st[key] += n

    def long_lived(period: float) -> None:
        rng = random.Random(period)
        while time.monotonic() < end:
            try:
                c = socket.create_connection((dst, P_LONG), timeout=IO_TIMEOUT)
            except OSError as e:
                add("long_lost")
                errors.append(f"long {period}s connect: {e}")
                time.sleep(1.0)
                continue
            add("long_opened")
            c.settimeout(IO_TIMEOUT)
            try:
                while time.monotonic() < end:
                    _echo(c, rng.randbytes(rng.randint(1, 8192)))
                    add("long_echoes")
                    time.sleep(min(period, max(0.0, end - time.monotonic())))
                c.close()
                return
            except (OSError, ValueError) as e:
                add("long_lost")
                errors.append(f"long {period}s {c.getsockname()}: {e!r}")
                c.close()

    def short() -> None:
        while time.monotonic() < end:
            try:
                with socket.create_connection((dst, P_SHORT), timeout=IO_TIMEOUT) as c:
                    add("short_opened")
                    c.settimeout(IO_TIMEOUT)
                    _echo(c, os.urandom(100))
                add("short_closed")
            except (OSError, ValueError) as e:
                add("short_failed")
                errors.append(f"short: {e!r}")
            time.sleep(0.2)

    def udp() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((dst, P_UDP))
        s.settimeout(1.0)
        i = 0
        while time.monotonic() < end:
            msg = struct.pack("!I", i) + os.urandom(60)
            i += 1
            s.send(msg)
            try:
                while s.recv(2048) != msg:
                    pass
                add("udp_ok")
            except OSError:
                add("udp_lost")
            time.sleep(0.2)

    def ping() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        ident, seq = os.getpid() & 0xFFFF, 0
        while time.monotonic() < end:
            seq = (seq + 1) & 0xFFFF
            body = struct.pack("!HH", ident, seq) + b"ipgate-soak-ping"
            s.sendto(struct.pack("!BBH", 8, 0, _csum(b"\x08\x00\x00\x00" + body)) + body, (dst, 0))
            deadline, ok = time.monotonic() + 1.0, False
            while not ok and (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    d = s.recv(2048)
                except OSError:
                    break
                ihl = (d[0] & 15) * 4
                ok = d[ihl] == 0 and d[ihl + 4:ihl + 8] == body[:4]
            add("ping_ok" if ok else "ping_lost")
            time.sleep(max(0.0, deadline - time.monotonic()))

    threads = [threading.Thread(target=long_lived, args=(p,), daemon=True) for p in LONG_PERIODS]
    threads += [threading.Thread(target=f, daemon=True) for f in (short, udp, ping)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, end - time.monotonic()) + 2 * IO_TIMEOUT)
    st["threads_stuck"] = sum(t.is_alive() for t in threads)
    with lock:
        print(json.dumps({"stats": st, "errors": errors[:20]}), flush=True)
    return 0


# -- the soak -------------------------------------------------------------------------------
def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _entries(lab: Lab) -> int:
    return sum(1 for x in lab.gateway_cmd(["conntrack", "-L"]).out.splitlines() if x.strip())


def soak(minutes: float) -> int:

    seconds = minutes * 60
    me = str(Path(__file__).resolve())
    lab = Lab(load("demo"))
    rss: list[tuple[float, int, int]] = []  # (seconds, VmRSS kB, conntrack entries)
    outs: dict[str, str] = {}
    t_start = time.monotonic()
    with signals_exit(), lab:
        assert lab.gw is not None and lab.tmp is not None
        gwpid = lab.gw.pid
        os.sched_setaffinity(gwpid, {GW_CPU})
        ready = lab.tmp / "server.ready"
        srv = lab.ns.spawn("server", [sys.executable, me, "_server", SERVER, str(seconds + 120), str(ready)],
                           env=_env())
        lab.procs.append(srv)
        os.sched_setaffinity(srv.pid, {GEN_CPU})
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline and srv.poll() is None:
            time.sleep(0.1)
        if not ready.exists():
            print(f"the server did not start: {srv.communicate(timeout=10)[0]}")
            return 1
        clients = {h: lab.ns.spawn(h, [sys.executable, me, "_client", SERVER, str(seconds)], env=_env())
                   for h in ("lan1", "lan2")}
        for p in clients.values():
            lab.procs.append(p)
            os.sched_setaffinity(p.pid, {GEN_CPU})
        t0 = time.monotonic()
        while time.monotonic() < t0 + seconds + 3 * 10.0 and any(p.poll() is None for p in clients.values()):
            rss.append((time.monotonic() - t0, _rss_kb(gwpid), _entries(lab)))
            if lab.gw.poll() is not None:
                print(f"the gateway exited ({lab.gw.returncode})")
                break
            time.sleep(min(SAMPLE, max(0.5, t0 + seconds - time.monotonic())))
        rss.append((time.monotonic() - t0, _rss_kb(gwpid), _entries(lab)))
        for h, p in clients.items():
            try:
                outs[h] = p.communicate(timeout=40)[0]
            except Exception as e:  # noqa: BLE001 - report it, teardown follows
                outs[h] = f'{{"error": "{e}"}}'
        ready.with_suffix(".stop").touch()
        try:
            outs["server"] = srv.communicate(timeout=10)[0]
        except Exception as e:  # noqa: BLE001
            outs["server"] = f'{{"error": "{e}"}}'
        ct = _entries(lab)
        gw_alive = lab.gw.poll() is None
    log = lab.gw_log

    print(f"soak: demo lab, ipgate run as gateway (CPU {GW_CPU}), {minutes:g} min of traffic, "
          f"{time.monotonic() - t_start:.0f} s in all; gateway alive at the end: {gw_alive}, "
          f"exit status after SIGTERM: {lab.gw_status}")
    total: dict[str, int] = {}
    for h in ("lan1", "lan2"):
        try:
            r = json.loads(outs[h].strip().splitlines()[-1])
        except (ValueError, IndexError):
            print(f"{h}: no summary: {outs[h]!r}")
            continue
        for k, v in r["stats"].items():
            total[k] = total.get(k, 0) + v
        for err in r["errors"]:
            print(f"  {h} error: {err}")
    print(f"long-lived TCP: {total.get('long_opened', 0)} opened, {total.get('long_echoes', 0)} checked echoes, "
          f"LOST {total.get('long_lost', 0)}")
    print(f"short TCP: {total.get('short_opened', 0)} opened, {total.get('short_closed', 0)} closed, "
          f"{total.get('short_failed', 0)} failed")
    print(f"UDP request/response: {total.get('udp_ok', 0)} answered, {total.get('udp_lost', 0)} lost; "
          f"ping: {total.get('ping_ok', 0)} answered, {total.get('ping_lost', 0)} lost; "
          f"client threads stuck: {total.get('threads_stuck', 0)}")
    print(f"server: {outs.get('server', '').strip()}")
    print(f"gateway conntrack entries at the end: {ct}")
    kb = [v for _, v, _ in rss if v]
    if kb:
        print(f"gateway VmRSS (MiB): first {kb[0] / 1024:.1f} min {min(kb) / 1024:.1f} max {max(kb) / 1024:.1f} "
              f"last {kb[-1] / 1024:.1f} ({len(kb)} samples every {SAMPLE:g} s)")
        print("  samples (s: MiB/conntrack entries): "
              + " ".join(f"{t:.0f}:{v / 1024:.1f}/{n}" for t, v, n in rss))
    odd = [x for x in log.splitlines() if x.strip() and not any(re.search(p, x) for p in EXPECTED_LOG)]
    print(f"gateway log: {len(log.splitlines())} lines, {len(odd)} unexpected")
    for x in odd[:50]:
        print(f"  {x}")
    return 0 if total.get("long_lost", 1) == 0 and not odd else 1


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_server":
        return server(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        return client(sys.argv[2], float(sys.argv[3]))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    a = p.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)")
        return 1
    return soak(a.minutes)


if __name__ == "__main__":
    sys.exit(main())
