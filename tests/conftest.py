"""Shared fixtures: every async test runs under asyncio, asyncio+uvloop and trio."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import aiolite

# SQLAlchemy's compliance suite runs under its own pytest plugin and config (make
# test-sqlalchemy); the main run must not collect it.
collect_ignore = ["sqlalchemy_suite"]

# Spelled out: a missing backend must fail the run, not quietly shrink it.
BACKENDS: list[Any] = [
    pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
    pytest.param("trio", id="trio"),
]
if sys.platform != "win32":
    BACKENDS.insert(1, pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"))


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "test.db"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[aiolite.Connection]:
    async with aiolite.connect(db_path) as conn:
        yield conn
