"""Fill a database with N realistic runs, fast, by bulk insert.

    python -m bench.seed --runs 100000 [--database-url URL] [--append] [--seed 0]

The database is the one DATABASE_URL names (default: the embedded SQLite file).
The schema is migrated first. A database that already holds runs is refused
unless `--append` is given.

What a seeded run looks like: one of a dozen three-node workflows on the mock
provider without delay (so that a restart of it completes at once), a real
config snapshot, inputs of about 100 bytes, outputs of about 1 KB, one step row
per node that executed. Statuses are 70% completed, 20% failed, 5% running and
5% cancelled, created over the last 30 days; a few thousand restart chains
(attempt 2 and 3) hang off failed runs. `--failed-share 0.9` makes 90% of the
runs failed (the rest keeps the same proportions); `--no-chains` leaves the chains
out, so that every failed run can be restarted. Rows are written in the formats Piccolo
writes: on SQLite UUIDs and aware UTC timestamps as text and JSON as text, on
PostgreSQL native uuid, timestamptz and json.

Running runs have no owner and a heartbeat at seeding time: a dashboard with
the default `stale_after_seconds` (30 s) declares them interrupted 30 s after
seeding. Set CA_STALE_AFTER_SECONDS high to keep them running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["WORKFLOW_NAMES", "SeedReport", "seed", "workflow_yaml"]

WORKFLOW_NAMES = (
    "article_writer",
    "support_triage",
    "invoice_extractor",
    "code_reviewer",
    "meeting_summary",
    "lead_enricher",
    "translation_pipeline",
    "release_notes",
    "contract_checker",
    "incident_postmortem",
    "product_descriptions",
    "research_digest",
)
NODES = ("research", "draft", "review")
DAYS = 30
CHUNK = 5000

RUN_COLUMNS = (
    "id",
    "workflow_name",
    "status",
    "trigger",
    "attempt",
    "restarted_from",
    "config_snapshot",
    "inputs",
    "outputs",
    "error_type",
    "error_message",
    "error_node",
    "created_at",
    "started_at",
    "completed_at",
    "total_tokens",
    "total_cost_usd",
    "steps_total",
    "steps_done",
    "current_node",
    "owner",
    "heartbeat_at",
)
STEP_COLUMNS = (
    "id",
    "run",
    "node_id",
    "step_order",
    "item_index",
    "status",
    "started_at",
    "completed_at",
    "duration_ms",
    "output",
    "error",
    "tokens",
    "tries",
)

ERRORS = (
    ("ProviderError", "the provider answered 503 Service Unavailable after 3 tries"),
    ("OutputInvalid", "node output 'draft' is not a str: got null from the model"),
    ("TimeoutError", "the node did not answer within 60 s (config.execution.timeout)"),
    ("MockFailure", "configured to fail on attempt 1 (config.llm.fail_on_attempt)"),
)
WORDS = [
    "solar",
    "storage",
    "grid",
    "battery",
    "inverter",
    "tariff",
    "demand",
    "forecast",
    "panel",
    "module",
    "efficiency",
    "policy",
    "subsidy",
    "market",
    "supply",
    "chain",
    "cost",
    "install",
    "maintenance",
    "weather",
    "winter",
    "summer",
    "peak",
    "load",
    "capacity",
    "regional",
    "utility",
    "report",
]


def workflow_yaml(name: str) -> str:
    """A three-node workflow on the mock provider, without delay, described like a real one."""
    title = name.replace("_", " ")
    return f"""
schema_version: "1.0"
flow:
  name: {name}
  description: >-
    Researches the subject of a {title} job, drafts the deliverable from the
    research, then reviews the draft for accuracy and tone before it is handed over.
  version: "2.3.1"
