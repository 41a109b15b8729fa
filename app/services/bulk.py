"""Bulk restart and bulk cancel: many runs in one request, with a spend cap, a dry run
and idempotent retries.

The store does the work set-based, in one transaction; this decides what is allowed
(the cap, the size), answers in the shape the API documents, and hands the new runs
to the scheduler in one call (a batch deferral in the queue mode).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from app.errors import IdempotencyKeyReused, InvalidSelection, OverSpendCap
from app.services.runs import RunService
from app.store.bulk import BatchProgress, BulkStore, Candidate, DuplicateKey, Selection, cents

__all__ = ["BulkResult", "BulkService", "Selection"]

log = logging.getLogger("configurable_agents.bulk")


@dataclass(frozen=True)
class BulkResult:
    answer: dict[str, Any]
    # The ids acted on (new runs for a restart, cancelled runs for a cancel).
    run_ids: tuple[str, ...] = ()
    # True when the answer is the first one of an earlier request with the same key.
    replayed: bool = False


def _money(value: float) -> float:
    return round(value, 6)


class BulkService:
    def __init__(
        self,
        runs: RunService,
        store: BulkStore,
        *,
        max_cost_usd: float | None,
        max_runs: int,
    ):
        self.runs = runs
        self.store = store
        self.max_cost_usd = max_cost_usd
        self.max_runs = max_runs

    def cap(self, requested: float | None) -> float | None:
        """The lower of the server's cap and the request's."""
        caps = [c for c in (self.max_cost_usd, requested) if c is not None]
        return min(caps) if caps else None

    async def restart(
        self,
        selection: Selection,
        *,
        actor: str,
        trigger: str = "bulk",
        max_cost_usd: float | None = None,
        dry_run: bool = False,
        idempotency_key: str | None = None,
    ) -> BulkResult:
        """Restart every restartable run of the selection, once each, within the cap."""
        cap = self.cap(max_cost_usd)
        digest = _digest("restart", selection, max_cost_usd)
        earlier = await self._earlier(actor, idempotency_key, digest, dry_run)
        if earlier is not None:
            return earlier
        preview = await self.store.preview_restart(selection)
        answer: dict[str, Any] = {
            "matched": preview.matched,
            "restartable": preview.eligible,
            "skipped": dict(preview.skipped),
            "last_tokens": preview.last_tokens,
            "last_cost_usd": _money(preview.last_cost_usd),
            "estimated_cost_usd": _money(preview.estimated_cost_usd),
            "max_cost_usd": cap,
            "within_cap": cap is None or cents(preview.estimated_cost_usd) <= cents(cap),
            "restarted": 0,
            "batch_id": None,
            "dry_run": dry_run,
        }
        if dry_run:
            return BulkResult(answer)
        self._check_size(preview.eligible, "restart")
        self._check_cap(preview.estimated_cost_usd, cap)
        batch_id = str(uuid.uuid4())
        batch = self._batch(batch_id, "restart", actor, selection, idempotency_key, digest)
        batch |= {"matched": preview.matched, "max_cost_usd": cap}
        workflows: dict[str, str] = {}  # for the new runs' events

        def check(candidates: list[Candidate], estimate: float) -> None:
            # Again inside the transaction, over exactly the runs it will restart.
            workflows.update((c.id, c.workflow_name) for c in candidates)
            self._check_size(len(candidates), "restart")
            self._check_cap(estimate, cap)
            answer["restartable"] = len(candidates)
            answer["estimated_cost_usd"] = batch["estimated_cost_usd"] = _money(estimate)

        try:
            created = await self.store.restart(
                selection,
                batch=batch,
                trigger=trigger,
                owner=self.runs.creator,
                limit=self.max_runs,
                check=check,
                answer=lambda created: self._answered(answer, batch_id, len(created)),
            )
        except DuplicateKey:
            earlier = await self._earlier(actor, idempotency_key, digest)
            assert earlier is not None
            return earlier
        new_ids = [new for new, _ in created]
        for new, old in created:
            self.runs.metrics.run_created(new, workflows.get(old), None)
        if new_ids:
            await self._schedule(new_ids)
        return BulkResult(answer, tuple(new_ids))

    @staticmethod
    def _answered(answer: dict[str, Any], batch_id: str, restarted: int) -> dict[str, Any]:
        # Restartable when counted, restarted meanwhile by someone else: skipped as such.
        lost = answer["restartable"] - restarted
        if lost > 0:
            answer["skipped"]["already_restarted"] += lost
        answer["restarted"] = restarted
        answer["batch_id"] = batch_id
        return answer

    async def _schedule(self, run_ids: list[str]) -> None:
        scheduler = self.runs.scheduler
        assert scheduler is not None
        try:
            await scheduler.schedule_many(run_ids)
        except Exception:
            # The runs exist and are pending: the queue's reconciler (or the embedded
            # mode's sweep) executes them. Nothing is lost by answering.
            self.runs.metrics.restart("bulk", "failed_to_schedule")
            log.exception("could not schedule %d restarted run(s) at once", len(run_ids))
        else:
            self.runs.metrics.restart("bulk", "created")

    async def cancel(
        self,
        selection: Selection,
        *,
        actor: str,
        dry_run: bool = False,
        idempotency_key: str | None = None,
    ) -> BulkResult:
        """Cancel every pending or running run of the selection."""
        digest = _digest("cancel", selection, None)
        earlier = await self._earlier(actor, idempotency_key, digest, dry_run)
        if earlier is not None:
            return earlier
        preview = await self.store.preview_cancel(selection)
        answer: dict[str, Any] = {
            "matched": preview.matched,
            "cancellable": preview.eligible,
            "skipped": dict(preview.skipped),
            "cancelled": 0,
            "batch_id": None,
            "dry_run": dry_run,
        }
        if dry_run:
            return BulkResult(answer)
        self._check_size(preview.eligible, "cancel")
        batch_id = str(uuid.uuid4())

        def answered(cancelled: list[Any]) -> dict[str, Any]:
            lost = answer["cancellable"] - len(cancelled)
            if lost > 0:  # ended meanwhile
                answer["skipped"]["finished"] += lost
            answer["cancelled"] = len(cancelled)
            answer["batch_id"] = batch_id
            return answer

        def check(rows: list[Any], _: float) -> None:
            self._check_size(len(rows), "cancel")
            answer["cancellable"] = len(rows)

        try:
            cancelled = await self.store.cancel(
                selection,
                batch=self._batch(batch_id, "cancel", actor, selection, idempotency_key, digest)
                | {"matched": preview.matched},
                limit=self.max_runs,
                check=check,
                answer=answered,
            )
        except DuplicateKey:
            earlier = await self._earlier(actor, idempotency_key, digest)
            assert earlier is not None
            return earlier
        scheduler = self.runs.scheduler
        for run_id, status in cancelled:
            self.runs.metrics.run_changed(run_id, workflow=None, before=status, after="cancelled")
            if status == "running" and scheduler is not None:
                try:
                    await scheduler.cancelled(run_id)
                except Exception:  # it stops at its next node anyway
                    log.exception("could not stop the execution of cancelled run %s", run_id)
        return BulkResult(answer, tuple(run_id for run_id, _ in cancelled))

    async def batch(self, batch_id: str) -> BatchProgress | None:
        return await self.store.get(batch_id)

    # -- rules -----------------------------------------------------------------------

    def _check_size(self, count: int, verb: str) -> None:
        if count > self.max_runs:
            if verb == "restart":
                self.runs.metrics.restart("bulk", "refused")
            raise InvalidSelection(
                f"the selection has more than {self.max_runs:,} runs to {verb}; narrow the"
                " filter (status, workflow, time) or raise CA_BULK_MAX_RUNS",
                code="too_many_runs",
            )

    def _check_cap(self, estimate: float, cap: float | None) -> None:
        if cap is not None and cents(estimate) > cents(cap):
            self.runs.metrics.restart("bulk", "refused")
            raise OverSpendCap(
                f"restarting these runs is estimated to cost ${estimate:,.2f}, over the"
                f" cap of ${cap:,.2f}: nothing was restarted",
                estimated_cost_usd=estimate,
                max_cost_usd=cap,
            )

    @staticmethod
    def _batch(
        batch_id: str,
        kind: str,
        actor: str,
        selection: Selection,
        key: str | None,
        digest: str,
    ) -> dict[str, Any]:
        return {
            "id": batch_id,
            "kind": kind,
            "actor": actor,
            "selection": selection.as_json(),
            "idempotency_key": key or None,
            "request_digest": digest,
        }

    async def _earlier(
        self, actor: str, key: str | None, digest: str, dry_run: bool = False
    ) -> BulkResult | None:
        """The first answer to a request repeated with the same key, if there was one."""
        if not key or dry_run:
            return None
        earlier = await self.store.by_key(actor, key)
        if earlier is None:
            return None
        if await self.store.digest_of(earlier.id) != digest:
            raise IdempotencyKeyReused(
                f"the Idempotency-Key {key!r} was used for a different request: use a new"
                " key for a new request"
            )
        return BulkResult(earlier.answer or {}, replayed=True)


def _digest(kind: str, selection: Selection, max_cost_usd: float | None) -> str:
    body = json.dumps([kind, selection.as_json(), max_cost_usd], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()
