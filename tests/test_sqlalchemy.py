"""The sqlite+aiolite SQLAlchemy dialect: transactions, pools, streaming, exit, SQLModel.

SQLAlchemy's own compliance suite runs separately (tests/sqlalchemy_suite, make test-sqlalchemy).
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Optional

import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import String, event, select, text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402
from sqlalchemy.ext.asyncio import (  # noqa: E402
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column  # noqa: E402

import aiolite  # noqa: E402
from aiolite.ext.sqlalchemy import AioliteDialect  # noqa: E402
from script_runner import count_in_file_alone, load_file, run_script  # noqa: E402

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent

# SQLAlchemy's asyncio extension runs on asyncio only.
_ASYNCIO: list[Any] = [pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio")]
if sys.platform != "win32":
    _ASYNCIO.append(pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"))


@pytest.fixture(params=_ASYNCIO)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


# benchmarks/sqlalchemy_rmw.py: its read-modify-write run is the test.
rmw_benchmark = load_file(ROOT / "benchmarks" / "sqlalchemy_rmw.py", "sqlalchemy_rmw")
Counter = rmw_benchmark.Counter


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(f"sqlite+aiolite:///{tmp_path / 'sa.db'}")
    async with eng.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(Counter.metadata.create_all)
    yield eng
    await eng.dispose()


async def _read_modify_write(
    engine: AsyncEngine, sessions: int, each: int
) -> tuple[int, list[OperationalError]]:
    """30 sessions x 10 ORM transactions that read the counter and add one."""
    value, committed, errors, _ = await rmw_benchmark.rmw(engine, sessions, each)
    assert value == committed  # never a lost update, whatever the mode
    return value, errors


def test_entry_point_registers_the_dialect() -> None:
    from sqlalchemy.dialects import registry

    assert registry.load("sqlite.aiolite") is AioliteDialect
    url = sqlalchemy.engine.make_url("sqlite+aiolite:///x.db")
    assert url.get_dialect() is AioliteDialect


async def test_read_modify_write_immediate_sessions_exact_total(engine: AsyncEngine) -> None:
    """The issue's test: 30 sessions x 10 RMW transactions, write sessions in IMMEDIATE
    mode: zero errors and exactly 300."""
    writers = engine.execution_options(aiolite_begin="immediate")
    total, errors = await _read_modify_write(writers, 30, 10)
    assert errors == []
    assert total == 300


async def test_read_modify_write_immediate_url_option(tmp_path: Path) -> None:
    eng = create_async_engine(f"sqlite+aiolite:///{tmp_path / 'u.db'}?begin=immediate")
    try:
        async with eng.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        total, errors = await _read_modify_write(eng, 30, 10)
    finally:
        await eng.dispose()
    assert errors == []
    assert total == 300


async def test_read_modify_write_on_the_plain_url(engine: AsyncEngine) -> None:
    """The issue's test on the plain sqlite+aiolite URL (immediate by default, writers
    queued in the process): 30 sessions x 10 read-modify-writes, exactly 300, 0 errors."""
    total, errors = await _read_modify_write(engine, 30, 10)
    assert errors == []
    assert total == 300


async def test_read_modify_write_deferred_never_loses_an_update(engine: AsyncEngine) -> None:
    """Deferred sessions (the read path) that write after reading: a conflicting write
    fails loudly (and says what to do) instead of silently overwriting another commit."""
    total, errors = await _read_modify_write(
        engine.execution_options(aiolite_begin="deferred"), 30, 10
    )
    assert total + len(errors) == 300
    assert errors, "30 concurrent deferred read-modify-writes should conflict"
    message = str(errors[0].orig)
    assert isinstance(errors[0].orig, sqlite3.OperationalError)
    assert "BEGIN IMMEDIATE" in message
    assert "aiolite_begin='immediate'" in message


async def test_first_read_starts_the_transaction(engine: AsyncEngine) -> None:
    """A read pins a snapshot: another connection's commit is not seen until the
    transaction ends (sqlite3's legacy mode reads outside any transaction)."""
    async with AsyncSession(engine) as s:
        s.add(Counter(id=1, value=1))
        await s.commit()
    reading = engine.execution_options(aiolite_begin="deferred")  # the read path
    async with reading.connect() as reader:
        first = (await reader.execute(text("SELECT value FROM counter"))).scalar_one()
        async with engine.begin() as writer:
            await writer.execute(text("UPDATE counter SET value = 2"))
        again = (await reader.execute(text("SELECT value FROM counter"))).scalar_one()
        assert reader.sync_connection is not None
        assert reader.sync_connection.connection.driver_connection.in_transaction
        await reader.commit()
        after = (await reader.execute(text("SELECT value FROM counter"))).scalar_one()
    assert (first, again, after) == (1, 1, 2)


async def test_begin_is_sent_once_and_only_when_needed(engine: AsyncEngine) -> None:
    sent: list[str] = []
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, aiolite.Connection)
        await driver.set_trace_callback(sent.append)
        await conn.begin()
        await conn.rollback()  # an empty transaction: nothing sent
        async with conn.begin():
            await conn.execute(text("SELECT 1"))
            await conn.execute(text("SELECT 2"))
        await driver.set_trace_callback(None)
    assert sent == ["BEGIN IMMEDIATE", "SELECT 1", "SELECT 2", "COMMIT"]


