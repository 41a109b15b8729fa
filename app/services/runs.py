"""Use cases on runs, shared by the dashboard and the CLI: start, execute, restart,
cancel, and recover runs whose process died."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.errors import (
    InputsTooLarge,
    InvalidInputs,
    RunNotCancellable,
    RunNotFound,
    RunNotRestartable,
    SnapshotUnusable,
    SpecInvalid,
)
from app.store.models import RunDetail, RunSummary
from app.store.runs import DuplicateActiveRestart, RunStore
from app.workflows.executor import execute
from app.workflows.loader import validate_inputs, workflow_from_snapshot

__all__ = ["RestartResult", "RunService", "process_owner"]

StepCallback = Callable[[str, str, dict[str, Any]], Awaitable[None] | None]


def process_owner() -> str:
    """Who executes a run: host and pid, so a later process can tell when it died."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class RestartResult:
    original: RunSummary
    run_id: str
    attempt: int

    @property
    def message(self) -> str:
        return (
            f"Run {self.original.short_id} restarted as {self.run_id[:8]} (attempt {self.attempt})"
        )


class _StoreRecorder:
    """Reports the executor's steps to the store, and tells it when the run was cancelled.

    A step that finishes while no other step of the run is running is written with the
    check before the next node (`advance`): one statement between two nodes on
    PostgreSQL, two on SQLite. Steps of a fan-out that finish while others still run are
    written at once, so that progress shows. `flush` writes what is left when the
    executor returns.
    """

    def __init__(self, store: RunStore, run_id: str, on_step: StepCallback | None):
        self.store = store
        self.run_id = run_id
        self.on_step = on_step
        self._steps: dict[str, tuple[str, int, int | None]] = {}
        self._finished: list[dict[str, Any]] = []

    async def step_started(self, node_id: str, order: int, item_index: int | None) -> str:
        step_id = f"{order}:{item_index}"
        self._steps[step_id] = (node_id, order, item_index)
        await self._notify(node_id, "started", {"item_index": item_index})
        return step_id

    async def step_finished(self, step_id: str, **result: Any) -> None:
        node_id, order, item_index = self._steps.pop(step_id)
        self._finished.append(
            {
                "node_id": node_id,
                "order": order,
                "item_index": item_index,
                "completed_at": self.store.clock(),
                **result,
            }
        )
        if self._steps:
            await self.flush()
        await self._notify(node_id, result["status"], {"item_index": item_index, **result})

    async def should_stop(self, node_id: str | None = None) -> bool:
        steps, self._finished = self._finished, []
        return not await self.store.advance(self.run_id, steps, node_id)

    async def flush(self) -> None:
        steps, self._finished = self._finished, []
        await self.store.record_steps(self.run_id, steps)

    async def _notify(self, node_id: str, event: str, data: dict[str, Any]) -> None:
        if self.on_step is not None:
            maybe = self.on_step(node_id, event, data)
            if maybe is not None:
                await maybe


