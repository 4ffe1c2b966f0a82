"""`modprobe`, `insmod`, `rmmod`, `depmod` for the modules masquerading scripts load (kmod 30 wording).

There is no module loader here: a module is either a conntrack helper,
whose loading enables it in `stack.ct_helpers` (`ip_masq_ftp`,
`ip_conntrack_irc ports=6667,6969`, `nf_conntrack_ftp`, `nf_nat_ftp`, ...;
see conntrack/helper.py MODULE_HELPERS), or code ipgate always has (the
iptables tables and matches, conntrack, NAT, IP aliasing, 2.2's port
forwarding, which is DNAT now): loading those does nothing.  Helpers ipgate
lacks (RealAudio, Quake, CU-SeeMe, H.323, PPTP, ...) are refused with a
message that says so; any other name gets modprobe's own "not found".

As with the kernel: loading a module that is already loaded changes
nothing (its ports stay); `ports=` takes up to 8 numbers (MAX_PORTS,
kstrtou16 base 0); an unknown parameter or a bad value fails the load;
`rmmod`/`modprobe -r` of a helper disables it.  Module names may use - for
_, paths and .o/.ko suffixes (insmod), and `uname -r` inside a path (the
IP-Aliasing mini-HOWTO's ``insmod /lib/modules/`uname -r`/ipv4/ip_alias.o``).
The kernel release is a fixed string, RELEASE.
"""

from __future__ import annotations

import copy
import re

from ipgate.commands.base import Exit, Output
from ipgate.conntrack.helper import MAX_PORTS, MODULE_HELPERS, HelperRegistry
from ipgate.netfilter.names import xt_strtoui

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipgate.stack import Stack

RELEASE = "6.18.0-ipgate"  # what `uname -r` would say: a fixed, made-up kernel release
MODULE_DIR = f"/lib/modules/{RELEASE}"

# Modules whose code ipgate always has: loading them is a no-op.
BUILTIN_MODULES = frozenset("""
    x_tables ip_tables iptable_filter iptable_nat iptable_mangle iptable_raw ipt_MASQUERADE xt_MASQUERADE
    ipt_REJECT nf_reject_ipv4 ipt_LOG xt_LOG ipt_state xt_state ipt_conntrack xt_conntrack xt_tcpudp ipt_multiport
    xt_multiport xt_comment xt_mark ipt_mark xt_connmark xt_MARK ipt_MARK xt_CONNMARK xt_limit ipt_limit xt_iprange
    ipt_iprange xt_addrtype ipt_addrtype xt_tos ipt_tos xt_TOS ipt_TOS xt_dscp xt_DSCP xt_TCPMSS ipt_TCPMSS
    ipt_REDIRECT xt_REDIRECT xt_nat xt_CT xt_NOTRACK ipt_NETMAP xt_NETMAP ip_conntrack nf_conntrack
    nf_conntrack_ipv4 nf_defrag_ipv4 nf_nat nf_nat_ipv4 iptable_nat nf_nat_masquerade_ipv4 nf_conntrack_proto_gre
    nf_conntrack_proto_udplite nf_conntrack_proto_sctp nf_conntrack_proto_dccp ip_alias ipchains ipfwadm
    ip_masq_portfw ip_masq_mfw
""".split())

# Helpers (and helper-like modules) ipgate does not implement: module -> what it is.
MISSING_HELPERS: dict[str, str] = {
    **dict.fromkeys(("ip_masq_raudio",), "RealAudio masquerading helper"),
    **dict.fromkeys(("ip_masq_quake",), "Quake masquerading helper"),
    **dict.fromkeys(("ip_masq_cuseeme",), "CU-SeeMe masquerading helper"),
    **dict.fromkeys(("ip_masq_vdolive",), "VDOLive masquerading helper"),
    **dict.fromkeys(("ip_masq_icq",), "ICQ masquerading helper"),
    **dict.fromkeys(("ip_masq_pptp", "ip_conntrack_pptp", "nf_conntrack_pptp", "ip_nat_pptp", "nf_nat_pptp"),
                    "PPTP helper"),
    **dict.fromkeys(("ip_masq_ipsec",), "IPsec masquerading helper"),
    **dict.fromkeys(("ip_masq_h323", "ip_conntrack_h323", "nf_conntrack_h323", "ip_nat_h323", "nf_nat_h323"),
                    "H.323 helper"),
    **dict.fromkeys(("ip_masq_autofw",), "automatic port forwarding (ipautofw)"),
    **dict.fromkeys(("ip_masq_user",), "user-space masquerading control (ipmasqadm)"),
    **dict.fromkeys(("ip_conntrack_tftp", "nf_conntrack_tftp", "ip_nat_tftp", "nf_nat_tftp"), "TFTP helper"),
    **dict.fromkeys(("ip_conntrack_amanda", "nf_conntrack_amanda", "ip_nat_amanda", "nf_nat_amanda"),
                    "Amanda helper"),
    **dict.fromkeys(("nf_conntrack_sip", "nf_nat_sip"), "SIP helper"),
    **dict.fromkeys(("nf_conntrack_sane",), "SANE helper"),
    **dict.fromkeys(("nf_conntrack_netbios_ns",), "NetBIOS name service helper"),
    **dict.fromkeys(("nf_conntrack_snmp", "ip_nat_snmp_basic", "nf_nat_snmp_basic"), "SNMP helper"),
}