async def test_begin_execution_option_is_reset_on_return_to_pool(engine: AsyncEngine) -> None:
    sent: list[str] = []
    async with engine.connect() as conn:
        await conn.execution_options(aiolite_begin="deferred")
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.set_trace_callback(sent.append)
        await conn.execute(text("SELECT 1"))
        await conn.commit()
        await driver.set_trace_callback(None)
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.set_trace_callback(sent.append)
        await conn.execute(text("SELECT 1"))
        await conn.commit()
        await driver.set_trace_callback(None)
    assert sent == ["BEGIN DEFERRED", "SELECT 1", "COMMIT", "BEGIN IMMEDIATE", "SELECT 1", "COMMIT"]
    with pytest.raises(ValueError, match="deferred' or 'immediate"):
        async with engine.connect() as conn:
            await conn.execution_options(aiolite_begin="exclusive")


async def test_a_task_waiting_for_its_own_write_lock_fails_at_once(engine: AsyncEngine) -> None:
    """One task, two sessions that both write: the second would wait for the first
    forever; it fails at once and says what to do."""
    started = time.monotonic()
    async with AsyncSession(engine) as first, AsyncSession(engine) as second:
        first.add(Item(id=1, name="a"))
        await first.flush()
        second.add(Item(id=2, name="b"))
        with pytest.raises(OperationalError, match="would wait for itself"):
            await second.flush()
    assert time.monotonic() - started < 2


