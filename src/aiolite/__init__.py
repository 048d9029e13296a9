"""aiolite: fast, cancellable async SQLite for asyncio and trio, compatible with aiosqlite.

``import aiolite as aiosqlite`` works: the same API, on one worker thread per connection,
with one thread round trip per operation.
"""

from collections.abc import Mapping as _Mapping
from sqlite3 import (
    DatabaseError as DatabaseError,
)
from sqlite3 import (
    DataError as DataError,
)
from sqlite3 import (
    Error as Error,
)
from sqlite3 import (
    IntegrityError as IntegrityError,
)
from sqlite3 import (
    InterfaceError as InterfaceError,
)
from sqlite3 import (
    InternalError as InternalError,
)
from sqlite3 import (
    NotSupportedError as NotSupportedError,
)
from sqlite3 import (
    OperationalError as OperationalError,
)
from sqlite3 import (
    ProgrammingError as ProgrammingError,
)
from sqlite3 import (
    Row as Row,
)
from sqlite3 import (
    Warning as Warning,
)
from sqlite3 import (
    paramstyle as paramstyle,
)
from sqlite3 import (
    register_adapter as register_adapter,
)
from sqlite3 import (
    register_converter as register_converter,
)
from sqlite3 import (
    sqlite_version as sqlite_version,
)
from sqlite3 import (
    sqlite_version_info as sqlite_version_info,
)
from types import MappingProxyType as _MappingProxyType
from typing import Any as _Any

# aiosqlite's submodules, for code that names them (``aiosqlite.core.Connection``): loaded
# now, so that they are attributes of the package as they are of aiosqlite's.
from . import context as context
from . import core as core
from . import cursor as cursor
from ._adapters import Types as Types
from ._blob import Blob as Blob
from ._connection import Connection as Connection
from ._connection import ConnectionStatistics as ConnectionStatistics
from ._connection import connect as connect
from ._cursor import Cursor as Cursor
from ._database import Database as Database
from ._database import DatabaseStatistics as DatabaseStatistics
from ._database import open as open
from ._dqlite._node import Node as Node
from ._exceptions import ClusterError as ClusterError
from ._exceptions import CommitUnknownError as CommitUnknownError
from ._exceptions import ConnectionClosedError as ConnectionClosedError
from ._exceptions import DatabaseLockedError as DatabaseLockedError
from ._exceptions import NodeError as NodeError
from ._exceptions import NoEventLoopError as NoEventLoopError
from ._exceptions import NoLeaderError as NoLeaderError
from ._exceptions import QueryTimeoutError as QueryTimeoutError
from ._exceptions import ReadOnlyError as ReadOnlyError
from ._exceptions import TooManyRowsError as TooManyRowsError
from ._exceptions import TransactionLostError as TransactionLostError
from ._exceptions import UnsafeQueryError as UnsafeQueryError
from ._exceptions import is_busy as is_busy
from ._maintenance import CheckpointResult as CheckpointResult
from ._maintenance import ForeignKeyViolation as ForeignKeyViolation
from ._maintenance import Health as Health
from ._migrations import Migration as Migration
from ._migrations import MigrationError as MigrationError
from ._pool import ReadSession as ReadSession
from ._pragmas import DEFAULT_PRAGMAS as _DEFAULT_PRAGMAS
from ._pragmas import pragma_statement as pragma_statement
from ._queries import RowStream as RowStream
from ._sandbox import SAFE_FUNCTIONS as SAFE_FUNCTIONS
from ._sandbox import Sandbox as Sandbox
from ._statements import StatementEvent as StatementEvent
from ._statements import WriteResult as WriteResult
from ._transaction import Savepoint as Savepoint
from ._transaction import Transaction as Transaction
from ._version import __version__ as __version__

#: The pragmas :func:`open` applies to every connection (read-only view; override them
#: with ``pragmas=``).
DEFAULT_PRAGMAS: _Mapping[str, _Any] = _MappingProxyType(_DEFAULT_PRAGMAS)

__all__ = [
    "Blob",
    "CheckpointResult",
    "ClusterError",
    "CommitUnknownError",
    "Connection",
    "ConnectionClosedError",
    "ConnectionStatistics",
    "Cursor",
    "DEFAULT_PRAGMAS",
    "DataError",
    "Database",
    "DatabaseError",
    "DatabaseLockedError",
    "DatabaseStatistics",
    "Error",
    "ForeignKeyViolation",
    "Health",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "Migration",
    "MigrationError",
    "NoEventLoopError",
    "NoLeaderError",
    "Node",
    "NodeError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "QueryTimeoutError",
    "ReadOnlyError",
    "ReadSession",
    "SAFE_FUNCTIONS",
    "Row",
    "RowStream",
    "Sandbox",
    "Savepoint",
    "StatementEvent",
    "TooManyRowsError",
    "Transaction",
    "TransactionLostError",
    "Types",
    "UnsafeQueryError",
    "Warning",
    "WriteResult",
    "__version__",
    "connect",
    "is_busy",
    "open",
    "paramstyle",
    "pragma_statement",
    "register_adapter",
    "register_converter",
    "sqlite_version",
    "sqlite_version_info",
]
