"""Every write to a run stamps `updated_at` in the database's time, so each dashboard
can follow what changed: SQLite readers poll the indexed column; on PostgreSQL the
same trigger also sends a NOTIFY ("id|epoch") that listening dashboards hear at commit.

Triggers, not application code, so that no writer (CLI, worker, an older process, a
manual fix) can change a run without the dashboards seeing it. Existing rows keep
NULL: nothing is waiting to hear about them.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-30T17:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "updated_at on runs, stamped by triggers; NOTIFY on PostgreSQL"

SQLITE_NOW = "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '+00:00')"
SQLITE = (
    "CREATE TRIGGER IF NOT EXISTS workflow_run_stamp_insert AFTER INSERT ON workflow_run"
    " FOR EACH ROW WHEN NEW.updated_at IS NULL BEGIN"
    f" UPDATE workflow_run SET updated_at = {SQLITE_NOW} WHERE rowid = NEW.rowid; END",
    # A statement that sets updated_at itself is left alone.
    "CREATE TRIGGER IF NOT EXISTS workflow_run_stamp_update AFTER UPDATE ON workflow_run"
    " FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at BEGIN"
    f" UPDATE workflow_run SET updated_at = {SQLITE_NOW} WHERE rowid = NEW.rowid; END",
)
POSTGRES = (
    "CREATE OR REPLACE FUNCTION workflow_run_changed() RETURNS trigger"
    " LANGUAGE plpgsql AS $$ BEGIN"
    # clock_timestamp(), not now(): closer to the commit that makes the change visible.
    " NEW.updated_at := clock_timestamp();"
    " PERFORM pg_notify('ca_run_changed',"
    "   NEW.id::text || '|' || extract(epoch FROM NEW.updated_at)::text);"
    " RETURN NEW; END $$",
    "DROP TRIGGER IF EXISTS workflow_run_changed ON workflow_run",
    "CREATE TRIGGER workflow_run_changed BEFORE INSERT OR UPDATE ON workflow_run"
    " FOR EACH ROW EXECUTE FUNCTION workflow_run_changed()",
)
INDEX = "CREATE INDEX IF NOT EXISTS workflow_run_updated_at ON workflow_run (updated_at)"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="runs", description=DESCRIPTION)

    async def run():
        db = engine_finder()
        await db.run_ddl(INDEX)
        for statement in POSTGRES if db.engine_type == "postgres" else SQLITE:
            await db.run_ddl(statement)

    async def run_backwards():
        db = engine_finder()
        if db.engine_type == "postgres":
            await db.run_ddl("DROP TRIGGER IF EXISTS workflow_run_changed ON workflow_run")
            await db.run_ddl("DROP FUNCTION IF EXISTS workflow_run_changed()")
        else:
            await db.run_ddl("DROP TRIGGER IF EXISTS workflow_run_stamp_insert")
            await db.run_ddl("DROP TRIGGER IF EXISTS workflow_run_stamp_update")
        await db.run_ddl("DROP INDEX IF EXISTS workflow_run_updated_at")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
