"""dqlite's wire protocol (version 1): encoding requests, decoding responses.

Pure functions on bytes, no I/O (``_client.py`` does that).  The format, from dqlite's
``src/protocol.h``, ``request.h``, ``response.h`` and ``tuple.h``:

* every message is an 8-byte header (body size in 8-byte words: uint32; type: uint8;
  schema: uint8; 2 unused bytes) and a body padded to 8 bytes, all little-endian;
* text is UTF-8, NUL-terminated, padded to 8 bytes; a blob is its length (uint64) and
  its bytes, padded;
* parameters: a count (uint8), one type byte each, padded, then the values;
* rows: the column count (uint64) and names, then per row a header of 4-bit type codes
  (padded) and the values, until an 8-byte end marker: more rows follow in the next
  message (PART), or the result is complete (DONE).
"""

from __future__ import annotations

import sqlite3
import struct
from typing import Any, Optional

__all__ = [
    "PROTOCOL_VERSION",
    "Failure",
    "Reader",
    "encode_params",
    "message",
    "text",
    "u64",
]

PROTOCOL_VERSION = 1

# Request types.
LEADER, CLIENT, HEARTBEAT, OPEN, PREPARE, EXEC, QUERY, FINALIZE = range(8)
EXEC_SQL, QUERY_SQL, INTERRUPT, CONNECT, ADD, ASSIGN, REMOVE, DUMP, CLUSTER = range(8, 17)
TRANSFER, DESCRIBE, WEIGHT = 17, 18, 19

# Response types.
R_FAILURE, R_SERVER, R_WELCOME, R_SERVERS, R_DB, R_STMT, R_RESULT, R_ROWS = range(8)
R_EMPTY, R_FILES, R_METADATA = 8, 9, 10

# Value types: SQLite's, and dqlite's own for columns declared DATETIME/DATE/TIMESTAMP
# (UNIXTIME, ISO8601) and BOOLEAN.  Rows decode them to what sqlite3 would return (the
# stored int or str), so the Database's type conversion is the same as on a local file.
INTEGER, FLOAT, TEXT, BLOB, NULL = 1, 2, 3, 4, 5
UNIXTIME, ISO8601, BOOLEAN = 9, 10, 11

ROWS_PART = 0xEEEEEEEEEEEEEEEE
ROWS_DONE = 0xFFFFFFFFFFFFFFFF

# Role codes for ASSIGN.
VOTER, STANDBY, SPARE = 0, 1, 2

#: SQLite's extended codes dqlite answers with when the node is not (or no longer) the leader.
SQLITE_IOERR_NOT_LEADER = 10 | (40 << 8)
SQLITE_IOERR_LEADERSHIP_LOST = 10 | (41 << 8)

MAX_PARAMS = 255  # the count is one byte in protocol version 1

_HEADER = struct.Struct("<IBBH")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_PAD = b"\0" * 8


def _pad(n: int) -> int:
    return (n + 7) & ~7


def u64(value: int) -> bytes:
    return _U64.pack(value)


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def text(value: str) -> bytes:
    data = value.encode("utf-8")
    if b"\0" in data:
        raise sqlite3.ProgrammingError(
            "dqlite sends text NUL-terminated: a string with a NUL character would be cut "
            "short; store it as a blob (bytes)"
        )
    return data + _PAD[: _pad(len(data) + 1) - len(data)]


