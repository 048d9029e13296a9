"""Run SQLAlchemy's dialect compliance suite against sqlite+aiolite, and against
sqlite+aiosqlite for comparison, with the same requirements class; check the counts.

    python tests/sqlalchemy_suite/run.py          (make test-sqlalchemy)

Fails unless every aiolite configuration has zero failures and errors and passes at least
as many tests as aiosqlite.  Each run happens in its own scratch directory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
OURS = ("aiolite", "aiolite_deferred")
BASELINE = "aiosqlite"


def run_suite(db: str) -> dict[str, int]:
    with tempfile.TemporaryDirectory(prefix=f"sa-suite-{db}-") as scratch:
        report = Path(scratch) / "junit.xml"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-c",
                str(HERE / "setup.cfg"),
                str(HERE),
                "--db",
                db,
                f"--junitxml={report}",
                "-p",
                "no:warnings",
                "-q",
                "-rfE",
            ],
            cwd=scratch,
            capture_output=True,
            text=True,
        )
        if not report.exists():
            sys.stdout.write(proc.stdout + proc.stderr)
            raise SystemExit(f"the suite did not run for {db} (exit {proc.returncode})")
        suite = ET.parse(report).getroot()
        if suite.tag == "testsuites":
            suite = suite[0]
        counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
        counts["passed"] = (
            counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
        )
        if counts["failures"] or counts["errors"]:
            failed = [
                line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))
            ]
            print(f"--- {db}: failures\n" + "\n".join(failed[:50]))
        return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the counts to this file")
    args = parser.parse_args()

    import sqlalchemy

    results = {db: run_suite(db) for db in (*OURS, BASELINE)}
    print(
        f"SQLAlchemy {sqlalchemy.__version__} dialect compliance suite "
        f"(Python {sys.version.split()[0]})"
    )
    print(f"{'driver':<20}{'passed':>8}{'failed':>8}{'errors':>8}{'skipped':>9}")
    for db, c in results.items():
        print(f"{db:<20}{c['passed']:>8}{c['failures']:>8}{c['errors']:>8}{c['skipped']:>9}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")

    problems = []
    for db in OURS:
        c = results[db]
        if c["failures"] or c["errors"]:
            problems.append(f"{db}: {c['failures']} failed, {c['errors']} errors")
        if c["passed"] < results[BASELINE]["passed"]:
            problems.append(
                f"{db}: {c['passed']} passed, fewer than {BASELINE}'s {results[BASELINE]['passed']}"
            )
    for problem in problems:
        print("FAIL:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