async def test_writers_queue_in_order_and_a_long_holder_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Writers of one file, across two engines, take the write gate in arrival order; a
    transaction that holds it past hold_warning is logged with where its task waits; one
    that waits past write_timeout says how long, behind how many, held how long."""
    url = f"sqlite+aiolite:///{tmp_path / 'q.db'}?hold_warning=0.2&write_timeout=1"
    e1, e2 = create_async_engine(url), create_async_engine(url)
    try:
        async with e1.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        order: list[int] = []

        async def writer(k: int, engine: AsyncEngine, hold: float, delay: float = 0) -> None:
            async with AsyncSession(engine) as s:
                await s.connection()  # checked out (and connected) before the race
                await asyncio.sleep(delay)  # then arrive at the gate in k's order
                s.add(Item(id=k, name=str(k)))
                await s.flush()
                order.append(k)
                await asyncio.sleep(hold)
                await s.commit()

        with caplog.at_level("WARNING", logger="aiolite"):
            first = asyncio.ensure_future(writer(1, e1, 0.4))
            await asyncio.sleep(0.05)
            rest = [
                asyncio.ensure_future(writer(k, (e1, e2)[k % 2], 0, 0.02 * k)) for k in range(2, 8)
            ]
            await asyncio.gather(first, *rest)
        assert order == list(range(1, 8))
        held = [r for r in caplog.records if "has held the write lock" in r.getMessage()]
        assert held
        assert "asyncio.sleep" in held[0].getMessage() or "writer" in held[0].getMessage()
        blocker = asyncio.ensure_future(writer(100, e1, 1.5))
        await asyncio.sleep(0.05)
        with pytest.raises(OperationalError, match=r"waited 1\.\d s .* behind 1 writer"):
            await writer(101, e2, 0)
        await blocker
    finally:
        await e1.dispose()
        await e2.dispose()


async def test_savepoints_roll_back_only_their_part(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as s, s.begin():
        s.add(Item(id=1, name="kept"))
        nested = await s.begin_nested()
        s.add(Item(id=2, name="dropped"))
        await s.flush()
        await nested.rollback()
        s.add(Item(id=3, name="also kept"))
    async with AsyncSession(engine) as s:
        names = (await s.scalars(select(Item.name).order_by(Item.id))).all()
    assert names == ["kept", "also kept"]


async def test_rollback_undoes_ddl_and_writes(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("CREATE TABLE scratch (x)"))
        await conn.execute(text("INSERT INTO scratch VALUES (1)"))
        await conn.rollback()
        tables = (
            await conn.execute(text("SELECT name FROM sqlite_master WHERE name = 'scratch'"))
        ).all()
    assert tables == []


async def test_autocommit_isolation_level(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.execute(text("INSERT INTO item (id, name) VALUES (7, 'x')"))
        driver = (await conn.get_raw_connection()).driver_connection
        assert not driver.in_transaction
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT name FROM item"))).all()
    assert rows == [("x",)]


async def test_production_pragmas_by_default_and_overridable(tmp_path: Path) -> None:
    async def pragmas(url: str) -> tuple[Any, ...]:
        eng = create_async_engine(url)
        try:
            async with eng.connect() as conn:
                values = []
                for name in ("journal_mode", "foreign_keys", "synchronous"):
                    values.append((await conn.execute(text(f"PRAGMA {name}"))).scalar_one())
                return tuple(values)
        finally:
            await eng.dispose()

    assert await pragmas(f"sqlite+aiolite:///{tmp_path / 'a.db'}") == ("wal", 1, 1)
    tuned = f"sqlite+aiolite:///{tmp_path / 'b.db'}?journal_mode=delete&foreign_keys=off"
    assert await pragmas(tuned) == ("delete", 0, 1)
    with pytest.raises(ValueError, match="invalid value '1;DROP' for pragma 'synchronous'"):
        await pragmas(f"sqlite+aiolite:///{tmp_path / 'c.db'}?synchronous=1;DROP")
    bad_name = create_async_engine(
        f"sqlite+aiolite:///{tmp_path / 'd.db'}",
        connect_args={"pragmas": {"x; DROP TABLE t": 1}},
    )
    try:
        with pytest.raises(ValueError, match="invalid pragma name"):
            async with bad_name.connect():
                pass
    finally:
        await bad_name.dispose()


async def test_foreign_keys_are_enforced(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        await conn.execute(text("CREATE TABLE child (pid INTEGER REFERENCES parent(id))"))
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="FOREIGN KEY"):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO child VALUES (42)"))


async def test_memory_database_is_shared_by_the_engine_pool() -> None:
    """:memory: is one database per engine, with a real connection per session, so two
    sessions never share one transaction (as they do on one StaticPool connection)."""
    eng = create_async_engine("sqlite+aiolite://?timeout=0.2")
    try:
        assert type(eng.pool).__name__ == "AsyncAdaptedQueuePool"
        async with eng.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        reading = eng.execution_options(aiolite_begin="deferred")
        async with eng.connect() as a, reading.connect() as b:
            await a.execute(text("INSERT INTO item (id, name) VALUES (1, 'uncommitted')"))
            # In memory there is no WAL: a writer blocks readers until it commits.
            with pytest.raises(OperationalError, match="locked"):
                await b.execute(text("SELECT count(*) FROM item"))
            await b.rollback()
            await a.commit()
            seen_by_b = (await b.execute(text("SELECT count(*) FROM item"))).scalar_one()
        await eng.dispose()  # the engine keeps its database after closing every connection
        async with eng.connect() as d:
            after_dispose = (await d.execute(text("SELECT count(*) FROM item"))).scalar_one()
    finally:
        await eng.dispose()
    assert (seen_by_b, after_dispose) == (1, 1)
    other = create_async_engine("sqlite+aiolite://")
    try:
        async with other.connect() as conn:
            tables = (await conn.execute(text("SELECT count(*) FROM sqlite_master"))).scalar()
    finally:
        await other.dispose()
    assert tables == 0  # each engine has its own in-memory database


async def test_file_database_gets_a_queue_pool(engine: AsyncEngine) -> None:
    assert type(engine.pool).__name__ == "AsyncAdaptedQueuePool"


async def test_stream_results_fetches_in_chunks(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO item (id, name) VALUES (:id, :name)"),
            [{"id": i, "name": f"n{i}"} for i in range(1, 1001)],
        )
    async with engine.connect() as conn:
        result = await conn.stream(select(Item.id).order_by(Item.id))
        ids = [row[0] async for row in result]
        partitions = 0
        result = await conn.stream(select(Item.id).execution_options(yield_per=100))
        async for part in result.partitions():
            assert len(part) == 100
            partitions += 1
    assert ids == list(range(1, 1001))
    assert partitions == 10


async def test_errors_are_sqlite3_classes_wrapped_by_sqlalchemy(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        with pytest.raises(OperationalError) as info:
            await conn.execute(text("SELECT * FROM no_such_table"))
    assert isinstance(info.value.orig, sqlite3.OperationalError)
    assert "no such table" in str(info.value.orig)


async def test_timeout_interrupts_a_long_query(engine: AsyncEngine) -> None:
    long_query = text(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    )
    async with engine.connect() as conn:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(conn.execute(long_query), 0.2)
        elapsed = time.monotonic() - started
    assert elapsed < 2.0
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT 41 + 1"))).scalar_one() == 42


async def test_regexp_and_custom_functions(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def add_function(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.create_function("twice", 1, lambda x: x * 2, deterministic=True)

    await engine.dispose()  # new connections get the function
    async with engine.connect() as conn:
        doubled = (await conn.execute(text("SELECT twice(21)"))).scalar_one()
        matched = (
            await conn.execute(select(text("'abc'")).where(text("'abc' REGEXP '^a.c$'")))
        ).scalar_one()
    assert (doubled, matched) == (42, "abc")


_models: dict[str, Any] = {}


def _hero_model() -> Any:
    """SQLModel's Hero table, defined once (a second definition warns)."""
    if "Hero" not in _models:
        sqlmodel = pytest.importorskip("sqlmodel")

        class Hero(sqlmodel.SQLModel, table=True):  # type: ignore[call-arg,misc]
            id: Optional[int] = sqlmodel.Field(default=None, primary_key=True)
            name: str

        _models["Hero"] = Hero
    return _models["Hero"]


