"""What a Database runs on its worker threads: one function, :func:`run`, per statement.

Each connection of a Database has a :class:`Session`, its worker-side state: the role, the
type conversion and row plans, the busy-retry policy and the statement hook.  ``run`` is
the job every Database operation submits; it

1. runs the statements a transaction or read session deferred (``BEGIN IMMEDIATE``,
   ``SAVEPOINT``/``RELEASE``...), so they cost no round trip of their own;
2. for an autocommit write, wraps the statement in ``BEGIN IMMEDIATE`` ... ``COMMIT``;
3. executes the statement and shapes the result (one row, all rows, one value, a
   :class:`WriteResult`, or the first chunk of a stream);
4. reports it to the hook and the slow-statement log.

Busy handling: only ``BEGIN IMMEDIATE`` (and ``COMMIT``, which leaves the transaction
intact when it fails busy) are ever retried; a statement that may have had effects never is.

Fail-stop: every job that starts a transaction first checks that the connection is outside
one (:meth:`Session.settle`).  A transaction left open (a ROLLBACK that failed) is rolled
back; if it cannot be, the connection is closed and opened again, so no job ever runs inside
a transaction that is not its own.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._adapters import RowPlan, Types, row_maker
from ._cursor import _read
from ._exceptions import DatabaseLockedError, is_busy
from ._pragmas import WRITER_BUSY_SLICE_MS
from ._types import Parameters

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = [
    "ALL",
    "AUTOCOMMIT",
    "BEGIN",
    "COMMIT",
    "MANY",
    "ONE",
    "SCRIPT",
    "STREAM",
    "TX",
    "VAL",
    "WRITE",
    "Session",
    "StatementEvent",
    "WriteResult",
    "end_read",
    "rollback",
    "run",
]

logger = logging.getLogger("aiolite")

# What run() does: return one row, all rows, a value, a WriteResult, a stream's first chunk;
# or run a script, or commit the transaction.
ONE, ALL, VAL, WRITE, MANY, SCRIPT, STREAM, COMMIT = range(8)
# How run() treats transactions: a reader's plain read; an autocommit write (wrapped in
# BEGIN IMMEDIATE/COMMIT); a statement inside a transaction (which must still be open).
PLAIN, AUTOCOMMIT, TX = range(3)

#: The writer checks the WAL's size every this many commits when a wal_limit is set.
WAL_CHECK_EVERY = 16
#: Deferred marker: "BEGIN IMMEDIATE, retried while another process holds the lock".
BEGIN = "BEGIN IMMEDIATE"


@dataclass(frozen=True)
class StatementEvent:
    """What the ``on_statement`` hook receives, once per statement (on the worker thread)."""

    sql: str
    params: Any
    #: Seconds SQLite spent, from the start of the statement to its last row fetched.
    duration: float
    #: "writer" or "reader-N".
    role: str
    #: The exception the statement raised, or None.
    error: Optional[BaseException]


class WriteResult:
    """The outcome of a write: ``lastrowid``, ``rowcount`` and the rows of a RETURNING clause."""

    __slots__ = ("lastrowid", "rowcount", "rows")

    def __init__(self, lastrowid: Optional[int], rowcount: int, rows: list[Any]) -> None:
        self.lastrowid = lastrowid
        self.rowcount = rowcount
        self.rows = rows

    def __repr__(self) -> str:
        return (
            f"<aiolite.WriteResult lastrowid={self.lastrowid} rowcount={self.rowcount} "
            f"rows={len(self.rows)}>"
        )


def _attempt(conn: sqlite3.Connection, sql: str) -> bool:
    """Run a lock-taking statement: False if the database was busy."""
    try:
        conn.execute(sql)
    except sqlite3.OperationalError as exc:
        if not is_busy(exc):
            raise
        return False
    return True


class Session:
    """Worker-side state of one connection of a Database (touched by its thread only)."""

    def __init__(
        self,
        role: str,
        worker: Worker,
        types: Optional[Types],
        busy_timeout: float,
        hook: Optional[Callable[[StatementEvent], object]],
        slow: Optional[float],
    ) -> None:
        self.role = role
        self.worker = worker
        self.types = types
        self.busy_timeout = busy_timeout
        self.hook = hook
        self.slow = slow
        self.observed = hook is not None or slow is not None
        #: Lock attempts that found the database busy (read by Database.statistics()).
        self.busy_retries = 0
        #: Transactions (``db.transaction()`` blocks) this connection committed.
        self.transactions = 0
        #: The writer's WAL limit in bytes (None: SQLite's own checkpoints only), the WAL
        #: file, and how many TRUNCATE checkpoints the limit triggered.
        self.wal_limit: Optional[int] = None
        self.wal_path = ""
        self.wal_truncations = 0
        self._commits = 0
        #: Opens a replacement connection (set by the Database); see settle().
        self.reopen: Optional[Callable[[], sqlite3.Connection]] = None
        #: Connections replaced because a transaction could not be rolled back.
        self.replaced = 0
        self._plans: dict[tuple[str, Any], RowPlan] = {}
        self._schema_version = -1
        self._decltypes: dict[str, Optional[str]] = {}

    # -- rows --

    def factory(self, conn: sqlite3.Connection, sql: str, description: Any, shape: Any) -> Any:
        """The row factory for this statement's result (cached per SQL text and shape)."""
        key = (sql, shape)
        plan = self._plans.get(key)
        if plan is None or plan.width != len(description):
            plan = self._plan(conn, description, shape)
            if len(self._plans) >= 1024:
                self._plans.clear()
            self._plans[key] = plan
        return plan.factory

    def _plan(self, conn: sqlite3.Connection, description: Any, shape: Any) -> RowPlan:
        convs = []
        if self.types is not None:
            self._load_schema(conn)
            for i, d in enumerate(description):
                convert = self.types.converter_for(self._decltypes.get(d[0].lower()))
                if convert is not None:
                    convs.append((i, convert))
        return RowPlan(row_maker(shape, description, convs), len(description))

    def _load_schema(self, conn: sqlite3.Connection) -> None:
        """Map column names to declared types, again whenever the schema changed."""
        version = conn.execute("PRAGMA schema_version").fetchone()[0]
        if version == self._schema_version:
            return
        self._schema_version = version
        self._plans.clear()
        decl: dict[str, Optional[str]] = {}
        for name, typ in conn.execute(
            "SELECT p.name, p.type FROM sqlite_master AS m, pragma_table_info(m.name) AS p "
            "WHERE m.type IN ('table', 'view')"
        ):
            key = name.lower()
            if key in decl and decl[key] != typ:
                decl[key] = None  # declared differently in two tables: ambiguous
            else:
                decl[key] = typ
        self._decltypes = decl

    def params(self, params: Parameters) -> Parameters:
        return params if self.types is None else self.types.adapt(params)

    # -- transactions --

    def settle(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """Make sure ``conn`` is outside any transaction; return the connection to use.

        ROLLBACK whatever is open; if SQLite refuses, close the connection (SQLite rolls
        back on close) and open a new one in its place.  Raises only if that fails too.
        """
        if not conn.in_transaction:
            return conn
        error: Optional[BaseException] = None
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            error = exc
        if not _in_transaction(conn):  # (a call: mypy would keep the narrowing from above)
            return conn
        logger.error(
            "%s: ROLLBACK failed (%s); closing the connection and opening a new one",
            self.role,
            error,
        )
        worker = self.worker
        with worker._lock:
            worker.connection = None
        try:
            conn.close()
        except sqlite3.Error:
            pass
        if self.reopen is None:
            raise sqlite3.OperationalError(
                f"{self.role}: a transaction could not be rolled back ({error}) and the "
                "connection was closed; open the database again"
            )
        new = self.reopen()
        worker.adopt(new)
        self.replaced += 1
        self._plans.clear()
        self._schema_version = -1
        return new

    # -- locks --

    def begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, retried until ``busy_timeout`` while another process writes."""
        if not _attempt(conn, BEGIN):
            self._retry_busy(conn, BEGIN)

    def commit(self, conn: sqlite3.Connection) -> None:
        # A COMMIT that fails busy (rollback-journal mode, readers still reading) keeps the
        # transaction intact: retrying it is safe.
        if not _attempt(conn, "COMMIT"):
            self._retry_busy(conn, "COMMIT")
        if self.wal_limit is not None:
            self._commits += 1
            if self._commits % WAL_CHECK_EVERY == 0:
                self._trim_wal(conn)

    def _trim_wal(self, conn: sqlite3.Connection) -> None:
        """Reset the WAL once it passed the limit (a reader's old snapshot can delay it).

        SQLite's automatic checkpoints copy pages back but cannot restart the WAL while a
        reader still uses its start, so under steady reads it only grows.  TRUNCATE waits
        one busy slice for such readers; if they are still there it gives up and the next
        check tries again.
        """
        limit = self.wal_limit
        try:
            size = os.path.getsize(self.wal_path)
        except OSError:
            return
        if limit is not None and size > limit:
            row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if row is not None and not row[0]:
                self.wal_truncations += 1

    def _retry_busy(self, conn: sqlite3.Connection, sql: str) -> None:
        """Retry ``sql`` after a first attempt found the database busy."""
        # SQLite's own busy handler waits up to one slice per attempt (see _pragmas), so
        # this loop never spins; an abort (a cancel) or the deadline ends it.
        worker = self.worker
        deadline = time.monotonic() + self.busy_timeout
        attempts = 1
        while True:
            self.busy_retries += 1
            worker.check_abort("waiting for the write lock")
            if time.monotonic() >= deadline:
                raise DatabaseLockedError(
                    f"database is locked: another connection held the write lock for more "
                    f"than busy_timeout={self.busy_timeout:g}s ({attempts} attempts to {sql}). "
                    "aiolite queues its own writers, so the holder is outside this Database: "
                    "another process, or another connection to the same file. Keep its "
                    "transactions short, or pass a larger busy_timeout= to aiolite.open()"
                )
            attempts += 1
            if _attempt(conn, sql):
                return

    def drain(self, conn: sqlite3.Connection, pending: deque[str]) -> None:
        """Run the statements a transaction deferred, in order (the worker pops them)."""
        while pending:
            sql = pending.popleft()
            if sql is BEGIN:
                self.begin(conn)
            else:
                conn.execute(sql)

    # -- observability --

    def report(
        self, sql: str, params: Any, duration: float, error: Optional[BaseException]
    ) -> None:
        if self.slow is not None and duration >= self.slow:
            logger.warning("slow statement on %s (%.3f s): %s", self.role, duration, sql)
        if self.hook is not None:
            try:
                self.hook(StatementEvent(sql, params, duration, self.role, error))
            except Exception:  # a broken hook must not break the statement
                logger.exception("the on_statement hook raised")


def _in_transaction(conn: sqlite3.Connection) -> bool:
    return conn.in_transaction


def _cursor(conn: sqlite3.Connection, s: Session, sql: str, params: Parameters) -> sqlite3.Cursor:
    cur = conn.cursor()
    cur.execute(sql, s.params(params))  # type: ignore[arg-type]
    return cur


def _one(conn: sqlite3.Connection, s: Session, sql: str, params: Any, shape: Any, _: Any) -> Any:
    cur = _cursor(conn, s, sql, params)
    description = cur.description  # built anew on every access
    if description is None:
        return None
    cur.row_factory = s.factory(conn, sql, description, shape)
    row = cur.fetchone()
    cur.close()  # ends the statement, and with it the read snapshot
    return row


def _all(conn: sqlite3.Connection, s: Session, sql: str, params: Any, shape: Any, _: Any) -> Any:
    cur = _cursor(conn, s, sql, params)
    description = cur.description  # built anew on every access
    if description is None:
        return []
    cur.row_factory = s.factory(conn, sql, description, shape)
    return cur.fetchall()


def _val(conn: sqlite3.Connection, s: Session, sql: str, params: Any, shape: Any, _: Any) -> Any:
    row = _one(conn, s, sql, params, tuple, None)
    return None if row is None else row[0]


def _write(conn: sqlite3.Connection, s: Session, sql: str, params: Any, shape: Any, _: Any) -> Any:
    cur = _cursor(conn, s, sql, params)
    rows = []
    description = cur.description  # built anew on every access
    if description is not None:  # RETURNING
        cur.row_factory = s.factory(conn, sql, description, shape)
        rows = cur.fetchall()
    return WriteResult(cur.lastrowid, cur.rowcount, rows)


def _many(conn: sqlite3.Connection, s: Session, sql: str, seq: Any, shape: Any, _: Any) -> Any:
    cur = conn.cursor()
    params: Iterable[Any] = seq if s.types is None else map(s.types.adapt, seq)
    cur.executemany(sql, params)
    return WriteResult(cur.lastrowid, cur.rowcount, [])


def _script(conn: sqlite3.Connection, s: Session, sql: str, _p: Any, _s: Any, _x: Any) -> Any:
    # A script may hold its own transactions and run long: give it the whole busy timeout.
    conn.execute(f"PRAGMA busy_timeout={int(s.busy_timeout * 1000)}")
    try:
        conn.executescript(sql)
    finally:
        # Nothing stays open: a script that failed half-way, or forgot its COMMIT.
        left_open = conn.in_transaction
        conn = s.settle(conn)
        conn.execute(f"PRAGMA busy_timeout={writer_slice_ms(s.busy_timeout)}")
    if left_open:
        raise sqlite3.OperationalError(
            "the script began a transaction and did not end it, so it was rolled back: "
            "end it with COMMIT in the script, or use 'async with db.transaction()'"
        )


def _commit(conn: sqlite3.Connection, s: Session, _q: Any, _p: Any, _s: Any, _x: Any) -> Any:
    s.commit(conn)
    s.transactions += 1  # counted here: a commit whose waiting task was cancelled counts


def _stream(conn: sqlite3.Connection, s: Session, sql: str, params: Any, shape: Any, x: Any) -> Any:
    res, prefetch = x
    cur = _cursor(conn, s, sql, params)
    res._description = description = cur.description  # built anew on every access
    if description is None:
        res._raw = None
        return None
    cur.row_factory = s.factory(conn, sql, description, shape)
    _read(res, cur, prefetch)
    return None


_MODES = (_one, _all, _val, _write, _many, _script, _stream, _commit)


def writer_slice_ms(busy_timeout: float) -> int:
    """The writer's own busy_timeout: one slice of the retry loop in Session._retry_busy."""
    return min(WRITER_BUSY_SLICE_MS, int(busy_timeout * 1000))


def run(
    conn: sqlite3.Connection,
    s: Session,
    pending: Optional[deque[str]],
    mode: int,
    sql: str,
    params: Any,
    shape: Any,
    tx: int,
    extra: Any = None,
) -> Any:
    """The job behind every Database operation (see the module docstring)."""
    started = time.perf_counter()
    error: Optional[BaseException] = None
    try:
        if pending:
            if pending[0] is BEGIN:
                conn = s.settle(conn)
            s.drain(conn, pending)
        if tx == AUTOCOMMIT:
            conn = s.settle(conn)
            s.begin(conn)
            try:
                value = _MODES[mode](conn, s, sql, params, shape, extra)
                s.commit(conn)
            except BaseException:
                s.settle(conn)
                raise
            return value
        if mode == SCRIPT:
            conn = s.settle(conn)
        if tx == TX and not conn.in_transaction:
            raise sqlite3.OperationalError(
                "the transaction is no longer open: SQLite rolled it back (an interrupted "
                "write, or a ROLLBACK in the SQL); nothing of it was committed: leave this "
                "'async with' block and run the whole transaction again"
            )
        return _MODES[mode](conn, s, sql, params, shape, extra)
    except BaseException as exc:
        error = exc
        if isinstance(exc, sqlite3.Error):
            _explain(exc, s.role)
        raise
    finally:
        if s.observed:
            s.report(sql, params, time.perf_counter() - started, error)


_SQLITE_READONLY, _SQLITE_FULL = 8, 13


def _explain(exc: sqlite3.Error, role: str) -> None:
    """Add what to do to the errors people meet most (same exception, same class)."""
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc)
    hint = None
    if code == _SQLITE_FULL or text.startswith("database or disk is full"):
        hint = (
            "nothing of the failed statement (or its transaction) was committed; free disk "
            "space (or raise PRAGMA max_page_count) and retry"
        )
    elif role != "writer" and (code == _SQLITE_READONLY or "readonly database" in text):
        hint = (
            "reads run on query_only reader connections: send writes through "
            "db.execute()/db.executemany() or 'async with db.transaction() as tx'"
        )
    if hint is not None and len(exc.args) == 1 and hint not in text:
        exc.args = (f"{text} ({hint})",)


def rollback(conn: sqlite3.Connection, s: Session, pending: Optional[deque[str]] = None) -> None:
    """End a transaction that will not commit (posted: nobody waits for it).

    Never swallowed: if the ROLLBACK fails, the connection is replaced (Session.settle).
    """
    if pending is not None:
        pending.clear()
    if conn is not None:
        s.settle(conn)


def end_read(conn: sqlite3.Connection, s: Session) -> None:
    """End a read session's snapshot (posted), so checkpoints can reset the WAL past it."""
    if conn is None or not conn.in_transaction:
        return
    try:
        conn.execute("COMMIT")
    except sqlite3.Error:
        pass
    s.settle(conn)
