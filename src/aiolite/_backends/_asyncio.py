"""asyncio (and uvloop) wakers.

:class:`FdWaker` is used wherever the loop supports ``add_reader`` (Unix selector loops and
uvloop): the worker appends the outcome to a deque and writes to an eventfd (a pipe before
Python 3.10); the loop's reader callback drains the deque.  It costs about 8 µs less per
round trip than ``call_soon_threadsafe``, whose self-pipe needs a socket send, a recv loop
that ends in an exception, and a Handle per call.  :class:`CallSoonWaker` is the portable
fallback (Windows' proactor loop).

Both coalesce: outcomes that arrive while a wake-up is pending ride along with it.  One
waker serves every connection used from a loop; it holds the loop only weakly, so a loop
that is garbage-collected takes its waker (and the fd) with it.

Tasks wait on a :class:`Waiter`, not an ``asyncio.Future``.  A Task accepts any object that
speaks the Future protocol (``_asyncio_future_blocking``, ``add_done_callback``...); the
difference is that ``Future.set_result`` schedules the task's wake-up for the *next* loop
iteration, while the waker calls it at once, from the drain: one loop iteration (about
5 µs) less per round trip, and a burst of outcomes resumes all its tasks in one iteration.
The Waiter also handles the cancellation itself (``Task.cancel`` cancels the Waiter the
task awaits), so ``wait`` needs no coroutine frame of its own: a job that had not started
is dropped and the task leaves at once; a running one is aborted and the Waiter *refuses*
the cancel until the worker says what happened.  Then the task sees either the
cancellation (the job was aborted: nothing of it stands) or the job's real outcome (it
finished first, e.g. its COMMIT happened), with the cancellation re-delivered at the task's
next await, as trio does at its next checkpoint.
"""

from __future__ import annotations

import asyncio
import os
import sys
import weakref
from collections import deque
from collections.abc import Generator
from time import perf_counter
from typing import TYPE_CHECKING, Any, Optional

from .._closing import DONE
from .._inline import YIELD_EVERY
from .._worker import NOT_HERE, Aborted, Job, statement_job
from ._base import Gate, gate, queued_ahead

if TYPE_CHECKING:
    from .._worker import Worker

__all__ = ["CallSoonWaker", "FdWaker", "Ready", "Waiter", "waker_for"]

_PENDING, _DONE, _FAILED, _CANCELLED = 0, 1, 2, 3
_SIGNAL = (1).to_bytes(8, sys.byteorder)  # an eventfd adds it; a pipe just becomes readable


