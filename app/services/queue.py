"""Run execution on procrastinate workers (`EXECUTION=queue`, PostgreSQL only).

The run row stays the source of truth; a job carries only the run id. Jobs are
deferred with `queueing_lock` and `lock` set to the run id, so a run is queued
at most once and executed by one worker at a time. A periodic sweep, which every
worker offers and procrastinate runs once per tick, repairs what a crash can
leave behind:

- a running job whose worker stopped heartbeating: its run is failed as
  interrupted (naming the worker) and the job is finished as failed;
- a pending run with no live job (the dashboard died between writing the run
  and deferring its job): the job is deferred again.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from litestar.background_tasks import BackgroundTask
from procrastinate import App, JobContext, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.jobs import Status

from app.services.runs import RunService, process_owner
from app.store.queue import QueueStore

__all__ = [
    "QUEUE",
    "QueueScheduler",
    "WorkerSettings",
    "build_queue_app",
]

log = logging.getLogger("configurable_agents.queue")

QUEUE = "runs"
TASK = "execute_run"


class WorkerSettings:
    """Timings of liveness: a worker heartbeats every `heartbeat` seconds and is
    taken as dead after `stalled_after`; the sweep runs every `sweep_every`."""

    heartbeat = 2.0
    stalled_after = 10.0
    sweep_every = 2
    requeue_after = 5.0
    keep_finished_jobs_hours = 24


def build_queue_app(database_url: str, *, pool_max: int = 4) -> App:
    """The procrastinate App with our tasks. `additional_context["runs"]` must hold
    the worker's RunService."""
    app = App(
        connector=PsycopgConnector(conninfo=database_url, min_size=1, max_size=pool_max),
        import_paths=["procrastinate.builtin_tasks"],
    )

    @app.task(name=TASK, queue=QUEUE, pass_context=True)
    async def execute_run(context: JobContext, run_id: str) -> None:
        runs: RunService = context.additional_context["runs"]
        # Cancellation aborts the job: the CancelledError it raises here goes on up,
        # so that procrastinate records the job as aborted.
        await runs.execute_run(run_id, owner=process_owner())

    @app.periodic(cron=f"* * * * * */{WorkerSettings.sweep_every}", periodic_id="sweep")
    @app.task(name="sweep", queue="maintenance", pass_context=True, queueing_lock="sweep")
    async def sweep(context: JobContext, timestamp: int) -> None:
        await Sweeper(context.app, context.additional_context["runs"]).run_once()

    @app.periodic(cron="17 * * * *", periodic_id="prune")
    @app.task(name="prune", queue="maintenance", pass_context=True, queueing_lock="prune")
    async def prune(context: JobContext, timestamp: int) -> None:
        await context.app.job_manager.delete_old_jobs(
            nb_hours=WorkerSettings.keep_finished_jobs_hours,
            include_failed=True,
            include_cancelled=True,
            include_aborted=True,
        )

    return app


async def defer_run(app: App, run_id: str) -> int | None:
    """Queue the run; None if a job for it is already queued."""
    task = app.tasks[TASK]
    try:
        return await task.configure(lock=run_id, queueing_lock=run_id).defer_async(run_id=run_id)
    except AlreadyEnqueued:
        return None


class Sweeper:
    def __init__(self, app: App, runs: RunService):
        self.app = app
        self.runs = runs
        self.queue_store = QueueStore()

    async def run_once(self) -> None:
        manager = self.app.job_manager
        for job in await manager.get_stalled_jobs(
            seconds_since_heartbeat=WorkerSettings.stalled_after, task_name=TASK
        ):
            run_id = str(job.task_kwargs.get("run_id", ""))
            if run_id:
                await self.runs.store.fail_interrupted(
                    run_id,
                    f"interrupted while it ran: worker {job.worker_id} stopped (no heartbeat "
                    f"for {WorkerSettings.stalled_after:g} s). Restart the run.",
                )
            await manager.finish_job(job=job, status=Status.FAILED, delete_job=False)
            log.warning("failed run %s of lost worker %s", run_id, job.worker_id)
        for run_id in await self.queue_store.pending_without_live_job(WorkerSettings.requeue_after):
            job_id = await defer_run(self.app, run_id)
            if job_id is not None:
                await self.queue_store.set_job_id(run_id, job_id)
                log.warning("re-queued pending run %s that had no job", run_id)


class QueueScheduler:
    """The queue mode: the dashboard defers a job and a worker executes the run."""

    def __init__(self, app: App, runs: RunService):
        self.app = app
        self.runs = runs
        self.queue_store = QueueStore()

    async def schedule(self, run_id: str) -> BackgroundTask | None:
        job_id = await defer_run(self.app, run_id)
        if job_id is not None:
            await self.queue_store.set_job_id(run_id, job_id)
        return None

    async def cancelled(self, run_id: str) -> None:
        job_id = await self.queue_store.job_id_of(run_id)
        if job_id is not None:
            with contextlib.suppress(Exception):  # the job may have ended meanwhile
                await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True)


def worker_options(concurrency: int) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "update_heartbeat_interval": WorkerSettings.heartbeat,
        "stalled_worker_timeout": WorkerSettings.stalled_after,
        "shutdown_graceful_timeout": 30.0,
        "fetch_job_polling_interval": 1.0,
        "delete_jobs": "never",
    }
