"""What the dqlite client must know of a statement before sending it.

dqlite runs a statement one of two ways, and the client has to choose: EXEC (the leader
runs it to the end and replicates what it wrote) or QUERY (the leader returns rows and
replicates nothing).  A local sqlite3 connection can ask SQLite; the client cannot (the
schema lives on the server), so it reads the statement's tokens:

* ``route``: QUERY for statements that return rows and write nothing, EXEC otherwise, and
  a refusal for what crashes a libdqlite 1.11 node or cannot work over the wire;
* ``bind``: positional values for ``:name``/``@name``/``$name``/``?NNN`` parameters (the
  wire binds by position only), numbered as SQLite numbers them;
* ``split``: a script's statements, one at a time, so each is routed and guarded.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from typing import Any, Optional

__all__ = ["EXEC", "QUERY", "Plan", "bind", "plan", "route", "split"]

EXEC, QUERY = 0, 1

# Strings, quoted names, comments, parameters and words; anything else is one character.
_TOKEN = re.compile(
    r"""
      (?P<skip>'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?
             |--[^\n]*|/\*.*?(?:\*/|$)|\s+)
    | (?P<param>\?\d*|[:@$][A-Za-z0-9_]+(?:::[A-Za-z0-9_]+)*(?:\([^)]*\))?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

#: Reads that return rows; EXPLAIN of anything only describes it.
_READS = {"SELECT", "VALUES", "EXPLAIN"}
_WRITES_IN_WITH = {"INSERT", "UPDATE", "DELETE", "REPLACE"}
#: Pragmas whose change breaks a dqlite node or the replication under it: dqlite owns the
#: journal (its WAL is the replication log), the page layout, locking and checkpoints.
_REFUSED_PRAGMAS = {
    "journal_mode": "dqlite keeps every database in WAL mode (its WAL is what it replicates)",
    "page_size": "dqlite fixes the page size when it creates the database",
    "locking_mode": "dqlite's VFS manages the locks",
    "wal_checkpoint": "the dqlite node runs checkpoints itself",
    "wal_autocheckpoint": "the dqlite node runs checkpoints itself",
    "mmap_size": "dqlite's VFS keeps the database in memory and does not map files",
    "auto_vacuum": "it would need a VACUUM, which dqlite cannot replicate",
    "writable_schema": "a hand-edited schema cannot be replicated safely",
}
_REFUSED_STATEMENTS = {
    "VACUUM": "dqlite cannot replicate a VACUUM (it rewrites the whole file)",
    "ATTACH": "an attached file would live on one node and not be replicated",
    "DETACH": "dqlite databases cannot attach other files",
}
_TX_VERBS = {"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"}


def _tokens(sql: str) -> list[tuple[str, str]]:
    """(kind, text) of every token that is not whitespace, a comment or a string."""
    out = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup
        assert kind is not None
        if kind == "skip":
            s = m.group()
            if s[0] in "'\"`[":  # a literal or a quoted name: it matters, as a value
                out.append(("literal", s))
            continue
        out.append((kind, m.group()))
    return out


def _empty(sql: str) -> bool:
    return all(t == ("other", ";") for t in _tokens(sql))


def split(script: str) -> list[str]:
    """The statements of a script, in order (without the empty ones)."""
    out = []
    start = 0
    for m in _TOKEN.finditer(script):
        if m.lastgroup == "other" and m.group() == ";":
            stmt = script[start : m.end()]
            if sqlite3.complete_statement(stmt):  # not a ';' inside CREATE TRIGGER
                if not _empty(stmt):
                    out.append(stmt)
                start = m.end()
    if not _empty(script[start:]):
        out.append(script[start:])
    return out


def _setting(tokens: list[tuple[str, str]]) -> Optional[str]:
    """The name of the pragma a ``PRAGMA [schema.]name = value`` sets, else None."""
    if not tokens or tokens[0][0] != "word" or tokens[0][1].upper() != "PRAGMA":
        return None
    rest = tokens[1:]
    if len(rest) >= 3 and rest[1] == ("other", "."):
        name = f"{rest[0][1]}.{rest[2][1]}".lower()
        rest = rest[2:]
    elif rest:
        name = rest[0][1].lower()
    else:
        return None
    return name if len(rest) > 1 and rest[1] == ("other", "=") else None


