"""Connection and connect(): the aiosqlite-compatible layer.

Every public method is a thin delegation: it builds a :class:`~aiolite._worker.Job` and
awaits it through the waker of the running event loop.  The comment on each method says how
many thread round trips it costs; ``statistics()`` counts them.
"""

from __future__ import annotations

import sqlite3
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, NoReturn, Optional, Union, overload

from ._backends import Waker, WakerCache, running_loop
from ._backends._base import queued_ahead
from ._blob import Blob
from ._closing import Opening
from ._compat import RawConnection
from ._context import Result
from ._cursor import Cursor
from ._exceptions import ConnectionClosedError
from ._inline import MANY, SCRIPT, Inline, budget_of
from ._pragmas import as_str, pragma_statement, run_pragma
from ._types import (
    AuthorizerCallback,
    BackupProgress,
    Connector,
    IsolationLevel,
    Parameters,
    ProgressHandler,
    RowFactory,
    StrPath,
    TextFactory,
    TraceCallback,
)
from ._worker import (
    Job,
    Worker,
    close_connection,
    lost_transaction_error,
    statement_job,
)

__all__ = ["Connection", "ConnectionStatistics", "connect"]

_NO_PARAMS: tuple[()] = ()
_new = object.__new__  # an instance with no __init__ run (see execute)
_COMMIT = "COMMIT"
_COMMIT_STMT = (_COMMIT, _NO_PARAMS)  # a commit() runs where execute("COMMIT") would
_ISOLATION_LEVELS = ("", "DEFERRED", "IMMEDIATE", "EXCLUSIVE")
_DUMP_CHUNK = 512


@dataclass(frozen=True)
class ConnectionStatistics:
    """A snapshot of a connection's worker, from ``Connection.statistics()``."""

    #: Jobs whose outcome was handed back to a waiting task since the connection opened.
    round_trips: int
    #: Jobs queued and not yet started.
    queued: int
    #: Whether the connection still accepts work.
    open: bool
    #: Calls that ran on the event loop's thread, with no round trip (adaptive execution).
    inline_calls: int = 0
    #: Of those tried there, reads that overran the budget and were run again on the worker.
    inline_moved: int = 0


# ---- worker side ------------------------------------------------------------------------


def _open(_: None, worker: Worker, connector: Connector) -> tuple[Any, ...]:
    conn = connector()
    if not isinstance(conn, sqlite3.Connection):
        raise TypeError(
            f"the connector returned {type(conn).__name__}; it must return the "
            "sqlite3.Connection it opened (e.g. lambda: sqlite3.connect(path))"
        )
    worker.adopt(conn)
    if worker.inline is not None and not conn.in_transaction:
        worker.inline.learn_at_open(conn)
    return (
        conn.isolation_level,
        conn.row_factory,
        conn.text_factory,
        getattr(conn, "autocommit", None),
    )


