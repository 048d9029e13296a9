"""``aiolite doctor``: facts about a database file, and each problem with its fix.

Read-only, always: the file is opened with ``mode=ro`` (nothing can write it, and closing
never checkpoints a WAL into it) and, when a ``-wal`` file sits beside it, also alone with
``immutable=1`` (the WAL ignored), so the two can be compared.  A ``-wal`` copied from
another database would otherwise be merged into the file by the first read-write open,
destroying it for good; doctor reports it instead.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import urllib.parse
from typing import Any, Optional

import aiolite

WAL_TOO_BIG = 64 * 1024 * 1024
FREELIST_RATIO = 0.2
FREELIST_MIN_BYTES = 256 * 1024
_WAL_MAGIC = (0x377F0682, 0x377F0683)


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def _problem(problem: str, fix: str) -> dict[str, str]:
    return {"problem": problem, "fix": fix}


def _db_page_size(path: str) -> Optional[int]:
    with open(path, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return None
    size = int(struct.unpack(">H", header[16:18])[0])
    return 65536 if size == 1 else size


def wal_summary(wal: str) -> Optional[dict[str, Any]]:
    """The WAL's header and its last committed database size, read from the file.

    Only frames whose salts match the header count, as SQLite counts them.
    """
    try:
        with open(wal, "rb") as f:
            header = f.read(32)
            if len(header) < 32:
                return None
            magic, _, page_size, _, salt1, salt2 = struct.unpack(">IIIIII", header[:24])
            if magic not in _WAL_MAGIC:
                return {"valid": False, "page_size": None, "frames": 0, "db_pages": None}
            frames = 0
            db_pages = None
            while True:
                frame = f.read(24)
                if len(frame) < 24:
                    break
                _, commit_size, s1, s2 = struct.unpack(">IIII", frame[:16])
                if (s1, s2) != (salt1, salt2):
                    break
                if len(f.read(page_size)) < page_size:
                    break
                frames += 1
                if commit_size:
                    db_pages = commit_size
    except OSError:
        return None
    return {"valid": True, "page_size": page_size, "frames": frames, "db_pages": db_pages}


LITESTREAM_TABLES = ("_litestream_seq", "_litestream_lock")


def litestream_marks(path: str, tables: Any = ()) -> list[str]:
    """What says Litestream replicates ``path``: its tables, its directory beside the file."""
    marks = [t for t in LITESTREAM_TABLES if t in tables]
    folder, name = os.path.split(os.path.abspath(path))
    meta = os.path.join(folder, f".{name}-litestream")
    if os.path.isdir(meta):
        marks.append(meta)
    return marks


def _file_alone(path: str) -> dict[str, Any]:
    """The database as its file holds it, WAL ignored (immutable=1: no locks, no writes)."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()
    return {"pages": pages, "rows": rows}


async def _with_wal(path: str) -> dict[str, Any]:
    async with aiolite.open(path, readers=1, readonly=True) as db:
        health = await db.health()
        cache = await db.fetchval("PRAGMA cache_size")
        checked = await db.integrity_check(quick=True, max_errors=10)
        violations = await db.foreign_key_check()
        tables = await db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table'", row_factory=tuple
        )
        # Schema objects that run code when used: what to look at in a file from outside.
        code = await db.fetchall(
            "SELECT type, name FROM sqlite_master WHERE type = 'trigger' "
            "OR sql LIKE 'CREATE VIRTUAL TABLE%'",
            row_factory=tuple,
        )
        rows = {}
        for (t,) in tables:
            rows[t] = await db.fetchval(f'SELECT count(*) FROM "{t}"')
    # quick_check reports several problems in one row at times: one line each.
    found = [
        line
        for row in checked
        for line in row.splitlines()
        if line.strip() and not line.startswith("*** in database")
    ]
    return {
        "health": health,
        "cache": cache,
        "found": found,
        "violations": violations,
        "rows": rows,
        "code": code,
    }


def _stray_wal(path: str, wal: dict[str, Any], alone: dict[str, Any], full: Any) -> list[Any]:
    """Problems that say the -wal beside the file belongs to another database."""
    page_size = _db_page_size(path)
    keep = (
        f"move {path}-wal (and {path}-shm) away before anything opens {path} read-write; "
        "do not run the app, sqlite3 or aiolite on it until then"
    )
    if not wal["valid"] or (page_size and wal["page_size"] != page_size):
        return [
            _problem(
                f"{path}-wal is not a WAL of this database (page size {wal['page_size']} vs "
                f"{page_size}, or not a WAL at all)",
                keep,
            )
        ]
    if full is None:
        return [
            _problem(
                f"the database is readable alone but not with {path}-wal: the -wal belongs "
                "to another database or is damaged",
                keep,
            )
        ]
    db_pages = wal["db_pages"]
    shrinks = db_pages is not None and db_pages < alone["pages"]
    lost = {t: (n, full["rows"].get(t)) for t, n in alone["rows"].items()}
    fewer = {t: v for t, v in lost.items() if v[1] is None or v[1] < v[0]}
    if shrinks and fewer:
        change = ", ".join(
            f"{t}: {a} -> {'gone' if b is None else b} rows" for t, (a, b) in fewer.items()
        )
        return [
            _problem(
                f"{path}-wal replaces the database with a smaller one ({alone['pages']} -> "
                f"{db_pages} pages; {change}): a -wal copied from another database does this; "
                "merging it (any read-write open) would make it permanent",
                keep + "; if the rows were really deleted since the last checkpoint (or the file "
                "was VACUUMed), the -wal is its own and this is not a problem",
            )
        ]
    return []


