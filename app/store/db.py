"""Which database the process talks to, its migrations, and its connection pool.

The engine is kept here, not read from `piccolo_conf`: importing Piccolo's app
registry loads black (for writing migration files), 9 MB that a server holds all its
life. `migrate()` hands the engine to `piccolo_conf` when there is something to run.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

from piccolo.apps.migrations.tables import Migration
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

from app.settings import normalise_database_url
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

_TABLES = (WorkflowRun, StepRun, RunProcess, WebSession, AuditEntry, RestartBatch, Migration)
# A Piccolo migration file names itself in a module-level `ID = "..."`.
_MIGRATION_ID = re.compile(r"""^ID = ["']([^"']+)["']""", re.M)
UP_TO_DATE = "No migrations need to be run"
APP_NAME = "runs"
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

_engine: Engine | None = None


def configure(database_url: str) -> Engine:
    """Point the tables and the migration runner at `database_url` (idempotent)."""
    global _engine
    engine = _engine
    if engine is None or _url_of(engine) != database_url:
        engine = _engine = engine_from_url(database_url)
    for table in _TABLES:
        table._meta._db = engine
    return engine


def current_engine() -> Engine:
    if _engine is None:
        return configure(normalise_database_url(os.environ.get("DATABASE_URL")))
    return _engine


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
    if await _pending():
        from piccolo.apps.migrations.commands.forwards import run_forwards

        from app.store import piccolo_conf

        piccolo_conf.DB = engine
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = await run_forwards(app_name="all")
        if not result.success:
            raise RuntimeError(f"migrations failed: {result.message}")
        report = out.getvalue()
    else:
        report = UP_TO_DATE
    if isinstance(engine, PostgresEngine):
        from app.store.queue import ensure_queue_schema

        # The queue's tables live beside ours; procrastinate refuses a second install.
        if await ensure_queue_schema(str(engine.config["dsn"])):
            report += "\nqueue schema installed"
    return report


async def _pending() -> bool:
    """Whether a migration file is not yet recorded as applied. Asked before Piccolo's
    runner is imported: it loads every migration module and black (their formatter),
    some 12 MB that a server would otherwise carry all its life to learn that nothing
    is to be done. No migration table, or a file whose ID it does not list, and the
    runner decides, as before."""
    if not await Migration.table_exists():
        return True
    files = {
        m.group(1) for f in MIGRATIONS.glob("*.py") if (m := _MIGRATION_ID.search(f.read_text()))
    }
    applied = await (
        Migration.select(Migration.name).where(Migration.app_name == APP_NAME).output(as_list=True)
    )
    return not files or not files <= set(applied)


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
