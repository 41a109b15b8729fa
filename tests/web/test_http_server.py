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


async def _wait_ended(client: httpx.AsyncClient, run_id: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        status = (await client.get(f"/workflows/{run_id}", headers=JSON)).json()["status"]
        if status not in ("pending", "running"):
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.05)


async def test_any_number_of_restart_requests_at_any_time_create_exactly_one_run(
    empty_db: str, server: LiveServer
) -> None:
    """A run is restarted once, ever. Its restart takes about 10 ms, so it ends while the
    burst of 50 is still arriving: a rule of "one *active* restart" would let a second
    through; a stale tab's click an hour later must not create one either."""
    quick = {**ECHO_SNAPSHOT, "config": {"llm": {"provider": "mock", "delay_seconds": 0.01}}}
    original = await make_run(
        1, created_at=FROZEN_NOW - timedelta(minutes=1), status="failed", snapshot=quick
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post(f"/workflows/{original}/restart", headers=JSON) for _ in range(50))
        )
        codes = Counter(r.status_code for r in responses)
        assert codes == {200: 1, 400: 49}, codes
        new_id = next(r.json()["run_id"] for r in responses if r.status_code == 200)
        refused = [r.json() for r in responses if r.status_code == 400]
        # Those that lost the race while the restart was being written see its id too.
        assert {r["code"] for r in refused} == {"already_restarted"}
        assert {r["restarted_as"] for r in refused} == {new_id}
        assert await WorkflowRun.count().where(WorkflowRun.restarted_from == original) == 1

        # uvicorn answers before the background task runs; the run then completes.
        assert await _wait_ended(client, new_id) == "completed"
        later = await client.post(f"/workflows/{original}/restart", headers=JSON)
        assert later.status_code == 400
        assert later.json()["restarted_as"] == new_id

        # "Run it again" is a restart of the latest attempt: attempt 3, chained to 2.
        third = await client.post(f"/workflows/{new_id}/restart", headers=JSON)
        assert third.status_code == 200 and third.json()["attempt"] == 3
        third_id = third.json()["run_id"]
        assert await _wait_ended(client, third_id) == "completed"
        body = (await client.post(f"/workflows/{original}/restart", headers=JSON)).json()
        assert (body["restarted_as"], body["latest_attempt"]) == (new_id, third_id)
    assert await WorkflowRun.count() == 3
