"""Configuration scripts: the lines of an rc.local/rc.firewall, one command each.

Comments, `\\` continuations and `/sbin/` style prefixes are accepted.  Besides
the tools, two shell idioms from the documents are understood:
``echo N > /proc/sys/net/ipv4/...`` (and ``sysctl -w``) and
``echo "100 smtp" >> /etc/iproute2/rt_tables``.
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
    stack.set_sysctl(key, num)


def do_sysctl(stack: Stack, words: list[str], o: Output) -> int:
    args = [w for w in words[1:] if w not in ("-w", "-q")]
    for a in args:
        if "=" in a:
            k, _, v = a.partition("=")
            set_sysctl(stack, k.strip().replace("/", "."), v)
            if "-q" not in words:
                o.print(f"{k.strip()} = {v.strip()}")
        else:
            key = a.replace("/", ".")
            if key not in stack.sysctl:
                raise Exit(255, f"sysctl: cannot stat /proc/sys/{a.replace('.', '/')}: No such file or directory")
            o.print(f"{key} = {stack.sysctl[key]}")
    return 0


__all__ = ["RT_TABLE_LOCAL", "do_echo", "do_sysctl", "logical_lines", "program_name", "split_line"]
