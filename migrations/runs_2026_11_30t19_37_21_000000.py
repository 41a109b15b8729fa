from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.postgres import PostgresEngine

ID = "2026-11-30T19:37:21:000000"
VERSION = "1.38.0"
DESCRIPTION = "the status and workflow indexes cover the cost totals; runs without a snapshot"

# A bulk action's preview sums tokens and cost over every run a filter matches (a
# million, say): with the totals in the indexes the filters already use, that is one
# index scan instead of a read of the whole table (3 s on SQLite at a million runs).
# The leading columns, and so the run list's keyset paging, are those of before.
COVERED = {
    "workflow_run_status_created": ("status, created_at DESC, id DESC", "workflow_name"),
    "workflow_run_name_status_created": ("workflow_name, status, created_at DESC, id DESC", ""),
}
TOTALS = "total_cost_usd, total_tokens"
NO_SNAPSHOT = (
    "CREATE INDEX IF NOT EXISTS workflow_run_no_snapshot ON workflow_run (created_at)"
    " WHERE config_snapshot IS NULL"
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="runs", description=DESCRIPTION)

    async def run():
        db = engine_finder()
        for name, (keys, extra) in COVERED.items():
            more = ", ".join(c for c in (extra, TOTALS) if c)
            await db.run_ddl(f"DROP INDEX IF EXISTS {name}")
            if isinstance(db, PostgresEngine):
                # Index-only scans read the totals from INCLUDE columns.
                await db.run_ddl(f"CREATE INDEX {name} ON workflow_run ({keys}) INCLUDE ({more})")
            else:
                await db.run_ddl(f"CREATE INDEX {name} ON workflow_run ({keys}, {more})")
        await db.run_ddl(NO_SNAPSHOT)

    async def run_backwards():
        db = engine_finder()
        for name, (keys, _) in COVERED.items():
            await db.run_ddl(f"DROP INDEX IF EXISTS {name}")
            await db.run_ddl(f"CREATE INDEX {name} ON workflow_run ({keys})")
        await db.run_ddl("DROP INDEX IF EXISTS workflow_run_no_snapshot")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
