"""Migrations, online backup, checkpoints and health checks of a Database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import aiolite
from script_runner import load_file

ROOT = Path(__file__).resolve().parent.parent

MIGRATIONS = {
    "0001_create_users.sql": "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
    "0002_seed.sql": """
        -- two statements, one with a ';' inside a string
        INSERT INTO users(name) VALUES ('ada; lovelace');
        INSERT INTO users(name) VALUES ('grace');
    """,
    "0003_trigger.sql": """
        CREATE TABLE audit(msg TEXT);
        CREATE TRIGGER users_ai AFTER INSERT ON users BEGIN
            INSERT INTO audit VALUES ('added ' || new.name);
        END;
    """,
}


def write_migrations(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def size_of(path: Path) -> int:
    return os.path.getsize(path)


def rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    raw = sqlite3.connect(db_path)
    try:
        return raw.execute(sql).fetchall()
    finally:
        raw.close()


@pytest.mark.anyio
async def test_migrate_fresh_then_incremental(db_path: Path, tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "migrations", dict(list(MIGRATIONS.items())[:2]))
    async with aiolite.open(db_path, readers=1) as db:
        planned = await db.migrate(folder, dry_run=True)
        assert [(m.version, m.name, m.applied_at) for m in planned] == [
            (1, "create_users", None),
            (2, "seed", None),
        ]
        assert await db.fetchval("SELECT count(*) FROM sqlite_master") == 0  # dry run: nothing
        first = await db.migrate(folder)
        assert [m.version for m in first] == [1, 2]
        assert all(m.applied_at for m in first)
        assert await db.fetchall("SELECT name FROM users", row_factory=tuple) == [
            ("ada; lovelace",),
            ("grace",),
        ]
        assert await db.migrate(folder) == []  # nothing left
        write_migrations(folder, dict(list(MIGRATIONS.items())[2:]))
        assert [m.version for m in await db.migrate(folder, dry_run=True)] == [3]
        assert [m.version for m in await db.migrate(folder)] == [3]
        await db.execute("INSERT INTO users(name) VALUES ('linus')")
        assert await db.fetchval("SELECT msg FROM audit") == "added linus"
        history = await db.migrations()
        assert [(m.version, m.name) for m in history] == [
            (1, "create_users"),
            (2, "seed"),
            (3, "trigger"),
        ]
        assert (await db.health()).schema_version == 3


@pytest.mark.anyio
async def test_failing_step_rolls_back_and_stops(db_path: Path, tmp_path: Path) -> None:
    folder = write_migrations(
        tmp_path / "m",
        {
            "0001_ok.sql": "CREATE TABLE a(x);",
            "0002_bad.sql": "CREATE TABLE b(x); INSERT INTO nope VALUES (1);",
            "0003_never.sql": "CREATE TABLE c(x);",
        },
    )
    async with aiolite.open(db_path, readers=1) as db:
        with pytest.raises(sqlite3.OperationalError, match="no such table: nope"):
            await db.migrate(folder)
        tables = await db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", row_factory=tuple
        )
        assert tables == [("a",), ("aiolite_migrations",)]  # b rolled back, c never ran
        assert [m.version for m in await db.migrations()] == [1]
        # Fixed, it runs from where it stopped.
        (folder / "0002_bad.sql").write_text("CREATE TABLE b(x);")
        assert [m.version for m in await db.migrate(folder)] == [2, 3]


@pytest.mark.anyio
async def test_changed_or_malformed_sources_are_refused(db_path: Path, tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "m", {"0001_a.sql": "CREATE TABLE a(x);"})
    async with aiolite.open(db_path, readers=1) as db:
        await db.migrate(folder)
        (folder / "0001_a.sql").write_text("CREATE TABLE a(x, y);")
        (folder / "0002_b.sql").write_text("CREATE TABLE b(x);")
        with pytest.raises(aiolite.MigrationError, match="applied with different contents"):
            await db.migrate(folder)
        assert await db.fetchval("SELECT count(*) FROM sqlite_master WHERE name = 'b'") == 0
        bad = write_migrations(tmp_path / "bad", {"create_users.sql": "SELECT 1;"})
        with pytest.raises(aiolite.MigrationError, match="NNNN_description"):
            await db.migrate(bad)
        with pytest.raises(aiolite.MigrationError, match="contains COMMIT"):
            await db.migrate([(5, "CREATE TABLE z(x); COMMIT;")])
        with pytest.raises(aiolite.MigrationError, match="two migration steps have version 7"):
            await db.migrate([(7, "SELECT 1"), (7, "SELECT 2")])
        assert isinstance(aiolite.MigrationError("x"), sqlite3.DatabaseError)


@pytest.mark.anyio
async def test_callable_steps(db_path: Path) -> None:
    async def seed(tx: aiolite.Transaction) -> None:
        for name in ("a", "b", "c"):
            await tx.execute("INSERT INTO t(name) VALUES (?)", (name,))

    steps: list[Any] = [(1, "CREATE TABLE t(name TEXT)"), (2, "seed", seed)]
    async with aiolite.open(db_path, readers=1) as db:
        assert [m.name for m in await db.migrate(steps)] == ["step 1", "seed"]
        assert await db.fetchval("SELECT count(*) FROM t") == 3


MIGRATE_SCRIPT = """
    import asyncio, sys
    import aiolite

    async def main(path, folder):
        async with aiolite.open(path, busy_timeout=30) as db:
            done = await db.migrate(folder)
            print(",".join(str(m.version) for m in done))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_two_processes_migrating_apply_each_step_once(db_path: Path, tmp_path: Path) -> None:
    files = {f"{i:04d}_step.sql": f"INSERT INTO log VALUES ({i}); " for i in range(2, 30)}
    files["0001_log.sql"] = "CREATE TABLE log(step INT);"
    folder = write_migrations(tmp_path / "m", files)
    script = tmp_path / "migrate.py"
    script.write_text(textwrap.dedent(MIGRATE_SCRIPT))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(db_path), str(folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    applied = [int(v) for out, _ in outs for v in out.strip().split(",") if v]
    assert sorted(applied) == list(range(1, 30))  # between them, each step exactly once
    assert rows(db_path, "SELECT step FROM log ORDER BY step") == [(i,) for i in range(2, 30)]


@pytest.mark.anyio
async def test_backup_while_writers_write(db_path: Path, tmp_path: Path) -> None:
    dest = tmp_path / "copy.db"
    progress: list[tuple[int, int]] = []
    async with aiolite.open(db_path) as db:
        await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, w INT, pad BLOB)")
        await db.executemany("INSERT INTO t(w, pad) VALUES (0, randomblob(3000))", [()] * 2000)
        stop = anyio.Event()
        written = [0, 0, 0, 0]

        async def writer(w: int) -> None:
            while not stop.is_set():
                await db.execute("INSERT INTO t(w, pad) VALUES (?, randomblob(3000))", (w,))
                written[w] += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            for w in range(4):
                tg.start_soon(writer, w)
            await anyio.sleep(0.05)
            committed_before = await db.fetchval("SELECT max(id) FROM t")
            pages = await db.backup(dest, pages=64, progress=lambda d, t: progress.append((d, t)))
            await anyio.sleep(0.05)
            stop.set()
        assert min(written) > 0
        total = await db.fetchval("SELECT count(*) FROM t")
    copy = rows(dest, "SELECT count(*), max(id) FROM t")[0]
    assert rows(dest, "PRAGMA integrity_check") == [("ok",)]
    assert copy[1] >= committed_before  # every row committed before the backup started
    assert copy[0] == copy[1]  # a consistent prefix, no gaps
    assert copy[0] < total  # and the writers kept going meanwhile
    assert pages > 64
    assert len(progress) > 1
    assert progress[-1] == (pages, pages)


