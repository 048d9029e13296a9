"""Fixtures for Tortoise ORM's own test suite, run by tests/ecosystem/run.py.

Tortoise's sdist ships ``tests/`` but not the repository's root ``conftest.py``; its tests
use these fixtures by name.  Written for this harness from what the tests expect of them:

* ``db_module``: one Tortoise context per test module on ``tests.testmodels``;
* ``db``: each test inside a transaction that is rolled back afterwards;
* ``db_simple``: the module's context, no clean-up;
* ``db_truncate``: the module's context, every table emptied afterwards;
* ``db_isolated``: a fresh context (and database) for the test;
* ``make_db_fixture(modules)``: a fresh-context fixture on other model modules.

With ``AIOLITE_AS_AIOSQLITE=1`` the ``aiosqlite`` module *is* aiolite before anything
imports it: the drop-in promise, tested on a real dependent.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

if os.environ.get("AIOLITE_AS_AIOSQLITE") == "1":
    import aiolite

    sys.modules["aiosqlite"] = aiolite

import pytest_asyncio
import tortoise.context as tortoise_context
from tortoise.context import _current_context, tortoise_test_context

DB_URL = os.environ.get("TORTOISE_TEST_DB", "sqlite://:memory:")
MODELS = ["tests.testmodels"]


class _Discard(Exception):
    """Raised into the test's transaction so that it rolls back."""


def _context(modules: list[str]) -> object:
    return tortoise_test_context(
        modules=modules, db_url=DB_URL, app_label="models", connection_label="models"
    )


async def _empty_tables(ctx: object) -> None:
    apps = getattr(ctx, "apps", None)
    if not apps:
        return
    for model in apps.get_models_iterable():
        db = model._meta.db
        quote = db.query_class.SQL_CONTEXT.quote_char
        await db.execute_script(f"DELETE FROM {quote}{model._meta.db_table}{quote}")


@pytest_asyncio.fixture(scope="module")
async def db_module():
    async with _context(MODELS) as ctx:  # type: ignore[attr-defined]
        # Tests and fixtures run in tasks of their own: the context variable may not reach
        # them, the module-level fallback does.
        previous = tortoise_context._global_context
        tortoise_context._global_context = ctx
        try:
            yield ctx
        finally:
            tortoise_context._global_context = previous


@contextlib.contextmanager
def _current(ctx: Any) -> Iterator[Any]:
    """Make the module's context the current one for a test (tests run in tasks of their
    own, which the fixture's context variable may not reach)."""
    token = _current_context.set(ctx)
    try:
        yield ctx
    finally:
        _current_context.reset(token)


@pytest_asyncio.fixture
async def db(db_module):
    with _current(db_module):
        conn = db_module.db()
        if not conn.capabilities.supports_transactions:
            yield db_module
            await _empty_tables(db_module)
            return
        tx = conn._in_transaction()
        await tx.__aenter__()
        try:
            yield db_module
        finally:
            await tx.__aexit__(_Discard, _Discard(), None)


@pytest_asyncio.fixture
async def db_simple(db_module):
    with _current(db_module):
        yield db_module


@pytest_asyncio.fixture
async def db_truncate(db_module):
    with _current(db_module):
        yield db_module
        await _empty_tables(db_module)


@pytest_asyncio.fixture
async def db_isolated():
    async with _context(MODELS) as ctx:  # type: ignore[attr-defined]
        yield ctx


def make_db_fixture(
    modules: list[str], app_label: str = "models", connection_label: str = "models"
):
    @pytest_asyncio.fixture
    async def fixture():
        async with tortoise_test_context(
            modules=modules, db_url=DB_URL, app_label=app_label, connection_label=connection_label
        ) as ctx:
            yield ctx

    return fixture
