"""aiolite on dqlite: the wire client's rules, the guards, cancellation, nodes, failover.

The Database API itself runs on a dqlite node in test_database.py and test_types.py (the
``location`` fixture); this module tests what only a cluster has.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import aiolite
from aiolite._dqlite import _node, _sql, _wire
from aiolite._dqlite._client import Connection
from aiolite._dqlite._leader import Target
from dqlite_cluster import Cluster, NodeProcess, require, running

pytestmark = pytest.mark.anyio


@pytest.fixture
async def cdb(dqlite_node: Cluster) -> AsyncIterator[aiolite.Database]:
    async with aiolite.open(dqlite_node.url(), readers=2) as db:
        await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        yield db


@pytest.fixture(scope="module")
def trio_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three nodes, for the tests that kill one (module scope: they restart it)."""
    with running(tmp_path_factory.mktemp("dqlite3"), 3) as cluster:
        yield cluster


# ---- what the client decides from the SQL alone ----


def test_statements_are_routed_by_what_they_do() -> None:
    assert _sql.route("SELECT 1") == _sql.QUERY
    assert _sql.route("  -- c\n values (1)") == _sql.QUERY
    assert _sql.route("WITH x AS (SELECT 1) SELECT * FROM x") == _sql.QUERY
    assert _sql.route("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x") == _sql.EXEC
    assert _sql.route("PRAGMA user_version") == _sql.QUERY
    assert _sql.route("PRAGMA table_info(t)") == _sql.QUERY
    assert _sql.route("PRAGMA user_version = 3") == _sql.EXEC
    assert _sql.route("INSERT INTO t VALUES ('RETURNING')") == _sql.EXEC  # a literal
    assert _sql.route("UPDATE t SET v = 1") == _sql.EXEC
    assert _sql.route("BEGIN IMMEDIATE") == _sql.EXEC
    for refused in [
        "INSERT INTO t(v) VALUES (1) RETURNING id",
        "WITH x AS (SELECT 1) DELETE FROM t RETURNING *",
        "PRAGMA journal_mode=DELETE",
        "PRAGMA main.page_size = 512",
        "PRAGMA wal_checkpoint(TRUNCATE)",
        "VACUUM",
        "ATTACH 'x.db' AS x",
    ]:
        with pytest.raises(sqlite3.NotSupportedError, match="dqlite"):
            _sql.route(refused)


def test_named_parameters_take_sqlite_numbers() -> None:
    assert _sql.bind("SELECT :a, :b, :a, @c", {"a": 1, "b": 2, "c": 3}) == [1, 2, 3]
    assert _sql.bind("SELECT ':x', :y", {"y": 5}) == [5]  # ':x' is a string
    assert _sql.bind("SELECT ?, ?", (1, 2)) == (1, 2)
    with pytest.raises(sqlite3.ProgrammingError, match=":b"):
        _sql.bind("SELECT :a, :b", {"a": 1})


def test_scripts_split_like_sqlite() -> None:
    script = (
        "CREATE TABLE a(x); -- one; two\n"
        "CREATE TRIGGER tr AFTER INSERT ON a BEGIN SELECT 1; SELECT 2; END;"
        "INSERT INTO a VALUES (';');;  ; "
        "SELECT 1"
    )
    parts = _sql.split(script)
    assert len(parts) == 4
    assert parts[1].strip().startswith("-- one; two\nCREATE TRIGGER")
    assert parts[1].rstrip().endswith("END;")
    assert parts[3].strip() == "SELECT 1"


def test_busy_timeout_stays_on_the_client(dqlite_node: Cluster) -> None:
    conn = Connection(Target(dqlite_node.url()))
    try:
        assert conn.execute("PRAGMA busy_timeout = 2500;").fetchall() == [(2500,)]
        assert conn.busy_timeout_ms == 2500
        assert conn.execute("PRAGMA busy_timeout").fetchall() == [(2500,)]
        with pytest.raises(sqlite3.OperationalError, match="milliseconds"):
            conn.execute("PRAGMA busy_timeout = 'soon'")
    finally:
        conn.close()


