"""The filter bar's counts at scale: server time of `run_counts` for the filters an
operator uses, against the same figures counted from the runs (the baseline, in the same
run), and what the counters cost each status change.

    python -m bench.counts [--runs 1000000] [--databases sqlite,postgres] [--rounds 3]

Each engine gets a throwaway database seeded by bench.seed (30 days of runs, a dozen
workflows). For each filter: `rounds` rounds of 200 calls in process; the median of the
round medians, the spread of the rounds, and the ratio to counting with COUNT(*) GROUP
BY over the same filter. The status-change cost: 2,000 single-row status updates with
the counting triggers, and again after dropping them, in the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.bulk import seed
from bench.run import RESULTS, database, git_commit, hardware, save

FILTERS = {
    "all runs": {},
    "one workflow": {"workflow": "support_triage"},
    "last hour": {"since": timedelta(hours=1)},
    "last 24 h": {"since": timedelta(hours=24)},
    "last 7 days": {"since": timedelta(days=7)},
    "workflow, 7 days": {"workflow": "support_triage", "since": timedelta(days=7)},
}


async def _timed(call: Any, calls: int) -> float:
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        await call()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


async def _direct(filters: Any) -> Any:
    """The baseline: count the runs the filter matches, grouped by status."""
    from app.store.counts import _from_runs

    return await _from_runs(filters.workflow, filters.since, filters.until, [])


async def _status_changes(changes: int) -> float:
    from app.store.tables import WorkflowRun

    rows = await WorkflowRun.raw(f"SELECT id, status FROM workflow_run LIMIT {changes}")
    began = time.perf_counter()
    for row in rows:
        flipped = "cancelled" if row["status"] != "cancelled" else "completed"
        await WorkflowRun.raw(
            "UPDATE workflow_run SET status = {} WHERE id = {}", flipped, row["id"]
        )
    return (time.perf_counter() - began) / len(rows) * 1000


async def _drop_triggers(postgres: bool) -> None:
    from app.store.tables import WorkflowRun

    for name in ("run_count_insert", "run_count_update", "run_count_delete"):
        on = " ON workflow_run" if postgres else ""
        await WorkflowRun.raw(f"DROP TRIGGER IF EXISTS {name}{on}")


async def bench_engine(kind: str, url: str, seeded: float, rounds: int) -> dict[str, Any]:
    from app.store import db
    from app.store.counts import run_counts
    from app.store.models import RunFilters

    db.configure(url)
    await db.open_pool()
    from app.store.tables import WorkflowRun

    # Autovacuum may be off: plan with fresh statistics, as a running server would.
    if kind == "postgres":
        await WorkflowRun.raw("ANALYZE")
    now = datetime.now(UTC)
    result: dict[str, Any] = {"seed_seconds": seeded, "filters": {}}
    for name, spec in FILTERS.items():
        filters = RunFilters(
            workflow=spec.get("workflow"), since=now - spec["since"] if "since" in spec else None
        )
        assert (await run_counts(filters)).total == sum(
            int(r["runs"]) for r in await _direct(filters) if r["status"] != "attention"
        ), name
        counters = [await _timed(lambda f=filters: run_counts(f), 200) for _ in range(rounds)]
        direct = [await _timed(lambda f=filters: _direct(f), 20) for _ in range(rounds)]
        result["filters"][name] = {
            "counters_ms": round(statistics.median(counters), 3),
            "counters_spread_ms": [round(min(counters), 3), round(max(counters), 3)],
            "count_star_ms": round(statistics.median(direct), 2),
            "ratio": round(statistics.median(counters) / statistics.median(direct), 4),
        }
    with_triggers = statistics.median([await _status_changes(2000) for _ in range(rounds)])
    await _drop_triggers(kind == "postgres")
    without = statistics.median([await _status_changes(2000) for _ in range(rounds)])
    result["status_change_ms"] = {
        "with_counters": round(with_triggers, 3),
        "without": round(without, 3),
        "ratio": round(with_triggers / without, 2),
    }
    await db.close()
    return result


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Counts at {report['runs']:,} runs",
        "",
        f"Commit {report['commit']}, {report['hardware'].get('cpu', '')}. Median of "
        f"{report['rounds']} rounds (spread min..max of the round medians).",
        "",
    ]
    for kind, r in report["engines"].items():
        lines += [
            f"## {kind} (seeded in {r['seed_seconds']} s)",
            "",
            "| filter | counters p50 ms | spread ms | COUNT(*) p50 ms | ratio |",
            "|---|---|---|---|---|",
        ]
        for name, f in r["filters"].items():
            lo, hi = f["counters_spread_ms"]
            cells = [name, f["counters_ms"], f"{lo}..{hi}", f["count_star_ms"], f["ratio"]]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        s = r["status_change_ms"]
        lines += [
            "",
            f"A status change: {s['with_counters']} ms with the counters, {s['without']} ms "
            f"without ({s['ratio']} times).",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "runs": args.runs,
        "rounds": args.rounds,
        "commit": git_commit(),
        "hardware": hardware(),
        "engines": {},
    }
    for kind in args.databases.split(","):
        with database(kind) as url, tempfile.TemporaryDirectory() as tmp:
            seeded = round(seed(url, args.runs, tmp)["seconds"], 1)
            report["engines"][kind] = asyncio.run(bench_engine(kind, url, seeded, args.rounds))
    save(args.out, f"counts-{{stamp}}-{args.runs}", report, markdown(report))


if __name__ == "__main__":
    main()
