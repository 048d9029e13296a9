"""Side-by-side benchmark: aiolite vs aiosqlite vs blocking sqlite3, in one process.

Every scenario runs each library on the same database file, rounds interleaved (a, b, c,
a, b, c, ...) so that machine noise hits all of them alike; the best round counts.  Every
asynchronous run is watched by a probe (benchmarks/lag.py): a 1 ms timer on the same loop
whose lateness is the event-loop lag, reported as p99 / max over all rounds.  The hostile
scenarios at the end exist to stall the loop; only their lag counts.  The output is a
table of times, ratios and lags; ``--markdown`` prints it for docs/benchmarks.md.

    python -m benchmarks.run [--rounds 5] [--quick] [--markdown] [--only NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiosqlite

import aiolite
from benchmarks import floor
from benchmarks.lag import Lag, run_probed

SELECT_ONE = "SELECT id, name, value FROM items WHERE id = ?"
INSERT_ONE = "INSERT INTO log (msg, n) VALUES (?, ?)"
# A pure-CPU aggregate that runs inside one sqlite3_step (the GIL is released meanwhile).
LONG_QUERY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
    "SELECT sum(x % 7) FROM c"
)


@dataclass
class Scale:
    point_ops: int = 2000
    tasks: int = 100
    per_task: int = 20
    inserts: int = 1000
    tx_inserts: int = 100_000
    bulk_rows: int = 100_000
    long_query_target_s: float = 2.0


@dataclass
class Scenario:
    name: str
    unit: str  # what one "op" is, for the ops/s column
    ops: int
    runners: dict[str, Callable[[Path], Any]] = field(default_factory=dict)
    lower_is_better_metric: str = "time"  # or "lag": a hostile scenario, only its lag counts


def make_db(path: Path, rows: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(
        """
        CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, value REAL);
        CREATE TABLE log (id INTEGER PRIMARY KEY, msg TEXT, n INTEGER);
        CREATE TABLE bulk (id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL);
        """
    )
    conn.executemany(
        "INSERT INTO items (name, value) VALUES (?, ?)",
        ((f"item-{i}", i * 0.5) for i in range(10_000)),
    )
    conn.executemany(
        "INSERT INTO bulk (a, b, c) VALUES (?, ?, ?)",
        ((i, f"row-{i}", i / 3) for i in range(rows)),
    )
    conn.commit()
    conn.close()


# Both async libraries take the same connect() arguments; every connection uses
# synchronous=NORMAL (WAL is persisted in the file) so commits cost the same for all three.
async def _aopen(lib: Any, path: Path) -> Any:
    db = await lib.connect(path)
    await db.execute("PRAGMA synchronous=NORMAL")
    return db


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


# ---- scenarios: each returns elapsed seconds (or the metric) for one round ----------------


def point_select(lib: Any, n: int) -> Callable[[Path], Awaitable[float]]:
    async def run(path: Path) -> float:
        db = await _aopen(lib, path)
        t0 = time.perf_counter()
        for i in range(n):
            async with db.execute(SELECT_ONE, (i % 10_000 + 1,)) as cur:
                row = await cur.fetchone()
            assert row is not None
        t = time.perf_counter() - t0
        await db.close()
        return t

    return run


def point_select_sync(n: int) -> Callable[[Path], float]:
    def run(path: Path) -> float:
        conn = _open(path)
        t0 = time.perf_counter()
        for i in range(n):
            cur = conn.execute(SELECT_ONE, (i % 10_000 + 1,))
            row = cur.fetchone()
            cur.close()
            assert row is not None
        t = time.perf_counter() - t0
        conn.close()
        return t

    return run


async def _time_on_floor(path: Path, body: Callable[[floor.BareThread], Awaitable[None]]) -> float:
    t = floor.BareThread(path)
    await t.call(floor.execute_fetchone, "PRAGMA synchronous=NORMAL", ())
    t0 = time.perf_counter()
    await body(t)
    elapsed = time.perf_counter() - t0
    t.close()
    return elapsed


def point_select_floor(n: int) -> Callable[[Path], Awaitable[float]]:
    """The same pattern at the round-trip floor: one bare round trip per query."""

    async def body(t: floor.BareThread) -> None:
        for i in range(n):
            row = await t.call(floor.execute_fetchone, SELECT_ONE, (i % 10_000 + 1,))
            assert row is not None

    return lambda path: _time_on_floor(path, body)


def concurrent_selects(lib: Any, tasks: int, per_task: int) -> Callable[[Path], Awaitable[float]]:
    async def run(path: Path) -> float:
        db = await _aopen(lib, path)

        async def worker(k: int) -> None:
            for i in range(per_task):
                async with db.execute(SELECT_ONE, ((k * per_task + i) % 10_000 + 1,)) as cur:
                    row = await cur.fetchone()
                assert row is not None

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(tasks)))
        t = time.perf_counter() - t0
        await db.close()
        return t

    return run


def insert_commit(lib: Any, n: int) -> Callable[[Path], Awaitable[float]]:
    async def run(path: Path) -> float:
        db = await _aopen(lib, path)
        t0 = time.perf_counter()
        for i in range(n):
            cur = await db.execute(INSERT_ONE, ("hello", i))
            await db.commit()
            assert cur.lastrowid
        t = time.perf_counter() - t0
        await db.close()
        return t

    return run


def insert_commit_floor(n: int) -> Callable[[Path], Awaitable[float]]:
    """The same pattern at the round-trip floor: two bare round trips (insert, commit)."""

    async def body(t: floor.BareThread) -> None:
        for i in range(n):
            rowid = await t.call(floor.execute_lastrowid, INSERT_ONE, ("hello", i))
            await t.call(floor.commit)
            assert rowid

    return lambda path: _time_on_floor(path, body)


def inserts_in_one_transaction(lib: Any, n: int) -> Callable[[Path], Awaitable[float]]:
    """aiosqlite issue #97's pattern: many awaited single-row INSERTs, one COMMIT."""

    async def run(path: Path) -> float:
        db = await _aopen(lib, path)
        t0 = time.perf_counter()
        for i in range(n):
            await db.execute(INSERT_ONE, ("hello", i))
        await db.commit()
        t = time.perf_counter() - t0
        await db.close()
        return t

    return run


