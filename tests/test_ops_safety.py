"""Ops tools never change what they inspect (issue #20): a read-only doctor that spots a
stray -wal, migrations that cannot half-commit, backups that never overwrite."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

import aiolite
from test_cli import aiolite as run_cli

pytestmark = pytest.mark.anyio


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wal_db(path: Path, rows: int) -> sqlite3.Connection:
    """A WAL database whose rows are all still in its -wal (the connection stays open)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t(x, pad)")
    conn.executemany("INSERT INTO t VALUES (?, randomblob(100))", [(i,) for i in range(rows)])
    conn.commit()
    return conn


def stray_wal_beside(tmp_path: Path) -> Path:
    """a.db with 3,000 rows (checkpointed) and, beside it, the -wal of another database."""
    a = wal_db(tmp_path / "a.db", 3000)
    a.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    a.close()
    other = wal_db(tmp_path / "other.db", 500)
    shutil.copy(tmp_path / "other.db-wal", tmp_path / "a.db-wal")
    other.close()
    return tmp_path / "a.db"


def test_doctor_reports_a_stray_wal_and_changes_nothing(tmp_path: Path) -> None:
    """The stray -wal is reported (exit 1) and not merged; the file and the -wal are
    byte-identical afterwards, and moving the -wal away recovers all 3,000 rows."""
    db = stray_wal_beside(tmp_path)
    before = (digest(db), digest(tmp_path / "a.db-wal"))
    proc = run_cli("doctor", str(db))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "replaces the database with a smaller one" in proc.stdout
    assert "t: 3000 -> 500 rows" in proc.stdout
    assert "move" in proc.stdout
    assert (digest(db), digest(tmp_path / "a.db-wal")) == before
    (tmp_path / "a.db-wal").rename(tmp_path / "moved-wal")
    (tmp_path / "a.db-shm").unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (3000,)
    finally:
        conn.close()


def test_inspecting_commands_leave_a_live_wal_alone(tmp_path: Path) -> None:
    """doctor and backup on a file whose commits are still in its own -wal: no problem
    reported for the WAL, and neither the file nor the -wal changes."""
    live = wal_db(tmp_path / "live.db", 200)
    try:
        db, wal = tmp_path / "live.db", tmp_path / "live.db-wal"
        before = (digest(db), digest(wal))
        proc = run_cli("doctor", str(db))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "frames not yet in the file" in proc.stdout
        proc = run_cli("backup", str(db), str(tmp_path / "copy.db"))
        assert proc.returncode == 0, proc.stderr
        assert (digest(db), digest(wal)) == before
        copy = sqlite3.connect(tmp_path / "copy.db")
        assert copy.execute("SELECT count(*) FROM t").fetchone() == (200,)
        copy.close()
    finally:
        live.close()


