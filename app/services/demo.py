"""Demo data for `serve --demo`: a living dashboard for a newcomer.

Completed runs of each example, failed runs that a restart fixes, and one slow
run that is still going, so every state of a row is on the page at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from app.services.runs import RunService
from app.workflows.loader import load_workflow

__all__ = ["EXAMPLES", "seed_demo"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

_FINISHED: list[tuple[str, dict[str, Any]]] = [
    ("echo.yaml", {"message": "hello, operator"}),
    ("article_writer.yaml", {"topic": "solar power"}),
    ("routed.yaml", {"draft": "A first draft about tides."}),
    ("loop.yaml", {"draft": "rough notes"}),
    ("fan_out.yaml", {"phrases": ["placeholder"]}),
    ("flaky.yaml", {"text": "Quarterly report: revenue up 12%, costs flat."}),
    ("echo.yaml", {"message": "second run"}),
    ("flaky.yaml", {"text": "Incident 4411: disk full on worker-3."}),
    ("paid_pipeline.yaml", {"document": "Q3: churn 4%, NPS 41, two outages."}),
    ("paid_pipeline.yaml", {"document": "Support backlog doubled in October."}),
    ("paid_pipeline.yaml", {"document": "Latency p95 rose from 180 ms to 420 ms."}),
    ("order_totals.yaml", {"order_json": '{"lines": [{"sku": "A-1", "qty": 2, "price": 9.5}]}'}),
]


async def seed_demo(service: RunService, *, slow_runs: int = 1) -> list[asyncio.Task[Any]]:
    """Add the demo runs. Finished ones run to the end here; slow ones are returned
    as tasks still executing, so the page shows them live."""
    if not await service.store.list_runs_exist():
        for name, inputs in _FINISHED:
            await service.run_workflow(load_workflow(EXAMPLES / name), inputs, trigger="demo")
    tasks = []
    slow = load_workflow(EXAMPLES / "slow.yaml")
    for index in range(slow_runs):
        run_id = await service.create_run(
            slow, {"job": f"nightly export {index + 1}"}, trigger="demo"
        )
        tasks.append(asyncio.create_task(service.execute_run(run_id)))
    return tasks
