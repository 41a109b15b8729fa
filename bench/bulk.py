"""Bulk restart, the dry run over a million runs, and resume's cost per node.

    make bench-bulk                                  # full sizes, both databases
    python -m bench.bulk --quick --databases sqlite  # small sizes, about a minute

1. Bulk restart (`POST /workflows/restart` with `{"filter": {"status": "failed"}}`) of
   10,000 failed runs. Each repetition gets a fresh database (a SQLite file, or a
   throwaway PostgreSQL database `ca_bench_<random>` dropped at the end) seeded with
   10,100 failed runs of three-node mock workflows without delay, and a fresh server:
   - PostgreSQL, EXECUTION=queue, the dashboard alone: the POST's time; then every run
     has one `todo` job holding its locks (and `workflow_run.job_id`, where the app
     writes it); the workers' queries on the statistics the POST left (first
     repetition); ANALYZE; then two worker processes start and every run must end
     having executed once (one job, one step per node).
   - SQLite, embedded: the POST's time, then the time until the dashboard has executed
     every run (CA_LOCAL_CONCURRENCY at a time).
   Baselines in the same repetition: 100 single restarts (`POST /workflows/{id}/restart`)
   one after the other, per run; and dry runs of the same filter. Then, once per
   database, the same restart in process with each statement timed.
2. Dry runs over 1,000,000 runs (90% failed): the filter matching every run and the
   one matching the failed runs. Baseline: the failed runs' table partial
   (`GET /workflows/table?status=failed`), in the same rounds. The preview's statements
   and their plans. PostgreSQL: again after VACUUM (autovacuum may be off).
3. Resume's cost per node, in process: a linear workflow of 20 mock nodes through
   `execute()`, plain; with `Replay([])` (the machinery, nothing to reuse); and with a
   Replay holding every node's recorded step (everything reused).

`--quick`: 1,000 runs to restart, 10,000 under the dry run, fewer executions. Figures
are median [min..max] over repetitions or rounds. Results go to
bench/results/bulk-<time>-<quick|full>.{json,md}. Run from an exported tree (`git
archive`, while others commit to the checkout), set BENCH_COMMIT to the commit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import re
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.live import log_summary, stderr_to
from bench.load import Server, Worker, restart_each
from bench.queue import wait_all_ended
from bench.run import (
    RESULTS,
    child,
    database,
    database_kinds,
    git_commit,
    hardware,
    server_env,
)

FACTORY = "app.web.app:create_app"
JSON = {"Accept": "application/json"}
HX = {"HX-Request": "true"}
FAILED = {"filter": {"status": "failed"}}
EVERY = {"filter": {}}
TERMINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Plan:
    restart_runs: int  # runs one bulk restart creates
    singles: int  # single restarts: the per-run baseline
    dry_runs: int  # runs in the database of the dry run
    repeats: int  # bulk restarts, each on a fresh database
    dry_rounds: int  # rounds of (table partial, dry run of every run, of the failed)
    exec_rounds: int  # rounds of the executor figures
    executions: int  # executions per variant and round
    nodes: int = 20


FULL = Plan(
    restart_runs=10_000,
    singles=100,
    dry_runs=1_000_000,
    repeats=3,
    dry_rounds=5,
    exec_rounds=15,
    executions=200,
)
QUICK = Plan(
    restart_runs=1_000,
    singles=100,
    dry_runs=10_000,
    repeats=3,
    dry_rounds=3,
    exec_rounds=7,
    executions=40,
)


# -- small helpers ------------------------------------------------------------------------


def spread(values: list[float], digits: int = 4) -> dict[str, Any] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
    }


def num(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def fmt(s: dict[str, Any] | None, unit: str = "") -> str:
    if not s:
        return "-"
    if s["n"] == 1:
        return f"{num(s['median'])}{unit}"
    return f"{num(s['median'])}{unit} [{num(s['min'])}..{num(s['max'])}]"


def _numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, …`."""
    count = 0

    def mark(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return re.sub(r"\?", mark, sql)


async def _fetch(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql, args).fetchall()]
        finally:
            conn.close()
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [dict(r) for r in await conn.fetch(_numbered(sql), *args)]
    finally:
        await conn.close()


def rows(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """A read from this process: `?` placeholders on both databases."""
    return asyncio.run(_fetch(url, sql, *args))


def seed(url: str, runs: int, tmp: str, *flags: str) -> dict[str, Any]:
    """bench.seed in a process of its own (Piccolo keeps engine state per process)."""
    out = Path(tmp) / f"seed-{runs}.json"
    child("bench.seed", "--runs", str(runs), "--database-url", url, "--report-json", out, *flags)
    return json.loads(out.read_text())


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    began = time.perf_counter()
    response = client.post(path, json=body)
    return response, time.perf_counter() - began


def answer_of(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:500]}")
    return response.json()


def note(log: Path, text: str) -> None:
    """A line in the server's log, so that what it logs can be placed in a part."""
    with log.open("a") as f:
        f.write(f"-- bench: {text}\n")
    print(f"  {text}", flush=True)


def wait_batch(client: httpx.Client, batch_id: str, timeout: float) -> dict[str, Any]:
    """Poll the batch's page (JSON) until it says finished; its last answer."""
    deadline = time.perf_counter() + timeout
    while True:
        batch = client.get(f"/workflows/batches/{batch_id}").json()
        if batch.get("finished") or time.perf_counter() > deadline:
            return batch
        time.sleep(0.2)


# -- 1. bulk restart ---------------------------------------------------------------------

