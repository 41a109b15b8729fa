from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.postgres import PostgresEngine

ID = "2026-12-01T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = (
    "Search of the run list: the words of a run's error message, failed node and workflow"
    " name, indexed (FTS5 table kept by triggers on SQLite, GIN on PostgreSQL)"
)

# Words are runs of letters and digits on both engines (app/store/search.py splits a
# search the same way); case does not matter, accents do.
#
# SQLite: an external-content FTS5 table over workflow_run's own columns (the text is
# not stored twice), keyed by workflow_run's rowid. Triggers keep it in the same
# transaction as every insert, delete and change of the three columns. A VACUUM may
# renumber the rowids of a table without an INTEGER PRIMARY KEY: after one, run
# INSERT INTO run_search(run_search) VALUES ('rebuild').
COLUMNS = "workflow_name, error_node, error_message"
SQLITE = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS run_search USING fts5("
    f"{COLUMNS}, content='workflow_run', content_rowid='rowid',"
    " tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER IF NOT EXISTS run_search_insert AFTER INSERT ON workflow_run BEGIN"
    f" INSERT INTO run_search (rowid, {COLUMNS}) VALUES"
    " (NEW.rowid, NEW.workflow_name, NEW.error_node, NEW.error_message); END",
    "CREATE TRIGGER IF NOT EXISTS run_search_delete AFTER DELETE ON workflow_run BEGIN"
    f" INSERT INTO run_search (run_search, rowid, {COLUMNS}) VALUES"
    " ('delete', OLD.rowid, OLD.workflow_name, OLD.error_node, OLD.error_message); END",
    # Only a change of what is indexed: progress updates, the most frequent write, skip it.
    f"CREATE TRIGGER IF NOT EXISTS run_search_update AFTER UPDATE OF {COLUMNS}"
    " ON workflow_run WHEN OLD.workflow_name IS NOT NEW.workflow_name"
    " OR OLD.error_node IS NOT NEW.error_node OR OLD.error_message IS NOT NEW.error_message"
    f" BEGIN INSERT INTO run_search (run_search, rowid, {COLUMNS}) VALUES"
    " ('delete', OLD.rowid, OLD.workflow_name, OLD.error_node, OLD.error_message);"
    f" INSERT INTO run_search (rowid, {COLUMNS}) VALUES"
    " (NEW.rowid, NEW.workflow_name, NEW.error_node, NEW.error_message); END",
    "INSERT INTO run_search (run_search) VALUES ('rebuild')",
]

# PostgreSQL: a GIN index on the tsvector of the three fields, with everything but
# letters and digits made a space (so that its parser does not keep a host name, a path
# or a version as one token) and the 'simple' configuration (no stemming, no stop
# words: an operator looks for the word in the message). Queries must use this very
# expression (app/store/search.py PG_DOCUMENT) for the index to serve them.
DOCUMENT = (
    "to_tsvector('simple'::regconfig, regexp_replace(coalesce(workflow_name, '')"
    " || ' ' || coalesce(error_node, '') || ' ' || coalesce(error_message, ''),"
    " '[^[:alnum:]]+', ' ', 'g'))"
)
POSTGRES = [f"CREATE INDEX IF NOT EXISTS workflow_run_search ON workflow_run USING gin (({DOCUMENT}))"]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="runs", description=DESCRIPTION)

    async def run():
        db = engine_finder()
        for statement in POSTGRES if isinstance(db, PostgresEngine) else SQLITE:
            await db.run_ddl(statement)

    async def run_backwards():
        db = engine_finder()
        if isinstance(db, PostgresEngine):
            await db.run_ddl("DROP INDEX IF EXISTS workflow_run_search")
            return
        for name in ("run_search_insert", "run_search_delete", "run_search_update"):
            await db.run_ddl(f"DROP TRIGGER IF EXISTS {name}")
        await db.run_ddl("DROP TABLE IF EXISTS run_search")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
