"""Database scenarios: aiolite.open() vs aiosqlite (shared connection, connection per task)
vs aiosqlitepool, in one process, rounds interleaved, best round counts.

What counts is *successful* operations per second: a transaction that failed with
"database is locked" is work the application must redo (or lost).

    python -m benchmarks.database [--rounds 3] [--quick] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import aiosqlite
from aiosqlitepool import SQLiteConnectionPool

import aiolite
from benchmarks.lag import Lag, run_probed

HOT = 10
SELECT_ONE = "SELECT id, name, value FROM items WHERE id = ?"
INSERT_ONE = "INSERT INTO log (msg, n) VALUES (?, ?)"
GET = "SELECT n FROM counters WHERE id = ?"
SET = "UPDATE counters SET n = ? WHERE id = ?"


@dataclass
class Outcome:
    seconds: float
    ok: int
    errors: int
    kinds: dict[str, int] = field(default_factory=dict)
    lag: Optional[Lag] = None  # the event loop's lag meanwhile (benchmarks/lag.py)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        key = str(exc).split(":")[0][:48]
        self.kinds[key] = self.kinds.get(key, 0) + 1


@dataclass
class Scale:
    rmw_tasks: int = 50
    rmw_per_task: int = 40
    tasks: int = 100
    per_task: int = 20
    inserts: int = 1000
    point_ops: int = 5000


def make_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(
        """
        CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, value REAL);
        CREATE TABLE log (id INTEGER PRIMARY KEY, msg TEXT, n INTEGER);
        CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
        """
    )
    conn.executemany(
        "INSERT INTO items (name, value) VALUES (?, ?)",
        ((f"item-{i}", i * 0.5) for i in range(10_000)),
    )
    conn.executemany("INSERT INTO counters VALUES (?, 0)", ((i,) for i in range(HOT)))
    conn.commit()
    conn.close()


# ---- the contenders: each gives a way to run N tasks with a per-task body ----------------


async def aiosqlite_conn(path: Path) -> Any:
    # What the tutorials do; synchronous=NORMAL so commits cost what aiolite's cost.
    db = await aiosqlite.connect(path)
    await db.execute("PRAGMA synchronous=NORMAL")
    return db


async def _aiosqlite_rmw(db: Any, key: int) -> None:
    await db.execute("BEGIN")  # as an ORM session does: the SELECT is inside the transaction
    try:
        async with db.execute(GET, (key,)) as cur:
            (n,) = await cur.fetchone()
        await db.execute(SET, (n + 1, key))
        await db.commit()
    except BaseException:
        if db.in_transaction:
            await db.rollback()
        raise


async def _aiolite_rmw(db: aiolite.Database, key: int) -> None:
    async with db.transaction() as tx:
        n = await tx.fetchval(GET, (key,))
        await tx.execute(SET, (n + 1, key))


def rmw(contender: str, tasks: int, per_task: int) -> Callable[[Path], Any]:
    async def run(path: Path) -> Outcome:
        out = Outcome(0, 0, 0)
        shared: Any = None
        pool: Any = None
        if contender == "aiolite":
            shared = await aiolite.open(path)
        elif contender == "aiosqlite shared":
            shared = await aiosqlite_conn(path)
        elif contender == "aiosqlitepool":
            pool = SQLiteConnectionPool(lambda: aiosqlite_conn(path), pool_size=5)

        async def task(t: int) -> None:
            own = await aiosqlite_conn(path) if contender == "aiosqlite per task" else None
            try:
                for i in range(per_task):
                    key = (t + i) % HOT
                    try:
                        if contender == "aiolite":
                            await _aiolite_rmw(shared, key)
                        elif pool is not None:
                            async with pool.connection() as conn:
                                await _aiosqlite_rmw(conn, key)
                        else:
                            await _aiosqlite_rmw(own or shared, key)
                        out.ok += 1
                    except sqlite3.Error as exc:
                        out.fail(exc)
            finally:
                if own is not None:
                    await own.close()

        t0 = time.perf_counter()
        await asyncio.gather(*(task(t) for t in range(tasks)))
        out.seconds = time.perf_counter() - t0
        if shared is not None:
            await shared.close()
        if pool is not None:
            await pool.close()
        return out

    return run


def point_selects(contender: str, tasks: int, per_task: int) -> Callable[[Path], Any]:
    return _mix(contender, tasks, per_task, write_share=0.0)


def mixed(contender: str, tasks: int, per_task: int) -> Callable[[Path], Any]:
    return _mix(contender, tasks, per_task, write_share=0.2)


def _mix(contender: str, tasks: int, per_task: int, write_share: float) -> Callable[[Path], Any]:
    async def run(path: Path) -> Outcome:
        out = Outcome(0, 0, 0)
        rng = random.Random(1)
        plan = [[rng.random() < write_share for _ in range(per_task)] for _ in range(tasks)]
        db: Any = None
        pool: Any = None
        if contender == "aiolite":
            db = await aiolite.open(path)
        elif contender == "aiosqlitepool":
            pool = SQLiteConnectionPool(lambda: aiosqlite_conn(path), pool_size=5)
        else:
            db = await aiosqlite_conn(path)

        async def one(conn: Any, write: bool, key: int) -> None:
            if contender == "aiolite":
                if write:
                    await conn.execute(INSERT_ONE, ("hello", key))
                else:
                    assert await conn.fetchone(SELECT_ONE, (key,)) is not None
                return
            if write:
                await conn.execute(INSERT_ONE, ("hello", key))
                await conn.commit()
            else:
                async with conn.execute(SELECT_ONE, (key,)) as cur:
                    assert await cur.fetchone() is not None

        async def task(t: int) -> None:
            for i, write in enumerate(plan[t]):
                key = (t * per_task + i) % 10_000 + 1
                try:
                    if pool is not None:
                        async with pool.connection() as conn:
                            await one(conn, write, key)
                    else:
                        await one(db, write, key)
                    out.ok += 1
                except sqlite3.Error as exc:
                    out.fail(exc)

        t0 = time.perf_counter()
        await asyncio.gather(*(task(t) for t in range(tasks)))
        out.seconds = time.perf_counter() - t0
        if db is not None:
            await db.close()
        if pool is not None:
            await pool.close()
        return out

    return run


def insert_commit(contender: str, n: int) -> Callable[[Path], Any]:
    async def run(path: Path) -> Outcome:
        if contender == "aiolite":
            db: Any = await aiolite.open(path, readers=1)
            t0 = time.perf_counter()
            for i in range(n):
                await db.execute(INSERT_ONE, ("hello", i))
        else:
            db = await aiosqlite_conn(path)
            t0 = time.perf_counter()
            for i in range(n):
                await db.execute(INSERT_ONE, ("hello", i))
                await db.commit()
        seconds = time.perf_counter() - t0
        await db.close()
        return Outcome(seconds, n, 0)

    return run


def fetchone_sequential(contender: str, n: int) -> Callable[[Path], Any]:
    async def run(path: Path) -> Outcome:
        if contender == "aiolite":
            db: Any = await aiolite.open(path)
            t0 = time.perf_counter()
            for i in range(n):
                assert await db.fetchone(SELECT_ONE, (i % 10_000 + 1,)) is not None
        else:
            db = await aiosqlite_conn(path)
            t0 = time.perf_counter()
            for i in range(n):
                async with db.execute(SELECT_ONE, (i % 10_000 + 1,)) as cur:
                    assert await cur.fetchone() is not None
        seconds = time.perf_counter() - t0
        await db.close()
        return Outcome(seconds, n, 0)

    return run


def fetchone_sequential_sync(n: int) -> Callable[[Path], Any]:
    def run(path: Path) -> Outcome:
        conn = sqlite3.connect(path)
        t0 = time.perf_counter()
        for i in range(n):
            assert conn.execute(SELECT_ONE, (i % 10_000 + 1,)).fetchone() is not None
        seconds = time.perf_counter() - t0
        conn.close()
        return Outcome(seconds, n, 0)

    return run


def insert_commit_sync(n: int) -> Callable[[Path], Any]:
    def run(path: Path) -> Outcome:
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA synchronous=NORMAL")
        t0 = time.perf_counter()
        for i in range(n):
            conn.execute(INSERT_ONE, ("hello", i))
            conn.commit()
        seconds = time.perf_counter() - t0
        conn.close()
        return Outcome(seconds, n, 0)

    return run


# ---- driver ------------------------------------------------------------------------------

CONTENDERS = ["aiolite", "aiosqlite shared", "aiosqlite per task", "aiosqlitepool", "sqlite3"]


@dataclass
class Scenario:
    name: str
    unit: str
    target: str  # which contender the goal is measured against, and the goal
    runners: dict[str, Callable[[Path], Any]]


def build(scale: Scale) -> list[Scenario]:
    t, k = scale.rmw_tasks, scale.rmw_per_task
    rmw_runners = {c: rmw(c, t, k) for c in CONTENDERS[:4]}
    n, m = scale.tasks, scale.per_task
    return [
        Scenario(
            f"read-modify-write transactions, {t} tasks x {k}, {HOT} hot rows",
            "tx",
            "aiosqlite per task >= 10x",
            rmw_runners,
        ),
        Scenario(
            f"point selects, {n} tasks x {m}",
            "query",
            "aiosqlite shared >= 5x",
            {c: point_selects(c, n, m) for c in ("aiolite", "aiosqlite shared", "aiosqlitepool")},
        ),
        Scenario(
            f"80% reads / 20% writes, {n} tasks x {m}",
            "op",
            "aiosqlite shared >= 5x",
            {c: mixed(c, n, m) for c in ("aiolite", "aiosqlite shared", "aiosqlitepool")},
        ),
        Scenario(
            "point select, sequential (aiolite: db.fetchone)",
            "query",
            "sqlite3 >= 0.5x",
            {
                "aiolite": fetchone_sequential("aiolite", scale.point_ops),
                "aiosqlite shared": fetchone_sequential("aiosqlite", scale.point_ops),
                "sqlite3": fetchone_sequential_sync(scale.point_ops),
            },
        ),
        Scenario(
            "insert + commit, sequential (aiolite: db.execute)",
            "commit",
            "aiosqlite shared >= 5x",
            {
                "aiolite": insert_commit("aiolite", scale.inserts),
                "aiosqlite shared": insert_commit("aiosqlite", scale.inserts),
                "sqlite3": insert_commit_sync(scale.inserts),
            },
        ),
    ]


def run_round(fn: Callable[[Path], Any], path: Path) -> Outcome:
    """One run; an asynchronous one under the lag probe.  Garbage is collected first, as
    in benchmarks.run.run_round: a full collection made due by earlier rounds would
    otherwise land at random in a later round's probe window (~6 ms holding the GIL)."""
    gc.collect()
    result = fn(path)
    if asyncio.iscoroutine(result):
        result, lag = run_probed(result)
        result.lag = lag
    assert isinstance(result, Outcome)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a smaller scale, for a smoke run")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--only", default="", help="run scenarios whose name contains this")
    args = ap.parse_args(argv)
    scale = Scale(10, 10, 20, 10, 100, 500) if args.quick else Scale()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        make_db(path)
        for sc in build(scale):
            if args.only and args.only not in sc.name:
                continue
            best: dict[str, Outcome] = {}
            lags: dict[str, Lag] = {}
            for _ in range(args.rounds):
                for label, fn in sc.runners.items():
                    out = run_round(fn, path)
                    if out.lag is not None:  # pooled over the rounds (Lag.merged)
                        lags[label] = out.lag if label not in lags else lags[label].merged(out.lag)
                    if label not in best or out.rate > best[label].rate:
                        best[label] = out
            for label, lag in lags.items():
                best[label].lag = lag
            results.append((sc, best))
            print(_line(sc, best), file=sys.stderr, flush=True)
    print(report(results, args))
    return 0


