"""How a pending run gets executed after the request that created it has answered.

Two backends: in-process (a Litestar background task; the embedded default) and
the procrastinate queue (`app.services.queue.QueueScheduler`).
"""

from __future__ import annotations

from typing import Protocol

from litestar.background_tasks import BackgroundTask

from app.services.runs import RunService

__all__ = ["BackgroundScheduler", "Scheduler"]


class Scheduler(Protocol):
    async def schedule(self, run_id: str) -> BackgroundTask | None:
        """Arrange for the pending run to execute; raise if that is impossible.

        A returned BackgroundTask is attached to the response, so it runs in
        this process after the answer is sent.
        """
        ...

    async def cancelled(self, run_id: str) -> None:
        """The run was just marked cancelled: stop its execution if it can be reached."""
        ...


class BackgroundScheduler:
    """The embedded mode: execute in this process, as a Litestar background task."""

    def __init__(self, service: RunService):
        self.service = service

    async def schedule(self, run_id: str) -> BackgroundTask | None:
        return BackgroundTask(self.service.execute_run, run_id)

    async def cancelled(self, run_id: str) -> None:
        """The executor notices the cancelled status before its next node."""
