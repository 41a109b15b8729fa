"""The tables: one row per run, one row per node execution."""

from piccolo.columns import (
    JSON,
    UUID,
    BigInt,
    BigSerial,
    DoublePrecision,
    ForeignKey,
    Integer,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

__all__ = [
    "ACTIVE_STATUSES",
    "ATTENTION",
    "RUN_STATUSES",
    "STATUS_FILTERS",
    "TERMINAL_STATUSES",
    "AuditEntry",
    "RestartBatch",
    "RunProcess",
    "StepRun",
    "WebSession",
    "WorkflowRun",
]

RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
ACTIVE_STATUSES = ("pending", "running")
TERMINAL_STATUSES = ("completed", "failed", "cancelled")
# A list filter beside the statuses: failed runs never restarted, the failed tips of
# their lineages: the work an operator has not done yet.
ATTENTION = "attention"
STATUS_FILTERS = (ATTENTION, *RUN_STATUSES)


class WorkflowRun(Table, tablename="workflow_run"):
    """One execution of a workflow.

    `config_snapshot` is the resolved spec the run executed, so a restart never
    needs the original file. `restarted_from`/`attempt` form the lineage;
    "restarting" is derived (a child run is pending or running), never stored.
    `owner` is the instance id of the process executing it (a `RunProcess`), whose
    heartbeat tells a live run from one whose process died.
    """

    id = UUID(primary_key=True)
    workflow_name = Varchar(length=200)
    status = Varchar(length=20, default="pending")
    trigger = Varchar(length=20, default="api")
    attempt = Integer(default=1)
    restarted_from = UUID(null=True, default=None)
    config_snapshot = JSON(null=True, default=None)
    inputs = JSON(default={})
    outputs = JSON(null=True, default=None)
    error_type = Varchar(length=100, null=True, default=None)
    error_message = Text(null=True, default=None)
    error_node = Varchar(length=200, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    started_at = Timestamptz(null=True, default=None)
    completed_at = Timestamptz(null=True, default=None)
    total_tokens = Integer(default=0)
    total_cost_usd = DoublePrecision(default=0.0)
    # Progress: nodes done of the workflow's nodes. `steps_done` counts the distinct nodes
    # with a completed (or reused) execution, so a loop never takes it past `steps_total`;
    # what repeats is counted beside it: `iterations`, the most times one node completed
    # outside a fan-out when that is 2 or more (a loop or a cycle of routes, else 0), and
    # `items_done`, the fan-out item executions completed. All kept on write.
    steps_total = Integer(default=0)
    steps_done = Integer(default=0)
    iterations = Integer(default=0)
    items_done = Integer(default=0)
    current_node = Varchar(length=200, null=True, default=None)
    owner = Varchar(length=200, null=True, default=None)
    heartbeat_at = Timestamptz(null=True, default=None)
    # The procrastinate job executing the run, in the queue execution mode.
    job_id = BigInt(null=True, default=None)
    # Stamped by database triggers on every write (see the migration of 2026-11-30
    # 17:00): what each dashboard's change feed follows.
    updated_at = Timestamptz(null=True, default=None)
    # The bulk action that created it (a `RestartBatch`), if any.
    batch_id = UUID(null=True, default=None)
    # How a restart differs from its original: None (as is), "edited" (other inputs)
    # or "resume" (completed nodes of the original reused); `resume_from` is the node
    # it re-runs from, None for "where the original stopped".
    restart_mode = Varchar(length=20, null=True, default=None)
    resume_from = Varchar(length=200, null=True, default=None)


class StepRun(Table, tablename="step_run"):
    """One execution of one node within a run (a loop or a fan-out makes several)."""

    id = UUID(primary_key=True)
    run = ForeignKey(references=WorkflowRun, on_delete=OnDelete.cascade)
    node_id = Varchar(length=200)
    step_order = Integer()
    item_index = Integer(null=True, default=None)
    status = Varchar(length=20, default="running")
    started_at = Timestamptz(default=TimestamptzNow())
    completed_at = Timestamptz(null=True, default=None)
    duration_ms = DoublePrecision(null=True, default=None)
    output = JSON(null=True, default=None)
    error = Text(null=True, default=None)
    tokens = Integer(default=0)
    tries = Integer(default=1)
    cost_usd = DoublePrecision(default=0.0)
    # Set when the step was not executed but taken over from an earlier run (resume):
    # the run that executed it.
    reused_from = UUID(null=True, default=None)
    # Set on a call the node made during its execution (a tool, the code sandbox): shown in
    # its timeline, never counted as a node execution nor reused by a resume.
    tool = Varchar(length=100, null=True, default=None)


class RestartBatch(Table, tablename="restart_batch"):
    """One bulk restart or cancel: what it selected and what it answered. Its runs carry
    its id (`WorkflowRun.batch_id`), so its progress is read from them. A request
    repeated with the same `idempotency_key` (per actor) gets `answer` again."""

    id = UUID(primary_key=True)
    kind = Varchar(length=10)
    created_at = Timestamptz(default=TimestamptzNow())
    actor = Varchar(length=100)
    selection = JSON(default={})
    idempotency_key = Varchar(length=200, null=True, default=None)
    request_digest = Varchar(length=64, null=True, default=None)
    matched = Integer(default=0)
    acted = Integer(default=0)
    estimated_cost_usd = DoublePrecision(default=0.0)
    max_cost_usd = DoublePrecision(null=True, default=None)
    answer = JSON(null=True, default=None)


class RunProcess(Table, tablename="run_process"):
    """A dashboard, worker or CLI process that executes runs, with its heartbeat.

    `id` is a random instance id, written into the `owner` of the runs it executes. A
    run is dead when its process's heartbeat is stale in the database's own time, so
    neither a skewed host clock nor a shared hostname can fail a live run. `boot_id`
    and `pid_ns` let a process on the same kernel and in the same PID namespace tell
    sooner, by the pid, that another has died.
    """

    id = Varchar(length=64, primary_key=True)
    kind = Varchar(length=20)
    host = Varchar(length=255)
    pid = Integer()
    pid_ns = Varchar(length=64, null=True, default=None)
    boot_id = Varchar(length=64, null=True, default=None)
    started_at = Timestamptz(default=TimestamptzNow())
    heartbeat_at = Timestamptz(default=TimestamptzNow())
    # Set when the process stopped cleanly or was declared dead; never cleared.
    stopped_at = Timestamptz(null=True, default=None)
    # How many runs a queue worker executes at once (`worker --concurrency`); None for
    # other processes.
    concurrency = Integer(null=True, default=None)
    stop_reason = Text(null=True, default=None)


class WebSession(Table, tablename="web_session"):
    """A browser's signed-in session. The cookie holds a random value; `id` is its keyed
    hash, so the table alone cannot sign anyone in. Bound to the token that created it
    (by digest): removing the token ends it, and so does signing out."""

    id = Varchar(length=64, primary_key=True)
    role = Varchar(length=20)
    token_digest = Varchar(length=64)
    token_name = Varchar(length=100, null=True, default=None)
    csrf = Varchar(length=64)
    client = Varchar(length=64, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    last_seen_at = Timestamptz(default=TimestamptzNow())


class AuditEntry(Table, tablename="audit_entry"):
    """Who changed what, when and from where: restarts, cancels, sign-ins and sign-outs,
    failed sign-ins. Written in the same request as the change; never updated."""

    id = BigSerial(primary_key=True)
    at = Timestamptz(default=TimestamptzNow())
    actor = Varchar(length=100)
    role = Varchar(length=20, null=True, default=None)
    action = Varchar(length=40)
    run_id = UUID(null=True, default=None)
    new_run_id = UUID(null=True, default=None)
    via = Varchar(length=20, null=True, default=None)
    client = Varchar(length=64, null=True, default=None)
    detail = Text(null=True, default=None)
