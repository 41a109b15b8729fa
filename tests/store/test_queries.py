"""The run list: filters in the database over all runs, keyset paging, lineage."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from factories import fixed_id, make_run
from support import BACKEND, FROZEN_NOW

from app.store.models import Cursor, RunFilters
from app.store.runs import DuplicateRestart, RunStore
from app.store.tables import WorkflowRun


async def _bulk_insert(count: int, *, start: int = 1, failed_every: int = 0) -> None:
    rows = []
    for i in range(start, start + count):
        status = "failed" if failed_every and i % failed_every == 0 else "completed"
        rows.append(
            WorkflowRun(
                id=uuid.UUID(int=i),
                workflow_name=f"wf_{i % 3}",
                status=status,
                attempt=1,
                config_snapshot="{}",
                inputs="{}",
                # Several runs share a timestamp, so paging must break ties by id.
                created_at=FROZEN_NOW - timedelta(seconds=i // 4),
            )
        )
    for chunk in range(0, len(rows), 500):
        await WorkflowRun.insert(*rows[chunk : chunk + 500])


async def test_paging_visits_each_of_10000_runs_exactly_once(empty_db: str) -> None:
    await _bulk_insert(10_000)
    store = RunStore()
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await store.list_runs(RunFilters(), cursor, limit=200)
        seen.extend(r.id for r in page.runs)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = Cursor.decode(page.next_cursor)
    assert pages == 50
    assert len(seen) == 10_000
    assert len(set(seen)) == 10_000
    created = [(r.created_at, r.id) for r in (await store.list_runs(RunFilters(), None, 200)).runs]
    assert created == sorted(created, reverse=True)


async def test_paging_back_with_before_returns_the_newer_page(empty_db: str) -> None:
    await _bulk_insert(120)
    store = RunStore()
    first = await store.list_runs(RunFilters(), None, limit=50)
    second = await store.list_runs(RunFilters(), Cursor.decode(first.next_cursor), limit=50)
    assert second.prev_cursor is not None
    back = await store.list_runs(RunFilters(), None, 50, before=Cursor.decode(second.prev_cursor))
    assert [r.id for r in back.runs] == [r.id for r in first.runs]
    assert back.prev_cursor is None
    assert first.prev_cursor is None


async def test_failed_filter_finds_a_failed_run_older_than_500_completed(empty_db: str) -> None:
    old_failed = await make_run(
        900_001,
        created_at=FROZEN_NOW - timedelta(days=3),
        status="failed",
        error=("Boom", "it broke", "echo"),
    )
    await _bulk_insert(600)
    page = await RunStore().list_runs(RunFilters(status="failed"), None, limit=50)
    assert [r.id for r in page.runs] == [old_failed]
    assert page.runs[0].error_node == "echo"


async def test_workflow_and_id_prefix_filters(empty_db: str) -> None:
    await _bulk_insert(30)
    store = RunStore()
    page = await store.list_runs(RunFilters(workflow="wf_1"), None, limit=50)
    assert page.runs and all(r.workflow_name == "wf_1" for r in page.runs)
    assert len(page.runs) == 10
    target = str(uuid.UUID(int=17))
    prefix = target[:35]  # every bulk id starts with zeros: only a long prefix narrows it
    page = await store.list_runs(RunFilters(id_prefix=prefix), None, limit=50)
    assert {r.id for r in page.runs} == {str(uuid.UUID(int=i)) for i in range(16, 31)}
    exact = await store.list_runs(RunFilters(id_prefix=target), None, limit=50)
    assert [r.id for r in exact.runs] == [target]
    assert (await store.list_runs(RunFilters(id_prefix="zz"), None, 50)).runs == ()
    assert await store.workflow_names() == ["wf_0", "wf_1", "wf_2"]


async def test_lineage_both_ways_and_restarting_state(empty_db: str) -> None:
    original = await make_run(1, created_at=FROZEN_NOW - timedelta(minutes=5), status="failed")
    first = await make_run(
        2,
        created_at=FROZEN_NOW - timedelta(minutes=4),
        status="failed",
        attempt=2,
        restarted_from=original,
    )
    second = await make_run(
        3,
        created_at=FROZEN_NOW - timedelta(minutes=3),
        status="running",
        attempt=3,
        restarted_from=first,
    )
    store = RunStore()
    summary = await store.get_summary(original)
    assert summary is not None
    # Its own restart, and the chain's latest attempt, which is still running.
    assert summary.restarted_as == (first,)
    assert summary.latest_restart.id == second
    assert summary.is_restarting and summary.active_restart.id == second
    middle = await store.get_summary(first)
    assert middle.restarted_as == (second,) and middle.active_restart.id == second
    detail = await store.get_detail(second)
    assert detail is not None and detail.summary.restarted_from == first
    assert detail.summary.restarted_as == () and detail.summary.latest_restart is None
    with pytest.raises(DuplicateRestart):
        await store.create_run(
            workflow_name="echo",
            snapshot={},
            inputs={},
            trigger="api",
            steps_total=1,
            owner=None,
            restarted_from=original,
        )


async def test_cursor_rejects_garbage() -> None:
    for token in ("", "nope", "2026-01-01T00:00:00_notauuid", f"2026-01-01T00:00:00_{fixed_id(1)}"):
        with pytest.raises(ValueError):
            Cursor.decode(token)


@pytest.mark.skipif(BACKEND == "postgres", reason="PostgreSQL's json type refuses invalid JSON")
async def test_corrupt_snapshot_is_returned_as_text_not_raised(empty_db: str) -> None:
    run_id = await make_run(5, created_at=FROZEN_NOW, status="failed", raw_snapshot="{not json")
    found = await RunStore().get_snapshot(run_id)
    assert found is not None
    assert found[1] == "{not json"


async def test_reads_together_inside_a_transaction(empty_db: str) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="completed", steps=2)
    store = RunStore()
    async with WorkflowRun._meta.db.transaction():
        detail = await store.get_detail(run_id, history=5)
    assert detail is not None and len(detail.steps) == 2 and detail.history == ()
