"""The read-modify-write test of issue #5 through SQLAlchemy's ORM, on each driver.

30 AsyncSessions each run 10 transactions that read a counter row and add one.  A correct
driver ends at 300 or raises an error for every increment it did not apply; anything
else is a silently lost update.

    python -m benchmarks.sqlalchemy_rmw [--sessions 30] [--each 10]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from sqlalchemy import Integer
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Counter(Base):
    __tablename__ = "counter"
    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


async def rmw(
    engine: AsyncEngine, sessions: int, each: int
) -> tuple[int, int, list[OperationalError], float]:
    """Run the test; returns (final value, commits acknowledged, errors, seconds)."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine) as s:
        s.add(Counter(id=1, value=0))
        await s.commit()
    errors: list[OperationalError] = []
    committed = 0

    async def worker() -> None:
        nonlocal committed
        async with AsyncSession(engine) as session:
            for _ in range(each):
                try:
                    async with session.begin():
                        counter = await session.get(Counter, 1, populate_existing=True)
                        assert counter is not None
                        await asyncio.sleep(0)
                        counter.value += 1
                    committed += 1
                except OperationalError as exc:
                    errors.append(exc)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(sessions)))
    elapsed = time.perf_counter() - started
    async with AsyncSession(engine) as s:
        final = await s.get(Counter, 1)
        assert final is not None
        value = final.value
    await engine.dispose()
    return value, committed, errors, elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--each", type=int, default=10)
    args = parser.parse_args()
    expected = args.sessions * args.each
    print(f"{args.sessions} sessions x {args.each} ORM read-modify-write transactions")
    print(f"{'driver':<34}{'final':>7}{'errors':>8}{'lost':>6}{'tx/s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, url, opts) in enumerate(
            [
                ("sqlite+aiosqlite", "sqlite+aiosqlite:///{}", {}),
                (
                    "sqlite+aiolite (deferred)",
                    "sqlite+aiolite:///{}",
                    {"aiolite_begin": "deferred"},
                ),
                ("sqlite+aiolite (default)", "sqlite+aiolite:///{}", {}),
            ]
        ):
            path = Path(tmp) / f"rmw{i}.db"
            engine = create_async_engine(url.format(path)).execution_options(**opts)
            value, committed, errors, elapsed = await rmw(engine, args.sessions, args.each)
            lost = committed - value
            print(f"{name:<34}{value:>7}{len(errors):>8}{lost:>6}{committed / elapsed:>8.0f}")
    print(f"(a correct run: final = {expected} - errors, lost = 0)")


if __name__ == "__main__":
    asyncio.run(main())
