"""wal_limit with a long-lived reader in another process: write throughput with and
without the limit (issue #14: it used to fall from ~20k to ~340 inserts/s).

8 tasks insert rows through ``db.execute`` for a few seconds while another process holds
a read transaction open (a backup, an analytics job, Litestream).

    python -m benchmarks.wal_limit [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import aiolite


def hold_reader(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sqlite3, time
            conn = sqlite3.connect({str(path)!r}, isolation_level=None)
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM t").fetchone()
            print("reading", flush=True)
            time.sleep(600)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


async def insert_for(path: Path, seconds: float, **options: Any) -> tuple[float, int]:
    """8 tasks insert rows through ``db.execute`` for ``seconds``; returns (rows per second,
    wal_limit checkpoint attempts).  ``options`` go to aiolite.open()."""
    async with aiolite.open(path, **options) as db:
        await db.execute("CREATE TABLE IF NOT EXISTS t(x)")
        deadline = time.perf_counter() + seconds
        done = 0

        async def writer() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await db.execute("INSERT INTO t VALUES (randomblob(100))")
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(8)))
        rate = done / (time.perf_counter() - started)
        return rate, db.statistics().wal_checkpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print("| wal_limit | inserts/s | checkpoint attempts |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        rates = {}
        for limit in (None, 4 * 1024 * 1024):
            path = Path(tmp) / f"w{limit}.db"
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE t(x)")
            conn.commit()
            conn.close()
            reader = hold_reader(path)
            try:
                rate, attempts = asyncio.run(insert_for(path, args.seconds, wal_limit=limit))
            finally:
                reader.kill()
                reader.communicate()
            rates[limit] = rate
            print(f"| {limit if limit else 'none'} | {rate:,.0f} | {attempts} |")
        ratio = rates[4 * 1024 * 1024] / rates[None]
        print(f"\nwith a 4 MiB wal_limit: {ratio:.2f}x the throughput without one")


if __name__ == "__main__":
    main()
