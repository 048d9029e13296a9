"""trio waker: tasks parked in ``wait_task_rescheduled``, woken via ``run_sync_soon``.

Imported only when a call is made under trio, so aiolite never needs trio installed.
"""

from __future__ import annotations

from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any, Optional

import outcome
import trio

from .._inline import YIELD_EVERY
from .._worker import NOT_HERE, Aborted, Job, statement_job
from ._base import Gate, gate, queued_ahead

if TYPE_CHECKING:
    from .._worker import Worker

__all__ = ["TrioWaker", "current_token"]

current_token = trio.lowlevel.current_trio_token


class _TrioGate(Gate):
    """A Gate whose tasks wait on one trio Event (a cancel ends only that task's wait)."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        super().__init__()
        self.event = trio.Event()

    def open(self) -> None:
        self.event.set()


class TrioWaker:
    __slots__ = ("_pending", "_scheduled", "_token", "mark", "marked")

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        # When calls began running on this thread in this scheduling batch (see spend).
        self.mark = 0.0
        self.marked = False
        self._pending: deque[tuple[Any, bool, Any]] = deque()  # a Task, or a gate
        self._scheduled = False

    def push(self, waiter: trio.lowlevel.Task, ok: bool, value: Any) -> None:
        self._pending.append((waiter, ok, value))

    def deliver(self, waiter: trio.lowlevel.Task, ok: bool, value: Any) -> None:
        self._pending.append((waiter, ok, value))
        self.wake()

    def wake(self) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        try:
            self._token.run_sync_soon(self._drain)
        except trio.RunFinishedError:  # the run is over: nobody is left to wake
            self._pending.clear()

    def call_soon(self, fn: Any) -> bool:
        try:
            self._token.run_sync_soon(fn)
        except trio.RunFinishedError:
            return False
        return True

    def _drain(self) -> None:
        self._scheduled = False
        pending = self._pending
        reschedule = trio.lowlevel.reschedule
        while pending:
            task, ok, value = pending.popleft()
            if type(task) is _TrioGate:
                task.settle(ok, value)
            else:
                reschedule(task, outcome.Value(value) if ok else outcome.Error(value))

    async def inline(
        self,
        worker: Worker,
        fn: Any,
        args: tuple[Any, ...],
        key: Any,
        stmt: Any,
        how: tuple[float, bool, int],
        job: Optional[Job] = None,
    ) -> Any:
        """Run an admitted ``job`` on this thread if the worker is idle, else there.

        Still a checkpoint: a cancelled scope raises here, before the call runs; and the
        loop gets a turn at least every YIELD_EVERY seconds.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if job is None:
            job = statement_job(fn, args, key, stmt)
        if not self.spend():
            await self._pause()
            inline = worker.inline
            again = None if inline is None else inline.admit(key)
            if again is None:  # jobs queued meanwhile, maybe: wait for them if short
                return await self.behind(worker, job)
            how = again
        value = worker.run_here(fn, args, key, stmt, how)  # raises what fn raised
        if value is NOT_HERE:
            return await self.behind(worker, job)
        return value

    async def turn(self) -> None:
        """A checkpoint for cancellation; a loop turn if calls ran here for YIELD_EVERY."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self.spend():
            await self._pause()

    def spend(self) -> bool:
        """Whether a call may run on this thread now: False once calls ran here for
        YIELD_EVERY since the run last polled I/O and timers (all tasks share it)."""
        if not self.marked:
            try:
                self._token.run_sync_soon(self._unmark)  # runs after the next I/O poll
            except trio.RunFinishedError:
                return False
            self.marked = True
            self.mark = perf_counter()
            return True
        return perf_counter() - self.mark < YIELD_EVERY

    def _unmark(self) -> None:
        self.marked = False

    async def _pause(self) -> None:
        await trio.lowlevel.checkpoint()
        while not self.spend():
            await trio.lowlevel.checkpoint()

    async def here(
        self,
        worker: Worker,
        fn: Any,
        args: tuple[Any, ...],
        how: tuple[float, bool, int],
        key: Any,
        job: Optional[Job] = None,
    ) -> Any:
        """See Waker.here (the caller took its ``turn()``: no checkpoint here)."""
        value, job = worker.here_or_job(fn, args, how, key, job)
        return value if job is None else await self.wait(worker, job)

    async def behind(self, worker: Worker, job: Job) -> Any:
        """See Waker.behind (and _asyncio._Behind, the same loop)."""
        while True:
            while queued_ahead(worker, job.key):
                await gate(worker, self, _TrioGate).event.wait()
            inline = worker.inline
            how = None if inline is None else inline.admit(job.key)
            if how is None:
                return await self.wait(worker, job)
            if not self.spend():
                await self._pause()  # then admitted again
                continue
            value = worker.run_here(job.fn, job.args, job.key, job.stmt, how)
            if value is not NOT_HERE:
                return value
            if not queued_ahead(worker, job.key):  # over its budget, or busy: the worker
                return await self.wait(worker, job)

    async def wait(self, worker: Worker, job: Job) -> Any:
        job.waiter = trio.lowlevel.current_task()
        job.waker = self
        worker.submit(job)

        def abort(_: Any) -> trio.lowlevel.Abort:
            # SUCCEEDED: the job will never deliver, so the task may leave now.
            # FAILED: it runs and is being aborted; its outcome says what happened.
            if worker.cancel(job):
                return trio.lowlevel.Abort.SUCCEEDED
            return trio.lowlevel.Abort.FAILED

        try:
            return await trio.lowlevel.wait_task_rescheduled(abort)
        except Aborted as exc:
            # Nothing of the job stands: leave as the cancellation it was (the scope is
            # still cancelled, so this checkpoint raises Cancelled).
            await trio.lowlevel.checkpoint()
            raise exc.error from None
