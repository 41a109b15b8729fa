"""Shared fixtures: a throwaway database (SQLite file or PostgreSQL database),
migrated once per session through our own migrations, and emptied before each
test that uses it.

CA_TEST_DB=postgres runs the suite against a database created on the local
server (CA_TEST_PG_URL, default postgresql://postgres@127.0.0.1:5432/postgres)
and dropped afterwards; nothing else on the server is touched.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PICCOLO_CONF", "app.store.piccolo_conf")

from support import BACKEND, FROZEN_NOW, PG_ADMIN_URL, FrozenClock, pg_admin
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode


def pytest_report_header(config: pytest.Config) -> str:
    return f"database backend: {BACKEND}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of this session's own, migrated database."""
    from app.store import db

    if BACKEND == "postgres":
        name = f"ca_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        url = f"{base}/{name}"
    elif BACKEND == "sqlite":
        name = ""
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    else:
        raise pytest.UsageError(f"CA_TEST_DB must be sqlite or postgres, not {BACKEND!r}")
    os.environ["DATABASE_URL"] = url
    db.configure(url)
    asyncio.run(db.migrate())
    try:
        yield url
    finally:
        if name:
            asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def empty_db(database_url: str) -> AsyncIterator[str]:
    """The session database with no runs in it."""
    from app.store import db
    from app.store.tables import AuditEntry, RestartBatch, StepRun, WebSession, WorkflowRun

    db.configure(database_url)
    await StepRun.delete(force=True)
    await WorkflowRun.delete(force=True)
    await WebSession.delete(force=True)
    await AuditEntry.delete(force=True)
    await RestartBatch.delete(force=True)
    from app.store.runs import forget_medians

    forget_medians()
    yield database_url


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(FROZEN_NOW)


@pytest.fixture
def examples_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "examples"


class HTMLSnapshotExtension(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "html"


@pytest.fixture
def snapshot_html(snapshot):  # type: ignore[no-untyped-def]
    """Snapshots stored as readable .html files under tests/__snapshots__/."""
    return snapshot.use_extension(HTMLSnapshotExtension)
