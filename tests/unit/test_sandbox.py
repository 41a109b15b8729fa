"""The code-node sandbox: RestrictedPython in a child process with memory and time limits."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from app.workflows import sandbox
from app.workflows.sandbox import (
    CodeResult,
    SandboxLimits,
    compile_problems,
    limits_for,
    run_code,
    unsupported,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses rlimits and /proc")

LIMITS = SandboxLimits(timeout=1, memory_mb=128)


def sandbox_children() -> list[int]:
    """Our live sandbox child processes, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and b"_sandbox_child" in cmdline and fields[0] != "Z":
            found.append(int(entry.name))
    return found


async def started_child() -> int:
    for _ in range(100):
        if children := sandbox_children():
            assert len(children) == 1
            return children[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no sandbox child started")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def run(code: str, inputs: dict | None = None, limits: SandboxLimits = LIMITS) -> CodeResult:
    started = time.monotonic()
    result = await run_code(code, inputs or {}, limits)
    assert time.monotonic() - started < limits.timeout + 5
    return result


# ---------------------------------------------------------------------------- running


async def test_computes_result_from_inputs_and_captures_print():
    code = (
        "total = 0\n"
        "for n in inputs['numbers']:\n"
        "    total += n\n"
        "print('sum is', total)\n"
        "pairs = sorted(zip(inputs['names'], inputs['numbers']), key=lambda p: -p[1])\n"
        "result = {'total': total, 'max': max(inputs['numbers']), 'top': pairs[0][0],\n"
        "          'all_positive': all(n > 0 for n in inputs['numbers'])}\n"
    )
    result = await run(code, {"numbers": [3, 1, 2], "names": ["a", "b", "c"]})
    assert result == CodeResult(
        ok=True,
        result={"total": 6, "max": 3, "top": "a", "all_positive": True},
        stdout="sum is 6\n",
        error=None,
        duration_ms=result.duration_ms,
    )
    assert 0 < result.duration_ms < 5000


async def test_common_python_works():
    code = (
        "d = {}\n"
        "d['k'] = [1, 2]\n"
        "a, *rest = [1, 2, 3]\n"
        "def f(*args, **kw):\n"
        "    return len(args) + len(kw)\n"
        "args = [1, 2]\n"
        "result = [d, a, rest, f(*args, z=1), format(3.14159, '.2f'), list(reversed(range(3)))]\n"
    )
    result = await run(code)
    assert result.ok, result.error
    assert result.result == [{"k": [1, 2]}, 1, [2, 3], 3, "3.14", [2, 1, 0]]


async def test_no_result_is_none():
    assert (await run("x = 1")).result is None


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("import os", "not allowed: import of os (line 1)"),
        ("x = 1\nfrom subprocess import run", "not allowed: import of subprocess (line 2)"),
        ("__import__('os')", 'not allowed: "__import__" is an invalid variable name'),
        ("open('/etc/passwd').read()", "not allowed: open() (line 1)"),
        ("result = globals()", "not allowed: globals() (line 1)"),
        ("().__class__.__bases__[0].__subclasses__()", "not allowed: "),
        ("g = (i for i in [1])\nf = g.gi_frame", 'not allowed: "gi_frame" is a restricted name'),
        ("result = '{0.__class__}'.format(1)", "NotImplementedError: Using the format*()"),
        ("eval('1')", "not allowed: Eval calls are not allowed (line 1)"),
        ("result = os.environ", "NameError: name 'os' is not defined (line 1)"),
        ("class A:\n    pass", "not allowed: class statements (line 1)"),
    ],
)
async def test_hostile_code_is_refused(code, error):
    result = await run(code)
    assert not result.ok
    assert result.result is None
    assert result.error.startswith(error), result.error


async def test_endless_loop_times_out():
    started = time.monotonic()
    result = await run_code("while True:\n    pass", {}, SandboxLimits(timeout=1, memory_mb=128))
    took = time.monotonic() - started
    assert result.error == "timed out after 1 s"
    assert 0.9 < took < 3
    assert sandbox_children() == []