async def test_sqlmodel_works(tmp_path: Path) -> None:
    hero = _hero_model()
    eng = create_async_engine(f"sqlite+aiolite:///{tmp_path / 'heroes.db'}")
    try:
        async with eng.begin() as conn:
            await conn.run_sync(hero.metadata.create_all, tables=[hero.__table__])
        sessions = async_sessionmaker(eng, expire_on_commit=False)
        async with sessions() as s:
            s.add_all([hero(name="Deadpond"), hero(name="Spider-Boy")])
            await s.commit()
        async with sessions() as s:
            names = (await s.scalars(select(hero.name).order_by(hero.id))).all()
    finally:
        await eng.dispose()
    assert names == ["Deadpond", "Spider-Boy"]


def test_no_hang_at_exit_without_dispose(tmp_path: Path) -> None:
    """An engine with pooled connections, never disposed: the process exits at once."""
    ran = run_script(
        tmp_path,
        f"""
        import asyncio
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine("sqlite+aiolite:///{tmp_path / "exit.db"}")

        async def main():
            async with engine.connect() as a, engine.connect() as b:
                await a.execute(text("CREATE TABLE t (x)"))
                await a.commit()
                print((await b.execute(text("SELECT count(*) FROM t"))).scalar())

        asyncio.run(main())
        """,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "0"
    assert ran.stderr == ""
    assert ran.seconds < 20


# ---- pool hygiene (issue #18) ----


async def test_pre_ping_keeps_immediate_writers_immediate(tmp_path: Path) -> None:
    """pool_pre_ping=True: the ping opens no transaction, so immediate writers still queue
    with BEGIN IMMEDIATE: 10 tasks x 20 read-modify-writes, 0 errors, exact total."""
    eng = create_async_engine(f"sqlite+aiolite:///{tmp_path / 'ping.db'}", pool_pre_ping=True)
    try:
        async with eng.begin() as conn:
            await conn.run_sync(Counter.metadata.create_all)
        writers = eng.execution_options(aiolite_begin="immediate")
        total, errors = await _read_modify_write(writers, 10, 20)
        assert errors == []
        assert total == 200
    finally:
        await eng.dispose()


async def _stale_read_after_abandoned_stream(eng: AsyncEngine, how: str) -> None:
    Session = async_sessionmaker(eng, expire_on_commit=False)
    async with eng.begin() as conn:
        await conn.execute(text("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INT)"))
        await conn.execute(text("INSERT INTO acct VALUES (1, 100)"))
        await conn.execute(
            text("INSERT INTO item (id, name) VALUES (:id, :name)"),
            [{"id": i, "name": f"n{i}"} for i in range(1, 501)],
        )
    kept: list[Any] = []  # the result objects stay referenced, half-read
    if how == "conn.stream":
        async with eng.connect() as conn:
            result = await conn.stream(select(Item.id))
            await result.fetchmany(3)
            kept.append(result)
    else:
        async with Session() as session:
            stmt = select(Item.id)
            if how == "yield_per":
                stmt = stmt.execution_options(yield_per=10)
            result = await session.stream(stmt)
            await result.fetchmany(3)
            kept.append(result)
    # Another connection of the process writes meanwhile.
    other = sqlite3.connect(eng.url.database)  # type: ignore[arg-type]
    other.execute("UPDATE acct SET bal = 101")
    other.commit()
    other.close()
    async with Session() as session:  # pool_size=1: the same connection as the stream's
        bal = (await session.execute(text("SELECT bal FROM acct"))).scalar_one()
        assert bal == 101, "the next session read a snapshot pinned by the old stream"
        await session.execute(text("UPDATE acct SET bal = bal + 1"))
        await session.commit()
    async with eng.connect() as conn:
        row = (await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))).one()
        assert row[0] == 0, "a stream's snapshot kept the checkpoint busy"
        assert (await conn.execute(text("SELECT bal FROM acct"))).scalar_one() == 102
    assert kept


