"""The tables: one row per run, one row per node execution."""

from piccolo.columns import (
    JSON,
    UUID,
    BigInt,
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

__all__ = ["ACTIVE_STATUSES", "RUN_STATUSES", "TERMINAL_STATUSES", "StepRun", "WorkflowRun"]

RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
ACTIVE_STATUSES = ("pending", "running")
TERMINAL_STATUSES = ("completed", "failed", "cancelled")


class WorkflowRun(Table, tablename="workflow_run"):
    """One execution of a workflow.

    `config_snapshot` is the resolved spec the run executed, so a restart never
    needs the original file. `restarted_from`/`attempt` form the lineage;
    "restarting" is derived (a child run is pending or running), never stored.
    `owner`/`heartbeat_at` let a later process tell a live run from one whose
    process died.
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
    steps_total = Integer(default=0)
    steps_done = Integer(default=0)
    current_node = Varchar(length=200, null=True, default=None)
    owner = Varchar(length=200, null=True, default=None)
    heartbeat_at = Timestamptz(null=True, default=None)
    # The procrastinate job executing the run, in the queue execution mode.
    job_id = BigInt(null=True, default=None)


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
