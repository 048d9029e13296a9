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
* A job may name a queued ``lead`` to go with: while the lead has not started, the job is
  also listed in the lead's ``members``, and the lead's function may run it first
  (``claim`` + ``member_done``; a Database groups short writes into one transaction so).
  The member stays queued all the same: claimed, it is skipped there; not claimed (the
  lead was cancelled, or left it), it runs there in its turn.
* ``cancel(job)`` (loop thread) marks a PENDING job CANCELLED, so it never runs.  A RUNNING
  job is *aborted*: the worker's progress handler (installed on every connection it owns)
  sees the request at SQLite's next progress check and stops the job's own statement.  Never
  ``sqlite3_interrupt()``: that flag is connection-wide and stays set while any other
  statement (a half-read cursor) is open, so it would fail other tasks' statements and the
  ROLLBACK that cleans up.  A running job then reports the truth: aborted (the waiting task
  sees a cancellation), or finished after all (the task gets the outcome, e.g. a COMMIT that
  happened).  Only ``pure`` jobs, of which nothing outlives a cancel (reads, refills, the
  statements of a transaction that the cancel rolls back), are abandoned at once.
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
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Empty, SimpleQueue
from time import perf_counter
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._exceptions import ConnectionClosedError, is_busy
from ._inline import SHORT_HERE, WRITE

if TYPE_CHECKING:
    from ._backends._base import Waker
    from ._inline import Inline

__all__ = [
    "NOT_HERE",
    "Aborted",
    "Job",
    "Worker",
    "close_connection",
    "lost_transaction_error",
    "statement_job",
]

# CANCELLED: will never deliver (it never ran, or it was abandoned).  CANCELLING: running, a
# cancel was asked for, and the waiting task waits for the truth (aborted or finished).
PENDING, RUNNING, DONE, CANCELLED, CANCELLING = 0, 1, 2, 3, 4

#: SQLite calls the worker's progress handler every this many VM instructions (about 1 ms of
#: work): the latency of a cancel.  Short statements never reach it, so they pay nothing.
#: Each call takes the GIL, so a much smaller value slows long statements while the event
#: loop is busy (measured: 100k -> 2.5x, 10k -> 6x on a 2-core VM with a spinning loop).
PROGRESS_STEPS = 100_000
#: The same while a call runs on the loop thread (see run_here): ~70 µs, the precision of
#: its budget.  Nothing else is running then, so the GIL it takes costs nobody.
INLINE_STEPS = 10_000


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
#: The most members one job takes (see Worker.submit): a group of short writes commits
#: once for all of them; the first of them waits for the last.
MAX_MEMBERS = 64
LONG = float("inf")

JobFn = Callable[..., Any]


