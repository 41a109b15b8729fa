"""200 concurrent writers on one SQLite file, through the service layer, from several
threads (each with its own event loop and connections, as several server workers or a
server and CLI runs would be): no "database is locked" reaches a caller, and no update
is lost."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from factories import ECHO_SNAPSHOT, make_run
from support import BACKEND, FROZEN_NOW, new_service

from app.services.runs import RunService
from app.store import db
from app.store.tables import StepRun, WorkflowRun
from app.workflows.loader import workflow_from_snapshot

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's single-writer lock"),
]

THREADS = 8
PER_KIND = 50  # restarts, cancels, creations and step counters: 200 writers
STEPS_EACH = 3  # each step-counter writer records this many steps on the one shared run
RESTART_BASE, CANCEL_BASE, COUNTER_RUN = 1_000, 2_000, 3_000

Writer = Callable[[RunService], Awaitable[Any]]


def _run_in_thread(writers: list[Writer], barrier: threading.Barrier) -> list[BaseException]:
    """Run `writers` concurrently on a fresh event loop; return what they raised."""

    async def main() -> list[BaseException]:
        service = new_service()
        barrier.wait()
        try:
            results = await asyncio.gather(*(w(service) for w in writers), return_exceptions=True)
        finally:
            close_pool = getattr(db.current_engine(), "close_pool", None)
            if close_pool is not None:
                await close_pool()
        return [r for r in results if isinstance(r, BaseException)]

    return asyncio.run(main())


async def test_two_hundred_concurrent_writers(empty_db: str) -> None:
    restart_ids = [
        await make_run(RESTART_BASE + i, created_at=FROZEN_NOW, status="failed")
        for i in range(PER_KIND)
    ]
    cancel_ids = [
        await make_run(CANCEL_BASE + i, created_at=FROZEN_NOW, status="pending")
        for i in range(PER_KIND)
    ]
    counter_run = await make_run(COUNTER_RUN, created_at=FROZEN_NOW, status="running")
    spec = workflow_from_snapshot(ECHO_SNAPSHOT)
    started_at = datetime.now(UTC)

    def restart(run_id: str) -> Writer:
        return lambda s: s.restart(run_id)

    def cancel(run_id: str) -> Writer:
        return lambda s: s.cancel(run_id)

    def create(i: int) -> Writer:
        return lambda s: s.create_run(spec, {"message": f"writer {i}"}, trigger="api")

    def increment(i: int) -> Writer:
        async def write(s: RunService) -> None:
            for k in range(STEPS_EACH):
                await s.store.record_steps(
                    counter_run,
                    "test-host:1",
                    [
                        {
                            "node_id": f"node_{i}_{k}",
                            "order": i,
                            "item_index": k,
                            "status": "completed",
                            "started_at": started_at,
                            "output": {"i": i},
                            "tokens": i + 1,
                            "cost_usd": 0.5,
                            # Each its node's first completion, as the recorder marks it.
                            "first": True,
                        }
                    ],
                )

        return write

    writers: list[Writer] = [
        *(restart(r) for r in restart_ids),
        *(cancel(r) for r in cancel_ids),
        *(create(i) for i in range(PER_KIND)),
        *(increment(i) for i in range(PER_KIND)),
    ]
    assert len(writers) == 4 * PER_KIND == 200
    # Deal the kinds round-robin, so every thread mixes all four.
    shares = [writers[t::THREADS] for t in range(THREADS)]
    barrier = threading.Barrier(THREADS)
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(_run_in_thread, share, barrier) for share in shares]
        errors = [e for f in futures for e in f.result(timeout=100)]
    took = time.monotonic() - began
    print(f"\n200 writers on {THREADS} threads took {took:.2f} s; errors: {len(errors)}")
    assert not errors, [f"{type(e).__name__}: {e}" for e in errors[:10]]

    restarts = await WorkflowRun.select(WorkflowRun.restarted_from, WorkflowRun.status).where(
        WorkflowRun.restarted_from.is_not_null()
    )
    assert sorted(str(r["restarted_from"]) for r in restarts) == sorted(restart_ids)
    assert {r["status"] for r in restarts} == {"pending"}
    cancelled = await WorkflowRun.count().where(
        WorkflowRun.id.is_in([uuid.UUID(r) for r in cancel_ids])
        & (WorkflowRun.status == "cancelled")
    )
    assert cancelled == PER_KIND
    created = await WorkflowRun.count().where(WorkflowRun.trigger == "api")
    # make_run writes trigger "api" too: 50 + 50 + 1 seeded, 50 restarts are "dashboard".
    assert created == 2 * PER_KIND + 1 + PER_KIND
    counters = (
        await WorkflowRun.select(
            WorkflowRun.steps_done,
            WorkflowRun.items_done,
            WorkflowRun.total_tokens,
            WorkflowRun.total_cost_usd,
        )
        .where(WorkflowRun.id == uuid.UUID(counter_run))
        .first()
    )
    assert counters["steps_done"] == counters["items_done"] == PER_KIND * STEPS_EACH
    assert counters["total_tokens"] == STEPS_EACH * sum(range(1, PER_KIND + 1))
    assert float(counters["total_cost_usd"]) == pytest.approx(0.5 * PER_KIND * STEPS_EACH)
    steps = await StepRun.count().where(
        (StepRun.run == uuid.UUID(counter_run)) & (StepRun.status == "completed")
    )
    assert steps == PER_KIND * STEPS_EACH
    # Seeded: 2 * PER_KIND + 1; written: PER_KIND creations and PER_KIND restarts.
    assert await WorkflowRun.count() == 2 * PER_KIND + 1 + 2 * PER_KIND
