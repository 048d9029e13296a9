"""What the sqlite+aiolite defaults cost a read-heavy app, through SQLAlchemy's ORM.

50 tasks each run ORM sessions: a read session fetches a row by key, a write session
updates one.  Read-heavy (95% reads) and mixed (50%) workloads, on sqlite+aiosqlite, on
sqlite+aiolite with every session on the default (BEGIN IMMEDIATE: reads queue with the
writers), and on sqlite+aiolite with the read sessions on the read path
(``aiolite_begin="deferred"``, as examples/fastapi_sqlalchemy.py does).

    python -m benchmarks.sqlalchemy_mix [--tasks 50] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import String, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROWS = 1000


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "account"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    balance: Mapped[int]


async def run(
    engine: AsyncEngine, reads: AsyncEngine, read_share: float, tasks: int, seconds: float
) -> tuple[int, int, int]:
    """Returns (reads done, writes done, errors)."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(
            Account.__table__.insert(),
            [{"id": i, "name": f"a{i}", "balance": 100} for i in range(ROWS)],
        )
    writer = async_sessionmaker(engine)
    reader = async_sessionmaker(reads)
    done = [0, 0, 0]
    deadline = time.perf_counter() + seconds
    rng = random.Random(5)

    async def worker() -> None:
        while time.perf_counter() < deadline:
            key = rng.randrange(ROWS)
            try:
                if rng.random() < read_share:
                    async with reader() as s:
                        (await s.execute(select(Account).where(Account.id == key))).scalar_one()
                    done[0] += 1
                else:
                    async with writer() as s, s.begin():
                        await s.execute(
                            update(Account)
                            .where(Account.id == key)
                            .values(balance=Account.balance + 1)
                        )
                    done[1] += 1
            except OperationalError:
                done[2] += 1

    await asyncio.gather(*(worker() for _ in range(tasks)))
    await engine.dispose()
    return done[0], done[1], done[2]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the hold warnings are not what is measured here
    print(f"{args.tasks} tasks, {args.seconds:g} s each; operations per second (errors)")
    print(f"{'driver':<44}{'read-heavy 95%':>18}{'mixed 50%':>18}")
    drivers = [
        ("sqlite+aiosqlite", "sqlite+aiosqlite:///{}", None),
        ("sqlite+aiolite, every session default", "sqlite+aiolite:///{}", None),
        ("sqlite+aiolite, reads on the read path", "sqlite+aiolite:///{}", "deferred"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, url, read_mode in drivers:
            cells = []
            for i, share in enumerate((0.95, 0.5)):
                path = Path(tmp) / f"{name.split(',')[0]}-{read_mode}-{i}.db"
                engine = create_async_engine(url.format(path))
                reads = (
                    engine
                    if read_mode is None
                    else engine.execution_options(aiolite_begin=read_mode)
                )
                r, w, e = await run(engine, reads, share, args.tasks, args.seconds)
                cells.append(f"{(r + w) / args.seconds:,.0f} ({e})")
            print(f"{name:<44}{cells[0]:>18}{cells[1]:>18}")


if __name__ == "__main__":
    asyncio.run(main())
