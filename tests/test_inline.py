"""Adaptive execution: short statements run on the loop thread, the loop never stalls.

Each test checks one promise of docs/design.md#adaptive-execution and fails without it:
where a call ran (statistics, thread idents), that results stay right when a call moves,
that writes in a user's transaction are never interrupted, that locks are never waited
for on the loop, that a busy task lets others run, and that trio still checkpoints.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import sniffio

import aiolite

pytestmark = pytest.mark.anyio

SELECT = "SELECT id, v FROM t WHERE id = ?"
INSERT = "INSERT INTO t(v) VALUES (?)"
#: Runs after which a short statement is remembered (Inline.fast) even on a busy
#: machine: only one with no history is, and a slow run gives it one for ~8 runs.
REMEMBERED_WITHIN = 300


async def _setup(db: aiolite.Connection, rows: int = 100) -> None:
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    await db.executemany("INSERT INTO t(v) VALUES (?)", [(i,) for i in range(rows)])
    await db.commit()


def _calls(db: Any) -> tuple[int, int]:
    s = db.statistics()
    return s.round_trips, s.inline_calls


async def test_short_reads_run_on_the_loop_thread(db_path: Path) -> None:
    async with aiolite.connect(db_path) as db:
        await _setup(db)
        await db.execute_fetchall(SELECT, (1,))  # first run: a read, known by its keyword
        trips, inline = _calls(db)
        for i in range(200):
            async with db.execute(SELECT, (i % 100 + 1,)) as cur:
                assert await cur.fetchone() == (i % 100 + 1, i % 100)
        trips2, inline2 = _calls(db)
        # Most: a run slowed by a GC pause or a busy machine sends the next few to the
        # worker until its history has decayed (see _inline.DECAY).
        assert inline2 - inline >= 150
        assert (trips2 - trips) + (inline2 - inline) == 200


async def test_inline_false_sends_everything_to_the_worker(db_path: Path) -> None:
    async with aiolite.connect(db_path, inline=False) as db:
        await _setup(db)
        for i in range(50):
            async with db.execute(SELECT, (i + 1,)) as cur:
                assert (await cur.fetchone())[0] == i + 1
        trips, inline = _calls(db)
        assert inline == 0
        assert trips >= 50


def test_inline_argument_is_checked(db_path: Path) -> None:
    for bad in ("yes", -1, 0):
        with pytest.raises(ValueError, match="inline must be True, False or a budget"):
            aiolite.connect(db_path, inline=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inline must be"):
        aiolite.open(db_path, inline="fast")  # type: ignore[arg-type]


async def test_a_read_over_its_budget_moves_to_the_worker_with_the_right_rows(
    db_path: Path,
) -> None:
    """Fast 300 times, then the table grows: the run on the loop thread is aborted at the
    budget and the worker returns the right answer; later runs go to the worker."""
    query = "SELECT count(*), sum(v) FROM t WHERE v % 3 = 0"
    async with aiolite.connect(db_path, inline=0.002) as db:
        await _setup(db, rows=30)
        for _ in range(300):
            async with db.execute(query) as cur:
                assert await cur.fetchone() == (10, sum(range(0, 30, 3)))
        # On a busy machine a run may be descheduled past the 2 ms budget and move (seen
        # once in ~50 runs): its slow history would keep the next run off this thread.
        moved = db.statistics().inline_moved
        db._worker.inline.hist.clear()  # type: ignore[union-attr]
        n = 400_000
        await db.executemany("INSERT INTO t(v) VALUES (?)", [(i,) for i in range(30, n)])
        await db.commit()
        started = time.perf_counter()
        async with db.execute(query) as cur:
            row = await cur.fetchone()
        assert row == (len(range(0, n, 3)), sum(range(0, n, 3)))
        assert db.statistics().inline_moved == moved + 1
        trips = db.statistics().round_trips
        async with db.execute(query) as cur:
            assert await cur.fetchone() == row
        assert db.statistics().round_trips == trips + 1  # now on the worker
        assert db.statistics().inline_moved == moved + 1
        assert time.perf_counter() - started < 10


async def test_a_write_in_a_transaction_is_never_interrupted(db_path: Path) -> None:
    """With a budget far too small for it, a bounded write inside a transaction (one
    INSERT of 5,000 rows: no loop, but tens of thousands of VM instructions, so the
    progress handler does run) still runs to the end on the loop thread: interrupting it
    would roll back the whole transaction (SQLite's rule), so the budget never applies."""
    rows = 5000
    many = "INSERT INTO t(v) VALUES " + ",".join(["(?)"] * rows)
    async with aiolite.connect(db_path, inline=1e-7) as db:
        await _setup(db, rows=0)
        await db.execute(many, list(range(rows)))  # learned on the worker; tx holds the lock
        _, inline = _calls(db)
        await db.execute(many, list(range(rows)))
        assert _calls(db)[1] == inline + 1  # it ran on the loop thread...
        assert db.statistics().inline_moved == 0  # ...and was not stopped
        assert db.in_transaction
        for _ in range(10):  # now known to be slow: mostly on the worker; none interrupted
            await db.execute(many, list(range(rows)))
        assert db.statistics().inline_moved == 0
        await db.commit()
        async with db.execute("SELECT count(*), sum(v) FROM t") as cur:
            assert await cur.fetchone() == (12 * rows, 12 * sum(range(rows)))


def _hold_write_lock(path: Path, seconds: float) -> subprocess.Popen[bytes]:
    """Another process takes the write lock, holds it ``seconds``, then commits."""
    code = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True)\n"
        f"time.sleep({seconds}); c.execute('COMMIT')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"locked\n"
    proc.stdout.close()
    return proc


async def _longest_gap_while(work: Any) -> tuple[Any, float]:
    """Run ``work()`` while a ticker task sleeps 1 ms at a time; the longest gap seen."""
    gap = 0.0
    done = False

    async def ticker() -> None:
        nonlocal gap
        last = time.perf_counter()
        while not done:
            await anyio.sleep(0.001)
            now = time.perf_counter()
            gap = max(gap, now - last)
            last = now

    result: list[Any] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.005)
        result.append(await work())
        done = True
    return result[0], gap


async def test_a_busy_database_never_blocks_the_loop(db_path: Path) -> None:
    """Another process holds the write lock: the first write of a transaction, admitted
    to run here, finds the database busy at once (busy timeout 0 for the call) and moves
    to the worker, which waits; the loop keeps running meanwhile."""
    async with aiolite.connect(db_path) as db:
        await _setup(db)
        for _ in range(3):  # learned: a short write; its transactions start here
            await db.execute(INSERT, (1,))
            await db.commit()
        assert db.statistics().inline_calls >= 2
        await _write_while_another_process_holds_the_lock(db, db_path)


async def _write_while_another_process_holds_the_lock(db: aiolite.Connection, path: Path) -> None:
    """A transaction's first write, while another process holds the write lock for 0.6 s:
    it must find the database busy at once here, and wait on the worker, not the loop."""
    holder = _hold_write_lock(path, 0.6)
    try:

        async def write() -> int:
            started = time.perf_counter()
            await db.execute(INSERT, (-2,))
            await db.commit()
            assert time.perf_counter() - started >= 0.3  # it did wait, on the worker
            return db._worker.inline.busy  # type: ignore[union-attr]

        busy, gap = await _longest_gap_while(write)
    finally:
        holder.wait(10)
    assert busy >= 1
    assert gap < 0.25, f"the loop stalled {gap:.3f} s"
    async with db.execute("SELECT count(*) FROM t WHERE v = -2") as cur:
        assert await cur.fetchone() == (1,)


async def test_a_database_writer_never_waits_on_the_loop(db_path: Path) -> None:
    async with aiolite.open(db_path) as db:
        await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
        for i in range(3):
            await db.execute(INSERT, (i,))
        assert db.statistics().inline_calls >= 2
        holder = _hold_write_lock(db_path, 0.6)
        try:

            async def write() -> Any:
                return await db.execute(INSERT, (9,))

            result, gap = await _longest_gap_while(write)
        finally:
            holder.wait(10)
        assert result.rowcount == 1
        assert gap < 0.25, f"the loop stalled {gap:.3f} s"
        assert await db.fetchval("SELECT count(*) FROM t") == 4


