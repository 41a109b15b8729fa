"""shell, process and env_vars (gated), as the original defines them, with ALLOWED_COMMANDS
(comma-separated, from the server's environment) naming the commands shell and process
may start. Without it nothing runs (the original's documented intent; its code ran
anything); `*` allows any command, as the original's code did. Commands run with the
server's environment minus its secrets, the same filter env_vars applies."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import re
import signal
import subprocess
import threading
from collections.abc import Mapping
from typing import Any

from app.workflows.tools.base import Tool, ToolContext, ToolError

# The original's list (any name containing one of these) ...
_SENSITIVE = ("KEY", "SECRET", "PASSWORD", "TOKEN", "API", "CREDENTIAL", "AUTH", "PRIVATE")
# ... and the server's own secrets, however they are named.
_SERVER_SECRETS = ("DATABASE_URL", "PGPASSWORD")
_URL_WITH_PASSWORD = re.compile(r"://[^/\s@]*:[^/\s@]*@")
# With a command list in force, one command only: `ls; curl ...` must not pass as `ls`.
_CHAINING = (";", "&", "|", "`", "$(", ">", "<", "\n", "\r")
_OUTPUT_CHARS = 5000


def is_secret(name: str, value: str) -> bool:
    upper = name.upper()
    return (
        upper.startswith("CA_")
        or upper in _SERVER_SECRETS
        or upper.endswith(("_KEY", "_TOKEN", "_SECRET", "PASSWORD"))
        or any(s in upper for s in _SENSITIVE)
        or bool(_URL_WITH_PASSWORD.search(value))
    )


def safe_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not is_secret(k, v)}


def _check_command(name: str, env: Mapping[str, str], command: str) -> None:
    setting = env.get("ALLOWED_COMMANDS", "").strip()
    if setting == "*":
        return
    allowed = [c.strip() for c in setting.split(",") if c.strip()]
    if not allowed:
        raise ToolError(
            f"Command '{name}' not allowed: the server sets no ALLOWED_COMMANDS "
            "(an operator lists the commands tools may run)"
        )
    if name not in allowed:
        raise ToolError(f"Command '{name}' not in allowed list. Set ALLOWED_COMMANDS env var.")
    if any(c in command for c in _CHAINING):
        raise ToolError(
            "Command chaining, pipes, redirection and substitution are not allowed with "
            "ALLOWED_COMMANDS: run one command"
        )


async def _tail(stream: asyncio.StreamReader) -> str:
    """The last _OUTPUT_CHARS characters (the original keeps those), read without holding
    the whole output."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        kept += chunk
        del kept[: -_OUTPUT_CHARS * 4]
    return kept.decode("utf-8", errors="replace")[-_OUTPUT_CHARS:]


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


async def _shell(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    command = args["command"]
    parts = command.split()
    if not parts:
        raise ToolError("Empty command")
    _check_command(parts[0], ctx.env, command)
    timeout = min(args.get("timeout", 30), ctx.timeout)
    proc = await asyncio.create_subprocess_shell(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=safe_env(ctx.env),
        start_new_session=True,  # its own process group, so a timeout kills all of it
    )
    assert proc.stdout and proc.stderr
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr, _ = await asyncio.gather(
                _tail(proc.stdout), _tail(proc.stderr), proc.wait()
            )
    except TimeoutError:
        raise ToolError(f"Timeout after {timeout:g} seconds") from None
    finally:
        if proc.returncode is None:
            _kill(proc.pid)
            await proc.wait()
    return {"stdout": stdout, "stderr": stderr, "returncode": proc.returncode, "error": None}


async def _process(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    command, extra = args["command"], args.get("args") or []
    _check_command(command, ctx.env, command)
    try:
        proc = subprocess.Popen(
            [command, *map(str, extra)],
            stdin=subprocess.DEVNULL,
            # The original pipes output it never reads, which stalls a chatty process.
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=safe_env(ctx.env),
            start_new_session=True,
        )
    except OSError as exc:
        raise ToolError(str(exc)) from None
    # Reaped when it exits, so background processes leave no zombies in a long-lived server.
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()
    return {"pid": proc.pid, "status": "running", "error": None}


async def _env_vars(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    pattern = args.get("pattern")
    found = {
        k: v for k, v in safe_env(ctx.env).items() if not pattern or fnmatch.fnmatchcase(k, pattern)
    }
    return {"vars": found, "error": None}


TOOLS = (
    Tool(
        name="shell",
        description=(
            "Execute shell command. "
            "Input should be a dict with 'command' (required) and optional 'timeout' "
            "(default 30 seconds). Returns stdout, stderr, returncode, and error if any. "
            "Commands must be in ALLOWED_COMMANDS env var for security."
        ),
        parameters={
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "Shell command to execute"},
                "timeout": {"type": "integer", "description": "Timeout in seconds (default: 30)"},
            },
            "required": ["command"],
        },
        gated=True,
        impl=_shell,
    ),
    Tool(
        name="process",
        description=(
            "Spawn background process. "
            "Input should be a dict with 'command' (required) and optional 'args' (list). "
            "Returns pid, status, and error if any."
        ),
        parameters={
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "Command to execute"},
                "args": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Command arguments",
                },
            },
            "required": ["command"],
        },
        gated=True,
        impl=_process,
    ),
    Tool(
        name="env_vars",
        description=(
            "Read environment variables. "
            "Input should be a dict with optional 'pattern' to filter variable names. "
            "Returns vars dict and error if any. "
            "Excludes sensitive variables (KEY, SECRET, PASSWORD, TOKEN, API)."
        ),
        parameters={
            "type": "object",
            "properties": {
                "pattern": {
                    "type": "string",
                    "description": 'Optional pattern to filter variables (e.g., "PATH*")',
                }
            },
            "required": [],
        },
        gated=True,
        impl=_env_vars,
    ),
)
