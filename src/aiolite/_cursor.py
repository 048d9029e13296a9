"""Cursor: the aiosqlite-compatible cursor, and the worker-side functions it runs.

The rows live in a :class:`_Results` shared with the worker: jobs (running on the worker
thread, in queue order) fill ``rows`` and set the metadata; the loop thread only reads it
after the job that wrote it completed, and pops rows from ``rows``.  Because the worker
writes the rows itself, a fetch whose waiting task was cancelled after the rows were read
still leaves them in the buffer: cancelling a fetch never silently skips rows.

Thread round trips: ``execute`` prefetches the first ``iter_chunk_size`` rows with the
statement, so for results that fit, ``fetchone``/``fetchmany``/``fetchall``/``close`` cost
nothing more; ``async for`` fetches in chunks that double up to ``MAX_CHUNK`` rows.
"""

from __future__ import annotations

import sqlite3
import types
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Coroutine, Generator, Iterable
from queue import Empty
from time import perf_counter
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union

from ._backends import running_loop
from ._backends._asyncio import Ready
from ._closing import DONE, Closing
from ._inline import LOCKED, MANY, SCRIPT, SHORT_HERE
from ._types import Parameters, RowFactory
from ._worker import INLINE_STEPS, Job, Worker

if TYPE_CHECKING:
    from ._connection import Connection
    from ._inline import Inline

__all__ = ["MAX_CHUNK", "Cursor"]

#: Upper bound on the rows one ``async for`` refill fetches (chunks grow from iter_chunk_size).
MAX_CHUNK = 1024

_NO_PARAMS: tuple[()] = ()
T = TypeVar("T")


#: The rows not yet read, the next one at the right end (``pop()``).  A statement that
#: ended within its first chunk leaves the list ``fetchmany`` returned, reversed (no new
#: object on the hot path); one with more to come gets a deque, which refills extend on
#: the left.  The worker replaces it (and never touches a list it handed over); the loop
#: pops from it and re-reads it after every refill.
Rows = Union[list[Any], deque[Any], tuple[()]]


class _Results:
    """Rows and metadata of the last statement; written by the worker, read by the loop.

    A Cursor is one itself (one object less per execute); a RowStream holds one.  The
    defaults are class attributes: a new cursor sets none of them.
    """

    _rows: Rows = ()
    #: The sqlite3 cursor while it still has unread rows; None once exhausted.
    _raw: Optional[sqlite3.Cursor] = None
    #: The sqlite3 cursor of the last statement, for its description, rowcount and
    #: lastrowid, when it is the cursor's own (any thread may read them); else None,
    #: and they were copied when the statement ran on the shared cursor (run_new).
    _last: Optional[sqlite3.Cursor] = None
    _lastrowid: Optional[int] = None
    _rowcount = -1
    _description: Any = None
    #: A Cursor's finalizer for ``_raw``, while it has one (see Cursor._unread).
    _guard: Optional[_Unread] = None

    def _unread(self, cur: sqlite3.Cursor) -> None:
        """The statement on ``cur`` has rows left: keep it (see Cursor._unread)."""
        self._raw = cur


class _Unread:
    """Closes a half-read statement's sqlite3 cursor on its connection's thread once the
    Cursor that held it is gone: dropped anywhere else (the loop thread), it would reset
    the statement there, waiting for the connection while the worker runs a statement.
    Only a statement left with rows to read gets one; the usual cursor has no finalizer.
    """

    __slots__ = ("cur", "worker")

    def __init__(self, cur: Optional[sqlite3.Cursor], worker: Worker) -> None:
        self.cur = cur
        self.worker = worker

    def __del__(self) -> None:
        cur = self.cur
        if cur is not None:  # still unread: it was not released, nor read to its end
            try:
                self.worker.post(_close, cur)
            except Exception:  # interpreter shutdown: the exit hook closes the connection
                pass


def _take_raw(res: _Results) -> Optional[sqlite3.Cursor]:
    """Detach ``res``'s statement with unread rows, and disarm its guard: the caller
    closes it, or it was read to its end."""
    raw, res._raw = res._raw, None
    guard = res._guard
    if guard is not None:
        guard.cur = None
        res._guard = None
    return raw


# ---- worker side: these run on the connection's thread -----------------------------------