async def test_wall_clock_timeout_kills_the_child(monkeypatch):
    # Without the start allowance the wall clock (0.5 s) fires before RLIMIT_CPU (1 s).
    monkeypatch.setattr(sandbox, "START_ALLOWANCE", 0)
    started = time.monotonic()
    result = await run_code("while True:\n    pass", {}, SandboxLimits(timeout=0.5, memory_mb=128))
    assert result.error == "timed out after 0.5 s"
    assert time.monotonic() - started < 0.95
    assert sandbox_children() == []


@pytest.mark.parametrize(
    "code",
    [
        "x = 'a' * 10**10",
        "x = [0] * 10**9",
        "x = []\nwhile True:\n    x.append('a' * 100000)",
    ],
)
async def test_memory_limit(code):
    started = time.monotonic()
    result = await run(code, limits=SandboxLimits(timeout=10, memory_mb=128))
    assert result.error == "memory limit of 128 MB exceeded"
    assert time.monotonic() - started < 5


async def test_huge_print_is_truncated():
    result = await run("print('a' * 10**7)\nresult = 1")
    assert result.ok
    assert len(result.stdout) < sandbox.MAX_STDOUT_CHARS + 100
    assert result.stdout.startswith("a" * 1000)
    assert result.stdout.endswith("[output truncated: 9934465 more characters]")


async def test_runtime_and_syntax_errors_are_one_line():
    result = await run("x = 1\ny = 0\nz = x / y")
    assert result.error == "ZeroDivisionError: division by zero (line 3)"
    result = await run("x = 1\ny = (")
    assert result.error == "SyntaxError: line 2: '(' was never closed"
    result = await run("raise ValueError('two\\nlines')")
    assert result.error == "ValueError: two lines (line 1)"


async def test_results_and_inputs_must_be_json():
    result = await run("result = {1, 2}")
    assert result.error == (
        "result is not JSON-serialisable: Object of type set is not JSON serializable"
    )
    result = await run_code("result = 1", {"x": object()}, LIMITS)
    assert result.error.startswith("inputs are not JSON-serialisable")


async def test_print_output_is_kept_when_the_code_fails():
    result = await run("print('before')\nx = 1 / 0")
    assert result.stdout == "before\n"
    assert result.error == "ZeroDivisionError: division by zero (line 2)"


async def test_killed_child_is_reported():
    task = asyncio.create_task(run_code("while True:\n    pass", {}, SandboxLimits(10, 128)))
    pid = await started_child()
    os.kill(pid, signal.SIGKILL)
    result = await task
    assert result.error == "the sandbox process died (signal 9)"


async def test_child_has_no_environment_nor_other_fds(monkeypatch):
    monkeypatch.setenv("CA_SECRET", "hunter2")
    task = asyncio.create_task(run_code("while True:\n    pass", {}, SandboxLimits(10, 128)))
    try:
        pid = await started_child()
        await asyncio.sleep(0.3)  # past the child's start, into the code
        proc = Path(f"/proc/{pid}")
        assert (proc / "environ").read_bytes() == b""
        assert sorted(os.listdir(proc / "fd")) == ["0", "1", "2"]
        limits = (proc / "limits").read_text()
        assert "Max address space         134217728" in limits
        assert "Max processes             0" in limits
        status = (proc / "status").read_text()
        if os.geteuid() == 0:  # the child drops root for nobody
            assert "Uid:\t65534\t65534\t65534\t65534" in status
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_cancellation_kills_the_child():
    task = asyncio.create_task(run_code("while True:\n    pass", {}, SandboxLimits(30, 128)))
    pid = await started_child()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gone(pid)
    assert sandbox_children() == []


async def test_parallel_runs_are_independent():
    results = await asyncio.gather(*(run(f"result = {n} * 2") for n in range(4)))
    assert [r.result for r in results] == [0, 2, 4, 6]


# ---------------------------------------------------------------------------- limits


@pytest.fixture
def no_ceilings_env(monkeypatch):
    monkeypatch.delenv("CA_SANDBOX_MAX_TIMEOUT", raising=False)
    monkeypatch.delenv("CA_SANDBOX_MAX_MEMORY_MB", raising=False)


