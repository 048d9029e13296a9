"""The aiosqlite-compatible Connection and Cursor API."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
import sniffio

import aiolite

pytestmark = pytest.mark.anyio


async def test_execute_fetch_variants(db: aiolite.Connection) -> None:
    """fetchone/fetchmany/fetchall return the rows in order, then None/[]."""
    await db.execute("create table t (i integer primary key, v text)")
    await db.executemany("insert into t (v) values (?)", [(f"v{i}",) for i in range(150)])
    cur = await db.execute("select i, v from t order by i")
    assert await cur.fetchone() == (1, "v0")
    assert await cur.fetchmany(2) == [(2, "v1"), (3, "v2")]
    cur.arraysize = 3
    assert await cur.fetchmany() == [(4, "v3"), (5, "v4"), (6, "v5")]
    rest = await cur.fetchall()
    assert [r[0] for r in rest] == list(range(7, 151))
    assert await cur.fetchone() is None
    assert await cur.fetchall() == []
    assert await cur.fetchmany(5) == []


async def test_async_for_and_anext(db: aiolite.Connection) -> None:
    """async for yields every row once across chunk boundaries; anext() works."""
    await db.execute("create table t (i integer)")
    await db.executemany("insert into t values (?)", [(i,) for i in range(5000)])
    async with db.execute("select i from t order by i") as cur:
        first = await cur.__anext__()
        rest = [row[0] async for row in cur]
    assert first == (0,)
    assert rest == list(range(1, 5000))


async def test_cursor_metadata(db: aiolite.Connection) -> None:
    """description, rowcount, lastrowid and connection match sqlite3's meaning."""
    cur = await db.cursor()
    assert cur.connection is db
    assert cur.lastrowid is None
    assert cur.rowcount == -1
    await cur.execute("create table t (a integer primary key, b)")
    await cur.execute("insert into t (b) values (?)", ("x",))
    assert cur.lastrowid == 1
    assert cur.rowcount == 1
    await cur.executemany("insert into t (b) values (?)", [("y",), ("z",)])
    assert cur.rowcount == 2
    await cur.execute("select a, b from t")
    assert [d[0] for d in cur.description] == ["a", "b"]
    assert cur.rowcount == -1
    assert await cur.fetchall() == [(1, "x"), (2, "y"), (3, "z")]
    await cur.execute("update t set b = 'w' where a > ?", (1,))
    assert cur.rowcount == 2
    assert cur.description is None


async def test_named_parameters(db: aiolite.Connection) -> None:
    """Mapping parameters bind :name placeholders."""
    rows = await db.execute_fetchall("select :a + :b", {"a": 2, "b": 3})
    assert rows == [(5,)]


async def test_execute_insert_and_fetchall(db: aiolite.Connection) -> None:
    """execute_insert returns (last_insert_rowid,); execute_fetchall returns all rows."""
    await db.execute("create table t (i integer primary key, v)")
    assert await db.execute_insert("insert into t (v) values (?)", ("a",)) == (1,)
    assert await db.execute_insert("insert into t (v) values (?)", ("b",)) == (2,)
    assert await db.execute_fetchall("select v from t order by i") == [("a",), ("b",)]


async def test_executescript(db: aiolite.Connection) -> None:
    """executescript runs every statement of the script."""
    cur = await db.executescript(
        "create table a (x); insert into a values (1); insert into a values (2);"
    )
    assert isinstance(cur, aiolite.Cursor)
    assert await db.execute_fetchall("select sum(x) from a") == [(3,)]


async def test_transactions_commit_and_rollback(db_path: Path) -> None:
    """Writes are visible to other connections only after commit; rollback discards."""
    async with aiolite.connect(db_path) as a, aiolite.connect(db_path) as b:
        await a.execute("create table t (x)")
        await a.commit()
        await a.execute("insert into t values (1)")
        assert a.in_transaction
        assert await b.execute_fetchall("select count(*) from t") == [(0,)]
        await a.commit()
        assert not a.in_transaction
        assert await b.execute_fetchall("select count(*) from t") == [(1,)]
        await a.execute("insert into t values (2)")
        await a.rollback()
        assert await a.execute_fetchall("select count(*) from t") == [(1,)]
        assert a.total_changes == 2


