"""Use cases on runs, shared by the dashboard, the workers and the CLI: start,
execute, restart, cancel, and the reads the pages need.

Which process executes a run, and what happens when one dies or stops, is the
supervisor's (supervisor.py); how a run gets executed after a restart, the
scheduler's (scheduling.py). Both come in through the constructor.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from app.errors import (
    AlreadyRestarted,
    AppError,
    InputsTooLarge,
    InvalidInputs,
    RunNotCancellable,
    RunNotFound,
    RunNotRestartable,
    RunNotResumable,
    SchedulingFailed,
    SnapshotUnusable,
    SpecInvalid,
    WorkflowNotRunnable,
)
from app.services.metrics import Metrics
from app.services.scheduling import Scheduler
from app.services.supervisor import RunSupervisor
from app.store.bulk import expected_cost
from app.store.counts import RunCounts, run_counts
from app.store.dbtime import retrying
from app.store.models import Cursor, RunDetail, RunFilters, RunPage, RunSummary, StepView
from app.store.processes import ProcessView
from app.store.runs import DuplicateRestart, RunStore
from app.store.search import SearchError
from app.store.search import parse as parse_search
from app.store.tables import RUN_STATUSES, STATUS_FILTERS
from app.workflows.executor import (
    Replay,
    ReusedStep,
    ToolCall,
    execute,
    runnable_problems,
    walk_reused,
    where_in,
)
from app.workflows.loader import parse_cli_value, validate_inputs, workflow_from_snapshot
from app.workflows.providers import ProviderPolicy
from app.workflows.spec import WorkflowSpec

__all__ = [
    "RUN_STATUSES",
    "STATUS_FILTERS",
    "Cursor",
    "RestartPlan",
    "RestartResult",
    "RunDetail",
    "RunFilters",
    "RunPage",
    "RunService",
    "RunSummary",
    "SearchError",
    "StepView",
    "parse_search",
]

log = logging.getLogger("configurable_agents.runs")

StepCallback = Callable[[str, str, dict[str, Any]], Awaitable[None] | None]


@dataclass
class RestartPlan:
    """A restart checked but not created: what it would run and reuse, and its cost."""

    original: RunSummary
    snapshot: Any
    inputs: dict[str, Any]
    steps_total: int
    spec: Any = None
    mode: str | None = None
    resume_from: str | None = None
    # Edited inputs: (field, before, after) for each field that changed.
    diff: list[tuple[str, Any, Any]] = field(default_factory=list)
    # Resume: the node executions taken over, in order, and what they cost then.
    reused_nodes: list[str] = field(default_factory=list)
    reused_cost_usd: float = 0.0
    reused_tokens: int = 0
    estimated_cost_usd: float = 0.0


@dataclass(frozen=True)
class InputField:
    name: str
    type: str
    # How the form edits it: "text", "textarea", "number", "bool" or "json".
    kind: str
    required: bool
    description: str | None
    default: Any
    text: str


@dataclass(frozen=True)
class InputForm:
    run: RunSummary
    fields: list[InputField]
    estimated_cost_usd: float


def _input_kind(type_name: str) -> str:
    if type_name in ("int", "float", "integer", "number"):
        return "number"
    if type_name in ("bool", "boolean"):
        return "bool"
    if type_name in ("str", "string"):
        return "textarea"
    return "json"


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, indent=2)


@dataclass(frozen=True)
class PageCounts:
    """The filter bar's counts, and the page's place: runs `start` to `start + n - 1` of
    `total`."""

    counts: RunCounts
    start: int
    total: int


@dataclass(frozen=True)
class RestartResult:
    original: RunSummary
    run_id: str
    attempt: int
    # What executes the new run after the answer is sent (the embedded mode), or None
    # when a queue worker does.
    work: Awaitable[Any] | None = None
    plan: RestartPlan | None = None

    @property
    def message(self) -> str:
        return (
            f"Run {self.original.short_id} restarted as {self.run_id[:8]} (attempt {self.attempt})"
        )


# How often a run whose nodes follow each other quickly writes its progress (see
# _StoreRecorder): ten times a second is as fast as a person reads a progress bar.
PROGRESS_EVERY = 0.1


class _StoreRecorder:
    """Reports the executor's steps to the store, and tells it when to stop.

    A step that finishes while no other step of the run is running is written with the
    check before the next node (`advance`): one statement between two nodes on
    PostgreSQL, two on SQLite. When nodes follow each other faster than
    PROGRESS_EVERY, that write waits until PROGRESS_EVERY after the last one and then
    carries whatever is current (a run of quick nodes writes a few times a second, not
    once a node); a slow node is shown as the current one within that time. A cancel
    made in this process stops the run before its next node all the same; one made
    elsewhere is seen by the next write. Steps of a fan-out that finish while others still run are
    written at once, so that progress shows. A step leaves the buffer only once it is
    written; `flush` writes what is left when the executor returns. Every write is
    retried through transient database errors, and is refused once the run is no
    longer running for this process.

    It marks each completed (or reused) node execution for the run's progress: `first`
    on its node's first one (a node done), and `iteration`, how many times its node has
    completed outside a fan-out. Reused steps count even when they are not written (a
    run handed back keeps them, and its counters with them).
    """

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        owner: str,
        on_step: StepCallback | None,
        supervisor: RunSupervisor,
        metrics: Metrics | None = None,
    ):
        self.store = store
        self.metrics = metrics
        self.run_id = run_id
        self.owner = owner
        self.on_step = on_step
        self.supervisor = supervisor
        self.handing_back = False
        # Reused steps of its own (a run handed back earlier) are in the table already.
        self.record_reused = True
        self._steps: dict[str, tuple[str, int, int | None]] = {}
        self._finished: list[dict[str, Any]] = []
        self._completions: dict[str, int] = {}
        # The claim has just checked and written the run.
        self._due = time.monotonic() + PROGRESS_EVERY
        self._node: str | None = None
        self._later: asyncio.Task[None] | None = None
        # A node was reached since the last write began; the deferred write is writing.
        self._dirty = False
        self._writing = False
        self._stopped = False

    def _progress(self, node_id: str, item_index: int | None) -> dict[str, Any]:
        """A completed execution of `node_id`: is it its first, and which iteration."""
        first = node_id not in self._completions
        count = self._completions.get(node_id, 0) + (1 if item_index is None else 0)
        self._completions[node_id] = count
        return {"first": first, "iteration": count}

    async def step_started(self, node_id: str, order: int, item_index: int | None) -> str:
        step_id = f"{order}:{item_index}"
        self._steps[step_id] = (node_id, order, item_index)
        await self._notify(node_id, "started", {"item_index": item_index})
        return step_id

    async def step_finished(self, step_id: str, **result: Any) -> None:
        import uuid

        node_id, order, item_index = self._steps.pop(step_id)
        done = self._progress(node_id, item_index) if result["status"] == "completed" else {}
        self._finished.append(
            {
                "id": uuid.uuid4(),
                "node_id": node_id,
                "order": order,
                "item_index": item_index,
                "completed_at": self.store.clock(),
                **result,
                **done,
            }
        )
        if self.metrics is not None:
            self.metrics.node_finished(self.run_id, node_id, result)
        if self._steps:
            await self.flush()
        await self._notify(node_id, result["status"], {"item_index": item_index, **result})

    async def step_reused(self, node_id: str, order: int, step: ReusedStep) -> None:
        import uuid

        done = self._progress(node_id, step.item_index)
        if self.record_reused:
            now = self.store.clock()
            self._finished.append(
                {
                    "id": uuid.uuid4(),
                    "node_id": node_id,
                    "order": order,
                    "item_index": step.item_index,
                    "status": "reused",
                    "started_at": now,
                    "completed_at": now,
                    "output": dict(step.output),
                    "error": None,
                    "tokens": 0,
                    "cost_usd": 0.0,
                    "tries": 0,
                    "reused_from": step.source,
                    **done,
                }
            )
        await self._notify(node_id, "reused", {"item_index": step.item_index})

    async def tool_called(
        self, node_id: str, order: int, item_index: int | None, call: ToolCall
    ) -> None:
        import uuid

        # Written with the node's own step, once it finishes.
        self._finished.append(
            {"id": uuid.uuid4(), "node_id": node_id, "order": order, "item_index": item_index}
            | call.as_step()
        )
        await self._notify(
            node_id, "tool", {"item_index": item_index, "tool": call.name, "error": call.error}
        )

    async def should_stop(self, node_id: str | None = None) -> bool:
        if self.supervisor.draining:
            self.handing_back = True
            return True
        if self._stopped or self.supervisor.stop_requested(self.run_id):
            return True
        self._node = node_id
        if time.monotonic() < self._due:
            self._dirty = True
            if self._later is None:
                self._later = asyncio.create_task(self._advance_later())
            return False
        await self.settle()
        return not await self._advance()

    async def _advance(self) -> bool:
        # Before the write: a node reached meanwhile waits for the next one rather than
        # racing this one to set the current node.
        self._due = time.monotonic() + PROGRESS_EVERY
        self._dirty = False
        steps = list(self._finished)
        running = await self.store.advance(self.run_id, self.owner, steps, self._node)
        self.written(steps)
        if not running:
            self._stopped = True
        return running

    async def _advance_later(self) -> None:
        """The deferred progress write, again while nodes were reached during it. It
        stays `_later` until its last write has returned, so that `settle` can wait."""
        try:
            while self._dirty and not self._stopped:
                await asyncio.sleep(max(0.0, self._due - time.monotonic()))
                self._writing = True
                try:
                    await self._advance()
                except Exception:  # retried already; the next write carries the steps
                    log.warning("could not record the progress of run %s", self.run_id,
                                exc_info=True)  # fmt: skip
                    return
                finally:
                    self._writing = False
        finally:
            if self._later is asyncio.current_task():
                self._later = None

    def drop(self) -> None:
        """Give up the progress write waiting or under way: the run is being given back,
        and whoever takes it over writes its own."""
        if self._later is not None:
            self._later.cancel()
            self._later = None

    async def settle(self) -> None:
        """Drop the progress write still waiting, or wait for the one under way: the
        caller writes next, and two writes of the same steps must not overlap (on
        SQLite the second would find them inserted, and the first, refused once the run
        has ended, would not count them)."""
        later = self._later
        if later is None:
            return
        self._dirty = False  # the caller writes the latest node: no write after this one
        if not self._writing:
            later.cancel()
        await asyncio.wait([later])
        if self._later is later:
            self._later = None

    async def flush(self) -> None:
        steps = list(self._finished)
        if not steps:
            return
        await self.store.record_steps(self.run_id, self.owner, steps)
        self.written(steps)

    def unwritten(self) -> list[dict[str, Any]]:
        """The finished steps not written yet, for a write of the caller's (`written`)."""
        return list(self._finished)

    def written(self, steps: list[dict[str, Any]]) -> None:
        # By id, not by position: fan-out steps finish and flush while others are being
        # written, so the buffer may have changed under this write.
        done = {step["id"] for step in steps}
        self._finished = [s for s in self._finished if s["id"] not in done]

    async def _notify(self, node_id: str, event: str, data: dict[str, Any]) -> None:
        if self.on_step is not None:
            maybe = self.on_step(node_id, event, data)
            if maybe is not None:
                await maybe


