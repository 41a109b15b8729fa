"""Deploys and crashes of queue workers, with real worker processes on PostgreSQL.

- A rolling restart (SIGTERM one worker, start a new one, then the other) with 20 runs
  of 20 s in flight completes every run, and no run is ever executed by two workers at
  the same time: a handed-back run's next job starts only after the job that handed it
  back has ended.
- Recovery never waits for a job slot: a worker whose only slot is busy still fails
  the run of a worker that was SIGKILLed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
import uuid
from collections import Counter, defaultdict

import pytest
from factories import chain_snapshot
from support import BACKEND, WorkerProcess, until

from app.services.queue import QueueScheduler, build_queue_app
from app.store.runs import RunStore
from app.store.tables import RunProcess, StepRun, WorkflowRun

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BACKEND != "postgres", reason="the queue mode needs PostgreSQL"),
]

RUNS = 20


async def _queue_runs(database_url: str, count: int, snapshot: dict) -> list[str]:
    """Pending runs with their jobs, as a dashboard in the queue mode writes them."""
    store = RunStore()
    queue_app = build_queue_app(database_url, pool_max=2)
    ids = []
    async with queue_app.open_async():
        scheduler = QueueScheduler(queue_app)
        for n in range(count):
            run_id = await store.create_run(
                workflow_name="slow_echo",
                snapshot=snapshot,
                inputs={"message": f"run {n}"},
                trigger="api",
                steps_total=len(snapshot["nodes"]),
                owner=None,
            )
            await scheduler.schedule(run_id)
            ids.append(run_id)
    return ids


async def _statuses(run_ids: list[str]) -> Counter[str]:
    rows = await WorkflowRun.select(WorkflowRun.status).where(
        WorkflowRun.id.is_in([uuid.UUID(r) for r in run_ids])
    )
    return Counter(r["status"] for r in rows)


async def _stop(worker: WorkerProcess) -> None:
    worker.proc.send_signal(signal.SIGTERM)
    exit_code = await asyncio.to_thread(worker.proc.wait, 60)
    assert exit_code == 0, worker.log[-20:]


async def test_a_rolling_restart_of_two_workers_completes_every_run(empty_db: str) -> None:
    database_url = empty_db
    run_ids = await _queue_runs(database_url, RUNS, chain_snapshot(5.0, nodes=4))
    old = [WorkerProcess(database_url, concurrency=RUNS) for _ in range(2)]
    new: list[WorkerProcess] = []
    try:
        for worker in old:
            worker.wait_ready()

        async def all_running() -> bool:
            return (await _statuses(run_ids))["running"] == RUNS

        await until(all_running, 30, "all runs to start")
        for worker in old:
            # One at a time: stop it, and start its replacement.
            await _stop(worker)
            new.append(WorkerProcess(database_url, concurrency=RUNS).wait_ready())

        async def all_ended() -> bool:
            counts = await _statuses(run_ids)
            return counts["pending"] + counts["running"] == 0

        await until(all_ended, 120, "every run to end")
        assert await _statuses(run_ids) == {"completed": RUNS}
    finally:
        for worker in old + new:
            worker.stop()
    steps = await StepRun.select(StepRun.run).where(
        StepRun.run.is_in([uuid.UUID(r) for r in run_ids])
    )
    # Each run's steps are those of the one execution that completed it.
    assert Counter(Counter(str(s["run"]) for s in steps).values()) == {4: RUNS}
    # The job history: a run's jobs never overlap. Events are compared by their ids,
    # taken in the order they were written (their `at` is the start of the transaction
    # that wrote them, which can precede the commit of another's event).
    events = await WorkflowRun.raw(
        "SELECT j.queueing_lock AS run_id, j.id AS job_id, e.type::text AS type, e.id AS seq"
        " FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id"
        " WHERE j.task_name = 'execute_run' ORDER BY j.id, e.id"
    )
    spans: dict[str, list[list]] = defaultdict(list)
    by_job: dict[int, list] = {}
    for e in events:
        span = by_job.get(e["job_id"])
        if span is None:
            span = by_job[e["job_id"]] = [None, None]
            spans[e["run_id"]].append(span)
        if e["type"] == "started":
            span[0] = e["seq"]
        elif e["type"] in ("succeeded", "failed", "aborted", "cancelled"):
            span[1] = e["seq"]
    handed_back = 0
    for run_id in run_ids:
        jobs = spans[run_id]
        handed_back += len(jobs) > 1
        for earlier, later in itertools.pairwise(jobs):
            assert earlier[1] is not None and later[0] is not None
            assert later[0] > earlier[1], (run_id, jobs)
    # Both old workers held runs when they were stopped: those runs were handed back.
    assert handed_back == RUNS, handed_back
    print(f"rolling restart: {RUNS} runs completed, {handed_back} handed back and re-run")


async def test_recovery_does_not_wait_for_a_job_slot(empty_db: str) -> None:
    database_url = empty_db
    # Two long runs; each worker has one slot, so the survivor's slot stays busy.
    run_ids = await _queue_runs(database_url, 2, chain_snapshot(30.0, nodes=1))
    workers = [WorkerProcess(database_url, concurrency=1) for _ in range(2)]
    try:
        for worker in workers:
            worker.wait_ready()

        async def both_running() -> bool:
            return (await _statuses(run_ids))["running"] == 2

        await until(both_running, 30, "both runs to start")
        victim = workers[0]
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.monotonic()
        victim.proc.wait()

        async def one_failed() -> bool:
            return (await _statuses(run_ids))["failed"] == 1

        await until(one_failed, 10, "the killed worker's run to be failed")
        print(f"run of a SIGKILLed worker failed {time.monotonic() - killed:.1f} s after")
        assert await _statuses(run_ids) == {"failed": 1, "running": 1}
        gone = await RunProcess.select(RunProcess.stopped_at).where(RunProcess.pid == victim.pid)
        assert gone[0]["stopped_at"] is not None
    finally:
        for worker in workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait()


async def test_a_run_longer_than_the_grace_period_is_handed_back_not_failed(
    empty_db: str,
) -> None:
    """With one worker, a run still in its node when the grace period ends used to be
    failed as `CancelledError` and never queued again."""
    [run_id] = await _queue_runs(empty_db, 1, chain_snapshot(10.0, nodes=1))
    worker = WorkerProcess(empty_db, concurrency=1, extra_env={"CA_GRACE_SECONDS": "2"})
    try:
        worker.wait_ready()

        async def running() -> bool:
            return (await _statuses([run_id]))["running"] == 1

        await until(running, 30, "the run to start")
        began = time.monotonic()
        await _stop(worker)
        assert time.monotonic() - began < 8  # the grace period, not the 10 s node
    finally:
        worker.stop()
    row = (
        await WorkflowRun.select(WorkflowRun.status, WorkflowRun.owner)
        .where(WorkflowRun.id == uuid.UUID(run_id))
        .first()
    )
    assert (row["status"], row["owner"]) == ("pending", None)
    with WorkerProcess(empty_db, concurrency=1):

        async def completed() -> bool:
            return (await _statuses([run_id]))["completed"] == 1

        await until(completed, 40, "the next worker to complete it")
