"""Build a Piccolo engine from a database URL."""

from __future__ import annotations

from urllib.parse import urlparse

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

__all__ = ["engine_from_url"]


def engine_from_url(url: str) -> Engine:
    scheme = urlparse(url).scheme
    if scheme in ("postgres", "postgresql"):
        return PostgresEngine(config={"dsn": url}, log_queries=False)
    if scheme == "sqlite":
        # timeout is SQLite's busy timeout: writers wait for the lock instead
        # of failing at once with "database is locked".
        return SQLiteEngine(path=url.removeprefix("sqlite:///"), timeout=30)
    raise ValueError(f"unsupported database URL scheme {scheme!r}")
