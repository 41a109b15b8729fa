"""How many runs a filter matches, by status, with their tokens and cost: read from the
`run_count` table that triggers keep (see its migration), never by counting the runs.

Counters are kept per day, hour and ten minutes of the runs' creation (and for all
time). A time range takes whole days from its middle, then hours and ten-minute buckets
towards its edges, and counts the runs of its partial first and last ten minutes
directly (along the index on `created_at`): exact for any range, and a few dozen
counter rows per workflow and status whatever its length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.store import runs
from app.store.dbtime import is_postgres
from app.store.models import RunFilters
from app.store.runs import common_search, filter_sql, no_restart
from app.store.tables import ATTENTION, RUN_STATUSES, WorkflowRun

__all__ = ["RunCounts", "buckets", "run_counts"]

TEN_MINUTES, HOUR, DAY = 600, 3600, 86400
# A search counts the runs it finds up to this many; past it, the counts say "more than".
SEARCH_CAP = 200
_FINISHED = "('completed', 'failed', 'cancelled')"


@dataclass(frozen=True)
class RunCounts:
    """Runs by status; `tokens` and `cost_usd` of the finished ones."""

    by_status: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    cost_usd: float = 0.0
    # Failed runs never restarted (also counted as failed).
    attention: int = 0
    # A search found more than SEARCH_CAP runs: the figures are of the first ones only.
    capped: bool = False

    @property
    def cap(self) -> int:
        return SEARCH_CAP

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def matching(self, status: str | None) -> int:
        """How many runs the list shows with this status filter (all when None)."""
        if status == ATTENTION:
            return self.attention
        return self.by_status.get(status, 0) if status else self.total


def _add(into: dict[str, list[Any]], rows: list[dict[str, Any]]) -> None:
    for row in rows:
        sums = into.setdefault(row["status"], [0, 0, 0.0])
        sums[0] += int(row["runs"] or 0)
        sums[1] += int(row["tokens"] or 0)
        sums[2] += float(row["cost_usd"] or 0.0)


def _workflows(where: list[str], args: list[Any], workflows: tuple[str, ...]) -> None:
    if workflows:
        where.append(f"workflow_name IN ({', '.join('{}' for _ in workflows)})")
        args.extend(workflows)


def buckets(first: int, end: int | None) -> list[tuple[int, int, int | None]]:
    """The counter buckets (span, first start, end start or None) that tile [first, end)
    in epoch seconds, both multiples of ten minutes: days in the middle, hours and ten
    minutes towards the edges."""
    parts: list[tuple[int, int, int | None]] = []
    for small, big in ((TEN_MINUTES, HOUR), (HOUR, DAY)):
        inner_first = -(-first // big) * big
        inner_end = None if end is None else end // big * big
        if end is not None and inner_end is not None and inner_first >= inner_end:
            # No whole bucket of the bigger span inside: the rest in this one.
            if first < end:
                parts.append((small, first, end))
            return parts
        if first < inner_first:
            parts.append((small, first, inner_first))
        if end is not None and inner_end is not None and inner_end < end:
            parts.append((small, inner_end, end))
        first, end = inner_first, inner_end
    return [*parts, (DAY, first, end)]


async def _from_counters(
    workflows: tuple[str, ...], parts: list[tuple[int, int, int | None]]
) -> list[dict[str, Any]]:
    ranges: list[str] = []
    args: list[Any] = []
    for span, first, end in parts:
        if end is None:
            ranges.append("(span = {} AND start >= {})")
            args += [span, first]
        else:
            ranges.append("(span = {} AND start >= {} AND start < {})")
            args += [span, first, end]
    where = ["(" + " OR ".join(ranges) + ")"]
    _workflows(where, args, workflows)
    rows: list[dict[str, Any]] = await WorkflowRun.raw(
        "SELECT status, sum(runs) AS runs, sum(tokens) AS tokens, sum(cost_usd) AS cost_usd"
        f" FROM run_count WHERE {' AND '.join(where)} GROUP BY status",
        *args,
    )
    return rows


async def _from_runs(
    workflows: tuple[str, ...] | str | None,
    since: datetime | None,
    until: datetime | None,
    terms: list[Any],
    *,
    searched: bool = False,
) -> list[dict[str, Any]]:
    where: list[str] = []
    args: list[Any] = []
    if since is not None:
        where.append("created_at >= {}")
        args.append(since)
    if until is not None:
        where.append("created_at < {}")
        args.append(until)
    _workflows(where, args, (workflows,) if isinstance(workflows, str) else workflows or ())
    for sql, values in terms:
        where.append(sql)
        args.extend(values)
    condition = " AND ".join(where) or "TRUE"
    if searched:
        # One pass over the runs a search finds, with the failed ones never restarted,
        # stopped past SEARCH_CAP: a common word is in a good share of a million runs.
        found: list[dict[str, Any]] = await WorkflowRun.raw(
            "SELECT status, count(*) AS runs,"
            f" sum(CASE WHEN status IN {_FINISHED} THEN total_tokens ELSE 0 END) AS tokens,"
            f" sum(CASE WHEN status IN {_FINISHED} THEN total_cost_usd ELSE 0 END) AS cost_usd,"
            f" sum(CASE WHEN status = 'failed' AND {no_restart('m.')} THEN 1"
            " ELSE 0 END) AS attention FROM (SELECT id, status, total_tokens, total_cost_usd"
            f" FROM workflow_run WHERE {condition} LIMIT {SEARCH_CAP + 1}) AS m GROUP BY status",
            *args,
        )
        attention = sum(int(r["attention"] or 0) for r in found)
        return [*found, {"status": ATTENTION, "runs": attention, "tokens": 0, "cost_usd": 0}]
    rows: list[dict[str, Any]] = await WorkflowRun.raw(
        "SELECT status, count(*) AS runs,"
        f" sum(CASE WHEN status IN {_FINISHED} THEN total_tokens ELSE 0 END) AS tokens,"
        f" sum(CASE WHEN status IN {_FINISHED} THEN total_cost_usd ELSE 0 END) AS cost_usd"
        f" FROM workflow_run WHERE {condition} GROUP BY status"
        f" UNION ALL SELECT '{ATTENTION}', count(*), 0, 0 FROM workflow_run"
        f" WHERE {condition} AND status = 'failed' AND {no_restart('workflow_run.')}",
        *args,
        *args,
    )
    return rows


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


async def run_counts(filters: RunFilters) -> RunCounts:
    """Runs by status for the workflow and time range of `filters` (its status does not
    narrow them: the counts say what each status filter would show)."""
    sums: dict[str, list[Any]] = {}
    workflow = filters.workflow
    since, until = filters.since, filters.until
    if filters.id_prefix or filters.text:
        # A run-id prefix (a range of the primary key) or a search (the runs an index
        # finds): the counters cannot answer them, the runs are counted where they are.
        common = await common_search(filters.text)
        narrowed = workflow or since or until
        if common and not (is_postgres() or narrowed) and runs.COMMON_MATCHES >= SEARCH_CAP:
            # SQLite's look found more than COMMON_MATCHES runs, so more than the cap.
            return RunCounts(capped=True)
        terms = filter_sql(
            RunFilters(id_prefix=filters.id_prefix, text=filters.text),
            # SQLite counts from the index's matches either way: walking the runs
            # without an order starts from the oldest.
            common=common and is_postgres(),
        )
        if terms is not None:
            _add(sums, await _from_runs(workflow, since, until, terms, searched=True))
    elif since is None and until is None:
        _add(sums, await _from_counters(workflow, [(0, 0, None)]))
    else:
        first = math.ceil(since.timestamp() / TEN_MINUTES) * TEN_MINUTES if since else 0
        end = math.floor(until.timestamp() / TEN_MINUTES) * TEN_MINUTES if until else None
        if end is not None and end <= first:
            _add(sums, await _from_runs(workflow, since, until, []))
        else:
            _add(sums, await _from_counters(workflow, buckets(first, end)))
            if since is not None and since < _at(first):
                _add(sums, await _from_runs(workflow, since, _at(first), []))
            if until is not None and end is not None and _at(end) < until:
                _add(sums, await _from_runs(workflow, _at(end), until, []))
    by_status = {s: sums[s][0] for s in RUN_STATUSES if sums.get(s, [0])[0]}
    return RunCounts(
        by_status=by_status,
        capped=bool(filters.id_prefix or filters.text) and sum(by_status.values()) > SEARCH_CAP,
        tokens=sum(v[1] for v in sums.values()),
        # Counters that went up and down again hold float residue (-1e-18, -0.0).
        cost_usd=round(sum(v[2] for v in sums.values()), 9) + 0.0,
        attention=sums.get(ATTENTION, [0])[0],
    )