class Plan:
    """What one statement is, read from its tokens once (cached per SQL text)."""

    __slots__ = (
        "count",
        "first",
        "kind",
        "names",
        "refused",
        "setting",
        "several",
        "verb",
        "words",
    )

    def __init__(self, sql: str) -> None:
        tokens = _tokens(sql)
        self.words = [t.upper() for k, t in tokens if k == "word"]
        first = tokens[0][1].upper() if tokens and tokens[0][0] == "word" else None
        #: The first keyword (None if the statement starts otherwise).
        self.first = first
        #: BEGIN/COMMIT/END/ROLLBACK/SAVEPOINT/RELEASE, or None.
        self.verb = first if first in _TX_VERBS else None
        #: The pragma a ``PRAGMA [schema.]name = value`` sets: settings belong to the
        #: connection, and are set again on a new leader.
        self.setting = _setting(tokens)
        #: EXEC or QUERY; or the error to raise instead of sending it.
        self.refused: Optional[sqlite3.NotSupportedError] = None
        self.kind = EXEC
        try:
            self.kind = _route(tokens, self.words)
        except sqlite3.NotSupportedError as exc:
            self.refused = exc
        #: Named parameters' numbers, and how many values the statement takes.
        self.names, self.count = _numbering(tokens)
        #: More than one statement (dqlite would run them all, or only the first).
        self.several = ("other", ";") in tokens and len(split(sql)) > 1


_plans: dict[str, Plan] = {}


def plan(sql: str) -> Plan:
    """The statement's Plan (from a bounded cache: statements repeat)."""
    p = _plans.get(sql)
    if p is None:
        if len(_plans) >= 1024:
            _plans.clear()
        p = _plans[sql] = Plan(sql)
    return p


def route(sql: str) -> int:
    """EXEC or QUERY for one statement; raise NotSupportedError for what dqlite must not run."""
    p = plan(sql)
    if p.refused is not None:
        raise p.refused
    return p.kind


def _route(tokens: list[tuple[str, str]], words: list[str]) -> int:
    if not words:
        return EXEC
    first = words[0]
    if "RETURNING" in words and first in _WRITES_IN_WITH | {"WITH"}:
        raise sqlite3.NotSupportedError(
            "dqlite 1.11 cannot return rows from a write (RETURNING): a node runs such a "
            "statement unreplicated or crashes. Run the write without RETURNING, then read "
            "the rows back (the write's lastrowid gives the new row's id)"
        )
    refused = _REFUSED_STATEMENTS.get(first)
    if refused is not None:
        raise sqlite3.NotSupportedError(f"{first} is not supported on dqlite: {refused}")
    if first == "PRAGMA":
        return _route_pragma(tokens)
    if first in _READS:
        return QUERY
    if first == "WITH":
        return EXEC if _writes_after_with(tokens) else QUERY
    return EXEC


def _route_pragma(tokens: list[tuple[str, str]]) -> int:
    # PRAGMA [schema.]name [= value | (value)]
    rest = tokens[1:]
    if len(rest) >= 3 and rest[1] == ("other", "."):
        rest = rest[2:]
    if not rest or rest[0][0] != "word":
        return QUERY
    name = rest[0][1].lower()
    sets = len(rest) > 1 and rest[1] == ("other", "=")
    called = len(rest) > 1 and rest[1] == ("other", "(")
    reason = _REFUSED_PRAGMAS.get(name)
    if reason is not None and (sets or called or name == "wal_checkpoint"):
        raise sqlite3.NotSupportedError(f"PRAGMA {name} cannot be changed on dqlite: {reason}")
    # A setting's assignment returns no rows (some echo the new value, harmlessly lost);
    # a read, or a function-style pragma (table_info(t)), returns rows.
    return EXEC if sets else QUERY


def _writes_after_with(tokens: list[tuple[str, str]]) -> bool:
    """Whether a WITH statement's main verb (outside the CTEs' parentheses) writes."""
    depth = 0
    for kind, value in tokens[1:]:
        if kind == "other":
            if value == "(":
                depth += 1
            elif value == ")":
                depth -= 1
        elif kind == "word" and depth == 0 and value.upper() in _WRITES_IN_WITH | {"SELECT"}:
            return value.upper() != "SELECT"
    return False


def bind(sql: str, params: Any) -> Any:
    """The parameters as a sequence in SQLite's numbering of the statement's parameters.

    A sequence passes through (SQLite checks its length).  A mapping is turned into one:
    each named parameter takes the next number at its first use, ``?NNN`` its own number.
    """
    if not isinstance(params, Mapping):
        return params
    p = plan(sql)
    out: list[Any] = [None] * p.count
    for name, index in p.names.items():
        key = name[1:]
        if key not in params:
            raise sqlite3.ProgrammingError(
                f"You did not supply a value for binding parameter {name}."
            )
        out[index - 1] = params[key]
    return out


def _numbering(tokens: list[tuple[str, str]]) -> tuple[dict[str, int], int]:
    numbers: dict[str, int] = {}
    count = 0
    for kind, value in tokens:
        if kind != "param":
            continue
        if value[0] == "?":
            if len(value) > 1:
                count = max(count, int(value[1:]))
            else:
                count += 1
            continue
        if value not in numbers:
            count += 1
            numbers[value] = count
    return numbers, count