async def test_writes_run_here_leave_the_configured_busy_timeout_to_everything_else(
    db_path: Path,
) -> None:
    """A write run here sets the busy timeout to 0 and leaves it there between such calls
    (Worker.no_wait); whatever runs on the worker, or holds the connection from another
    thread, finds the configured one again."""
    async with aiolite.connect(db_path, timeout=3.5) as db:
        await _setup(db)
        for i in range(5):  # transactions whose first write runs here, with no wait
            await db.execute(INSERT, (i,))
            await db.commit()
        assert db._worker.no_wait
        assert db.statistics().inline_calls >= 4
        assert await db.execute_fetchall("PRAGMA busy_timeout") == [(3500,)]  # a job
        assert not db._worker.no_wait
        await db.execute(INSERT, (9,))
        await db.commit()
        assert db._worker.no_wait
        with db._worker.holding() as conn:  # another thread's use (a backup)
            assert conn is not None
            assert conn.execute("PRAGMA busy_timeout").fetchone() == (3500,)
    async with aiolite.open(db_path, busy_timeout=2.0) as database:
        for i in range(5):  # own transactions, run here
            await database.execute(INSERT, (i,))
        writer = database._writer.worker
        assert writer.no_wait
        expected = writer.wait_ms
        assert expected > 0
        assert await database.fetchval("PRAGMA busy_timeout") is not None
        with writer.holding() as conn:
            assert conn is not None
            assert conn.execute("PRAGMA busy_timeout").fetchone() == (expected,)


async def test_a_tight_loop_of_inline_calls_lets_other_tasks_run(db_path: Path) -> None:
    """The task never suspends on its own (every call runs here), yet a ticker keeps
    getting turns: the calls give the loop one at least every millisecond or so."""
    async with aiolite.connect(db_path) as db:
        await _setup(db)
        await db.execute_fetchall(SELECT, (1,))
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                await anyio.lowlevel.checkpoint()
                ticks += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.lowlevel.checkpoint()
            started = time.perf_counter()
            _, inline = _calls(db)
            n = 0
            while time.perf_counter() - started < 0.3:
                async with db.execute(SELECT, (n % 100 + 1,)) as cur:
                    await cur.fetchone()
                n += 1
            done = True
        assert _calls(db)[1] - inline >= n * 0.9  # they did run on the loop thread
        assert ticks >= 60, f"the ticker ran {ticks} times in 0.3 s of inline calls"


async def test_calls_run_in_the_order_they_were_made(db_path: Path) -> None:
    """A queued job (a setting, a posted close) runs before a later call that could run
    here: nothing overtakes what was queued before it."""
    async with aiolite.connect(db_path) as db:
        await _setup(db)
        await db.execute_fetchall(SELECT, (1,))
        for i in range(50):
            db.row_factory = sqlite3.Row if i % 2 else None
            async with db.execute(SELECT, (i + 1,)) as cur:
                row = await cur.fetchone()
            assert isinstance(row, sqlite3.Row) == bool(i % 2)
            assert tuple(row) == (i + 1, i)


async def test_user_functions_and_hooks_keep_statements_on_the_worker(db_path: Path) -> None:
    seen: list[int] = []
    traced: list[str] = []
    async with aiolite.connect(db_path) as db:
        await _setup(db)

        def double(x: int) -> int:
            seen.append(threading.get_ident())
            return 2 * x

        await db.create_function("double", 1, double)
        for i in range(20):
            async with db.execute("SELECT double(v) FROM t WHERE id = ?", (i + 1,)) as cur:
                assert await cur.fetchone() == (2 * i,)
        assert set(seen) == {db._thread.ident}  # the function ran on the worker, always
        assert threading.get_ident() not in seen
        await db.set_trace_callback(traced.append)
        _, inline = _calls(db)
        for i in range(10):
            async with db.execute(SELECT, (i + 1,)) as cur:
                await cur.fetchone()
        assert _calls(db)[1] == inline  # nothing ran here while a trace callback is set
        # The trace shows exactly the user's statements (with their values bound, on the
        # Pythons whose sqlite3 expands them), no EXPLAIN of ours.
        assert len(traced) == 10
        assert all(t.startswith("SELECT id, v FROM t WHERE id = ") for t in traced)
        await db.set_trace_callback(None)


async def test_a_connection_that_keeps_its_thread_check_runs_on_the_worker(
    db_path: Path,
) -> None:
    async with aiolite.connect(db_path, check_same_thread=True) as db:
        await _setup(db)
        for i in range(30):
            async with db.execute(SELECT, (i + 1,)) as cur:
                assert await cur.fetchone() == (i + 1, i)
        assert _calls(db)[1] == 0
    raw = aiolite.Connection(lambda: sqlite3.connect(db_path))  # aiosqlite's constructor
    async with raw as db:
        for i in range(30):
            async with db.execute(SELECT, (i + 1,)) as cur:
                assert await cur.fetchone() == (i + 1, i)
        assert _calls(db)[1] == 0


async def test_commit_stays_off_the_loop_when_it_may_fsync(db_path: Path) -> None:
    async with aiolite.connect(db_path) as db:
        await _setup(db)
        await db.execute("PRAGMA synchronous=FULL")
        for i in range(30):
            await db.execute(INSERT, (i,))
            trips = db.statistics().round_trips
            await db.commit()
            assert db.statistics().round_trips == trips + 1  # every commit: on the worker
        await db.execute("PRAGMA synchronous=NORMAL")
        for i in range(30):
            await db.execute(INSERT, (i,))
            await db.commit()
        assert db.statistics().round_trips < trips + 20  # now mostly on the loop thread


async def test_cancellation_lands_at_the_next_call(db_path: Path) -> None:
    """A cancelled scope stops the task at its next call, before the call runs, even when
    the call would run on the loop thread (trio: a checkpoint; asyncio: at the next
    suspension, which a loop of calls reaches within a millisecond or so)."""
    async with aiolite.connect(db_path) as db:
        await _setup(db, rows=0)
        await db.execute(INSERT, (0,))  # the transaction holds the lock: inserts run here
        n = 0
        with anyio.CancelScope() as scope:
            while True:
                if n == 100:
                    scope.cancel()
                await db.execute(INSERT, (n,))
                n += 1
        assert 100 <= n < 100_000
        assert scope.cancelled_caught
        await db.commit()
        async with db.execute("SELECT count(*) FROM t") as cur:
            assert await cur.fetchone() == (n + 1,)  # every insert that returned, no other
        if _backend_is_trio():
            assert n == 100  # trio: the very next call


def _backend_is_trio() -> bool:
    try:
        import sniffio

        return sniffio.current_async_library() == "trio"
    except Exception:
        return False


async def test_seeded_random_mix_matches_a_worker_only_run(db_path: Path, tmp_path: Path) -> None:
    """The same seeded mix of reads, writes, commits, rollbacks, explicit BEGINs and
    errors (constraint violations, nested BEGIN), with and without adaptive execution:
    identical results and identical final tables."""

    async def mix(path: Path, inline: bool) -> list[Any]:
        rng = random.Random(4242)
        out: list[Any] = []
        async with aiolite.connect(path, inline=inline) as db:
            await _setup(db, rows=20)
            await db.execute("CREATE UNIQUE INDEX tv ON t(v)")
            for step in range(1500):
                op = rng.random()
                try:
                    if op < 0.35:
                        async with db.execute(SELECT, (rng.randint(1, 40),)) as cur:
                            out.append(await cur.fetchone())
                    elif op < 0.6:
                        cur = await db.execute(INSERT, (rng.randint(0, 3000),))
                        out.append(cur.rowcount)
                    elif op < 0.7:
                        await db.commit()
                    elif op < 0.75:
                        await db.rollback()
                    elif op < 0.85:
                        await db.execute("UPDATE t SET v = v + 10000 WHERE id = ?", (step,))
                    elif op < 0.9:
                        await db.execute("BEGIN")
                    else:
                        out.append(await db.execute_fetchall("SELECT count(*) FROM t"))
                except sqlite3.Error as exc:
                    out.append(type(exc).__name__)
            await db.commit()
            out.append(await db.execute_fetchall("SELECT id, v FROM t ORDER BY id"))
            if inline:
                out.append(db.statistics().inline_calls > 500)
        return out

    a = await mix(tmp_path / "a.db", inline=True)
    b = await mix(tmp_path / "b.db", inline=False)
    assert a[-1] is True  # most calls did run on the loop thread
    assert a[:-1] == b


