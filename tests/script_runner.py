"""Run repository code as a user would: a script in a child process, or a file that is not
in a package (an example, a benchmark) imported by path."""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType
from typing import NamedTuple


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_script(cwd: Path, body: str, *, timeout: float = 60, name: str = "script.py") -> Ran:
    """Write ``body`` (dedented) to ``cwd/name`` and run it with ``python -X dev``."""
    script = cwd / name
    script.write_text(textwrap.dedent(body))
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-X", "dev", str(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - started)


def count_in_file_alone(db: Path, table: str) -> int:
    """Rows of ``table`` in a copy of the database file alone (no -wal, no -shm): what a
    backup made with cp after the program ended would hold."""
    copy = db.with_name(db.name + ".copy")
    shutil.copy(db, copy)
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def load_file(path: Path, name: str) -> ModuleType:
    """Import a repository file that is not in a package (an example, a benchmark).

    It is registered in sys.modules: SQLAlchemy and pydantic resolve annotations there.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
