"""aiolite.open(): the Database API, its defaults, types, transactions and observability."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import sqlite3
import uuid
import warnings
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

import aiolite
from conftest import on_dqlite

pytestmark = pytest.mark.anyio


@pytest.fixture
async def database(location: Any) -> AsyncIterator[aiolite.Database]:
    async with aiolite.open(location, readers=2) as db:
        await db.executescript(
            "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INT);"
            "INSERT INTO items(name, qty) VALUES ('a', 1), ('b', 2), ('c', 3);"
        )
        yield db


# ---- reads ----


async def test_fetch_methods(database: aiolite.Database) -> None:
    row = await database.fetchone("SELECT id, name, qty FROM items WHERE name = ?", ("b",))
    assert isinstance(row, aiolite.Row)
    assert (row[0], row["name"], dict(row)) == (2, "b", {"id": 2, "name": "b", "qty": 2})
    assert await database.fetchone("SELECT * FROM items WHERE id = 99") is None
    rows = await database.fetchall("SELECT name FROM items ORDER BY id")
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    assert await database.fetchval("SELECT sum(qty) FROM items") == 6
    assert await database.fetchval("SELECT qty FROM items WHERE id = 99") is None
    named = await database.fetchval("SELECT qty FROM items WHERE name = :n", {"n": "c"})
    assert named == 3


@dataclasses.dataclass
class Item:
    id: int
    name: str
    qty: int


async def test_row_factories(db_path: Path) -> None:
    async with aiolite.open(db_path, row_factory=dict, readers=1) as db:
        await db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, qty INT)")
        await db.execute("INSERT INTO items VALUES (1, 'a', 5)")
        assert await db.fetchone("SELECT * FROM items") == {"id": 1, "name": "a", "qty": 5}
        assert await db.fetchall("SELECT * FROM items", row_factory=tuple) == [(1, "a", 5)]
        assert await db.fetchone("SELECT * FROM items", row_factory=Item) == Item(1, "a", 5)
        custom = await db.fetchone("SELECT name FROM items", row_factory=lambda c, r: r[0] * 2)
        assert custom == "aa"
        async with db.transaction() as tx:
            assert await tx.fetchall("SELECT id FROM items") == [{"id": 1}]


async def test_iterate_streams_in_chunks_and_releases_the_reader(
    database: aiolite.Database,
) -> None:
    await database.executemany(
        "INSERT INTO items(name, qty) VALUES (?, ?)", [("x", i) for i in range(1000)]
    )
    before = database.statistics().round_trips
    seen = [row["qty"] async for row in database.iterate("SELECT qty FROM items", chunk_size=100)]
    assert len(seen) == 1003
    # 1003 rows in chunks of 100: 11 trips (the statement plus 10 refills).
    assert database.statistics().round_trips - before == 11
    assert database.statistics().readers_reserved == 0
    # Stopping early with async with gives the reader back.
    async with database.iterate("SELECT qty FROM items", chunk_size=10) as rows:
        async for _ in rows:
            assert database.statistics().readers_reserved == 1
            break
    assert database.statistics().readers_reserved == 0


async def test_stream_goes_on_after_a_cancelled_refill(database: aiolite.Database) -> None:
    await database.executemany(
        "INSERT INTO items(name, qty) VALUES ('x', ?)", [(i,) for i in range(3000)]
    )
    seen: list[int] = []
    cancelled = 0
    async with database.iterate(
        "SELECT qty FROM items WHERE name = 'x' ORDER BY qty", chunk_size=50
    ) as rows:

        async def take() -> bool:
            try:
                seen.append((await rows.__anext__())["qty"])
            except StopAsyncIteration:
                return False
            return True

        more = await take()  # started: from here on, every fetch is a refill
        while more:
            while rows._res._rows:  # take what is buffered, so the next call needs a refill
                await take()
            with anyio.CancelScope() as scope:
                scope.cancel()  # the refill is cancelled (before it runs, or while it runs)
                more = await take()
            cancelled += scope.cancelled_caught
            more = more and await take()
    # A refill that finished before the cancel reached it returns its row (the truth), so
    # how many are caught depends on timing: ~60 on an idle machine, a few under load.
    assert cancelled >= 1
    assert seen == list(range(3000))  # the stream went on, and skipped nothing


async def test_read_session_sees_one_snapshot(database: aiolite.Database) -> None:
    async with database.read() as snap:
        assert await snap.fetchval("SELECT count(*) FROM items") == 3
        await database.execute("INSERT INTO items(name, qty) VALUES ('d', 4)")
        # Committed meanwhile: invisible inside the snapshot, visible outside it.
        assert await snap.fetchval("SELECT count(*) FROM items") == 3
        assert await database.fetchval("SELECT count(*) FROM items") == 4
        assert [r[0] async for r in snap.iterate("SELECT name FROM items")] == ["a", "b", "c"]
    assert database.statistics().readers_reserved == 0
    with pytest.raises(RuntimeError, match="not active"):
        await snap.fetchone("SELECT 1")


async def test_reads_wait_when_every_reader_is_reserved(db_path: Path) -> None:
    async with aiolite.open(db_path, readers=1) as db:
        await db.execute("CREATE TABLE t(x)")
        got: list[Any] = []

        async def read() -> None:
            got.append(await db.fetchval("SELECT count(*) FROM t"))

        async with anyio.create_task_group() as tg, db.read() as snap:
            assert await snap.fetchval("SELECT count(*) FROM t") == 0
            await db.execute("INSERT INTO t VALUES (1)")
            tg.start_soon(read)
            await anyio.sleep(0.05)
            assert got == []  # waiting for the reader, not reading the old snapshot
        assert got == [1]


async def test_readers_are_query_only(database: aiolite.Database) -> None:
    with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only|query_only"):
        await database.fetchone("INSERT INTO items(name, qty) VALUES ('z', 0)")
    assert await database.fetchval("SELECT count(*) FROM items") == 3


# ---- writes ----


async def test_execute_returns_lastrowid_rowcount_and_returning_rows(
    database: aiolite.Database,
) -> None:
    result = await database.execute("INSERT INTO items(name, qty) VALUES (?, ?)", ("d", 4))
    assert (result.lastrowid, result.rowcount, result.rows) == (4, 1, [])
    result = await database.execute("UPDATE items SET qty = qty + 1 WHERE qty >= 2")
    assert result.rowcount == 3
    if on_dqlite(database.path):
        # libdqlite 1.11 cannot run a write that returns rows: refused before it is sent.
        with pytest.raises(sqlite3.NotSupportedError, match="RETURNING"):
            await database.execute("DELETE FROM items WHERE qty > 3 RETURNING name")
        assert await database.fetchval("SELECT count(*) FROM items") == 4
        return
    result = await database.execute("DELETE FROM items WHERE qty > 3 RETURNING name")
    assert sorted(r["name"] for r in result.rows) == ["c", "d"]
    assert await database.fetchval("SELECT count(*) FROM items") == 2


async def test_executemany_is_one_transaction(database: aiolite.Database) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await database.executemany(
            "INSERT INTO items(id, name, qty) VALUES (?, ?, ?)", [(10, "x", 1), (1, "dup", 1)]
        )
    assert await database.fetchval("SELECT count(*) FROM items WHERE id = 10") == 0
    result = await database.executemany(
        "INSERT INTO items(name, qty) VALUES (?, ?)", [("x", i) for i in range(5)]
    )
    assert result.rowcount == 5
    assert await database.fetchval("SELECT count(*) FROM items") == 8


async def test_executescript_rolls_back_what_it_leaves_open(database: aiolite.Database) -> None:
    with pytest.raises(sqlite3.OperationalError, match="did not end it"):
        await database.executescript("BEGIN; INSERT INTO items(name, qty) VALUES ('s', 1);")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await database.executescript(
            "BEGIN; INSERT INTO items(name, qty) VALUES ('s', 1); INSERT INTO nope VALUES (1);"
        )
    assert await database.fetchval("SELECT count(*) FROM items WHERE name = 's'") == 0
    # The writer is usable afterwards: nothing was left open.
    await database.execute("INSERT INTO items(name, qty) VALUES ('t', 1)")
    assert await database.fetchval("SELECT count(*) FROM items") == 4


# ---- transactions ----


async def test_transaction_commits_and_reads_its_own_writes(database: aiolite.Database) -> None:
    async with database.transaction() as tx:
        await tx.execute("UPDATE items SET qty = 10 WHERE name = 'a'")
        assert await tx.fetchval("SELECT qty FROM items WHERE name = 'a'") == 10
        # Readers do not see it before the commit.
        assert await database.fetchval("SELECT qty FROM items WHERE name = 'a'") == 1
        many = await tx.executemany("INSERT INTO items(name, qty) VALUES (?, 0)", [("x",), ("y",)])
        assert many.rowcount == 2
    assert await database.fetchval("SELECT qty FROM items WHERE name = 'a'") == 10
    assert await database.fetchval("SELECT count(*) FROM items") == 5
    assert database.statistics().transactions == 1


async def test_transaction_rolls_back_on_exception(database: aiolite.Database) -> None:
    async def fail() -> None:
        async with database.transaction() as tx:
            await tx.execute("DELETE FROM items")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await fail()
    assert await database.fetchval("SELECT count(*) FROM items") == 3
    assert database.statistics().rollbacks == 1
    # An error inside SQLite does not end the transaction by itself (SQLite semantics).
    async with database.transaction() as tx:
        with pytest.raises(sqlite3.IntegrityError):
            await tx.execute("INSERT INTO items(id, name, qty) VALUES (1, 'dup', 0)")
        await tx.execute("INSERT INTO items(name, qty) VALUES ('e', 5)")
    assert await database.fetchval("SELECT count(*) FROM items") == 4


async def test_savepoints(database: aiolite.Database) -> None:
    async with database.transaction() as tx:
        await tx.execute("UPDATE items SET qty = 100 WHERE name = 'a'")
        async with tx.savepoint():
            await tx.execute("UPDATE items SET qty = 200 WHERE name = 'b'")

        async def fail() -> None:
            async with tx.savepoint():
                await tx.execute("UPDATE items SET qty = 300 WHERE name = 'c'")
                async with tx.savepoint():
                    await tx.execute("DELETE FROM items WHERE name = 'a'")
                raise KeyError

        with pytest.raises(KeyError):
            await fail()
        assert await tx.fetchval("SELECT qty FROM items WHERE name = 'c'") == 3
    rows = await database.fetchall("SELECT name, qty FROM items ORDER BY id", row_factory=tuple)
    assert rows == [("a", 100), ("b", 200), ("c", 3)]


async def test_deadlocks_are_refused_with_a_clear_error(database: aiolite.Database) -> None:
    async with database.transaction() as tx:
        await tx.execute("UPDATE items SET qty = 0")
        with pytest.raises(sqlite3.ProgrammingError, match=r"use tx\.execute"):
            await database.execute("UPDATE items SET qty = 1")
        with pytest.raises(sqlite3.ProgrammingError, match="wait for that transaction"):
            async with database.transaction():
                pass
    assert await database.fetchval("SELECT max(qty) FROM items") == 0


async def test_transactions_queue_in_fifo_order(database: aiolite.Database) -> None:
    order: list[int] = []
    async with anyio.create_task_group() as tg, database.transaction() as tx:
        await tx.execute("UPDATE items SET qty = 0")

        async def writer(i: int) -> None:
            async with database.transaction() as t:
                order.append(i)
                await t.execute("UPDATE items SET qty = ? WHERE name = 'a'", (i,))

        for i in range(20):
            tg.start_soon(writer, i)
            await anyio.sleep(0.001)  # queue them one by one, in a known order
        assert database.statistics().writer_waiting == 20
    assert order == list(range(20))
    assert await database.fetchval("SELECT qty FROM items WHERE name = 'a'") == 19
    stats = database.statistics()
    assert stats.writer_waits >= 20
    assert stats.writer_wait_seconds > 0


async def test_round_trips(database: aiolite.Database) -> None:
    def trips() -> int:
        # A call either crosses to a worker thread or runs on the loop's (adaptive
        # execution: no round trip at all); either way it is one call.
        s = database.statistics()
        return s.round_trips + s.inline_calls

    before = trips()
    await database.fetchone("SELECT * FROM items WHERE id = 1")
    assert trips() - before == 1
    before = trips()
    await database.execute("UPDATE items SET qty = qty + 1 WHERE id = 1")
    assert trips() - before == 1
    before = trips()
    async with database.transaction() as tx:  # BEGIN travels with the first statement
        qty = await tx.fetchval("SELECT qty FROM items WHERE id = 1")
        async with tx.savepoint():
            await tx.execute("UPDATE items SET qty = ? WHERE id = 1", (qty + 1,))
    assert trips() - before == 3
    before = trips()
    async with database.transaction():
        pass
    assert trips() - before == 0


# ---- defaults and pragmas ----


async def test_defaults_apply_to_every_connection(db_path: Path) -> None:
    async with aiolite.open(db_path, readers=3) as db:
        assert db.journal_mode == "wal"
        for _ in range(6):  # spread over the readers
            assert await db.fetchval("PRAGMA foreign_keys") == 1
            assert await db.fetchval("PRAGMA synchronous") == 1  # NORMAL
            assert await db.fetchval("PRAGMA temp_store") == 2  # MEMORY
            assert await db.fetchval("PRAGMA busy_timeout") == 5000
            assert await db.fetchval("PRAGMA query_only") == 1
        async with db.transaction() as tx:
            assert await tx.fetchval("PRAGMA foreign_keys") == 1
            assert await tx.fetchval("PRAGMA query_only") == 0
            assert await tx.fetchval("PRAGMA journal_mode") == "wal"
    with sqlite3.connect(db_path) as raw:  # WAL is persisted in the file
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


async def test_pragma_overrides(db_path: Path) -> None:
    pragmas = {
        "synchronous": "FULL",
        "foreign_keys": None,
        "cache_size": -4000,
        "busy_timeout": 750,
    }
    async with aiolite.open(db_path, pragmas=pragmas, readers=1) as db:
        assert await db.fetchval("PRAGMA synchronous") == 2
        assert await db.fetchval("PRAGMA foreign_keys") == 0  # dropped: SQLite's default
        assert await db.fetchval("PRAGMA cache_size") == -4000
        assert await db.fetchval("PRAGMA busy_timeout") == 750
    with pytest.raises(ValueError, match="invalid value"):
        aiolite.open(db_path, pragmas={"journal_mode": "WAL; DROP TABLE x"})
    with pytest.raises(ValueError, match="invalid pragma name"):
        aiolite.open(db_path, pragmas={"x=1; --": 1})
    with pytest.raises(ValueError, match="readers"):
        aiolite.open(db_path, readers=0)


async def test_foreign_keys_are_enforced(db_path: Path) -> None:
    async with aiolite.open(db_path) as db:
        await db.executescript(
            "CREATE TABLE p(id INTEGER PRIMARY KEY);"
            "CREATE TABLE c(id INTEGER PRIMARY KEY, p INT REFERENCES p(id));"
        )
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            await db.execute("INSERT INTO c(p) VALUES (42)")


async def test_memory_database_is_shared_by_writer_and_readers() -> None:
    async with aiolite.open(":memory:", readers=2) as db, aiolite.open(":memory:") as other:
        await db.execute("CREATE TABLE t(x)")
        await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
        for _ in range(4):
            assert await db.fetchval("SELECT count(*) FROM t") == 10
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await other.fetchval("SELECT count(*) FROM t")  # a separate database


# ---- types ----


async def test_types_round_trip_without_globals(db_path: Path) -> None:
    adapters_before = dict(sqlite3.adapters)
    converters_before = dict(sqlite3.converters)
    aware = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    naive = dt.datetime(2024, 5, 6, 7, 8, 9)
    uid = uuid.uuid4()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning from sqlite3's default adapters
        async with aiolite.open(db_path, readers=1) as db:
            await db.execute(
                "CREATE TABLE t(a TIMESTAMP, n DATETIME, d DATE, tm TIME, p DECIMAL TEXT, "
                "u UUID, j JSON, b BOOLEAN, plain TEXT)"
            )
            values = (aware, naive, dt.date(2024, 1, 2), dt.time(3, 4, 5), Decimal("19.990"),
                      uid, {"k": [1, "ü"]}, True, "2024-01-01")  # fmt: skip
            await db.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            row = await db.fetchone("SELECT * FROM t")
            assert tuple(row) == values
            raw = await db.fetchone("SELECT * FROM t", row_factory=tuple)
            assert raw == values
            # Stored as ISO 8601 / JSON / exact text; computed columns come back as stored.
            stored = await db.fetchone(
                "SELECT typeof(a), a || '', j || '', p || '' FROM t", row_factory=tuple
            )
            assert stored == ("text", "2024-05-06 07:08:09.123456+02:00", '{"k":[1,"ü"]}', "19.990")
            assert await db.fetchval("SELECT max(a) FROM t") == "2024-05-06 07:08:09.123456+02:00"
            # fetchval converts too, and an alias to a name the schema declares is converted.
            assert await db.fetchval("SELECT d FROM t") == dt.date(2024, 1, 2)
            assert (await db.fetchone("SELECT max(d) AS d FROM t"))["d"] == dt.date(2024, 1, 2)
    assert dict(sqlite3.adapters) == adapters_before
    assert dict(sqlite3.converters) == converters_before


async def test_types_none_and_custom(db_path: Path) -> None:
    async with aiolite.open(db_path, types=None, readers=1) as db:
        await db.execute("CREATE TABLE t(a TIMESTAMP)")
        await db.execute("INSERT INTO t VALUES ('2024-01-01 00:00:00')")
        assert (await db.fetchone("SELECT a FROM t"))[0] == "2024-01-01 00:00:00"
        unsupported = (sqlite3.ProgrammingError, sqlite3.InterfaceError)  # 3.9-3.10: the latter
        with pytest.raises(unsupported, match="supported"):
            await db.execute("INSERT INTO t VALUES (?)", (Decimal("1"),))

    class Money:
        def __init__(self, cents: int) -> None:
            self.cents = cents

    types = aiolite.Types(adapters={Money: lambda m: m.cents}, converters={"MONEY": Money})
    async with aiolite.open(db_path, types=types, readers=1) as db:
        await db.execute("CREATE TABLE m(v MONEY, a TIMESTAMP)")
        await db.execute("INSERT INTO m VALUES (?, ?)", (Money(250), "not a date"))
        row = await db.fetchone("SELECT v FROM m")
        assert isinstance(row[0], Money)
        assert row[0].cents == 250
        with pytest.raises(
            sqlite3.DataError,
            match=r"column 'a' \(declared TIMESTAMP\) value 'not a date': not a datetime",
        ):
            await db.fetchone("SELECT a FROM m")


# ---- lifecycle ----


async def test_close_waits_for_the_running_transaction(db_path: Path) -> None:
    db = await aiolite.open(db_path, readers=1)
    await db.execute("CREATE TABLE t(x)")
    entered = anyio.Event()

    async def slow_transaction() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (1)")
            entered.set()
            await anyio.sleep(0.2)
            await tx.execute("INSERT INTO t VALUES (2)")

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_transaction)
        await entered.wait()
        await db.close()
    assert db.closed
    threads = [m.worker.thread for m in db._all]
    assert not any(t.is_alive() for t in threads)
    with pytest.raises(aiolite.ConnectionClosedError, match="Database closed"):
        await db.fetchone("SELECT 1")
    with pytest.raises(sqlite3.ProgrammingError, match="Database closed"):
        await db.execute("INSERT INTO t VALUES (3)")
    await db.close()  # idempotent
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]
    raw.close()


async def test_not_opened_and_reopen_errors(db_path: Path) -> None:
    db = aiolite.open(db_path)
    with pytest.raises(sqlite3.ProgrammingError, match="not open yet"):
        await db.fetchone("SELECT 1")
    await db
    assert await db.fetchval("SELECT 7") == 7
    await db.close()
    with pytest.raises(aiolite.ConnectionClosedError):
        await db


async def test_open_error_is_raised_and_threads_end(tmp_path: Path) -> None:
    db = aiolite.open(tmp_path / "missing-dir" / "x.db")
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        await db
    for m in db._all:
        m.worker.join(5)
        assert not m.worker.thread.is_alive()


async def test_unclosed_database_warns(db_path: Path) -> None:
    db = await aiolite.open(db_path, readers=1)
    threads = [m.worker.thread for m in db._all]
    with pytest.warns(ResourceWarning, match="deleted before being closed"):
        del db  # nothing refers back to a Database: it goes at once
    for t in threads:
        t.join(5)
        assert not t.is_alive()


# ---- observability ----


async def test_statement_hook_slow_log_and_repr(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[aiolite.StatementEvent] = []
    caplog.set_level(logging.WARNING, logger="aiolite")
    async with aiolite.open(db_path, readers=1, on_statement=events.append, slow_query=0.0) as db:
        await db.execute("CREATE TABLE t(x)")
        await db.fetchall("SELECT * FROM t WHERE x = ?", (1,))
        with pytest.raises(sqlite3.OperationalError):
            await db.fetchone("SELECT nope FROM t")
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (2)")
        assert "writer: 0 waiting" in repr(db)
        assert "readers: 0/1 reserved" in repr(db)
    assert [(e.sql, e.role) for e in events] == [
        ("CREATE TABLE t(x)", "writer"),
        ("SELECT * FROM t WHERE x = ?", "reader-0"),
        ("SELECT nope FROM t", "reader-0"),
        ("INSERT INTO t VALUES (2)", "writer"),
        ("COMMIT", "writer"),
    ]
    assert events[1].params == (1,)
    assert events[1].duration > 0
    assert events[1].error is None
    assert isinstance(events[2].error, sqlite3.OperationalError)
    slow = [r.getMessage() for r in caplog.records if r.name == "aiolite"]
    assert len(slow) == 5
    assert "slow statement on reader-0" in slow[1]


async def test_short_reads_use_the_free_writer_but_never_see_a_transaction(
    db_path: Path,
) -> None:
    events: list[aiolite.StatementEvent] = []
    query = "SELECT qty FROM items WHERE name = 'a'"
    async with aiolite.open(db_path, readers=1, on_statement=events.append) as db:
        await db.executescript(
            "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, qty INT);"
            "INSERT INTO items(name, qty) VALUES ('a', 1);"
        )
        for _ in range(20):  # first on a reader, until it is known read-only and short
            assert await db.fetchval(query) == 1
        roles = [e.role for e in events if e.sql == query]
        assert roles[0] == "reader-0"
        assert roles[-1] == "writer"  # then on the idle writer
        async with db.transaction() as tx:
            await tx.execute("UPDATE items SET qty = 99 WHERE name = 'a'")
            # The writer is taken: the same query goes to a reader and sees committed data.
            with anyio.fail_after(2):
                assert await db.fetchval(query) == 1
        assert [e.role for e in events if e.sql == query][-1] == "reader-0"
        assert await db.fetchval(query) == 99
        # Connection-level statements stay on the readers.
        for _ in range(3):
            assert await db.fetchval("PRAGMA query_only") == 1
