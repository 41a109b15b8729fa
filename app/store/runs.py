"""RunStore: every query on runs and steps.

Writes that race (claiming a pending run, finishing, cancelling, creating a
restart) are single conditional statements, so they are atomic on SQLite and
PostgreSQL alike without read-then-write transactions.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from piccolo.columns.combination import WhereRaw

from app.store.models import Cursor, RunDetail, RunFilters, RunPage, RunSummary, StepView
from app.store.tables import ACTIVE_STATUSES, StepRun, WorkflowRun

__all__ = ["ClaimedRun", "DuplicateActiveRestart", "RunStore"]

Clock = Callable[[], datetime]

_SUMMARY_COLUMNS = (
    WorkflowRun.id,
    WorkflowRun.workflow_name,
    WorkflowRun.status,
    WorkflowRun.trigger,
    WorkflowRun.attempt,
    WorkflowRun.restarted_from,
    WorkflowRun.created_at,
    WorkflowRun.started_at,
    WorkflowRun.completed_at,
    WorkflowRun.error_type,
    WorkflowRun.error_message,
    WorkflowRun.error_node,
    WorkflowRun.total_tokens,
    WorkflowRun.total_cost_usd,
    WorkflowRun.steps_total,
    WorkflowRun.steps_done,
    WorkflowRun.current_node,
)


def _insert(table: str, rows: Sequence[dict[str, Any]]) -> str:
    """An INSERT of `rows` (bound row by row, in order) for the hot paths: Piccolo's row
    objects and query builder cost several times the statement itself."""
    columns = ", ".join(f'"{name}"' for name in rows[0])
    values = ", ".join("(" + ", ".join("{}" for _ in row) + ")" for row in rows)
    return f"INSERT INTO {table} ({columns}) VALUES {values}"


def _step_row(run_id: str, now: datetime, step: Mapping[str, Any]) -> dict[str, Any]:
    """A step_run row from what the executor reports; it ended at `completed_at`, or now."""
    started_at = step["started_at"]
    completed_at = step.get("completed_at") or now
    output = step.get("output")
    return {
        "id": uuid.uuid4(),
        "run": uuid.UUID(run_id),
        "node_id": step["node_id"],
        "step_order": step["order"],
        "item_index": step.get("item_index"),
        "status": step["status"],
        "started_at": started_at,
        "completed_at": completed_at,
        "duration_ms": max((completed_at - started_at).total_seconds() * 1000, 0.0),
        "output": json.dumps(output) if output is not None else None,
        "error": step.get("error"),
        "tokens": step.get("tokens", 0),
        "tries": step.get("tries", 1),
    }


_ACTIVE = ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)


def _is_postgres() -> bool:
    return WorkflowRun._meta.db.engine_type == "postgres"


class DuplicateActiveRestart(Exception):
    """The database refused a second pending or running restart of the same run."""


class ClaimedRun:
    """A pending run this process has just moved to running, with what it needs to execute."""

    def __init__(self, run_id: str, snapshot: Any, inputs: dict[str, Any], attempt: int):
        self.id = run_id
        self.snapshot = snapshot
        self.inputs = inputs
        self.attempt = attempt


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _is_unique_violation(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE" in str(exc)
    try:
        from asyncpg.exceptions import UniqueViolationError
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return False
    return isinstance(exc, UniqueViolationError)


def _load(value: Any) -> Any:
    # Piccolo returns JSON columns as text; a corrupt value stays a string so
    # that the caller can refuse it with a clear error instead of crashing here.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _uuid_or_none(run_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(run_id))
    except (ValueError, AttributeError, TypeError):
        return None


def _prefix_bounds(prefix: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The UUID range a hex prefix covers, so a prefix search uses the primary key."""
    digits = prefix.replace("-", "").lower()
    if not digits or len(digits) > 32 or any(c not in "0123456789abcdef" for c in digits):
        return None
    low = uuid.UUID(digits.ljust(32, "0"))
    high = uuid.UUID(digits.ljust(32, "f"))
    return low, high


def _summary(
    row: dict[str, Any],
    restarted_as: Sequence[str] = (),
    active: RunSummary | None = None,
    latest: RunSummary | None = None,
) -> RunSummary:
    return RunSummary(
        id=str(row["id"]),
        workflow_name=row["workflow_name"],
        status=row["status"],
        trigger=row["trigger"],
        attempt=row["attempt"],
        restarted_from=str(row["restarted_from"]) if row["restarted_from"] else None,
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        error_type=row["error_type"],
        error_message=row["error_message"],
        error_node=row["error_node"],
        total_tokens=row["total_tokens"] or 0,
        total_cost_usd=float(row["total_cost_usd"] or 0.0),
        steps_total=row["steps_total"] or 0,
        steps_done=row["steps_done"] or 0,
        current_node=row["current_node"],
        restarted_as=tuple(restarted_as),
        active_restart=active,
        latest_restart=latest,
    )