def test_parameters_encode_as_sqlite_binds_them() -> None:
    data = _wire.encode_params([1, 2.5, "é", b"\x00\x01", None, True])
    assert data[0] == 6
    assert list(data[1:7]) == [_wire.INTEGER, _wire.FLOAT, _wire.TEXT, _wire.BLOB, _wire.NULL, 1]
    assert len(data) % 8 == 0
    with pytest.raises(OverflowError):
        _wire.encode_params([1 << 64])
    with pytest.raises(sqlite3.ProgrammingError, match="parameter 1"):
        _wire.encode_params([object()])
    with pytest.raises(sqlite3.ProgrammingError, match="NUL"):
        _wire.encode_params(["a\0b"])
    with pytest.raises(sqlite3.ProgrammingError, match="at most 255"):
        _wire.encode_params([0] * 256)


# ---- the Database on a node: values, guards, what does not apply ----


async def test_values_round_trip(cdb: aiolite.Database) -> None:
    await cdb.execute("CREATE TABLE v(i INTEGER, f REAL, s TEXT, b BLOB, n)")
    values = (-(1 << 63), 1.25, "naïve ☃", b"\x00\xff" * 1000, None)
    await cdb.execute("INSERT INTO v VALUES (?, ?, ?, ?, ?)", values)
    await cdb.execute("INSERT INTO v VALUES (:i, :f, :s, :b, :n)", dict(zip("ifsbn", values)))
    rows = await cdb.fetchall("SELECT * FROM v", row_factory=tuple)
    assert rows == [values, values]
    # Many rows arrive in several messages.
    await cdb.executemany("INSERT INTO t(v) VALUES (?)", [(f"row {i}" * 10,) for i in range(3000)])
    rows = await cdb.fetchall("SELECT id, v FROM t ORDER BY id", row_factory=tuple)
    assert [r[0] for r in rows] == list(range(1, 3001))
    assert rows[-1][1] == "row 2999" * 10
    seen = [r[0] async for r in cdb.iterate("SELECT id FROM t ORDER BY id", row_factory=tuple)]
    assert seen == list(range(1, 3001))


async def test_guards_refuse_before_the_node_sees_it(cdb: aiolite.Database) -> None:
    await cdb.execute("INSERT INTO t(v) VALUES ('a')")
    with pytest.raises(sqlite3.NotSupportedError, match="RETURNING"):
        await cdb.execute("INSERT INTO t(v) VALUES ('b') RETURNING id")
    with pytest.raises(sqlite3.NotSupportedError, match="journal_mode"):
        await cdb.execute("PRAGMA journal_mode=DELETE")
    with pytest.raises(sqlite3.NotSupportedError, match="page_size"):
        await cdb.executescript("CREATE TABLE u(x); PRAGMA page_size=1024;")
    with pytest.raises(sqlite3.NotSupportedError, match="VACUUM"):
        await cdb.execute("VACUUM")
    # The node is alive and nothing of the refused statements ran.
    assert await cdb.fetchall("SELECT v FROM t", row_factory=tuple) == [("a",)]
    assert await cdb.fetchval("PRAGMA journal_mode") == "wal"


