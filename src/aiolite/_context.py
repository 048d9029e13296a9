"""A result you can both ``await`` and ``async with`` (aiosqlite's most-used surface).

``await db.execute(q)`` gives the cursor; ``async with db.execute(q) as cur:`` gives the same
cursor and closes it on exit.  It is a real coroutine object, so ``asyncio.gather`` and
``asyncio.ensure_future`` accept it as they accept aiosqlite's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Generator
from types import TracebackType
from typing import Any, Generic, Optional, TypeVar

from ._closing import DONE
from ._cursor import Cursor

__all__ = ["Result"]

T = TypeVar("T")


class Result(Coroutine[Any, Any, T], Generic[T]):
    """Wraps the coroutine of a Connection method; also an async context manager."""

    __slots__ = ("_coro", "_obj")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None:
            return self._coro.throw(typ)
        if tb is None:
            return self._coro.throw(typ, val)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, T]:
        return self._coro.__await__()

    async def __aenter__(self) -> T:
        self._obj = await self._coro
        return self._obj

    def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> Awaitable[None]:
        obj = getattr(self, "_obj", None)
        return obj.close_now() if isinstance(obj, Cursor) else DONE
