"""getopt(3) and getopt_long(3) as glibc runs them for ipchains, ipfwadm and netstat, and the BSD
getopt(3) that IP Filter's tools (ipnat, ipftest) were built with (`bsd_getopt`).

The legacy tools read extra words themselves by moving optind (ipchains
`-s ADDR PORT`, ipfwadm `-a POLICY`, `-S ADDR PORT...`), so `peek`/`take`
expose the next word.  Clusters (`-nL`), attached arguments (`-Linput`),
optional arguments (`L::`, attached only), unique long-option prefixes and
"--" are handled as glibc does; errors carry glibc's own message text.
In the default (permuting) mode a non-option word is set aside and left for
the tool to complain about; with `in_order` (a leading "-" in the optstring)
it is returned as option "\\x01", as glibc's RETURN_IN_ORDER does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

NONOPT = "\x01"


@dataclass(frozen=True, slots=True)
class LongOpt:
    name: str
    has_arg: int  # 0 none, 1 required, 2 optional
    key: str      # the short option letter it stands for


@dataclass(slots=True)
class Getopt:
    prog: str
    argv: list[str]  # the words after the program name
    optstring: str
    longopts: tuple[LongOpt, ...] = ()
    in_order: bool = False
    optind: int = 0
    rest: list[str] = field(default_factory=list)  # non-options set aside (permuting mode)
    _cluster: str = ""

    def _spec(self, c: str) -> int | None:
        """0 no argument, 1 required, 2 optional, None unknown."""
        i = self.optstring.find(c)
        if c in ":-" or i < 0:
            return None
        if self.optstring[i + 1:i + 3] == "::":
            return 2
        return 1 if self.optstring[i + 1:i + 2] == ":" else 0

    def peek(self) -> str | None:
        return self.argv[self.optind] if self.optind < len(self.argv) else None

    def take(self) -> str:
        self.optind += 1
        return self.argv[self.optind - 1]

    def next(self) -> tuple[str, str | None] | None:
        """(letter, optarg); ("?", glibc's message) on an error; None at the end."""
        if self._cluster:
            return self._short()
        while self.optind < len(self.argv):
            word = self.argv[self.optind]
            if word == "--":
                self.optind += 1
                self.rest.extend(self.argv[self.optind:])
                self.optind = len(self.argv)
                return None
            if word.startswith("--"):
                self.optind += 1
                return self._long(word)
            if word.startswith("-") and word != "-":
                self._cluster = word[1:]
                self.optind += 1
                return self._short()
            self.optind += 1
            if self.in_order:
                return (NONOPT, word)
            self.rest.append(word)
        return None

    def _short(self) -> tuple[str, str | None]:
        c, self._cluster = self._cluster[0], self._cluster[1:]
        spec = self._spec(c)
        if spec is None:
            return ("?", f"{self.prog}: invalid option -- '{c}'")
        if spec == 0:
            return (c, None)
        if self._cluster:
            arg, self._cluster = self._cluster, ""
            return (c, arg)
        if spec == 2:
            return (c, None)
        if self.optind >= len(self.argv):
            return ("?", f"{self.prog}: option requires an argument -- '{c}'")
        return (c, self.take())

    def _long(self, word: str) -> tuple[str, str | None]:
        name, eq, value = word[2:].partition("=")
        exact = [lo for lo in self.longopts if lo.name == name]
        cands = exact or [lo for lo in self.longopts if lo.name.startswith(name)]
        if not cands:
            return ("?", f"{self.prog}: unrecognized option '{word}'")
        if len({(lo.key, lo.has_arg) for lo in cands}) > 1:
            names = " ".join(f"'--{lo.name}'" for lo in cands)
            return ("?", f"{self.prog}: option '{word.partition('=')[0]}' is ambiguous; possibilities: {names}")
        lo = cands[0]
        if lo.has_arg == 0:
            if eq:
                return ("?", f"{self.prog}: option '--{lo.name}' doesn't allow an argument")
            return (lo.key, None)
        if eq:
            return (lo.key, value)
        if lo.has_arg == 2:
            return (lo.key, None)
        if self.optind >= len(self.argv):
            return ("?", f"{self.prog}: option '--{lo.name}' requires an argument")
        return (lo.key, self.take())


def bsd_getopt(name: str, args: list[str], optstring: str, error: Callable[[str], None], *,
               skip_bad: bool = False) -> tuple[list[tuple[str, str | None]], list[str]] | None:
    """getopt(3) as on the BSDs and Solaris: no permutation, the first non-option word ends the options.

    Returns (options, the words left), or None after reporting a bad option through `error` -- unless
    `skip_bad`, for tools whose option switch has no default case (ipftest): the option is reported
    and skipped."""
    opts: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            return opts, args[i + 1:]
        if not word.startswith("-") or word == "-":
            return opts, args[i:]
        i += 1
        j = 1
        while j < len(word):
            c = word[j]
            k = optstring.find(c)
            if c == ":" or k < 0:
                error(f"{name}: illegal option -- {c}")
                if not skip_bad:
                    return None
                j += 1
                continue
            if optstring[k + 1:k + 2] == ":":
                if j + 1 < len(word):
                    opts.append((c, word[j + 1:]))
                elif i < len(args):
                    opts.append((c, args[i]))
                    i += 1
                else:
                    error(f"{name}: option requires an argument -- {c}")
                    if not skip_bad:
                        return None
                break
            opts.append((c, None))
            j += 1
    return opts, []
