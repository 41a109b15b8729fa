"""The scaled shape on PostgreSQL with real processes: two dashboards and two workers
executing runs through procrastinate."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from factories import ECHO_SNAPSHOT, make_run
from support import BACKEND, FROZEN_NOW, JSON, LiveServer, WorkerProcess

from app.store.tables import RunProcess, StepRun, WorkflowRun

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BACKEND != "postgres", reason="the queue mode needs PostgreSQL"),
]

SLOW_SNAPSHOT = {
    **ECHO_SNAPSHOT,
    "flow": {"name": "slow_echo"},
    "nodes": [
        {"id": "first", "prompt": "One {state.message}", "outputs": ["reply"]},
        {"id": "second", "prompt": "Two {state.message}", "outputs": ["reply"]},
    ],
    "edges": [
        {"from": "START", "to": "first"},
        {"from": "first", "to": "second"},
        {"from": "second", "to": "END"},
    ],
    "config": {"llm": {"provider": "mock", "model": "slow", "delay_seconds": 3}},
}
QUEUE_ENV = {"EXECUTION": "queue", "CA_RECOVERY_INTERVAL_SECONDS": "1"}


@pytest.fixture(scope="module")
def cluster(database_url: str) -> Iterator[tuple[list[LiveServer], list[WorkerProcess]]]:
    workers: list[WorkerProcess] = []
    with (
        LiveServer(database_url, extra_env=QUEUE_ENV) as a,
        LiveServer(database_url, extra_env=QUEUE_ENV) as b,
    ):
        try:
            workers.extend(WorkerProcess(database_url).wait_ready() for _ in range(2))
            yield [a, b], workers
        finally:
            # Tests replace workers they kill: stop whatever the list holds now, or a
            # surviving worker would go on executing the pending runs of later tests.
            for worker in workers:
                worker.stop()


async def _failed_runs(count: int, snapshot: dict = ECHO_SNAPSHOT, start: int = 1) -> list[str]:
    return [
        await make_run(
            n,
            created_at=FROZEN_NOW - timedelta(seconds=n),
            status="failed",
            snapshot=snapshot,
            owner=None,
        )
        for n in range(start, start + count)
    ]


async def _wait_terminal(run_ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await WorkflowRun.select(WorkflowRun.id, WorkflowRun.status).where(
            WorkflowRun.id.is_in([uuid.UUID(r) for r in run_ids])
        )
        statuses = {str(r["id"]): r["status"] for r in rows}
        if all(s in ("completed", "failed", "cancelled") for s in statuses.values()):
            return statuses
        if time.monotonic() > deadline:
            raise AssertionError(f"not terminal after {timeout} s: {Counter(statuses.values())}")
        await asyncio.sleep(0.2)


async def _restart(client: httpx.AsyncClient, server: LiveServer, run_id: str) -> httpx.Response:
    return await client.post(f"{server.url}/workflows/{run_id}/restart", headers=JSON)


async def test_200_restarts_over_two_dashboards_each_executed_exactly_once(
    empty_db: str, cluster
) -> None:
    servers, _ = cluster
    originals = await _failed_runs(200)
    limit = asyncio.Semaphore(10)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(run_id: str, server: LiveServer) -> httpx.Response:
            async with limit:
                return await _restart(client, server, run_id)

        responses = await asyncio.gather(
            *(one(r, s) for r, s in zip(originals, itertools.cycle(servers), strict=False))
        )
    assert Counter(r.status_code for r in responses) == {200: 200}
    new_ids = [r.json()["run_id"] for r in responses]
    statuses = await _wait_terminal(new_ids, timeout=60)
    assert Counter(statuses.values()) == {"completed": 200}
    steps = await StepRun.select(StepRun.run).where(
        StepRun.run.is_in([uuid.UUID(r) for r in new_ids])
    )
    # The echo workflow has one node: one step row per run proves one execution each.
    assert Counter(Counter(str(s["run"]) for s in steps).values()) == {1: 200}
    assert await WorkflowRun.count().where(WorkflowRun.status.is_in(["pending", "running"])) == 0


async def test_restart_storm_across_both_dashboards_creates_one_run(empty_db: str, cluster) -> None:
    servers, _ = cluster
    # Slow, so that the first restart is still active when the last request arrives.
    [original] = await _failed_runs(1, SLOW_SNAPSHOT)
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(
            *(_restart(client, servers[i % 2], original) for i in range(40))
        )
    assert Counter(r.status_code for r in responses) == {200: 1, 400: 39}
    assert await WorkflowRun.count().where(WorkflowRun.restarted_from == original) == 1


async def _running_on_worker(run_id: str, timeout: float = 20) -> int:
    """The pid of the worker process executing the run, once it runs."""
    deadline = time.monotonic() + timeout
    while True:
        row = (
            await WorkflowRun.select(WorkflowRun.status, WorkflowRun.owner)
            .where(WorkflowRun.id == uuid.UUID(run_id))
            .first()
        )
        if row["status"] == "running" and row["owner"]:
            process = (
                await RunProcess.select(RunProcess.pid, RunProcess.kind)
                .where(RunProcess.id == row["owner"])
                .first()
            )
            assert process["kind"] == "worker"
            return process["pid"]
        assert time.monotonic() < deadline, row
        await asyncio.sleep(0.1)


async def test_sigkilled_worker_fails_its_run_and_the_other_worker_goes_on(
    empty_db: str, cluster
) -> None:
    servers, workers = cluster
    [slow] = await _failed_runs(1, SLOW_SNAPSHOT)
    [quick, again] = await _failed_runs(2, start=10)
    async with httpx.AsyncClient(timeout=30) as client:
        new_id = (await _restart(client, servers[0], slow)).json()["run_id"]
        pid = await _running_on_worker(new_id)
        victim = next(w for w in workers if w.pid == pid)
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        victim.proc.wait()  # reaped, as its parent would on a real machine
        statuses = await _wait_terminal([new_id], timeout=30)
        assert statuses[new_id] == "failed"
        print(f"interrupted run detected {time.monotonic() - killed_at:.1f} s after SIGKILL")
        assert time.monotonic() - killed_at < 30
        body = (await client.get(f"{servers[1].url}/workflows/{new_id}", headers=JSON)).json()
        assert body["error"]["type"] == "Interrupted"
        # The error and the run name the process that ran it ...
        assert f"worker {body['executed_by']['instance']}" in body["error"]["message"]
        assert f"(pid {victim.pid})" in body["error"]["message"]
        assert body["executed_by"]["pid"] == victim.pid
        # ... and /workers shows it gone from the moment its run was failed.
        listed = (await client.get(f"{servers[1].url}/workers", headers=JSON)).json()
        gone = next(w for w in listed["workers"] if w["pid"] == victim.pid)
        assert gone["alive"] is False and gone["stop_reason"] == "has exited"

        other = (await _restart(client, servers[1], quick)).json()["run_id"]
        assert (await _wait_terminal([other], timeout=20))[other] == "completed"
        # The interrupted run itself restarts and completes on the surviving worker.
        retry = await _restart(client, servers[0], new_id)
        assert retry.status_code == 200
    # Replace the killed worker for the tests that follow.
    workers[workers.index(victim)] = WorkerProcess(victim.database_url).__enter__()
    assert again


async def test_a_run_whose_job_was_never_deferred_is_picked_up(
    empty_db: str, database_url: str, cluster
) -> None:
    [original] = await _failed_runs(1)
    dying = LiveServer(database_url, extra_env=QUEUE_ENV)
    dying.factory = "tests.queue.dying_app:create_app"
    with dying:
        async with httpx.AsyncClient(timeout=10) as client:
            with pytest.raises(httpx.HTTPError):
                await _restart(client, dying, original)
    rows = await WorkflowRun.select(WorkflowRun.id, WorkflowRun.status).where(
        WorkflowRun.restarted_from == uuid.UUID(original)
    )
    assert [r["status"] for r in rows] == ["pending"]
    started = time.monotonic()
    statuses = await _wait_terminal([str(rows[0]["id"])], timeout=30)
    assert list(statuses.values()) == ["completed"]
    assert time.monotonic() - started < 30


async def test_cancel_reaches_a_run_on_a_worker_within_2_s(empty_db: str, cluster) -> None:
    servers, _ = cluster
    [slow] = await _failed_runs(1, SLOW_SNAPSHOT)
    async with httpx.AsyncClient(timeout=30) as client:
        new_id = (await _restart(client, servers[0], slow)).json()["run_id"]
        await _running_on_worker(new_id)
        began = time.monotonic()
        r = await client.post(f"{servers[1].url}/workflows/{new_id}/cancel", headers=JSON)
        assert r.status_code == 200
        statuses = await _wait_terminal([new_id], timeout=2)
        assert statuses[new_id] == "cancelled"
        assert time.monotonic() - began < 2
        await asyncio.sleep(4)  # longer than a node: a second node must not have started
    nodes = [
        s["node_id"]
        for s in await StepRun.select(StepRun.node_id).where(StepRun.run == uuid.UUID(new_id))
    ]
    # The job was aborted mid-node: nothing is written to a run once it has ended, and
    # the second node never started.
    assert nodes == []


async def test_sigterm_hands_the_run_to_the_other_worker(empty_db: str, cluster) -> None:
    """A deploy stops one worker: its run stops at its next node, is queued again and
    completes on the other worker; the stopping worker exits at once, not after the run."""
    servers, workers = cluster
    [slow] = await _failed_runs(1, SLOW_SNAPSHOT)
    async with httpx.AsyncClient(timeout=30) as client:
        new_id = (await _restart(client, servers[0], slow)).json()["run_id"]
    pid = await _running_on_worker(new_id)
    worker = next(w for w in workers if w.pid == pid)
    worker.proc.send_signal(signal.SIGTERM)
    began = time.monotonic()
    assert worker.proc.wait(timeout=30) == 0
    assert time.monotonic() - began < 6  # the next node boundary, 3 s at most, and exit
    statuses = await _wait_terminal([new_id], timeout=30)
    assert statuses[new_id] == "completed"
    other = next(w for w in workers if w is not worker)
    owner = (
        await WorkflowRun.select(WorkflowRun.owner)
        .where(WorkflowRun.id == uuid.UUID(new_id))
        .first()
    )
    process = await RunProcess.select(RunProcess.pid).where(RunProcess.id == owner["owner"]).first()
    assert process["pid"] == other.pid
    steps = await StepRun.select(StepRun.node_id).where(StepRun.run == uuid.UUID(new_id))
    assert sorted(s["node_id"] for s in steps) == ["first", "second"]
    workers[workers.index(worker)] = WorkerProcess(worker.database_url).__enter__()


async def test_two_overlapping_bulk_restarts_on_two_dashboards_execute_each_run_once(
    empty_db: str, cluster
) -> None:
    """Batch deferral: one request per dashboard, overlapping by half; every failed run
    gets one restart, one job and one execution."""
    servers, _ = cluster
    originals = await _failed_runs(300)
    async with httpx.AsyncClient(timeout=60) as client:
        first, second = await asyncio.gather(
            client.post(
                f"{servers[0].url}/workflows/restart", json={"ids": originals[:200]}, headers=JSON
            ),
            client.post(
                f"{servers[1].url}/workflows/restart", json={"ids": originals[100:]}, headers=JSON
            ),
        )
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    assert first.json()["restarted"] + second.json()["restarted"] == 300
    new = await WorkflowRun.select(WorkflowRun.id).where(
        WorkflowRun.restarted_from.is_in([uuid.UUID(r) for r in originals])
    )
    assert len(new) == 300
    new_ids = [str(r["id"]) for r in new]
    statuses = await _wait_terminal(new_ids, timeout=90)
    assert Counter(statuses.values()) == {"completed": 300}
    steps = await StepRun.select(StepRun.run).where(
        StepRun.run.is_in([uuid.UUID(r) for r in new_ids])
    )
    assert Counter(Counter(str(s["run"]) for s in steps).values()) == {1: 300}
    jobs = await WorkflowRun.raw(
        "SELECT args->>'run_id' AS run_id, count(*) AS n FROM procrastinate_jobs"
        " WHERE task_name = 'execute_run' AND args->>'run_id' = ANY({}) GROUP BY 1",
        new_ids,
    )
    assert {j["run_id"]: j["n"] for j in jobs} == dict.fromkeys(new_ids, 1)


async def test_bulk_cancel_aborts_the_jobs_of_bulk_restarted_runs(empty_db: str, cluster) -> None:
    """A batch stores no job ids: the cancel finds each running job by its run's lock."""
    servers, _ = cluster
    slow = await _failed_runs(2, SLOW_SNAPSHOT)
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(
            f"{servers[0].url}/workflows/restart", json={"ids": slow}, headers=JSON
        )
        assert answer.json()["restarted"] == 2
        new = [
            str(r["id"])
            for r in await WorkflowRun.select(WorkflowRun.id).where(
                WorkflowRun.restarted_from.is_in([uuid.UUID(r) for r in slow])
            )
        ]
        for run_id in new:
            await _running_on_worker(run_id)
        cancelled = await client.post(
            f"{servers[1].url}/workflows/cancel", json={"ids": new}, headers=JSON
        )
        assert cancelled.json()["cancelled"] == 2
    await asyncio.sleep(4)  # longer than a node
    steps = await StepRun.count().where(StepRun.run.is_in([uuid.UUID(r) for r in new]))
    # Aborted mid-node: no step was written after the cancel.
    assert steps == 0
    jobs = await WorkflowRun.raw(
        "SELECT status::text AS status FROM procrastinate_jobs WHERE lock = ANY({})", new
    )
    assert sorted(j["status"] for j in jobs) == ["aborted", "aborted"]