async def test_isolation_level_setter(db: aiolite.Connection) -> None:
    """isolation_level can be set (None commits first and switches to autocommit)."""
    await db.execute("create table t (x)")
    await db.execute("insert into t values (1)")
    assert db.in_transaction
    assert db.isolation_level == ""
    db.isolation_level = None
    assert db.isolation_level is None
    await db.execute("insert into t values (2)")
    assert not db.in_transaction  # the setter committed, then autocommit
    db.isolation_level = "IMMEDIATE"
    await db.execute("insert into t values (3)")
    assert db.in_transaction
    await db.rollback()
    assert await db.execute_fetchall("select x from t") == [(1,), (2,)]
    with pytest.raises(ValueError, match="isolation_level string must be"):
        db.isolation_level = "SOMETIMES"


async def test_row_factory_and_text_factory(db: aiolite.Connection) -> None:
    """Connection and cursor row_factory/text_factory apply to later statements."""
    await db.execute("create table t (k integer, d text)")
    await db.execute("insert into t values (1, 'hi')")
    db.row_factory = aiolite.Row
    assert db.row_factory is aiolite.Row
    async with db.execute("select * from t") as cur:
        row = await cur.fetchone()
    assert isinstance(row, sqlite3.Row)
    assert dict(row) == {"k": 1, "d": "hi"}
    cur = await db.cursor()
    cur.row_factory = None
    await cur.execute("select * from t")
    assert await cur.fetchone() == (1, "hi")
    db.row_factory = None
    db.text_factory = bytes
    assert await db.execute_fetchall("select d from t") == [(b"hi",)]


async def test_errors_are_sqlite3_classes(db: aiolite.Connection) -> None:
    """Errors are sqlite3's own DB-API classes, raised with sqlite3's message."""
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await db.execute("select * from missing")
    await db.execute("create table t (x unique)")
    await db.execute("insert into t values (1)")
    with pytest.raises(sqlite3.IntegrityError):
        await db.execute("insert into t values (1)")
    assert aiolite.OperationalError is sqlite3.OperationalError
    with pytest.raises(sqlite3.ProgrammingError):
        await db.executemany("select ?", [(1,)])


async def test_closed_connection_and_cursor(db_path: Path) -> None:
    """After close, every call raises ConnectionClosedError (a ProgrammingError)."""
    db = await aiolite.connect(db_path)
    cur = await db.execute("select 1")
    await db.close()
    for call in (lambda: db.execute("select 1"), db.commit, cur.fetchone, cur.fetchall):
        with pytest.raises(aiolite.ConnectionClosedError, match="closed"):
            await call()
    with pytest.raises(sqlite3.ProgrammingError):
        _ = db.in_transaction
    with pytest.raises(ValueError, match="Connection closed"):  # aiosqlite compat
        await db.execute("select 1")
    assert not db.statistics().open
    await db.close()  # idempotent


async def test_closed_cursor(db: aiolite.Connection) -> None:
    """A closed cursor refuses to fetch, with sqlite3's message."""
    cur = await db.execute("select 1")
    await cur.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
        await cur.fetchone()


async def test_not_opened_yet(db_path: Path) -> None:
    """Using a connection before awaiting it says how to open it."""
    conn = aiolite.connect(db_path)
    with pytest.raises(sqlite3.ProgrammingError, match="not open yet"):
        await conn.execute("select 1")
    await conn.close()


async def test_connect_error(tmp_path: Path) -> None:
    """A bad path raises sqlite3's OperationalError and leaves no thread running."""
    conn = aiolite.connect(tmp_path / "missing" / "dir" / "x.db")
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        await conn
    assert not conn._running


