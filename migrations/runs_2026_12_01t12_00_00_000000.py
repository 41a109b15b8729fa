from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.postgres import PostgresEngine

ID = "2026-12-01T12:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "PostgreSQL: the search index takes new words at once (no GIN pending list)"

# With GIN's fast update, new words wait in a pending list of up to 4 MB that every
# search reads whole until a vacuum merges it: after a burst of failures a rare word
# took 2.5 ms to look up instead of 0.05 ms (491 pending pages at 1,000,000 runs). A
# run's words are written once or twice in its life, a search reads them all day.
FORWARDS = [
    "ALTER INDEX workflow_run_search SET (fastupdate = off)",
    "SELECT gin_clean_pending_list('workflow_run_search'::regclass)",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="runs", description=DESCRIPTION)

    async def run():
        db = engine_finder()
        if isinstance(db, PostgresEngine):
            for statement in FORWARDS:
                await db.run_ddl(statement)

    async def run_backwards():
        db = engine_finder()
        if isinstance(db, PostgresEngine):
            await db.run_ddl("ALTER INDEX workflow_run_search RESET (fastupdate)")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
