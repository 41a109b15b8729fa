"""No healthy run is failed: a heartbeat write that fails, a host clock that is off, a
sweeper that cannot see our pids, a write that fails at a node boundary, a real
PostgreSQL outage. Each process here is a real RunSupervisor on the real database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from factories import chain_snapshot
from support import BACKEND, new_service, pg_admin

from app.services.runs import RunService
from app.store.processes import ProcessStore
from app.store.runs import RunStore
from app.store.tables import RunProcess, StepRun, WorkflowRun
from app.workflows.loader import workflow_from_snapshot

ROOT = Path(__file__).resolve().parents[2]


def _slow_spec(delay: float, nodes: int = 3) -> Any:
    return workflow_from_snapshot(chain_snapshot(delay, nodes))


@contextlib.asynccontextmanager
async def _process(runs: RunService) -> AsyncIterator[RunService]:
    """The service's process, registered and heartbeating, as `serve` or `worker` run it."""
    await runs.supervisor.start()
    try:
        yield runs
    finally:
        await runs.supervisor.stop()


async def _sweep_while(task: asyncio.Task[Any], sweeper: RunService) -> list[str]:
    """Another process's recovery, every 50 ms, for as long as the run executes."""
    failed: list[str] = []
    while not task.done():
        failed += await sweeper.supervisor.recover()
        await asyncio.sleep(0.05)
    return failed


class _Flaky:
    """Makes a method raise a transient database error for its first `times` calls."""

    def __init__(self, times: int):
        self.left = times
        self.raised = 0

    def error(self) -> Exception:
        if BACKEND == "postgres":
            import asyncpg

            return asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        return sqlite3.OperationalError("database is locked")

    def wrap(self, method: Any) -> Any:
        async def flaky(*args: Any, **kwargs: Any) -> Any:
            if self.left > 0:
                self.left -= 1
                self.raised += 1
                raise self.error()
            return await method(*args, **kwargs)

        return flaky