# Each run of the batch by status and by its steps: executed once means one step per
# node (a second execution would add a second step for some node).
STEPS_SQL = """
SELECT w.status AS status, coalesce(s.steps, 0) AS steps, coalesce(s.nodes, 0) AS nodes,
       count(*) AS runs
FROM workflow_run w
LEFT JOIN (
    SELECT run, count(*) AS steps, count(DISTINCT node_id) AS nodes FROM step_run
    WHERE run IN (SELECT id FROM workflow_run WHERE batch_id = ?) GROUP BY run
) s ON s.run = w.id
WHERE w.batch_id = ?
GROUP BY 1, 2, 3
"""
SPAN_SQL = """
SELECT min(created_at) AS created, min(started_at) AS first_start,
       max(completed_at) AS last_end, count(*) AS runs
FROM workflow_run WHERE batch_id = ?
"""
# The jobs of the batch's runs, matched by the run id they carry, and whether each holds
# its run's locks (`lock` and `queueing_lock`: one job queued and one executing per run);
# and whether the run's `job_id`, where set, names its own job.
JOBS_SQL = """
WITH jobs AS (
    SELECT args->>'run_id' AS run_id, count(*) AS n,
           count(*) FILTER (WHERE status = 'todo') AS todo,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE lock = args->>'run_id'
                            AND queueing_lock = args->>'run_id') AS locked
    FROM procrastinate_jobs WHERE task_name = 'execute_run' GROUP BY 1
)
SELECT count(*) AS runs,
       count(w.job_id) AS job_id_set,
       count(j.id) AS job_id_names_its_job,
       count(*) FILTER (WHERE jobs.n = 1) AS one_job,
       count(*) FILTER (WHERE jobs.n > 1) AS several_jobs,
       count(*) FILTER (WHERE jobs.n IS NULL) AS no_job,
       coalesce(sum(jobs.todo), 0) AS todo_jobs,
       coalesce(sum(jobs.succeeded), 0) AS succeeded_jobs,
       coalesce(sum(jobs.locked), 0) AS jobs_with_run_locks
FROM workflow_run w
LEFT JOIN jobs ON jobs.run_id = w.id::text
LEFT JOIN procrastinate_jobs j ON j.id = w.job_id AND j.args->>'run_id' = w.id::text
WHERE w.batch_id = ?
"""


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def executions(url: str, batch_id: str) -> dict[str, Any]:
    """How the batch's runs ended and whether each executed exactly once."""
    found = rows(url, STEPS_SQL, batch_id, batch_id)
    by_kind = {f"{r['status']}, {r['steps']} steps": int(r["runs"]) for r in found}
    once = sum(
        int(r["runs"])
        for r in found
        if r["status"] in ("completed", "failed") and r["steps"] == r["nodes"] > 0
    )
    span = rows(url, SPAN_SQL, batch_id)[0]
    first, last = _when(span["first_start"]), _when(span["last_end"])
    return {
        "runs": int(span["runs"]),
        "by_status_and_steps": by_kind,
        "ended_executed_once": once,
        "execution_span_seconds": round((last - first).total_seconds(), 2)
        if first and last
        else None,
    }


def jobs(url: str, batch_id: str) -> dict[str, int]:
    return {k: int(v) for k, v in rows(url, JOBS_SQL, batch_id)[0].items()}


def restart_env(kind: str, url: str, *, seeded_running: bool = False) -> dict[str, str]:
    # The server's spend cap out of the way: the seeded runs cost what they cost.
    env = {"DATABASE_URL": url, "CA_BULK_MAX_COST_USD": "1e9"}
    if seeded_running:
        # Seeded running runs have no owner: keep the recovery sweep from failing them
        # (bench.run's setting). Otherwise the default stays, so that 10,000 runs waiting
        # their turn for longer than the stale window are under the real sweeps.
        env = server_env(url) | env
    if kind == "postgres":
        env["EXECUTION"] = "queue"
    return env


def restart_once(kind: str, plan: Plan, rep: int, log: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"repetition": rep + 1}
    n = plan.restart_runs
    with database(kind) as url, tempfile.TemporaryDirectory() as tmp:
        seeded = seed(url, n + plan.singles, tmp, "--failed-share", "1", "--no-chains")
        singles = seeded["failed_ids"][: plan.singles]
        out["seeded_failed"] = len(seeded["failed_ids"])
        with contextlib.ExitStack() as stack:
            with stderr_to(log):
                server = stack.enter_context(Server(FACTORY, restart_env(kind, url)))
            client = stack.enter_context(httpx.Client(base_url=server.url, timeout=900))
            client.headers.update(JSON)
            note(log, f"{kind} restart, repetition {rep + 1}: single restarts")
            # The first requests of a server pay for imports and templates.
            client.get("/workflows/table", params={"status": "failed"}, headers=HX)
            client.get("/workflows")
            stats, created = restart_each(server.url, singles, concurrency=1, max_seconds=300)
            out["single"] = {
                "restarts": stats.requests,
                "created": len(created),
                "errors": stats.errors,
                "p50_ms": stats.as_dict()["p50_ms"],
                "per_run_ms": round(1000 * stats.seconds / max(stats.requests, 1), 3),
            }
            if kind == "sqlite":
                # They execute in the dashboard after each answer: let them end, so that
                # the bulk request has the process to itself.
                asyncio.run(wait_all_ended(url, created, timeout=300))
            dry = []
            for _ in range(3):
                response, seconds = post(client, "/workflows/restart", FAILED | {"dry_run": True})
                out["dry_answer"] = answer_of(response)
                dry.append(seconds)
            out["dry_seconds"] = dry
            note(log, f"{kind} restart, repetition {rep + 1}: bulk restart of {n:,}")
            response, seconds = post(client, "/workflows/restart", FAILED)
            began = time.perf_counter() - seconds
            answer = answer_of(response)
            out["answer"] = answer
            out["post_seconds"] = round(seconds, 4)
            batch_id = answer["batch_id"]
            out["batch_id"] = batch_id
            print(f"    POST {seconds:.3f} s: {answer['restarted']:,} restarted", flush=True)
            if kind == "postgres":
                out["jobs_before"] = jobs(url, batch_id)
                if rep == 0:
                    note(log, "queue maintenance and job fetch on stale statistics")
                    out["stale_statistics"] = json.loads(
                        child("bench.bulk", "--inprocess", "queue", "--database-url", url)
                    )
                out["analyze_seconds"] = analyze(url)
                note(log, f"{kind} restart, repetition {rep + 1}: two workers")
                workers = [Worker(url, 4) for _ in range(2)]
                for worker in workers:
                    stack.callback(worker.stop)
                started = time.perf_counter()
                for worker in workers:
                    worker.wait_ready()
                batch = wait_batch(client, batch_id, timeout=1800)
                asyncio.run(wait_all_ended(url, created, timeout=120))
                out["ended_seconds"] = round(time.perf_counter() - started, 2)
                for worker in workers:
                    worker.stop()
                out["worker_log"] = log_summary([x for w in workers for x in w.log])
                out["jobs_after"] = jobs(url, batch_id)
            else:
                batch = wait_batch(client, batch_id, timeout=1800)
                # From the start of the POST: the dashboard executes while it answers.
                out["ended_seconds"] = round(time.perf_counter() - began, 2)
            out["progress"] = batch.get("progress")
            out["finished"] = bool(batch.get("finished"))
            out["executions"] = executions(url, batch_id)
            print(f"    all ended after {out['ended_seconds']} s: {out['progress']}", flush=True)
    restarted = out["answer"]["restarted"]
    dry_median = statistics.median(dry)
    bulk_per_run = 1000 * out["post_seconds"] / max(restarted, 1)
    out["ratios"] = {
        "post_over_dry_run": round(out["post_seconds"] / dry_median, 2),
        "bulk_per_run_ms": round(bulk_per_run, 4),
        "single_per_run_over_bulk_per_run": round(out["single"]["per_run_ms"] / bulk_per_run, 1),
    }
    return out


