"""Run execution on procrastinate workers (`EXECUTION=queue`, PostgreSQL only).

The run row stays the source of truth; a job carries only the run id. Jobs are
deferred with `queueing_lock` and `lock` set to the run id, so a run is queued
at most once and executed by one worker at a time: a run handed back by a stopping
worker is queued again, and its new job starts only once the old one has ended.

Liveness is ours, not procrastinate's (whose worker heartbeat stops while a worker
drains): each worker's supervisor heartbeats its process row, and every worker runs
the maintenance below in a loop of its own, outside the job slots, so that recovery
never waits behind a backlog of runs:

- runs of processes that are gone are failed as interrupted (RunSupervisor.recover);
- a job still `doing` whose worker stopped heartbeating, and whose run no live process
  holds, is finished as failed;
- a pending run with no live job (a dashboard died between writing the run and
  deferring its job, or a job ended without running it) is deferred again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable
from typing import Any

from procrastinate import App, JobContext, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.jobs import Status
from procrastinate.worker import Worker

from app.services.runs import RunService
from app.store.queue import QueueStore

__all__ = [
    "QUEUE",
    "QueueMaintenance",
    "QueueScheduler",
    "WorkerSettings",
    "build_queue_app",
    "run_worker",
]

log = logging.getLogger("configurable_agents.queue")

QUEUE = "runs"
TASK = "execute_run"
# A batch this large has its tables analyzed after it is deferred.
ANALYZE_AFTER = 1000


class WorkerSettings:
    """Timings: the maintenance runs every `maintenance_every` seconds; a pending run
    without a job is deferred again after `requeue_after`; procrastinate's own worker
    heartbeat (used only to find its stalled jobs) every `heartbeat`."""

    heartbeat = 2.0
    stalled_after = 10.0
    maintenance_every = 2.0
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
        await runs.execute_run(run_id)

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


class QueueMaintenance:
    def __init__(self, app: App, runs: RunService):
        self.app = app
        self.runs = runs
        self.queue_store = QueueStore()

    async def run_once(self) -> None:
        await self.runs.supervisor.recover()
        manager = self.app.job_manager
        for job in await manager.get_stalled_jobs(
            seconds_since_heartbeat=WorkerSettings.stalled_after, task_name=TASK
        ):
            run_id = str(job.task_kwargs.get("run_id", ""))
            if run_id and not await self.queue_store.job_is_orphaned(
                run_id, pending_for=self.runs.supervisor.stale_after
            ):
                continue  # e.g. a draining worker's: procrastinate's heartbeat stopped, ours not
            await manager.finish_job(job=job, status=Status.FAILED, delete_job=False)
            log.warning("finished the stalled job of run %s (worker %s)", run_id, job.worker_id)
        for run_id in await self.queue_store.pending_without_live_job(WorkerSettings.requeue_after):
            job_id = await defer_run(self.app, run_id)
            if job_id is not None:
                await self.queue_store.set_job_id(run_id, job_id)
                log.warning("re-queued pending run %s that had no job", run_id)

    async def forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a failed round must not end the loop; the next one retries
                log.exception("queue maintenance failed")
            await asyncio.sleep(WorkerSettings.maintenance_every)


class QueueScheduler:
    """The queue mode: the dashboard defers a job and a worker executes the run."""

    def __init__(self, app: App):
        self.app = app
        self.queue_store = QueueStore()
        self._analyzing: set[asyncio.Task[None]] = set()

    async def schedule(self, run_id: str) -> Awaitable[Any] | None:
        job_id = await defer_run(self.app, run_id)
        if job_id is not None:
            await self.queue_store.set_job_id(run_id, job_id)
        return None

    async def schedule_many(self, run_ids: list[str]) -> None:
        """Queue a batch's runs in one statement per thousand, each job with its own locks.
        Their job ids are not written back (10,000 more row updates): a job is found by
        its run's lock when the run is cancelled."""
        task = self.app.tasks[TASK]
        # Two statements at a time: each job costs procrastinate's triggers (an event row,
        # two notifications) on the server, and a second backend halves the wait for
        # 10,000 jobs on two cores (measured: 0.51 s one at a time, 0.35 s two, 0.32 s
        # four), while the dashboard keeps connections for its pages.
        gate = asyncio.Semaphore(2)

        async def defer(chunk: list[str]) -> None:
            jobs = [
                task.configure(lock=run_id, queueing_lock=run_id).make_new_job(run_id=run_id)
                for run_id in chunk
            ]
            async with gate:
                await self.app.job_manager.batch_defer_jobs_async(jobs)

        await asyncio.gather(
            *(defer(run_ids[start : start + 1000]) for start in range(0, len(run_ids), 1000))
        )
        if len(run_ids) >= ANALYZE_AFTER:
            # Thousands of new jobs and runs at once: until the tables are analyzed, the
            # workers' job fetch and the maintenance query plan for the tables as they
            # were (seconds each, measured), and autovacuum may be minutes away, or off.
            analyzing = asyncio.create_task(self.queue_store.analyze())
            self._analyzing.add(analyzing)
            analyzing.add_done_callback(self._analyzing.discard)

    async def cancelled(self, run_id: str) -> None:
        job_id = await self.queue_store.job_id_of(run_id)
        if job_id is not None:
            with contextlib.suppress(Exception):  # the job may have ended meanwhile
                await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True)

    async def handed_back(self, run_id: str) -> None:
        # Its `lock` holds the new job until the job that handed it back has ended.
        await self.schedule(run_id)


def worker_options(concurrency: int, grace_seconds: float) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "update_heartbeat_interval": WorkerSettings.heartbeat,
        "stalled_worker_timeout": WorkerSettings.stalled_after,
        # Past the grace, procrastinate cancels what still runs; our runs hand
        # themselves back on that cancellation.
        "shutdown_graceful_timeout": grace_seconds,
        "fetch_job_polling_interval": 1.0,
        "delete_jobs": "never",
        "install_signal_handlers": False,
    }


async def run_worker(app: App, runs: RunService, *, concurrency: int, ready: Any = None) -> None:
    """Execute queued runs until SIGTERM or SIGINT, then drain: no new jobs, running
    runs stop at their next node (or at the end of the grace period) and are queued
    again, while this worker keeps heartbeating."""
    supervisor = runs.supervisor
    app.perform_import_paths()
    worker = Worker(
        app=app,
        queues=[QUEUE, "maintenance"],
        additional_context={"runs": runs},
        **worker_options(concurrency, supervisor.grace),
    )
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        supervisor.begin_drain()
        worker.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    supervisor.concurrency = concurrency
    await supervisor.start()
    maintenance = asyncio.create_task(QueueMaintenance(app, runs).forever())
    try:
        if ready is not None:
            ready()
        await worker.run()
    finally:
        maintenance.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await maintenance
        await supervisor.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