async def test_user_functions(db: aiolite.Connection) -> None:
    """create_function (deterministic), create_aggregate and create_collation work."""

    class Total:
        def __init__(self) -> None:
            self.n = 0

        def step(self, value: int) -> None:
            self.n += value

        def finalize(self) -> int:
            return self.n

    await db.create_function("double", 1, lambda x: x * 2, deterministic=True)
    await db.create_aggregate("total", 1, Total)
    await db.create_collation("rev", lambda a, b: (a < b) - (a > b))
    await db.execute("create table t (x, s)")
    await db.execute("create index t_double on t (double(x))")  # needs deterministic
    await db.executemany("insert into t values (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
    assert await db.execute_fetchall("select double(x) from t order by x") == [(2,), (4,), (6,)]
    assert await db.execute_fetchall("select total(x) from t") == [(6,)]
    assert await db.execute_fetchall("select s from t order by s collate rev") == [
        ("c",),
        ("b",),
        ("a",),
    ]


async def test_hooks(db: aiolite.Connection) -> None:
    """Authorizer, trace callback and progress handler run on the worker and take effect."""
    seen: list[str] = []
    await db.set_trace_callback(seen.append)
    await db.execute("select 42")
    assert "select 42" in seen
    await db.set_authorizer(
        lambda action, *_: sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_DROP_TABLE else 0
    )
    await db.execute("create table t (x)")
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        await db.execute("drop table t")
    await db.set_progress_handler(lambda: 1, 1)
    with pytest.raises(sqlite3.OperationalError, match="interrupted"):
        await db.execute("select 1")
    await db.set_progress_handler(None, 1)
    assert await db.execute_fetchall("select 1") == [(1,)]


async def test_iterdump(db: aiolite.Connection) -> None:
    """iterdump yields the same lines as sqlite3, across several chunks."""
    await db.execute("create table t (i integer)")
    await db.executemany("insert into t values (?)", [(i,) for i in range(1200)])
    await db.commit()
    lines = [line async for line in db.iterdump()]
    assert lines[0] == "BEGIN TRANSACTION;"
    assert lines[-1] == "COMMIT;"
    assert len(lines) == 1203
    partial = []
    async for line in db.iterdump():
        partial.append(line)
        if len(partial) == 3:
            break
    assert partial == lines[:3]
    assert await db.execute_fetchall("select count(*) from t") == [(1200,)]


async def test_backup_to_connection_and_sqlite3(db: aiolite.Connection, tmp_path: Path) -> None:
    """backup copies into an aiolite or a plain sqlite3 connection, reporting progress."""
    await db.execute("create table t (x)")
    await db.executemany("insert into t values (?)", [(i,) for i in range(100)])
    await db.commit()
    calls: list[tuple[int, int, int]] = []
    async with aiolite.connect(tmp_path / "copy.db") as target:
        await db.backup(target, pages=1, progress=lambda *a: calls.append(a))
        assert await target.execute_fetchall("select count(*) from t") == [(100,)]
    assert calls
    assert calls[-1][1] == 0
    plain = sqlite3.connect(":memory:")
    await db.backup(plain)
    assert plain.execute("select sum(x) from t").fetchone() == (4950,)
    plain.close()
    with pytest.raises(ValueError, match="different connection"):
        await db.backup(db)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="sqlite3 gained these in Python 3.11")
async def test_blob_limits_serialize(db: aiolite.Connection) -> None:
    """blobopen, getlimit/setlimit and serialize/deserialize (Python 3.11+)."""
    await db.execute("create table b (data blob)")
    await db.execute("insert into b values (zeroblob(10))")
    await db.commit()
    async with await db.blobopen("b", "data", 1) as blob:
        assert len(blob) == 10
        await blob.write(b"hello")
        assert await blob.tell() == 5
        await blob.seek(0)
        assert await blob.read(5) == b"hello"
    assert await db.execute_fetchall("select data from b") == [(b"hello" + bytes(5),)]
    old = await db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)
    assert await db.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) == 1000
    await db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, old)
    data = await db.serialize()
    async with aiolite.connect(":memory:") as other:
        await other.deserialize(data)
        assert await other.execute_fetchall("select length(data) from b") == [(10,)]


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="checks the message on older Pythons")
async def test_new_sqlite3_methods_explain_version(db: aiolite.Connection) -> None:
    """On Python < 3.11, methods sqlite3 lacks raise NotSupportedError naming the version."""
    with pytest.raises(sqlite3.NotSupportedError, match=r"needs Python 3\.11"):
        await db.serialize()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sqlite3 autocommit is Python 3.12+")