async def test_what_does_not_apply_says_so(dqlite_node: Cluster, cdb: aiolite.Database) -> None:
    with pytest.raises(sqlite3.NotSupportedError, match="checkpoints its own"):
        await cdb.checkpoint()
    with pytest.raises(sqlite3.NotSupportedError, match="backup"):
        await cdb.vacuum_into("/tmp/x.db")
    health = await cdb.health()
    assert health.path == cdb.path
    assert health.path.startswith("dqlite://")
    assert health.journal_mode == "wal"
    assert health.file_bytes == health.page_size * health.page_count > 0
    assert health.wal_bytes is None
    assert await cdb.integrity_check() == []
    assert await cdb.foreign_key_check() == []
    url = dqlite_node.url()
    with pytest.raises(ValueError, match="wal_limit"):
        aiolite.open(url, wal_limit=1000)
    with pytest.raises(ValueError, match="external"):
        aiolite.open(url, checkpoints="external")
    with pytest.raises(sqlite3.NotSupportedError, match="owns it"):
        aiolite.open(url, pragmas={"journal_mode": "DELETE"})
    if sys.version_info >= (3, 11):
        with pytest.raises(sqlite3.NotSupportedError, match="untrusted"):
            aiolite.open(url, untrusted=True)
    with pytest.raises(ValueError, match="dqlite://host:port"):
        aiolite.open("dqlite://127.0.0.1:1/")


async def test_connect_points_to_open_for_a_cluster() -> None:
    with pytest.raises(sqlite3.NotSupportedError, match=r"aiolite\.open\('dqlite://"):
        await aiolite.connect("dqlite://127.0.0.1:9001/app")


async def test_no_leader_is_a_clear_error() -> None:
    with pytest.raises(aiolite.NoLeaderError, match="no dqlite leader found"):
        await aiolite.open("dqlite://127.0.0.1:9/app?timeout=0.3")


async def test_a_cancelled_open_stops_looking_for_a_leader() -> None:
    start = time.monotonic()
    with anyio.move_on_after(0.3) as scope:
        await aiolite.open("dqlite://127.0.0.1:9/app?timeout=20")
    assert scope.cancelled_caught
    assert time.monotonic() - start < 2.0


async def test_one_statement_at_a_time(cdb: aiolite.Database) -> None:
    """As sqlite3: execute() refuses two statements (dqlite would run both, or, for a
    query, only the first); executescript() runs them in order."""
    with pytest.raises(sqlite3.ProgrammingError, match="one statement at a time"):
        await cdb.execute("INSERT INTO t(v) VALUES ('a'); INSERT INTO t(v) VALUES ('b')")
    with pytest.raises(sqlite3.ProgrammingError, match="one statement at a time"):
        await cdb.fetchall("SELECT 1; DELETE FROM t")
    await cdb.execute("INSERT INTO t(v) VALUES ('x;y');")  # a ';' in a string, and a last ';'
    await cdb.executescript("INSERT INTO t(v) VALUES ('c'); INSERT INTO t(v) VALUES ('d');")
    rows = await cdb.fetchall("SELECT v FROM t ORDER BY id", row_factory=tuple)
    assert rows == [("x;y",), ("c",), ("d",)]


async def test_backup_is_a_sqlite_file(cdb: aiolite.Database, tmp_path: Path) -> None:
    await cdb.executemany("INSERT INTO t(v) VALUES (?)", [(str(i),) for i in range(500)])
    pages = await cdb.backup(tmp_path / "copy.db")
    assert pages > 0
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("SELECT count(*), max(v) FROM t").fetchone() == (500, "99")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    copy.close()


async def test_readonly_and_statistics(dqlite_node: Cluster) -> None:
    url = dqlite_node.url()
    async with aiolite.open(url) as db:
        await db.execute("CREATE TABLE t(x)")
        before = db.statistics().round_trips
        await db.execute("INSERT INTO t VALUES (1)")
        assert await db.fetchval("SELECT x FROM t") == 1
        assert db.statistics().round_trips - before == 2  # one job each: no BEGIN/COMMIT
    async with aiolite.open(url, readonly=True) as db:
        assert await db.fetchval("SELECT count(*) FROM t") == 1
        with pytest.raises(aiolite.ReadOnlyError):
            await db.execute("INSERT INTO t VALUES (2)")


# ---- cancellation and time limits ----

SLOW = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT i FROM r"


