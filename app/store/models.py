"""Read models: what pages, the JSON API and the CLI get from the store.

Plain frozen dataclasses, so templates read attributes and nothing downstream
can issue a query by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "AuditView",
    "Cursor",
    "Executor",
    "RunDetail",
    "RunFilters",
    "RunPage",
    "RunSummary",
    "StepView",
]

ACTIVE = frozenset({"pending", "running"})


@dataclass(frozen=True)
class Executor:
    """The process that executed a run: its instance id, kind, host and pid."""

    instance: str
    kind: str
    host: str
    pid: int

    def describe(self) -> str:
        return f"{self.kind} {self.instance} on {self.host} (pid {self.pid})"


@dataclass(frozen=True)
class RunSummary:
    """A run as the list shows it: no large JSON columns."""

    id: str
    workflow_name: str
    status: str
    trigger: str
    attempt: int
    restarted_from: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error_type: str | None
    error_message: str | None
    error_node: str | None
    total_tokens: int
    total_cost_usd: float
    steps_total: int
    steps_done: int
    current_node: str | None
    owner: str | None = None
    # Beside `steps_done` (distinct nodes done): the most times one node looped (0 when
    # none ran twice) and the fan-out items done.
    iterations: int = 0
    items_done: int = 0
    # "edited" (restarted with other inputs), "resume" (completed nodes reused), or None.
    restart_mode: str | None = None
    resume_from: str | None = None
    # Its restart (a run is restarted at most once), as a one-element tuple.
    restarted_as: tuple[str, ...] = ()
    # The latest attempt of the chain of restarts that starts here, while it is
    # pending or running: the run is then "restarting", derived and never stored.
    active_restart: RunSummary | None = None
    # The latest attempt of that chain, whatever its status: the row shows its outcome
    # and offers to restart it.
    latest_restart: RunSummary | None = None
    executed_by: Executor | None = None
    # Its workflow's median cost of completed runs (finished runs only).
    median_cost_usd: float | None = None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def expected_cost_usd(self) -> float:
        """What restarting it is expected to cost: its own last cost, or its workflow's
        median cost of completed runs where that is more (a failed run's own cost covers
        only the nodes it reached)."""
        return max(self.total_cost_usd, self.median_cost_usd or 0.0)

    @property
    def expected_from_median(self) -> bool:
        return (self.median_cost_usd or 0.0) > self.total_cost_usd

    @property
    def is_restarting(self) -> bool:
        return self.active_restart is not None

    @property
    def repeats(self) -> str:
        """What ran more than once, said beside the nodes done: "loop" and its iterations,
        "fan-out 12 items", both, or nothing."""
        parts = []
        if self.iterations > 1:
            parts.append(f"loop \u00d7{self.iterations}")
        if self.items_done:
            parts.append(f"fan-out {self.items_done} item{'' if self.items_done == 1 else 's'}")
        return " \u00b7 ".join(parts)

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        if self.completed_at is None:
            return None
        return max(0.0, (self.completed_at - self.started_at).total_seconds())


@dataclass(frozen=True)
class StepView:
    node_id: str
    step_order: int
    item_index: int | None
    status: str
    started_at: datetime
    completed_at: datetime | None
    duration_ms: float | None
    output: Any
    error: str | None
    tokens: int
    tries: int
    cost_usd: float = 0.0
    # The run that executed it, when it was reused instead of executed (resume).
    reused_from: str | None = None
    # A tool (or the code sandbox) the node called: this row is that call.
    tool: str | None = None


@dataclass(frozen=True)
class RunDetail:
    """A run with everything the detail page and the JSON detail show."""

    summary: RunSummary
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    config_snapshot: Any
    steps: tuple[StepView, ...] = ()
    restarted_as_runs: tuple[RunSummary, ...] = ()
    # A restart with edited inputs: (field, before, after) against the original's.
    inputs_diff: tuple[tuple[str, Any, Any], ...] = ()
    # The whole chain the run belongs to, from the original run to the latest attempt.
    attempts: tuple[Attempt, ...] = ()
    # The audit entries about the run, newest first (when asked for).
    history: tuple[AuditView, ...] = ()


@dataclass(frozen=True)
class AuditView:
    id: int
    at: datetime
    actor: str
    role: str | None
    action: str
    run_id: str | None
    new_run_id: str | None
    via: str | None
    client: str | None
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class Attempt:
    """One run of a lineage, as the run page lists them."""

    id: str
    attempt: int
    status: str
    created_at: datetime
    total_tokens: int
    total_cost_usd: float
    restart_mode: str | None = None

    @property
    def short_id(self) -> str:
        return self.id[:8]


@dataclass(frozen=True)
class RunFilters:
    status: str | None = None
    # Runs of any of these workflows (all workflows when empty). A single name is taken
    # as a one-name tuple.
    workflow: tuple[str, ...] = ()
    id_prefix: str | None = None
    # Created at or after `since`, before `until`.
    since: datetime | None = None
    until: datetime | None = None
    # The search as typed (`q`): the start of a run id or words (app/store/search.py).
    text: str | None = None

    def __post_init__(self) -> None:
        names: Any = self.workflow
        if names is None:
            names = ()
        elif isinstance(names, str):
            names = (names,)
        object.__setattr__(self, "workflow", tuple(dict.fromkeys(n for n in names if n)))

    @property
    def q(self) -> str | None:
        """The search as the list's links carry it."""
        return self.text or self.id_prefix

    @property
    def workflow_param(self) -> str | list[str] | None:
        """The workflows as a JSON filter gives them: one name as a string, as before."""
        if not self.workflow:
            return None
        return self.workflow[0] if len(self.workflow) == 1 else list(self.workflow)


@dataclass(frozen=True)
class Cursor:
    """Keyset position: the last row seen, by (created_at, id) descending."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        return f"{self.created_at.isoformat()}_{self.id}"

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Raise ValueError on anything that is not a cursor this store made."""
        import uuid

        stamp, _, run_id = token.rpartition("_")
        created = datetime.fromisoformat(stamp)
        if created.tzinfo is None:
            raise ValueError("cursor timestamp has no time zone")
        # Far outside any run's time, and at the edges of what the databases and time
        # zone arithmetic hold.
        if not 1970 <= created.year <= 9000:
            raise ValueError("cursor timestamp is out of range")
        return cls(created, str(uuid.UUID(run_id)))


@dataclass(frozen=True)
class RunPage:
    runs: tuple[RunSummary, ...]
    next_cursor: str | None
    prev_cursor: str | None = None
    filters: RunFilters = field(default_factory=RunFilters)
