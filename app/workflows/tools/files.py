"""file_read, file_write, file_glob and file_move (gated), as the original defines them:
every path must lie inside ALLOWED_PATHS (comma-separated, from the server's environment;
default the current directory). Paths are resolved with symlinks, so a link inside an
allowed directory cannot lead outside it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.workflows.tools.base import Tool, ToolContext, ToolError


def safe_path(path: str, env: Mapping[str, str], what: str = "Path") -> str:
    """The resolved `path`, or ToolError when it lies outside every allowed directory."""
    roots = [p.strip() for p in env.get("ALLOWED_PATHS", "").split(",") if p.strip()]
    full = os.path.realpath(path)
    for root in roots or [os.getcwd()]:
        root = os.path.realpath(root)
        if full == root or full.startswith(root.rstrip(os.sep) + os.sep):
            return full
    raise ToolError(f"{what} not allowed: {path} (outside ALLOWED_PATHS)")


def _read(path: str, encoding: str, env: Mapping[str, str]) -> dict[str, Any]:
    full = safe_path(path, env)
    if not os.path.isfile(full):
        raise ToolError(f"File not found: {path}")
    try:
        with open(full, encoding=encoding) as f:
            content = f.read(50001)  # the original keeps the first 50000 characters
        size = os.path.getsize(full)
    except UnicodeDecodeError:
        raise ToolError(f"Failed to decode file with encoding '{encoding}'") from None
    except LookupError:
        raise ToolError(f"Unknown encoding '{encoding}'") from None
    if len(content) > 50000:
        content = content[:50000] + "\n... (truncated)"
    return {"path": path, "content": content, "size": size, "error": None}


def _write(path: str, content: str, encoding: str, env: Mapping[str, str]) -> dict[str, Any]:
    full = safe_path(path, env)
    try:
        data = content.encode(encoding)
    except LookupError:
        raise ToolError(f"Unknown encoding '{encoding}'") from None
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", encoding=encoding, newline="\n") as f:
        f.write(content)
    return {"path": path, "bytes_written": len(data), "error": None}


def _glob(pattern: str, base_path: str, env: Mapping[str, str]) -> dict[str, Any]:
    base = safe_path(base_path, env, "Base path")
    try:
        found = [str(p) for p in Path(base).glob(pattern)]
    except (ValueError, NotImplementedError) as exc:
        raise ToolError(f"Invalid pattern {pattern}: {exc}") from None
    allowed = []
    for match in found:
        try:
            safe_path(match, env)
        except ToolError:
            continue
        if os.path.isfile(match):
            allowed.append(match)
    return {"pattern": pattern, "matches": sorted(allowed), "error": None}


def _move(source: str, dest: str, env: Mapping[str, str]) -> dict[str, Any]:
    src = safe_path(source, env, "Source path")
    dst = safe_path(dest, env, "Destination path")
    if not os.path.isfile(src):
        raise ToolError(f"Source file not found: {source}")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.rename(src, dst)
    return {"source": source, "dest": dest, "success": True, "error": None}


async def _in_thread(func: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(func, *args)
    except OSError as exc:
        raise ToolError(str(exc)) from None


async def _file_read(args: dict[str, Any], ctx: ToolContext) -> Any:
    return await _in_thread(_read, args["path"], args.get("encoding", "utf-8"), ctx.env)


async def _file_write(args: dict[str, Any], ctx: ToolContext) -> Any:
    encoding = args.get("encoding", "utf-8")
    return await _in_thread(_write, args["path"], args["content"], encoding, ctx.env)


async def _file_glob(args: dict[str, Any], ctx: ToolContext) -> Any:
    return await _in_thread(_glob, args["pattern"], args.get("base_path", "."), ctx.env)


async def _file_move(args: dict[str, Any], ctx: ToolContext) -> Any:
    return await _in_thread(_move, args["source"], args["dest"], ctx.env)


def _object(required: list[str], **props: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {k: {"type": t, "description": d} for k, (t, d) in props.items()},
        "required": required,
    }


TOOLS = (
    Tool(
        name="file_read",
        description=(
            "Read contents of a file. "
            "Input should be a dict with 'path' (required) and 'encoding' (optional, default "
            "utf-8). Returns file content, size, and error if any."
        ),
        parameters=_object(
            ["path"],
            path=("string", "File path to read"),
            encoding=("string", "File encoding (default: utf-8)"),
        ),
        gated=True,
        impl=_file_read,
    ),
    Tool(
        name="file_write",
        description=(
            "Write content to a file. Creates parent directories if needed. "
            "Input should be a dict with 'path' (required), 'content' (required), "
            "and 'encoding' (optional, default utf-8). "
            "Returns bytes written and error if any."
        ),
        parameters=_object(
            ["path", "content"],
            path=("string", "File path to write"),
            content=("string", "Content to write"),
            encoding=("string", "File encoding (default: utf-8)"),
        ),
        gated=True,
        impl=_file_write,
    ),
    Tool(
        name="file_glob",
        description=(
            "Find files matching a glob pattern. "
            "Input should be a dict with 'pattern' (required) and 'base_path' (optional, "
            "default '.'). Returns list of matching file paths."
        ),
        parameters=_object(
            ["pattern"],
            pattern=("string", 'Glob pattern (e.g., "*.txt", "data/*.csv")'),
            base_path=("string", "Base directory for search (default: current dir)"),
        ),
        gated=True,
        impl=_file_glob,
    ),
    Tool(
        name="file_move",
        description=(
            "Move or rename a file. Creates parent directories if needed. "
            "Input should be a dict with 'source' (required) and 'dest' (required). "
            "Returns success status and error if any."
        ),
        parameters=_object(
            ["source", "dest"],
            source=("string", "Source file path"),
            dest=("string", "Destination file path"),
        ),
        gated=True,
        impl=_file_move,
    ),
)