async def test_a_database_writer_checkpoints_off_the_loop(db_path: Path) -> None:
    """Commits that run on the loop thread never checkpoint: the writer runs SQLite's
    automatic checkpoints itself, after commits, and the WAL stays as small as SQLite
    would keep it."""
    async with aiolite.open(db_path) as db:
        await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
        assert await db.fetchval("PRAGMA wal_autocheckpoint") == 1000  # a reader: as set
        for _ in range(6000):
            await db.execute(INSERT, ("x" * 200,))
        stats = db.statistics()
        assert stats.inline_calls > 3000  # most (fewer on a loaded machine: overruns move)
        assert db._writer.session.auto_checkpoints >= 3
        page = await db.fetchval("PRAGMA page_size")
        wal = Path(f"{db_path}-wal")
        assert os.stat(wal).st_size < 3 * 1000 * (page + 24)
        assert await db.fetchval("SELECT count(*) FROM t") == 6000


async def test_connect_commits_that_may_checkpoint_run_on_the_worker(db_path: Path) -> None:
    """Once the WAL file is as big as wal_autocheckpoint frames, a COMMIT could run the
    checkpoint: it goes to the worker; with a small WAL it runs on the loop thread."""
    async with aiolite.connect(db_path) as db:
        await _setup(db, rows=0)
        await db.execute("PRAGMA wal_autocheckpoint=300")
        on_worker = 0
        for _ in range(400):
            await db.execute(INSERT, ("y" * 3000,))  # about a page per row
            trips = db.statistics().round_trips
            await db.commit()
            on_worker += db.statistics().round_trips - trips
        assert 20 < on_worker < 400  # some here (early, small WAL), the rest on the worker
        async with db.execute("SELECT count(*) FROM t") as cur:
            assert await cur.fetchone() == (400,)


async def test_the_raw_connection_still_refuses_the_loop_thread(db_path: Path) -> None:
    """aiosqlite's ``_conn`` is the real sqlite3 connection, whose methods refuse calls
    from the event loop's thread; aiolite opens it without sqlite3's own check (short calls
    run on the loop thread under the worker's lock), so it keeps the refusal itself."""
    async with aiolite.connect(db_path) as db:
        with pytest.raises(sqlite3.ProgrammingError, match="same thread"):
            db._conn.execute("SELECT 1")
        with pytest.raises(sqlite3.ProgrammingError, match="same thread"):
            db._conn.commit()
        db._conn.row_factory = sqlite3.Row  # settings still go through the Connection
        async with db.execute("SELECT 1 AS one") as cur:
            assert (await cur.fetchone())["one"] == 1


def test_writes_are_bounded_only_by_key_or_unique_index() -> None:
    """The classifier behind "a write may run on the loop thread": only writes whose cost
    cannot grow with the data (SQLite's plan searches one row by key or a whole unique
    index, or inserts constant rows), with no trigger and no foreign-key action."""
    from aiolite._inline import BIG_WRITE, NEVER, READ, WRITE, _classify, _Facts

    conn = sqlite3.connect(":memory:")
    conn.executescript(
        "CREATE TABLE u(id INTEGER PRIMARY KEY, e TEXT UNIQUE, b INT, x INT, y INT);"
        "CREATE INDEX ub ON u(b); CREATE UNIQUE INDEX uxy ON u(x, y);"
    )
    facts = _Facts(conn)
    cases = {
        "SELECT * FROM u WHERE b = ?": READ,
        "WITH v AS (SELECT 1) SELECT * FROM v": READ,
        "WITH v AS (SELECT 1) INSERT INTO u(b) SELECT * FROM v": BIG_WRITE,
        "INSERT INTO u(b) VALUES (?)": WRITE,
        "INSERT INTO u(b) VALUES (?), (?)": WRITE,
        "INSERT INTO u(b) SELECT b FROM u": BIG_WRITE,
        "UPDATE u SET b = ? WHERE id = ?": WRITE,
        "UPDATE u SET b = ? WHERE e = ?": WRITE,
        "UPDATE u SET b = ? WHERE x = ? AND y = ?": WRITE,
        "UPDATE u SET b = ? WHERE x = ?": BIG_WRITE,  # part of a unique index: many rows
        "UPDATE u SET e = ? WHERE b = ?": BIG_WRITE,  # a non-unique index
        "DELETE FROM u WHERE id > ?": BIG_WRITE,  # a range
        "DELETE FROM u WHERE id = ?": WRITE,
        "PRAGMA user_version": NEVER,
    }
    for sql, kind in cases.items():
        params = (1,) * sql.count("?")
        assert _classify(conn, sql, params, facts, set()) == kind, sql
    assert _classify(conn, "SELECT double(b) FROM u", (), facts, {"double"}) == NEVER
    conn.execute("PRAGMA foreign_keys = ON")
    assert _classify(conn, "DELETE FROM u WHERE id = ?", (1,), _Facts(conn), set()) == BIG_WRITE
    conn.execute("CREATE TRIGGER tr AFTER INSERT ON u BEGIN SELECT 1; END")
    assert _classify(conn, "INSERT INTO u(b) VALUES (?)", (1,), _Facts(conn), set()) == BIG_WRITE
    conn.close()


async def test_learning_takes_no_lock_inside_a_users_transaction(tmp_path: Path) -> None:
    """Six connections to a rollback-journal file run BEGIN; INSERT; COMMIT at once, as
    encode/databases' concurrent-transactions test does.  What adaptive execution reads to
    learn (the schema, the settings) must not take a lock inside the user's transaction:
    a SHARED lock held to its end makes two writers deadlock ("database is locked")."""
    path = tmp_path / "rollback.db"
    async with aiolite.connect(path) as setup:
        await setup.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
        await setup.commit()
    conns = [await aiolite.connect(path, isolation_level=None) for _ in range(6)]
    try:

        async def insert(db: aiolite.Connection, n: int) -> None:
            await db.execute("BEGIN")
            await db.execute(INSERT, (n,))
            await db.execute("COMMIT")

        for round_ in range(3):
            async with anyio.create_task_group() as tg:
                for n, db in enumerate(conns):
                    tg.start_soon(insert, db, round_ * 10 + n)
        async with conns[0].execute("SELECT count(*) FROM t") as cur:
            assert await cur.fetchone() == (18,)
    finally:
        for db in conns:
            await db.close()


async def test_inserts_right_after_a_setting_run_here(db_path: Path) -> None:
    """A PRAGMA that sets something makes the connection learn its settings again; it does
    so at once, outside the transaction, so the inserts of the next transaction (which
    run inside it from the first) still run on the loop thread after the first."""
    async with aiolite.connect(db_path) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
        await db.execute("PRAGMA synchronous=NORMAL")
        _, inline = _calls(db)
        for i in range(50):
            await db.execute(INSERT, (i,))
        # Without the settings learned again, none would; one run descheduled on a busy
        # machine sends the next ~20 to the worker until its history decays.
        assert _calls(db)[1] - inline >= 25
        await db.commit()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_seeded_transfers_with_random_timeouts_keep_the_total(
    tmp_path: Path, seed: int
) -> None:
    """Three connections (one task each) move money between accounts in explicit
    transactions while random 0-3 ms timeouts cancel them anywhere: in a statement run on
    the loop thread, in one on the worker, in the COMMIT.  A cancelled transaction is
    rolled back; none is ever half applied, so the total never changes, and most calls
    did run on the loop thread."""
    rng = random.Random(seed)
    path = tmp_path / "bank.db"
    accounts, start = 6, 1000
    async with aiolite.connect(path, pragmas={"journal_mode": "WAL"}) as setup:
        await setup.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, balance INTEGER)")
        await setup.executemany(
            "INSERT INTO acct VALUES (?, ?)", [(i, start) for i in range(accounts)]
        )
        await setup.commit()
    conns = [await aiolite.connect(path, timeout=10) for _ in range(3)]
    cancelled = 0
    try:

        async def worker(db: aiolite.Connection, plan: list[tuple[int, int, int, float]]) -> None:
            nonlocal cancelled
            for a, b, amount, timeout in plan:
                with anyio.move_on_after(timeout) as scope:
                    await db.execute(
                        "UPDATE acct SET balance = balance - ? WHERE id = ?", (amount, a)
                    )
                    # Other work of the task's (a checkpoint): a call on the loop thread
                    # never suspends, so without one a transfer may finish before any
                    # timeout can land, and the test would prove nothing.
                    await anyio.lowlevel.checkpoint()
                    async with db.execute("SELECT balance FROM acct WHERE id = ?", (b,)) as cur:
                        await cur.fetchone()
                    await db.execute(
                        "UPDATE acct SET balance = balance + ? WHERE id = ?", (amount, b)
                    )
                    await db.commit()
                if scope.cancelled_caught:
                    cancelled += 1
                    with anyio.CancelScope(shield=True):
                        await db.rollback()

        plans = [
            [
                (*rng.sample(range(accounts), 2), rng.randint(1, 9),
                 rng.uniform(0, 0.003) if rng.random() < 0.4 else 10.0)
                for _ in range(150)
            ]
            for _ in conns
        ]  # fmt: skip
        async with anyio.create_task_group() as tg:
            for db, plan in zip(conns, plans):
                tg.start_soon(worker, db, plan)
        async with conns[0].execute("SELECT sum(balance), count(*) FROM acct") as cur:
            assert await cur.fetchone() == (accounts * start, accounts)
        assert cancelled > 0
        assert sum(db.statistics().inline_calls for db in conns) > 300
    finally:
        for db in conns:
            await db.close()


