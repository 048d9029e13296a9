"""Find the running async library and the waker that wakes its tasks.

asyncio (including uvloop and anyio on asyncio) is checked first because it is the common
case and the check is one C call.  trio is imported only when a call is made under trio.
"""

from __future__ import annotations

import sys
from asyncio import AbstractEventLoop
from asyncio.events import _get_running_loop
from typing import Any

from .._exceptions import NoEventLoopError
from ._asyncio import waker_for
from ._base import Waker

__all__ = ["Waker", "WakerCache"]


class WakerCache:
    """Remembers the waker of the loop an object was last used from.

    One connection is normally used from one loop, so this is a one-entry cache; use from
    another loop (or thread) simply builds a new waker.
    """

    __slots__ = ("_key", "_waker")

    def __init__(self) -> None:
        self._key: Any = None
        self._waker: Waker | None = None

    def current(self) -> Waker:
        loop = _get_running_loop()
        if loop is not None:
            waker = self._waker
            if loop is self._key and waker is not None:
                return waker
            return self._remember(loop, waker_for(loop))
        return self._current_trio()

    def _remember(self, key: AbstractEventLoop | object, waker: Waker) -> Waker:
        self._key, self._waker = key, waker
        return waker

    def _current_trio(self) -> Waker:
        if "trio" in sys.modules:
            from ._trio import TrioWaker, current_token

            try:
                token = current_token()
            except RuntimeError:
                pass
            else:
                waker = self._waker
                if token is self._key and waker is not None:
                    return waker
                return self._remember(token, TrioWaker(token))
        raise NoEventLoopError(
            "aiolite was called outside an async event loop; "
            "await it from a coroutine run by asyncio (asyncio.run, uvloop) or trio (trio.run)"
        )
