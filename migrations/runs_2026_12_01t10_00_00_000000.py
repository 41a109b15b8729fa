from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.postgres import PostgresEngine

ID = "2026-12-01T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = (
    "run_count per day, hour and ten minutes (and all time): any time range reads a few"
    " dozen counters and counts at most ten minutes of runs at each edge"
)

# Replaces the hourly counters of 2026-11-30T23:40. One row per (span, start of the
# bucket, workflow, status): span 0 is all time (start 0), then days, hours and ten
# minutes of creation time, in UTC epoch seconds. A range takes whole days from the
# middle, hours and ten-minute buckets towards its edges, and counts the runs of its
# partial first and last ten minutes directly; the hourly table made a week read 168
# hours of counters and an edge count up to an hour of runs (13 ms and 7.5 ms measured
# at a million runs, against 5 ms allowed).
#
# Triggers keep every span in the same transaction as the insert, status change or
# delete of a run. Tokens and cost count once a run has finished: a running run's grow
# with each node, and following them would write counters per node.
SPANS = (0, 86400, 3600, 600)
TABLE = (
    "CREATE TABLE run_count ("
    " span INTEGER NOT NULL, start BIGINT NOT NULL, workflow_name VARCHAR(200) NOT NULL,"
    " status VARCHAR(20) NOT NULL, runs BIGINT NOT NULL DEFAULT 0,"
    " tokens BIGINT NOT NULL DEFAULT 0, cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,"
    " PRIMARY KEY (span, start, workflow_name, status))"
)
FINISHED = "('completed', 'failed', 'cancelled')"
COLUMNS = "(span, start, workflow_name, status, runs, tokens, cost_usd)"
UPSERT = (
    " ON CONFLICT (span, start, workflow_name, status) DO UPDATE SET runs = run_count.runs +"
    " excluded.runs, tokens = run_count.tokens + excluded.tokens,"
    " cost_usd = run_count.cost_usd + excluded.cost_usd"
)
TRIGGERS = ("run_count_insert", "run_count_update", "run_count_delete")


def _epoch(pg: bool, column: str) -> str:
    if pg:
        return f"floor(extract(epoch FROM {column}))::bigint"
    return f"CAST(strftime('%s', {column}) AS INTEGER)"


# The spans as a table `s`, and the start of a run's bucket in span `s.span`.
SPAN_TABLE = "(" + " UNION ALL ".join(f"SELECT {span} AS span" for span in SPANS) + ") s"


def _start(pg: bool, column: str) -> str:
    return f"CASE WHEN s.span = 0 THEN 0 ELSE {_epoch(pg, column)} / s.span * s.span END"


# -- PostgreSQL: statement-level for inserts and deletes, row-level for changes ------


def _pg_rows(table: str, sign: str) -> str:
    values = (
        f"{sign}1 AS runs,"
        f" {sign}CASE WHEN t.status IN {FINISHED} THEN t.total_tokens ELSE 0 END AS tokens,"
        f" {sign}CASE WHEN t.status IN {FINISHED} THEN t.total_cost_usd ELSE 0 END AS cost_usd"
    )
    return (
        f"SELECT s.span, {_start(True, 't.created_at')} AS start, t.workflow_name, t.status,"
        f" {values} FROM {table} t CROSS JOIN {SPAN_TABLE}"
    )


def _pg_attention(rows: str, sign: str) -> str:
    """`needs attention` deltas: `rows` (a query of created_at, workflow_name) count as
    failed runs with no restart, the failed tips of their lineages."""
    return (
        f"SELECT s.span, {_start(True, 'a.created_at')} AS start, a.workflow_name,"
        f" 'attention' AS status, {sign}1 AS runs, 0 AS tokens, 0 AS cost_usd"
        f" FROM ({rows}) AS a CROSS JOIN {SPAN_TABLE}"
    )


