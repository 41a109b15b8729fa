"""What changed, and since when: the queries behind each dashboard's change feed.

Triggers stamp `workflow_run.updated_at` in the database's time on every write (and
on PostgreSQL send a NOTIFY). A *stamp* here is that time as an aware UTC datetime;
clients see it as the SSE event id, so a tab reconnecting to another dashboard
process catches up from the same point.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from app.store.dbtime import db_now, is_postgres
from app.store.tables import WorkflowRun

__all__ = ["CHANNEL", "ChangeStore", "overlap", "parse_stamp", "stamp_token"]

# The NOTIFY channel of the trigger; the payload is "<run id>|<epoch seconds>".
CHANNEL = "ca_run_changed"


Change = tuple[str, datetime]


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def stamp_token(stamp: datetime) -> str:
    """A stamp as an SSE event id: microseconds since the epoch."""
    return str(int(stamp.timestamp() * 1_000_000))


def parse_stamp(token: str | None) -> datetime | None:
    """The stamp of an event id, or None for anything that is not one of ours."""
    if not token or not token.isdigit() or len(token) > 20:
        return None
    try:
        return datetime.fromtimestamp(int(token) / 1_000_000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _bound(stamp: datetime) -> Any:
    """A stamp as the engine compares it: SQLite keeps text in the triggers' format."""
    if is_postgres():
        return stamp
    return stamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:23] + "+00:00"


class ChangeStore:
    async def now(self) -> datetime:
        rows = await WorkflowRun.raw(f"SELECT {db_now()} AS now")
        return _aware(rows[0]["now"])

    async def changed_since(self, since: datetime, limit: int) -> list[Change]:
        """Runs written after `since` (oldest change first), at most `limit`."""
        rows = await WorkflowRun.raw(
            "SELECT id, updated_at FROM workflow_run WHERE updated_at > {}"
            " ORDER BY updated_at LIMIT {}",
            _bound(since),
            limit,
        )
        return [(str(r["id"]), _aware(r["updated_at"])) for r in rows]

    async def look(self, since: datetime, limit: int) -> tuple[datetime, list[Change]]:
        """The database's time now, and the runs written after `since`: one statement."""
        rows = await WorkflowRun.raw(
            f"SELECT NULL AS id, {db_now()} AS updated_at UNION ALL"
            " SELECT * FROM (SELECT id, updated_at FROM workflow_run WHERE updated_at > {}"
            " ORDER BY updated_at LIMIT {})",
            _bound(since),
            limit,
        )
        now = next(_aware(r["updated_at"]) for r in rows if r["id"] is None)
        return now, [(str(r["id"]), _aware(r["updated_at"])) for r in rows if r["id"] is not None]

    async def ancestors(self, run_ids: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """For each run, the runs it was restarted from, nearest first: a change to a
        restart shows on the rows of every run of its chain."""
        ids = [uuid.UUID(r) for r in run_ids]
        if not ids:
            return {}
        marks = ", ".join("{}" for _ in ids)
        rows = await WorkflowRun.raw(
            "WITH RECURSIVE up(start, parent, depth) AS ("
            f" SELECT id, restarted_from, 1 FROM workflow_run WHERE id IN ({marks})"
            " AND restarted_from IS NOT NULL"
            " UNION ALL"
            " SELECT up.start, w.restarted_from, up.depth + 1 FROM up"
            " JOIN workflow_run w ON w.id = up.parent"
            " WHERE w.restarted_from IS NOT NULL AND up.depth < 10000"
            ") SELECT start, parent, depth FROM up ORDER BY depth",
            *ids,
        )
        found: dict[str, list[str]] = {str(i): [] for i in ids}
        for row in rows:
            found[str(row["start"])].append(str(row["parent"]))
        return {k: tuple(v) for k, v in found.items()}


def overlap(stamp: datetime, seconds: float) -> datetime:
    return stamp - timedelta(seconds=seconds)
