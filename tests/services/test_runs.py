"""Run use cases against the real database: examples, restart, cancel, recovery."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from factories import fixed_id, make_run
from support import BACKEND, FROZEN_NOW, new_service

from app.errors import (
    AlreadyRestarted,
    InvalidInputs,
    RunNotCancellable,
    RunNotFound,
    RunNotRestartable,
    SnapshotUnusable,
    WorkflowNotRunnable,
)
from app.services.runs import RunService, _StoreRecorder
from app.store.tables import StepRun, WorkflowRun
from app.workflows.loader import load_workflow

ROOT = Path(__file__).resolve().parents[2]

EXAMPLE_INPUTS = {
    "echo.yaml": {"message": "hi"},
    "article_writer.yaml": {"topic": "tides"},
    "routed.yaml": {"draft": "d"},
    "loop.yaml": {"draft": "d"},
    "fan_out.yaml": {"phrases": ["x"]},
    "slow.yaml": {"job": "j"},
    "order_totals.yaml": {"order_json": "{}"},
}


def service() -> RunService:
    return new_service()


@pytest.mark.parametrize("name", sorted(EXAMPLE_INPUTS))
async def test_every_example_runs_to_completion_on_the_mock_provider(
    empty_db: str, examples_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_workflow(examples_dir / name)
    if name == "slow.yaml":
        # The slow demo waits seconds per node; the executor is the same without the wait.
        spec = spec.model_copy(
            update={
                "config": spec.config.model_copy(
                    update={"llm": spec.config.llm.model_copy(update={"delay_seconds": 0.01})}
                )
            }
        )
    detail = await service().run_workflow(spec, EXAMPLE_INPUTS[name], trigger="cli")
    assert detail.summary.status == "completed", detail.summary.error_message
    # Progress counts nodes: the distinct nodes of the timeline (tool and sandbox calls
    # are rows of it, not node executions), never more than the workflow has; a loop's
    # iterations and a fan-out's items are counted beside.
    executions = [s for s in detail.steps if not s.tool]
    nodes = {s.node_id for s in executions}
    summary = detail.summary
    assert summary.steps_done == len(nodes) >= 1
    assert summary.steps_done <= summary.steps_total == len(spec.nodes)
    assert summary.items_done == len([s for s in executions if s.item_index is not None])
    repeated = max(
        [sum(1 for s in executions if s.node_id == n and s.item_index is None) for n in nodes]
    )
    assert summary.iterations == (repeated if repeated > 1 else 0)
    assert all(s.status == "completed" for s in detail.steps)
    assert detail.outputs is not None


async def test_flaky_fails_then_its_restart_completes_from_the_snapshot(
    empty_db: str, examples_dir: Path
) -> None:
    runs = service()
    first = await runs.run_workflow(load_workflow(examples_dir / "flaky.yaml"), {"text": "abc"})
    assert first.summary.status == "failed"
    assert first.summary.error_type == "MockFailure"
    assert first.summary.error_node == "summarise"
    assert "mock" in first.summary.error_message and "summarise" in first.summary.error_message

    result = await runs.restart(first.summary.id)
    assert result.attempt == 2 and result.work is None
    assert await runs.execute_run(result.run_id) == "completed"
    second = await runs.get_detail(result.run_id)
    assert second.summary.restarted_from == first.summary.id
    assert second.summary.attempt == 2
    assert second.config_snapshot == first.config_snapshot
    assert second.inputs == {"text": "abc"}
    assert second.outputs["summary"] == "A short summary of the text."
    original = await runs.get_summary(first.summary.id)
    assert original.restarted_as == (second.summary.id,)
    assert not original.is_restarting


async def test_many_simultaneous_restarts_create_exactly_one_run(empty_db: str) -> None:
    original = await make_run(1, created_at=FROZEN_NOW, status="failed")
    runs = service()
    results = await asyncio.gather(
        *(runs.restart(original) for _ in range(40)), return_exceptions=True
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(created) == 1
    assert all(isinstance(r, RunNotRestartable) for r in refused), refused
    assert await WorkflowRun.count().where(WorkflowRun.restarted_from == original) == 1


async def test_restart_refusals(empty_db: str) -> None:
    runs = service()
    with pytest.raises(RunNotFound):
        await runs.restart("not-a-uuid")
    with pytest.raises(RunNotFound):
        await runs.restart(fixed_id(404))
    for n, status in ((1, "pending"), (2, "running")):
        run_id = await make_run(n, created_at=FROZEN_NOW, status=status)
        with pytest.raises(RunNotRestartable, match=status):
            await runs.restart(run_id)
    parent = await make_run(3, created_at=FROZEN_NOW, status="failed")
    await make_run(4, created_at=FROZEN_NOW, status="running", restarted_from=parent, attempt=2)
    with pytest.raises(AlreadyRestarted, match="already restarted") as refused:
        await runs.restart(parent)
    assert refused.value.extra == {"restarted_as": fixed_id(4), "latest_attempt": fixed_id(4)}


@pytest.mark.parametrize(
    "snapshot",
    [None, {"flow": {"name": "x"}}, ["not", "a", "mapping"], "{not json"],
    ids=["missing", "invalid-spec", "wrong-shape", "corrupt"],
)
async def test_unusable_snapshot_refused_and_nothing_left_behind(empty_db: str, snapshot) -> None:
    if snapshot == "{not json" and BACKEND == "postgres":
        pytest.skip("PostgreSQL's json type cannot hold invalid JSON")
    kwargs = {"raw_snapshot": snapshot} if isinstance(snapshot, str) else {"snapshot": snapshot}
    run_id = await make_run(1, created_at=FROZEN_NOW, status="failed", **kwargs)
    with pytest.raises(SnapshotUnusable):
        await service().restart(run_id)
    assert await WorkflowRun.count() == 1


async def test_stored_inputs_no_longer_valid_are_refused(empty_db: str) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="failed", inputs={"other": 1})
    with pytest.raises(SnapshotUnusable, match="no longer valid"):
        await service().restart(run_id)
    assert await WorkflowRun.count() == 1


async def test_bad_inputs_write_nothing(empty_db: str, examples_dir: Path) -> None:
    spec = load_workflow(examples_dir / "article_writer.yaml")
    with pytest.raises(InvalidInputs) as missing:
        await service().create_run(spec, {})
    assert missing.value.field == "topic"
    with pytest.raises(InvalidInputs) as wrong:
        await service().create_run(spec, {"topic": 42})
    assert "topic" in wrong.value.message and "str" in wrong.value.message
    assert await WorkflowRun.count() == 0


async def test_cancel_stops_a_running_run_before_its_next_node(
    empty_db: str, examples_dir: Path
) -> None:
    runs = service()
    spec = load_workflow(examples_dir / "slow.yaml")
    spec = spec.model_copy(
        update={
            "config": spec.config.model_copy(
                update={"llm": spec.config.llm.model_copy(update={"delay_seconds": 0.3})}
            )
        }
    )
    run_id = await runs.create_run(spec, {"job": "j"})
    task = asyncio.create_task(runs.execute_run(run_id))
    deadline = time.monotonic() + 5
    while (await runs.get_summary(run_id)).current_node != "plan":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    cancelled = await runs.cancel(run_id)
    assert cancelled.status == "cancelled"
    assert await asyncio.wait_for(task, 5) == "cancelled"
    nodes = [
        s["node_id"] for s in await StepRun.select(StepRun.node_id).where(StepRun.run == run_id)
    ]
    # "plan" finished after the cancel: nothing is added to a run that has ended, and
    # no node starts after it.
    assert nodes == []
    assert (await runs.get_summary(run_id)).current_node is None
    assert (await runs.get_summary(run_id)).status == "cancelled"
    with pytest.raises(RunNotCancellable):
        await runs.cancel(run_id)


async def test_cancel_a_pending_run(empty_db: str) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="pending")
    runs = service()
    assert (await runs.cancel(run_id)).status == "cancelled"
    assert await runs.execute_run(run_id) is None  # never starts afterwards


async def test_executor_crash_does_not_leave_the_run_running(empty_db: str) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="pending", snapshot={"flow": "broken"})
    assert await service().execute_run(run_id) == "failed"
    summary = await service().get_summary(run_id)
    assert summary.status == "failed"
    assert summary.error_type == "SnapshotUnusable"


async def test_an_unexpected_error_between_nodes_keeps_the_finished_steps(
    empty_db: str, examples_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last finished step waits to be written with the check before the next node; an
    error at that point must not lose it."""
    real = _StoreRecorder.should_stop

    async def broken_before_write(self: _StoreRecorder, node_id: str | None = None) -> bool:
        if node_id == "write":
            raise RuntimeError("boom between nodes")
        return await real(self, node_id)

    monkeypatch.setattr(_StoreRecorder, "should_stop", broken_before_write)
    runs = service()
    run_id = await runs.create_run(
        load_workflow(examples_dir / "article_writer.yaml"), {"topic": "t"}
    )
    with pytest.raises(RuntimeError):
        await runs.execute_run(run_id)
    detail = await runs.get_detail(run_id)
    assert detail.summary.status == "failed" and detail.summary.error_type == "RuntimeError"
    assert [s.node_id for s in detail.steps] == ["research"]
    assert detail.summary.steps_done == 1


