"""Finding the dqlite leader, and talking to one node: the transport under ``_client``.

A :class:`Target` is what a ``dqlite://host:port[,host:port...]/name`` URL names: the
nodes to ask, and what they taught about the cluster (its leader, its other members),
shared by every connection of a Database.  A :class:`Link` is one TCP connection to a
node, past the protocol handshake: it sends whole requests and receives whole responses,
checking a ``tick`` (a cancel, a time limit) while it waits.  :func:`find_leader` asks the
known nodes who leads, until one does or the Target's timeout passes.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any, Callable, Optional

from .._exceptions import NoLeaderError
from . import _wire
from ._wire import Failure, Reader

__all__ = ["TICK", "Link", "Stopped", "Target", "find_leader", "split_address"]

#: How long a blocked call sleeps between checks of the progress handler (a cancel, a
#: time limit) while it waits for a node.  Only calls that wait this long pay it.
TICK = 0.02
#: Dead peers without a reset (a cut network) are found by TCP keepalive: idle 2 s, then
#: 3 probes 1 s apart.
_KEEPALIVE = (2, 1, 3)


class Target:
    """Where a dqlite Database lives: ``dqlite://host:port[,host:port...]/name``."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        rest = url[len("dqlite://") :]
        hosts, _, name = rest.partition("/")
        name = name.split("?", 1)[0]
        addresses = [a.strip() for a in hosts.split(",") if a.strip()]
        if not addresses or not name:
            raise ValueError(
                f"a dqlite address is dqlite://host:port[,host:port...]/dbname, got {url!r}"
            )
        for a in addresses:
            split_address(a)
        self.url = url
        self.addresses = addresses
        self.name = name
        self.timeout = timeout
        self.leader: Optional[str] = None  # the last one found, shared by the connections
        self.lock = threading.Lock()
        self.schema_epoch = 0  # bumped by DDL sent through any connection of this Target

    def __repr__(self) -> str:
        return self.url

    def candidates(self) -> list[str]:
        with self.lock:
            first = [self.leader] if self.leader else []
            return first + [a for a in self.addresses if a != self.leader]

    def learn(self, leader: str, members: Iterable[str] = ()) -> None:
        with self.lock:
            self.leader = leader
            for a in [leader, *members]:
                if a and a not in self.addresses:
                    self.addresses.append(a)


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"a dqlite node address is host:port, got {address!r}")
    return host.strip("[]"), int(port)


class Link:
    """One TCP connection to a node, past the protocol handshake."""

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        sock = socket.create_connection(split_address(address), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the system's defaults
                idle, interval, count = _KEEPALIVE
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
            sock.sendall(_wire.u64(_wire.PROTOCOL_VERSION))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._head = bytearray(8)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def check_alive(self) -> None:
        """Raise ConnectionResetError if the node closed this idle connection (it died, or
        stopped serving): then a request is known not to have been sent."""
        sock = self.sock
        readable, _, _ = select.select((sock,), (), (), 0)  # one syscall, no exception
        if not readable:
            return  # open, nothing to read: the normal case
        if not sock.recv(1, socket.MSG_PEEK):
            raise ConnectionResetError(f"dqlite node {self.address} closed the connection")
        raise ConnectionResetError(f"dqlite node {self.address} sent an unexpected message")

    def send(self, data: bytes) -> None:
        self.sock.settimeout(None)
        self.sock.sendall(data)

    def _fill(self, buf: Any, tick: Optional[Callable[[], bool]]) -> None:
        view = memoryview(buf)
        sock = self.sock
        got = 0
        need = len(view)
        sock.settimeout(TICK if tick is not None else None)
        while got < need:
            try:
                n = sock.recv_into(view[got:])
            except socket.timeout:
                if tick is not None and tick():
                    raise Stopped() from None
                continue
            if n == 0:
                raise ConnectionResetError(f"dqlite node {self.address} closed the connection")
            got += n

    def receive(self, tick: Optional[Callable[[], bool]] = None) -> tuple[int, Reader]:
        """The next response: (type, its body).  ``tick`` is called while waiting; if it
        returns True the wait stops with Stopped (the link is then unusable)."""
        self._fill(self._head, tick)
        size, kind = _wire.header(bytes(self._head))
        body = bytearray(size)
        if size:
            self._fill(body, tick)
        return kind, Reader(bytes(body))

    def call(
        self, kind: int, body: bytes, tick: Optional[Callable[[], bool]] = None
    ) -> tuple[int, Reader]:
        self.send(_wire.message(kind, body))
        got, r = self.receive(tick)
        if got == _wire.R_FAILURE:
            raise r.failure()
        return got, r


class Stopped(Exception):
    """The wait for a node was stopped by an interrupt, a cancel or a time limit."""


def find_leader(target: Target, stop: Callable[[], bool]) -> Link:
    """A link to the leader, asking each known node in turn until ``target.timeout``."""
    deadline = time.monotonic() + target.timeout
    delay = 0.01
    tried: list[str] = []
    while True:
        for address in target.candidates():
            link = _ask(address, target)
            if link is not None:
                return link
            if address not in tried:
                tried.append(address)
        if stop():
            raise Stopped()
        if time.monotonic() >= deadline:
            raise NoLeaderError(
                f"no dqlite leader found in {target.timeout:g} s (asked {', '.join(tried)}): "
                "start the nodes (aiolite node ...), check the addresses, or wait for a "
                "majority of the cluster to be up"
            )
        time.sleep(delay)  # an election takes a few hundred ms: ask again soon
        delay = min(delay * 2, 0.2)


def _ask(address: str, target: Target) -> Optional[Link]:
    """A link to the leader if ``address`` is it, or knows who is; else None."""
    try:
        link = Link(address, min(target.timeout, 2.0))
    except OSError:
        return None
    try:
        _, r = link.call(_wire.LEADER, _wire.u64(0))
        r.u64()
        leader = r.text()
        if not leader:
            link.close()
            return None
        if leader != address:
            link.close()
            link = Link(leader, min(target.timeout, 2.0))
            _, r = link.call(_wire.LEADER, _wire.u64(0))
            r.u64()
            if r.text() != leader:
                link.close()
                return None
        _, r = link.call(_wire.CLUSTER, _wire.u64(1))
        members = [a for _, a, _ in _wire.servers(r)]
        target.learn(leader, members)
        return link
    except (OSError, Failure, ValueError):
        link.close()
        return None
