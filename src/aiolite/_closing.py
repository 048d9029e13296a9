"""The one ``async with`` protocol of everything aiolite hands out that has ``close()``.

``Closing``: ``async with x:`` returns ``x`` and awaits ``x.close()`` on exit (Cursor,
Blob).  ``Opening`` adds ``await x`` to open it, so ``async with`` opens then closes
(Connection, Database).
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from types import TracebackType
from typing import Any, Optional, TypeVar

__all__ = ["DONE", "Closing", "Done", "Opening"]


class Done:
    """An awaitable that is already over: ``await DONE`` is None, without a Python frame.

    ``__await__`` is the empty tuple's ``__iter__``: a builtin, so Python calls it without
    ``self`` and gets an exhausted iterator.  Works under any event loop.
    """

    __slots__ = ()
    __await__ = ().__iter__


DONE: Awaitable[None] = Done()  # type: ignore[assignment]


C = TypeVar("C", bound="Closing")
O = TypeVar("O", bound="Opening")  # noqa: E741


class Closing:
    __slots__ = ()

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: C) -> C:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()


class Opening(Closing):
    __slots__ = ()

    async def _open(self: O) -> O:
        raise NotImplementedError

    def __await__(self: O) -> Generator[Any, None, O]:
        return self._open().__await__()

    async def __aenter__(self: O) -> O:
        return await self._open()
