"""A result you can both ``await`` and ``async with`` (aiosqlite's most-used surface).

``await db.execute(q)`` gives the cursor; ``async with db.execute(q) as cur:`` gives the same
cursor and closes it on exit.  It is a real coroutine object, so ``asyncio.gather`` and
``asyncio.ensure_future`` accept it as they accept aiosqlite's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Generator
from types import TracebackType
from typing import Any, Generic, Optional, TypeVar

from ._backends._asyncio import Ready
from ._closing import DONE
from ._cursor import Cursor, run_new
from ._worker import NOT_HERE

__all__ = ["Execution", "Result"]

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


class Execution(Coroutine[Any, Any, Cursor]):
    """What ``Connection.execute()`` returns: the statement, run when first awaited.

    The hot path of the whole library.  The job itself returns the cursor, so awaiting
    this awaits the worker's waiter directly, with no coroutine frame in between, and
    ``async with`` closes the cursor without one either.  It still is a Coroutine (send,
    throw, close), so ``asyncio.create_task`` and ``gather`` take it.
    """

    # Made by Connection.execute, slot by slot: no __init__ frame on the hot path.
    __slots__ = ("_cursor", "_it", "_params", "_sql")
    _cursor: Cursor
    _sql: Optional[str]  # None once awaited
    _params: Any
    _it: Any  # the waiter's iterator, when driven through send()

    def __await__(self) -> Generator[Any, None, Cursor]:
        sql = self._sql
        if sql is None:
            raise RuntimeError("cannot reuse already awaited coroutine")
        self._sql = None
        cursor = self._cursor
        params = self._params
        args = (cursor, sql, params, cursor.iter_chunk_size)
        stmt = (sql, params)
        conn = cursor._conn
        # Connection._statement, without its Ready: the call that ran here returns this
        # cursor, so there is nothing to wrap.
        if conn._here(run_new, args, sql, stmt) is not NOT_HERE:
            return cursor
        call = conn._dispatch(run_new, args, sql, stmt)
        if type(call) is Ready:  # it ran on this thread: no generator of its own to drive
            return cursor
        yield from call.__await__()  # the job returns this cursor
        return cursor

    def send(self, value: Any) -> Any:
        it = self._it
        if it is None:
            it = self._it = self.__await__()
        return it.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        it = self._it
        if it is None:  # not started: nothing runs, the exception goes straight out
            self._sql = None
            if isinstance(typ, BaseException):
                raise typ
            raise val if isinstance(val, BaseException) else typ() if val is None else typ(val)
        if val is None:
            return it.throw(typ)
        if tb is None:
            return it.throw(typ, val)
        return it.throw(typ, val, tb)

    def close(self) -> None:
        self._sql = None
        if self._it is not None:
            self._it.close()

    def __aenter__(self) -> Execution:
        return self

    def __aexit__(self, *exc_info: object) -> Awaitable[None]:
        return self._cursor.close_now()
