"""`ipgate`: run the classic commands against a configuration, check it, or demo it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ipgate.shell import ScriptErrors, Shell, load_script
from ipgate.stack import Stack

TOOLS = ("ip", "ifconfig", "route", "sysctl", "iptables", "iptables-save", "iptables-restore", "conntrack", "trace",
         "cat", "ipchains", "ipfwadm", "netstat", "modprobe", "ipnat")


def load(path: str, keep_going: bool = False) -> Stack:
    text = Path(path).read_text()
    return load_script(text, path, keep_going=keep_going)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config: str | None = None
    control: str | None = None  # a running gateway's control socket (ipgate.io.main)
    while len(argv) >= 2 and argv[0] in ("-c", "--config", "--control"):
        if argv[0] == "--control":
            control = argv[1]
        else:
            config = argv[1]
        argv = argv[2:]
    if not argv:
        print("usage: ipgate [-c FILE] {ip|ifconfig|route|sysctl} ... | ipgate check FILE | ipgate demo"
              " | ipgate -c FILE replay IN -o OUT.pcapng | ipgate run -c FILE [--attach IF=DEV]"
              " | ipgate [--control PATH] {ip|iptables|conntrack|save|reload|stats} ..."
              " | ipgate lab [TOPOLOGY] [--kernel] [--keep]",
              file=sys.stderr)
        return 2
    if argv[0] == "check":
        return cmd_check(argv[1:])
    if argv[0] == "replay":
        return cmd_replay(config, argv[1:])
    if argv[0] == "ipftest":
        from ipgate.ipftest import main as ipftest_main

        return ipftest_main(argv[1:])
    if argv[0] == "demo":
        from ipgate.demo import run_demo

        return int(run_demo())
    if argv[0] == "lab":
        return cmd_lab(argv[1:])
    if argv[0] == "run":
        from ipgate.io.main import cmd_run

        return cmd_run(argv[1:], config, control)
    if argv[0] in (*TOOLS, "save", "reload", "stats"):
        from ipgate.io.main import LIVE_ONLY, cmd_remote, control_target

        target = control_target(control, config)
        if target is not None:
            return cmd_remote(target, argv)
        if argv[0] in LIVE_ONLY:
            print(f"ipgate: {argv[0]}: no running gateway (give --control PATH)", file=sys.stderr)
            return 1
    if argv[0] == "save":
        return cmd_save(config)
    if argv[0] in TOOLS:
        try:
            stack = load(config) if config else Stack()
        except ScriptErrors as e:
            print(e, file=sys.stderr)
            return 1
        except OSError as e:
            print(f"ipgate: {config}: {e.strerror}", file=sys.stderr)
            return 1
        sh = Shell(stack)
        sh.stdin = sys.stdin.read  # `ipnat -f -`
        res = sh.run_argv(argv)
        sys.stdout.write(res.out)
        sys.stderr.write(res.err)
        return res.status
    print(f"ipgate: unknown command {argv[0]!r}", file=sys.stderr)
    return 2


def cmd_save(config: str | None) -> int:
    """`ipgate -c FILE save`: the configuration as ipgate save writes it (round trip of a script)."""
    from ipgate.save import save

    try:
        stack = load(config) if config else Stack()
    except ScriptErrors as e:
        print(e, file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ipgate: {config}: {e.strerror}", file=sys.stderr)
        return 1
    sys.stdout.write(save(stack))
    return 0


def cmd_lab(argv: list[str]) -> int:
    """`ipgate lab [TOPOLOGY] [--kernel] [--keep]`: a namespace lab, its steps, then teardown."""
    from ipgate.lab.netns import NetnsError, usable
    from ipgate.lab.run import KEEP_MAX, LabError, run_lab
    from ipgate.lab.topology import TopologyError, load

    p = argparse.ArgumentParser(prog="ipgate lab", description="build a network-namespace lab, run its steps, "
                                "tear it down (needs root)")
    p.add_argument("topology", nargs="?", default="demo",
                   help="a TOML description, or a built-in name (demo, or a scenario of src/ipgate/lab/scenarios/)")
    p.add_argument("--kernel", action="store_true", help="the Linux kernel (iptables-legacy) is the gateway")
    p.add_argument("--keep", action="store_true",
                   help=f"keep the lab up after the steps until Ctrl-C or SIGTERM (at most {KEEP_MAX:g} s)")
    a = p.parse_args(argv)
    try:
        topo = load(a.topology)
    except TopologyError as e:
        print(f"ipgate lab: {e}", file=sys.stderr)
        return 1
    why = usable()
    if why is not None:
        print(f"ipgate lab: {why}", file=sys.stderr)
        return 1
    try:
        return 0 if run_lab(topo, kernel=a.kernel, keep=KEEP_MAX if a.keep else 0.0).ok else 1
    except (LabError, NetnsError) as e:
        print(f"ipgate lab: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ipgate lab: interrupted; the lab is torn down", file=sys.stderr)
        return 130


def cmd_check(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ipgate check")
    p.add_argument("file")
    p.add_argument("--keep-going", action="store_true", help="report every bad line, not just the first")
    a = p.parse_args(argv)
    try:
        load(a.file, keep_going=a.keep_going)
    except ScriptErrors as e:
        for err in e.errors:
            print(err, file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ipgate: {a.file}: {e.strerror}", file=sys.stderr)
        return 1
    print(f"{a.file}: OK")
    return 0


def cmd_replay(config: str | None, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ipgate replay")
    p.add_argument("capture", help="pcap or pcapng file to replay")
    p.add_argument("-o", "--output", required=True, help="pcapng file for the packets that leave")
    p.add_argument("--iif", help="receive every packet on this interface (needed for pcap files)")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is no terminal")
    a = p.parse_args(argv)
    from ipgate.packet.pcap import PcapError
    from ipgate.replay import ReplayError, replay_file

    try:
        stack = load(config) if config else Stack()
        summary = replay_file(stack, a.capture, a.output, iif=a.iif, progress=a.progress or sys.stderr.isatty())
    except ScriptErrors as e:
        print(e, file=sys.stderr)
        return 1
    except PcapError as e:
        print(f"ipgate replay: {a.capture}: {e}", file=sys.stderr)
        return 1
    except ReplayError as e:
        print(f"ipgate replay: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ipgate replay: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    sys.stdout.write(summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
