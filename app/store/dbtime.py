"""The database's clock, and retries of writes that fail for a moment.

Liveness compares times written by one process with times read by another. Taken
from each host's clock, a host 40 s slow would have its runs failed at once; taken
from the database's clock, every process compares like with like. (The embedded
SQLite file lives on one host, so its clock is that host's.) Timestamps keep the
format Piccolo stores (`str()` of an aware UTC datetime), so they compare as text.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.store.tables import WorkflowRun

__all__ = ["db_ago", "db_now", "is_postgres", "is_transient", "retrying"]

log = logging.getLogger("configurable_agents.store")

T = TypeVar("T")

_SQLITE_NOW = "(strftime('%Y-%m-%d %H:%M:%f', 'now'{}) || '+00:00')"


def is_postgres() -> bool:
    return WorkflowRun._meta.db.engine_type == "postgres"


def db_now() -> str:
    """SQL for the database's current time."""
    return "now()" if is_postgres() else _SQLITE_NOW.format("")


def db_ago(placeholder: str = "{}") -> str:
    """SQL for the database's time `placeholder` seconds ago (bind a float)."""
    if is_postgres():
        return f"(now() - make_interval(secs => {placeholder}::float8))"
    return _SQLITE_NOW.format(f", '-' || {placeholder} || ' seconds'")


def is_transient(exc: BaseException) -> bool:
    """An error that a moment later may not happen again: a locked SQLite file, a lost
    or refused PostgreSQL connection, a serialization failure or deadlock."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "locked" in text or "busy" in text
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return False
    if isinstance(exc, (asyncpg.InterfaceError, asyncpg.PostgresConnectionError)):
        return True
    # SQLSTATE classes: 08 connection, 40 serialization/deadlock, 53 resources,
    # 57 operator intervention (terminated, shutting down), 55000 "not accepting
    # connections" while a database is closed to new ones.
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in ("08", "40", "53", "57") or state == "55000"


async def retrying(
    write: Callable[[], Awaitable[T]],
    *,
    what: str,
    within: float = 30.0,
    first_wait: float = 0.05,
    max_wait: float = 2.0,
) -> T:
    """Call `write` until it succeeds, retrying transient errors with exponential
    backoff for at most `within` seconds; any other error, or the last one, is raised.

    `write` must be safe to repeat: each of ours is a conditional statement or inserts
    rows with fixed ids.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    wait = first_wait
    while True:
        try:
            return await write()
        except Exception as exc:
            if not is_transient(exc) or loop.time() + wait > deadline:
                raise
            log.warning("%s failed (%s); retrying in %.2f s", what, exc, wait)
        await asyncio.sleep(wait)
        wait = min(wait * 2, max_wait)
