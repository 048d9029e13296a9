"""Running a dqlite node in this process: ``aiolite.Node`` and ``aiolite node``.

The node is Debian's ``libdqlite0`` (libdqlite.so.0), loaded with ctypes when a Node is
first made, never at import.  The library runs the node on threads of its own (libuv and
raft); this class only starts and stops it.  Joining a cluster is done over the wire, as
any dqlite client does it: ADD (as a spare) then ASSIGN (voter), sent to the leader.

A node's identity lives in its data directory (``aiolite-node.json``: id and address), so
a restarted node rejoins as itself.  The first node of a cluster (no ``join``) takes id 1,
which dqlite bootstraps as a one-node cluster.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import socket
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Optional

from .._exceptions import NodeError
from . import _wire
from ._leader import Stopped, Target, find_leader
from ._wire import Failure

__all__ = ["Node", "NodeError"]

_LIBRARY = "libdqlite.so.0"
#: int connect(void *arg, const char *address, int *fd): how a node dials another.
_CONNECT = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)
)
_IDENTITY = "aiolite-node.json"
_lib: Any = None


def _load() -> Any:
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL(_LIBRARY)
    except OSError:
        found = ctypes.util.find_library("dqlite")
        if found is None:
            raise NodeError(
                "running a dqlite node needs the dqlite library (libdqlite.so.0), which is "
                "not installed: on Debian or Ubuntu, apt-get install libdqlite0"
            ) from None
        lib = ctypes.CDLL(found)
    p, c, u, ull = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint, ctypes.c_ulonglong
    lib.dqlite_node_create.argtypes = [ull, c, c, ctypes.POINTER(p)]
    lib.dqlite_node_set_bind_address.argtypes = [p, c]
    lib.dqlite_node_set_network_latency_ms.argtypes = [p, u]
    lib.dqlite_node_set_connect_func.argtypes = [p, _CONNECT, p]
    lib.dqlite_node_start.argtypes = [p]
    lib.dqlite_node_stop.argtypes = [p]
    lib.dqlite_node_destroy.argtypes = [p]
    lib.dqlite_node_destroy.restype = None
    lib.dqlite_node_errmsg.argtypes = [p]
    lib.dqlite_node_errmsg.restype = c
    lib.dqlite_generate_node_id.argtypes = [c]
    lib.dqlite_generate_node_id.restype = ull
    _lib = lib
    return lib


def _dial(_: Any, address: bytes, fd: Any) -> int:
    """Connect to another node, with TCP_NODELAY (a libuv thread of the node calls this).

    libdqlite's own dialer leaves Nagle's algorithm on: a Raft append of a few KiB then
    waits for the follower's delayed ACK, and a 3-node commit takes ~14 ms instead of
    ~1.5 ms (measured: 70 against 610 commits/s with 1 KiB rows).  Go's client dials with
    NODELAY, which is why go-dqlite did not see it."""
    try:
        host, _, port = address.decode().rpartition(":")
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        fd[0] = sock.detach()
        return 0
    except (OSError, ValueError):
        return 1  # libdqlite reports RAFT_NOCONNECTION and retries later


_dial_c = _CONNECT(_dial)  # one for the process: a callback must outlive every node


class Node:
    """A dqlite node running in this process.

    ``address`` (host:port) is where it listens and what the other nodes call it;
    ``data_dir`` holds its Raft log and snapshots; ``join`` lists addresses of running
    nodes to join (empty: start a new cluster, or restart the node ``data_dir`` knows).
    ``latency_ms`` tunes Raft's timeouts to the network (election timeout = 15 x latency;
    the library's default is a 3 s election timeout).  ``timeout`` bounds the join.

    ``node.start()`` ... ``node.stop()``, or ``with Node(...) as node:``.
    """

    def __init__(
        self,
        address: str,
        data_dir: str,
        *,
        join: Sequence[str] = (),
        latency_ms: Optional[int] = None,
        timeout: float = 10.0,
    ) -> None:
        Target(f"dqlite://{address}/x")  # validates the address
        self.address = address
        self.data_dir = os.path.abspath(data_dir)
        self.join = list(join)
        self.latency_ms = latency_ms
        self.timeout = timeout
        self.id = 0
        self._node: Optional[ctypes.c_void_p] = None

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._node is not None else "stopped"
        return f"<aiolite.Node {self.address} id={self.id} {state}>"

    @property
    def running(self) -> bool:
        return self._node is not None

    def _identity(self) -> tuple[int, bool]:
        """(node id, whether it is new) from the data directory, made if absent."""
        path = os.path.join(self.data_dir, _IDENTITY)
        try:
            with open(path) as f:
                saved = json.load(f)
        except FileNotFoundError:
            saved = None
        if saved is not None:
            if saved["address"] != self.address:
                raise NodeError(
                    f"{self.data_dir} belongs to the node at {saved['address']}, not "
                    f"{self.address}: start it with that address, or use a new directory"
                )
            return int(saved["id"]), False
        node_id = (
            1 if not self.join else int(_load().dqlite_generate_node_id(self.address.encode()))
        )
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"id": node_id, "address": self.address}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return node_id, True

    def start(self) -> Node:
        """Start the node (and join the cluster the first time); return it."""
        if self._node is not None:
            return self
        lib = _load()
        os.makedirs(self.data_dir, exist_ok=True)
        self.id, new = self._identity()
        handle = ctypes.c_void_p()
        rv = lib.dqlite_node_create(
            self.id, self.address.encode(), self.data_dir.encode(), ctypes.byref(handle)
        )
        if rv != 0:
            message = lib.dqlite_node_errmsg(handle) if handle else None
            if handle:
                lib.dqlite_node_destroy(handle)
            raise NodeError(f"dqlite could not create the node ({rv}): {_text(message)}")
        try:
            rv = lib.dqlite_node_set_bind_address(handle, self.address.encode())
            self._check(lib, handle, rv, f"bind {self.address}")
            rv = lib.dqlite_node_set_connect_func(handle, _dial_c, None)
            self._check(lib, handle, rv, "set the connect function")
            if self.latency_ms is not None:
                rv = lib.dqlite_node_set_network_latency_ms(handle, int(self.latency_ms))
                self._check(lib, handle, rv, "set the network latency")
            self._check(lib, handle, lib.dqlite_node_start(handle), f"start on {self.address}")
        except BaseException:
            lib.dqlite_node_destroy(handle)
            raise
        self._node = handle
        if new and self.join:
            try:
                self._join()
            except BaseException:
                self.stop()
                # Not a member: the next start must ask to join again.
                os.unlink(os.path.join(self.data_dir, _IDENTITY))
                raise
        return self

    @staticmethod
    def _check(lib: Any, handle: Any, rv: int, what: str) -> None:
        if rv != 0:
            raise NodeError(
                f"dqlite could not {what} ({rv}): {_text(lib.dqlite_node_errmsg(handle))}"
            )

    def _join(self) -> None:
        target = Target("dqlite://" + ",".join(self.join) + "/x", self.timeout)
        deadline = time.monotonic() + self.timeout
        steps = [
            (_wire.ADD, _wire.u64(self.id) + _wire.text(self.address)),
            (_wire.ASSIGN, _wire.u64(self.id) + _wire.u64(_wire.VOTER)),
        ]
        done = 0
        while done < len(steps):
            try:
                link = find_leader(target, lambda: False)
            except (sqlite3.OperationalError, Stopped) as exc:
                raise NodeError(f"could not join {', '.join(self.join)}: {exc}") from exc
            try:
                while done < len(steps):
                    link.call(*steps[done])
                    done += 1
            except (OSError, Failure) as exc:
                if time.monotonic() >= deadline:
                    raise NodeError(f"could not join {', '.join(self.join)}: {exc}") from None
                time.sleep(0.05)  # a leader change or a configuration change in progress
            finally:
                link.close()

    def stop(self) -> None:
        """Stop the node and free it (its data stays in ``data_dir``)."""
        handle, self._node = self._node, None
        if handle is None:
            return
        lib = _load()
        rv = lib.dqlite_node_stop(handle)
        lib.dqlite_node_destroy(handle)
        if rv != 0:
            raise NodeError(f"dqlite could not stop the node at {self.address} ({rv})")


def _text(value: Optional[bytes]) -> str:
    return value.decode(errors="replace") if value else "no details"


Node.__module__ = "aiolite"