@pytest.mark.parametrize("seed", [7, 8, 9])
async def test_waiting_tasks_take_turns_and_a_cancel_never_stalls_the_line(
    tmp_path: Path, seed: int
) -> None:
    """50 tasks running short statements on one connection wait in line for the loop
    thread's budget; tasks cancelled at random moments (some just after being given
    their turn) never leave the others stuck, and every statement returns its own row."""
    rng = random.Random(seed)
    async with aiolite.connect(tmp_path / "turns.db") as db:
        await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v INT)")
        await db.executemany("INSERT INTO t VALUES (?, ?)", [(i, i * 3) for i in range(200)])
        await db.commit()
        finished: list[int] = []

        async def worker(k: int) -> None:
            for i in range(300):
                row = await (
                    await db.execute("SELECT v FROM t WHERE id = ?", (i % 200,))
                ).fetchone()
                assert row == ((i % 200) * 3,)
            finished.append(k)

        cancelled = 0
        scopes: list[anyio.CancelScope] = []
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for k in range(50):
                    scope = anyio.CancelScope()
                    scopes.append(scope)

                    async def run(k: int = k, scope: anyio.CancelScope = scope) -> None:
                        with scope:
                            await worker(k)

                    tg.start_soon(run)
                for _ in range(15):
                    await anyio.sleep(rng.uniform(0, 0.01))
                    victim = scopes[rng.randrange(50)]
                    if not victim.cancel_called:
                        victim.cancel()
                        cancelled += 1
        assert all(k in finished or scopes[k].cancel_called for k in range(50))
        assert len(finished) >= 50 - cancelled
        assert cancelled > 0


async def test_a_transaction_opened_by_the_first_statement_runs_here(db_path: Path) -> None:
    """The facts are learned when the connection opens: a connection whose very first
    statement opens a transaction (an INSERT, under sqlite3's implicit BEGIN) still runs
    the rest of that transaction on the loop thread."""
    setup = sqlite3.connect(db_path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    setup.close()
    async with aiolite.connect(db_path) as db:
        for i in range(50):
            await db.execute(INSERT, (i,))
        assert db.in_transaction
        assert _calls(db)[1] >= 45
        await db.commit()
    check = sqlite3.connect(db_path)
    assert check.execute("SELECT count(*), sum(v) FROM t").fetchone() == (50, sum(range(50)))
    check.close()


def test_a_history_that_became_short_is_dropped() -> None:
    """A statement whose first run was slow (it prepared the statement) loses its history
    once its runs are short again, so that its later runs are not even recorded."""
    from aiolite._inline import FORGET, OUTLIER, SHORT, Inline
    from aiolite._worker import Worker

    inline = Inline(Worker(), 1e-3)  # record() needs no running worker
    inline.record("q", 4 * SHORT)  # a slow first run: a quarter of at most OUTLIER counts
    assert inline.hist["q"] == OUTLIER / 4
    runs = 0
    while "q" in inline.hist:
        inline.record("q", 1e-6)
        runs += 1
    assert 5 <= runs <= 20
    inline.record("q", 1e-6)
    assert "q" not in inline.hist
    inline.record("q", 10 * FORGET)  # slow again: it has a history again
    assert inline.hist["q"] > FORGET


async def test_opening_a_locked_database_does_not_wait(tmp_path: Path) -> None:
    """Reading the facts at open never waits for a lock: with another connection holding
    an EXCLUSIVE lock, connect() returns at once (not after its busy timeout), and the
    busy timeout is the configured one; once the lock is gone, calls run here."""
    path = tmp_path / "locked.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    other.execute("BEGIN EXCLUSIVE")
    other.execute("INSERT INTO t(v) VALUES (0)")
    started = time.perf_counter()
    async with aiolite.connect(path, timeout=3) as db:
        assert time.perf_counter() - started < 1.5
        other.execute("COMMIT")
        other.close()
        assert await db.execute_fetchall("PRAGMA busy_timeout") == [(3000,)]
        await db.execute("PRAGMA journal_mode=WAL")  # reads run here only in WAL
        for _ in range(30):
            assert await db.execute_fetchall(SELECT, (1,)) == [(1, 0)]
        # Learned once the lock was gone: without the facts none would run here (a loaded
        # machine sends some to the worker: 14 of 30 in one CI run).
        assert _calls(db)[1] > 0


async def test_an_admission_remembered_in_a_transaction_ends_with_it(db_path: Path) -> None:
    """A write remembered as runnable here while its transaction held the write lock
    (Inline.fast) is not run that way once the transaction is over: with another process
    holding the lock, the next transaction's first write finds it busy at once and moves
    to the worker, instead of waiting in SQLite's busy handler on the loop."""
    async with aiolite.connect(db_path) as db:
        await _setup(db)
        inline = db._worker.inline
        assert inline is not None
        await db.execute(INSERT, (0,))  # the first write takes the lock
        # Remembered once its history (the first run prepares it; a run slowed by a busy
        # machine) has faded.
        for i in range(REMEMBERED_WITHIN):
            await db.execute(INSERT, (i,))
            if INSERT in inline.fast:
                break
        assert inline.fast.get(INSERT) is not None  # remembered: the lock is held
        await db.commit()
        assert INSERT not in inline.fast
        await _write_while_another_process_holds_the_lock(db, db_path)


async def test_a_hook_set_after_reads_were_remembered_sends_them_to_the_worker(
    db_path: Path,
) -> None:
    """Reads remembered as runnable here (Inline.fast) run on the worker once a hook is
    set, even right after another connection's call ran here in the same loop turn (the
    turn's budget is the loop's, shared by its connections)."""
    async with aiolite.connect(db_path) as db:
        await _setup(db)  # WAL: then the other connection's reads may run here too
        async with aiolite.connect(db_path) as other:
            await _hooks_stop_remembered_reads(db, other)


async def _reads_on_both_until_remembered(
    db: aiolite.Connection, other: aiolite.Connection
) -> None:
    """Point selects on both connections, at least 20, until ``db`` remembers SELECT."""
    for i in range(REMEMBERED_WITHIN):
        k = i % 20
        async with db.execute(SELECT, (k + 1,)) as cur:
            assert await cur.fetchone() == (k + 1, k)
        async with other.execute(SELECT, (k + 1,)) as cur:
            assert await cur.fetchone() == (k + 1, k)
        if i >= 19 and SELECT in db._worker.fast:
            break
    assert SELECT in db._worker.fast


async def _hooks_stop_remembered_reads(db: aiolite.Connection, other: aiolite.Connection) -> None:
    traced: list[str] = []
    await _reads_on_both_until_remembered(db, other)
    await db.set_authorizer(lambda *_: sqlite3.SQLITE_OK)
    await db.set_trace_callback(traced.append)
    _, inline = _calls(db)
    _, other_inline = _calls(other)
    for i in range(10):
        async with other.execute(SELECT, (i + 1,)) as cur:
            assert await cur.fetchone() == (i + 1, i)
        async with db.execute(SELECT, (i + 1,)) as cur:
            assert await cur.fetchone() == (i + 1, i)
    assert _calls(other)[1] > other_inline  # the other connection's ran here
    assert _calls(db)[1] == inline  # none ran here
    assert len(traced) == 10
    await db.set_trace_callback(None)
    await db.set_authorizer(None)
    for i in range(30):
        async with db.execute(SELECT, (i + 1,)) as cur:
            await cur.fetchone()
    assert _calls(db)[1] > inline  # and they come back once the hooks are gone


async def test_a_dropped_half_read_cursor_is_closed_on_the_worker(db_path: Path) -> None:
    """Only a cursor left with unread rows has a finalizer: dropping it closes its
    statement on the worker (a job); dropping a cursor read to its end queues nothing, so
    the next short call still runs here."""
    async with aiolite.connect(db_path, iter_chunk_size=4) as db:
        await _setup(db, rows=20)
        cur = await db.execute("SELECT v FROM t ORDER BY id")
        assert await cur.fetchone() == (0,)
        raw = cur._raw
        assert raw is not None
        del cur
        # Round trips that run after the close the finalizer queued (the worker may hold
        # the cursor until it takes its next job: the cursor dies there, then).
        for _ in range(2):
            await db.rollback()  # a round trip (no transaction is open)
        with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
            raw.fetchone()
        cur = await db.execute("SELECT v FROM t ORDER BY id")
        assert [r[0] async for r in cur] == list(range(20))  # read to its end, in refills
        assert cur._raw is None
        assert cur._guard is None  # disarmed: dropping it queues nothing
        del cur
        assert db._worker.queued == 0
        assert not db._worker._tickets
        cur = await db.execute("SELECT v FROM t ORDER BY id")
        assert len(await cur.fetchmany(6)) == 6
        await cur.close()  # released by close(): the finalizer is disarmed
        await db.rollback()  # a round trip, after the release close() queued
        assert cur._guard is None
        del cur
        for _ in range(2):
            await db.rollback()  # a round trip (no transaction is open)
        assert db._worker.queued == 0
        assert not db._worker._tickets


async def test_nothing_is_admitted_while_a_job_is_queued(db_path: Path) -> None:
    """A queued job may change what an admission rests on (the transaction's state: a
    COMMIT another task sent) before the call gets the connection; so while one is queued,
    nothing is admitted, remembered or not, and the call queues behind it."""
    async with aiolite.connect(db_path) as db:
        await _setup(db)
        for i in range(5):
            async with db.execute(SELECT, (i + 1,)) as cur:
                await cur.fetchone()
        inline = db._worker.inline
        assert inline is not None
        assert inline.admit(SELECT) is not None
        db._worker._tickets.append(None)  # a job's ticket, as Worker.submit adds it
        try:
            assert inline.admit(SELECT) is None
        finally:
            db._worker._tickets.pop()


@pytest.mark.parametrize("seed", [11, 12, 13])
async def test_seeded_tasks_hooks_locks_and_cancels_keep_every_promise(
    db_path: Path, seed: int
) -> None:
    """Attacks the remembered admissions (Inline.fast) with a seeded mix: four tasks share
    one connection (transfers in transactions cancelled at random moments, point reads),
    a fifth toggles a trace callback, a second connection's reads keep starting loop turns,
    and another thread takes the write lock now and then.  Every promise must hold: the
    total never changes, a traced statement never runs on the loop thread, the loop never
    waits for the lock, and calls still run here (under asyncio, reads may also wait for
    the jobs queued ahead of them, Waker.behind, and be cancelled there)."""
    rng = random.Random(seed)
    async with aiolite.connect(db_path) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER)")
        await db.executemany("INSERT INTO acct(bal) VALUES (?)", [(100,)] * 10)
        await db.commit()
        worker_thread = db._thread.ident
        traced_on: list[int] = []
        tx = anyio.Lock()
        stop = threading.Event()

        def locker() -> None:  # another connection takes the write lock 30 ms at a time
            conn = sqlite3.connect(db_path, isolation_level=None)
            while not stop.wait(rng_lock.uniform(0.02, 0.08)):
                conn.execute("BEGIN IMMEDIATE")
                time.sleep(0.03)
                conn.execute("COMMIT")
            conn.close()

        rng_lock = random.Random(seed + 1)
        moves = "UPDATE acct SET bal = bal + ? WHERE id = ?"

        async def transfers(k: int) -> None:
            task_rng = random.Random(seed * 100 + k)
            for _ in range(60):
                a, b = task_rng.sample(range(1, 11), 2)
                amount = task_rng.randint(1, 5)
                async with tx:
                    with anyio.move_on_after(task_rng.choice([0.0005, 0.002, 0.01, 1.0])):
                        await db.execute(moves, (-amount, a))
                        await db.execute(moves, (amount, b))
                        await db.commit()
                    with anyio.CancelScope(shield=True):
                        await db.rollback()  # whatever a cancel left open
                async with db.execute("SELECT bal FROM acct WHERE id = ?", (a,)) as cur:
                    assert (await cur.fetchone()) is not None

        async def hooks() -> None:  # on and off at any moment, inside transactions too
            for _ in range(20):
                await anyio.sleep(rng.uniform(0.001, 0.02))
                await db.set_trace_callback(lambda _sql: traced_on.append(threading.get_ident()))
                await anyio.sleep(rng.uniform(0.001, 0.01))
                await db.set_trace_callback(None)

        async def other_reads(other: aiolite.Connection) -> None:
            for i in range(600):
                async with other.execute("SELECT bal FROM acct WHERE id = ?", (i % 10 + 1,)) as cur:
                    await cur.fetchone()
                if i % 50 == 0:
                    await anyio.lowlevel.checkpoint()

        thread = threading.Thread(target=locker)
        thread.start()
        try:
            async with aiolite.connect(db_path) as other:

                async def work() -> None:
                    async with anyio.create_task_group() as tg:
                        for k in range(4):
                            tg.start_soon(transfers, k)
                        tg.start_soon(hooks)
                        tg.start_soon(other_reads, other)

                _, gap = await _longest_gap_while(work)
        finally:
            stop.set()
            thread.join(10)
        assert await db.execute_fetchall("SELECT sum(bal) FROM acct") == [(1000,)]
        assert traced_on, "the trace callback saw nothing"
        assert set(traced_on) == {worker_thread}
        assert gap < 0.5, f"the loop stalled {gap:.3f} s"
        assert db.statistics().inline_calls > 0


