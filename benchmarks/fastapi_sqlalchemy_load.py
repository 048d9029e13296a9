"""Load test: the "database is locked" report's FastAPI + SQLAlchemy app under uvicorn,
sqlite+aiolite vs sqlite+aiosqlite (examples/fastapi_sqlalchemy.py, only the URL differs).

2000 requests with 100 in flight: 40% route A (add, sleep, commit), 40% route B (flush,
hold the write across an await of 5 ms, commit), 20% GET /items/count.  Reports errors,
requests per second, p50/p99, and whether every acknowledged write's row is in the file.

    python -m benchmarks.fastapi_sqlalchemy_load [--requests 2000] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.fastapi_load import ROOT, _free_port, _wait_started

URLS = {"sqlite+aiolite": "sqlite+aiolite:///{}", "sqlite+aiosqlite": "sqlite+aiosqlite:///{}"}


async def load(base: str, requests: int, concurrency: int) -> tuple[int, int, float, list[float]]:
    """Returns (acknowledged writes, errors, seconds, latencies)."""
    rng = random.Random(7)
    plan = [rng.random() for _ in range(requests)]
    gate = asyncio.Semaphore(concurrency)
    writes = errors = 0
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def one(x: float) -> None:
            nonlocal writes, errors
            async with gate:
                started = time.perf_counter()
                try:
                    if x < 0.4:
                        r = await client.post("/session_a", params={"wait": 0.005})
                    elif x < 0.8:
                        r = await client.post("/session_b", params={"before": 0, "hold": 0.005})
                    else:
                        r = await client.get("/items/count")
                except httpx.HTTPError:
                    errors += 1
                    return
                latencies.append(time.perf_counter() - started)
                if r.status_code != 200:
                    errors += 1
                elif x < 0.8:
                    writes += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(x) for x in plan))
        return writes, errors, time.perf_counter() - started, latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args(argv)
    print(f"{args.requests} requests, {args.concurrency} in flight, uvicorn on 127.0.0.1")
    print("| URL | errors | req/s | p50 ms | p99 ms | rows / acknowledged writes |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in URLS.items():
            db = Path(tmp) / f"{name.replace('+', '_')}.db"
            port = _free_port()
            env = {**os.environ, "APP_DB_URL": url.format(db), "PYTHONPATH": str(ROOT)}
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "examples.fastapi_sqlalchemy:app",
                 "--port", str(port), "--log-level", "info", "--no-access-log"],
                cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                _wait_started(proc)
                writes, errors, seconds, lat = asyncio.run(
                    load(f"http://127.0.0.1:{port}", args.requests, args.concurrency)
                )
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            conn = sqlite3.connect(db)
            rows = conn.execute("SELECT count(*) FROM items").fetchone()[0]
            conn.close()
            lat.sort()
            p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
            p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan")
            rps = args.requests / seconds
            print(
                f"| `{name}` | {errors} | {rps:.0f} | {p50:.0f} | {p99:.0f} | {rows} / {writes} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
