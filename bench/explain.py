"""The query plans of the store's reads, on a seeded database.

    python -m bench.explain [--database-url URL] [--json]

Calls the RunStore methods the dashboard uses (list_runs with and without
filters, page 20 through the cursor, get_detail, get_summary, workflow_names,
inputs_outputs, and the recovery sweep's read), records the SQL Piccolo sends,
and asks the database how it runs each statement: EXPLAIN QUERY PLAN on SQLite,
EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL. Each statement is also timed on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["explain"]


def _is_select(sql: str) -> bool:
    return sql.lstrip().upper().startswith(("SELECT", "WITH"))


async def _scenarios(store: Any, workflow: str) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    from app.store.models import Cursor, RunFilters

    first = await store.list_runs(RunFilters())
    page = first
    for _ in range(19):
        if page.next_cursor is None:
            break
        page = await store.list_runs(RunFilters(), Cursor.decode(page.next_cursor))
    cursor20 = Cursor.decode(page.next_cursor) if page.next_cursor else None
    with_parent = next((r for r in first.runs if r.restarted_from), first.runs[0])
    restarted = await store.list_runs(RunFilters(status="failed"), limit=200)
    parent = next((r for r in restarted.runs if r.restarted_as), restarted.runs[0])
    ids = [r.id for r in first.runs]
    return [
        ("list_runs: first page", lambda: store.list_runs(RunFilters())),
        ("list_runs: status=failed", lambda: store.list_runs(RunFilters(status="failed"))),
        ("list_runs: workflow filter", lambda: store.list_runs(RunFilters(workflow=workflow))),
        (
            "list_runs: status=running & workflow",
            lambda: store.list_runs(RunFilters(status="running", workflow=workflow)),
        ),
        ("list_runs: page 20 by cursor", lambda: store.list_runs(RunFilters(), cursor20)),
        ("list_runs: run-id prefix", lambda: store.list_runs(RunFilters(id_prefix=ids[0][:4]))),
        ("workflow_names", store.workflow_names),
        ("get_detail (a restarted run)", lambda: store.get_detail(parent.id)),
        ("get_summary (a restart)", lambda: store.get_summary(with_parent.id)),
        ("inputs_outputs (JSON list)", lambda: store.inputs_outputs(ids)),
        ("recovery sweep: owners of active runs whose process stopped", store.owners_gone),
        (
            "recovery sweep: runs of unknown owners",
            # a stale window long past: the statement runs, and changes nothing
            lambda: store.interrupt_unknown_owners(10**9),
        ),
    ]


async def _plan_sqlite(path: str, sql: str, args: list[Any]) -> tuple[list[str], float]:
    import piccolo.engine.sqlite  # noqa: F401  (registers the UUID and datetime adapters)

    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
        plan = [f"{'  ' * _depth(rows, r)}{r[3]}" for r in rows]
        times = [0.0]
        for _ in range(3 if _is_select(sql) else 0):
            began = time.perf_counter()
            conn.execute(sql, args).fetchall()
            times.append((time.perf_counter() - began) * 1000)
        return plan, statistics.median(times[1:] or times)
    finally:
        conn.close()


def _depth(rows: list[tuple[Any, ...]], row: tuple[Any, ...]) -> int:
    parents = {r[0]: r[1] for r in rows}
    depth, parent = 0, row[1]
    while parent in parents:
        depth += 1
        parent = parents[parent]
    return depth


async def _plan_postgres(url: str, sql: str, args: list[Any]) -> tuple[list[str], float]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        # ANALYZE executes the statement: only for reads
        how = "(ANALYZE, BUFFERS)" if _is_select(sql) else ""
        rows = await conn.fetch(f"EXPLAIN {how} {sql}", *args)
        plan = [r[0] for r in rows]
        times = [0.0]
        for _ in range(3 if _is_select(sql) else 0):
            began = time.perf_counter()
            await conn.fetch(sql, *args)
            times.append((time.perf_counter() - began) * 1000)
        return plan, statistics.median(times[1:] or times)
    finally:
        await conn.close()


async def explain(database_url: str, workflow: str = "code_reviewer") -> list[dict[str, Any]]:
    """Each scenario: its in-process time, and each statement's SQL, plan and time."""
    from app.settings import normalise_database_url
    from app.store import db
    from app.store.runs import RunStore

    url = normalise_database_url(database_url)
    engine = db.configure(url)
    await db.open_pool()
    captured: list[tuple[str, list[Any]]] = []
    # patched on the class: PostgresEngine instances do not take new attributes
    engine_class = type(engine)
    original = engine_class.run_querystring

    async def recording(self: Any, querystring: Any, in_pool: bool = True) -> Any:
        captured.append(querystring.compile_string(engine_type=engine.engine_type))
        return await original(self, querystring, in_pool=in_pool)

    results = []
    try:
        store = RunStore()
        scenarios = await _scenarios(store, workflow)
        for name, call in scenarios:
            times = []
            for _ in range(5):
                began = time.perf_counter()
                await call()
                times.append((time.perf_counter() - began) * 1000)
            captured.clear()
            engine_class.run_querystring = recording  # type: ignore[method-assign]
            try:
                await call()
            finally:
                engine_class.run_querystring = original  # type: ignore[method-assign]
            statements = []
            for sql, args in list(captured):
                if url.startswith("sqlite:///"):
                    plan, ms = await _plan_sqlite(url.removeprefix("sqlite:///"), sql, args)
                else:
                    plan, ms = await _plan_postgres(url, sql, args)
                statements.append({"sql": sql, "plan": plan, "ms": round(ms, 2)})
            results.append(
                {
                    "scenario": name,
                    "ms_in_process": round(statistics.median(times), 2),
                    "statements": statements,
                }
            )
    finally:
        await db.close()
    return results


def as_markdown(results: list[dict[str, Any]]) -> str:
    out = []
    for r in results:
        out.append(f"#### {r['scenario']} — {r['ms_in_process']} ms in process\n")
        for s in r["statements"]:
            out.append(f"- {s['ms']} ms: `{_short(s['sql'])}`\n")
            out.append("  ```\n" + "\n".join(f"  {line}" for line in s["plan"]) + "\n  ```\n")
    return "".join(out)


def _short(sql: str, limit: int = 300) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= limit else sql[:limit] + " …"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--workflow", default="code_reviewer")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args()
    results = asyncio.run(explain(args.database_url, args.workflow))
    print(json.dumps(results, indent=2) if args.json else as_markdown(results))


if __name__ == "__main__":
    main()