@pytest.mark.anyio
async def test_backup_refuses_itself_and_vacuum_into(db_path: Path, tmp_path: Path) -> None:
    async with aiolite.open(db_path, readers=1) as db:
        await db.execute("CREATE TABLE t(x)")
        await db.executemany("INSERT INTO t VALUES (randomblob(1000))", [()] * 500)
        await db.execute("DELETE FROM t WHERE rowid % 2 = 0")
        with pytest.raises(ValueError, match="is the database itself"):
            await db.backup(db_path)
        await db.vacuum_into(tmp_path / "compact.db")
        before = await db.health()
    assert rows(tmp_path / "compact.db", "SELECT count(*) FROM t") == [(250,)]
    assert size_of(tmp_path / "compact.db") < before.page_count * before.page_size


@pytest.mark.anyio
async def test_checkpoint_and_health(db_path: Path) -> None:
    async with aiolite.open(db_path, readers=1) as db:
        await db.execute("CREATE TABLE t(x)")
        await db.executemany("INSERT INTO t VALUES (randomblob(2000))", [()] * 200)
        health = await db.health()
        assert health.journal_mode == "wal"
        assert health.wal_bytes is not None
        assert health.wal_bytes > 0
        assert health.page_count > 100
        assert health.schema_version is None
        result = await db.checkpoint("TRUNCATE")
        assert result.busy is False
        assert result.checkpointed_frames == result.log_frames
        assert (await db.health()).wal_bytes == 0
        passive = await db.checkpoint()
        assert isinstance(passive, aiolite.CheckpointResult)
        with pytest.raises(ValueError, match="PASSIVE, FULL, RESTART, TRUNCATE"):
            await db.checkpoint("sometimes")