class RunService:
    """Runs as use cases. Collaborators come in through the constructor."""

    def __init__(
        self,
        store: RunStore,
        *,
        heartbeat_seconds: float = 2.0,
        stale_after_seconds: float = 30.0,
        owner: str | None = None,
        max_inputs_bytes: int = 64 * 1024,
        executes_locally: bool = True,
    ):
        self.store = store
        self.max_inputs_bytes = max_inputs_bytes
        # A run waiting for a queue worker belongs to no process yet; a run this
        # process will execute is its own from the start, so its death is noticed.
        self.creator = (owner or process_owner()) if executes_locally else None
        # Runs this process is executing. A pending run of ours, not here and a few
        # seconds old, lost its background task; `resume_own_pending` picks it up (the
        # claim lets only one execution through should the task start after all).
        self.inflight: set[str] = set()
        self._resumed: set[asyncio.Task[Any]] = set()
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after = timedelta(seconds=stale_after_seconds)
        self.owner = owner or process_owner()

    # -- starting and executing ----------------------------------------------------

    async def create_run(
        self, spec: Any, inputs: Mapping[str, Any], *, trigger: str = "api"
    ) -> str:
        """Validate `inputs`, then write a pending run. Bad inputs write nothing."""
        size = len(json.dumps(dict(inputs), default=str))
        if size > self.max_inputs_bytes:
            raise InputsTooLarge(
                f"the inputs are {size} bytes of JSON; at most {self.max_inputs_bytes} are allowed"
            )
        validate_inputs(spec, inputs)
        return await self.store.create_run(
            workflow_name=spec.flow.name,
            snapshot=spec.snapshot(),
            inputs=dict(inputs),
            trigger=trigger,
            steps_total=len(spec.nodes),
            owner=self.creator,
        )

    async def run_workflow(
        self,
        spec: Any,
        inputs: Mapping[str, Any],
        *,
        trigger: str = "cli",
        on_step: StepCallback | None = None,
    ) -> RunDetail:
        """Create a run and execute it to the end; returns the finished run."""
        run_id = await self.create_run(spec, inputs, trigger=trigger)
        await self.execute_run(run_id, on_step=on_step)
        detail = await self.store.get_detail(run_id)
        assert detail is not None
        return detail

    async def execute_run(
        self, run_id: str, *, on_step: StepCallback | None = None, owner: str | None = None
    ) -> str | None:
        """Execute a pending run by id; returns its final status (None if it was not pending).

        Whatever happens, the run does not stay `running`: an unexpected error
        fails it with that error's type and message.
        """
        self.inflight.add(run_id)
        try:
            return await self._execute(run_id, on_step=on_step, owner=owner)
        finally:
            self.inflight.discard(run_id)

    async def _execute(
        self, run_id: str, *, on_step: StepCallback | None, owner: str | None
    ) -> str | None:
        claimed = await self.store.claim(run_id, owner or self.owner)
        if claimed is None:
            return None
        heartbeat = asyncio.create_task(self._heartbeat(run_id))
        recorder = _StoreRecorder(self.store, run_id, on_step)
        try:
            try:
                spec = workflow_from_snapshot(claimed.snapshot)
                state = validate_inputs(spec, claimed.inputs)
            except (SpecInvalid, InvalidInputs) as exc:
                await self.store.finish(
                    run_id,
                    status="failed",
                    error_type="SnapshotUnusable",
                    error_message=f"the stored workflow snapshot is no longer valid: {exc}",
                )
                return "failed"
            result = await execute(spec, state, attempt=claimed.attempt, recorder=recorder)
            await recorder.flush()
            if result.status == "cancelled":
                return "cancelled"
            error = result.error
            finished = await self.store.finish(
                run_id,
                status=result.status,
                outputs=result.state,
                error_type=error.type if error else None,
                error_message=error.message if error else None,
                error_node=error.node if error else None,
            )
            return result.status if finished else await self.store.status_of(run_id)
        except BaseException as exc:
            await asyncio.shield(self._fail(run_id, recorder, exc))
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _fail(self, run_id: str, recorder: _StoreRecorder, exc: BaseException) -> None:
        # The steps that did finish are kept, if the database still answers.
        with contextlib.suppress(Exception):
            await recorder.flush()
        await self.store.finish(
            run_id,
            status="failed",
            error_type=type(exc).__name__,
            error_message=f"the executor stopped unexpectedly: {exc!r}",
        )

    async def _heartbeat(self, run_id: str) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            await self.store.heartbeat(run_id)

    # -- restart and cancel ----------------------------------------------------------

    async def restart(self, run_id: str, *, trigger: str = "dashboard") -> RestartResult:
        """Create the pending restart of a finished run, from its stored snapshot and inputs.

        Raises RunNotFound, RunNotRestartable (the run or a restart of it is active;
        the database lets exactly one concurrent restart through) or SnapshotUnusable.
        The caller schedules `execute_run(result.run_id)`, and calls `abandon` if it cannot.
        """
        found = await self.store.get_snapshot(run_id) if _is_uuid(run_id) else None
        if found is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        original, snapshot, inputs = found
        if original.is_active:
            raise RunNotRestartable(
                f"run {original.short_id} is {original.status}: only a finished run can be"
                " restarted",
                run=original,
            )
        if original.active_restart is not None:
            raise RunNotRestartable(
                f"run {original.short_id} is already restarting as "
                f"{original.active_restart.short_id} ({original.active_restart.status})",
                run=original,
            )
        if snapshot is None:
            raise SnapshotUnusable(
                f"run {original.short_id} has no stored workflow snapshot", run=original
            )
        try:
            spec = workflow_from_snapshot(snapshot)
            validate_inputs(spec, inputs if isinstance(inputs, dict) else {})
        except (SpecInvalid, InvalidInputs) as exc:
            raise SnapshotUnusable(
                f"the stored snapshot of run {original.short_id} is no longer valid: {exc}",
                run=original,
            ) from None
        attempt = original.attempt + 1
        try:
            new_id = await self.store.create_run(
                workflow_name=spec.flow.name,
                snapshot=snapshot,
                inputs=inputs,
                trigger=trigger,
                steps_total=len(spec.nodes),
                owner=self.creator,
                attempt=attempt,
                restarted_from=original.id,
            )
        except DuplicateActiveRestart:
            current = await self.store.get_summary(original.id)
            active = current.active_restart if current else None
            where = f" as {active.short_id} ({active.status})" if active else ""
            raise RunNotRestartable(
                f"run {original.short_id} is already restarting{where}", run=current or original
            ) from None
        return RestartResult(original=original, run_id=new_id, attempt=attempt)

    async def abandon(self, run_id: str) -> None:
        """Remove a pending run that could not be scheduled."""
        await self.store.delete_run(run_id)

    async def cancel(self, run_id: str) -> RunSummary:
        """Cancel a pending or running run; the executor stops before its next node."""
        summary = await self.store.get_summary(run_id)
        if summary is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        if not await self.store.cancel(run_id):
            raise RunNotCancellable(
                f"run {summary.short_id} is {summary.status}: only a pending or running run"
                " can be cancelled",
                run=summary,
            )
        cancelled = await self.store.get_summary(run_id)
        assert cancelled is not None
        return cancelled

    # -- reading -----------------------------------------------------------------------

    async def get_summary(self, run_id: str) -> RunSummary:
        summary = await self.store.get_summary(run_id)
        if summary is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return summary

    async def get_detail(self, run_id: str) -> RunDetail:
        detail = await self.store.get_detail(run_id)
        if detail is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return detail

    # -- recovery ----------------------------------------------------------------------

    async def resume_own_pending(self, older_than_seconds: float = 5.0) -> list[str]:
        """Execute this process's pending runs whose background task never ran.

        Returns the runs resumed; they execute in tasks of their own.
        """
        if self.creator is None:
            return []
        before = self.store.clock() - timedelta(seconds=older_than_seconds)
        resumed = [
            run_id
            for run_id in await self.store.pending_of(self.creator, created_before=before)
            if run_id not in self.inflight
        ]
        for run_id in resumed:
            self.inflight.add(run_id)
            task = asyncio.create_task(self.execute_run(run_id))
            self._resumed.add(task)
            task.add_done_callback(self._resumed.discard)
        return resumed

    async def recover_interrupted(self) -> list[str]:
        """Fail, as interrupted, the active runs whose process is gone.

        On this host a dead pid tells at once; elsewhere a run whose heartbeat
        stopped for `stale_after_seconds` is taken as dead.
        """
        host = socket.gethostname()
        dead = []
        for owner in await self.store.active_owners(f"{host}:"):
            pid = owner.rpartition(":")[2]
            if owner != self.owner and pid.isdigit() and not _pid_alive(int(pid)):
                dead.append(owner)
        return await self.store.interrupt_orphans(
            dead_owners=dead, stale_before=self.store.clock() - self.stale_after
        )


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True
