"""How a pending run gets executed after the request that created it has answered.

Two backends: in-process (the embedded default: the web layer runs the returned
coroutine as a background task after the answer) and the procrastinate queue
(`app.services.queue.QueueScheduler`). Nothing here knows the web framework.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from app.services.runs import RunService

__all__ = ["InProcessScheduler", "Scheduler"]


class Scheduler(Protocol):
    async def schedule(self, run_id: str) -> Awaitable[Any] | None:
        """Arrange for the pending run to execute; raise if that is impossible.

        A returned awaitable executes the run in this process, and is awaited after the
        answer is sent; None means another process will execute it.
        """
        ...

    async def schedule_many(self, run_ids: list[str]) -> None:
        """Arrange for many pending runs (a bulk restart) to execute, in order."""
        ...

    async def cancelled(self, run_id: str) -> None:
        """The run was just marked cancelled: stop its execution if it can be reached."""
        ...

    async def handed_back(self, run_id: str) -> None:
        """A stopping process gave the run back, pending: have it executed again."""
        ...


class InProcessScheduler:
    """The embedded mode: execute in this process, after the answer."""

    def __init__(self, runs: RunService):
        self.runs = runs

    async def schedule(self, run_id: str) -> Awaitable[Any] | None:
        return self.runs.execute_run(run_id)

    async def schedule_many(self, run_ids: list[str]) -> None:
        self.runs.supervisor.enqueue(run_ids, self.runs.execute_run)

    async def cancelled(self, run_id: str) -> None:
        """The executor stops before its next node."""
        self.runs.supervisor.request_stop(run_id)

    async def handed_back(self, run_id: str) -> None:
        """The next dashboard to start (or one still running) adopts it."""