def _method(conn: sqlite3.Connection, name: str, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
    return getattr(conn, name)(*args, **kw)


def _commit(conn: sqlite3.Connection, worker: Worker) -> None:
    if worker.lost_transaction:
        raise lost_transaction_error()
    conn.commit()


def _rollback(conn: sqlite3.Connection, worker: Worker) -> None:
    conn.rollback()
    worker.lost_transaction = False


def _set_progress_handler(
    conn: sqlite3.Connection, worker: Worker, handler: Optional[ProgressHandler], n: int
) -> None:
    worker.set_progress_handler(conn, handler, n)


def _setattr(conn: sqlite3.Connection, name: str, value: Any) -> None:
    setattr(conn, name, value)


def _set_row_factory(conn: sqlite3.Connection, worker: Worker, factory: RowFactory) -> None:
    conn.row_factory = factory
    if worker.raw is not None:  # it took the connection's when it was made
        worker.raw.row_factory = factory


def _execute_fetchall(
    conn: sqlite3.Connection, sql: str, params: Parameters, row_factory: RowFactory
) -> list[Any]:
    cur = conn.cursor()
    cur.row_factory = row_factory
    return cur.execute(sql, params).fetchall()  # type: ignore[arg-type]


def _execute_insert(
    conn: sqlite3.Connection, sql: str, params: Parameters, row_factory: RowFactory
) -> Any:
    cur = conn.cursor()
    cur.row_factory = row_factory
    cur.execute(sql, params)  # type: ignore[arg-type]
    return cur.execute("SELECT last_insert_rowid()").fetchone()


class _Dump:
    """The sqlite3 dump generator, kept (and finished) on the worker thread."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines: Optional[Iterator[str]] = None


def _dump_chunk(conn: sqlite3.Connection, dump: _Dump, n: int) -> list[str]:
    if dump.lines is None:
        dump.lines = conn.iterdump()
    return list(islice(dump.lines, n))


def _dump_close(_: Any, dump: _Dump) -> None:
    dump.lines = None


def _backup(
    conn: sqlite3.Connection, target: Union[Worker, sqlite3.Connection], kw: dict[str, Any]
) -> None:
    if isinstance(target, Worker):
        with target.holding() as raw:  # its own thread (or loop) must not use it meanwhile
            if raw is None:
                raise ConnectionClosedError("Connection closed: the backup target is closed")
            conn.backup(raw, **kw)
        return
    conn.backup(target, **kw)


# ---- loop side ---------------------------------------------------------------------------


class Connection(Opening):
    """An async SQLite connection running on its own worker thread.

    Create it with :func:`connect`; await it or use ``async with``.
    """

    def __init__(
        self,
        connector: Connector,
        iter_chunk_size: int = 64,
        loop: Any = None,
        *,
        inline: Union[bool, float] = False,
    ) -> None:
        if loop is not None:
            warnings.warn(
                "aiolite.Connection ignores the `loop` parameter; drop it",
                DeprecationWarning,
                stacklevel=2,
            )
        if not isinstance(iter_chunk_size, int) or iter_chunk_size < 1:
            raise ValueError(f"iter_chunk_size must be an int >= 1, got {iter_chunk_size!r}")
        self._connector = connector
        self._iter_chunk_size = iter_chunk_size
        self._worker = Worker()
        budget = budget_of(inline)
        if budget is not None:
            self._worker.inline = Inline(self._worker, budget)
        self._wakers = WakerCache()
        # Mirrors of settings whose setters run on the worker (they may commit), so that
        # reading them back never crosses threads.
        self._isolation_level: IsolationLevel = ""
        self._row_factory: RowFactory = None
        self._text_factory: TextFactory = str
        self._autocommit: Any = None
        self._hooks: set[str] = set()

    def __del__(self) -> None:
        worker = getattr(self, "_worker", None)
        if worker is None or worker.connection is None or not worker.accepting:
            return  # never opened, or its close was already asked for
        warnings.warn(
            f"{self!r} was deleted before being closed; "
            "use 'async with aiolite.connect(...)' or 'await db.close()'",
            ResourceWarning,
            stacklevel=1,
        )
        worker.stop()

    def __repr__(self) -> str:
        w = self._worker
        state = "open" if w.connection is not None and w.accepting else "closed"
        return f"<aiolite.Connection [{state}, {w.queued} queued, {w.round_trips} round trips]>"

    # ---- opening and closing ----

    async def _open(self) -> Connection:
        worker = self._worker
        if worker.connection is not None:
            return self
        if worker.thread.ident is not None or not worker.accepting:
            raise sqlite3.ProgrammingError(
                "this connection was already opened once; create a new one with aiolite.connect()"
            )
        worker.start()
        try:
            settings = await self._wakers.current().wait(
                worker, Job(_open, (worker, self._connector))
            )
        except BaseException:
            worker.stop()
            raise
        self._isolation_level, self._row_factory, self._text_factory, self._autocommit = settings
        self._settings_changed()
        return self

    def _settings_changed(self) -> None:
        """Tell adaptive execution whether sqlite3 opens transactions by itself."""
        inline = self._worker.inline
        if inline is not None:
            legacy = getattr(sqlite3, "LEGACY_TRANSACTION_CONTROL", -1)
            inline.implicit_begin = self._isolation_level is not None and (
                self._autocommit is None or self._autocommit == legacy
            )

    async def close(self) -> None:
        """Run what is queued, close the connection and join its thread. Idempotent.

        SQLite rolls back a transaction left open.  **Cancellation**: the close still
        completes in the background; the running statement is interrupted.  1 round trip.
        """
        worker = self._worker
        if worker.thread.ident is None:
            worker.stop()
            return
        if not worker.finished:
            await self._wakers.current().wait(worker, Job(close_connection, (worker,), final=True))
        worker.join()

    def stop(self) -> _Stopped:
        """Close without waiting (usable without an event loop); await the result to wait."""
        self._worker.stop()
        return _Stopped(self)

    # ---- shims for aiosqlite internals that its test suite (and some code) touches ----

    @property
    def _running(self) -> bool:
        """aiosqlite: whether the worker thread still accepts work."""
        return self._worker.thread.is_alive() and self._worker.accepting

    @property
    def _tx(self) -> Any:
        """aiosqlite: the job queue (only ``empty()``/``qsize()`` are meaningful)."""
        return self._worker._queue

    @property
    def _conn(self) -> RawConnection:
        """aiosqlite: the raw connection; settings set on it reach this Connection."""
        if self._worker.connection is None:
            raise self._not_open_error()
        return RawConnection(self)

    @property
    def _connection(self) -> Optional[RawConnection]:
        """aiosqlite: the raw connection, or None when not open."""
        return None if self._worker.connection is None else RawConnection(self)

    @property
    def _thread(self) -> Any:
        """aiosqlite: the worker thread (``_thread.is_alive()``)."""
        return self._worker.thread

    # ---- the hot path ----

    def _check_open(self) -> None:
        worker = self._worker
        if worker.connection is None or not worker.accepting:
            raise self._not_open_error()

    def _not_open_error(self) -> sqlite3.ProgrammingError:
        if self._worker.thread.ident is None:
            return sqlite3.ProgrammingError(
                "the connection is not open yet: use 'await aiolite.connect(...)' or "
                "'async with aiolite.connect(...) as db' before using it"
            )
        return ConnectionClosedError(
            "Connection closed: this aiolite connection was closed; "
            "open a new one with aiolite.connect()"
        )

    # These return the awaitable instead of being coroutines: one frame less for every
    # resume on the hot path.  They raise at once if the connection is not usable.

    def _call(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """Run ``fn(sqlite3_connection, *args)`` on the worker: 1 round trip."""
        return self._call_job(Job(fn, args))

    def _call_job(self, job: Job) -> Awaitable[Any]:
        worker = self._worker
        waker = self._waker()
        inline = worker.inline
        if inline is not None and job.stmt is not None:
            how = inline.admit(job.key)
            if how is not None:
                return waker.inline(worker, job.fn, job.args, job.key, job.stmt, how, job)
        return waker.wait(worker, job)

    def _waker(self) -> Waker:
        """The running loop's waker, once the connection is known to be usable."""
        worker = self._worker
        if worker.connection is None or worker.deferred_error is not None:
            self._refuse()
        wakers = self._wakers
        # WakerCache.current(), inlined: the hot path
        return wakers.waker if running_loop() is wakers.key else wakers.current()

    def _refuse(self) -> NoReturn:
        """Raise why no call can be made now: not open, or a deferred error to report."""
        worker = self._worker
        if worker.connection is None:
            raise self._not_open_error()
        error, worker.deferred_error = worker.deferred_error, None
        assert error is not None
        raise error

    def _call_stmt(
        self, stmt: tuple[str, Any], fn: Callable[..., Any], *args: Any, key: Any = None
    ) -> Awaitable[Any]:
        """Like _call, for the statement ``stmt`` (sql, parameters; in ``args`` too).

        If cancelled, no implicit transaction is left open; the worker keeps the statement's
        run time history under its SQL to decide whether it may batch around it, or run
        it on the loop thread (see _inline).
        """
        return self._dispatch(fn, args, stmt[0] if key is None else key, stmt)

    def _dispatch(
        self, fn: Callable[..., Any], args: tuple[Any, ...], key: Any, stmt: Any
    ) -> Awaitable[Any]:
        """Where a statement goes that Cursor.__await__ did not run as remembered: here
        after all (admitted, maybe after a loop turn), or to the worker."""
        worker = self._worker
        waker = self._waker()
        inline = worker.inline
        if inline is not None:
            how = inline.admit(key)
            if (
                how is None
                and key is stmt[0]
                and key not in inline.kinds
                and stmt[1] is not SCRIPT
                and stmt[1] is not MANY
                and not worker._tickets
                and inline.read_here(key)
            ):  # a read never seen: learned here, and run here at once
                how = inline.admit(key)
            if how is not None:  # known short: on this thread, if the worker is idle
                return waker.inline(worker, fn, args, key, stmt, how)
            if queued_ahead(worker, key):
                return waker.behind(worker, statement_job(fn, args, key, stmt))
            if key is stmt[0] and key not in inline.kinds:  # the worker learns its kind
                inline.learn(key)
        return waker.wait(worker, statement_job(fn, args, key, stmt))

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        self._check_open()
        self._worker.post(fn, *args)

    # ---- statements ----

    def cursor(self) -> Result[Cursor]:
        """Create a cursor. 0 round trips."""
        return Result(self._cursor())

    async def _cursor(self) -> Cursor:
        self._check_open()
        return Cursor(self)

    @overload
    def execute(
        self, sql: str, parameters: Optional[Parameters] = None, *, begin: None = None
    ) -> Cursor: ...

    @overload
    def execute(
        self, sql: str, parameters: Optional[Parameters] = None, *, begin: str
    ) -> Result[Cursor]: ...

    def execute(
        self, sql: str, parameters: Optional[Parameters] = None, *, begin: Optional[str] = None
    ) -> Union[Cursor, Result[Cursor]]:
        """Execute a statement and prefetch its first rows; returns a cursor. 1 round trip.

        ``begin`` (an aiolite addition): ``"DEFERRED"``, ``"IMMEDIATE"`` or ``"EXCLUSIVE"``
        opens a transaction of that kind first, unless one is open, in the same round trip.

        **Cancellation**: a statement that had not started never runs; a running one is
        aborted; if it opened a transaction, that transaction is rolled back.  One that
        finished before the abort took effect returns its cursor.
        """
        params = _NO_PARAMS if parameters is None else parameters
        if begin is None:
            # Cursor(self), without its __init__ frame (~2% of a short INSERT run on the
            # loop thread): keep in step with Cursor.__init__.  Awaiting it runs the
            # statement (Cursor.__await__).
            cursor = _new(Cursor)
            cursor._conn = self
            cursor.iter_chunk_size = self._iter_chunk_size
            cursor.row_factory = self._row_factory
            cursor._closed = False  # read by every fetch: Python 3.11 specializes it
            cursor._sql = sql
            cursor._params = params
            return cursor
        return Result(self._via_cursor("execute", sql, params, begin=begin))

    def executemany(
        self, sql: str, parameters: Iterable[Parameters], *, begin: Optional[str] = None
    ) -> Result[Cursor]:
        """Execute a DML statement for each parameter set; returns a cursor. 1 round trip.

        ``begin``: as for :meth:`execute`.
        """
        return Result(self._via_cursor("executemany", sql, parameters, begin=begin))

    def executescript(self, sql_script: str) -> Result[Cursor]:
        """Execute a script of statements; returns a cursor. 1 round trip."""
        return Result(self._via_cursor("executescript", sql_script))

    async def _via_cursor(self, method: str, *args: Any, **kw: Any) -> Cursor:
        cursor = Cursor(self)
        await getattr(cursor, method)(*args, **kw)
        return cursor

    def execute_insert(self, sql: str, parameters: Optional[Parameters] = None) -> Result[Any]:
        """Execute an INSERT and return ``(last_insert_rowid,)`` as a row. 1 round trip."""
        return Result(self._fetch_helper(_execute_insert, sql, parameters))

    def execute_fetchall(
        self, sql: str, parameters: Optional[Parameters] = None
    ) -> Result[list[Any]]:
        """Execute a query and return all its rows. 1 round trip."""
        return Result(self._fetch_helper(_execute_fetchall, sql, parameters))

    async def _fetch_helper(
        self, fn: Callable[..., Any], sql: str, parameters: Optional[Parameters]
    ) -> Any:
        params = _NO_PARAMS if parameters is None else parameters
        return await self._call_stmt((sql, params), fn, sql, params, self._row_factory)

    async def commit(self) -> None:
        """Commit the current transaction. 1 round trip.

        Raises ``sqlite3.OperationalError`` if SQLite rolled the transaction back because a
        write in it was cancelled: committing what came after would commit half of it.
        **Cancellation**: a COMMIT that started is never interrupted; it either happened
        (the call returns and the cancellation comes at the next await) or did not.
        """
        job = Job(_commit, (self._worker,), shielded=True, key=_COMMIT, stmt=_COMMIT_STMT)
        await self._call_job(job)

    async def rollback(self) -> None:
        """Roll back the current transaction (and clear a lost-transaction state). 1 round trip."""
        await self._call(_rollback, self._worker)

    async def interrupt(self) -> None:
        """Abort the statement running now, from any task. 0 round trips.

        Only that statement: other cursors of the connection keep their rows.  Works while
        a close() waits behind that statement, too.
        """
        if self._worker.connection is None:
            raise self._not_open_error()
        self._worker.abort_running()

    # ---- settings read without crossing threads ----

    @property
    def in_transaction(self) -> bool:
        return bool(self._worker.inspect("in_transaction"))

    @property
    def total_changes(self) -> int:
        return int(self._worker.inspect("total_changes"))

    @property
    def isolation_level(self) -> IsolationLevel:
        return self._isolation_level

    @isolation_level.setter
    def isolation_level(self, value: IsolationLevel) -> None:
        if value is not None:
            if not isinstance(value, str):
                raise TypeError(f"isolation_level must be str or None, not {type(value).__name__}")
            if value.upper() not in _ISOLATION_LEVELS:
                raise ValueError(
                    "isolation_level string must be '', 'DEFERRED', 'IMMEDIATE', or "
                    f"'EXCLUSIVE', got {value!r}"
                )
        # Runs on the worker, after everything queued before it (None commits first).
        self._post(_setattr, "isolation_level", value)
        self._isolation_level = value
        self._settings_changed()

    @property
    def row_factory(self) -> RowFactory:
        return self._row_factory

    @row_factory.setter
    def row_factory(self, factory: RowFactory) -> None:
        self._post(_set_row_factory, self._worker, factory)
        self._row_factory = factory

    @property
    def text_factory(self) -> TextFactory:
        return self._text_factory

    @text_factory.setter
    def text_factory(self, factory: TextFactory) -> None:
        self._post(_setattr, "text_factory", factory)
        self._text_factory = factory

    @property
    def autocommit(self) -> Any:
        """sqlite3's ``autocommit`` (Python 3.12+): True, False or LEGACY_TRANSACTION_CONTROL."""
        _require(3, 12, "autocommit")
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: Any) -> None:
        _require(3, 12, "autocommit")
        legacy = getattr(sqlite3, "LEGACY_TRANSACTION_CONTROL", -1)
        if value is not True and value is not False and value != legacy:
            raise ValueError(
                "autocommit must be True, False, or sqlite3.LEGACY_TRANSACTION_CONTROL, "
                f"got {value!r}"
            )
        self._post(_setattr, "autocommit", value)
        self._autocommit = value
        self._settings_changed()

    def statistics(self) -> ConnectionStatistics:
        """Return the round trips made so far and the jobs waiting (for tests and tuning)."""
        w = self._worker
        inline = w.inline
        return ConnectionStatistics(
            round_trips=w.round_trips,
            queued=w.queued,
            open=w.connection is not None and w.accepting,
            inline_calls=0 if inline is None else inline.calls,
            inline_moved=0 if inline is None else inline.moved,
        )

    # ---- sqlite3.Connection methods that run on the worker (1 round trip each) ----

    def _user_code(self, name: str) -> None:
        inline = self._worker.inline
        if inline is not None:
            # Before the registration runs: learned kinds are dropped from now on.
            inline.user_code(name)

    async def _set_hook(self, method: str, callback: Any, on: bool) -> None:
        """Install (or remove) an authorizer or a trace callback with sqlite3's ``method``.

        While one is set, every statement runs on the worker, as before (and is never
        EXPLAINed behind its back).  Marked before the job installs it and unmarked only
        after the job removed it: between the job's end and this task's next step other
        tasks run, and none of their calls may meet the hook on the loop thread (a seeded
        test caught traced statements there when the mark came after)."""
        if on:
            self._mark_hook(method, True)
        await self._invoke(method, callback)
        if not on:
            self._mark_hook(method, False)

    def _mark_hook(self, method: str, on: bool) -> None:
        inline = self._worker.inline
        if inline is not None:
            if on:
                self._hooks.add(method)
            else:
                self._hooks.discard(method)
            inline.set_hooked(bool(self._hooks))

    async def _invoke(self, method: str, /, *args: Any, **kw: Any) -> Any:
        return await self._call(_method, method, args, kw)

    async def create_function(
        self,
        name: str,
        num_params: int,
        func: Optional[Callable[..., Any]],
        *,
        deterministic: bool = False,
    ) -> None:
        """Register a SQL function; ``deterministic`` lets SQLite use it in indexes."""
        self._user_code(name)
        await self._invoke("create_function", name, num_params, func, deterministic=deterministic)

    async def create_aggregate(self, name: str, n_arg: int, aggregate_class: Any) -> None:
        """Register a SQL aggregate function (a class with ``step`` and ``finalize``)."""
        self._user_code(name)
        await self._invoke("create_aggregate", name, n_arg, aggregate_class)

    async def create_collation(
        self, name: str, callable: Optional[Callable[[str, str], int]]
    ) -> None:
        """Register (or remove, with None) a collation."""
        self._user_code(name)
        await self._invoke("create_collation", name, callable)

    async def create_window_function(
        self, name: str, num_params: int, aggregate_class: Any
    ) -> None:
        """Register an aggregate window function (Python 3.11+)."""
        _require(3, 11, "create_window_function()")
        self._user_code(name)
        await self._invoke("create_window_function", name, num_params, aggregate_class)

    async def set_authorizer(self, authorizer_callback: Optional[AuthorizerCallback]) -> None:
        """Set (or remove, with None) the authorizer called for each statement prepared."""
        callback = authorizer_callback
        if callback is None and sys.version_info < (3, 11):
            # sqlite3 before 3.11 keeps calling the authorizer it was given None for, and
            # every statement then fails "not authorized": one that allows all instead.
            callback = _allow_all
        await self._set_hook("set_authorizer", callback, authorizer_callback is not None)

    async def set_progress_handler(self, handler: Optional[ProgressHandler], n: int) -> None:
        """Call ``handler`` every ``n`` VM instructions; a true return aborts the statement.

        It runs beside aiolite's own handler (which aborts cancelled statements), not
        instead of it.
        """
        await self._call(_set_progress_handler, self._worker, handler, n)

    async def set_trace_callback(self, handler: Optional[TraceCallback]) -> None:
        """Call ``handler`` with the text of each statement executed."""
        await self._set_hook("set_trace_callback", handler, handler is not None)

    async def enable_load_extension(self, value: bool) -> None:
        """Allow or forbid loading SQLite extensions."""
        await self._invoke("enable_load_extension", value)

    async def load_extension(self, path: str, *, entrypoint: Optional[str] = None) -> None:
        """Load a SQLite extension from ``path``."""
        if entrypoint is None:
            await self._invoke("load_extension", path)
        else:
            await self._invoke("load_extension", path, entrypoint=entrypoint)

    async def getlimit(self, category: int) -> int:
        """Return a run-time limit such as ``sqlite3.SQLITE_LIMIT_LENGTH`` (Python 3.11+)."""
        _require(3, 11, "getlimit()")
        return int(await self._invoke("getlimit", category))

    async def setlimit(self, category: int, limit: int) -> int:
        """Set a run-time limit and return the previous value (Python 3.11+)."""
        _require(3, 11, "setlimit()")
        return int(await self._invoke("setlimit", category, limit))

    async def serialize(self, *, name: str = "main") -> bytes:
        """Return the database as bytes (Python 3.11+)."""
        _require(3, 11, "serialize()")
        return bytes(await self._invoke("serialize", name=name))

    async def deserialize(self, data: bytes, *, name: str = "main") -> None:
        """Replace the database with ``data`` from serialize() (Python 3.11+)."""
        _require(3, 11, "deserialize()")
        await self._invoke("deserialize", data, name=name)

    async def blobopen(
        self, table: str, column: str, row: int, *, readonly: bool = False, name: str = "main"
    ) -> Blob:
        """Open a BLOB for incremental I/O (Python 3.11+); use ``async with``."""
        _require(3, 11, "blobopen()")
        raw = await self._invoke("blobopen", table, column, row, readonly=readonly, name=name)
        return Blob(self, raw, await self._call(_blob_len, raw))

    def iterdump(self) -> AsyncIterator[str]:
        """Yield the database as SQL text, like ``sqlite3.Connection.iterdump()``.

        Use ``async for line in db.iterdump()``; lines come 512 per round trip.
        """
        return _DumpIterator(self)

    async def backup(
        self,
        target: Union[Connection, sqlite3.Connection],
        *,
        pages: int = -1,
        progress: Optional[BackupProgress] = None,
        name: str = "main",
        sleep: float = 0.250,
    ) -> None:
        """Copy this database into ``target`` with SQLite's online backup API.

        ``progress(status, remaining, total)`` is called on the worker thread.  1 round trip.
        """
        if target is self:
            raise ValueError(
                "backup target must be a different connection: open the destination with "
                "aiolite.connect(dest_path) or sqlite3.connect(dest_path)"
            )
        dest: Union[Worker, sqlite3.Connection] = (
            target._worker if isinstance(target, Connection) else target
        )
        kw = {"pages": pages, "progress": progress, "name": name, "sleep": sleep}
        await self._call(_backup, dest, kw)