async def test_autocommit_attribute(db_path: Path) -> None:
    """autocommit=False keeps a transaction open; setting True commits it."""
    async with aiolite.connect(db_path, autocommit=False) as db:
        assert db.autocommit is False
        await db.execute("create table t (x)")
        assert db.in_transaction
        db.autocommit = True
        assert db.autocommit is True
        assert await db.execute_fetchall("select count(*) from t") == [(0,)]
        assert not db.in_transaction


async def test_repr_and_statistics(db: aiolite.Connection) -> None:
    """repr shows live state; statistics() counts round trips."""
    before = db.statistics().round_trips
    await db.execute("select 1")
    assert db.statistics().round_trips == before + 1
    assert "open" in repr(db)


async def test_interrupt_from_another_task(db: aiolite.Connection) -> None:
    """interrupt() aborts the running statement with OperationalError."""
    import anyio

    errors: list[BaseException] = []

    async def long_query() -> None:
        try:
            await db.execute(
                "with recursive c(x) as (select 1 union all select x + 1 from c) "
                "select count(*) from c"
            )
        except sqlite3.OperationalError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(long_query)
        await anyio.sleep(0.1)
        await db.interrupt()
    assert len(errors) == 1
    assert "interrupted" in str(errors[0])
    assert await db.execute_fetchall("select 7") == [(7,)]


def test_connect_outside_event_loop(db_path: Path) -> None:
    """Awaiting outside asyncio/trio raises NoEventLoopError naming both."""
    coro: Any = aiolite.connect(db_path).__await__()
    with pytest.raises(aiolite.NoEventLoopError, match=r"asyncio.*trio"):
        coro.send(None)


def test_invalid_iter_chunk_size() -> None:
    """iter_chunk_size must be a positive int, and the message says so."""
    with pytest.raises(ValueError, match="iter_chunk_size must be an int >= 1, got 0"):
        aiolite.connect(":memory:", iter_chunk_size=0)


async def test_execute_result_is_a_lazy_single_use_coroutine(db: aiolite.Connection) -> None:
    """db.execute() returns its cursor, whose statement runs when first awaited, once;
    it is a Coroutine for create_task/gather."""
    await db.execute("create table t (i integer)")
    pending = db.execute("insert into t values (1)")
    assert isinstance(pending, Coroutine)
    assert isinstance(pending, aiolite.Cursor)
    # Fetching before the await is a mistake, said as such (not an empty result).
    for fetch in (pending.fetchall, pending.fetchone, pending.fetchmany):
        with pytest.raises(sqlite3.ProgrammingError, match="has not run: await"):
            await fetch()
    with pytest.raises(sqlite3.ProgrammingError, match="has not run: await"):
        async for _ in pending:
            pass
    pending.close()  # never awaited: never runs
    del pending
    cur = await db.execute("select count(*) from t")
    assert await cur.fetchone() == (0,)

    # The statement runs once: awaiting again gives the same cursor, nothing runs.
    once = db.execute("insert into t values (2)")
    first = await once
    assert first is once
    assert await once is first
    assert first.rowcount == 1
    cur = await db.execute("select count(*) from t")
    assert await cur.fetchone() == (1,)

    # An exception thrown in before the start is raised and nothing runs.
    never = db.execute("insert into t values (3)")
    with pytest.raises(ValueError, match="stop"):
        never.throw(ValueError("stop"))
    closed = await never
    with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
        await closed.fetchone()
    cur = await db.execute("select count(*) from t")
    assert await cur.fetchone() == (1,)

    # async with: the cursor, closed on exit, also when the block raises.
    async def fail_inside() -> aiolite.Cursor:
        async with db.execute("select i from t") as cur:
            assert await cur.fetchone() == (2,)
            raise KeyError(cur)

    with pytest.raises(KeyError) as raised:
        await fail_inside()
    cur = raised.value.args[0]
    with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
        await cur.fetchone()

    if sniffio.current_async_library() == "asyncio":
        # create_task and gather drive it through send()/throw().
        task = asyncio.ensure_future(db.execute("select i from t"))
        cur = await task
        assert await cur.fetchall() == [(2,)]
        curs = await asyncio.gather(db.execute("select 1"), db.execute("select 2"))
        assert [await c.fetchone() for c in curs] == [(1,), (2,)]


