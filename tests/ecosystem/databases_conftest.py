"""For encode/databases' own test suite, run by tests/ecosystem/run.py: with
``AIOLITE_AS_AIOSQLITE=1`` the ``aiosqlite`` module is aiolite before databases imports it."""

import os
import sys

if os.environ.get("AIOLITE_AS_AIOSQLITE") == "1":
    import aiolite

    sys.modules["aiosqlite"] = aiolite
