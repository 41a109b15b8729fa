"""The sandbox for the `code` nodes of the original workflow format.

The original runs a node's `code` with RestrictedPython in its own process (safe builtins, the
values in an `inputs` dict, the answer read from `result`, a func_timeout timeout). Here the
same restricted execution happens in a child process (``_sandbox_child.py``) started for each
run with an empty environment, only stdin/stdout/stderr open and its own resource limits
(address space, CPU time, no files, no new processes); this process enforces the wall-clock
timeout and kills the child's whole process group on timeout or cancellation. What the code can
do is limited by RestrictedPython; the child process limits what a way around it could reach.

The node's `sandbox:` section keeps the original's shape (mode, enabled, preset, timeout,
resources.memory/timeout); see ``limits_for`` and ``unsupported``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.workflows._sandbox_child import compile_code

__all__ = [
    "CodeResult",
    "SandboxLimits",
    "compile_problems",
    "limits_for",
    "run_code",
    "unsupported",
]

logger = logging.getLogger(__name__)

CHILD = Path(__file__).with_name("_sandbox_child.py")
MAX_STDOUT_CHARS = 64 * 1024
MAX_RESULT_CHARS = 8 * 1024 * 1024
# The interpreter with RestrictedPython loaded takes ~16 MB of address space already.
MIN_MEMORY_MB = 32
DEFAULT_MAX_TIMEOUT = 60.0
DEFAULT_MAX_MEMORY_MB = 512
# Allowance for the child's start (interpreter + RestrictedPython, ~0.1 s) on top of the
# code's own timeout, so that a slow start is not reported as the code's timeout.
START_ALLOWANCE = 1.0

# The original's RESOURCE_PRESETS (its Docker executor's; its Python executor used the timeout).
PRESETS: dict[str, tuple[float, int]] = {
    "low": (30, 256),
    "medium": (60, 512),
    "high": (120, 1024),
    "max": (300, 2048),
}


@dataclass(frozen=True)
class SandboxLimits:
    timeout: float  # wall-clock seconds
    memory_mb: int  # address-space limit of the child


@dataclass(frozen=True)
class CodeResult:
    ok: bool
    result: Any  # the value the code left in `result` (JSON), None on failure
    stdout: str  # what the code printed, at most MAX_STDOUT_CHARS and a truncation note
    error: str | None  # one plain line
    duration_ms: float


# ---------------------------------------------------------------------------- limits


def _ceiling(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = 0
    if not value > 0 or math.isinf(value):
        logger.warning("%s=%r is not a positive number; using %s", name, raw, default)
        return default
    return value


def _timeout(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf:
        return float(value)
    return None


_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmg]?)i?b?", re.IGNORECASE)
_UNIT = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _memory_mb(value: Any) -> int | None:
    """Docker's notation, as in the original presets: "256m", "1g", "512k"; a number is bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        size = float(value)
    elif isinstance(value, str) and (match := _MEMORY.fullmatch(value.strip())):
        size = float(match[1]) * _UNIT[(match[2] or "b").lower()]
    else:
        return None
    return math.ceil(size / 1024**2) if size > 0 else None


