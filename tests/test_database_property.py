"""Property test: any sequence of reads, writes, transactions, savepoints and rollbacks gives
the same results through a Database as through one blocking sqlite3 connection."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiolite

SCHEMA = "CREATE TABLE kv(k INTEGER PRIMARY KEY, v INT NOT NULL)"

keys = st.integers(0, 5)
values = st.integers(-3, 3)
simple = st.one_of(
    st.tuples(st.just("put"), keys, values),
    st.tuples(st.just("insert"), keys, values),  # fails with IntegrityError on a duplicate
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("get"), keys),
    st.tuples(st.just("all")),
    st.tuples(st.just("many"), st.lists(st.tuples(keys, values), max_size=4)),
)
in_tx = st.one_of(
    simple,
    st.tuples(st.just("savepoint"), st.lists(simple, max_size=4), st.booleans()),
)
ops = st.lists(
    st.one_of(simple, st.tuples(st.just("tx"), st.lists(in_tx, max_size=6), st.booleans())),
    max_size=12,
)


class Rollback(Exception):
    pass


def statement(op: tuple[Any, ...]) -> tuple[str, str, Any]:
    """(kind, sql, params) for a simple op."""
    name = op[0]
    if name == "put":
        return "write", "INSERT OR REPLACE INTO kv VALUES (?, ?)", (op[1], op[2])
    if name == "insert":
        return "write", "INSERT INTO kv VALUES (?, ?)", (op[1], op[2])
    if name == "delete":
        return "write", "DELETE FROM kv WHERE k = ?", (op[1],)
    if name == "get":
        return "val", "SELECT v FROM kv WHERE k = ?", (op[1],)
    if name == "all":
        return "all", "SELECT k, v FROM kv ORDER BY k", ()
    return "many", "INSERT OR REPLACE INTO kv VALUES (?, ?)", op[1]


def outcome(fn: Any) -> Any:
    try:
        return ("ok", fn())
    except sqlite3.Error as exc:
        return ("error", type(exc).__name__)


# ---- the reference: one blocking connection ----


def reference(conn: sqlite3.Connection, op: tuple[Any, ...], log: list[Any], depth: int) -> None:
    name = op[0]
    if name == "tx":
        conn.execute("BEGIN IMMEDIATE")
        for inner in op[1]:
            reference(conn, inner, log, depth + 1)
        conn.execute("COMMIT" if op[2] else "ROLLBACK")
        return
    if name == "savepoint":
        conn.execute(f"SAVEPOINT s{depth}")
        for inner in op[1]:
            reference(conn, inner, log, depth + 1)
        if op[2]:
            conn.execute(f"ROLLBACK TO s{depth}")
        conn.execute(f"RELEASE s{depth}")
        return
    kind, sql, params = statement(op)

    def run() -> Any:
        if kind == "many":
            if depth == 0:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(sql, params)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            else:
                conn.executemany(sql, params)
            return None
        cur = conn.execute(sql, params)
        if kind == "val":
            row = cur.fetchone()
            return None if row is None else row[0]
        if kind == "all":
            return [tuple(r) for r in cur.fetchall()]
        return None

    log.append(outcome(run))


# ---- the same through aiolite ----


async def apply(db: aiolite.Database, target: Any, op: tuple[Any, ...], log: list[Any]) -> None:
    name = op[0]
    if name == "tx":
        try:
            async with db.transaction() as tx:
                for inner in op[1]:
                    await apply(db, tx, inner, log)
                if not op[2]:
                    raise Rollback
        except Rollback:
            pass
        return
    if name == "savepoint":
        try:
            async with target.savepoint():
                for inner in op[1]:
                    await apply(db, target, inner, log)
                if op[2]:
                    raise Rollback
        except Rollback:
            pass
        return
    kind, sql, params = statement(op)
    try:
        if kind == "write":
            await target.execute(sql, params)
            result: Any = None
        elif kind == "many":
            await target.executemany(sql, params)
            result = None
        elif kind == "val":
            result = await target.fetchval(sql, params)
        else:
            result = [tuple(r) for r in await target.fetchall(sql, params)]
        log.append(("ok", result))
    except sqlite3.Error as exc:
        log.append(("error", type(exc).__name__))


def check(backend: str, program: list[Any], location: Any = None) -> None:
    """Run ``program`` on sqlite3 and on a Database (a file, or ``location``); compare."""
    with tempfile.TemporaryDirectory() as tmp:
        ref = sqlite3.connect(Path(tmp) / "ref.db", isolation_level=None)
        ref.execute(SCHEMA)
        expected: list[Any] = []
        for op in program:
            reference(ref, op, expected, 0)
        final_expected = ref.execute("SELECT k, v FROM kv ORDER BY k").fetchall()
        ref.close()

        async def main() -> tuple[list[Any], list[Any]]:
            got: list[Any] = []
            async with aiolite.open(location or Path(tmp) / "db.db", readers=2) as db:
                await db.execute(SCHEMA)
                for op in program:
                    await apply(db, db, op, got)
                final = await db.fetchall("SELECT k, v FROM kv ORDER BY k", row_factory=tuple)
            return got, final

        got, final = anyio.run(main, backend=backend)
    assert got == expected
    assert final == final_expected


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=ops)
def test_database_matches_blocking_sqlite3(backend: str, program: list[Any]) -> None:
    check(backend, program)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=ops)
def test_database_on_dqlite_matches_blocking_sqlite3(
    dqlite_node: Any, backend: str, program: list[Any]
) -> None:
    """The same programs on a dqlite node (a new database each)."""
    check(backend, program, dqlite_node.url())
