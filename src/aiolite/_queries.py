"""The read API shared by Database, Transaction and ReadSession, and RowStream.

Each of the three routes statements differently (a reader of the pool, the writer inside a
transaction, one reserved reader inside a snapshot) by implementing ``_query``; the public
methods are one-line delegations on top of it.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Optional

from ._cursor import _release, _Results, run_fetch
from ._statements import ALL, ONE, PLAIN, STREAM, VAL, Limits, run, run_limited, too_many_rows
from ._types import Parameters
from ._worker import NOT_HERE, Job

if TYPE_CHECKING:
    from ._database import Database
    from ._pool import Member

__all__ = ["DEFAULT", "Attached", "Queries", "RowStream"]

#: "Use the Database's row_factory" (None already means plain tuples).
DEFAULT: Any = type("_Default", (), {"__repr__": lambda self: "DEFAULT"})()
_NO_PARAMS: tuple[()] = ()


class Queries:
    """fetchone / fetchall / fetchval, routed by the subclass's ``_query``."""

    _row_factory: Any  # the Database's, used when a call passes none

    def _home(self) -> Database:
        """The Database these queries belong to."""
        raise NotImplementedError

    async def _query(self, mode: int, sql: str, params: Any, shape: Any, extra: Any = None) -> Any:
        raise NotImplementedError

    def _here(self, mode: int, sql: str, params: Any, shape: Any, extra: Any) -> Any:
        """The query's value if it ran on the loop thread at once, else NOT_HERE (then
        ``_query`` runs it).  Only a Database has such a path (see Database._here)."""
        return NOT_HERE

    def _shape(self, row_factory: Any) -> Any:
        return self._row_factory if row_factory is DEFAULT else row_factory

    def _limits(self, timeout: Any, max_rows: Any) -> Optional[Limits]:
        """The limits of a call that sets its own (the rest default to the Database's)."""
        db = self._home()
        t = db._query_timeout if timeout is DEFAULT else timeout
        n = db._max_rows if max_rows is DEFAULT else max_rows
        return None if t is None and n is None else Limits(t, n)

    async def fetchone(
        self,
        sql: str,
        params: Parameters = _NO_PARAMS,
        *,
        row_factory: Any = DEFAULT,
        timeout: Optional[float] = DEFAULT,
    ) -> Any:
        """Return the first row of the result, or None. 1 round trip.

        ``row_factory`` overrides the Database's for this call: ``aiolite.Row``, ``tuple``,
        ``dict``, a dataclass, or a sqlite3-style ``factory(cursor, row)``.  ``timeout``
        (seconds) stops a statement that runs longer with :class:`aiolite.QueryTimeoutError`
        (default: the Database's ``query_timeout``).
        """
        # The defaults are one object made at open: no call on the hot path.
        limits = self._home()._timeout_only if timeout is DEFAULT else self._limits(timeout, None)
        shape = self._shape(row_factory)
        value = self._here(ONE, sql, params, shape, limits)
        if value is NOT_HERE:
            value = await self._query(ONE, sql, params, shape, limits)
        return value

    async def fetchall(
        self,
        sql: str,
        params: Parameters = _NO_PARAMS,
        *,
        row_factory: Any = DEFAULT,
        timeout: Optional[float] = DEFAULT,
        max_rows: Optional[int] = DEFAULT,
    ) -> list[Any]:
        """Return every row of the result. 1 round trip.

        ``max_rows``: a result with more rows raises :class:`aiolite.TooManyRowsError`
        (default: the Database's ``max_rows``).  ``timeout``: as for :meth:`fetchone`.
        """
        if timeout is DEFAULT and max_rows is DEFAULT:
            limits = self._home()._default_limits
        else:
            limits = self._limits(timeout, max_rows)
        shape = self._shape(row_factory)
        rows: list[Any] = self._here(ALL, sql, params, shape, limits)
        if rows is NOT_HERE:
            rows = await self._query(ALL, sql, params, shape, limits)
        return rows

    async def fetchval(
        self, sql: str, params: Parameters = _NO_PARAMS, *, timeout: Optional[float] = DEFAULT
    ) -> Any:
        """Return the first column of the first row, or None if there is no row. 1 round trip."""
        limits = self._home()._timeout_only if timeout is DEFAULT else self._limits(timeout, None)
        value = self._here(VAL, sql, params, tuple, limits)
        if value is NOT_HERE:
            value = await self._query(VAL, sql, params, tuple, limits)
        return value

    def _stream_on(self) -> tuple[Optional[Member], Optional[deque[str]]]:
        """The connection a stream runs on (None: reserve a reader) and deferred statements."""
        raise NotImplementedError

    def iterate(
        self,
        sql: str,
        params: Parameters = _NO_PARAMS,
        *,
        row_factory: Any = DEFAULT,
        chunk_size: Optional[int] = None,
        timeout: Optional[float] = DEFAULT,
        max_rows: Optional[int] = DEFAULT,
    ) -> RowStream:
        """``async for row in x.iterate(sql)``: stream the rows in chunks.

        One round trip per ``chunk_size`` rows (default: the Database's ``iter_chunk_size``).
        Use ``async with x.iterate(...) as rows`` when you may stop early.  ``timeout``
        bounds each chunk's work; ``max_rows`` the rows of the whole stream.
        """
        member, pending = self._stream_on()
        db = self._home()
        chunk = db._chunk if chunk_size is None else chunk_size
        limits = self._limits(timeout, max_rows)
        return RowStream(db, sql, params, self._shape(row_factory), chunk, member, pending, limits)


