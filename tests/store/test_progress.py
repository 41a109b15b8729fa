"""The executor's progress writes: node, step rows and the run's counters, only while the
run is running for the process that writes them, and safe to repeat."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from factories import make_run
from support import FROZEN_NOW

from app.store.runs import RunStore
from app.store.tables import StepRun, WorkflowRun

OWNER = "test-host:1"  # the factories' owner


def _step(node_id: str, order: int, item_index: int | None = None, **more: Any) -> dict:
    return {
        "id": uuid.uuid4(),
        "node_id": node_id,
        "order": order,
        "item_index": item_index,
        "status": "completed",
        "started_at": FROZEN_NOW + timedelta(seconds=4),
        "completed_at": FROZEN_NOW + timedelta(seconds=5),
        **more,
    }


async def _run(run_id: str) -> dict[str, Any]:
    return await WorkflowRun.select().where(WorkflowRun.id == run_id).first()


async def test_steps_add_to_the_counters_and_advance_sees_a_cancel(empty_db: str) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="running", steps_total=5)
    store = RunStore(clock=lambda: FROZEN_NOW + timedelta(seconds=6))
    assert await store.advance(run_id, OWNER, [], "write")
    # Fan-out branches finish together: no increment may be lost.
    await asyncio.gather(
        *(
            store.record_steps(
                run_id, OWNER, [_step("write", 1, i, output={"article": f"part {i}"}, tokens=10)]
            )
            for i in range(3)
        )
    )
    run = await _run(run_id)
    assert (run["steps_done"], run["total_tokens"], run["current_node"]) == (3, 30, "write")
    # The heartbeat is the database's time, not the writer's (frozen) clock.
    assert run["heartbeat_at"] > FROZEN_NOW + timedelta(days=1)
    steps = await StepRun.select().where(StepRun.run == run_id).order_by(StepRun.item_index)
    assert [s["output"] for s in steps] == [f'{{"article": "part {i}"}}' for i in range(3)]
    # The step ended when the executor said, not when it was written.
    assert {s["duration_ms"] for s in steps} == {1000.0}

    # The last step of a node goes with the check before the next one.
    assert await store.advance(
        run_id, OWNER, [_step("review", 2, tokens=5, cost_usd=0.25)], "publish"
    )
    run = await _run(run_id)
    assert (run["steps_done"], run["total_tokens"], run["total_cost_usd"]) == (4, 35, 0.25)
    assert run["current_node"] == "publish"

    assert await store.cancel(run_id)
    shown = (await _run(run_id))["current_node"]
    assert not await store.advance(run_id, OWNER, [_step("publish", 3, tokens=7)], "after")
    run = await _run(run_id)
    # Nothing is added to a run that someone else ended: no step, no tokens, no node.
    assert run["status"] == "cancelled" and run["current_node"] == shown
    assert (run["steps_done"], run["total_tokens"]) == (4, 35)
    assert await StepRun.count().where(StepRun.run == run_id) == 4


async def test_a_repeated_write_counts_its_steps_once(empty_db: str) -> None:
    """A write retried after an error that hid its commit (a connection lost after
    COMMIT) must not add the same steps twice."""
    run_id = await make_run(1, created_at=FROZEN_NOW, status="running", steps_total=5)
    store = RunStore()
    steps = [_step("write", 1, tokens=10, cost_usd=0.5), _step("review", 2, tokens=3)]
    for _ in range(3):
        assert await store.advance(run_id, OWNER, steps, "publish")
        assert await store.record_steps(run_id, OWNER, steps[:1])
    run = await _run(run_id)
    assert (run["steps_done"], run["total_tokens"], run["total_cost_usd"]) == (2, 13, 0.5)
    assert await StepRun.count().where(StepRun.run == run_id) == 2


async def test_only_the_owner_may_write_progress(empty_db: str) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="running", steps_total=5)
    store = RunStore()
    assert not await store.advance(run_id, "another-process", [_step("write", 1)], "next")
    assert not await store.record_steps(run_id, "another-process", [_step("write", 1)])
    assert not await store.finish(run_id, status="completed", owner="another-process")
    run = await _run(run_id)
    assert (run["status"], run["steps_done"], run["current_node"]) == ("running", 0, "echo")
    assert await StepRun.count().where(StepRun.run == run_id) == 0
