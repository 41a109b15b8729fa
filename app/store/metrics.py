"""The figures GET /metrics reads from the database when it is scraped: one statement
each, so that a scrape costs the same whichever process asks."""

from __future__ import annotations

from app.store.tables import RUN_STATUSES, WorkflowRun

__all__ = ["queue_depth", "runs_by_workflow_and_status"]


async def runs_by_workflow_and_status() -> list[tuple[str, str, int]]:
    """(workflow, status, runs) for every pair that has runs, from the all-time rows of
    the counters the triggers keep (app/store/counts.py): counting a million runs per
    scrape took half a second."""
    rows = await WorkflowRun.raw(
        "SELECT workflow_name, status, runs FROM run_count"
        f" WHERE span = 0 AND runs > 0 AND status IN ({', '.join(repr(s) for s in RUN_STATUSES)})"
    )
    return [(r["workflow_name"], r["status"], int(r["runs"])) for r in rows]


async def queue_depth(queue: str) -> tuple[int, float]:
    """The queue mode (PostgreSQL): the queue's jobs waiting for a worker, and how long
    the oldest has waited, in seconds (0 when none). Jobs are numbered as they are
    deferred, so the oldest is the lowest id; its wait starts at its `deferred` event."""
    rows = await WorkflowRun.raw(
        "SELECT q.depth, coalesce(extract(epoch FROM now() - (SELECT min(e.at)"
        " FROM procrastinate_events e WHERE e.job_id = q.first AND e.type = 'deferred')),"
        " 0) AS oldest FROM (SELECT count(*) AS depth, min(id) AS first"
        " FROM procrastinate_jobs WHERE status = 'todo' AND queue_name = {}) AS q",
        queue,
    )
    return int(rows[0]["depth"]), max(float(rows[0]["oldest"]), 0.0)
