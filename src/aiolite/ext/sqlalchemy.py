"""SQLAlchemy's ``sqlite+aiolite`` dialect, for ``create_async_engine``.

Install with ``pip install 'aiolite[sqlalchemy]'``; SQLAlchemy finds the dialect through
its ``sqlalchemy.dialects`` entry point, so no import is needed::

    engine = create_async_engine("sqlite+aiolite:///app.db")

What it changes compared with ``sqlite+aiosqlite`` (docs/sqlalchemy.md has the details):

* **A transaction starts at its first statement, reads included.**  sqlite3's legacy mode
  sends ``BEGIN`` only before INSERT/UPDATE/DELETE, so the SELECT of a read-modify-write
  reads outside the transaction and concurrent updates are silently lost.  Here the
  driver runs in autocommit mode and the dialect sends ``BEGIN`` itself, just before the
  first statement of each transaction (PRAGMA, VACUUM, ATTACH and DETACH excepted: SQLite
  refuses or ignores them inside a transaction).
* **Writers queue, in order, in the process.**  Every connection to one database file
  (every pooled connection, every engine of the process) shares one FIFO *write gate*: a
  transaction that writes waits its turn there, at no cost, instead of sleep-polling in
  SQLite's busy handler, which fails the unlucky after ``timeout``.  SQLite's own locking is
  left for other processes.
* **``BEGIN IMMEDIATE`` by default**: a transaction takes the gate and SQLite's write lock
  at its first statement, so a read-modify-write never fails half-way.  Sessions that only
  read use ``engine.execution_options(aiolite_begin="deferred")`` (or ``?begin=deferred``):
  they never queue behind writers; if such a transaction writes after all, it takes the
  gate at its first write.
* **Production defaults**: the same pragmas as :func:`aiolite.open` (WAL, foreign keys,
  ``synchronous=NORMAL``...), each overridable by a URL query key or ``connect_args``.
* **Pools**: a file database gets SQLAlchemy's ``AsyncAdaptedQueuePool``; ``:memory:`` gets
  one named in-memory database per engine shared by every pooled connection, so sessions
  each have their own connection and transaction instead of interleaving on one.
* **No hang at exit** without ``engine.dispose()``: aiolite closes forgotten connections.

Only aiolite's public API is used.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import os
import re
import sqlite3
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Optional

try:
    from sqlalchemy import pool, util
    from sqlalchemy.dialects.sqlite.base import SQLiteExecutionContext
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
    from sqlalchemy.engine import AdaptedConnection
    from sqlalchemy.engine.characteristics import ConnectionCharacteristic
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the sqlite+aiolite dialect needs SQLAlchemy 2.0.30 or newer: "
        "pip install 'aiolite[sqlalchemy]'"
    ) from exc

try:
    from sqlalchemy.util.concurrency import await_
except ImportError:  # pragma: no cover - SQLAlchemy 2.0 spells it await_only
    from sqlalchemy.util.concurrency import await_only as await_  # type: ignore[no-redef,attr-defined,unused-ignore]

import aiolite

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import ConnectArgsType, DBAPIConnection
    from sqlalchemy.engine.url import URL

__all__ = ["AioliteDialect", "BEGIN_MODES", "dialect"]

#: Values of the ``begin`` URL option and the ``aiolite_begin`` execution option.
BEGIN_MODES = ("deferred", "immediate")

# The leading keyword of a statement, after blanks and comments.
_KEYWORD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*([A-Za-z]+)", re.S)
# Statements SQLite refuses (VACUUM, ATTACH, DETACH) or silently ignores (some PRAGMAs,
# e.g. foreign_keys, journal_mode) inside a transaction, and those that control one.
_NO_BEGIN = frozenset(
    {"PRAGMA", "VACUUM", "ATTACH", "DETACH", "BEGIN", "COMMIT", "END", "ROLLBACK"}
)
_memory_names = itertools.count(1)


def _needs_begin(sql: str) -> bool:
    m = _KEYWORD.match(sql)
    return m is None or m.group(1).upper() not in _NO_BEGIN


_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER"})


def _is_write(sql: str) -> bool:
    m = _KEYWORD.match(sql)
    return m is not None and m.group(1).upper() in _WRITES


def _upgrade_refused(exc: sqlite3.OperationalError) -> sqlite3.OperationalError:
    """The error a deferred transaction gets when it tries to write after another
    connection wrote since its first read: SQLite cannot upgrade it, and waiting does not
    help.  Same class as sqlite3's, with what to do."""
    new = sqlite3.OperationalError(
        f"{exc}: this transaction began with a read (BEGIN DEFERRED) and another "
        "connection wrote since, so SQLite cannot let it write. Roll back and retry it, or "
        "start transactions that write with BEGIN IMMEDIATE so they queue for the write "
        "lock: engine.execution_options(aiolite_begin='immediate') or ?begin=immediate "
        "in the URL"
    )
    for attr in ("sqlite_errorcode", "sqlite_errorname"):
        if hasattr(exc, attr):
            setattr(new, attr, getattr(exc, attr))
    return new


