from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-30T19:37:20:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes for a batch's runs and for idempotent bulk requests"

INDEXES = {
    # A batch's progress is counted from its runs.
    "workflow_run_batch": "INDEX IF NOT EXISTS workflow_run_batch ON workflow_run (batch_id, status)"
    " WHERE batch_id IS NOT NULL",
    # The database, not a read before the write, makes a repeated request (same key,
    # same actor) find the first one's answer.
    "restart_batch_idempotency": "UNIQUE INDEX IF NOT EXISTS restart_batch_idempotency"
    " ON restart_batch (actor, idempotency_key) WHERE idempotency_key IS NOT NULL",
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="runs", description=DESCRIPTION)

    async def run():
        db = engine_finder()
        for definition in INDEXES.values():
            await db.run_ddl(f"CREATE {definition}")

    async def run_backwards():
        db = engine_finder()
        for name in INDEXES:
            await db.run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
