"""Test data written straight to the tables, with explicit values for what tests assert."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from app.store.tables import StepRun, WorkflowRun

ECHO_SNAPSHOT: dict[str, Any] = {
    "schema_version": "1.0",
    "flow": {"name": "echo"},
    "state": {
        "fields": {
            "message": {"type": "str", "required": True},
            "reply": {"type": "str", "default": ""},
        }
    },
    "nodes": [{"id": "echo", "prompt": "Repeat: {state.message}", "outputs": ["reply"]}],
    "edges": [{"from": "START", "to": "echo"}, {"from": "echo", "to": "END"}],
    "config": {"llm": {"provider": "mock", "model": "echo"}},
}


def chain_snapshot(delay_seconds: float, nodes: int = 3) -> dict[str, Any]:
    """ECHO_SNAPSHOT as a chain of `nodes` mock nodes, each taking `delay_seconds`."""
    names = [f"n{i}" for i in range(1, nodes + 1)]
    edges = [{"from": "START", "to": names[0]}]
    edges += [{"from": a, "to": b} for a, b in itertools.pairwise(names)]
    edges.append({"from": names[-1], "to": "END"})
    return {
        **ECHO_SNAPSHOT,
        "flow": {"name": "slow_echo"},
        "nodes": [
            {"id": n, "prompt": f"{n} {{state.message}}", "outputs": ["reply"]} for n in names
        ],
        "edges": edges,
        "config": {"llm": {"provider": "mock", "model": "slow", "delay_seconds": delay_seconds}},
    }


def fixed_id(n: int) -> str:
    """A readable, stable run id whose short form (first 8 digits) is n in hex."""
    return str(uuid.UUID(f"{n:08x}-0000-0000-0000-{n:012x}"))


async def make_run(
    n: int,
    *,
    created_at: datetime,
    status: str = "completed",
    workflow_name: str = "echo",
    attempt: int = 1,
    restarted_from: str | None = None,
    snapshot: Any = ECHO_SNAPSHOT,
    inputs: dict[str, Any] | None = None,
    error: tuple[str, str, str | None] | None = None,
    steps: int = 0,
    steps_total: int = 1,
    owner: str | None = "test-host:1",
    raw_snapshot: str | None = None,
    cost_usd: float = 0.0,
    tokens: int = 0,
) -> str:
    """Insert one run with id fixed_id(n). A finished run took 1.5 s from created_at."""
    run_id = fixed_id(n)
    finished = status in ("completed", "failed", "cancelled")
    started = created_at + timedelta(milliseconds=20) if status != "pending" else None
    await WorkflowRun.insert(
        WorkflowRun(
            id=uuid.UUID(run_id),
            workflow_name=workflow_name,
            status=status,
            trigger="api",
            attempt=attempt,
            restarted_from=uuid.UUID(restarted_from) if restarted_from else None,
            config_snapshot=raw_snapshot
            if raw_snapshot is not None
            else (json.dumps(snapshot) if snapshot is not None else None),
            inputs=json.dumps(inputs if inputs is not None else {"message": f"hello {n}"}),
            outputs=json.dumps({"message": f"hello {n}", "reply": f"Repeat: hello {n}"})
            if status == "completed"
            else None,
            error_type=error[0] if error else None,
            error_message=error[1] if error else None,
            error_node=error[2] if error else None,
            created_at=created_at,
            started_at=started,
            completed_at=created_at + timedelta(seconds=1.5) if finished else None,
            steps_total=steps_total,
            steps_done=steps,
            current_node="echo" if status == "running" else None,
            owner=owner,
            heartbeat_at=created_at,
            total_cost_usd=cost_usd,
            total_tokens=tokens,
        )
    )
    for i in range(steps):
        begin = created_at + timedelta(milliseconds=20 + 500 * i)
        await StepRun.insert(
            StepRun(
                id=uuid.UUID(int=10_000_000 + n * 100 + i),
                run=uuid.UUID(run_id),
                node_id=f"step_{i + 1}",
                step_order=i,
                status="completed",
                started_at=begin,
                completed_at=begin + timedelta(milliseconds=300 + 100 * i),
                duration_ms=300.0 + 100 * i,
                output=json.dumps({"reply": f"out {i}"}),
                tokens=10 + i,
            )
        )
    return run_id


async def restarts_of(run_ids: list[str]) -> dict[str, int]:
    """How many restarts each of these runs has (a run is restarted once, at most)."""
    rows = await WorkflowRun.select(WorkflowRun.restarted_from).where(
        WorkflowRun.restarted_from.is_in([uuid.UUID(i) for i in run_ids])
    )
    found: dict[str, int] = {}
    for row in rows:
        found[str(row["restarted_from"])] = found.get(str(row["restarted_from"]), 0) + 1
    return found


async def keep_alive(run_id: str) -> None:
    """Move a running run's heartbeat an hour ahead: no recovery sweep takes it for
    interrupted while a browser test looks at it."""
    await WorkflowRun.update(
        {WorkflowRun.heartbeat_at: datetime.now(UTC) + timedelta(hours=1)}
    ).where(WorkflowRun.id == uuid.UUID(run_id))