def _pg_function(name: str, parts: str) -> str:
    # Grouped and ordered, so that concurrent transactions lock counter rows in one order.
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" INSERT INTO run_count {COLUMNS}"
        " SELECT span, start, workflow_name, status, sum(runs), sum(tokens), sum(cost_usd)"
        f" FROM ({parts}) AS delta GROUP BY span, start, workflow_name, status"
        f" ORDER BY span, start, workflow_name, status{UPSERT}; RETURN NULL; END $$"
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


# The row before or after a change, as a one-row table.
_ROW = "(SELECT ({row}).*)"
_NO_RESTART = "NOT EXISTS (SELECT 1 FROM workflow_run r WHERE r.restarted_from = {row}.id)"
# A deleted run's restart may go in the same statement: it still counted then.
_NO_RESTART_BEFORE = (
    _NO_RESTART + " AND NOT EXISTS (SELECT 1 FROM old_rows r WHERE r.restarted_from = {row}.id)"
)
_TIP = "SELECT x.created_at, x.workflow_name FROM {table} x WHERE x.status = 'failed' AND {cond}"
_RESTARTED_TIP = (
    "SELECT o.created_at, o.workflow_name FROM {table} x JOIN workflow_run o"
    " ON o.id = x.restarted_from WHERE o.status = 'failed'"
)


def _pg_tip(table: str, cond: str, sign: str) -> str:
    return _pg_attention(_TIP.format(table=table, cond=cond.format(row="x")), sign)


POSTGRES = [
    _pg_function(
        "run_count_insert",
        " UNION ALL ".join(
            [
                _pg_rows("new_rows", ""),
                _pg_tip("new_rows", _NO_RESTART, ""),
                _pg_attention(_RESTARTED_TIP.format(table="new_rows"), "-"),
            ]
        ),
    ),
    _pg_function(
        "run_count_delete",
        " UNION ALL ".join(
            [
                _pg_rows("old_rows", "-"),
                _pg_tip("old_rows", _NO_RESTART_BEFORE, "-"),
                _pg_attention(_RESTARTED_TIP.format(table="old_rows"), ""),
            ]
        ),
    ),
    # Row-level and only on a change of what it counts: a progress update, the most
    # frequent write, does not run it at all.
    _pg_function(
        "run_count_update",
        " UNION ALL ".join(
            [
                _pg_rows(_ROW.format(row="OLD"), "-"),
                _pg_rows(_ROW.format(row="NEW"), ""),
                _pg_tip(_ROW.format(row="OLD"), _NO_RESTART, "-"),
                _pg_tip(_ROW.format(row="NEW"), _NO_RESTART, ""),
            ]
        ),
    ),
    "CREATE TRIGGER run_count_insert AFTER INSERT ON workflow_run REFERENCING NEW TABLE AS"
    " new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_count_insert()",
    f"CREATE TRIGGER run_count_update AFTER UPDATE OF {_COUNTED} ON workflow_run FOR EACH ROW"
    f" WHEN ({_changed('IS DISTINCT FROM')}) EXECUTE FUNCTION run_count_update()",
    "CREATE TRIGGER run_count_delete AFTER DELETE ON workflow_run REFERENCING OLD TABLE AS"
    " old_rows FOR EACH STATEMENT EXECUTE FUNCTION run_count_delete()",
]


# -- SQLite: row-level triggers ------------------------------------------------------


def _sqlite_rows(row: str, sign: str) -> str:
    tokens = f"CASE WHEN {row}.status IN {FINISHED} THEN {row}.total_tokens ELSE 0 END"
    cost = f"CASE WHEN {row}.status IN {FINISHED} THEN {row}.total_cost_usd ELSE 0 END"
    return (
        f"INSERT INTO run_count {COLUMNS} SELECT s.span, {_start(False, f'{row}.created_at')},"
        f" {row}.workflow_name, {row}.status, {sign}1, {sign}{tokens}, {sign}{cost}"
        f" FROM {SPAN_TABLE} WHERE true{UPSERT};"
    )


