"""``aiolite doctor``: facts about a database file, and each problem with its fix."""

from __future__ import annotations

from typing import Any

import aiolite

WAL_TOO_BIG = 64 * 1024 * 1024
FREELIST_RATIO = 0.2
FREELIST_MIN_BYTES = 256 * 1024


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


async def diagnose(path: str) -> dict[str, Any]:
    """Read-only: the journal mode is kept and nothing is analysed or written."""
    db = aiolite.open(path, readers=1, pragmas={"journal_mode": None}, optimize=False)
    async with db:
        health = await db.health()
        cache = await db.fetchval("PRAGMA cache_size")
        problems_found = await db.integrity_check(quick=True, max_errors=10)
        violations = await db.foreign_key_check()
    free_bytes = health.freelist_count * health.page_size
    facts: dict[str, Any] = {
        "journal_mode": health.journal_mode,
        "synchronous": "per connection (aiolite.open() sets NORMAL)",
        "page_size": health.page_size,
        "cache_size": f"{-cache} KiB per connection" if cache < 0 else f"{cache} pages",
        "size": _mib(health.file_bytes or 0),
        "pages": health.page_count,
        "freelist": f"{health.freelist_count} pages ({health.freelist_ratio:.0%})",
        "wal": "none" if not health.wal_bytes else _mib(health.wal_bytes),
        "user_version": health.user_version,
        "schema_version": health.schema_version
        if health.schema_version is not None
        else "none (no aiolite migrations)",
        "quick_check": "ok" if not problems_found else f"{len(problems_found)} problem(s)",
        "foreign_key_violations": len(violations),
    }
    problems = []
    if health.journal_mode != "wal":
        problems.append(
            {
                "problem": f"journal_mode is {health.journal_mode}: a writer blocks every reader "
                "and readers make commits wait ('database is locked')",
                "fix": "open it once with aiolite.open() (it sets WAL), or run "
                f"sqlite3 {path} 'PRAGMA journal_mode=WAL'",
            }
        )
    if health.wal_bytes and health.wal_bytes > WAL_TOO_BIG:
        problems.append(
            {
                "problem": f"the WAL is {_mib(health.wal_bytes)}: a long-lived reader keeps "
                "checkpoints from resetting it, and every read has to search it",
                "fix": f"aiolite checkpoint {path} --mode TRUNCATE; keep read transactions short; "
                "open with aiolite.open(..., wal_limit=...)",
            }
        )
    if health.freelist_ratio >= FREELIST_RATIO and free_bytes >= FREELIST_MIN_BYTES:
        problems.append(
            {
                "problem": f"{health.freelist_ratio:.0%} of the file ({_mib(free_bytes)}) is free "
                "pages left by deletes",
                "fix": f"run sqlite3 {path} 'VACUUM' while nothing writes, or write a compact copy "
                "with db.vacuum_into(path)",
            }
        )
    if problems_found:
        problems.append(
            {
                "problem": "the file is damaged: " + "; ".join(problems_found[:3]),
                "fix": f"restore the latest backup; salvage rows with sqlite3 {path} '.recover'",
            }
        )
    if violations:
        sample = ", ".join(f"{v.table} rowid {v.rowid} -> {v.parent}" for v in violations[:3])
        problems.append(
            {
                "problem": f"{len(violations)} row(s) violate foreign keys ({sample})",
                "fix": "fix or delete those rows; aiolite.open() enforces foreign keys, so new "
                "writes through it cannot add more",
            }
        )
    return {"path": path, "facts": facts, "problems": problems}