ENDLESS_INSERT = (
    "INSERT INTO t(v) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM c"
)


async def test_a_lost_transaction_stops_remembered_statements(db_path: Path) -> None:
    """A write cancelled inside the user's transaction loses all of it (SQLite rolls back
    the whole transaction): the statements remembered as runnable on the loop thread are
    refused too, until rollback(), instead of running outside the transaction; also
    right after another connection's call ran there in the same loop turn."""
    async with aiolite.connect(db_path) as db:
        await _setup(db)  # WAL: then the other connection's reads may run here too
        other = await aiolite.connect(db_path)
        fast = db._worker.fast
        # One transaction (sqlite3's implicit BEGIN) holding the lock.
        for i in range(REMEMBERED_WITHIN):
            k = i % 20
            await db.execute(INSERT, (i,))
            async with db.execute(SELECT, (k + 1,)) as cur:
                assert await cur.fetchone() == (k + 1, k)
            async with other.execute(SELECT, (k + 1,)) as cur:
                assert await cur.fetchone() == (k + 1, k)
            if i >= 19 and INSERT in fast and SELECT in fast:
                break
        assert INSERT in fast
        assert SELECT in fast
        with anyio.move_on_after(0.2) as scope:
            await db.execute(ENDLESS_INSERT)
        assert scope.cancelled_caught
        inline = _calls(db)[1]
        other_inline = _calls(other)[1]
        for sql, params in ((INSERT, (-1,)), (SELECT, (1,))):
            async with other.execute(SELECT, (2,)) as cur:  # the turn's first call here
                assert await cur.fetchone() == (2, 1)
            with pytest.raises(sqlite3.OperationalError, match="rolled back"):
                await db.execute(sql, params)
        assert _calls(db)[1] == inline
        assert _calls(other)[1] > other_inline or sniffio.current_async_library() == "trio"
        await db.rollback()
        assert await db.execute_fetchall("SELECT count(*) FROM t") == [(100,)]
        await other.close()


