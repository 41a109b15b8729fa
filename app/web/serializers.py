"""The JSON shapes of DESIGN.md §5. Field names are a contract: add, never rename."""

from __future__ import annotations

from typing import Any

from app.services.runs import RunDetail, RunPage, RunSummary, StepView
from app.web.formatting import iso

__all__ = ["audit_json", "batch_json", "detail_json", "page_json", "run_json"]


def _error(run: RunSummary) -> dict[str, Any] | None:
    if run.error_type is None and run.error_message is None:
        return None
    return {"type": run.error_type, "message": run.error_message, "node": run.error_node}


def run_json(run: RunSummary, *, inputs: Any = None, outputs: Any = None) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow_name": run.workflow_name,
        "status": run.status,
        "attempt": run.attempt,
        "restarted_from": run.restarted_from,
        "restarted_as": list(run.restarted_as),
        "restarting": run.is_restarting,
        "trigger": run.trigger,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at) or None,
        "completed_at": iso(run.completed_at) or None,
        "duration_seconds": run.duration_seconds,
        "inputs": inputs,
        "outputs": outputs,
        "error": _error(run),
        "total_tokens": run.total_tokens,
        "total_cost_usd": run.total_cost_usd,
        "steps_total": run.steps_total,
        "steps_done": run.steps_done,
        "iterations": run.iterations,
        "items_done": run.items_done,
        "current_node": run.current_node,
        "executed_by": _executor(run),
        "restart_mode": run.restart_mode,
        "resume_from": run.resume_from,
    }


def _executor(run: RunSummary) -> dict[str, Any] | None:
    who = run.executed_by
    if who is None:
        return None
    return {"instance": who.instance, "kind": who.kind, "host": who.host, "pid": who.pid}


def _step_json(step: StepView) -> dict[str, Any]:
    return {
        "node_id": step.node_id,
        "order": step.step_order,
        "item_index": step.item_index,
        "status": step.status,
        "started_at": iso(step.started_at),
        "completed_at": iso(step.completed_at) or None,
        "duration_ms": step.duration_ms,
        "output": step.output,
        "error": step.error,
        "tokens": step.tokens,
        "tries": step.tries,
        "cost_usd": step.cost_usd,
        "reused_from": step.reused_from,
        "tool": step.tool,
    }


def detail_json(detail: RunDetail) -> dict[str, Any]:
    body = run_json(detail.summary, inputs=detail.inputs, outputs=detail.outputs)
    body["steps"] = [_step_json(s) for s in detail.steps]
    if detail.inputs_diff:
        body["inputs_diff"] = [
            {"field": name, "before": before, "after": after}
            for name, before, after in detail.inputs_diff
        ]
    if detail.attempts:
        body["attempts"] = [
            {
                "id": a.id,
                "attempt": a.attempt,
                "status": a.status,
                "created_at": iso(a.created_at),
                "total_tokens": a.total_tokens,
                "total_cost_usd": a.total_cost_usd,
                "restart_mode": a.restart_mode,
            }
            for a in detail.attempts
        ]
    body["config_snapshot"] = detail.config_snapshot
    return body


def page_json(page: RunPage, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "runs": [run_json(r, **inputs.get(r.id, {})) for r in page.runs],
        "next_cursor": page.next_cursor,
        "prev_cursor": page.prev_cursor,
    }


def audit_json(entry: Any) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso(entry.at),
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "run_id": entry.run_id,
        "new_run_id": entry.new_run_id,
        "via": entry.via,
        "client": entry.client,
        "detail": entry.detail,
    }


def batch_json(batch: Any) -> dict[str, Any]:
    progress = {status: batch.statuses.get(status, 0) for status in BATCH_STATUSES}
    return {
        "id": batch.id,
        "kind": batch.kind,
        "created_at": iso(batch.created_at),
        "actor": batch.actor,
        "selection": batch.selection,
        "matched": batch.matched,
        "acted": batch.acted,
        "estimated_cost_usd": batch.estimated_cost_usd,
        "max_cost_usd": batch.max_cost_usd,
        "progress": {"created": sum(batch.statuses.values()), **progress},
        "finished": batch.finished,
        "answer": batch.answer,
    }


BATCH_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