def _blob_len(_: Any, raw: Any) -> int:
    return len(raw)


def _allow_all(*_: Any) -> int:
    return sqlite3.SQLITE_OK


def _require(major: int, minor: int, what: str) -> None:
    if sys.version_info < (major, minor):
        raise sqlite3.NotSupportedError(
            f"{what} needs Python {major}.{minor}+ (its sqlite3 module provides it); "
            f"this is Python {sys.version_info[0]}.{sys.version_info[1]}"
        )


class _DumpIterator:
    """``async for`` over ``iterdump()`` (a class, not an async generator: nothing to finalize)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._dump = _Dump()
        self._lines: list[str] = []
        self._done = False

    def __aiter__(self) -> _DumpIterator:
        return self

    async def __anext__(self) -> str:
        if not self._lines:
            if self._done:
                raise StopAsyncIteration
            self._lines = await self._conn._call(_dump_chunk, self._dump, _DUMP_CHUNK)
            self._lines.reverse()
            self._done = len(self._lines) < _DUMP_CHUNK
            if not self._lines:
                raise StopAsyncIteration
        return self._lines.pop()

    def __del__(self) -> None:
        # Stopped early: let the dump's statements finish on their own thread.
        if not self._done:
            self._conn._worker.post(_dump_close, self._dump)


class _Stopped:
    """What ``Connection.stop()`` returns: ignore it, or await it to wait for the thread."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __await__(self) -> Generator[Any, None, None]:
        return self._conn.close().__await__()


