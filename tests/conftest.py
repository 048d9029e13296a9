"""Shared fixtures: every async test runs under asyncio, asyncio+uvloop and trio."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import aiolite
from dqlite_cluster import Cluster, running

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


@pytest.fixture(scope="session")
def dqlite_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One dqlite node for the whole run (each test uses a database of its own on it)."""
    with running(tmp_path_factory.mktemp("dqlite"), 1) as cluster:
        yield cluster


def on_dqlite(location: Any) -> bool:
    return isinstance(location, str) and location.startswith("dqlite://")


def other_connection(location: Any) -> Any:
    """A plain connection to the same database from outside the Database: sqlite3 for a
    file, aiolite's blocking dqlite client for a cluster (another process's view)."""
    if on_dqlite(location):
        from aiolite._dqlite._client import Connection
        from aiolite._dqlite._leader import Target

        return Connection(Target(location))
    import sqlite3

    return sqlite3.connect(location, isolation_level=None)


@pytest.fixture(params=["file", "dqlite"])
def location(request: pytest.FixtureRequest, db_path: Path) -> Any:
    """Where a Database lives: a file, or a new database on a dqlite node (same tests)."""
    if request.param == "file":
        return db_path
    cluster: Cluster = request.getfixturevalue("dqlite_node")
    return cluster.url()


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[aiolite.Connection]:
    async with aiolite.connect(db_path) as conn:
        yield conn
