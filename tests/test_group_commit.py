"""Group commit: db.execute() writes queued together on the writer commit in one transaction.

Each write must still succeed or fail alone, be committed once or not at all, and be
reported only after its COMMIT, whatever fails or is cancelled around it.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Awaitable
from functools import partial
from pathlib import Path
from typing import Any, Callable

import anyio
import anyio.lowlevel
import pytest

import aiolite
from aiolite._database import GROUP_SHORT

INSERT = "INSERT INTO t(token, task) VALUES (?, ?)"
# Writes the writer is busy with for a while (~0.4 s, ~0.2 s), that never join a group
# (not known short).
BUSY_WRITE = (
    "UPDATE t SET task = (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "WHERE x < 1000000) SELECT count(*) FROM c) WHERE token = 'slow'"
)
SLOW_WRITE = (
    "UPDATE t SET task = (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "WHERE x < 2000000) SELECT count(*) FROM c) WHERE token = 'slow'"
)


async def make_table(db: aiolite.Database) -> None:
    # No unique constraint on token: a write committed twice would show as two rows.
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, token TEXT, task INT)")


async def warm(db: aiolite.Database, sql: str, params: Callable[[int], Any]) -> None:
    """Run ``sql`` concurrently until the writer knows it as short (so it may group),
    with ``params(n)`` for its n-th run."""
    n = 0
    while (db._writer.worker.expected(sql) or 1.0) >= GROUP_SHORT / 2:
        assert n < 2000, f"{sql!r} did not become short on the writer"
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                n += 1
                tg.start_soon(db.execute, sql, params(n))


async def rows_by_token(db: aiolite.Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT token, count(*) FROM t GROUP BY token", row_factory=tuple)
    return dict(rows)


@pytest.mark.anyio
async def test_concurrent_writes_commit_in_groups_each_once(db_path: Path) -> None:
    async with aiolite.open(db_path, readers=1) as db:
        await make_table(db)
        await warm(db, INSERT, lambda n: ("warm", -1))
        results: dict[str, aiolite.WriteResult] = {}

        async def writer(task: int) -> None:
            for i in range(25):
                token = f"{task}-{i}"
                results[token] = await db.execute(INSERT, (token, task))

        async with anyio.create_task_group() as tg:
            for task in range(40):
                tg.start_soon(writer, task)
        stats = db.statistics()
        counts = await rows_by_token(db)
        for token, result in results.items():
            assert result.rowcount == 1
            row = await db.fetchone("SELECT token, task FROM t WHERE id = ?", (result.lastrowid,))
            assert tuple(row) == (token, int(token.split("-")[0]))
    assert len(results) == 1000
    assert all(counts[token] == 1 for token in results)
    assert sum(counts.values()) == 1000 + counts["warm"]
    assert stats.group_commits > 0
    assert stats.grouped_writes > stats.group_commits  # groups of more than one write
    assert stats.group_retries == 0


async def queued_together(db: aiolite.Database, calls: list[Callable[[], Awaitable[None]]]) -> None:
    """Start ``calls`` while the writer is busy with a write of ~0.2 s: they queue behind
    it together, as a group (most of them: under load the tasks take turns, and some
    may come after it)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(db.execute, BUSY_WRITE)
        await anyio.sleep(0.01)
        for call in calls:
            tg.start_soon(call)