def _beside(path: str) -> tuple[Optional[dict[str, Any]], Optional[dict[str, Any]]]:
    """The -wal's summary, and the file alone when the -wal holds frames (else None)."""
    wal_path = f"{path}-wal"
    wal = wal_summary(wal_path) if os.path.exists(wal_path) else None
    alone = None
    if wal is not None and wal["frames"]:
        try:
            alone = _file_alone(path)
        except sqlite3.DatabaseError:
            alone = None
    return wal, alone


async def diagnose(path: str) -> dict[str, Any]:
    """Inspect ``path`` without changing it; return its facts and problems."""
    problems: list[dict[str, str]] = []
    wal, alone = _beside(path)
    try:
        full: Optional[dict[str, Any]] = await _with_wal(path)
    except sqlite3.DatabaseError as exc:
        full = None
        if alone is None:
            return {
                "path": path,
                "facts": {"readable": f"no ({exc})"},
                "problems": [
                    _problem(
                        f"the file cannot be read as a SQLite database: {exc}",
                        f"restore the latest backup; salvage what can be read with "
                        f"sqlite3 {path} '.recover' | sqlite3 recovered.db",
                    )
                ],
            }
    if wal is not None and wal["frames"] and alone is not None:
        problems += _stray_wal(path, wal, alone, full)
    if full is None:
        return {"path": path, "facts": {"readable": "only without its -wal"}, "problems": problems}
    health = full["health"]
    cache = full["cache"]
    found = full["found"]
    violations = full["violations"]
    free_bytes = health.freelist_count * health.page_size
    litestream = litestream_marks(path, full["rows"])
    facts: dict[str, Any] = {
        "replication": f"Litestream ({', '.join(litestream)})" if litestream else "none seen",
        "journal_mode": health.journal_mode,
        "synchronous": "per connection (aiolite.open() sets NORMAL)",
        "page_size": health.page_size,
        "cache_size": f"{-cache} KiB per connection" if cache < 0 else f"{cache} pages",
        "size": _mib(health.file_bytes or 0),
        "pages": health.page_count,
        "freelist": f"{health.freelist_count} pages ({health.freelist_ratio:.0%})",
        "wal": "none"
        if not health.wal_bytes
        else f"{_mib(health.wal_bytes)}, {wal['frames'] if wal else 0} frames not yet in the file",
        "user_version": health.user_version,
        "schema_version": health.schema_version
        if health.schema_version is not None
        else "none (no aiolite migrations)",
        "quick_check": "ok" if not found else f"{len(found)} problem(s)",
        "foreign_key_violations": len(violations),
        "runs_code": ", ".join(f"{kind} {name}" for kind, name in full["code"]) or "nothing",
    }
    if health.journal_mode != "wal":
        problems.append(
            _problem(
                f"journal_mode is {health.journal_mode}: a writer blocks every reader and readers "
                "make commits wait ('database is locked')",
                "open it once with aiolite.open() (it sets WAL), or run "
                f"sqlite3 {path} 'PRAGMA journal_mode=WAL'",
            )
        )
    if health.wal_bytes and health.wal_bytes > WAL_TOO_BIG:
        problems.append(
            _problem(
                f"the WAL is {_mib(health.wal_bytes)}: a long-lived reader keeps checkpoints from "
                "resetting it, and every read has to search it",
                f"aiolite checkpoint {path} --mode TRUNCATE; keep read transactions short; "
                "open with aiolite.open(..., wal_limit=...)",
            )
        )
    if health.freelist_ratio >= FREELIST_RATIO and free_bytes >= FREELIST_MIN_BYTES:
        problems.append(
            _problem(
                f"{health.freelist_ratio:.0%} of the file ({_mib(free_bytes)}) is free pages left "
                "by deletes",
                f"run sqlite3 {path} 'VACUUM' while nothing writes, or write a compact copy "
                "with db.vacuum_into(path)",
            )
        )
    if found:
        problems.append(
            _problem(
                f"the file is damaged ({len(found)} problem(s)): " + "; ".join(found[:3]),
                f"restore the latest backup; salvage what can be read with "
                f"sqlite3 {path} '.recover' | sqlite3 recovered.db",
            )
        )
    if violations:
        sample = ", ".join(f"{v.table} rowid {v.rowid} -> {v.parent}" for v in violations[:3])
        problems.append(
            _problem(
                f"{len(violations)} row(s) violate foreign keys ({sample})",
                "fix or delete those rows; aiolite.open() enforces foreign keys, so new writes "
                "through it cannot add more",
            )
        )
    return {"path": path, "facts": facts, "problems": problems}
