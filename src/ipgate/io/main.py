"""The command line of the live gateway: `ipgate run`, and commands sent to a running one.

    ipgate run -c FILE [--attach IF=DEV ...] [--control PATH] [--log FILE] [--ring] [--batch N]
               [--state FILE | --no-state] [--state-interval SECONDS] [--metrics ADDR:PORT]
    ipgate [--control PATH] ip addr show        (also iptables, conntrack, save, reload, stats, ...)

A command goes to the running gateway when --control is given, or when no
-c is given and the default socket exists; otherwise it runs offline.

The state file (connections kept across a restart, conntrack/persist.py)
defaults to /var/lib/ipgate/state for the gateway on the default control
socket -- the host's own gateway -- when that directory exists or can be
made and is writable; a gateway with its own --control (a lab, a test, a
second instance) has none unless --state names one, so that two gateways
never share a file.  --no-state turns it off.
"""

from __future__ import annotations

import argparse
import os
import sys

from ipgate.io.control import DEFAULT_PATH, ControlError, request

LIVE_ONLY = ("reload", "stats")
DEFAULT_STATE = "/var/lib/ipgate/state"
MAX_STDIN = 16 << 20


def control_target(control: str | None, config: str | None) -> str | None:
    """Where a command goes: the given socket, else the default one if it exists and no -c was given."""
    if control:
        return control
    if config is None and os.path.exists(DEFAULT_PATH):
        return DEFAULT_PATH
    return None


def _wants_stdin(argv: list[str]) -> bool:
    prog = os.path.basename(argv[0])
    if prog.startswith("iptables") and prog.endswith("-restore"):
        return not any(not a.startswith("-") and a != "<" for a in argv[1:])
    return prog == "ipnat" and "-" in argv[1:]


def cmd_remote(path: str, argv: list[str]) -> int:
    stdin = sys.stdin.read(MAX_STDIN) if _wants_stdin(argv) else None
    try:
        status, out, err = request(path, argv, stdin)
    except ControlError as e:
        print(f"ipgate: control socket {e}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    sys.stderr.write(err)
    return status


def default_state(control: str | None) -> str | None:
    """DEFAULT_STATE for the gateway on the default control socket if its directory is usable, else None."""
    if control != DEFAULT_PATH:
        return None
    directory = os.path.dirname(DEFAULT_STATE)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return DEFAULT_STATE if os.access(directory, os.W_OK | os.X_OK) else None


def cmd_run(argv: list[str], config: str | None = None, control: str | None = None) -> int:
    from ipgate.io.gateway import BATCH, run
    from ipgate.io.malloc import keep_freed_heap
    from ipgate.io.metrics import CountingSyslogWriter, parse_listen
    from ipgate.io.ports import AttachSpec, parse_attach

    p = argparse.ArgumentParser(prog="ipgate run", description="run the gateway on real devices until SIGTERM")
    p.add_argument("-c", "--config", default=config, help="the configuration script (reloaded on SIGHUP)")
    p.add_argument("--attach", action="append", default=[], metavar="IF=DEV",
                   help="bind interface IF to kernel interface DEV (AF_PACKET), or IF=tun / IF=tap to create it")
    p.add_argument("--control", default=control or DEFAULT_PATH, help=f"control socket (default {DEFAULT_PATH})")
    p.add_argument("--no-control", action="store_true", help="do not open a control socket")
    p.add_argument("--log", help="append syslog-style lines to this file instead of stderr")
    p.add_argument("--ring", action="store_true", help="receive through a TPACKET_V3 mmap ring on AF_PACKET")
    p.add_argument("--batch", type=int, default=BATCH, help=f"packets read per device per wake-up ({BATCH})")
    p.add_argument("--state", metavar="FILE", help="keep connections across restarts in FILE (default "
                   f"{DEFAULT_STATE} with the default control socket, else none)")
    p.add_argument("--no-state", action="store_true", help="do not load or save connections")
    p.add_argument("--state-interval", type=float, default=0.0, metavar="SECONDS",
                   help="also save the state this often (default: only on stop)")
    p.add_argument("--metrics", metavar="ADDR:PORT", help="serve Prometheus metrics on this loopback address")
    a = p.parse_args(argv)
    if not a.config:
        p.error("-c FILE is required")
    if not 1 <= a.batch <= 4096:
        p.error("--batch must be between 1 and 4096")
    if not (a.state_interval == 0 or a.state_interval >= 1):  # NaN fails both
        p.error("--state-interval must be 0 (save on stop only) or at least 1 second")
    try:
        specs: list[AttachSpec] = [parse_attach(x) for x in a.attach]
        metrics = parse_listen(a.metrics) if a.metrics else None
    except ValueError as e:
        p.error(str(e))
    control_path = None if a.no_control else a.control
    state = None if a.no_state else (a.state or default_state(control_path))
    log = CountingSyslogWriter(a.log)
    keep_freed_heap()
    return run(a.config, specs, control=control_path, log=log, ring=a.ring, batch=a.batch, state=state,
               state_interval=a.state_interval, metrics=metrics)
