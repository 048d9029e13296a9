"""asyncio, uvloop and trio all work; no thread limiter caps the number of connections."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

import aiolite

pytestmark = pytest.mark.anyio


async def test_sixty_connections_run_at_once(tmp_path: Path) -> None:
    """60 connections (more than anyio's 40 thread tokens) execute simultaneously."""
    n = 60
    barrier = threading.Barrier(n, timeout=10)
    results: list[int] = []

    async def one(i: int) -> None:
        async with aiolite.connect(tmp_path / f"{i}.db") as db:
            # Each worker waits inside SQL until all 60 are there: needs 60 live threads.
            await db.create_function("meet", 0, lambda: barrier.wait() >= 0)
            rows = await db.execute_fetchall("SELECT meet()")
            results.append(rows[0][0])

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
    assert results == [1] * n


async def test_many_tasks_share_one_connection(db: aiolite.Connection) -> None:
    """200 tasks on one connection each get their own answer."""
    got: dict[int, int] = {}

    async def one(i: int) -> None:
        async with db.execute("SELECT ? * 2", (i,)) as cur:
            row = await cur.fetchone()
            got[i] = row[0]

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(one, i)
    assert got == {i: i * 2 for i in range(200)}


async def test_a_closed_cursors_awaitable_is_awaited_any_number_of_times(
    db: aiolite.Connection,
) -> None:
    """What ``close()`` returns (also what ``async with`` awaits at exit) is already over:
    awaited again and again, by many tasks at once, on every backend, it gives None and
    never suspends (an exhausted coroutine would raise at its second await)."""
    cur = await db.execute("SELECT 1")
    over = cur.close()
    got: list[object] = []

    async def one() -> None:
        for _ in range(3):
            got.append(await over)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    assert got == [None] * 60
    for i in range(3):  # every exit awaits the same finished awaitable
        async with db.execute("SELECT ?", (i,)) as cur:
            assert await cur.fetchone() == (i,)
    with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
        await cur.fetchone()


async def test_exceptions_cross_backends(db: aiolite.Connection) -> None:
    """Errors raised on the worker arrive as the same sqlite3 exception on every backend."""
    import sqlite3

    with pytest.raises(sqlite3.OperationalError, match="syntax error"):
        await db.execute("SELEKT 1")
    assert await db.execute_fetchall("SELECT 1") == [(1,)]


class _RecordingWorker:
    """Stands in for a Worker: records which jobs the Waiter abandons."""

    def __init__(self) -> None:
        self.cancelled: list[object] = []

    def cancel(self, job: object) -> bool:
        self.cancelled.append(job)
        return True


def test_asyncio_waiter_speaks_the_future_protocol() -> None:
    """The Waiter a task awaits: callbacks, results, errors and cancel, as a Future."""
    from aiolite._backends._asyncio import Waiter
    from aiolite._worker import Job

    def job(name: str) -> Job:
        return Job(print, (name,))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        worker = _RecordingWorker()
        calls: list[str] = []

        # Two callbacks (beyond what a Task adds); one removed; settle runs the rest at once.
        w = Waiter(loop, worker, job("job"))  # type: ignore[arg-type]
        w.add_done_callback(lambda f: calls.append("a"))
        second = lambda f: calls.append("b")  # noqa: E731
        w.add_done_callback(second)
        w.add_done_callback(lambda f: calls.append("c"))
        assert w.remove_done_callback(second) == 1
        assert not w.done()
        with pytest.raises(asyncio.InvalidStateError):
            w.result()
        w.settle(True, 42)
        assert calls == ["a", "c"]
        assert (w.done(), w.cancelled(), w.result(), w.exception()) == (True, False, 42, None)
        w.settle(True, 43)  # a second outcome is ignored
        assert w.result() == 42

        # A failure is raised by result() and returned by exception().
        w = Waiter(loop, worker, job("job"))  # type: ignore[arg-type]
        error = sqlite3.OperationalError("boom")
        w.settle(False, error)
        assert w.exception() is error
        with pytest.raises(sqlite3.OperationalError, match="boom"):
            w.result()

        # Cancel abandons the job on its worker and schedules the callbacks; the message
        # reaches the CancelledError; a later outcome is dropped.
        third = job("job-3")
        w = Waiter(loop, worker, third)  # type: ignore[arg-type]
        w.add_done_callback(lambda f: calls.append("cancelled"))
        assert w.cancel("why")
        assert worker.cancelled == [third]
        assert not w.cancel()
        w.settle(True, 1)
        await asyncio.sleep(0)
        assert calls[-1] == "cancelled"
        with pytest.raises(asyncio.CancelledError, match="why"):
            w.result()

        # A callback added after the outcome runs on the next loop turn.
        w.add_done_callback(lambda f: calls.append("late"))
        await asyncio.sleep(0)
        assert calls[-1] == "late"

        # Awaited by a task: the task gets the value.
        w = Waiter(loop, worker, job("job"))  # type: ignore[arg-type]

        async def wait_for_it() -> object:
            return await w

        task = asyncio.ensure_future(wait_for_it())
        await asyncio.sleep(0)
        loop.call_soon(w.settle, True, "value")  # as the waker does: from a loop callback
        assert await task == "value"

    asyncio.run(main())


def test_a_job_that_raises_cancelled_error_is_not_a_cancel_of_the_task() -> None:
    """A job whose own outcome is CancelledError (a connector that raises it) reaches the
    task as that error, and leaves no cancellation behind for the task's next await."""
    from aiolite._backends import WakerCache
    from aiolite._worker import Job, Worker

    def raise_cancelled(_: object) -> None:
        raise asyncio.CancelledError("from the job")

    async def main() -> str:
        worker = Worker()
        worker.start()
        try:
            with pytest.raises(asyncio.CancelledError, match="from the job"):
                await WakerCache().current().wait(worker, Job(raise_cancelled, ()))
            await asyncio.sleep(0.05)  # a spurious re-delivered cancel would land here
            return "not cancelled"
        finally:
            worker.stop()
            worker.join(5)

    assert asyncio.run(main()) == "not cancelled"
