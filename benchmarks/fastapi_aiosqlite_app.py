"""The task tracker of examples/fastapi_tasks.py written the usual aiosqlite way, for
the load comparison: a connection per request (the FastAPI tutorials' dependency), WAL
and sqlite3's 5 s busy timeout, commit at the end of each writing endpoint.

Only the endpoints the load script calls are here; their responses match the example's.
(No ``from __future__ import annotations``: FastAPI must resolve the local ``Db`` alias.)
"""

import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import aiosqlite
import anyio
from fastapi import Depends, FastAPI, HTTPException, Query

# The example's schema and clock, so both apps store exactly the same rows.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from fastapi_tasks import MIGRATIONS, _now

SCHEMA = "".join(sql for _, _, sql in MIGRATIONS)


def create_app(path: Optional[str] = None) -> FastAPI:
    database = path or os.environ.get("TASKS_DB", "tasks.db")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with aiosqlite.connect(database) as db:
            await db.execute("PRAGMA journal_mode=WAL")
            if not await db.execute_fetchall("SELECT 1 FROM sqlite_master WHERE name='tasks'"):
                await db.executescript(SCHEMA)
            await db.commit()
        yield

    async def get_db() -> AsyncIterator[aiosqlite.Connection]:
        async with aiosqlite.connect(database) as db:
            db.row_factory = aiosqlite.Row
            yield db

    Db = Annotated[aiosqlite.Connection, Depends(get_db)]
    app = FastAPI(title="Task tracker (aiosqlite)", lifespan=lifespan)

    @app.post("/tasks", status_code=201)
    async def create_task(body: dict[str, Any], db: Db) -> Any:
        now = _now()
        try:
            cur = await db.execute(
                "INSERT INTO tasks (title, priority, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) RETURNING *",
                (body["title"], body.get("priority", 2), now, now),
            )
            row = await cur.fetchone()
            await cur.close()
            await db.commit()
        except sqlite3.IntegrityError as exc:
            raise HTTPException(409, "duplicate title") from exc
        return dict(row) if row is not None else None

    @app.get("/tasks")
    async def list_tasks(
        db: Db,
        status: Optional[str] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Any:
        if status is None:
            rows = await db.execute_fetchall(
                "SELECT * FROM tasks ORDER BY priority, id LIMIT ?", (limit,)
            )
        else:
            rows = await db.execute_fetchall(
                "SELECT * FROM tasks WHERE status = ? ORDER BY priority, id LIMIT ?",
                (status, limit),
            )
        return [dict(r) for r in rows]

    @app.get("/tasks/{task_id}")
    async def get_task(task_id: int, db: Db) -> Any:
        async with db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            raise HTTPException(404, f"task {task_id} not found")
        return dict(row)

    @app.patch("/tasks/{task_id}")
    async def change_status(task_id: int, body: dict[str, Any], db: Db) -> Any:
        async with db.execute(
            "UPDATE tasks SET status = ?, updated_at = ? WHERE id = ? RETURNING *",
            (body["status"], _now(), task_id),
        ) as cur:
            row = await cur.fetchone()
        await db.commit()
        if row is None:
            raise HTTPException(404, f"task {task_id} not found")
        return dict(row)

    @app.get("/summary")
    async def summary(db: Db) -> Any:
        rows = await db.execute_fetchall("SELECT status, count(*) FROM tasks GROUP BY status")
        counts = {r[0]: r[1] for r in rows}
        return {"total": sum(counts.values()), "by_status": counts}

    @app.post("/collision/a")
    async def collision_a(db: Db, hold: float = 0.5) -> Any:
        await db.execute("INSERT INTO collision_log VALUES ('A', ?)", (_now(),))
        await anyio.sleep(hold)
        await db.commit()
        return {"status": "A committed"}

    @app.post("/collision/b")
    async def collision_b(db: Db, hold: float = 1.0) -> Any:
        await db.execute("INSERT INTO collision_log VALUES ('B', ?)", (_now(),))
        await anyio.sleep(hold)
        await db.commit()
        return {"status": "B committed"}

    return app
