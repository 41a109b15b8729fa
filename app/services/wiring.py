"""One function builds the services of a process, for `serve`, `worker` and `run` alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.services.metrics import Metrics
from app.services.runs import RunService
from app.services.scheduling import InProcessScheduler, Scheduler
from app.services.supervisor import RunSupervisor
from app.settings import Settings
from app.store.runs import RunStore
from app.workflows.providers import ProviderPolicy

__all__ = ["Services", "build_services", "close_database", "open_database"]


async def open_database(settings: Settings, *, migrate: bool = True, pool: bool = True) -> None:
    """Point the store at the settings' database, migrate it, and open its pool."""
    from app.store import db

    db.configure(settings.database_url)
    if migrate:
        await db.migrate()
    if pool:
        await db.open_pool()


async def close_database() -> None:
    from app.store import db

    await db.close()


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    runs: RunService
    supervisor: RunSupervisor
    # The procrastinate App in the queue mode (to open and close with the process).
    queue_app: Any = None
    # A dashboard's change feed for its live pages.
    live: Any = None
    bulk: Any = None


def build_services(
    settings: Settings,
    *,
    kind: str,
    clock: Callable[[], datetime] = _utcnow,
    scheduler: Callable[[RunService], Scheduler] | None = None,
    queue_pool_max: int = 4,
) -> Services:
    """`kind` is `dashboard`, `worker` or `cli`. A dashboard in the queue mode defers
    restarts to workers; in the embedded mode, and for `run`, this process executes."""
    # Writes are retried through a database blip for as long as the process would be
    # taken as alive without a heartbeat.
    store = RunStore(clock=clock, retry_within=settings.stale_after_seconds)
    supervisor = RunSupervisor(
        store,
        kind=kind,
        heartbeat_seconds=settings.heartbeat_seconds,
        stale_after_seconds=settings.stale_after_seconds,
        grace_seconds=settings.grace_seconds,
        local_concurrency=settings.local_concurrency,
    )
    queued = settings.execution == "queue" and kind != "cli"
    queue_name: str | None = None
    if queued:
        from app.services.queue import QUEUE as queue_name
    metrics = Metrics(queue=queue_name)
    runs = RunService(
        store,
        supervisor,
        owns_new_runs=not queued,
        max_inputs_bytes=settings.max_inputs_bytes,
        # `run` executes a file its user gave on their own machine; every other process
        # executes stored workflows that anyone who can start a run wrote.
        provider_policy=ProviderPolicy.from_env(trust_workflow=kind == "cli"),
        metrics=metrics,
    )
    queue_app = None
    if queued:
        from app.services.queue import QueueScheduler, build_queue_app
        from app.store.queue import QueueStore

        queue_app = build_queue_app(settings.database_url, pool_max=queue_pool_max)
        runs.queue_store = QueueStore()
        runs.scheduler = QueueScheduler(queue_app)
    else:
        runs.scheduler = InProcessScheduler(runs)
    if scheduler is not None:
        runs.scheduler = scheduler(runs)
    live = None
    if kind == "dashboard":
        from app.services.live import LiveHub

        live = LiveHub(
            store,
            database_url=settings.database_url,
            poll_seconds=settings.live_poll_seconds,
            stats=runs.queue_stats if queued else None,
            workers=runs.workers if queued else None,
        )
    from app.services.bulk import BulkService
    from app.store.bulk import BulkStore

    bulk = BulkService(
        runs,
        BulkStore(clock),
        max_cost_usd=settings.bulk_max_cost_usd,
        max_runs=settings.bulk_max_runs,
    )
    return Services(runs=runs, supervisor=supervisor, queue_app=queue_app, live=live, bulk=bulk)
