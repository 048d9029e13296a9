"""aiosqlite 0.22.1's own smoke tests, run against aiolite with only the import changed.

The test file ships in aiosqlite's wheel (``aiosqlite/tests/smoke.py``); it is read from the
installed package at collection time, its ``import aiosqlite`` line is replaced by
``import aiolite as aiosqlite``, and pytest runs its unittest class.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import aiosqlite
import pytest

import aiolite

SMOKE = Path(aiosqlite.__file__).parent / "tests" / "smoke.py"
ORIGINAL_IMPORT = "import aiosqlite\n"


def _load_smoke() -> types.ModuleType:
    source = SMOKE.read_text()
    assert source.count(ORIGINAL_IMPORT) == 1, "aiosqlite's smoke.py changed shape"
    source = source.replace(ORIGINAL_IMPORT, "import aiolite as aiosqlite\n")
    module = types.ModuleType("aiosqlite.tests.smoke_on_aiolite")
    module.__package__ = "aiosqlite.tests"  # so `from .helpers import ...` resolves
    module.__file__ = str(SMOKE)
    exec(compile(source, str(SMOKE), "exec"), module.__dict__)
    assert module.aiosqlite is aiolite
    return module


assert importlib.util.find_spec("aiosqlite.tests.helpers") is not None
_smoke = _load_smoke()
SmokeTest = _smoke.SmokeTest


def test_smoke_suite_is_complete() -> None:
    """The suite still has the tests this compatibility claim was made against."""
    names = {n for n in dir(SmokeTest) if n.startswith("test_")}
    assert len(names) >= 30, sorted(names)
    assert {"test_connect_base_exception", "test_multi_loop_usage", "test_iterdump"} <= names


pytestmark = pytest.mark.filterwarnings("default")
sys.modules.setdefault(_smoke.__name__, _smoke)
