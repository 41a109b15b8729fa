"""A dashboard that dies between writing a restart's run and deferring its job: the
crash the queue's reconciler exists for. Served by uvicorn with --factory."""

from __future__ import annotations

import os

from app.services.runs import RunService
from app.web.app import create_app as create_real_app


class DiesBeforeDefer:
    def __init__(self, runs: RunService):
        self.runs = runs

    async def schedule(self, run_id: str) -> None:
        os._exit(137)

    async def cancelled(self, run_id: str) -> None:
        return None


def create_app():  # type: ignore[no-untyped-def]
    return create_real_app(scheduler=DiesBeforeDefer)
