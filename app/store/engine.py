"""Build a Piccolo engine from a database URL."""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import aiosqlite
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, dict_factory
from piccolo.query.methods.raw import Raw
from piccolo.table import Table

__all__ = ["PooledSQLiteEngine", "Read", "engine_from_url", "read_together"]


# What aiosqlite raises, before queueing anything, on a connection that was closed.
_CLOSED = ("Connection closed", "no active connection")

# WAL pages between the writer's checkpoints (SQLite's default: 1,000).
CHECKPOINT_PAGES = 10_000

# A statement that may write: anything but a SELECT, or a WITH that names a write.
_MAY_WRITE = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", re.I)


def may_write(query: str) -> bool:
    head = query.lstrip()[:7].upper()
    if head.startswith("SELECT"):
        return False
    return not head.startswith("WITH") or bool(_MAY_WRITE.search(query))


class PooledSQLiteEngine(SQLiteEngine):
    """SQLite with connections kept open and reused.

    Piccolo's SQLiteEngine opens a new connection (and thread) for every query
    outside a transaction; that costs more than most of our queries. Connections
    here stay open, up to `pool_size` readers per event loop and one writer, in
    autocommit mode as Piccolo's are, so each statement still commits on its own.
    Transactions keep Piccolo's behaviour (a connection of their own).

    Every write of the event loop goes to its one writer connection, in order. SQLite
    lets one writer in at a time; two of our connections racing for it made the loser
    sleep in SQLite's busy handler (1, 2, 5 ms...) while the lock sat free, and the
    writes queued behind it. The writer's thread takes them back to back instead
    (restarts at c10: about 240 -> 280 a second). Other processes on the same file
    still meet the busy timeout.
    """

    def __init__(self, path: str, *, pool_size: int = 4, **kwargs: Any):
        super().__init__(path=path, **kwargs)
        self.pool_size = pool_size
        self._pools: dict[asyncio.AbstractEventLoop, _Pool] = {}

    def _pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            for old in [lp for lp in self._pools if lp.is_closed()]:
                del self._pools[old]
            pool = self._pools[loop] = _Pool(self, self.pool_size)
        return pool

    async def open_connection(self) -> aiosqlite.Connection:
        connection = aiosqlite.connect(**self.connection_kwargs)
        # A pooled connection lives as long as the process; its worker thread must
        # not keep the interpreter from exiting.
        connection._thread.daemon = True
        await connection
        connection.row_factory = dict_factory  # type: ignore[assignment]
        await connection.execute("PRAGMA foreign_keys = 1")
        # In WAL mode NORMAL keeps the database consistent after a crash and only
        # fsyncs at checkpoints, not on every one of our many small commits.
        await connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    async def _run_in_new_connection(
        self,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> Any:
        pool = self._pool()
        if may_write(query):
            return await pool.write(query, args or [])
        connection = await pool.acquire()
        healthy = False
        try:
            # One trip to the connection's thread instead of three (execute, fetch, close).
            rows = await connection.execute_fetchall(query, args or [])
            healthy = True
            return list(rows)
        except sqlite3.DatabaseError:
            healthy = True  # the statement failed; the connection is fine
            raise
        finally:
            await pool.release(connection, healthy=healthy)

    async def read_together(self, statements: list[tuple[str, list[Any]]]) -> list[list[Any]]:
        """Several reads on one reader, in one trip to its thread and one snapshot."""
        pool = self._pool()
        connection = await pool.acquire()
        healthy = False
        try:
            # aiosqlite has no public call for "run this function on the connection's
            # thread"; its own methods are built on this one.
            found: list[list[Any]] = await connection._execute(
                _fetch_each, connection._conn, statements
            )
            healthy = True
            return found
        except sqlite3.DatabaseError:
            # A statement failed; the connection is fine unless it is still in the read
            # transaction (its snapshot would hold every later read on it back).
            healthy = not await connection._execute(_in_transaction, connection._conn)
            raise
        finally:
            await pool.release(connection, healthy=healthy)

    async def close_pool(self) -> None:
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()


def _in_transaction(connection: sqlite3.Connection) -> bool:
    return connection.in_transaction


def _fetch_each(
    connection: sqlite3.Connection, statements: list[tuple[str, list[Any]]]
) -> list[list[Any]]:
    connection.execute("BEGIN")
    try:
        found = [connection.execute(query, args).fetchall() for query, args in statements]
        connection.execute("COMMIT")
        return found
    finally:
        if connection.in_transaction:  # a statement failed
            connection.execute("ROLLBACK")


@dataclass(frozen=True)
class Read:
    """A SELECT for `read_together`: its table, its SQL with {} for each argument, and
    the arguments."""

    table: type[Table]
    sql: str
    args: tuple[Any, ...] = ()

    def raw(self) -> Raw:
        return self.table.raw(self.sql, *self.args)


@functools.lru_cache(maxsize=64)
def _qmarks(sql: str) -> str:
    return sql.format(*["?"] * sql.count("{}"))


async def read_together(*reads: Read) -> list[list[dict[str, Any]]]:
    """The rows of each read. On SQLite, one trip to one pooled reader's thread, which
    reads them all from one snapshot: a trip there and back costs more than a point
    read, and three trips at once wait on each other for the GIL (a run's page, its
    run, steps and history: 0.50 -> 0.19 ms). Piccolo's query objects are left out
    there too (40 us of those three reads). On PostgreSQL they run at once on the pool;
    inside a transaction, one after the other on its connection."""
    engine = reads[0].table._meta.db
    if engine.current_transaction.get():
        return [await r.raw().run() for r in reads]
    if isinstance(engine, PooledSQLiteEngine):
        return await engine.read_together([(_qmarks(r.sql), list(r.args)) for r in reads])
    return list(await asyncio.gather(*(r.raw().run() for r in reads)))


class _Pool:
    def __init__(self, engine: PooledSQLiteEngine, size: int):
        self.engine = engine
        self.idle: asyncio.LifoQueue[aiosqlite.Connection] = asyncio.LifoQueue()
        self.slots = asyncio.Semaphore(size)
        self.all: set[aiosqlite.Connection] = set()
        self.writer: aiosqlite.Connection | None = None
        self.opening = asyncio.Lock()

    async def write(self, query: str, args: list[Any]) -> list[Any]:
        try:
            return await self._write(query, args)
        except ValueError as exc:
            if str(exc) not in _CLOSED:
                raise
            # Raised before the statement was queued: it never ran, so it runs on a
            # new writer.
            return await self._write(query, args)

    async def _write(self, query: str, args: list[Any]) -> list[Any]:
        writer = self.writer
        if writer is None:
            async with self.opening:
                if self.writer is None:
                    connection = await self.engine.open_connection()
                    try:
                        # A checkpoint (two fsyncs, every page the WAL holds) stalls
                        # the writer, and every write waits on it: ten times fewer,
                        # each rewriting the hot pages once (restarts at c10: 305 ->
                        # 328 a second). The WAL grows to about 40 MB before one.
                        await connection.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
                    except BaseException:
                        await asyncio.shield(connection.close())
                        raise
                    self.writer = connection
                writer = self.writer
        try:
            # aiosqlite runs a connection's calls in order on its thread. A caller
            # cancelled meanwhile leaves its statement to commit on its own, as any
            # autocommit statement would: the connection stays usable.
            return list(await writer.execute_fetchall(query, args))
        except ValueError as exc:
            # Closed under us: the next write opens another. (Other errors, a bad
            # parameter among them, leave the writer as it is.)
            if str(exc) in _CLOSED and self.writer is writer:
                self.writer = None
            raise

    async def acquire(self) -> aiosqlite.Connection:
        await self.slots.acquire()
        try:
            if not self.idle.empty():
                return self.idle.get_nowait()
            connection = await self.engine.open_connection()
            self.all.add(connection)
            return connection
        except BaseException:
            self.slots.release()
            raise

    async def release(self, connection: aiosqlite.Connection, *, healthy: bool) -> None:
        try:
            if healthy:
                self.idle.put_nowait(connection)
            else:
                # Cancelled or broken mid-statement: do not hand it to someone else.
                self.all.discard(connection)
                await asyncio.shield(connection.close())
        finally:
            self.slots.release()

    async def close(self) -> None:
        for connection in list(self.all):
            await connection.close()
        self.all.clear()
        if self.writer is not None:
            writer, self.writer = self.writer, None
            await writer.close()


def engine_from_url(url: str) -> Engine:
    scheme = urlparse(url).scheme
    if scheme in ("postgres", "postgresql"):
        return PostgresEngine(config={"dsn": url}, log_queries=False)
    if scheme == "sqlite":
        # timeout is SQLite's busy timeout: writers wait for the lock instead
        # of failing at once with "database is locked".
        return PooledSQLiteEngine(path=url.removeprefix("sqlite:///"), timeout=30)
    raise ValueError(f"unsupported database URL scheme {scheme!r}")
