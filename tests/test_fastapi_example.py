"""examples/fastapi_tasks.py through httpx: CRUD, filters, 404/409/422, the collision."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from script_runner import load_file

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


example = load_file(ROOT / "examples" / "fastapi_tasks.py", "fastapi_tasks")


async def gather(*coros: Any) -> list[Any]:
    """asyncio.gather for any backend: FastAPI runs on asyncio and trio, so does aiolite."""
    results: list[Any] = [None] * len(coros)

    async def run(i: int, coro: Any) -> None:
        results[i] = await coro

    async with anyio.create_task_group() as tg:
        for i, coro in enumerate(coros):
            tg.start_soon(run, i, coro)
    return results


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Any]:
    application = example.create_app(str(tmp_path / "tasks.db"))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def _create(client: Any, title: str, priority: int = 2) -> dict[str, Any]:
    r = await client.post("/tasks", json={"title": title, "priority": priority})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_create_get_list_update_delete(client: Any) -> None:
    a = await _create(client, "Write docs", 1)
    b = await _create(client, "Fix bug", 3)
    assert (a["status"], a["priority"]) == ("todo", 1)

    r = await client.get(f"/tasks/{b['id']}")
    assert r.status_code == 200
    assert r.json()["title"] == "Fix bug"

    r = await client.patch(f"/tasks/{a['id']}", json={"status": "doing"})
    assert r.status_code == 200
    assert r.json()["status"] == "doing"

    r = await client.get("/tasks", params={"status": "doing"})
    assert [t["title"] for t in r.json()] == ["Write docs"]
    r = await client.get("/tasks", params={"priority": 3})
    assert [t["title"] for t in r.json()] == ["Fix bug"]
    r = await client.get("/tasks", params={"q": "DOC"})
    assert [t["id"] for t in r.json()] == [a["id"]]
    r = await client.get("/tasks", params={"limit": 1, "offset": 1})
    assert [t["id"] for t in r.json()] == [b["id"]]

    r = await client.get("/summary")
    assert r.json() == {"total": 2, "by_status": {"todo": 1, "doing": 1}}

    r = await client.delete(f"/tasks/{b['id']}")
    assert r.status_code == 204
    r = await client.get(f"/tasks/{b['id']}")
    assert r.status_code == 404


async def test_not_found_is_404(client: Any) -> None:
    for method, url, body in [
        ("GET", "/tasks/999", None),
        ("PATCH", "/tasks/999", {"status": "done"}),
        ("DELETE", "/tasks/999", None),
    ]:
        r = await client.request(method, url, json=body)
        assert r.status_code == 404, (method, r.text)
        assert r.json() == {"detail": "task 999 not found"}


async def test_duplicate_title_is_409_and_leaves_nothing_behind(client: Any) -> None:
    await _create(client, "Only once")
    r = await client.post("/tasks", json={"title": "Only once"})
    assert r.status_code == 409
    assert "already exists" in r.json()["detail"]
    r = await client.get("/summary")
    assert r.json()["total"] == 1


async def test_forbidden_transition_is_409_and_changes_nothing(client: Any) -> None:
    t = await _create(client, "Ship it")
    assert (await client.patch(f"/tasks/{t['id']}", json={"status": "done"})).status_code == 200
    r = await client.patch(f"/tasks/{t['id']}", json={"status": "todo"})
    assert r.status_code == 409
    assert r.json()["detail"] == "a done task cannot become todo"
    assert (await client.get(f"/tasks/{t['id']}")).json()["status"] == "done"


async def test_invalid_input_is_422(client: Any) -> None:
    bad = [
        ("POST", "/tasks", {"title": ""}),
        ("POST", "/tasks", {"title": "x", "priority": 9}),
        ("POST", "/tasks", {}),
        ("PATCH", "/tasks/1", {"status": "archived"}),
        ("GET", "/tasks?priority=0", None),
        ("GET", "/tasks?limit=0", None),
        ("GET", "/tasks/abc", None),
    ]
    for method, url, body in bad:
        r = await client.request(method, url, json=body)
        assert r.status_code == 422, (method, url, r.text)


async def test_concurrent_status_changes_all_apply(client: Any) -> None:
    """100 concurrent requests: creates and status flips, all succeed, counts exact."""
    tasks = [await _create(client, f"task {i}") for i in range(20)]

    async def flip(t: dict[str, Any]) -> int:
        r = await client.patch(f"/tasks/{t['id']}", json={"status": "doing"})
        return int(r.status_code)

    async def make(i: int) -> int:
        r = await client.post("/tasks", json={"title": f"new {i}"})
        return int(r.status_code)

    codes = await gather(*(flip(t) for t in tasks), *(make(i) for i in range(80)))
    assert codes.count(200) == 20
    assert codes.count(201) == 80
    r = await client.get("/summary")
    assert r.json() == {"total": 100, "by_status": {"todo": 80, "doing": 20}}


async def test_the_classic_database_is_locked_collision_succeeds(app: Any, client: Any) -> None:
    """A holds its write transaction open across an await; B writes meanwhile, holds
    longer, then commits.  Both succeed, and B's insert ran only after A committed (its
    transaction queued instead of interleaving with A's on the writer connection)."""

    async def b_after_a_started() -> Any:
        await anyio.sleep(0.05)
        return await client.post("/collision/b", params={"hold": 0.2})

    ra, rb = await gather(client.post("/collision/a", params={"hold": 0.3}), b_after_a_started())
    assert (ra.status_code, rb.status_code) == (200, 200)
    assert (ra.json(), rb.json()) == ({"status": "A committed"}, {"status": "B committed"})
    log = await app.state.db.fetchall("SELECT who, at FROM collision_log ORDER BY rowid")
    assert [row["who"] for row in log] == ["A", "B"]
    a_at, b_at = (datetime.fromisoformat(row["at"]) for row in log)
    assert (b_at - a_at).total_seconds() >= 0.3  # A held its transaction 0.3 s


async def test_response_is_sent_after_the_commit(client: Any) -> None:
    """The write dependency commits before the response: a task created is readable by
    the very next request, on whichever connection it lands."""
    for i in range(30):
        t = await _create(client, f"visible {i}")
        r = await client.get(f"/tasks/{t['id']}")
        assert r.status_code == 200