class RunStore:
    """All reads and writes of runs and steps. `clock` gives aware UTC datetimes."""

    def __init__(self, clock: Clock = _utcnow):
        self.clock = clock

    # -- creating and executing ------------------------------------------------

    async def create_run(
        self,
        *,
        workflow_name: str,
        snapshot: Any,
        inputs: dict[str, Any],
        trigger: str,
        steps_total: int,
        owner: str | None,
        attempt: int = 1,
        restarted_from: str | None = None,
        run_id: str | None = None,
    ) -> str:
        """Insert a pending run; a racing second active restart raises DuplicateActiveRestart."""
        new_id = uuid.UUID(run_id) if run_id else uuid.uuid4()
        now = self.clock()
        values = {
            "id": new_id,
            "workflow_name": workflow_name,
            "status": "pending",
            "trigger": trigger,
            "attempt": attempt,
            "restarted_from": uuid.UUID(restarted_from) if restarted_from else None,
            "config_snapshot": json.dumps(snapshot),
            "inputs": json.dumps(inputs),
            "created_at": now,
            "steps_total": steps_total,
            "owner": owner,
            "heartbeat_at": now,
        }
        try:
            await WorkflowRun.raw(_insert("workflow_run", [values]), *values.values())
        except Exception as exc:
            if restarted_from and _is_unique_violation(exc):
                raise DuplicateActiveRestart(restarted_from) from exc
            raise
        return str(new_id)

    async def delete_run(self, run_id: str) -> None:
        """Remove a run that never started (scheduling failed): nothing is left behind."""
        await WorkflowRun.delete().where(
            (WorkflowRun.id == uuid.UUID(run_id)) & (WorkflowRun.status == "pending")
        )

    async def claim(self, run_id: str, owner: str) -> ClaimedRun | None:
        """Move a pending run to running for `owner`; None if it is not pending any more."""
        now = self.clock()
        rows = await WorkflowRun.raw(
            "UPDATE workflow_run SET status = 'running', started_at = {}, owner = {},"
            " heartbeat_at = {} WHERE id = {} AND status = 'pending'"
            " RETURNING id, config_snapshot, inputs, attempt",
            now,
            owner,
            now,
            uuid.UUID(run_id),
        )
        if not rows:
            return None
        row = rows[0]
        inputs = _load(row["inputs"])
        return ClaimedRun(
            str(row["id"]),
            _load(row["config_snapshot"]),
            inputs if isinstance(inputs, dict) else {},
            row["attempt"],
        )

    async def advance(
        self, run_id: str, steps: Sequence[Mapping[str, Any]], node_id: str | None
    ) -> bool:
        """Write the steps that finished since the last call and note `node_id` as the
        node about to run, with the heartbeat. False when the run is no longer running
        (cancelled), so that the executor stops before the node.

        One statement on PostgreSQL, two on SQLite: the executor's only writes between
        two nodes.
        """
        return await self._progress(run_id, steps, set_node=True, node_id=node_id)

    async def record_steps(self, run_id: str, steps: Sequence[Mapping[str, Any]]) -> None:
        """Write finished node executions and add them to the run's counters."""
        if steps:
            await self._progress(run_id, steps, set_node=False)

    async def record_step(self, run_id: str, **step: Any) -> None:
        await self.record_steps(run_id, [step])

    async def _progress(
        self,
        run_id: str,
        steps: Sequence[Mapping[str, Any]],
        *,
        set_node: bool,
        node_id: str | None = None,
    ) -> bool:
        now = self.clock()
        rows = [_step_row(run_id, now, step) for step in steps]
        # Counters are updated in place so that concurrent fan-out steps never lose each
        # other's increments.
        assignments = [
            "heartbeat_at = {}",
            "steps_done = steps_done + {}",
            "total_tokens = total_tokens + {}",
            "total_cost_usd = total_cost_usd + {}",
        ]
        args: list[Any] = [
            now,
            len(rows),
            sum(row["tokens"] for row in rows),
            float(sum(step.get("cost_usd", 0.0) for step in steps)),
        ]
        if set_node:
            # A cancelled or finished run keeps the node it showed.
            assignments.append(
                "current_node = CASE WHEN status = 'running' THEN {} ELSE current_node END"
            )
            args.append(node_id)
        update = (
            f"UPDATE workflow_run SET {', '.join(assignments)} WHERE id = {{}}"
            + self._progress_commit()
            + " RETURNING status"
        )
        args.append(uuid.UUID(run_id))
        step_args = [value for row in rows for value in row.values()]
        if rows and _is_postgres():
            # One statement, so one commit.
            result = await WorkflowRun.raw(
                f"WITH step AS ({_insert('step_run', rows)}) {update}", *step_args, *args
            )
        else:
            if rows:
                await WorkflowRun.raw(_insert("step_run", rows), *step_args)
            result = await WorkflowRun.raw(update, *args)
        return bool(result) and result[0]["status"] == "running"

    @staticmethod
    def _progress_commit() -> str:
        """A condition that makes a progress write (heartbeat, node, step row) commit
        without waiting for PostgreSQL's WAL flush, which is most of its cost.

        A database crash can lose the last fraction of a second of such writes, never a
        change of status: claim, finish and cancel commit synchronously, and a synchronous
        commit flushes every earlier one, so a finished run has all its steps on disk.
        SQLite under WAL with synchronous=NORMAL already commits this way.
        """
        if _is_postgres():
            return " AND set_config('synchronous_commit', 'off', true) IS NOT NULL"
        return ""

    async def finish(
        self,
        run_id: str,
        *,
        status: str,
        outputs: dict[str, Any] | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
        error_node: str | None = None,
    ) -> bool:
        """End a running run. False when it had already ended (cancelled meanwhile)."""
        rows = await WorkflowRun.raw(
            "UPDATE workflow_run SET status = {}, completed_at = {}, outputs = {},"
            " error_type = {}, error_message = {}, error_node = {}, current_node = NULL"
            f" WHERE id = {{}} AND status IN ({_ACTIVE}) RETURNING id",
            status,
            self.clock(),
            json.dumps(outputs) if outputs is not None else None,
            error_type,
            error_message,
            error_node,
            uuid.UUID(run_id),
        )
        return bool(rows)

    async def heartbeat(self, run_id: str) -> None:
        await WorkflowRun.raw(
            "UPDATE workflow_run SET heartbeat_at = {} WHERE id = {} AND status = 'running'"
            + self._progress_commit(),
            self.clock(),
            uuid.UUID(run_id),
        )

    async def status_of(self, run_id: str) -> str | None:
        row = await (
            WorkflowRun.select(WorkflowRun.status)
            .where(WorkflowRun.id == uuid.UUID(run_id))
            .first()
        )
        return row["status"] if row else None

    async def cancel(self, run_id: str) -> bool:
        """Mark a pending or running run cancelled; its executor stops before the next node."""
        parsed = _uuid_or_none(run_id)
        if parsed is None:
            return False
        rows = await (
            WorkflowRun.update(
                {
                    WorkflowRun.status: "cancelled",
                    WorkflowRun.completed_at: self.clock(),
                    WorkflowRun.error_type: "Cancelled",
                    WorkflowRun.error_message: "cancelled by an operator",
                    WorkflowRun.current_node: None,
                }
            )
            .where((WorkflowRun.id == parsed) & WorkflowRun.status.is_in(ACTIVE_STATUSES))
            .returning(WorkflowRun.id)
        )
        return bool(rows)

    async def fail_interrupted(self, run_id: str, message: str) -> bool:
        """Fail one pending or running run as interrupted; False if it had already ended."""
        rows = await (
            WorkflowRun.update(
                {
                    WorkflowRun.status: "failed",
                    WorkflowRun.completed_at: self.clock(),
                    WorkflowRun.error_type: "Interrupted",
                    WorkflowRun.error_message: message,
                    WorkflowRun.current_node: None,
                }
            )
            .where(
                (WorkflowRun.id == uuid.UUID(run_id)) & WorkflowRun.status.is_in(ACTIVE_STATUSES)
            )
            .returning(WorkflowRun.id)
        )
        return bool(rows)

    async def pending_of(self, owner: str, *, created_before: datetime) -> list[str]:
        """Pending runs created by `owner` before the given time."""
        rows = await (
            WorkflowRun.select(WorkflowRun.id)
            .where(
                (WorkflowRun.status == "pending")
                & (WorkflowRun.owner == owner)
                & (WorkflowRun.created_at < created_before)
            )
            .limit(500)
        )
        return [str(r["id"]) for r in rows]

    async def active_owners(self, prefix: str) -> list[str]:
        """Distinct owners, starting with `prefix`, of runs that are pending or running."""
        rows = await (
            WorkflowRun.select(WorkflowRun.owner)
            .where(WorkflowRun.status.is_in(ACTIVE_STATUSES) & WorkflowRun.owner.like(f"{prefix}%"))
            .distinct()
        )
        return [r["owner"] for r in rows]

    async def interrupt_orphans(
        self, *, dead_owners: Sequence[str], stale_before: datetime
    ) -> list[str]:
        """Fail, as interrupted, active runs owned by a dead process or whose heartbeat
        is older than `stale_before`. Returns their ids.

        Each update re-checks its condition, so a run whose heartbeat moves
        meanwhile is left alone.
        """
        stale = WorkflowRun.heartbeat_at < stale_before
        groups = [
            (WorkflowRun.owner == owner, f"the process that ran it ({owner}) stopped")
            for owner in dead_owners
        ]
        groups.append((stale, "its process stopped sending heartbeats"))
        failed: list[str] = []
        for orphan, why in groups:
            for status, when in (("pending", "before it started"), ("running", "while it ran")):
                condition = (WorkflowRun.status == status) & orphan
                if status == "pending":
                    # A pending run without an owner waits in the queue; the queue's
                    # reconciler looks after it, however long it waits.
                    condition = condition & WorkflowRun.owner.is_not_null()
                rows = await (
                    WorkflowRun.update(
                        {
                            WorkflowRun.status: "failed",
                            WorkflowRun.completed_at: self.clock(),
                            WorkflowRun.error_type: "Interrupted",
                            WorkflowRun.error_message: (
                                f"interrupted {when}: {why}. Restart the run."
                            ),
                            WorkflowRun.current_node: None,
                        }
                    )
                    .where(condition)
                    .returning(WorkflowRun.id)
                )
                failed.extend(str(r["id"]) for r in rows)
        return failed

    # -- reading ---------------------------------------------------------------

    async def get_summary(self, run_id: str) -> RunSummary | None:
        parsed = _uuid_or_none(run_id)
        if parsed is None:
            return None
        row = await WorkflowRun.select(*_SUMMARY_COLUMNS).where(WorkflowRun.id == parsed).first()
        if row is None:
            return None
        return (await self._with_lineage([row]))[0]

    async def get_detail(self, run_id: str) -> RunDetail | None:
        parsed = _uuid_or_none(run_id)
        if parsed is None:
            return None
        row = await (
            WorkflowRun.select(
                *_SUMMARY_COLUMNS,
                WorkflowRun.inputs,
                WorkflowRun.outputs,
                WorkflowRun.config_snapshot,
            )
            .where(WorkflowRun.id == parsed)
            .first()
        )
        if row is None:
            return None
        children = await self._children([parsed])
        summary = (await self._with_lineage([row], children))[0]
        steps = await (
            StepRun.select(
                StepRun.node_id,
                StepRun.step_order,
                StepRun.item_index,
                StepRun.status,
                StepRun.started_at,
                StepRun.completed_at,
                StepRun.duration_ms,
                StepRun.output,
                StepRun.error,
                StepRun.tokens,
                StepRun.tries,
            )
            .where(StepRun.run == parsed)
            .order_by(StepRun.step_order)
            .order_by(StepRun.item_index)
        )
        child_rows = children.get(str(parsed), [])
        inputs = _load(row["inputs"])
        outputs = _load(row["outputs"])
        return RunDetail(
            summary=summary,
            inputs=inputs if isinstance(inputs, dict) else {},
            outputs=outputs if isinstance(outputs, dict) else None,
            config_snapshot=_load(row["config_snapshot"]),
            steps=tuple(
                StepView(
                    node_id=s["node_id"],
                    step_order=s["step_order"],
                    item_index=s["item_index"],
                    status=s["status"],
                    started_at=s["started_at"],
                    completed_at=s["completed_at"],
                    duration_ms=s["duration_ms"],
                    output=_load(s["output"]),
                    error=s["error"],
                    tokens=s["tokens"] or 0,
                    tries=s["tries"] or 1,
                )
                for s in steps
            ),
            restarted_as_runs=tuple(_summary(c) for c in child_rows),
        )

    async def get_snapshot(self, run_id: str) -> tuple[RunSummary, Any, dict[str, Any]] | None:
        """The run, its stored config snapshot and its inputs (for a restart)."""
        detail_row = await (
            WorkflowRun.select(*_SUMMARY_COLUMNS, WorkflowRun.config_snapshot, WorkflowRun.inputs)
            .where(WorkflowRun.id == uuid.UUID(run_id))
            .first()
        )
        if detail_row is None:
            return None
        # No lineage here: the database refuses a second active restart by itself.
        inputs = _load(detail_row["inputs"])
        return _summary(detail_row), _load(detail_row["config_snapshot"]), inputs

    async def list_runs(
        self,
        filters: RunFilters,
        cursor: Cursor | None = None,
        limit: int = 50,
        *,
        before: Cursor | None = None,
    ) -> RunPage:
        """Newest first, filtered in the database, by keyset: cost does not grow with the table.

        `cursor` pages to older runs, `before` back to newer ones.
        """
        query = WorkflowRun.select(*_SUMMARY_COLUMNS)
        conditions = []
        if filters.status:
            conditions.append(WorkflowRun.status == filters.status)
        if filters.workflow:
            conditions.append(WorkflowRun.workflow_name == filters.workflow)
        if filters.id_prefix:
            bounds = _prefix_bounds(filters.id_prefix)
            if bounds is None:
                return RunPage((), None, None, filters)
            conditions.append(WorkflowRun.id >= bounds[0])
            conditions.append(WorkflowRun.id <= bounds[1])
        # Row-value comparisons are what both databases use as an index bound; the
        # equivalent OR form makes them scan from the newest row down to the page.
        if cursor is not None:
            conditions.append(
                WhereRaw("(created_at, id) < ({}, {})", cursor.created_at, uuid.UUID(cursor.id))
            )
        elif before is not None:
            conditions.append(
                WhereRaw("(created_at, id) > ({}, {})", before.created_at, uuid.UUID(before.id))
            )
        for condition in conditions:
            query = query.where(condition)
        ascending = before is not None and cursor is None
        rows = await query.order_by(
            WorkflowRun.created_at, WorkflowRun.id, ascending=ascending
        ).limit(limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        if ascending:
            rows.reverse()
        runs = await self._with_lineage(rows)

        def at(row: dict[str, Any]) -> str:
            return Cursor(row["created_at"], str(row["id"])).encode()

        if not rows:
            return RunPage((), None, None, filters)
        if ascending:
            next_cursor, prev_cursor = at(rows[-1]), at(rows[0]) if more else None
        else:
            next_cursor = at(rows[-1]) if more else None
            prev_cursor = at(rows[0]) if cursor is not None else None
        return RunPage(tuple(runs), next_cursor, prev_cursor, filters)

    async def inputs_outputs(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Inputs and outputs of these runs, for the JSON list; the HTML list never reads them."""
        if not run_ids:
            return {}
        rows = await WorkflowRun.select(
            WorkflowRun.id, WorkflowRun.inputs, WorkflowRun.outputs
        ).where(WorkflowRun.id.is_in([uuid.UUID(r) for r in run_ids]))
        return {
            str(r["id"]): {"inputs": _load(r["inputs"]), "outputs": _load(r["outputs"])}
            for r in rows
        }

    async def list_runs_exist(self) -> bool:
        return await WorkflowRun.exists().where(WorkflowRun.id.is_not_null())

    async def workflow_names(self) -> list[str]:
        """Distinct workflow names by a loose index scan: one index probe per name."""
        rows = await WorkflowRun.raw(
            "WITH RECURSIVE names(n) AS ("
            " SELECT MIN(workflow_name) FROM workflow_run"
            " UNION ALL"
            " SELECT (SELECT MIN(workflow_name) FROM workflow_run WHERE workflow_name > names.n)"
            " FROM names WHERE names.n IS NOT NULL"
            ") SELECT n FROM names WHERE n IS NOT NULL"
        )
        return [r["n"] for r in rows]

    async def _children(self, parent_ids: Iterable[uuid.UUID]) -> dict[str, list[dict[str, Any]]]:
        ids = list(parent_ids)
        if not ids:
            return {}
        rows = await (
            WorkflowRun.select(*_SUMMARY_COLUMNS)
            .where(WorkflowRun.restarted_from.is_in(ids))
            .order_by(WorkflowRun.created_at, WorkflowRun.id, ascending=False)
        )
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            grouped.setdefault(str(row["restarted_from"]), []).append(row)
        return grouped

    async def _with_lineage(
        self,
        rows: Sequence[dict[str, Any]],
        children: dict[str, list[dict[str, Any]]] | None = None,
    ) -> list[RunSummary]:
        """Attach `restarted_as` and the active restart with one query for all rows."""
        if children is None:
            children = await self._children(r["id"] for r in rows)
        result = []
        for row in rows:
            kids = children.get(str(row["id"]), [])
            active = next((k for k in kids if k["status"] in ACTIVE_STATUSES), None)
            result.append(
                _summary(
                    row,
                    [str(k["id"]) for k in kids],
                    _summary(active) if active is not None else None,
                    _summary(kids[0]) if kids else None,
                )
            )
        return result
