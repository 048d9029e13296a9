"""What aiosqlite's dependents reach into besides its public API.

Libraries built on aiosqlite touch a few of its private names; ``import aiolite as
aiosqlite`` keeps them working:

* ``Connection._conn``: aiosqlite's raw ``sqlite3.Connection``.  Tortoise ORM sets
  ``conn._conn.row_factory = sqlite3.Row`` right after connecting.  Here it is a
  :class:`RawConnection` whose settings go through the Connection's own setters (one source
  of truth: aiolite applies the Connection's ``row_factory`` to every cursor), and whose
  other attributes are the real connection's, as in aiosqlite (calling its methods from
  the event loop raises sqlite3's thread error there too: aiolite checks it, since the
  connection itself is opened without sqlite3's check, see _inline).
* ``Connection._thread`` (LangGraph's checkpointer asks ``conn._thread.is_alive()``),
  ``_connection``, ``_running``, ``_tx``.
* The submodules ``aiosqlite.core``, ``aiosqlite.cursor`` and ``aiosqlite.context``
  (encode/databases annotates ``-> aiosqlite.core.Connection``): ``aiolite/core.py`` and
  friends re-export the same classes.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["RawConnection"]

#: Settings kept by the aiolite Connection (read back without crossing threads).
_SETTINGS = frozenset({"row_factory", "text_factory", "isolation_level", "autocommit"})
#: Read through the Connection (they need no thread, but the lock that guards close).
_STATE = frozenset({"in_transaction", "total_changes"})


def _on_worker_only(method: Any, worker: Any) -> Any:
    """sqlite3's own thread check, kept: the connection is opened with
    check_same_thread=False (short calls run on the loop thread, under the worker's
    lock), so a method called here from another thread must be refused by us."""

    def call(*args: Any, **kwargs: Any) -> Any:
        here = threading.get_ident()
        if here != worker:
            raise sqlite3.ProgrammingError(
                "SQLite objects created in a thread can only be used in that same thread. "
                f"The object was created in thread id {worker} and this is thread id "
                f"{here}. (aiolite: use the aiolite Connection's own async methods)"
            )
        return method(*args, **kwargs)

    return call


class RawConnection:
    """``Connection._conn``: the sqlite3 connection as aiosqlite exposed it."""

    __slots__ = ("_owner",)

    def __init__(self, owner: Connection) -> None:
        object.__setattr__(self, "_owner", owner)

    def __getattr__(self, name: str) -> Any:
        owner = object.__getattribute__(self, "_owner")
        if name in _SETTINGS or name in _STATE:
            return getattr(owner, name)
        raw = owner._worker.connection
        if raw is None:
            raise owner._not_open_error()
        value = getattr(raw, name)
        if callable(value):
            return _on_worker_only(value, owner._worker.thread.ident)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _SETTINGS:
            raise AttributeError(
                f"aiolite: setting {name!r} on Connection._conn is not supported; only "
                f"{', '.join(sorted(_SETTINGS))} are (they go to the aiolite Connection)"
            )
        setattr(object.__getattribute__(self, "_owner"), name, value)

    def __repr__(self) -> str:
        return f"<aiolite.RawConnection of {object.__getattribute__(self, '_owner')!r}>"
