"""Blob: incremental BLOB I/O (``Connection.blobopen``), each call one round trip."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ._closing import Closing

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["Blob"]


def _blob_call(_: Any, raw: Any, name: str, args: tuple[Any, ...]) -> Any:
    return getattr(raw, name)(*args)


class Blob(Closing):
    """An open BLOB, as ``sqlite3.Blob``, with async methods.  Use ``async with``."""

    def __init__(self, conn: Connection, raw: Any, length: int) -> None:
        self._conn = conn
        self._raw = raw
        self._length = length
        self._closed = False

    def __len__(self) -> int:
        return self._length

    async def read(self, length: int = -1) -> bytes:
        """Read ``length`` bytes (all that remain if negative) from the current offset."""
        return bytes(await self._do("read", length))

    async def write(self, data: bytes) -> None:
        """Write ``data`` at the current offset (a BLOB never changes size)."""
        await self._do("write", data)

    async def seek(self, offset: int, origin: int = os.SEEK_SET) -> None:
        """Move the offset, as ``io`` does."""
        await self._do("seek", offset, origin)

    async def tell(self) -> int:
        """Return the current offset."""
        return int(await self._do("tell"))

    async def close(self) -> None:
        """Close the blob. Idempotent."""
        if not self._closed:
            self._closed = True
            await self._conn._call(_blob_call, self._raw, "close", ())

    async def _do(self, name: str, *args: Any) -> Any:
        return await self._conn._call(_blob_call, self._raw, name, args)

    def __del__(self) -> None:
        try:
            if not self._closed:
                self._conn._worker.post(_blob_call, self._raw, "close", ())
        except Exception:  # interpreter shutdown: the exit hook closes the connection
            pass


Blob.__module__ = "aiolite"