def inserts_in_one_transaction_sync(n: int) -> Callable[[Path], float]:
    def run(path: Path) -> float:
        conn = _open(path)
        t0 = time.perf_counter()
        for i in range(n):
            conn.execute(INSERT_ONE, ("hello", i))
        conn.commit()
        t = time.perf_counter() - t0
        conn.close()
        return t

    return run


def insert_commit_sync(n: int) -> Callable[[Path], float]:
    def run(path: Path) -> float:
        conn = _open(path)
        t0 = time.perf_counter()
        for i in range(n):
            cur = conn.execute(INSERT_ONE, ("hello", i))
            conn.commit()
            assert cur.lastrowid
        t = time.perf_counter() - t0
        conn.close()
        return t

    return run


def _bulk_rows(n: int) -> list[tuple[int, str, float]]:
    return [(i, f"row-{i}", i / 3) for i in range(n)]


def executemany(lib: Any, n: int) -> Callable[[Path], Awaitable[float]]:
    # Made before the run: building 100,000 tuples would stall the probed loop itself.
    params = [(r[0], r[1]) for r in _bulk_rows(n)]

    async def run(path: Path) -> float:
        db = await _aopen(lib, path)
        t0 = time.perf_counter()
        await db.executemany("INSERT INTO log (n, msg) VALUES (?, ?)", params)
        await db.commit()
        t = time.perf_counter() - t0
        await db.close()
        return t

    return run


def executemany_sync(n: int) -> Callable[[Path], float]:
    def run(path: Path) -> float:
        conn = _open(path)
        rows = _bulk_rows(n)
        t0 = time.perf_counter()
        conn.executemany("INSERT INTO log (n, msg) VALUES (?, ?)", [(r[0], r[1]) for r in rows])
        conn.commit()
        t = time.perf_counter() - t0
        conn.close()
        return t

    return run


def fetchall(lib: Any, n: int) -> Callable[[Path], Awaitable[tuple[float, Any]]]:
    async def run(path: Path) -> tuple[float, Any]:
        db = await _aopen(lib, path)
        t0 = time.perf_counter()
        async with db.execute("SELECT id, a, b, c FROM bulk LIMIT ?", (n,)) as cur:
            rows = await cur.fetchall()
        t = time.perf_counter() - t0
        assert len(rows) == n
        await db.close()
        return t, rows  # freed after the probe stops (see run_round)

    return run


def fetchall_sync(n: int) -> Callable[[Path], float]:
    def run(path: Path) -> float:
        conn = _open(path)
        t0 = time.perf_counter()
        rows = conn.execute("SELECT id, a, b, c FROM bulk LIMIT ?", (n,)).fetchall()
        t = time.perf_counter() - t0
        assert len(rows) == n
        conn.close()
        return t

    return run


