"""asyncio, uvloop and trio all work; no thread limiter caps the number of connections."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

import aiolite

pytestmark = pytest.mark.anyio


async def test_sixty_connections_run_at_once(tmp_path: Path) -> None:
    """60 connections (more than anyio's 40 thread tokens) execute simultaneously."""
    n = 60
    barrier = threading.Barrier(n, timeout=10)
    results: list[int] = []

    async def one(i: int) -> None:
        async with aiolite.connect(tmp_path / f"{i}.db") as db:
            # Each worker waits inside SQL until all 60 are there: needs 60 live threads.
            await db.create_function("meet", 0, lambda: barrier.wait() >= 0)
            rows = await db.execute_fetchall("SELECT meet()")
            results.append(rows[0][0])

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
    assert results == [1] * n


async def test_many_tasks_share_one_connection(db: aiolite.Connection) -> None:
    """200 tasks on one connection each get their own answer."""
    got: dict[int, int] = {}

    async def one(i: int) -> None:
        async with db.execute("SELECT ? * 2", (i,)) as cur:
            row = await cur.fetchone()
            got[i] = row[0]

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(one, i)
    assert got == {i: i * 2 for i in range(200)}


async def test_exceptions_cross_backends(db: aiolite.Connection) -> None:
    """Errors raised on the worker arrive as the same sqlite3 exception on every backend."""
    import sqlite3

    with pytest.raises(sqlite3.OperationalError, match="syntax error"):
        await db.execute("SELEKT 1")
    assert await db.execute_fetchall("SELECT 1") == [(1,)]
