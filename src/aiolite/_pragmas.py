"""Production defaults, and how each connection of a Database gets them.

Why each default (docs/database.md has the long version):

* ``journal_mode=WAL``: readers never block the writer and the writer never blocks readers.
  It is stored in the database file, so it is set once, by the writer, before readers open.
* ``synchronous=NORMAL``: in WAL mode a commit survives a crash of the process; only a power
  loss can undo the last commits, and it never corrupts the file.  FULL fsyncs every commit.
* ``foreign_keys=ON``: SQLite ships with it off, per connection, which surprises everyone.
* ``busy_timeout``: how long to wait for a lock held by another process.
* ``temp_store=MEMORY``: temporary tables and sort spills stay off the disk.
* ``journal_size_limit`` (64 MiB): after a checkpoint restarts the WAL, SQLite truncates the
  file to this size instead of keeping its high-water mark on disk forever.
* readers get ``query_only=ON``, so a write sent to a reader fails instead of taking a lock.

``:memory:`` becomes one named in-memory database (SQLite's ``memdb`` VFS) shared by the
writer and the readers, instead of a private empty database per connection.
"""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, Optional, Union

from ._exceptions import DatabaseLockedError, is_busy

__all__ = [
    "DEFAULT_PRAGMAS",
    "Location",
    "as_str",
    "connect_member",
    "locate",
    "pragma_statement",
    "resolve_pragmas",
    "run_pragma",
]

#: Applied to every connection unless ``pragmas=`` overrides them (a value of None drops one).
DEFAULT_PRAGMAS: dict[str, Any] = {
    "journal_mode": "WAL",
    "synchronous": "NORMAL",
    "foreign_keys": True,
    "temp_store": "MEMORY",
    "journal_size_limit": 64 * 1024 * 1024,
}

#: The writer's own busy handler waits at most this long per attempt; aiolite retries
#: ``BEGIN IMMEDIATE`` until the deadline, so a cancel is noticed within this time.
WRITER_BUSY_SLICE_MS = 50

_NAME = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")
_WORD = re.compile(r"^-?[A-Za-z0-9_.]+$")
_memory_ids = itertools.count(1)

PragmaValue = Union[str, int, float, bool]


class Location:
    """Where the Database lives, as sqlite3.connect() wants it."""

    __slots__ = ("memory", "target", "uri")

    def __init__(self, target: str, uri: bool, memory: bool) -> None:
        self.target = target
        self.uri = uri
        self.memory = memory

    def __repr__(self) -> str:
        return self.target


def as_str(database: Any) -> Any:
    """A path given as str, bytes or os.PathLike, as str (anything else unchanged)."""
    if isinstance(database, os.PathLike):
        database = os.fspath(database)
    return database.decode("utf-8") if isinstance(database, bytes) else database


def locate(database: Any) -> Location:
    """Turn a path, ``:memory:`` or a ``file:`` URI into a :class:`Location`."""
    database = as_str(database)
    if not isinstance(database, str):
        raise TypeError(
            f"database must be a path (str or os.PathLike) or ':memory:', "
            f"not {type(database).__name__}"
        )
    if database in (":memory:", ""):
        # A memdb name starting with "/" is shared by every connection of this process.
        name = f"/aiolite-{os.getpid()}-{next(_memory_ids)}"
        return Location(f"file:{name}?vfs=memdb", uri=True, memory=True)
    if database.startswith("file:"):
        return Location(database, uri=True, memory="mode=memory" in database)
    return Location(database, uri=False, memory=False)


def pragma_statement(name: str, value: PragmaValue) -> str:
    """``PRAGMA name=value``, with the name and the value checked (they cannot be bound
    as parameters).  Raises ValueError, saying what is accepted, for anything else."""
    if not _NAME.match(name):
        raise ValueError(f"invalid pragma name {name!r}: use names like 'cache_size'")
    if isinstance(value, bool):
        text = "ON" if value else "OFF"
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, str) and _WORD.match(value):
        text = value
    else:
        raise ValueError(
            f"invalid value {value!r} for pragma {name!r}: use a number, a bool, or one word "
            "such as 'WAL' or 'NORMAL'"
        )
    return f"PRAGMA {name}={text}"


