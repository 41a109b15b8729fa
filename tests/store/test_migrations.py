"""Migrations create the schema on an empty database, and a second run changes nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support import BACKEND, PG_ADMIN_URL, pg_admin

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _schema(url: str) -> tuple[set[str], set[str]]:
    """Table and index names of the database at `url`."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            rows = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
        finally:
            conn.close()
        return {n for t, n in rows if t == "table"}, {n for t, n in rows if t == "index"}
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        indexes = {
            r["indexname"]
            for r in await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
            )
        }
    finally:
        await conn.close()
    return tables, indexes


@pytest.fixture
def fresh_url(tmp_path: Path):
    if BACKEND == "postgres":
        name = f"ca_mig_{uuid.uuid4().hex[:10]}"
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        yield f"sqlite:///{tmp_path / 'fresh.db'}"


def test_migrate_creates_schema_and_is_idempotent(fresh_url: str) -> None:
    first = _cli("migrate", url=fresh_url)
    assert first.returncode == 0, first.stderr
    assert "migrations applied" in first.stdout
    tables, indexes = asyncio.run(_schema(fresh_url))
    assert {"workflow_run", "step_run", "run_process", "web_session", "audit_entry"} <= tables
    assert {
        "workflow_run_created",
        "workflow_run_status_created",
        "workflow_run_name_created",
        "workflow_run_restarted_from",
        "workflow_run_one_restart",
        "workflow_run_active_owner",
        "step_run_run_order",
        "workflow_run_name_status_created",
        "workflow_run_active_heartbeat",
        "audit_entry_run",
        "audit_entry_new_run",
    } <= indexes
    assert "workflow_run_one_active_restart" not in indexes
    if BACKEND == "postgres":
        # New words go into the search index at once: no pending list for searches to read.
        options = asyncio.run(
            _sql(
                fresh_url, ["SELECT reloptions FROM pg_class WHERE relname = 'workflow_run_search'"]
            )
        )
        assert options == [(["fastupdate=off"],)]

    second = _cli("migrate", url=fresh_url)
    assert second.returncode == 0, second.stderr
    assert "no migrations needed" in second.stdout
    assert asyncio.run(_schema(fresh_url)) == (tables, indexes)

    # A migration the table does not list (a new release's) is applied, not skipped by
    # the check that spares an up-to-date server Piccolo's runner.
    last = "2026-12-01T12:00:00:000000"
    asyncio.run(_sql(fresh_url, [f"DELETE FROM migration WHERE name = '{last}'", "SELECT 1"]))
    third = _cli("migrate", url=fresh_url)
    assert third.returncode == 0, third.stderr
    assert "migrations applied" in third.stdout
    listed = asyncio.run(_sql(fresh_url, [f"SELECT name FROM migration WHERE name = '{last}'"]))
    assert listed == [(last,)]


