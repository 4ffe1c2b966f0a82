"""Which connections get a helper (nf_conntrack_helper.c): the registry of loaded helpers.

Loading a helper module (`modprobe nf_conntrack_ftp ports=21,2121`, or the
2.2-era `modprobe ip_masq_ftp`) registers it for its ports.  A new connection
whose REPLY tuple's source port (the server's port) and protocol match a
registered helper gets it automatically only when automatic assignment is on
(`net.netfilter.nf_conntrack_helper=1`, the pre-4.7 default the HOWTO-era
setups rely on; ipgate keeps that default, see NOTES.md); otherwise only
`-j CT --helper NAME` in the raw table assigns one.  The helper's code (what it
does with the payload) lives in conntrack/helpers/.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ipgate.conntrack.tuple import IPPROTO_TCP

# name -> (protocol, default ports): the helpers ipgate implements.
KNOWN_HELPERS: dict[str, tuple[int, tuple[int, ...]]] = {
    "ftp": (IPPROTO_TCP, (21,)),
    "irc": (IPPROTO_TCP, (6667,)),
}
# Module names as modprobe takes them, old and new, -> helper name.
MODULE_HELPERS: dict[str, str] = {
    "nf_conntrack_ftp": "ftp", "ip_conntrack_ftp": "ftp", "ip_masq_ftp": "ftp", "nf_nat_ftp": "ftp",
    "ip_nat_ftp": "ftp",
    "nf_conntrack_irc": "irc", "ip_conntrack_irc": "irc", "ip_masq_irc": "irc", "nf_nat_irc": "irc",
    "ip_nat_irc": "irc",
}
MAX_PORTS = 8  # the modules' MAX_PORTS


@dataclass(slots=True)
class HelperRegistry:
    """The loaded helpers: name -> ports, and (protocol, port) -> name for assignment."""

    ports: dict[str, tuple[int, ...]] = field(default_factory=dict)
    by_port: dict[tuple[int, int], str] = field(default_factory=dict)
    auto_assign: bool = True  # net.netfilter.nf_conntrack_helper

    def enable(self, name: str, ports: Sequence[int] | None = None) -> None:
        """Register helper `name` (KeyError if ipgate has no such helper) for `ports` (default ports if None)."""
        proto, default = KNOWN_HELPERS[name]
        chosen = tuple(ports) if ports else default
        if len(chosen) > MAX_PORTS:
            raise ValueError(f"at most {MAX_PORTS} ports")
        for p in self.ports.get(name, ()):
            self.by_port.pop((proto, p), None)
        self.ports[name] = chosen
        for p in chosen:
            self.by_port[(proto, p)] = name

    def disable(self, name: str) -> None:
        proto, _ = KNOWN_HELPERS[name]
        for p in self.ports.pop(name, ()):
            self.by_port.pop((proto, p), None)

    def find(self, proto: int, port: int) -> str | None:
        """__nf_ct_helper_find(): the helper registered for the reply tuple's (protocol, source port)."""
        return self.by_port.get((proto, port))

    def loaded(self, name: str) -> bool:
        return name in self.ports