async def test_a_timed_out_query_stops_and_the_database_goes_on(cdb: aiolite.Database) -> None:
    await cdb.execute("INSERT INTO t(v) VALUES ('kept')")
    start = time.monotonic()
    with pytest.raises(aiolite.QueryTimeoutError):
        await cdb.fetchall(SLOW, timeout=0.3)  # an endless stream of rows
    assert time.monotonic() - start < 2.0
    start = time.monotonic()
    with anyio.move_on_after(0.3):
        await cdb.fetchall(SLOW)
    assert time.monotonic() - start < 2.0
    assert await cdb.fetchval("SELECT v FROM t") == "kept"


async def test_a_cancelled_transaction_is_rolled_back(cdb: aiolite.Database) -> None:
    await cdb.execute("INSERT INTO t(id, v) VALUES (1, 'before')")
    with anyio.move_on_after(0.3):
        async with cdb.transaction() as tx:
            await tx.execute("UPDATE t SET v = 'during' WHERE id = 1")
            await tx.fetchall(SLOW)  # cancelled here, with the UPDATE not committed
    assert await cdb.fetchval("SELECT v FROM t WHERE id = 1") == "before"
    async with cdb.transaction() as tx:  # the writer works afterwards
        await tx.execute("UPDATE t SET v = 'after' WHERE id = 1")
    assert await cdb.fetchval("SELECT v FROM t WHERE id = 1") == "after"


async def test_a_timed_out_read_inside_a_transaction_loses_it_clearly(
    cdb: aiolite.Database,
) -> None:
    """On dqlite, stopping a statement closes its connection: the node rolls the
    transaction back, and every later statement of it says so (never autocommits)."""

    async def transfer() -> None:
        async with cdb.transaction() as tx:
            await tx.execute("INSERT INTO t(v) VALUES ('lost')")
            with pytest.raises(aiolite.QueryTimeoutError):
                await tx.fetchall(SLOW, timeout=0.2)
            await tx.execute("INSERT INTO t(v) VALUES ('after')")

    with pytest.raises(aiolite.TransactionLostError):
        await transfer()
    assert await cdb.fetchval("SELECT count(*) FROM t") == 0
    await cdb.execute("INSERT INTO t(v) VALUES ('ok')")
    assert await cdb.fetchval("SELECT count(*) FROM t") == 1


async def test_seeded_transfers_under_random_cancels_keep_the_total(
    dqlite_node: Cluster,
) -> None:
    """Concurrent transfers between accounts, each cancelled at a random moment: the total
    never changes and every account stays >= 0 (no half-applied transaction)."""
    rng = random.Random(1613)
    async with aiolite.open(dqlite_node.url(), readers=2) as db:
        await db.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)")
        await db.executemany("INSERT INTO acct VALUES (?, 100)", [(i,) for i in range(8)])
        done = cancelled = 0

        async def transfer(src: int, dst: int, amount: int, limit: float) -> None:
            nonlocal done, cancelled
            with anyio.move_on_after(limit) as scope:
                async with db.transaction() as tx:
                    bal = await tx.fetchval("SELECT bal FROM acct WHERE id = ?", (src,))
                    if bal < amount:
                        return
                    await tx.execute("UPDATE acct SET bal = bal - ? WHERE id = ?", (amount, src))
                    await anyio.lowlevel.checkpoint()
                    await tx.execute("UPDATE acct SET bal = bal + ? WHERE id = ?", (amount, dst))
            if scope.cancelled_caught:
                cancelled += 1
            else:
                done += 1

        async with anyio.create_task_group() as tg:
            for _ in range(120):
                src, dst = rng.sample(range(8), 2)
                tg.start_soon(transfer, src, dst, rng.randint(1, 40), rng.uniform(0.001, 0.05))
        rows = await db.fetchall("SELECT bal FROM acct", row_factory=tuple)
        assert sum(b for (b,) in rows) == 800
        assert min(b for (b,) in rows) >= 0
        assert done > 0, (done, cancelled)
        assert cancelled > 0, (done, cancelled)


