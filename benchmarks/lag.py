"""Event-loop lag: how late a 1 ms timer fires while a benchmark runs on the same loop.

A stalled loop is what users feel (a web server that stops answering while a query runs),
and what running statements on the loop thread could cause; every asynchronous benchmark
runs under this probe and reports the lag's 99th percentile and maximum.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
TICK = 0.001


@dataclass
class Lag:
    """Lateness of the probe's ticks, in seconds: the 99th percentile and the maximum over
    all the ticks of all the rounds (``ticks``, kept in ``lates``)."""

    p99: float = 0.0
    max: float = 0.0
    ticks: int = 0
    lates: list[float] = field(default_factory=list, repr=False)

    def merged(self, other: Lag) -> Lag:
        """Both runs' ticks together.  Pooled, not the worse of two p99s: a run of a 150 ms
        scenario has ~100 ticks, whose p99 is its second-worst tick, one hiccup of the
        machine; over all rounds' ticks the p99 is a percentile again (the max stays the
        max)."""
        return summarize(self.lates + other.lates)

    def cell(self) -> str:
        return f"{self.p99 * 1e3:.2f} / {self.max * 1e3:.1f} ms"


async def probed(work: Awaitable[T]) -> tuple[T, Lag]:
    """Await ``work`` while a probe task sleeps 1 ms at a time and records how late it
    wakes up; returns the work's result and the lag."""
    lates: list[float] = []
    stop = False

    async def probe() -> None:
        while not stop:
            t0 = time.perf_counter()
            await asyncio.sleep(TICK)
            lates.append(max(0.0, time.perf_counter() - t0 - TICK))

    task = asyncio.ensure_future(probe())
    await asyncio.sleep(0)  # let it start
    try:
        result = await work
    finally:
        stop = True
        await task
    return result, summarize(lates)


def summarize(lates: list[float]) -> Lag:
    if not lates:
        return Lag()
    ordered = sorted(lates)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Lag(p99, ordered[-1], len(ordered), ordered)


def run_probed(coro: Any) -> tuple[Any, Lag]:
    """asyncio.run() of a coroutine under the probe."""
    return asyncio.run(probed(coro), debug=False)