@pytest.mark.parametrize("how", ["conn.stream", "session.stream", "yield_per"])
async def test_abandoned_stream_never_pins_a_snapshot(tmp_path: Path, how: str) -> None:
    """A stream abandoned half-read with its result still referenced: the connection's
    return to the pool ends it, so the next session reads the latest data, can write,
    and a TRUNCATE checkpoint completes."""
    eng = create_async_engine(f"sqlite+aiolite:///{tmp_path / 'st.db'}", pool_size=1)
    try:
        async with eng.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        await _stale_read_after_abandoned_stream(eng, how)
    finally:
        await eng.dispose()


def test_exit_without_dispose_leaves_the_file_complete(tmp_path: Path) -> None:
    """Commit 1000 rows and exit without engine.dispose(): no -wal is left, and the file
    copied alone holds every row."""
    ran = run_script(
        tmp_path,
        f"""
            import asyncio, warnings
            from sqlalchemy import text
            from sqlalchemy.ext.asyncio import create_async_engine
            warnings.simplefilter("ignore", ResourceWarning)
            engine = create_async_engine("sqlite+aiolite:///{tmp_path / "app.db"}")
            async def main():
                async with engine.begin() as conn:
                    await conn.execute(text("CREATE TABLE t(x)"))
                    await conn.execute(
                        text("INSERT INTO t VALUES (:x)"), [{{"x": i}} for i in range(1000)]
                    )
            asyncio.run(main())
        """,
    )
    assert ran.returncode == 0, ran.stderr
    assert not (tmp_path / "app.db-wal").exists()
    assert count_in_file_alone(tmp_path / "app.db", "t") == 1000
