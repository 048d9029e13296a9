"""The round-trip floor: the least code that awaits a call on a worker thread.

Any async SQLite library that keeps the connection on its own thread pays, per awaited
call, a hand-off to the thread and a wake-up of the event loop.  ``BareThread`` does only
that: a ``SimpleQueue`` to the thread, an eventfd the loop watches, a minimal awaitable,
no error handling, no cancellation, no checks.  Timing the benchmark's patterns on it
tells what ratio the machine allows at all: aiosqlite's time divided by the floor's is
the best speed-up any library can reach on the same number of round trips.

It is a measuring stick, not a design: it cannot be cancelled, loses errors' context
and cannot close safely while work is queued.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Generator
from pathlib import Path
from queue import SimpleQueue
from typing import Any, Callable, Optional


class _Pending:
    """The least a Task can await: settled by the drain on the loop thread."""

    __slots__ = ("_asyncio_future_blocking", "_loop", "callback", "ok", "value")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._asyncio_future_blocking = False
        self.callback: Any = None

    def __await__(self) -> Generator[Any, None, Any]:
        self._asyncio_future_blocking = True
        yield self
        if not self.ok:
            raise self.value
        return self.value

    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        self.callback = (fn, context)

    def result(self) -> Any:
        return self.value


class BareThread:
    """A sqlite3 connection on a thread, called with ``await t.call(fn, *args)``."""

    def __init__(self, path: Path) -> None:
        self._queue: SimpleQueue[Optional[tuple[Any, ...]]] = SimpleQueue()
        self._done: deque[tuple[_Pending, bool, Any]] = deque()
        self._fd = os.eventfd(0, os.EFD_NONBLOCK)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._drain)
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            pending, fn, args = item
            try:
                self._done.append((pending, True, fn(self._conn, *args)))
            except Exception as exc:
                self._done.append((pending, False, exc))
            os.write(self._fd, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    def _drain(self) -> None:
        os.read(self._fd, 8)
        while self._done:
            pending, ok, value = self._done.popleft()
            pending.ok, pending.value = ok, value
            (fn, context), pending.callback = pending.callback, None
            context.run(fn, pending)

    def call(self, fn: Callable[..., Any], *args: Any) -> _Pending:
        pending = _Pending(self._loop)
        self._queue.put((pending, fn, args))
        return pending

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._conn.close()


def execute_fetchone(conn: sqlite3.Connection, sql: str, params: Any) -> Any:
    cur = conn.execute(sql, params)
    row = cur.fetchone()
    cur.close()
    return row


def execute_lastrowid(conn: sqlite3.Connection, sql: str, params: Any) -> Any:
    return conn.execute(sql, params).lastrowid


def commit(conn: sqlite3.Connection) -> None:
    conn.commit()


def available() -> bool:
    """eventfd is Linux-only (Python 3.10+): elsewhere the floor is not measured."""
    return hasattr(os, "eventfd")
