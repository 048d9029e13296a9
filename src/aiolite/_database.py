"""Database and open(): one writer, a pool of readers, transactions that queue fairly.

Where each call goes:

* reads (``fetchone``/``fetchall``/``fetchval``/``iterate``/``read()``) -> a reader of the
  pool (``_pool.py``), never blocked by the writer in WAL mode;
* writes (``execute``/``executemany``/``executescript``/``transaction()``) -> the single
  writer, one task at a time, FIFO (``_transaction.py``);
* every statement is one job running :func:`aiolite._statements.run` on that connection's
  worker thread (``_worker.py``).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import warnings
from collections import deque
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from queue import Empty
from time import perf_counter
from typing import Any, Callable, Optional, Union, cast

from ._adapters import DEFAULT as DEFAULT_TYPES
from ._adapters import Types
from ._backends import WakerCache, running_loop
from ._closing import Opening
from ._dqlite import _members as cluster
from ._exceptions import ConnectionClosedError, ReadOnlyError
from ._inline import DML, MAX_KINDS, SHORT_HERE, How, Inline, budget_of, keyword
from ._maintenance import (
    CheckpointResult,
    ForeignKeyViolation,
    Health,
    check_mode,
    main_file,
    run_backup,
    run_checkpoint,
    run_foreign_key_check,
    run_health,
    run_integrity_check,
    run_vacuum_into,
)
from ._migrations import Migration, MigrationSource, applied, migrate
from ._pool import SPREAD_AT, Member, ReaderPool, ReadSession
from ._pragmas import (
    Location,
    PragmaValue,
    as_str,
    connect_member,
    locate,
    read_only,
    resolve_pragmas,
)
from ._queries import DEFAULT, Queries
from ._sandbox import Sandbox, lock_down
from ._statements import (
    AUTOCOMMIT,
    MANY,
    PLAIN,
    SCRIPT,
    WRITE,
    Limits,
    SchemaClock,
    Session,
    StatementEvent,
    WriteResult,
    run,
    writer_slice_ms,
)
from ._transaction import Transaction, WriterGate
from ._types import Parameters, StrPath
from ._worker import (
    INLINE_STEPS,
    MAX_MEMBERS,
    NOT_HERE,
    PENDING,
    SHORT_JOB,
    Job,
    Worker,
    close_connection,
)

__all__ = ["Database", "DatabaseStatistics", "open"]

logger = logging.getLogger("aiolite")
#: wal_autocheckpoint with checkpoints="external": 0, SQLite never checkpoints at commit.
EXTERNAL_AUTOCHECKPOINT = 0
_PLAIN_QUERY = re.compile(r"\s*(?:SELECT|WITH|VALUES)\b", re.IGNORECASE)
_NO_PARAMS: tuple[()] = ()
#: A db.execute() write may join a group (see Database._join_group) when its runs on the
#: writer have averaged under this.  Generous: times measured on a worker include its
#: waits for the GIL (a 10 µs INSERT measures 100-200 µs while 100 tasks keep the loop
#: busy), and what it bounds is how long a long write delays the outcomes of the others.
GROUP_SHORT = 1e-3


@dataclass(frozen=True)
class DatabaseStatistics:
    """A snapshot of a Database's counters, from ``Database.statistics()``."""

    #: Reader connections, and how many are reserved by a snapshot or stream right now.
    readers: int
    readers_reserved: int
    #: Tasks queued for the writer right now.
    writer_waiting: int
    #: Writer acquisitions that had to queue, and the time spent queued in total (seconds).
    writer_waits: int
    writer_wait_seconds: float
    #: Transactions committed and rolled back (``transaction()`` blocks).
    transactions: int
    rollbacks: int
    #: Attempts to take the write lock that found another process holding it.
    busy_retries: int
    #: TRUNCATE checkpoints that reset the WAL because it passed ``wal_limit``.
    wal_truncations: int
    #: Jobs answered across all connections (thread round trips).
    round_trips: int
    #: ``wal_limit`` checkpoint attempts, and those a reader kept busy (they back off:
    #: 1 s, doubling to 30 s, never waiting on the writer).
    wal_checkpoints: int = 0
    wal_checkpoints_busy: int = 0
    #: Calls that ran on the event loop's thread with no round trip (adaptive
    #: execution), and those of them that overran the budget and moved to a worker.
    inline_calls: int = 0
    inline_moved: int = 0
    #: ``db.execute()`` writes that committed together with others in one transaction
    #: (group commit), the commits of those groups, and groups that failed as a whole and
    #: ran their writes again one by one.
    grouped_writes: int = 0
    group_commits: int = 0
    group_retries: int = 0


