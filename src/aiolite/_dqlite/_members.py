"""A Database's connections on a dqlite cluster: what changes from a file, in one place.

``aiolite.open("dqlite://...")`` builds the same Database (``_database.py``): a writer, a
pool of readers, each a worker thread, now holding a :class:`_client.Connection` instead
of a sqlite3 one.  This module checks the options that cannot apply, opens the members,
and lists what the node owns (journal, checkpoints, files).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from ._client import Connection
from ._leader import Target

__all__ = ["is_cluster", "not_on_cluster", "open_member", "reopen", "target"]

#: The Database's default pragmas that a dqlite node owns (it forces WAL; its VFS keeps the
#: database in memory and makes it durable through the Raft log, not by fsync).
NODE_PRAGMAS = ("journal_mode", "synchronous", "journal_size_limit")


def is_cluster(database: Any) -> bool:
    return isinstance(database, str) and database.startswith("dqlite://")


def target(
    url: str,
    *,
    untrusted: Any,
    wal_limit: Optional[int],
    checkpoints: str,
    pragmas: Optional[dict[str, Any]],
) -> Target:
    """The cluster to connect to, once the options were checked against what dqlite does."""
    if untrusted:
        raise sqlite3.NotSupportedError(
            "untrusted= is not available on dqlite: the sandbox needs SQLite's authorizer "
            "and limits on the connection, which run on the node, out of aiolite's reach"
        )
    if wal_limit is not None:
        raise ValueError("wal_limit does not apply to dqlite: the node manages its WAL")
    if checkpoints != "auto":
        raise ValueError("checkpoints='external' does not apply to dqlite: the node checkpoints")
    for name in pragmas or {}:
        if name.lower() in NODE_PRAGMAS and (pragmas or {})[name] is not None:
            raise sqlite3.NotSupportedError(
                f"pragma {name} cannot be set on dqlite: the node owns it (WAL, durable "
                "through its Raft log)"
            )
    query = parse_qs(urlsplit(url).query)
    timeout = 10.0
    if "timeout" in query:
        try:
            timeout = float(query["timeout"][-1])
        except ValueError:
            raise ValueError(f"timeout= in {url!r} is a number of seconds") from None
        if timeout <= 0:
            raise ValueError(f"timeout= in {url!r} must be > 0")
    return Target(url, timeout)


def node_pragmas(pragmas: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The Database's pragmas with the node's own dropped (None removes a default)."""
    return {**{name: None for name in NODE_PRAGMAS}, **(pragmas or {})}


def open_member(
    _: None, worker: Any, target: Target, statements: list[str], reader: bool
) -> Connection:
    """Connect one member to the leader and set it up (its worker thread)."""

    def stop() -> bool:  # a cancelled open: the worker reports it as the cancel it is
        try:
            worker.check_abort("looking for the dqlite leader")
        except sqlite3.OperationalError:
            return True
        return False

    conn = reopen(target, statements, reader, stop)
    worker.adopt(conn)
    return conn


def reopen(
    target: Target, statements: list[str], reader: bool, stop: Optional[Any] = None
) -> Connection:
    """A connection to the leader, set up (worker thread): a member's first, or its
    replacement (Session.settle)."""
    conn = Connection(target, stop=stop)
    try:
        for statement in statements:
            conn.execute(statement).fetchall()
        if reader:
            conn.execute("PRAGMA query_only=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def not_on_cluster(what: str, why: str) -> sqlite3.NotSupportedError:
    return sqlite3.NotSupportedError(f"{what} is not available on dqlite: {why}")
