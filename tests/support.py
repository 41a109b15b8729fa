"""Constants and helpers shared by tests (fixtures live in the conftest files)."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

from app.settings import Settings

BACKEND = os.environ.get("CA_TEST_DB", "sqlite")
PG_ADMIN_URL = os.environ.get("CA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FROZEN_NOW = datetime(2026, 3, 14, 12, 0, 0, tzinfo=UTC)

HX = {"HX-Request": "true"}
JSON = {"Accept": "application/json"}
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")


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
        database_url=database_url, stale_after_seconds=10**9, recovery_interval_seconds=3600
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The real app under uvicorn in a subprocess, on `database_url`, on a free port."""

    def __init__(self, database_url: str, *, extra_env: dict[str, str] | None = None):
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = extra_env or {}
        self.factory = "app.web.app:create_app"
        self.proc = None

    def __enter__(self) -> LiveServer:
        import subprocess
        import sys
        import time
        from pathlib import Path

        import httpx

        env = {**os.environ, "DATABASE_URL": self.database_url, **self.extra_env}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                self.factory,
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not answer within 20 s")
            time.sleep(0.1)

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess:
    """`configurable-agents worker` in a subprocess, on `database_url`."""

    def __init__(self, database_url: str, *, concurrency: int = 4):
        self.database_url = database_url
        self.concurrency = concurrency
        self.proc = None

    def __enter__(self) -> WorkerProcess:
        import subprocess
        import sys
        from pathlib import Path

        env = {**os.environ, "DATABASE_URL": self.database_url, "EXECUTION": "queue"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "worker", "--concurrency", str(self.concurrency)],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # "worker ready" is printed once the worker has connected.
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if "worker ready" not in line:
            self.stop()
            raise RuntimeError(f"the worker did not start: {line}")
        import threading

        # Keep reading what it logs, so that a full pipe never blocks it.
        self.log: list[str] = []
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return int(self.proc.pid)

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()
