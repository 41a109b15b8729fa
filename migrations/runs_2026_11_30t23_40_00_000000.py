from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.postgres import PostgresEngine

ID = "2026-11-30T23:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = (
    "run_count: runs, tokens and cost per workflow, status and hour, and the failed runs"
    " that need attention, kept by triggers"
)

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


# What the counters read of a run. Its tokens and cost count once it has finished, so a
# running run's progress (its most frequent write) never runs the update trigger.
_COUNTED = "status, created_at, workflow_name, total_tokens, total_cost_usd"


def _changed(differs: str) -> str:
    return (
        f"OLD.status {differs} NEW.status OR OLD.created_at {differs} NEW.created_at"
        f" OR OLD.workflow_name {differs} NEW.workflow_name OR (NEW.status IN {FINISHED}"
        f" AND (OLD.total_tokens {differs} NEW.total_tokens"
        f" OR OLD.total_cost_usd {differs} NEW.total_cost_usd))"
    )


# The row before or after a status change, as a one-row table.
_ROW = "(SELECT ({row}).*) AS {alias}"


def _pg_attention(rows: str, sign: str) -> str:
    """`needs attention` deltas: `rows` (a query of created_at, workflow_name) count as
    failed runs with no restart, the failed tips of their lineages."""
    hour = "floor(extract(epoch FROM created_at) / 3600)::bigint"
    return (
        f"SELECT {hour} AS hour, workflow_name, 'attention' AS status, {sign}1 AS runs,"
        f" 0 AS tokens, 0 AS cost_usd FROM ({rows}) AS a UNION ALL SELECT -1,"
        f" workflow_name, 'attention', {sign}1, 0, 0 FROM ({rows}) AS b"
    )


