"""Restart endpoint latency: N sequential restart POSTs over loopback, each of a
different failed run, against uvicorn with one worker; `/healthz` in the same run
as the baseline, because absolute figures drift on a shared machine.

    python -m bench.restart_latency [--runs 200] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
JSON = {"Accept": "application/json"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def seed(database_url: str, count: int) -> list[str]:
    os.environ["DATABASE_URL"] = database_url
    from app.store import db
    from app.store.tables import WorkflowRun
    from app.workflows.loader import load_workflow

    db.configure(database_url)
    await db.migrate()
    snapshot = json.dumps(load_workflow(ROOT / "examples/echo.yaml").snapshot())
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(count)]
    await WorkflowRun.insert(
        *(
            WorkflowRun(
                id=i,
                workflow_name="echo",
                status="failed",
                config_snapshot=snapshot,
                inputs=json.dumps({"message": "hi"}),
                created_at=now - timedelta(seconds=n),
                error_type="MockFailure",
                error_message="failed for the benchmark",
            )
            for n, i in enumerate(ids)
        )
    )
    await db.close()
    return [str(i) for i in ids]


def timed(client: httpx.Client, method: str, url: str) -> tuple[float, int]:
    began = time.perf_counter()
    response = client.request(method, url, headers=JSON)
    return (time.perf_counter() - began) * 1000, response.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        ids = asyncio.run(seed(url, args.runs))
        sys.path.insert(0, str(ROOT / "tests"))
        from support import LiveServer

        with LiveServer(url) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(20):  # warm up
                timed(client, "GET", "/healthz")
            baseline, restart = [], []
            for run_id in ids:
                baseline.append(timed(client, "GET", "/healthz")[0])
                ms, status = timed(client, "POST", f"/workflows/{run_id}/restart")
                assert status == 200, status
                restart.append(ms)
    report = {
        "requests": len(restart),
        "database": url.split(":", 1)[0],
        "restart_ms": {
            "p50": statistics.median(restart),
            "p99": percentile(restart, 0.99),
            "stdev": statistics.pstdev(restart),
        },
        "baseline_healthz_ms": {
            "p50": statistics.median(baseline),
            "p99": percentile(baseline, 0.99),
        },
    }
    report["restart_p50_over_baseline_p50"] = (
        report["restart_ms"]["p50"] / report["baseline_healthz_ms"]["p50"]
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
