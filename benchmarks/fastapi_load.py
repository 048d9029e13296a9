"""Load test: the FastAPI task tracker under uvicorn on 127.0.0.1, aiolite vs aiosqlite.

Each app runs in its own uvicorn process on a fresh database seeded with 200 tasks.  The
client (this process) sends a burst of mixed requests with a fixed number in flight and
reports errors (anything but the expected 2xx, or a failed request), requests per second,
and p50/p99 latency.  Then it replays the classic "database is locked" collision: request
A holds a write open across an await while request B writes and commits.

    python -m benchmarks.fastapi_load [--requests 2000] [--concurrency 100] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
APPS = {
    "aiolite": (ROOT / "examples", "fastapi_tasks:create_app"),
    "aiosqlite": (ROOT / "benchmarks", "fastapi_aiosqlite_app:create_app"),
}
# (share, method, path maker, body maker, expected status)
MIX = [
    (40, "GET", lambda ids: f"/tasks?status={random.choice(['todo', 'doing'])}", None, 200),
    (20, "GET", lambda ids: f"/tasks/{random.choice(ids)}", None, 200),
    (25, "POST", lambda ids: "/tasks", lambda: {"title": uuid.uuid4().hex, "priority": 2}, 201),
    (10, "PATCH", lambda ids: f"/tasks/{random.choice(ids)}", lambda: {"status": "doing"}, 200),
    (5, "GET", lambda ids: "/summary", None, 200),
]


@dataclass
class Report:
    name: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    collision: str = ""

    def percentile(self, p: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p * len(data)))] * 1000 if data else float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_started(proc: subprocess.Popen[str]) -> None:
    """Read uvicorn's log until it says it is serving (it binds after the lifespan ran),
    then keep draining the log in the background so the pipe never fills."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if "Uvicorn running on" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return
    raise RuntimeError(f"uvicorn exited with {proc.wait()} before serving")


async def _burst(client: httpx.AsyncClient, report: Report, n: int, concurrency: int) -> None:
    listing = await client.get("/tasks", params={"limit": 500})
    assert listing.status_code == 200, listing.text
    ids = [t["id"] for t in listing.json()]
    weights = [m[0] for m in MIX]
    plan = random.Random(1).choices(MIX, weights=weights, k=n)
    gate = asyncio.Semaphore(concurrency)

    async def one(item: Any) -> None:
        _, method, path, body, expected = item
        async with gate:
            started = time.perf_counter()
            try:
                r = await client.request(method, path(ids), json=body() if body else None)
                ok = r.status_code == expected
                detail = f"{method} {r.status_code} {r.text[:120]}"
            except httpx.HTTPError as exc:
                ok, detail = False, f"{method} {type(exc).__name__} {exc}"
            report.latencies.append(time.perf_counter() - started)
            if not ok:
                report.errors += 1
                if len(report.error_samples) < 3:
                    report.error_samples.append(detail)

    started = time.perf_counter()
    await asyncio.gather(*(one(item) for item in plan))
    report.seconds = time.perf_counter() - started
    report.requests = n


async def _collision(client: httpx.AsyncClient) -> str:
    async def b_later() -> httpx.Response:
        await asyncio.sleep(0.1)
        return await client.post("/collision/b", params={"hold": 1.0})

    a, b = await asyncio.gather(client.post("/collision/a", params={"hold": 0.5}), b_later())
    return f"A {a.status_code}, B {b.status_code}" + (
        "" if (a.status_code, b.status_code) == (200, 200) else f" ({b.text[:100]})"
    )


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    _wait_started(proc)
    return proc


async def run_app(name: str, n: int, concurrency: int, scratch: Path) -> Report:
    app_dir, target = APPS[name]
    port = _free_port()
    env = {**os.environ, "TASKS_DB": str(scratch / f"{name}.db")}
    cmd = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), target, "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "info",
        "--no-access-log",
    ]  # fmt: skip
    proc = _start(cmd, env)
    report = Report(name)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60, trust_env=False
        ) as client:
            for i in range(200):
                await client.post("/tasks", json={"title": f"seed {i}", "priority": 1 + i % 3})
            await _burst(client, report, n, concurrency)
            report.collision = await _collision(client)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return report


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        reports = [await run_app(name, args.requests, args.concurrency, Path(tmp)) for name in APPS]
    print(
        f"{args.requests} mixed requests, {args.concurrency} in flight, uvicorn on 127.0.0.1 "
        f"(Python {sys.version.split()[0]})"
    )
    base = reports[1].requests / reports[1].seconds
    rows = [
        (
            r.name,
            str(r.errors),
            f"{r.requests / r.seconds:.0f}",
            f"{r.requests / r.seconds / base:.2f}x",
            f"{r.percentile(0.50):.1f}",
            f"{r.percentile(0.99):.1f}",
            r.collision,
        )
        for r in reports
    ]
    head = ("app", "errors", "req/s", "vs aiosqlite", "p50 ms", "p99 ms", "collision A/B")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for row in (head, *rows):
            print(f"{row[0]:<10}{row[1]:>7}{row[2]:>8}{row[3]:>14}{row[4]:>8}{row[5]:>8}  {row[6]}")
    for r in reports:
        for sample in r.error_samples:
            print(f"  {r.name} error: {sample}")


if __name__ == "__main__":
    asyncio.run(main())
