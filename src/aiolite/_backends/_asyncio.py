"""asyncio (and uvloop) waker: futures resolved through ``loop.call_soon_threadsafe``."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._worker import Job, Worker

__all__ = ["AsyncioWaker"]


class AsyncioWaker:
    __slots__ = ("_loop", "_pending", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: deque[tuple[asyncio.Future[Any], bool, Any]] = deque()
        self._scheduled = False

    def deliver(self, waiter: asyncio.Future[Any], ok: bool, value: Any) -> None:
        self._pending.append((waiter, ok, value))
        if self._scheduled:  # a wake-up is on its way and will drain this one too
            return
        self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is left to wake
            self._pending.clear()

    def _drain(self) -> None:
        # Clear the flag first: a result appended after this line schedules a new drain.
        self._scheduled = False
        pending = self._pending
        while pending:
            fut, ok, value = pending.popleft()
            if fut.done():  # cancelled meanwhile
                continue
            if ok:
                fut.set_result(value)
            elif isinstance(value, StopIteration):  # futures refuse StopIteration
                fut.set_exception(RuntimeError(f"StopIteration raised in a job: {value!r}"))
            else:
                fut.set_exception(value)
        del fut, value

    async def wait(self, worker: Worker, job: Job) -> Any:
        fut = self._loop.create_future()
        job.waiter = fut
        job.waker = self
        worker.submit(job)
        try:
            return await fut
        except asyncio.CancelledError:
            worker.cancel(job)
            raise