# ---- nodes ----


def test_a_missing_library_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_node, "_lib", None)
    monkeypatch.setattr(_node, "_LIBRARY", "libdqlite-not-here.so.0")
    monkeypatch.setattr(_node.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(aiolite.NodeError, match="apt-get install libdqlite0"):
        aiolite.Node("127.0.0.1:1", "/tmp/nowhere").start()


def test_an_in_process_node_keeps_its_identity(tmp_path: Path) -> None:
    require()
    from dqlite_cluster import free_port

    address = f"127.0.0.1:{free_port()}"
    with aiolite.Node(address, str(tmp_path / "n"), latency_ms=20) as node:
        assert node.running
        assert node.id == 1
        conn = Connection(Target(f"dqlite://{address}/app"))
        conn.execute("CREATE TABLE t(x)")
        conn.execute("INSERT INTO t VALUES (42)")
        conn.close()
    assert not node.running
    with aiolite.Node(address, str(tmp_path / "n"), latency_ms=20) as again:
        assert again.id == 1
        conn = Connection(Target(f"dqlite://{address}/app"))
        assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]
        conn.close()
    other = f"127.0.0.1:{free_port()}"
    with pytest.raises(aiolite.NodeError, match="belongs to the node at"):
        aiolite.Node(other, str(tmp_path / "n")).start()


def test_cli_migrates_and_backs_up_a_cluster(dqlite_node: Cluster, tmp_path: Path) -> None:
    url = dqlite_node.url()
    steps = tmp_path / "migrations"
    steps.mkdir()
    (steps / "0001_items.sql").write_text("CREATE TABLE items(id INTEGER PRIMARY KEY, n);")
    (steps / "0002_rows.sql").write_text("INSERT INTO items(n) VALUES (1), (2), (3);")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aiolite", *args], capture_output=True, text=True, timeout=60
        )

    ran = cli("migrate", url, str(steps))
    assert ran.returncode == 0, ran.stderr
    assert "applied 2 step(s)" in ran.stdout
    assert "schema version: 2" in ran.stdout
    ran = cli("backup", url, str(tmp_path / "copy.db"))
    assert ran.returncode == 0, ran.stderr
    assert "integrity ok" in ran.stdout
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("SELECT sum(n) FROM items").fetchone() == (6,)
    copy.close()


def test_node_cli_usage_errors() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aiolite", "node", "--bind", "nonsense", "--dir", "/tmp/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "host:port" in proc.stderr


# ---- three nodes: failover ----


async def test_failover_loses_no_acknowledged_write_and_applies_none_twice(
    trio_cluster: Cluster,
) -> None:
    """Kill -9 the leader during a write load: every acknowledged insert is there once, an
    insert whose outcome was unknown is there at most once, transactions in flight fail
    with a ClusterError, and the writes go on after the election."""
    url = trio_cluster.url(timeout=15)
    acked: list[int] = []
    unknown: list[int] = []
    errors: list[BaseException] = []
    async with aiolite.open(url, readers=1) as db:
        await db.execute("CREATE TABLE w(k INTEGER NOT NULL, via TEXT)")  # no key: dups show
        leader = trio_cluster.leader()
        killed_at = 0.0
        first_after: list[float] = []
        warmed_up = anyio.Event()

        async def load() -> None:
            for k in range(1, 100_000):
                if killed_at and len(first_after) >= 1 and len(acked) > k_at_kill + 30:
                    return
                try:
                    if k % 3:
                        await db.execute("INSERT INTO w(k, via) VALUES (?, 'auto')", (k,))
                    else:
                        async with db.transaction() as tx:
                            await tx.execute("INSERT INTO w(k, via) VALUES (?, 'tx')", (k,))
                            await tx.fetchval("SELECT count(*) FROM w")
                except aiolite.CommitUnknownError as exc:
                    unknown.append(k)
                    errors.append(exc)
                    continue
                except aiolite.ClusterError as exc:
                    errors.append(exc)
                    continue
                acked.append(k)
                if len(acked) == 40:
                    warmed_up.set()
                if killed_at and not first_after:
                    first_after.append(time.monotonic() - killed_at)

        k_at_kill = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(load)
            await warmed_up.wait()
            k_at_kill = len(acked)
            killed_at = time.monotonic()
            leader.kill()
        assert first_after, "no write succeeded after the leader was killed"
        assert first_after[0] < 10.0
        rows = await db.fetchall("SELECT k, count(*) FROM w GROUP BY k", row_factory=tuple)
    counts = dict(rows)
    assert all(n == 1 for n in counts.values()), "a write was applied twice"
    assert all(k in counts for k in acked), "an acknowledged write was lost"
    assert set(counts) <= set(acked) | set(unknown), "a failed write was applied"
    assert all(isinstance(e, aiolite.ClusterError) for e in errors)
    # The killed node comes back as a follower and catches up.
    leader.start()
    trio_cluster.wait_for_voters(3)