def read_only(location: Location) -> Location:
    """The same file, opened read-only (a ``mode=ro`` URI)."""
    if location.memory:
        raise ValueError("readonly=True needs a database file: an in-memory one starts empty")
    if location.uri:
        target = location.target
        sep = "&" if "?" in target else "?"
        return Location(f"{target}{sep}mode=ro", uri=True, memory=False)
    path = urllib.parse.quote(os.path.abspath(location.target))
    return Location(f"file:{path}?mode=ro", uri=True, memory=False)


def resolve_pragmas(
    pragmas: Optional[Mapping[str, Optional[PragmaValue]]],
    busy_timeout: float,
    location: Location,
) -> tuple[Optional[str], list[str], float]:
    """Return (journal_mode wanted, PRAGMA statements for every connection, busy timeout s).

    ``busy_timeout`` in ``pragmas`` (milliseconds, as SQLite has it) wins over the argument.
    """
    if not (isinstance(busy_timeout, (int, float)) and busy_timeout >= 0):
        raise ValueError(f"busy_timeout must be a number of seconds >= 0, got {busy_timeout!r}")
    merged: dict[str, Optional[PragmaValue]] = dict(DEFAULT_PRAGMAS)
    for name, value in (pragmas or {}).items():
        merged[name.lower()] = value
    journal = merged.pop("journal_mode", None)
    if location.memory:
        journal = None  # an in-memory database has no WAL; its journal is in memory anyway
    timeout = merged.pop("busy_timeout", None)
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise ValueError(f"pragma busy_timeout is in milliseconds, got {timeout!r}")
        busy_timeout = timeout / 1000
    merged.pop("query_only", None)  # set per role: readers only
    statements = [pragma_statement(n, v) for n, v in merged.items() if v is not None]
    if journal is not None:
        pragma_statement("journal_mode", journal)  # validate now, at open()
    return (None if journal is None else str(journal)), statements, float(busy_timeout)


def run_pragma(conn: sqlite3.Connection, sql: str, timeout: float) -> Any:
    """Run a PRAGMA and return its first row (or None), retrying SQLITE_BUSY until ``timeout``.

    The busy handler covers most waits, but not this one: when two processes switch a
    file to WAL at once, each holds a shared lock and wants the exclusive one, and SQLite
    refuses one of them at once rather than let both wait for ever.  The refused
    statement has released its lock, so a retry waits in the busy handler as usual, or
    succeeds; the short pause before it gives the other process the moment it needs
    (there is nothing to wait on across processes).
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            rows = conn.execute(sql).fetchall()
            return rows[0] if rows else None
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            if time.monotonic() + pause > deadline:
                raise DatabaseLockedError(
                    f"database is locked: another connection kept this file locked for more "
                    f"than {timeout:g}s while this one ran {sql!r} to set itself up. Look "
                    "for a long transaction in another process, or wait longer: "
                    "busy_timeout= for aiolite.open(), timeout= for aiolite.connect()"
                ) from exc
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def connect_member(
    location: Location,
    statements: list[str],
    *,
    busy_timeout_ms: int,
    reader: bool,
    journal_mode: Optional[str] = None,
    then_busy_timeout_ms: Optional[int] = None,
) -> tuple[sqlite3.Connection, Optional[str]]:
    """Open one connection of a Database (on its worker thread) and configure it.

    Set-up waits up to ``busy_timeout_ms`` for other processes (switching to WAL needs a
    moment alone with the file); ``then_busy_timeout_ms`` is the value to keep afterwards.
    Returns the connection and the journal mode SQLite reports (after setting it, if asked).
    """
    conn = sqlite3.connect(
        location.target,
        uri=location.uri,
        isolation_level=None,  # aiolite issues BEGIN/COMMIT itself
        # The worker owns it; the loop thread runs short calls on it while the worker is
        # idle (adaptive execution: Worker.run_here, holding the worker's exec token).
        check_same_thread=False,
        cached_statements=256,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        sql = (
            "PRAGMA journal_mode"
            if journal_mode is None
            else pragma_statement("journal_mode", journal_mode)
        )
        row = run_pragma(conn, sql, busy_timeout_ms / 1000)
        got = None if row is None else str(row[0])
        for statement in statements:
            conn.execute(statement).fetchall()
        if reader:
            conn.execute("PRAGMA query_only=ON")
        if then_busy_timeout_ms is not None:  # the writer: its retry slice, once set up
            conn.execute(f"PRAGMA busy_timeout={int(then_busy_timeout_ms)}")
    except BaseException:
        conn.close()
        raise
    return conn, got
