"""The JSON contract as types, so that the OpenAPI schema documents it."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from litestar.openapi.datastructures import ResponseSpec

__all__ = ["CANCEL", "DETAIL", "ERRORS", "LIST", "RESTART", "RUN"]


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
    current_node: str | None
    executed_by: Executor | None


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
CANCEL = {**_ok(Cancelled, "The run was cancelled"), **_errors(400, 404)}
ERRORS = _errors