async def test_connect_sets_pragmas_as_it_opens(tmp_path: Path) -> None:
    """connect(pragmas=...) sets them in order before the first call; None skips one."""
    pragmas = {"journal_mode": "WAL", "foreign_keys": True, "cache_size": None}
    async with aiolite.connect(tmp_path / "p.db", pragmas=pragmas) as db:
        assert await db.execute_fetchall("PRAGMA journal_mode") == [("wal",)]
        assert await db.execute_fetchall("PRAGMA foreign_keys") == [(1,)]
        assert await db.execute_fetchall("PRAGMA cache_size") == [(-2000,)]  # SQLite's default
    with pytest.raises(ValueError, match="pragma"):
        aiolite.connect(tmp_path / "p.db", pragmas={"journal_mode; DROP TABLE t": "WAL"})


@pytest.mark.parametrize("chunk", [1, 2, 3, 64])
async def test_mixed_fetches_return_every_row_once_in_order(tmp_path: Path, chunk: int) -> None:
    """fetchone/fetchmany/async for/fetchall interleaved at random, across refills of
    every size: the rows come back exactly once, in order."""
    import random

    rng = random.Random(chunk)
    async with aiolite.connect(tmp_path / "f.db", iter_chunk_size=chunk) as db:
        await db.execute("CREATE TABLE t (i INTEGER)")
        await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(300)])
        for total in (0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, 299):
            if total < 0:
                continue
            cur = await db.execute("SELECT i FROM t WHERE i < ? ORDER BY i", (total,))
            got: list[int] = []
            while True:
                how = rng.choice(["one", "many", "iter", "all"])
                if how == "one":
                    row = await cur.fetchone()
                    if row is None:
                        break
                    got.append(row[0])
                elif how == "many":
                    batch = await cur.fetchmany(rng.randint(1, 3 * chunk + 2))
                    if not batch:
                        break
                    got.extend(r[0] for r in batch)
                elif how == "iter":
                    async for row in cur:
                        got.append(row[0])
                        if rng.random() < 0.2:
                            break
                    else:
                        break
                else:
                    got.extend(r[0] for r in await cur.fetchall())
                    break
            assert got == list(range(total)), (total, got)
            assert await cur.fetchone() is None
            assert await cur.fetchall() == []
            await cur.close()


async def test_set_authorizer_none_removes_it(db_path: Path) -> None:
    """On every Python: sqlite3 before 3.11 kept calling a None authorizer, so every
    statement after set_authorizer(None) failed "not authorized"."""
    async with aiolite.connect(db_path) as db:
        await db.execute("CREATE TABLE t(x)")

        def no_inserts(action: int, *_: Any) -> int:
            return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_INSERT else sqlite3.SQLITE_OK

        await db.set_authorizer(no_inserts)
        with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
            await db.execute("INSERT INTO t VALUES (1)")
        await db.set_authorizer(None)
        await db.execute("INSERT INTO t VALUES (2)")
        assert await db.execute_fetchall("SELECT x FROM t") == [(2,)]
