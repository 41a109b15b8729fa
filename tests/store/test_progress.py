"""The executor's progress writes: heartbeat and node, step rows and the run's counters."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from factories import make_run
from support import FROZEN_NOW

from app.store.runs import RunStore
from app.store.tables import StepRun, WorkflowRun


async def test_steps_add_to_the_counters_and_touch_sees_a_cancel(empty_db: str) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="running", steps_total=3)
    store = RunStore(clock=lambda: FROZEN_NOW + timedelta(seconds=5))
    assert await store.touch(run_id, "write")
    # Fan-out branches finish together: no increment may be lost.
    await asyncio.gather(
        *(
            store.record_step(
                run_id,
                node_id="write",
                order=1,
                item_index=i,
                status="completed",
                started_at=FROZEN_NOW + timedelta(seconds=4),
                output={"article": f"part {i}"},
                tokens=10,
                cost_usd=0.25,
            )
            for i in range(3)
        )
    )
    run = await WorkflowRun.select().where(WorkflowRun.id == run_id).first()
    assert (run["steps_done"], run["total_tokens"], run["total_cost_usd"]) == (3, 30, 0.75)
    assert run["current_node"] == "write"
    assert run["heartbeat_at"] == FROZEN_NOW + timedelta(seconds=5)
    steps = await StepRun.select().where(StepRun.run == run_id).order_by(StepRun.item_index)
    assert [s["output"] for s in steps] == [f'{{"article": "part {i}"}}' for i in range(3)]
    assert {s["duration_ms"] for s in steps} == {1000.0}

    assert await store.cancel(run_id)
    assert not await store.touch(run_id, "review")