class Attached(Queries):
    """Queries bound to one Database, with statements deferred to their next job.

    The base of Transaction (on the writer) and ReadSession (on a reserved reader): both
    queue ``BEGIN``-like statements in ``_pending``, which the next job runs first.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._row_factory = db._row_factory
        self._pending: deque[str] = deque()
        self._ops = 0  # jobs sent: none means there is nothing to end

    def _home(self) -> Database:
        return self._db

    async def _run_on(
        self, m: Member, mode: int, sql: str, params: Any, shape: Any, tx: int,
        shielded: bool = False, extra: Any = None,
    ) -> Any:  # fmt: skip
        self._ops += 1
        args = (m.session, self._pending, mode, sql, params, shape, tx, extra)
        # A statement of a transaction or a snapshot is pure: a cancel rolls the whole
        # transaction back, so none of its effects outlive the cancel and the task may
        # leave at once.  Only the COMMIT (shielded) must report what happened.
        job = Job(run, args, key=sql, shielded=shielded, pure=not shielded)
        return await self._db._wakers.current().wait(m.worker, job)


class RowStream:
    """``async for row in db.iterate(sql)``: rows in chunks, on one connection meanwhile.

    From ``db.iterate``, the reader stays reserved while the statement is open, so no other
    query lands on its (older) snapshot; it goes back to the pool as soon as the last chunk
    is read, on ``break`` (via ``async with``/``aclose()``) or when the stream is collected.
    """

    def __init__(
        self,
        db: Database,
        sql: str,
        params: Parameters,
        shape: Any,
        chunk: int,
        member: Optional[Member] = None,
        pending: Optional[deque[str]] = None,
        limits: Optional[Limits] = None,
    ) -> None:
        self._db = db
        self._limits = limits
        self._sql = sql
        self._params = params
        self._shape = shape
        self._chunk = chunk
        self._member = member
        self._owns = member is None  # we reserve (and release) the reader ourselves
        self._pending = pending
        self._res = _Results()
        self._started = False
        self._done = False
        self._seen = 0  # rows received so far (for max_rows)

    def __aiter__(self) -> RowStream:
        return self

    async def __anext__(self) -> Any:
        rows = self._res._rows
        if rows:
            return rows.pop()
        if self._done:
            raise StopAsyncIteration
        refill = self._started
        try:
            await self._fill()
        except Exception:
            self._finish()
            raise
        except BaseException:
            # Cancelled.  A refill still lands in the buffer (it is shielded), so the stream
            # goes on; a cancelled start left no statement to go on with.
            if not refill:
                self._finish()
            raise
        if self._res._raw is None:  # the statement is over: give the reader back now
            self._finish()
        rows = self._res._rows  # the refill may have replaced it
        if not rows:
            raise StopAsyncIteration
        limits = self._limits
        if limits is not None and limits.max_rows is not None:
            self._seen += len(rows)
            if self._seen > limits.max_rows:
                self._finish()
                raise too_many_rows(limits.max_rows)
        return rows.pop()

    async def _fill(self) -> None:
        db = self._db
        if not self._started:
            self._started = True
            if self._member is None:
                db._check_open()
                self._member = await db._pool.reserve()
            m = self._member
            args = (m.session, self._pending, STREAM, self._sql, self._params, self._shape, PLAIN)
            job = Job(run, (*args, (self._res, self._chunk, self._limits)), key=self._sql)
        else:
            assert self._member is not None
            # Shielded, as Cursor refills: a cancel must not abort the statement mid-stream.
            if self._limits is None:
                job = Job(run_fetch, (self._res, self._chunk), shielded=True, pure=True)
            else:
                limited = (self._member.session, run_fetch, self._limits, self._res, self._chunk)
                job = Job(run_limited, limited, shielded=True, pure=True)
        await db._wakers.current().wait(self._member.worker, job)

    def _finish(self, finalizing: bool = False) -> None:
        if self._done:
            return
        self._done = True
        m = self._member
        if m is None:
            return
        if self._res._raw is not None:
            m.worker.post(_release, self._res)
        if self._owns:
            self._member = None
            if finalizing:  # any thread, any moment: the loop does it
                self._db._pool.unreserve_soon(m)
            else:
                self._db._pool.unreserve(m)

    async def aclose(self) -> None:
        """Stop early: drop the buffered rows, end the statement, release the reader."""
        self._res._rows = ()
        self._finish()

    async def __aenter__(self) -> RowStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        try:
            self._finish(finalizing=True)
        except Exception:  # interpreter shutdown: the exit hook closes the connections
            pass


RowStream.__module__ = "aiolite"