def analyze(url: str) -> float:
    """ANALYZE what a bulk restart grew. Autovacuum does it on its own within a minute
    (`autovacuum_naptime`); on a server where it is off, nothing does."""

    async def run() -> float:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            began = time.perf_counter()
            await conn.execute("ANALYZE workflow_run")
            await conn.execute("ANALYZE procrastinate_jobs")
            return round(time.perf_counter() - began, 3)
        finally:
            await conn.close()

    return asyncio.run(run())


def autovacuum(url: str) -> str | None:
    with contextlib.suppress(Exception):
        return str(rows(url, "SHOW autovacuum")[0]["autovacuum"])
    return None


def restart_part(kind: str, plan: Plan, log: Path) -> dict[str, Any]:
    reps = []
    for rep in range(plan.repeats):
        reps.append(restart_once(kind, plan, rep, log))
    result: dict[str, Any] = {"runs": plan.restart_runs, "repetitions": reps}
    result["post_seconds"] = spread([r["post_seconds"] for r in reps])
    result["dry_run_seconds"] = spread([statistics.median(r["dry_seconds"]) for r in reps])
    result["single_per_run_ms"] = spread([r["single"]["per_run_ms"] for r in reps])
    result["single_p50_ms"] = spread([r["single"]["p50_ms"] for r in reps])
    for key in ("post_over_dry_run", "bulk_per_run_ms", "single_per_run_over_bulk_per_run"):
        result[key] = spread([r["ratios"][key] for r in reps])
    result["ended_seconds"] = spread([r["ended_seconds"] for r in reps])
    result["execution_span_seconds"] = spread(
        [r["executions"]["execution_span_seconds"] for r in reps]
    )
    result["runs_per_second"] = spread(
        [r["answer"]["restarted"] / r["ended_seconds"] for r in reps if r["ended_seconds"]], 1
    )
    print(f"[{kind}] restart in process, statements timed", flush=True)
    with database(kind) as url, tempfile.TemporaryDirectory() as tmp:
        seed(url, plan.restart_runs, tmp, "--failed-share", "1", "--no-chains")
        result["in_process"] = json.loads(
            child("bench.bulk", "--inprocess", "restart", "--database-url", url)
        )
        if kind == "postgres":
            result["autovacuum"] = autovacuum(url)
    return result


# -- 2. dry run over many runs -----------------------------------------------------------


def dry_rounds(client: httpx.Client, rounds: int) -> dict[str, Any]:
    """Rounds of (table partial, dry run of every run, dry run of the failed ones): a
    neighbour's burst falls on all three, and each ratio is taken within its round."""
    out: dict[str, Any] = {}
    times: dict[str, list[float]] = {"table": [], "every": [], "failed": []}
    for _ in range(rounds):
        began = time.perf_counter()
        table = client.get("/workflows/table", params={"status": "failed"}, headers=HX)
        table.raise_for_status()
        times["table"].append(time.perf_counter() - began)
        for key, body in (("every", EVERY), ("failed", FAILED)):
            response, seconds = post(client, "/workflows/restart", body | {"dry_run": True})
            out[f"answer_{key}"] = answer_of(response)
            times[key].append(seconds)
    out["rounds"] = times
    for key in ("table", "every", "failed"):
        out[f"{key}_seconds"] = spread(times[key])
    for key in ("every", "failed"):
        out[f"{key}_over_table"] = spread(
            [d / t for d, t in zip(times[key], times["table"], strict=True)], 2
        )
    print(
        f"    dry run over {out['answer_every']['matched']:,} runs: "
        f"{fmt(out['every_seconds'], ' s')}; failed: {fmt(out['failed_seconds'], ' s')}"
        f"; table partial {fmt(out['table_seconds'], ' s')}",
        flush=True,
    )
    return out


def vacuum(url: str) -> float:
    """VACUUM (ANALYZE): what autovacuum does to a table that was inserted into (since
    PostgreSQL 13), and what sets the visibility map that index-only scans need."""

    async def run() -> float:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            began = time.perf_counter()
            await conn.execute("VACUUM (ANALYZE) workflow_run")
            return round(time.perf_counter() - began, 2)
        finally:
            await conn.close()

    return asyncio.run(run())


def preview_plans(url: str) -> dict[str, Any]:
    return json.loads(child("bench.bulk", "--inprocess", "preview", "--database-url", url))


def dry_run_part(kind: str, plan: Plan, log: Path) -> dict[str, Any]:
    n = plan.dry_runs
    result: dict[str, Any] = {"runs": n}
    with database(kind) as url, tempfile.TemporaryDirectory() as tmp:
        print(f"[{kind}] seeding {n:,} runs, 90% failed", flush=True)
        seeded = seed(url, n, tmp, "--failed-share", "0.9")
        result["seed"] = {k: seeded[k] for k in ("seconds", "by_status", "restart_chains")}
        with contextlib.ExitStack() as stack:
            with stderr_to(log):
                env = restart_env(kind, url, seeded_running=True)
                server = stack.enter_context(Server(FACTORY, env))
            client = stack.enter_context(httpx.Client(base_url=server.url, timeout=900))
            client.headers.update(JSON)
            note(log, f"{kind} dry run over {n:,} runs")
            # The first of each: caches cold (the seed wrote the pages, nobody read them).
            began = time.perf_counter()
            client.get("/workflows/table", params={"status": "failed"}, headers=HX)
            result["first_table_seconds"] = round(time.perf_counter() - began, 3)
            response, seconds = post(client, "/workflows/restart", EVERY | {"dry_run": True})
            answer_of(response)
            result["first_dry_run_seconds"] = round(seconds, 3)
            result.update(dry_rounds(client, plan.dry_rounds))
            print(f"[{kind}] the preview's plans", flush=True)
            result["in_process"] = preview_plans(url)
            if kind == "postgres":
                # As seeded, no page is marked all-visible: autovacuum (off on some
                # servers) would have vacuumed the table by the time anyone looks.
                note(log, f"{kind} dry run over {n:,} runs after VACUUM")
                result["vacuum_seconds"] = vacuum(url)
                after = dry_rounds(client, plan.dry_rounds)
                after["in_process"] = preview_plans(url)
                result["after_vacuum"] = after
    return result