def _wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


async def test_run_killed_mid_execution_is_failed_as_interrupted_and_restartable(
    empty_db: str, examples_dir: Path
) -> None:
    env = {**os.environ, "DATABASE_URL": empty_db}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "run", str(examples_dir / "slow.yaml"), "--input", "job=x"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            rows = await WorkflowRun.select(WorkflowRun.id, WorkflowRun.status)
            if rows and rows[0]["status"] == "running":
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never started"
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    run_id = str(rows[0]["id"])
    assert (await service().get_summary(run_id)).status == "running"
    started = time.monotonic()
    # The next process to open the store: same kernel and PID namespace, so the dead
    # pid tells at once, long before the heartbeat would go stale.
    assert await service().supervisor.recover() == [run_id]
    assert time.monotonic() - started < 1
    summary = await service().get_summary(run_id)
    assert summary.status == "failed"
    assert summary.error_type == "Interrupted"
    assert f"(pid {proc.pid})" in summary.error_message
    assert "has exited" in summary.error_message
    runs = service()
    restarted = await runs.restart(run_id)
    assert restarted.attempt == 2


async def test_a_pending_run_whose_background_task_never_ran_is_resumed(
    empty_db: str, examples_dir: Path
) -> None:
    runs = service()
    run_id = await runs.create_run(load_workflow(examples_dir / "echo.yaml"), {"message": "x"})
    sup = runs.supervisor
    # Too young: its task may still start.
    assert await sup.resume_own(runs.execute_run, waiting_for=5) == []
    # Another process's pending runs are not ours to take.
    other = service()
    assert await other.supervisor.resume_own(other.execute_run, waiting_for=0) == []
    assert await sup.resume_own(runs.execute_run, waiting_for=0) == [run_id]
    await sup.wait_spawned()
    assert (await runs.get_summary(run_id)).status == "completed"


