"""Cancellation: a cancelled operation never runs, or is interrupted, and leaves no trace."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import aiolite

pytestmark = pytest.mark.anyio

# Runs until interrupted (seconds of pure VM work, the GIL released).
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


async def test_timeout_interrupts_long_query_promptly(db: aiolite.Connection) -> None:
    """A timed-out query is interrupted; cancel and the next query each take < 100 ms."""
    with anyio.move_on_after(0.2) as scope:
        await db.execute(ENDLESS)
    cancelled_at = time.perf_counter()
    assert scope.cancelled_caught
    rows = await db.execute_fetchall("SELECT 42")
    next_answer = time.perf_counter() - cancelled_at
    assert rows == [(42,)]
    assert next_answer < 0.1, f"next query answered after {next_answer * 1e3:.0f} ms"


async def test_cancel_returns_before_worker_finishes(db: aiolite.Connection) -> None:
    """The cancelled task resumes at once; it does not wait for the statement to stop."""
    started = time.perf_counter()
    with anyio.move_on_after(0.1):
        await db.execute(ENDLESS)
    assert time.perf_counter() - started < 0.2


async def test_pending_statement_never_runs(db_path: Path) -> None:
    """A statement cancelled while queued behind another is never executed."""
    release = threading.Event()
    async with aiolite.connect(db_path, isolation_level=None) as db:
        await db.execute("CREATE TABLE t (x)")
        await db.create_function("hold", 0, lambda: release.wait(5))

        async def blocker() -> None:
            await db.execute("SELECT hold()")

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocker)
            await anyio.sleep(0.05)  # the worker is now inside hold()
            with anyio.move_on_after(0.05) as scope:
                await db.execute("INSERT INTO t VALUES (1)")
            assert scope.cancelled_caught
            release.set()
        assert await db.execute_fetchall("SELECT count(*) FROM t") == [(0,)]


async def test_cancelled_write_leaves_no_implicit_transaction(db_path: Path) -> None:
    """An interrupted INSERT that opened a transaction implicitly leaves it rolled back."""
    async with aiolite.connect(db_path) as db:  # legacy mode: INSERT opens a transaction
        await db.execute("CREATE TABLE t (x)")
        await db.commit()
        with anyio.move_on_after(0.2):
            await db.execute(f"INSERT INTO t {ENDLESS}")
        assert await db.execute_fetchall("SELECT count(*) FROM t") == [(0,)]
        assert not db.in_transaction
        await db.execute("INSERT INTO t VALUES (1)")
        await db.commit()
        assert await db.execute_fetchall("SELECT x FROM t") == [(1,)]


async def test_cancel_inside_explicit_transaction_rolls_it_back(db_path: Path) -> None:
    """A write cancelled in a transaction loses it whole; later statements are refused
    (they would commit half of it) until rollback()."""
    async with aiolite.connect(db_path, isolation_level=None) as db:
        await db.execute("CREATE TABLE t (x)")
        await db.execute("BEGIN")
        await db.execute("INSERT INTO t VALUES (1)")
        with anyio.move_on_after(0.2) as scope:
            await db.execute(f"INSERT INTO t {ENDLESS}")
        assert scope.cancelled_caught
        with pytest.raises(sqlite3.OperationalError, match=r"(?i)call rollback"):
            await db.execute("INSERT INTO t VALUES (2)")
        with pytest.raises(sqlite3.OperationalError, match=r"(?i)call rollback"):
            await db.commit()
        await db.rollback()
        assert await db.execute_fetchall("SELECT count(*) FROM t") == [(0,)]
        assert not db.in_transaction


async def test_cancelled_fetch_keeps_rows(db: aiolite.Connection) -> None:
    """Cancelling a fetch never makes the cursor skip rows: they stay buffered."""
    await db.execute("CREATE TABLE t (i)")
    await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(3000)])
    cur = await db.execute("SELECT i FROM t ORDER BY i")
    seen = [row[0] for row in await cur.fetchmany(10)]
    cancelled = 0
    for _ in range(20):
        # Take exactly what is buffered, so that the cancelled call below needs a refill.
        seen.extend(row[0] for row in await cur.fetchmany(len(cur._rows)))
        with anyio.CancelScope() as scope:
            scope.cancel()  # cancelled before or while a refill runs
            got = await cur.fetchmany(200)  # served from the buffer: no refill, no cancel
            seen.extend(row[0] for row in got)
        cancelled += scope.cancelled_caught
        seen.extend(row[0] for row in await cur.fetchmany(50))
    assert cancelled >= 3  # refills cancelled before the result was exhausted
    seen.extend(row[0] for row in await cur.fetchall())
    assert seen == list(range(3000))


async def test_cancel_storm(db_path: Path) -> None:
    """Hundreds of random cancels: no lost acknowledged write, no phantom, no open transaction."""
    rng = random.Random(1234)
    acknowledged: set[int] = set()
    attempted: set[int] = set()
    cancels = 0
    async with aiolite.connect(db_path, isolation_level=None) as db:
        await db.execute("CREATE TABLE t (v INTEGER PRIMARY KEY)")
        counter = iter(range(1_000_000))

        async def one_op() -> None:
            nonlocal cancels
            kind = rng.random()
            timeout = rng.choice([0, 0.0005, 0.001, 0.003, 0.01])
            value = next(counter)
            with anyio.move_on_after(timeout) as scope:
                if kind < 0.5:
                    attempted.add(value)
                    await db.execute("INSERT INTO t VALUES (?)", (value,))
                    acknowledged.add(value)
                elif kind < 0.7:
                    await db.execute(
                        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                        "WHERE x < 20000) SELECT sum(x) FROM c"
                    )
                else:
                    async with db.execute("SELECT v FROM t ORDER BY v") as cur:
                        async for _ in cur:
                            pass
            if scope.cancelled_caught:
                cancels += 1

        for _ in range(15):
            async with anyio.create_task_group() as tg:
                for _ in range(40):
                    tg.start_soon(one_op)
        started = time.perf_counter()
        present = {v for (v,) in await db.execute_fetchall("SELECT v FROM t")}
        assert time.perf_counter() - started < 0.5
        assert not db.in_transaction
        assert db.statistics().queued == 0
    assert cancels >= 100, f"only {cancels} cancellations happened"
    assert acknowledged <= present, "an acknowledged insert is missing"
    assert present <= attempted, "a row appeared that nobody inserted"


async def test_cancelled_close_still_closes(db_path: Path) -> None:
    """Cancelling close() interrupts the running statement; the connection ends closed."""
    db = await aiolite.connect(db_path)

    async def long_query() -> None:
        with pytest.raises(sqlite3.OperationalError, match="interrupted"):
            await db.execute(ENDLESS)

    async with anyio.create_task_group() as tg:
        tg.start_soon(long_query)
        await anyio.sleep(0.05)
        with anyio.move_on_after(0.01):
            await db.close()
    assert db._worker.join(2.0)
    with pytest.raises(aiolite.ConnectionClosedError):
        await db.execute("SELECT 1")


async def test_pure_shielded_job_is_left_at_once_and_runs_to_its_end() -> None:
    """A running refill (shielded, no effects) is never aborted; the task leaves at once."""
    from aiolite._worker import Job, Worker

    worker = Worker()
    worker.start()
    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    def job_fn(_: object) -> None:
        started.set()
        release.wait(5)
        done.append("finished")

    job = Job(job_fn, (), shielded=True, pure=True)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_when_set, started, scope)
            await worker_wait(worker, job)
    assert scope.cancelled_caught
    assert not worker.aborting  # a shielded job is never aborted
    assert done == []  # the task did not wait for it
    release.set()
    worker.stop()
    assert worker.join(5)
    assert done == ["finished"]


async def test_cancel_of_a_running_commit_reports_that_it_happened() -> None:
    """A shielded job with effects (a COMMIT) that is running when cancelled: the task gets
    its result, and the cancellation at its next checkpoint."""
    from aiolite._worker import Job, Worker

    worker = Worker()
    worker.start()
    started = threading.Event()

    def job_fn(_: object) -> str:
        started.set()
        time.sleep(0.2)
        return "committed"

    got: list[str] = []
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_when_set, started, scope)
            got.append(await worker_wait(worker, Job(job_fn, (), shielded=True)))
            await anyio.sleep(1)  # the next checkpoint: the cancellation lands here
            got.append("not cancelled")
    assert scope.cancelled_caught
    assert got == ["committed"]
    worker.stop()
    assert worker.join(5)


async def cancel_when_set(started: threading.Event, scope: anyio.CancelScope) -> None:
    await anyio.to_thread.run_sync(started.wait, 5)
    scope.cancel()


async def worker_wait(worker: Any, job: Any) -> Any:
    from aiolite._backends import WakerCache

    return await WakerCache().current().wait(worker, job)