class Waiter:
    """The minimal Future a Task can await; settled by the waker on the loop thread.

    Lean on purpose, it is made for every round trip: a Task adds exactly one done
    callback, so there is one slot for it (a list only if someone adds more); there is no
    ``get_loop`` method, because a Task then reads ``_loop`` without a Python call.
    """

    __slots__ = (
        "_asyncio_future_blocking",
        "_callback",
        "_cancel_message",
        "_context",
        "_job",
        "_loop",
        "_more",
        "_pure",
        "_refused",
        "_state",
        "_value",
        "_worker",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, worker: Worker, job: Job) -> None:
        self._loop = loop
        self._state = _PENDING
        self._callback: Any = None
        self._more: list[tuple[Any, Any]] | None = None
        self._asyncio_future_blocking = False
        self._cancel_message: Any = None
        # Held while pending, to abandon the job if the waiting task is cancelled.
        self._worker: Worker | None = worker
        self._job: Job | None = job
        self._pure = job.pure
        self._refused = False  # a cancel came while the job ran: its outcome tells

    def __await__(self) -> Generator[Any, None, Any]:
        if self._state == _PENDING:
            self._asyncio_future_blocking = True
            try:
                yield self  # the Task registers its wake-up with add_done_callback
            except asyncio.CancelledError as exc:
                # The Task was cancelled while the job ran, and the job finished anyway:
                # report what happened, and cancel again at the task's next await.  Not for
                # a pure job: nothing of it outlives the cancellation (a read, a statement
                # of a transaction that the cancellation rolls back), so it stands.
                if (
                    not self._refused  # not a cancel of ours: the job's own outcome
                    or self._pure
                    or self._state == _CANCELLED
                    or (self._state == _FAILED and type(self._value) is Aborted)
                ):
                    raise
                _cancel_later(self._loop, exc)
        if self._state == _DONE:
            return self._value
        return self.result()

    __iter__ = __await__

    # -- the Future protocol, as much of it as asyncio.Task uses --

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def _cancelled_error(self) -> asyncio.CancelledError:
        # The message matters: anyio recognises its own cancellations by it.
        msg = self._cancel_message
        return asyncio.CancelledError() if msg is None else asyncio.CancelledError(msg)

    def result(self) -> Any:
        state = self._state
        if state == _DONE:
            return self._value
        if state == _FAILED:
            if type(self._value) is Aborted:
                raise self._cancelled_error()
            raise self._value
        if state == _CANCELLED:
            raise self._cancelled_error()
        raise asyncio.InvalidStateError("result is not ready")

    def exception(self) -> BaseException | None:
        state = self._state
        if state == _CANCELLED:
            raise self._cancelled_error()
        if state == _PENDING:
            raise asyncio.InvalidStateError("exception is not set")
        return self._value if state == _FAILED else None

    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        if self._state != _PENDING:
            self._loop.call_soon(fn, self, context=context)
        elif self._callback is None:
            self._callback = fn
            self._context = context
        elif self._more is None:
            self._more = [(fn, context)]
        else:
            self._more.append((fn, context))

    def remove_done_callback(self, fn: Any) -> int:
        callbacks = self._take_callbacks()
        kept = [(f, c) for f, c in callbacks if f != fn]
        for f, c in kept:
            self.add_done_callback(f, context=c)
        return len(callbacks) - len(kept)

    def _take_callbacks(self) -> list[tuple[Any, Any]]:
        if self._callback is None:
            return []
        callbacks = [(self._callback, self._context)]
        if self._more is not None:
            callbacks += self._more
        self._callback = self._context = self._more = None
        return callbacks

    def cancel(self, msg: Any = None) -> bool:
        if self._state != _PENDING:
            return False
        self._cancel_message = msg
        worker, job = self._worker, self._job
        if worker is not None and job is not None and not worker.cancel(job):
            self._refused = True
            return False  # running: aborted or not, its outcome will tell (see __await__)
        self._state = _CANCELLED
        self._worker = self._job = None
        for fn, context in self._take_callbacks():
            self._loop.call_soon(fn, self, context=context)
        return True

    def settle(self, ok: bool, value: Any) -> None:
        """Set the outcome and run the waiting task's wake-up now (loop thread only)."""
        if self._state != _PENDING:  # cancelled meanwhile
            return
        self._state = _DONE if ok else _FAILED
        self._value = value
        self._worker = self._job = None
        if self._callback is None:
            return
        # Usually one callback, the Task's wake-up: no list is made for it.
        callbacks = (
            ((self._callback, self._context),) if self._more is None else self._take_callbacks()
        )
        self._callback = self._context = self._more = None
        for fn, context in callbacks:
            if context is None:
                fn(self)
            else:
                context.run(fn, self)


_ANYIO_SCOPE = "Cancelled via cancel scope "


def _cancel_later(loop: asyncio.AbstractEventLoop, exc: asyncio.CancelledError) -> None:
    """Re-deliver a cancellation the current task received, at its next await.

    Not if the task ends first (its result stands), nor if the canceller took the
    cancellation back meanwhile (``asyncio.timeout`` uncancels when the block exits).
    """
    task = asyncio.current_task(loop)
    if task is None:
        return
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    requested = cancelling() if cancelling is not None else None
    msg = exc.args[0] if exc.args else None
    if requested is None and isinstance(msg, str) and msg.startswith(_ANYIO_SCOPE):
        # Before 3.11 nothing says when an anyio scope is over; it re-delivers its
        # cancellation itself for as long as the task is inside it.
        return

    def again() -> None:
        if task.done():
            return
        if requested is not None:
            if task.cancelling() < requested:  # type: ignore[attr-defined]
                return
            task.uncancel()  # type: ignore[attr-defined]  # one request, not two: keep the count as the canceller left it
        task.cancel(msg)

    loop.call_soon(again)


