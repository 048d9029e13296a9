"""Transactions on the writer: the fair queue (WriterGate), Transaction and Savepoint.

Only one task at a time holds the writer.  Tasks queue for it FIFO, in the event loop, so no
two transactions of one Database ever meet inside SQLite and "database is locked" cannot
happen between them.  ``BEGIN IMMEDIATE`` takes SQLite's write lock at the start of the
transaction, not at its first write, so a read-modify-write never fails half-way because
another process wrote in between.

Round trips: ``BEGIN IMMEDIATE``, ``SAVEPOINT`` and ``RELEASE`` are deferred and sent with
the next statement, so a transaction costs one trip per statement plus one for ``COMMIT``;
an empty one costs none.  Rollbacks are queued, not awaited, which is also why they work
when the task is being cancelled (trio forbids awaiting then).
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Optional

from ._backends import LoopBound, current_task, make_lock
from ._queries import DEFAULT, Attached
from ._statements import BEGIN, COMMIT, MANY, NO_TX_CONTROL, TX, WRITE, WriteResult, rollback
from ._types import Parameters

if TYPE_CHECKING:
    from ._database import Database
    from ._pool import Member

__all__ = ["Savepoint", "Transaction", "WriterGate"]

_NO_PARAMS: tuple[()] = ()
NEW, OPEN, BROKEN, DONE = range(4)


class WriterGate:
    """The FIFO queue for the writer, with the counters ``statistics()`` reports."""

    def __init__(self) -> None:
        self._lock: Any = None  # asyncio.Lock or trio.Lock of the loop using it now
        self._bound = LoopBound()
        self.owner: Any = None
        self.waiting = 0  # tasks queued now
        self.waits = 0  # acquisitions that had to queue
        self.wait_seconds = 0.0  # time spent queued, in total

    def free(self) -> bool:
        """True when no task holds the writer or waits for it."""
        return self.waiting == 0 and (self._lock is None or not self._lock.locked())

    async def acquire(self, what: str) -> None:
        lock = self._lock = self._bound.get(make_lock, self.free(), "the Database's writer")
        task = current_task()
        if task is not None and task is self.owner:
            raise sqlite3.ProgrammingError(
                f"{what} inside 'async with db.transaction() as tx' would wait for that "
                "transaction forever: use tx.execute()/tx.fetchone()... or tx.savepoint()"
            )
        if lock.locked():
            self.waiting += 1
            started = time.monotonic()
            try:
                await lock.acquire()
            finally:
                self.waiting -= 1
                self.waits += 1
                self.wait_seconds += time.monotonic() - started
        else:
            await lock.acquire()  # free: returns at once (trio: after a checkpoint)
        self.owner = task

    def release(self) -> None:
        self.owner = None
        self._lock.release()


class Transaction(Attached):
    """``async with db.transaction() as tx``: a write transaction on the writer.

    Commits when the block ends normally; rolls back on an exception or a cancellation.
    Statements go through ``tx``: ``tx.execute``, ``tx.executemany``, ``tx.fetchone``,
    ``tx.fetchall``, ``tx.fetchval``; reads see the transaction's own writes.

    **Cancellation**: a statement that had not started never runs; a running one is
    interrupted; the transaction is rolled back either way.  A cancel that arrives while
    ``COMMIT`` runs does not stop it: the transaction is committed and the task still sees
    the cancellation.
    """

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._state = NEW
        self._savepoints = 0

    async def __aenter__(self) -> Transaction:
        db = self._db
        if self._state != NEW:
            raise RuntimeError("a transaction can be entered once; call db.transaction() again")
        await db._acquire_writer("db.transaction()")
        self._pending.append(BEGIN)
        self._state = OPEN
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        db = self._db
        state, self._state = self._state, DONE
        if state not in (OPEN, BROKEN):
            return
        try:
            if exc_type is None and state == OPEN:
                if self._ops:
                    await self._commit()
                return
            self._rollback()
            if exc_type is None:  # a cancellation was swallowed inside the block
                raise sqlite3.OperationalError(
                    "the transaction was rolled back: one of its statements was cancelled, "
                    "so it cannot commit; run the whole transaction again"
                )
        finally:
            db._gate.release()

    async def _commit(self) -> None:
        # Shielded: a cancel that lands while COMMIT runs must not interrupt it half-way.
        try:
            await self._run_on(self._db._writer, COMMIT, "COMMIT", None, None, TX, shielded=True)
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        self._db._rolled_back += 1
        if self._ops:  # nothing was sent otherwise: nothing to undo
            w = self._db._writer
            w.worker.post(rollback, w.session, self._pending)

    def _check(self) -> None:
        if self._state == OPEN:
            return
        if self._state == BROKEN:
            raise sqlite3.OperationalError(
                "this transaction was cancelled part-way and will be rolled back; "
                "leave the 'async with' block and run it again"
            )
        raise sqlite3.ProgrammingError(
            "this transaction is not active: use it inside 'async with db.transaction() as tx'"
        )

    async def _query(self, mode: int, sql: str, params: Any, shape: Any, extra: Any = None) -> Any:
        self._check()
        try:
            return await self._run_on(self._db._writer, mode, sql, params, shape, TX, extra=extra)
        except Exception:
            raise
        except BaseException:  # cancelled: what ran of it is unknown, so it cannot commit
            self._state = BROKEN
            raise

    async def execute(
        self, sql: str, params: Parameters = _NO_PARAMS, *, row_factory: Any = DEFAULT
    ) -> WriteResult:
        """Execute one statement in the transaction. 1 round trip."""
        result: WriteResult = await self._query(WRITE, sql, params, self._shape(row_factory))
        return result

    async def executemany(self, sql: str, seq_of_params: Iterable[Parameters]) -> WriteResult:
        """Execute a statement once per parameter set. 1 round trip."""
        result: WriteResult = await self._query(MANY, sql, seq_of_params, None)
        return result

    async def _execute_guarded(self, sql: str) -> None:
        """Execute SQL that must not end the transaction (a migration step's statement):
        SQLite refuses BEGIN/COMMIT/ROLLBACK in it at prepare time."""
        await self._query(WRITE, sql, _NO_PARAMS, None, NO_TX_CONTROL)

    def _stream_on(self) -> tuple[Optional[Member], Optional[deque[str]]]:
        self._check()
        self._ops += 1
        return self._db._writer, self._pending

    def savepoint(self) -> Savepoint:
        """A nested transaction: ``async with tx.savepoint():`` rolls back only its own work."""
        self._check()
        self._savepoints += 1
        return Savepoint(self, f"aiolite_sp{self._savepoints}")


class Savepoint:
    """``async with tx.savepoint():`` — released on normal exit, rolled back to on an error.

    Costs no round trip: its SAVEPOINT/RELEASE statements travel with the transaction's next
    statement (or its COMMIT).
    """

    def __init__(self, tx: Transaction, name: str) -> None:
        self._tx = tx
        self._name = name

    async def __aenter__(self) -> Savepoint:
        self._tx._check()
        self._tx._pending.append(f"SAVEPOINT {self._name}")
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        tx = self._tx
        if tx._state != OPEN:
            return  # the whole transaction rolls back
        if exc_type is not None:
            tx._pending.append(f"ROLLBACK TO {self._name}")
        tx._pending.append(f"RELEASE {self._name}")


Transaction.__module__ = "aiolite"
Savepoint.__module__ = "aiolite"
