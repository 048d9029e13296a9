"""Demo: a task tracker run concurrently on a local SQLite file, with aiolite.

Run with ``make demo``.  Many tasks share one connection at once (aiolite queues them on
its worker thread and answers several per event-loop wake-up), a slow report is cancelled
by a timeout without blocking the connection, and the program exits cleanly.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import aiolite

DB = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("tasks.db")
TITLES = ["Write unit tests", "Fix login bug", "Update README", "Deploy to staging"]


async def setup(db: aiolite.Connection) -> None:
    await db.executescript(
        """
        DROP TABLE IF EXISTS tasks;
        CREATE TABLE tasks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            created_at TEXT NOT NULL,
            completed_at TEXT
        );
        """
    )
    db.row_factory = aiolite.Row


async def add_task(db: aiolite.Connection, title: str) -> int:
    cur = await db.execute(
        "INSERT INTO tasks (title, created_at) VALUES (?, ?)",
        (title, datetime.now(timezone.utc).isoformat()),
    )
    await db.commit()
    assert cur.lastrowid is not None
    return cur.lastrowid


async def complete_task(db: aiolite.Connection, task_id: int) -> None:
    await db.execute(
        "UPDATE tasks SET status = 'done', completed_at = ? WHERE id = ?",
        (datetime.now(timezone.utc).isoformat(), task_id),
    )
    await db.commit()


async def summary(db: aiolite.Connection) -> dict[str, int]:
    async with db.execute("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status") as cur:
        return {row["status"]: row["n"] async for row in cur}


async def main() -> None:
    # WAL: readers never wait for the writer, so short queries can run on the loop thread.
    async with aiolite.connect(DB, pragmas={"journal_mode": "WAL"}) as db:
        await setup(db)
        ids = await asyncio.gather(*(add_task(db, t) for t in TITLES))
        print(f"Added tasks: {ids}")
        await asyncio.gather(complete_task(db, ids[0]), complete_task(db, ids[2]))

        # 1,000 more tasks from 100 concurrent coroutines, all on the same connection.
        started = time.perf_counter()
        await db.executemany(
            "INSERT INTO tasks (title, created_at) VALUES (?, ?)",
            [(f"Chore #{i}", datetime.now(timezone.utc).isoformat()) for i in range(1000)],
        )
        await db.commit()

        async def lookups(k: int) -> int:
            found = 0
            for i in range(10):
                async with db.execute("SELECT id FROM tasks WHERE id = ?", (k * 10 + i + 1,)) as c:
                    found += (await c.fetchone()) is not None
            return found

        found = sum(await asyncio.gather(*(lookups(k) for k in range(100))))
        took = time.perf_counter() - started
        print(f"Bulk-added 1000 tasks and ran {found} concurrent lookups in {took * 1e3:.0f} ms")

        # A report that runs too long is interrupted, and the connection answers at once.
        slow = (
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
        )
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(db.execute(slow), timeout=0.2)
        except asyncio.TimeoutError:
            pass
        pending = await db.execute_fetchall(
            "SELECT id, title FROM tasks WHERE status = 'pending' ORDER BY id LIMIT 2"
        )
        print(
            f"Slow report cancelled after 200 ms; next query answered "
            f"{(time.perf_counter() - t0 - 0.2) * 1e3:.1f} ms later"
        )
        print(f"Summary: {await summary(db)}")
        print("First pending tasks:")
        for row in pending:
            print(f"  [{row['id']}] {row['title']}")
        stats = db.statistics()
    print(
        f"Closed {DB}: {stats.round_trips} calls crossed to the worker thread, "
        f"{stats.inline_calls} short ones ran on the event loop's thread."
    )


if __name__ == "__main__":
    asyncio.run(main())