async def test_an_error_nobody_waited_for_is_raised_by_a_remembered_statement(
    db_path: Path,
) -> None:
    """An error of a job nobody awaits (a property setter's) is raised by the next call,
    even by a statement the loop thread had remembered as runnable there, right after
    another connection's call ran there in the same loop turn."""
    async with aiolite.connect(db_path) as db:
        await _setup(db)  # WAL: then the other connection's reads may run here too
        other = await aiolite.connect(db_path)
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("CREATE TABLE p(id INTEGER PRIMARY KEY)")
        await db.execute("CREATE TABLE c(pid REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
        await db.execute("INSERT INTO c VALUES (5)")  # the check waits for the commit
        await _reads_on_both_until_remembered(db, other)
        db.isolation_level = None  # commits first, on the worker: the commit fails
        # A new statement runs on the worker, after the setter's job: that has run then.
        assert await db.execute_fetchall("SELECT 2") == [(2,)]
        inline = _calls(db)[1]
        other_inline = _calls(other)[1]
        async with other.execute(SELECT, (1,)) as cur:  # the turn's first call here
            assert await cur.fetchone() == (1, 0)
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            await db.execute(SELECT, (1,))
        assert _calls(db)[1] == inline
        assert _calls(other)[1] > other_inline or sniffio.current_async_library() == "trio"
        await db.rollback()
        async with db.execute(SELECT, (1,)) as cur:  # and the connection goes on
            assert await cur.fetchone() == (1, 0)
        await other.close()


def test_one_slow_sample_does_not_move_a_short_statement() -> None:
    """A run measured slow once (the thread descheduled, or waiting for the GIL) does
    not send a short statement to the worker; three slow runs in a row do."""
    from aiolite._inline import OUTLIER, SHORT, Inline
    from aiolite._worker import Worker

    inline = Inline(Worker(), 1e-3)
    for _ in range(20):
        inline.record("q", 5e-6)
    inline.record("q", 20e-3)  # one outlier
    assert inline.hist.get("q", 0.0) < SHORT
    inline.record("q", 20e-3)
    assert inline.hist.get("q", 0.0) < SHORT
    inline.record("q", 20e-3)  # slow three times in a row: slow
    assert inline.hist["q"] >= SHORT
    assert inline.hist["q"] <= OUTLIER


async def test_many_tasks_wait_for_the_queue_instead_of_joining_it(db_path: Path) -> None:
    """100 tasks share a connection while another task keeps sending statements to the
    worker: a short statement that finds jobs queued waits until they have run and then
    runs on the loop thread, instead of queuing behind them, which would make the next
    statement of every task find jobs queued too (a convoy: all calls crossing threads).
    The rows are all right either way."""
    async with aiolite.connect(db_path) as db:
        await _setup(db)
        async with db.execute(SELECT, (1,)) as cur:  # learned: a short read
            assert await cur.fetchone() == (1, 0)
        before = _calls(db)[0]
        reads = 0

        async def reader(k: int) -> None:
            nonlocal reads
            for i in range(30):
                n = (k * 30 + i) % 100 + 1
                async with db.execute(SELECT, (n,)) as cur:
                    assert await cur.fetchone() == (n, n - 1)
                reads += 1

        async def elsewhere() -> None:
            for i in range(20):  # a new SQL text each time: run on the worker
                assert await db.execute_fetchall(f"SELECT {i}, count(*) FROM t") == [(i, 100)]

        async with anyio.create_task_group() as tg:
            tg.start_soon(elsewhere)
            for k in range(100):
                tg.start_soon(reader, k)
        assert reads == 3000
        crossed = _calls(db)[0] - before
        assert crossed < 300, crossed


SLOW_READ = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT ?) SELECT count(*) FROM c"
)


async def test_a_statement_cancelled_while_waiting_for_the_queue_never_runs(
    db_path: Path,
) -> None:
    """A short write that waits for the jobs queued ahead of it, cancelled meanwhile,
    never runs; the next one runs once they have run."""
    async with aiolite.connect(db_path) as db:
        await _setup(db)
        for i in range(5):  # a transaction holding the write lock: a short write
            await db.execute(INSERT, (1000 + i,))

        async def slow() -> None:
            assert await db.execute_fetchall(SLOW_READ, (3_000_000,)) == [(3_000_000,)]

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            await anyio.sleep(0.02)  # the worker runs it
            with anyio.move_on_after(0.02) as scope:
                await db.execute(INSERT, (-1,))
            assert scope.cancelled_caught
            await db.execute(INSERT, (-2,))
            assert not db._worker._tickets  # the slow read ran first
        await db.commit()
        rows = await db.execute_fetchall("SELECT v FROM t WHERE v < 0")
        assert rows == [(-2,)]


async def test_tasks_sending_one_new_statement_wait_for_its_first_run(db_path: Path) -> None:
    """100 tasks send the same write, new to the connection, at once: its first run, on
    the worker, learns what kind it is (its query plan); the other tasks wait for that run
    and then run it on the loop thread, instead of all crossing threads.  A new read is
    known by its keyword: none of its runs crosses."""
    update = "UPDATE t SET v = v + 1000 WHERE id = ?"
    async with aiolite.connect(db_path) as db:
        await _setup(db)
        await db.execute("BEGIN IMMEDIATE")
        before = _calls(db)[0]

        async def one(k: int) -> None:
            async with db.execute(update, (k + 1,)) as cur:
                assert cur.rowcount == 1

        async with anyio.create_task_group() as tg:
            for k in range(100):
                tg.start_soon(one, k)
        crossed = _calls(db)[0] - before
        assert crossed <= 5, crossed
        assert not db._worker.inline.learning  # type: ignore[union-attr]
        await db.commit()

        before = _calls(db)[0]

        async def read(k: int) -> None:
            async with db.execute(SELECT, (k + 1,)) as cur:
                assert await cur.fetchone() == (k + 1, k + 1000)

        async with anyio.create_task_group() as tg:
            for k in range(100):
                tg.start_soon(read, k)
        assert _calls(db)[0] == before


async def test_a_new_read_runs_on_the_loop_thread_from_its_first_run(db_path: Path) -> None:
    """A plain read is learned on the loop thread; a script, or a statement naming a
    function of the user's, is not (their first run, on the worker, learns them); a new
    read that overruns its budget on its first run moves to the worker with its rows."""
    async with aiolite.connect(db_path, inline=0.002) as db:
        await _setup(db)
        trips, inline = _calls(db)
        assert await db.execute_fetchall("SELECT v FROM t WHERE id = 7") == [(6,)]
        assert _calls(db) == (trips, inline + 1)
        # A new read that fails on its first run raises SQLite's error, here as there.
        for _ in range(2):
            with pytest.raises(sqlite3.OperationalError, match="no such table: missing"):
                await db.execute("SELECT * FROM missing WHERE id = 1")
        assert _calls(db)[0] == trips
        assert await db.execute_fetchall("SELECT v FROM t WHERE id = 7") == [(6,)]
        for sql in ("SELECT v FROM t WHERE id = 8;", "SELECT twice(v) FROM t WHERE id = 8"):
            if "twice" in sql:
                await db.create_function("twice", 1, lambda x: 2 * x)
            trips, inline = _calls(db)
            rows = await db.execute_fetchall(sql)
            assert rows == ([(14,)] if "twice" in sql else [(7,)])
            assert _calls(db) == (trips + 1, inline), sql
        moved = db.statistics().inline_moved
        n = 1_000_000  # ~0.1 s: far over the 2 ms budget
        long = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
            "SELECT sum(x % 7) FROM c"
        )
        assert await db.execute_fetchall(long, (n,)) == [(sum(x % 7 for x in range(1, n + 1)),)]
        assert db.statistics().inline_moved == moved + 1


@pytest.mark.parametrize("seed", [21, 22, 23])
async def test_seeded_waits_for_the_queue_run_each_statement_once(db_path: Path, seed: int) -> None:
    """Attacks the waits for the queue (Waker.behind) with a seeded mix: 20 tasks read
    and append rows on one connection, cancelled at random moments, while another task
    keeps sending new statements (and a failing one) to the worker.  Every statement runs
    at most once (no row twice), every acknowledged commit is kept, nothing else is, and
    reads see what was committed."""
    rng = random.Random(seed)
    async with aiolite.connect(db_path) as db:
        await _setup(db)
        await db.execute("CREATE TABLE log(task INTEGER, seq INTEGER)")
        await db.commit()
        await db.create_function("ident", 1, lambda x: x)
        tx = anyio.Lock()
        acked: set[tuple[int, int]] = set()
        tried: set[tuple[int, int]] = set()
        done = False

        async def appender(k: int) -> None:
            task_rng = random.Random(seed * 1000 + k)
            for seq in range(25):
                async with tx:
                    tried.add((k, seq))
                    with anyio.move_on_after(task_rng.choice([0.0002, 0.001, 0.005, 1.0])):
                        await db.execute("INSERT INTO log(task, seq) VALUES (?, ?)", (k, seq))
                        await db.commit()
                        acked.add((k, seq))
                    with anyio.CancelScope(shield=True):
                        await db.rollback()
                n = task_rng.randint(1, 100)
                with anyio.move_on_after(task_rng.choice([0.0005, 1.0])):
                    async with db.execute(SELECT, (n,)) as cur:
                        assert await cur.fetchone() == (n, n - 1)

        async def worker_jobs() -> None:
            i = 0
            while not done:
                i += 1
                # New statements naming a function of ours: they run on the worker.
                if i % 7 == 0:  # fails on the worker: raised to this task only
                    with pytest.raises(sqlite3.OperationalError):
                        await db.execute(f"SELECT ident(1) FROM missing_{i}")
                else:
                    assert await db.execute_fetchall(f"SELECT ident({i})") == [(i,)]
                await anyio.sleep(rng.uniform(0, 0.002))

        async def work() -> None:
            nonlocal done
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker_jobs)
                async with anyio.create_task_group() as tasks:
                    for k in range(20):
                        tasks.start_soon(appender, k)
                done = True

        _, gap = await _longest_gap_while(work)
        rows = await db.execute_fetchall("SELECT task, seq FROM log")
        assert len(rows) == len(set(rows)), "a statement ran twice"
        assert acked <= set(rows) <= tried
        assert gap < 0.5, f"the loop stalled {gap:.3f} s"


