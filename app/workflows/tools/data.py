"""json_parse and yaml_parse (safe), sql_query and dataframe_to_csv (gated), as the original
defines them. The original's dataframe_to_csv uses pandas; the csv module writes the same
file for the shapes it accepts, so no new dependency."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import yaml

from app.workflows.tools.base import Tool, ToolContext, ToolError
from app.workflows.tools.files import safe_path

_MAX_JSON = 1_000_000
# PyYAML is pure Python and slow: a bigger document would hold the worker for seconds.
_MAX_YAML = 256_000
# Values a parsed document may expand to: aliases let a few lines of YAML stand for
# billions of values once the result is serialised for the model.
_MAX_VALUES = 100_000
_MAX_DEPTH = 100


def _plain(value: Any, budget: list[int], depth: int = 0) -> Any:
    """The parsed YAML as JSON-serialisable values, within _MAX_VALUES and _MAX_DEPTH."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ToolError(f"Invalid YAML: the document expands to more than {_MAX_VALUES} values")
    if depth > _MAX_DEPTH:
        raise ToolError(f"Invalid YAML: nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        return {
            k if isinstance(k, str | int | float | bool) or k is None else str(k): _plain(
                v, budget, depth + 1
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, budget, depth + 1) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


async def _json_parse(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    text = args["json_string"]
    if len(text) > _MAX_JSON:
        raise ToolError(f"Invalid JSON: longer than {_MAX_JSON} characters")
    try:
        return {"parsed": json.loads(text), "error": None}
    except json.JSONDecodeError as exc:
        raise ToolError(f"Invalid JSON: {exc}") from None
    except RecursionError:
        raise ToolError("Invalid JSON: nested too deeply") from None


async def _yaml_parse(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    text = args["yaml_string"]
    if len(text) > _MAX_YAML:
        raise ToolError(f"Invalid YAML: longer than {_MAX_YAML} characters")
    try:
        parsed = await asyncio.to_thread(yaml.safe_load, text)
    except yaml.YAMLError as exc:
        raise ToolError(f"Invalid YAML: {exc}") from None
    except RecursionError:
        raise ToolError("Invalid YAML: nested too deeply") from None
    return {"parsed": _plain(parsed, [_MAX_VALUES]), "error": None}


_DANGEROUS = ["DROP", "DELETE", "UPDATE", "INSERT", "ALTER", "CREATE", "TRUNCATE"]


def _query(query: str, database: str, deadline: float) -> dict[str, Any]:
    # Read-only as well as SELECT-only: the keyword check is the original's, the mode is
    # what makes it hold.
    if database == ":memory:":
        conn = sqlite3.connect(":memory:")
    else:
        conn = sqlite3.connect(Path(database).as_uri() + "?mode=ro", uri=True)
    try:
        # Stops a runaway query at the deadline; a thread cannot be cancelled otherwise.
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        conn.row_factory = sqlite3.Row
        cursor = conn.execute(query)
        rows = cursor.fetchall()
        columns = [d[0] for d in cursor.description] if cursor.description else []
    finally:
        conn.close()
    result = [
        {
            k: v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v
            for k, v in dict(r).items()
        }
        for r in rows
    ]
    return {"rows": result, "columns": columns, "row_count": len(result), "error": None}


async def _sql_query(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    query = args["query"]
    upper = query.strip().upper()
    if not upper.startswith("SELECT"):
        raise ToolError("Only SELECT queries are allowed for safety")
    for keyword in _DANGEROUS:
        if keyword in upper:
            raise ToolError(f"Dangerous keyword '{keyword}' not allowed in query")
    # The original opens any SQLite file it is given; here only one inside ALLOWED_PATHS,
    # or the server's own database would be a query away.
    database = args.get("connection_string") or ":memory:"
    if database != ":memory:":
        database = safe_path(database, ctx.env)
    try:
        return await asyncio.to_thread(_query, query, database, time.monotonic() + ctx.timeout)
    except sqlite3.Error as exc:
        raise ToolError(f"SQL error: {exc}") from None


def _table(data: Any) -> tuple[list[Any], list[list[Any]]]:
    """Columns and rows as pandas.DataFrame(data) would make them, for the shapes the
    original documents (list of dicts, dict of lists) and lists of lists."""
    if isinstance(data, dict):
        lengths = {len(v) for v in data.values() if isinstance(v, list)}
        if not lengths:
            raise ToolError("If using all scalar values, you must pass an index")
        if len(lengths) > 1:
            raise ToolError("All arrays must be of the same length")
        n = lengths.pop()
        cols = [v if isinstance(v, list) else [v] * n for v in data.values()]
        return list(data), [list(row) for row in zip(*cols, strict=True)]
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        columns: dict[Any, None] = {}
        for row in data:
            columns.update(dict.fromkeys(row))
        return list(columns), [[row.get(c) for c in columns] for row in data]
    if isinstance(data, list) and all(isinstance(r, list) for r in data):
        width = max((len(r) for r in data), default=0)
        return list(range(width)), [r + [None] * (width - len(r)) for r in data]
    if isinstance(data, list) and not any(isinstance(r, dict | list) for r in data):
        return [0], [[v] for v in data]
    raise ToolError(
        f"Unsupported data type: {type(data).__name__}. Use list of dicts or dict of lists."
    )


def _write_csv(columns: list[Any], rows: list[list[Any]], path: str, index: bool) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(([""] if index else []) + columns)
        for i, row in enumerate(rows):
            writer.writerow(([i] if index else []) + row)


async def _dataframe_to_csv(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    path, index = args["path"], args.get("index", False)
    columns, rows = _table(args["data"])
    # The original writes wherever it is told; held to ALLOWED_PATHS like file_write.
    full = safe_path(path, ctx.env)
    try:
        await asyncio.to_thread(_write_csv, columns, rows, full, index)
    except OSError as exc:
        raise ToolError(str(exc)) from None
    return {"path": path, "rows_written": len(rows), "error": None}


TOOLS = (
    Tool(
        name="sql_query",
        description=(
            "Execute SQL SELECT query on in-memory SQLite database. "
            "Input should be a dict with 'query' (required) and optional "
            "'connection_string'. Returns rows, columns, row_count, and error if any. "
            "Only SELECT queries are allowed for safety."
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "SQL query to execute (SELECT only)"},
                "connection_string": {
                    "type": "string",
                    "description": "SQLite database file (default: in-memory)",
                },
            },
            "required": ["query"],
        },
        gated=True,
        impl=_sql_query,
    ),
    Tool(
        name="dataframe_to_csv",
        description=(
            "Convert data to CSV file. "
            "Input should be a dict with 'data' (required, list of dicts or dict of lists), "
            "'path' (required), and optional 'index' (default: False). "
            "Returns path, rows_written, and error if any."
        ),
        parameters={
            "type": "object",
            "properties": {
                "data": {
                    "anyOf": [{"type": "array"}, {"type": "object"}],
                    "description": "Data to convert (list of dicts or dict of lists)",
                },
                "path": {"type": "string", "description": "Output file path"},
                "index": {
                    "type": "boolean",
                    "description": "Whether to include index column (default: False)",
                },
            },
            "required": ["data", "path"],
        },
        gated=True,
        impl=_dataframe_to_csv,
    ),
    Tool(
        name="json_parse",
        description=(
            "Parse JSON string into Python object. "
            "Input should be a JSON string. "
            "Returns parsed object and error if any."
        ),
        parameters={
            "type": "object",
            "properties": {
                "json_string": {"type": "string", "description": "JSON string to parse"}
            },
            "required": ["json_string"],
        },
        gated=False,
        impl=_json_parse,
    ),
    Tool(
        name="yaml_parse",
        description=(
            "Parse YAML string into Python object. "
            "Input should be a YAML string. "
            "Returns parsed object and error if any."
        ),
        parameters={
            "type": "object",
            "properties": {
                "yaml_string": {"type": "string", "description": "YAML string to parse"}
            },
            "required": ["yaml_string"],
        },
        gated=False,
        impl=_yaml_parse,
    ),
)
