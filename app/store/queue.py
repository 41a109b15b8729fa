"""Queries across our runs and procrastinate's tables (PostgreSQL, queue mode only)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from procrastinate import App, PsycopgConnector

from app.store.dbtime import db_ago
from app.store.tables import WorkflowRun

__all__ = ["QueueStats", "QueueStore", "ensure_queue_schema"]

log = logging.getLogger("configurable_agents.queue")


@dataclass(frozen=True)
class QueueStats:
    live_workers: int
    queued: int
    oldest_queued_at: datetime | None


class QueueStore:
    """Reads procrastinate's `procrastinate_jobs` / `procrastinate_workers` beside our runs."""

    async def set_job_id(self, run_id: str, job_id: int) -> None:
        await WorkflowRun.update({WorkflowRun.job_id: job_id}).where(
            WorkflowRun.id == uuid.UUID(run_id)
        )

    async def analyze(self) -> None:
        """Fresh planner statistics for the tables a large batch just grew."""
        try:
            await WorkflowRun.raw("ANALYZE workflow_run, procrastinate_jobs")
        except Exception:  # statistics are an optimisation: autovacuum comes later
            log.warning("could not analyze the run and job tables", exc_info=True)

    async def job_id_of(self, run_id: str) -> int | None:
        """The run's live job: the one it was deferred as, or (a batch stores none) the
        job that holds its lock, waiting or running."""
        rows = await WorkflowRun.raw(
            "SELECT coalesce((SELECT job_id FROM workflow_run WHERE id = {}),"
            " (SELECT id FROM procrastinate_jobs WHERE (status = 'todo' AND queueing_lock = {})"
            " OR (status = 'doing' AND lock = {}) ORDER BY id DESC LIMIT 1)) AS job_id",
            uuid.UUID(run_id),
            run_id,
            run_id,
        )
        return rows[0]["job_id"] if rows else None

    async def pending_without_live_job(self, older_than_seconds: float) -> list[str]:
        """Pending runs whose job is gone or never got deferred (a crash between the two writes)."""
        rows = await WorkflowRun.raw(
            "SELECT r.id FROM workflow_run r"
            " WHERE r.status = 'pending'"
            " AND r.created_at < NOW() - make_interval(secs => {})"
            # Two lookups, each on one of procrastinate's partial unique indexes (a job
            # holds its run's id as queueing lock while waiting, as lock while running):
            # an index probe whatever the planner's statistics say. The one condition
            # `status IN ('todo', 'doing')` matched neither index, and took seconds a
            # call after a bulk restart until the tables were analyzed.
            " AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j"
            "   WHERE j.queueing_lock = r.id::text AND j.status = 'todo')"
            " AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j"
            "   WHERE j.lock = r.id::text AND j.status = 'doing')"
            " ORDER BY r.created_at LIMIT 500",
            older_than_seconds,
        )
        return [str(r["id"]) for r in rows]

    async def job_is_orphaned(self, run_id: str, *, pending_for: float) -> bool:
        """The run of a stalled job is no live process's business any more: it ended, its
        process is known to have stopped, or it has waited with no owner for longer than
        `pending_for` seconds. A draining worker's runs are none of these (procrastinate's
        own heartbeat stops while it drains; ours does not)."""
        rows = await WorkflowRun.raw(
            "SELECT r.status, r.owner, p.stopped_at,"
            f" r.heartbeat_at < {db_ago()} AS waited"
            " FROM workflow_run r LEFT JOIN run_process p ON p.id = r.owner WHERE r.id = {}",
            pending_for,
            uuid.UUID(run_id),
        )
        if not rows:
            return True
        row = rows[0]
        if row["status"] not in ("pending", "running") or row["stopped_at"] is not None:
            return True
        return row["owner"] is None and bool(row["waited"])

    async def stats(self) -> QueueStats:
        rows = await WorkflowRun.raw(
            "SELECT"
            " (SELECT count(*) FROM run_process WHERE kind = 'worker'"
            "   AND stopped_at IS NULL) AS live_workers,"
            " (SELECT count(*) FROM workflow_run WHERE status = 'pending') AS queued,"
            " (SELECT min(created_at) FROM workflow_run WHERE status = 'pending') AS oldest"
        )
        row: dict[str, Any] = rows[0]
        return QueueStats(int(row["live_workers"]), int(row["queued"]), row["oldest"])


async def ensure_queue_schema(database_url: str) -> bool:
    """Install procrastinate's schema unless it is there (installing twice is an error).
    Returns True when it installed it."""
    app = App(connector=PsycopgConnector(conninfo=database_url, min_size=1, max_size=1))
    async with app.open_async():
        conn = app.connector
        rows = await conn.execute_query_all_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present"
        )
        if rows[0]["present"]:
            return False
        await app.schema_manager.apply_schema_async()
        return True
