from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.postgres import PostgresEngine

ID = "2026-11-30T23:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "run_count: runs, tokens and cost per workflow, status and hour, kept by triggers"

# The filter bar's counts and totals are read from here, not counted per page view: one
# row per (hour the runs were created, workflow, status), plus hour -1 for all time.
# Triggers keep it in the same transaction as every insert, status change and delete of
# a run. Tokens and cost count once a run has finished: a running run's grow with each
# node, and following them would write a counter row per node.
TABLE = (
    "CREATE TABLE IF NOT EXISTS run_count ("
    " hour BIGINT NOT NULL, workflow_name VARCHAR(200) NOT NULL, status VARCHAR(20) NOT NULL,"
    " runs BIGINT NOT NULL DEFAULT 0, tokens BIGINT NOT NULL DEFAULT 0,"
    " cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,"
    " PRIMARY KEY (hour, workflow_name, status))"
)
FINISHED = "('completed', 'failed', 'cancelled')"
UPSERT = (
    " ON CONFLICT (hour, workflow_name, status) DO UPDATE SET runs = run_count.runs +"
    " excluded.runs, tokens = run_count.tokens + excluded.tokens,"
    " cost_usd = run_count.cost_usd + excluded.cost_usd"
)


def _pg_rows(table: str, sign: str) -> str:
    """Deltas of the rows of a transition table, for both the hour and the all-time row."""
    hour = "floor(extract(epoch FROM created_at) / 3600)::bigint"
    values = (
        f"{sign}1 AS runs,"
        f" {sign}CASE WHEN status IN {FINISHED} THEN total_tokens ELSE 0 END AS tokens,"
        f" {sign}CASE WHEN status IN {FINISHED} THEN total_cost_usd ELSE 0 END AS cost_usd"
    )
    return (
        f"SELECT {hour} AS hour, workflow_name, status, {values} FROM {table}"
        f" UNION ALL SELECT -1, workflow_name, status, {values} FROM {table}"
    )


def _pg_function(name: str, parts: str) -> str:
    # Grouped and ordered, so that concurrent transactions lock counter rows in one order.
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO run_count (hour, workflow_name, status, runs, tokens, cost_usd)"
        " SELECT hour, workflow_name, status, sum(runs), sum(tokens), sum(cost_usd)"
        f" FROM ({parts}) AS delta GROUP BY hour, workflow_name, status"
        f" ORDER BY hour, workflow_name, status{UPSERT}; RETURN NULL; END $$"
    )


# Only the rows whose status changed: progress updates leave the counters alone.
_CHANGED = (
    "(SELECT o.* FROM {old} o JOIN {new} n ON n.id = o.id"
    " WHERE o.status IS DISTINCT FROM n.status) AS {alias}"
)
POSTGRES = [
    _pg_function("run_count_insert", _pg_rows("new_rows", "")),
    _pg_function("run_count_delete", _pg_rows("old_rows", "-")),
    _pg_function(
        "run_count_update",
        _pg_rows(_CHANGED.format(old="old_rows", new="new_rows", alias="o"), "-")
        + " UNION ALL "
        + _pg_rows(
            _CHANGED.format(old="new_rows", new="old_rows", alias="n"), ""
        ),
    ),
    "CREATE TRIGGER run_count_insert AFTER INSERT ON workflow_run REFERENCING NEW TABLE AS"
    " new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_count_insert()",
    "CREATE TRIGGER run_count_update AFTER UPDATE ON workflow_run REFERENCING OLD TABLE AS"
    " old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_count_update()",
    "CREATE TRIGGER run_count_delete AFTER DELETE ON workflow_run REFERENCING OLD TABLE AS"
    " old_rows FOR EACH STATEMENT EXECUTE FUNCTION run_count_delete()",
]


def _sqlite_values(row: str, sign: str) -> str:
    hour = f"CAST(strftime('%s', {row}.created_at) AS INTEGER) / 3600"
    tokens = f"CASE WHEN {row}.status IN {FINISHED} THEN {row}.total_tokens ELSE 0 END"
    cost = f"CASE WHEN {row}.status IN {FINISHED} THEN {row}.total_cost_usd ELSE 0 END"
    return ", ".join(
        f"({h}, {row}.workflow_name, {row}.status, {sign}1, {sign}{tokens}, {sign}{cost})"
        for h in (hour, "-1")
    )


_SQLITE_INSERT = "INSERT INTO run_count (hour, workflow_name, status, runs, tokens, cost_usd) VALUES "
SQLITE = [
    "CREATE TRIGGER IF NOT EXISTS run_count_insert AFTER INSERT ON workflow_run BEGIN"
    f" {_SQLITE_INSERT}{_sqlite_values('NEW', '')}{UPSERT}; END",
    "CREATE TRIGGER IF NOT EXISTS run_count_update AFTER UPDATE OF status ON workflow_run"
    " WHEN OLD.status IS NOT NEW.status BEGIN"
    f" {_SQLITE_INSERT}{_sqlite_values('OLD', '-')}{UPSERT};"
    f" {_SQLITE_INSERT}{_sqlite_values('NEW', '')}{UPSERT}; END",
    "CREATE TRIGGER IF NOT EXISTS run_count_delete AFTER DELETE ON workflow_run BEGIN"
    f" {_SQLITE_INSERT}{_sqlite_values('OLD', '-')}{UPSERT}; END",
]


def _backfill(hour: str) -> str:
    tokens = f"sum(CASE WHEN status IN {FINISHED} THEN total_tokens ELSE 0 END)"
    cost = f"sum(CASE WHEN status IN {FINISHED} THEN total_cost_usd ELSE 0 END)"
    return (
        "INSERT INTO run_count (hour, workflow_name, status, runs, tokens, cost_usd)"
        f" SELECT {hour}, workflow_name, status, count(*), {tokens}, {cost} FROM workflow_run"
        f" GROUP BY 1, 2, 3"
    )


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="runs", description=DESCRIPTION)

    async def run():
        db = engine_finder()
        pg = isinstance(db, PostgresEngine)
        await db.run_ddl(TABLE)
        await db.run_ddl("DELETE FROM run_count")
        hour = (
            "floor(extract(epoch FROM created_at) / 3600)::bigint"
            if pg
            else "CAST(strftime('%s', created_at) AS INTEGER) / 3600"
        )
        await db.run_ddl(_backfill(hour))
        await db.run_ddl(_backfill("-1"))
        for statement in POSTGRES if pg else SQLITE:
            await db.run_ddl(statement)

    async def run_backwards():
        db = engine_finder()
        for name in ("run_count_insert", "run_count_update", "run_count_delete"):
            if isinstance(db, PostgresEngine):
                await db.run_ddl(f"DROP TRIGGER IF EXISTS {name} ON workflow_run")
                await db.run_ddl(f"DROP FUNCTION IF EXISTS {name}()")
            else:
                await db.run_ddl(f"DROP TRIGGER IF EXISTS {name}")
        await db.run_ddl("DROP TABLE IF EXISTS run_count")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
