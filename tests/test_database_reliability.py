"""Database under stress and faults: contention, processes, kill -9, cancel storms, full disk."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import aiolite
from script_runner import run_script

HOT_ROWS = 10


async def make_counters(db: aiolite.Database) -> None:
    await db.execute("CREATE TABLE counters(id INTEGER PRIMARY KEY, n INT NOT NULL)")
    await db.executemany("INSERT INTO counters VALUES (?, 0)", [(i,) for i in range(HOT_ROWS)])


async def increment(db: aiolite.Database, key: int) -> None:
    """A read-modify-write transaction: what every ORM session does."""
    async with db.transaction() as tx:
        n = await tx.fetchval("SELECT n FROM counters WHERE id = ?", (key,))
        await tx.execute("UPDATE counters SET n = ? WHERE id = ?", (n + 1, key))


@pytest.mark.anyio
async def test_50_tasks_x_40_read_modify_write_transactions(db_path: Path) -> None:
    errors: list[BaseException] = []
    async with aiolite.open(db_path) as db:
        await make_counters(db)

        async def task(t: int) -> None:
            for i in range(40):
                try:
                    await increment(db, (t + i) % HOT_ROWS)
                except Exception as exc:  # counted, not raised: the test reports them all
                    errors.append(exc)

        async with anyio.create_task_group() as tg:
            for t in range(50):
                tg.start_soon(task, t)
        rows = await db.fetchall("SELECT n FROM counters ORDER BY id", row_factory=tuple)
        stats = db.statistics()
    assert errors == []
    assert rows == [(200,)] * HOT_ROWS  # 2000 increments, none lost
    assert stats.transactions == 2000
    assert stats.rollbacks == 0


PROCESS_SCRIPT = """
    import asyncio, sys
    import aiolite

    async def main(path, tasks, per_task):
        errors = 0
        async with aiolite.open(path, busy_timeout=30) as db:
            async def task(t):
                nonlocal errors
                for i in range(per_task):
                    try:
                        async with db.transaction() as tx:
                            key = (t + i) % 10
                            n = await tx.fetchval("SELECT n FROM counters WHERE id = ?", (key,))
                            await tx.execute("UPDATE counters SET n = ? WHERE id = ?", (n + 1, key))
                    except Exception as exc:
                        errors += 1
                        print("error:", exc, file=sys.stderr)
            await asyncio.gather(*(task(t) for t in range(tasks)))
            print(errors, db.statistics().busy_retries)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def create_counters(db_path: Path) -> None:
    async def main() -> None:
        async with aiolite.open(db_path) as db:
            await make_counters(db)

    anyio.run(main)


def fetch(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    raw = sqlite3.connect(db_path)
    try:
        return raw.execute(sql).fetchall()
    finally:
        raw.close()


def test_4_processes_read_modify_write_on_one_file(db_path: Path, tmp_path: Path) -> None:
    create_counters(db_path)
    script = tmp_path / "rmw.py"
    script.write_text(textwrap.dedent(PROCESS_SCRIPT))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(db_path), "10", "25"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert [out.split()[0] for out, _ in outputs] == ["0"] * 4, outputs
    assert fetch(db_path, "SELECT sum(n) FROM counters") == [
        (4 * 10 * 25,)
    ]  # every increment of every process, none lost


OPEN_SCRIPT = """
import asyncio, sys, time
from pathlib import Path
import aiolite

folder, start, files, how = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


async def open_and_close(path: Path) -> None:
    if how == "open":
        db = await aiolite.open(path, readers=1, busy_timeout=10)
        await db.close()
    elif how == "connect":
        async with aiolite.connect(path, timeout=10, pragmas={"journal_mode": "WAL"}) as conn:
            await conn.execute("SELECT 1")
    else:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(f"sqlite+aiolite:///{path}")
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        await engine.dispose()


failures = []
for i in range(files):
    while time.time() < start + i * 0.04:  # all processes open file i at the same moment
        pass
    try:
        asyncio.run(open_and_close(folder / f"{i}.db"))
    except Exception as exc:
        failures.append(f"{i}: {exc!r}")
print(len(failures), failures)
"""


@pytest.mark.parametrize("how", ["open", "connect", "sqlalchemy"])
def test_processes_opening_a_new_file_at_once_all_get_it(tmp_path: Path, how: str) -> None:
    """Switching a new file to WAL from several processes at the same moment: SQLite
    refuses all but one without calling the busy handler; opening must wait, not fail."""
    script = tmp_path / "open.py"
    script.write_text(textwrap.dedent(OPEN_SCRIPT))
    files = 30
    start = time.time() + 2.5  # after every process has imported what it needs
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), str(start), str(files), how],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert [out.split()[0] for out, _ in outputs] == ["0", "0", "0"], outputs
    for i in range(files):
        assert fetch(tmp_path / f"{i}.db", "PRAGMA journal_mode") == [("wal",)]


