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
    # Fan-out branches finish together: no increment may be lost. The recorder marks
    # the first completion of a node: the node is done once, its items are counted.
    await asyncio.gather(
        *(
            store.record_steps(
                run_id,
                OWNER,
                [_step("write", 1, i, output={"article": f"part {i}"}, tokens=10, first=i == 0)],
            )
            for i in range(3)
        )
    )
    run = await _run(run_id)
    assert (run["steps_done"], run["items_done"], run["iterations"]) == (1, 3, 0)
    assert (run["total_tokens"], run["current_node"]) == (30, "write")
    # The heartbeat is the database's time, not the writer's (frozen) clock.
    assert run["heartbeat_at"] > FROZEN_NOW + timedelta(days=1)
    steps = await StepRun.select().where(StepRun.run == run_id).order_by(StepRun.item_index)
    assert [s["output"] for s in steps] == [f'{{"article": "part {i}"}}' for i in range(3)]
    # The step ended when the executor said, not when it was written.
    assert {s["duration_ms"] for s in steps} == {1000.0}

    # The last step of a node goes with the check before the next one.
    assert await store.advance(
        run_id, OWNER, [_step("review", 2, tokens=5, cost_usd=0.25, first=True)], "publish"
    )
    run = await _run(run_id)
    assert (run["steps_done"], run["total_tokens"], run["total_cost_usd"]) == (2, 35, 0.25)
    assert run["current_node"] == "publish"

    assert await store.cancel(run_id)
    shown = (await _run(run_id))["current_node"]
    assert not await store.advance(
        run_id, OWNER, [_step("publish", 3, tokens=7, first=True)], "after"
    )
    run = await _run(run_id)
    # Nothing is added to a run that someone else ended: no step, no tokens, no node.
    assert run["status"] == "cancelled" and run["current_node"] == shown
    assert (run["steps_done"], run["total_tokens"]) == (2, 35)
    assert await StepRun.count().where(StepRun.run == run_id) == 4


async def test_a_repeated_write_counts_its_steps_once(empty_db: str) -> None:
    """A write retried after an error that hid its commit (a connection lost after
    COMMIT) must not add the same steps twice."""
    run_id = await make_run(1, created_at=FROZEN_NOW, status="running", steps_total=5)
    store = RunStore()
    steps = [
        _step("write", 1, tokens=10, cost_usd=0.5, first=True),
        _step("review", 2, tokens=3, first=True),
    ]
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


async def test_a_loop_counts_its_node_once_and_its_iterations_beside(empty_db: str) -> None:
    """steps_done is nodes done: a node that completed three times is one node done, and
    `iterations` keeps the most times one node completed, whatever order writes land in."""
    run_id = await make_run(1, created_at=FROZEN_NOW, status="running", steps_total=1)
    store = RunStore()
    loop = [_step("refine", n, tokens=1, first=n == 1, iteration=n) for n in (1, 2, 3)]
    assert await store.advance(run_id, OWNER, loop[:1], "refine")
    assert (await _run(run_id))["iterations"] == 0  # one completion is no loop
    assert await store.advance(run_id, OWNER, loop[2:], "refine")
    # An earlier iteration written late (a retried write) does not lower it.
    assert await store.record_steps(run_id, OWNER, loop[1:2])
    assert await store.record_steps(run_id, OWNER, loop[1:2])
    # A failed execution is not a node done.
    failed = _step("publish", 4, status="failed", error="boom")
    assert await store.record_steps(run_id, OWNER, [failed])
    run = await _run(run_id)
    assert (run["steps_done"], run["iterations"], run["items_done"]) == (1, 3, 0)
    assert run["total_tokens"] == 3


async def test_a_run_handed_back_keeps_the_progress_of_the_steps_it_keeps(empty_db: str) -> None:
    """A stopping process hands its run back: the steps that did not complete go, and the
    counters are those of the steps kept, counted as the recorder would have."""
    run_id = await make_run(1, created_at=FROZEN_NOW, status="running", steps_total=3)
    store = RunStore()
    steps = [
        *(_step("refine", n, first=n == 1, iteration=n) for n in (1, 2)),
        *(_step("translate", 3, i, first=i == 0) for i in range(2)),
        _step("translate", 3, 2, status="cancelled"),
    ]
    assert await store.record_steps(run_id, OWNER, steps)
    assert await store.release(run_id, OWNER)
    run = await _run(run_id)
    assert run["status"] == "pending"
    assert (run["steps_done"], run["iterations"], run["items_done"]) == (2, 2, 2)
    claimed = await store.claim(run_id, OWNER)
    assert claimed is not None and claimed.steps_kept == 2
