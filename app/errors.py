"""The errors every layer raises. Each carries its HTTP status and a machine code.

Services raise them; the web layer renders them (JSON `{"error", "code"}` or an
HTML fragment) and the CLI prints them, so a user's mistake never becomes a
traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AlreadyRestarted",
    "AppError",
    "IdempotencyKeyReused",
    "InputsTooLarge",
    "InvalidInputs",
    "InvalidSelection",
    "OverSpendCap",
    "RunNotCancellable",
    "RunNotFound",
    "RunNotRestartable",
    "RunNotResumable",
    "SchedulingFailed",
    "SnapshotUnusable",
    "SpecInvalid",
    "SpecIssue",
]


class AppError(Exception):
    """Base of our own errors: a message for people, a code for machines, a status."""

    status: int = 400
    code: str = "error"
    title: str = "Error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        run: object | None = None,
    ):
        super().__init__(message)
        self.message = message
        # The run the error is about, when known, so that the dashboard can show
        # the error inside that run's row and keep the row usable.
        self.run = run
        # More machine-readable fields of the JSON error body.
        self.extra: dict[str, object] = {}
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a workflow file: where it is and what would be right."""

    source: str
    line: int | None
    where: str
    message: str

    def __str__(self) -> str:
        loc = f"{self.source}:{self.line}" if self.line else self.source
        return f"{loc}: {self.where}: {self.message}" if self.where else f"{loc}: {self.message}"


class SpecInvalid(AppError):
    """A workflow file (or a stored snapshot) that does not describe a valid workflow."""

    status = 422
    code = "invalid_workflow"
    title = "Invalid workflow"

    def __init__(self, issues: list[SpecIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class InvalidInputs(AppError):
    """Inputs that do not fit the workflow's state schema; nothing was written."""

    status = 422
    code = "invalid_inputs"
    title = "Invalid inputs"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class InputsTooLarge(AppError):
    status = 413
    code = "inputs_too_large"
    title = "Inputs too large"


class RunNotFound(AppError):
    status = 404
    code = "run_not_found"
    title = "Run not found"


class RunNotRestartable(AppError):
    """The run is pending or running."""

    status = 400
    code = "invalid_state"
    title = "Cannot restart"


class AlreadyRestarted(RunNotRestartable):
    """The run was restarted before: a run is restarted once, and "run it again" means
    restarting the latest attempt of its chain."""

    code = "already_restarted"

    def __init__(self, message: str, *, run: object, restarted_as: str, latest_attempt: str):
        super().__init__(message, run=run)
        self.extra = {"restarted_as": restarted_as, "latest_attempt": latest_attempt}


class RunNotCancellable(AppError):
    status = 400
    code = "invalid_state"
    title = "Cannot cancel"


class SnapshotUnusable(AppError):
    """The stored config snapshot is missing, corrupt or no longer valid."""

    status = 500
    code = "snapshot_unusable"
    title = "Cannot restart"


class WorkflowNotRunnable(AppError):
    """The workflow asks for something this server cannot do (a feature not implemented
    here, a tool it does not offer): it is never run as something else."""

    status = 422
    code = "not_runnable"
    title = "Cannot run this workflow"


class SchedulingFailed(AppError):
    status = 500
    code = "scheduling_failed"
    title = "Cannot restart"


class RunNotResumable(RunNotRestartable):
    """Resume was asked for where completed nodes cannot be reused (say why)."""

    code = "not_resumable"


class InvalidSelection(AppError):
    """A bulk request that names no runs, or too many, or is malformed."""

    status = 400
    code = "invalid_selection"
    title = "Invalid selection"


class OverSpendCap(AppError):
    """The estimated cost of a bulk restart is above the cap: nothing was created."""

    status = 400
    code = "over_spend_cap"
    title = "Over the spend cap"

    def __init__(self, message: str, *, estimated_cost_usd: float, max_cost_usd: float):
        super().__init__(message)
        self.extra = {
            "estimated_cost_usd": round(estimated_cost_usd, 6),
            "max_cost_usd": max_cost_usd,
        }


class IdempotencyKeyReused(AppError):
    """The Idempotency-Key was used before for a different request."""

    status = 422
    code = "idempotency_key_reused"
    title = "Idempotency key reused"
