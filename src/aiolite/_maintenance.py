"""Keeping a Database healthy: online backup, VACUUM INTO, WAL checkpoints, health checks.

Everything here runs on the worker threads as single jobs:

* ``backup`` and ``vacuum_into`` run on a *reserved reader*: writers keep writing, and the
  copy is the snapshot of one read transaction (consistent, and every commit made before
  the backup started is in it).
* ``checkpoint`` runs on the writer, queued like a transaction (RESTART and TRUNCATE wait
  for readers; they never run inside a transaction).
* ``integrity_check``, ``foreign_key_check`` and ``health`` are plain reads.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Optional

__all__ = [
    "CheckpointResult",
    "ForeignKeyViolation",
    "Health",
    "run_backup",
    "run_checkpoint",
    "run_foreign_key_check",
    "run_health",
    "run_integrity_check",
    "run_vacuum_into",
]

CHECKPOINT_MODES = ("PASSIVE", "FULL", "RESTART", "TRUNCATE")
BackupCallback = Callable[[int, int], object]


@dataclass(frozen=True)
class CheckpointResult:
    """What ``PRAGMA wal_checkpoint`` reported."""

    #: True if a reader (or writer) kept the checkpoint from finishing (RESTART/TRUNCATE).
    busy: bool
    #: Frames in the WAL, and how many of them are now copied into the database file.
    log_frames: int
    checkpointed_frames: int


@dataclass(frozen=True)
class ForeignKeyViolation:
    """One row of ``PRAGMA foreign_key_check``."""

    table: str
    rowid: Optional[int]
    parent: str
    constraint_index: int


@dataclass(frozen=True)
class Health:
    """A snapshot of the database file's state, from ``Database.health()``."""

    path: str
    journal_mode: str
    synchronous: int
    page_size: int
    page_count: int
    freelist_count: int
    #: Bytes of the database file and of its WAL (0 if none); None for in-memory databases.
    file_bytes: Optional[int]
    wal_bytes: Optional[int]
    user_version: int
    #: The highest version applied by ``Database.migrate()`` (None if never migrated).
    schema_version: Optional[int]

    @property
    def freelist_ratio(self) -> float:
        return self.freelist_count / self.page_count if self.page_count else 0.0


def file_size(path: str) -> Optional[int]:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


_COMPANIONS = ("-wal", "-shm", "-journal")


def _check_dest(source: str, dest: str, overwrite: bool) -> None:
    """Refuse a backup destination that would destroy data: the source itself, one of its
    companion files, or (unless ``overwrite``) an existing file."""
    if source:
        for suffix in ("", *_COMPANIONS):
            twin = source + suffix
            if os.path.abspath(dest) == os.path.abspath(twin) or (
                os.path.exists(dest) and os.path.exists(twin) and os.path.samefile(twin, dest)
            ):
                what = "the database itself" if not suffix else f"the database's {suffix} file"
                raise ValueError(f"the backup destination is {what}: choose another path")
    if os.path.exists(dest):
        if os.path.isdir(dest):
            raise ValueError(f"the backup destination {dest!r} is a directory: name a file")
        if not overwrite:
            raise FileExistsError(
                f"the backup destination {dest!r} exists: choose a new path, or pass "
                "overwrite=True (CLI: --force) to replace it"
            )


def _remove_partial(dest: str) -> None:
    for suffix in ("", *_COMPANIONS):
        try:
            os.remove(dest + suffix)
        except OSError:
            pass


def run_backup(
    conn: sqlite3.Connection,
    dest: str,
    pages: int,
    progress: Optional[BackupCallback],
    overwrite: bool = False,
) -> int:
    """Copy the database into ``dest`` (a path) from one read snapshot; return its pages.

    A backup that fails leaves no partial file behind.
    """
    _check_dest(main_file(conn), dest, overwrite)
    if os.path.exists(dest):  # overwrite: replace it whole, companions included
        _remove_partial(dest)
    total = 0

    def report(status: int, remaining: int, count: int) -> None:
        nonlocal total
        total = count
        if progress is not None:
            progress(count - remaining, count)

    try:
        target = sqlite3.connect(dest, isolation_level=None)
        try:
            # One read transaction around every step: the copy is one consistent snapshot
            # and a commit made meanwhile by the writer never forces the backup to restart.
            conn.execute("BEGIN")
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            try:
                conn.backup(target, pages=pages, progress=report, sleep=0)
            finally:
                conn.execute("COMMIT")
        finally:
            target.close()
    except BaseException:
        _remove_partial(dest)
        raise
    return total


def run_vacuum_into(conn: sqlite3.Connection, dest: str) -> None:
    # A reader is query_only, and SQLite counts VACUUM INTO as a write of the source.
    conn.execute("PRAGMA query_only=OFF")
    try:
        conn.execute("VACUUM INTO ?", (dest,))
    finally:
        conn.execute("PRAGMA query_only=ON")


def run_checkpoint(conn: sqlite3.Connection, mode: str) -> CheckpointResult:
    row = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return CheckpointResult(bool(row[0]), int(row[1]), int(row[2]))


def run_integrity_check(conn: sqlite3.Connection, quick: bool, max_errors: int) -> list[str]:
    pragma = "quick_check" if quick else "integrity_check"
    rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}({int(max_errors)})")]
    return [] if rows == ["ok"] else rows


def run_foreign_key_check(conn: sqlite3.Connection) -> list[ForeignKeyViolation]:
    return [
        ForeignKeyViolation(r[0], r[1], r[2], r[3])
        for r in conn.execute("PRAGMA foreign_key_check")
    ]


def main_file(conn: sqlite3.Connection) -> str:
    """The file behind the connection's main database ('' when in memory)."""
    for _, name, path in conn.execute("PRAGMA database_list"):
        if name == "main":
            return str(path or "")
    return ""


def run_health(conn: sqlite3.Connection) -> Health:
    def pragma(name: str) -> Any:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]

    # A dqlite connection names its cluster: the files are on the nodes, the database's
    # size is its pages, and the node's WAL is not the client's to measure.
    url = getattr(conn, "url", None)
    path = url or main_file(conn)

    version = None
    if conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'aiolite_migrations'"
    ).fetchone():
        version = conn.execute("SELECT max(version) FROM aiolite_migrations").fetchone()[0]
    return Health(
        path=path or ":memory:",
        journal_mode=str(pragma("journal_mode")),
        synchronous=int(pragma("synchronous")),
        page_size=int(pragma("page_size")),
        page_count=int(pragma("page_count")),
        freelist_count=int(pragma("freelist_count")),
        file_bytes=(
            int(pragma("page_size")) * int(pragma("page_count"))
            if url
            else (file_size(path) if path else None)
        ),
        wal_bytes=None if url else ((file_size(path + "-wal") or 0) if path else None),
        user_version=int(pragma("user_version")),
        schema_version=version,
    )


def check_mode(mode: str) -> str:
    upper = mode.upper()
    if upper not in CHECKPOINT_MODES:
        modes = ", ".join(CHECKPOINT_MODES)
        raise ValueError(f"checkpoint mode must be one of {modes}, got {mode!r}")
    return upper