KILL_SCRIPT = """
    import asyncio, sys
    import aiolite

    async def writer(db, i):
        while True:
            await db.execute("INSERT INTO acked(id, pad) VALUES (?, randomblob(2000))", (i,))
            print(i, flush=True)  # acknowledged: the commit returned
            i += 1
            if i % 50 == 0:  # concurrent writers commit in groups: show that they did
                print("groups", db.statistics().group_commits, flush=True)

    async def main(path, start, tasks):
        async with aiolite.open(path) as db:
            await asyncio.gather(*(writer(db, start + t * 100_000) for t in range(tasks)))

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


@pytest.mark.parametrize("tasks", [1, 20])
def test_kill_9_during_commits_loses_no_acknowledged_commit(
    db_path: Path, tmp_path: Path, tasks: int
) -> None:
    """Killed at a random moment while committing, one writer or 20 at once (whose
    db.execute() calls then commit in groups): every acknowledged write is in the file."""
    raw = sqlite3.connect(db_path)
    raw.execute("CREATE TABLE acked(id INTEGER PRIMARY KEY, pad BLOB)")
    raw.close()
    script = tmp_path / "kill.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    acknowledged: list[int] = []
    groups = 0
    rng = random.Random(7)
    for round_ in range(5):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(db_path), str(round_ * 10_000_000), str(tasks)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # it is committing in a loop now
        assert first.strip().isdigit()
        time.sleep(rng.uniform(0.05, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        lines = [first, *out.splitlines()]
        # The last line may be cut by the kill; every complete line was acknowledged.
        acknowledged += [int(x) for x in lines if x.strip().isdigit()]
        groups = max([groups] + [int(x.split()[1]) for x in lines[:-1] if x.startswith("groups")])
        assert fetch(db_path, "PRAGMA integrity_check") == [("ok",)]
        stored = {r[0] for r in fetch(db_path, "SELECT id FROM acked")}
        missing = set(acknowledged) - stored
        assert missing == set(), f"round {round_}: acknowledged commits lost: {sorted(missing)}"
    assert len(acknowledged) > 50
    assert (groups > 0) == (tasks > 1)


@pytest.mark.anyio
async def test_cancel_storm_on_transactions(db_path: Path) -> None:
    group_size = 5
    seen_partial: list[tuple[int, int]] = []
    async with aiolite.open(db_path, readers=2) as db:
        await db.execute("CREATE TABLE g(grp INT, k INT, pad BLOB)")
        rng = random.Random(11)
        stop = anyio.Event()

        cut_midway = 0

        async def writer(grp: int) -> None:
            nonlocal cut_midway
            # A third time out at a random moment (queued, mid-way or committing), a fifth
            # cancel themselves after a random number of statements.
            fate = rng.random()
            cut = rng.randrange(1, group_size) if fate > 0.8 else -1
            with anyio.CancelScope() as scope:
                if fate < 0.3:
                    scope.deadline = anyio.current_time() + rng.uniform(0, 0.1)
                async with db.transaction() as tx:
                    for k in range(group_size):
                        if k == cut:
                            cut_midway += 1
                            scope.cancel()
                        await tx.execute("INSERT INTO g VALUES (?, ?, randomblob(500))", (grp, k))

        async def watcher() -> None:
            # Readers must never see part of a transaction.
            while not stop.is_set():
                counts = await db.fetchall(
                    "SELECT grp, count(*) FROM g GROUP BY grp", row_factory=tuple
                )
                seen_partial.extend((g, c) for g, c in counts if c != group_size)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as outer:
            outer.start_soon(watcher)
            async with anyio.create_task_group() as tg:
                for grp in range(300):
                    tg.start_soon(writer, grp)
            stop.set()

        counts = dict(
            await db.fetchall("SELECT grp, count(*) FROM g GROUP BY grp", row_factory=tuple)
        )
        stats = db.statistics()
        # No transaction left open: the writer is free and a new transaction commits.
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO g VALUES (-1, 0, NULL)")
        assert await db.fetchval("SELECT count(*) FROM g WHERE grp = -1") == 1
        assert not db._writer.worker.inspect("in_transaction")
    assert seen_partial == []
    assert set(counts.values()) <= {group_size}  # whole groups only
    assert 0 < len(counts) < 300  # some committed, some were cancelled
    assert cut_midway > 30
    # A cut whose statement (or COMMIT) was already running when the cancel came finishes:
    # that transaction may commit whole.  Every other one rolled back.
    assert stats.rollbacks >= cut_midway // 2
    assert stats.transactions == len(counts)
    assert stats.transactions + stats.rollbacks <= 300  # some never got the writer


@pytest.mark.anyio
async def test_disk_full_is_clear_and_loses_nothing_committed(db_path: Path) -> None:
    async with aiolite.open(db_path, pragmas={"max_page_count": 40}, readers=1) as db:
        await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)")
        await db.executemany("INSERT INTO t(pad) VALUES (randomblob(100))", [()] * 20)
        with pytest.raises(sqlite3.OperationalError, match=r"full.*nothing of the failed"):
            await db.execute("INSERT INTO t(pad) VALUES (randomblob(500000))")

        async def big_transaction() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t(pad) VALUES (randomblob(100))")
                await tx.execute("INSERT INTO t(pad) VALUES (randomblob(500000))")

        with pytest.raises(sqlite3.OperationalError, match="full"):
            await big_transaction()
        # Still usable for reads and small writes.
        assert await db.fetchval("SELECT count(*) FROM t") == 20
        await db.execute("DELETE FROM t WHERE id = 1")
    async with aiolite.open(db_path, readers=1) as db:
        assert await db.fetchval("PRAGMA integrity_check") == "ok"
        assert await db.fetchval("SELECT count(*) FROM t") == 19
        await db.execute("INSERT INTO t(pad) VALUES (randomblob(500000))")  # room again
        assert await db.fetchval("SELECT count(*) FROM t") == 20


HOLD_LOCK_SCRIPT = """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t VALUES ('other process')")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("COMMIT")
"""


def hold_write_lock(tmp_path: Path, db_path: Path, seconds: float) -> subprocess.Popen[str]:
    script = tmp_path / "hold.py"
    script.write_text(textwrap.dedent(HOLD_LOCK_SCRIPT))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db_path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.anyio
async def test_busy_across_processes_waits_then_succeeds(db_path: Path, tmp_path: Path) -> None:
    async with aiolite.open(db_path, readers=1) as db:
        await db.execute("CREATE TABLE t(x TEXT)")
        proc = hold_write_lock(tmp_path, db_path, 0.4)
        started = time.monotonic()
        await db.execute("INSERT INTO t VALUES ('us')")
        waited = time.monotonic() - started
        proc.communicate(timeout=10)
        rows = await db.fetchall("SELECT x FROM t ORDER BY rowid", row_factory=tuple)
        retries = db.statistics().busy_retries
    assert rows == [("other process",), ("us",)]
    assert waited > 0.2
    assert retries >= 1


@pytest.mark.anyio
async def test_busy_past_the_deadline_says_what_to_do(db_path: Path, tmp_path: Path) -> None:
    async with aiolite.open(db_path, readers=1, busy_timeout=0.3) as db:
        await db.execute("CREATE TABLE t(x TEXT)")
        proc = hold_write_lock(tmp_path, db_path, 3)
        try:
            started = time.monotonic()
            with pytest.raises(aiolite.DatabaseLockedError, match="another process") as info:
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO t VALUES ('us')")
            assert 0.25 < time.monotonic() - started < 2
            assert isinstance(info.value, sqlite3.OperationalError)
            # Cancelling a task that waits for the lock returns promptly.
            started = time.monotonic()
            with anyio.move_on_after(0.2):
                await db.execute("INSERT INTO t VALUES ('cancelled')")
            assert time.monotonic() - started < 0.5
        finally:
            proc.communicate(timeout=10)
        await db.execute("INSERT INTO t VALUES ('after')")
        rows = await db.fetchall("SELECT x FROM t ORDER BY rowid", row_factory=tuple)
    assert rows == [("other process",), ("after",)]


def test_unclosed_database_does_not_hang_the_exit(tmp_path: Path) -> None:
    ran = run_script(
        tmp_path,
        """
            import asyncio, warnings
            import aiolite
            warnings.simplefilter("ignore", ResourceWarning)
            db = None
            async def main():
                global db
                db = await aiolite.open("left-open.db")
                await db.execute("CREATE TABLE t(x)")
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO t VALUES (1)")
            asyncio.run(main())
            print("done")
            """,
        timeout=30,
        name="leave_open.py",
    )
    assert (ran.returncode, ran.stdout.strip(), ran.stderr) == (0, "done", "")
    assert ran.seconds < 10
    with sqlite3.connect(tmp_path / "left-open.db") as raw:
        assert raw.execute("SELECT x FROM t").fetchall() == [(1,)]
    raw.close()


@pytest.mark.anyio
async def test_open_on_a_file_locked_past_busy_timeout_says_what_to_do(tmp_path: Path) -> None:
    """A set-up PRAGMA that stays refused past the timeout raises DatabaseLockedError (an
    OperationalError that is_busy() recognises) naming the setting to change."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # rollback journal: nobody else may even read
    try:
        with pytest.raises(aiolite.DatabaseLockedError, match="busy_timeout= for") as opened:
            await aiolite.open(path, busy_timeout=0.2)
        assert aiolite.is_busy(opened.value)
        assert isinstance(opened.value, sqlite3.OperationalError)
        with pytest.raises(aiolite.DatabaseLockedError, match=r"timeout= for aiolite\.connect"):
            await aiolite.connect(path, timeout=0.2, pragmas={"journal_mode": "WAL"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    async with aiolite.open(path) as db:  # released: it opens
        assert db.journal_mode == "wal"
