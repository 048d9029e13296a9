"""The Waker protocol: how a worker thread hands an outcome back to one event loop."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

if TYPE_CHECKING:
    from .._worker import Job, Worker

__all__ = ["Waker"]


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
        jobs queued ahead: run it here once they have run, if admitted then (asyncio;
        trio: as ``wait`` does), rather than queue it behind them."""

    def wait(self, worker: Worker, job: Job) -> Awaitable[Any]:
        """Loop thread: submit ``job`` to ``worker``; await the result for its outcome.

        **Cancellation**: the job is abandoned at once (``Worker.cancel``): never run if it
        had not started, interrupted if it had.
        """