class RunService:
    """Runs as use cases. Collaborators come in through the constructor; the scheduler
    may be set after it, since the in-process one executes through this service."""

    def __init__(
        self,
        store: RunStore,
        supervisor: RunSupervisor,
        *,
        scheduler: Scheduler | None = None,
        owns_new_runs: bool = True,
        max_inputs_bytes: int = 64 * 1024,
        queue_store: Any = None,
        provider_policy: ProviderPolicy | None = None,
        metrics: Metrics | None = None,
    ):
        self.store = store
        self.supervisor = supervisor
        self.scheduler = scheduler
        # A run this process will execute is its own from the start, so that its death
        # is noticed; a run waiting for a queue worker belongs to no process yet.
        self.owns_new_runs = owns_new_runs
        self.max_inputs_bytes = max_inputs_bytes
        self.queue_store = queue_store
        self.provider_policy = provider_policy or ProviderPolicy.from_env()
        self.metrics = metrics or Metrics()

    @property
    def creator(self) -> str | None:
        return self.supervisor.instance_id if self.owns_new_runs else None

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
        self.check_runnable(spec)
        run_id = await self.store.create_run(
            workflow_name=spec.flow.name,
            snapshot=spec.snapshot(),
            inputs=dict(inputs),
            trigger=trigger,
            steps_total=len(spec.nodes),
            owner=self.creator,
        )
        self.metrics.run_created(run_id, spec.flow.name, 1)
        return run_id

    def check_runnable(self, spec: WorkflowSpec, *, run: RunSummary | None = None) -> None:
        """Refuse a workflow that cannot run here as it says (WorkflowNotRunnable)."""
        problems = runnable_problems(spec, self.provider_policy)
        if problems:
            where = [f"{where_in(spec, path)}: {why}" for path, why in problems]
            raise WorkflowNotRunnable("this workflow cannot run here: " + "; ".join(where), run=run)

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

    async def execute_run(self, run_id: str, *, on_step: StepCallback | None = None) -> str | None:
        """Execute a pending run by id; returns its status afterwards (None if it was not
        pending, or this process is stopping and left it for another).

        Whatever happens, the run does not stay `running`: an unexpected error fails it
        with that error's type and message; a process that stops hands it back.
        """
        if self.supervisor.draining:
            return None
        with self.supervisor.executing(run_id), self.metrics.executing(run_id):
            return await self._execute(run_id, on_step)

    async def _claim(self, run_id: str, owner: str) -> Any:
        tries = 0

        async def claim() -> Any:
            nonlocal tries
            tries += 1
            # A retry may follow a claim that committed but whose answer was lost.
            return await self.store.claim(run_id, owner, again=tries > 1)

        return await retrying(claim, what=f"claiming run {run_id}")

    async def _execute(self, run_id: str, on_step: StepCallback | None) -> str | None:
        owner = self.supervisor.instance_id
        claimed = await self._claim(run_id, owner)
        if claimed is None:
            return None
        self.metrics.run_claimed(run_id, claimed.snapshot, claimed.attempt)
        recorder = _StoreRecorder(self.store, run_id, owner, on_step, self.supervisor, self.metrics)
        try:
            try:
                spec = workflow_from_snapshot(claimed.snapshot)
                state = validate_inputs(spec, claimed.inputs)
            except (SpecInvalid, InvalidInputs) as exc:
                await self._finish(
                    run_id,
                    owner,
                    status="failed",
                    error_type="SnapshotUnusable",
                    error_message=f"the stored workflow snapshot is no longer valid: {exc}",
                )
                return "failed"
            replay = await self._replay_for(claimed, recorder)
            result = await execute(
                spec,
                state,
                attempt=claimed.attempt,
                recorder=recorder,
                policy=self.provider_policy,
                replay=replay,
            )
            if recorder.handing_back:
                # The nodes that completed are kept: whoever executes it next reuses them.
                await recorder.settle()
                await recorder.flush()
                await self._hand_back(run_id, owner)
                return "pending"
            await recorder.settle()
            if result.status == "cancelled":
                # Stopped because the run is no longer running for us: cancelled, or
                # failed by another process that took us for dead.
                await recorder.flush()
                return await self.store.status_of(run_id)
            for note in result.notes:
                log.warning("run %s: %s", run_id, note)
            error = result.error
            # The last steps are written with the end.
            steps = recorder.unwritten()
            finished = await self._finish(
                run_id,
                owner,
                status=result.status,
                outputs=result.state,
                error_type=error.type if error else None,
                error_message=error.message if error else None,
                error_node=error.node if error else None,
                steps=steps,
            )
            recorder.written(steps)
            return result.status if finished else await self.store.status_of(run_id)
        except asyncio.CancelledError:
            if self.supervisor.draining:
                # The grace period ended mid-node: another process starts it again.
                recorder.drop()
                await asyncio.shield(self._hand_back(run_id, owner))
            else:
                await asyncio.shield(self._fail(run_id, owner, recorder, "CancelledError"))
            raise
        except Exception as exc:
            await asyncio.shield(self._fail(run_id, owner, recorder, type(exc).__name__, exc))
            raise

    async def _replay_for(self, claimed: Any, recorder: _StoreRecorder) -> Replay | None:
        """What the run takes over instead of executing: its own completed steps when it
        was handed back by a process that stopped, or the original's when it resumes."""
        if claimed.steps_kept:
            recorder.record_reused = False
            steps = await self.store.reusable_steps(claimed.id)
            return Replay([_reused(s) for s in steps])
        if claimed.restart_mode == "resume" and claimed.restarted_from:
            steps = await self.store.reusable_steps(claimed.restarted_from)
            return Replay([_reused(s) for s in steps], stop_at=claimed.resume_from)
        return None

    async def _finish(self, run_id: str, owner: str, **outcome: Any) -> bool:
        finished = await retrying(
            lambda: self.store.finish(run_id, owner=owner, **outcome),
            what=f"recording the end of run {run_id}",
            within=self.supervisor.stale_after,
        )
        if finished:
            self.metrics.run_ended(run_id, outcome["status"], outcome.get("error_type"))
        return finished

    async def _hand_back(self, run_id: str, owner: str) -> None:
        released = await retrying(
            lambda: self.store.release(run_id, owner), what=f"handing back run {run_id}"
        )
        if released:
            self.metrics.run_ended(run_id, "pending")
            log.warning("handed back run %s: it starts again on another process", run_id)
            if self.scheduler is not None:
                await self.scheduler.handed_back(run_id)

    async def _fail(
        self,
        run_id: str,
        owner: str,
        recorder: _StoreRecorder,
        error_type: str,
        exc: BaseException | None = None,
    ) -> None:
        # The steps that did finish are kept, if the database still answers; if it
        # does not, the supervisor fails the run once it does.
        with contextlib.suppress(Exception):
            await recorder.settle()
            await recorder.flush()
        with contextlib.suppress(Exception):
            await self._finish(
                run_id,
                owner,
                status="failed",
                error_type=error_type,
                error_message=f"the executor stopped unexpectedly: {exc!r}"
                if exc is not None
                else "the executor was cancelled",
            )

    # -- restart and cancel ----------------------------------------------------------

    async def restart(
        self,
        run_id: str,
        *,
        trigger: str = "dashboard",
        inputs: Mapping[str, Any] | None = None,
        resume: str | None = None,
    ) -> RestartResult:
        """Create the pending restart of a finished run, from its stored snapshot, and
        schedule it; `result.work`, when set, executes it.

        `inputs` replaces the original's inputs (validated; the run records that they
        were edited). `resume` ("failure", or a node that completed) reuses the
        original's completed nodes up to that point instead of executing them again.

        Raises RunNotFound, RunNotRestartable (the run is pending or running),
        AlreadyRestarted (a run is restarted once, ever: the database refuses a second),
        RunNotResumable, InvalidInputs (400, naming the field), SnapshotUnusable, or
        SchedulingFailed (and then no new run is left behind).
        """
        try:
            plan = await self.plan_restart(run_id, inputs=inputs, resume=resume)
        except AppError:
            self.metrics.restart("single", "refused")
            raise
        original = plan.original
        attempt = original.attempt + 1
        try:
            new_id = await self.store.create_run(
                workflow_name=original.workflow_name,
                snapshot=plan.snapshot,
                inputs=plan.inputs,
                trigger=trigger,
                steps_total=plan.steps_total,
                owner=self.creator,
                attempt=attempt,
                restarted_from=original.id,
                restart_mode=plan.mode,
                resume_from=plan.resume_from,
            )
        except DuplicateRestart:
            self.metrics.restart("single", "refused")
            raise await self._already_restarted(original) from None
        try:
            assert self.scheduler is not None, "RunService has no scheduler"
            work = await self.scheduler.schedule(new_id)
        except Exception as exc:
            await self.store.delete_run(new_id)
            self.metrics.restart("single", "failed_to_schedule")
            raise SchedulingFailed(
                f"run {original.short_id} could not be scheduled: {exc}", run=original
            ) from exc
        self.metrics.run_created(new_id, original.workflow_name, attempt, restart="single")
        return RestartResult(
            original=original, run_id=new_id, attempt=attempt, work=work, plan=plan
        )

    async def input_form(self, run_id: str) -> InputForm:
        """The fields of the run's workflow, prefilled with its inputs, for editing."""
        plan = await self.plan_restart(run_id)
        written = {out for node in plan.spec.nodes for out in node.outputs}
        fields = []
        for name, spec in plan.spec.state.fields.items():
            given = name in plan.inputs
            if name in written and not given and not spec.required:
                continue  # produced by a node, not an input
            value = plan.inputs.get(name, spec.default)
            fields.append(
                InputField(
                    name=name,
                    type=str(spec.type),
                    kind=_input_kind(str(spec.type)),
                    required=bool(spec.required),
                    description=spec.description,
                    default=spec.default,
                    text=_as_text(value),
                )
            )
        return InputForm(
            run=plan.original, fields=fields, estimated_cost_usd=plan.estimated_cost_usd
        )

    async def parse_form_inputs(self, run_id: str, raw: Mapping[str, str]) -> dict[str, Any]:
        """Typed inputs from the edit form's text: numbers parsed, lists and objects as
        JSON; an empty optional field is left to its default. 400 naming the field."""
        plan = await self.plan_restart(run_id)
        inputs: dict[str, Any] = {}
        for name, text in raw.items():
            spec = plan.spec.state.fields.get(name)
            if spec is not None and not text.strip() and _input_kind(str(spec.type)) != "text":
                continue
            if spec is not None and not text and not spec.required:
                continue
            try:
                inputs[name] = parse_cli_value(plan.spec, name, text)
            except InvalidInputs as exc:
                exc.status = 400
                exc.extra = {"field": exc.field}
                raise
        return inputs

    async def plan_restart(
        self,
        run_id: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        resume: str | None = None,
    ) -> RestartPlan:
        """Check a restart and say what it would do and cost, writing nothing: the
        confirmation shows this, and `restart` creates it."""
        found = await self.store.get_snapshot(run_id) if _is_uuid(run_id) else None
        if found is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        original, snapshot, stored_inputs = found
        if original.is_active:
            raise RunNotRestartable(
                f"run {original.short_id} is {original.status}: only a finished run can be"
                " restarted",
                run=original,
            )
        if snapshot is None:
            raise SnapshotUnusable(
                f"run {original.short_id} has no stored workflow snapshot", run=original
            )
        stored_inputs = stored_inputs if isinstance(stored_inputs, dict) else {}
        try:
            spec = workflow_from_snapshot(snapshot)
            validate_inputs(spec, stored_inputs)
        except (SpecInvalid, InvalidInputs) as exc:
            raise SnapshotUnusable(
                f"the stored snapshot of run {original.short_id} is no longer valid: {exc}",
                run=original,
            ) from None
        self.check_runnable(spec, run=original)
        if inputs is not None and resume is not None:
            raise RunNotResumable(
                "edited inputs and resume cannot be combined: the nodes a resume reuses ran"
                " on the original inputs",
                run=original,
            )
        plan = RestartPlan(original, snapshot, stored_inputs, len(spec.nodes), spec=spec)
        if inputs is not None:
            plan = self._edited(plan, inputs)
        elif resume is not None:
            plan = await self._resumed(plan, resume)
        plan.estimated_cost_usd = await self._estimate(plan)
        return plan

    def _edited(self, plan: RestartPlan, inputs: Mapping[str, Any]) -> RestartPlan:
        size = len(json.dumps(dict(inputs), default=str))
        if size > self.max_inputs_bytes:
            raise InputsTooLarge(
                f"the inputs are {size} bytes of JSON; at most {self.max_inputs_bytes} are allowed"
            )
        try:
            validate_inputs(plan.spec, inputs)
        except InvalidInputs as exc:
            # A mistake in the request, like any other: 400, naming the field.
            exc.status = 400
            exc.extra = {"field": exc.field}
            raise
        edited = dict(inputs)
        # Compared as the runs start: a field left to its default is that default.
        before = validate_inputs(plan.spec, plan.inputs)
        diff = input_diff(before, validate_inputs(plan.spec, edited))
        if not diff:
            return plan
        plan.diff = diff
        plan.inputs = edited
        plan.mode = "edited"
        return plan

    async def _resumed(self, plan: RestartPlan, resume: str) -> RestartPlan:
        original = plan.original
        steps = await self.store.reusable_steps(original.id)
        nodes = [n.id for n in plan.spec.nodes]
        completed = list(dict.fromkeys(s["node_id"] for s in steps))
        if resume == "failure":
            if original.status == "completed":
                raise RunNotResumable(
                    f"run {original.short_id} completed: nothing failed to resume from;"
                    ' resume from one of its nodes with {"from": "<node id>"}',
                    run=original,
                )
            stop_at = None
        elif resume not in nodes:
            raise RunNotResumable(
                f"{resume!r} is not a node of workflow {original.workflow_name}"
                f" (its nodes: {', '.join(nodes)})",
                run=original,
            )
        elif resume not in completed:
            raise RunNotResumable(
                f"node {resume!r} did not complete in run {original.short_id}, so there is"
                " no state after it to start from"
                + (f"; it can resume from: {', '.join(completed)}" if completed else ""),
                run=original,
            )
        else:
            stop_at = resume
        replay = Replay([_reused(s) for s in steps], stop_at=stop_at)
        reused = await walk_reused(plan.spec, validate_inputs(plan.spec, plan.inputs), replay)
        plan.mode = "resume"
        plan.resume_from = stop_at
        plan.reused_nodes = [s.node_id for s in reused]
        plan.reused_cost_usd = sum(s.cost_usd for s in reused)
        plan.reused_tokens = sum(s.tokens for s in reused)
        return plan

    async def _estimate(self, plan: RestartPlan) -> float:
        """The run's own last cost, or its workflow's median where that is more; a resume
        saves what the reused nodes cost."""
        run = plan.original
        medians = await self.store.median_costs([run.workflow_name])
        whole = expected_cost(run.total_cost_usd, medians.get(run.workflow_name))
        if plan.mode == "resume":
            return max(whole - plan.reused_cost_usd, 0.0)
        return whole

    async def _already_restarted(self, original: RunSummary) -> AlreadyRestarted:
        current = await self.store.get_summary(original.id) or original
        child = current.restarted_as[0] if current.restarted_as else ""
        latest = current.latest_restart
        where = ""
        if latest is not None and latest.id == child:
            where = f" ({latest.status})"
        elif latest is not None:
            where = f"; its latest attempt is {latest.short_id} ({latest.status})"
        return AlreadyRestarted(
            f"run {original.short_id} was already restarted as {child[:8]}{where}",
            run=current,
            restarted_as=child,
            latest_attempt=latest.id if latest is not None else child,
        )

    async def cancel(self, run_id: str) -> RunSummary:
        """Cancel a pending or running run and stop its execution: a queue worker's job
        is aborted at once; in this process the executor stops before its next node."""
        summary = await self.store.get_summary(run_id)
        if summary is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        if not await self.store.cancel(run_id):
            raise RunNotCancellable(
                f"run {summary.short_id} is {summary.status}: only a pending or running run"
                " can be cancelled",
                run=summary,
            )
        self.metrics.run_changed(
            run_id,
            workflow=summary.workflow_name,
            before=summary.status,
            after="cancelled",
            attempt=summary.attempt,
            error_type="Cancelled",
        )
        if self.scheduler is not None:
            try:
                await self.scheduler.cancelled(run_id)
            except Exception:  # the run is cancelled; its executor stops at its next node
                log.exception("could not stop the execution of cancelled run %s", run_id)
        cancelled = await self.store.get_summary(run_id)
        assert cancelled is not None
        return cancelled

    # -- reading -----------------------------------------------------------------------

    async def get_summary(self, run_id: str) -> RunSummary:
        summary = await self.store.get_summary(run_id)
        if summary is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return summary

    async def get_detail(self, run_id: str, *, history: int = 0) -> RunDetail:
        detail = await self.store.get_detail(run_id, history=history)
        if detail is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        run = detail.summary
        if run.restart_mode == "edited" and run.restarted_from:
            original = await self.store.inputs_outputs([run.restarted_from])
            before = original.get(run.restarted_from, {}).get("inputs")
            if isinstance(before, dict):
                diff = tuple(self._effective_diff(detail.config_snapshot, before, detail.inputs))
                detail = dataclasses.replace(detail, inputs_diff=diff)
        return detail

    @staticmethod
    def _effective_diff(
        snapshot: Any, before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> list[tuple[str, Any, Any]]:
        try:
            spec = workflow_from_snapshot(snapshot)
            return input_diff(validate_inputs(spec, before), validate_inputs(spec, after))
        except (SpecInvalid, InvalidInputs):
            return input_diff(before, after)

    async def list_runs(
        self,
        filters: RunFilters,
        cursor: Cursor | None = None,
        limit: int = 50,
        *,
        before: Cursor | None = None,
    ) -> RunPage:
        return await self.store.list_runs(filters, cursor, limit, before=before)

    async def inputs_outputs(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        return await self.store.inputs_outputs(run_ids)

    async def workflow_names(self) -> list[str]:
        return await self.store.workflow_names()

    async def page_with_counts(
        self,
        filters: RunFilters,
        cursor: Cursor | None = None,
        limit: int = 50,
        *,
        before: Cursor | None = None,
    ) -> tuple[RunPage, PageCounts]:
        """A page of the list and its counts, read at once on two connections (a search
        spends milliseconds in each)."""
        page, counts = await asyncio.gather(
            self.list_runs(filters, cursor, limit, before=before), run_counts(filters)
        )
        return page, await self.counts(filters, page, counts)

    async def counts(
        self, filters: RunFilters, page: RunPage | None = None, counts: RunCounts | None = None
    ) -> PageCounts:
        """Runs by status for the filters' workflow and time (`counts` when already
        read), and where `page` starts among the runs the filters match (1 for the
        newest)."""
        if counts is None:
            counts = await run_counts(filters)
        start = 1
        if counts.capped:
            # A search found more runs than it counts: no place to tell.
            return PageCounts(counts, start, counts.matching(filters.status))
        if page is not None and page.runs and page.prev_cursor:
            # The runs newer than the page's first one, counted the same way (the newest
            # page has none: no second count for the page operators open most).
            newest = page.runs[0].created_at + timedelta(microseconds=1)
            newer = await run_counts(replace(filters, since=newest))
            start = newer.matching(filters.status) + 1
        return PageCounts(counts, start, counts.matching(filters.status))

    async def queue_stats(self) -> Any:
        return await self.queue_store.stats() if self.queue_store is not None else None

    async def workers(self) -> list[ProcessView]:
        return await self.supervisor.processes.workers()


def _reused(step: Mapping[str, Any]) -> ReusedStep:
    output = step["output"]
    return ReusedStep(
        node_id=step["node_id"],
        item_index=step["item_index"],
        output=output if isinstance(output, dict) else {},
        source=step["source"],
        tokens=step["tokens"],
        cost_usd=step["cost_usd"],
    )


def input_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, before, after) for every field whose value differs, in a stable order."""
    missing = object()
    names = list(dict.fromkeys([*before, *after]))
    changed = []
    for name in names:
        old, new = before.get(name, missing), after.get(name, missing)
        if old != new:
            changed.append((name, None if old is missing else old, None if new is missing else new))
    return changed


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True