# -- in process: statements timed, plans -----------------------------------------------------


class Statements:
    """Every statement Piccolo sends meanwhile, with its time. Patched on the engine's
    class (PostgresEngine instances do not take new attributes), as bench.explain does."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.cls = type(engine)
        self.original = self.cls.run_querystring
        self.seen: list[tuple[str, list[Any], float]] = []

    def __enter__(self) -> Statements:
        engine, original, seen = self.engine, self.original, self.seen

        async def timed(self_: Any, querystring: Any, in_pool: bool = True) -> Any:
            sql, args = querystring.compile_string(engine_type=engine.engine_type)
            began = time.perf_counter()
            try:
                return await original(self_, querystring, in_pool=in_pool)
            finally:
                seen.append((sql, args, time.perf_counter() - began))

        self.cls.run_querystring = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self.cls.run_querystring = self.original  # type: ignore[method-assign]

    def summary(self) -> list[dict[str, Any]]:
        """Grouped by the statement's start: how many, and their total time."""
        groups: dict[str, dict[str, Any]] = {}
        for sql, _, seconds in self.seen:
            head = _short(sql, 110)
            g = groups.setdefault(head, {"sql": head, "count": 0, "ms": 0.0})
            g["count"] += 1
            g["ms"] += seconds * 1000
        for g in groups.values():
            g["ms"] = round(g["ms"], 2)
        return list(groups.values())


def _short(sql: str, limit: int) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= limit else sql[:limit] + " …"


class _Idle:
    """A scheduler that leaves the new runs pending: in process, only the restart itself
    is timed (the embedded mode's scheduling is an in-memory queue)."""

    async def schedule_many(self, run_ids: list[str]) -> None:
        return None


async def _services(url: str, *, idle: bool) -> Any:
    from app.services.wiring import build_services
    from app.settings import Settings, normalise_database_url
    from app.store import db

    url = normalise_database_url(url)
    postgres = not url.startswith("sqlite:///")
    settings = Settings(
        database_url=url,
        execution="queue" if postgres else "inprocess",
        bulk_max_cost_usd=1e9,
    )
    db.configure(url)
    await db.open_pool()
    return build_services(
        settings, kind="dashboard", scheduler=(lambda _: _Idle()) if idle else None
    )


async def inprocess_restart(url: str) -> dict[str, Any]:
    """The bulk restart of the failed runs, as the dashboard runs it, with every statement
    and every batch deferral timed; what remains is Python and the commit."""
    from app.services.bulk import Selection
    from app.store import db
    from app.store.models import RunFilters

    services = await _services(url, idle=url.startswith("sqlite:///"))
    deferred: list[float] = []
    try:
        if services.queue_app is not None:
            await services.queue_app.open_async()
            manager = services.queue_app.job_manager
            original = manager.batch_defer_jobs_async

            async def timed_defer(jobs: Any) -> Any:
                began = time.perf_counter()
                try:
                    return await original(jobs)
                finally:
                    deferred.append(time.perf_counter() - began)

            manager.batch_defer_jobs_async = timed_defer
        selection = Selection(filters=RunFilters(status="failed"))
        with Statements(db.current_engine()) as statements:
            began = time.perf_counter()
            result = await services.bulk.restart(selection, actor="bench", trigger="api")
            total = time.perf_counter() - began
        if services.queue_app is not None:
            await services.queue_app.close_async()
    finally:
        await db.close()
    spent = sum(s for *_, s in statements.seen) + sum(deferred)
    return {
        "restarted": result.answer["restarted"],
        "total_ms": round(total * 1000, 1),
        "statements": statements.summary(),
        "batch_defers": len(deferred),
        "batch_defer_ms": round(sum(deferred) * 1000, 1),
        "rest_ms": round((total - spent) * 1000, 1),
        "writes_again": await writes_again(url, statements.seen, result.answer["batch_id"]),
    }


def _trigger_plan_lines(plan: list[str]) -> list[str]:
    return [line for line in plan if line.startswith(("Trigger", "Execution Time", "Insert"))]


async def writes_again(url: str, seen: list[Any], batch_id: str) -> dict[str, Any]:
    """The restart's big writes once more, each in a transaction rolled back (the batch's
    runs deleted first, so that the INSERT creates them again): as they ran, then with
    the trigger that stamps `updated_at` on every row (and NOTIFYs, on PostgreSQL)
    disabled, which shows that trigger's share. PostgreSQL's EXPLAIN ANALYZE names it."""
    insert = next(x for x in seen if x[0].lstrip().startswith("INSERT INTO workflow_run"))
    update = next(
        (x for x in seen if x[0].lstrip().startswith("UPDATE workflow_run SET job_id")), None
    )
    writes = [("insert", insert)] + ([("update_job_id", update)] if update else [])
    out: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        try:
            for trigger in (True, False):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if not trigger:  # DDL is transactional in SQLite: rolled back below
                        conn.execute("DROP TRIGGER workflow_run_stamp_insert")
                    conn.execute("DELETE FROM workflow_run WHERE batch_id = ?", (batch_id,))
                    began = time.perf_counter()
                    conn.execute(insert[0], insert[1])
                    ms = (time.perf_counter() - began) * 1000
                finally:
                    conn.execute("ROLLBACK")
                out["insert_ms" if trigger else "insert_without_trigger_ms"] = round(ms, 1)
        finally:
            conn.close()
        return out
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for trigger in (True, False):
            transaction = conn.transaction()
            await transaction.start()
            suffix = "" if trigger else "_without_trigger"
            try:
                if not trigger:
                    await conn.execute(
                        "ALTER TABLE workflow_run DISABLE TRIGGER workflow_run_changed"
                    )
                await conn.execute("DELETE FROM workflow_run WHERE batch_id = $1::uuid", batch_id)
                for name, (sql, args, _) in writes:
                    began = time.perf_counter()
                    plan = [
                        r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
                    ]
                    out[f"{name}{suffix}_ms"] = round((time.perf_counter() - began) * 1000, 1)
                    out[f"{name}{suffix}_plan"] = _trigger_plan_lines(plan)
            finally:
                await transaction.rollback()
    finally:
        await conn.close()
    return out


