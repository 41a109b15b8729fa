"""The hub behind the live pages: what a change costs does not grow with the tabs."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from datetime import UTC, datetime, timedelta

from factories import fixed_id, make_run

from app.services.live import LiveHub, Watch, matches
from app.store.models import RunFilters, RunSummary
from app.store.runs import RunStore

NOW = datetime.now(UTC)


def counting_hub() -> tuple[LiveHub, Counter[str]]:
    """A hub whose every database read is counted, fed by the test (not the database)."""
    hub = LiveHub(RunStore(), database_url=os.environ["DATABASE_URL"])
    hub._start = lambda: None  # type: ignore[method-assign]
    calls: Counter[str] = Counter()

    def counted(name, load):  # type: ignore[no-untyped-def]
        async def wrapper(ids):  # type: ignore[no-untyped-def]
            calls[name] += 1
            return await load(ids)

        return wrapper

    hub._summaries.load = counted("summaries", hub._summaries.load)
    hub._ancestors.load = counted("ancestors", hub._ancestors.load)
    hub._details.load = counted("details", hub._details.load)
    return hub, calls


async def _one_change_seen_by(tabs: int, run_ids: list[str]) -> Counter[str]:
    hub, calls = counting_hub()
    subs = [
        await hub.subscribe(Watch(filters=RunFilters(), shown=frozenset(run_ids)), None)
        for _ in range(tabs)
    ]
    subs.append(await hub.subscribe(Watch(run_id=run_ids[0]), None))
    try:
        hub.publish(set(run_ids[:10]), datetime.now(UTC))
        updates = await asyncio.gather(*(s.next(5) for s in subs))
        assert all(u and (u.rows or u.detail) for u in updates)
        assert all(len(u.rows) == 10 for u in updates[:-1])
    finally:
        hub.closed = True
        for sub in subs:
            sub.close()
    return calls


async def test_a_change_is_read_once_however_many_tabs_show_it(empty_db: str) -> None:
    run_ids = [
        await make_run(n, created_at=NOW - timedelta(minutes=n), status="running")
        for n in range(1, 51)
    ]
    one = await _one_change_seen_by(1, run_ids)
    hundred = await _one_change_seen_by(100, run_ids)
    assert one == hundred == Counter(summaries=1, ancestors=1, details=1)


async def test_a_new_run_counts_once_and_only_where_it_matches(empty_db: str) -> None:
    shown = await make_run(1, created_at=NOW - timedelta(minutes=5), status="failed")
    hub, _ = counting_hub()
    failed_tab = await hub.subscribe(
        Watch(filters=RunFilters(status="failed"), shown=frozenset({shown}), newer_than=NOW),
        None,
    )
    other_tab = await hub.subscribe(
        Watch(filters=RunFilters(workflow="summary"), shown=frozenset(), newer_than=NOW), None
    )
    try:
        new = await make_run(2, created_at=NOW + timedelta(seconds=1), status="failed")
        hub.publish({new}, datetime.now(UTC))
        update = await failed_tab.next(5)
        assert update.new_runs == 1 and update.rows == []
        assert await other_tab.next(0.2) is None  # echo is not "summary": nothing to send
        hub.publish({new}, datetime.now(UTC))  # the same run again: still one new run
        assert await failed_tab.next(0.2) is None
    finally:
        hub.closed = True


def test_filters_match_as_the_list_query_does() -> None:
    run = RunSummary(
        id=fixed_id(0x3F2A),
        workflow_name="echo",
        status="failed",
        trigger="api",
        attempt=1,
        restarted_from=None,
        created_at=NOW,
        started_at=NOW,
        completed_at=NOW,
        error_type=None,
        error_message=None,
        error_node=None,
        total_tokens=0,
        total_cost_usd=0.0,
        steps_total=1,
        steps_done=1,
        current_node=None,
    )
    assert matches(RunFilters(), run)
    assert matches(RunFilters(status="failed", workflow="echo", id_prefix="00003F2A-0"), run)
    assert not matches(RunFilters(status="completed"), run)
    assert not matches(RunFilters(workflow="summary"), run)
    assert not matches(RunFilters(id_prefix="ffff"), run)


async def test_a_tab_that_goes_away_mid_load_does_not_break_the_others(empty_db: str) -> None:
    run_id = await make_run(1, created_at=NOW, status="running")
    hub, _ = counting_hub()
    started = asyncio.Event()
    load = hub._summaries.load

    async def slow(ids):  # type: ignore[no-untyped-def]
        started.set()
        await asyncio.sleep(0.3)
        return await load(ids)

    hub._summaries.load = slow
    watch = Watch(filters=RunFilters(), shown=frozenset({run_id}))
    loading = await hub.subscribe(watch, None)
    waiting = await hub.subscribe(watch, None)
    try:
        hub.publish({run_id}, datetime.now(UTC))
        first = asyncio.create_task(loading.next(5))
        await started.wait()
        second = asyncio.create_task(waiting.next(5))
        await asyncio.sleep(0.05)
        first.cancel()  # its browser tab closed while its load ran
        update = await second
        assert [r.id for r in update.rows] == [run_id]
        # And the next tab to ask is served from the finished load, not a broken one.
        later = await hub.subscribe(watch, None)
        hub.publish({run_id}, datetime.now(UTC))
        assert [r.id for r in (await later.next(5)).rows] == [run_id]
    finally:
        hub.closed = True


async def test_workers_pages_share_one_read_per_interval_and_get_only_changes(
    empty_db: str,
) -> None:
    """Heartbeats have no change feed: the hub reads the workers once per interval for
    every open workers page, and wakes them only when what they show changed."""
    from app.store.processes import ProcessView

    reads = 0
    beat = NOW

    async def workers() -> list[ProcessView]:
        nonlocal reads
        reads += 1
        return [
            ProcessView(
                id="w1",
                kind="worker",
                host="box",
                pid=42,
                pid_ns=None,
                boot_id=None,
                started_at=NOW,
                heartbeat_at=beat,
                stopped_at=None,
                stop_reason=None,
                silent_for=0.1 + 0.001 * reads,  # shown to the second: the same
                concurrency=4,
            )
        ]

    hub = LiveHub(
        RunStore(), database_url=os.environ["DATABASE_URL"], workers=workers, stats_seconds=0.05
    )
    tabs = [await hub.subscribe(Watch(workers=True), None) for _ in range(3)]
    listing = await hub.subscribe(Watch(filters=RunFilters()), None)
    try:
        first = await asyncio.gather(*(t.next(5) for t in tabs))
        assert all(u and [w.pid for w in u.workers] == [42] for u in first)
        # Reads go on, nothing shown changed: nothing is sent.
        await asyncio.sleep(0.2)
        assert reads >= 3
        assert await tabs[0].next(0.1) is None
        # A heartbeat is a change; a list page never gets the workers.
        beat = NOW + timedelta(seconds=2)
        update = await tabs[0].next(5)
        assert update is not None and update.workers[0].heartbeat_at == beat
        assert await listing.next(0.2) is None
        # A run of this process's feed does not wake a workers page for nothing.
        hub.publish({fixed_id(1)}, datetime.now(UTC))
        assert await tabs[1].next(0.2) is not None  # the heartbeat it had not seen
        assert await tabs[1].next(0.2) is None
    finally:
        await hub.close()
        for sub in [*tabs, listing]:
            sub.close()