@pytest.mark.anyio
async def test_wal_limit_survives_a_reader_holding_a_snapshot(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiolite._statements as statements

    monkeypatch.setattr(statements, "WAL_BACKOFF", 0.05)  # the test's patience, not 1 s
    monkeypatch.setattr(statements, "WAL_BACKOFF_MAX", 0.1)
    limit = 512 * 1024
    async with aiolite.open(db_path, readers=1, wal_limit=limit) as db:
        await db.execute("CREATE TABLE t(x)")
        wal = Path(f"{db_path}-wal")
        async with db.read() as snap:
            assert await snap.fetchval("SELECT count(*) FROM t") == 0
            for _ in range(400):  # ~1.6 MB while the snapshot pins the WAL's start
                await db.execute("INSERT INTO t VALUES (randomblob(4000))")
            pinned = size_of(wal)
            await anyio.sleep(0.5)  # the reader holds on
        await anyio.sleep(0.15)  # past the back-off
        for _ in range(32):  # the next commits see the limit passed and truncate
            await db.execute("INSERT INTO t VALUES (1)")
        after = size_of(wal)
        stats = db.statistics()
    assert pinned > limit  # a snapshot can hold the WAL above the limit meanwhile...
    assert after <= limit  # ...and once it ends, the WAL is brought back under it
    assert stats.wal_truncations >= 1
    assert stats.wal_checkpoints_busy >= 1  # the snapshot made an attempt fail, once or so
    assert stats.wal_checkpoints == stats.wal_truncations + stats.wal_checkpoints_busy


def test_wal_limit_never_throttles_the_writer(db_path: Path, tmp_path: Path) -> None:
    """A reader in another process holds its snapshot the whole time: the writer's
    wal_limit checkpoints fail at once and back off, instead of waiting a busy slice
    every 16 commits (which cut throughput from ~20k to ~340 inserts/s)."""
    setup = sqlite3.connect(db_path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t(x)")
    setup.commit()
    setup.close()
    bench = load_file(ROOT / "benchmarks" / "wal_limit.py", "wal_limit_bench")
    reader = bench.hold_reader(db_path)  # a read transaction in another process
    try:

        async def write() -> tuple[float, aiolite.DatabaseStatistics]:
            async with aiolite.open(db_path, readers=1, wal_limit=64 * 1024) as db:
                started = time.perf_counter()
                for _ in range(3000):
                    await db.execute("INSERT INTO t VALUES (randomblob(100))")
                return time.perf_counter() - started, db.statistics()

        seconds, stats = anyio.run(write)
    finally:
        reader.kill()
        reader.communicate()
    # 3000 commits check the WAL 187 times; with the back-off only a handful try, and
    # none of them waits (each would cost a 50 ms busy slice: 9 s for 187 of them).
    assert stats.wal_checkpoints_busy == stats.wal_checkpoints
    assert 1 <= stats.wal_checkpoints <= 2 + int(seconds).bit_length()
    assert stats.wal_truncations == 0


@pytest.mark.anyio
async def test_integrity_and_foreign_key_checks(db_path: Path) -> None:
    async with aiolite.open(db_path, readers=1, pragmas={"foreign_keys": False}) as db:
        await db.executescript(
            "CREATE TABLE p(id INTEGER PRIMARY KEY);"
            "CREATE TABLE c(id INTEGER PRIMARY KEY, p INT REFERENCES p(id));"
            "INSERT INTO p VALUES (1); INSERT INTO c VALUES (10, 1), (11, 99);"
        )
        assert await db.integrity_check() == []
        assert await db.integrity_check(quick=False) == []
        violations = await db.foreign_key_check()
    assert violations == [aiolite.ForeignKeyViolation("c", 11, "p", 0)]


@pytest.mark.anyio
@pytest.mark.parametrize("optimize", [True, False])
async def test_close_runs_pragma_optimize_unless_told_not_to(
    tmp_path: Path, optimize: bool
) -> None:
    """PRAGMA optimize at close gathers statistics for the indexes the writer's queries
    used (sqlite_stat1); optimize=False skips it."""
    path = tmp_path / "o.db"
    async with aiolite.open(path, optimize=optimize) as db:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INT)")
        await db.execute("CREATE INDEX t_k ON t(k)")
        await db.executemany("INSERT INTO t(k) VALUES (?)", [(i % 50,) for i in range(2000)])
        async with db.transaction() as tx:  # on the writer, whose close runs the PRAGMA
            for k in range(5):
                assert len(await tx.fetchall("SELECT id FROM t WHERE k = ?", (k,))) == 40
    stats = rows(path, "SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'")
    if optimize:
        assert stats == [("sqlite_stat1",)]
        assert rows(path, "SELECT tbl, idx FROM sqlite_stat1") == [("t", "t_k")]
    else:
        assert stats == []


@pytest.mark.anyio
async def test_external_checkpoints(db_path: Path) -> None:
    """checkpoints='external': SQLite's automatic checkpoints off, no wal_limit, and
    db.checkpoint() says another process owns them."""
    with pytest.raises(ValueError, match="wal_limit"):
        aiolite.open(db_path, checkpoints="external", wal_limit=1024)
    with pytest.raises(ValueError, match="'auto' or 'external'"):
        aiolite.open(db_path, checkpoints="sometimes")
    async with aiolite.open(db_path, readers=1, checkpoints="external") as db:
        assert await db.fetchval("PRAGMA wal_autocheckpoint") == 0
        with pytest.raises(sqlite3.OperationalError, match="owns its checkpoints"):
            await db.checkpoint("TRUNCATE")
    async with aiolite.open(db_path, readers=1) as db:
        assert await db.fetchval("PRAGMA wal_autocheckpoint") == 1000