async def inprocess_preview(url: str) -> dict[str, Any]:
    """The dry run's reads (BulkStore.preview_restart) timed in process, and each
    statement's plan, as bench.explain shows them (it runs each again to time it)."""
    from app.store import db
    from app.store.bulk import BulkStore, Selection
    from app.store.models import RunFilters
    from bench.explain import _plan_postgres, _plan_sqlite

    await _services(url, idle=True)
    store = BulkStore(lambda: datetime.now(UTC))
    out = []
    try:
        for name, filters in (
            ("every run", RunFilters()),
            ("status=failed", RunFilters(status="failed")),
        ):
            selection = Selection(filters=filters)
            times = []
            for _ in range(3):
                began = time.perf_counter()
                await store.preview_restart(selection)
                times.append((time.perf_counter() - began) * 1000)
            with Statements(db.current_engine()) as statements:
                await store.preview_restart(selection)
            planned = []
            for sql, args, _ in statements.seen:
                if url.startswith("sqlite:///"):
                    plan, ms = await _plan_sqlite(url.removeprefix("sqlite:///"), sql, args)
                else:
                    plan, ms = await _plan_postgres(url, sql, args)
                planned.append({"sql": _short(sql, 400), "plan": plan, "ms": round(ms, 2)})
            out.append(
                {
                    "selection": name,
                    "ms_in_process": round(statistics.median(times), 2),
                    "statements": planned,
                }
            )
    finally:
        await db.close()
    return {"previews": out}


async def inprocess_queue(url: str) -> dict[str, Any]:
    """What each worker does every round, right after a bulk restart, before and after
    ANALYZE: the maintenance's search for pending runs without a live job (as if the
    runs had waited past `requeue_after`), and procrastinate's fetch of the next job
    (in a transaction rolled back)."""
    import asyncpg

    from app.services.queue import QUEUE
    from app.store import db
    from app.store.queue import QueueStore

    await _services(url, idle=True)
    out: dict[str, Any] = {}
    conn = await asyncpg.connect(url)
    try:
        # A long plan is the finding, not a failure: bounded all the same.
        await conn.execute("SET statement_timeout = '300s'")
        # The jobs table alone analyzed is what autovacuum soon gives: it is small. A
        # large workflow_run is not analyzed again for a 10,000-run restart (autovacuum
        # waits for 10% of its rows to change).
        for phase in ("stale", "jobs_analyzed", "analyzed"):
            began = time.perf_counter()
            if phase == "jobs_analyzed":
                await conn.execute("ANALYZE procrastinate_jobs")
            if phase == "analyzed":
                await conn.execute("ANALYZE workflow_run")
            out[f"{phase}_analyze_ms"] = round((time.perf_counter() - began) * 1000, 1)
            with Statements(db.current_engine()) as statements:
                began = time.perf_counter()
                found = await QueueStore().pending_without_live_job(0)
                maintenance_ms = (time.perf_counter() - began) * 1000
            sql, args, _ = statements.seen[0]
            plan = [r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *args)]
            transaction = conn.transaction()
            await transaction.start()
            try:
                began = time.perf_counter()
                await conn.fetch(
                    "SELECT id FROM procrastinate_fetch_job_v2($1::varchar[], NULL)",
                    [QUEUE, "maintenance"],
                )
                fetch_ms = (time.perf_counter() - began) * 1000
            finally:
                await transaction.rollback()
            out[phase] = {
                "pending_without_live_job_ms": round(maintenance_ms, 1),
                "pending_without_live_job_found": len(found),
                "pending_without_live_job_plan": plan,
                "fetch_job_ms": round(fetch_ms, 2),
            }
    finally:
        await conn.close()
        await db.close()
    out["sql"] = _short(sql, 400)
    return out


# -- 3. resume's cost per node -----------------------------------------------------------------


def linear_workflow(n: int) -> str:
    """n mock nodes in a line, each writing a field of its own, without delay."""
    fields = "".join(f'    out{i}: {{type: str, default: ""}}\n' for i in range(n))
    nodes = "".join(
        f'  - id: n{i}\n    prompt: "step {i} about {{state.topic}}"\n    outputs: [out{i}]\n'
        for i in range(n)
    )
    chain = ["START", *(f"n{i}" for i in range(n)), "END"]
    edges = "".join(f"  - {{from: {a}, to: {b}}}\n" for a, b in itertools.pairwise(chain))
    return (
        f'schema_version: "1.0"\nflow: {{name: linear_{n}}}\nstate:\n  fields:\n'
        f"    topic: {{type: str, required: true}}\n{fields}nodes:\n{nodes}edges:\n{edges}"
        "config:\n  llm: {provider: mock, model: bench}\n"
    )


VARIANTS = ("plain", "replay, nothing to reuse", "replay, every node reused")


