"""A blocking dqlite client shaped like ``sqlite3.Connection``, for aiolite's worker threads.

The Database runs every statement on a worker thread (``_worker.py``) against an object
with sqlite3's connection API.  This module gives it one that talks to a dqlite cluster,
so the Database (writer queue, transactions, savepoints, types, row factories, migrations)
is the same code on a file and on a cluster; the event loop never touches a socket.

What sqlite3 answers locally, this client decides from what it sent:

* the leader: found by asking the nodes (LEADER), again whenever it changes;
* EXEC or QUERY: by the statement's tokens (``_sql.plan``);
* ``in_transaction``: by the transaction statements that succeeded;
* a leader change: a read, or a write the old leader refused (not leader), is sent again
  to the new leader; a transaction open on the old leader is gone (it was never
  applied): :class:`TransactionLostError` until the caller rolls back; a write or COMMIT
  whose answer never came may or may not have been applied: :class:`CommitUnknownError`.

Stopping a call (``interrupt()`` or the progress handler, i.e. a cancel or a time limit)
closes the socket: a dqlite 1.11 node only reads the next request after it sent the whole
result, so INTERRUPT stops nothing early.  Closing ends the statement (and rolls back an
open transaction) on the node at once; the next call connects again.  Inside a transaction,
a query stopped between two batches of rows is ended with INTERRUPT instead when the rest
of its rows arrive within INTERRUPT_BUDGET, which keeps the transaction; so is a cursor
closed before its last row.  A write outside a transaction is never stopped half-way: its
answer is awaited, so its outcome is known.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Optional

from .._exceptions import CommitUnknownError, NoLeaderError, TransactionLostError
from . import _sql, _wire
from ._leader import TICK, Link, Stopped, Target, find_leader
from ._wire import Failure

__all__ = ["Connection", "Cursor"]

_SQLITE_ROW = 100
#: dqlite 1.11 reads a query's column names before SQLite re-prepares a statement whose
#: schema changed, so the first query after another connection's DDL reports the old
#: columns.  A connection refreshes its schema before a query after DDL through the same
#: Target, and otherwise when this many seconds passed (as aiolite rechecks locally).
SCHEMA_RECHECK = 0.1
_REFRESH = "SELECT 1 FROM sqlite_master LIMIT 0"
#: How long a stopped query inside a transaction may take to finish its stream after
#: INTERRUPT before the connection is closed instead (which ends the transaction).
INTERRUPT_BUDGET = 0.1
#: Statements kept prepared per connection (the node holds them until it closes).
MAX_PREPARED = 64
_DDL = {"CREATE", "DROP", "ALTER"}


def _error_class(code: int) -> type[sqlite3.Error]:
    primary = code & 0xFF
    if primary in (19, 20):  # CONSTRAINT, MISMATCH
        return sqlite3.IntegrityError
    if primary == 18:  # TOOBIG
        return sqlite3.DataError
    if primary in (2, 12):  # INTERNAL, NOTFOUND
        return sqlite3.InternalError
    if primary in (21, 25):  # MISUSE, RANGE
        return sqlite3.ProgrammingError
    if primary == 11:  # CORRUPT
        return sqlite3.DatabaseError
    return sqlite3.OperationalError


def _sqlite_error(f: Failure) -> sqlite3.Error:
    exc = _error_class(f.code)(f.text)
    exc.sqlite_errorcode = f.code  # type: ignore[attr-defined]  # as sqlite3 on 3.11+
    return exc


class Connection:
    """The subset of ``sqlite3.Connection`` aiolite's Database uses, over dqlite.

    One thread at a time (the worker's), except ``interrupt()``, which any thread may call.
    """

    isolation_level = None  # the Database sends BEGIN/COMMIT itself

    def __init__(self, target: Target, stop: Optional[Callable[[], bool]] = None) -> None:
        """Connect to the leader.  ``stop`` is checked while looking for one (before a
        progress handler is set): a cancelled open does not wait for the timeout."""
        self.target = target
        self._link: Optional[Link] = None
        self._db_id = 0
        self._in_tx = False
        self._savepoints: list[str] = []
        self._tx_by_savepoint = False
        self._lost: Optional[str] = None
        self._setup: list[str] = []  # settings to replay on a new leader
        self._progress: Optional[Callable[[], Any]] = stop
        self._authorizer: Optional[Callable[..., int]] = None
        self._interrupted = False
        self._closed = False
        self._stream: Optional[Cursor] = None
        self._prepared: dict[str, int] = {}  # SQL -> statement id on this link
        self._sent: set[str] = set()  # writes sent once by text on this link
        self._shapes: dict[tuple[str, ...], sqlite3.Cursor] = {}
        self._local: Optional[sqlite3.Connection] = None
        self.row_factory: Any = None
        self.total_changes = 0
        self.reconnects = 0
        self.busy_timeout_ms = 0
        self._schema_epoch = -1
        self._schema_at = 0.0
        self._connect()

    # -- sqlite3.Connection's API --

    @property
    def url(self) -> str:
        """The cluster's URL (what health() reports as the database's path)."""
        return self.target.url

    @property
    def in_transaction(self) -> bool:
        return self._in_tx or self._lost is not None

    def cursor(self) -> Cursor:
        self._check()
        return Cursor(self)

    def execute(self, sql: str, params: Any = ()) -> Cursor:
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, seq: Iterable[Any]) -> Cursor:
        return self.cursor().executemany(sql, seq)

    def executescript(self, script: str) -> Cursor:
        cur = self.cursor()
        for statement in _sql.split(script):
            cur._execute(statement, (), script=True)
        return cur

    def commit(self) -> None:
        if self.in_transaction:
            self.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.execute("ROLLBACK")

    def interrupt(self) -> None:
        """Stop the call running now (any thread)."""
        self._interrupted = True

    def set_progress_handler(self, handler: Optional[Callable[[], Any]], n: int) -> None:
        # Called while a call waits for a node (every TICK s), not every n instructions.
        self._progress = handler if handler is not None and n > 0 else None

    def set_authorizer(self, authorizer: Optional[Callable[..., int]]) -> None:
        # Only the transaction action is checked (what aiolite's migrations use).
        self._authorizer = authorizer

    def close(self) -> None:
        self._closed = True
        self._drop()
        if self._local is not None:
            self._local.close()

    # -- internals --

    def _check(self) -> None:
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")

    def _stop_requested(self) -> bool:
        if self._interrupted:
            return True
        handler = self._progress
        return handler is not None and bool(handler())

    def _drop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()
        self._stream = None
        self._prepared.clear()  # statements live on the node's side of a connection
        self._sent.clear()

    def _message(self, link: Link, request: int, sql: str, params: bytes, prepare: bool) -> bytes:
        """The request for ``sql``: by statement id if it was prepared on this link (or is
        sent for the second time: then it is prepared now), else with its text."""
        if prepare:
            stmt = self._prepared.get(sql)
            if stmt is None and sql in self._sent and len(self._prepared) < MAX_PREPARED:
                try:
                    _, r = link.call(_wire.PREPARE, _wire.u64(self._db_id) + _wire.text(sql))
                except Failure:  # let EXEC_SQL report the error, as for any statement
                    self._sent.discard(sql)
                else:
                    r.u32()
                    stmt = self._prepared[sql] = r.u32()
            if stmt is not None:
                return _wire.message(_wire.EXEC, _wire.u32(self._db_id) + _wire.u32(stmt) + params)
            if len(self._sent) >= 4 * MAX_PREPARED:
                self._sent.clear()
            self._sent.add(sql)
        return _wire.message(request, _wire.u64(self._db_id) + _wire.text(sql) + params)

    def _connect(self) -> None:
        """Find the leader and open the database on it, until ``target.timeout``."""
        deadline = time.monotonic() + self.target.timeout
        while True:
            try:
                link = find_leader(self.target, self._stop_requested)
            except Stopped:
                raise sqlite3.OperationalError("interrupted while looking for the leader") from None
            try:
                _, r = link.call(
                    _wire.OPEN, _wire.text(self.target.name) + _wire.u64(0) + _wire.text("")
                )
                self._db_id = r.u32()
                for statement in self._setup:
                    link.call(_wire.EXEC_SQL, _wire.u64(self._db_id) + _wire.text(statement))
            except (OSError, Failure) as exc:
                link.close()
                leader_moved = isinstance(exc, OSError) or exc.code == _wire.SQLITE_IOERR_NOT_LEADER
                if leader_moved and time.monotonic() < deadline:
                    continue  # it stopped being the leader meanwhile: ask again
                if isinstance(exc, Failure):
                    raise _sqlite_error(exc) from None
                raise NoLeaderError(f"the dqlite leader went away while connecting: {exc}") from exc
            except BaseException:
                link.close()
                raise
            self._link = link
            return

    def _shape(self, names: tuple[str, ...]) -> sqlite3.Cursor:
        """A real sqlite3 cursor whose description names these columns, for row factories
        (``sqlite3.Row(cursor, row)`` accepts nothing else)."""
        cur = self._shapes.get(names)
        if cur is None:
            if self._local is None:
                self._local = sqlite3.connect(":memory:", check_same_thread=False)
            columns = ", ".join('NULL AS "' + n.replace('"', '""') + '"' for n in names)
            cur = self._local.execute(f"SELECT {columns}")
            cur.fetchall()
            if len(self._shapes) >= 256:
                self._shapes.clear()
            self._shapes[names] = cur
        return cur

    def _track(self, verb: Optional[str], sql: str) -> None:
        """Follow the transaction state through a transaction statement that succeeded."""
        if verb is None:
            return
        words = [t.upper() for k, t in _sql._tokens(sql) if k in ("word", "literal")]
        if verb == "BEGIN":
            self._in_tx = True
            self._tx_by_savepoint = False
        elif verb in ("COMMIT", "END"):
            self._end_tx()
        elif verb == "ROLLBACK":
            if "TO" not in words:
                self._end_tx()
        elif verb == "SAVEPOINT":
            if not self._in_tx:
                self._in_tx = self._tx_by_savepoint = True
            self._savepoints.append(words[-1].strip('"`[]'))
        elif verb == "RELEASE":
            name = words[-1].strip('"`[]')
            if name in self._savepoints:
                del self._savepoints[self._savepoints.index(name) :]
            if not self._savepoints and self._tx_by_savepoint:
                self._end_tx()

    def _end_tx(self) -> None:
        self._in_tx = self._tx_by_savepoint = False
        self._savepoints.clear()

    def _lose(self, why: str) -> None:
        """The node ended the open transaction: say so until the caller rolls back."""
        if self._in_tx:
            self._lost = why
            self._end_tx()

    def run(self, sql: str, params: Any, script: bool = False) -> tuple[Optional[list[str]], Any]:
        """Send one statement: (column names, rows deque) for a query, (None, (lastrowid,
        rowcount)) for a write.  Handles leader changes as the module docstring says."""
        self._check()
        self._interrupted = False
        if self._stream is not None:
            self._stream._drain()
        plan = _sql.plan(sql)
        if plan.several and not script:
            raise sqlite3.ProgrammingError("You can only execute one statement at a time.")
        verb = plan.verb
        if self._lost is not None:
            if verb == "ROLLBACK":
                self._lost = None  # the node rolled it back already
                return None, (None, 0)
            raise TransactionLostError(
                f"the transaction was lost ({self._lost}): nothing of it was applied. Roll "
                "it back and run it again"
            )
        authorizer = self._authorizer
        # SQLITE_TRANSACTION (22): the one action aiolite's guard refuses.
        if verb is not None and authorizer is not None and authorizer(22, None, None, None, None):
            raise sqlite3.DatabaseError("not authorized")
        if plan.first == "PRAGMA" and plan.words[1:2] == ["BUSY_TIMEOUT"]:
            return self._busy_timeout_pragma(sql)
        if plan.refused is not None:
            raise plan.refused
        kind = plan.kind
        values = _sql.bind(sql, params)
        if not script and len(values) != plan.count:
            raise sqlite3.ProgrammingError(
                f"Incorrect number of bindings supplied. The current statement uses "
                f"{plan.count}, and there are {len(values)} supplied."
            )
        body = _wire.encode_params(values)
        request = _wire.QUERY_SQL if kind == _sql.QUERY else _wire.EXEC_SQL
        # A write sent again is prepared on the node once, then sent by id (EXEC): the
        # leader then skips parsing it (measured: +6-19% commits/s).
        preparable = kind == _sql.EXEC and verb is None and plan.setting is None and not script
        write = kind == _sql.EXEC and verb != "ROLLBACK"
        if kind == _sql.QUERY:
            self._refresh_schema()
        deadline = time.monotonic() + self.target.timeout
        busy_until: Optional[float] = None
        pause = 0.001
        while True:
            try:
                result: tuple[Optional[list[str]], Any] = self._attempt(
                    request, body, sql, verb, write, preparable
                )
            except sqlite3.OperationalError as exc:
                # dqlite never waits for a lock (its node is one event loop): this is
                # SQLite's busy handler, on the client, for busy_timeout.
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF != 5:
                    raise
                now = time.monotonic()
                if busy_until is None:
                    busy_until = now + self.busy_timeout_ms / 1000
                if now + pause > busy_until or self._sleep(pause):
                    raise
                pause = min(pause * 2, 0.05)
                continue
            except _Retry:
                if time.monotonic() >= deadline:
                    raise NoLeaderError(
                        f"the dqlite leader kept changing for {self.target.timeout:g} s; "
                        "the statement was not run"
                    ) from None
                continue
            if kind == _sql.EXEC and plan.first in _DDL:
                self.target.schema_epoch += 1
            name = plan.setting if kind == _sql.EXEC else None
            if name is not None:
                self._setup = [s for s in self._setup if _sql.plan(s).setting != name]
                self._setup.append(sql)
            return result

    def _refresh_schema(self) -> None:
        """Make the node's connection load the current schema (see SCHEMA_RECHECK)."""
        now = time.monotonic()
        epoch = self.target.schema_epoch
        if epoch == self._schema_epoch and now - self._schema_at < SCHEMA_RECHECK:
            return
        while True:
            try:
                self._attempt(_wire.QUERY_SQL, b"", _REFRESH, None, False)
                break
            except _Retry:
                continue
        self._schema_epoch = epoch
        self._schema_at = now

    def _busy_timeout_pragma(self, sql: str) -> tuple[Optional[list[str]], Any]:
        """``PRAGMA busy_timeout``: kept here, never sent (a node must not wait for locks)."""
        rest = [t for _, t in _sql._tokens(sql)][2:]
        if not rest:
            return ["timeout"], (deque([(self.busy_timeout_ms,)]), False)
        value = "".join(rest[1:]).strip(";")
        if rest[0] == "=" and value.isdigit():
            self.busy_timeout_ms = int(value)
            return ["timeout"], (deque([(self.busy_timeout_ms,)]), False)
        raise sqlite3.OperationalError(f"PRAGMA busy_timeout takes milliseconds, got {sql!r}")

    def _sleep(self, seconds: float) -> bool:
        """Wait, in ticks, unless stopped; True if stopped."""
        end = time.monotonic() + seconds
        while True:
            if self._stop_requested():
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, TICK))

    def dump(self) -> list[tuple[str, bytes]]:
        """The database file and its WAL, as the leader has them now (DUMP)."""
        self._check()
        if self._stream is not None:
            self._stream._drain()
        if self._link is None:
            self._connect()
        assert self._link is not None
        try:
            _, r = self._link.call(_wire.DUMP, _wire.text(self.target.name), self._stop_requested)
        except Failure as f:
            raise _sqlite_error(f) from None
        except (OSError, Stopped) as exc:
            self._drop()
            raise sqlite3.OperationalError(f"the dump of {self.target} failed: {exc}") from exc
        return _wire.files(r)

    def backup(
        self, target: sqlite3.Connection, *, pages: int = -1, progress: Any = None, sleep: float = 0
    ) -> None:
        """sqlite3's backup(), from a dump of the leader's files (one consistent state)."""
        with tempfile.TemporaryDirectory(prefix="aiolite-dump-") as tmp:
            path = os.path.join(tmp, "db")
            for name, data in self.dump():
                suffix = "-wal" if name.endswith("-wal") else ""
                with open(path + suffix, "wb") as f:
                    f.write(data)
            source = sqlite3.connect(path)
            try:
                source.backup(target, pages=pages, progress=progress, sleep=sleep)
            finally:
                source.close()

    def _attempt(
        self,
        request: int,
        params: bytes,
        sql: str,
        verb: Optional[str],
        write: bool,
        preparable: bool = False,
    ) -> Any:
        if self._link is None:
            if self._in_tx:
                self._lose("the connection to the leader broke")
                raise TransactionLostError(
                    "the transaction was lost: the connection to the leader broke"
                )
            self._connect()
            self.reconnects += 1
        link = self._link
        assert link is not None
        # What may be stopped half-way: a read, or anything in a transaction but its COMMIT
        # (the node rolls the transaction back).  A write outside one runs to its answer.
        stoppable = not write or (self._in_tx and verb not in ("COMMIT", "END"))
        try:
            # A request that did not leave whole was not run: the node runs whole messages.
            link.check_alive()
            link.send(self._message(link, request, sql, params, preparable))
        except OSError as exc:
            self._drop()
            if self._in_tx:
                self._lose(f"the connection to the leader broke ({exc})")
                raise TransactionLostError(
                    f"the transaction was lost: the connection to the leader broke ({exc}). "
                    "Nothing of it was applied; roll back and run it again"
                ) from exc
            raise _Retry() from exc
        try:
            kind, r = link.receive(self._stop_requested if stoppable else None)
        except Stopped:
            raise self._interrupted_error() from None
        except OSError as exc:
            self._drop()
            return self._broken(exc, sql, verb, write)
        if kind == _wire.R_FAILURE:
            f = r.failure()
            if f.code == _wire.SQLITE_IOERR_NOT_LEADER:
                self._drop()
                if self._in_tx:
                    self._lose("the leader changed")
                    raise TransactionLostError(
                        "the transaction was lost: the dqlite leader changed while it was "
                        "open, and nothing of it was applied. Roll back and run it again"
                    )
                raise _Retry()
            if f.code == _wire.SQLITE_IOERR_LEADERSHIP_LOST:
                self._drop()
                if verb in ("COMMIT", "END") or (write and not self._in_tx):
                    self._lose("leadership lost at commit")
                    self._lost = None
                    raise CommitUnknownError(
                        "the dqlite leader lost its leadership while replicating this "
                        f"{'commit' if verb else 'write'}: it may or may not have been "
                        "applied. Check before running it again"
                    )
                self._lose("the leader lost its leadership")
                raise TransactionLostError(
                    "the transaction was lost: the dqlite leader lost its leadership while "
                    "it was open. Roll back and run it again"
                )
            if f.code == _SQLITE_ROW and _sql.plan(sql).setting is not None:
                # A setting that echoes its new value (EXEC wants none): it took effect.
                self._track(verb, sql)
                return None, (0, 0)
            if f.code & 0xFF == 1 and "no transaction is active" in f.text:
                self._end_tx()
            raise _sqlite_error(f)
        if kind == _wire.R_RESULT:
            last, changes = r.u64(), r.u64()
            self.total_changes += changes
            self._track(verb, sql)
            return None, (last if last < 1 << 63 else last - (1 << 64), changes)
        if kind == _wire.R_ROWS:
            names = r.columns()
            rows: deque[tuple[Any, ...]] = deque()  # (a deque: fetchone pops from the left)
            more = r.rows(len(names), rows)
            return names, (rows, more)
        self._drop()
        raise sqlite3.InterfaceError(f"dqlite answered with an unexpected message type {kind}")

    def _broken(
        self, exc: BaseException, sql: str, verb: Optional[str], write: bool
    ) -> tuple[Optional[list[str]], Any]:
        """The connection broke after the request was (perhaps) sent."""
        where = f"the connection to the leader broke ({exc})"
        if verb in ("COMMIT", "END"):
            self._lose(where)
            self._lost = None
            raise CommitUnknownError(
                f"{where} after COMMIT was sent: the transaction may or may not have been "
                "applied. Check before running it again"
            ) from exc
        if self._in_tx:
            self._lose(where)
            raise TransactionLostError(
                f"the transaction was lost: {where}. Nothing of it was applied; roll back "
                "and run it again"
            ) from exc
        if write:
            raise CommitUnknownError(
                f"{where} after the write was sent: it may or may not have been applied. "
                "Check before running it again"
            ) from exc
        raise _Retry()

    def _interrupted_error(self) -> sqlite3.OperationalError:
        """A stopped wait: the socket is closed, which ends the statement on the node."""
        self._drop()
        self._lose("interrupted")
        return sqlite3.OperationalError("interrupted")

    def interrupt_stream(self, budget: Optional[float]) -> bool:
        """End the query whose rows are still coming, keeping the connection: INTERRUPT,
        then read until the node's EMPTY (a 1.11 node reads INTERRUPT only after it sent
        the whole result, so the rest of the rows arrive first, discarded).  False, with
        the connection closed, if that takes longer than ``budget`` seconds (None: no
        limit) or the connection breaks."""
        link = self._link
        assert link is not None
        self._stream = None
        deadline = None if budget is None else time.monotonic() + budget

        def late() -> bool:
            return deadline is not None and time.monotonic() > deadline

        try:
            link.send(_wire.message(_wire.INTERRUPT, _wire.u64(self._db_id)))
            while True:
                kind, _ = link.receive(late)
                if kind == _wire.R_EMPTY:
                    return True
                if late():
                    raise Stopped()
        except (Stopped, OSError):
            self._drop()
            return False

    def _more(self, cur: Cursor) -> bool:
        """Read the next batch of a query's rows into ``cur``; whether more follow."""
        link = self._link
        assert link is not None
        assert self._stream is cur
        if self._stop_requested():  # a stream that never pauses never times out either
            # Between two messages: inside a transaction, INTERRUPT keeps it if the rest of
            # the result comes quickly; else (or outside one) closing is cheaper.
            if self._in_tx and self.interrupt_stream(INTERRUPT_BUDGET):
                raise sqlite3.OperationalError("interrupted")
            raise self._interrupted_error()
        try:
            kind, r = link.receive(self._stop_requested)
        except Stopped:
            raise self._interrupted_error() from None
        except OSError as exc:
            self._drop()
            self._lose(f"the connection to the leader broke ({exc})")
            raise sqlite3.OperationalError(
                f"the connection to the dqlite leader broke while reading rows ({exc}); "
                "run the query again"
            ) from exc
        if kind == _wire.R_FAILURE:
            self._stream = None
            raise _sqlite_error(r.failure())
        r.columns()
        return r.rows(len(cur._names), cur._rows)


