"""Load SQLAlchemy's test plugin, which runs its dialect compliance suite.

The dialect is found through aiolite's ``sqlalchemy.dialects`` entry point, as users get it.
"""

import pytest

pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

# SQLAlchemy loads provisioning hooks from the dialect's package; ours are SQLite's.
import sqlalchemy.dialects.sqlite.provision  # noqa: E402,F401
from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402
from sqlalchemy.testing import provision  # noqa: E402
from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: E402,F403


@provision.post_configure_engine.for_db("sqlite")
def _post_configure_engine(url, engine, follower_ident):
    """Replaces SQLite's hook, which attaches "test_schema" to the first engine only; the
    suite's per-class engines need it too.  The listener below does it for every engine,
    for every driver alike.  The suite runs in a scratch directory."""


@event.listens_for(Engine, "connect")
def _attach_test_schema(dbapi_connection, connection_record):
    driver = "aiolite" if "aiolite" in type(dbapi_connection).__module__ else "other"
    dbapi_connection.execute(f'ATTACH DATABASE "{driver}_test_schema.db" AS test_schema')
