"""Never hang, never crash at exit: connections nobody closed, run in a subprocess."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import pytest

import aiolite
from script_runner import count_in_file_alone, run_script

pytestmark = pytest.mark.anyio


def run(tmp_path: Path, body: str) -> tuple[int, str, float]:
    ran = run_script(tmp_path, body, timeout=20)
    return ran.returncode, ran.stderr, ran.seconds


GLOBAL_ASYNCIO = """
    import asyncio, warnings
    import aiolite
    warnings.simplefilter("ignore", ResourceWarning)  # we test hangs and tracebacks here
    db = None
    async def main():
        global db
        db = await aiolite.connect("app.db")
        await db.execute("CREATE TABLE IF NOT EXISTS t (x)")
        await db.execute("INSERT INTO t VALUES (1)")
        await db.commit()
    asyncio.run(main())
    print("done")
"""


def test_module_global_connection_exits_at_once(tmp_path: Path) -> None:
    """A module-global connection left open: rc 0, no stderr, exits in well under 5 s."""
    rc, err, took = run(tmp_path, GLOBAL_ASYNCIO)
    assert (rc, err) == (0, "")
    assert took < 5
    import sqlite3

    assert sqlite3.connect(tmp_path / "app.db").execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_long_query_running_at_exit(tmp_path: Path) -> None:
    """A query still running when the program ends is interrupted; the process exits."""
    rc, err, took = run(
        tmp_path,
        """
        import asyncio, threading, warnings
        import aiolite
        warnings.simplefilter("ignore", ResourceWarning)
        async def main():
            db = await aiolite.connect(":memory:")
            q = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) "
                 "SELECT count(*) FROM c")
            task = asyncio.ensure_future(db.execute(q))
            await asyncio.sleep(0.1)
            globals()["keep"] = (db, task)  # never awaited, never closed
        asyncio.run(main())
        """,
    )
    assert rc == 0
    assert "Traceback" not in err
    assert took < 5


def test_cycle_traceback_and_closed_loop(tmp_path: Path) -> None:
    """Connections held by a cycle or a traceback, with their loop closed: clean exit."""
    rc, err, took = run(
        tmp_path,
        """
        import asyncio, gc, warnings
        import aiolite
        warnings.simplefilter("ignore", ResourceWarning)
        class Holder:
            pass
        async def main():
            h = Holder()
            h.self = h
            h.db = await aiolite.connect("a.db")
            await h.db.execute("SELECT 1")
            try:
                db2 = await aiolite.connect("b.db")
                await db2.execute("SELECT * FROM nope")
            except Exception as exc:
                globals()["err"] = exc  # the traceback keeps db2 alive
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        loop.close()
        gc.collect()
        print("ok")
        """,
    )
    assert (rc, err) == (0, "")
    assert took < 5


def test_trio_global_connection_exits(tmp_path: Path) -> None:
    """The same under trio: a connection left open does not keep the process alive."""
    rc, err, took = run(
        tmp_path,
        """
        import trio, warnings
        import aiolite
        warnings.simplefilter("ignore", ResourceWarning)
        async def main():
            global db
            db = await aiolite.connect("t.db")
            await db.execute("SELECT 1")
        trio.run(main)
        """,
    )
    assert (rc, err) == (0, "")
    assert took < 5


async def test_resource_warning_when_collected_open(db_path: Path) -> None:
    """Garbage-collecting an open connection warns, naming the fix, and stops its thread."""
    with warnings.catch_warnings():  # earlier tests' garbage (unclosed sqlite3 connections)
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    db = await aiolite.connect(db_path)
    worker = db._worker
    with pytest.warns(ResourceWarning, match="deleted before being closed"):  # noqa: PT031
        del db  # CPython finalizes at once; gc.collect() covers other interpreters
        gc.collect()
    assert worker.join(2.0)


async def test_close_joins_thread(db_path: Path) -> None:
    """close() returns only after the worker thread has ended."""
    db = await aiolite.connect(db_path)
    thread = db._worker.thread
    assert thread.is_alive()
    assert thread.daemon
    await db.close()
    assert not thread.is_alive()
    assert not db._running


@pytest.mark.parametrize("how", ["connect", "open"])
def test_unclosed_connection_leaves_the_file_alone_complete(tmp_path: Path, how: str) -> None:
    """Exit without close(): the WAL is merged into the file and removed, so the database
    file copied alone holds every committed row (how SQLite files are backed up and shipped)."""
    body = f"""
        import asyncio, warnings
        import aiolite
        warnings.simplefilter("ignore", ResourceWarning)
        keep = []
        async def main():
            if {how!r} == "connect":
                db = await aiolite.connect("app.db", pragmas={{"journal_mode": "WAL"}})
                await db.execute("CREATE TABLE t (x)")
                await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
                await db.commit()
            else:
                db = await aiolite.open("app.db")
                await db.execute("CREATE TABLE t (x)")
                await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
                await db.fetchval("SELECT count(*) FROM t")
            keep.append(db)
        asyncio.run(main())
        print("done")
    """
    rc, err, _ = run(tmp_path, body)
    assert (rc, err) == (0, "")
    assert not (tmp_path / "app.db-wal").exists()
    assert count_in_file_alone(tmp_path / "app.db", "t") == 1000