async def test_the_paid_pipeline_example_resumes_paying_only_for_its_failed_step(
    empty_db: str, examples_dir: Path
) -> None:
    runs = service()
    spec = load_workflow(examples_dir / "paid_pipeline.yaml")
    first = await runs.run_workflow(spec, {"document": "two outages"})
    assert (first.summary.status, first.summary.error_node) == ("failed", "report")
    assert first.summary.total_cost_usd == pytest.approx(2 * 0.0042)
    restart = await runs.restart(first.summary.id, resume="failure")
    assert restart.plan is not None and restart.plan.reused_nodes == ["extract", "analyse"]
    assert await runs.execute_run(restart.run_id) == "completed"
    resumed = await runs.get_detail(restart.run_id)
    assert [(s.node_id, s.status) for s in resumed.steps] == [
        ("extract", "reused"),
        ("analyse", "reused"),
        ("report", "completed"),
    ]
    assert resumed.summary.total_cost_usd == pytest.approx(0.0042)
    # Nodes done: the failed node is not; reused nodes are.
    assert (first.summary.steps_done, first.summary.steps_total) == (2, 3)
    assert (resumed.summary.steps_done, resumed.summary.steps_total) == (3, 3)
    # The same outputs as the failed run's completed steps, carried into the state.
    assert resumed.outputs is not None
    assert resumed.outputs["analysis"] == first.steps[1].output["analysis"]


async def test_tool_and_sandbox_calls_are_stored_under_their_node(
    empty_db: str, examples_dir: Path
) -> None:
    runs = service()
    detail = await runs.run_workflow(
        load_workflow(examples_dir / "order_totals.yaml"), {"order_json": "{}"}
    )
    assert detail.summary.status == "completed", detail.summary.error_message
    assert [(s.node_id, s.tool) for s in detail.steps] == [
        ("parse", None),
        ("parse", "json_parse"),
        ("add_up", None),
        ("add_up", "sandbox"),
        ("check_risk", None),
        ("write_note", None),
        ("summarise", None),
    ]
    assert (detail.summary.steps_done, detail.summary.steps_total) == (5, 5)
    sandbox = detail.steps[3]
    assert sandbox.output["result"] == {"result": 43.0, "stdout": "lines: 2\n"}
    assert sandbox.duration_ms is not None and sandbox.duration_ms > 0
    assert detail.outputs is not None and detail.outputs["total"] == 43.0
    # A resume takes over node executions only, never replays a tool call.
    assert [s["node_id"] for s in await runs.store.reusable_steps(detail.summary.id)] == [
        "parse",
        "add_up",
        "check_risk",
        "write_note",
        "summarise",
    ]


