"""How a pending run gets executed after the request that created it has answered."""

from __future__ import annotations

from typing import Protocol

from litestar.background_tasks import BackgroundTask

from app.services.runs import RunService

__all__ = ["BackgroundScheduler", "Scheduler"]


class Scheduler(Protocol):
    def schedule(self, run_id: str) -> BackgroundTask | None:
        """Arrange for the pending run to execute; raise if that is impossible.

        A returned BackgroundTask is attached to the response, so it runs in
        this process after the answer is sent.
        """
        ...


class BackgroundScheduler:
    """The embedded mode: execute in this process, as a Litestar background task."""

    def __init__(self, service: RunService):
        self.service = service

    def schedule(self, run_id: str) -> BackgroundTask | None:
        return BackgroundTask(self.service.execute_run, run_id)