def iterate(lib: Any, n: int) -> Callable[[Path], Awaitable[float]]:
    async def run(path: Path) -> float:
        db = await _aopen(lib, path)
        t0 = time.perf_counter()
        count = 0
        async with db.execute("SELECT id, a, b, c FROM bulk LIMIT ?", (n,)) as cur:
            async for _row in cur:
                count += 1
        t = time.perf_counter() - t0
        assert count == n
        await db.close()
        return t

    return run


def iterate_sync(n: int) -> Callable[[Path], float]:
    def run(path: Path) -> float:
        conn = _open(path)
        t0 = time.perf_counter()
        count = 0
        for _row in conn.execute("SELECT id, a, b, c FROM bulk LIMIT ?", (n,)):
            count += 1
        t = time.perf_counter() - t0
        assert count == n
        conn.close()
        return t

    return run


def calibrate_long_query(path: Path, target_s: float) -> int:
    conn = sqlite3.connect(path)
    n = 200_000
    while True:
        t0 = time.perf_counter()
        conn.execute(LONG_QUERY, (n,)).fetchone()
        dt = time.perf_counter() - t0
        if dt > 0.2:
            conn.close()
            return int(n * target_s / dt)
        n *= 4


# ---- hostile scenarios: each tries to stall the loop; the probe's lag is what counts ----


def long_query(lib: Any, n: int) -> Callable[[Path], Awaitable[float]]:
    async def run(path: Path) -> float:
        db = await _aopen(lib, path)
        t0 = time.perf_counter()
        async with db.execute(LONG_QUERY, (n,)) as cur:
            await cur.fetchone()
        t = time.perf_counter() - t0
        await db.close()
        return t

    return run


def big_update_in_transaction(lib: Any) -> Callable[[Path], Awaitable[float]]:
    """A 100k-row UPDATE inside a transaction, ten times on one connection (rolled
    back): a write that may not be interrupted, and that grows with the table."""

    async def run(path: Path) -> float:
        db = await _aopen(lib, path)
        t0 = time.perf_counter()
        for _ in range(10):
            await db.execute("BEGIN")
            cur = await db.execute("UPDATE bulk SET c = c + 1")
            assert cur.rowcount > 0
            await db.rollback()
        t = time.perf_counter() - t0
        await db.close()
        return t

    return run


def writer_elsewhere(lib: Any, n: int) -> Callable[[Path], Awaitable[float]]:
    """Another process holds the write lock for 1 s while this one inserts and commits."""

    async def run(path: Path) -> float:
        db = await _aopen(lib, path)
        await db.execute(INSERT_ONE, ("warm-up", 0))  # learned: short, and writes
        await db.commit()
        holder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True)\n"
            "time.sleep(1.0); c.execute('COMMIT')\n",
            str(path),
            stdout=asyncio.subprocess.PIPE,
        )
        assert holder.stdout is not None
        assert await holder.stdout.readline() == b"locked\n"
        t0 = time.perf_counter()
        for i in range(n):
            await db.execute(INSERT_ONE, ("hello", i))
            await db.commit()
        t = time.perf_counter() - t0
        await holder.wait()
        await db.close()
        return t

    return run


def fast_then_slow(lib: Any) -> Callable[[Path], Awaitable[float]]:
    """A query that was fast 1,000 times, then its table grows 3,000-fold."""
    query = "SELECT count(*) FROM grow WHERE x % 7 = ?"
    more = [(i,) for i in range(300_000)]  # made before the run, not on the probed loop

    async def run(path: Path) -> float:
        db = await _aopen(lib, path)
        await db.execute("DROP TABLE IF EXISTS grow")
        await db.execute("CREATE TABLE grow(x INTEGER)")
        await db.executemany("INSERT INTO grow VALUES (?)", [(i,) for i in range(100)])
        await db.commit()
        t0 = time.perf_counter()
        for i in range(1000):
            async with db.execute(query, (i % 7,)) as cur:
                await cur.fetchone()
        await db.executemany("INSERT INTO grow VALUES (?)", more)
        await db.commit()
        for i in range(20):
            async with db.execute(query, (i % 7,)) as cur:
                assert (await cur.fetchone())[0] > 0
        t = time.perf_counter() - t0
        await db.execute("DROP TABLE grow")
        await db.commit()
        await db.close()
        return t

    return run


