"""A run is restarted at most once, ever: its restarts form one chain.

Until now the database refused only a second *active* restart, so a run could have
several finished restarts. Before the new unique index can be built, each such run
keeps its oldest restart, and every later restart is moved to the end of the chain:
it becomes the restart of the sibling created just before it (repeated until every
run has at most one restart, so restarts of restarts are linked the same way). No run
is deleted and no status changes; the `attempt` of every moved run and of what was
restarted from it is recomputed as its parent's attempt + 1 along the new chain.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.querystring import QueryString

ID = "2026-11-30T14:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "restart once per run: a chain of restarts, enforced by a unique index"

DUPLICATES = (
    "SELECT restarted_from AS parent, id FROM workflow_run"
    " WHERE restarted_from IN (SELECT restarted_from FROM workflow_run"
    "   WHERE restarted_from IS NOT NULL GROUP BY restarted_from HAVING count(*) > 1)"
    " ORDER BY restarted_from, created_at, id"
)
FIX_ATTEMPTS = (
    "UPDATE workflow_run SET attempt = (SELECT p.attempt + 1 FROM workflow_run p"
    "   WHERE p.id = workflow_run.restarted_from)"
    " WHERE restarted_from IS NOT NULL AND attempt <> (SELECT p.attempt + 1"
    "   FROM workflow_run p WHERE p.id = workflow_run.restarted_from) RETURNING id"
)
ONE_RESTART = (
    "CREATE UNIQUE INDEX IF NOT EXISTS workflow_run_one_restart "
    "ON workflow_run (restarted_from) WHERE restarted_from IS NOT NULL"
)
# The liveness sweep looks up the owners of active runs.
ACTIVE_OWNER = (
    "CREATE INDEX IF NOT EXISTS workflow_run_active_owner "
    "ON workflow_run (owner) WHERE status IN ('pending', 'running')"
)


async def link_duplicate_restarts(db) -> int:
    """Chain sibling restarts until every run has at most one; returns the runs moved."""
    moved = 0
    while True:
        rows = await db.run_querystring(QueryString(DUPLICATES))
        if not rows:
            break
        previous: dict = {}
        for row in rows:
            parent = str(row["parent"])
            if parent in previous:
                await db.run_querystring(
                    QueryString(
                        "UPDATE workflow_run SET restarted_from = {} WHERE id = {}",
                        previous[parent],
                        row["id"],
                    )
                )
                moved += 1
            previous[parent] = row["id"]
    if moved:
        while await db.run_querystring(QueryString(FIX_ATTEMPTS)):
            pass
    return moved


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="runs", description=DESCRIPTION)

    async def run():
        db = engine_finder()
        await link_duplicate_restarts(db)
        await db.run_ddl(ONE_RESTART)
        await db.run_ddl("DROP INDEX IF EXISTS workflow_run_one_active_restart")
        await db.run_ddl(ACTIVE_OWNER)

    async def run_backwards():
        db = engine_finder()
        await db.run_ddl(
            "CREATE UNIQUE INDEX IF NOT EXISTS workflow_run_one_active_restart "
            "ON workflow_run (restarted_from) WHERE status IN ('pending', 'running')"
        )
        await db.run_ddl("DROP INDEX IF EXISTS workflow_run_one_restart")
        await db.run_ddl("DROP INDEX IF EXISTS workflow_run_active_owner")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
