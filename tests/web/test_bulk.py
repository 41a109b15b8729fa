"""Bulk restart and cancel through real HTTP: selection by ids and by filter, the
skipped reasons, the spend cap to the cent, dry runs, idempotent retries, and two
overlapping batches creating every restart once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from factories import fixed_id, make_run, restarts_of
from support import FROZEN_NOW, JSON

from app.store.tables import WorkflowRun


async def _failed(n: int, count: int, *, cost: float = 0.01, workflow: str = "echo") -> list[str]:
    return [
        await make_run(
            n + i,
            created_at=FROZEN_NOW - timedelta(minutes=10, seconds=i),
            status="failed",
            workflow_name=workflow,
            error=("ProviderError", "boom", "echo"),
            cost_usd=cost,
            tokens=100,
        )
        for i in range(count)
    ]


async def test_bulk_restart_by_filter_counts_skipped_by_reason(client: Any) -> None:
    failed = await _failed(1, 5)
    await make_run(20, created_at=FROZEN_NOW - timedelta(minutes=1), status="running")
    await make_run(21, created_at=FROZEN_NOW - timedelta(minutes=2), status="completed")
    # Already restarted: its restart is the run created from it.
    await make_run(
        22, created_at=FROZEN_NOW - timedelta(minutes=3), status="failed", restarted_from=failed[0]
    )
    body = {"filter": {"status": "failed", "workflow": "echo"}, "dry_run": True}
    dry = await client.post("/workflows/restart", json=body, headers=JSON)
    assert dry.status_code == 200, dry.text
    preview = dry.json()
    assert preview["matched"] == 6
    assert preview["restartable"] == 5
    assert preview["skipped"] == {"active": 0, "already_restarted": 1, "no_snapshot": 0}
    assert preview["restarted"] == 0 and preview["batch_id"] is None
    assert await restarts_of(failed) == {failed[0]: 1}

    done = await client.post(
        "/workflows/restart", json={"filter": {"status": "failed"}}, headers=JSON
    )
    assert done.status_code == 200, done.text
    answer = done.json()
    # Four of the five at their own last cost (more than the median of the workflow's
    # completed runs, run 21's $0); run 22 recorded none, and the median stands in.
    assert answer["restarted"] == 5
    assert answer["estimated_cost_usd"] == 0.04
    counts = await restarts_of([*failed, fixed_id(22)])
    assert all(n == 1 for n in counts.values()) and len(counts) == 6

    batch = await client.get(f"/workflows/batches/{answer['batch_id']}", headers=JSON)
    assert batch.status_code == 200
    progress = batch.json()["progress"]
    assert progress["created"] == 5
    assert sum(progress[s] for s in ("pending", "running", "completed", "failed")) == 5

    again = await client.post(
        "/workflows/restart", json={"filter": {"status": "failed"}}, headers=JSON
    )
    # Every failed run was restarted once (their restarts may have failed by now, and
    # those are restarted in turn: the tips of the chains).
    assert await restarts_of(failed) == {f: 1 for f in failed}
    assert again.json()["skipped"]["already_restarted"] >= 6


async def test_spend_cap_refuses_to_the_cent_and_creates_nothing(client: Any) -> None:
    failed = await _failed(1, 100, cost=0.10)  # $10.00 in all
    over = await client.post(
        "/workflows/restart",
        json={"ids": failed, "max_cost_usd": 9.99},
        headers=JSON,
    )
    assert over.status_code == 400, over.text
    assert over.json()["code"] == "over_spend_cap"
    assert over.json()["estimated_cost_usd"] == 10.0
    assert over.json()["max_cost_usd"] == 9.99
    assert await restarts_of(failed) == {}
    exact = await client.post(
        "/workflows/restart", json={"ids": failed, "max_cost_usd": 10.00}, headers=JSON
    )
    assert exact.status_code == 200, exact.text
    assert exact.json()["restarted"] == 100


async def test_an_idempotency_key_returns_the_first_answer(client: Any) -> None:
    failed = await _failed(1, 3)
    headers = {**JSON, "Idempotency-Key": "retry-me-1"}
    first = await client.post("/workflows/restart", json={"ids": failed}, headers=headers)
    second = await client.post("/workflows/restart", json={"ids": failed}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.json()["restarted"] == 3
    other = await client.post("/workflows/restart", json={"ids": failed[:1]}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


async def test_two_overlapping_batches_create_every_restart_once(client: Any) -> None:
    failed = await _failed(1, 60)
    first, second = failed[:40], failed[20:]
    answers = await asyncio.gather(
        client.post("/workflows/restart", json={"ids": first}, headers=JSON),
        client.post("/workflows/restart", json={"ids": second}, headers=JSON),
    )
    assert [a.status_code for a in answers] == [200, 200]
    total = sum(a.json()["restarted"] for a in answers)
    assert total == 60
    counts = await restarts_of(failed)
    assert len(counts) == 60 and set(counts.values()) == {1}
    skipped = sum(a.json()["skipped"]["already_restarted"] for a in answers)
    assert skipped == 20


async def test_bulk_cancel_by_ids(client: Any) -> None:
    active = [
        await make_run(i, created_at=FROZEN_NOW - timedelta(minutes=i), status=s)
        for i, s in ((1, "pending"), (2, "running"), (3, "completed"))
    ]
    answer = await client.post("/workflows/cancel", json={"ids": active}, headers=JSON)
    assert answer.status_code == 200, answer.text
    assert answer.json()["cancelled"] == 2
    assert answer.json()["skipped"] == {"finished": 1}
    statuses = await WorkflowRun.select(WorkflowRun.status).where(
        WorkflowRun.id.is_in([uuid.UUID(i) for i in active])
    )
    assert sorted(r["status"] for r in statuses) == ["cancelled", "cancelled", "completed"]


async def test_bad_selections_say_what_is_wrong(client: Any) -> None:
    cases = [
        ({}, '"ids"'),
        ({"ids": [], "filter": {}}, "not both"),
        ({"ids": ["nope"]}, '"ids"[0]'),
        ({"filter": {"status": "weird"}}, "status"),
        ({"filter": {"colour": "red"}}, "colour"),
        ({"filter": {"since": "yesterday"}}, "since"),
        ({"ids": [fixed_id(1)], "max_cost_usd": -1}, "max_cost_usd"),
    ]
    for body, says in cases:
        response = await client.post("/workflows/restart", json=body, headers=JSON)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["code"] == "invalid_selection"
        assert says in response.json()["error"], (body, response.json())


async def test_the_estimate_takes_the_workflows_median_where_a_run_paid_less(client: Any) -> None:
    """A run that failed early paid for part of the workflow: its restart is expected to
    cost what the workflow's completed runs cost (median $0.05), in the dry run and in
    the check inside the transaction alike."""
    for n, cost in ((30, 0.04), (31, 0.05), (32, 0.07)):
        await make_run(n, created_at=FROZEN_NOW - timedelta(hours=1), cost_usd=cost, tokens=9)
    failed = await _failed(1, 4, cost=0.01)
    other = await _failed(10, 2, cost=0.02, workflow="other")  # no completed runs: own cost
    # The row carries the estimate its confirmation quotes ("*": the workflow's median).
    row = await client.get(f"/workflows/{failed[0]}/row")
    assert 'data-e="$0.0500*"' in row.text
    row = await client.get(f"/workflows/{other[0]}/row")
    assert 'data-e="$0.0200"' in row.text
    dry = await client.post(
        "/workflows/restart", json={"ids": [*failed, *other], "dry_run": True}, headers=JSON
    )
    assert dry.json()["estimated_cost_usd"] == 0.24  # 4 x 0.05 + 2 x 0.02
    assert dry.json()["last_cost_usd"] == 0.08
    over = await client.post(
        "/workflows/restart", json={"ids": [*failed, *other], "max_cost_usd": 0.23}, headers=JSON
    )
    assert over.status_code == 400 and over.json()["estimated_cost_usd"] == 0.24
    done = await client.post(
        "/workflows/restart", json={"ids": [*failed, *other], "max_cost_usd": 0.24}, headers=JSON
    )
    assert done.json()["restarted"] == 6 and done.json()["estimated_cost_usd"] == 0.24