def _open_member(
    _: None,
    m: Member,
    location: Location,
    statements: list[str],
    kw: dict[str, Any],
    sandbox: Optional[Sandbox],
) -> tuple[Optional[str], str]:
    """Open and configure one connection; return its journal mode and file ('' in memory).

    With a sandbox, the connection is locked down and the file checked before any use.
    """
    conn, journal = connect_member(location, statements, **kw)
    try:
        path = main_file(conn)
        if sandbox is not None:  # the file is checked once, by the first connection
            m.session.authorizer = lock_down(conn, sandbox, None if kw["reader"] else path)
        elif not kw["reader"]:
            m.session.take_checkpoints(conn)
    except BaseException:
        conn.close()
        raise
    m.worker.adopt(conn)
    if m.worker.inline is not None:
        m.worker.inline.refresh(conn)
    return journal, path


def _reconnect(location: Location, statements: list[str], kw: dict[str, Any]) -> sqlite3.Connection:
    """A replacement for a connection that could not roll back (worker thread)."""
    return connect_member(location, statements, **kw)[0]


def _optimize(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA optimize")
    except sqlite3.Error as exc:  # read-only media, a full disk: closing matters more
        logger.debug("PRAGMA optimize failed at close: %s", exc)


class Database(Queries, Opening):
    """A SQLite database for concurrent async code: one writer, a pool of readers.

    ``db = await aiolite.open(path)`` or ``async with aiolite.open(path) as db``.

    * ``readers``: reader connections (each has its own thread).
    * ``busy_timeout``: seconds to wait for a lock another *process* holds, before
      :class:`aiolite.DatabaseLockedError`.  Tasks of this Database never wait on SQLite's
      locks: they queue for the writer in order.
    * ``pragmas``: overrides of the defaults (``journal_mode=WAL``, ``synchronous=NORMAL``,
      ``foreign_keys=ON``, ``temp_store=MEMORY``); a value of None drops one.
    * ``types``: an :class:`aiolite.Types` (the default converts datetime, date, Decimal,
      UUID, JSON), or None for sqlite3's plain values.
    * ``row_factory``: ``aiolite.Row`` (default), ``tuple``, ``dict``, a dataclass, or a
      sqlite3-style ``factory(cursor, row)``.
    * ``on_statement``: called with a :class:`aiolite.StatementEvent` after every statement,
      on the worker thread.  ``slow_query``: log statements slower than this many seconds
      to the ``aiolite`` logger at WARNING.
    * ``iter_chunk_size``: rows per round trip of ``iterate()``.
    * ``wal_limit``: bytes; when the WAL file grows past it, the writer runs a TRUNCATE
      checkpoint after a commit (checked every 16 commits).  See docs/maintenance.md.
    * ``optimize``: run ``PRAGMA optimize`` at close (it may ANALYZE, i.e. write statistics).
    * ``checkpoints``: ``"auto"`` (SQLite's, plus ``wal_limit``), or ``"external"`` when
      another process owns checkpoints (Litestream): no ``wal_limit``, automatic
      checkpoints off, and :meth:`checkpoint` refuses with an error that says so.  See
      docs/replication.md.
    * ``query_timeout``/``max_rows``: default limits of every read (seconds of work, rows);
      per call ``timeout=``/``max_rows=``.  See docs/security.md.
    * ``untrusted``: ``True`` or an :class:`aiolite.Sandbox`: the file and the SQL are not
      the application's own; read-only, locked down, limited.  See docs/security.md.
    * ``readonly``: open the file read-only (``mode=ro``): the read API works, every write
      raises :class:`aiolite.ReadOnlyError` before reaching SQLite, and the file (and its
      WAL) are never changed, not even at close.
    """

    def __init__(
        self,
        database: StrPath,
        *,
        readers: int = 4,
        busy_timeout: float = 5.0,
        pragmas: Optional[Mapping[str, Optional[PragmaValue]]] = None,
        types: Optional[Types] = DEFAULT_TYPES,
        row_factory: Any = sqlite3.Row,
        on_statement: Optional[Callable[[StatementEvent], object]] = None,
        slow_query: Optional[float] = None,
        iter_chunk_size: int = 256,
        wal_limit: Optional[int] = None,
        optimize: bool = True,
        readonly: bool = False,
        checkpoints: str = "auto",
        query_timeout: Optional[float] = None,
        max_rows: Optional[int] = None,
        untrusted: Union[bool, Sandbox] = False,
        inline: Union[bool, float] = True,
    ) -> None:
        if not isinstance(readers, int) or readers < 1:
            raise ValueError(f"readers must be an int >= 1, got {readers!r}")
        if not isinstance(iter_chunk_size, int) or iter_chunk_size < 1:
            raise ValueError(f"iter_chunk_size must be an int >= 1, got {iter_chunk_size!r}")
        if types is not None and not isinstance(types, Types):
            raise TypeError("types must be an aiolite.Types instance or None")
        self._sandbox: Optional[Sandbox] = None
        if untrusted:
            if not hasattr(sqlite3.Connection, "setlimit"):  # Python < 3.11
                raise sqlite3.NotSupportedError(
                    "untrusted= needs Python 3.11+: before it, sqlite3 has no setlimit(), so "
                    "a query could build strings of up to 1 GB in one step that no time "
                    "limit can stop. On this Python, use readonly=True with query_timeout= "
                    "and max_rows= for SQL you trust"
                )
            self._sandbox = untrusted if isinstance(untrusted, Sandbox) else Sandbox()
            readonly = True
            types = None  # plain values: no schema introspection behind the sandbox
            query_timeout = self._sandbox.timeout if query_timeout is None else query_timeout
            max_rows = self._sandbox.max_rows if max_rows is None else max_rows
        self._query_timeout = query_timeout
        self._max_rows = max_rows
        # The limits of a call that sets none (validated here, once).
        self._default_limits: Optional[Limits] = (
            None if query_timeout is None and max_rows is None else Limits(query_timeout, max_rows)
        )
        self._timeout_only = None if query_timeout is None else Limits(query_timeout, None)
        self._readonly = bool(readonly)
        #: A dqlite cluster instead of a file (see _dqlite/_members.py).
        self._cluster = None
        if cluster.is_cluster(database):
            self._cluster = cluster.target(
                str(database),
                untrusted=untrusted,
                wal_limit=wal_limit,
                checkpoints=checkpoints,
                pragmas=dict(pragmas or {}),
            )
            pragmas = cluster.node_pragmas(dict(pragmas or {}))
            optimize = False  # ANALYZE would be replicated to every node, at every close
            inline = False  # every call is a network round trip: never on the loop thread
        if checkpoints not in ("auto", "external"):
            raise ValueError(f"checkpoints must be 'auto' or 'external', got {checkpoints!r}")
        self._external = checkpoints == "external"
        if self._external:
            if wal_limit is not None:
                raise ValueError(
                    "wal_limit needs aiolite to checkpoint: with checkpoints='external' the "
                    "process that owns checkpoints (Litestream) keeps the WAL in check"
                )
            # SQLite's automatic checkpoints at commit stay off: the replicator runs them
            # when it has copied the WAL (Litestream's advice), and writers run faster.
            pragmas = {"wal_autocheckpoint": EXTERNAL_AUTOCHECKPOINT, **(pragmas or {})}
        self._location = (
            locate(database)
            if self._cluster is None
            else Location(self._cluster.url, uri=False, memory=False)
        )
        if readonly:
            # Every connection opens the file read-only (mode=ro): nothing can write it, no
            # journal mode is set, and closing never checkpoints the WAL into it.
            if self._cluster is None:
                self._location = read_only(self._location)
            pragmas = {**(pragmas or {}), "journal_mode": None}
            optimize = False
        self._journal, self._statements, self._busy_timeout = resolve_pragmas(
            pragmas, busy_timeout, self._location
        )
        self._optimize = optimize
        self._row_factory = row_factory
        self._chunk = iter_chunk_size
        self._wakers = WakerCache()
        self._gate = WriterGate()

        clock = SchemaClock()
        # Adaptive execution (see _inline), except where the user's hook expects the worker
        # thread, and for untrusted SQL (every query of it goes to a worker, limits armed).
        budget = budget_of(inline) if on_statement is None and self._sandbox is None else None
        self._inline = budget is not None

        def member(role: str) -> Member:
            worker = Worker(name=f"aiolite-{role}")
            if budget is not None:
                worker.inline = Inline(worker, budget)
            session = Session(role, worker, types, self._busy_timeout, on_statement, slow_query)
            session.bare_autocommit = self._cluster is not None
            session.clock = clock  # one schema clock for all: the writer's DDL reaches all
            return Member(worker, session)

        self._writer = member("writer")
        if wal_limit is not None:
            if not isinstance(wal_limit, int) or wal_limit < 0:
                raise ValueError(f"wal_limit must be a number of bytes >= 0, got {wal_limit!r}")
            self._writer.session.wal_limit = wal_limit
        self._pool = ReaderPool([member(f"reader-{i}") for i in range(readers)])
        self._all = [self._writer, *self._pool.members]
        #: Queries proven read-only (they ran on a query_only reader) and short: these may
        #: run on the writer while no transaction needs it (see _query).
        self._short_reads: set[str] = set()
        #: Plain reads and one-job writes submitted and not answered yet (loop side).
        self._inflight = 0
        #: The last db.execute() write queued on the writer as a group's first: later
        #: ones join it while it waits (see _join_group).  Whether an SQL text is an
        #: INSERT/UPDATE/DELETE/REPLACE (its first keyword), the only writes grouped.
        self._lead: Optional[Job] = None
        self._dml: dict[str, bool] = {}
        self._opened = False
        self._closing = False
        self._closed = False
        #: The journal mode SQLite reports after open ("wal" normally).
        self.journal_mode: Optional[str] = None
        self._rolled_back = 0

    # ---- opening and closing ----

    async def _open(self) -> Database:
        if self._opened:
            if self._closing:
                raise self._closed_error()
            return self
        self._opened = True
        try:
            # The writer first: it sets the journal mode the readers then find in the file.
            timeout_ms = int(self._busy_timeout * 1000)
            slice_ms = writer_slice_ms(self._busy_timeout)
            if self._cluster is not None:
                await self._open_cluster()
                return self
            for m in self._all:
                reader = m is not self._writer
                kw = {
                    "busy_timeout_ms": timeout_ms,
                    "reader": reader,
                    "journal_mode": None if reader else self._journal,
                    "then_busy_timeout_ms": None if reader else slice_ms,
                }
                m.worker.start()
                args = (m, self._location, self._statements, kw, self._sandbox)
                journal, path = await self._call(m, _open_member, *args)
                m.session.reopen = partial(_reconnect, self._location, self._statements, kw)
                if not reader:
                    self.journal_mode = journal
                    m.session.wal_path = f"{path}-wal" if path else ""
        except BaseException:
            self._closing = self._closed = True
            for m in self._all:
                m.worker.stop()
            raise
        if self._journal and (self.journal_mode or "").lower() != self._journal.lower():
            logger.warning(
                "%s: asked for journal_mode=%s, SQLite kept %s (a read-only or network file "
                "system?); readers and the writer will block each other at commits",
                self._location,
                self._journal,
                self.journal_mode,
            )
        return self

    async def _open_cluster(self) -> None:
        """Connect the writer and the readers to the dqlite leader (see _dqlite/_members)."""
        target = self._cluster
        assert target is not None
        statements = [f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}", *self._statements]
        for m in self._all:
            reader = m is not self._writer or self._readonly
            m.worker.start()
            await self._call(m, cluster.open_member, m.worker, target, statements, reader)
            # The client has the connection API the Session uses (see _dqlite/_client.py).
            m.session.reopen = cast(Any, partial(cluster.reopen, target, statements, reader))
        self.journal_mode = "wal"

    def _not_on_cluster(self, what: str, why: str) -> None:
        if self._cluster is not None:
            raise cluster.not_on_cluster(what, why)

    async def close(self) -> None:
        """Wait for the running transaction, optimize, close every connection. Idempotent.

        Transactions still queued for the writer fail with ``ConnectionClosedError``; reads
        already queued on a reader run first.  **Cancellation**: the connections still close
        (in the background).
        """
        if not self._opened:
            self._closing = self._closed = True
            return
        self._closing = True
        try:
            # In turn with the transactions still running; a second close() waits here for
            # the first one, then only waits for the threads.
            await self._gate.acquire("db.close()")
            try:
                if self._optimize and not self._closed:
                    await self._call(self._writer, _optimize)
            finally:
                self._gate.release()
        finally:
            self._closed = True
            for m in self._all:
                m.worker.stop()
        for m in self._all:  # a final job submitted late is answered when the thread ends
            await self._call(m, close_connection, m.worker, final=True)
            m.worker.join()

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or not getattr(self, "_opened", False):
            return
        warnings.warn(
            f"{self!r} was deleted before being closed; use 'async with aiolite.open(...)' "
            "or 'await db.close()'",
            ResourceWarning,
            stacklevel=1,
        )
        for m in self._all:
            m.worker.stop()

    def __repr__(self) -> str:
        state = "closed" if self._closing else ("open" if self._opened else "not opened")
        pool = self._pool
        return (
            f"<aiolite.Database {str(self._location)!r} [{state} | writer: "
            f"{self._gate.waiting} waiting | readers: {pool.reserved}/{len(pool.members)} "
            f"reserved]>"
        )

    def _closed_error(self) -> ConnectionClosedError:
        return ConnectionClosedError(
            "Database closed: this aiolite Database was closed (or is closing); "
            "open it again with aiolite.open()"
        )

    def _check_open(self) -> None:
        if self._closing or not self._opened:
            if not self._opened:
                raise sqlite3.ProgrammingError(
                    "the database is not open yet: use 'db = await aiolite.open(...)' or "
                    "'async with aiolite.open(...) as db'"
                )
            raise self._closed_error()

    async def _call(
        self, m: Member, fn: Any, *args: Any, final: bool = False, pure: bool = False
    ) -> Any:
        job = Job(fn, args, final=final, pure=pure)
        return await self._wakers.current().wait(m.worker, job)

    # ---- reads: on the reader pool ----

    def _here(self, mode: int, sql: str, params: Any, shape: Any, extra: Any) -> Any:
        """The hot path of a Database read: a query its member's loop-thread admission
        remembers (``Worker.fast``, filled by ``Inline.admit_read``) runs here at once,
        with ``run_here``'s steps written out (as ``Cursor.__await__`` does for
        ``connect()``), if this loop iteration's budget is begun and not spent and no
        other call of the Database is in flight.  NOT_HERE: go the long way (``_query``),
        which takes the turn, admits, or sends the job."""
        if self._inflight or self._closing or not self._opened:
            return NOT_HERE
        wakers = self._wakers
        if running_loop() is not wakers.key:  # asyncio only: under trio a call is a checkpoint
            return NOT_HERE
        started = perf_counter()
        if started >= wakers.waker.until:
            return NOT_HERE
        m = self._route(sql)
        if m is None:
            return NOT_HERE
        worker = m.worker
        budget = worker.fast.get(sql)
        if not budget:  # not remembered (0.0 would be a write's)
            return NOT_HERE
        token = worker.token
        try:
            token.get_nowait()
        except Empty:  # the worker runs a job
            return NOT_HERE
        try:
            if worker._tickets:  # a job queued before this call goes first
                return NOT_HERE
            conn: sqlite3.Connection = worker.connection  # type: ignore[assignment]
            if worker._steps != INLINE_STEPS:
                worker._set_steps(conn, INLINE_STEPS)
            worker.budget_deadline = started + budget
            try:
                value = run(conn, m.session, None, mode, sql, params, shape, PLAIN, extra)
            except BaseException as exc:
                if worker._failed_here(sql, None, exc, started):
                    return NOT_HERE  # over budget: the long way sends it to the worker
                raise
            took = perf_counter() - started
            worker.budget_deadline = None
            inline: Inline = worker.inline  # type: ignore[assignment]  # fast is its dict
            if took >= SHORT_HERE:
                inline.record(sql, took)
            inline.calls += 1
            return value
        finally:
            token.put(None)

    def _route(self, sql: str) -> Optional[Member]:
        """The member a plain query goes to now (None: every reader is reserved)."""
        w = self._writer
        if sql in self._short_reads and w.inflight < SPREAD_AT and self._gate.free():
            # No transaction holds or awaits the writer, and this query is known to be
            # short and read-only: the writer runs it between whole write jobs.  On a small
            # machine one busy thread batching everything beats several taking turns.
            return w
        return self._pool.pick()

    async def _query(self, mode: int, sql: str, params: Any, shape: Any, extra: Any = None) -> Any:
        if self._closing or not self._opened:
            self._check_open()
        if self._inline:
            # Before deciding where it runs: what is decided must still hold when it runs.
            await self._wakers.current().turn()
        m = self._route(sql)
        if m is not None:
            result = await self._run_plain(m, mode, sql, params, shape, extra)
            if sql not in self._short_reads:
                self._learn(m, sql)
            return result
        pool = self._pool
        m = await pool.reserve()  # every reader holds a snapshot or a stream: wait for one
        try:
            return await self._run_plain(m, mode, sql, params, shape, extra)
        finally:
            pool.unreserve(m)

    async def _run_plain(
        self, m: Member, mode: int, sql: str, params: Any, shape: Any, extra: Any = None
    ) -> Any:
        m.inflight += 1
        self._inflight += 1
        try:
            # Pure: a read has no effects, so a cancelled one is abandoned at once.
            args = (m.session, None, mode, sql, params, shape, PLAIN, extra)
            waker = self._wakers.current()
            inline = m.worker.inline
            if inline is not None and self._inflight == 1:  # alone: see _on_writer
                how = inline.admit_read(sql)
                if how is not None:  # known short: on this thread, if the reader is idle
                    return await waker.here(m.worker, run, args, how, sql)
            return await waker.wait(m.worker, Job(run, args, key=sql, pure=True))
        finally:
            m.inflight -= 1
            self._inflight -= 1

    def _learn(self, reader: Member, sql: str) -> None:
        """Remember a query that ran on a (query_only) reader, and quickly: read-only, short.

        Only plain queries: a PRAGMA or ATTACH runs on a reader too, but reads or changes
        that connection's own state, so it must keep going to a reader.
        """
        took = reader.worker.expected(sql)
        if took is None or took >= SHORT_JOB:
            return
        if _PLAIN_QUERY.match(sql):
            if len(self._short_reads) >= 1024:
                self._short_reads.clear()
            self._short_reads.add(sql)

    def _home(self) -> Database:
        return self

    def _stream_on(self) -> tuple[Optional[Member], Optional[deque[str]]]:
        return None, None  # reserve a reader for the stream's lifetime

    def read(self) -> ReadSession:
        """``async with db.read() as r``: several reads on one consistent snapshot."""
        return ReadSession(self)

    # ---- writes: on the writer, one task at a time ----

    def _refuse_write(self, what: str) -> None:
        if self._readonly:
            raise ReadOnlyError(
                f"{what}: this Database was opened with readonly=True, so it cannot write; "
                "open it again without readonly=True to change it"
            )

    def _write(
        self, what: str, mode: int, sql: str, params: Any, shape: Any, tx: int
    ) -> Awaitable[Any]:
        self._refuse_write(what)
        w = self._writer
        job = Job(run, (w.session, None, mode, sql, params, shape, tx), key=sql)
        # Only a single statement may run on the loop thread: an executemany aborted over
        # its budget could not be run again (its parameters may be a consumed iterator).
        here = sql if mode == WRITE and tx == AUTOCOMMIT else None
        return self._on_writer(what, job, here)

    async def _on_writer(self, what: str, job: Job, here: Optional[str] = None) -> Any:
        """Run one job on the writer, in turn with transactions (one frame: the hot path).

        ``here``: the SQL of a one-statement autocommit write, which may run on the loop
        thread instead (see _inline)."""
        if self._closing or not self._opened:
            self._check_open()
        if self._inline:
            await self._wakers.current().turn()  # before deciding (see _query)
        gate = self._gate
        # Nobody holds or awaits the writer: a one-job write goes straight to its queue.
        # It cannot interleave with a transaction (the worker runs jobs whole, in order),
        # and a burst of such writes then runs back to back on the worker instead of taking
        # turns through the event loop.
        queued = not gate.free()
        if queued:
            await self._acquire_writer(what)
        w = self._writer
        w.inflight += 1
        self._inflight += 1
        try:
            waker = self._wakers.current()
            inline = w.worker.inline
            # Only when no other call of this Database is in flight: with concurrent work,
            # the writer thread commits in parallel with the loop (two cores), which beats
            # running the whole BEGIN...COMMIT on the loop (measured: a 100-task 80/20
            # read/write mix 12% slower with its writes here).
            if here is not None and not queued and inline is not None and self._inflight == 1:
                # Its own transaction (BEGIN IMMEDIATE ... COMMIT), known short: on this
                # thread if the writer is idle and nobody else holds the lock.
                how = self._own_write(inline, here)
                if how is not None:
                    return await waker.here(w.worker, job.fn, job.args, how, here, job)
            if here is not None:
                self._join_group(job, here)
            return await waker.wait(w.worker, job)
        finally:
            w.inflight -= 1
            self._inflight -= 1
            if queued:
                gate.release()

    def _join_group(self, job: Job, sql: str) -> None:
        """Let a db.execute() write go with the group's first write while that one waits
        in the writer's queue: one transaction, one COMMIT for all (see _statements._group;
        each still succeeds or fails alone).  Only single DML statements known to be short
        on the writer: a group cannot be interrupted for one member's cancel without
        running the others again.  The first such write after a group started leads the
        next one."""
        w = self._writer
        s = w.session
        if s.bare_autocommit or s.authorizer is not None:  # dqlite: each commits by itself
            return
        dml = self._dml.get(sql)
        if dml is None:
            if len(self._dml) >= MAX_KINDS:
                self._dml.clear()
            dml = self._dml[sql] = keyword(sql) in DML
        took = w.worker.expected(sql)
        if not dml or took is None or took >= GROUP_SHORT:
            return
        lead = self._lead
        members = None if lead is None else lead.members
        if (
            lead is not None
            and lead.state == PENDING
            and (members is None or len(members) < MAX_MEMBERS)
        ):
            job.lead = lead  # Worker.submit lists it, if the lead still waits then
        else:
            self._lead = job  # the next group's first

    def _own_write(self, inline: Inline, sql: str) -> How:
        """How an autocommit write may run on the loop thread (None: on the writer)."""
        if self._writer.session.checkpoint_due():
            return None  # this commit checkpoints or checks the WAL's size: on the writer
        return inline.admit_own_write(sql)

    async def _acquire_writer(self, what: str) -> None:
        """Queue for the writer (FIFO); fail if the Database closed meanwhile."""
        self._check_open()
        await self._gate.acquire(what)
        if self._closing:
            self._gate.release()
            raise self._closed_error()

    async def _on_reserved_reader(self, fn: Any, *args: Any) -> Any:
        """Run one job on a reader nobody else uses meanwhile (a snapshot of its own)."""
        self._check_open()
        m = await self._pool.reserve()
        try:
            return await self._call(m, fn, *args, pure=True)
        finally:
            self._pool.unreserve(m)

    async def execute(
        self, sql: str, params: Parameters = _NO_PARAMS, *, row_factory: Any = DEFAULT
    ) -> WriteResult:
        """Run one statement in its own transaction and commit it. 1 round trip.

        Returns ``lastrowid``, ``rowcount`` and the rows of a ``RETURNING`` clause.
        **Cancellation**: a statement that had not started never runs; a running one is
        interrupted and rolled back.
        """
        shape = self._shape(row_factory)
        what = "db.execute()"
        result: WriteResult = await self._write(what, WRITE, sql, params, shape, AUTOCOMMIT)
        return result

    async def executemany(self, sql: str, seq_of_params: Iterable[Parameters]) -> WriteResult:
        """Run a statement once per parameter set, all in one transaction. 1 round trip."""
        result: WriteResult = await self._write(
            "db.executemany()", MANY, sql, seq_of_params, None, AUTOCOMMIT
        )
        return result

    async def executescript(self, script: str) -> None:
        """Run a script of statements on the writer (DDL, migrations). 1 round trip.

        Statements outside ``BEGIN``/``COMMIT`` in the script each commit on their own; a
        transaction the script leaves open (or a script failing half-way) is rolled back.
        """
        await self._write("db.executescript()", SCRIPT, script, None, None, PLAIN)

    def transaction(self) -> Transaction:
        """``async with db.transaction() as tx``: a write transaction (BEGIN IMMEDIATE).

        Tasks queue for the writer in FIFO order; the block commits on normal exit and
        rolls back on an exception or cancellation.
        """
        self._refuse_write("db.transaction()")
        return Transaction(self)

    # ---- operating it (see _migrations.py and _maintenance.py) ----

    async def migrate(self, source: MigrationSource, *, dry_run: bool = False) -> list[Migration]:
        """Apply pending migration steps, each in its own transaction; return them.

        ``source``: a directory of ``NNNN_description.sql`` files, or a sequence of
        ``(version, sql_or_async_fn)`` / ``(version, name, sql_or_async_fn)``.  ``dry_run``
        only lists what would run.  Raises :class:`aiolite.MigrationError` for a changed
        applied step, a badly named file or a duplicate version.
        """
        if not dry_run:
            self._refuse_write("db.migrate()")
        return await migrate(self, source, dry_run=dry_run)

    async def migrations(self) -> list[Migration]:
        """The steps applied so far, in version order."""
        done = await applied(self)
        return [Migration(v, n, c, at) for v, (n, c, at) in sorted(done.items())]

    async def backup(
        self,
        dest: StrPath,
        *,
        pages: int = 1024,
        progress: Optional[Callable[[int, int], object]] = None,
        overwrite: bool = False,
    ) -> int:
        """Copy the database to the file ``dest`` with SQLite's online backup API.

        Writers keep writing meanwhile; the copy is one consistent snapshot taken when the
        backup starts.  ``progress(done_pages, total_pages)`` is called on the worker thread
        after every ``pages`` pages.  Returns the number of pages copied.

        Raises ``FileExistsError`` if ``dest`` exists (pass ``overwrite=True`` to replace
        it) and ``ValueError`` if it is the database or one of its ``-wal``/``-shm``/
        ``-journal`` files.  A backup that fails (disk full) removes its partial copy.
        """
        target = as_str(dest)  # on dqlite: from a dump of the leader's files
        return int(await self._on_reserved_reader(run_backup, target, pages, progress, overwrite))

    async def vacuum_into(self, dest: StrPath) -> None:
        """Write a compacted copy of the database to the new file ``dest`` (VACUUM INTO)."""
        self._not_on_cluster(
            "vacuum_into()", "VACUUM INTO would write the file on the node; use backup()"
        )
        await self._on_reserved_reader(run_vacuum_into, as_str(dest))

    async def checkpoint(self, mode: str = "PASSIVE") -> CheckpointResult:
        """Run a WAL checkpoint: PASSIVE, FULL, RESTART or TRUNCATE.

        Runs on the writer in turn with transactions.  RESTART and TRUNCATE wait (up to the
        writer's busy slice, 50 ms) for readers; ``busy`` in the result says they could not
        finish because a reader still holds an old snapshot.
        """
        self._refuse_write("db.checkpoint()")
        self._not_on_cluster("checkpoint()", "every node checkpoints its own WAL")
        if self._external:
            raise sqlite3.OperationalError(
                "this Database was opened with checkpoints='external': another process "
                "(Litestream) owns its checkpoints, and one run here would fight it (it "
                "keeps a read transaction open, so a checkpoint here cannot finish anyway). "
                "Let the replicator checkpoint; see docs/replication.md"
            )
        job = Job(run_checkpoint, (check_mode(mode),))
        result: CheckpointResult = await self._on_writer("db.checkpoint()", job)
        return result

    async def integrity_check(self, *, quick: bool = True, max_errors: int = 100) -> list[str]:
        """Problems found by ``PRAGMA quick_check`` (or ``integrity_check``); [] when ok."""
        return list(await self._on_reserved_reader(run_integrity_check, quick, max_errors))

    async def foreign_key_check(self) -> list[ForeignKeyViolation]:
        """Rows that violate a foreign key (``PRAGMA foreign_key_check``)."""
        return list(await self._on_reserved_reader(run_foreign_key_check))

    async def health(self) -> Health:
        """Journal mode, page and freelist counts, file and WAL sizes, schema version.

        On dqlite: ``path`` is the URL, ``file_bytes`` the pages' size, ``wal_bytes`` None.
        """
        health: Health = await self._on_reserved_reader(run_health)
        return health

    # ---- introspection ----

    @property
    def path(self) -> str:
        """Where the database lives (a ``file:`` URI for ``:memory:``)."""
        return self._location.target

    @property
    def closed(self) -> bool:
        return self._closing

    def statistics(self) -> DatabaseStatistics:
        """Counters for monitoring: writer queue, waits, transactions, busy retries."""
        gate = self._gate
        pool = self._pool
        return DatabaseStatistics(
            readers=len(pool.members),
            readers_reserved=pool.reserved,
            writer_waiting=gate.waiting,
            writer_waits=gate.waits,
            writer_wait_seconds=gate.wait_seconds,
            transactions=self._writer.session.transactions,
            rollbacks=self._rolled_back,
            busy_retries=sum(m.session.busy_retries for m in self._all),
            wal_truncations=self._writer.session.wal_truncations,
            round_trips=sum(m.worker.round_trips for m in self._all),
            wal_checkpoints=self._writer.session.wal_checkpoints,
            wal_checkpoints_busy=self._writer.session.wal_checkpoints_busy,
            inline_calls=sum(m.worker.inline.calls for m in self._all if m.worker.inline),
            inline_moved=sum(m.worker.inline.moved for m in self._all if m.worker.inline),
            grouped_writes=self._writer.session.grouped_writes,
            group_commits=self._writer.session.group_commits,
            group_retries=self._writer.session.group_retries,
        )


#: ``aiolite.open(path, ...)``: the Database constructor, under the name people look for.
open = Database


Database.__module__ = "aiolite"
DatabaseStatistics.__module__ = "aiolite"
