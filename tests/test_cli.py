"""The ``aiolite`` command, run as a subprocess the way people run it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def aiolite(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiolite", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def make_healthy(path: Path, migrations: Path) -> None:
    migrations.mkdir(exist_ok=True)
    (migrations / "0001_users.sql").write_text("CREATE TABLE users(id INTEGER PRIMARY KEY, n);")
    proc = aiolite("migrate", str(path), str(migrations))
    assert proc.returncode == 0, proc.stderr


def make_unhealthy(path: Path) -> None:
    raw = sqlite3.connect(path)
    raw.executescript(
        """
        PRAGMA journal_mode=DELETE;
        CREATE TABLE p(id INTEGER PRIMARY KEY);
        CREATE TABLE c(id INTEGER PRIMARY KEY, p INT REFERENCES p(id));
        INSERT INTO p VALUES (1);
        INSERT INTO c VALUES (1, 1), (2, 42);
        CREATE TABLE junk(x);
        """
    )
    raw.executemany("INSERT INTO junk VALUES (randomblob(4000))", [()] * 500)
    raw.commit()
    raw.execute("DELETE FROM junk")
    raw.commit()
    raw.close()


def test_version_and_help() -> None:
    proc = aiolite("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("aiolite ")
    proc = aiolite("--help")
    assert proc.returncode == 0
    for command in ("doctor", "backup", "migrate", "checkpoint", "bench", "Exit codes"):
        assert command in proc.stdout
    assert aiolite().returncode == 2  # no command: the help, and a usage exit code


def test_doctor_on_a_healthy_database(tmp_path: Path) -> None:
    db = tmp_path / "ok.db"
    make_healthy(db, tmp_path / "m")
    proc = aiolite("doctor", str(db))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "journal_mode           wal" in proc.stdout
    assert "schema_version         1" in proc.stdout
    assert "no problems found" in proc.stdout
    report = json.loads(aiolite("doctor", str(db), "--json").stdout)
    assert report["problems"] == []
    assert report["facts"]["quick_check"] == "ok"


def test_doctor_explains_each_problem(tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    make_unhealthy(db)
    proc = aiolite("doctor", str(db))
    assert proc.returncode == 1
    assert "3 problem(s)" in proc.stdout
    assert "journal_mode is delete" in proc.stdout
    assert "free pages" in proc.stdout
    assert "1 row(s) violate foreign keys (c rowid 2 -> p)" in proc.stdout
    assert proc.stdout.count("fix:") == 3
    report = json.loads(aiolite("doctor", str(db), "--json").stdout)
    assert len(report["problems"]) == 3
    assert all(p["fix"] for p in report["problems"])
    assert report["facts"]["foreign_key_violations"] == 1
    # doctor changes nothing: still in rollback-journal mode.
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    raw.close()


def test_doctor_on_a_missing_file(tmp_path: Path) -> None:
    proc = aiolite("doctor", str(tmp_path / "nope.db"))
    assert proc.returncode == 2
    assert "no database at" in proc.stderr


def test_backup(tmp_path: Path) -> None:
    src = tmp_path / "src.db"
    make_healthy(src, tmp_path / "m")
    raw = sqlite3.connect(src)
    raw.executemany("INSERT INTO users(n) VALUES (?)", [(i,) for i in range(1000)])
    raw.commit()
    raw.close()
    dest = tmp_path / "copy.db"
    proc = aiolite("backup", str(src), str(dest))
    assert proc.returncode == 0, proc.stderr
    assert "integrity ok" in proc.stdout
    raw = sqlite3.connect(dest)
    assert raw.execute("SELECT count(*) FROM users").fetchone() == (1000,)
    raw.close()
    again = aiolite("backup", str(src), str(dest), "--json")
    assert again.returncode == 2
    assert "--force" in again.stderr
    forced = json.loads(aiolite("backup", str(src), str(dest), "--force", "--json").stdout)
    assert forced["integrity"] == "ok"
    assert forced["pages"] > 1


def test_migrate_dry_run_then_apply(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_a.sql").write_text("CREATE TABLE a(x);")
    (folder / "0002_b.sql").write_text("CREATE TABLE b(x);")
    db = tmp_path / "app.db"
    proc = aiolite("migrate", str(db), str(folder), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would apply 2 step(s)" in proc.stdout
    assert "schema version: none" in proc.stdout
    data = json.loads(aiolite("migrate", str(db), str(folder), "--json").stdout)
    assert [s["version"] for s in data["steps"]] == [1, 2]
    assert data["version"] == 2
    (folder / "0003_bad.sql").write_text("CREATE TABLE c(x); INSERT INTO nope VALUES (1);")
    failed = aiolite("migrate", str(db), str(folder))
    assert failed.returncode == 1
    assert "rolled back" in failed.stderr
    assert "no such table: nope" in failed.stderr


def test_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    make_healthy(db, tmp_path / "m")
    raw = sqlite3.connect(db)
    raw.executemany("INSERT INTO users(n) VALUES (randomblob(1000))", [()] * 300)
    raw.commit()
    proc = aiolite("checkpoint", str(db), "--json")
    raw.close()
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["mode"] == "TRUNCATE"
    assert data["wal_bytes_before"] > 0
    assert data["wal_bytes_after"] == 0
    bad = aiolite("checkpoint", str(db), "--mode", "SOMETIMES")
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr


@pytest.mark.parametrize("where", ["repository", "elsewhere"])
def test_bench(tmp_path: Path, where: str) -> None:
    if where == "repository":
        proc = aiolite("bench", "--quick", "--rounds", "1")
        assert proc.returncode == 0, proc.stderr
        assert "| scenario |" in proc.stdout
        assert "read-modify-write" in proc.stdout
    else:
        proc = aiolite("bench", cwd=tmp_path)
        assert proc.returncode == 2
        assert "checkout" in proc.stderr
