"""The reader pool, and ReadSession: ``async with db.read() as r`` on one snapshot.

Plain reads (``db.fetchone``...) do not take a reader exclusively: each is one job, queued on
the least busy reader that nobody reserved, so 100 concurrent point selects spread over the
readers and each worker batches what is queued on it.  A reader is *reserved* while a
snapshot or a stream is open on it, because a plain read queued there would see that
snapshot instead of the latest commit.  When every reader is reserved, reads wait (FIFO) for
one to come back.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any, Optional

from ._backends import LoopBound, make_semaphore
from ._queries import Attached
from ._statements import PLAIN, Session, end_read
from ._worker import Worker

if TYPE_CHECKING:
    from ._database import Database

__all__ = ["Member", "ReadSession", "ReaderPool"]


#: A plain read goes to the first free reader until that one has this many jobs in flight:
#: one busy worker batches its jobs and wakes the loop once per batch, while spreading a
#: burst of short reads over every reader mostly adds thread wake-ups on a small machine.
SPREAD_AT = 256


class Member:
    """One connection of a Database: its worker thread and worker-side session."""

    __slots__ = ("inflight", "reserved", "session", "worker")

    def __init__(self, worker: Worker, session: Session) -> None:
        self.worker = worker
        self.session = session
        self.inflight = 0  # jobs submitted and not yet answered (loop side)
        self.reserved = False


class ReaderPool:
    """Hands out readers: shared for one-job reads, reserved for snapshots and streams."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self.reserved = 0
        self._slots: Any = None  # a FIFO semaphore of the loop using the pool now
        self._bound = LoopBound()

    def pick(self) -> Optional[Member]:
        """The first unreserved reader below SPREAD_AT jobs, else the least busy one.

        None when every reader is reserved.
        """
        best = None
        for m in self.members:
            if not m.reserved:
                if m.inflight < SPREAD_AT:
                    return m
                if best is None or m.inflight < best.inflight:
                    best = m
        return best

    async def reserve(self) -> Member:
        n = len(self.members)
        self._slots = self._bound.get(
            lambda: make_semaphore(n), self.reserved == 0, "the Database's reader pool"
        )
        await self._slots.acquire()
        for m in self.members:
            if not m.reserved:
                m.reserved = True
                self.reserved += 1
                return m
        raise AssertionError("the semaphore and the reserved flags disagree")

    def unreserve(self, m: Member) -> None:
        """Loop thread: give a reserved reader back."""
        m.reserved = False
        self.reserved -= 1
        self._slots.release()

    def unreserve_soon(self, m: Member) -> None:
        """Any thread (a finalizer): give the reader back on the loop that owns the pool.

        If that loop is gone, nobody waits on its semaphore; only the flags are reset.
        """
        if not self._bound.call_soon(lambda: self.unreserve(m)):
            m.reserved = False
            self.reserved -= 1


class ReadSession(Attached):
    """Several reads on one consistent snapshot: ``async with db.read() as r``.

    The snapshot is taken by the first read (``BEGIN`` is sent with it) and ends when the
    block exits (the ``COMMIT`` is queued, not awaited).  Writes committed meanwhile are not
    visible inside the block.  Keep it short: an open snapshot stops checkpoints from
    resetting the WAL.
    """

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._member: Optional[Member] = None
        self._used = False

    async def __aenter__(self) -> ReadSession:
        if self._used:
            raise RuntimeError("a read session can be entered once; call db.read() again")
        self._used = True
        self._db._check_open()
        self._member = await self._db._pool.reserve()
        self._pending.append("BEGIN")
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        m, self._member = self._member, None
        if m is None:
            return
        if self._ops:
            m.worker.post(end_read, m.session)
        self._db._pool.unreserve(m)

    def _live(self) -> Member:
        m = self._member
        if m is None:
            raise RuntimeError("this read session is not active: use it inside 'async with'")
        return m

    async def _query(self, mode: int, sql: str, params: Any, shape: Any, extra: Any = None) -> Any:
        return await self._run_on(self._live(), mode, sql, params, shape, PLAIN, extra=extra)

    def _stream_on(self) -> tuple[Optional[Member], Optional[deque[str]]]:
        m = self._live()
        self._ops += 1
        return m, self._pending


ReadSession.__module__ = "aiolite"
