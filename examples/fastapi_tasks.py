"""A task tracker REST API on FastAPI and aiolite.open().

    pip install 'aiolite' fastapi uvicorn
    TASKS_DB=tasks.db uvicorn --app-dir examples fastapi_tasks:create_app --factory

What it shows:

* the Database opens in the lifespan (migrations included) and closes at shutdown;
* two dependencies: ``Db``, the Database, for reads (each query goes to whichever
  connection is free; ``db.read()`` inside an endpoint when several queries must see one
  snapshot) and single-statement writes (``db.execute()``: one round trip, its own
  transaction), and ``Writer`` (a transaction: ``BEGIN IMMEDIATE`` at its first statement, committed
  when the endpoint returns, before the response is sent; rolled back if it raises);
* writers queue for the write lock in the event loop, so two requests that write at once
  never fail with "database is locked", even when one holds its transaction open across
  an ``await`` (see ``/collision/a`` and ``/collision/b``, the classic report's pair);
* pydantic models in and out, 404 for a missing task, 409 for a duplicate title or a
  forbidden status change, 422 for invalid input (FastAPI's validation).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Optional

import anyio
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field

import aiolite

MIGRATIONS = [
    (
        1,
        "tasks",
        """
        CREATE TABLE tasks (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL UNIQUE,
            priority INTEGER NOT NULL DEFAULT 2 CHECK (priority BETWEEN 1 AND 3),
            status TEXT NOT NULL DEFAULT 'todo',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX tasks_by_status ON tasks (status, priority);
        """,
    ),
    (2, "collision log", "CREATE TABLE collision_log (who TEXT NOT NULL, at TEXT NOT NULL);"),
]


class Status(str, Enum):
    todo = "todo"
    doing = "doing"
    done = "done"


# Which status changes are allowed; anything else is a 409.
TRANSITIONS = {
    Status.todo: {Status.doing, Status.done},
    Status.doing: {Status.todo, Status.done},
    Status.done: {Status.doing},
}


class TaskIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=2, ge=1, le=3)


class StatusChange(BaseModel):
    status: Status


class Task(BaseModel):
    id: int
    title: str
    priority: int
    status: Status
    created_at: datetime
    updated_at: datetime


class Summary(BaseModel):
    total: int
    by_status: dict[Status, int]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


# ---- wiring --------------------------------------------------------------------------------


def create_app(path: Optional[str] = None) -> FastAPI:
    """Build the app on the database at ``path`` (default: $TASKS_DB or tasks.db)."""
    database = path or os.environ.get("TASKS_DB", "tasks.db")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with aiolite.open(database, row_factory=dict) as db:
            await db.migrate(MIGRATIONS)
            app.state.db = db
            yield

    app = FastAPI(title="Task tracker (aiolite)", lifespan=lifespan)
    _add_routes(app)
    return app


def _database(request: Request) -> aiolite.Database:
    # The Database itself, not a db.read() session: a session pins one of the readers
    # (4 by default) for the whole request, so 100 requests in flight would queue for
    # them.  Plain reads need no pinning; see summary() for a snapshot of several queries.
    db: aiolite.Database = request.app.state.db
    return db


async def _write(request: Request) -> AsyncIterator[aiolite.Transaction]:
    async with _database(request).transaction() as tx:
        yield tx


# scope="function": the transaction ends (commits) before the response goes out, so a
# client that gets 201 can read its task at once, and a failed COMMIT is a 500, not a lie.
Db = Annotated[aiolite.Database, Depends(_database)]
Writer = Annotated[aiolite.Transaction, Depends(_write, scope="function")]


def _add_routes(app: FastAPI) -> None:
    @app.post("/tasks", status_code=status.HTTP_201_CREATED, response_model=Task)
    async def create_task(task: TaskIn, db: Db) -> Any:
        # One statement: db.execute() is its own BEGIN IMMEDIATE ... COMMIT, in one round
        # trip, so it never holds the write lock across the event loop.
        now = _now()
        try:
            result = await db.execute(
                "INSERT INTO tasks (title, priority, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) RETURNING *",
                (task.title, task.priority, now, now),
            )
        except sqlite3.IntegrityError as exc:
            raise HTTPException(409, f"a task titled {task.title!r} already exists") from exc
        return result.rows[0]

    @app.get("/tasks", response_model=list[Task])
    async def list_tasks(
        db: Db,
        status_: Annotated[Optional[Status], Query(alias="status")] = None,
        priority: Annotated[Optional[int], Query(ge=1, le=3)] = None,
        q: Annotated[Optional[str], Query(max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Any:
        where, params = ["1 = 1"], []
        if status_ is not None:
            where.append("status = ?")
            params.append(status_.value)
        if priority is not None:
            where.append("priority = ?")
            params.append(priority)
        if q:
            where.append("instr(lower(title), lower(?)) > 0")
            params.append(q)
        return await db.fetchall(
            f"SELECT * FROM tasks WHERE {' AND '.join(where)} "
            "ORDER BY priority, id LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )

    @app.get("/tasks/{task_id}", response_model=Task)
    async def get_task(task_id: int, db: Db) -> Any:
        row = await db.fetchone("SELECT * FROM tasks WHERE id = ?", (task_id,))
        if row is None:
            raise HTTPException(404, f"task {task_id} not found")
        return row

    @app.patch("/tasks/{task_id}", response_model=Task)
    async def change_status(task_id: int, change: StatusChange, tx: Writer) -> Any:
        # Read and write in one transaction: the check cannot race another request.
        current = await tx.fetchval("SELECT status FROM tasks WHERE id = ?", (task_id,))
        if current is None:
            raise HTTPException(404, f"task {task_id} not found")
        if change.status != current and change.status not in TRANSITIONS[Status(current)]:
            raise HTTPException(409, f"a {current} task cannot become {change.status.value}")
        result = await tx.execute(
            "UPDATE tasks SET status = ?, updated_at = ? WHERE id = ? RETURNING *",
            (change.status.value, _now(), task_id),
        )
        return result.rows[0]

    @app.delete("/tasks/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_task(task_id: int, db: Db) -> Response:
        result = await db.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
        if result.rowcount == 0:
            raise HTTPException(404, f"task {task_id} not found")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @app.get("/summary", response_model=Summary)
    async def summary(db: Db) -> Any:
        # Two queries, one snapshot: the total always equals the sum of the groups.
        async with db.read() as snapshot:
            total = await snapshot.fetchval("SELECT count(*) FROM tasks")
            rows = await snapshot.fetchall(
                "SELECT status, count(*) AS n FROM tasks GROUP BY status"
            )
        return {"total": total, "by_status": {Status(r["status"]): r["n"] for r in rows}}

    # The two endpoints of the classic "database is locked in FastAPI" report: A writes,
    # then waits before committing; B writes while A's transaction is open, waits
    # longer, then commits.  With aiolite, B's transaction queues behind A's.
    @app.post("/collision/a")
    async def collision_a(tx: Writer, hold: Annotated[float, Query(ge=0, le=5)] = 0.5) -> Any:
        await tx.execute("INSERT INTO collision_log VALUES ('A', ?)", (_now(),))
        await anyio.sleep(hold)
        return {"status": "A committed"}

    @app.post("/collision/b")
    async def collision_b(tx: Writer, hold: Annotated[float, Query(ge=0, le=5)] = 1.0) -> Any:
        await tx.execute("INSERT INTO collision_log VALUES ('B', ?)", (_now(),))
        await anyio.sleep(hold)
        return {"status": "B committed"}
