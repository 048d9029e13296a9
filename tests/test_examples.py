"""The demo and tutorial-style programs run unchanged and print what they should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import aiolite as aiosqlite  # the drop-in promise: tutorial code only changes this line

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs(tmp_path: Path) -> None:
    """make demo's program prints its report and exits 0 with nothing on stderr."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "task_tracker.py"), str(tmp_path / "t.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == "Added tasks: [1, 2, 3, 4]"
    assert "ran 1000 concurrent lookups" in lines[1]
    assert "Summary: {'done': 2, 'pending': 1002}" in lines
    assert lines[-3:-1] == ["  [2] Fix login bug", "  [4] Deploy to staging"]


async def test_tutorial_crud_program(tmp_path: Path) -> None:
    """The classic products CRUD tutorial flow gives the tutorial's printed values."""
    async with aiosqlite.connect(tmp_path / "products.db") as db:
        await db.execute(
            "CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "name TEXT NOT NULL, price REAL NOT NULL, stock INTEGER DEFAULT 0)"
        )
        await db.commit()
        ids = []
        for name, price, stock in [("Widget", 9.99, 100), ("Gadget", 24.99, 50)]:
            cur = await db.execute(
                "INSERT INTO products (name, price, stock) VALUES (?, ?, ?)", (name, price, stock)
            )
            await db.commit()
            ids.append(cur.lastrowid)
        cur = await db.execute(
            "INSERT INTO products (name, price, stock) VALUES (?, ?, ?)", ("Doohickey", 4.49, 200)
        )
        await db.commit()
        ids.append(cur.lastrowid)
        assert ids == [1, 2, 3]
        async with db.execute("SELECT * FROM products WHERE id = ?", (1,)) as cur:
            row = await cur.fetchone()
            product = dict(zip([c[0] for c in cur.description], row))
        assert product == {"id": 1, "name": "Widget", "price": 9.99, "stock": 100}
        async with db.execute(
            "SELECT * FROM products WHERE price <= ? ORDER BY name", (10.0,)
        ) as c:
            cols = [d[0] for d in c.description]
            cheap = [dict(zip(cols, r)) async for r in c]
        assert [p["name"] for p in cheap] == ["Doohickey", "Widget"]
        await db.execute("DELETE FROM products WHERE id = ?", (3,))
        await db.commit()
        names = [r[0] for r in await db.execute_fetchall("SELECT name FROM products ORDER BY name")]
        assert names == ["Gadget", "Widget"]


async def test_tutorial_batch_and_rollback(tmp_path: Path) -> None:
    """Batch insert of 10,000 rows, then BEGIN / update / rollback leaves prices unchanged."""
    async with aiosqlite.connect(":memory:") as db:
        await db.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name, price, stock)")
        records = [(f"Product_{i}", round(i * 0.99, 2), i % 100) for i in range(1, 10001)]
        await db.executemany("INSERT INTO products (name, price, stock) VALUES (?, ?, ?)", records)
        await db.commit()
        async with db.execute("SELECT COUNT(*) FROM products") as cur:
            assert (await cur.fetchone())[0] == 10_000
        before = await db.execute_fetchall("SELECT sum(price) FROM products")
        try:
            async with db.execute("BEGIN"):
                await db.execute("UPDATE products SET price = price * 0.9 WHERE stock > 50")
                raise ValueError("Simulated error -- rolling back")
        except ValueError:
            await db.rollback()
        assert await db.execute_fetchall("SELECT sum(price) FROM products") == before


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_trio_anyio_example(backend: str) -> None:
    """examples/trio_anyio.py prints what docs/trio-anyio.md says, on both backends."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "trio_anyio.py"), backend],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    docs = (ROOT / "docs" / "trio-anyio.md").read_text()
    expected = docs.split("and prints:\n\n```\n", 1)[1].split("```", 1)[0]
    assert proc.stdout == expected