async def test_reads_and_refused_writes_follow_the_new_leader(trio_cluster: Cluster) -> None:
    async with aiolite.open(trio_cluster.url(timeout=15), readers=1) as db:
        await db.execute("CREATE TABLE r(x)")
        await db.execute("INSERT INTO r VALUES (1)")
        leader = trio_cluster.leader()
        leader.kill()
        try:
            # Both go to the new leader after the election, without an error.
            assert await db.fetchval("SELECT count(*) FROM r") == 1
            await db.execute("INSERT INTO r VALUES (2)")
            assert await db.fetchval("SELECT count(*) FROM r") == 2
            assert trio_cluster.leader().address != leader.address
        finally:
            leader.start()
            trio_cluster.wait_for_voters(3)


def test_a_follower_refuses_and_the_client_finds_the_leader(trio_cluster: Cluster) -> None:
    leader = trio_cluster.leader()
    follower = next(n for n in trio_cluster.nodes if n is not leader)
    conn = Connection(Target(f"dqlite://{follower.address}/app"))  # only a follower named
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS f(x)")
        conn.execute("INSERT INTO f VALUES (1)")
        assert conn.execute("SELECT count(*) >= 1 FROM f").fetchone() == (1,)
        assert conn.target.leader == leader.address
    finally:
        conn.close()


