"""Untrusted SQL and untrusted files: ``aiolite.open(path, untrusted=True)``.

SQLite's own guide ("Defense Against the Dark Arts", sqlite.org/security.html), applied to
every connection of the Database as it opens (on its worker thread):

* read-only (``mode=ro``), ``query_only``, ``trusted_schema=OFF`` (functions and virtual
  tables in the schema must be harmless), ``cell_size_check=ON``, ``mmap_size=0`` (no
  memory-mapped I/O of a hostile file);
* an authorizer that allows reading the tables and views the file had when it was opened
  (or those named), a list of pure functions, and recursive CTEs; it refuses everything
  else: ATTACH, PRAGMA, writes, schema changes, temp objects, other functions
  (``load_extension``...), internal tables and virtual tables such as ``dbstat``;
* run-time limits (Python 3.11+: ``setlimit``): string/blob length, SQL length, columns,
  expression depth, compound SELECTs, function arguments, attached databases (0), LIKE
  pattern length, variables;
* defensive mode (Python 3.12+: ``setconfig``);
* a time limit and a row limit on every query (``QueryTimeoutError``,
  ``TooManyRowsError``).

A refused statement raises :class:`aiolite.UnsafeQueryError` naming what was refused.
docs/security.md says what this guarantees, and on which Python versions.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["SAFE_FUNCTIONS", "Sandbox", "check_file", "lock_down"]

#: Functions untrusted SQL may call: SQLite's pure core, date and JSON functions.  Not
#: printf()/format(): a width of 2e9 runs for seconds inside one VM step, where neither the
#: length limit nor the time limit can stop it (measured: 3.2 s on SQLite 3.40).
SAFE_FUNCTIONS = frozenset(
    [
        "abs",
        "avg",
        "changes",
        "char",
        "coalesce",
        "concat",
        "concat_ws",
        "count",
        "date",
        "datetime",
        "glob",
        "hex",
        "ifnull",
        "iif",
        "instr",
        "json",
        "json_array",
        "json_array_length",
        "json_each",
        "json_extract",
        "json_group_array",
        "json_group_object",
        "json_object",
        "json_quote",
        "json_tree",
        "json_type",
        "json_valid",
        "julianday",
        "length",
        "like",
        "likely",
        "lower",
        "ltrim",
        "max",
        "min",
        "nullif",
        "octet_length",
        "quote",
        "random",
        "replace",
        "round",
        "rtrim",
        "sign",
        "strftime",
        "substr",
        "substring",
        "sum",
        "time",
        "timediff",
        "total",
        "trim",
        "typeof",
        "unhex",
        "unicode",
        "unixepoch",
        "unlikely",
        "upper",
        "zeroblob",
        "group_concat",
        "string_agg",
        "row_number",
        "rank",
        "dense_rank",
        "percent_rank",
        "cume_dist",
        "ntile",
        "lag",
        "lead",
        "first_value",
        "last_value",
        "nth_value",
    ]
)

# sqlite3_set_authorizer action codes (sqlite3.h)
_PRAGMA, _READ, _SELECT, _FUNCTION, _RECURSIVE = 19, 20, 21, 31, 33
_ACTIONS = {
    1: "CREATE INDEX", 2: "CREATE TABLE", 3: "CREATE TEMP INDEX", 4: "CREATE TEMP TABLE",
    5: "CREATE TEMP TRIGGER", 6: "CREATE TEMP VIEW", 7: "CREATE TRIGGER", 8: "CREATE VIEW",
    9: "DELETE", 10: "DROP INDEX", 11: "DROP TABLE", 12: "DROP TEMP INDEX",
    13: "DROP TEMP TABLE", 14: "DROP TEMP TRIGGER", 15: "DROP TEMP VIEW", 16: "DROP TRIGGER",
    17: "DROP VIEW", 18: "INSERT", 19: "PRAGMA", 20: "READ", 22: "TRANSACTION",
    23: "UPDATE", 24: "ATTACH", 25: "DETACH", 26: "ALTER TABLE", 27: "REINDEX",
    28: "ANALYZE", 29: "CREATE VIRTUAL TABLE", 30: "DROP VIRTUAL TABLE", 31: "FUNCTION",
    32: "SAVEPOINT",
}  # fmt: skip

# (limit name in sqlite3, value): tight but enough for reporting queries.
_LIMITS = (
    ("SQLITE_LIMIT_SQL_LENGTH", 100_000),
    ("SQLITE_LIMIT_COLUMN", 200),
    ("SQLITE_LIMIT_EXPR_DEPTH", 100),
    ("SQLITE_LIMIT_COMPOUND_SELECT", 20),
    ("SQLITE_LIMIT_FUNCTION_ARG", 16),
    ("SQLITE_LIMIT_ATTACHED", 0),
    ("SQLITE_LIMIT_LIKE_PATTERN_LENGTH", 200),
    ("SQLITE_LIMIT_VARIABLE_NUMBER", 100),
    ("SQLITE_LIMIT_TRIGGER_DEPTH", 1),
)


@dataclass(frozen=True)
class Sandbox:
    """What untrusted SQL may do: ``aiolite.open(path, untrusted=aiolite.Sandbox(...))``.

    * ``tables``: the tables and views it may read (default: all of the file's, when
      opened, except SQLite's and aiolite's own);
    * ``functions``: the functions it may call (default :data:`SAFE_FUNCTIONS`);
    * ``timeout``/``max_rows``: the default limits of every query;
    * ``max_length``: the longest string or blob a query may build (bytes).
    """

    tables: Optional[frozenset[str]] = None
    functions: frozenset[str] = field(default=SAFE_FUNCTIONS)
    timeout: float = 1.0
    max_rows: int = 1000
    max_length: int = 1_000_000

    def __post_init__(self) -> None:
        if self.tables is not None:
            object.__setattr__(self, "tables", frozenset(t.lower() for t in self.tables))
        object.__setattr__(self, "functions", frozenset(f.lower() for f in self.functions))


class _Authorizer:
    """The authorizer of one connection; remembers what it refused last, to say so."""

    def __init__(self, tables: frozenset[str], functions: frozenset[str]) -> None:
        self.tables = tables
        self.functions = functions
        self.refused = ""

    def __call__(
        self, action: int, arg1: Any, arg2: Any, db: Any, source: Any
    ) -> int:  # fmt: skip
        if action in (_SELECT, _RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == _READ:
            if db is None:  # a CTE or subquery: what it reads is checked on its own
                return sqlite3.SQLITE_OK
            if db == "main" and str(arg1).lower() in self.tables:
                return sqlite3.SQLITE_OK
            self.refused = f"reading {db}.{arg1}"
        elif action == _FUNCTION:
            if str(arg2).lower() in self.functions:
                return sqlite3.SQLITE_OK
            self.refused = f"the function {arg2}()"
        elif action == _PRAGMA:
            if arg1 == "schema_version" and arg2 is None:  # read only; aiolite's row plans
                return sqlite3.SQLITE_OK
            self.refused = f"PRAGMA {arg1}"
        else:
            what = _ACTIONS.get(action, f"action {action}")
            self.refused = f"{what} {arg1 or ''}".strip()
        return sqlite3.SQLITE_DENY


def _allowed_tables(conn: sqlite3.Connection, sandbox: Sandbox) -> frozenset[str]:
    if sandbox.tables is not None:
        return sandbox.tables
    names = conn.execute(
        "SELECT lower(name) FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'aiolite\\_%' ESCAPE '\\' "
        "AND sql NOT LIKE 'CREATE VIRTUAL TABLE%'"
    ).fetchall()
    return frozenset(n for (n,) in names)


def lock_down(
    conn: sqlite3.Connection, sandbox: Sandbox, path: Optional[str] = None
) -> _Authorizer:
    """Apply the sandbox to a new connection (its worker thread); return its authorizer.

    With ``path``, check the file first (memory-mapped I/O already off), and refuse it
    with ``sqlite3.DatabaseError`` if it is damaged.
    """
    for pragma in ("trusted_schema=OFF", "cell_size_check=ON", "mmap_size=0", "query_only=ON"):
        conn.execute(f"PRAGMA {pragma}")
    setconfig = getattr(conn, "setconfig", None)  # Python 3.12+
    if setconfig is not None:
        setconfig(sqlite3.SQLITE_DBCONFIG_DEFENSIVE, True)  # type: ignore[attr-defined]
        setconfig(sqlite3.SQLITE_DBCONFIG_TRUSTED_SCHEMA, False)  # type: ignore[attr-defined]
    setlimit = getattr(conn, "setlimit", None)  # Python 3.11+
    if setlimit is not None:
        setlimit(sqlite3.SQLITE_LIMIT_LENGTH, sandbox.max_length)  # type: ignore[attr-defined]
        for name, value in _LIMITS:
            setlimit(getattr(sqlite3, name), value)
    if path is not None:
        problems = check_file(conn, path)
        if problems:
            raise sqlite3.DatabaseError(
                f"{path} is not safe to open: {'; '.join(problems[:5])} (aiolite doctor "
                "explains; use a good copy)"
            )
    authorizer = _Authorizer(_allowed_tables(conn, sandbox), sandbox.functions)
    conn.set_authorizer(authorizer)
    return authorizer


def check_file(conn: sqlite3.Connection, path: str) -> list[str]:
    """Problems that make a file unsafe to open: damage, a size that disagrees with its
    header.  Run with the sandbox already applied (memory-mapped I/O off)."""
    problems = [r[0] for r in conn.execute("PRAGMA quick_check(10)") if r[0] != "ok"]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    page_count = conn.execute("PRAGMA page_count").fetchone()[0]
    try:
        size = os.path.getsize(path)
    except OSError:
        size = None
    if size is not None and page_count * page_size > size:
        problems.append(
            f"the header counts {page_count} pages of {page_size} bytes but the file has "
            f"{size} bytes (truncated?)"
        )
    return problems


# How SQLite words a refusal: the authorizer's two, and trusted_schema=OFF's.
_REFUSALS = ("not authorized", "is prohibited", "unsafe use of")


def refused(authorizer: Optional[_Authorizer], exc: BaseException) -> Optional[Exception]:
    """The UnsafeQueryError for a statement the authorizer refused, else None."""
    text = str(exc)
    if authorizer is None or not any(m in text for m in _REFUSALS):
        return None
    if text.startswith("unsafe use of"):  # trusted_schema=OFF: the schema calls it
        authorizer.refused = text[len("unsafe use of ") :] + " in the schema"
    from ._exceptions import UnsafeQueryError

    what = authorizer.refused or "the statement"
    return UnsafeQueryError(
        f"refused by the sandbox: {what}. Untrusted SQL may only SELECT from the allowed "
        "tables and views and call the allowed functions (aiolite.Sandbox(tables=..., "
        "functions=...))"
    )
