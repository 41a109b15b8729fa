"""SQLite: every write of a process's event loop goes through its one writer connection,
in order, so that its writes never race each other for SQLite's lock; reads stay on the
pool, see each write once it is answered, and the writer outlives errors, cancelled
callers and being closed under it."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from typing import Any

import pytest
from factories import make_run
from support import BACKEND, FROZEN_NOW

from app.store import db
from app.store.engine import CHECKPOINT_PAGES, Read, may_write, read_together
from app.store.runs import RunStore
from app.store.tables import WorkflowRun

pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's connections")


@pytest.mark.parametrize(
    ("sql", "writes"),
    [
        ("SELECT * FROM workflow_run", False),
        ("\n  select id FROM workflow_run", False),
        ("WITH RECURSIVE up(id) AS (SELECT 1) SELECT id FROM up", False),
        ("WITH step AS (INSERT INTO step_run VALUES (1) RETURNING id) SELECT 1", True),
        ("WITH x AS (SELECT 1) UPDATE workflow_run SET status = 'x'", True),
        ("INSERT INTO workflow_run (id) VALUES (?)", True),
        ("UPDATE workflow_run SET status = 'failed'", True),
        ("DELETE FROM workflow_run", True),
        ("PRAGMA optimize", True),
    ],
)
def test_what_counts_as_a_write(sql: str, writes: bool) -> None:
    assert may_write(sql) is writes


async def _trace(connection: Any, into: list[str]) -> None:
    # On the connection's own thread, as sqlite3 requires.
    await connection._execute(connection._conn.set_trace_callback, into.append)


async def test_writes_go_to_one_connection_and_reads_see_them(empty_db: str) -> None:
    run_ids = [await make_run(i, created_at=FROZEN_NOW, status="failed") for i in range(20)]
    pool = db.current_engine()._pool()  # type: ignore[attr-defined]
    assert pool.writer is not None  # make_run wrote through it
    # Open every reader the pool allows, to trace them all.
    await asyncio.gather(*(WorkflowRun.raw("SELECT count(*) FROM workflow_run") for _ in range(8)))
    assert len(pool.all) == pool.engine.pool_size
    # The writer checkpoints less often than SQLite would.
    pragma = await pool.writer.execute_fetchall("PRAGMA wal_autocheckpoint")
    assert list(pragma[0].values()) == [CHECKPOINT_PAGES] and CHECKPOINT_PAGES > 1000
    written: list[str] = []
    read: list[str] = []
    await _trace(pool.writer, written)
    for connection in pool.all:
        await _trace(connection, read)

    async def cancel_then_read(run_id: str) -> str:
        await WorkflowRun.raw(
            "UPDATE workflow_run SET status = 'cancelled' WHERE id = {}", uuid.UUID(run_id)
        )
        rows = await WorkflowRun.raw(
            "SELECT status FROM workflow_run WHERE id = {}", uuid.UUID(run_id)
        )
        return str(rows[0]["status"])

    statuses = await asyncio.gather(*(cancel_then_read(r) for r in run_ids))

    # Each read, on a pooled connection, saw its write.
    assert statuses == ["cancelled"] * 20
    # (The trace repeats a statement for each trigger it fires.)
    assert len({s for s in written if s.startswith("UPDATE workflow_run SET status")}) == 20
    assert not any(s.startswith(("UPDATE", "INSERT", "DELETE")) for s in read)
    assert sum(s.startswith("SELECT status") for s in read) == 20
    assert not any(s.startswith("SELECT status") for s in written)


async def test_the_writer_outlives_a_failed_write_and_a_cancelled_caller(empty_db: str) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="failed")
    with pytest.raises(Exception, match="UNIQUE"):
        await WorkflowRun.raw(
            "INSERT INTO workflow_run (id, workflow_name, status, created_at)"
            " VALUES ({}, 'echo', 'pending', '2026-01-01')",
            uuid.UUID(run_id),
        )

    # A caller cancelled while its write waits behind others: the writer goes on.
    slow = [
        asyncio.ensure_future(
            WorkflowRun.raw("UPDATE workflow_run SET error_message = {}", f"pass {i}")
        )
        for i in range(5)
    ]
    slow[2].cancel()
    await asyncio.gather(*slow, return_exceptions=True)
    await WorkflowRun.raw(
        "UPDATE workflow_run SET status = 'cancelled' WHERE id = {}", uuid.UUID(run_id)
    )
    row = await WorkflowRun.select(WorkflowRun.status, WorkflowRun.error_message).first()
    assert row == {"status": "cancelled", "error_message": "pass 4"}


async def test_a_bad_parameter_fails_its_write_only(empty_db: str) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="failed")
    pool = db.current_engine()._pool()  # type: ignore[attr-defined]
    writer = pool.writer
    # A lone surrogate cannot be encoded for SQLite: a ValueError, not "Connection
    # closed". It is not retried, and the writer stays.
    with pytest.raises(UnicodeEncodeError):
        await WorkflowRun.raw("UPDATE workflow_run SET error_message = {}", "\ud800")
    assert pool.writer is writer
    await WorkflowRun.raw(
        "UPDATE workflow_run SET status = 'cancelled' WHERE id = {}", uuid.UUID(run_id)
    )
    assert await WorkflowRun.select(WorkflowRun.status).first() == {"status": "cancelled"}


async def test_a_writer_closed_under_it_is_replaced(empty_db: str) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="failed")
    pool = db.current_engine()._pool()  # type: ignore[attr-defined]
    old = pool.writer
    await old.close()

    await WorkflowRun.raw(
        "UPDATE workflow_run SET status = 'cancelled' WHERE id = {}", uuid.UUID(run_id)
    )

    assert pool.writer is not None and pool.writer is not old
    assert await WorkflowRun.select(WorkflowRun.status).first() == {"status": "cancelled"}
    # Closing the pool closes the writer too; the next write opens another.
    await db.current_engine().close_pool()  # type: ignore[attr-defined]
    await WorkflowRun.raw("UPDATE workflow_run SET status = 'failed'")
    assert await WorkflowRun.select(WorkflowRun.status).first() == {"status": "failed"}


async def test_a_run_pages_reads_take_one_trip_and_one_snapshot(empty_db: str) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="completed", steps=2)
    await RunStore().get_detail(run_id)  # opens a reader
    pool = db.current_engine()._pool()  # type: ignore[attr-defined]
    traced: dict[int, list[str]] = {}
    for connection in pool.all:
        await _trace(connection, traced.setdefault(id(connection), []))

    detail = await RunStore().get_detail(run_id, history=20)

    assert detail is not None and len(detail.steps) == 2
    (statements,) = [s for s in traced.values() if s]
    assert [s.split()[0] for s in statements] == ["BEGIN", "WITH", "SELECT", "SELECT", "COMMIT"]
    assert "FROM step_run" in statements[2] and "FROM audit_entry" in statements[3]


async def test_a_failed_read_leaves_its_reader_usable(empty_db: str) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="completed")
    with pytest.raises(sqlite3.OperationalError, match="no such column"):
        await read_together(
            Read(WorkflowRun, "SELECT id FROM workflow_run"),
            Read(WorkflowRun, "SELECT missing_column FROM workflow_run"),
        )
    pool = db.current_engine()._pool()  # type: ignore[attr-defined]
    assert pool.all and not any(c._conn.in_transaction for c in pool.all)
    (found,) = await read_together(
        Read(WorkflowRun, "SELECT id FROM workflow_run WHERE id = {}", (uuid.UUID(run_id),))
    )
    assert [str(r["id"]) for r in found] == [run_id]


async def test_a_cancelled_read_leaves_no_reader_in_a_transaction(empty_db: str) -> None:
    await make_run(1, created_at=FROZEN_NOW, status="completed")
    slow = Read(
        WorkflowRun,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {})"
        " SELECT count(*) AS c FROM n",
        (3_000_000,),
    )
    await read_together(Read(WorkflowRun, "SELECT 1 AS one"))
    pool = db.current_engine()._pool()  # type: ignore[attr-defined]
    (reader,) = pool.all
    task = asyncio.create_task(read_together(Read(WorkflowRun, "SELECT 1 AS one"), slow))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The reader that was cut off mid-transaction is closed, not handed to the next read.
    assert reader not in pool.all and pool.idle.empty()
    (rows,) = await read_together(Read(WorkflowRun, "SELECT count(*) AS n FROM workflow_run"))
    assert rows == [{"n": 1}]