async def test_a_restart_of_a_workflow_that_cannot_run_here_is_refused(
    empty_db: str, examples_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = service()
    spec = load_workflow(examples_dir / "order_totals.yaml")
    text = (examples_dir / "order_totals.yaml").read_text()
    first = await runs.run_workflow(spec, {"order_json": "{}"})
    # The server no longer offers the tool the stored workflow uses.
    broken = text.replace("tools: [json_parse]", "tools: [shell]")
    from app.workflows.loader import parse_workflow

    with pytest.raises(WorkflowNotRunnable) as info:
        await runs.run_workflow(parse_workflow(broken), {"order_json": "{}"})
    assert "nodes[parse].tools[0]" in info.value.message
    assert "CA_ENABLED_TOOLS=shell" in info.value.message
    assert await WorkflowRun.count() == 1
    await WorkflowRun.update(
        {WorkflowRun.config_snapshot: json.dumps(parse_workflow(broken).snapshot())}
    ).where(WorkflowRun.id == first.summary.id)
    with pytest.raises(WorkflowNotRunnable):
        await runs.restart(first.summary.id)
    assert await WorkflowRun.count() == 1


async def test_progress_counts_nodes_done_and_what_repeated_beside(
    empty_db: str, examples_dir: Path
) -> None:
    """A loop that ran its one node three times is 1 of 1 nodes, not 3 of 1; a fan-out's
    target node is one node done, its items counted beside."""
    runs = service()
    loop = await runs.run_workflow(
        load_workflow(examples_dir / "loop.yaml"), EXAMPLE_INPUTS["loop.yaml"]
    )
    summary = loop.summary
    assert len([s for s in loop.steps if s.node_id == "refine"]) == 3
    assert (summary.steps_done, summary.steps_total, summary.iterations) == (1, 1, 3)
    assert (summary.items_done, summary.repeats) == (0, "loop \u00d73")

    fan = await runs.run_workflow(
        load_workflow(examples_dir / "fan_out.yaml"), EXAMPLE_INPUTS["fan_out.yaml"]
    )
    summary = fan.summary
    assert (summary.steps_done, summary.steps_total, summary.iterations) == (2, 2, 0)
    assert (summary.items_done, summary.repeats) == (3, "fan-out 3 items")


def _chain_of(count: int) -> str:
    """A workflow of `count` quick nodes one after the other, on the mock provider."""
    nodes = "\n".join(
        f"  - {{id: n{i}, prompt: 'step {i} of {{state.job}}', outputs: [out{i}]}}"
        for i in range(count)
    )
    fields = "\n".join(f"    out{i}: {{type: str, default: ''}}" for i in range(count))
    names = ["START", *(f"n{i}" for i in range(count)), "END"]
    edges = "\n".join(f"  - {{from: {a}, to: {b}}}" for a, b in itertools.pairwise(names))
    return (
        'schema_version: "1.0"\nflow: {name: quick_chain}\nstate:\n  fields:\n'
        f"    job: {{type: str, required: true}}\n{fields}\nnodes:\n{nodes}\nedges:\n{edges}\n"
        "config:\n  llm: {provider: mock, model: quick}\n"
    )


async def test_quick_nodes_write_their_progress_a_few_times_a_second_not_once_a_node(
    empty_db: str,
) -> None:
    from app.services.runs import PROGRESS_EVERY
    from app.workflows.loader import parse_workflow

    runs = service()
    writes = 0
    advance = runs.store.advance

    async def counted(*args: object, **kwargs: object) -> bool:
        nonlocal writes
        writes += 1
        return await advance(*args, **kwargs)  # type: ignore[arg-type]

    runs.store.advance = counted  # type: ignore[method-assign]
    began = time.monotonic()
    detail = await runs.run_workflow(parse_workflow(_chain_of(40)), {"job": "j"})
    took = time.monotonic() - began
    # At most one write per PROGRESS_EVERY between the nodes (and none when they all
    # fit in the first one); the steps and counters are whole all the same.
    assert writes <= took / PROGRESS_EVERY + 1, (writes, took)
    assert detail.summary.status == "completed"
    assert [s.node_id for s in detail.steps] == [f"n{i}" for i in range(40)]
    assert detail.summary.steps_done == detail.summary.steps_total == 40
    assert detail.summary.current_node is None
    # No progress write is left waiting once the run has ended.
    assert not [t for t in asyncio.all_tasks() if "_advance_later" in repr(t.get_coro())]


async def test_a_cancel_in_this_process_stops_quick_nodes_before_the_next_one(
    empty_db: str,
) -> None:
    from app.services.scheduling import InProcessScheduler
    from app.workflows.loader import parse_workflow

    runs = new_service(scheduler=InProcessScheduler)
    run_id = await runs.create_run(parse_workflow(_chain_of(40)), {"job": "j"})
    started: list[str] = []

    async def on_step(node_id: str, event: str, data: dict[str, object]) -> None:
        if event == "started":
            started.append(node_id)
        if event == "completed" and node_id == "n2":
            # Well inside the progress interval: no write would see the cancel yet.
            await runs.cancel(run_id)

    assert await runs.execute_run(run_id, on_step=on_step) == "cancelled"
    assert started == ["n0", "n1", "n2"]
    summary = await runs.get_summary(run_id)
    assert summary is not None and summary.status == "cancelled"
    assert runs.supervisor.stop_requested(run_id) is False  # forgotten once it ended
