"""aiosqlite compatibility: ``aiosqlite.core`` (``from aiosqlite.core import Connection``).

Absolute imports on purpose: after ``sys.modules["aiosqlite"] = aiolite`` this file may be
loaded a second time as ``aiosqlite.core``, and must then hand out the same classes.
"""

from aiolite._connection import Connection, connect
from aiolite._cursor import Cursor

__all__ = ["Connection", "Cursor", "connect"]
