"""Find the running async library and the waker that wakes its tasks.

asyncio (including uvloop and anyio on asyncio) is checked first because it is the common
case and the check is one C call.  trio is imported only when a call is made under trio.
"""

from __future__ import annotations

import sqlite3
import sys
from asyncio import AbstractEventLoop
from asyncio.events import _get_running_loop
from typing import Any

from .._exceptions import NoEventLoopError
from ._asyncio import waker_for
from ._base import Waker

__all__ = [
    "LoopBound",
    "Waker",
    "WakerCache",
    "current_task",
    "loop_key",
    "make_lock",
    "make_semaphore",
    "running_loop",
]


_NO_LOOP = object()

#: The running asyncio loop or None (one C call): the hot path compares it to WakerCache.key.
running_loop = _get_running_loop


class WakerCache:
    """Remembers the waker of the loop (or trio run) an object was last used from.

    One connection is normally used from one loop, so this is a one-entry cache; use from
    another loop (or thread) simply builds a new waker.  The hot path reads it without a
    call of its own: ``cache.waker.wait(...) if running_loop() is cache.key``.
    """

    __slots__ = ("key", "waker")

    def __init__(self) -> None:
        #: The asyncio loop or trio token last used; never None, so that ``running_loop()``
        #: (None under trio) cannot match it by accident.
        self.key: Any = _NO_LOOP
        self.waker: Any = None

    def current(self) -> Waker:
        loop = _get_running_loop()
        if loop is not None:
            if loop is self.key:
                return self.waker  # type: ignore[no-any-return]
            return self._remember(loop, waker_for(loop))
        return self._current_trio()

    def _remember(self, key: AbstractEventLoop | object, waker: Waker) -> Waker:
        self.key, self.waker = key, waker
        return waker

    def _current_trio(self) -> Waker:
        token = _trio_token()
        if token is None:
            raise _no_loop_error()
        if token is self.key:
            return self.waker  # type: ignore[no-any-return]
        from ._trio import TrioWaker

        return self._remember(token, TrioWaker(token))


def _trio_token() -> Any:
    """The running trio run's token, or None (trio is imported only if already loaded)."""
    if "trio" not in sys.modules:
        return None
    from ._trio import current_token

    try:
        return current_token()
    except RuntimeError:
        return None


def _no_loop_error() -> NoEventLoopError:
    return NoEventLoopError(
        "aiolite was called outside an async event loop; "
        "await it from a coroutine run by asyncio (asyncio.run, uvloop) or trio (trio.run)"
    )


def loop_key() -> Any:
    """What identifies the running event loop: the asyncio loop, or the trio run's token.

    Lock-like state (a Database's writer queue, its reader slots) belongs to one loop; it
    compares this to know when it is used from another one.
    """
    key = _get_running_loop() or _trio_token()
    if key is None:
        raise _no_loop_error()
    return key


def _primitives() -> Any:
    """The module whose Lock and Semaphore fit the running library: trio or asyncio."""
    if _get_running_loop() is None and _trio_token() is not None:
        import trio

        return trio
    import asyncio

    return asyncio


class LoopBound:
    """A lock or semaphore that belongs to the event loop using it.

    asyncio's and trio's primitives work in one loop (or run) only.  A Database may outlive
    a loop (pytest-asyncio's loop per test, a CLI calling ``asyncio.run`` twice, trio after
    asyncio): when another loop finds the primitive idle, it gets a new one of its own; one
    still in use by another loop is an error that says so.
    """

    __slots__ = ("_cache", "key", "value")

    def __init__(self) -> None:
        self.key: Any = None
        self.value: Any = None
        self._cache = WakerCache()

    def get(self, make: Any, idle: bool, what: str) -> Any:
        """The primitive of the running loop; ``make()`` builds one, ``idle`` says the
        current one has no holder and no waiter."""
        key = loop_key()
        if self.value is None or self.key is not key:
            if self.value is not None and not idle:
                raise sqlite3.ProgrammingError(
                    f"{what} is in use by another event loop (asyncio loop or trio run); "
                    "use the Database from one loop at a time, and let every transaction, "
                    "read session and stream of a loop end before that loop does"
                )
            self.value = make()
            self.key = key
            self._cache.current()
        return self.value

    def call_soon(self, fn: Any) -> bool:
        """Any thread: run ``fn`` on the loop this primitive belongs to (False: it is gone)."""
        waker = self._cache.waker
        return waker is not None and bool(waker.call_soon(fn))


def make_lock() -> Any:
    """A FIFO lock of the running library (asyncio.Lock or trio.Lock; both hand over fairly)."""
    return _primitives().Lock()


def make_semaphore(value: int) -> Any:
    """A FIFO semaphore of the running library."""
    return _primitives().Semaphore(value)


def current_task() -> Any:
    """The running task (asyncio or trio), to tell who holds a lock."""
    loop = _get_running_loop()
    if loop is not None:
        import asyncio

        return asyncio.current_task(loop)
    if "trio" in sys.modules:
        import trio

        try:
            return trio.lowlevel.current_task()
        except RuntimeError:
            pass
    return None
