"""Chaos: seeded, time-bounded runs that try to break atomicity with cancels and timeouts.

Each run mixes transfers between accounts (the total never changes), snapshot and plain
reads of the total, streams broken off early, executemany batches (all or nothing), long
queries and random cancels (0-5 ms timeouts), then closes the Database from two tasks at
once, and checks: the invariants held throughout, never-cancelled work never failed, the
file passes integrity_check, and no worker thread is left behind.

``make test`` runs a few seeds per backend with a short budget; ``make soak`` runs
CHAOS_SEEDS seeds (default 20) of CHAOS_SECONDS each.  A failure names its seed:
``CHAOS_SEED=<n> pytest tests/test_chaos.py`` replays it.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import aiolite

pytestmark = pytest.mark.anyio

SECONDS = float(os.environ.get("CHAOS_SECONDS", "1.0"))
if "CHAOS_SEED" in os.environ:
    SEEDS = [int(os.environ["CHAOS_SEED"])]
else:
    SEEDS = list(range(int(os.environ.get("CHAOS_SEEDS", "3"))))
ACCOUNTS, START, BATCH = 8, 1000, 7
TOTAL = ACCOUNTS * START
LONG = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


class Broken(AssertionError):
    pass


async def chaos(path: Path, seed: int, seconds: float, setup: bool = True) -> dict[str, int]:
    """One run on ``path``; returns counters.  Raises Broken when an invariant fails."""
    rng = random.Random(seed)
    db = await aiolite.open(path, readers=2, busy_timeout=10)
    if setup:
        await db.executescript(
            "CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, balance INTEGER);"
            "CREATE TABLE IF NOT EXISTS batch(b INTEGER, k INTEGER);"
            "CREATE TABLE IF NOT EXISTS big(x INTEGER);"
        )
        if await db.fetchval("SELECT count(*) FROM accounts") == 0:
            await db.executemany(
                "INSERT INTO accounts VALUES (?, ?)", [(i, START) for i in range(ACCOUNTS)]
            )
            await db.executemany("INSERT INTO big VALUES (?)", [(i,) for i in range(500)])
    stats = {"transfers": 0, "cancelled": 0, "batches": 0, "reads": 0, "streams": 0}
    deadline = time.monotonic() + seconds

    def maybe_timeout() -> float:
        return rng.uniform(0, 0.005) if rng.random() < 0.5 else float("inf")

    async def transfer() -> None:
        a, b = rng.sample(range(ACCOUNTS), 2)
        amount = rng.randint(1, 50)
        stream_first = rng.random() < 0.3
        timeout = maybe_timeout()
        endless = timeout < 1 and rng.random() < 0.2
        with anyio.move_on_after(timeout) as scope:
            async with db.transaction() as tx:
                if stream_first:  # a statement left open inside the transaction
                    rows = tx.iterate("SELECT x FROM big", chunk_size=3)
                    await rows.__anext__()
                await tx.execute(
                    "UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a)
                )
                if endless:
                    await tx.fetchval(LONG)  # only the timeout ends it
                await tx.execute(
                    "UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b)
                )
            stats["transfers"] += 1
        if scope.cancelled_caught:
            stats["cancelled"] += 1

    async def batch() -> None:
        b = rng.randrange(1 << 30)
        with anyio.move_on_after(maybe_timeout()) as scope:
            await db.executemany("INSERT INTO batch VALUES (?, ?)", [(b, k) for k in range(BATCH)])
            stats["batches"] += 1
        if scope.cancelled_caught:
            stats["cancelled"] += 1

    async def read_total() -> None:
        with anyio.move_on_after(maybe_timeout()):
            if rng.random() < 0.5:
                async with db.read() as r:
                    total = await r.fetchval("SELECT sum(balance) FROM accounts")
                    again = await r.fetchval("SELECT sum(balance) FROM accounts")
                    if total != again:
                        raise Broken(f"seed {seed}: a snapshot changed: {total} -> {again}")
            else:
                total = await db.fetchval("SELECT sum(balance) FROM accounts")
            if total != TOTAL:
                raise Broken(f"seed {seed}: total {total} != {TOTAL}: a transfer was cut")
            stats["reads"] += 1

    async def stream() -> None:
        take = rng.randint(0, 40)
        with anyio.move_on_after(maybe_timeout()):
            async with db.iterate("SELECT x FROM big ORDER BY x", chunk_size=8) as rows:
                seen = []
                async for row in rows:
                    seen.append(row[0])
                    if len(seen) == take:
                        break
                if seen != list(range(len(seen))):
                    raise Broken(f"seed {seed}: a stream skipped rows: {seen[:10]}...")
            stats["streams"] += 1

    async def never_cancelled() -> None:
        # Work nobody cancels must never see another task's cancellation.
        while time.monotonic() < deadline:
            n = await db.fetchval("SELECT count(*) FROM big")
            if n != 500:
                raise Broken(f"seed {seed}: count {n}")
            await db.execute("UPDATE accounts SET balance = balance WHERE id = 0")
            await anyio.sleep(0.001)

    kinds = [transfer, transfer, transfer, batch, read_total, stream]
    async with anyio.create_task_group() as tg:
        tg.start_soon(never_cancelled)
        while time.monotonic() < deadline:
            for _ in range(rng.randint(1, 12)):
                tg.start_soon(rng.choice(kinds))
            await anyio.sleep(rng.uniform(0, 0.004))
    # Invariants after the storm, then two concurrent closes.
    total = await db.fetchval("SELECT sum(balance) FROM accounts")
    if total != TOTAL:
        raise Broken(f"seed {seed}: total {total} != {TOTAL} after the run")
    sizes = await db.fetchall("SELECT count(*) FROM batch GROUP BY b", row_factory=tuple)
    if any(n != BATCH for (n,) in sizes):
        raise Broken(f"seed {seed}: an executemany batch was cut: {sizes}")
    if db._writer.worker.inspect("in_transaction"):
        raise Broken(f"seed {seed}: the writer was left inside a transaction")
    closed: list[Any] = []

    async def close() -> None:
        closed.append(await db.close())

    async with anyio.create_task_group() as tg:
        tg.start_soon(close)
        tg.start_soon(close)
    if closed != [None, None]:
        raise Broken(f"seed {seed}: concurrent closes returned {closed}")
    return stats


def _workers() -> set[threading.Thread]:
    """aiolite's worker threads alive now (the event loop libraries start threads too)."""
    return {t for t in threading.enumerate() if t.name.startswith("aiolite-")}