@pytest.mark.usefixtures("no_ceilings_env")
@pytest.mark.parametrize(
    ("section", "limits"),
    [
        (None, SandboxLimits(60, 512)),
        ({}, SandboxLimits(60, 512)),
        ({"preset": "low"}, SandboxLimits(30, 256)),
        ({"preset": "medium"}, SandboxLimits(60, 512)),
        ({"preset": "high"}, SandboxLimits(60, 512)),  # ceilings
        ({"preset": "max"}, SandboxLimits(60, 512)),
        ({"preset": "low", "timeout": 5}, SandboxLimits(5, 256)),
        ({"preset": "low", "resources": {"timeout": 7, "memory": "128m"}}, SandboxLimits(7, 128)),
        ({"timeout": 5, "resources": {"timeout": 7}}, SandboxLimits(5, 512)),  # timeout wins
        ({"resources": {"memory": "1g"}}, SandboxLimits(60, 512)),
        ({"resources": {"memory": "1m"}}, SandboxLimits(60, sandbox.MIN_MEMORY_MB)),
        ({"resources": {"memory": 64 * 1024 * 1024}}, SandboxLimits(60, 64)),  # bytes, as Docker
        ({"preset": "huge", "timeout": "x"}, SandboxLimits(60, 512)),  # unreadable: preset's
    ],
)
def test_limits_for(section, limits):
    assert limits_for(section) == limits


def test_limits_for_with_raised_ceilings(monkeypatch):
    monkeypatch.setenv("CA_SANDBOX_MAX_TIMEOUT", "600")
    monkeypatch.setenv("CA_SANDBOX_MAX_MEMORY_MB", "4096")
    assert limits_for({"preset": "high"}) == SandboxLimits(120, 1024)
    assert limits_for({"preset": "max"}) == SandboxLimits(300, 2048)
    assert limits_for({"preset": "max", "timeout": 3600}) == SandboxLimits(600, 2048)


def test_limits_for_with_lowered_ceilings(monkeypatch):
    monkeypatch.setenv("CA_SANDBOX_MAX_TIMEOUT", "2.5")
    monkeypatch.setenv("CA_SANDBOX_MAX_MEMORY_MB", "100")
    assert limits_for({"preset": "low"}) == SandboxLimits(2.5, 100)
    monkeypatch.setenv("CA_SANDBOX_MAX_TIMEOUT", "nonsense")
    assert limits_for(None).timeout == 60


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (None, None),
        ({}, None),
        ({"mode": "python", "enabled": True, "preset": "low", "network": False}, None),
        ({"resources": {"memory": "256m", "timeout": 10, "cpu": 0.5}}, None),
        ({"mode": "docker"}, "sandbox mode 'docker' is not available here: remove `mode: docker`"),
        ({"mode": "vm"}, "unknown sandbox mode 'vm'"),
        ({"enabled": False}, "`enabled: false` would run the code outside the sandbox"),
        ({"enabled": "false"}, "`enabled: false` would run the code outside the sandbox"),
        ({"preset": "huge"}, "unknown sandbox preset 'huge': use one of low, medium, high, max"),
        ({"timeout": -1}, "sandbox timeout must be a positive number of seconds, not -1"),
        ({"resources": {"memory": "lots"}}, "sandbox resources.memory must be a size like"),
        ("docker", "the sandbox section must be a mapping"),
    ],
)
def test_unsupported(section, message):
    found = unsupported(section)
    if message is None:
        assert found is None
    else:
        assert found is not None and found.startswith(message), found


def test_compile_problems():
    assert compile_problems("x = 1\nresult = x + 1") == []
    assert compile_problems("import os") == ["not allowed: import of os (line 1)"]
    assert compile_problems("x = 1\ny = (") == ["SyntaxError: line 2: '(' was never closed"]
    assert compile_problems("x = _secret") == [
        'not allowed: "_secret" is an invalid variable name because it starts with "_" (line 1)'
    ]
    assert compile_problems("-" * 99_990 + "1") == ["the code is nested too deeply to compile"]
    assert compile_problems("") == ["the code is empty"]
