"""The public API: __all__ matches the exports, and covers aiosqlite's."""

from __future__ import annotations

import sqlite3
from inspect import ismodule

import aiosqlite

import aiolite


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
