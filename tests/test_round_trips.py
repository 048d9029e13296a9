"""Thread round trips per usage pattern: the numbers in docs/round-trips.md."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Callable

import pytest

import aiolite

pytestmark = pytest.mark.anyio


async def trips(db: aiolite.Connection, action: Callable[[], Awaitable[object]]) -> int:
    before = db.statistics().round_trips
    await action()
    return db.statistics().round_trips - before


@pytest.fixture
async def loaded(db: aiolite.Connection) -> aiolite.Connection:
    await db.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, v TEXT)")
    await db.executemany("INSERT INTO t (v) VALUES (?)", [(str(i),) for i in range(10_000)])
    await db.commit()
    return db


async def test_connect_costs_one_trip(db_path: object) -> None:
    """Opening a connection is one round trip."""
    async with aiolite.connect(str(db_path)) as db:
        assert db.statistics().round_trips == 1


async def test_point_select_pattern_is_one_trip(loaded: aiolite.Connection) -> None:
    """async with execute / fetchone / close costs 1 trip (aiosqlite: 3)."""

    async def pattern() -> None:
        async with loaded.execute("SELECT v FROM t WHERE i = ?", (5,)) as cur:
            assert await cur.fetchone() == ("4",)

    assert await trips(loaded, pattern) == 1


async def test_small_fetchall_is_one_trip(loaded: aiolite.Connection) -> None:
    """A result that fits in the prefetch costs 1 trip for execute + fetchall."""

    async def pattern() -> None:
        cur = await loaded.execute("SELECT i FROM t LIMIT 50")
        assert len(await cur.fetchall()) == 50
        await cur.close()

    assert await trips(loaded, pattern) == 1


async def test_large_fetchall_is_two_trips(loaded: aiolite.Connection) -> None:
    """A big result costs 2 trips: execute (with prefetch) and fetchall of the rest."""

    async def pattern() -> None:
        cur = await loaded.execute("SELECT i FROM t")
        assert len(await cur.fetchall()) == 10_000

    assert await trips(loaded, pattern) == 2


async def test_async_for_chunks_grow(loaded: aiolite.Connection) -> None:
    """async for over 10,000 rows: 1 + 12 trips (chunks 128, 256, 512, then 1024)."""

    async def pattern() -> None:
        n = 0
        async with loaded.execute("SELECT i FROM t") as cur:
            async for _ in cur:
                n += 1
        assert n == 10_000

    assert await trips(loaded, pattern) == 13


async def test_write_patterns(loaded: aiolite.Connection) -> None:
    """insert + commit is 2 trips; executemany and executescript 1; cursor() and close 0."""

    async def insert_commit() -> None:
        cur = await loaded.execute("INSERT INTO t (v) VALUES ('x')")
        await loaded.commit()
        assert cur.lastrowid == 10_001

    assert await trips(loaded, insert_commit) == 2

    async def many() -> None:
        await loaded.executemany("INSERT INTO t (v) VALUES (?)", [("y",)] * 100)

    assert await trips(loaded, many) == 1

    async def script() -> None:
        await loaded.executescript("DELETE FROM t WHERE v = 'y'; DELETE FROM t WHERE v = 'x';")

    assert await trips(loaded, script) == 1

    async def cursor_only() -> None:
        async with loaded.cursor() as cur:
            assert cur.rowcount == -1

    assert await trips(loaded, cursor_only) == 0


async def test_execute_helpers_are_one_trip(loaded: aiolite.Connection) -> None:
    """execute_fetchall and execute_insert are 1 trip each."""

    async def both() -> None:
        assert len(await loaded.execute_fetchall("SELECT i FROM t")) == 10_000
        assert await loaded.execute_insert("INSERT INTO t (v) VALUES ('z')") == (10_001,)

    assert await trips(loaded, both) == 2


async def test_begin_travels_with_the_statement(db_path: object) -> None:
    """execute(q, begin="IMMEDIATE") opens the transaction in the same trip; an open
    transaction is joined, not begun again; a bad kind is refused before any trip."""
    async with aiolite.connect(str(db_path), isolation_level=None) as db:
        await db.execute("CREATE TABLE t (x)")

        async def first() -> None:
            await db.execute("INSERT INTO t VALUES (1)", begin="IMMEDIATE")

        assert await trips(db, first) == 1
        assert db.in_transaction
        await db.execute("INSERT INTO t VALUES (2)", begin="IMMEDIATE")  # joins it
        await db.executemany("INSERT INTO t VALUES (?)", [(3,)], begin="deferred")
        await db.rollback()
        assert await db.execute_fetchall("SELECT count(*) FROM t") == [(0,)]
        with pytest.raises(ValueError, match="begin must be"):
            await db.execute("SELECT 1", begin="LATER")
