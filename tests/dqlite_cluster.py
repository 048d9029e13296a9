"""dqlite nodes for the tests: each an `aiolite node` process on a free loopback port, with
its data in a temporary directory, stopped by its PID (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

from aiolite._dqlite import _wire
from aiolite._dqlite._leader import Target, find_leader

#: Raft tuned for loopback: a 750 ms election timeout (dqlite's default is 3 s).
LATENCY_MS = 50
STOP_TIMEOUT = 5.0


def available() -> Optional[str]:
    """None if libdqlite can be loaded, else why not."""
    try:
        ctypes.CDLL("libdqlite.so.0")
    except OSError as exc:
        return f"libdqlite.so.0 is not installed ({exc}): apt-get install libdqlite0"
    return None


def require() -> None:
    """Skip where libdqlite is missing, except where the project's own files installed it
    (make test sets AIOLITE_REQUIRE_DQLITE=1): there a missing library is a failure."""
    why = available()
    if why is None:
        return
    if os.environ.get("AIOLITE_REQUIRE_DQLITE") == "1":
        pytest.fail(why)
    pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeProcess:
    def __init__(self, address: str, data_dir: Path, join: list[str]) -> None:
        self.address = address
        self.data_dir = data_dir
        self.join = join
        self.proc: Optional[subprocess.Popen[str]] = None
        self.id = 0

    def start(self) -> None:
        cmd = [
            sys.executable, "-m", "aiolite", "node", "--json",
            "--bind", self.address, "--dir", str(self.data_dir),
            "--latency-ms", str(LATENCY_MS),
        ]  # fmt: skip
        if self.join:
            cmd += ["--join", ",".join(self.join)]
        log = self.data_dir.with_suffix(".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        # Ready once it printed its identity (a JSON object over several lines).
        assert self.proc.stdout is not None
        lines = []
        with self.proc.stdout as out:
            for line in out:
                lines.append(line)
                if line.startswith("}"):
                    self.id = json.loads("".join(lines))["id"]
                    return
        raise RuntimeError(f"node {self.address} did not start: {log.read_text()[-2000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: the node dies as in a crash."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def running(root: Path, size: int) -> Iterator[Cluster]:
    """A started cluster of ``size`` nodes under ``root``, stopped at exit (skips where
    libdqlite is missing, see require())."""
    require()
    cluster = Cluster(root, size).start()
    try:
        yield cluster
    finally:
        cluster.stop()


class Cluster:
    def __init__(self, root: Path, size: int) -> None:
        self.nodes: list[NodeProcess] = []
        first = f"127.0.0.1:{free_port()}"
        self.nodes.append(NodeProcess(first, root / "n0", []))
        for i in range(1, size):
            self.nodes.append(NodeProcess(f"127.0.0.1:{free_port()}", root / f"n{i}", [first]))

    def start(self) -> Cluster:
        try:
            for node in self.nodes:
                node.start()
            self.wait_for_voters(len(self.nodes))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def url(self, name: Optional[str] = None, **query: object) -> str:
        hosts = ",".join(n.address for n in self.nodes)
        q = "&".join(f"{k}={v}" for k, v in query.items())
        return f"dqlite://{hosts}/{name or uuid.uuid4().hex}" + (f"?{q}" if q else "")

    def leader(self, timeout: float = 10.0) -> NodeProcess:
        target = Target(self.url("x"), timeout)
        link = find_leader(target, lambda: False)
        link.close()
        return next(n for n in self.nodes if n.address == link.address)

    def wait_for_voters(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            link = find_leader(Target(self.url("x"), timeout), lambda: False)
            try:
                _, r = link.call(_wire.CLUSTER, _wire.u64(1))
                voters = [s for s in _wire.servers(r) if s[2] == _wire.VOTER]
            finally:
                link.close()
            if len(voters) >= n:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(voters)} of {n} voters after {timeout} s")
            time.sleep(0.05)