class Ready:
    """The value of a call that ran on the loop thread: awaiting it does not suspend."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        yield from ()  # a generator that never suspends
        return self.value


class _Later:
    """A connect() statement (``job``) that waits for something before it may run on the
    loop thread."""

    __slots__ = ("_job", "_waker", "_worker")

    def __init__(self, waker: _AsyncioWaker, worker: Worker, job: Job) -> None:
        self._waker = waker
        self._worker = worker
        self._job = job


class _Turn(_Later):
    """A connect() statement that may run on the loop thread, after one loop turn first.

    A task that keeps running calls here never suspends, so now and then it yields: the
    other tasks, timers and I/O get their turn.  Cancelled at that yield, the call never
    ran.  After it, the call is admitted again: things may have changed meanwhile.
    """

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Any]:
        waker, worker, job = self._waker, self._worker, self._job
        yield from waker.take_turn()
        inline = worker.inline
        how = None if inline is None else inline.admit(job.key)
        if how is not None:
            value = worker.run_here(job.fn, job.args, job.key, job.stmt, how)
            if value is not NOT_HERE:
                return value
        elif queued_ahead(worker, job.key):
            return (yield from _Behind(waker, worker, job).__await__())
        return (yield from waker.wait(worker, job).__await__())


class _Gate(Gate):
    """A Gate whose tasks wait on a future each."""

    __slots__ = ("waiting",)

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[asyncio.Future[None]] = []

    def open(self) -> None:
        waiting, self.waiting = self.waiting, []
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)


class _Behind(_Later):
    """A connect() statement known to be short (``Inline.short``) that found jobs queued
    ahead of it: it waits until they have run, then runs here if admitted.

    Sent to the worker behind them instead, it would find jobs queued ahead again at its
    task's next statement, and so would every other task's: with many tasks on one
    connection, the calls would all cross threads for as long as the convoy lasts.  The
    tasks that arrive meanwhile share one no-op job at the end of the queue (its _Gate),
    so the convoy costs one round trip and they all run here after it.  Order is kept:
    the statement runs after every job queued before it.  Cancelled while it waits, it
    never ran.
    """

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Any]:
        # A loop, not a call of waker.inline(): a task that keeps finding jobs queued
        # again after its turn must not nest one generator per try.
        waker, worker, job = self._waker, self._worker, self._job
        while True:
            while queued_ahead(worker, job.key):
                yield from waker.drained(worker)
            inline = worker.inline
            how = None if inline is None else inline.admit(job.key)
            if how is None:
                return (yield from waker.wait(worker, job).__await__())
            if not waker.spend():
                yield from waker.take_turn()  # then admitted again
                continue
            value = worker.run_here(job.fn, job.args, job.key, job.stmt, how)
            if value is not NOT_HERE:
                return value
            if not queued_ahead(worker, job.key):  # over its budget, or busy: the worker
                return (yield from waker.wait(worker, job).__await__())


def _one_turn() -> Generator[None, None, None]:
    """Let the loop run everything else that is ready, timers and I/O included.

    A bare yield reschedules the task at the end of the ready queue, but the loop adds the
    timers and I/O callbacks that came due *after* it: yielding once more lets those run
    before the task goes on.
    """
    yield
    yield


class _Pause:
    """A loop turn, for ``turn()``."""

    __slots__ = ("_waker",)

    def __init__(self, waker: _AsyncioWaker) -> None:
        self._waker = waker

    def __await__(self) -> Generator[Any, None, None]:
        yield from self._waker.take_turn()


_Outcome = tuple[Waiter, bool, Any]


class _AsyncioWaker:
    __slots__ = (
        "__weakref__",
        "_loop",
        "_pending",
        "_ran_out",
        "_rfd",
        "_scheduled",
        "_turns",
        "_wake_n",
        "_yielding",
        "marked",
        "until",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        #: Whether calls began running on the loop thread in this loop iteration, and until
        #: when they may (perf_counter; 0 if not marked): all tasks of the loop share one
        #: YIELD_EVERY per iteration.
        self.marked = False
        self.until = 0.0
        self._pending: deque[_Outcome] = deque()
        self._scheduled = False
        self._rfd: int | None = None  # FdWaker's signal, read by _drain
        #: Tasks waiting for an iteration with budget left, in order (see take_turn).
        self._turns: deque[asyncio.Future[None]] = deque()
        #: How many of them the next iteration wakes, and whether a task found this
        #: iteration's budget spent (see _unmark).
        self._wake_n = 1
        self._ran_out = False
        #: Tasks yielding their loop turn before they go into line (see take_turn).
        self._yielding = 0

    def push(self, waiter: Waiter, ok: bool, value: Any) -> None:
        self._pending.append((waiter, ok, value))

    def wake(self) -> None:
        if self._scheduled:  # a wake-up is on its way and takes everything pushed
            return
        self._scheduled = True
        self._signal()

    def _signal(self) -> None:
        """Make the loop run _drain soon (from any thread)."""
        raise NotImplementedError

    def deliver(self, waiter: Waiter, ok: bool, value: Any) -> None:
        self._pending.append((waiter, ok, value))  # push(), without its call
        self.wake()

    def call_soon(self, fn: Any) -> bool:
        loop = self._loop()
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(fn)
        except RuntimeError:  # closed
            return False
        return True

    def _drain(self) -> None:
        """Loop thread: settle every pushed outcome (each resumes its task at once).

        Consume the signal (FdWaker's) before clearing the flag, and clear the flag before
        draining: an outcome appended at any point is either drained here or signals again.
        """
        rfd = self._rfd
        if rfd is not None:
            try:
                os.read(rfd, 4096)
            except OSError:
                pass
        self._scheduled = False
        pending = self._pending
        while pending:
            waiter, ok, value = pending.popleft()
            waiter.settle(ok, value)

    def inline(
        self,
        worker: Worker,
        fn: Any,
        args: tuple[Any, ...],
        key: Any,
        stmt: Any,
        how: tuple[float, bool, int],
        job: Optional[Job] = None,
    ) -> Any:
        """Loop thread: run an admitted call here if the worker is idle, else as ``job``
        there (by default a statement job: see statement_job)."""
        # spend(), written out: this runs for every statement; its clock reading is the
        # call's start (run_here's ``now``).
        now = perf_counter()
        if now < self.until if self.marked else self.spend():
            value = worker.run_here(fn, args, key, stmt, how, now)  # raises what fn raised
            if value is not NOT_HERE:
                return Ready(value)
            return self.wait(worker, statement_job(fn, args, key, stmt) if job is None else job)
        if job is None:
            job = statement_job(fn, args, key, stmt)
        return _Turn(self, worker, job)

    def spend(self) -> bool:
        """Whether a call may run on the loop thread now: False once calls have run here
        for YIELD_EVERY in this loop iteration (the task must give the loop a turn).

        The first call of an iteration starts the clock and schedules ``_unmark``, which
        the loop runs at its next iteration, after it polled timers and I/O."""
        if not self.marked:
            loop = self._loop()
            if loop is None:
                return False
            loop.call_soon(self._unmark)
            self.marked = True
            self.until = perf_counter() + YIELD_EVERY
            return True
        return perf_counter() < self.until

    def _unmark(self) -> None:
        """A new iteration: its budget goes to the first tasks waiting for one.

        Half as many as last time after an iteration whose budget ran out, twice as many
        after one whose woken tasks left some of it unused (they finished, or waited for
        something else).  Waking one per iteration, 100 tasks with a few calls each
        took an iteration each (~1 task per 0.14 ms of calls, the rest of the budget
        unused); waking them all would have 99 wake only to find it spent.
        """
        self.marked = False
        self.until = 0.0
        if self._ran_out:
            self._ran_out = False
            n = self._wake_n = max(1, self._wake_n // 2)
        else:
            n = self._wake_n = min(2 * self._wake_n, 64)
        for _ in range(n):
            if not self._wake_next():
                return

    def _wake_next(self) -> bool:
        """Give the budget to the first task waiting for it (False: none waits)."""
        turns = self._turns
        while turns:
            fut = turns.popleft()
            if not fut.done():
                fut.set_result(None)
                return True
        return False

    def take_turn(self) -> Generator[Any, None, None]:
        """Wait in line for a loop iteration whose budget for calls on the loop thread is
        not spent, and take it (``spend()``).

        Waiting tasks sleep on a future each, woken one per iteration in order (by
        ``_unmark``), instead of all of them yielding at every iteration: with 100 tasks,
        99 would otherwise wake only to find the budget spent.  The loop runs timers and
        I/O before ``_unmark``, so they get their turn as before.  A task goes straight
        into line, without yielding first, when others wait in it already (it would not
        go on in the next iteration anyway): 100 tasks of a few calls each, 2 loop steps
        less per task.  (Tasks a gate woke all at once still yield first: going into
        line at once, all 99 would do so in one iteration, which lagged the loop ~2.5 ms.)
        """
        front = False
        self._ran_out = True  # this task found it spent
        while True:
            if not (front or self._turns or self._yielding):
                self._yielding += 1
                try:
                    yield from _one_turn()
                finally:
                    self._yielding -= 1
            if self.spend():
                return
            self._ran_out = True
            loop = self._loop()
            if loop is None:
                continue  # spend() is False for good: the loop is gone
            fut = loop.create_future()
            if front:  # woken, but another task took the budget first: keep our place
                self._turns.appendleft(fut)
            else:
                self._turns.append(fut)
            try:
                yield from fut.__await__()
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self._wake_next()  # cancelled after being woken: pass the turn on
                raise
            front = True

    def behind(self, worker: Worker, job: Job) -> Any:
        """See Waker.behind."""
        return _Behind(self, worker, job)

    def drained(self, worker: Worker) -> Generator[Any, None, None]:
        """Wait until every job queued on ``worker`` now has run (see _Behind)."""
        loop = self._loop()
        assert loop is not None  # the caller runs on it
        fut = loop.create_future()
        gate(worker, self, _Gate).waiting.append(fut)
        yield from fut

    def turn(self) -> Any:
        """Give the loop a turn if calls ran on the loop thread for YIELD_EVERY already."""
        if self.spend():
            return DONE
        return _Pause(self)

    def here(
        self,
        worker: Worker,
        fn: Any,
        args: tuple[Any, ...],
        how: tuple[float, bool, int],
        key: Any,
        job: Optional[Job] = None,
    ) -> Any:
        """See Waker.here; never yields first."""
        value, job = worker.here_or_job(fn, args, how, key, job)
        return Ready(value) if job is None else self.wait(worker, job)

    def wait(self, worker: Worker, job: Job) -> Waiter:
        loop = self._loop()
        assert loop is not None  # the caller runs on it
        waiter = Waiter(loop, worker, job)
        job.waiter = waiter
        job.waker = self
        worker.submit(job)
        return waiter


class CallSoonWaker(_AsyncioWaker):
    __slots__ = ()

    def _signal(self) -> None:
        loop = self._loop()
        try:
            if loop is None:
                raise RuntimeError("the loop is gone")
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is left to wake
            self._pending.clear()


class FdWaker(_AsyncioWaker):
    __slots__ = ("_wfd",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        if hasattr(os, "eventfd"):
            self._rfd = self._wfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            self._rfd, self._wfd = os.pipe()
            os.set_blocking(self._rfd, False)
            os.set_blocking(self._wfd, False)
        try:
            loop.add_reader(self._rfd, self._drain)
        except BaseException:
            self._close_fds()
            raise

    def _signal(self) -> None:
        # No check for a closed loop here (it would be a Python call per round trip): an
        # outcome for a loop closed meanwhile waits in _pending, and goes with the waker.
        try:
            os.write(self._wfd, _SIGNAL)
        except OSError:  # a full pipe is already readable: the loop will wake
            pass

    def _close_fds(self) -> None:
        rfd, self._rfd = self._rfd, None
        if rfd is None:  # never opened, or closed already
            return
        os.close(rfd)
        if self._wfd != rfd:
            os.close(self._wfd)

    def __del__(self) -> None:
        # The loop is gone (it held the only strong reference, through add_reader).
        try:
            self._close_fds()
        except OSError:
            pass


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncioWaker] = (
    weakref.WeakKeyDictionary()
)


def waker_for(loop: asyncio.AbstractEventLoop) -> _AsyncioWaker:
    """The waker of ``loop``, made on first use (from the loop's own thread)."""
    waker = _wakers.get(loop)
    if waker is None:
        try:
            waker = FdWaker(loop)
        except (NotImplementedError, AttributeError, OSError):  # e.g. the proactor loop
            waker = CallSoonWaker(loop)
        _wakers[loop] = waker
    return waker