# ---- driver ------------------------------------------------------------------------------


def build(scale: Scale, long_n: int) -> list[Scenario]:
    libs = {"aiolite": aiolite, "aiosqlite": aiosqlite}
    s: list[Scenario] = []

    def add(
        name: str,
        unit: str,
        ops: int,
        mk: Callable[[Any], Any],
        sync: Any = None,
        bare: Any = None,
    ) -> None:
        sc = Scenario(name, unit, ops)
        for label, lib in libs.items():
            sc.runners[label] = mk(lib)
        if sync is not None:
            sc.runners["sqlite3"] = sync
        if bare is not None and floor.available():
            sc.runners["floor"] = bare
        s.append(sc)

    n = scale.point_ops
    add(
        "point select, sequential (execute/fetchone/close)",
        "query",
        n,
        lambda lib: point_select(lib, n),
        point_select_sync(n),
        point_select_floor(n),
    )
    t, k = scale.tasks, scale.per_task
    add(
        f"point select, {t} tasks on one connection",
        "query",
        t * k,
        lambda lib: concurrent_selects(lib, t, k),
    )
    m = scale.inserts
    add(
        "insert + commit, sequential",
        "commit",
        m,
        lambda lib: insert_commit(lib, m),
        insert_commit_sync(m),
        insert_commit_floor(m),
    )
    w = scale.tx_inserts
    add(
        f"{w:,} awaited INSERTs in one transaction",
        "row",
        w,
        lambda lib: inserts_in_one_transaction(lib, w),
        inserts_in_one_transaction_sync(w),
    )
    b = scale.bulk_rows
    add(f"executemany {b:,} rows", "row", b, lambda lib: executemany(lib, b), executemany_sync(b))
    add(f"fetchall {b:,} rows", "row", b, lambda lib: fetchall(lib, b), fetchall_sync(b))
    add(f"async for over {b:,} rows", "row", b, lambda lib: iterate(lib, b), iterate_sync(b))
    hostile = {
        f"hostile: a {scale.long_query_target_s:g} s query": lambda lib: long_query(lib, long_n),
        f"hostile: {b:,}-row UPDATE inside a transaction (x10)": big_update_in_transaction,
        "hostile: another process holds the write lock 1 s": lambda lib: writer_elsewhere(
            lib, scale.inserts // 10
        ),
        "hostile: fast 1,000 times, then its table grows": fast_then_slow,
    }
    for name, mk in hostile.items():
        sc = Scenario(name, "run", 1, lower_is_better_metric="lag")
        for label, lib in libs.items():
            sc.runners[label] = mk(lib)
        s.append(sc)
    return s


def run_round(fn: Callable[[Path], Any], path: Path) -> tuple[float, Lag | None]:
    """Time one run; an asynchronous one runs under the lag probe.

    Two costs that belong to no library are kept out of the probe's window, for all of
    them alike.  A full garbage collection: the heap left by earlier rounds makes one due
    at a random point of a later round, where it holds the GIL for ~6 ms.  Hence a
    collection before each round.  And freeing a scenario's result: a 100,000-row list
    takes ~4.3 ms to free on whichever thread drops it, the caller's, as with sqlite3
    (measured: the probe's one late tick of a fetchall round came from the
    scenario's own function returning and dropping its rows).  Hence a scenario may
    return (time, result), and the result is dropped after the probe has stopped.
    """
    gc.collect()
    result = fn(path)
    if asyncio.iscoroutine(result):
        value, lag = run_probed(result)
        if isinstance(value, tuple):
            value, _result = value
        return float(value), lag
    return float(result), None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="a smaller scale, for a smoke run")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--only", default="", help="run scenarios whose name contains this")
    args = ap.parse_args(argv)
    scale = Scale()
    if args.quick:
        scale = Scale(200, 20, 10, 100, 10_000, 10_000, 0.3)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        make_db(path, scale.bulk_rows)
        long_n = calibrate_long_query(path, scale.long_query_target_s)
        results: list[tuple[Scenario, dict[str, float], dict[str, Lag]]] = []
        for sc in build(scale, long_n):
            if args.only and args.only not in sc.name:
                continue
            best: dict[str, float] = {}
            lags: dict[str, Lag] = {}
            rounds = 3 if sc.lower_is_better_metric == "lag" else args.rounds
            for _ in range(rounds):
                for label, fn in sc.runners.items():
                    value, lag = run_round(fn, path)
                    best[label] = min(best.get(label, float("inf")), value)
                    if lag is not None:  # pooled over the rounds (Lag.merged)
                        lags[label] = lag if label not in lags else lags[label].merged(lag)
            results.append((sc, best, lags))
            print(_line(sc, best, lags), file=sys.stderr, flush=True)
    floor_lag = idle_lag()
    print(f"  idle loop (lag floor): {floor_lag.cell()}", file=sys.stderr, flush=True)
    print(report(results, args, scale, floor_lag))
    return 0


