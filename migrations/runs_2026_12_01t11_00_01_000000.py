"""steps_done counts nodes done, no longer node executions: a loop that ran one node
three times is 1 of 1, not 3 of 1. Existing runs are counted again from their steps,
with what repeated beside it (`iterations`, `items_done`).

Only the runs whose figures change are written: those with a loop, a fan-out, or a
failed or cancelled step (which no longer counts). One pass over the steps, grouped by
run and node, on SQLite and PostgreSQL alike.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-01T11:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "steps_done: distinct nodes done; iterations and fan-out items of existing runs"

DONE = "tool IS NULL AND status IN ('completed', 'reused')"
PER_RUN = (
    "SELECT run, count(*) AS nodes, sum(items) AS items,"
    " CASE WHEN max(executions) > 1 THEN max(executions) ELSE 0 END AS most"
    " FROM (SELECT run, node_id,"
    " sum(CASE WHEN item_index IS NOT NULL THEN 1 ELSE 0 END) AS items,"
    " sum(CASE WHEN item_index IS NULL THEN 1 ELSE 0 END) AS executions"
    f" FROM step_run WHERE {DONE} GROUP BY run, node_id) AS per_node GROUP BY run"
)
BACKFILL = (
    "UPDATE workflow_run SET steps_done = p.nodes, items_done = p.items, iterations = p.most"
    f" FROM ({PER_RUN}) AS p WHERE workflow_run.id = p.run"
    " AND (workflow_run.steps_done <> p.nodes OR p.items > 0 OR p.most > 0)",
    # Runs whose every step failed or was cancelled: nothing is done.
    "UPDATE workflow_run SET steps_done = 0 WHERE steps_done > 0 AND NOT EXISTS"
    f" (SELECT 1 FROM step_run WHERE step_run.run = workflow_run.id AND {DONE})",
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="runs", description=DESCRIPTION)

    async def run():
        db = engine_finder()
        for statement in BACKFILL:
            await db.run_ddl(statement)

    async def run_backwards():
        # Node executions again, as before.
        db = engine_finder()
        await db.run_ddl(
            "UPDATE workflow_run SET steps_done = (SELECT count(*) FROM step_run"
            " WHERE step_run.run = workflow_run.id AND step_run.tool IS NULL)"
        )

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
