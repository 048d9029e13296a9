"""``make test-ecosystem``: aiosqlite's dependents' own test suites, on aiosqlite and on aiolite.

Downloads the sdists of Tortoise ORM and encode/databases (pinned in requirements.txt),
runs each suite twice in this environment, unchanged: once on aiosqlite, once with
``sys.modules["aiosqlite"] = aiolite`` installed before the library imports it (our
conftest files do that when ``AIOLITE_AS_AIOSQLITE=1``).  Prints the two results side by
side and exits 1 when aiolite's result is worse (fewer passed, or more failed or errors).

Two Tortoise tests run example scripts that its sdist does not ship; they are deselected
for both runs.  Two databases tests fail on both (they use Starlette's ``on_event``, gone in
Starlette 1.x): environment, not driver.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORK = ROOT / "build" / "ecosystem"
PINS = {
    line.split("==")[0]: line.split("==")[1]
    for line in (HERE / "requirements.txt").read_text().splitlines()
    if "==" in line and not line.startswith("#")
}
_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")


def sdist(name: str) -> Path:
    """Download and unpack the pinned sdist of ``name`` (once); return its folder."""
    version = PINS[name]
    home = WORK / f"{name}-{version}"
    unpacked = [p for p in home.glob("*") if p.is_dir()] if home.is_dir() else []
    if unpacked:
        return unpacked[0]
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
         "-d", str(home), f"{name}=={version}"],
        check=True,
    )  # fmt: skip
    with tarfile.open(next(home.glob("*.tar.gz"))) as tar:
        if hasattr(tarfile, "data_filter"):  # refuses links and paths out of the folder
            tar.extractall(home, filter="data")
        else:  # pragma: no cover - Python < 3.11.4
            tar.extractall(home)
    return next(p for p in home.glob("*") if p.is_dir())


def run(folder: Path, args: list[str], swap: bool, env: dict[str, str]) -> dict[str, int]:
    full_env = {**os.environ, **env, "AIOLITE_AS_AIOSQLITE": "1" if swap else "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "120",
         *args],
        cwd=folder, env=full_env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    counts = {k.rstrip("s") if k.startswith("error") else k: int(n) for n, k in
              _COUNT.findall(tail[0])}  # fmt: skip
    if not counts:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        raise SystemExit(
            f"no pytest summary from {folder.name} ({'aiolite' if swap else 'aiosqlite'})"
        )
    return counts


def main() -> int:
    tortoise = sdist("tortoise-orm")
    shutil.copy(HERE / "tortoise_conftest.py", tortoise / "conftest.py")
    databases = sdist("databases")
    shutil.copy(HERE / "databases_conftest.py", databases / "conftest.py")
    # Its sdist has no pytest settings: without a file of its own, pytest would take this
    # repository's (warnings as errors) from the folder above.
    (databases / "pytest.ini").write_text("[pytest]\n")
    suites = [
        (f"Tortoise ORM {PINS['tortoise-orm']} (sqlite://:memory:)", tortoise,
         ["tests", "--deselect", "tests/contrib/test_decorator.py::test_basic_example_script",
          "--deselect", "tests/test_relations.py::test_recursive"],
         {"TORTOISE_TEST_DB": "sqlite://:memory:"}),
        (f"encode/databases {PINS['databases']} (sqlite://, sqlite+aiosqlite://)", databases,
         ["tests"],
         {"TEST_DATABASE_URLS": "sqlite:///testsuite,sqlite+aiosqlite:///testsuite"}),
    ]  # fmt: skip
    worse = False
    keys = ["passed", "failed", "error", "skipped", "xfailed"]
    print(f"{'suite':<58} {'driver':<10} " + " ".join(f"{k:>7}" for k in keys))
    for title, folder, args, env in suites:
        theirs = run(folder, args, False, env)
        ours = run(folder, args, True, env)
        for driver, counts in (("aiosqlite", theirs), ("aiolite", ours)):
            print(f"{title:<58} {driver:<10} " + " ".join(f"{counts.get(k, 0):>7}" for k in keys))
        if (
            ours.get("passed", 0) < theirs.get("passed", 0)
            or ours.get("failed", 0) > theirs.get("failed", 0)
            or ours.get("error", 0) > theirs.get("error", 0)
        ):
            worse = True
            print(f"  aiolite is worse than aiosqlite on {title}")
    return 1 if worse else 0


if __name__ == "__main__":
    raise SystemExit(main())
