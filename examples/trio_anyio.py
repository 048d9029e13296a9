"""aiolite under trio and under anyio: task groups, cancel scopes, timeouts.

python examples/trio_anyio.py [trio|asyncio]
"""

from __future__ import annotations

import sys
import time

import anyio

import aiolite

SLOW = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM c"  # never ends on its own
)


async def main() -> None:
    async with aiolite.open(":memory:") as db:
        await db.execute("CREATE TABLE hits(worker INT, n INT)")

        # A task group: 20 workers writing concurrently, each write its own transaction.
        async def worker(k: int) -> None:
            for n in range(50):
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO hits VALUES (?, ?)", (k, n))

        async with anyio.create_task_group() as tg:
            for k in range(20):
                tg.start_soon(worker, k)
        print("rows:", await db.fetchval("SELECT count(*) FROM hits"))

        # A timeout really stops the query: SQLite is interrupted, the next query is instant.
        started = time.monotonic()
        with anyio.move_on_after(0.2) as scope:
            await db.fetchval(SLOW)
        print("slow query cancelled:", scope.cancelled_caught)
        print("next query:", await db.fetchval("SELECT 42"))
        print(f"well under a second: {time.monotonic() - started < 1}")

        # Cancelling a scope in the middle of a transaction rolls the whole of it back.
        with anyio.CancelScope() as scope:
            async with db.transaction() as tx:
                await tx.execute("DELETE FROM hits")
                scope.cancel()
                await tx.execute("INSERT INTO hits VALUES (-1, -1)")
        print(
            "rows after the cancelled transaction:", await db.fetchval("SELECT count(*) FROM hits")
        )

        # fail_after raises TimeoutError instead of moving on.
        try:
            with anyio.fail_after(0.1):
                await db.fetchval(SLOW)
        except TimeoutError:
            print("fail_after: TimeoutError")


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "trio"
    anyio.run(main, backend=backend)
