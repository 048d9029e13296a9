"""The "database is locked" report's FastAPI + SQLAlchemy app on the plain sqlite+aiolite
URL (examples/fastapi_sqlalchemy.py), driven in-process through httpx."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
import httpx

from script_runner import load_file

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.anyio

# SQLAlchemy's asyncio extension runs on asyncio only (uvloop: tests/test_sqlalchemy.py).
_ASYNCIO: list[Any] = [pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio")]


@pytest.fixture(params=_ASYNCIO)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


async def burst(url: str, requests: int, hold: float = 0.1) -> tuple[int, int, int]:
    """Half the requests hold a flushed write across an await, half commit after a sleep,
    all at once.  Returns (ok, errors, rows in the table)."""
    import os

    os.environ["APP_DB_URL"] = url
    module = load_file(ROOT / "examples" / "fastapi_sqlalchemy.py", f"fa_sa_{abs(hash(url))}")
    await module.create_schema()
    transport = httpx.ASGITransport(app=module.app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:

            async def one(k: int) -> int:
                if k % 2:
                    r = await client.post("/session_b", params={"before": 0, "hold": hold})
                else:
                    r = await client.post("/session_a", params={"wait": 0.05})
                return r.status_code

            codes = await asyncio.gather(*(one(k) for k in range(requests)))
            count = (await client.get("/items/count")).json()["count"]
    finally:
        await module.engine.dispose()
    ok = sum(c == 200 for c in codes)
    return ok, requests - ok, count


async def test_the_reports_app_on_the_plain_url(tmp_path: Path) -> None:
    """200 concurrent requests on sqlite+aiolite:///file, 100 of them holding a flushed
    write for 0.1 s (10 s of queued holds, twice SQLite's busy timeout): 200 OK, 200 rows.
    sqlite+aiosqlite fails part of them with "database is locked" (docs/sqlalchemy.md)."""
    ok, errors, rows = await burst(f"sqlite+aiolite:///{tmp_path / 'items.db'}", 200)
    assert (ok, errors, rows) == (200, 0, 200)
    conn = sqlite3.connect(tmp_path / "items.db")
    try:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (200,)
    finally:
        conn.close()
