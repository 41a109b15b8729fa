from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-26T07:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes for the status-and-workflow filter and for the recovery sweep"

INDEXES = {
    # Both filters at once: without it, the database walks one filter's index and
    # checks the other row by row, which grows with the table for a rare status.
    "workflow_run_name_status_created": (
        "ON workflow_run (workflow_name, status, created_at DESC, id DESC)"
    ),
    # The recovery sweep looks only at active runs by heartbeat; a partial index
    # keeps it proportional to the active runs, not to the table.
    "workflow_run_active_heartbeat": (
        "ON workflow_run (heartbeat_at) WHERE status IN ('pending', 'running')"
    ),
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="runs", description=DESCRIPTION)

    async def run():
        db = engine_finder()
        for name, definition in INDEXES.items():
            await db.run_ddl(f"CREATE INDEX IF NOT EXISTS {name} {definition}")

    async def run_backwards():
        db = engine_finder()
        for name in INDEXES:
            await db.run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
