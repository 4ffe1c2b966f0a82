"""Building a NamedTuple on the hot path without its Python-level ``__new__``.

``SomeTuple(a, b, c)`` runs the generated ``__new__`` (a Python function) that
then calls ``tuple.__new__``; calling ``tuple.__new__(SomeTuple, (a, b, c))``
directly gives the same object at about half the cost.  Every field must be
given (defaults are not applied), in order.  Used where one is built per
packet: conntrack results, FIB results, route decisions, trace steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

_T = TypeVar("_T", bound=tuple[Any, ...])

if TYPE_CHECKING:
    def new_tuple(cls: type[_T], fields: tuple[Any, ...]) -> _T: ...
else:
    new_tuple = tuple.__new__