def test_doctor_on_garbage_and_truncated_files_gives_its_advice(tmp_path: Path) -> None:
    """A damaged file: exit 1 with the restore/.recover advice, not only SQLite's words."""
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    proc = run_cli("doctor", str(garbage))
    assert proc.returncode == 1, proc.stderr
    assert ".recover" in proc.stdout
    good = tmp_path / "good.db"
    conn = wal_db(good, 2000)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = good.read_bytes()
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(data[: len(data) // 2])
    proc = run_cli("doctor", str(truncated))
    assert proc.returncode == 1, proc.stderr
    assert ".recover" in proc.stdout


def test_doctor_counts_each_problem_line(tmp_path: Path) -> None:
    """quick_check reports many problems in one multi-line row: doctor counts each one."""
    db = tmp_path / "dam.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t(x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("v" * 50 + str(i),) for i in range(5000)])
    conn.commit()
    conn.close()
    raw = bytearray(db.read_bytes())
    for page in range(20, 30):  # scribble over ten b-tree pages, headers kept
        raw[4096 * page + 8 : 4096 * (page + 1)] = os.urandom(4088)
    db.write_bytes(bytes(raw))
    proc = run_cli("doctor", "--json", str(db))
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    count = int(report["facts"]["quick_check"].split()[0])
    assert count >= 10  # quick_check(10) lists ten, in one row
    damaged = [p for p in report["problems"] if p["problem"].startswith("the file is damaged")]
    assert f"({count} problem(s))" in damaged[0]["problem"]


@pytest.mark.parametrize("what", ["directory", "unreadable"])
def test_doctor_exit_code_2_for_what_is_not_a_database_file(tmp_path: Path, what: str) -> None:
    """A directory, or a file that cannot be read: exit 2, as documented."""
    target = tmp_path / "x.db"
    if what == "directory":
        target.mkdir()
    else:
        target.write_bytes(b"")
        target.chmod(0)
    if what == "unreadable" and os.access(target, os.R_OK):  # root reads anything
        target.chmod(0o644)
        target.rmdir() if target.is_dir() else target.unlink()
        target.mkdir()
    proc = run_cli("doctor", str(target))
    assert proc.returncode == 2, proc.stdout + proc.stderr


async def test_a_commit_hidden_behind_a_comment_cannot_half_commit(
    db_path: Path, tmp_path: Path
) -> None:
    """A step with COMMIT after a comment is refused before it runs; a COMMIT that the text
    check cannot see (a cached statement, odd spelling) is refused by SQLite itself."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_users.sql").write_text(
        "CREATE TABLE users(id INTEGER PRIMARY KEY);\n-- users done\nCOMMIT;\n"
        "CREATE TABLE orders(id INTEGER PRIMARY KEY);"
    )
    async with aiolite.open(db_path, readers=1) as db:
        with pytest.raises(aiolite.MigrationError, match="contains COMMIT"):
            await db.migrate(folder)
        assert await db.fetchval("SELECT count(*) FROM sqlite_master WHERE name = 'users'") == 0

        async def sneaky(tx: aiolite.Transaction) -> None:
            await tx.execute("CREATE TABLE a(x)")
            await tx._execute_guarded("/* x */ END;")

        with pytest.raises(sqlite3.OperationalError, match="migration step"):
            await db.migrate([(1, "sneaky", "CREATE TABLE b(x)"), (2, sneaky)])
        # Step 1 committed whole; step 2 rolled back whole; version 2 not recorded.
        names = await db.fetchall("SELECT name FROM sqlite_master WHERE type='table'")
        assert {n[0] for n in names} == {"b", "aiolite_migrations"}
        assert [m.version for m in await db.migrations()] == [1]


async def test_migration_file_rules(db_path: Path, tmp_path: Path) -> None:
    """Upper-case .SQL counts; version 0, a version past 64 bits and a new step below the
    highest applied one are refused with MigrationError."""
    async with aiolite.open(db_path, readers=1) as db:
        upper = tmp_path / "upper"
        upper.mkdir()
        (upper / "0001_a.SQL").write_text("CREATE TABLE a(x);")
        assert [m.version for m in await db.migrate(upper)] == [1]
        for name in ("0000_zero.sql", f"{2**63}_huge.sql"):
            bad = tmp_path / name.split("_")[1]
            bad.mkdir()
            (bad / name).write_text("CREATE TABLE z(x);")
            with pytest.raises(aiolite.MigrationError, match="versions run from 1"):
                await db.migrate(bad)
        late = tmp_path / "late"
        late.mkdir()
        (late / "0001_a.SQL").write_text("CREATE TABLE a(x);")
        (late / "0005_e.sql").write_text("CREATE TABLE e(x);")
        assert [m.version for m in await db.migrate(late)] == [5]
        (late / "0003_c.sql").write_text("CREATE TABLE c(x);")
        with pytest.raises(aiolite.MigrationError, match="number new steps above"):
            await db.migrate(late)
        assert await db.fetchval("SELECT count(*) FROM sqlite_master WHERE name = 'c'") == 0


async def test_backup_never_overwrites_and_cleans_up(db_path: Path, tmp_path: Path) -> None:
    """An existing destination is refused unless overwrite=True; the source's -wal is
    refused; a failed backup leaves no partial file, so a retry works."""
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE precious(x)")
    conn.commit()
    conn.close()
    async with aiolite.open(db_path, readers=1) as db:
        await db.execute("CREATE TABLE t(x)")
        await db.executemany("INSERT INTO t VALUES (randomblob(1000))", [()] * 300)
        with pytest.raises(FileExistsError, match="overwrite=True"):
            await db.backup(other)
        check = sqlite3.connect(other)
        assert check.execute("SELECT name FROM sqlite_master").fetchall() == [("precious",)]
        check.close()
        for companion in ("-wal", "-shm", "-journal"):
            with pytest.raises(ValueError, match="backup destination is the database"):
                await db.backup(f"{db_path}{companion}")
        failing = tmp_path / "failing.db"

        def boom(done: int, total: int) -> None:
            raise OSError("disk full (simulated)")

        with pytest.raises(OSError, match="simulated"):
            await db.backup(failing, pages=10, progress=boom)
        assert not failing.exists()
        assert not failing.with_name("failing.db-journal").exists()
        assert await db.backup(failing) > 0
        assert await db.backup(other, overwrite=True) > 0
    copy = sqlite3.connect(other)
    assert copy.execute("SELECT count(*) FROM t").fetchone() == (300,)
    copy.close()


def test_cli_backup_refuses_then_forces(tmp_path: Path) -> None:
    """The CLI refuses an existing destination (exit 2) and --force replaces it."""
    src = tmp_path / "src.db"
    conn = sqlite3.connect(src)
    conn.execute("CREATE TABLE t(x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    dest = tmp_path / "dest.db"
    dest.write_bytes(b"keep me")
    proc = run_cli("backup", str(src), str(dest))
    assert proc.returncode == 2
    assert "--force" in proc.stderr
    assert dest.read_bytes() == b"keep me"
    proc = run_cli("backup", str(src), str(dest), "--force")
    assert proc.returncode == 0, proc.stderr
    check = sqlite3.connect(dest)
    try:
        assert check.execute("SELECT x FROM t").fetchall() == [(1,)]
    finally:
        check.close()


async def test_readonly_database(db_path: Path) -> None:
    """aiolite.open(readonly=True): reads work, writes raise ReadOnlyError before SQLite,
    and the file is byte-identical after close."""
    async with aiolite.open(db_path) as db:
        await db.execute("CREATE TABLE t(x)")
        await db.execute("INSERT INTO t VALUES (1)")
    before = digest(db_path)
    async with aiolite.open(db_path, readonly=True) as db:
        assert await db.fetchval("SELECT x FROM t") == 1
        for write in (
            db.execute("INSERT INTO t VALUES (2)"),
            db.executemany("INSERT INTO t VALUES (?)", [(2,)]),
            db.executescript("DELETE FROM t"),
            db.checkpoint(),
        ):
            with pytest.raises(aiolite.ReadOnlyError, match="readonly=True"):
                await write
        with pytest.raises(aiolite.ReadOnlyError):
            db.transaction()
    assert digest(db_path) == before