async def test_a_large_batch_has_its_tables_analyzed(empty_db: str, cluster) -> None:
    """Until the planner knows of a batch's thousands of jobs, the workers' fetch and the
    maintenance query plan for empty tables (seconds each): the dashboard analyzes them."""
    servers, _ = cluster

    async def analyzed() -> datetime | None:
        [row] = await WorkflowRun.raw(
            "SELECT greatest(last_analyze, last_autoanalyze) AS at FROM pg_stat_user_tables"
            " WHERE relname = 'procrastinate_jobs'"
        )
        return row["at"]

    before = await analyzed()
    originals = await _failed_runs(1000)
    async with httpx.AsyncClient(timeout=60) as client:
        answer = await client.post(
            f"{servers[0].url}/workflows/restart", json={"ids": originals}, headers=JSON
        )
    assert answer.json()["restarted"] == 1000
    deadline = time.monotonic() + 10
    while (at := await analyzed()) is None or (before is not None and at <= before):
        assert time.monotonic() < deadline, "procrastinate_jobs was not analyzed"
        await asyncio.sleep(0.2)
    new = await WorkflowRun.select(WorkflowRun.id).where(
        WorkflowRun.restarted_from.is_in([uuid.UUID(r) for r in originals])
    )
    statuses = await _wait_terminal([str(r["id"]) for r in new], timeout=120)
    assert Counter(statuses.values()) == {"completed": 1000}


