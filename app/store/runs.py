"""RunStore: every query on runs and steps.

Writes that race (claiming a pending run, finishing, cancelling, creating a
restart) are single conditional statements, so they are atomic on SQLite and
PostgreSQL alike without read-then-write transactions.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from piccolo.columns.combination import WhereRaw

from app.store.access import audit_views, history_query
from app.store.dbtime import db_ago, db_now, is_postgres, retrying
from app.store.engine import Read, read_together
from app.store.models import (
    Attempt,
    Cursor,
    Executor,
    RunDetail,
    RunFilters,
    RunPage,
    RunSummary,
    StepView,
)
from app.store.search import SearchError, prefix_bounds
from app.store.search import parse as parse_search
from app.store.tables import ACTIVE_STATUSES, ATTENTION, StepRun, WorkflowRun

__all__ = ["ClaimedRun", "DuplicateRestart", "RunStore"]

Clock = Callable[[], datetime]
_T = TypeVar("_T")

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
    WorkflowRun.iterations,
    WorkflowRun.items_done,
    WorkflowRun.current_node,
    WorkflowRun.owner,
    WorkflowRun.restart_mode,
    WorkflowRun.resume_from,
)

# The run page's read of its run as fixed SQL: Piccolo's query builder cost more than the
# read (0.3 of 0.5 ms in the profile).
# The run page in one statement: the run with its whole chain of attempts (up its
# `restarted_from` links to the original, then down the restarts, one per run, so a path)
# and the process executing it. Its restart and the chain's latest attempt come from the
# same rows; only the run itself brings its inputs, outputs and snapshot.
_DETAIL_SQL = (
    "WITH RECURSIVE up(id, parent, depth) AS ("
    " SELECT id, restarted_from, 0 FROM workflow_run WHERE id = {}"
    " UNION ALL SELECT w.id, w.restarted_from, up.depth + 1 FROM up"
    " JOIN workflow_run w ON w.id = up.parent WHERE up.depth < 10000),"
    " root AS (SELECT id FROM up ORDER BY depth DESC LIMIT 1),"
    " down(id, depth) AS (SELECT id, 0 FROM root"
    " UNION ALL SELECT w.id, down.depth + 1 FROM down"
    " JOIN workflow_run w ON w.restarted_from = down.id WHERE down.depth < 10000)"
    f" SELECT {', '.join('r.' + c._meta.db_column_name for c in _SUMMARY_COLUMNS)},"
    " CASE WHEN r.id = {} THEN r.inputs END AS inputs,"
    " CASE WHEN r.id = {} THEN r.outputs END AS outputs,"
    " CASE WHEN r.id = {} THEN r.config_snapshot END AS config_snapshot,"
    " p.kind AS process_kind, p.host AS process_host, p.pid AS process_pid"
    " FROM down JOIN workflow_run r ON r.id = down.id"
    " LEFT JOIN run_process p ON p.id = r.owner ORDER BY down.depth"
)
# The run page's steps, the same way (Piccolo's builder was 0.3 of their 0.5 ms).
_STEPS_SQL = (
    "SELECT node_id, step_order, item_index, status, started_at, completed_at, duration_ms,"
    " output, error, tokens, tries, cost_usd, reused_from, tool FROM step_run WHERE run = {}"
    " ORDER BY step_order, item_index"
)


def steps_query(run: uuid.UUID) -> Read:
    return Read(StepRun, _STEPS_SQL, (run,))


def sort_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A node's tool calls share its place; they follow it, in the order they ran.
    steps.sort(
        key=lambda s: (
            s["step_order"],
            s["item_index"] or 0,
            s["tool"] is not None,
            s["started_at"],
        )
    )
    return steps


# A restart's read of the run it restarts, the same way.
_SNAPSHOT_SQL = (
    f"SELECT {', '.join(c._meta.db_column_name for c in _SUMMARY_COLUMNS)},"
    " inputs, config_snapshot FROM workflow_run WHERE id = {}"
)


def _insert(
    table: str, rows: Sequence[dict[str, Any]], sql_values: Mapping[str, str] | None = None
) -> str:
    """An INSERT of `rows` (bound row by row, in order) for the hot paths: Piccolo's row
    objects and query builder cost several times the statement itself. `sql_values`
    adds columns set by an SQL expression, the same in every row."""
    extra = dict(sql_values or {})
    columns = ", ".join(f'"{name}"' for name in [*rows[0], *extra])
    values = ", ".join(
        "(" + ", ".join(["{}" for _ in row] + list(extra.values())) + ")" for row in rows
    )
    return f"INSERT INTO {table} ({columns}) VALUES {values}"


# PostgreSQL cannot infer the types of parameters in INSERT ... SELECT ... FROM VALUES.
_STEP_TYPES = {
    "id": "uuid",
    "run": "uuid",
    "node_id": "varchar",
    "step_order": "integer",
    "item_index": "integer",
    "status": "varchar",
    "started_at": "timestamptz",
    "completed_at": "timestamptz",
    "duration_ms": "float8",
    "output": "json",
    "error": "text",
    "tokens": "integer",
    "tries": "integer",
    "cost_usd": "float8",
    "reused_from": "uuid",
    "tool": "varchar",
}


def _guarded_step_insert(rows: Sequence[dict[str, Any]]) -> str:
    """INSERT of step rows, only while the run is running for its owner (two more
    parameters: run id, owner). A repeated insert of the same step ids does nothing."""
    pg = is_postgres()
    columns = ", ".join(f'"{name}"' for name in rows[0])
    values = ", ".join(
        "(" + ", ".join(f"{{}}::{_STEP_TYPES[n]}" if pg else "{}" for n in row) + ")"
        for row in rows
    )
    return (
        f"INSERT INTO step_run ({columns}) SELECT * FROM (VALUES {values}) AS v"
        " WHERE EXISTS (SELECT 1 FROM workflow_run WHERE id = {} AND status = 'running'"
        " AND owner = {}) ON CONFLICT (id) DO NOTHING"
    )


_RETURNING = "RETURNING id, tokens, cost_usd, tool, item_index, status"
# Fan-out items done among step rows (tool and sandbox calls are not progress).
_ITEMS = (
    "coalesce(sum(CASE WHEN tool IS NULL AND item_index IS NOT NULL"
    " AND status IN ('completed', 'reused') THEN 1 ELSE 0 END), 0)"
)


def _progress_of(
    steps: Sequence[Mapping[str, Any]], rows: Sequence[dict[str, Any]]
) -> tuple[list[Any], int]:
    """What finished steps add to a run's progress, as the recorder marked them: the ids
    of the rows that are their node's first completion (each adds a node done, once
    inserted), and the most times one node has completed so far, when above 1."""
    firsts = [row["id"] for row, step in zip(rows, steps, strict=True) if step.get("first")]
    iterations = max((int(step.get("iteration") or 0) for step in steps), default=0)
    return firsts, iterations if iterations > 1 else 0


def _step_row(run_id: str, now: datetime, step: Mapping[str, Any]) -> dict[str, Any]:
    """A step_run row from what the executor reports; it ended at `completed_at`, or now.
    Its id is fixed when the step finishes, so that writing it again changes nothing."""
    started_at = step["started_at"]
    completed_at = step.get("completed_at") or now
    output = step.get("output")
    return {
        "id": step.get("id") or uuid.uuid4(),
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
        "cost_usd": float(step.get("cost_usd", 0.0)),
        "reused_from": uuid.UUID(step["reused_from"]) if step.get("reused_from") else None,
        "tool": step.get("tool"),
    }


_ACTIVE = ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)
# The most completed executions of one node outside a fan-out, when 2 or more, from the
# steps of the run given as the parameter.
_ITERATIONS = (
    "(SELECT CASE WHEN max(n) > 1 THEN max(n) ELSE 0 END FROM (SELECT count(*) AS n"
    " FROM step_run WHERE run = {} AND tool IS NULL AND item_index IS NULL"
    " AND status IN ('completed', 'reused') GROUP BY node_id) AS per_node)"
)


class DuplicateRestart(Exception):
    """The database refused a second restart of the same run: a run is restarted once."""


class ClaimedRun:
    """A pending run this process has just moved to running, with what it needs to execute.

    `steps_kept` counts the completed steps it kept when it was handed back: they are
    reused, not executed again. A resume (`restart_mode` "resume") reuses the completed
    steps of `restarted_from`, up to `resume_from`.
    """

    def __init__(
        self,
        run_id: str,
        snapshot: Any,
        inputs: dict[str, Any],
        attempt: int,
        *,
        steps_kept: int = 0,
        restarted_from: str | None = None,
        restart_mode: str | None = None,
        resume_from: str | None = None,
    ):
        self.id = run_id
        self.snapshot = snapshot
        self.inputs = inputs
        self.attempt = attempt
        self.steps_kept = steps_kept
        self.restarted_from = restarted_from
        self.restart_mode = restart_mode
        self.resume_from = resume_from


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


def filter_sql(
    filters: RunFilters, alias: str = "", *, common: bool = False
) -> list[tuple[str, list[Any]]] | None:
    """The WHERE terms of a list filter as (SQL, arguments), on the columns of `alias`
    when given; None when nothing can match (a bad prefix or search). The list, the counts
    and the bulk actions share it, so "the runs matching these filters" is one thing."""
    at = f"{alias}." if alias else ""
    own = at or "workflow_run."
    terms: list[tuple[str, list[Any]]] = []
    if filters.status == ATTENTION:
        terms.append((f"{at}status = 'failed' AND {no_restart(own)}", []))
    elif filters.status:
        terms.append((f"{at}status = {{}}", [filters.status]))
    if filters.workflow:
        marks = ", ".join("{}" for _ in filters.workflow)
        terms.append((f"{at}workflow_name IN ({marks})", list(filters.workflow)))
    if filters.id_prefix:
        bounds = prefix_bounds(filters.id_prefix)
        if bounds is None:
            return None
        terms.append((f"{at}id >= {{}} AND {at}id <= {{}}", list(bounds)))
    if filters.text:
        term = search_sql(filters.text, own, common=common)
        if term is None:
            return None
        terms.append(term)
    if filters.since:
        terms.append((f"{at}created_at >= {{}}", [filters.since]))
    if filters.until:
        terms.append((f"{at}created_at < {{}}", [filters.until]))
    return terms


def search_sql(text: str, own: str, *, common: bool = False) -> tuple[str, list[Any]] | None:
    """The runs a search finds, on the run at `own` ("workflow_run." or "alias."): its id
    starts with the text, or it holds every word. None for a search that cannot run.

    `common`: the words are in many runs (see `common_search`), so a page is found
    sooner by walking the runs newest first and keeping those found than by fetching
    every match and sorting them."""
    try:
        found = parse_search(text)
    except SearchError:
        return None
    parts: list[str] = []
    args: list[Any] = []
    if is_postgres():
        if found.id_bounds is not None:
            parts.append(f"{own}id BETWEEN {{}} AND {{}}")
            args.extend(found.id_bounds)
        if found.words:
            # The planner's guess of how many runs hold a word is off by orders of
            # magnitude either way (a walk of a million runs for a rare word, a sort
            # of every match for a common one), so the query says which: a common
            # search tests the stored tsvector of each run newest first (coalesce
            # keeps the GIN index out), a rare one looks the matches up in the index
            # first.
            if common:
                parts.append(f"coalesce({own}search_doc, ''::tsvector) @@ {{}}::tsquery")
            else:
                parts.append(
                    f"{own}id = ANY (ARRAY(SELECT id FROM workflow_run"
                    " WHERE search_doc @@ {}::tsquery))"
                )
            args.append(found.tsquery())
        return "(" + " OR ".join(parts) + ")", args
    # SQLite: one list of rowids, from the FTS5 index and the primary key, that the
    # planner can take as the driving set.
    if found.words:
        parts.append("SELECT rowid FROM run_search WHERE run_search MATCH {}")
        args.append(found.fts5())
    if found.id_bounds is not None:
        parts.append("SELECT rowid FROM workflow_run WHERE id >= {} AND id <= {}")
        args.extend(found.id_bounds)
    # `+` keeps the list of matches from driving the query: the list walks its index.
    walk = "+" if common else ""
    return f"{walk}{own}rowid IN ({' UNION ALL '.join(parts)})", args


# A search is common (see search_sql) when SQLite's index holds it in more than this
# many runs, or PostgreSQL finds it in more than COMMON_SHARE of the newest SAMPLE runs
# (then a page of 50 is found within about 2,000 runs).
COMMON_MATCHES = 1000
SAMPLE, COMMON_SHARE = 1000, 0.025
# The answer for a search, a few seconds: the list, its counts and its position ask.
_common: dict[str, tuple[float, bool]] = {}


async def common_search(text: str | None) -> bool:
    """Whether the words of a search are in many runs: one bounded look."""
    if not text:
        return False
    try:
        found = parse_search(text)
    except SearchError:
        return False
    if not found.words:
        return False
    now = time.monotonic()
    known = _common.get(found.text)
    if known is not None and known[0] > now:
        return known[1]
    if is_postgres():
        rows = await WorkflowRun.raw(
            "SELECT count(*) AS n FROM (SELECT search_doc FROM workflow_run"
            f" ORDER BY created_at DESC, id DESC LIMIT {SAMPLE}) AS newest"
            " WHERE search_doc @@ {}::tsquery",
            found.tsquery(),
        )
        common = int(rows[0]["n"]) > SAMPLE * COMMON_SHARE
    else:
        rows = await WorkflowRun.raw(
            "SELECT count(*) AS n FROM (SELECT rowid FROM run_search WHERE run_search MATCH {}"
            f" LIMIT {COMMON_MATCHES + 1})",
            found.fts5(),
        )
        common = int(rows[0]["n"]) > COMMON_MATCHES
    if len(_common) > 256:
        _common.clear()
    _common[found.text] = (now + 5.0, common)
    return common


# SQLite, a common search: it is looked for among the first this many runs of the
# other filters before everywhere (see `_in_newest`).
NEWEST_CHUNK = 2000


async def _in_newest(
    filters: RunFilters, bound: tuple[str, list[Any]] | None, ascending: bool
) -> tuple[list[Any], bool] | None:
    """WHERE terms for a common search on SQLite that confine it to the first
    NEWEST_CHUNK runs, in the list's order, of its other filters past the page's `bound`;
    None when the search does not lend itself (it could be a run-id prefix).

    FTS5 gathers every match of a word before the list can walk them (5 ms for a word in
    30,000 of a million runs, and as much again to hold them for the walk) but reads the
    matches in a range of rowids directly. The chunk's runs lie in the range of their
    rowids, so its matches are the search's first ones, exactly: the answer whenever
    they fill the page, or the chunk holds every run of the filters (the flag)."""
    try:
        found = parse_search(filters.text or "")
    except SearchError:
        return None
    others = filter_sql(replace(filters, text=None))
    if not found.words or found.id_bounds is not None or others is None:
        return None
    terms = [*others, *([bound] if bound else [])]
    where = " AND ".join(sql for sql, _ in terms) or "1"
    args = [a for _, values in terms for a in values]
    order = "ASC" if ascending else "DESC"
    chunk = (
        f"SELECT rowid AS r, created_at AS c, id AS i FROM workflow_run WHERE {where}"
        f" ORDER BY created_at {order}, id {order} LIMIT {NEWEST_CHUNK}"
    )
    span = await WorkflowRun.raw(
        f"SELECT min(r) AS lo, max(r) AS hi, count(*) AS n FROM ({chunk})", *args
    )
    confined = [
        WhereRaw(
            "+workflow_run.rowid IN (SELECT rowid FROM run_search WHERE run_search MATCH {}"
            " AND rowid >= {} AND rowid <= {})",
            found.fts5(),
            span[0]["lo"],
            span[0]["hi"],
        )
    ]
    if span[0]["n"] == NEWEST_CHUNK:
        # No further than the chunk's last run.
        edge = "<=" if ascending else ">="
        confined.append(
            WhereRaw(
                f"(created_at, id) {edge} (SELECT c, i FROM ({chunk})"
                f" LIMIT 1 OFFSET {NEWEST_CHUNK - 1})",
                *args,
            )
        )
    terms_of_page = [*(WhereRaw(sql, *values) for sql, values in others), *confined]
    return terms_of_page, span[0]["n"] < NEWEST_CHUNK


def no_restart(at: str) -> str:
    """SQL: the run at `at` ("workflow_run." or "alias.") was never restarted."""
    return f"NOT EXISTS (SELECT 1 FROM workflow_run r WHERE r.restarted_from = {at}id)"


async def _filter_conditions(filters: RunFilters, common: bool = False) -> list[Any] | None:
    """The WHERE terms of a list filter; None when nothing can match (a bad prefix)."""
    terms = filter_sql(filters, common=common)
    return None if terms is None else [WhereRaw(sql, *args) for sql, args in terms]


async def _walking(query: Any, walk: bool) -> list[dict[str, Any]]:
    """Run a list query; `walk` (a common search on PostgreSQL) keeps it on a btree
    index newest first. Its estimate of a common search's matches can be a hundredth
    of the truth, and then it reads and sorts every run: 150 ms at 100,000 runs."""
    if not (walk and is_postgres()):
        rows: list[dict[str, Any]] = await query
        return rows
    async with WorkflowRun._meta.db.transaction():
        # SET LOCAL of both in one round trip.
        await WorkflowRun.raw(
            "SELECT set_config('enable_seqscan', 'off', true),"
            " set_config('enable_bitmapscan', 'off', true)"
        )
        rows = await query
        return rows


def _summary(
    row: dict[str, Any],
    restarted_as: Sequence[str] = (),
    active: RunSummary | None = None,
    latest: RunSummary | None = None,
    executed_by: Executor | None = None,
    median_cost: float | None = None,
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
        iterations=row.get("iterations") or 0,
        items_done=row.get("items_done") or 0,
        current_node=row["current_node"],
        owner=row.get("owner"),
        restart_mode=row.get("restart_mode"),
        resume_from=row.get("resume_from"),
        restarted_as=tuple(restarted_as),
        median_cost_usd=median_cost,
        active_restart=active,
        latest_restart=latest,
        executed_by=executed_by,
    )


def _attempts(chain: Sequence[dict[str, Any]]) -> tuple[Attempt, ...]:
    """A run's chain as its page lists it, root first; a run that was never restarted
    nor is a restart has no chain to show."""
    if len(chain) < 2:
        return ()
    return tuple(
        Attempt(
            id=str(r["id"]),
            attempt=r["attempt"],
            status=r["status"],
            created_at=r["created_at"],
            total_tokens=r["total_tokens"] or 0,
            total_cost_usd=float(r["total_cost_usd"] or 0.0),
            restart_mode=r["restart_mode"],
        )
        for r in chain
    )


# A workflow's typical cost is the median of its latest completed runs: recent enough to
# follow a change of model or prompt.
MEDIAN_OF = 1000


# workflow -> (when it was read, its median or None), for MEDIAN_TTL seconds: medians
# move slowly, and a bulk preview or a page of rows would read them again and again.
_medians: dict[str, tuple[float, float | None]] = {}
MEDIAN_TTL = 60.0


async def median_costs(workflows: Iterable[str]) -> dict[str, float]:
    """Each workflow's median cost over its latest completed runs, resumed ones left out
    (an index walk each, cached for a minute)."""
    now = time.monotonic()
    wanted = sorted(set(workflows))
    stale = [w for w in wanted if now - _medians.get(w, (-1e9, None))[0] > MEDIAN_TTL]
    for name, median in (await _read_medians(stale)).items():
        _medians[name] = (now, median)
    return {w: m for w in wanted if (m := _medians[w][1]) is not None}


def forget_medians() -> None:
    """Read every median afresh next time (tests that rewrite the table)."""
    _medians.clear()


async def _read_medians(workflows: list[str]) -> dict[str, float | None]:
    found: dict[str, float | None] = {}
    for name in workflows:
        rows = await WorkflowRun.raw(
            "SELECT total_cost_usd FROM workflow_run WHERE workflow_name = {}"
            # A resumed run paid for part of the workflow only.
            " AND status = 'completed' AND coalesce(restart_mode, '') <> 'resume'"
            " ORDER BY created_at DESC LIMIT {}",
            name,
            MEDIAN_OF,
        )
        found[name] = (
            statistics.median(float(r["total_cost_usd"] or 0) for r in rows) if rows else None
        )
    return found


async def workflow_names() -> list[str]:
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


class RunStore:
    """All reads and writes of runs and steps. `clock` gives aware UTC datetimes."""

    def __init__(self, clock: Clock = _utcnow, *, retry_within: float = 30.0):
        self.clock = clock
        # How long the executor's writes are retried through transient database errors.
        self.retry_within = retry_within

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
        restart_mode: str | None = None,
        resume_from: str | None = None,
    ) -> str:
        """Insert a pending run; a second restart of the same run raises DuplicateRestart.

        Its `heartbeat_at` is the database's time of creation: how long a pending run
        has waited is measured on one clock.
        """
        new_id = uuid.UUID(run_id) if run_id else uuid.uuid4()
        values = {
            "id": new_id,
            "workflow_name": workflow_name,
            "status": "pending",
            "trigger": trigger,
            "attempt": attempt,
            "restarted_from": uuid.UUID(restarted_from) if restarted_from else None,
            "config_snapshot": json.dumps(snapshot),
            "inputs": json.dumps(inputs),
            "created_at": self.clock(),
            "steps_total": steps_total,
            "owner": owner,
            "restart_mode": restart_mode,
            "resume_from": resume_from,
        }
        sql = _insert("workflow_run", [values], {"heartbeat_at": db_now()})
        try:
            await WorkflowRun.raw(sql, *values.values())
        except Exception as exc:
            if restarted_from and _is_unique_violation(exc):
                raise DuplicateRestart(restarted_from) from exc
            raise
        return str(new_id)

    async def delete_run(self, run_id: str) -> None:
        """Remove a run that never started (scheduling failed): nothing is left behind."""
        await WorkflowRun.delete().where(
            (WorkflowRun.id == uuid.UUID(run_id)) & (WorkflowRun.status == "pending")
        )

    async def claim(self, run_id: str, owner: str, *, again: bool = False) -> ClaimedRun | None:
        """Move a pending run to running for `owner`; None if it is not pending any more.

        `again` (a retry after an error that may have hidden a commit) also accepts the
        run if it is already running for the same owner.
        """
        mine = " OR (status = 'running' AND owner = {})" if again else ""
        rows = await WorkflowRun.raw(
            "UPDATE workflow_run SET status = 'running', started_at = {}, owner = {},"
            f" heartbeat_at = {db_now()} WHERE id = {{}} AND (status = 'pending'{mine})"
            " RETURNING id, config_snapshot, inputs, attempt, steps_done, restarted_from,"
            " restart_mode, resume_from",
            self.clock(),
            owner,
            uuid.UUID(run_id),
            *([owner] if again else []),
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
            steps_kept=row["steps_done"] or 0,
            restarted_from=str(row["restarted_from"]) if row["restarted_from"] else None,
            restart_mode=row["restart_mode"],
            resume_from=row["resume_from"],
        )

    async def reusable_steps(self, run_id: str) -> list[dict[str, Any]]:
        """The completed (or themselves reused) node executions of a run, in the order
        they ran: what a resume or a handed-back run takes over."""
        rows = await StepRun.raw(
            "SELECT node_id, item_index, output, tokens, cost_usd, reused_from, run"
            " FROM step_run WHERE run = {} AND status IN ('completed', 'reused')"
            " AND tool IS NULL ORDER BY step_order, item_index",
            uuid.UUID(run_id),
        )
        return [
            {
                "node_id": r["node_id"],
                "item_index": r["item_index"],
                "output": _load(r["output"]),
                "tokens": r["tokens"] or 0,
                "cost_usd": float(r["cost_usd"] or 0.0),
                "source": str(r["reused_from"] or r["run"]),
            }
            for r in rows
        ]

    async def advance(
        self, run_id: str, owner: str, steps: Sequence[Mapping[str, Any]], node_id: str | None
    ) -> bool:
        """Write the steps that finished since the last call and note `node_id` as the
        node about to run. False when the run is no longer running for `owner`
        (cancelled, or failed by someone else), so that the executor stops before the node.

        One statement on PostgreSQL, two on SQLite: the executor's only writes between
        two nodes. Safe to repeat after an error: step ids are fixed, and counters grow
        only by the rows actually inserted.
        """
        return await self._progress(run_id, owner, steps, set_node=True, node_id=node_id)

    async def record_steps(
        self, run_id: str, owner: str, steps: Sequence[Mapping[str, Any]]
    ) -> bool:
        """Write finished node executions and add them to the run's counters, while the
        run is running for `owner`; False when it is not any more."""
        if not steps:
            return True
        return await self._progress(run_id, owner, steps, set_node=False)

    async def _progress(
        self,
        run_id: str,
        owner: str,
        steps: Sequence[Mapping[str, Any]],
        *,
        set_node: bool,
        node_id: str | None = None,
        end: Mapping[str, Any] | None = None,
    ) -> bool:
        rows = [_step_row(run_id, self.clock(), step) for step in steps]
        step_args = [value for row in rows for value in row.values()]
        guard = [uuid.UUID(run_id), owner]
        firsts, iterations = _progress_of(steps, rows)
        # Counters are updated in place so that concurrent fan-out steps never lose each
        # other's increments, and grow only by the rows actually inserted: a write
        # repeated after an error that hid its commit adds nothing twice. A node counts
        # as done once, by the row the recorder marked as its first completion, so that
        # no statement has to look at the run's other steps.
        if is_postgres() and rows:
            # One statement, so one commit.
            marks = ", ".join("{}" for _ in firsts)
            sums = [
                f"(SELECT count(*) FROM step WHERE id IN ({marks}))" if firsts else "0",
                *(
                    f"(SELECT {expression} FROM step)"
                    for expression in (
                        _ITEMS,
                        "coalesce(sum(tokens), 0)",
                        "coalesce(sum(cost_usd), 0)",
                    )
                ),
            ]
            return await self._retry(
                lambda: self._update_progress(
                    run_id,
                    owner,
                    sums,
                    firsts,
                    iterations=iterations,
                    set_node=set_node,
                    node_id=node_id,
                    before=f"WITH step AS ({_guarded_step_insert(rows)} {_RETURNING}) ",
                    before_args=[*step_args, *guard],
                    end=end,
                ),
                f"recording progress of run {run_id}",
            )
        inserted: list[dict[str, Any]] = []
        if rows:
            # Each statement is retried on its own, so the rows one inserted are known
            # to the update even if the update is what had to wait.
            inserted = await self._retry(
                lambda: WorkflowRun.raw(
                    f"{_guarded_step_insert(rows)} {_RETURNING}",
                    *step_args,
                    *guard,
                ),
                f"recording steps of run {run_id}",
            )
        first_ids = {str(i) for i in firsts}
        sums_args = [
            sum(1 for r in inserted if str(r["id"]) in first_ids),
            sum(
                1
                for r in inserted
                if r["tool"] is None
                and r["item_index"] is not None
                and r["status"] in ("completed", "reused")
            ),
            sum(r["tokens"] or 0 for r in inserted),
            float(sum(r["cost_usd"] or 0.0 for r in inserted)),
        ]
        return await self._retry(
            lambda: self._update_progress(
                run_id,
                owner,
                ["{}", "{}", "{}", "{}"],
                sums_args,
                iterations=iterations,
                set_node=set_node,
                node_id=node_id,
                end=end,
            ),
            f"recording progress of run {run_id}",
        )

    async def _update_progress(
        self,
        run_id: str,
        owner: str,
        sums: Sequence[str],
        sum_args: Sequence[Any],
        *,
        iterations: int = 0,
        set_node: bool,
        node_id: str | None,
        before: str = "",
        before_args: Sequence[Any] = (),
        end: Mapping[str, Any] | None = None,
    ) -> bool:
        """`sums`: what steps_done, items_done, total_tokens and total_cost_usd grow by
        (SQL, with `sum_args` for their placeholders in that order). `end`: the columns
        that end the run (see `finish`), set in the same statement, committed at once."""
        assignments = [
            f"heartbeat_at = {db_now()}",
            f"steps_done = steps_done + {sums[0]}",
            f"items_done = items_done + {sums[1]}",
            f"total_tokens = total_tokens + {sums[2]}",
            f"total_cost_usd = total_cost_usd + {sums[3]}",
        ]
        args: list[Any] = [*sum_args]
        if iterations:
            # The highest count wins, whichever write lands last.
            assignments.append("iterations = CASE WHEN iterations < {} THEN {} ELSE iterations END")
            args += [iterations, iterations]
        if set_node:
            assignments.append("current_node = {}")
            args.append(node_id)
        if end is not None:
            assignments += [f"{column} = {{}}" for column in end] + ["current_node = NULL"]
            args += list(end.values())
        update = (
            f"{before}UPDATE workflow_run SET {', '.join(assignments)}"
            " WHERE id = {} AND status = 'running' AND owner = {}"
            + (self._progress_commit() if end is None else "")
            + " RETURNING status"
        )
        result = await WorkflowRun.raw(update, *before_args, *args, uuid.UUID(run_id), owner)
        return bool(result)

    async def _retry(self, write: Callable[[], Awaitable[_T]], what: str) -> _T:
        return await retrying(write, what=what, within=self.retry_within)

    @staticmethod
    def _progress_commit() -> str:
        """A condition that makes a progress write (node, step row) commit without
        waiting for PostgreSQL's WAL flush, which is most of its cost.

        A database crash can lose the last fraction of a second of such writes, never a
        change of status: claim, finish, cancel and interrupt commit synchronously, and a
        synchronous commit flushes every earlier one, so whatever ended a run, the steps
        written before it are on disk. Progress writes are refused once the run is not
        running for its owner, so none can come after that commit.
        SQLite under WAL with synchronous=NORMAL already commits this way.
        """
        if is_postgres():
            return " AND set_config('synchronous_commit', 'off', true) IS NOT NULL"
        return ""

    async def finish(
        self,
        run_id: str,
        *,
        status: str,
        owner: str | None = None,
        outputs: dict[str, Any] | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
        error_node: str | None = None,
        steps: Sequence[Mapping[str, Any]] = (),
    ) -> bool:
        """End an active run (only `owner`'s, when given). False when it had already
        ended, or belongs to another process.

        `steps`, the owner's last finished steps, are written with the end (one
        statement on PostgreSQL, two on SQLite, instead of a progress write and then
        this one); safe to repeat, as every progress write is."""
        if steps:
            assert owner is not None, "steps are written by the run's owner"
            end = {
                "status": status,
                "completed_at": self.clock(),
                "outputs": json.dumps(outputs) if outputs is not None else None,
                "error_type": error_type,
                "error_message": error_message,
                "error_node": error_node,
            }
            return await self._progress(run_id, owner, steps, set_node=False, end=end)
        mine = " AND owner = {}" if owner is not None else ""
        rows = await WorkflowRun.raw(
            "UPDATE workflow_run SET status = {}, completed_at = {}, outputs = {},"
            " error_type = {}, error_message = {}, error_node = {}, current_node = NULL"
            f" WHERE id = {{}} AND status IN ({_ACTIVE}){mine} RETURNING id",
            status,
            self.clock(),
            json.dumps(outputs) if outputs is not None else None,
            error_type,
            error_message,
            error_node,
            uuid.UUID(run_id),
            *([owner] if owner is not None else []),
        )
        return bool(rows)

    async def release(self, run_id: str, owner: str) -> bool:
        """Hand a running run back: pending again, with no owner, so that another process
        executes it. Its completed steps stay and are reused there (a deploy does not
        pay twice for them); the others go, and the counters count what stayed. Only
        `owner`'s own run."""
        run = uuid.UUID(run_id)
        await WorkflowRun.raw(
            "DELETE FROM step_run WHERE run = {} AND status NOT IN ('completed', 'reused')"
            " AND EXISTS (SELECT 1 FROM workflow_run"
            " WHERE id = {} AND status = 'running' AND owner = {})",
            run,
            run,
            owner,
        )
        kept = "(SELECT {} FROM step_run WHERE run = workflow_run.id)"
        nodes = "count(DISTINCT CASE WHEN tool IS NULL THEN node_id END)"
        rows = await WorkflowRun.raw(
            "UPDATE workflow_run SET status = 'pending', owner = NULL, started_at = NULL,"
            f" current_node = NULL, steps_done = {kept.format(nodes)},"
            f" items_done = {kept.format(_ITEMS)}, iterations = {_ITERATIONS},"
            f" total_tokens = {kept.format('coalesce(sum(tokens), 0)')},"
            f" total_cost_usd = {kept.format('coalesce(sum(cost_usd), 0)')},"
            f" heartbeat_at = {db_now()}"
            " WHERE id = {} AND status = 'running' AND owner = {} RETURNING id",
            run,
            run,
            owner,
        )
        return bool(rows)

    async def release_pending(self, owner: str) -> list[str]:
        """Give up `owner`'s pending runs (a process that stops before starting them)."""
        rows = await WorkflowRun.raw(
            "UPDATE workflow_run SET owner = NULL WHERE status = 'pending' AND owner = {}"
            " RETURNING id",
            owner,
        )
        return [str(r["id"]) for r in rows]

    async def adopt_pending(self, owner: str, *, limit: int = 100) -> list[str]:
        """Take pending runs that belong to no process (handed back, or left by a process
        that died) for `owner` to execute. The embedded mode only: in the queue mode
        such runs wait for a worker."""
        rows = await WorkflowRun.raw(
            "UPDATE workflow_run SET owner = {} WHERE id IN (SELECT id FROM workflow_run"
            " WHERE status = 'pending' AND owner IS NULL ORDER BY created_at LIMIT {})"
            " AND status = 'pending' AND owner IS NULL RETURNING id",
            owner,
            limit,
        )
        return [str(r["id"]) for r in rows]

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
            .where((WorkflowRun.id == parsed) & WorkflowRun.status.is_in(list(ACTIVE_STATUSES)))
            .returning(WorkflowRun.id)
        )
        return bool(rows)

    async def fail_interrupted(
        self, run_id: str, message: str, *, owner: str | None = None
    ) -> bool:
        """Fail one pending or running run as interrupted (only while `owner` holds it,
        when given); False if it had already ended."""
        condition = (WorkflowRun.id == uuid.UUID(run_id)) & WorkflowRun.status.is_in(
            list(ACTIVE_STATUSES)
        )
        if owner is not None:
            condition = condition & (WorkflowRun.owner == owner)
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
            .where(condition)
            .returning(WorkflowRun.id)
        )
        return bool(rows)

    async def pending_of(self, owner: str, *, waiting_for: float) -> list[str]:
        """`owner`'s pending runs created at least `waiting_for` seconds ago (database time)."""
        rows = await WorkflowRun.raw(
            "SELECT id FROM workflow_run WHERE status = 'pending' AND owner = {}"
            f" AND heartbeat_at <= {db_ago()} LIMIT 500",
            owner,
            waiting_for,
        )
        return [str(r["id"]) for r in rows]

    async def running_of(self, owner: str) -> list[str]:
        rows = await WorkflowRun.raw(
            "SELECT id FROM workflow_run WHERE status = 'running' AND owner = {}", owner
        )
        return [str(r["id"]) for r in rows]

    async def owners_gone(self) -> list[str]:
        """Owners of active runs whose process is known to have stopped."""
        rows = await WorkflowRun.raw(
            f"SELECT DISTINCT owner FROM workflow_run WHERE status IN ({_ACTIVE})"
            " AND owner IN (SELECT id FROM run_process WHERE stopped_at IS NOT NULL)"
        )
        return [r["owner"] for r in rows]

    async def interrupt_runs_of(self, owner: str, why: str) -> list[str]:
        """The process `owner` is gone: fail its running runs as interrupted, and give
        its pending runs (created but never started) to whoever executes runs next."""
        rows = await WorkflowRun.raw(
            "UPDATE workflow_run SET status = 'failed', completed_at = {},"
            " error_type = 'Interrupted', error_message = {}, current_node = NULL"
            " WHERE status = 'running' AND owner = {} RETURNING id",
            self.clock(),
            f"interrupted while it ran: {why}. Restart the run.",
            owner,
        )
        await WorkflowRun.raw(
            "UPDATE workflow_run SET owner = NULL WHERE status = 'pending' AND owner = {}",
            owner,
        )
        return [str(r["id"]) for r in rows]

    async def interrupt_unknown_owners(self, stale_after: float) -> list[str]:
        """Runs whose owner is no registered process (written by an older version) and
        whose heartbeat is older than `stale_after` seconds: the running ones are failed,
        the pending ones given to whoever executes runs next."""
        await WorkflowRun.raw(
            "UPDATE workflow_run SET owner = NULL WHERE status = 'pending'"
            f" AND owner IS NOT NULL AND heartbeat_at < {db_ago()}"
            " AND NOT EXISTS (SELECT 1 FROM run_process p WHERE p.id = workflow_run.owner)",
            stale_after,
        )
        rows = await WorkflowRun.raw(
            "UPDATE workflow_run SET status = 'failed', completed_at = {},"
            " error_type = 'Interrupted', error_message = {}, current_node = NULL"
            f" WHERE status = 'running' AND heartbeat_at < {db_ago()}"
            " AND NOT EXISTS (SELECT 1 FROM run_process p WHERE p.id = workflow_run.owner)"
            " RETURNING id",
            self.clock(),
            "interrupted while it ran: its process stopped sending heartbeats. Restart the run.",
            stale_after,
        )
        return [str(r["id"]) for r in rows]

    async def executor_of(self, owner: str | None) -> Executor | None:
        if not owner:
            return None
        return (await self._executors([owner])).get(owner)

    async def _executors(self, owners: Iterable[str | None]) -> dict[str, Executor]:
        wanted = sorted({o for o in owners if o})
        if not wanted:
            return {}
        marks = ", ".join("{}" for _ in wanted)
        rows = await WorkflowRun.raw(
            f"SELECT id, kind, host, pid FROM run_process WHERE id IN ({marks})", *wanted
        )
        return {r["id"]: Executor(r["id"], r["kind"], r["host"], r["pid"]) for r in rows}

    # -- reading ---------------------------------------------------------------

    async def get_summary(self, run_id: str) -> RunSummary | None:
        parsed = _uuid_or_none(run_id)
        if parsed is None:
            return None
        row = await WorkflowRun.select(*_SUMMARY_COLUMNS).where(WorkflowRun.id == parsed).first()
        if row is None:
            return None
        return (await self._with_lineage([row]))[0]

    async def get_summaries(self, run_ids: Iterable[str]) -> dict[str, RunSummary]:
        """Several runs as the list shows them, by id (missing ids are left out)."""
        ids = [parsed for r in run_ids if (parsed := _uuid_or_none(r)) is not None]
        if not ids:
            return {}
        rows = await WorkflowRun.select(*_SUMMARY_COLUMNS).where(WorkflowRun.id.is_in(ids))
        return {s.id: s for s in await self._with_lineage(rows)}

    async def get_detail(self, run_id: str, *, history: int = 0) -> RunDetail | None:
        """The run with its steps and lineage; and its `history` latest audit entries."""
        parsed = _uuid_or_none(run_id)
        if parsed is None:
            return None
        # The steps and the history need only the id: all in one go.
        reads = [Read(WorkflowRun, _DETAIL_SQL, (parsed,) * 4), steps_query(parsed)]
        if history:
            reads.append(history_query(parsed, limit=history))
        chain, steps, *audit = await read_together(*reads)
        sort_steps(steps)
        at = next((i for i, r in enumerate(chain) if r["id"] == parsed), None)
        if at is None:
            return None
        row = chain[at]
        child = chain[at + 1] if at + 1 < len(chain) else None
        latest = _summary(chain[-1]) if child is not None else None
        executor = None
        if row["process_kind"] is not None:
            executor = Executor(
                row["owner"], row["process_kind"], row["process_host"], row["process_pid"]
            )
        medians = await self._medians_for([row])
        summary = _summary(
            row,
            [str(child["id"])] if child is not None else [],
            latest if latest is not None and latest.is_active else None,
            latest,
            executor,
            medians.get(row["workflow_name"]),
        )
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
                    cost_usd=float(s["cost_usd"] or 0.0),
                    reused_from=str(s["reused_from"]) if s["reused_from"] else None,
                    tool=s["tool"],
                )
                for s in steps
            ),
            restarted_as_runs=(_summary(child),) if child is not None else (),
            attempts=_attempts(chain),
            history=tuple(audit_views(audit[0])) if audit else (),
        )

    async def get_snapshot(self, run_id: str) -> tuple[RunSummary, Any, dict[str, Any]] | None:
        """The run, its stored config snapshot and its inputs (for a restart)."""
        found = await WorkflowRun.raw(_SNAPSHOT_SQL, uuid.UUID(run_id))
        if not found:
            return None
        detail_row = found[0]
        # No lineage here: the database refuses a second restart by itself.
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
        common = await common_search(filters.text)
        conditions = await _filter_conditions(filters, common)
        if conditions is None:
            return RunPage((), None, None, filters)
        # Row-value comparisons are what both databases use as an index bound; the
        # equivalent OR form makes them scan from the newest row down to the page.
        bound: tuple[str, list[Any]] | None = None
        if cursor is not None:
            bound = ("(created_at, id) < ({}, {})", [cursor.created_at, uuid.UUID(cursor.id)])
        elif before is not None:
            bound = ("(created_at, id) > ({}, {})", [before.created_at, uuid.UUID(before.id)])
        if bound is not None:
            conditions.append(WhereRaw(bound[0], *bound[1]))
        ascending = before is not None and cursor is None

        async def page(where: list[Any]) -> list[dict[str, Any]]:
            query = WorkflowRun.select(*_SUMMARY_COLUMNS)
            for condition in where:
                query = query.where(condition)
            query = query.order_by(WorkflowRun.created_at, WorkflowRun.id, ascending=ascending)
            return await _walking(query.limit(limit + 1), common)

        rows = None
        newest = (
            await _in_newest(filters, bound, ascending) if common and not is_postgres() else None
        )
        if newest is not None:
            where, whole = newest
            rows = await page([*where, *([WhereRaw(bound[0], *bound[1])] if bound else [])])
            if len(rows) <= limit and not whole:
                rows = None  # the chunk did not fill the page: everywhere
        if rows is None:
            rows = await page(conditions)
        more = len(rows) > limit
        rows = rows[:limit]
        if ascending:
            rows.reverse()
        runs = await self._with_lineage(rows)

        def at(row: dict[str, Any]) -> str:
            return Cursor(row["created_at"], str(row["id"])).encode()

        if not rows:
            return RunPage((), None, None, filters)
        next_cursor: str | None
        prev_cursor: str | None
        if ascending:
            next_cursor, prev_cursor = at(rows[-1]), at(rows[0]) if more else None
        else:
            next_cursor = at(rows[-1]) if more else None
            prev_cursor = at(rows[0]) if cursor is not None else None
        return RunPage(tuple(runs), next_cursor, prev_cursor, filters)

    async def created_after(
        self, filters: RunFilters, after: datetime, limit: int = 1000
    ) -> list[str]:
        """Ids of the runs matching `filters` created after `after`, newest first."""
        common = await common_search(filters.text)
        conditions = await _filter_conditions(filters, common)
        if conditions is None:
            return []
        query = WorkflowRun.select(WorkflowRun.id).where(WorkflowRun.created_at > after)
        for condition in conditions:
            query = query.where(condition)
        rows = await _walking(
            query.order_by(WorkflowRun.created_at, ascending=False).limit(limit), common
        )
        return [str(r["id"]) for r in rows]

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

    async def median_costs(self, workflows: Iterable[str]) -> dict[str, float]:
        return await median_costs(workflows)

    async def workflow_names(self) -> list[str]:
        return await workflow_names()

    async def _chains(
        self, root_ids: Iterable[uuid.UUID]
    ) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        """For each run that was restarted: its restart and the latest attempt of the
        chain that follows (the same run when the chain is one restart long). One
        recursive query for all, along the index on `restarted_from`."""
        ids = list(root_ids)
        if not ids:
            return {}
        marks = ", ".join("{}" for _ in ids)
        columns = ", ".join(f"r.{c._meta.db_column_name}" for c in _SUMMARY_COLUMNS)
        rows = await WorkflowRun.raw(
            "WITH RECURSIVE chain(root, id, depth) AS ("
            f" SELECT restarted_from, id, 1 FROM workflow_run WHERE restarted_from IN ({marks})"
            " UNION ALL"
            " SELECT chain.root, w.id, chain.depth + 1 FROM chain"
            " JOIN workflow_run w ON w.restarted_from = chain.id WHERE chain.depth < 10000"
            f") SELECT chain.root AS lineage_root, chain.depth AS lineage_depth, {columns}"
            " FROM chain JOIN workflow_run r ON r.id = chain.id",
            *ids,
        )
        found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for row in sorted(rows, key=lambda r: r["lineage_depth"]):
            root = str(row["lineage_root"])
            first = found[root][0] if root in found else row
            found[root] = (first, row)
        return found

    async def _with_lineage(
        self,
        rows: Sequence[dict[str, Any]],
        chains: dict[str, tuple[dict[str, Any], dict[str, Any]]] | None = None,
    ) -> list[RunSummary]:
        """Attach `restarted_as`, the chain's latest attempt and the executing process,
        with one query each for all rows."""
        if chains is None:
            chains = await self._chains(r["id"] for r in rows)
        executors = await self._executors(r["owner"] for r in rows)
        medians = await self._medians_for(rows)
        result = []
        for row in rows:
            child, tip = chains.get(str(row["id"]), (None, None))
            latest = _summary(tip) if tip is not None else None
            result.append(
                _summary(
                    row,
                    [str(child["id"])] if child is not None else [],
                    latest if latest is not None and latest.is_active else None,
                    latest,
                    executors.get(row["owner"]),
                    medians.get(row["workflow_name"]),
                )
            )
        return result

    async def _medians_for(self, rows: Sequence[dict[str, Any]]) -> dict[str, float]:
        """The workflow medians behind the expected cost of restarting finished runs."""
        return await median_costs(
            r["workflow_name"] for r in rows if r["status"] not in ACTIVE_STATUSES
        )