@pytest.mark.anyio
async def test_a_failing_write_fails_alone_and_leaves_nothing_behind(db_path: Path) -> None:
    """Constraint errors in a group: the failing write reports its error and leaves no
    partial change (INSERT OR FAIL keeps the rows before the failing one inside a
    transaction: the savepoint undoes them); every other write commits."""
    async with aiolite.open(db_path, readers=1) as db:
        await make_table(db)
        await db.execute(INSERT, ("slow", 0))
        await db.execute("CREATE TABLE u(k INTEGER UNIQUE, task INT)")
        plain = "INSERT INTO u VALUES (?, ?)"
        two_rows = "INSERT OR FAIL INTO u VALUES (?, ?), (?, ?)"
        await warm(db, plain, lambda n: (-n, 0))
        await warm(db, two_rows, lambda n: (-1000 - 2 * n, 0, -1001 - 2 * n, 0))
        before = db.statistics()
        outcomes: dict[int, str] = {}

        async def write(k: int, sql: str, params: tuple[int, ...]) -> None:
            try:
                await db.execute(sql, params)
                outcomes[k] = "ok"
            except sqlite3.IntegrityError:
                outcomes[k] = "error"

        for i in range(4):  # round i: each task's i-th write, all queued together
            calls = []
            for task in range(30):
                k = task * 100 + i
                if i % 2 == 0:
                    call = partial(write, k, plain, (k, task))
                elif i % 4 == 1:  # a duplicate of the row just written: fails
                    call = partial(write, k, plain, (k - 1, task))
                else:  # two rows, the second a duplicate: fails, and neither stays
                    call = partial(write, k, two_rows, (k, task, k - 1, task))
                calls.append(call)
            await queued_together(db, calls)
        stats = db.statistics()
        rows = await db.fetchall("SELECT k FROM u WHERE k >= 0", row_factory=tuple)
    present = {k for (k,) in rows}
    expected_ok = {t * 100 + i for t in range(30) for i in (0, 2)}
    assert {k for k, o in outcomes.items() if o == "ok"} == expected_ok
    assert len(outcomes) == 120
    assert present == expected_ok  # no row of a failed two-row INSERT OR FAIL
    assert stats.grouped_writes - before.grouped_writes >= 30  # they did run in groups
    assert stats.group_retries == before.group_retries  # statement errors need no retry


@pytest.mark.anyio
async def test_a_write_that_rolls_back_the_transaction_costs_the_others_nothing(
    db_path: Path,
) -> None:
    """INSERT OR ROLLBACK on a duplicate rolls back the whole transaction, the group's:
    the group is undone and each write runs again alone, once."""
    async with aiolite.open(db_path, readers=1) as db:
        await make_table(db)
        await db.execute(INSERT, ("slow", 0))
        await db.execute("CREATE TABLE u(k INTEGER UNIQUE)")
        rollback = "INSERT OR ROLLBACK INTO u VALUES (?)"
        await warm(db, INSERT, lambda n: ("warm", -1))
        await warm(db, rollback, lambda n: (-n,))
        before = db.statistics()
        failed = 0
        acknowledged: list[str] = []

        async def write(token: str) -> None:
            await db.execute(INSERT, (token, 0))
            acknowledged.append(token)

        async def fail() -> None:
            nonlocal failed
            try:
                await db.execute(rollback, (-1,))  # always a duplicate
            except sqlite3.IntegrityError:
                failed += 1

        for r in range(4):
            calls = [fail if i % 5 == 4 else partial(write, f"{r}-{i}") for i in range(40)]
            await queued_together(db, calls)
        stats = db.statistics()
        counts = await rows_by_token(db)
    assert failed == 4 * 8
    assert len(acknowledged) == 4 * 32
    assert all(counts.get(token) == 1 for token in acknowledged)
    assert sum(counts.values()) == len(acknowledged) + counts["warm"] + counts["slow"]
    assert stats.group_retries > before.group_retries  # the path was taken


