"""A cancel stops only the cancelled job and never breaks atomicity (issues #17 and #19).

Each test is one scenario that used to fail: a half-committed transfer, a cancel that broke
other tasks' statements, a loop frozen by a finalizer, a reader never given back, two
concurrent closes, a cancel that hid a commit, one Database across event-loop runs.
"""

from __future__ import annotations

import asyncio
import gc
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

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


async def _accounts(db: aiolite.Database) -> None:
    await db.executescript(
        "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER);"
        "INSERT INTO accounts VALUES (1, 100), (2, 100);"
        "CREATE TABLE big(id INTEGER PRIMARY KEY);"
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) "
        "INSERT INTO big SELECT x FROM c;"
    )


async def test_cancelled_transaction_with_an_open_stream_rolls_back_whole(db_path: Path) -> None:
    """The issue's half-transfer: a stream is open in the transaction, a read in it times
    out; the transaction is rolled back whole and the next writes start clean."""
    async with aiolite.open(db_path) as db:
        await _accounts(db)

        async def transfer() -> None:
            async with db.transaction() as tx:
                rows = tx.iterate("SELECT id FROM big", chunk_size=5)
                await rows.__anext__()  # a statement stays open on the writer
                await tx.execute("UPDATE accounts SET balance = balance - 50 WHERE id = 1")
                await tx.fetchval(ENDLESS)  # cancelled here
                await tx.execute("UPDATE accounts SET balance = balance + 50 WHERE id = 2")

        with anyio.move_on_after(0.2) as scope:
            await transfer()
        assert scope.cancelled_caught
        await db.execute("UPDATE accounts SET balance = balance WHERE id = 2")
        await db.executescript("CREATE TABLE IF NOT EXISTS other(x);")
        rows = await db.fetchall("SELECT id, balance FROM accounts ORDER BY id", row_factory=tuple)
        assert rows == [(1, 100), (2, 100)]
        assert not db._writer.worker.inspect("in_transaction")


async def test_a_cancel_never_breaks_other_tasks_statements(db_path: Path) -> None:
    """connect(): a timed-out query while another cursor is half-read; the other cursor, a
    SELECT and an INSERT that were never cancelled all work, and no row is lost."""
    async with aiolite.connect(db_path, iter_chunk_size=8) as db:
        await db.execute("CREATE TABLE t(x)")
        await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
        await db.commit()
        other = await db.execute("SELECT x FROM t ORDER BY x")
        first = [r[0] for r in await other.fetchmany(5)]
        with anyio.move_on_after(0.1) as scope:
            await db.execute(ENDLESS)
        assert scope.cancelled_caught
        assert await db.execute_fetchall("SELECT 1") == [(1,)]
        await db.execute("INSERT INTO t VALUES (1000)")
        await db.commit()
        rest = [r[0] for r in await other.fetchall()]
        assert first + rest == list(range(100))
        assert await db.execute_fetchall("SELECT count(*) FROM t") == [(101,)]


async def test_cancelled_write_in_a_transaction_is_never_committed_by_someone_else(
    db_path: Path,
) -> None:
    """Legacy mode, a half-read cursor open: a task inserts, its next write is cancelled;
    another task's later statements and commit() can never commit the first insert."""
    async with aiolite.connect(db_path) as db:
        await db.execute("CREATE TABLE t(x)")
        await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
        await db.commit()
        other = await db.execute("SELECT x FROM t")
        await other.fetchone()
        await db.execute("INSERT INTO t VALUES (-1)")  # opens a transaction (legacy mode)
        with anyio.move_on_after(0.1) as scope:
            await db.execute(f"INSERT INTO t {ENDLESS}")
        assert scope.cancelled_caught
        # SQLite rolled back the whole transaction: committing now would commit only what
        # comes next, so aiolite refuses until the rollback.
        with pytest.raises(sqlite3.OperationalError, match="rolled back"):
            await db.execute("INSERT INTO t VALUES (-2)")
        with pytest.raises(sqlite3.OperationalError, match="rolled back"):
            await db.commit()
        await db.rollback()
        await db.execute("INSERT INTO t VALUES (-3)")
        await db.commit()
        rows = await db.execute_fetchall("SELECT x FROM t WHERE x < 0")
        assert rows == [(-3,)]