_NO_RESTART = "NOT EXISTS (SELECT 1 FROM workflow_run r WHERE r.restarted_from = {row}.id)"
# A deleted run's restart may go in the same statement: it still counted then.
_NO_RESTART_BEFORE = (
    _NO_RESTART + " AND NOT EXISTS (SELECT 1 FROM old_rows r WHERE r.restarted_from = {row}.id)"
)
_TIP = "SELECT x.created_at, x.workflow_name FROM {table} WHERE x.status = 'failed' AND {cond}"
_RESTARTED_TIP = (
    "SELECT o.created_at, o.workflow_name FROM {table} x JOIN workflow_run o"
    " ON o.id = x.restarted_from WHERE o.status = 'failed'"
)
POSTGRES = [
    _pg_function(
        "run_count_insert",
        _pg_rows("new_rows", "")
        + " UNION ALL "
        + _pg_attention(_TIP.format(table="new_rows x", cond=_NO_RESTART.format(row="x")), "")
        + " UNION ALL "
        + _pg_attention(_RESTARTED_TIP.format(table="new_rows"), "-"),
    ),
    _pg_function(
        "run_count_delete",
        _pg_rows("old_rows", "-")
        + " UNION ALL "
        + _pg_attention(_TIP.format(table="old_rows x", cond=_NO_RESTART_BEFORE.format(row="x")), "-")
        + " UNION ALL "
        + _pg_attention(_RESTARTED_TIP.format(table="old_rows"), ""),
    ),
    # Row-level and only on a change of status: a progress update, the most frequent
    # write, does not run it at all.
    _pg_function(
        "run_count_update",
        _pg_rows(_ROW.format(row="OLD", alias="o"), "-")
        + " UNION ALL "
        + _pg_rows(_ROW.format(row="NEW", alias="n"), "")
        + " UNION ALL "
        + _pg_attention(
            _TIP.format(table=_ROW.format(row="OLD", alias="x"), cond=_NO_RESTART.format(row="x")),
            "-",
        )
        + " UNION ALL "
        + _pg_attention(
            _TIP.format(table=_ROW.format(row="NEW", alias="x"), cond=_NO_RESTART.format(row="x")),
            "",
        ),
    ),
    "CREATE TRIGGER run_count_insert AFTER INSERT ON workflow_run REFERENCING NEW TABLE AS"
    " new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_count_insert()",
    f"CREATE TRIGGER run_count_update AFTER UPDATE OF {_COUNTED} ON workflow_run FOR EACH ROW"
    f" WHEN ({_changed('IS DISTINCT FROM')}) EXECUTE FUNCTION run_count_update()",
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


_SQLITE_INSERT = (
    "INSERT INTO run_count (hour, workflow_name, status, runs, tokens, cost_usd) VALUES "
)


def _sqlite_attention(row: str, sign: str, condition: str) -> str:
    hour = f"CAST(strftime('%s', {row}.created_at) AS INTEGER) / 3600"
    return (
        "INSERT INTO run_count (hour, workflow_name, status, runs, tokens, cost_usd)"
        f" SELECT h, {row}.workflow_name, 'attention', {sign}1, 0, 0 FROM"
        f" (SELECT {hour} AS h UNION ALL SELECT -1) WHERE {condition}{UPSERT};"
    )


def _sqlite_restarted(row: str, sign: str) -> str:
    # The original of a restart stops (or starts again) needing attention.
    hour = "CAST(strftime('%s', o.created_at) AS INTEGER) / 3600"
    return (
        "INSERT INTO run_count (hour, workflow_name, status, runs, tokens, cost_usd)"
        f" SELECT h.h, o.workflow_name, 'attention', {sign}1, 0, 0 FROM workflow_run o,"
        f" (SELECT {hour} AS h FROM workflow_run o WHERE o.id = {row}.restarted_from"
        " UNION ALL SELECT -1) AS h"
        f" WHERE o.id = {row}.restarted_from AND o.status = 'failed'{UPSERT};"
    )


def _tip(row: str) -> str:
    return (
        f"{row}.status = 'failed' AND NOT EXISTS"
        f" (SELECT 1 FROM workflow_run r WHERE r.restarted_from = {row}.id)"
    )


SQLITE = [
    "CREATE TRIGGER IF NOT EXISTS run_count_insert AFTER INSERT ON workflow_run BEGIN"
    f" {_SQLITE_INSERT}{_sqlite_values('NEW', '')}{UPSERT};"
    f" {_sqlite_attention('NEW', '', _tip('NEW'))}"
    f" {_sqlite_restarted('NEW', '-')} END",
    f"CREATE TRIGGER IF NOT EXISTS run_count_update AFTER UPDATE OF {_COUNTED} ON workflow_run"
    f" WHEN {_changed('IS NOT')} BEGIN"
    f" {_SQLITE_INSERT}{_sqlite_values('OLD', '-')}{UPSERT};"
    f" {_SQLITE_INSERT}{_sqlite_values('NEW', '')}{UPSERT};"
    f" {_sqlite_attention('OLD', '-', _tip('OLD'))}"
    f" {_sqlite_attention('NEW', '', _tip('NEW'))} END",
    "CREATE TRIGGER IF NOT EXISTS run_count_delete AFTER DELETE ON workflow_run BEGIN"
    f" {_SQLITE_INSERT}{_sqlite_values('OLD', '-')}{UPSERT};"
    f" {_sqlite_attention('OLD', '-', _tip('OLD'))}"
    f" {_sqlite_restarted('OLD', '')} END",
]


def _backfill(hour: str) -> str:
    tokens = f"sum(CASE WHEN status IN {FINISHED} THEN total_tokens ELSE 0 END)"
    cost = f"sum(CASE WHEN status IN {FINISHED} THEN total_cost_usd ELSE 0 END)"
    return (
        "INSERT INTO run_count (hour, workflow_name, status, runs, tokens, cost_usd)"
        f" SELECT {hour}, workflow_name, status, count(*), {tokens}, {cost} FROM workflow_run"
        f" GROUP BY 1, 2, 3"
    )


def _backfill_attention(hour: str) -> str:
    return (
        "INSERT INTO run_count (hour, workflow_name, status, runs, tokens, cost_usd)"
        f" SELECT {hour}, workflow_name, 'attention', count(*), 0, 0 FROM workflow_run w"
        " WHERE status = 'failed' AND NOT EXISTS"
        " (SELECT 1 FROM workflow_run r WHERE r.restarted_from = w.id) GROUP BY 1, 2"
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
        for bucket in (hour, "-1"):
            await db.run_ddl(_backfill(bucket))
            await db.run_ddl(_backfill_attention(bucket))
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
