"""The worker thread: the one place where a call crosses threads.

Each connection owns one :class:`Worker`, a thread that owns one ``sqlite3.Connection``.
The event loop hands it :class:`Job` objects through a ``SimpleQueue``; the worker runs them
strictly in order and hands each outcome to the job's *waker* (see ``_backends``), which
wakes the waiting task on its own event loop.  Nothing here knows about SQL.

Protocol, in one screen:

* ``submit(job)`` (any thread) puts a job on the queue, unless the worker stopped accepting.
* The worker marks the job RUNNING under ``_lock``, calls ``job.fn(connection, *job.args)``,
  marks it DONE under ``_lock``, then hands the outcome to ``job.waker`` (``push`` + ``wake``).
  While more jobs are queued and known to be short, it holds outcomes and hands them over
  as a batch, so a burst of work costs the loop one wake-up (see SHORT_JOB below).
* ``cancel(job)`` (loop thread) marks a PENDING job CANCELLED, so it never runs; a RUNNING
  one is CANCELLED and interrupted with ``sqlite3.Connection.interrupt()``.  Holding ``_lock``
  while interrupting guarantees the interrupt is aimed at that job and no later one.  The
  outcome of a cancelled job is dropped; if it opened a transaction implicitly, the worker
  rolls that transaction back before running the next job.
* The *final* job (``stop()``, ``Connection.close()``) stops the queue from accepting more:
  the jobs already queued run first, then it closes the connection and the thread ends.
  Nothing can be queued behind it, so no job is ever left waiting forever.

The thread is a daemon so that a connection nobody closed never keeps the interpreter
alive; an ``atexit`` hook closes such connections cleanly before the interpreter finalizes.
"""

from __future__ import annotations

import atexit
import sqlite3
import threading
import time
import traceback
import weakref
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._exceptions import ConnectionClosedError

if TYPE_CHECKING:
    from ._backends._base import Waker

__all__ = ["Job", "Worker", "close_connection"]

PENDING, RUNNING, DONE, CANCELLED = 0, 1, 2, 3

#: How long the exit hook waits for each worker to finish the statement it is running.
EXIT_JOIN_TIMEOUT = 2.0

# Batching: while more jobs are queued, the worker holds finished outcomes and runs the
# next job first, if that kind of job has so far taken less than SHORT_JOB; the loop is then
# woken once for the whole batch instead of fighting the worker for the GIL after every
# job.  A held outcome waits at most MAX_HOLD plus one job that turned out slow.
SHORT_JOB = 200e-6
MAX_HOLD = 1e-3
MAX_HELD = 256
MAX_KEYS = 2048
LONG = float("inf")

JobFn = Callable[..., Any]


class Job:
    """One call to run on the worker: ``fn(connection, *args)``."""

    __slots__ = (
        "args",
        "final",
        "fn",
        "key",
        "rollback_if_cancelled",
        "shielded",
        "state",
        "waiter",
        "waker",
    )

    def __init__(
        self,
        fn: JobFn,
        args: tuple[Any, ...],
        rollback_if_cancelled: bool = False,
        final: bool = False,
        key: Any = None,
        shielded: bool = False,
    ) -> None:
        self.fn = fn
        # What the worker's duration history is kept by: the SQL text for statements.
        self.key = fn if key is None else key
        self.args = args
        self.state = PENDING
        self.waker: Optional[Waker] = None
        self.waiter: Any = None
        # Statement jobs: a cancelled one must not leave behind a transaction it opened.
        self.rollback_if_cancelled = rollback_if_cancelled
        # The closing job: the last one the worker runs; it cannot be cancelled.
        self.final = final
        # A COMMIT or a fetch refill: a cancel drops its outcome, never interrupts it.
        self.shielded = shielded


def _closed_error() -> ConnectionClosedError:
    return ConnectionClosedError(
        "Connection closed: this aiolite connection was closed (or is closing); "
        "open a new one with aiolite.connect()"
    )