def _check_mode(value: Any) -> str:
    mode = str(value).lower()
    if mode not in BEGIN_MODES:
        raise ValueError(f"begin must be 'deferred' or 'immediate', got {value!r}")
    return mode


# ---- the write gate: one FIFO per database file, shared by the process ----------------------

#: Seconds a writer waits for the gate before "database is locked" (URL: write_timeout).
WRITE_TIMEOUT = 30.0
#: A transaction holding the gate longer than this is logged with where its task is
#: (URL: hold_warning; 0 turns it off).
HOLD_WARNING = 1.0

logger = logging.getLogger("aiolite")


class WriteGate:
    """The FIFO queue for writing one database file, for the connections of one loop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self.waiting = 0
        self.holder: Any = None  # the DB-API connection holding it
        self.since = 0.0
        self._warning: Optional[asyncio.TimerHandle] = None
        self._task: Optional[asyncio.Task[Any]] = None

    async def acquire(self, owner: Any, timeout: float, warn_after: float) -> None:
        if self._task is not None and self._task is asyncio.current_task():
            raise aiolite.DatabaseLockedError(
                f"this task already holds the write lock of {self.name} through another "
                "session or connection, so it would wait for itself: do the work in that "
                "session, or open the one that only reads with "
                "execution_options(aiolite_begin='deferred')"
            )
        started = time.monotonic()
        ahead = self.waiting + (1 if self._lock.locked() else 0)
        self.waiting += 1
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout)
        except asyncio.TimeoutError:
            held = time.monotonic() - self.since if self.holder is not None else 0.0
            raise aiolite.DatabaseLockedError(
                f"database is locked: waited {time.monotonic() - started:.1f} s for the "
                f"write lock of {self.name} behind {ahead} writer(s); the transaction "
                f"holding it has held it for {held:.1f} s. Keep write transactions short "
                "(no unrelated awaits between the first write and the commit; see the "
                "'aiolite' log), or raise write_timeout= in the URL"
            ) from None
        finally:
            self.waiting -= 1
        self.holder = owner
        self.since = time.monotonic()
        self._task = asyncio.current_task()
        if warn_after > 0:
            self._warning = asyncio.get_running_loop().call_later(warn_after, self._warn)

    def release_from_anywhere(self) -> None:
        """Release from any thread (a connection terminated by the garbage collector)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.release()
            return
        try:
            self.loop.call_soon_threadsafe(self.release)
        except RuntimeError:  # the loop is closed: nobody waits on this gate any more
            pass

    def release(self) -> None:
        self.holder = None
        self._task = None
        if self._warning is not None:
            self._warning.cancel()
            self._warning = None
        self._lock.release()

    def _warn(self) -> None:
        self._warning = None
        task = self._task
        where = io.StringIO()
        if task is not None and not task.done():
            task.print_stack(limit=8, file=where)
        logger.warning(
            "a transaction has held the write lock of %s for %.1f s while %d writer(s) wait; "
            "keep unrelated awaits out of write transactions. Where its task is now:\n%s",
            self.name,
            time.monotonic() - self.since,
            self.waiting,
            where.getvalue().rstrip(),
        )


_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, WriteGate]] = (
    weakref.WeakKeyDictionary()
)


