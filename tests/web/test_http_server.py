"""Through real HTTP against uvicorn: concurrent restarts of one run create exactly one
new run, and the background task executes it to the end."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from factories import ECHO_SNAPSHOT, make_run
from support import FROZEN_NOW, JSON, LiveServer

from app.store.tables import WorkflowRun


@pytest.fixture(scope="module")
def server(database_url: str):
    with LiveServer(database_url) as live:
        yield live


async def test_many_simultaneous_restart_requests_create_exactly_one_run(
    empty_db: str, server: LiveServer
) -> None:
    # The restarted run must outlast the burst: once it has ended, another restart is allowed
    # (and would be correct), so a run that finished mid-burst would make the count timing-bound.
    slow = {**ECHO_SNAPSHOT, "config": {"llm": {"provider": "mock", "delay_seconds": 1.5}}}
    original = await make_run(
        1, created_at=FROZEN_NOW - timedelta(minutes=1), status="failed", snapshot=slow
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post(f"/workflows/{original}/restart", headers=JSON) for _ in range(30))
        )
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 400: 29}, codes
    assert all(r.json()["code"] == "invalid_state" for r in responses if r.status_code == 400)
    new_id = next(r.json()["run_id"] for r in responses if r.status_code == 200)
    assert await WorkflowRun.count().where(WorkflowRun.restarted_from == original) == 1

    # uvicorn answers before the background task runs; the run then completes on its own.
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        while True:
            status = (await client.get(f"/workflows/{new_id}", headers=JSON)).json()["status"]
            if status == "completed":
                break
            assert status in ("pending", "running") and time.monotonic() < deadline, status
            await asyncio.sleep(0.05)
        # Once it has ended, a second restart is accepted again.
        again = await client.post(f"/workflows/{original}/restart", headers=JSON)
        assert again.status_code == 200 and again.json()["attempt"] == 2