def connect(
    database: StrPath,
    *,
    iter_chunk_size: int = 64,
    loop: Any = None,
    pragmas: Optional[Mapping[str, Any]] = None,
    inline: Union[bool, float] = True,
    **kwargs: Any,
) -> Connection:
    """Open a connection; ``await`` it or use ``async with``.

    ``kwargs`` go to :func:`sqlite3.connect` (``timeout``, ``detect_types``,
    ``isolation_level``, ``uri``, ``autocommit``...).  ``iter_chunk_size`` is how many rows
    ``execute`` prefetches and ``async for`` fetches first.

    ``pragmas`` (an aiolite addition) are set in order as the connection opens, e.g.
    ``{"journal_mode": "WAL", "foreign_keys": True}``.  Unlike the same PRAGMAs sent with
    ``execute``, a switch to WAL waits (up to ``timeout``) for other processes doing the
    same on a new file, where SQLite refuses all but one of them at once.

    ``inline`` (an aiolite addition): adaptive execution.  A statement known to be short
    runs on the event loop's thread while the worker is idle, with no thread round trip;
    a read that runs longer than the budget (1 ms; pass seconds to change it) moves to
    the worker.  ``inline=False`` sends every call to the worker.  See docs/design.md.
    """
    if loop is not None:
        warnings.warn(
            "aiolite.connect() ignores the `loop` parameter; drop it",
            DeprecationWarning,
            stacklevel=2,
        )
    location = _location(database)
    statements = [pragma_statement(n, v) for n, v in (pragmas or {}).items() if v is not None]
    timeout = float(kwargs.get("timeout", 5.0))
    if inline is not False and inline is not None:
        # Adaptive execution uses the connection from the loop thread, never concurrently
        # with the worker (Worker.token); with the check kept, it stays off.
        kwargs.setdefault("check_same_thread", False)

    def connector() -> sqlite3.Connection:
        conn: sqlite3.Connection = sqlite3.connect(location, **kwargs)
        try:
            for sql in statements:
                run_pragma(conn, sql, timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    return Connection(connector, iter_chunk_size, inline=inline)


def _location(database: Any) -> str:
    path = as_str(database)
    if isinstance(path, str) and path.startswith("dqlite://"):
        raise sqlite3.NotSupportedError(
            "connect() opens a SQLite file; a dqlite cluster is opened with "
            f"aiolite.open({path!r}), the Database API (see docs/scale-out.md)"
        )
    return path if isinstance(path, str) else str(path)


Connection.__module__ = "aiolite"
ConnectionStatistics.__module__ = "aiolite"