def write_gate(name: str) -> WriteGate:
    """The gate of database ``name`` for the running loop (made on first use)."""
    per_loop = _gates.setdefault(asyncio.get_running_loop(), {})
    gate = per_loop.get(name)
    if gate is None:
        gate = per_loop[name] = WriteGate(name)
    return gate


def _gate_name(database: str, uri: bool) -> str:
    """One name per database file: its real path (or the memdb name of ``:memory:``)."""
    if uri:
        path = database[5:].split("?", 1)[0] if database.startswith("file:") else database
        if "vfs=memdb" in database or "mode=memory" in database:
            return database.split("?", 1)[0]
        database = path
    return os.path.realpath(database)


# ---- the DB-API facade, run inside SQLAlchemy's greenlet ----------------------------------


class AioliteCursor:
    """A synchronous DB-API cursor over :class:`aiolite.Connection` (SQLAlchemy calls it
    from a greenlet).  Buffers all rows of a statement: its first chunk comes back with the
    execute (1 round trip), the rest, if any, in one more."""

    server_side = False

    def __init__(self, conn: AioliteDBAPIConnection) -> None:
        self._conn = conn
        self._rows: deque[Any] = deque()
        self._cursor: Optional[aiolite.Cursor] = None
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: Optional[int] = None
        self.arraysize = 1

    def execute(self, operation: str, parameters: Any = None) -> Any:
        return await_(self._run(operation, parameters, many=False))

    def executemany(self, operation: str, seq_of_parameters: Any) -> Any:
        return await_(self._run(operation, seq_of_parameters, many=True))

    async def _run(self, sql: str, params: Any, *, many: bool) -> None:
        conn = self._conn
        driver = conn.driver_connection
        # Whether this statement joins a transaction that already ran statements: only
        # then can a busy error mean SQLite refused to upgrade a read to a write.
        began_before = driver.in_transaction
        begin = await conn._prepare(sql)
        if self._cursor is not None:
            await self._cursor.close()
            self._cursor = None
        try:
            if many:
                cursor = await driver.executemany(sql, params, begin=begin)
            elif begin is None:
                cursor = await driver.execute(sql, () if params is None else params)
            else:
                cursor = await driver.execute(sql, () if params is None else params, begin=begin)
        except sqlite3.OperationalError as exc:
            conn._release_if_idle()
            deferred = began_before and conn.begin_mode == "deferred"
            if deferred and _is_write(sql) and aiolite.is_busy(exc):
                raise _upgrade_refused(exc) from exc
            raise
        except BaseException:
            conn._release_if_idle()
            raise
        if conn._autocommit:
            conn._release_if_idle()
        self.description = cursor.description
        self.rowcount = cursor.rowcount
        self.lastrowid = cursor.lastrowid
        await self._collect(cursor)

    async def _collect(self, cursor: aiolite.Cursor) -> None:
        self._rows = deque(await cursor.fetchall()) if cursor.description else deque()
        await cursor.close()

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: Optional[int] = None) -> Sequence[Any]:
        n = self.arraysize if size is None else size
        rows = self._rows
        return [rows.popleft() for _ in range(min(n, len(rows)))]

    def fetchall(self) -> Sequence[Any]:
        out = list(self._rows)
        self._rows.clear()
        return out

    def close(self) -> None:
        self._rows.clear()

    async def _async_soft_close(self) -> None:
        """SQLAlchemy's asyncio layer calls this before handing a result to sync code;
        rows are already buffered and the aiolite cursor closed, so there is nothing to do."""

    def setinputsizes(self, *sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

    def __iter__(self) -> Any:
        while self._rows:
            yield self._rows.popleft()


class AioliteServerSideCursor(AioliteCursor):
    """A cursor that streams rows in chunks instead of buffering the whole result
    (``stream_results=True``, ``AsyncSession.stream()``)."""

    server_side = True

    async def _collect(self, cursor: aiolite.Cursor) -> None:
        self._cursor = cursor
        self._conn._streams.add(self)

    def fetchone(self) -> Any:
        return None if self._cursor is None else await_(self._cursor.fetchone())

    def fetchmany(self, size: Optional[int] = None) -> Sequence[Any]:
        if self._cursor is None:
            return []
        return await_(self._cursor.fetchmany(self.arraysize if size is None else size))

    def fetchall(self) -> Sequence[Any]:
        return [] if self._cursor is None else await_(self._cursor.fetchall())

    def close(self) -> None:
        if self._cursor is not None:
            await_(self._cursor.close())
            self._cursor = None
        self._conn._streams.discard(self)

    def _abandon(self) -> None:
        """The connection goes back to the pool: end the statement, so its read snapshot
        does not outlive the session (0 round trips: the release is queued)."""
        cursor, self._cursor = self._cursor, None
        if cursor is not None:
            cursor.close_now()

    def __iter__(self) -> Any:
        while True:
            row = self.fetchone()
            if row is None:
                return
            yield row


class AioliteDBAPIConnection(AdaptedConnection):
    """A synchronous DB-API connection over :class:`aiolite.Connection`.

    The driver connection runs in sqlite3's autocommit mode; this facade sends ``BEGIN``
    (or ``BEGIN IMMEDIATE``) itself before the first statement of each transaction.
    """

    __slots__ = (
        "_autocommit",
        "_gate_name",
        "_holding",
        "_streams",
        "begin_mode",
        "dbapi",
        "default_begin_mode",
        "hold_warning",
        "write_timeout",
    )

    def __init__(
        self,
        dbapi: AioliteDBAPI,
        connection: aiolite.Connection,
        begin: str,
        gate: str,
        write_timeout: float = WRITE_TIMEOUT,
        hold_warning: float = HOLD_WARNING,
    ) -> None:
        self.dbapi = dbapi
        # SQLAlchemy types this slot with its own protocol; aiolite.Connection is what
        # run_async() and driver_connection hand out.
        self._connection = connection  # type: ignore[assignment]
        self._autocommit = False
        self.default_begin_mode = begin
        self.begin_mode = begin
        self._gate_name = gate
        self._holding: Optional[WriteGate] = None
        self.write_timeout = write_timeout
        self.hold_warning = hold_warning
        # Server-side cursors still open: a stream abandoned half-read keeps its statement,
        # and with it an old snapshot, until the connection is reset (rollback on checkin).
        self._streams: set[AioliteServerSideCursor] = set()

    @property
    def driver_connection(self) -> aiolite.Connection:
        return self._connection  # type: ignore[return-value]

    async def _prepare(self, sql: str) -> Optional[str]:
        """Queue for the write gate if ``sql`` needs it; return the ``begin=`` kind that
        opens the transaction with the statement (None: no BEGIN to send)."""
        conn = self.driver_connection
        write = _is_write(sql)
        if self._autocommit or conn.in_transaction:
            if write and self._holding is None:
                await self._take_gate()  # a write without a transaction, or a deferred one's
            return None
        if not _needs_begin(sql):
            return None
        if self.begin_mode == "immediate" or write:
            await self._take_gate()
            return "IMMEDIATE"
        return "DEFERRED"

    async def _take_gate(self) -> None:
        gate = write_gate(self._gate_name)
        await gate.acquire(self, self.write_timeout, self.hold_warning)
        self._holding = gate

    def _release_if_idle(self) -> None:
        """Give the gate back once no transaction of ours is open any more."""
        if self._holding is not None and not self.driver_connection.in_transaction:
            self._release()

    def _release(self) -> None:
        gate, self._holding = self._holding, None
        if gate is not None:
            gate.release()

    # sqlite3's spelling of autocommit, which SQLAlchemy's pysqlite dialect sets and reads.
    @property
    def isolation_level(self) -> Optional[str]:
        return None if self._autocommit else ""

    @isolation_level.setter
    def isolation_level(self, value: Optional[str]) -> None:
        if value is None and not self._autocommit and self.driver_connection.in_transaction:
            self.commit()  # as sqlite3 does when switching to autocommit
        self._autocommit = value is None

    @property
    def in_transaction(self) -> bool:
        return self.driver_connection.in_transaction

    def cursor(self, server_side: bool = False) -> AioliteCursor:
        return AioliteServerSideCursor(self) if server_side else AioliteCursor(self)

    def execute(self, operation: str, parameters: Any = None) -> AioliteCursor:
        cursor = self.cursor()
        cursor.execute(operation, parameters)
        return cursor

    def commit(self) -> None:
        try:
            if self.driver_connection.in_transaction:
                await_(self.driver_connection.commit())
        finally:
            self._release_if_idle()

    def rollback(self) -> None:
        # Also SQLAlchemy's reset when a connection returns to the pool: no stream of the
        # session that used it may survive into the next one.
        self._close_streams()
        try:
            if self.driver_connection.in_transaction:
                await_(self.driver_connection.rollback())
        finally:
            self._release_if_idle()

    def _close_streams(self) -> None:
        streams, self._streams = self._streams, set()
        for stream in streams:
            stream._abandon()

    def ping(self) -> bool:
        """SQLAlchemy's pre-ping: one statement outside any transaction (no BEGIN), so a
        transaction mode chosen at checkout (aiolite_begin) still applies to the first
        statement of the session."""
        driver = self.driver_connection
        cursor = await_(driver.execute("SELECT 1"))
        cursor.close_now()
        return True

    def close(self) -> None:
        self._close_streams()
        self._release()  # closing rolls back whatever was open
        await_(self.driver_connection.close())

    def terminate(self) -> None:
        """Close without waiting: for connections SQLAlchemy gives up on (a cancelled
        checkout, garbage collection outside the event loop)."""
        gate, self._holding = self._holding, None
        if gate is not None:
            gate.release_from_anywhere()
        self.driver_connection.stop()

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        await_(self.driver_connection.create_function(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        # Anything else sqlite3 has (create_collation, set_authorizer...) is a coroutine
        # on aiolite.Connection; run it to completion.
        attr = getattr(self.driver_connection, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            return await_(result) if hasattr(result, "__await__") else result

        return call


class AioliteDBAPI:
    """The DB-API "module" the dialect hands to SQLAlchemy: sqlite3's exceptions and
    constants, and a ``connect()`` that opens an :class:`aiolite.Connection`."""

    paramstyle = "qmark"
    Binary = sqlite3.Binary
    sqlite_version = sqlite3.sqlite_version
    sqlite_version_info = sqlite3.sqlite_version_info
    PARSE_COLNAMES = sqlite3.PARSE_COLNAMES
    PARSE_DECLTYPES = sqlite3.PARSE_DECLTYPES
    Warning = sqlite3.Warning
    Error = sqlite3.Error
    InterfaceError = sqlite3.InterfaceError
    DatabaseError = sqlite3.DatabaseError
    DataError = sqlite3.DataError
    OperationalError = sqlite3.OperationalError
    IntegrityError = sqlite3.IntegrityError
    InternalError = sqlite3.InternalError
    ProgrammingError = sqlite3.ProgrammingError
    NotSupportedError = sqlite3.NotSupportedError

    def connect(
        self,
        database: str,
        *,
        begin: str = "immediate",
        pragmas: Optional[dict[str, Any]] = None,
        write_timeout: float = WRITE_TIMEOUT,
        hold_warning: float = HOLD_WARNING,
        async_creator_fn: Any = None,
        **kwargs: Any,
    ) -> AioliteDBAPIConnection:
        mode = _check_mode(begin)
        gate = _gate_name(database, bool(kwargs.get("uri")))
        waits = {"write_timeout": float(write_timeout), "hold_warning": float(hold_warning)}
        if async_creator_fn is None:
            kwargs["isolation_level"] = None  # BEGIN is ours to send
            # Set as the connection opens: a switch to WAL then waits for other processes
            # switching the same new file (several app workers starting at once).
            conn = await_(aiolite.connect(database, pragmas=pragmas, **kwargs))
            return AioliteDBAPIConnection(self, conn, mode, gate, **waits)
        conn = await_(async_creator_fn(database, **kwargs))
        try:
            settings = [
                aiolite.pragma_statement(name, value)
                for name, value in (pragmas or {}).items()
                if value is not None
            ]
            if settings:
                await_(conn.executescript(";\n".join(settings)))
        except BaseException:
            await_(conn.close())
            raise
        return AioliteDBAPIConnection(self, conn, mode, gate, **waits)


# ---- the dialect ---------------------------------------------------------------------------


class _BeginCharacteristic(ConnectionCharacteristic):
    """``aiolite_begin``: per-connection choice of BEGIN or BEGIN IMMEDIATE, reset when the
    connection goes back to the pool."""

    transactional: ClassVar[bool] = True

    def reset_characteristic(self, dialect: Any, dbapi_conn: Any) -> None:
        dbapi_conn.begin_mode = dbapi_conn.default_begin_mode

    def set_characteristic(self, dialect: Any, dbapi_conn: Any, value: Any) -> None:
        dbapi_conn.begin_mode = _check_mode(value)

    def get_characteristic(self, dialect: Any, dbapi_conn: Any) -> Any:
        return dbapi_conn.begin_mode


class AioliteExecutionContext(SQLiteExecutionContext):
    def create_server_side_cursor(self) -> Any:
        return self._dbapi_connection.cursor(server_side=True)


class AioliteDialect(SQLiteDialect_pysqlite):
    """``sqlite+aiolite://``: SQLAlchemy's SQLite dialect on aiolite's worker threads."""

    driver = "aiolite"
    is_async = True
    supports_statement_cache = True
    supports_server_side_cursors = True
    has_terminate = True
    execution_ctx_cls = AioliteExecutionContext

    connection_characteristics = util.immutabledict(
        {
            **SQLiteDialect_pysqlite.connection_characteristics,
            "aiolite_begin": _BeginCharacteristic(),
        }
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Holds the engine's in-memory database open while the engine lives, even when the
        # pool has closed every connection.
        self._memory_keeper: Optional[sqlite3.Connection] = None

    @classmethod
    def import_dbapi(cls) -> Any:
        return AioliteDBAPI()

    def retrieve_dbapi_version(self, dbapi: Any) -> Any:
        return util.parse_version_string(aiolite.__version__)

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        # :memory: too: each checkout gets its own connection to the engine's shared
        # in-memory database (see create_connect_args), never one connection for all.
        return pool.AsyncAdaptedQueuePool

    def create_connect_args(self, url: URL) -> ConnectArgsType:
        query = dict(url.query)
        begin = _check_mode(query.pop("begin", "immediate"))
        waits: dict[str, Any] = {
            key: float(str(query.pop(key)))
            for key in ("write_timeout", "hold_warning")
            if key in query
        }
        pragmas = dict(aiolite.DEFAULT_PRAGMAS)
        for name in list(query):
            if name in pragmas or name in ("busy_timeout", "cache_size", "mmap_size"):
                pragmas[name] = query.pop(name)
        memory = not self._is_url_file_db(url)
        if memory:
            pragmas.pop("journal_mode", None)  # in-memory databases have no WAL
        args, kwargs = super().create_connect_args(url.set(query=query))
        if memory:
            name = f"file:/aiolite-sqlalchemy-{id(self):x}-{next(_memory_names)}?vfs=memdb"
            if self._memory_keeper is None:
                keeper = sqlite3.connect(name, uri=True, check_same_thread=False)
                self._memory_keeper = keeper
                # Closed when the engine's dialect is collected (or at exit): an unclosed
                # sqlite3 connection warns on Python 3.13.
                weakref.finalize(self, keeper.close)
            args = [name]
            kwargs["uri"] = True
        kwargs.pop("check_same_thread", None)  # aiolite's worker owns the connection
        return args, {**kwargs, "begin": begin, "pragmas": pragmas, **waits}

    def get_driver_connection(self, connection: DBAPIConnection) -> Any:
        return connection.driver_connection

    def do_ping(self, dbapi_connection: DBAPIConnection) -> bool:
        return bool(dbapi_connection.ping())

    def do_terminate(self, dbapi_connection: DBAPIConnection) -> None:
        dbapi_connection.terminate()

    def is_disconnect(self, e: Any, connection: Any, cursor: Any) -> bool:
        if isinstance(e, aiolite.ConnectionClosedError):
            return True
        return bool(super().is_disconnect(e, connection, cursor))


dialect = AioliteDialect
