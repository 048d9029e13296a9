"""What a Database runs on its worker threads: one function, :func:`run`, per statement.

Each connection of a Database has a :class:`Session`, its worker-side state: the role, the
type conversion and row plans, the busy-retry policy and the statement hook.  ``run`` is
the job every Database operation submits; it

1. runs the statements a transaction or read session deferred (``BEGIN IMMEDIATE``,
   ``SAVEPOINT``/``RELEASE``...), so they cost no round trip of their own;
2. for an autocommit write, wraps the statement in ``BEGIN IMMEDIATE`` ... ``COMMIT``,
   together with the autocommit writes queued behind it that asked to go with it (a
   *group*, see :func:`_group`): one commit for all of them;
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
import re
import sqlite3
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._adapters import RowPlan, Types, needs_no_names, row_maker
from ._cursor import _read
from ._exceptions import DatabaseLockedError, QueryTimeoutError, TooManyRowsError, is_busy
from ._pragmas import WRITER_BUSY_SLICE_MS
from ._sandbox import refused
from ._types import Parameters
from ._worker import CANCELLING, RUNNING, Aborted

if TYPE_CHECKING:
    from ._worker import Job, Worker

__all__ = [
    "ALL",
    "AUTOCOMMIT",
    "BEGIN",
    "COMMIT",
    "NO_TX_CONTROL",
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
#: The most commits between two automatic checkpoints of the writer (take_checkpoints).
CKPT_EVERY_MAX = 4096
#: After a TRUNCATE checkpoint that a reader kept busy, wait this long before the next
#: attempt, doubling up to WAL_BACKOFF_MAX seconds while the reader stays.
WAL_BACKOFF = 1.0
WAL_BACKOFF_MAX = 30.0
#: Deferred marker: "BEGIN IMMEDIATE, retried while another process holds the lock".
BEGIN = "BEGIN IMMEDIATE"
#: ``extra`` of a WRITE in a transaction whose SQL must not control the transaction.
NO_TX_CONTROL = "no transaction control"
_SQLITE_TRANSACTION = 22  # the authorizer's action code for BEGIN/COMMIT/ROLLBACK


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


#: How often a connection asks SQLite whether another process changed the schema.
RECHECK = 0.1
# The first keyword of a statement, after white space and comments.
_KEYWORD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*([A-Za-z]+)", re.DOTALL)
_DDL = frozenset({"CREATE", "ALTER", "DROP"})


def changes_schema(sql: str) -> bool:
    m = _KEYWORD.match(sql)
    return m is not None and m.group(1).upper() in _DDL


class Limits:
    """Per-call limits of a read: seconds of work (``timeout``) and rows (``max_rows``)."""

    __slots__ = ("max_rows", "timeout")

    def __init__(self, timeout: Optional[float], max_rows: Optional[int]) -> None:
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if max_rows is not None and not (isinstance(max_rows, int) and max_rows >= 0):
            raise ValueError(f"max_rows must be an int >= 0, got {max_rows!r}")
        self.timeout = timeout
        self.max_rows = max_rows


def too_many_rows(max_rows: int) -> TooManyRowsError:
    return TooManyRowsError(
        f"the query returned more than max_rows={max_rows} rows; add a LIMIT, narrow the "
        "query, or raise max_rows"
    )


def _limits_of(extra: Any) -> Optional[Limits]:
    if type(extra) is Limits:
        return extra
    if type(extra) is tuple and len(extra) == 3:  # a stream's (results, prefetch, limits)
        return extra[2]  # type: ignore[no-any-return]
    return None


def run_limited(conn: sqlite3.Connection, s: Session, fn: Any, limits: Limits, *args: Any) -> Any:
    """Run ``fn(conn, *args)`` (a stream's refill) under ``limits.timeout``."""
    _arm(s.worker, limits)
    try:
        return fn(conn, *args)
    except sqlite3.OperationalError as exc:
        timed_out = _expired(s.worker, limits, exc)
        if timed_out is not None:
            raise timed_out from None
        raise
    finally:
        s.worker.deadline = None


def _arm(worker: Worker, limits: Limits) -> None:
    """Give the job a deadline its progress handler enforces (see Worker._progress)."""
    if limits.timeout is not None:
        worker.deadline = time.monotonic() + limits.timeout


def _expired(worker: Worker, limits: Limits, exc: BaseException) -> Optional[Exception]:
    """The QueryTimeoutError to raise if ``exc`` is the statement the deadline stopped."""
    if worker.expired and isinstance(exc, sqlite3.OperationalError):
        return _timed_out(limits.timeout or 0)
    return None


def _timed_out(timeout: float) -> QueryTimeoutError:
    return QueryTimeoutError(
        f"the query ran longer than its time limit of {timeout:g} s and was stopped; the "
        "connection is fine: narrow the query, or raise timeout= (query_timeout= in "
        "aiolite.open())"
    )


class SchemaClock:
    """Counts schema changes made through one Database (the writer bumps it)."""

    __slots__ = ("epoch",)

    def __init__(self) -> None:
        self.epoch = 0


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
        #: Group commit (see _group): writes committed in groups, groups committed, and
        #: groups run again one write at a time.
        self.grouped_writes = 0
        self.group_commits = 0
        self.group_retries = 0
        #: Transactions (``db.transaction()`` blocks) this connection committed.
        self.transactions = 0
        #: The writer's WAL limit in bytes (None: SQLite's own checkpoints only), the WAL
        #: file, and how many TRUNCATE checkpoints the limit triggered.
        self.wal_limit: Optional[int] = None
        self.wal_path = ""
        self.wal_truncations = 0
        #: TRUNCATE attempts, and those a reader kept from finishing (they back off).
        self.wal_checkpoints = 0
        self.wal_checkpoints_busy = 0
        #: wal_autocheckpoint as configured, run by the writer itself (take_checkpoints;
        #: 0: none, as with checkpoints="external"), every ckpt_every commits.
        self.autocheckpoint = 0
        self.ckpt_every = 32
        self.ckpt_commits = 0
        self.auto_checkpoints = 0
        self._wal_next = 0.0
        self._wal_backoff = 0.0
        self.wal_commits = 0  # commits counted toward the next WAL size check
        #: Opens a replacement connection (set by the Database); see settle().
        self.reopen: Optional[Callable[[], sqlite3.Connection]] = None
        #: Connections replaced because a transaction could not be rolled back.
        self.replaced = 0
        #: The sandbox's authorizer on this connection (untrusted Databases), to name what
        #: it refused.
        self.authorizer: Any = None
        self._guard_installed = False  # guard_transaction() installed its authorizer
        self._guarded = False
        self._plans: dict[tuple[str, Any], RowPlan] = {}
        self._schema_version: tuple[int, int] = (-1, -1)
        self._decl: dict[str, tuple[str, Any]] = {}  # column name -> (declared type, converter)
        self._broken: set[tuple[str, str]] = set()  # objects whose columns cannot be read
        self._temp = role == "writer"
        #: Shared by the connections of one Database: bumped when the writer may have
        #: changed the schema (see _known); ``ddl`` marks a transaction that did.
        self.clock = SchemaClock()
        self.ddl = False
        #: An autocommit write runs without BEGIN IMMEDIATE/COMMIT (dqlite: see run()).
        self.bare_autocommit = False
        self._seen_epoch = -1
        self._seen_at = 0.0
        self._seen: tuple[int, int] = (-1, -1)

    # -- rows --

    def factory(self, conn: sqlite3.Connection, sql: str, description: Any, shape: Any) -> Any:
        """The row factory for this statement's result (cached per SQL text and shape).

        A plan that depends on the schema (converters by declared type, or column names
        frozen into dict/dataclass rows) is used only under the schema it was made for:
        the same SQL text returns other columns after an ALTER or a DROP/CREATE.
        """
        key = (sql, shape)
        plan = self._plans.get(key)
        if plan is not None and (plan.version is None or plan.version == self._known(conn)):
            return plan.factory
        plan = self._plan(conn, description, shape)
        if len(self._plans) >= 1024:
            self._plans.clear()
        self._plans[key] = plan
        return plan.factory

    def _known(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """The schema version, asked of SQLite only when it may have changed: after a
        schema change made through this Database (its writer bumps ``clock.epoch``), and
        every RECHECK seconds for changes made by other processes.  Asking on every
        statement cost ~10% of a point select."""
        clock = self.clock
        now = time.monotonic()
        if clock.epoch != self._seen_epoch or now - self._seen_at >= RECHECK:
            self._seen_epoch = clock.epoch
            self._seen_at = now
            self._seen = self._version(conn)
        return self._seen

    def _version(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """The schema's version: main's cookie, and temp's on the writer (temp objects are
        per connection, and only the writer can make them)."""
        main = conn.execute("PRAGMA schema_version").fetchone()[0]
        temp = conn.execute("PRAGMA temp.schema_version").fetchone()[0] if self._temp else 0
        return main, temp

    def _plan(self, conn: sqlite3.Connection, description: Any, shape: Any) -> RowPlan:
        convs = []
        version = None
        if self.types is not None:
            version = self._load_schema(conn)
            for i, d in enumerate(description):
                column = self._decl.get(d[0].lower())
                if column is not None and column[1] is not None:
                    convs.append((i, column[1], column[0]))
        if version is None and not needs_no_names(shape):
            version = self._version(conn)
        return RowPlan(row_maker(shape, description, convs), version)

    def _load_schema(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """Map column names to (declared type, converter), again whenever the schema changed.

        Per object, so that one broken view (its table dropped: SQLite allows it) costs only
        its own columns; each such object is reported once.  A column with no declared type
        (a view's expression) has no say; a name whose declared types convert differently in
        two objects is left alone.
        """
        version = self._version(conn)
        if version == self._schema_version:
            return version
        self._schema_version = version
        self._plans.clear()
        types = self.types
        assert types is not None
        decl: dict[str, Optional[tuple[str, Any]]] = {}
        objects = conn.execute(
            "SELECT 'main', name FROM main.sqlite_master WHERE type IN ('table', 'view') "
            "UNION ALL SELECT 'temp', name FROM temp.sqlite_master "
            "WHERE type IN ('table', 'view')"
        ).fetchall()
        for schema, obj in objects:
            try:
                columns = conn.execute(
                    "SELECT name, type FROM pragma_table_info(?, ?)", (obj, schema)
                ).fetchall()
            except sqlite3.Error as exc:
                if (schema, obj) not in self._broken:
                    self._broken.add((schema, obj))
                    logger.warning(
                        "%s: cannot read the columns of %s.%s (%s); its columns are not converted",
                        self.role,
                        schema,
                        obj,
                        exc,
                    )
                continue
            for name, typ in columns:
                if not typ:
                    continue  # no declared type: no opinion
                key = name.lower()
                column = (typ, types.converter_for(typ))
                if key not in decl:
                    decl[key] = column
                elif decl[key] is not None and decl[key][1] is not column[1]:  # type: ignore[index]
                    decl[key] = None  # converted differently in two objects: ambiguous
        self._decl = {k: v for k, v in decl.items() if v is not None}
        return version

    def params(self, params: Parameters) -> Parameters:
        return params if self.types is None else self.types.adapt(params)

    # -- transactions --

    def guard_transaction(self, conn: sqlite3.Connection, on: bool) -> None:
        """Make SQLite refuse BEGIN/COMMIT/ROLLBACK in the statements prepared while on.

        The authorizer is installed once and then only switched: before Python 3.11,
        ``set_authorizer(None)`` does not remove one (every statement would be refused).
        """
        if on and not self._guard_installed:
            conn.set_authorizer(self._authorize)
            self._guard_installed = True
        self._guarded = on

    def _authorize(self, action: int, *_: Any) -> int:
        if self._guarded and action == _SQLITE_TRANSACTION:
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

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
        worker.fast.clear()
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
        self._guard_installed = self._guarded = False
        if self.autocheckpoint > 0:  # the writer runs the checkpoints (take_checkpoints)
            new.execute("PRAGMA wal_autocheckpoint=0")
        worker.adopt(new)
        if worker.inline is not None:
            worker.inline.refresh(new)
        self.replaced += 1
        self._plans.clear()
        self._schema_version = (-1, -1)
        return new

    # -- locks --

    def begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, retried until ``busy_timeout`` while another process writes."""
        if not _attempt(conn, BEGIN):
            self._retry_busy(conn, BEGIN)

    def commit(self, conn: sqlite3.Connection) -> None:
        # Never aborted for running over an inline budget (see _inline): once the
        # statements ran, the transaction commits.
        self.worker.budget_deadline = None
        # A COMMIT that fails busy (rollback-journal mode, readers still reading) keeps the
        # transaction intact: retrying it is safe.
        self.end(conn)
        self.committed(conn)

    def end(self, conn: sqlite3.Connection) -> None:
        """The COMMIT statement alone, retried while busy (see commit)."""
        if not _attempt(conn, "COMMIT"):
            self._retry_busy(conn, "COMMIT")

    def committed(self, conn: sqlite3.Connection) -> None:
        """After a COMMIT: what a commit makes due (the schema epoch, WAL checks,
        checkpoints)."""
        if self.ddl:  # the schema changed: every connection asks SQLite again
            self.ddl = False
            self.clock.epoch += 1
        if self.wal_limit is not None:
            self.wal_commits += 1
            if self.wal_commits % WAL_CHECK_EVERY == 0:
                self._trim_wal(conn)
        if self.autocheckpoint > 0:
            self.ckpt_commits += 1
            if self.ckpt_commits >= self.ckpt_every:
                self._checkpoint(conn)

    def checkpoint_due(self) -> bool:
        """Whether the next commit runs a checkpoint (or a WAL check): not on the loop."""
        return (self.autocheckpoint > 0 and self.ckpt_commits + 1 >= self.ckpt_every) or (
            self.wal_limit is not None and (self.wal_commits + 1) % WAL_CHECK_EVERY == 0
        )

    def take_checkpoints(self, conn: sqlite3.Connection) -> None:
        """Writer: run SQLite's automatic checkpoints here, after commits, not inside them.

        SQLite checkpoints inside the COMMIT that takes the WAL past wal_autocheckpoint
        frames; that COMMIT may run on the loop thread (see _inline), where a checkpoint
        (page copies and fsyncs: milliseconds) must not.  So the writer's own setting is
        turned off, and the writer runs the same PASSIVE checkpoint itself, every
        ``ckpt_every`` commits, adapted so that it comes about every wal_autocheckpoint
        frames: each checkpoint reports how many frames the WAL held."""
        self.autocheckpoint = int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        if self.autocheckpoint > 0:
            conn.execute("PRAGMA wal_autocheckpoint=0")

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        self.ckpt_commits = 0
        try:
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # a full disk, I/O: the next commits try again
            logger.warning("%s: automatic checkpoint failed: %s", self.role, exc)
            return
        self.auto_checkpoints += 1
        if frames > self.autocheckpoint:
            self.ckpt_every = max(1, self.ckpt_every // 2)
        elif frames < self.autocheckpoint // 2:
            self.ckpt_every = min(CKPT_EVERY_MAX, self.ckpt_every * 2)

    def _trim_wal(self, conn: sqlite3.Connection) -> None:
        """Reset the WAL once it passed the limit, without ever making the writer wait.

        SQLite's automatic checkpoints copy pages back but cannot restart the WAL while a
        reader still uses its start, so under steady reads it only grows.  The TRUNCATE
        checkpoint runs with no busy wait: if a reader (another process: a backup, an
        analytics job, Litestream) still needs the WAL, it copies what it can and returns
        busy at once, and the next attempt waits WAL_BACKOFF seconds, doubling up to
        WAL_BACKOFF_MAX while the reader stays.
        """
        limit = self.wal_limit
        now = time.monotonic()
        if limit is None or now < self._wal_next:
            return
        try:
            size = os.path.getsize(self.wal_path)
        except OSError:
            return
        if size <= limit:
            return
        self.wal_checkpoints += 1
        conn.execute("PRAGMA busy_timeout=0")
        try:
            row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.execute(f"PRAGMA busy_timeout={writer_slice_ms(self.busy_timeout)}")
        if row is not None and not row[0]:
            self.wal_truncations += 1
            self._wal_backoff = 0.0
            return
        self.wal_checkpoints_busy += 1
        self._wal_backoff = min(max(self._wal_backoff * 2, WAL_BACKOFF), WAL_BACKOFF_MAX)
        self._wal_next = now + self._wal_backoff

    def _retry_busy(self, conn: sqlite3.Connection, sql: str) -> None:
        """Retry ``sql`` after a first attempt found the database busy."""
        # SQLite's own busy handler waits up to one slice per attempt (see _pragmas), so
        # this loop never spins; an abort (a cancel) or the deadline ends it.
        worker = self.worker
        if worker.here:  # on the loop thread, which must not wait: the worker will
            raise sqlite3.OperationalError(f"database is locked ({sql} on the loop thread)")
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


def _all(conn: sqlite3.Connection, s: Session, sql: str, params: Any, shape: Any, x: Any) -> Any:
    cur = _cursor(conn, s, sql, params)
    description = cur.description  # built anew on every access
    if description is None:
        return []
    cur.row_factory = s.factory(conn, sql, description, shape)
    if type(x) is Limits and x.max_rows is not None:
        rows = cur.fetchmany(x.max_rows + 1)
        cur.close()
        if len(rows) > x.max_rows:
            raise too_many_rows(x.max_rows)
        return rows
    return cur.fetchall()


def _val(conn: sqlite3.Connection, s: Session, sql: str, params: Any, shape: Any, _: Any) -> Any:
    row = _one(conn, s, sql, params, tuple, None)
    return None if row is None else row[0]


def _write(conn: sqlite3.Connection, s: Session, sql: str, params: Any, shape: Any, x: Any) -> Any:
    if changes_schema(sql):
        s.ddl = True
    if x is NO_TX_CONTROL:
        s.guard_transaction(conn, True)
        try:
            # A new cursor prepares anew only on a statement-cache miss: a cached COMMIT
            # would skip the authorizer, so check the outcome too.
            cur = _cursor(conn, s, sql, params)
        except sqlite3.DatabaseError as exc:
            if "not authorized" in str(exc):
                raise sqlite3.OperationalError(
                    f"{sql.strip()[:60]!r} tries to end or start a transaction inside a "
                    "migration step, which already runs in its own; nothing was committed"
                ) from exc
            raise
        finally:
            s.guard_transaction(conn, False)
        if not conn.in_transaction:
            raise sqlite3.OperationalError(
                f"{sql.strip()[:60]!r} ended the migration step's transaction: what ran "
                "before it was committed without the step being recorded; remove the "
                "transaction control from the step and check the schema by hand"
            )
        return WriteResult(cur.lastrowid, cur.rowcount, [])
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
        s.clock.epoch += 1  # a script may change the schema, committed or not
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
    res, prefetch = x[0], x[1]
    cur = _cursor(conn, s, sql, params)
    description = cur.description
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
    limits = _limits_of(extra) if extra is not None else None
    if limits is not None:
        _arm(s.worker, limits)
    try:
        if pending:
            if pending[0] is BEGIN:
                conn = s.settle(conn)
            s.drain(conn, pending)
        if tx == AUTOCOMMIT and mode == WRITE and s.bare_autocommit:
            # dqlite: one statement is atomic on its own, and BEGIN and COMMIT would be two
            # more network round trips (COMMIT one more Raft round).
            conn = s.settle(conn)
            try:
                return _MODES[mode](conn, s, sql, params, shape, extra)
            finally:
                if s.ddl:  # the schema changed (or may have): every connection asks again
                    s.ddl = False
                    s.clock.epoch += 1
        if tx == AUTOCOMMIT:
            job = s.worker._running
            if job is not None and job.members and mode == WRITE:
                return _group(conn, s, job.members, sql, params, shape)
            return _own_transaction(s.settle(conn), s, mode, sql, params, shape, extra)
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
        timed_out = _expired(s.worker, limits, exc) if limits is not None else None
        if timed_out is not None:
            error = timed_out
            raise timed_out from None
        if s.authorizer is not None and isinstance(exc, sqlite3.DatabaseError):
            unsafe = refused(s.authorizer, exc)
            if unsafe is not None:
                error = unsafe
                raise unsafe from None
        error = exc
        if isinstance(exc, sqlite3.Error):
            _explain(exc, s.role)
        raise
    finally:
        if limits is not None:
            s.worker.deadline = None
        if s.observed:
            s.report(sql, params, time.perf_counter() - started, error)


def _own_transaction(
    conn: sqlite3.Connection, s: Session, mode: int, sql: str, params: Any, shape: Any, x: Any
) -> Any:
    """An autocommit statement: BEGIN IMMEDIATE, the statement, COMMIT; rolled back if
    anything fails.  ``conn`` is outside any transaction (Session.settle)."""
    s.begin(conn)
    try:
        value = _MODES[mode](conn, s, sql, params, shape, x)
        s.commit(conn)
    except BaseException:
        s.settle(conn)
        raise
    return value


#: The savepoint each write of a group runs in, so that a failing one is undone alone.
_MEMBER = "aiolite_group_member"


def _group(
    conn: sqlite3.Connection, s: Session, members: list[Job], sql: str, params: Any, shape: Any
) -> Any:
    """Run an autocommit write and the ones grouped with it (``members``: jobs of
    ``db.execute`` queued behind it) in one transaction: one COMMIT for all of them.

    Each write runs in a savepoint: one that fails is rolled back alone and reports its
    error, as in a transaction of its own.  If the transaction itself goes (a failed
    COMMIT, a full disk, a conflict clause that rolls back everything, a cancel that
    interrupts a write), all of it is rolled back and each write runs again alone, in its
    own transaction, exactly as without groups: nothing of the group was reported yet.
    So every write is committed once or not at all, and each task learns its outcome
    after its COMMIT.  Returns the first write's outcome (the running job's own); the
    members' go to the worker (Worker.member_done).

    Cancellation: a member cancelled before its turn never runs (Worker.claim); one
    cancelled while the group runs aborts it, as a single write's cancel would, and the
    others then run alone, no longer abortable by another's cancel (Job.shielded).
    """
    worker = s.worker
    lead = worker._running
    assert lead is not None
    conn = s.settle(conn)
    # (job, sql, params, shape) of each write, the running job's own first.
    writes: list[tuple[Job, str, Any, Any]] = [(lead, sql, params, shape)]
    writes += [(m, m.args[3], m.args[4], m.args[5]) for m in members]
    outcomes: list[tuple[Job, bool, Any, float]] = []
    reached = 0  # writes[:reached] were claimed (or found cancelled)
    try:
        s.begin(conn)
        for job, q, p, shape in writes:
            reached += 1
            if job is not lead and not worker.claim(job):
                continue  # cancelled before its turn: never runs
            started = time.perf_counter()
            conn.execute(f"SAVEPOINT {_MEMBER}")
            try:
                value = _write(conn, s, q, p, shape, None)
            except sqlite3.Error as exc:
                if not conn.in_transaction:
                    raise  # it took the transaction with it
                conn.execute(f"ROLLBACK TO {_MEMBER}")
                conn.execute(f"RELEASE {_MEMBER}")
                outcomes.append((job, False, exc, time.perf_counter() - started))
            else:
                conn.execute(f"RELEASE {_MEMBER}")
                outcomes.append((job, True, value, time.perf_counter() - started))
        s.end(conn)
    except BaseException as exc:
        # Nothing was committed (a COMMIT that fails commits nothing): undo it all, then
        # each write once more, alone.
        conn = s.settle(conn)
        s.group_retries += 1
        outcomes = _alone(conn, s, writes, reached, exc)
    else:
        s.group_commits += 1
        s.grouped_writes += sum(1 for o in outcomes if o[1])
        s.committed(conn)
    own: Optional[tuple[bool, Any]] = None
    for job, ok, value, took in outcomes:
        if not ok and isinstance(value, sqlite3.Error):
            _explain(value, s.role)
        if job is lead:
            own = (ok, value)
            continue
        if s.observed:
            s.report(job.args[3], job.args[4], took, None if ok else value)
        worker.member_done(job, ok, value, took)
    lead.members = None  # the jobs it held are done: let them go
    assert own is not None  # the running job's own write always has an outcome
    if not own[0]:
        raise own[1]
    return own[1]


def _alone(
    conn: sqlite3.Connection,
    s: Session,
    writes: list[tuple[Job, str, Any, Any]],
    reached: int,
    error: BaseException,
) -> list[tuple[Job, bool, Any, float]]:
    """A group's writes, each in its own transaction, after the group's was rolled back.

    A write whose task was cancelled while the group ran (CANCELLING: its cancel may be
    what stopped the group) is not run again: it reports the abort.  The others can no
    longer be aborted (an abort would stop whichever write runs, not the cancelled one):
    a cancel now waits for the truth, or finds the write not begun and it never runs."""
    worker = s.worker
    lead = writes[0][0]
    with worker._lock:
        cancelled = {id(job) for job, *_ in writes[:reached] if job.state == CANCELLING}
        for job, *_ in writes:
            job.shielded = True
        worker.aborting = False
    if id(lead) not in cancelled:
        worker._aborted = False  # the lead's outcome is its own run's, below
    outcomes: list[tuple[Job, bool, Any, float]] = []
    for i, (job, q, p, shape) in enumerate(writes):
        if id(job) in cancelled:
            value: Any = error if job is lead else Aborted(error)
            outcomes.append((job, False, value, 0.0))
            continue
        if job is not lead:
            if i < reached:
                if job.state != RUNNING:
                    continue  # found cancelled in the group: never ran
            elif not worker.claim(job):
                continue
        started = time.perf_counter()
        try:
            value = _own_transaction(conn, s, WRITE, q, p, shape, None)
        except BaseException as exc:  # delivered to its task, as the worker would
            # It rolled back (Session.settle), replacing the connection if it had to.
            conn = worker.connection or conn
            outcomes.append((job, False, exc, time.perf_counter() - started))
        else:
            outcomes.append((job, True, value, time.perf_counter() - started))
    return outcomes


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
