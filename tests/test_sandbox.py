"""Untrusted SQL and untrusted files (issue #15): a hostile corpus through the sandbox on
asyncio and trio, hostile database files, query limits, and a property test.

Every statement must end in a documented error or a bounded result; the file never
changes, nothing is written beside it, no query outlives its time limit, and the event
loop keeps running (a lag probe runs throughout).
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiolite
from test_cli import aiolite as run_cli

pytestmark = pytest.mark.anyio

# Python 3.11 brought setlimit(), which bounds what one query may build; before it the
# sandbox is refused (test_untrusted_needs_python_3_11), and these tests have nothing to run.
needs_setlimit = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="the sandbox needs sqlite3's setlimit (Python 3.11+)"
)

TIMEOUT = 0.3
ROWS = 200
#: What untrusted SQL may meet: documented errors, each a sqlite3 DB-API class.
ALLOWED_ERRORS = (
    aiolite.UnsafeQueryError,
    aiolite.QueryTimeoutError,
    aiolite.TooManyRowsError,
    aiolite.ReadOnlyError,
    sqlite3.DataError,  # string or blob too big, and the like
    sqlite3.OperationalError,  # syntax errors, limits, "vtable constructor failed"
    sqlite3.DatabaseError,
    sqlite3.ProgrammingError,  # e.g. more than one statement
)

BOMB = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"

CORPUS = [
    # escaping the file
    "ATTACH DATABASE '/etc/passwd' AS p",
    "ATTACH 'other.db' AS o",
    "DETACH main",
    "VACUUM INTO '/tmp/aiolite-sandbox-copy.db'",
    "VACUUM",
    "SELECT load_extension('/tmp/evil.so')",
    "SELECT readfile('/etc/passwd')",
    "SELECT writefile('/tmp/x', 'y')",
    "SELECT fts3_tokenizer('simple')",
    # pragmas
    "PRAGMA writable_schema=ON",
    "PRAGMA query_only=0",
    "PRAGMA journal_mode=DELETE",
    "PRAGMA trusted_schema=ON",
    "PRAGMA mmap_size=1000000000",
    "PRAGMA cache_size=-1000000",
    "PRAGMA table_info(people)",
    "SELECT * FROM pragma_table_info('people')",
    "SELECT * FROM pragma_database_list",
    "PRAGMA temp_store_directory='/tmp'",
    # writes, plain and hidden
    "INSERT INTO people VALUES (999, 'x', 'y')",
    "UPDATE people SET name = 'x'",
    "DELETE FROM people",
    "REPLACE INTO people VALUES (1, 'x', 'y')",
    "WITH x AS (SELECT 1) INSERT INTO people SELECT 1000, 'a', 'b' FROM x",
    "INSERT INTO people SELECT * FROM people RETURNING *",
    "CREATE TABLE evil(x)",
    "CREATE TEMP TABLE evil(x)",
    "CREATE TEMP VIEW v AS SELECT 1",
    "CREATE TRIGGER t AFTER INSERT ON people BEGIN DELETE FROM people; END",
    "CREATE INDEX i ON people(name)",
    "DROP TABLE people",
    "ALTER TABLE people ADD COLUMN x",
    "BEGIN IMMEDIATE",
    "SAVEPOINT s",
    "ANALYZE",
    "REINDEX",
    # internals and virtual tables
    "SELECT * FROM sqlite_master",
    "SELECT * FROM sqlite_schema",
    "SELECT * FROM sqlite_temp_master",
    "SELECT * FROM dbstat",
    "SELECT * FROM sqlite_dbpage",
    "SELECT * FROM secrets",
    "SELECT name FROM people UNION SELECT token FROM secrets",
    "SELECT (SELECT token FROM secrets LIMIT 1)",
    # exhaustion: time
    BOMB,
    "SELECT count(*) FROM people a, people b, people c, people d",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c",
    "SELECT count(*) FROM people a JOIN people b ON a.name LIKE '%' || b.name || '%' "
    "JOIN people c JOIN people d",
    # exhaustion: memory
    "SELECT zeroblob(2000000000)",
    "SELECT randomblob(2000000000)",
    "SELECT printf('%.*c', 2000000000, 'x')",
    "SELECT replace(hex(zeroblob(400000)), '0', hex(zeroblob(400000)))",
    "SELECT group_concat(hex(randomblob(1000))) FROM people a, people b",
    "WITH RECURSIVE c(x) AS (SELECT 'x' UNION ALL SELECT x || x FROM c) SELECT length(x) FROM c",
    # exhaustion: size of the statement
    "SELECT " + " + ".join(["1"] * 5000),
    "SELECT " + "(" * 500 + "1" + ")" * 500,
    "SELECT " + ", ".join(f"{i}" for i in range(3000)),
    "SELECT * FROM people WHERE name LIKE '" + "%a" * 2000 + "'",
    "SELECT * FROM people WHERE name GLOB '" + "*a" * 2000 + "'",
    "SELECT " + " UNION SELECT ".join(str(i) for i in range(200)),
    "SELECT " + ", ".join("?" for _ in range(500)),
    # too many rows
    "SELECT * FROM people a, people b",
    # fine, and bounded
    "SELECT count(*) FROM people",
    "SELECT name FROM people ORDER BY id LIMIT 3",
    "SELECT upper(name), length(email) FROM people WHERE id < 5",
    "SELECT json_object('n', name) FROM people LIMIT 2",
]


def people_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        PRAGMA journal_mode=WAL;
        CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT, email TEXT);
        CREATE TABLE secrets(token TEXT);
        INSERT INTO secrets VALUES ('hunter2');
        """
    )
    conn.executemany(
        "INSERT INTO people VALUES (?, ?, ?)",
        [(i, f"name{i}", f"p{i}@example.com") for i in range(ROWS)],
    )
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file in the folder and its content hash.  Not -shm (SQLite's shared index)
    nor an empty -wal: a read-only connection to a WAL database makes both to read it."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.endswith("-shm")
        and not (p.name.endswith("-wal") and p.stat().st_size == 0)
    }