async def test_a_statement_sent_with_its_begin_leaves_nothing_to_wait_for(
    db_path: Path,
) -> None:
    """A statement sent with a BEGIN that may wait has a key of its own, never learned
    as a kind: it must not stay among the statements whose first run others wait for."""
    async with aiolite.connect(db_path) as db:
        await _setup(db)
        async with db.execute(SELECT, (1,), begin="IMMEDIATE") as cur:
            assert await cur.fetchone() == (1, 0)
        await db.commit()
        assert not db._worker.inline.learning  # type: ignore[union-attr]


RETURNING = "UPDATE t SET v = v WHERE id <= 3 RETURNING id"


def _sqlite3_returning_counts(times: int) -> list[int]:
    """The rowcounts plain sqlite3 gives RETURNING after a DELETE of no row, read after
    the rows (Python 3.10+: before, it reported the changes of an earlier statement)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, i) for i in range(1, 11)])
        conn.execute("DELETE FROM t WHERE id = -1")
        counts = []
        for _ in range(times):
            cur = conn.execute(RETURNING)
            cur.fetchall()
            counts.append(cur.rowcount)
        return counts
    finally:
        conn.close()


async def test_statements_on_the_shared_cursor_keep_their_own_metadata(db_path: Path) -> None:
    """New cursors' statements run on one sqlite3 cursor per connection (Worker.raw):
    each aiolite cursor keeps the lastrowid, rowcount and description of its own
    statement, whether it ran on the loop thread or the worker, after later statements;
    one left with rows unread keeps them while others run."""
    async with aiolite.connect(db_path) as db:
        await _setup(db, rows=10)
        await db.execute("BEGIN")
        inserted = []
        for i in range(60):  # the first runs on the worker, most on the loop thread
            cur = await db.execute(INSERT, (1000 + i,))
            inserted.append(cur)
        query = await db.execute("SELECT id, v FROM t WHERE id <= ?", (3,))
        update = await db.execute("UPDATE t SET v = v + 1 WHERE id <= 5")
        half = await db.execute("SELECT id FROM t ORDER BY id")  # more rows than a chunk
        after = await db.execute("DELETE FROM t WHERE id = ?", (-1,))
        assert _calls(db)[1] >= 40  # most ran on the loop thread
        assert [c.lastrowid for c in inserted] == list(range(11, 71))
        assert [(c.rowcount, c.description) for c in inserted] == [(1, None)] * 60
        assert [d[0] for d in query.description] == ["id", "v"]
        assert query.rowcount == -1
        assert await query.fetchall() == [(1, 0), (2, 1), (3, 2)]
        assert update.rowcount == 5
        assert update.description is None
        assert after.rowcount == 0
        assert [d[0] for d in half.description] == ["id"]
        assert [r[0] for r in await half.fetchall()] == list(range(1, 71))
        counts = []
        for _ in range(12):  # on the worker, then on the loop thread
            returning = await db.execute(RETURNING)
            assert await returning.fetchall() == [(1,), (2,), (3,)]
            counts.append(returning.rowcount)
        if sys.version_info >= (3, 10):  # 3.9's sqlite3 gives an earlier statement's count
            assert counts == _sqlite3_returning_counts(12) == [3] * 12  # the rows it gave
        await db.commit()
        rows = await db.execute_fetchall("SELECT v FROM t WHERE id > 10 ORDER BY id")
        assert [r[0] for r in rows] == [1000 + i for i in range(60)]


async def test_a_row_factory_change_reaches_the_shared_cursor(db_path: Path) -> None:
    """The shared sqlite3 cursor took the connection's row factory when it was made:
    setting db.row_factory changes what the next statement returns, on the loop thread
    as on the worker, and setting it back does too."""
    async with aiolite.connect(db_path) as db:
        await _setup(db, rows=10)
        for _ in range(30):  # remembered: runs on the loop thread
            async with db.execute(SELECT, (2,)) as cur:
                assert await cur.fetchone() == (2, 1)
        before = _calls(db)[1]
        db.row_factory = aiolite.Row
        for _ in range(30):
            async with db.execute(SELECT, (2,)) as cur:
                row = await cur.fetchone()
                assert isinstance(row, aiolite.Row)
                assert row["v"] == 1
        assert _calls(db)[1] - before >= 20
        db.row_factory = None
        async with db.execute(SELECT, (3,)) as cur:
            assert await cur.fetchone() == (3, 2)


async def test_many_short_tasks_share_a_loop_iteration(db_path: Path) -> None:
    """Tasks that find the loop iteration's budget spent wait in line; a new iteration
    wakes more of them when the last one left budget unused.  300 tasks of 5 point
    selects each (~40 us of calls a task) then take far fewer loop iterations than
    tasks (asyncio waking one per iteration, as before: ~580; now ~60-110; trio's
    scheduler needs no line), and every row is right."""
    async with aiolite.connect(db_path) as db:
        await _setup(db, rows=300)
        for _ in range(30):  # remembered: runs on the loop thread
            async with db.execute(SELECT, (1,)) as cur:
                await cur.fetchone()
        ticks = 0
        done = anyio.Event()

        async def ticker() -> None:  # once per loop iteration
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await anyio.lowlevel.checkpoint()

        async def task(k: int) -> None:
            for _ in range(5):
                async with db.execute(SELECT, (k + 1,)) as cur:
                    assert await cur.fetchone() == (k + 1, k)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.lowlevel.checkpoint()
            start = ticks
            async with anyio.create_task_group() as tasks:
                for k in range(300):
                    tasks.start_soon(task, k)
            iterations = ticks - start
            done.set()
        assert iterations < 250, iterations


class _CountedSteps:
    """A coroutine that counts how often its task steps it (sends and throws)."""

    def __init__(self, coro: Any, steps: list[int]) -> None:
        self.coro = coro
        self.steps = steps

    def send(self, value: Any) -> Any:
        self.steps[0] += 1
        return self.coro.send(value)

    def throw(self, *exc: Any) -> Any:
        self.steps[0] += 1
        return self.coro.throw(*exc)

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return self.send(None)


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_tasks_that_find_the_budget_spent_go_into_line_at_once(
    db_path: Path, use_uvloop: bool
) -> None:
    """100 tasks of 20 point selects start at once: a few spend the loop iteration's
    budget, and the others' first calls find it spent.  One of them yields its turn, the
    others go straight into line behind it.  When each yielded its turn (twice) before
    going into line, the tasks took ~430 steps in all, and the loop two more iterations
    with 100 tasks to step; now ~240."""

    async def main() -> int:
        async with aiolite.connect(db_path) as db:
            await _setup(db)
            for _ in range(REMEMBERED_WITHIN):
                await db.execute_fetchall(SELECT, (1,))
                if SELECT in db._worker.fast:
                    break
            steps = [0]

            async def task(k: int) -> None:
                for _ in range(20):
                    async with db.execute(SELECT, (k + 1,)) as cur:
                        assert await cur.fetchone() == (k + 1, k)

            await asyncio.gather(
                *(asyncio.ensure_future(_CountedSteps(task(k), steps)) for k in range(100))
            )
            return steps[0]

    steps = anyio.run(main, backend="asyncio", backend_options={"use_uvloop": use_uvloop})
    assert 200 <= steps < 330, steps


async def _remembered_read(db: aiolite.Database, sql: str, params: Any) -> None:
    """Run a read until a reader remembers it (its history, from the first run and any
    run slowed by a busy machine, has faded); fails if none does."""
    for _ in range(REMEMBERED_WITHIN):
        await db.fetchone(sql, params)
        if any(sql in m.worker.fast for m in db._pool.members):
            return
    raise AssertionError(f"{sql!r} was never remembered")


def _counting_long_path(db: aiolite.Database) -> list[str]:
    """The SQL of every read that takes the Database's long path (``_query``)."""
    seen: list[str] = []
    long_path = db._query

    async def counted(mode: int, sql: str, *args: Any) -> Any:
        seen.append(sql)
        return await long_path(mode, sql, *args)

    db._query = counted  # type: ignore[method-assign]
    return seen