async def test_dropping_a_half_read_cursor_while_closing_never_blocks_the_loop(
    db_path: Path,
) -> None:
    """A half-read cursor collected while close() waits behind a running statement is
    finalized on the worker thread, not on the loop (which would block on the mutex)."""
    db = await aiolite.connect(db_path, iter_chunk_size=4)
    await db.execute("CREATE TABLE t(x)")
    await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50)])
    await db.commit()
    cur = await db.execute("SELECT x FROM t")
    await cur.fetchone()
    assert cur._raw is not None
    ticks = 0
    done = anyio.Event()

    async def long_query() -> None:
        with pytest.raises(sqlite3.OperationalError, match="interrupted"):
            await db.execute(ENDLESS)

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.sleep(0.005)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        tg.start_soon(long_query)
        await anyio.sleep(0.05)
        tg.start_soon(db.close)
        await anyio.sleep(0.05)
        started = time.perf_counter()
        del cur
        gc.collect()
        # Blocked, it would wait for the endless query (until the interrupt below, which it
        # could never reach); a full GC of a big test process alone can take ~0.1 s.
        assert time.perf_counter() - started < 1.0
        before = ticks
        await anyio.sleep(0.1)
        assert ticks > before + 5  # and it keeps running
        await db.interrupt()
        done.set()
    assert db._worker.join(5)


async def test_a_stream_collected_on_another_thread_gives_the_reader_back(
    db_path: Path,
) -> None:
    """A stream in a reference cycle collected by a GC run on a foreign thread hands its
    reader back on the owning loop: the next read gets it."""
    async with aiolite.open(db_path, readers=1) as db:
        await db.execute("CREATE TABLE t(x)")
        await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
        stream = db.iterate("SELECT x FROM t", chunk_size=10)
        await stream.__anext__()
        assert db.statistics().readers_reserved == 1
        holder: dict[str, Any] = {"stream": stream}
        holder["self"] = holder  # a cycle: only the cyclic GC frees it
        del stream, holder
        gc.disable()
        try:
            t = threading.Thread(target=gc.collect)
            t.start()
            t.join()
        finally:
            gc.enable()
        with anyio.fail_after(5):
            async with db.read() as r:
                assert await r.fetchval("SELECT count(*) FROM t") == 1000
        assert db.statistics().readers_reserved == 0


async def test_concurrent_closes_both_return(db_path: Path) -> None:
    """Two tasks closing one Database at once both return None; it ends closed."""
    db = await aiolite.open(db_path)
    await db.execute("CREATE TABLE t(x)")
    results: list[Any] = []

    async def close() -> None:
        results.append(await db.close())

    async with anyio.create_task_group() as tg:
        tg.start_soon(close)
        tg.start_soon(close)
    assert results == [None, None]
    assert db.closed
    await db.close()  # and once more, later


async def test_a_cancel_that_lands_after_the_commit_returns_the_result(db_path: Path) -> None:
    """The job finished while the loop was busy, then the task was cancelled: the caller
    gets the result (the row is committed), not a cancellation.  On the worker: a write
    run on the loop thread (inline) cannot be cancelled while it runs at all."""
    async with aiolite.open(db_path, inline=False) as db:
        await db.execute("CREATE TABLE t(x)")
        got: list[Any] = []
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def insert() -> None:
                    got.append(await db.execute("INSERT INTO t VALUES (1)"))

                tg.start_soon(insert)
                while db._writer.inflight == 0:  # until the insert is submitted
                    await anyio.lowlevel.checkpoint()
                time.sleep(0.2)  # noqa: ASYNC251  # block the loop: the worker commits meanwhile
                scope.cancel()
        assert len(got) == 1
        assert got[0].rowcount == 1
        assert await db.fetchval("SELECT count(*) FROM t") == 1


