from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-30T15:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes for a run's history in the audit trail and for expiring sessions"

INDEXES = {
    # A run's page lists what was done to it and what created it.
    "audit_entry_run": "ON audit_entry (run_id) WHERE run_id IS NOT NULL",
    "audit_entry_new_run": "ON audit_entry (new_run_id) WHERE new_run_id IS NOT NULL",
    "web_session_last_seen": "ON web_session (last_seen_at)",
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