async def _sse_until(
    client: httpx.AsyncClient, url: str, found: Any, start: Any, timeout: float = 20
) -> str:
    """Read the SSE stream at `url` (after calling `start()` once it is open) until a
    message's data satisfies `found`; returns that data."""

    async def read() -> str:
        async with client.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            started = False
            data: list[str] = []
            async for line in response.aiter_lines():
                if not started:
                    started = True
                    await start()
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif not line and data:
                    message, data = "\n".join(data), []
                    if found(message):
                        return message
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(read(), timeout)


async def test_the_workers_page_shows_each_worker_and_follows_it_live(
    empty_db: str, cluster
) -> None:
    servers, workers = cluster
    pids = {w.pid for w in workers}
    async with httpx.AsyncClient(timeout=30) as client:
        listed = (await client.get(f"{servers[0].url}/workers", headers=JSON)).json()
        live = [w for w in listed["workers"] if w["alive"]]
        assert {w["pid"] for w in live} == pids
        for worker in live:
            # Registered by the worker itself: its --concurrency (4 in bench.load).
            assert worker["concurrency"] == 4
            assert worker["host"] and worker["started_at"] and worker["last_heartbeat"]
            assert worker["runs"] == []

        page = (await client.get(f"{servers[0].url}/workers")).text
        assert 'hx-sse:connect="/workers/events"' in page
        assert "<caption>" in page and '<th scope="col">Concurrency</th>' in page
        for worker in live:
            assert f'<th scope="row" class="mono">{worker["id"]}</th>' in page

        # A run taken by a worker shows in its row without a reload.
        [slow] = await _failed_runs(1, SLOW_SNAPSHOT)
        restarted: list[str] = []

        async def restart() -> None:
            restarted.append((await _restart(client, servers[1], slow)).json()["run_id"])

        message = await _sse_until(
            client,
            f"{servers[0].url}/workers/events",
            lambda data: bool(restarted) and f'href="/workflows/{restarted[0]}"' in data,
            restart,
        )
        assert 'hx-target="#workers"' in message
        pid = await _running_on_worker(restarted[0])
        row = message.split(f'<td class="num">{pid}</td>', 1)[1].split("</tr>", 1)[0]
        assert f'1 of 4: <a class="mono" href="/workflows/{restarted[0]}">' in row
        await _wait_terminal(restarted, timeout=30)
