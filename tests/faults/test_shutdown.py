"""SIGTERM of the dashboard in the embedded mode, as a deploy sends it: the runs it
executes (a restart's background task, and a run it adopted at start) stop at their
next node and are handed back, pending, instead of failing or being cut off; the next
dashboard takes them up and completes them, reusing the nodes that had completed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from factories import chain_snapshot, make_run
from support import FROZEN_NOW, JSON, until

from app.store.runs import RunStore
from app.store.tables import StepRun, WorkflowRun
from bench.load import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

GRACE = 10


@contextmanager
def _serve(database_url: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`configurable-agents serve`, as an operator starts it."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "CA_GRACE_SECONDS": str(GRACE)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def _statuses(*run_ids: str) -> dict[str, tuple[str, str | None]]:
    rows = await WorkflowRun.select(WorkflowRun.id, WorkflowRun.status, WorkflowRun.owner).where(
        WorkflowRun.id.is_in([uuid.UUID(r) for r in run_ids])
    )
    return {str(r["id"]): (r["status"], r["owner"]) for r in rows}


async def test_sigterm_of_the_dashboard_hands_its_runs_to_the_next(empty_db: str) -> None:
    snapshot = chain_snapshot(1.5, nodes=4)  # 6 s: longer than a deploy waits for it
    # A pending run that no process holds (handed back earlier): adopted at start and
    # executed in a task of the dashboard's own, not a request's background task.
    adopted = await RunStore().create_run(
        workflow_name="slow_echo",
        snapshot=snapshot,
        inputs={"message": "adopted"},
        trigger="api",
        steps_total=4,
        owner=None,
    )
    original = await make_run(
        1, created_at=FROZEN_NOW - timedelta(minutes=1), status="failed", snapshot=snapshot
    )
    with _serve(empty_db) as (proc, url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            restarted = (await client.post(f"/workflows/{original}/restart", headers=JSON)).json()
        restart = restarted["run_id"]

        async def both_running() -> bool:
            return {s for s, _ in (await _statuses(adopted, restart)).values()} == {"running"}

        await until(both_running, 10, "both runs to start")
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        proc.wait(timeout=GRACE + 10)
        stopped_in = time.monotonic() - began
        assert proc.stderr is not None
        logged = proc.stderr.read().decode()
    # Text logs (the default) carry the warnings, not a line per run state change.
    assert "draining: 2 run(s) in flight" in logged, logged
    assert f"handed back run {restart}" in logged, logged
    assert " -> running" not in logged and " -> pending" not in logged, logged
    # They stopped at their next node (1.5 s at most), far inside the grace period.
    assert stopped_in < GRACE, stopped_in
    statuses = await _statuses(adopted, restart)
    assert statuses == {adopted: ("pending", None), restart: ("pending", None)}
    # The node each was in completed before it stopped: kept, so that the next process
    # does not pay for it again.
    kept = {
        str(s["id"]): s["node_id"]
        for s in await StepRun.select(StepRun.id, StepRun.node_id, StepRun.status).where(
            StepRun.run.is_in([uuid.UUID(adopted), uuid.UUID(restart)])
        )
    }
    assert kept and set(kept.values()) <= {"n1", "n2"}

    with _serve(empty_db):

        async def both_done() -> bool:
            return {s for s, _ in (await _statuses(adopted, restart)).values()} == {"completed"}

        await until(both_done, 30, "the next dashboard to complete both runs")
    for run_id in (adopted, restart):
        steps = await StepRun.select(StepRun.id, StepRun.node_id, StepRun.tokens).where(
            StepRun.run == uuid.UUID(run_id)
        )
        # Each node once: the kept ones were reused, not executed again.
        assert sorted(s["node_id"] for s in steps) == ["n1", "n2", "n3", "n4"]
        run = await WorkflowRun.select(WorkflowRun.steps_done, WorkflowRun.total_tokens).where(
            WorkflowRun.id == uuid.UUID(run_id)
        )
        assert run[0]["steps_done"] == 4
        assert run[0]["total_tokens"] == sum(s["tokens"] for s in steps)
    after = await StepRun.select(StepRun.id).where(StepRun.id.is_in([uuid.UUID(i) for i in kept]))
    assert len(after) == len(kept)
    assert await WorkflowRun.count().where(WorkflowRun.status == "failed") == 1  # the original