def _read(res: _Results, cur: sqlite3.Cursor, n: int) -> None:
    """Move up to ``n`` rows (all if n < 0) from ``cur`` into the buffer."""
    try:
        rows = cur.fetchall() if n < 0 else cur.fetchmany(n)
    except BaseException:
        _take_raw(res)
        raise
    more = 0 <= n == len(rows)
    buffered = res._rows
    if not more:  # the statement is over: one list, whatever was still buffered last
        rows.reverse()
        if buffered:
            rows.extend(buffered)
        res._rows = rows
    elif buffered:  # unread rows are left (so a deque): the new ones come after them
        buffered.extendleft(rows)  # type: ignore[union-attr]
    else:
        rows.reverse()
        res._rows = deque(rows)
    # Rows first, then raw: the loop reads raw, then the rows.
    if not more:
        _take_raw(res)  # exhausted: SQLite already reset the statement
    elif res._raw is not cur:
        res._unread(cur)


def _release(_: Any, res: _Results) -> None:
    raw = _take_raw(res)
    if raw is not None:
        raw.close()


def _close(_: Any, cur: sqlite3.Cursor) -> None:
    cur.close()


def _start(conn: sqlite3.Connection, res: _Results, row_factory: RowFactory) -> sqlite3.Cursor:
    if res._raw is not None:  # a new cursor (db.execute) has nothing to release
        _release(conn, res)
    res._rows = ()
    cur = conn.cursor()
    cur.row_factory = row_factory
    return cur


def _finish(res: _Results, cur: sqlite3.Cursor, prefetch: int) -> None:
    res._last = cur
    if cur.description is not None:
        _read(res, cur, prefetch)


def run_execute(
    conn: sqlite3.Connection,
    res: Cursor,
    sql: str,
    params: Parameters,
    row_factory: RowFactory,
    prefetch: int,
) -> Cursor:
    """``Cursor.execute``: a statement on a cursor that may hold one already, with the
    cursor's own row factory."""
    cur = _start(conn, res, row_factory)
    cur.execute(sql, params)  # type: ignore[arg-type]
    _finish(res, cur, prefetch)
    return res


def run_new(conn: sqlite3.Connection, res: Cursor, sql: str, params: Any, prefetch: int) -> Cursor:
    """``Connection.execute``: the statement of a new cursor, and its first rows.

    Cursor.__await__ runs the same steps on the loop thread for a statement it remembers
    (keep the two in step).  A new cursor holds nothing to release, and its row factory
    is the connection's, which the Connection keeps the worker's shared sqlite3 cursor
    in step with (a change is a job, so it has run before any later statement).  The
    statement runs on that shared cursor (``Worker.raw``: making one per statement is
    ~5% of a short INSERT), so what the DB-API reads from a cursor afterwards is copied
    now; one that leaves rows unread keeps the cursor, and a new one takes its place.
    Returns the cursor, so that awaiting it awaits the waiter directly (Cursor.__await__).
    """
    worker = res._conn._worker
    cur = worker.raw
    if cur is None or cur.connection is not conn:  # not probed yet, or a new connection
        cur = worker.raw = conn.cursor()
    cur.execute(sql, params)
    # The same stores in the same order for every statement: Python 3.11 keeps a
    # cursor's attributes in a table the class shares only while they come in one order
    # (else each cursor gets a dict of its own: ~3% of a point select).
    description = cur.description
    if description is None:
        res._lastrowid = cur.lastrowid
        res._rowcount = cur.rowcount
        res._description = None
    else:
        rows = cur.fetchmany(prefetch)
        res._lastrowid = cur.lastrowid
        res._rowcount = cur.rowcount  # after the rows: RETURNING counts the rows it gave
        res._description = description
        rows.reverse()
        if len(rows) < prefetch:  # the statement is over: SQLite already reset it
            res._rows = rows
        else:
            res._rows = deque(rows)
            res._last = cur  # its rowcount may still change (RETURNING)
            res._unread(cur)
            worker.raw = conn.cursor()
    return res


def run_executemany(
    conn: sqlite3.Connection,
    res: Cursor,
    sql: str,
    seq: Iterable[Parameters],
    row_factory: RowFactory,
    prefetch: int,
) -> Cursor:
    cur = _start(conn, res, row_factory)
    cur.executemany(sql, seq)  # type: ignore[arg-type]
    _finish(res, cur, prefetch)
    return res


def begin_statement(kind: str) -> str:
    """``BEGIN <kind>`` for a ``begin=`` argument, validated."""
    if not isinstance(kind, str) or kind.upper() not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
        raise ValueError(f"begin must be 'DEFERRED', 'IMMEDIATE' or 'EXCLUSIVE', got {kind!r}")
    return f"BEGIN {kind.upper()}"


def run_begun(
    conn: sqlite3.Connection,
    res: Cursor,
    sql: str,
    params: Any,
    begin: str,
    run: Any,
    row_factory: RowFactory,
    prefetch: int,
) -> Cursor:
    """``run`` (run_execute or run_executemany) after ``begin``, unless a transaction is
    open: the transaction's BEGIN travels with its first statement, in one round trip."""
    if not conn.in_transaction:
        conn.execute(begin)
    return run(conn, res, sql, params, row_factory, prefetch)  # type: ignore[no-any-return]


