"""aiolite.open() on a local file, a 1-node and a 3-node dqlite cluster (issue #16).

Per setup, for ``--seconds`` each: point selects by primary key (1 task, and 8 tasks over
the reader pool), and commits (1 task inserting a 32-byte key and a 1 KiB value, as
go-dqlite's ``dqlite-benchmark`` kvwrite workload does).  Then failover: a write loop on 3
nodes, the leader killed (SIGKILL), the time until the next successful write, repeated.
With ``--go``, the same kvwrite workload through Go's client (Debian's go-dqlite package)
for comparison.  Nodes are `aiolite node` processes on loopback, latency tuned to 50 ms
(tests/dqlite_cluster.py).

    python -m benchmarks.dqlite [--seconds 5] [--failovers 5] [--go]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiolite

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from dqlite_cluster import Cluster, free_port

KEY = b"k" * 32
VALUE = b"v" * 1024


async def measure(location: Any, seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    async with aiolite.open(location, readers=4) as db:
        await db.execute("CREATE TABLE IF NOT EXISTS kv(id INTEGER PRIMARY KEY, k BLOB, v BLOB)")
        await db.executemany(
            "INSERT INTO kv(k, v) VALUES (?, ?)", [(KEY, VALUE) for _ in range(1000)]
        )

        async def selects(deadline: float, i: int) -> int:
            n = 0
            while time.perf_counter() < deadline:
                await db.fetchone("SELECT k, v FROM kv WHERE id = ?", ((n * 7 + i) % 1000 + 1,))
                n += 1
            return n

        deadline = time.perf_counter() + seconds
        out["selects/s, 1 task"] = await selects(deadline, 0) / seconds
        deadline = time.perf_counter() + seconds
        counts = await asyncio.gather(*(selects(deadline, i) for i in range(8)))
        out["selects/s, 8 tasks"] = sum(counts) / seconds
        n = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            await db.execute("INSERT INTO kv(k, v) VALUES (?, ?)", (KEY, VALUE))
            n += 1
        out["commits/s, 1 task"] = n / seconds
    return out


async def failover(cluster: Cluster) -> float:
    """Seconds from killing the leader to the next acknowledged write."""
    async with aiolite.open(cluster.url("failover", timeout=30), readers=1) as db:
        await db.execute("CREATE TABLE IF NOT EXISTS f(x)")
        for _ in range(20):
            await db.execute("INSERT INTO f VALUES (1)")
        leader = cluster.leader()
        killed = time.perf_counter()
        leader.kill()
        while True:
            try:
                await db.execute("INSERT INTO f VALUES (2)")
                break
            except aiolite.ClusterError:
                continue  # an in-flight write whose outcome is unknown: try the next
        took = time.perf_counter() - killed
    leader.start()
    cluster.wait_for_voters(3)
    return took


def go_kvwrite(seconds: int, nodes: int) -> float:
    """Writes/s of dqlite-benchmark's kvwrite workload (1 worker), or 0 if absent."""
    binary = shutil.which("dqlite-benchmark")
    if binary is None:
        return 0.0
    with tempfile.TemporaryDirectory() as tmp:
        ports = [free_port() for _ in range(nodes)]
        addrs = [f"127.0.0.1:{p}" for p in ports]
        procs = []
        cmd = [binary, "--duration", str(seconds), "--workload", "kvwrite"]
        first = [*cmd, "-d", addrs[0], "-D", f"{tmp}/0", "--driver", "--cluster", ",".join(addrs)]
        procs.append(subprocess.Popen(first, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for i in range(1, nodes):
            args = [*cmd, "-d", addrs[i], "-D", f"{tmp}/{i}", "--join", addrs[0]]
            procs.append(
                subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        try:
            procs[0].wait(seconds + 120)
        finally:
            for p in procs:
                p.kill()
                p.wait()
        writes = 0
        for name in glob.glob(f"{tmp}/0/*/results/*"):
            with open(name) as f:
                for line in f:  # "n <count>" heads the file, then one latency per line
                    if line.startswith("n "):
                        writes += int(line.split()[1])
    return writes / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--go", action="store_true", help="also run go-dqlite's benchmark")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["local file"] = asyncio.run(measure(Path(tmp) / "local.db", args.seconds))
        for size in (1, 3):
            cluster = Cluster(Path(tmp) / f"c{size}", size).start()
            try:
                name = f"dqlite, {size} node{'s' if size > 1 else ''}"
                results[name] = asyncio.run(measure(cluster.url("bench"), args.seconds))
                if size == 3 and args.failovers:
                    times = [asyncio.run(failover(cluster)) for _ in range(args.failovers)]
            finally:
                cluster.stop()
    metrics = list(results["local file"])
    print(f"{args.seconds:g} s per measure, 2-core VM, nodes on loopback\n")
    print("| setup | " + " | ".join(metrics) + " |")
    print("|---" * (len(metrics) + 1) + "|")
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{row[m]:,.0f}" for m in metrics) + " |")
    base = results["local file"]
    for name, row in results.items():
        if name != "local file":
            ratios = ", ".join(f"{m}: {row[m] / base[m]:.3f}x" for m in metrics)
            print(f"\n{name} vs local file: {ratios}")
    if args.failovers:
        print(
            f"\nfailover (leader SIGKILL -> next acknowledged write), {len(times)} runs: "
            f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, "
            f"max {max(times):.2f} s"
        )
    if args.go:
        seconds = max(5, int(args.seconds))
        for nodes in (1, 3):
            rate = go_kvwrite(seconds, nodes)
            ours = results[f"dqlite, {nodes} node{'s' if nodes > 1 else ''}"]["commits/s, 1 task"]
            print(
                f"\ngo-dqlite dqlite-benchmark kvwrite, 1 worker, {nodes} node(s): "
                f"{rate:,.0f} writes/s (aiolite: {ours:,.0f} commits/s, {ours / rate:.2f}x)"
                if rate
                else "\ngo-dqlite's dqlite-benchmark is not installed (apt-get install go-dqlite)"
            )


if __name__ == "__main__":
    main()