@needs_setlimit
async def test_hostile_corpus(tmp_path: Path) -> None:
    """Each statement of the corpus ends in a documented error or a bounded result; the
    folder is unchanged; no query outlives its limit; the loop never stalls."""
    assert len(CORPUS) >= 50
    path = tmp_path / "app.db"
    people_db(path)
    before = fingerprint(tmp_path)
    sandbox = aiolite.Sandbox(tables={"people"}, timeout=TIMEOUT, max_rows=ROWS)
    lags: list[float] = []
    done = anyio.Event()

    async def probe() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await anyio.sleep(0.001)
            lags.append(time.perf_counter() - started - 0.001)

    outcomes: dict[str, str] = {}
    async with aiolite.open(path, untrusted=sandbox) as db, anyio.create_task_group() as tg:
        tg.start_soon(probe)
        for sql in CORPUS:
            params = tuple(range(500)) if "?" in sql else ()
            started = time.perf_counter()
            try:
                rows = await db.fetchall(sql, params)
            except ALLOWED_ERRORS as exc:
                outcomes[sql] = type(exc).__name__
            else:
                assert len(rows) <= ROWS
                outcomes[sql] = f"{len(rows)} rows"
            took = time.perf_counter() - started
            assert took < TIMEOUT + 1.0, f"{sql[:60]!r} took {took:.2f} s"
        assert await db.fetchval("SELECT count(*) FROM people") == ROWS  # still usable
        done.set()
    assert fingerprint(tmp_path) == before, "the sandbox changed a file"
    assert not await anyio.Path("/tmp/aiolite-sandbox-copy.db").exists()
    assert outcomes["SELECT * FROM secrets"] == "UnsafeQueryError"
    assert outcomes[BOMB] == "QueryTimeoutError"
    assert outcomes["SELECT * FROM people a, people b"] == "TooManyRowsError"
    assert outcomes["SELECT count(*) FROM people"] == "1 rows"
    lags.sort()
    assert lags[int(len(lags) * 0.99)] < 0.1, f"the event loop stalled: p99 {lags[-1]:.3f} s"