def idle_lag(seconds: float = 1.0, rounds: int = 3) -> Lag:
    """The probe on a loop with nothing else to do: the lag this machine adds by itself
    (timer slack, a busy neighbour on a shared VM), which no library can go under."""
    lag: Lag | None = None
    for _ in range(rounds):
        _, one = run_probed(asyncio.sleep(seconds))
        lag = one if lag is None else lag.merged(one)
    assert lag is not None
    return lag


def _line(sc: Scenario, best: dict[str, float], lags: dict[str, Lag]) -> str:
    parts = [f"{k}={v * 1e3:.2f}ms" for k, v in best.items()]
    parts += [f"{k} lag {v.cell()}" for k, v in lags.items()]
    return f"  {sc.name}: " + ", ".join(parts)


def report(
    results: list[tuple[Scenario, dict[str, float], dict[str, Lag]]],
    args: Any,
    scale: Scale,
    floor_lag: Lag,
) -> str:
    lines = []
    head = (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"aiosqlite {aiosqlite.__version__}, aiolite {aiolite.__version__}, "
        f"{os.cpu_count()} CPUs, best of {args.rounds} interleaved rounds"
    )
    lines.append(head)
    lines.append("")
    lines.append(
        "| scenario | aiolite | aiosqlite | sqlite3 | aiolite vs aiosqlite | aiolite vs sqlite3 "
        "| loop lag p99 / max: aiolite | aiosqlite |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for sc, best, lags in results:
        a = best.get("aiolite")
        b = best.get("aiosqlite")
        c = best.get("sqlite3")
        lag_cells = [lags[k].cell() if k in lags else "—" for k in ("aiolite", "aiosqlite")]
        if sc.lower_is_better_metric == "lag":
            cells = [_ms(a), _ms(b), "—", "—", "—"]
        else:
            cells = [
                _rate(a, sc),
                _rate(b, sc),
                _rate(c, sc) if c else "—",
                f"**{b / a:.2f}×**" if a and b else "—",
                f"{c / a:.2f}×" if a and c else "—",
            ]
        lines.append(f"| {sc.name} | " + " | ".join(cells + lag_cells) + " |")
    lines.append("")
    lines.append(
        "Ratios are speed-ups (>1 means aiolite is faster); times are the best round; lag is "
        "how late a 1 ms timer on the same loop fired: p99 and max over the ticks of all rounds "
        "(hostile scenarios: time of the whole run, and the lag)."
    )
    lines.append("")
    lines.append(
        f"Lag floor: the same probe on an idle loop (3 x 1 s) gave {floor_lag.cell()} "
        "on this machine in this run: what the machine adds by itself."
    )
    floors = [(sc, best) for sc, best, _ in results if "floor" in best]
    if floors:
        lines.append("")
        lines.append(
            "Round-trip floor (benchmarks/floor.py: the same pattern on a bare thread, with "
            "the same number of round trips as aiolite's `connect()`, no library code):"
        )
        lines.append("")
        lines.append(
            "| scenario | floor | µs per op: floor / aiolite / aiosqlite "
            "| ceiling: aiosqlite vs floor | aiolite vs aiosqlite |"
        )
        lines.append("|---|---|---|---|---|")
        for sc, best in floors:
            f, a, b = best["floor"], best.get("aiolite"), best.get("aiosqlite")
            us = " / ".join(f"{t / sc.ops * 1e6:.1f}" if t else "—" for t in (f, a, b))
            lines.append(
                f"| {sc.name} | {_rate(f, sc)} | {us} | {b / f:.2f}× | "
                + (f"{b / a:.2f}×" if a and b else "—")
                + " |"
            )
    return "\n".join(lines)


def _rate(t: float | None, sc: Scenario) -> str:
    if not t:
        return "—"
    return f"{sc.ops / t:,.0f} {sc.unit}/s"


def _ms(t: float | None) -> str:
    return "—" if t is None else f"{t * 1e3:.1f} ms"


if __name__ == "__main__":
    sys.exit(main())
