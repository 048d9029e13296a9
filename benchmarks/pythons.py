"""The two hot-path ratios (aiolite vs blocking sqlite3) on every supported Python.

Each interpreter runs this file as a child with ``src`` on its path (aiolite needs nothing
else; aiosqlite is not involved), so the ratio of one version is measured in one process,
rounds interleaved, the best round counting, as in benchmarks/run.py:

* point select: ``async with db.execute(q, (id,)) as cur: await cur.fetchone()`` against
  ``conn.execute(q, (id,)).fetchone()``;
* INSERT: 100,000 awaited single-row INSERTs in one transaction, against the same loop on
  ``sqlite3``.

    python -m benchmarks.pythons [--rounds 5] [--calls 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SELECT = "SELECT id, a, b FROM t WHERE id = ?"
INSERT = "INSERT INTO t (a, b) VALUES (?, ?)"
ROOT = Path(__file__).resolve().parent.parent


def _database(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INTEGER)")
    conn.executemany(INSERT, (("x", i) for i in range(10_000)))
    conn.commit()
    conn.close()
    return path


def _sync(path: str, n: int, insert: bool) -> float:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=NORMAL")
    t0 = time.perf_counter()
    for i in range(n):
        if insert:
            conn.execute(INSERT, ("hello", i))
        else:
            conn.execute(SELECT, (i % 10_000 + 1,)).fetchone()
    conn.commit()
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


async def _async(path: str, n: int, insert: bool) -> float:
    import aiolite

    db = await aiolite.connect(path)
    await db.execute("PRAGMA synchronous=NORMAL")
    t0 = time.perf_counter()
    for i in range(n):
        if insert:
            await db.execute(INSERT, ("hello", i))
        else:
            async with db.execute(SELECT, (i % 10_000 + 1,)) as cur:
                await cur.fetchone()
    await db.commit()
    elapsed = time.perf_counter() - t0
    await db.close()
    return elapsed


def child(rounds: int, n: int) -> str:
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        for r in range(rounds):
            for insert in (False, True):
                kind = "insert" if insert else "select"
                a = asyncio.run(_async(_database(directory, f"a{r}{kind}"), n, insert))
                s = _sync(_database(directory, f"s{r}{kind}"), n, insert)
                best[f"a{kind}"] = min(best.get(f"a{kind}", a), a)
                best[f"s{kind}"] = min(best.get(f"s{kind}", s), s)
    version = sys.version.split()[0]
    return (
        f"| {version} | {n / best['aselect']:,.0f} | {n / best['sselect']:,.0f} | "
        f"{best['sselect'] / best['aselect']:.2f}x | {n / best['ainsert']:,.0f} | "
        f"{n / best['sinsert']:,.0f} | {best['sinsert'] / best['ainsert']:.2f}x |"
    )


def interpreters() -> list[str]:
    root = os.environ.get("PYENV_ROOT", "/root/.pyenv")
    found = []
    for minor in ("3.9", "3.10", "3.11", "3.12", "3.13"):
        paths = sorted(glob.glob(f"{root}/versions/{minor}.*/bin/python"))
        if paths:
            found.append(paths[-1])
    return found or [sys.executable]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(child(args.rounds, args.calls))
        return 0
    print(
        "| Python | aiolite select/s | sqlite3 select/s | ratio | aiolite INSERT/s "
        "| sqlite3 INSERT/s | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    for python in interpreters():
        cmd = [python, str(Path(__file__).resolve()), "--child"]
        cmd += ["--rounds", str(args.rounds), "--calls", str(args.calls)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        print(out.stdout.strip() if out.returncode == 0 else f"| {python} | failed: {out.stderr}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