async def executor_part(plan: Plan) -> dict[str, Any]:
    from app.workflows.executor import MemoryRecorder, Replay, ReusedStep, execute
    from app.workflows.loader import parse_workflow, validate_inputs

    sizes = (1, plan.nodes)
    cases: dict[int, tuple[Any, dict[str, Any], list[Any]]] = {}
    for n in sizes:
        spec = parse_workflow(linear_workflow(n), source=f"linear_{n}")
        state = validate_inputs(spec, {"topic": "the cost of resume"})
        first = MemoryRecorder()
        done = await execute(spec, state, recorder=first)
        assert done.status == "completed" and done.steps == n, done
        recorded = [
            ReusedStep(s["node_id"], s["item_index"], s["output"], source="earlier")
            for s in first.steps
        ]
        cases[n] = (spec, state, recorded)

    def replay_for(variant: str, recorded: list[Any]) -> Any:
        # Built per execution, as a resume builds one per run.
        if variant == "plain":
            return None
        return Replay([] if variant == VARIANTS[1] else recorded)

    async def batch(variant: str, n: int, count: int) -> float:
        spec, state, recorded = cases[n]
        gc.collect()
        began = time.perf_counter()
        for _ in range(count):
            recorder = MemoryRecorder()
            result = await execute(
                spec, state, recorder=recorder, replay=replay_for(variant, recorded)
            )
        elapsed = time.perf_counter() - began
        reused = sum(1 for s in recorder.steps if s.get("status") == "reused")
        expected = n if variant == VARIANTS[2] else 0
        assert result.status == "completed" and reused == expected, (variant, result, reused)
        return elapsed / count * 1e6

    for variant in VARIANTS:  # warm up: imports, caches, the allocator
        for n in sizes:
            await batch(variant, n, max(5, plan.executions // 5))
    samples: dict[str, dict[int, list[float]]] = {v: {n: [] for n in sizes} for v in VARIANTS}
    for r in range(plan.exec_rounds):
        # Rotated, so that a neighbour's burst does not always fall on the same variant.
        for variant in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
            for n in sizes:
                samples[variant][n].append(await batch(variant, n, plan.executions))
    big = plan.nodes
    marginal = {
        v: [(t - o) / (big - 1) for t, o in zip(samples[v][big], samples[v][1], strict=True)]
        for v in VARIANTS
    }
    plain = marginal["plain"]
    out: dict[str, Any] = {
        "nodes": big,
        "executions_per_round": plan.executions,
        "rounds": plan.exec_rounds,
        "variants": {},
    }
    for v in VARIANTS:
        out["variants"][v] = {
            f"us_per_run_{big}_nodes": spread(samples[v][big], 1),
            "us_per_run_1_node": spread(samples[v][1], 1),
            "us_per_node_marginal": spread(marginal[v], 2),
            "over_plain": spread([m / p for m, p in zip(marginal[v], plain, strict=True)], 3),
            "minus_plain_us_per_node": spread(
                [m - p for m, p in zip(marginal[v], plain, strict=True)], 2
            ),
        }
    return out


# -- report --------------------------------------------------------------------------------------


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _within(s: dict[str, Any], limit: float) -> str:
    """Met on the median; whether every repetition or round was, beside it."""
    every = "every one" if s["max"] <= limit else f"worst {num(s['max'])}"
    return f"{_met(s['median'] <= limit)} ({every})"


def _queue_targets(reps: list[dict[str, Any]], n: int) -> list[tuple[str, str, str]]:
    before = [x["jobs_before"] for x in reps]
    deferred = all(
        b["todo_jobs"] == b["runs"] == b["one_job"] == b["jobs_with_run_locks"] == n for b in before
    )
    out = [
        (
            "all deferred when the POST answers: one `todo` job per run, holding the run's "
            "lock and queueing lock",
            "; ".join(
                f"{b['todo_jobs']:,} todo jobs, {b['jobs_with_run_locks']:,} with the run's "
                f"locks, {b['several_jobs']} runs with several, {b['no_job']} with none"
                for b in before
            ),
            _met(deferred),
        )
    ]
    set_ = [b["job_id_set"] for b in before]
    if all(b["job_id_set"] == b["job_id_names_its_job"] == n for b in before):
        met = "yes"
    elif not any(set_):
        # Not written for a batch on purpose: QueueStore.job_id_of finds the job by its lock.
        met = "n/a: not written for a batch (the job is found by its lock)"
    else:
        met = "**no**"
    out.append(
        (
            "`workflow_run.job_id` set, naming the run's job",
            ", ".join(
                f"{b['job_id_set']:,} set, {b['job_id_names_its_job']:,} naming it" for b in before
            ),
            met,
        )
    )
    after = [x["jobs_after"] for x in reps]
    once = [x["executions"]["ended_executed_once"] for x in reps]
    ok = all(a["one_job"] == a["succeeded_jobs"] == n for a in after) and all(o == n for o in once)
    out.append(
        (
            "2 workers: every run ended, executed once (one job, one step per node)",
            "; ".join(
                f"{o:,} once, {a['one_job']:,} with one job ({a['succeeded_jobs']:,}"
                f" succeeded), {a['several_jobs']} with several"
                for o, a in zip(once, after, strict=True)
            ),
            _met(ok),
        )
    )
    return out


def targets(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    out = []
    n = report["plan"]["restart_runs"]
    for kind, r in report.get("restart", {}).items():
        limit = 2.0 if kind == "postgres" else 3.0
        mode = "queue mode, dashboard alone" if kind == "postgres" else "embedded"
        rows = [
            (
                f"bulk restart of {n:,} ({mode}): POST ≤ {limit:g} s",
                fmt(r["post_seconds"], " s"),
                _within(r["post_seconds"], limit),
            )
        ]
        reps = r["repetitions"]
        created = [x["answer"]["restarted"] for x in reps]
        rows.append(
            (
                f"all {n:,} created",
                ", ".join(f"{c:,}" for c in created),
                _met(all(c == n for c in created)),
            )
        )
        if kind == "postgres":
            rows += _queue_targets(reps, n)
        else:
            once = [x["executions"]["ended_executed_once"] for x in reps]
            rows.append(
                (
                    f"all {n:,} ended, each executed once",
                    f"{fmt(r['ended_seconds'], ' s')} until all ended; "
                    + ", ".join(f"{o:,}" for o in once)
                    + " executed once",
                    _met(all(o == n for o in once)),
                )
            )
        out += [(kind, *row) for row in rows]
    for kind, d in report.get("dry_run", {}).items():
        for state, data in _dry_states(d):
            for key, what in (("every", "every run"), ("failed", "the failed runs")):
                matched = data[f"answer_{key}"]["matched"]
                out.append(
                    (
                        kind,
                        f"dry run over {what} ({matched:,}) ≤ 1 s{state}",
                        fmt(data[f"{key}_seconds"], " s"),
                        _within(data[f"{key}_seconds"], 1.0),
                    )
                )
    return out


def _dry_states(d: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The dry run's figures as seeded and, on PostgreSQL, after VACUUM."""
    if "after_vacuum" not in d:
        return [("", d)]
    return [(", as seeded (not vacuumed)", d), (", after VACUUM", d["after_vacuum"])]


def _restart_rows(report: dict[str, Any]) -> list[str]:
    out = [
        "| db | POST s | dry run s | POST ÷ dry run | bulk ms/run | single ms/run "
        "| single p50 ms | single ÷ bulk per run | all ended s | first start to last end s "
        "| runs/s |\n",
        "|---|---|---|---|---|---|---|---|---|---|---|\n",
    ]
    for kind, r in report["restart"].items():
        out.append(
            f"| {kind} | {fmt(r['post_seconds'])} | {fmt(r['dry_run_seconds'])} "
            f"| {fmt(r['post_over_dry_run'])} | {fmt(r['bulk_per_run_ms'])} "
            f"| {fmt(r['single_per_run_ms'])} | {fmt(r['single_p50_ms'])} "
            f"| {fmt(r['single_per_run_over_bulk_per_run'])} | {fmt(r['ended_seconds'])} "
            f"| {fmt(r['execution_span_seconds'])} | {fmt(r['runs_per_second'])} |\n"
        )
    return out


def _in_process_rows(kind: str, p: dict[str, Any]) -> list[str]:
    out = [
        f"\n{kind}: {p['restarted']:,} restarted in {p['total_ms']:,} ms in process; "
        f"{p['batch_defers']} batch deferrals {p['batch_defer_ms']} ms; Python, commit and "
        f"the rest {p['rest_ms']} ms.\n\n| ms | count | statement |\n|---|---|---|\n"
    ]
    for s in sorted(p["statements"], key=lambda s: -s["ms"]):
        out.append(f"| {s['ms']:,} | {s['count']} | `{s['sql']}` |\n")
    again = p.get("writes_again") or {}
    parts = []
    for name, label in (("insert", "INSERT … SELECT"), ("update_job_id", "UPDATE … SET job_id")):
        if f"{name}_ms" in again:
            parts.append(
                f"{label} {again[f'{name}_ms']} ms, {again[f'{name}_without_trigger_ms']} ms "
                "without the trigger that stamps `updated_at`"
            )
    if parts:
        out.append(
            "\nAgain, each in a transaction rolled back (PostgreSQL: under EXPLAIN ANALYZE): "
            + "; ".join(parts)
            + ".\n"
        )
    for name in ("insert", "update_job_id"):
        if again.get(f"{name}_plan"):
            out.append(f"\n`{name}`: " + "; ".join(again[f"{name}_plan"]) + "\n")
    return out


def _repetition_line(kind: str, x: dict[str, Any]) -> str:
    keys = ("matched", "restartable", "skipped", "restarted", "estimated_cost_usd")
    answer = {k: x["answer"][k] for k in keys}
    line = (
        f"- #{x['repetition']}: POST {x['post_seconds']} s, dry runs "
        f"{[round(s, 3) for s in x['dry_seconds']]} s, singles {json.dumps(x['single'])}, "
        f"answer {json.dumps(answer)}, ended after {x['ended_seconds']} s, "
        f"{json.dumps(x['executions'])}"
    )
    if kind == "postgres":
        line += (
            f"; jobs before {json.dumps(x['jobs_before'])}, after "
            f"{json.dumps(x['jobs_after'])}; ANALYZE {x['analyze_seconds']} s"
        )
        if x.get("worker_log"):
            line += f"; workers logged {x['worker_log'][:10]}"
    return line + "\n"


def _stale_section(pg: dict[str, Any]) -> str:
    stale = pg["repetitions"][0].get("stale_statistics")
    if not stale:
        return ""
    s, a = stale["stale"], stale["analyzed"]
    # Runs of this bench before the middle phase existed have two phases only.
    j = stale.get("jobs_analyzed")
    mid = " | after ANALYZE procrastinate_jobs only" if j else ""
    mid_maintenance = f" | {j['pending_without_live_job_ms']:,} ms" if j else ""
    mid_fetch = f" | {j['fetch_job_ms']:,} ms" if j else ""
    return (
        "\n### Queue mode right after the bulk restart (PostgreSQL "
        f"autovacuum: {pg.get('autovacuum')})\n\n"
        "What each worker runs every round, first with the statistics as the POST left "
        "them (those of before the restart, until autovacuum analyzes the tables within "
        "its naptime, or for good when it is off; unless the dashboard analyzed them "
        "itself meanwhile), then after ANALYZE:\n\n"
        f"| statement | as the POST left them{mid} | after ANALYZE of both |\n"
        f"|---|---|{'---|' if j else ''}---|\n"
        "| maintenance: pending runs without a live job (each worker, every 2 s) "
        f"| {s['pending_without_live_job_ms']:,} ms{mid_maintenance} | "
        f"{a['pending_without_live_job_ms']:,} ms |\n"
        "| procrastinate_fetch_job_v2 (each job a worker takes) | "
        f"{s['fetch_job_ms']:,} ms{mid_fetch} | {a['fetch_job_ms']:,} ms |\n\n"
        f"`{stale['sql']}`\n\nStale plan:\n\n```\n"
        + "\n".join(s["pending_without_live_job_plan"])
        + "\n```\n\nAfter ANALYZE:\n\n```\n"
        + "\n".join(a["pending_without_live_job_plan"])
        + "\n```\n"
    )


def _restart_section(report: dict[str, Any]) -> list[str]:
    plan = report["plan"]
    out = [
        f"\n## 1. Bulk restart of {plan['restart_runs']:,} failed runs\n\n"
        f"Each repetition: a fresh database with {plan['restart_runs'] + plan['singles']:,} "
        f"failed runs (3 mock nodes, no delay); {plan['singles']} single restarts one "
        "after the other (`single`: wall time / restarts); 3 dry runs of "
        '`{"filter": {"status": "failed"}}`; then the bulk restart of the same filter. '
        "PostgreSQL: EXECUTION=queue, the dashboard alone while it answers; then "
        "`ANALYZE workflow_run, procrastinate_jobs` (see the queue section) and two "
        "workers of concurrency 4, `all ended` counted from their start. SQLite: the "
        "dashboard executes them (CA_LOCAL_CONCURRENCY 8), `all ended` counted from the "
        "start of the POST.\n\n"
    ]
    out += _restart_rows(report)
    out.append("\nWhere the POST's time goes (a fresh database, the same restart in process):\n")
    for kind, r in report["restart"].items():
        out += _in_process_rows(kind, r["in_process"])
    for kind, r in report["restart"].items():
        out.append(f"\n{kind}, per repetition:\n\n")
        out += [_repetition_line(kind, x) for x in r["repetitions"]]
    if "postgres" in report["restart"]:
        out.append(_stale_section(report["restart"]["postgres"]))
    return out


def _plans(previews: list[dict[str, Any]]) -> list[str]:
    out = []
    for p in previews:
        out.append(f"#### {p['selection']}: {p['ms_in_process']} ms in process\n\n")
        ranked = sorted(p["statements"], key=lambda s: -s["ms"])
        # The statements that matter, with plans; the small ones (the workflows' median
        # costs, an index walk each) in one line.
        shown = [s for s in ranked if s["ms"] >= 0.1 * p["ms_in_process"]] or ranked[:1]
        for s in shown:
            out.append(f"- {s['ms']} ms: `{s['sql']}`\n")
            out.append("  ```\n" + "\n".join(f"  {x}" for x in s["plan"]) + "\n  ```\n")
        rest = ranked[len(shown) :]
        if rest:
            heads = sorted({_short(s["sql"], 90) for s in rest})
            out.append(
                f"- and {len(rest)} more statements, {sum(s['ms'] for s in rest):.1f} ms "
                "in all: " + "; ".join(f"`{h}`" for h in heads) + "\n"
            )
    return out


def _dry_run_section(report: dict[str, Any]) -> list[str]:
    out = [
        f"\n## 2. Dry run over {report['plan']['dry_runs']:,} runs\n\n"
        "Seeded 90% failed, a few thousand restart chains. Each round: the table partial "
        "of the failed runs (`GET /workflows/table?status=failed`, htmx), a dry run of "
        '`{"filter": {}}` (every run) and of `{"filter": {"status": "failed"}}`. '
        "`first`: the first request of each, caches cold. PostgreSQL: the rounds again "
        "after `VACUUM (ANALYZE) workflow_run`, which autovacuum would have done (it is "
        "off on this server) and which index-only scans need.\n\n"
        "| db | matched (every / failed) | dry run, every run s | dry run, failed s "
        "| table partial s | every ÷ table | failed ÷ table | first dry run s "
        "| first table s |\n|---|---|---|---|---|---|---|---|---|\n"
    ]
    for kind, d in report["dry_run"].items():
        for state, x in _dry_states(d):
            first = state == "" or "as seeded" in state
            out.append(
                f"| {kind}{state} | {x['answer_every']['matched']:,} / "
                f"{x['answer_failed']['matched']:,} | {fmt(x['every_seconds'])} "
                f"| {fmt(x['failed_seconds'])} | {fmt(x['table_seconds'])} "
                f"| {fmt(x['every_over_table'])} | {fmt(x['failed_over_table'])} "
                f"| {d['first_dry_run_seconds'] if first else '-'} "
                f"| {d['first_table_seconds'] if first else '-'} |\n"
            )
    for kind, d in report["dry_run"].items():
        vacuumed = f" VACUUM took {d['vacuum_seconds']} s." if "vacuum_seconds" in d else ""
        out.append(
            f"\n### {kind}: the preview's statements\n\nSeed: {json.dumps(d['seed'])}.{vacuumed}"
            f" Answer (every run): {json.dumps(d['answer_every'])}\n\n"
        )
        for state, x in _dry_states(d):
            if state:
                out.append(f"\n**{state.strip(', ')}**\n\n")
            out += _plans(x["in_process"]["previews"])
    return out


def _executor_section(e: dict[str, Any]) -> list[str]:
    out = [
        "\n## 3. Resume's cost per node (in process)\n\n"
        f"A linear workflow of {e['nodes']} mock nodes (and of 1, for the fixed cost of a "
        "run) through `execute(spec, state, recorder=MemoryRecorder())`, "
        f"{e['executions_per_round']} executions per variant and round, {e['rounds']} "
        "rounds. Per node: (run of N - run of 1) / (N - 1). A Replay is built per "
        "execution, as a resume builds one per run.\n\n"
        f"| variant | µs per run ({e['nodes']} nodes) | µs per run (1 node) "
        "| µs per node | ÷ plain | minus plain, µs per node |\n|---|---|---|---|---|---|\n"
    ]
    whole = f"us_per_run_{e['nodes']}_nodes"
    for v, s in e["variants"].items():
        out.append(
            f"| {v} | {fmt(s[whole])} "
            f"| {fmt(s['us_per_run_1_node'])} | {fmt(s['us_per_node_marginal'])} "
            f"| {fmt(s['over_plain'])} | {fmt(s['minus_plain_us_per_node'])} |\n"
        )
    return out


def markdown(report: dict[str, Any]) -> str:
    hw = report["hardware"]
    out = [
        f"# Bulk restart and resume benchmark {report['started']}\n\n",
        f"Commit {report['commit']}; {hw['cpu']}, {hw['cores']} cores; Python {hw['python']}, "
        f"SQLite {hw['sqlite']}, PostgreSQL {hw['postgresql']}. Mode: {report['mode']} "
        f"({report['plan']}); {report.get('seconds')} s in all.\n\n",
        "Figures are median [min..max] over the repetitions (restart: a fresh database and "
        "server each) or rounds (dry run, executor). Ratios are taken within a repetition or "
        "round, against a baseline measured in it: the machine is shared.\n\n",
        "## Targets\n\nMet on the median; in brackets, whether every repetition or round "
        "was.\n\n| db | target | measured | met |\n|---|---|---|---|\n",
    ]
    out += [f"| {k} | {t} | {m} | {ok} |\n" for k, t, m, ok in targets(report)]
    if report.get("restart"):
        out += _restart_section(report)
    if report.get("dry_run"):
        out += _dry_run_section(report)
    if report.get("executor"):
        out += _executor_section(report["executor"])
    log = report.get("server_log_summary")
    out.append("\n## Server log\n\nDistinct lines, by part")
    out.append(":\n\n```\n" + "\n".join(log) + "\n```\n" if log else ": nothing.\n")
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1k runs to restart, 10k dry run")
    parser.add_argument("--databases", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument(
        "--inprocess", choices=("restart", "preview", "queue"), help=argparse.SUPPRESS
    )
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inprocess:
        work: dict[str, Callable[[str], Any]] = {
            "restart": inprocess_restart,
            "preview": inprocess_preview,
            "queue": inprocess_queue,
        }
        print(json.dumps(asyncio.run(work[args.inprocess](args.database_url))))
        return
    kinds = database_kinds(parser, args.databases)
    # A plain `kill` should stop the servers and workers and drop the databases too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    plan = QUICK if args.quick else FULL
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        # BENCH_COMMIT: when run from an exported tree (`git archive`), which has no .git
        "commit": os.environ.get("BENCH_COMMIT") or git_commit(),
        "hardware": hardware(),
        "plan": plan.__dict__,
        "databases": kinds,
    }
    began = time.perf_counter()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"bulk-{started.strftime('%Y%m%d-%H%M%S')}-{report['mode']}"

    def write() -> str:
        # after every part, so that a long run that fails keeps what it measured
        report["seconds"] = round(time.perf_counter() - began, 1)
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        text = markdown(report)
        stem.with_suffix(".md").write_text(text)
        return text

    # First, while no server or worker of ours runs beside it.
    print(f"[executor] {plan.nodes} mock nodes, plain, empty replay, full replay", flush=True)
    report["executor"] = asyncio.run(executor_part(plan))
    write()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        try:
            for kind in kinds:
                print(f"[{kind}] bulk restart of {plan.restart_runs:,} runs", flush=True)
                report.setdefault("restart", {})[kind] = restart_part(kind, plan, log)
                write()
                report.setdefault("dry_run", {})[kind] = dry_run_part(kind, plan, log)
                write()
        finally:
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            report["server_log_summary"] = log_summary(lines)
            text = write()
    print(text)
    print(f"wrote {stem}.json and .md in {report['seconds']} s")


if __name__ == "__main__":
    sys.exit(main())
