"""aiosqlite compatibility: ``aiosqlite.context`` (``Result``, ``contextmanager``).

Absolute imports on purpose: see ``aiolite/core.py``.
"""

from __future__ import annotations

from collections.abc import Coroutine
from functools import wraps
from typing import Any, Callable, TypeVar

from aiolite._context import Result
from aiolite._cursor import Cursor

__all__ = ["Cursor", "Result", "contextmanager"]

T = TypeVar("T")


def contextmanager(
    method: Callable[..., Coroutine[Any, Any, T]],
) -> Callable[..., Result[T]]:
    """Make a coroutine method return a Result: awaitable and usable with ``async with``."""

    @wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Result[T]:
        return Result(method(self, *args, **kwargs))

    return wrapper