def message(kind: int, body: bytes, schema: int = 0) -> bytes:
    """A whole request: the header and ``body`` (already padded to 8 bytes)."""
    return _HEADER.pack(len(body) // 8, kind, schema, 0) + body


def header(data: bytes) -> tuple[int, int]:
    """(body size in bytes, type) of a response header."""
    words, kind, _, _ = _HEADER.unpack(data)
    return words * 8, kind


def _param(i: int, value: Any) -> tuple[int, bytes]:
    """The type code and the encoded value of one parameter, as sqlite3 would bind it."""
    if value is None:
        return NULL, _PAD
    kind = type(value)
    if kind is int or kind is bool or isinstance(value, int):
        try:
            return INTEGER, _I64.pack(value)
        except struct.error:
            raise OverflowError("Python int too large to convert to SQLite INTEGER") from None
    if kind is float or isinstance(value, float):
        return FLOAT, _F64.pack(value)
    if kind is str or isinstance(value, str):
        return TEXT, text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return BLOB, _U64.pack(len(data)) + data + _PAD[: _pad(len(data)) - len(data)]
    raise sqlite3.ProgrammingError(
        f"Error binding parameter {i}: type '{kind.__name__}' is not supported"
    )


def encode_params(values: Any) -> bytes:
    """A parameter tuple (dqlite binds by position: ``?``, ``?NNN``, or named ones mapped
    to their positions by ``_sql.bind``)."""
    n = len(values)
    if n > MAX_PARAMS:
        raise sqlite3.ProgrammingError(
            f"dqlite takes at most {MAX_PARAMS} parameters per statement, got {n}: split "
            "the statement, or insert the rows with executemany()"
        )
    if n == 0:
        return b""
    codes = bytearray([n])
    body = []
    for i, value in enumerate(values, 1):
        code, data = _param(i, value)
        codes.append(code)
        body.append(data)
    codes.extend(_PAD[: _pad(len(codes)) - len(codes)])
    return bytes(codes) + b"".join(body)


class Failure(Exception):
    """A FAILURE response: SQLite's (extended) result code and the server's message."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


class Reader:
    """Decodes one response body."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u64(self) -> int:
        value: int = _U64.unpack_from(self.data, self.pos)[0]
        self.pos += 8
        return value

    def u32(self) -> int:
        value: int = struct.unpack_from("<I", self.data, self.pos)[0]
        self.pos += 4
        return value

    def i64(self) -> int:
        value: int = _I64.unpack_from(self.data, self.pos)[0]
        self.pos += 8
        return value

    def text(self) -> str:
        data = self.data
        end = data.index(b"\0", self.pos)
        value = data[self.pos : end].decode("utf-8", "replace")
        self.pos = _pad(end + 1)
        return value

    def blob(self) -> bytes:
        n = self.u64()
        value = self.data[self.pos : self.pos + n]
        self.pos += _pad(n)
        return value

    def failure(self) -> Failure:
        return Failure(self.u64(), self.text())

    def columns(self) -> list[str]:
        return [self.text() for _ in range(self.u64())]

    def rows(self, n: int, out: Any) -> bool:
        """Append the rows of a ROWS body (after its column names) to ``out``; return
        whether more follow in another message."""
        data = self.data
        size = _pad((n + 1) // 2)
        unpack = _U64.unpack_from
        while True:
            marker: int = unpack(data, self.pos)[0]
            if marker in (ROWS_DONE, ROWS_PART):
                self.pos += 8
                return marker == ROWS_PART
            types = data[self.pos : self.pos + size]
            self.pos += size
            row = []
            for i in range(n):
                code = types[i >> 1]
                code = code >> 4 if i & 1 else code & 0x0F
                row.append(self._value(code))
            out.append(tuple(row))

    def _value(self, code: int) -> Any:
        if code in (INTEGER, UNIXTIME):
            return self.i64()
        if code == TEXT:
            return self.text()
        if code == ISO8601:
            # dqlite 1.11 sends NULL in a DATETIME/DATE/TIMESTAMP column as ''.
            return self.text() or None
        if code == NULL:
            self.pos += 8
            return None
        if code == FLOAT:
            value = _F64.unpack_from(self.data, self.pos)[0]
            self.pos += 8
            return value
        if code == BLOB:
            return self.blob()
        if code == BOOLEAN:
            return self.i64()
        raise sqlite3.InterfaceError(f"dqlite sent a value of unknown type {code}")


def files(r: Reader) -> list[tuple[str, bytes]]:
    """A FILES body (DUMP request): (name, content) of the database and of its WAL."""
    out = []
    for _ in range(r.u64()):
        name = r.text()
        n = r.u64()
        out.append((name, r.data[r.pos : r.pos + n]))
        r.pos += _pad(n)
    return out


def servers(r: Reader) -> list[tuple[int, str, Optional[int]]]:
    """A SERVERS body (CLUSTER request, format 1): (id, address, role) per node."""
    return [(r.u64(), r.text(), r.u64()) for _ in range(r.u64())]
