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

# PostgreSQL: a stored column `search_doc`, the tsvector of the three fields with
# everything but letters and digits made a space (so that its parser does not keep a
# host name, a path or a version as one token) in the 'simple' configuration (no
# stemming, no stop words: an operator looks for the word in the message), with a GIN
# index. Stored, so that walking the newest runs for a common word tests each one
# without parsing its message again, and ANALYZE keeps statistics of its words for the
# planner to tell a common word from a rare one.
DOCUMENT = (
    "to_tsvector('simple'::regconfig, regexp_replace(coalesce(workflow_name, '')"
    " || ' ' || coalesce(error_node, '') || ' ' || coalesce(error_message, ''),"
    " '[^[:alnum:]]+', ' ', 'g'))"
)
POSTGRES = [
    "ALTER TABLE workflow_run ADD COLUMN IF NOT EXISTS search_doc tsvector"
    f" GENERATED ALWAYS AS ({DOCUMENT}) STORED",
    "CREATE INDEX IF NOT EXISTS workflow_run_search ON workflow_run USING gin (search_doc)",
]


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
            await db.run_ddl("ALTER TABLE workflow_run DROP COLUMN IF EXISTS search_doc")
            return
        for name in ("run_search_insert", "run_search_delete", "run_search_update"):
            await db.run_ddl(f"DROP TRIGGER IF EXISTS {name}")
        await db.run_ddl("DROP TABLE IF EXISTS run_search")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
