"""The Waker protocol: how a worker thread hands an outcome back to one event loop."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, TypeVar

from .._worker import Job, nothing

if TYPE_CHECKING:
    from .._worker import Worker

__all__ = ["Gate", "Waker", "gate", "queued_ahead"]


def queued_ahead(worker: Worker, key: Any) -> bool:
    """Whether the statement keyed ``key``, known to be short (``Inline.short``), finds
    jobs queued on ``worker``: it then waits for them rather than queue behind them (see
    Waker.behind)."""
    inline = worker.inline
    return inline is not None and bool(worker._tickets) and inline.short(key)


class Gate:
    """The waiter of a job that does nothing, queued on a worker: once it has run, so has
    every job queued before it.  Tasks that wait for that share it (``gate``), each in a
    way of its own, so that a cancel ends only its own wait (see Waker.behind)."""

    __slots__ = ("passed", "seq", "waker")

    def __init__(self) -> None:
        self.waker: Any = None  # whose tasks wait on it (one loop or trio run)
        self.seq = 0  # Worker.submitted once it was queued
        self.passed = False

    def settle(self, ok: bool, value: Any) -> None:
        """Loop thread, from the waker: the job ran (or failed: the connection closed; the
        statement that waited then finds out itself)."""
        self.passed = True
        self.open()

    def open(self) -> None:
        raise NotImplementedError


G = TypeVar("G", bound=Gate)


def gate(worker: Worker, waker: Waker, make: Callable[[], G]) -> G:
    """Loop thread: the gate at the end of ``worker``'s queue for ``waker``'s tasks: the
    last one queued if nothing was submitted after it and it has not opened, else a new
    one, ``make()``, queued now (raises once the connection closed)."""
    last = worker.gate
    if (
        last is not None
        and not last.passed
        and last.seq == worker.submitted
        and last.waker is waker
    ):
        return last  # type: ignore[no-any-return]
    new = make()
    new.waker = waker
    job = Job(nothing, (), key=nothing, pure=True)
    job.waiter = new
    job.waker = waker
    worker.submit(job)
    new.seq = worker.submitted
    worker.gate = new
    return new


class Waker(Protocol):
    """Bridges one event loop (an asyncio loop or a trio run) and the workers.

    The worker pushes outcomes and then wakes the loop once for all of them; outcomes
    pushed while a wake-up is already scheduled ride along with it.
    """

    def push(self, waiter: Any, ok: bool, value: Any) -> None:
        """Any thread: queue ``value`` (a result, or an exception if not ``ok``) for ``waiter``."""

    def wake(self) -> None:
        """Any thread: make the loop hand the pushed outcomes to their tasks soon."""

    def deliver(self, waiter: Any, ok: bool, value: Any) -> None:
        """Any thread: ``push`` then ``wake``, in one call (a single outcome)."""

    def call_soon(self, fn: Callable[[], object]) -> bool:
        """Any thread: run ``fn()`` on the loop soon; False if the loop is gone.

        For finalizers (``__del__`` runs on whatever thread the GC runs on): they hand
        loop-side state changes back to the loop that owns that state.
        """

    def inline(
        self,
        worker: Worker,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        key: Any,
        stmt: Any,
        how: tuple[float, bool, int],
        job: Optional[Job] = None,
    ) -> Awaitable[Any]:
        """Loop thread: run ``fn(connection, *args)``, admitted by ``worker.inline``, on
        this thread if the worker is idle (``how``: see _inline.How); else submit
        ``job`` (default: the statement job of these arguments) as ``wait`` does.  Every
        YIELD_EVERY seconds of such calls it first gives the loop a turn, then admits the
        call again (``worker.inline.admit``: things may have changed meanwhile)."""

    def turn(self) -> Awaitable[None]:
        """Loop thread: a loop turn if one is due (trio: also a cancellation checkpoint).
        For callers that decide where a call runs only after it: a Database."""

    def here(
        self,
        worker: Worker,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        how: tuple[float, bool, int],
        key: Any,
        job: Optional[Job] = None,
    ) -> Awaitable[Any]:
        """Loop thread: run ``fn(connection, *args)`` on this thread now, if the worker is
        idle, else submit ``job`` (default: a pure job of these arguments, keyed ``key``);
        never yields before (see ``turn``)."""

    def behind(self, worker: Worker, job: Job) -> Awaitable[Any]:
        """Loop thread: the statement ``job``, known to be short (``Inline.short``), found
        jobs queued ahead: run it here once they have run, if admitted then, rather than
        queue it behind them (tasks waiting at once share one no-op job: ``gate``)."""

    def wait(self, worker: Worker, job: Job) -> Awaitable[Any]:
        """Loop thread: submit ``job`` to ``worker``; await the result for its outcome.

        **Cancellation**: the job is abandoned at once (``Worker.cancel``): never run if it
        had not started, interrupted if it had.
        """
