"""The queue execution mode (EXECUTION=queue, PostgreSQL): restart throughput at
concurrency 10, and runs completed per second with one and with two worker processes
on a three-node mock workflow that waits 50 ms a node.

    python -m bench.queue [--runs 200]      # also part of `make bench`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.load import Server, Worker, restart_each
from bench.run import postgres_database, statuses

SNAPSHOT: dict[str, Any] = {
    "schema_version": "1.0",
    "flow": {"name": "queue_bench"},
    "state": {
        "fields": {
            "topic": {"type": "str", "required": True},
            "draft": {"type": "str", "default": ""},
        }
    },
    "nodes": [
        {"id": n, "prompt": f"{n} {{state.topic}}", "outputs": ["draft"]}
        for n in ("plan", "write", "review")
    ],
    "edges": [
        {"from": "START", "to": "plan"},
        {"from": "plan", "to": "write"},
        {"from": "write", "to": "review"},
        {"from": "review", "to": "END"},
    ],
    "config": {"llm": {"provider": "mock", "model": "bench", "delay_seconds": 0.05}},
}


async def seed_failed(url: str, count: int) -> list[str]:
    os.environ["DATABASE_URL"] = url
    from app.store import db
    from app.store.tables import WorkflowRun

    db.configure(url)
    await db.migrate()
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(count)]
    rows = [
        WorkflowRun(
            id=i,
            workflow_name="queue_bench",
            status="failed",
            config_snapshot=json.dumps(SNAPSHOT),
            inputs=json.dumps({"topic": "t"}),
            created_at=now - timedelta(seconds=n),
            heartbeat_at=now,
        )
        for n, i in enumerate(ids)
    ]
    for start in range(0, len(rows), 500):
        await WorkflowRun.insert(*rows[start : start + 500])
    await db.close()
    return [str(i) for i in ids]


async def wait_all_ended(url: str, ids: list[str], timeout: float) -> tuple[float, dict[str, int]]:
    began = time.perf_counter()
    while True:
        found = await statuses(url, ids)
        counts: dict[str, int] = {}
        for status in found.values():
            counts[status] = counts.get(status, 0) + 1
        if counts.get("pending", 0) + counts.get("running", 0) == 0 and len(found) == len(ids):
            return time.perf_counter() - began, counts
        if time.perf_counter() - began > timeout:
            return time.perf_counter() - began, counts
        await asyncio.sleep(0.1)


async def execution_span(url: str, ids: list[str]) -> float:
    """Seconds from the first run's start to the last run's end, as the database saw them:
    worker start-up and polling here do not count."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT extract(epoch FROM max(completed_at) - min(started_at)) AS span"
            " FROM workflow_run WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids],
        )
    finally:
        await conn.close()
    return float(row["span"])


def throughput(server: Server, url: str, run_ids: list[str], workers: int) -> dict[str, Any]:
    """Queue every run first, then start the workers and wait until all have ended."""
    stats, created = restart_each(server.url, run_ids, concurrency=10, max_seconds=60)
    # Started together, so that one does not run alone while the other boots.
    started = [Worker(url, 4) for _ in range(workers)]
    for worker in started:
        worker.wait_ready()
    try:
        _, outcome = asyncio.run(wait_all_ended(url, created, timeout=300))
    finally:
        for worker in started:
            worker.stop()
    span = asyncio.run(execution_span(url, created))
    return {
        "workers": workers,
        "concurrency_per_worker": 4,
        "runs": len(created),
        "outcome": outcome,
        "execution_seconds": round(span, 2),
        "runs_per_second": round(len(created) / span, 1) if span else None,
        "restart_rps_while_queueing": round(stats.rps, 1),
    }


def run(runs: int = 200) -> dict[str, Any]:
    with postgres_database() as url:
        ids = asyncio.run(seed_failed(url, runs * 3))
        env = {"DATABASE_URL": url, "EXECUTION": "queue", "CA_STALE_AFTER_SECONDS": "1000000000"}
        with Server("app.web.app:create_app", env) as server:
            one = throughput(server, url, ids[:runs], workers=1)
            two = throughput(server, url, ids[runs : 2 * runs], workers=2)
            # Restart throughput with workers executing meanwhile.
            live = [Worker(url, 4), Worker(url, 4)]
            for worker in live:
                worker.wait_ready()
            try:
                stats, created = restart_each(
                    server.url, ids[2 * runs :], concurrency=10, max_seconds=60
                )
                _, outcome = asyncio.run(wait_all_ended(url, created, timeout=300))
            finally:
                for worker in live:
                    worker.stop()
    report = {
        "workflow": "3 mock nodes, 50 ms each",
        "restart_c10": {**stats.as_dict(), "created": len(created), "outcome": outcome},
        "one_worker": one,
        "two_workers": two,
        "two_over_one": round(two["runs_per_second"] / one["runs_per_second"], 2)
        if one["runs_per_second"] and two["runs_per_second"]
        else None,
    }
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    print(json.dumps(run(parser.parse_args().runs), indent=2))