# The parameters each helper's module takes (values other than ports are accepted and not used).
HELPER_PARAMS = {"ftp": {"ports", "loose"}, "irc": {"ports", "max_dcc_channels", "dcc_timeout"}}

_UNAME = re.compile(r"`uname -r`|\$\(uname -r\)")


def module_name(word: str) -> str:
    """kmod's name for a module word: the file name without .o/.ko(.gz/.xz/.zst), '-' read as '_'."""
    base = word.rsplit("/", 1)[-1]
    base = re.sub(r"\.(o|ko)(\.(gz|xz|zst))?$", "", base)
    return base.replace("-", "_")


def _words(args: list[str]) -> list[str]:
    """Undo the shell's split of `uname -r` inside a word and substitute the release."""
    text = " ".join(args)
    return _UNAME.sub(RELEASE, text).split() if "uname" in text else args


def _params(prog: str, name: str, helper: str, params: list[str]) -> tuple[int, ...] | None:
    """The ports= list (None if not given); the kernel's refusal for anything it would refuse."""
    ports: tuple[int, ...] | None = None
    for p in params:
        key, eq, value = p.partition("=")
        if key not in HELPER_PARAMS[helper]:
            raise Exit(1, f"{prog}: ERROR: could not insert '{name}': Unknown symbol in module, or unknown parameter"
                          " (see dmesg)")
        if key != "ports":
            continue
        items = value.split(",") if eq else [""]
        nums = [xt_strtoui(v, 0, 65535) for v in items]
        if len(items) > MAX_PORTS or any(n is None for n in nums):
            raise Exit(1, f"{prog}: ERROR: could not insert '{name}': Invalid argument")
        ports = tuple(n for n in nums if n is not None)
    return ports


def load(helpers: HelperRegistry, prog: str, word: str, params: list[str], quiet: bool = False,
         warnings: list[str] | None = None) -> None:
    name = module_name(word)
    helper = MODULE_HELPERS.get(name)
    if helper is not None:
        ports = _params(prog, name, helper, params)
        if not helpers.loaded(helper):
            helpers.enable(helper, ports)
        return
    if name in BUILTIN_MODULES:
        return
    if name in MISSING_HELPERS:
        # An existing rc.firewall loads these: accept the line (the script must run) and say what is missing.
        if warnings is not None and not quiet:
            warnings.append(f"ipgate: warning: {name}: the {MISSING_HELPERS[name]} is not implemented;"
                            " its connections are tracked and translated without it")
        return
    if prog == "insmod":
        raise Exit(1, f"insmod: ERROR: could not load module {word}: No such file or directory")
    raise Exit(1, "" if quiet else f"modprobe: FATAL: Module {name} not found in directory {MODULE_DIR}")


def unload(helpers: HelperRegistry, prog: str, word: str) -> None:
    name = module_name(word)
    helper = MODULE_HELPERS.get(name)
    if helper is not None and helpers.loaded(helper):
        helpers.disable(helper)
    elif name in BUILTIN_MODULES or (helper is not None and prog == "modprobe"):
        return
    elif prog == "modprobe":
        raise Exit(1, f"modprobe: FATAL: Module {name} not found in directory {MODULE_DIR}")
    else:
        raise Exit(1, f"rmmod: ERROR: Module {name} is not currently loaded")


def modules(stack: Stack, prog: str, args: list[str], o: Output) -> int:
    """`modprobe [-a|-r|-q|-v|-n] MODULE [param=value ...]`, `insmod FILE [param=value ...]`, `rmmod`, `depmod`."""
    if prog == "depmod":
        return 0  # module dependencies: nothing to compute
    words = _words(args)
    flags = "".join(w[1:] for w in words if w.startswith("-") and not w.startswith("--"))
    longs = {w for w in words if w.startswith("--")}
    rest = [w for w in words if not w.startswith("-")]
    if not rest:
        if prog == "modprobe":
            raise Exit(1, "modprobe: ERROR: missing parameters. See -h.")
        raise Exit(1, f"Usage:\n\t{prog} [options] {'filename [args]' if prog == 'insmod' else 'modulename ...'}")
    remove = prog == "rmmod" or "r" in flags or "--remove" in longs
    if "n" in flags or "--dry-run" in longs:
        return 0

    warnings: list[str] = []

    def run(helpers: HelperRegistry, warn: list[str] | None = None) -> None:
        if remove:
            for w in rest:
                unload(helpers, prog, w)
        elif prog == "modprobe" and ("a" in flags or "--all" in longs):
            for w in rest:
                load(helpers, prog, w, [], "q" in flags, warn)
        else:
            load(helpers, prog, rest[0], rest[1:], "q" in flags, warn)

    run(copy.deepcopy(stack.ct_helpers))  # a failing word changes nothing
    run(stack.ct_helpers, warnings)
    for w in warnings:
        o.error(w)
    return 0