class Job:
    """One call to run on the worker: ``fn(connection, *args)``."""

    __slots__ = (
        "args",
        "final",
        "fn",
        "key",
        "lead",
        "members",
        "pure",
        "rollback_if_cancelled",
        "shielded",
        "state",
        "stmt",
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
        pure: bool = False,
        stmt: Optional[tuple[str, Any]] = None,
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
        # A COMMIT, a fetch refill: never aborted once running.
        self.shielded = shielded
        # Nothing of it outlives a cancel (a read, a refill into a buffer, a statement of a
        # transaction that the cancel rolls back): a cancel may abandon it while it runs
        # instead of waiting for its outcome.
        self.pure = pure
        #: (sql, parameters) of a statement job that may run on the caller's thread
        #: (see _inline); None for every other job.
        self.stmt = stmt
        #: A job still queued that this one asks to run with (see Worker.submit), and the
        #: jobs that asked this one: its function may run them itself (Worker.claim).
        self.lead: Optional[Job] = None
        self.members: Optional[list[Job]] = None


#: What ``Worker.run_here`` returns when the call did not run on the calling thread.
NOT_HERE: Any = object()


def nothing(_: Any) -> None:
    """A job that only marks its place in the queue (see Worker.gate)."""


def statement_job(fn: JobFn, args: tuple[Any, ...], key: Any, stmt: Any) -> Job:
    """The job of a connect() statement: if cancelled, it leaves no transaction it opened."""
    return Job(fn, args, True, False, key, stmt=stmt)


class Aborted(Exception):
    """The outcome of a job the worker aborted because its waiting task was cancelled.

    Wakers turn it into the cancellation of their library; ``error`` is what SQLite raised.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__("the statement was aborted because its task was cancelled")
        self.error = error


def lost_transaction_error() -> sqlite3.OperationalError:
    return sqlite3.OperationalError(
        "the transaction was rolled back: a write in it was interrupted (cancelled), and "
        "SQLite then rolls back the whole transaction; nothing of it will be committed. "
        "Call rollback() and run the whole transaction again"
    )


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
        # The exec token, held by whoever runs SQL on the connection: the worker for each
        # job, or the loop thread for a call it runs itself (run_here, Cursor.__await__).
        # A queue holding one token is a lock whose non-blocking take (get_nowait) and
        # give back (put) are plain fast calls: a Lock's acquire(False) parses its
        # arguments, ~2% of a short INSERT run on the loop thread.  One ticket per job
        # queued and not yet run: a call may run on the loop thread only when there is
        # none, so it never overtakes a job queued before it.
        self.token: SimpleQueue[None] = SimpleQueue()
        self.token.put(None)
        self._tickets: list[None] = []
        #: Jobs submitted so far, and the last no-op job a waker queued to learn when
        #: the queue ahead of it has run (see _asyncio._Behind): tasks share it while
        #: nothing was submitted after it.
        self.submitted = 0
        self.gate: Any = None
        #: Adaptive execution (see _inline): None when every call goes to the thread.
        self.inline: Optional[Inline] = None
        #: The statements the loop thread may run without asking ``inline`` (its
        #: ``Inline.fast``; empty without one).  An entry holds only while the connection
        #: is open, probed, takes jobs, has lost no transaction and has no deferred error:
        #: whatever ends one of these empties the dict first, so that the hot path
        #: (``Cursor.__await__``) checks none of them.
        #: An entry is the statement's budget: > 0 s for a read, 0 for a write in the
        #: transaction that holds the write lock (see Inline.admit).
        self.fast: dict[Any, float] = {}
        #: The sqlite3 cursor statements of new cursors run on (run_new): one per
        #: connection, not one per statement; a statement that leaves rows unread keeps
        #: it, and a new one takes its place.  Set by the probe, and by run_new.
        self.raw: Optional[sqlite3.Cursor] = None
        #: When the call running on the loop thread must give up (monotonic), and whether
        #: it did: it then runs again on the worker.
        self.budget_deadline: Optional[float] = None
        self.over_budget = False
        self._steps = PROGRESS_STEPS
        self._probed = False
        #: True while a NOWAIT call runs on the loop thread: a busy retry loop must give
        #: up at once (the call then moves to the worker) instead of retrying here.
        self.here = False
        #: The connection's busy timeout is 0, as a NOWAIT call on the loop thread set it
        #: (so that a locked database fails at once there instead of sleeping), and
        #: wait_ms (its configured value, milliseconds) is restored before anything else
        #: may wait on it: a job, or another thread holding the connection.  Left at 0
        #: between calls on the loop thread, where nothing may wait anyway: setting and
        #: restoring it around each one were two statements, ~20% of a short write there.
        self.no_wait = False
        self.wait_ms = 0
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
        #: The job running now; an abort asked for it; whether the abort stopped a statement.
        self._running: Optional[Job] = None
        self.aborting = False  # read by a job that waits in a loop (a busy retry)
        #: A time limit the running job set for itself (monotonic), and whether it passed.
        self.deadline: Optional[float] = None
        self.expired = False
        self._aborted = False
        #: Set when an aborted write took the user's open transaction with it (SQLite rolls
        #: back the whole transaction): statements are refused until rollback() (connect()).
        self.lost_transaction = False
        # A progress handler set by the user, chained behind the worker's own.
        self._user_progress: Optional[Callable[[], Any]] = None
        self._user_every = 1
        self._user_n = 0
        self._progress_calls = 0
        self._durations: dict[Any, float] = {}  # job key -> moving average of its run time
        #: Outcomes of members the running job ran (see claim), delivered after its own.
        self._member_outcomes: list[tuple[Job, bool, Any, float]] = []
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
                    self.fast.clear()
                    self._tickets.append(None)
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
        lead = job.lead
        if lead is not None:
            with self._lock:
                members = lead.members
                if lead.state != PENDING or (members is not None and len(members) >= MAX_MEMBERS):
                    job.lead = None  # it started (or is full): this job goes alone
                else:
                    if members is None:
                        members = lead.members = []
                    members.append(job)
        self._tickets.append(None)
        self.submitted += 1
        self._queue.put(job)
        if self.finished:  # lost the race with the final job: nobody else will run it
            self._fail_leftovers()

    def claim(self, job: Job) -> bool:
        """Worker thread, from the running job's function: take one of its ``members`` to
        run now (True), unless it was cancelled (False: it never runs)."""
        with self._lock:
            if job.state != PENDING:
                return False
            job.state = RUNNING
            return True

    def member_done(self, job: Job, ok: bool, value: Any, took: float) -> None:
        """Worker thread: the outcome of a claimed member, handed over after the running
        job's own (so, for a Database's group of writes, after their COMMIT)."""
        self._member_outcomes.append((job, ok, value, took))

    def post(self, fn: JobFn, *args: Any) -> bool:
        """Queue a job nobody waits for (a release, a rollback); False once the thread ended.

        Accepted until the thread has ended, even behind the final job: such a job is then
        dropped *on the worker thread*, so the sqlite3 objects it holds are finalized there
        and never on the caller's (an event loop that would block on the connection's
        mutex while a statement runs).
        """
        if self.finished:
            return False
        self._tickets.append(None)
        self.submitted += 1
        self._queue.put(Job(fn, args))
        self._fail_leftovers_if_finished()  # lost the race with the thread's end?
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
        """Cancel ``job``: True if it will never deliver, False if its outcome will come.

        A pending job never runs.  A running job is aborted (unless shielded); a pure one is
        abandoned (True), any other delivers the truth: ``Aborted`` if the abort stopped it,
        else its real outcome.  The final job is never abandoned (the connection must close)
        but cancelling it aborts the statement running ahead of it.
        """
        with self._lock:
            state = job.state
            if state == PENDING and not job.final:
                job.state = CANCELLED
                return True
            if job.final:
                self._abort_locked()
                return False
            if state != RUNNING:
                return state == CANCELLED
            if not job.shielded:
                self.aborting = True
            if job.pure:
                job.state = CANCELLED
                return True
            job.state = CANCELLING
            return False

    def abort_running(self) -> None:
        """Abort the statement running now (``Connection.interrupt()``, exit), if any."""
        with self._lock:
            self._abort_locked()

    def _abort_locked(self) -> None:
        job = self._running
        if job is not None and not job.shielded:
            self.aborting = True

    def check_abort(self, doing: str) -> None:
        """Worker thread: raise if the running job was aborted (for jobs that wait in a loop,
        where SQLite's progress handler is not called)."""
        if self.aborting:
            self._aborted = True
            raise sqlite3.OperationalError(f"interrupted while {doing}")

    def _progress(self) -> int:
        """SQLite's progress handler (worker thread, every PROGRESS_STEPS instructions)."""
        if self.aborting:
            self._aborted = True
            return 1
        deadline = self.deadline
        if deadline is not None and time.monotonic() >= deadline:
            self.expired = True  # the job's own time limit: it reports it (not a cancel)
            return 1
        budget = self.budget_deadline
        if budget is not None and perf_counter() >= budget:
            self.over_budget = True  # a call on the loop thread ran too long: move it
            return 1
        user = self._user_progress
        if user is not None:
            self._progress_calls += 1
            if self._progress_calls >= self._user_every:
                self._progress_calls = 0
                return 1 if user() else 0
        return 0

    def set_progress_handler(
        self, conn: sqlite3.Connection, handler: Optional[Callable[[], Any]], n: int
    ) -> None:
        """Worker thread: chain the user's handler behind the worker's own (called ~every n)."""
        if handler is None or n <= 0:
            self._user_progress = None
        else:
            self._user_progress = handler
            self._user_n = n
            self._progress_calls = 0
        self._set_steps(conn, PROGRESS_STEPS)

    def _set_steps(self, conn: sqlite3.Connection, steps: int) -> None:
        """Call the progress handler every ``steps`` instructions (fewer if the user's
        handler asked for fewer); the user's handler still runs about every n."""
        if self._user_progress is not None:
            steps = min(self._user_n, steps)
            self._user_every = max(1, round(self._user_n / steps))
        self._steps = steps
        conn.set_progress_handler(self._progress, steps)

    def inspect(self, name: str) -> Any:
        """Read an attribute of the sqlite3 connection that needs no thread (in_transaction)."""
        with self._lock:
            if self.connection is None:
                raise _closed_error()
            return getattr(self.connection, name)

    def adopt(self, conn: sqlite3.Connection) -> None:
        """Worker thread: take ownership of the connection the opening job created."""
        self._set_steps(conn, PROGRESS_STEPS)
        with self._lock:
            self.connection = conn
        self.no_wait = False  # a new connection has its own busy timeout
        # Probed again, on the loop thread, before a call runs there (a reopened
        # connection may keep its thread check); its shared cursor is made then.
        self._probed = False
        self.raw = None

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
        hold = self.token.get
        let_go = self.token.put
        done_with = self._tickets.pop
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
                done_with()
                continue
            job.state = RUNNING
            self._running = job
            self.aborting = self._aborted = self.expired = False
            self.deadline = None
            release()
            hold()
            conn = self.connection
            if self._steps != PROGRESS_STEPS and conn is not None:  # after run_here
                self._set_steps(conn, PROGRESS_STEPS)
            tx_before = False
            if job.rollback_if_cancelled and conn is not None:
                tx_before = conn.in_transaction
            started = clock()
            try:
                if self.no_wait:
                    self._restore_wait()
                if self.lost_transaction and job.rollback_if_cancelled:
                    raise lost_transaction_error()
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
            took = ended - started
            members = self._member_outcomes
            if members:  # their time is theirs (see _settle_members)
                took -= sum(m[3] for m in members)
            _average(durations, job.key, took)
            acquire()
            state = job.state
            job.state = DONE
            self._running = None
            self.aborting = self.expired = False
            aborted = self._aborted and not ok
            release()
            if aborted and job.rollback_if_cancelled:
                self._after_abort(tx_before)
            inline = self.inline
            if inline is not None:
                self._learn(inline, job.stmt, ok)
            if members:
                self._settle_members(members, inline)
            if not ok and job.waker is None and state != CANCELLED:
                # Set holding the connection: no call runs on the loop thread before it is
                # raised (it empties fast, which that call would check).
                self.deferred_error = value
                self.fast.clear()
            let_go(None)
            done_with()
            if state == CANCELLED:
                pass  # abandoned: nobody waits for the outcome
            elif job.waker is not None:
                if aborted and state == CANCELLING:
                    value = Aborted(value)
                self.round_trips += 1
                if not held:
                    held_since = ended
                held.append((job, ok, value))
            if members:
                if not held:
                    held_since = ended
                for member, m_ok, m_value, _ in members:
                    if member.waker is not None:  # claimed: never CANCELLED
                        self.round_trips += 1
                        held.append((member, m_ok, m_value))
                members.clear()
            if job.final:
                self._hand_over_held(held)
                self._finish()
                return
            # Drop references now: a traceback must not keep rows or cursors alive.
            del job, value

    def _settle_members(
        self, members: list[tuple[Job, bool, Any, float]], inline: Optional[Inline]
    ) -> None:
        """Worker thread, holding the connection: what the main loop does for a job that
        ran, for the members the running job ran (their queue entries are then skipped)."""
        with self._lock:
            for member, *_ in members:
                member.state = DONE
        durations = self._durations
        for member, ok, _, took in members:
            _average(durations, member.key, took)
            if inline is not None:
                self._learn(inline, member.stmt, ok)

    def _learn(self, inline: Inline, stmt: Optional[tuple[str, Any]], ok: bool) -> None:
        try:
            inline.after(self.connection, stmt, ok)
        except Exception:  # learning failed (a busy schema read): ask again later
            inline.forget()

    @contextmanager
    def holding(self) -> Iterator[Optional[sqlite3.Connection]]:
        """Any thread but the worker's: hold the exec token (waiting for it), so that no
        job and no call on the loop thread uses the connection meanwhile; gives it."""
        self.token.get()
        try:
            if self.no_wait:
                self._restore_wait()
            yield self.connection
        finally:
            self.token.put(None)

    def run_here(
        self,
        fn: JobFn,
        args: tuple[Any, ...],
        key: Any,
        stmt: Any,
        how: tuple[float, bool, int],
        now: float = 0.0,
    ) -> Any:
        """Loop thread: run ``fn(connection, *args)`` now on this thread, if the worker is
        idle and nothing is queued; its value (or its exception, raised), or NOT_HERE to
        send it to the worker instead.  ``key`` and ``stmt`` are as the Job's would be.

        ``how`` is ``(budget, nowait, kind)`` (see _inline.How), as ``Inline.admit`` said
        (``now``: the caller's perf_counter() just before, if it read one).  With a budget
        (> 0 s), SQLite aborts the statement once it has run that long, and with nowait,
        once it finds the database locked: it then goes to the worker (NOT_HERE).

        A statement admitted before (in ``fast``) does not come here: ``Cursor.__await__``
        (``connect()``) and ``Database._here`` (a Database's reads) run it themselves, with
        the same steps written out (the hot paths of the library; calling this instead
        cost ~15% of a Database point select).  Keep the three in step.
        """
        if self._tickets:
            return NOT_HERE
        token = self.token
        try:
            token.get_nowait()
        except Empty:
            return NOT_HERE
        try:
            conn: sqlite3.Connection = self.connection  # type: ignore[assignment]
            # Checked again holding the connection: a job queued meanwhile goes first, and
            # one run meanwhile (from another thread) had the last word.
            if (
                self._tickets
                or conn is None
                or not self.accepting
                or self.lost_transaction
                or (not self._probed and not self._probe(conn))
            ):
                return NOT_HERE
            budget, nowait, kind = how
            if nowait:  # the first write of a transaction, if nobody else writes
                return self._run_nowait(conn, fn, args, key, stmt, budget)
            started = now or perf_counter()
            if budget:
                self._arm_budget(conn, started + budget)
            try:
                value = fn(conn, *args)
            except BaseException as exc:
                if self._failed_here(key, stmt, exc, started):
                    return NOT_HERE  # over budget: the worker runs it again
                raise
            took = perf_counter() - started
            inline: Inline = self.inline  # type: ignore[assignment]  # not None: probed
            if budget:
                self.budget_deadline = None
            elif kind != WRITE:
                inline.after(conn, stmt, True)  # a BEGIN, a COMMIT
            if took >= SHORT_HERE or key in inline.hist:
                inline.record(key, took)
            inline.calls += 1
            return value
        finally:
            token.put(None)

    def here_or_job(
        self,
        fn: JobFn,
        args: tuple[Any, ...],
        how: tuple[float, bool, int],
        key: Any,
        job: Optional[Job],
    ) -> tuple[Any, Optional[Job]]:
        """Loop thread, for a Waker's ``here()``: ``(value, None)`` if the call ran on this
        thread, else ``(None, job)``: the job to submit (default: a pure one of these
        arguments, keyed ``key``)."""
        value = self.run_here(fn, args, key, None, how)  # raises what fn raised
        if value is NOT_HERE:
            return None, Job(fn, args, key=key, pure=True) if job is None else job
        return value, None

    def _run_nowait(
        self,
        conn: sqlite3.Connection,
        fn: JobFn,
        args: tuple[Any, ...],
        key: Any,
        stmt: Any,
        budget: float,
    ) -> Any:
        """run_here's body for a write that must take the write lock: with SQLite's busy
        timeout at 0, so that a database another connection writes to fails at once
        (and the call goes to the worker, whose wait is the configured one)."""
        inline = self.inline
        assert inline is not None
        if not self.no_wait:
            facts = inline.facts
            assert facts is not None  # admitted: read
            self.wait_ms = facts.busy_timeout
            conn.execute("PRAGMA busy_timeout=0")
            self.no_wait = True
        self.here = True
        started = perf_counter()
        if budget > 0:
            self._arm_budget(conn, started + budget)
        try:
            try:
                value = fn(conn, *args)
            except BaseException as exc:
                if self._failed_here(key, stmt, exc, started):
                    return NOT_HERE
                raise
        finally:
            self.here = False
            self.budget_deadline = None
        took = perf_counter() - started
        if took >= SHORT_HERE or key in inline.hist:
            inline.record(key, took)
        inline.calls += 1
        self._learn(inline, stmt, True)
        return value

    def _arm_budget(self, conn: sqlite3.Connection, deadline: float) -> None:
        """Stop the call run on this thread at ``deadline`` (perf_counter), checking often."""
        if self._steps != INLINE_STEPS:
            self._set_steps(conn, INLINE_STEPS)
        self.budget_deadline = deadline

    def _failed_here(self, key: Any, stmt: Any, exc: BaseException, started: float) -> bool:
        """A call run on the loop thread raised: learn from it.  True if it was aborted
        for running over its budget: it then goes to the worker."""
        self.budget_deadline = None
        self.expired = False  # the job's own time limit, if any, was reported by the job
        traceback.clear_frames(exc.__traceback__)  # its cursors die now, holding conn
        inline = self.inline
        if self.over_budget:
            self.over_budget = False
            if inline is not None:
                inline.overran(key, perf_counter() - started)
            return True
        if is_busy(exc):
            # Another connection holds a lock (the write lock, or a WAL recovery): never
            # waited for here (the busy timeout is 0 meanwhile: see no_wait).  Nothing
            # ran, so the worker runs it, waiting as configured.
            if inline is not None:
                inline.busy += 1
            return True
        if inline is not None:
            self._learn(inline, stmt, False)
        return False

    def _restore_wait(self) -> None:
        """Give the connection its busy timeout back (see no_wait); holding it."""
        self.no_wait = False
        conn = self.connection
        if conn is not None:
            conn.execute(f"PRAGMA busy_timeout={self.wait_ms}")

    def _probe(self, conn: sqlite3.Connection) -> bool:
        """Whether this thread may use the connection (check_same_thread=False)."""
        try:
            self.raw = conn.cursor()
        except sqlite3.ProgrammingError:
            self.inline = None  # opened by a connector that keeps its thread check
            self.fast.clear()
            return False
        self._probed = True
        return True

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

    def _fail_leftovers_if_finished(self) -> None:
        if self.finished:
            self._fail_leftovers()

    def _fail_leftovers(self) -> None:
        """Fail the jobs queued behind the final one (any thread; each is taken once)."""
        while True:
            try:
                job = self._queue.get_nowait()
            except Empty:
                return
            self._tickets.pop()
            with self._lock:
                if job.state != PENDING:
                    continue
                job.state = DONE
            if job.waker is not None:
                _hand_over(job, False, _closed_error())

    def _after_abort(self, tx_before: bool) -> None:
        """A statement job was aborted: leave no transaction it opened, lose none silently.

        SQLite rolls back the whole transaction when it aborts a write; if the user had one
        open, later statements would run (and commit) outside it, so they are refused until
        the user's rollback().  A transaction the statement itself opened (sqlite3's
        implicit BEGIN) is rolled back here; if that fails, statements are refused the same
        way, rather than run inside a transaction nobody owns.
        """
        conn = self.connection
        if conn is None:
            return
        if tx_before:
            if not conn.in_transaction:
                self._lose_transaction()
            return
        if conn.in_transaction:
            try:
                conn.rollback()
            except sqlite3.Error:
                pass
            if conn.in_transaction:
                self._lose_transaction()

    def _lose_transaction(self) -> None:
        self.lost_transaction = True
        self.fast.clear()


def _average(durations: dict[Any, float], key: Any, took: float) -> None:
    """Add a run to the moving average of how long jobs of this kind take (the table
    starts over when full).  A call of its own even in the worker's hot loop: a round
    trip (connect(inline=False) point selects, A/B) measured 99-109 µs with it and
    102-112 µs with the average written out."""
    old = durations.get(key)
    if old is None:
        if len(durations) >= MAX_KEYS:
            durations.clear()
        durations[key] = took
    else:
        durations[key] = old * 0.75 + took * 0.25


def _hand_over(job: Job, ok: bool, value: Any) -> None:
    waker = job.waker
    if waker is not None:
        waker.deliver(job.waiter, ok, value)


def close_connection(_: Any, worker: Worker) -> None:
    """The final job: close the connection (SQLite rolls back what was not committed)."""
    with worker._lock:
        conn, worker.connection = worker.connection, None
    worker.fast.clear()
    worker._probed = False
    worker.raw = None
    if conn is not None:
        conn.close()


# Workers whose thread may still run; the exit hook closes what the program left open.
_live_workers: weakref.WeakSet[Worker] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    # One at a time: connections to one file that close at once race for the exclusive
    # lock that the last one needs to merge the WAL into the file and remove it, and may
    # all leave it behind (seen with a Database's writer and readers under load).
    for worker in list(_live_workers):
        worker.stop()
        # Nobody can await a result any more: stop a long statement now.  Only a running
        # one: the idle connections then close cleanly (merging and removing the WAL).
        worker.abort_running()
        worker.join(EXIT_JOIN_TIMEOUT)


atexit.register(_close_all_at_exit)