def _sqlite_attention(row: str, sign: str, condition: str) -> str:
    return (
        f"INSERT INTO run_count {COLUMNS} SELECT s.span, {_start(False, f'{row}.created_at')},"
        f" {row}.workflow_name, 'attention', {sign}1, 0, 0 FROM {SPAN_TABLE}"
        f" WHERE {condition}{UPSERT};"
    )


def _sqlite_restarted(row: str, sign: str) -> str:
    # The original of a restart stops (or starts again) needing attention.
    return (
        f"INSERT INTO run_count {COLUMNS} SELECT s.span, {_start(False, 'o.created_at')},"
        f" o.workflow_name, 'attention', {sign}1, 0, 0 FROM workflow_run o CROSS JOIN"
        f" {SPAN_TABLE} WHERE o.id = {row}.restarted_from AND o.status = 'failed'{UPSERT};"
    )


def _tip(row: str) -> str:
    return (
        f"{row}.status = 'failed' AND NOT EXISTS"
        f" (SELECT 1 FROM workflow_run r WHERE r.restarted_from = {row}.id)"
    )


SQLITE = [
    "CREATE TRIGGER run_count_insert AFTER INSERT ON workflow_run BEGIN"
    f" {_sqlite_rows('NEW', '')} {_sqlite_attention('NEW', '', _tip('NEW'))}"
    f" {_sqlite_restarted('NEW', '-')} END",
    f"CREATE TRIGGER run_count_update AFTER UPDATE OF {_COUNTED} ON workflow_run"
    f" WHEN {_changed('IS NOT')} BEGIN"
    f" {_sqlite_rows('OLD', '-')} {_sqlite_rows('NEW', '')}"
    f" {_sqlite_attention('OLD', '-', _tip('OLD'))}"
    f" {_sqlite_attention('NEW', '', _tip('NEW'))} END",
    "CREATE TRIGGER run_count_delete AFTER DELETE ON workflow_run BEGIN"
    f" {_sqlite_rows('OLD', '-')} {_sqlite_attention('OLD', '-', _tip('OLD'))}"
    f" {_sqlite_restarted('OLD', '')} END",
]


def _backfill(pg: bool) -> list[str]:
    tokens = f"sum(CASE WHEN status IN {FINISHED} THEN total_tokens ELSE 0 END)"
    cost = f"sum(CASE WHEN status IN {FINISHED} THEN total_cost_usd ELSE 0 END)"
    tip = (
        "status = 'failed' AND NOT EXISTS"
        " (SELECT 1 FROM workflow_run r WHERE r.restarted_from = w.id)"
    )
    epoch = _epoch(pg, "created_at")
    out = []
    for span in SPANS:
        start = f"{epoch} / {span} * {span}" if span else "0"
        out.append(
            f"INSERT INTO run_count {COLUMNS} SELECT {span}, {start}, workflow_name, status,"
            f" count(*), {tokens}, {cost} FROM workflow_run w GROUP BY 2, 3, 4"
        )
        out.append(
            f"INSERT INTO run_count {COLUMNS} SELECT {span}, {start}, workflow_name,"
            f" 'attention', count(*), 0, 0 FROM workflow_run w WHERE {tip} GROUP BY 2, 3"
        )
    return out


async def _drop(db, pg: bool) -> None:
    for name in TRIGGERS:
        if pg:
            await db.run_ddl(f"DROP TRIGGER IF EXISTS {name} ON workflow_run")
            await db.run_ddl(f"DROP FUNCTION IF EXISTS {name}()")
        else:
            await db.run_ddl(f"DROP TRIGGER IF EXISTS {name}")
    await db.run_ddl("DROP TABLE IF EXISTS run_count")


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="runs", description=DESCRIPTION)

    async def run():
        db = engine_finder()
        pg = isinstance(db, PostgresEngine)
        await _drop(db, pg)
        await db.run_ddl(TABLE)
        for statement in _backfill(pg):
            await db.run_ddl(statement)
        for statement in POSTGRES if pg else SQLITE:
            await db.run_ddl(statement)

    async def run_backwards():
        db = engine_finder()
        await _drop(db, isinstance(db, PostgresEngine))

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