def test_the_dashboard_process_leaves_migration_and_http_tooling_unloaded(
    fresh_url: str,
) -> None:
    """Piccolo's app registry loads black and httpx loads its command line client: some
    15 MB a server would hold all day. Started on a migrated database, the dashboard
    loads neither (nor the migration modules) until something needs them."""
    assert _cli("migrate", url=fresh_url).returncode == 0
    probe = """
import asyncio, sys
from app.web.app import create_app

async def main():
    app = create_app()
    sent = []
    inbox = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    async def send(message):
        sent.append(message["type"])
        if message["type"].startswith("lifespan.startup"):
            await inbox.put({"type": "lifespan.shutdown"})
    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)
    print(sent)
    heavy = ("black", "httpx", "click", "rich", "app.store.piccolo_", "runs_")
    print(sorted(m for m in sys.modules if m.startswith(heavy)))

asyncio.run(main())
"""
    env = {**os.environ, "DATABASE_URL": fresh_url, "CA_STALE_AFTER_SECONDS": "1000000000"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    sent, loaded = out.stdout.strip().splitlines()[-2:]
    assert sent == "['lifespan.startup.complete', 'lifespan.shutdown.complete']", out.stdout
    assert loaded == "[]"


async def _sql(url: str, statements: list[str]) -> list[tuple]:
    """Run statements on `url` outside the app; returns the last one's rows."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            rows: list[tuple] = []
            for statement in statements:
                rows = conn.execute(statement).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for statement in statements[:-1]:
            await conn.execute(statement)
        return [tuple(r) for r in await conn.fetch(statements[-1])]
    finally:
        await conn.close()


def test_a_database_with_several_restarts_of_one_run_migrates_to_one_chain(
    fresh_url: str,
) -> None:
    """Before restart-once, A could be restarted as B, then (once B ended) as C and D,
    and B again as E. Migrating keeps every run and links them into one chain each,
    oldest first, with attempts recounted along it."""
    env = {**os.environ, "DATABASE_URL": fresh_url, "PICCOLO_CONF": "app.store.piccolo_conf"}
    before = subprocess.run(
        [
            str(Path(sys.executable).parent / "piccolo"),
            "migrations",
            "forwards",
            "runs",
            "2026-11-26T07:50:00:000000",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert before.returncode == 0, before.stdout + before.stderr
    ids = {name: str(uuid.UUID(int=i + 1)) for i, name in enumerate("ABCDEF")}
    rows = [  # name, restarted from, attempt, minute created
        ("A", None, 1, 0),
        ("B", "A", 2, 1),
        ("C", "A", 2, 2),
        ("D", "A", 2, 3),
        ("E", "B", 3, 4),
        ("F", None, 1, 5),
    ]
    inserts = [
        "INSERT INTO workflow_run (id, workflow_name, status, trigger, attempt,"
        " restarted_from, inputs, created_at, total_tokens, total_cost_usd, steps_total,"
        f" steps_done) VALUES ('{ids[n]}', 'echo', 'failed', 'api', {attempt},"
        f" {repr(ids[parent]) if parent else 'NULL'}, '{{}}',"
        f" '2026-03-14 12:{minute:02d}:00+00:00', 0, 0, 1, 0)"
        for n, parent, attempt, minute in rows
    ]
    asyncio.run(_sql(fresh_url, inserts))

    migrated = _cli("migrate", url=fresh_url)
    assert migrated.returncode == 0, migrated.stderr
    names = {v: k for k, v in ids.items()}
    found = asyncio.run(_sql(fresh_url, ["SELECT id, restarted_from, attempt FROM workflow_run"]))
    lineage = {
        names[str(run_id)]: (names[str(parent)] if parent else None, attempt)
        for run_id, parent, attempt in found
    }
    # A keeps B; C goes after B, D after C; then B has E and C: C (older) stays, and E
    # moves after the tip of C's line, where D already is, and so on down the chain.
    assert lineage["A"] == (None, 1) and lineage["F"] == (None, 1)
    chain, node = ["A"], "A"
    children = {parent: [n for n, (p, _) in lineage.items() if p == parent] for parent in ids}
    assert all(len(kids) <= 1 for kids in children.values()), children
    while children[node]:
        node = children[node][0]
        chain.append(node)
    assert sorted(chain) == ["A", "B", "C", "D", "E"]
    assert [lineage[n][1] for n in chain] == [1, 2, 3, 4, 5]
    # The database now refuses a second restart of any run.
    dup = (
        "INSERT INTO workflow_run (id, workflow_name, status, trigger, attempt,"
        f" restarted_from, inputs, created_at, total_tokens, total_cost_usd, steps_total,"
        f" steps_done) VALUES ('{uuid.UUID(int=99)}', 'echo', 'failed', 'api', 2,"
        f" '{ids['A']}', '{{}}', '2026-03-14 13:00:00+00:00', 0, 0, 1, 0)"
    )
    with pytest.raises(Exception, match=r"(?i)unique"):
        asyncio.run(_sql(fresh_url, [dup, "SELECT 1"]))


def _forwards_to(url: str, migration_id: str) -> None:
    env = {**os.environ, "DATABASE_URL": url, "PICCOLO_CONF": "app.store.piccolo_conf"}
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "piccolo"),
            "migrations",
            "forwards",
            "runs",
            migration_id,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_progress_of_existing_runs_is_counted_again_as_nodes_done(fresh_url: str) -> None:
    """steps_done used to count node executions (a loop of three: 3 of 1). Migrating
    counts nodes done from each run's steps, with its iterations and fan-out items."""
    _forwards_to(fresh_url, "2026-11-30T23:40:00:000000")
    runs = {
        name: str(uuid.UUID(int=i + 1)) for i, name in enumerate(["loop", "fan", "failed", "plain"])
    }
    # name: steps_total, old steps_done, steps as (node, item index, status, tool)
    plans = {
        "loop": (1, 3, [("refine", None, "completed", None)] * 3),
        "fan": (
            2,
            5,
            [("split", None, "completed", None)]
            + [("translate", i, "completed", None) for i in range(3)]
            + [("translate", 3, "failed", None), ("split", None, "completed", "sandbox")],
        ),
        "failed": (2, 1, [("first", None, "failed", None)]),
        "plain": (2, 2, [("a", None, "completed", None), ("b", None, "reused", None)]),
    }
    statements = []
    for name, (total, done, steps) in plans.items():
        statements.append(
            "INSERT INTO workflow_run (id, workflow_name, status, trigger, attempt, inputs,"
            " created_at, total_tokens, total_cost_usd, steps_total, steps_done) VALUES"
            f" ('{runs[name]}', 'w', 'failed', 'api', 1, '{{}}',"
            f" '2026-03-14 12:00:00+00:00', 0, 0, {total}, {done})"
        )
        for order, (node, item, status, tool) in enumerate(steps):
            statements.append(
                "INSERT INTO step_run (id, run, node_id, step_order, item_index, status,"
                " started_at, tokens, tries, cost_usd, tool) VALUES"
                f" ('{uuid.uuid4()}', '{runs[name]}', '{node}', {order},"
                f" {'NULL' if item is None else item}, '{status}', '2026-03-14 12:00:00+00:00',"
                f" 0, 1, 0, {'NULL' if tool is None else repr(tool)})"
            )
    asyncio.run(_sql(fresh_url, [*statements, "SELECT 1"]))

    migrated = _cli("migrate", url=fresh_url)
    assert migrated.returncode == 0, migrated.stderr
    found = asyncio.run(
        _sql(fresh_url, ["SELECT id, steps_done, iterations, items_done FROM workflow_run"])
    )
    names = {v: k for k, v in runs.items()}
    progress = {names[str(run_id)]: tuple(rest) for run_id, *rest in found}
    assert progress == {
        "loop": (1, 3, 0),
        "fan": (2, 0, 3),  # the failed item and the sandbox call are not progress
        "failed": (0, 0, 0),
        "plain": (2, 0, 0),
    }
