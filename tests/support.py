"""Constants and helpers shared by tests (fixtures live in the conftest files)."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

from app.settings import Settings
from bench.load import Server, Worker

BACKEND = os.environ.get("CA_TEST_DB", "sqlite")
PG_ADMIN_URL = os.environ.get("CA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FROZEN_NOW = datetime(2026, 3, 14, 12, 0, 0, tzinfo=UTC)
# The tokens of the `secured` app (tests/web/conftest.py).
OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789ab"

HX = {"HX-Request": "true"}
JSON = {"Accept": "application/json"}
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")
# A run row's cells by their place from its end (app/web/rows.py): only `pick`,
# `progress` and `actions` carry a class.
CELL = {
    name: f"td:nth-last-child({n})"
    for name, n in {"id": 10, "wf": 9, "status": 8, "when": 7, "lineage": 3}.items()
}


class FrozenClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def pg_admin(sql: str) -> None:
    """Run one statement on the PostgreSQL server's maintenance database."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def hx_row(run_id: str) -> dict[str, str]:
    """The headers htmx 4 sends for a button inside the run's row with hx-target="closest tr"."""
    return {"HX-Request": "true", "HX-Target": f"tr#run-{run_id}"}


def random_ids(text: str) -> list[str]:
    """Random (version 4) run ids in a text; the factories' fixed ids are not version 4."""
    return list(dict.fromkeys(UUID4.findall(text)))


def app_settings(database_url: str) -> Settings:
    # Nothing in these tests is an interrupted run: keep the recovery sweep away.
    return Settings(
        database_url=database_url,
        stale_after_seconds=10**9,
        recovery_interval_seconds=3600,
        allowed_hosts=("testserver.local",),  # the test client's host
    )


class LiveServer(Server):
    """The real app under uvicorn in a subprocess, on `database_url`, on a free port.

    Set `factory` before entering to serve another app factory.
    """

    def __init__(self, database_url: str, *, extra_env: dict[str, str] | None = None):
        super().__init__(
            "app.web.app:create_app", {"DATABASE_URL": database_url, **(extra_env or {})}
        )
        self.database_url = database_url


WorkerProcess = Worker


class NoScheduler:
    """Schedules nothing: tests execute restarted runs themselves."""

    async def schedule(self, run_id: str) -> None:
        return None

    async def schedule_many(self, run_ids: list[str]) -> None:
        return None

    async def cancelled(self, run_id: str) -> None:
        return None

    async def handed_back(self, run_id: str) -> None:
        return None


def new_service(
    clock=None,  # type: ignore[no-untyped-def]
    *,
    kind: str = "cli",
    heartbeat_seconds: float = 0.2,
    stale_after_seconds: float = 20.0,
    grace_seconds: float = 30.0,
    scheduler=None,  # type: ignore[no-untyped-def]
):  # type: ignore[no-untyped-def]
    """A RunService with its own supervisor (not started) on the session's database,
    built by `build_services` as every process builds it; by default it schedules
    nothing (tests execute restarted runs themselves)."""
    from app.services.wiring import build_services

    settings = Settings(
        database_url=os.environ["DATABASE_URL"],
        heartbeat_seconds=heartbeat_seconds,
        stale_after_seconds=stale_after_seconds,
        grace_seconds=grace_seconds,
    )
    extra = {"clock": clock} if clock is not None else {}
    services = build_services(
        settings, kind=kind, scheduler=scheduler or (lambda runs: NoScheduler()), **extra
    )
    return services.runs


async def until(check, timeout: float, what: str, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Await `check()` until it returns something truthy; fail after `timeout` seconds."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(interval)
    return value