async def test_failed_heartbeat_writes_do_not_fail_the_run(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point 1: one failed heartbeat used to end heartbeats for the rest of the run, and
    the sweep (even the run's own process) then failed it as interrupted."""
    runs = new_service(heartbeat_seconds=0.1, stale_after_seconds=1.0)
    sweeper = new_service(heartbeat_seconds=0.1, stale_after_seconds=1.0)
    flaky = _Flaky(times=5)
    monkeypatch.setattr(runs.supervisor.processes, "beat", flaky.wrap(ProcessStore().beat))
    async with _process(runs), _process(sweeper):
        run_id = await runs.create_run(_slow_spec(0.8), {"message": "hi"})
        task = asyncio.create_task(runs.execute_run(run_id))
        failed = await _sweep_while(task, sweeper)
        own = await runs.supervisor.recover()  # never its own in-flight runs
        assert await task == "completed"
    assert flaky.raised == 5
    assert failed == [] and own == []
    detail = await runs.get_detail(run_id)
    assert detail.summary.status == "completed" and len(detail.steps) == 3


async def test_a_host_clock_60_s_slow_fails_nothing(empty_db: str) -> None:
    """Point 4: heartbeats were written with the executing host's clock and compared with
    the sweeper's. Now both sides use the database's clock."""
    slow_clock = lambda: RunStore().clock() - timedelta(seconds=60)  # noqa: E731
    runs = new_service(clock=slow_clock, heartbeat_seconds=0.1, stale_after_seconds=2.0)
    sweeper = new_service(heartbeat_seconds=0.1, stale_after_seconds=2.0)
    async with _process(runs), _process(sweeper):
        run_id = await runs.create_run(_slow_spec(0.5), {"message": "hi"})
        task = asyncio.create_task(runs.execute_run(run_id))
        failed = await _sweep_while(task, sweeper)
        assert await task == "completed"
    assert failed == []
    # The run's own times are the host's (shown to people); liveness never used them.
    summary = await runs.get_summary(run_id)
    assert summary.status == "completed"


async def test_a_process_silent_past_the_window_is_failed_and_named(empty_db: str) -> None:
    """The other side of liveness: a process whose heartbeat stopped (in database time)
    has its running runs failed, naming the process, and is shown as gone."""
    runs = new_service(heartbeat_seconds=0.1, stale_after_seconds=1.0, kind="worker")
    sweeper = new_service(heartbeat_seconds=0.1, stale_after_seconds=1.0)
    async with _process(sweeper):
        await runs.supervisor.start()
        run_id = await runs.create_run(_slow_spec(30, nodes=1), {"message": "hi"})
        task = asyncio.create_task(runs.execute_run(run_id))
        while (await runs.get_summary(run_id)).status != "running":
            await asyncio.sleep(0.02)
        # The process freezes: no heartbeat any more (its task is stopped, not cancelled
        # through the executor, as a SIGSTOP or a partition would leave it).
        runs.supervisor._beating.cancel()
        began = time.monotonic()
        failed: list[str] = []
        while not failed:
            failed = await sweeper.supervisor.recover()
            assert time.monotonic() - began < 5
            await asyncio.sleep(0.1)
        assert failed == [run_id]
        summary = await runs.get_summary(run_id)
        who = runs.supervisor.describe()
        assert summary.error_type == "Interrupted" and who in summary.error_message
        assert "sent no heartbeat" in summary.error_message
        gone = await ProcessStore().get(runs.supervisor.instance_id)
        assert gone is not None and not gone.alive
        # Its late writes are refused: the executor stops at its next node.
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert (await runs.get_summary(run_id)).status == "failed"
        runs.supervisor._beating = None
        await runs.supervisor.stop()


async def test_a_transient_error_at_a_node_boundary_loses_no_step(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point 6: the step buffer was emptied before the write that failed, and nothing
    was retried: the run failed and the finished step was gone."""
    runs = new_service()
    flaky = _Flaky(times=3)
    monkeypatch.setattr(runs.store, "_update_progress", flaky.wrap(runs.store._update_progress))
    async with _process(runs):
        run_id = await runs.create_run(_slow_spec(0.01), {"message": "hi"})
        assert await runs.execute_run(run_id) == "completed"
    assert flaky.raised == 3
    detail = await runs.get_detail(run_id)
    assert [s.node_id for s in detail.steps] == ["n1", "n2", "n3"]
    assert detail.summary.steps_done == 3


async def test_a_run_executing_is_named_in_its_json(empty_db: str) -> None:
    runs = new_service()
    async with _process(runs):
        run_id = await runs.create_run(_slow_spec(0.01, nodes=1), {"message": "hi"})
        await runs.execute_run(run_id)
    who = (await runs.get_summary(run_id)).executed_by
    assert who is not None
    assert (who.instance, who.kind, who.pid) == (runs.supervisor.instance_id, "cli", os.getpid())


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("unshare"), reason="needs util-linux's unshare")
async def test_a_sweeper_in_another_pid_namespace_fails_nothing(
    empty_db: str, examples_dir: Path
) -> None:
    """Point 3: with liveness by `hostname:pid`, a process that shares the hostname but
    not the PID namespace (two containers of one pod) saw our pid as dead."""
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=10
    )
    if probe.returncode != 0:
        pytest.skip(f"unshare --pid is not permitted here: {probe.stderr.decode().strip()}")
    runs = new_service(heartbeat_seconds=0.2)
    async with _process(runs):
        # Long enough to outlast the other process's start and sweep.
        run_id = await runs.create_run(_slow_spec(2.5, nodes=4), {"message": "hi"})
        task = asyncio.create_task(runs.execute_run(run_id))
        while (await runs.get_summary(run_id)).status != "running":
            await asyncio.sleep(0.02)
        env = {**os.environ, "DATABASE_URL": empty_db}
        # `run` opens the store, and so sweeps for dead processes, as every process does.
        other = await asyncio.create_subprocess_exec(
            "unshare", "--pid", "--fork", "--mount-proc",
            sys.executable, "-m", "app", "run", str(examples_dir / "echo.yaml"),
            "--input", "message=from another namespace",
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(other.communicate(), 60)
        assert other.returncode == 0, err.decode()
        assert (await runs.get_summary(run_id)).status == "running"
        assert await task == "completed"
    # The other process's own pid namespace was recorded, so it never judged ours by pid.
    namespaces = {r["pid_ns"] for r in await RunProcess.select(RunProcess.pid_ns)}
    assert len(namespaces) == 2


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "postgres", reason="a PostgreSQL server outage")
async def test_a_long_llm_call_survives_a_database_outage(empty_db: str) -> None:
    """A node of 6 s; in its middle the database refuses connections for 1 s and every
    connection to it is terminated. The run completes with all its steps."""
    name = empty_db.rsplit("/", 1)[1]
    runs = new_service(heartbeat_seconds=0.2, stale_after_seconds=20)
    sweeper = new_service(heartbeat_seconds=0.2, stale_after_seconds=20)
    async with _process(runs), _process(sweeper):
        run_id = await runs.create_run(_slow_spec(6.0, nodes=2), {"message": "hi"})
        task = asyncio.create_task(runs.execute_run(run_id))
        while (await runs.get_summary(run_id)).current_node != "n1":
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        try:
            await pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await pg_admin(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
            await asyncio.sleep(1)
        finally:
            await pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        failed = await _sweep_while(task, sweeper)
        assert await task == "completed"
    assert failed == []
    steps = await StepRun.select(StepRun.node_id).where(StepRun.run == run_id)
    assert sorted(s["node_id"] for s in steps) == ["n1", "n2"]
    assert await WorkflowRun.count().where(WorkflowRun.status == "running") == 0


async def test_pending_runs_of_a_dead_process_are_executed_not_failed(empty_db: str) -> None:
    """Point 5: a process that died after creating a run but before starting it used to
    leave it to be failed "before it started". Now the next process executes it."""
    dead = new_service()
    await dead.supervisor.start()
    run_id = await dead.create_run(_slow_spec(0.01, nodes=2), {"message": "hi"})
    # The process dies: a pid that no longer exists, on this kernel and PID namespace.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    await RunProcess.update({RunProcess.pid: child.pid}).where(
        RunProcess.id == dead.supervisor.instance_id
    )
    dead.supervisor._beating.cancel()
    dead.supervisor._beating = None

    nxt = new_service(kind="dashboard")
    async with _process(nxt):
        assert await nxt.supervisor.recover() == []  # nothing to fail: it never ran
        assert await nxt.supervisor.adopt(nxt.execute_run) == [run_id]
        await nxt.supervisor.wait_spawned()
    summary = await nxt.get_summary(run_id)
    assert summary.status == "completed"
    assert summary.executed_by is not None
    assert summary.executed_by.instance == nxt.supervisor.instance_id


async def test_after_its_own_outage_a_process_judges_no_other_by_heartbeat_age(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the database comes back after an outage longer than the window, every
    heartbeat is old at once; the first process to sweep must not fail the others'
    runs before their next beat lands."""
    other = new_service(heartbeat_seconds=0.1, stale_after_seconds=1.0)
    sweeper = new_service(heartbeat_seconds=0.1, stale_after_seconds=1.0)
    async with _process(other), _process(sweeper):
        run_id = await other.create_run(_slow_spec(30, nodes=1), {"message": "hi"})
        task = asyncio.create_task(other.execute_run(run_id))
        while (await other.get_summary(run_id)).status != "running":
            await asyncio.sleep(0.02)
        # The outage, as both saw it: neither could write a heartbeat for 1.5 s.
        other.supervisor._beating.cancel()
        flaky = _Flaky(times=10**6)
        monkeypatch.setattr(sweeper.supervisor.processes, "beat", flaky.wrap(ProcessStore().beat))
        await asyncio.sleep(1.5)
        monkeypatch.undo()
        assert flaky.raised > 0
        # Back: the other process's heartbeat is 1.5 s old, but the sweeper was cut off too.
        assert await sweeper.supervisor.recover() == []
        assert (await other.get_summary(run_id)).status == "running"
        # Once the sweeper has been connected for a whole window, silence means death.
        await asyncio.sleep(1.2)
        assert await sweeper.supervisor.recover() == [run_id]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        other.supervisor._beating = None


async def test_stopping_while_runs_reach_their_node_in_time(empty_db: str) -> None:
    """The usual deploy: runs hand themselves back within the grace period, and the
    process is then marked stopped and its heartbeat ended."""
    runs = new_service(kind="dashboard", grace_seconds=10)
    await runs.supervisor.start()
    run_id = await runs.create_run(_slow_spec(0.3, nodes=4), {"message": "hi"})
    runs.supervisor.spawn(run_id, runs.execute_run)
    while (await runs.get_summary(run_id)).status != "running":
        await asyncio.sleep(0.02)
    await asyncio.wait_for(runs.supervisor.stop(), 5)
    summary = await runs.get_summary(run_id)
    assert (summary.status, summary.owner) == ("pending", None)
    process = await ProcessStore().get(runs.supervisor.instance_id)
    assert process is not None and not process.alive and process.stop_reason == "stopped"
    assert runs.supervisor._beating is None


async def test_pending_runs_left_by_an_older_version_are_taken_up(empty_db: str) -> None:
    from factories import make_run
    from support import FROZEN_NOW

    run_id = await make_run(
        1, created_at=FROZEN_NOW, status="pending", owner="old-host:4242", snapshot=None
    )
    nxt = new_service(kind="dashboard", stale_after_seconds=5)
    async with _process(nxt):
        await nxt.supervisor.recover()
        assert await nxt.supervisor.adopt(nxt.execute_run) == [run_id]
        await nxt.supervisor.wait_spawned()
    # It executed (its missing snapshot fails it, as it would any process's).
    assert (await nxt.get_summary(run_id)).error_type == "SnapshotUnusable"