async def test_seeded_transfers_across_leader_kills_stay_consistent(
    trio_cluster: Cluster,
) -> None:
    """Transfers (two updates and a log row in one transaction) while the leader is killed
    at seeded random moments: the balances always equal the start plus the logged
    transfers (nothing half-applied), every acknowledged transfer is logged once, and one
    whose outcome was unknown at most once."""
    rng = random.Random(2026)
    acked: list[int] = []
    unknown: list[int] = []
    async with aiolite.open(trio_cluster.url(timeout=15), readers=1) as db:
        await db.executescript(
            "CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL);"
            "CREATE TABLE log(tid INTEGER NOT NULL, src INTEGER, dst INTEGER, amount INTEGER);"
        )
        await db.executemany("INSERT INTO acct VALUES (?, 1000)", [(i,) for i in range(5)])
        stop = anyio.Event()
        # Set once `want` more transfers were acknowledged (writes resumed after a kill).
        want: list[int] = []
        resumed: list[anyio.Event] = [anyio.Event()]

        async def transfers() -> None:
            tid = 0
            while not stop.is_set():
                tid += 1
                src, dst = rng.sample(range(5), 2)
                amount = rng.randint(1, 20)
                try:
                    async with db.transaction() as tx:
                        await tx.execute(
                            "UPDATE acct SET bal = bal - ? WHERE id = ?", (amount, src)
                        )
                        await tx.execute(
                            "UPDATE acct SET bal = bal + ? WHERE id = ?", (amount, dst)
                        )
                        await tx.execute(
                            "INSERT INTO log VALUES (?, ?, ?, ?)", (tid, src, dst, amount)
                        )
                except aiolite.CommitUnknownError:
                    unknown.append(tid)
                    continue
                except aiolite.ClusterError:
                    continue
                acked.append(tid)
                if want and len(acked) >= want[-1]:
                    resumed[-1].set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(transfers)
            for _ in range(2):
                await anyio.sleep(rng.uniform(0.2, 0.6))
                leader = trio_cluster.leader()
                leader.kill()
                resumed.append(anyio.Event())
                want.append(len(acked) + 10)
                with anyio.fail_after(20):
                    await resumed[-1].wait()

                def restart(node: NodeProcess = leader) -> None:
                    node.start()
                    trio_cluster.wait_for_voters(3)

                await anyio.to_thread.run_sync(restart)
            stop.set()
        bal = dict(await db.fetchall("SELECT id, bal FROM acct", row_factory=tuple))
        log = await db.fetchall("SELECT tid, src, dst, amount FROM log", row_factory=tuple)
    expected = dict.fromkeys(range(5), 1000)
    for _, src, dst, amount in log:
        expected[src] -= amount
        expected[dst] += amount
    assert bal == expected, "a transfer was half-applied"
    tids = [t for t, *_ in log]
    assert len(tids) == len(set(tids)), "a transfer was applied twice"
    assert set(acked) <= set(tids), "an acknowledged transfer was lost"
    assert set(tids) <= set(acked) | set(unknown), "a failed transfer was applied"
    assert len(acked) > 20


async def test_busy_waits_on_the_client_for_busy_timeout(dqlite_node: Cluster) -> None:
    """Two Databases (two processes, say) on one cluster database: a write that finds the
    other's transaction holding the lock waits for it (the client retries; the node never
    waits), and fails with "database is locked" once busy_timeout passes."""
    url = dqlite_node.url()
    for busy_timeout, hold in ((5.0, 0.3), (0.2, 1.0)):
        async with (
            aiolite.open(url, readers=1) as a,
            aiolite.open(url, readers=1, busy_timeout=busy_timeout) as b,
        ):
            await a.execute("CREATE TABLE IF NOT EXISTS t(x)")
            await a.execute("DELETE FROM t")
            held = anyio.Event()

            async def holder(
                db: aiolite.Database = a, held: anyio.Event = held, hold: float = hold
            ) -> None:
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO t VALUES (1)")
                    held.set()
                    await anyio.sleep(hold)

            async with anyio.create_task_group() as tg:
                tg.start_soon(holder)
                await held.wait()
                start = time.monotonic()
                if busy_timeout > hold:
                    await b.execute("INSERT INTO t VALUES (2)")  # after a's commit
                    assert time.monotonic() - start >= hold - 0.1
                else:
                    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                        await b.execute("INSERT INTO t VALUES (2)")
                    assert busy_timeout - 0.05 <= time.monotonic() - start < hold
            rows = await b.fetchall("SELECT x FROM t ORDER BY x", row_factory=tuple)
            assert rows == ([(1,), (2,)] if busy_timeout > hold else [(1,)])


def test_interrupt_ends_a_query_and_keeps_the_transaction(dqlite_node: Cluster) -> None:
    """Inside a transaction, a query stopped between batches, or a cursor closed before
    its last row, is ended with INTERRUPT: the transaction goes on and commits."""
    conn = Connection(Target(dqlite_node.url()))
    try:
        conn.execute("CREATE TABLE big(x)")
        conn.executemany("INSERT INTO big VALUES (?)", [("v" * 200,) for _ in range(2000)])
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO big VALUES ('mine')")
        cur = conn.execute("SELECT x FROM big")
        assert cur._more  # several batches
        conn.interrupt()
        with pytest.raises(sqlite3.OperationalError, match="interrupted"):
            cur.fetchall()
        assert len(cur.fetchall()) < 2000  # the query is over: what had arrived, no more
        assert conn.in_transaction
        cur = conn.execute("SELECT x FROM big")
        assert cur.fetchone() == ("v" * 200,)
        cur.close()  # 2000 rows left: INTERRUPT, the rest discarded
        assert conn.in_transaction
        conn.execute("COMMIT")
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (2001,)
        assert conn.reconnects == 0  # the same connection all along
    finally:
        conn.close()