state:
  fields:
    topic: {{type: str, required: true, description: What the {title} job is about}}
    research: {{type: str, default: "", description: Facts collected by the research node}}
    draft: {{type: str, default: "", description: The deliverable written from the research}}
    review: {{type: str, default: "", description: The reviewer's verdict on the draft}}
nodes:
  - id: research
    description: Collect the facts and the key points the draft must cover, with sources.
    prompt: "Research {{state.topic}} for a {title}. List the key points and the sources."
    outputs: [research]
  - id: draft
    description: Write the deliverable from the research, in the house style, about 600 words.
    prompt: "Write the {title} about {{state.topic}} from this research: {{state.research}}"
    outputs: [draft]
  - id: review
    description: Check the draft against the research for accuracy, tone and completeness.
    prompt: "Review this draft against the research and give a verdict: {{state.draft}}"
    outputs: [review]
edges:
  - {{from: START, to: research}}
  - {{from: research, to: draft}}
  - {{from: draft, to: review}}
  - {{from: review, to: END}}
config:
  llm: {{provider: mock, model: {name}-mock}}
  execution: {{timeout: 60, max_retries: 2}}
"""


def snapshots() -> dict[str, str]:
    from app.workflows.loader import parse_workflow

    return {
        name: json.dumps(parse_workflow(workflow_yaml(name), source=name).snapshot())
        for name in WORKFLOW_NAMES
    }


@dataclass
class SeedReport:
    database_url: str
    runs: int = 0
    steps: int = 0
    seconds: float = 0.0
    by_status: dict[str, int] = field(default_factory=dict)
    chains: int = 0
    snapshot_bytes: int = 0
    inputs_bytes: int = 0
    outputs_bytes: int = 0
    # a sample of ids, for the benchmark: failed runs nobody restarted, and a few of each kind
    failed_ids: list[str] = field(default_factory=list)
    sample_ids: dict[str, str] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return (self.runs + self.steps) / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
            "rows_per_second": round(self.rows_per_second),
            "by_status": self.by_status,
            "restart_chains": self.chains,
            "snapshot_bytes": self.snapshot_bytes,
            "inputs_bytes": self.inputs_bytes,
            "outputs_bytes": self.outputs_bytes,
        }


class _Generator:
    """Rows in chronological order, as tuples in RUN_COLUMNS / STEP_COLUMNS order.

    `text=True` gives what Piccolo's SQLite engine stores (UUIDs and aware UTC
    datetimes as `str()`); otherwise native values for asyncpg. Payloads (inputs,
    outputs, step outputs) come from a pool built once, so that generating a row
    costs little more than its random draws.
    """

    POOL = 512

    def __init__(
        self,
        count: int,
        rng: random.Random,
        now: datetime,
        report: SeedReport,
        *,
        text: bool,
        failed_share: float | None = None,
        chains: bool = True,
    ):
        self.count = count
        self.failed_share = failed_share
        self.rng = rng
        self.now = now
        self.report = report
        self.conv: Any = str if text else (lambda v: v)
        self.snapshots = snapshots()
        self.start = now - timedelta(days=DAYS)
        self.step = timedelta(days=DAYS) / max(count, 1)
        # a few thousand restart chains at the larger sizes, proportionally fewer below
        self.chain_rate = min(5000, max(1, count // 50)) / max(count, 1) if chains else 0.0
        filler = [" ".join(rng.choices(WORDS, k=40)) for _ in range(64)]

        def words(size: int) -> str:
            out = ""
            while len(out) < size:
                out += rng.choice(filler) + " "
            return out[:size].strip()

        sizes = {"research": 400, "draft": 450, "review": 120}
        self.payloads = []
        for _ in range(self.POOL):
            topic = words(rng.randrange(70, 90))
            outs = {node: words(size) for node, size in sizes.items()}
            # the final state after 0, 1, 2 or 3 nodes; unrun fields keep their default ""
            states = [
                json.dumps(
                    {"topic": topic, **{n: (outs[n] if i < k else "") for i, n in enumerate(NODES)}}
                )
                for k in range(4)
            ]
            self.payloads.append(
                (json.dumps({"topic": topic}), [json.dumps({n: outs[n]}) for n in NODES], states)
            )
        report.snapshot_bytes = len(self.snapshots[WORKFLOW_NAMES[0]])
        report.inputs_bytes = len(self.payloads[0][0])
        report.outputs_bytes = len(self.payloads[0][2][3])

    def _id(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _status(self) -> str:
        r = self.rng.random()
        if self.failed_share is not None:
            if r < self.failed_share:
                return "failed"
            # the others in the usual proportions (70 : 5 : 5)
            r = 0.2 + 0.8 * (r - self.failed_share) / (1 - self.failed_share)
            return "completed" if r < 0.9 else "running" if r < 0.95 else "cancelled"
        if r < 0.70:
            return "completed"
        if r < 0.90:
            return "failed"
        return "running" if r < 0.95 else "cancelled"

    def runs(self) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
        made = 0
        i = 0
        rng = self.rng
        report = self.report
        while made < self.count:
            created = self.start + self.step * i + timedelta(microseconds=rng.randrange(1, 1000))
            i += 1
            name = rng.choice(WORKFLOW_NAMES)
            room = self.count - made
            if room >= 2 and rng.random() < self.chain_rate:
                length = min(room, rng.choice((2, 2, 3)))
                parent: uuid.UUID | None = None
                for attempt in range(1, length + 1):
                    last = attempt == length
                    status = "completed" if last and rng.random() < 0.8 else "failed"
                    at = created + timedelta(minutes=3 * (attempt - 1), seconds=rng.random())
                    run_id = self._id()
                    yield self._run(run_id, name, status, at, attempt, parent)
                    parent = run_id
                    made += 1
                report.chains += 1
                report.sample_ids.setdefault("chain_last", str(parent))
                continue
            run_id = self._id()
            status = self._status()
            yield self._run(run_id, name, status, created, 1, None)
            made += 1
            if status == "failed":
                report.failed_ids.append(str(run_id))
            report.sample_ids.setdefault(status, str(run_id))

    def _run(
        self,
        run_id: uuid.UUID,
        name: str,
        status: str,
        created: datetime,
        attempt: int,
        parent: uuid.UUID | None,
    ) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        rng = self.rng
        conv = self.conv
        inputs, step_outputs, states = self.payloads[rng.randrange(self.POOL)]
        started = created + timedelta(milliseconds=rng.randrange(5, 400))
        # completed: all three nodes ran; otherwise the index of the node that failed,
        # was running, or would have run next when the run was cancelled
        executed = 3 if status == "completed" else rng.randrange(0, 3)
        error = None
        if status == "failed":
            error = rng.choice(ERRORS)
        elif status == "cancelled":
            error = ("Cancelled", "cancelled by an operator")
        steps = []
        at = started
        tokens = 0
        rid = conv(run_id)
        for order, node in enumerate(NODES):
            done = order < executed
            if not done and not (order == executed and status in ("running", "failed")):
                break
            step_status = "completed" if done else status
            ended = step_status != "running"
            duration = timedelta(milliseconds=rng.randrange(300, 20000))
            step_tokens = rng.randrange(200, 2000) if done else 0
            tokens += step_tokens
            steps.append(
                (
                    conv(self._id()),
                    rid,
                    node,
                    order,
                    None,
                    step_status,
                    conv(at),
                    conv(at + duration) if ended else None,
                    duration.total_seconds() * 1000 if ended else None,
                    step_outputs[order] if done else None,
                    error[1] if error and step_status == "failed" else None,
                    step_tokens,
                    1 if done else rng.randrange(1, 4),
                )
            )
            at += duration
        terminal = status != "running"
        run = (
            rid,
            name,
            status,
            rng.choice(("cli", "dashboard", "api")) if attempt == 1 else "dashboard",
            attempt,
            conv(parent) if parent else None,
            self.snapshots[name],
            inputs,
            states[executed] if status in ("completed", "failed") else None,
            error[0] if error else None,
            error[1] if error else None,
            NODES[executed] if status == "failed" else None,
            conv(created),
            conv(started),
            conv(at + timedelta(milliseconds=5)) if terminal else None,
            tokens,
            round(tokens * 0.000002, 6),
            len(NODES),
            executed,
            NODES[executed] if status == "running" else None,
            "seed-host:1" if terminal else None,
            conv(at if terminal else self.now),
        )
        self.report.by_status[status] = self.report.by_status.get(status, 0) + 1
        return run, steps


def _chunks(gen: _Generator, size: int) -> Iterator[tuple[list[Any], list[Any]]]:
    runs: list[Any] = []
    steps: list[Any] = []
    for run, run_steps in gen.runs():
        runs.append(run)
        steps.extend(run_steps)
        if len(runs) >= size:
            yield runs, steps
            runs, steps = [], []
    if runs:
        yield runs, steps


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    return f'INSERT INTO "{table}" ({names}) VALUES ({marks})'


def _seed_sqlite(path: str, gen: _Generator, report: SeedReport) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-200000")
        run_sql = _insert_sql("workflow_run", RUN_COLUMNS)
        step_sql = _insert_sql("step_run", STEP_COLUMNS)
        for runs, steps in _chunks(gen, CHUNK):
            conn.execute("BEGIN")
            conn.executemany(run_sql, runs)
            conn.executemany(step_sql, steps)
            conn.execute("COMMIT")
            report.runs += len(runs)
            report.steps += len(steps)
        conn.execute("ANALYZE")
    finally:
        conn.close()


async def _seed_postgres(url: str, gen: _Generator, report: SeedReport) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for runs, steps in _chunks(gen, CHUNK):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "workflow_run",
                    records=runs,
                    columns=RUN_COLUMNS,
                )
                await conn.copy_records_to_table(
                    "step_run",
                    records=steps,
                    columns=STEP_COLUMNS,
                )
            report.runs += len(runs)
            report.steps += len(steps)
        await conn.execute("ANALYZE workflow_run")
        await conn.execute("ANALYZE step_run")
    finally:
        await conn.close()


async def _has_runs(url: str) -> bool:
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return conn.execute("SELECT EXISTS (SELECT 1 FROM workflow_run)").fetchone()[0] == 1
        finally:
            conn.close()
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM workflow_run)"))
    finally:
        await conn.close()


async def seed(
    database_url: str,
    runs: int,
    *,
    append: bool = False,
    random_seed: int = 0,
    now: datetime | None = None,
    failed_share: float | None = None,
    chains: bool = True,
) -> SeedReport:
    """Migrate `database_url`, then insert `runs` runs and their steps. Refuses a
    database that holds runs unless `append`. `failed_share` (0..1) replaces the 20%
    of failed runs; `chains=False` makes no restart chains."""
    from app.settings import normalise_database_url
    from app.store import db

    url = normalise_database_url(database_url)
    db.configure(url)
    await db.migrate()
    await db.close()
    if not append and await _has_runs(url):
        raise SystemExit(f"{_redacted(url)} already holds runs: pass --append to add more")
    report = SeedReport(database_url=url)
    sqlite = url.startswith("sqlite:///")
    gen = _Generator(
        runs,
        random.Random(random_seed),
        now or datetime.now(UTC),
        report,
        text=sqlite,
        failed_share=failed_share,
        chains=chains,
    )
    began = time.perf_counter()
    if sqlite:
        await asyncio.to_thread(_seed_sqlite, url.removeprefix("sqlite:///"), gen, report)
    else:
        await _seed_postgres(url, gen, report)
    report.seconds = time.perf_counter() - began
    return report


def _redacted(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def main() -> None:
    import os

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, required=True, help="how many runs to insert")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="default: DATABASE_URL, else the embedded SQLite file",
    )
    parser.add_argument("--append", action="store_true", help="add to a database holding runs")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--failed-share", type=float, help="share of failed runs, 0..1 (default 0.2)"
    )
    parser.add_argument("--no-chains", action="store_true", help="no restart chains")
    parser.add_argument(
        "--report-json", type=Path, help="also write the report, with sample run ids, here"
    )
    args = parser.parse_args()
    report = asyncio.run(
        seed(
            args.database_url,
            args.runs,
            append=args.append,
            random_seed=args.seed,
            failed_share=args.failed_share,
            chains=not args.no_chains,
        )
    )
    print(
        f"seeded {report.runs} runs and {report.steps} steps into "
        f"{_redacted(report.database_url)} in {report.seconds:.1f} s "
        f"({report.rows_per_second:,.0f} rows/s)"
    )
    print(json.dumps(report.as_dict(), indent=2))
    if args.report_json:
        full = {
            **report.as_dict(),
            "failed_ids": report.failed_ids,
            "sample_ids": report.sample_ids,
        }
        args.report_json.write_text(json.dumps(full))


if __name__ == "__main__":
    main()