async def test_random_timeouts_report_the_truth(location: Any) -> None:
    """Thousands of one-statement writes under random 0-2 ms timeouts: every call that
    raised a cancellation left no row, every call that returned left its row (on a file,
    and on a dqlite node, where a write is a network round trip)."""
    rng = random.Random(1917)
    async with aiolite.open(location, readers=1) as db:
        await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, pad)")
        returned: list[int] = []
        cancelled: list[int] = []
        for i in range(1500):
            # A fifth already expired (cancelled before or just after the job is queued):
            # on a loaded machine the others may all finish first, which proves less.
            timeout = 0.0 if rng.random() < 0.2 else rng.uniform(0, 0.002)
            with anyio.move_on_after(timeout) as scope:
                await db.execute("INSERT INTO t VALUES (?, randomblob(200))", (i,))
                returned.append(i)
            if scope.cancelled_caught and (not returned or returned[-1] != i):
                cancelled.append(i)
        present = {r[0] for r in await db.fetchall("SELECT id FROM t", row_factory=tuple)}
    assert set(returned) <= present, "a returned write is missing"
    assert not (set(cancelled) & present), "a write reported as cancelled was committed"
    assert len(returned) + len(cancelled) == 1500
    assert cancelled, "no call was cancelled: the test proves nothing"


def test_asyncio_task_cancel_after_the_job_finished_returns_the_result(db_path: Path) -> None:
    """asyncio's own task.cancel() on a task whose write already committed: ``await task``
    gives the WriteResult, not CancelledError.  On the worker (inline=False): a write run
    on the loop thread is over before anyone can cancel it."""

    async def main() -> None:
        async with aiolite.open(db_path, inline=False) as db:
            await db.execute("CREATE TABLE t(x)")
            task = asyncio.ensure_future(db.execute("INSERT INTO t VALUES (1)"))
            while db._writer.inflight == 0:  # noqa: ASYNC110  # polls a counter, no event
                await asyncio.sleep(0)
            time.sleep(0.2)  # noqa: ASYNC251  # block the loop: the worker commits meanwhile
            task.cancel()
            result = await task
            assert result.rowcount == 1
            assert await db.fetchval("SELECT count(*) FROM t") == 1

    asyncio.run(main())


def _use(db: aiolite.Database, n: int) -> Any:
    async def work() -> int:
        async with db.transaction() as tx:  # two writers contend: the queue is used
            await tx.execute("INSERT INTO t VALUES (?)", (n,))
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (?)", (n + 1,))
        async with db.read() as r:
            return int(await r.fetchval("SELECT count(*) FROM t"))

    async def main() -> int:
        results: list[int] = []

        async def one(k: int) -> None:
            results.append(await work())

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, 0)
            tg.start_soon(one, 1)
        return max(results)

    return main


@pytest.mark.parametrize(
    "order",
    [("asyncio", "asyncio"), ("asyncio", "trio"), ("trio", "asyncio"), ("trio", "trio")],
)
def test_one_database_across_event_loop_runs(tmp_path: Path, order: tuple[str, str]) -> None:
    """A Database opened in one loop run is used by the next run, asyncio or trio in any
    order, with writers contending and a read session; then closed in the last."""
    db = aiolite.open(tmp_path / "loops.db", readers=2)

    async def open_it() -> None:
        await db
        await db.execute("CREATE TABLE t(x)")

    async def close_it() -> None:
        await db.close()

    def run(backend: str, fn: Any) -> Any:
        return anyio.run(fn, backend=backend)

    run(order[0], open_it)
    assert run(order[0], _use(db, 10)) == 4
    assert run(order[1], _use(db, 20)) == 8
    run(order[1], close_it)
    assert db.closed


async def test_a_failed_rollback_replaces_the_writer(db_path: Path) -> None:
    """If the writer cannot roll back, it is closed and opened anew: the next write never
    runs inside the stranger's transaction."""
    async with aiolite.open(db_path, readers=1) as db:
        await db.execute("CREATE TABLE t(x)")
        w = db._writer

        def leave_open(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES ('stranger')")

        await db._call(w, leave_open)

        class Stuck:
            """The connection as SQLite would leave it if ROLLBACK failed."""

            def __init__(self, conn: sqlite3.Connection) -> None:
                self.conn = conn

            in_transaction = True

            def execute(self, sql: str) -> Any:
                if sql == "ROLLBACK":
                    raise sqlite3.OperationalError("disk I/O error")
                return self.conn.execute(sql)

            def close(self) -> None:
                self.conn.close()

        def settle_stuck(conn: sqlite3.Connection) -> bool:
            new = w.session.settle(Stuck(conn))  # type: ignore[arg-type]
            return new is not conn and not new.in_transaction

        assert await db._call(w, settle_stuck)
        assert w.session.replaced == 1
        await db.execute("INSERT INTO t VALUES ('ours')")
        rows = await db.fetchall("SELECT x FROM t", row_factory=tuple)
        assert rows == [("ours",)]
