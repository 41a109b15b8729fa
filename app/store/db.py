"""Which database the process talks to, its migrations, and its connection pool."""

from __future__ import annotations

import contextlib
import io

from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

from app.store import piccolo_conf
from app.store.engine import PooledSQLiteEngine, engine_from_url
from app.store.tables import (
    AuditEntry,
    RestartBatch,
    RunProcess,
    StepRun,
    WebSession,
    WorkflowRun,
)

__all__ = ["close", "configure", "current_engine", "migrate", "open_pool"]

_TABLES = (WorkflowRun, StepRun, RunProcess, WebSession, AuditEntry, RestartBatch)


def configure(database_url: str) -> Engine:
    """Point the tables and the migration runner at `database_url` (idempotent)."""
    engine = piccolo_conf.DB
    if _url_of(engine) != database_url:
        engine = engine_from_url(database_url)
        piccolo_conf.DB = engine
    for table in _TABLES:
        table._meta._db = engine
    return engine


def current_engine() -> Engine:
    return piccolo_conf.DB


def _url_of(engine: Engine) -> str:
    if isinstance(engine, SQLiteEngine):
        return f"sqlite:///{engine.path}"
    if isinstance(engine, PostgresEngine):
        return str(engine.config.get("dsn"))
    return ""


async def migrate() -> str:
    """Apply pending migrations; a second call changes nothing. Returns Piccolo's report."""
    engine = current_engine()
    if isinstance(engine, SQLiteEngine):
        # WAL lets readers work while a run writes; the setting lives in the file.
        await engine.run_ddl("PRAGMA journal_mode=WAL")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = await run_forwards(app_name="all")
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}")
    report = out.getvalue()
    if isinstance(engine, PostgresEngine):
        from app.store.queue import ensure_queue_schema

        # The queue's tables live beside ours; procrastinate refuses a second install.
        if await ensure_queue_schema(str(engine.config["dsn"])):
            report += "\nqueue schema installed"
    return report


async def open_pool(max_size: int = 10) -> None:
    """PostgreSQL needs a pool under concurrency; SQLite opens a connection per query."""
    engine = current_engine()
    if isinstance(engine, PostgresEngine) and engine.pool is None:
        await engine.start_connection_pool(min_size=1, max_size=max_size)


async def close() -> None:
    engine = current_engine()
    if isinstance(engine, PostgresEngine) and engine.pool is not None:
        await engine.close_connection_pool()
    if isinstance(engine, PooledSQLiteEngine):
        await engine.close_pool()
