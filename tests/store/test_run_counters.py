"""The counts and totals of the filter bar, read from the counters the triggers keep, are
exactly what counting the runs gives, for any workflow and time range, through inserts,
status changes, progress, bulk inserts and deletes, on both engines."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta

from factories import fixed_id, make_run

from app.store.counts import DAY, TEN_MINUTES, RunCounts, buckets, run_counts
from app.store.models import RunFilters
from app.store.tables import WorkflowRun

START = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
FINISHED = ("completed", "failed", "cancelled")


async def _direct(filters: RunFilters) -> RunCounts:
    runs = await WorkflowRun.select(
        WorkflowRun.id,
        WorkflowRun.restarted_from,
        WorkflowRun.status,
        WorkflowRun.workflow_name,
        WorkflowRun.created_at,
        WorkflowRun.total_tokens,
        WorkflowRun.total_cost_usd,
    )
    by: dict[str, int] = {}
    tokens, cost, attention = 0, 0.0, 0
    restarted = {run["restarted_from"] for run in runs}
    for run in runs:
        if filters.workflow and run["workflow_name"] not in filters.workflow:
            continue
        if filters.since and run["created_at"] < filters.since:
            continue
        if filters.until and run["created_at"] >= filters.until:
            continue
        if filters.id_prefix and not str(run["id"]).startswith(filters.id_prefix):
            continue
        by[run["status"]] = by.get(run["status"], 0) + 1
        if run["status"] in FINISHED:
            tokens += run["total_tokens"]
            cost += run["total_cost_usd"]
        attention += run["status"] == "failed" and run["id"] not in restarted
    return RunCounts(by_status=by, tokens=tokens, cost_usd=cost, attention=attention)


def _same(a: RunCounts, b: RunCounts) -> bool:
    return (
        a.by_status == b.by_status
        and a.tokens == b.tokens
        and abs(a.cost_usd - b.cost_usd) < 1e-9
        and a.attention == b.attention
    )


async def _seed(count: int, rng: random.Random) -> None:
    for n in range(1, count + 1):
        await make_run(
            n,
            created_at=START + timedelta(minutes=rng.randrange(0, 60 * 24 * 3)),
            status=rng.choice(["pending", "running", "completed", "failed", "cancelled"]),
            workflow_name=rng.choice(["echo", "routed", "paid"]),
            tokens=rng.randrange(0, 500),
            cost_usd=rng.randrange(0, 100) / 1000,
        )


async def _restart_some(rng: random.Random, first: int) -> None:
    """Restart a third of the failed runs; some restarts fail again."""
    failed = await WorkflowRun.select(WorkflowRun.id, WorkflowRun.created_at).where(
        WorkflowRun.status == "failed"
    )
    for n, run in enumerate(failed[::3], start=first):
        await make_run(
            n,
            created_at=run["created_at"] + timedelta(minutes=5),
            status=rng.choice(["failed", "completed", "pending"]),
            restarted_from=str(run["id"]),
            attempt=2,
        )


def _filters(rng: random.Random) -> RunFilters:
    def moment() -> datetime:
        return START + timedelta(minutes=rng.randrange(-60, 60 * 24 * 3 + 60), seconds=rng.random())

    since, until = moment(), moment()
    if since > until:
        since, until = until, since
    return RunFilters(
        workflow=rng.choice([None, "echo", "paid", "nope", ("echo", "paid"), ("paid", "nope")]),
        since=rng.choice([None, since]),
        until=rng.choice([None, until, since + timedelta(minutes=rng.randrange(1, 50))]),
    )


async def test_counts_match_counting_the_runs_for_any_filter(empty_db: str) -> None:
    rng = random.Random(14)
    await _seed(300, rng)
    await _restart_some(rng, 1000)
    checked = 0
    for _ in range(60):
        filters = _filters(rng)
        assert _same(await run_counts(filters), await _direct(filters)), filters
        checked += 1
    prefix = RunFilters(id_prefix=fixed_id(7)[:7])
    assert _same(await run_counts(prefix), await _direct(prefix))
    assert checked == 60


async def test_counts_follow_status_changes_progress_bulk_inserts_and_deletes(
    empty_db: str,
) -> None:
    rng = random.Random(15)
    await _seed(40, rng)
    await _restart_some(rng, 1000)
    everything = RunFilters()
    first_day = RunFilters(since=START + timedelta(minutes=30), until=START + timedelta(days=1))

    async def check() -> None:
        for filters in (everything, first_day, RunFilters(workflow="paid")):
            assert _same(await run_counts(filters), await _direct(filters)), filters

    # A run finishes: one status change, with its final totals.
    await WorkflowRun.update({WorkflowRun.status: "completed", WorkflowRun.total_tokens: 77}).where(
        WorkflowRun.status == "running"
    )
    await check()
    # Progress of a running run changes no count and no total.
    await make_run(500, created_at=START + timedelta(hours=5), status="running", tokens=3)
    before = await run_counts(everything)
    await WorkflowRun.update({WorkflowRun.total_tokens: 999}).where(
        WorkflowRun.id == uuid.UUID(fixed_id(500))
    )
    assert _same(await run_counts(everything), before)
    await check()
    # Many rows in one statement, as a bulk restart inserts them.
    await WorkflowRun.raw(
        "INSERT INTO workflow_run (id, workflow_name, status, trigger, attempt, created_at,"
        " total_tokens, total_cost_usd, steps_total, steps_done, inputs)"
        " SELECT id, workflow_name, 'pending', 'bulk', 2, created_at, 0, 0, 1, 0, inputs"
        " FROM workflow_run WHERE status = 'failed'".replace(
            "SELECT id,", "SELECT " + _new_id() + ","
        )
    )
    await check()
    await WorkflowRun.delete().where(WorkflowRun.workflow_name == "routed")
    await check()
    # What the counters read, changed in place (a repair, a test backdating a run).
    await WorkflowRun.update(
        {WorkflowRun.created_at: START + timedelta(days=2), WorkflowRun.total_cost_usd: 0.5}
    ).where(WorkflowRun.status == "completed")
    await check()
    # A restart that could not be scheduled is deleted: its original needs attention again.
    await WorkflowRun.delete().where(WorkflowRun.attempt == 2)
    await check()
    await WorkflowRun.delete(force=True)
    assert (await run_counts(everything)).total == 0


def _new_id() -> str:
    from app.store.dbtime import is_postgres

    if is_postgres():
        return "gen_random_uuid()"
    return "lower(hex(randomblob(16)))"


async def test_matching_is_the_lists_total(empty_db: str) -> None:
    counts = RunCounts(by_status={"failed": 3, "completed": 5})
    assert (counts.total, counts.matching("failed"), counts.matching(None)) == (8, 3, 8)
    assert counts.matching("running") == 0


def test_buckets_tile_any_range_with_few_counters() -> None:
    """Whole days in the middle, hours and ten minutes towards the edges: no gap, no
    overlap, and at most 5 + 23 buckets of the smaller spans at each edge."""
    rng = random.Random(3)
    for _ in range(5000):
        first = rng.randrange(0, 20 * 144) * TEN_MINUTES
        end = rng.choice([None, first + rng.randrange(1, 6 * 144) * TEN_MINUTES])
        parts = buckets(first, end)
        cells: list[tuple[int, int]] = []
        for span, a, b in parts:
            assert a % span == 0 and (b is None or b % span == 0)
            stop = b if b is not None else a + 10 * DAY
            cells += [(x, x + span) for x in range(a, stop, span)]
        cells.sort()
        assert cells[0][0] == first
        assert all(x[1] == y[0] for x, y in itertools.pairwise(cells))
        if end is not None:
            assert cells[-1][1] == end
            small = sum((b - a) // s for s, a, b in parts if s != DAY and b is not None)
            assert small <= 2 * (5 + 23)