async def test_a_stream_left_early_in_a_transaction_keeps_it(cdb: aiolite.Database) -> None:
    await cdb.executemany("INSERT INTO t(v) VALUES (?)", [("v" * 200,) for _ in range(2000)])
    async with cdb.transaction() as tx:
        await tx.execute("INSERT INTO t(v) VALUES ('mine')")
        async with tx.iterate("SELECT v FROM t ORDER BY id", row_factory=tuple) as rows:
            async for row in rows:
                assert row == ("v" * 200,)
                break
        await tx.execute("INSERT INTO t(v) VALUES ('after')")
    assert await cdb.fetchval("SELECT count(*) FROM t") == 2002


def test_repeated_writes_are_prepared_once_and_counts_are_checked(dqlite_node: Cluster) -> None:
    conn = Connection(Target(dqlite_node.url()))
    try:
        conn.execute("CREATE TABLE p(a, b)")
        for i in range(5):
            conn.execute("INSERT INTO p VALUES (?, ?)", (i, str(i)))
        assert list(conn._prepared) == ["INSERT INTO p VALUES (?, ?)"]  # sent by id
        conn.execute("ALTER TABLE p ADD COLUMN c")
        # The prepared statement follows the schema, as SQLite re-prepares it.
        with pytest.raises(sqlite3.OperationalError, match="3 columns but 2 values"):
            conn.execute("INSERT INTO p VALUES (?, ?)", (5, "5"))
        for _ in range(2):
            conn.execute("INSERT INTO p(a, b) VALUES (?, ?)", (5, "5"))
        assert len(conn._prepared) == 2
        assert conn.execute("SELECT count(*), sum(a), max(c) FROM p").fetchone() == (7, 20, None)
        with pytest.raises(sqlite3.ProgrammingError, match="uses 2, and there are 1"):
            conn.execute("INSERT INTO p VALUES (?, ?)", (1,))
        with pytest.raises(sqlite3.ProgrammingError, match="uses 2, and there are 3"):
            conn.execute("INSERT INTO p VALUES (:x, :y)", (1, 2, 3))
        conn.execute("DROP TABLE p")
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            conn.execute("INSERT INTO p VALUES (?, ?)", (1, "1"))
    finally:
        conn.close()


async def test_connection_settings_survive_a_leader_change(trio_cluster: Cluster) -> None:
    """Each connection's settings are set again on the new leader: readers stay query_only,
    and a pragma the app set on the writer holds."""
    async with aiolite.open(trio_cluster.url(timeout=15), readers=1) as db:
        await db.execute("CREATE TABLE s(x)")
        await db.execute("PRAGMA recursive_triggers = ON")
        assert await db._call(db._writer, _pragma, "recursive_triggers") == 1
        leader = trio_cluster.leader()
        leader.kill()
        try:
            assert await db.fetchval("SELECT count(*) FROM s") == 0  # reader reconnected
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                await db.fetchone("INSERT INTO s VALUES (1)")  # still query_only
            await db.execute("INSERT INTO s VALUES (2)")  # the writer reconnected
            assert await db._call(db._writer, _pragma, "recursive_triggers") == 1
            assert db._writer.worker.connection.reconnects >= 1
        finally:
            await anyio.to_thread.run_sync(leader.start)
            await anyio.to_thread.run_sync(trio_cluster.wait_for_voters, 3)


def _pragma(conn: Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
