"""aiosqlite compatibility: ``aiosqlite.cursor`` (``from aiosqlite.cursor import Cursor``).

Absolute imports on purpose: see ``aiolite/core.py``.
"""

from aiolite._cursor import Cursor

__all__ = ["Cursor"]
