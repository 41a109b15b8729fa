"""Processes that execute runs, their heartbeats, and the runs of processes that died."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.store.dbtime import db_ago, db_now
from app.store.tables import RunProcess

__all__ = ["ProcessStore", "ProcessView"]


@dataclass(frozen=True)
class ProcessView:
    id: str
    kind: str
    host: str
    pid: int
    pid_ns: str | None
    boot_id: str | None
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    stop_reason: str | None
    # Seconds since the last heartbeat, in the database's time.
    silent_for: float
    runs: tuple[str, ...] = ()
    # Runs it executes at once (a queue worker's `--concurrency`).
    concurrency: int | None = None

    @property
    def alive(self) -> bool:
        return self.stopped_at is None

    def describe(self) -> str:
        """How an operator recognises the process: `worker 7f3a… on host-1 (pid 42)`."""
        return f"{self.kind} {self.id} on {self.host} (pid {self.pid})"


_COLUMNS = (
    "p.id, p.kind, p.host, p.pid, p.pid_ns, p.boot_id, p.started_at, p.heartbeat_at,"
    " p.stopped_at, p.stop_reason, p.concurrency"
)


def _silent_for() -> str:
    from app.store.dbtime import is_postgres

    if is_postgres():
        return "EXTRACT(EPOCH FROM (now() - p.heartbeat_at))::float8"
    return (
        "(julianday(strftime('%Y-%m-%d %H:%M:%f', 'now'))"
        " - julianday(substr(p.heartbeat_at, 1, 23))) * 86400.0"
    )


def _view(row: dict[str, Any], runs: Sequence[str] = ()) -> ProcessView:
    return ProcessView(
        id=row["id"],
        kind=row["kind"],
        host=row["host"],
        pid=row["pid"],
        pid_ns=row["pid_ns"],
        boot_id=row["boot_id"],
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        stopped_at=row["stopped_at"],
        stop_reason=row["stop_reason"],
        silent_for=max(float(row["silent_for"] or 0.0), 0.0),
        runs=tuple(runs),
        concurrency=row.get("concurrency"),
    )


class ProcessStore:
    async def register(
        self,
        *,
        instance_id: str,
        kind: str,
        host: str,
        pid: int,
        pid_ns: str | None,
        boot_id: str | None,
        concurrency: int | None = None,
    ) -> None:
        now = db_now()
        await RunProcess.raw(
            "INSERT INTO run_process (id, kind, host, pid, pid_ns, boot_id, concurrency,"
            " started_at, heartbeat_at)"
            f" VALUES ({{}}, {{}}, {{}}, {{}}, {{}}, {{}}, {{}}, {now}, {now})",
            instance_id,
            kind,
            host,
            pid,
            pid_ns,
            boot_id,
            concurrency,
        )

    async def beat(self, instance_id: str) -> bool:
        """Write the heartbeat; False when the process was declared dead meanwhile."""
        rows = await RunProcess.raw(
            f"UPDATE run_process SET heartbeat_at = {db_now()}"
            " WHERE id = {} AND stopped_at IS NULL RETURNING id",
            instance_id,
        )
        return bool(rows)

    async def stop(self, instance_id: str, reason: str) -> None:
        await RunProcess.raw(
            f"UPDATE run_process SET stopped_at = {db_now()}, stop_reason = {{}}"
            " WHERE id = {} AND stopped_at IS NULL",
            reason,
            instance_id,
        )

    async def declare_dead(
        self, instance_id: str, reason: str, *, silent_for_at_least: float | None
    ) -> bool:
        """Mark a process stopped. With `silent_for_at_least`, only if its heartbeat is
        still that old when the statement runs, so a beat that lands meanwhile wins."""
        condition = ""
        args: list[Any] = [reason, instance_id]
        if silent_for_at_least is not None:
            condition = f" AND heartbeat_at < {db_ago()}"
            args.append(silent_for_at_least)
        rows = await RunProcess.raw(
            f"UPDATE run_process SET stopped_at = {db_now()}, stop_reason = {{}}"
            f" WHERE id = {{}} AND stopped_at IS NULL{condition} RETURNING id",
            *args,
        )
        return bool(rows)

    async def live(self) -> list[ProcessView]:
        """Processes not known to have stopped, with how long each has been silent."""
        rows = await RunProcess.raw(
            f"SELECT {_COLUMNS}, {_silent_for()} AS silent_for FROM run_process p"
            " WHERE p.stopped_at IS NULL ORDER BY p.started_at"
        )
        return [_view(r) for r in rows]

    async def get(self, instance_id: str) -> ProcessView | None:
        rows = await RunProcess.raw(
            f"SELECT {_COLUMNS}, {_silent_for()} AS silent_for FROM run_process p"
            " WHERE p.id = {}",
            instance_id,
        )
        return _view(rows[0]) if rows else None

    async def workers(self, *, stopped_within_seconds: float = 3600.0) -> list[ProcessView]:
        """Queue workers, live ones and those stopped in the last hour, with their runs."""
        rows = await RunProcess.raw(
            f"SELECT {_COLUMNS}, {_silent_for()} AS silent_for FROM run_process p"
            f" WHERE p.kind = 'worker' AND (p.stopped_at IS NULL OR p.stopped_at > {db_ago()})"
            " ORDER BY p.started_at",
            stopped_within_seconds,
        )
        ids = [r["id"] for r in rows]
        running: dict[str, list[str]] = {}
        if ids:
            marks = ", ".join("{}" for _ in ids)
            for r in await RunProcess.raw(
                "SELECT owner, id FROM workflow_run WHERE status = 'running'"
                f" AND owner IN ({marks}) ORDER BY started_at",
                *ids,
            ):
                running.setdefault(r["owner"], []).append(str(r["id"]))
        return [_view(r, running.get(r["id"], ())) for r in rows]


def new_instance_id() -> str:
    return uuid.uuid4().hex[:16]
