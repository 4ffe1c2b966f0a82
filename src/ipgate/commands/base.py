"""What every command returns, and the small parsing helpers tools share."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(slots=True)
class Output:
    """Collects a command's stdout/stderr and exit status, like a process would."""

    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    status: int = 0

    def print(self, text: str = "") -> None:
        self.out.append(text + "\n")

    def write(self, text: str) -> None:
        self.out.append(text)

    def error(self, text: str) -> None:
        self.err.append(text + "\n")

    def json(self, obj: object) -> None:
        self.out.append(json.dumps(obj, separators=(",", ":")) + "\n")


class Exit(Exception):
    """Stop the command with a status after printing `message` to stderr.

    `fatal` mirrors a tool calling exit() itself (iproute2's usage()): it ends a
    whole `-batch` run at once, without the "Command failed" line.
    """

    def __init__(self, status: int, message: str = "", fatal: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fatal = fatal


def matches(word: str, full: str) -> bool:
    """iproute2's matches(): `word` is a non-empty prefix of `full`."""
    return bool(word) and full.startswith(word)
