"""Configuration scripts: the lines of an rc.local/rc.firewall, one command each.

Comments, `\\` continuations and `/sbin/` style prefixes are accepted.  Besides
the tools, three shell idioms from the documents are understood:
``echo N > /proc/sys/net/ipv4/...`` (and ``sysctl -w``),
``echo "100 smtp" >> /etc/iproute2/rt_tables`` and
``echo "map ..." | ipnat -f -`` (the pipe is shell.py's).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from ipgate.commands.base import Exit, Output
from ipgate.inet import RT_TABLE_LOCAL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipgate.stack import Stack


def split_line(line: str) -> list[str]:
    """Words of one command line; `#` starts a comment; typographic dashes become '-'."""
    line = line.replace("\u2212", "-").replace("\u2013", "-").replace("\u201c", '"').replace("\u201d", '"')
    lex = shlex.shlex(line, posix=True, punctuation_chars=">;|&")
    lex.whitespace_split = True
    lex.commenters = "#"
    return list(lex)


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) with backslash continuations joined."""
    buf = ""
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = n
        if raw.endswith("\\"):
            buf += raw[:-1] + " "
            continue
        buf += raw
        yield start, buf
        buf = ""
    if buf:
        yield start, buf


def program_name(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def sysctl_key(path: str) -> str | None:
    if not path.startswith("/proc/sys/"):
        return None
    return path[len("/proc/sys/"):].replace("/", ".")


def do_echo(stack: Stack, words: list[str], o: Output) -> int:
    """`echo VALUE > /proc/sys/...` or `echo "N name" >> /etc/iproute2/rt_tables`."""
    if ">" in words or ">>" in words:
        op = ">>" if ">>" in words else ">"
        k = words.index(op)
        value, target = words[1:k], words[k + 1:]
        if len(target) != 1:
            raise Exit(1, "echo: expected one redirection target")
        path = target[0]
        if path.endswith("/iproute2/rt_tables"):
            text = " ".join(value)
            add_rt_table_line(stack, text)
            return 0
        key = sysctl_key(path)
        if key is None:
            raise Exit(1, f"echo: cannot write {path}: ipgate models /proc/sys and rt_tables only")
        set_sysctl(stack, key, " ".join(value))
        return 0
    o.print(" ".join(words[1:]))
    return 0


_PRINTF_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "\"": "\"", "'": "'", "a": "\a", "b": "\b",
                   "f": "\f", "r": "\r", "v": "\v"}


def printf_format(fmt: str, args: list[str]) -> str:
    """POSIX printf for the %s/%d/%% and backslash escapes the documents use."""
    out: list[str] = []
    it = iter(args)
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "\\" and i + 1 < len(fmt):
            out.append(_PRINTF_ESCAPES.get(fmt[i + 1], "\\" + fmt[i + 1]))
            i += 2
        elif c == "%" and i + 1 < len(fmt):
            conv = fmt[i + 1]
            if conv == "%":
                out.append("%")
            elif conv in "sd":
                out.append(next(it, "" if conv == "s" else "0"))
            else:
                raise Exit(1, f"printf: %{conv}: invalid directive")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def do_printf(stack: Stack, words: list[str], o: Output) -> int:
    """`printf "1\\tuplink0\\n" >> /etc/iproute2/rt_tables` (and to /proc/sys)."""
    target: str | None = None
    op = ""
    if ">" in words or ">>" in words:
        op = ">>" if ">>" in words else ">"
        k = words.index(op)
        if len(words) != k + 2:
            raise Exit(1, "printf: expected one redirection target")
        target = words[k + 1]
        words = words[:k]
    if len(words) < 2:
        raise Exit(2, "printf: usage: printf format [arguments]")
    text = printf_format(words[1], words[2:])
    if target is None:
        o.write(text)
        return 0
    if target.endswith("/iproute2/rt_tables"):
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                add_rt_table_line(stack, line)
        return 0
    key = sysctl_key(target)
    if key is None:
        raise Exit(1, f"printf: cannot write {target}: ipgate models /proc/sys and rt_tables only")
    set_sysctl(stack, key, text)
    return 0


def add_rt_table_line(stack: Stack, text: str) -> None:
    fields = text.split()
    if len(fields) < 2 or fields[0].startswith("#"):
        raise Exit(1, f"rt_tables: expected 'NUMBER NAME', got {text!r}")
    try:
        num = int(fields[0], 0)
    except ValueError:
        raise Exit(1, f"rt_tables: bad table number {fields[0]!r}") from None
    if not 0 <= num <= 0xFFFFFFFF:
        raise Exit(1, f"rt_tables: bad table number {fields[0]!r}")
    stack.rt_tables[num] = fields[1]


def set_sysctl(stack: Stack, key: str, value: str) -> None:
    v = value.strip()
    try:
        num = int(v.split()[0]) if v else 0
    except ValueError:
        raise Exit(1, f"sysctl: invalid value {value!r} for {key}") from None
    if not key.startswith("net."):
        raise Exit(1, f"sysctl: cannot stat /proc/sys/{key.replace('.', '/')}: No such file or directory")
    if key == "net.netfilter.nf_conntrack_helper":
        # automatic helper assignment by port (ipgate's default 1, as before Linux 4.7; see NOTES.md)
        if num not in (0, 1):
            raise Exit(1, f"sysctl: setting key \"{key}\": Invalid argument")
        stack.ct_helpers.auto_assign = bool(num)
        return
    if key.startswith(("net.netfilter.", "net.ipv4.netfilter.")):
        # conntrack's own settings (nf_conntrack_max, timeouts; old ip_conntrack_* names)
        try:
            stack.conntrack.sysctl.set(key, num)
        except KeyError:
            raise Exit(1, f"sysctl: cannot stat /proc/sys/{key.replace('.', '/')}: No such file or directory") from None
        except ValueError as e:
            raise Exit(1, f"sysctl: {e}") from None
        return
    stack.set_sysctl(key, num)


def do_sysctl(stack: Stack, words: list[str], o: Output) -> int:
    flags = "".join(w[1:] for w in words[1:] if w.startswith("-"))  # -w, -q, -qw ...
    args = [w for w in words[1:] if not w.startswith("-")]
    for a in args:
        if "=" in a:
            k, _, v = a.partition("=")
            set_sysctl(stack, k.strip().replace("/", "."), v)
            if "q" not in flags:
                o.print(f"{k.strip()} = {v.strip()}")
        else:
            key = a.replace("/", ".")
            if key not in stack.sysctl:
                raise Exit(255, f"sysctl: cannot stat /proc/sys/{a.replace('.', '/')}: No such file or directory")
            o.print(f"{key} = {stack.sysctl[key]}")
    return 0


__all__ = ["RT_TABLE_LOCAL", "do_echo", "do_printf", "do_sysctl", "logical_lines", "program_name", "split_line"]