async def test_database_reads_take_the_hot_path_once_remembered(db_path: Path) -> None:
    """A Database's fetchone/fetchall/fetchval of a short read, once admitted on its
    reader, runs on the loop thread without _query (Database._here, asyncio): right rows
    and row factories; only the first call of a loop iteration's budget goes the long
    way."""
    async with aiolite.open(db_path) as db:
        await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
        for i in range(20):
            await db.execute(INSERT, (i,))
        q = "SELECT id, v FROM t WHERE id = ?"
        await _remembered_read(db, q, (1,))
        await _remembered_read(db, "SELECT v FROM t WHERE id = ?", (1,))
        long_path = _counting_long_path(db)
        calls = db.statistics().inline_calls
        for i in range(200):
            assert tuple(await db.fetchone(q, (i % 20 + 1,))) == (i % 20 + 1, i % 20)
            assert await db.fetchval("SELECT v FROM t WHERE id = ?", (i % 20 + 1,)) == i % 20
        rows = await db.fetchall("SELECT id FROM t WHERE id <= ?", (3,), row_factory=tuple)
        assert rows == [(1,), (2,), (3,)]
        row = await db.fetchone(q, (5,), row_factory=dict)  # a call's own factory
        assert row == {"id": 5, "v": 4}
        assert db.statistics().inline_calls - calls == 402
        if sniffio.current_async_library() == "trio":  # every call is a checkpoint there
            assert len(long_path) == 402
        else:
            # The fetchall (a new statement) took the long path at first; the rest only
            # at the start of a loop iteration's budget.
            assert len(long_path) < 80, len(long_path)


async def test_database_hot_path_errors_and_overruns_match_the_long_path(db_path: Path) -> None:
    """A remembered read that fails raises SQLite's error (with aiolite's advice) as the
    long path does; one that outgrows its budget is aborted and answered by the worker
    (moved), with the right answer."""
    async with aiolite.open(db_path) as db:
        await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
        await db.execute(INSERT, (1,))
        grow = "SELECT count(*) FROM t WHERE v >= ?"
        assert await db.fetchval(grow, (0,)) == 1
        await _remembered_read(db, grow, (0,))
        bad = "SELECT v FROM t WHERE id = ? AND abs(?) > 0"
        assert tuple(await db.fetchone(bad, (1, 1))) == (1,)
        await _remembered_read(db, bad, (1, 1))
        errors = []
        for _ in range(2):
            with pytest.raises(sqlite3.Error) as caught:  # abs() of a too-large integer
                await db.fetchone(bad, (1, -(2**63)))
            errors.append((type(caught.value), str(caught.value)))
        async with db.read() as snap:  # a read session: never the hot path
            with pytest.raises(sqlite3.Error) as caught:
                await snap.fetchone(bad, (1, -(2**63)))
        errors.append((type(caught.value), str(caught.value)))
        assert errors[0] == errors[1] == errors[2]
        assert errors[0][0] is sqlite3.OperationalError
        assert "overflow" in errors[0][1]
        async with db.transaction() as tx:
            await tx.execute("WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n "
                             "WHERE i < 300000) INSERT INTO t SELECT i, i FROM n")  # fmt: skip
        moved = db.statistics().inline_moved
        assert await db.fetchval(grow, (0,)) == 300000
        assert db.statistics().inline_moved == moved + 1


async def test_a_short_history_keeps_a_statement_remembered(db_path: Path) -> None:
    """A history under SHORT_HERE (50 µs) leaves the statement on the hot path (the hot
    paths record only runs that long); one that reaches it takes the statement off until
    its runs bring it under again."""
    async with aiolite.connect(db_path) as db:
        await _setup(db)
        for _ in range(3):
            async with db.execute(SELECT, (1,)) as cur:
                assert await cur.fetchone() == (1, 0)
        inline = db._worker.inline
        assert inline is not None
        assert SELECT in db._worker.fast
        inline.record(SELECT, 200e-6)  # one slow run (a descheduled thread): 50 µs
        assert SELECT not in db._worker.fast
        for _ in range(2):
            inline.record(SELECT, 20e-6)  # short runs, recorded by the long path
        assert 10e-6 < inline.hist[SELECT] < 50e-6  # a history, and a short one
        async with db.execute(SELECT, (2,)) as cur:
            assert await cur.fetchone() == (2, 1)
        assert SELECT in db._worker.fast  # remembered again, history and all
        calls = _calls(db)
        for i in range(50):
            async with db.execute(SELECT, (i + 1,)) as cur:
                assert await cur.fetchone() == (i + 1, i)
        assert _calls(db)[0] == calls[0]  # no round trip
        assert SELECT in db._worker.fast


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_database_hot_path_reads_your_writes_under_cancels(db_path: Path, seed: int) -> None:
    """Seeded: 12 tasks each write their own row (on the loop thread or the writer) and
    read it back (hot path, long path or a reader's worker), while random cancels land,
    a snapshot holds a reader, and a stream holds another.  A write that returned is
    seen by every later read of its task; a read never sees a value its task did not
    write; the file ends with each row's last acknowledged value, or a later one whose
    write was cancelled after it committed."""
    rng = random.Random(seed)
    async with aiolite.open(db_path, readers=3) as db:
        await db.execute("CREATE TABLE r(id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        await db.executemany("INSERT INTO r VALUES (?, 0)", [(i,) for i in range(12)])
        await db.executemany("INSERT INTO r VALUES (?, -1)", [(i,) for i in range(100, 3100)])
        acked = [0] * 12
        tried: list[set[int]] = [{0} for _ in range(12)]
        cancels = 0
        hot_before = db.statistics().inline_calls

        async def task(i: int, r: random.Random) -> None:
            nonlocal cancels
            for n in range(max(tried[i]) + 1, max(tried[i]) + 120):
                if r.random() < 0.3:
                    await anyio.sleep(r.random() * 1e-3)  # idle moments: calls run here
                if r.random() < 0.5:
                    tried[i].add(n)
                    with anyio.move_on_after(r.choice([1e-5, 1e-4, 1.0, 1.0])) as scope:
                        await db.execute("UPDATE r SET v = ? WHERE id = ?", (n, i))
                        acked[i] = n
                    cancels += scope.cancelled_caught
                else:
                    floor = acked[i]
                    with anyio.move_on_after(r.choice([1e-4, 1.0, 1.0])) as scope:
                        v = await db.fetchval("SELECT v FROM r WHERE id = ?", (i,))
                        assert v in tried[i], (i, v)
                        assert v >= floor, (i, v, floor)  # values only grow per task
                    cancels += scope.cancelled_caught

        async def holders() -> None:
            async with db.read() as snap:
                for _ in range(20):
                    assert await snap.fetchval("SELECT count(*) FROM r") == 3012
                    await anyio.sleep(0.001)
            async with db.iterate("SELECT v FROM r WHERE id >= 100", chunk_size=50) as rows:
                seen = 0
                async for row in rows:
                    assert row[0] == -1
                    seen += 1
                assert seen == 3000

        async with anyio.create_task_group() as tg:
            tg.start_soon(holders)
            for i in range(12):
                tg.start_soon(task, i, random.Random(rng.random()))
        for i in range(12):  # then one task at a time: nothing in flight, the hot path
            await task(i, random.Random(rng.random()))
        final = dict(await db.fetchall("SELECT id, v FROM r WHERE id < 12", row_factory=tuple))
        for i in range(12):
            assert final[i] >= acked[i], (i, final[i], acked[i])
            assert final[i] in tried[i], (i, final[i])
        assert cancels > 0
        if sniffio.current_async_library() != "trio":
            assert db.statistics().inline_calls - hot_before > 100, db.statistics()
