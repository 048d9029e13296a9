"""Type aliases shared by the modules."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional, Union

#: Where a database lives, as sqlite3.connect() and aiosqlite.connect() accept it.
StrPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
#: Statement parameters: a sequence for ``?`` placeholders or a mapping for ``:name``.
Parameters = Union[Iterable[Any], Mapping[str, Any]]
#: sqlite3's row factory: called with the raw cursor and the row tuple.
RowFactory = Optional[Callable[[sqlite3.Cursor, tuple[Any, ...]], Any]]
TextFactory = Callable[[bytes], Any]
IsolationLevel = Optional[str]
AuthorizerCallback = Callable[
    [int, Optional[str], Optional[str], Optional[str], Optional[str]], int
]
ProgressHandler = Callable[[], Optional[int]]
TraceCallback = Callable[[str], object]
BackupProgress = Callable[[int, int, int], object]
Connector = Callable[[], sqlite3.Connection]
