"""The dashboard server killed with SIGKILL while it executes runs: a new server on the
same database fails them as interrupted at once, and a restart of one completes."""

from __future__ import annotations

import signal
import time

import httpx
import pytest
from factories import make_run
from fault_helpers import get_json, slow_snapshot, wait_until
from support import FROZEN_NOW, JSON, LiveServer

from app.store.tables import StepRun, WorkflowRun

pytestmark = pytest.mark.slow

RUNS = 3
# Three nodes of 1 s each: long enough to be killed mid-run, short enough to restart.
NODE_SECONDS = 1.0


async def test_runs_of_a_killed_server_are_interrupted_and_restartable(empty_db: str) -> None:
    snapshot = slow_snapshot(NODE_SECONDS)
    originals = [
        await make_run(
            n,
            created_at=FROZEN_NOW,
            status="failed",
            workflow_name="slow_pipeline",
            snapshot=snapshot,
            inputs={"job": f"job {n}"},
            error=("MockFailure", "first attempt failed", "plan"),
        )
        for n in range(1, RUNS + 1)
    ]

    first = LiveServer(empty_db).__enter__()
    try:
        with httpx.Client(base_url=first.url, timeout=10) as client:
            started = []
            for run_id in originals:
                answer = client.post(f"/workflows/{run_id}/restart", headers=JSON)
                assert answer.status_code == 200, answer.text
                started.append(answer.json()["run_id"])
            wait_until(
                lambda: all(
                    get_json(client, f"/workflows/{r}")["status"] == "running" for r in started
                ),
                timeout=10,
                what="the restarted runs to be running",
            )
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
    finally:
        first.stop()

    rows = await WorkflowRun.select(WorkflowRun.id, WorkflowRun.status).where(
        WorkflowRun.id.is_in(started)
    )
    assert {r["status"] for r in rows} == {"running"}, "killed runs must still look running"

    launched = time.monotonic()
    with LiveServer(empty_db) as second, httpx.Client(base_url=second.url, timeout=10) as client:
        answering = time.monotonic()

        def all_interrupted() -> list[dict]:
            runs = [get_json(client, f"/workflows/{r}") for r in started]
            return runs if all(r["status"] == "failed" for r in runs) else []

        runs = wait_until(all_interrupted, timeout=5, what="the killed runs to be failed")
        interrupted_after = time.monotonic() - answering
        print(
            f"\nkilled runs failed as interrupted {interrupted_after:.2f} s after the new server"
            f" answered ({time.monotonic() - launched:.2f} s after it was launched)"
        )
        for run in runs:
            assert run["error"]["type"] == "Interrupted", run["error"]
            assert "interrupted" in run["error"]["message"]
            assert all(step["status"] != "running" for step in run["steps"]), run["steps"]

        again = client.post(f"/workflows/{started[0]}/restart", headers=JSON)
        assert again.status_code == 200, again.text
        assert again.json()["attempt"] == 3
        new_id = again.json()["run_id"]
        done = wait_until(
            lambda: (
                (r := get_json(client, f"/workflows/{new_id}"))["status"]
                in ("completed", "failed", "cancelled")
                and r
            ),
            timeout=3 * NODE_SECONDS + 10,
            what="the restart to finish",
        )
        assert done["status"] == "completed", done["error"]
        assert done["restarted_from"] == started[0]
        assert [s["node_id"] for s in done["steps"]] == ["plan", "execute", "report"]

    assert await StepRun.count().where(StepRun.status == "running") == 0
    assert await WorkflowRun.count().where(WorkflowRun.status.is_in(["pending", "running"])) == 0
