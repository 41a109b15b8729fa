"""The JSON contract as types, so that the OpenAPI schema documents it."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from litestar.openapi.datastructures import ResponseSpec

__all__ = ["BATCH", "BULK", "CANCEL", "DETAIL", "ERRORS", "LIST", "RESTART", "RUN"]


class RunError(TypedDict):
    type: str | None
    message: str | None
    node: str | None


class Executor(TypedDict):
    """The process that executed the run (its instance id is the run's owner)."""

    instance: str
    kind: str
    host: str
    pid: int


class Run(TypedDict):
    """A run. Progress counts nodes: `steps_done` of `steps_total` are the distinct
    nodes of the workflow with a completed execution (or one reused by a resume), so a
    loop never takes it past `steps_total`, and a node that only failed does not count.
    What repeated is beside it: `iterations`, the most times one node completed outside
    a fan-out when that is 2 or more (a loop or a cycle of routes; 0 otherwise), and
    `items_done`, the fan-out item executions completed."""

    id: str
    workflow_name: str
    status: str
    attempt: int
    restarted_from: str | None
    restarted_as: list[str]
    restarting: bool
    trigger: str
    created_at: str
    started_at: str | None
    completed_at: str | None
    duration_seconds: float | None
    inputs: dict[str, Any] | None
    outputs: dict[str, Any] | None
    error: RunError | None
    total_tokens: int
    total_cost_usd: float
    steps_total: int
    steps_done: int
    iterations: int
    items_done: int
    current_node: str | None
    executed_by: Executor | None
    # "edited" (other inputs) or "resume" (completed nodes reused) for such restarts.
    restart_mode: str | None
    resume_from: str | None


class Step(TypedDict):
    node_id: str
    order: int
    item_index: int | None
    status: str
    started_at: str
    completed_at: str | None
    duration_ms: float | None
    output: Any
    error: str | None
    tokens: int
    tries: int
    cost_usd: float
    # Set when the step was taken over from an earlier run (resume), not executed.
    reused_from: str | None
    # Set on a tool (or code sandbox) call the node made: this row is that call.
    tool: str | None


class AuditEntry(TypedDict):
    id: int
    at: str
    actor: str
    role: str | None
    action: str
    run_id: str | None
    new_run_id: str | None
    via: str | None
    client: str | None
    detail: dict[str, Any] | None


class RunDetail(Run):
    steps: list[Step]
    config_snapshot: dict[str, Any] | None
    # Who restarted or cancelled it, or created it by a restart, newest first.
    history: list[AuditEntry]
    # A restart with edited inputs: each field that differs from the original's.
    inputs_diff: NotRequired[list[dict[str, Any]]]
    # A run of a lineage: every attempt from the original run to the latest, in order.
    attempts: NotRequired[list[dict[str, Any]]]


class RunList(TypedDict):
    runs: list[Run]
    next_cursor: str | None
    prev_cursor: str | None


class Restarted(TypedDict):
    status: str
    message: str
    original_run_id: str
    run_id: str
    attempt: int
    restart_mode: str | None
    estimated_cost_usd: float
    # Edited inputs: the fields that changed.
    inputs_diff: NotRequired[list[dict[str, Any]]]
    # Resume: where from ("failure" or a node), the node executions taken over, and what
    # they cost when they ran.
    resume_from: NotRequired[str]
    reused_nodes: NotRequired[list[str]]
    reused_cost_usd: NotRequired[float]


class BulkAnswer(TypedDict):
    """What a bulk restart or cancel did (or, with `dry_run`, would do)."""

    matched: int
    restartable: NotRequired[int]
    cancellable: NotRequired[int]
    skipped: dict[str, int]
    last_tokens: NotRequired[int]
    last_cost_usd: NotRequired[float]
    estimated_cost_usd: NotRequired[float]
    max_cost_usd: NotRequired[float | None]
    within_cap: NotRequired[bool]
    restarted: NotRequired[int]
    cancelled: NotRequired[int]
    batch_id: str | None
    dry_run: bool


class Batch(TypedDict):
    id: str
    kind: str
    created_at: str
    actor: str
    selection: dict[str, Any]
    matched: int
    acted: int
    estimated_cost_usd: float
    max_cost_usd: float | None
    # Its runs by status now: created, pending, running, completed, failed, cancelled.
    progress: dict[str, int]
    finished: bool
    answer: BulkAnswer | None


class Cancelled(TypedDict):
    status: str
    message: str
    run_id: str


class Error(TypedDict):
    error: str
    code: str


class RestartRefused(Error):
    """400 `already_restarted`: a run is restarted once; restart its latest attempt."""

    restarted_as: NotRequired[str]
    latest_attempt: NotRequired[str]


def _ok(model: type, what: str) -> dict[int, ResponseSpec]:
    return {200: ResponseSpec(data_container=model, description=what, generate_examples=False)}


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    text = {
        400: "Invalid state or parameters",
        404: "No such run (or a malformed id)",
        500: "Unusable snapshot, or scheduling failed: no run is left behind",
    }
    return {
        c: ResponseSpec(data_container=Error, description=text[c], generate_examples=False)
        for c in codes
    }


LIST = {**_ok(RunList, "Runs, newest first (JSON with Accept: application/json)"), **_errors(400)}
RUN = {**_ok(Run, "The run"), **_errors(404)}
DETAIL = {**_ok(RunDetail, "The run with its steps and config snapshot"), **_errors(404)}
RESTART = {
    **_ok(Restarted, "The new run was created and scheduled"),
    **_errors(404, 500),
    400: ResponseSpec(
        data_container=RestartRefused,
        description="The run is pending or running (`invalid_state`), or was already"
        " restarted (`already_restarted`, naming its restart and the latest attempt)",
        generate_examples=False,
    ),
}
BULK = {
    **_ok(BulkAnswer, "What was done (or would be, with dry_run)"),
    400: ResponseSpec(
        data_container=Error,
        description="An invalid selection, too many runs (`too_many_runs`), or an estimate"
        " over the spend cap (`over_spend_cap`, with `estimated_cost_usd` and `max_cost_usd`):"
        " nothing was created",
        generate_examples=False,
    ),
}
BATCH = {**_ok(Batch, "The batch and its runs' progress"), **_errors(404)}
CANCEL = {**_ok(Cancelled, "The run was cancelled"), **_errors(400, 404)}
ERRORS = _errors
