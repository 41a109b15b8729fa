"""Migrations create the schema on an empty database, and a second run changes nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support import BACKEND, PG_ADMIN_URL, pg_admin

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _schema(url: str) -> tuple[set[str], set[str]]:
    """Table and index names of the database at `url`."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            rows = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
        finally:
            conn.close()
        return {n for t, n in rows if t == "table"}, {n for t, n in rows if t == "index"}
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        indexes = {
            r["indexname"]
            for r in await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
            )
        }
    finally:
        await conn.close()
    return tables, indexes


@pytest.fixture
def fresh_url(tmp_path: Path):
    if BACKEND == "postgres":
        name = f"ca_mig_{uuid.uuid4().hex[:10]}"
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        yield f"sqlite:///{tmp_path / 'fresh.db'}"


def test_migrate_creates_schema_and_is_idempotent(fresh_url: str) -> None:
    first = _cli("migrate", url=fresh_url)
    assert first.returncode == 0, first.stderr
    assert "migrations applied" in first.stdout
    tables, indexes = asyncio.run(_schema(fresh_url))
    assert {"workflow_run", "step_run", "migration"} <= tables
    assert {
        "workflow_run_created",
        "workflow_run_status_created",
        "workflow_run_name_created",
        "workflow_run_restarted_from",
        "workflow_run_one_active_restart",
        "step_run_run_order",
        "workflow_run_name_status_created",
        "workflow_run_active_heartbeat",
    } <= indexes

    second = _cli("migrate", url=fresh_url)
    assert second.returncode == 0, second.stderr
    assert "no migrations needed" in second.stdout
    assert asyncio.run(_schema(fresh_url)) == (tables, indexes)