@pytest.mark.anyio
async def test_cancelled_first_or_member_write_never_runs_the_rest_commit(
    db_path: Path,
) -> None:
    async with aiolite.open(db_path, readers=1) as db:
        await make_table(db)
        await db.execute(INSERT, ("slow", 0))
        await warm(db, INSERT, lambda n: ("warm", -1))
        for cancel in ("a", "b"):  # the group's first write, then a member
            before = db.statistics()
            async with anyio.create_task_group() as tg:
                tg.start_soon(db.execute, SLOW_WRITE)
                await anyio.sleep(0.05)  # the writer is busy with it: the rest queue
                scopes = {}
                for name in ("a", "b", "c"):
                    scope = anyio.CancelScope()
                    scopes[name] = scope

                    async def write(token: str, scope: anyio.CancelScope) -> None:
                        with scope:
                            await db.execute(INSERT, (token, 1))

                    tg.start_soon(write, f"{cancel}:{name}", scope)
                    await anyio.lowlevel.checkpoint()  # queued in this order
                await anyio.sleep(0.01)
                assert not db._writer.worker._queue.empty()  # still waiting
                scopes[cancel].cancel()
            counts = await rows_by_token(db)
            stats = db.statistics()
            committed = {n for n in "abc" if counts.get(f"{cancel}:{n}")}
            assert committed == set("abc") - {cancel}
            assert all(counts[f"{cancel}:{n}"] == 1 for n in committed)
            if cancel == "b":  # a and c committed together
                assert stats.group_commits == before.group_commits + 1


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_cancels_lose_no_acknowledged_write_and_commit_none_twice(
    db_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    acknowledged: set[str] = set()
    attempted: set[str] = set()
    async with aiolite.open(db_path, readers=2) as db:
        await make_table(db)
        await warm(db, INSERT, lambda n: ("warm", -1))

        async def writer(task: int) -> None:
            for i in range(30):
                token = f"{task}-{i}"
                attempted.add(token)
                with anyio.CancelScope() as scope:
                    r = rng.random()
                    if r < 0.15:
                        scope.deadline = anyio.current_time() + rng.uniform(0, 0.002)
                    elif r < 0.2:
                        scope.cancel()
                    await db.execute(INSERT, (token, task))
                    acknowledged.add(token)
                if rng.random() < 0.2:
                    await db.fetchone("SELECT count(*) FROM t WHERE task = ?", (task,))

        async with anyio.create_task_group() as tg:
            for task in range(40):
                tg.start_soon(writer, task)
        stats = db.statistics()
        counts = await rows_by_token(db)
        # The writer is free and outside any transaction afterwards.
        await db.execute(INSERT, ("after", 0))
        assert not db._writer.worker.inspect("in_transaction")
    counts.pop("warm")
    assert all(n == 1 for n in counts.values())  # nothing committed twice
    assert acknowledged <= set(counts)  # nothing acknowledged was lost
    assert set(counts) <= attempted  # nothing appeared from nowhere
    assert len(acknowledged) < len(attempted)  # some were cancelled
    assert stats.group_commits > 0


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_closing_amid_grouped_writes_loses_no_acknowledged_write(
    db_path: Path, seed: int
) -> None:
    """The Database is closed at a random moment while 40 tasks write (and some cancel):
    the writes queued before the close run (in groups), later ones fail with
    ConnectionClosedError; after reopening, every acknowledged write is there once, and
    nothing else but writes that were attempted."""
    rng = random.Random(seed)
    acknowledged: set[str] = set()
    attempted: set[str] = set()
    refused = 0
    db = await aiolite.open(db_path, readers=1)
    await make_table(db)
    await warm(db, INSERT, lambda n: ("warm", -1))
    before = db.statistics()

    async def writer(task: int) -> None:
        nonlocal refused
        for i in range(200):
            token = f"{task}-{i}"
            attempted.add(token)
            with anyio.CancelScope() as scope:
                if rng.random() < 0.1:
                    scope.deadline = anyio.current_time() + rng.uniform(0, 0.002)
                try:
                    await db.execute(INSERT, (token, task))
                except aiolite.ConnectionClosedError:
                    refused += 1
                    return
                acknowledged.add(token)

    async with anyio.create_task_group() as tg:
        for task in range(40):
            tg.start_soon(writer, task)
        await anyio.sleep(rng.uniform(0.02, 0.15))
        stats = db.statistics()
        await db.close()
    async with aiolite.open(db_path, readers=1) as again:
        counts = await rows_by_token(again)
        assert await again.fetchval("PRAGMA integrity_check") == "ok"
    counts.pop("warm")
    assert refused > 0  # the close came amid the writes
    assert stats.group_commits > before.group_commits
    assert all(n == 1 for n in counts.values())  # nothing committed twice
    assert acknowledged <= set(counts)  # nothing acknowledged was lost
    assert set(counts) <= attempted


@pytest.mark.anyio
async def test_disk_full_in_a_group_loses_nothing_acknowledged(db_path: Path) -> None:
    async with aiolite.open(db_path, pragmas={"max_page_count": 60}, readers=1) as db:
        await db.execute("CREATE TABLE b(id INTEGER PRIMARY KEY, token TEXT, pad BLOB)")
        sql = "INSERT INTO b(token, pad) VALUES (?, randomblob(?))"
        await warm(db, sql, lambda n: ("warm", 10))
        acknowledged: list[str] = []
        errors: list[str] = []

        async def writer(task: int) -> None:
            for i in range(40):
                token = f"{task}-{i}"
                try:
                    await db.execute(sql, (token, 300 + 97 * ((task * 40 + i) % 30)))
                except sqlite3.OperationalError as exc:
                    errors.append(str(exc))
                else:
                    acknowledged.append(token)

        async with anyio.create_task_group() as tg:
            for task in range(20):
                tg.start_soon(writer, task)
        tokens = await db.fetchall("SELECT token FROM b WHERE token != 'warm'", row_factory=tuple)
        assert await db.fetchval("PRAGMA integrity_check") == "ok"
    assert errors
    assert all("full" in e for e in errors)
    assert acknowledged
    assert sorted(t for (t,) in tokens) == sorted(acknowledged)


# Short when learned (n = 10), about a second when it matters: joins groups all the same.
GROWING = (
    "INSERT INTO t(token, task) SELECT ?, (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
    "SELECT x + 1 FROM c WHERE x < ?) SELECT count(*) FROM c)"
)


@pytest.mark.anyio
@pytest.mark.parametrize("which", ["lead", "member"])
async def test_a_cancel_that_interrupts_a_group_runs_the_others_alone(
    db_path: Path, which: str
) -> None:
    """A cancel of the group's running write interrupts it, and SQLite then rolls back the
    whole transaction: the cancelled write reports the cancellation and never commits, the
    others run again alone and commit once."""
    async with aiolite.open(db_path, readers=1) as db:
        await make_table(db)
        await db.execute(INSERT, ("slow", 0))
        await warm(db, INSERT, lambda n: ("warm", -1))
        await warm(db, GROWING, lambda n: ("warm", 10))
        before = db.statistics()
        order = ["long", "a", "c"] if which == "lead" else ["a", "long", "c"]
        long_scope = anyio.CancelScope()
        cancelled = []

        async def write(name: str) -> None:
            if name == "long":
                with long_scope:
                    await db.execute(GROWING, ("long", 20_000_000))
                cancelled.append(long_scope.cancelled_caught)
            else:
                await db.execute(INSERT, (name, 1))

        async with anyio.create_task_group() as tg:
            tg.start_soon(db.execute, SLOW_WRITE)
            await anyio.sleep(0.05)  # the writer is busy: the three queue as one group
            for name in order:
                tg.start_soon(write, name)
                await anyio.lowlevel.checkpoint()
            # Until the group runs (the slow write's outcome may be held until it ends:
            # the worker holds outcomes while the next job has been short), then into
            # its long write.
            while getattr(db._writer.worker._running, "members", None) is None:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            await anyio.sleep(0.2)
            long_scope.cancel()
        stats = db.statistics()
        counts = await rows_by_token(db)
    assert cancelled == [True]
    assert "long" not in counts
    assert counts["a"] == counts["c"] == 1
    assert stats.group_retries == before.group_retries + 1
