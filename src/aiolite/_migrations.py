"""Database.migrate(): versioned schema steps, each in its own write transaction.

A source is a directory of ``NNNN_description.sql`` files, or a sequence of
``(version, step)`` / ``(version, name, step)`` where a step is SQL text or an async
callable taking the :class:`~aiolite.Transaction`.  Applied steps are recorded in
``aiolite_migrations`` (version, name, checksum, applied_at).

Each step runs inside ``db.transaction()`` (``BEGIN IMMEDIATE``), which checks first that
the step is still unapplied: several processes migrating the same file at once apply
every step exactly once, because the write lock serialises them and the loser finds the
step recorded.  A failing step rolls back completely and stops the run.  A recorded step
whose SQL changed is refused before anything runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import sqlite3
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

if TYPE_CHECKING:
    from ._database import Database
    from ._transaction import Transaction

__all__ = ["Migration", "MigrationError", "MigrationSource", "migrate", "split_script"]

StepFn = Callable[["Transaction"], Awaitable[Any]]
Step = Union[str, StepFn]
MigrationSource = Union[
    str, "os.PathLike[str]", Iterable[Union[tuple[int, Step], tuple[int, str, Step]]]
]

TABLE = "aiolite_migrations"
_FILE = re.compile(r"^(\d+)_(.+)\.sql$", re.IGNORECASE)
_TX_CONTROL = re.compile(r"(BEGIN|COMMIT|END|ROLLBACK)\b", re.IGNORECASE)
# Leading white space and comments, which SQLite skips before the first keyword.
_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.DOTALL)
MAX_VERSION = 2**63 - 1  # SQLite's INTEGER PRIMARY KEY


def _keyword_start(statement: str) -> str:
    """The statement from its first keyword on (comments and white space skipped)."""
    return statement[_LEADING.match(statement).end() :]  # type: ignore[union-attr]


def _check_version(version: Any, where: str) -> int:
    if isinstance(version, bool) or not isinstance(version, int):
        raise MigrationError(f"{where}: migration versions are ints, got {version!r}")
    if not 1 <= version <= MAX_VERSION:
        raise MigrationError(
            f"{where}: migration versions run from 1 to {MAX_VERSION} (SQLite's 64-bit "
            f"integers), got {version}"
        )
    return version


class MigrationError(sqlite3.DatabaseError):
    """A migration source or history that cannot be applied safely."""


@dataclass(frozen=True)
class Migration:
    """One step: applied (``applied_at`` set) or pending (``applied_at`` None)."""

    version: int
    name: str
    checksum: str
    applied_at: Optional[str] = None


@dataclass(frozen=True)
class _Step:
    version: int
    name: str
    body: Step
    checksum: str


def _checksum(body: Step) -> str:
    if isinstance(body, str):
        text = body.replace("\r\n", "\n").strip()
    else:  # a callable: its identity, so renaming it counts as a change
        text = f"callable:{getattr(body, '__module__', '')}.{getattr(body, '__qualname__', '')}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_script(script: str) -> list[str]:
    """Split SQL text into complete statements (triggers and quoted ';' included)."""
    statements = []
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    rest = buf[:-1].strip()  # the last piece got a ';' it did not have
    if rest and not all(
        line.strip().startswith("--") for line in rest.splitlines() if line.strip()
    ):
        statements.append(rest)
    return [s for s in statements if s.strip(" ;\n\t")]


def load(source: MigrationSource) -> list[_Step]:
    """Read and check a migration source: sorted by version, no duplicates."""
    steps: list[_Step] = []
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise MigrationError(
                f"migration source {str(folder)!r} is not a directory: pass a folder of "
                "NNNN_description.sql files, or a list of (version, step)"
            )
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() != ".sql":
                continue  # README.md, notes: anything that is not SQL is left alone
            match = _FILE.match(path.name)
            if match is None:
                raise MigrationError(
                    f"{path.name}: migration files are named NNNN_description.sql "
                    "(e.g. 0001_create_users.sql); rename it or move it out of the folder"
                )
            version = _check_version(int(match.group(1)), path.name)
            text = path.read_text(encoding="utf-8")
            steps.append(_Step(version, match.group(2), text, _checksum(text)))
    else:
        for item in source:
            if len(item) == 2:
                version, body = item
                name = body.__name__ if callable(body) else f"step {version}"
            else:
                version, name, body = item
            _check_version(version, f"step {version!r}")
            if not (isinstance(body, str) or callable(body)):
                raise MigrationError(f"step {version}: give SQL text or an async callable")
            steps.append(_Step(version, str(name), body, _checksum(body)))
    steps.sort(key=lambda s: s.version)
    for a, b in zip(steps, steps[1:]):
        if a.version == b.version:
            raise MigrationError(
                f"two migration steps have version {a.version}: {a.name!r}, {b.name!r}"
            )
    for step in steps:
        if isinstance(step.body, str):
            for statement in split_script(step.body):
                control = _TX_CONTROL.match(_keyword_start(statement))
                if control:
                    raise MigrationError(
                        f"step {step.version} ({step.name}) contains {control.group(1)}: "
                        "each step already runs in its own transaction; remove it"
                    )
    return steps


async def applied(db: Database) -> dict[int, tuple[str, str, str]]:
    """Recorded steps: version -> (name, checksum, applied_at); empty before the first run."""
    exists = await db.fetchval(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
    )
    if not exists:
        return {}
    rows = await db.fetchall(
        f"SELECT version, name, checksum, applied_at FROM {TABLE}", row_factory=tuple
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _refuse_changed(step: _Step, recorded: str) -> None:
    if recorded != step.checksum:
        raise MigrationError(
            f"migration {step.version} ({step.name}) was applied with different contents "
            f"(checksum {recorded[:12]}…, now {step.checksum[:12]}…). Applied steps must not "
            "change: restore the file and add a new step for the change"
        )


async def migrate(
    db: Database, source: MigrationSource, *, dry_run: bool = False
) -> list[Migration]:
    """Apply the pending steps in version order; return them (only list them if dry_run)."""
    steps = load(source)
    done = await applied(db)
    for step in steps:
        if step.version in done:
            _refuse_changed(step, done[step.version][1])
    pending = [s for s in steps if s.version not in done]
    if pending and done and pending[0].version < max(done):
        step = pending[0]
        raise MigrationError(
            f"step {step.version} ({step.name}) is new, but step {max(done)} is already "
            "applied: steps apply in version order only, so number new steps above the "
            f"highest applied one (e.g. {max(done) + 1:04d}_{step.name}.sql)"
        )
    if dry_run:
        return [Migration(s.version, s.name, s.checksum) for s in pending]
    if pending:
        await db.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (version INTEGER PRIMARY KEY, name TEXT NOT "
            "NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
    result = []
    for step in pending:
        async with db.transaction() as tx:
            recorded = await tx.fetchval(
                f"SELECT checksum FROM {TABLE} WHERE version = ?", (step.version,)
            )
            if recorded is not None:  # another process applied it meanwhile
                _refuse_changed(step, recorded)
                continue
            if isinstance(step.body, str):
                for statement in split_script(step.body):
                    # Run with transaction control refused by SQLite itself: a COMMIT that
                    # slipped past the check above must fail, not commit half a step.
                    await tx._execute_guarded(statement)
            else:
                await step.body(tx)
            at = dt.datetime.now(dt.timezone.utc).isoformat(" ", "seconds")
            await tx.execute(
                f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?)",
                (step.version, step.name, step.checksum, at),
            )
        result.append(Migration(step.version, step.name, step.checksum, at))
    return result


Migration.__module__ = "aiolite"
MigrationError.__module__ = "aiolite"