@needs_setlimit
async def test_hostile_files(tmp_path: Path) -> None:
    """A view that calls a refused function, a trigger, and a damaged file: the view is
    refused when read, the trigger never runs (read-only), the damaged file is refused at
    open with what is wrong."""
    path = tmp_path / "hostile.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE t(x);
        INSERT INTO t VALUES (1);
        CREATE VIEW evil AS SELECT load_extension('/tmp/evil.so') AS x FROM t;
        CREATE TRIGGER wipe AFTER INSERT ON t BEGIN DELETE FROM t; END;
        """
    )
    conn.commit()
    conn.close()
    async with aiolite.open(path, untrusted=True) as db:
        with pytest.raises(aiolite.UnsafeQueryError, match="load_extension"):
            await db.fetchall("SELECT * FROM evil")
        with pytest.raises(aiolite.ReadOnlyError):
            await db.execute("INSERT INTO t VALUES (2)")
        assert await db.fetchval("SELECT count(*) FROM t") == 1
    doctor = run_cli("doctor", str(path))  # what to look at before trusting the file
    assert "trigger wipe" in doctor.stdout
    damaged = tmp_path / "damaged.db"
    people_db(damaged)
    raw = bytearray(damaged.read_bytes())
    raw[4096 : 3 * 4096] = bytes(range(256)) * 32  # overwrite two b-tree pages whole
    damaged.write_bytes(bytes(raw))
    with pytest.raises(sqlite3.DatabaseError, match=r"not safe to open|malformed"):
        async with aiolite.open(damaged, untrusted=True):
            pass
    truncated = tmp_path / "truncated.db"
    people_db(truncated)
    truncated.write_bytes(truncated.read_bytes()[:8192])
    with pytest.raises(sqlite3.DatabaseError, match=r"not safe to open|malformed"):
        async with aiolite.open(truncated, untrusted=True):
            pass


async def test_query_limits_on_a_trusted_database(db_path: Path) -> None:
    """timeout= and max_rows= per call and as Database defaults: the statement is stopped,
    the error names the limit, and the connection stays usable."""
    async with aiolite.open(db_path, readers=1, query_timeout=5) as db:
        await db.execute("CREATE TABLE t(x)")
        await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
        started = time.perf_counter()
        with pytest.raises(aiolite.QueryTimeoutError, match=r"0\.2 s"):
            await db.fetchval(BOMB, timeout=0.2)
        assert time.perf_counter() - started < 1.5
        with pytest.raises(aiolite.TooManyRowsError, match="max_rows=10"):
            await db.fetchall("SELECT x FROM t", max_rows=10)
        assert len(await db.fetchall("SELECT x FROM t", max_rows=100)) == 100
        seen: list[int] = []

        async def stream() -> None:
            async for row in db.iterate("SELECT x FROM t", chunk_size=8, max_rows=20):
                seen.append(row[0])

        with pytest.raises(aiolite.TooManyRowsError):
            await stream()
        assert len(seen) <= 24
        assert await db.fetchval("SELECT count(*) FROM t") == 100
        with pytest.raises(ValueError, match="timeout"):
            await db.fetchval("SELECT 1", timeout=-1)


_IDENT = st.sampled_from(["people", "secrets", "sqlite_master", "dbstat", "nope"])
_COLUMN = st.sampled_from(["*", "id", "name", "email", "token", "count(*)", "1"])
_FUNC = st.sampled_from(["upper", "load_extension", "zeroblob", "random", "readfile", "abs"])
_TAIL = st.sampled_from(["", " LIMIT 5", " WHERE id < 3", " ORDER BY 1", ", people b"])
_STATEMENT = st.one_of(
    st.builds(lambda c, t, tail: f"SELECT {c} FROM {t}{tail}", _COLUMN, _IDENT, _TAIL),
    st.builds(lambda f, n: f"SELECT {f}({n})", _FUNC, st.integers(-5, 10**9)),
    st.builds(lambda t: f"INSERT INTO {t} VALUES (1, 2, 3)", _IDENT),
    st.builds(lambda t: f"DELETE FROM {t}", _IDENT),
    st.builds(
        lambda p, v: f"PRAGMA {p}={v}", st.sampled_from(["query_only", "foo"]), st.integers(0, 2)
    ),
    st.builds(lambda t: f"ATTACH '{t}.db' AS x", _IDENT),
    st.just(BOMB),
)


@needs_setlimit
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(statements=st.lists(_STATEMENT, min_size=1, max_size=8))
def test_random_sql_never_changes_the_file(tmp_path: Path, statements: list[str]) -> None:
    """Random statements from a small grammar: only documented errors, and the file's
    bytes never change."""
    path = tmp_path / "prop.db"
    if not path.exists():
        people_db(path)
    before = fingerprint(tmp_path)

    async def main() -> None:
        sandbox = aiolite.Sandbox(tables={"people"}, timeout=0.1, max_rows=ROWS)
        async with aiolite.open(path, untrusted=sandbox, readers=1) as db:
            for sql in statements:
                try:
                    await db.fetchall(sql)
                except ALLOWED_ERRORS:
                    pass

    anyio.run(main)
    assert fingerprint(tmp_path) == before


def test_every_refusal_is_a_documented_class() -> None:
    """The sandbox's own errors are sqlite3 DB-API classes (except sqlite3.Error works)."""
    for cls in (aiolite.UnsafeQueryError, aiolite.QueryTimeoutError, aiolite.TooManyRowsError):
        assert issubclass(cls, sqlite3.DatabaseError)
    sandbox: Any = aiolite.Sandbox(tables={"People"})
    assert sandbox.tables == frozenset({"people"})


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="the refusal is for Python < 3.11")
def test_untrusted_needs_python_3_11(tmp_path: Path) -> None:
    """Without setlimit() nothing bounds what one query builds: the sandbox refuses to
    pretend, and says what to use instead."""
    with pytest.raises(sqlite3.NotSupportedError, match=r"Python 3\.11"):
        aiolite.open(tmp_path / "x.db", untrusted=True)