def run_executescript(
    conn: sqlite3.Connection, res: Cursor, script: str, row_factory: RowFactory, prefetch: int
) -> Cursor:
    cur = _start(conn, res, row_factory)
    cur.executescript(script)
    _finish(res, cur, prefetch)
    return res


def run_fetch(_: Any, res: _Results, n: int) -> None:
    if res._raw is not None:
        _read(res, res._raw, n)


# ---- loop side ---------------------------------------------------------------------------


def _awaitable_copy(fn: Callable[[Any], Generator[Any, None, T]]) -> Callable[[Any], Awaitable[T]]:
    """A copy of the generator function ``fn`` whose generators ``await`` takes, as
    ``types.coroutine`` makes them.  A copy: ``types.coroutine`` marks the function it is
    given, and ``await`` refuses an ``__await__`` that returns one so marked."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, None, fn.__closure__)
    return types.coroutine(copy)


class Cursor(Closing, _Results, Coroutine[Any, Any, "Cursor"]):
    """An async cursor, as ``aiosqlite.Cursor``.

    ``row_factory`` and ``arraysize`` are plain attributes; ``row_factory`` starts as the
    connection's and applies to the statements executed after it is set.

    It is also what ``Connection.execute()`` returns, its statement run when first
    awaited (aiosqlite returns a wrapper; one object less on the hot path): ``await``
    gives the cursor itself, ``async with`` gives it and closes it.  So it is a
    Coroutine too (send, throw, close), which ``asyncio.create_task`` and ``gather``
    take.  Its ``close()`` serves both: it closes the cursor, and a statement not yet
    run never runs; what it returns may be awaited (aiosqlite's ``await cur.close()``).
    """

    #: Rows fetchmany() returns when called without a size.
    arraysize: int = 1
    #: Called on the worker with (sqlite3 cursor, row tuple) for each row; None: tuples.
    row_factory: RowFactory = None
    _closed = False
    # Rows the next refill asks for; 0: twice iter_chunk_size (the statement prefetched
    # one chunk).
    _chunk = 0
    # The statement Connection.execute() made this cursor for, until it is awaited.
    # Meanwhile a fetch raises (see _check) instead of finding no rows.
    _sql: Optional[str] = None
    _params: Any = None
    _it: Any = None  # the await's iterator, when driven through send() (a Task)

    def __init__(self, conn: Connection) -> None:
        # Made for every execute: the defaults are class attributes (see _Results).  Keep
        # Connection.execute's copy of this in step.
        self._conn = conn
        self.iter_chunk_size: int = conn._iter_chunk_size
        self.row_factory: RowFactory = conn._row_factory

    def _unread(self, cur: sqlite3.Cursor) -> None:
        # The guard comes first: from then on, dropping this cursor closes ``cur`` on the
        # worker.  Set where the statement ran (worker or loop thread), so even a cursor
        # whose execute was cancelled after it ran, and never handed out, has it.
        self._guard = _Unread(cur, self._conn._worker)
        self._raw = cur

    # -- statements (1 round trip each) --

    async def execute(
        self, sql: str, parameters: Optional[Parameters] = None, *, begin: Optional[str] = None
    ) -> Cursor:
        """Execute one statement and prefetch its first rows. Returns this cursor.

        ``begin`` (an aiolite addition: ``"DEFERRED"``, ``"IMMEDIATE"``, ``"EXCLUSIVE"``)
        first opens a transaction of that kind unless one is open, in the same round trip.
        """
        params = _NO_PARAMS if parameters is None else parameters
        if begin is None:
            await self._stmt((sql, params), run_execute, sql, params)
        else:
            key = self._begun(sql, begin)
            stmt = (sql, params)
            await self._stmt(
                stmt, run_begun, sql, params, begin_statement(begin), run_execute, key=key
            )
        return self

    async def executemany(
        self, sql: str, parameters: Iterable[Parameters], *, begin: Optional[str] = None
    ) -> Cursor:
        """Execute a DML statement once per parameter set. Returns this cursor.

        ``begin``: as for :meth:`execute`.
        """
        stmt = (sql, MANY)
        if begin is None:
            await self._stmt(stmt, run_executemany, sql, parameters)
        else:
            stmt_begin = begin_statement(begin)
            await self._stmt(stmt, run_begun, sql, parameters, stmt_begin, run_executemany)
        return self

    async def executescript(self, sql_script: str) -> Cursor:
        """Execute a script of several statements. Returns this cursor."""
        await self._stmt((sql_script, SCRIPT), run_executescript, sql_script)
        return self

    async def _stmt(
        self, stmt: tuple[str, Any], fn: Any, sql: str, *args: Any, key: Any = None
    ) -> None:
        self._check()
        self._chunk = 0
        await self._conn._call_stmt(
            stmt, fn, self, sql, *args, self.row_factory, self.iter_chunk_size, key=key
        )

    def _begun(self, sql: str, begin: str) -> Any:
        """The job key of a statement sent with ``begin=``: its SQL where that BEGIN cannot
        wait for a lock (a deferred one, or a transaction already holding the write lock),
        so it may run on the loop thread as the statement alone; else a key of its own,
        which is never admitted there."""
        inline = self._conn._worker.inline
        if inline is not None and (begin.upper() == "DEFERRED" or inline.state == LOCKED):
            return sql
        return (sql, begin)

    # -- fetching (0 round trips while the prefetched rows last) --

    async def fetchone(self) -> Any:
        """Return the next row, or None when there are no more."""
        worker = self._conn._worker
        if self._closed or worker.connection is None or not worker.accepting:
            self._check()  # raises why
        rows = self._rows
        if not rows:
            if self._raw is None:
                if self._sql is not None:  # not awaited yet
                    self._check()
                return None
            await self._fill(self._grow())
            rows = self._rows
            if not rows:
                return None
        return rows.pop()

    async def fetchmany(self, size: Optional[int] = None) -> list[Any]:
        """Return up to ``size`` rows (default ``arraysize``)."""
        self._check()
        n = self.arraysize if size is None else size
        while len(self._rows) < n and self._raw is not None:
            await self._fill(max(n - len(self._rows), self._grow()))
        rows = self._rows
        return [rows.pop() for _ in range(min(n, len(rows)))]  # type: ignore[union-attr]

    async def fetchall(self) -> list[Any]:
        """Return all remaining rows."""
        self._check()
        if self._raw is not None:
            await self._fill(-1)
        rows = self._rows
        self._rows = ()
        if type(rows) is list:  # the worker's own list, nobody else's: no copy
            rows.reverse()
            return rows
        out = list(rows)
        out.reverse()
        return out

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        rows = self._rows
        if not rows:
            self._check()
            if self._raw is None:
                raise StopAsyncIteration
            await self._fill(self._grow())
            rows = self._rows
            if not rows:
                raise StopAsyncIteration
        return rows.pop()

    def _grow(self) -> int:
        n = self._chunk or self.iter_chunk_size * 2
        self._chunk = min(n * 2, max(MAX_CHUNK, self.iter_chunk_size))
        return n

    async def _fill(self, n: int) -> None:
        # Shielded: interrupting a refill would abort the statement and lose the rows not
        # yet read; a cancelled refill instead finishes into the buffer, so none are skipped.
        await self._conn._call_job(Job(run_fetch, (self, n), shielded=True, pure=True))

    # -- awaiting the statement of Connection.execute() --

    def __await__(self) -> Generator[Any, None, Cursor]:
        # The hot path of the whole library.  A statement the loop thread may run
        # (Worker.fast) runs here: Worker.run_here's steps for it, with run_new's body,
        # written out (each frame and call is a few % of a short INSERT); keep the three
        # in step.  Else it goes where Connection._dispatch says; the job returns this
        # cursor, so a call sent to the worker is awaited with no coroutine frame between.
        sql = self._sql
        if sql is not None:
            params = self._params
            self._sql = None  # awaiting it again (or a cursor with no statement) runs nothing
            conn = self._conn
            worker = conn._worker
            wakers = conn._wakers
            # Under this connection's asyncio loop (under trio every call must be a
            # checkpoint), with budget left in this loop iteration.
            if running_loop() is wakers.key:
                waker = wakers.waker
                started = perf_counter()
                if started >= waker.until and sql in worker.fast:
                    # This loop iteration's budget for calls here is spent, or not begun:
                    # wait for a turn (cancelled meanwhile, the statement never ran) or
                    # begin it, and go on here (~10 µs less per task that waits than
                    # going through _dispatch: 100 tasks wait 100-200 times).
                    if waker.marked:
                        yield from waker.take_turn()
                    else:
                        waker.spend()
                    started = perf_counter()
                if started < waker.until:
                    token = worker.token
                    try:
                        token.get_nowait()
                    except Empty:  # the worker runs a job: this call queues behind it
                        pass
                    else:
                        try:
                            # Nothing queued (checked holding the connection: a job queued
                            # before this call goes first).  A remembered budget rests on
                            # everything run_here checks (see Worker.fast): whatever changes
                            # it empties fast before it lets go of the connection.
                            budget = worker.fast.get(sql)
                            if budget is not None and not worker._tickets:
                                c: sqlite3.Connection = worker.connection  # type: ignore[assignment]
                                if budget:  # a read: aborted once over it (Worker._arm_budget)
                                    if worker._steps != INLINE_STEPS:
                                        worker._set_steps(c, INLINE_STEPS)
                                    worker.budget_deadline = started + budget
                                try:
                                    cur: sqlite3.Cursor = worker.raw  # type: ignore[assignment]
                                    cur.execute(sql, params)
                                    description = cur.description  # as run_new
                                    if description is None:
                                        self._lastrowid = cur.lastrowid
                                        self._rowcount = cur.rowcount
                                        self._description = None
                                    else:
                                        prefetch = self.iter_chunk_size
                                        rows = cur.fetchmany(prefetch)
                                        self._lastrowid = cur.lastrowid
                                        self._rowcount = cur.rowcount
                                        self._description = description
                                        rows.reverse()
                                        if len(rows) < prefetch:
                                            self._rows = rows
                                        else:
                                            self._rows = deque(rows)
                                            self._last = cur
                                            self._unread(cur)
                                            worker.raw = c.cursor()
                                except BaseException as exc:
                                    if not worker._failed_here(sql, (sql, params), exc, started):
                                        raise
                                    # over budget: the worker runs it again (below)
                                else:
                                    took = perf_counter() - started
                                    if budget:
                                        worker.budget_deadline = None
                                    inline: Inline = worker.inline  # type: ignore[assignment]
                                    if took >= SHORT_HERE:  # (a remembered one's history is below)
                                        inline.record(sql, took)
                                    inline.calls += 1
                                    return self
                        finally:
                            token.put(None)
            args = (self, sql, params, self.iter_chunk_size)
            stmt = (sql, params)
            call = conn._dispatch(run_new, args, sql, stmt)
            if type(call) is not Ready:  # not run on this thread after all
                yield from call.__await__()
        return self

    def send(self, value: Any) -> Any:
        it = self._it
        if it is None:
            it = self._it = self.__await__()
        return it.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        it = self._it
        if it is None:  # not started: nothing runs, the exception goes straight out
            self._sql = self._params = None
            self._closed = True
            if isinstance(typ, BaseException):
                raise typ
            raise val if isinstance(val, BaseException) else typ() if val is None else typ(val)
        if val is None:
            return it.throw(typ)
        if tb is None:
            return it.throw(typ, val)
        return it.throw(typ, val, tb)

    # ``async with`` awaits what __aenter__ returns: here __await__'s generator itself,
    # marked a coroutine (one call less than returning the cursor to be awaited).
    __aenter__ = _awaitable_copy(__await__)  # type: ignore[assignment]  # awaitable all the same

    # -- lifecycle --

    def close(self) -> Awaitable[None]:  # type: ignore[override]  # see the class docstring
        """Close the cursor (0 round trips: a half-read statement is released in order).

        A statement not yet awaited never runs; one being awaited (through a Task) is
        abandoned as a cancelled one would be."""
        self._sql = self._params = None
        it = self._it
        if it is not None:
            self._it = None
            it.close()
        return self.close_now()

    def close_now(self, *exc_info: object) -> Awaitable[None]:
        """Close at once (nothing to wait for); returns an awaitable that is already done.
        Also ``__aexit__`` (its arguments ignored: one call less per ``async with``)."""
        if not self._closed:
            self._closed = True
            self._rows = ()
            if self._raw is not None:
                self._conn._worker.post(_release, self)
        return DONE

    __aexit__ = close_now  # type: ignore[assignment]

    def _check(self) -> None:
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed cursor.")
        if self._sql is not None:
            raise sqlite3.ProgrammingError(
                "the cursor's statement has not run: await connection.execute(...) "
                "before fetching from its cursor"
            )
        self._conn._check_open()

    # -- metadata of the last statement --

    @property
    def rowcount(self) -> int:
        last = self._last
        return self._rowcount if last is None else last.rowcount

    @property
    def lastrowid(self) -> Optional[int]:
        last = self._last
        return self._lastrowid if last is None else last.lastrowid

    @property
    def description(self) -> Any:
        last = self._last
        return self._description if last is None else last.description

    @property
    def connection(self) -> Connection:
        """The aiolite Connection this cursor belongs to."""
        return self._conn

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._rows)} rows buffered"
        return f"<aiolite.Cursor [{state}]>"


Cursor.__module__ = "aiolite"
