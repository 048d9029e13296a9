"""Alembic on sqlite+aiolite: ``alembic upgrade head`` with an async env.py, batch mode
for the ALTERs SQLite lacks, and downgrade, run as the command people run."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("alembic")

ENV_PY = """
import asyncio
from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config


def run(connection):
    # render_as_batch: ALTERs SQLite cannot do are done by copying the table.
    context.configure(connection=connection, target_metadata=None, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def main():
    engine = create_async_engine(config.get_main_option("sqlalchemy.url"))
    async with engine.connect() as connection:
        await connection.run_sync(run)
    await engine.dispose()


asyncio.run(main())
"""

STEP_1 = """
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None


def upgrade():
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(100), nullable=True),
    )
    op.execute("INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com')")


def downgrade():
    op.drop_table("users")
"""

STEP_2 = """
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("name", sa.String(50), server_default="?"))
        batch.alter_column("email", existing_type=sa.String(100), nullable=False)
        batch.create_unique_constraint("uq_users_email", ["email"])


def downgrade():
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_email", type_="unique")
        batch.alter_column("email", existing_type=sa.String(100), nullable=True)
        batch.drop_column("name")
"""


def alembic(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_alembic_upgrade_and_downgrade(tmp_path: Path) -> None:
    """upgrade head runs both steps (the second in batch mode), downgrade undoes one."""
    db = tmp_path / "app.db"
    (tmp_path / "alembic.ini").write_text(
        textwrap.dedent(f"""
            [alembic]
            script_location = migrations
            sqlalchemy.url = sqlite+aiolite:///{db}
        """)
    )
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "migrations" / "env.py").write_text(ENV_PY)
    (tmp_path / "migrations" / "script.py.mako").write_text("")
    (versions / "0001_users.py").write_text(STEP_1)
    (versions / "0002_names.py").write_text(STEP_2)

    up = alembic(tmp_path, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    conn = sqlite3.connect(db)
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(users)")]
        assert columns == ["id", "email", "name"]
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0002",)
        assert conn.execute("SELECT count(*), min(name) FROM users").fetchone() == (2, "?")
        with pytest.raises(sqlite3.IntegrityError):  # the unique constraint the batch added
            conn.execute("INSERT INTO users (email) VALUES ('a@example.com')")
    finally:
        conn.close()

    down = alembic(tmp_path, "downgrade", "-1")
    assert down.returncode == 0, down.stderr
    conn = sqlite3.connect(db)
    try:
        assert [r[1] for r in conn.execute("PRAGMA table_info(users)")] == ["id", "email"]
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    finally:
        conn.close()
