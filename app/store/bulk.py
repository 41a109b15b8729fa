"""BulkStore: restart or cancel many runs at once, set-based, and the batches that
record them.

A selection is a list of run ids or a list filter. Counting what it matches is one
grouped query however many runs it covers; acting on it is one statement for the
candidates and one `INSERT … SELECT` (or `UPDATE`) in one transaction. The unique
index on `restarted_from` makes overlapping batches create every restart once.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from app.store.dbtime import db_now, is_postgres
from app.store.models import RunFilters
from app.store.runs import (
    _is_unique_violation,
    _load,
    filter_sql,
    median_costs,
    workflow_names,
)
from app.store.tables import ACTIVE_STATUSES, TERMINAL_STATUSES, RestartBatch, WorkflowRun

__all__ = [
    "BatchProgress",
    "BulkStore",
    "Candidate",
    "DuplicateKey",
    "Preview",
    "Selection",
    "cents",
    "expected_cost",
]

_ACTIVE = ", ".join(f"'{s}'" for s in ACTIVE_STATUSES)
_TERMINAL = ", ".join(f"'{s}'" for s in TERMINAL_STATUSES)


@dataclass(frozen=True)
class Selection:
    """The runs a bulk action is about: `ids`, or every run matching `filters`."""

    ids: tuple[str, ...] | None = None
    filters: RunFilters | None = None

    def as_json(self) -> dict[str, Any]:
        if self.ids is not None:
            return {"ids": list(self.ids)}
        f = self.filters or RunFilters()
        found = {
            "status": f.status,
            "workflow": f.workflow_param,
            "q": f.q,
            "since": f.since.isoformat() if f.since else None,
            "until": f.until.isoformat() if f.until else None,
        }
        return {"filter": {k: v for k, v in found.items() if v is not None}}


@dataclass
class Preview:
    """What a bulk action would do: counts by reason, and its cost (restart only)."""

    matched: int = 0
    eligible: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    last_tokens: int = 0
    last_cost_usd: float = 0.0
    estimated_cost_usd: float = 0.0


@dataclass(frozen=True)
class Candidate:
    id: str
    workflow_name: str
    total_tokens: int
    total_cost_usd: float


@dataclass(frozen=True)
class BatchProgress:
    id: str
    kind: str
    created_at: datetime
    actor: str
    matched: int
    acted: int
    estimated_cost_usd: float
    max_cost_usd: float | None
    selection: dict[str, Any]
    answer: dict[str, Any] | None
    # Runs of the batch by status, as they stand now.
    statuses: dict[str, int]

    @property
    def done(self) -> int:
        return sum(n for s, n in self.statuses.items() if s in TERMINAL_STATUSES)

    @property
    def finished(self) -> bool:
        return self.kind != "restart" or self.done >= self.acted


class DuplicateKey(Exception):
    """A batch with this idempotency key (for this actor) exists already."""


def _selection_sql(selection: Selection) -> tuple[str, list[Any]]:
    """WHERE terms on `w` for a selection; "1 = 0" when nothing can match."""
    if selection.ids is not None:
        ids = [str(uuid.UUID(i)) for i in selection.ids]
        if is_postgres():
            return "w.id = ANY({}::uuid[])", [[uuid.UUID(i) for i in ids]]
        return "w.id IN (SELECT value FROM json_each({}))", [json.dumps(ids)]
    terms = filter_sql(selection.filters or RunFilters(), "w")
    if terms is None:
        return "1 = 0", []
    return " AND ".join(sql for sql, _ in terms) or "1 = 1", [a for _, args in terms for a in args]


def expected_cost(last_cost: float, median: float | None) -> float:
    """What restarting a run is expected to cost: its own last cost, or its workflow's
    median cost of completed runs where that is more. A failed run's own cost covers only
    the nodes it reached, and one that recorded none has none: the cap must not be
    undercut by the runs that stopped early."""
    return max(last_cost, median or 0.0)


def _expected_sql(medians: dict[str, float]) -> tuple[str, list[Any]]:
    """`expected_cost` of row `w` in SQL, the medians inlined as a CASE on the name."""
    known = [(name, m) for name, m in medians.items() if math.isfinite(m) and m > 0]
    if not known:
        return "w.total_cost_usd", []
    cases = " ".join(f"WHEN {{}} THEN {float(m)!r}" for _, m in known)
    median = f"(CASE w.workflow_name {cases} ELSE 0.0 END)"
    return (
        f"(CASE WHEN w.total_cost_usd > {median} THEN w.total_cost_usd ELSE {median} END)",
        [name for name, _ in known] * 2,
    )


def _restartable(alias: str = "w") -> str:
    return (
        f"{alias}.status IN ({_TERMINAL}) AND {alias}.config_snapshot IS NOT NULL AND r.id IS NULL"
    )


def cents(value: float) -> int:
    """Money compared to the cent: a cap of $10.00 admits an estimate of $10.00."""
    return round(value * 100)


class BulkStore:
    def __init__(self, clock: Callable[[], datetime]):
        self.clock = clock

    # -- what a selection covers -----------------------------------------------------

    async def preview_restart(self, selection: Selection) -> Preview:
        """Counts and estimated cost of restarting the selection, without a probe per run:
        one aggregate over its finished runs (covered by an index: a million runs are one
        index scan), less the runs of it already restarted (reached from their restarts,
        by the index on `restarted_from`) and those without a snapshot (a partial index)."""
        where, args = _selection_sql(selection)
        wanted = selection.filters.workflow if selection.filters else ()
        medians = await median_costs(wanted or await workflow_names())
        expected, expected_args = _expected_sql(medians)
        finished = f"w.status NOT IN ({_ACTIVE})"

        def sums(only: str = "") -> str:
            """Count, tokens, cost and expected cost of the rows (those where `only`)."""

            def of(value: str) -> str:
                return (
                    f"coalesce(sum(CASE WHEN {only} THEN {value} ELSE 0 END), 0)"
                    if only
                    else (f"coalesce(sum({value}), 0)")
                )

            return (
                f"{of('1')} AS n, {of('w.total_tokens')} AS tokens,"
                f" {of('w.total_cost_usd')} AS cost, {of(expected)} AS expected"
            )

        if is_postgres():
            # From the restarts, which are few, each to its original by primary key; a
            # plain join hashes every run of the filter instead.
            restarts = (
                "workflow_run r JOIN LATERAL (SELECT * FROM workflow_run o"
                " WHERE o.id = r.restarted_from) w ON r.restarted_from IS NOT NULL"
            )
            no_snapshot = "workflow_run w"
        else:
            # SQLite would walk the filter's index and probe each run for a restart:
            # from the restarts instead, which are few; and the partial index it would
            # not pick by itself.
            restarts = (
                "workflow_run r CROSS JOIN workflow_run w ON w.id = r.restarted_from"
                " AND r.restarted_from IS NOT NULL"
            )
            no_snapshot = "workflow_run w INDEXED BY workflow_run_no_snapshot"
        queries = {
            "finished": f"SELECT count(*) AS matched, {sums(finished)} FROM workflow_run w"
            f" WHERE {where}",
            "restarted": f"SELECT {sums()} FROM {restarts} WHERE {finished} AND {where}",
            "no_snapshot": f"SELECT {sums()} FROM {no_snapshot} WHERE w.config_snapshot IS NULL"
            f" AND {finished} AND {where}"
            " AND NOT EXISTS (SELECT 1 FROM workflow_run r WHERE r.restarted_from = w.id)",
        }
        parts = {}
        for name, sql in queries.items():
            [parts[name]] = await WorkflowRun.raw(sql, *expected_args, *args)
        every = parts["finished"]
        matched = int(every["matched"] or 0)

        def left(column: str, kind: type = int) -> Any:
            taken = kind(parts["restarted"][column]) + kind(parts["no_snapshot"][column])
            return kind(parts["finished"][column]) - taken

        return Preview(
            matched=matched,
            eligible=left("n"),
            skipped={
                "active": matched - int(every["n"] or 0),
                "already_restarted": int(parts["restarted"]["n"] or 0),
                "no_snapshot": int(parts["no_snapshot"]["n"] or 0),
            },
            last_tokens=left("tokens"),
            last_cost_usd=max(left("cost", float), 0.0),
            estimated_cost_usd=max(left("expected", float), 0.0),
        )

    async def preview_cancel(self, selection: Selection) -> Preview:
        where, args = _selection_sql(selection)
        rows = await WorkflowRun.raw(
            "SELECT count(*) AS matched,"
            f" sum(CASE WHEN w.status IN ({_ACTIVE}) THEN 1 ELSE 0 END) AS active"
            f" FROM workflow_run w WHERE {where}",
            *args,
        )
        matched = int(rows[0]["matched"] or 0) if rows else 0
        active = int(rows[0]["active"] or 0) if rows else 0
        return Preview(matched=matched, eligible=active, skipped={"finished": matched - active})

    async def estimate(self, candidates: Sequence[Candidate]) -> float:
        """What restarting these runs is expected to cost (see `expected_cost`)."""
        medians = await median_costs(c.workflow_name for c in candidates)
        return sum(
            expected_cost(c.total_cost_usd, medians.get(c.workflow_name)) for c in candidates
        )

    # -- acting --------------------------------------------------------------------

    def _transaction(self) -> Any:
        engine = WorkflowRun._meta.db
        if isinstance(engine, SQLiteEngine):
            # Taken for writing at once: two batches never both read, then wait.
            return engine.transaction(transaction_type=TransactionType.immediate)
        return engine.transaction()

    async def restart(
        self,
        selection: Selection,
        *,
        batch: dict[str, Any],
        trigger: str,
        owner: str | None,
        limit: int,
        check: Callable[[list[Candidate], float], Any],
        answer: Callable[[list[Any]], dict[str, Any]],
    ) -> list[tuple[str, str]]:
        """Create the pending restart of every restartable run of the selection, and the
        batch row, in one transaction. `check(candidates, estimate)` runs inside it
        before anything is written and may raise to refuse (the spend cap, the limit);
        `answer(created)` is stored with the batch before the commit, so that a repeated
        request (same idempotency key) finds it.
        Returns (new id, original id) of the runs created; runs restarted meanwhile by
        someone else are left out, by the database."""
        where, args = _selection_sql(selection)
        async with self._transaction():
            rows = await WorkflowRun.raw(
                "SELECT w.id, w.workflow_name, w.total_tokens, w.total_cost_usd"
                " FROM workflow_run w LEFT JOIN workflow_run r ON r.restarted_from = w.id"
                f" WHERE {where} AND {_restartable()} LIMIT {{}}",
                *args,
                limit + 1,
            )
            candidates = [
                Candidate(
                    str(r["id"]),
                    r["workflow_name"],
                    int(r["total_tokens"] or 0),
                    float(r["total_cost_usd"] or 0.0),
                )
                for r in rows
            ]
            check(candidates, await self.estimate(candidates))
            await self._insert_batch(batch)
            if not candidates:
                await self._finish_batch(batch["id"], [], answer)
                return []
            pairs = [(str(uuid.uuid4()), c.id) for c in candidates]
            # PostgreSQL cannot infer the types of parameters in a SELECT list.
            text, at, ident = (
                ("::varchar", "::timestamptz", "::uuid") if is_postgres() else ("", "", "")
            )
            created = await WorkflowRun.raw(
                "INSERT INTO workflow_run (id, workflow_name, status, trigger, attempt,"
                " restarted_from, config_snapshot, inputs, created_at, steps_total, owner,"
                " heartbeat_at, batch_id)"
                f" SELECT p.new_id, w.workflow_name, 'pending', {{}}{text}, w.attempt + 1,"
                f" w.id, w.config_snapshot, w.inputs, {{}}{at}, w.steps_total, {{}}{text},"
                f" {db_now()}, {{}}{ident}"
                f" FROM {self._pairs_sql()} JOIN workflow_run w ON w.id = p.old_id"
                " WHERE true ON CONFLICT DO NOTHING RETURNING id, restarted_from",
                trigger,
                self.clock(),
                owner,
                uuid.UUID(batch["id"]),
                *self._pairs_args(pairs),
            )
            result = [(str(r["id"]), str(r["restarted_from"])) for r in created]
            await self._finish_batch(batch["id"], result, answer)
        return result

    @staticmethod
    def _pairs_sql() -> str:
        if is_postgres():
            return "unnest({}::uuid[], {}::uuid[]) AS p(new_id, old_id)"
        return (
            "(SELECT json_extract(value, '$[0]') AS new_id, json_extract(value, '$[1]')"
            " AS old_id FROM json_each({})) AS p"
        )

    @staticmethod
    def _pairs_args(pairs: list[tuple[str, str]]) -> list[Any]:
        if is_postgres():
            return [[uuid.UUID(n) for n, _ in pairs], [uuid.UUID(o) for _, o in pairs]]
        return [json.dumps(pairs)]

    async def _insert_batch(self, batch: dict[str, Any]) -> None:
        try:
            await RestartBatch.raw(
                "INSERT INTO restart_batch (id, kind, created_at, actor, selection,"
                " idempotency_key, request_digest, matched, acted, estimated_cost_usd,"
                " max_cost_usd) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                uuid.UUID(batch["id"]),
                batch["kind"],
                self.clock(),
                batch["actor"],
                json.dumps(batch["selection"]),
                batch.get("idempotency_key"),
                batch.get("request_digest"),
                batch.get("matched", 0),
                0,
                batch.get("estimated_cost_usd", 0.0),
                batch.get("max_cost_usd"),
            )
        except Exception as exc:
            if _is_unique_violation(exc):
                raise DuplicateKey(batch.get("idempotency_key")) from exc
            raise

    async def cancel(
        self,
        selection: Selection,
        *,
        batch: dict[str, Any],
        limit: int,
        check: Callable[[list[Any], float], Any],
        answer: Callable[[list[Any]], dict[str, Any]],
    ) -> list[tuple[str, str]]:
        """Cancel every pending or running run of the selection; returns (id, status it
        had) of those cancelled."""
        where, args = _selection_sql(selection)
        async with self._transaction():
            rows = await WorkflowRun.raw(
                f"SELECT w.id, w.status FROM workflow_run w WHERE {where}"
                f" AND w.status IN ({_ACTIVE}) LIMIT {{}}",
                *args,
                limit + 1,
            )
            check(rows, 0.0)
            await self._insert_batch(batch)
            if not rows:
                await self._finish_batch(batch["id"], [], answer)
                return []
            before = {str(r["id"]): r["status"] for r in rows}
            # One parameter for all the ids, however many: the bind limit is far away.
            chosen, ids = _selection_sql(Selection(ids=tuple(before)))
            cancelled = await WorkflowRun.raw(
                "UPDATE workflow_run SET status = 'cancelled', completed_at = {},"
                " error_type = 'Cancelled', error_message = 'cancelled by an operator',"
                f" current_node = NULL WHERE {chosen.replace('w.id', 'id')}"
                f" AND status IN ({_ACTIVE}) RETURNING id",
                self.clock(),
                *ids,
            )
            result = [(str(r["id"]), before.get(str(r["id"]), "")) for r in cancelled]
            await self._finish_batch(batch["id"], result, answer)
        return result

    @staticmethod
    async def _finish_batch(
        batch_id: str, acted: list[Any], answer: Callable[[list[Any]], dict[str, Any]]
    ) -> None:
        await RestartBatch.raw(
            "UPDATE restart_batch SET acted = {}, answer = {} WHERE id = {}",
            len(acted),
            json.dumps(answer(acted)),
            uuid.UUID(batch_id),
        )

    # -- reading -------------------------------------------------------------------

    async def by_key(self, actor: str, key: str) -> BatchProgress | None:
        rows = await RestartBatch.raw(
            "SELECT id FROM restart_batch WHERE actor = {} AND idempotency_key = {}", actor, key
        )
        return await self.get(str(rows[0]["id"])) if rows else None

    async def digest_of(self, batch_id: str) -> str | None:
        rows = await RestartBatch.raw(
            "SELECT request_digest FROM restart_batch WHERE id = {}", uuid.UUID(batch_id)
        )
        return rows[0]["request_digest"] if rows else None

    async def get(self, batch_id: str) -> BatchProgress | None:
        try:
            parsed = uuid.UUID(str(batch_id))
        except ValueError:
            return None
        rows = await RestartBatch.raw(
            "SELECT id, kind, created_at, actor, matched, acted, estimated_cost_usd,"
            " max_cost_usd, selection, answer FROM restart_batch WHERE id = {}",
            parsed,
        )
        if not rows:
            return None
        row = rows[0]
        statuses: dict[str, int] = {}
        if row["kind"] == "restart":
            counted = await WorkflowRun.raw(
                "SELECT status, count(*) AS n FROM workflow_run WHERE batch_id = {}"
                " GROUP BY status",
                parsed,
            )
            statuses = {r["status"]: int(r["n"]) for r in counted}
        answer = _load(row["answer"])
        selection = _load(row["selection"])
        return BatchProgress(
            id=str(row["id"]),
            kind=row["kind"],
            created_at=row["created_at"],
            actor=row["actor"],
            matched=int(row["matched"] or 0),
            acted=int(row["acted"] or 0),
            estimated_cost_usd=float(row["estimated_cost_usd"] or 0.0),
            max_cost_usd=row["max_cost_usd"],
            selection=selection if isinstance(selection, dict) else {},
            answer=answer if isinstance(answer, dict) else None,
            statuses=statuses,
        )
