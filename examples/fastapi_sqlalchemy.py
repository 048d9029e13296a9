"""The FastAPI + SQLAlchemy app of the classic "database is locked" report, on sqlite+aiolite.

The report's async app, unchanged but for the URL: route B flushes a write (taking the
write lock) and then awaits something else before committing; route A commits after a
sleep.  With ``sqlite+aiosqlite`` a burst of such requests ends in "database is locked"
(HTTP 500) for some of them; with ``sqlite+aiolite`` writers queue in order inside the
process and every request succeeds.  ``GET /items/count`` reads on the read path
(``aiolite_begin="deferred"``), which never queues behind writers.

    pip install 'aiolite[sqlalchemy]' fastapi uvicorn
    uvicorn examples.fastapi_sqlalchemy:app

``APP_DB_URL`` picks the database (default ``sqlite+aiolite:///./items.db``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DB_URL = os.environ.get("APP_DB_URL", "sqlite+aiolite:///./items.db")

engine = create_async_engine(DB_URL)
# Sessions that only read: never queued behind writers.
reading = engine.execution_options(aiolite_begin="deferred")
Sessions = async_sessionmaker(engine, expire_on_commit=False)
ReadSessions = async_sessionmaker(reading, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Record(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String, index=True)


async def create_schema() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await create_schema()
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def session() -> AsyncIterator[AsyncSession]:
    async with Sessions() as s:
        yield s


async def read_session() -> AsyncIterator[AsyncSession]:
    async with ReadSessions() as s:
        yield s


Db = Annotated[AsyncSession, Depends(session)]
ReadDb = Annotated[AsyncSession, Depends(read_session)]


@app.post("/session_a")
async def route_a(db: Db, wait: float = 0.5) -> dict[str, str]:
    """Add a row, sleep, commit (the flush happens at the commit)."""
    db.add(Record(name=f"session_a{uuid.uuid4()}"))
    await asyncio.sleep(wait)
    await db.commit()
    return {"status": "A committed"}


@app.post("/session_b")
async def route_b(db: Db, before: float = 0.1, hold: float = 1.0) -> dict[str, str]:
    """Sleep, add a row, flush (the write lock is taken), sleep holding it, commit."""
    await asyncio.sleep(before)
    db.add(Record(name=f"session_b{uuid.uuid4()}"))
    await db.flush()
    await asyncio.sleep(hold)
    await db.commit()
    return {"status": "B committed"}


@app.get("/items/count")
async def count(db: ReadDb) -> dict[str, int]:
    """A read: on the read path, so it never waits for the writers."""
    n = (await db.execute(select(func.count()).select_from(Record))).scalar_one()
    return {"count": n}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
