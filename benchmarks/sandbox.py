"""The sandbox's cost on point selects: the same Database file opened plainly
(``readonly=True``) and as untrusted (``untrusted=True``: authorizer, limits, a time limit
and a row limit on every query), 100 tasks x 50 point selects, best of 5 rounds.

    python -m benchmarks.sandbox [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

import aiolite


async def selects(db: aiolite.Database) -> float:
    async def task(k: int) -> None:
        for i in range(50):
            await db.fetchone("SELECT id, name FROM t WHERE id = ?", ((k * 50 + i) % 1000,))

    started = time.perf_counter()
    await asyncio.gather(*(task(k) for k in range(100)))
    return 5000 / (time.perf_counter() - started)


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.db"
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(1000)])
        conn.commit()
        conn.close()
        best = {"plain": 0.0, "sandbox": 0.0}
        async with (
            aiolite.open(path, readonly=True, types=None) as plain,
            aiolite.open(path, untrusted=True) as sandboxed,
        ):
            for _ in range(rounds):  # interleaved, so that noise hits both alike
                best["plain"] = max(best["plain"], await selects(plain))
                best["sandbox"] = max(best["sandbox"], await selects(sandboxed))
    print("| Database | point selects/s (best round) |")
    print("|---|---|")
    print(f"| `readonly=True` | {best['plain']:,.0f} |")
    print(f"| `untrusted=True` | {best['sandbox']:,.0f} |")
    print(f"\nsandbox cost: {1 - best['sandbox'] / best['plain']:.1%} of a plain read")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