def _check_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT sum(balance) FROM accounts").fetchone() == (TOTAL,)
    finally:
        conn.close()


@pytest.mark.parametrize("seed", SEEDS)
async def test_chaos(tmp_path: Path, seed: int) -> None:
    """Transfers, snapshots, streams, batches and random cancels keep every invariant."""
    threads = _workers()
    path = tmp_path / "chaos.db"
    stats = await chaos(path, seed, SECONDS)
    assert stats["cancelled"] > 0, stats  # the run did cancel things
    assert stats["transfers"] > 0, stats
    assert stats["reads"] > 0, stats
    _check_file(path)
    for _ in range(500):  # threads end without an event to wait on: poll, 5 s at most
        if _workers() <= threads:
            break
        await anyio.sleep(0.01)
    assert _workers() <= threads, "a worker thread was left behind"


async def test_chaos_on_one_connection(tmp_path: Path) -> None:
    """connect(): tasks share one connection with half-read cursors open while others are
    cancelled; money moved by single statements is never lost, cursors never lose rows,
    and never-cancelled statements never fail."""
    rng = random.Random(17)
    async with aiolite.connect(tmp_path / "one.db", isolation_level=None, iter_chunk_size=4) as db:
        await db.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER)")
        await db.executemany(
            "INSERT INTO accounts VALUES (?, ?)", [(i, START) for i in range(ACCOUNTS)]
        )
        await db.execute("CREATE TABLE big(x)")
        await db.executemany("INSERT INTO big VALUES (?)", [(i,) for i in range(300)])
        failures: list[BaseException] = []
        cancels = 0

        async def mover() -> None:
            nonlocal cancels
            for _ in range(40):
                a, b = rng.sample(range(ACCOUNTS), 2)
                with anyio.move_on_after(rng.uniform(0, 0.003)) as scope:
                    if rng.random() < 0.2:
                        await db.execute(LONG)
                    await db.execute(
                        "UPDATE accounts SET balance = balance + "
                        "CASE id WHEN ? THEN -5 ELSE 5 END WHERE id IN (?, ?)",
                        (a, a, b),
                    )
                cancels += scope.cancelled_caught

        async def slow_reader() -> None:
            try:
                cur = await db.execute("SELECT x FROM big ORDER BY x")
                seen = []
                while True:
                    row = await cur.fetchone()
                    if row is None:
                        break
                    seen.append(row[0])
                    await anyio.sleep(0.0005)
                assert seen == list(range(300))
                total = await db.execute_fetchall("SELECT sum(balance) FROM accounts")
                assert total == [(TOTAL,)]
            except BaseException as exc:
                failures.append(exc)
                raise

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(slow_reader)
            for _ in range(6):
                tg.start_soon(mover)
        assert failures == []
        assert cancels > 10
        assert await db.execute_fetchall("SELECT sum(balance) FROM accounts") == [(TOTAL,)]


def test_chaos_in_two_processes(tmp_path: Path) -> None:
    """Two processes run the chaos on one file at once; the total survives both."""
    path = tmp_path / "shared.db"
    anyio.run(chaos, path, 99, 0.2)  # creates the tables
    script = f"""
        import sys, anyio
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_chaos import chaos
        anyio.run(chaos, Path({str(path)!r}), int(sys.argv[1]), {SECONDS!r}, False)
        print("ok")
    """
    (tmp_path / "chaos_child.py").write_text(textwrap.dedent(script))
    procs = [
        subprocess.Popen(
            [sys.executable, str(tmp_path / "chaos_child.py"), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-1500:]
        assert "ok" in out
    _check_file(path)


if __name__ == "__main__":  # pragma: no cover
    print(anyio.run(chaos, Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