def _line(sc: Scenario, best: dict[str, Outcome]) -> str:
    parts = [f"{k}={v.rate:,.0f}/s ({v.errors} errors)" for k, v in best.items()]
    return f"  {sc.name}: " + ", ".join(parts)


def report(results: list[tuple[Scenario, dict[str, Outcome]]], args: Any) -> str:
    lines = [
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"aiosqlite {aiosqlite.__version__}, aiolite {aiolite.__version__}, "
        f"{os.cpu_count()} CPUs, best of {args.rounds} interleaved rounds; successful "
        "operations per second (errors in the best round)",
        "",
        "| scenario | " + " | ".join(CONTENDERS) + " | aiolite vs target (goal) "
        "| aiolite loop lag p99 / max |",
        "|---|" + "---|" * (len(CONTENDERS) + 2),
    ]
    for sc, best in results:
        cells = []
        for c in CONTENDERS:
            out = best.get(c)
            if out is None:
                cells.append("—")
            else:
                err = f", **{out.errors} errors**" if out.errors else ""
                cells.append(f"{out.rate:,.0f} {sc.unit}/s{err}")
        against, goal = sc.target.split(" >= ")
        a, b = best.get("aiolite"), best.get(against)
        ratio = f"**{a.rate / b.rate:.2f}×** vs {against} ({goal})" if a and b and b.rate else "—"
        lag = a.lag.cell() if a and a.lag else "—"
        lines.append(f"| {sc.name} | " + " | ".join(cells) + f" | {ratio} | {lag} |")
    lines.append("")
    for sc, best in results:
        for c, out in best.items():
            if out.kinds:
                kinds = "; ".join(f"{n}× {k}" for k, n in out.kinds.items())
                lines.append(f"- {sc.name}, {c}: {kinds}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