def _section(sandbox: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return sandbox if isinstance(sandbox, Mapping) else {}


def _resources(sandbox: Mapping[str, Any]) -> Mapping[str, Any]:
    resources = sandbox.get("resources")
    return resources if isinstance(resources, Mapping) else {}


def limits_for(sandbox: Mapping[str, Any] | None) -> SandboxLimits:
    """The limits for a node's `sandbox:` section, resolved like the original.

    The preset (default medium) gives timeout and memory; `resources.timeout` and
    `resources.memory` override it and `timeout` overrides both. Values that cannot be read
    (``unsupported`` names them) leave the preset's. The result is never above the server's
    ceilings, CA_SANDBOX_MAX_TIMEOUT (seconds, default 60) and CA_SANDBOX_MAX_MEMORY_MB
    (default 512), nor below MIN_MEMORY_MB.
    """
    section = _section(sandbox)
    resources = _resources(section)
    preset = section.get("preset")
    timeout, memory = PRESETS.get(preset if isinstance(preset, str) else "", PRESETS["medium"])
    timeout = _timeout(section.get("timeout")) or _timeout(resources.get("timeout")) or timeout
    memory = _memory_mb(resources.get("memory")) or memory
    max_timeout = _ceiling("CA_SANDBOX_MAX_TIMEOUT", DEFAULT_MAX_TIMEOUT)
    max_memory = int(_ceiling("CA_SANDBOX_MAX_MEMORY_MB", DEFAULT_MAX_MEMORY_MB))
    return SandboxLimits(
        timeout=min(timeout, max_timeout),
        memory_mb=max(MIN_MEMORY_MB, min(memory, max_memory)),
    )


def unsupported(sandbox: Mapping[str, Any] | None) -> str | None:
    """Why this `sandbox:` section cannot run here (one line saying what to change), or None."""
    if sandbox is None:
        return None
    if not isinstance(sandbox, Mapping):
        return "the sandbox section must be a mapping (mode, preset, timeout, resources)"
    mode = sandbox.get("mode", "python")
    if mode == "docker":
        return (
            "sandbox mode 'docker' is not available here: remove `mode: docker` (or set"
            " `mode: python`); the code then runs with RestrictedPython in a child process with"
            " memory and time limits"
        )
    if mode not in (None, "python"):
        return f"unknown sandbox mode {mode!r}: use `mode: python`"
    enabled = sandbox.get("enabled", True)
    if enabled is False or str(enabled).strip().lower() in ("false", "0", "no", "off"):
        # The original then exec()s the code unrestricted inside its own process.
        return (
            "`enabled: false` would run the code outside the sandbox, which this server never"
            " does: remove `enabled: false` from the sandbox section"
        )
    preset = sandbox.get("preset")
    if preset is not None and not (isinstance(preset, str) and preset in PRESETS):
        return f"unknown sandbox preset {preset!r}: use one of low, medium, high, max"
    resources = sandbox.get("resources")
    if resources is not None and not isinstance(resources, Mapping):
        return "sandbox resources must be a mapping (memory, timeout)"
    resources = resources or {}
    for where, value in (
        ("timeout", sandbox.get("timeout")),
        ("resources.timeout", resources.get("timeout")),
    ):
        if value is not None and _timeout(value) is None:
            return f"sandbox {where} must be a positive number of seconds, not {value!r}"
    memory = resources.get("memory")
    if memory is not None and _memory_mb(memory) is None:
        return f"sandbox resources.memory must be a size like '256m' or '1g', not {memory!r}"
    return None


# ---------------------------------------------------------------------------- running


def compile_problems(code: str) -> list[str]:
    """What keeps `code` from compiling in the sandbox (syntax, imports, private names), or []."""
    return compile_code(code)[1]


def _seconds(value: float) -> str:
    return f"{value:g}"


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    """Read to EOF, keeping at most `cap` bytes; the rest is drained so the child never blocks."""
    data = bytearray()
    over = False
    while chunk := await stream.read(65536):
        if len(data) + len(chunk) > cap:
            over = True
        data += chunk[: max(cap - len(data), 0)]
    return bytes(data), over


async def _exchange(proc: asyncio.subprocess.Process, request: bytes) -> tuple[bytes, bool, bytes]:
    assert proc.stdin and proc.stdout and proc.stderr
    # The child reads its whole request before writing anything, so writing first is safe; a
    # child that died at start only makes the write fail.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(request)
        await proc.stdin.drain()
    proc.stdin.close()
    cap = MAX_RESULT_CHARS + MAX_STDOUT_CHARS * 6 + 65536  # \uXXXX escapes in stdout
    (out, over), (err, _) = await asyncio.gather(
        _read_capped(proc.stdout, cap), _read_capped(proc.stderr, 65536)
    )
    await proc.wait()
    return out, over, err


def _kill(proc: asyncio.subprocess.Process) -> None:
    # The child is the leader of its own session (start_new_session), so its group id is its
    # pid; the group also takes anything it might have started. Only while it is not reaped:
    # a reaped pid may belong to another process.
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _failure(proc: asyncio.subprocess.Process, err: bytes, limits: SandboxLimits) -> str:
    """The error for a child that ended without an answer."""
    code = proc.returncode or 0
    if code == -signal.SIGXCPU:
        return f"timed out after {_seconds(limits.timeout)} s"  # RLIMIT_CPU
    text = err.decode("utf-8", "replace")
    if "MemoryError" in text:
        return f"memory limit of {limits.memory_mb} MB exceeded"
    if code < 0:
        return f"the sandbox process died (signal {-code})"
    last = text.strip().splitlines()[-1:] or [""]
    return f"the sandbox process failed (exit code {code}) {last[0][:300]}".strip()


async def run_code(code: str, inputs: Mapping[str, Any], limits: SandboxLimits) -> CodeResult:
    """Run `code` in a fresh sandbox child; it reads `inputs` and leaves its answer in `result`."""
    started = time.monotonic()

    def done(
        ok: bool, result: Any = None, stdout: str = "", error: str | None = None
    ) -> CodeResult:
        duration = (time.monotonic() - started) * 1000
        return CodeResult(ok=ok, result=result, stdout=stdout, error=error, duration_ms=duration)

    # The code is compiled in the child too, so that hostile source costs the parent nothing.
    try:
        request = json.dumps(
            {
                "code": code,
                "inputs": dict(inputs),
                "timeout": limits.timeout,
                "memory_mb": limits.memory_mb,
                "max_stdout": MAX_STDOUT_CHARS,
                "max_result": MAX_RESULT_CHARS,
            },
            allow_nan=False,
        ).encode()
    except (TypeError, ValueError) as exc:
        return done(False, error=f"inputs are not JSON-serialisable: {exc}")

    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # no PYTHON* variables, no user site, no current directory on sys.path
            str(CHILD),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={},  # none of the server's environment, secrets included
            cwd="/",
            close_fds=True,  # the default; said here because it matters
            start_new_session=True,
        )
    except OSError as exc:  # out of processes or file descriptors
        return done(False, error=f"could not start the sandbox process: {exc}")
    try:
        out, over, err = await asyncio.wait_for(
            _exchange(proc, request), timeout=limits.timeout + START_ALLOWANCE
        )
    except TimeoutError:
        _kill(proc)
        await proc.wait()
        return done(False, error=f"timed out after {_seconds(limits.timeout)} s")
    except BaseException:  # cancelled (or anything else): the child must not outlive us
        _kill(proc)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(proc.wait()), timeout=5)
        raise
    if over:
        return done(False, error="the sandbox answer was too large")
    try:
        answer = json.loads(out)
    except ValueError:
        return done(False, error=_failure(proc, err, limits))
    return done(answer["ok"], answer["result"], answer["stdout"], answer["error"])