class Worker:
    """A thread that owns one sqlite3 connection and runs jobs on it in order."""

    def __init__(self, name: str = "aiolite-worker") -> None:
        self._queue: SimpleQueue[Job] = SimpleQueue()
        self._lock = threading.Lock()
        # Plain attributes, read without the lock on every call (a bool read is atomic);
        # written only under _lock.
        #: False once the final job was submitted: no more jobs are taken.
        self.accepting = True
        #: True once the thread ran the final job (or was never started and stopped).
        self.finished = False
        self._late: list[Job] = []  # final jobs submitted after the first: woken at the end
        #: The sqlite3 connection, set by the job that opens it; None before and after.
        self.connection: Optional[sqlite3.Connection] = None
        #: Number of jobs whose outcome was delivered to a waiting task (thread round trips).
        self.round_trips = 0
        #: Error raised by a job nobody waited for (a property setter); raised by the next call.
        self.deferred_error: Optional[BaseException] = None
        #: Bumped by every interrupt: a job that waits in a loop (a busy retry) watches it.
        self.interrupts = 0
        self._durations: dict[Any, float] = {}  # job key -> moving average of its run time
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    # ---- called from event loop threads -------------------------------------------------

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def expected(self, key: Any) -> Optional[float]:
        """How long jobs with this key have taken here (a moving average), if known."""
        return self._durations.get(key)

    def start(self) -> None:
        self.thread.start()
        _live_workers.add(self)

    def submit(self, job: Job) -> None:
        """Queue ``job``; raise ConnectionClosedError once the worker stopped accepting.

        A final job is always accepted: the first one closes the connection, later ones
        are woken when the thread has ended.

        No lock here: holding one while ``put()`` wakes the worker makes the worker block
        on it straight away, an extra thread wake-up per job.  The rare race (a job queued
        by another thread behind the final one) is settled by ``_fail_leftovers``.
        """
        if job.final:
            with self._lock:
                if self.accepting:
                    self.accepting = False
                    self._queue.put(job)
                    return
                if not self.finished:
                    self._late.append(job)
                    return
            job.state = DONE
            if job.waker is not None:  # already over: the waker wakes the task on its next turn
                _hand_over(job, True, None)
            return
        if not self.accepting:
            raise _closed_error()
        self._queue.put(job)
        if self.finished:  # lost the race with the final job: nobody else will run it
            self._fail_leftovers()

    def post(self, fn: JobFn, *args: Any) -> bool:
        """Queue a job nobody waits for; return False (and do nothing) if not accepting."""
        if not self.accepting:
            return False
        self._queue.put(Job(fn, args))
        return True

    def stop(self) -> None:
        """Stop accepting jobs; the queued ones run, then the connection is closed."""
        if self.thread.ident is None:  # never started: there is nothing to close
            with self._lock:
                self.accepting = False
                self.finished = True
            return
        try:
            self.submit(Job(close_connection, (self,), final=True))
        except ConnectionClosedError:
            pass

    def cancel(self, job: Job) -> bool:
        """Abandon ``job``: True if it will never deliver, False if its outcome is on the way.

        A running job is interrupted.  The final job is never abandoned (the connection
        must close) but cancelling it interrupts the statement running ahead of it.
        """
        with self._lock:
            state = job.state
            if state in (DONE, CANCELLED):
                return state == CANCELLED
            if job.final:
                self._interrupt_locked()
                return False
            job.state = CANCELLED
            if state == RUNNING and not job.shielded:
                self._interrupt_locked()
            return True

    def interrupt(self) -> None:
        """Abort whatever statement is running now."""
        with self._lock:
            self._interrupt_locked()

    def _interrupt_locked(self) -> None:
        # Only under the lock: _close_connection() detaches the connection under it first,
        # so sqlite3_interrupt() never races with sqlite3_close().
        self.interrupts += 1
        if self.connection is not None:
            try:
                self.connection.interrupt()
            except sqlite3.ProgrammingError:
                pass

    def inspect(self, name: str) -> Any:
        """Read an attribute of the sqlite3 connection that needs no thread (in_transaction)."""
        with self._lock:
            if self.connection is None:
                raise _closed_error()
            return getattr(self.connection, name)

    def adopt(self, conn: sqlite3.Connection) -> None:
        """Worker thread: take ownership of the connection the opening job created."""
        with self._lock:
            self.connection = conn

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the thread to end (True if it did); a thread never started counts."""
        if self.thread.ident is None or self.thread is threading.current_thread():
            return True
        self.thread.join(timeout)
        return not self.thread.is_alive()

    # ---- the worker thread ----------------------------------------------------------------

    def _run(self) -> None:
        # The hot loop: every call and attribute lookup here is paid once per job, on the
        # critical path of every round trip, so helpers are inlined and names are locals.
        get = self._queue.get
        empty = self._queue.empty
        acquire = self._lock.acquire
        release = self._lock.release
        clock = time.perf_counter
        durations = self._durations
        held: list[tuple[Job, bool, Any]] = []  # outcomes not yet handed to their wakers
        held_since = 0.0
        while True:
            if held:
                if empty():
                    if len(held) == 1:  # the usual case: one outcome, one wake-up
                        _hand_over(*held.pop())
                    else:
                        self._hand_over_held(held)
                    job = get()
                else:
                    job = get()  # does not block: only this thread takes jobs
                    # Keep holding only while the next job is known to be short.
                    if (
                        durations.get(job.key, LONG) >= SHORT_JOB
                        or len(held) >= MAX_HELD
                        or clock() - held_since >= MAX_HOLD
                    ):
                        self._hand_over_held(held)
            else:
                job = get()
            acquire()
            if job.state != PENDING:  # cancelled before it started: never runs
                release()
                continue
            job.state = RUNNING
            release()
            conn = self.connection
            tx_before = job.rollback_if_cancelled and conn is not None and conn.in_transaction
            started = clock()
            try:
                value = job.fn(conn, *job.args)
                ok = True
            except BaseException as exc:  # delivered to the waiting task, never lost
                value = exc
                ok = False
                # The traceback's frames hold the job's sqlite3 cursors: free them here, on
                # the connection's own thread, not wherever the exception is dropped (a
                # cursor finalized on the loop thread can race with closing the connection).
                traceback.clear_frames(exc.__traceback__)
            ended = clock()
            # A moving average of how long jobs of this kind take.
            key = job.key
            old = durations.get(key)
            if old is None:
                if len(durations) >= MAX_KEYS:
                    durations.clear()
                durations[key] = ended - started
            else:
                durations[key] = old * 0.75 + (ended - started) * 0.25
            acquire()
            cancelled = job.state == CANCELLED
            job.state = DONE
            release()
            if cancelled:
                if job.rollback_if_cancelled and not tx_before:
                    self._rollback_implicit_transaction()
            elif job.waker is not None:
                self.round_trips += 1
                if not held:
                    held_since = ended
                held.append((job, ok, value))
            elif not ok:
                self.deferred_error = value
            if job.final:
                self._hand_over_held(held)
                self._finish()
                return
            # Drop references now: a traceback must not keep rows or cursors alive.
            del job, value

    @staticmethod
    def _hand_over_held(held: list[tuple[Job, bool, Any]]) -> None:
        """Push every held outcome, then wake each loop involved once."""
        wakers = []
        for job, ok, value in held:
            waker = job.waker
            assert waker is not None
            waker.push(job.waiter, ok, value)
            if waker not in wakers:
                wakers.append(waker)
        held.clear()
        for waker in wakers:
            waker.wake()

    def _finish(self) -> None:
        with self._lock:
            self.finished = True
            late, self._late = self._late, []
        for job in late:
            job.state = DONE
            if job.waker is not None:
                _hand_over(job, True, None)
        self._fail_leftovers()

    def _fail_leftovers(self) -> None:
        """Fail the jobs queued behind the final one (any thread; each is taken once)."""
        while True:
            try:
                job = self._queue.get_nowait()
            except Empty:
                return
            with self._lock:
                if job.state != PENDING:
                    continue
                job.state = DONE
            if job.waker is not None:
                _hand_over(job, False, _closed_error())

    def _rollback_implicit_transaction(self) -> None:
        conn = self.connection
        if conn is not None and conn.in_transaction:
            try:
                conn.rollback()
            except sqlite3.Error:
                pass


def _hand_over(job: Job, ok: bool, value: Any) -> None:
    waker = job.waker
    if waker is not None:
        waker.deliver(job.waiter, ok, value)


def close_connection(_: Any, worker: Worker) -> None:
    """The final job: close the connection (SQLite rolls back what was not committed)."""
    with worker._lock:
        conn, worker.connection = worker.connection, None
    if conn is not None:
        conn.close()


# Workers whose thread may still run; the exit hook closes what the program left open.
_live_workers: weakref.WeakSet[Worker] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    workers = list(_live_workers)
    for worker in workers:
        worker.stop()
        worker.interrupt()  # nobody can await a result any more: stop long statements now
    for worker in workers:
        worker.join(EXIT_JOIN_TIMEOUT)


atexit.register(_close_all_at_exit)
