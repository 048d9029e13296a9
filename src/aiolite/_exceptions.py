"""aiolite's own errors, each a subclass of the matching sqlite3 DB-API class.

``except sqlite3.ProgrammingError`` keeps catching them, and so does ``except ValueError``
where aiosqlite used to raise a plain ``ValueError``.
"""

from __future__ import annotations

import sqlite3

__all__ = [
    "ClusterError",
    "CommitUnknownError",
    "ConnectionClosedError",
    "DatabaseLockedError",
    "NoEventLoopError",
    "NoLeaderError",
    "NodeError",
    "QueryTimeoutError",
    "ReadOnlyError",
    "TooManyRowsError",
    "TransactionLostError",
    "UnsafeQueryError",
    "is_busy",
]


class ConnectionClosedError(sqlite3.ProgrammingError, ValueError):
    """The connection was closed (aiosqlite raised ``ValueError("Connection closed")``)."""


class DatabaseLockedError(sqlite3.OperationalError):
    """Another process kept the write lock past the Database's ``busy_timeout``."""


class ReadOnlyError(sqlite3.OperationalError):
    """A write on a Database opened with ``readonly=True`` (refused before SQLite)."""


class QueryTimeoutError(sqlite3.OperationalError):
    """A query ran past its time limit (``timeout=``/``query_timeout=``) and was stopped."""


class TooManyRowsError(sqlite3.OperationalError):
    """A result had more rows than ``max_rows`` allows."""


class UnsafeQueryError(sqlite3.DatabaseError):
    """A sandbox refused a statement before it ran (what it touches is not allowed)."""


class NoEventLoopError(RuntimeError):
    """An async aiolite call was made outside asyncio and trio."""


class ClusterError(sqlite3.OperationalError):
    """A dqlite cluster problem: no leader, a lost transaction, an unknown outcome."""


class NoLeaderError(ClusterError):
    """No dqlite node answered as leader in time (the URL's ``timeout``, 10 s by default)."""


class TransactionLostError(ClusterError):
    """The transaction ended on the dqlite node (leader change, lost connection, interrupt)
    and nothing of it was applied: leave the block and run it again."""


class CommitUnknownError(ClusterError):
    """The connection broke after a write or COMMIT was sent: it may or may not have been
    applied.  Check before running it again."""


class NodeError(sqlite3.OperationalError):
    """A dqlite node could not be started, joined or stopped."""


_SQLITE_BUSY = 5


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLITE_BUSY ("database is locked", any extended code): another
    connection held a lock the statement needed.  For retry loops of your own."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return bool((code & 0xFF) == _SQLITE_BUSY)
    return str(exc).startswith("database is locked")


ConnectionClosedError.__module__ = "aiolite"
NoEventLoopError.__module__ = "aiolite"
DatabaseLockedError.__module__ = "aiolite"
ReadOnlyError.__module__ = "aiolite"
QueryTimeoutError.__module__ = "aiolite"
TooManyRowsError.__module__ = "aiolite"
UnsafeQueryError.__module__ = "aiolite"
for _cls in (ClusterError, NoLeaderError, TransactionLostError, CommitUnknownError, NodeError):
    _cls.__module__ = "aiolite"
