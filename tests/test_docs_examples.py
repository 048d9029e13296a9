"""The runnable examples of the docs run, and print what the docs say."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from script_runner import run_script

ROOT = Path(__file__).resolve().parent.parent


def first_python_block(page: str) -> str:
    text = (ROOT / "docs" / page).read_text()
    match = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert match is not None, page
    return match.group(1)


def run(code: str, cwd: Path) -> str:
    ran = run_script(cwd, code, name="example.py")
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    return ran.stdout


def test_database_quickstart(tmp_path: Path) -> None:
    out = run(first_python_block("database.md"), tmp_path).splitlines()
    assert out[0] == "100 {'id': 1, 'owner': 'ada', 'balance': 100}"
    assert out[1:] == ["1", "ada"]


def test_maintenance_example(tmp_path: Path) -> None:
    body = textwrap.indent(first_python_block("maintenance.md"), "    ")
    head = "import asyncio\nimport aiolite\n\nasync def main() -> None:\n"
    code = f"{head}{body}\nasyncio.run(main())\n"
    setup = (
        "import sqlite3\nc = sqlite3.connect('app.db')\n"
        "c.execute('CREATE TABLE t(x)')\n"
        "c.executemany('INSERT INTO t VALUES (?)', [(i,) for i in range(100)])\nc.commit()\n"
        "c.close()\n"
    )
    run(setup, tmp_path)
    out = run(code, tmp_path)
    assert "CheckpointResult(busy=False" in out
    assert "\n[]\n[]\n" in out  # integrity ok, no foreign key violations
    assert "Health(path=" in out
    assert (tmp_path / "backup.db").exists()
    assert (tmp_path / "compact.db").exists()


def test_trio_example(tmp_path: Path) -> None:
    assert run(first_python_block("trio-anyio.md"), tmp_path) == "10\n"


def test_scale_out_example(tmp_path: Path) -> None:
    """Three in-process dqlite nodes and a Database on them, as docs/scale-out.md shows."""
    from dqlite_cluster import require

    require()
    assert run(first_python_block("scale-out.md"), tmp_path) == "[(1, 'ADA')]\n"