class _Retry(Exception):
    """Nothing was applied; send the statement again, to the new leader."""


class Cursor:
    """The subset of ``sqlite3.Cursor`` the Database uses.  Rows arrive in batches (about
    a memory page each): fetchone() reads only as many as it needs."""

    arraysize = 1

    def __init__(self, conn: Connection) -> None:
        self.connection = conn
        self.row_factory: Any = None
        self.description: Optional[tuple[tuple[Any, ...], ...]] = None
        self.lastrowid: Optional[int] = None
        self.rowcount = -1
        self._names: tuple[str, ...] = ()
        self._shape: Optional[sqlite3.Cursor] = None  # for row factories (see _make)
        self._rows: deque[tuple[Any, ...]] = deque()
        self._more = False

    def execute(self, sql: str, params: Any = ()) -> Cursor:
        return self._execute(sql, params)

    def _execute(self, sql: str, params: Any, script: bool = False) -> Cursor:
        conn = self.connection
        names, result = conn.run(sql, params, script)
        if names is None:
            self.description = None
            self._rows = deque()
            self._more = False
            self.lastrowid, self.rowcount = result
            return self
        self._names = tuple(names)
        self._shape = None
        self.description = tuple((n, None, None, None, None, None, None) for n in names)
        self._rows, self._more = result
        self.rowcount = -1
        if self._more:
            conn._stream = self
        return self

    def executemany(self, sql: str, seq: Iterable[Any]) -> Cursor:
        if _sql.route(sql) == _sql.QUERY:
            raise sqlite3.ProgrammingError("executemany() can only execute DML statements.")
        total = 0
        for params in seq:
            self.execute(sql, params)
            total += self.rowcount
        self.rowcount = total
        return self

    def _fill(self) -> bool:
        """Read another batch; False when the result is complete."""
        if not self._more:
            return False
        try:
            self._more = self.connection._more(self)
        except BaseException:
            self._more = False  # the connection ended the query (an interrupt, an error)
            raise
        if not self._more:
            self.connection._stream = None
        return True

    def _drain(self) -> None:
        while self._fill():
            pass

    def _make(self, row: tuple[Any, ...]) -> Any:
        factory = self.row_factory
        if factory is None:
            return row
        shape = self._shape
        if shape is None:
            shape = self._shape = self.connection._shape(self._names)
        return factory(shape, row)

    def fetchone(self) -> Any:
        while not self._rows:
            if not self._fill():
                return None
        return self._make(self._rows.popleft())

    def fetchmany(self, size: Optional[int] = None) -> list[Any]:
        n = self.arraysize if size is None else size
        out: list[Any] = []
        while len(out) < n:
            if not self._rows and not self._fill():
                break
            while self._rows and len(out) < n:
                out.append(self._make(self._rows.popleft()))
        return out

    def fetchall(self) -> list[Any]:
        self._drain()
        rows, self._rows = self._rows, deque()
        if self.row_factory is None:
            return list(rows)
        return [self._make(r) for r in rows]

    def close(self) -> None:
        conn = self.connection
        if self._more and conn._stream is self:
            # The node sends the whole result whatever the client reads: outside a
            # transaction a new connection is cheaper than the rest of a big result;
            # inside one, INTERRUPT ends the query and keeps the transaction.
            if not conn.in_transaction:
                conn._drop()
            elif not conn.interrupt_stream(None):
                conn._lose("the connection broke while a query was being closed")
        self._more = False
        self._rows = deque()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row
