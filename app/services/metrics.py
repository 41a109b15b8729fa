"""What GET /metrics reports, and the structured event of every run state change.

One `Metrics` per process (built with its services), each with its own registry:
tests build many apps in one process, and a registry refuses a metric name twice.
Counters and histograms count what this process did (the restarts it was asked for,
the runs and nodes it executed); the gauges of runs and of the queue are read from the
database when scraped, so that every dashboard reports the same figures for them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from app.store.metrics import queue_depth, runs_by_workflow_and_status
from app.store.tables import RUN_STATUSES

__all__ = ["Metrics"]

# INFO: shown with CA_LOG_FORMAT=json (and `run --verbose`); the default output, which
# shows warnings only, is unchanged.
events = logging.getLogger("configurable_agents.events")

# Runs call models for seconds to many minutes; nodes for a fraction of a second to minutes.
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
NODE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
RESTART_KINDS = ("single", "bulk")
RESTART_OUTCOMES = ("created", "refused", "failed_to_schedule")


def _workflow_of(snapshot: Any) -> str:
    flow = snapshot.get("flow") if isinstance(snapshot, Mapping) else None
    name = flow.get("name") if isinstance(flow, Mapping) else None
    return str(name) if name else ""


class Metrics:
    def __init__(self, *, queue: str | None = None):
        """`queue`: the procrastinate queue whose depth to report (the queue mode)."""
        self.registry = registry = CollectorRegistry()
        self.runs = Gauge(
            "ca_runs",
            "Runs in the database by workflow and status (read when scraped).",
            ["workflow", "status"],
            registry=registry,
        )
        self.restarts = Counter(
            "ca_restarts",
            "Restart requests this process answered, by kind and outcome (a bulk restart"
            " counts once).",
            ["kind", "outcome"],
            registry=registry,
        )
        for kind in RESTART_KINDS:  # every series from 0, so that rate() sees the first one
            for outcome in RESTART_OUTCOMES:
                self.restarts.labels(kind, outcome)
        self.run_duration = Histogram(
            "ca_run_duration_seconds",
            "Runs this process executed to the end, from its start of them to their end.",
            ["workflow", "status"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.node_duration = Histogram(
            "ca_node_duration_seconds",
            "Node executions this process finished (reused ones are not executed).",
            ["workflow", "node", "status"],
            buckets=NODE_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "ca_tokens",
            "Tokens spent by the nodes this process executed.",
            ["workflow"],
            registry=registry,
        )
        self.cost = Counter(
            "ca_cost_usd",
            "Dollars spent by the nodes this process executed.",
            ["workflow"],
            registry=registry,
        )
        # The queue mode only: elsewhere they are left out of the registry, so absent.
        self.queue = queue
        queue_registry = registry if queue is not None else None
        self.queue_depth = Gauge(
            "ca_queue_depth",
            "Runs waiting for a worker (read when scraped).",
            registry=queue_registry,
        )
        self.queue_oldest = Gauge(
            "ca_queue_oldest_wait_seconds",
            "How long the oldest run waiting for a worker has waited (read when scraped).",
            registry=queue_registry,
        )
        # The runs this process is executing: (workflow, attempt, monotonic start).
        self._executing: dict[str, tuple[str, int | None, float]] = {}

    async def scrape(self) -> bytes:
        """The exposition, with the database's figures read now."""
        counts = await runs_by_workflow_and_status()
        queue = await queue_depth(self.queue) if self.queue is not None else None
        # No await from here on: concurrent scrapes cannot interleave their updates.
        by_workflow: dict[str, dict[str, int]] = {}
        for workflow, status, runs in counts:
            by_workflow.setdefault(workflow, {})[status] = runs
        self.runs.clear()  # a workflow whose runs were all deleted goes
        for workflow, statuses in by_workflow.items():
            for status in dict.fromkeys([*RUN_STATUSES, *statuses]):  # 0s too, for alerts
                self.runs.labels(workflow, status).set(statuses.get(status, 0))
        if queue is not None:
            self.queue_depth.set(queue[0])
            self.queue_oldest.set(queue[1])
        return generate_latest(self.registry)

    # -- hooks: restarts ---------------------------------------------------------------

    def restart(self, kind: str, outcome: str) -> None:
        self.restarts.labels(kind, outcome).inc()

    # -- hooks: run state changes --------------------------------------------------------

    def run_changed(
        self,
        run_id: str,
        *,
        workflow: str | None,
        before: str | None,
        after: str,
        attempt: int | None = None,
        error_type: str | None = None,
    ) -> None:
        """One event per state change (`before` None: the run was just created)."""
        events.info(
            "run %s (%s): %s -> %s%s",
            run_id,
            workflow or "?",
            before or "new",
            after,
            f" ({error_type})" if error_type else "",
            extra={
                "event": "run_state",
                "run_id": run_id,
                "workflow": workflow,
                "from_status": before,
                "to_status": after,
                "attempt": attempt,
                "error_type": error_type,
            },
        )

    def run_created(
        self, run_id: str, workflow: str | None, attempt: int | None, restart: str | None = None
    ) -> None:
        """A new pending run; `restart` ("single" or "bulk") when it restarts another."""
        if restart is not None:
            self.restart(restart, "created")
        self.run_changed(run_id, workflow=workflow, before=None, after="pending", attempt=attempt)

    @contextlib.contextmanager
    def executing(self, run_id: str) -> Iterator[None]:
        """Around an execution: whatever way it ends, the run is forgotten."""
        try:
            yield
        finally:
            self._executing.pop(run_id, None)

    def run_claimed(self, run_id: str, snapshot: Any, attempt: int) -> None:
        workflow = _workflow_of(snapshot)
        self._executing[run_id] = (workflow, attempt, time.monotonic())
        self.run_changed(
            run_id, workflow=workflow, before="pending", after="running", attempt=attempt
        )

    def run_ended(self, run_id: str, status: str, error_type: str | None = None) -> None:
        """A run this process executed ended (or, `pending`, was handed back)."""
        workflow, attempt, began = self._executing.get(run_id, ("", None, None))
        if status != "pending" and began is not None:
            self.run_duration.labels(workflow, status).observe(time.monotonic() - began)
        self.run_changed(
            run_id,
            workflow=workflow,
            before="running",
            after=status,
            attempt=attempt,
            error_type=error_type,
        )

    def node_finished(self, run_id: str, node_id: str, result: Mapping[str, Any]) -> None:
        """A node execution ended (`result` as the executor reports it)."""
        workflow = self._executing.get(run_id, ("",))[0]
        seconds = (datetime.now(UTC) - result["started_at"]).total_seconds()
        self.node_duration.labels(workflow, node_id, result["status"]).observe(max(seconds, 0.0))
        if result.get("tokens"):
            self.tokens.labels(workflow).inc(result["tokens"])
        if result.get("cost_usd"):
            self.cost.labels(workflow).inc(result["cost_usd"])
