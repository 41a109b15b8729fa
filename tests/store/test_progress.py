"""The executor's progress writes: heartbeat and node, step rows and the run's counters."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from factories import make_run
from support import FROZEN_NOW

from app.store.runs import RunStore
from app.store.tables import StepRun, WorkflowRun


def _step(node_id: str, order: int, item_index: int | None = None, **more: Any) -> dict:
    return {
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
    assert await store.advance(run_id, [], "write")
    # Fan-out branches finish together: no increment may be lost.
    await asyncio.gather(
        *(
            store.record_step(
                run_id, **_step("write", 1, i, output={"article": f"part {i}"}, tokens=10)
            )
            for i in range(3)
        )
    )
    run = await _run(run_id)
    assert (run["steps_done"], run["total_tokens"], run["current_node"]) == (3, 30, "write")
    assert run["heartbeat_at"] == FROZEN_NOW + timedelta(seconds=6)
    steps = await StepRun.select().where(StepRun.run == run_id).order_by(StepRun.item_index)
    assert [s["output"] for s in steps] == [f'{{"article": "part {i}"}}' for i in range(3)]
    # The step ended when the executor said, not when it was written.
    assert {s["duration_ms"] for s in steps} == {1000.0}

    # The last step of a node goes with the check before the next one.
    assert await store.advance(run_id, [_step("review", 2, tokens=5, cost_usd=0.25)], "publish")
    run = await _run(run_id)
    assert (run["steps_done"], run["total_tokens"], run["total_cost_usd"]) == (4, 35, 0.25)
    assert run["current_node"] == "publish"

    assert await store.cancel(run_id)
    shown = (await _run(run_id))["current_node"]
    assert not await store.advance(run_id, [_step("publish", 3, status="cancelled")], "after")
    run = await _run(run_id)
    assert run["status"] == "cancelled" and run["current_node"] == shown
    assert run["steps_done"] == 5
    assert await StepRun.count().where(StepRun.run == run_id) == 5
