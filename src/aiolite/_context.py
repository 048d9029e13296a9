"""A result you can both ``await`` and ``async with`` (aiosqlite's most-used surface).

``await db.execute(q)`` gives the cursor; ``async with db.execute(q) as cur:`` gives the same
cursor and closes it on exit.  It is a real coroutine object, so ``asyncio.gather`` and
``asyncio.ensure_future`` accept it as they accept aiosqlite's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Generator
from types import TracebackType
from typing import Any, Generic, Optional, TypeVar

from ._cursor import Cursor

__all__ = ["Result"]

T = TypeVar("T")


class Result(Coroutine[Any, Any, T], Generic[T]):
    __slots__ = ("_coro", "_cursor", "_obj")

    def __init__(self, coro: Coroutine[Any, Any, T], cursor: Optional[Cursor] = None) -> None:
        self._coro = coro
        # The cursor the coroutine returns, when known up front (execute): then
        # ``async with`` needs no coroutine frames of its own.
        self._cursor = cursor

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

    def __aenter__(self) -> Coroutine[Any, Any, T]:
        if self._cursor is not None:
            return self._coro
        return self._enter()

    async def _enter(self) -> T:
        self._obj = await self._coro
        return self._obj

    def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> Awaitable[None]:
        cursor = self._cursor
        if cursor is None:
            obj = getattr(self, "_obj", None)
            cursor = obj if isinstance(obj, Cursor) else None
        return _nothing() if cursor is None else cursor.close()


async def _nothing() -> None:
    return None
