"""The public API: __all__ matches the exports, and covers aiosqlite's."""

from __future__ import annotations

import sqlite3
from inspect import ismodule
from pathlib import Path

import aiosqlite
import pytest

import aiolite
from script_runner import run_script


def test_all_matches_exports() -> None:
    """Every name in __all__ exists and every public attribute is in __all__ (subpackages
    such as aiolite.ext appear as attributes once imported; they are not exports)."""
    public = {
        n for n in dir(aiolite) if not n.startswith("_") and not ismodule(getattr(aiolite, n))
    } | {"__version__"}
    assert set(aiolite.__all__) == public


def test_covers_aiosqlite() -> None:
    """Every name aiosqlite exports exists in aiolite (the drop-in promise)."""
    missing = set(aiosqlite.__all__) - set(aiolite.__all__)
    assert not missing


def test_exceptions_are_sqlite3s() -> None:
    """The DB-API exceptions are sqlite3's own classes, not copies."""
    for name in ("Error", "DatabaseError", "IntegrityError", "OperationalError", "Warning"):
        assert getattr(aiolite, name) is getattr(sqlite3, name)
    assert issubclass(aiolite.ConnectionClosedError, sqlite3.ProgrammingError)
    assert issubclass(aiolite.ConnectionClosedError, ValueError)


def test_connection_and_cursor_cover_aiosqlite_methods() -> None:
    """Connection and Cursor have every public method and property aiosqlite's have."""
    for ours, theirs in (
        (aiolite.Connection, aiosqlite.Connection),
        (aiolite.Cursor, aiosqlite.Cursor),
    ):
        wanted = {n for n in dir(theirs) if not n.startswith("_")}
        assert wanted <= set(dir(ours)), wanted - set(dir(ours))


def test_our_classes_say_aiolite() -> None:
    """Tracebacks and docs name aiolite.Connection, not a private module."""
    assert aiolite.Connection.__module__ == "aiolite"
    assert aiolite.Cursor.__module__ == "aiolite"


def test_aiosqlite_submodules_after_the_swap(tmp_path: Path) -> None:
    """With sys.modules["aiosqlite"] = aiolite, aiosqlite's submodules import and hand out
    aiolite's classes (encode/databases annotates ``-> aiosqlite.core.Connection``)."""
    ran = run_script(
        tmp_path,
        """
            import sys
            import aiolite
            sys.modules["aiosqlite"] = aiolite
            import aiosqlite
            from aiosqlite.core import Connection, connect
            from aiosqlite.cursor import Cursor
            from aiosqlite.context import Result, contextmanager
            assert aiosqlite.core.Connection is Connection is aiolite.Connection
            assert connect is aiolite.connect and Cursor is aiolite.Cursor
            print("ok")
        """,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "ok"


@pytest.mark.anyio
async def test_private_names_dependents_use(tmp_path: Path) -> None:
    """Connection._conn (Tortoise sets its row_factory), _thread, _connection."""
    async with aiolite.connect(tmp_path / "x.db", isolation_level=None) as db:
        db._conn.row_factory = sqlite3.Row
        assert db.row_factory is sqlite3.Row
        row = await (await db.execute("SELECT 1 AS a")).fetchone()
        assert isinstance(row, sqlite3.Row)
        assert row["a"] == 1
        assert db._conn.in_transaction is False
        assert db._thread.is_alive()
        assert db._connection is not None
        with pytest.raises(AttributeError, match="only"):
            db._conn.something = 1
    assert db._connection is None
