"""The child side of the code sandbox (see ``app.workflows.sandbox``).

Run as ``python -I _sandbox_child.py`` with an empty environment: it reads one JSON request on
stdin (code, inputs, limits), lowers its own resource limits, runs the code under
RestrictedPython and writes one JSON answer on stdout. It imports only the standard library and
RestrictedPython, never the app, so nothing of the server's configuration is loaded in here.

``compile_code`` is also imported by the parent, to report compile problems without running.
"""

from __future__ import annotations

import ast
import builtins
import json
import math
import operator
import os
import resource
import sys
from typing import Any

from RestrictedPython import compile_restricted_exec
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safe_builtins,
    safer_getattr,
)

FILENAME = "<sandbox>"
MAX_CODE_CHARS = 100_000
MAX_ERROR_CHARS = 1_000
NOBODY = 65534

# The original's SAFE_BUILTINS, merged over RestrictedPython's safe_builtins as the original
# does. Two differences: `print` is left out because RestrictedPython rewrites every `print`
# into `_print_`, and `format` is the builtin format(value, spec) instead of the original's
# str.format, whose "{0.__class__}" fields read attributes past the `_getattr_` guard.
# fmt: off
_EXTRA_NAMES = (
    "dict", "list", "str", "int", "float", "bool", "tuple", "set", "frozenset", "bytes",
    "len", "range", "enumerate", "zip", "sum", "min", "max", "abs", "round", "pow", "divmod",
    "any", "all", "sorted", "reversed", "map", "filter", "ord", "chr", "bin", "hex", "oct",
    "format", "slice", "iter", "next",
)
# fmt: on
SANDBOX_BUILTINS: dict[str, Any] = {
    **safe_builtins,
    **{name: getattr(builtins, name) for name in _EXTRA_NAMES},
}

_INPLACE = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    return _INPLACE[op](target, value)


def _apply(func: Any, *args: Any, **kwargs: Any) -> Any:
    # f(*args, **kwargs) is compiled into _apply_(f, ...); the call itself is harmless.
    return func(*args, **kwargs)


class Stdout:
    """Everything the code prints, kept up to `limit` characters."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def write(self, text: str) -> None:
        room = self.limit - self.size
        if len(text) > room:
            self.dropped += len(text) - max(room, 0)
            text = text[: max(room, 0)]
        if text:
            self.parts.append(text)
            self.size += len(text)

    def text(self) -> str:
        out = "".join(self.parts)
        if self.dropped:
            out += f"\n[output truncated: {self.dropped} more characters]"
        return out


def _printer(stdout: Stdout) -> type:
    """The `_print_` class: RestrictedPython makes one per scope and calls `_call_print`."""

    class Print:
        def __init__(self, _getattr_: Any = None) -> None:
            self.own = Stdout(stdout.limit)  # what the `printed` name returns in this scope

        def write(self, text: str) -> None:
            self.own.write(text)
            stdout.write(text)

        def __call__(self) -> str:
            return self.own.text()

        def _call_print(self, *objects: Any, **kwargs: Any) -> None:
            kwargs["file"] = self  # never another file, whatever the code passes
            print(*objects, **kwargs)  # noqa: T201 - into self, i.e. the captured stdout

    return Print


def _line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


def _import_problems(tree: ast.AST) -> list[tuple[int, str]]:
    # RestrictedPython compiles `import x` and only fails at run time ("__import__ not found"),
    # which `validate` would miss; refuse it at compile time with a clear reason.
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = ["." * node.level + (node.module or "")]
        else:
            continue
        found += [
            (node.lineno, f"not allowed: import of {name} (line {node.lineno})") for name in names
        ]
    return found


def _restricted_problem(text: str) -> tuple[int, str]:
    """RestrictedPython's 'Line 2: SyntaxError: ... at statement: ...' or 'Line 2: ...'."""
    head, _, rest = text.partition(": ")
    number = head.removeprefix("Line ")
    line = int(number) if number.isdigit() else 0
    if rest.startswith("SyntaxError: "):
        message = rest.removeprefix("SyntaxError: ").split(" at statement:")[0]
        return line, _line(f"SyntaxError: line {line}: {message}")
    return line, _line(f"not allowed: {rest.rstrip('.')} (line {line})")


def compile_code(code: str) -> tuple[Any, list[str]]:
    """(code object, []) or (None, problems), each problem one plain line."""
    if not isinstance(code, str) or not code.strip():
        return None, ["the code is empty"]
    if len(code) > MAX_CODE_CHARS:
        return None, [f"the code is too long ({len(code)} characters, at most {MAX_CODE_CHARS})"]
    try:
        problems = _import_problems(ast.parse(code, FILENAME))
        compiled = compile_restricted_exec(code, FILENAME)
    except SyntaxError as exc:  # raised directly for a few errors, e.g. 'yield' outside function
        where = f"line {exc.lineno}: " if exc.lineno else ""
        return None, [_line(f"SyntaxError: {where}{exc.msg}")]
    except (RecursionError, MemoryError):  # the parser's own stack limits, on absurd nesting
        return None, ["the code is nested too deeply to compile"]
    except ValueError as exc:  # NUL bytes on some Python versions
        return None, [_line(f"the code cannot be compiled: {exc}")]
    problems += [_restricted_problem(text) for text in compiled.errors]
    if problems:
        return None, [text for _, text in sorted(problems, key=lambda item: item[0])]
    return compiled.code, []


def restricted_globals(inputs: dict[str, Any], stdout: Stdout) -> dict[str, Any]:
    """The names the code sees: like the original, only `inputs` and `result` besides builtins."""
    return {
        "__builtins__": SANDBOX_BUILTINS,
        "__name__": "__sandbox__",
        "_getattr_": safer_getattr,
        "_getitem_": default_guarded_getitem,
        "_getiter_": default_guarded_getiter,
        "_write_": full_write_guard,
        "_inplacevar_": _inplacevar,
        "_apply_": _apply,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_print_": _printer(stdout),
        "inputs": inputs,
        "result": None,
    }


def _sandbox_line(tb: Any) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _describe(exc: BaseException, memory_mb: int) -> str:
    if isinstance(exc, MemoryError):
        return f"memory limit of {memory_mb} MB exceeded"
    line = _sandbox_line(exc.__traceback__)
    where = f" (line {line})" if line else ""
    name = getattr(exc, "name", None) if isinstance(exc, NameError) else None
    if name == "__metaclass__":  # as in the original, whose globals lack it too
        return f"not allowed: class statements{where}"
    if name and name in vars(builtins) and name not in SANDBOX_BUILTINS:
        return f"not allowed: {name}(){where}"
    try:
        message = str(exc)
    except Exception:  # the code's own exception class may have a broken __str__
        message = ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return _line(text) + where


def _lower_limits(timeout: float, memory_mb: int) -> None:
    if os.geteuid() == 0:
        # Run the code as nobody when started as root, so a way out of RestrictedPython does
        # not come with root's rights; RLIMIT_NPROC is also ignored for root. Best effort: a
        # user namespace may not map uid 65534.
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        except OSError:
            pass
    memory = memory_mb * 1024 * 1024
    cpu = math.ceil(timeout)
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # SIGXCPU at the soft limit, SIGKILL one second later; the parent's wall clock also runs.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file of a killed child
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file writes (pipes are unaffected)
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    # No new processes. Counted per user but only checked at fork(), so 0 does not touch the
    # processes that already exist; set here after exec, as execve() also checks it.
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


def _answer(ok: bool, result: Any, stdout: Stdout, error: str | None) -> dict[str, Any]:
    return {"ok": ok, "result": result, "stdout": stdout.text(), "error": error}


def run(request: dict[str, Any]) -> dict[str, Any]:
    memory_mb = int(request["memory_mb"])
    max_result = int(request["max_result"])
    stdout = Stdout(int(request["max_stdout"]))
    # Limits first: compiling hostile source can take memory and time too.
    _lower_limits(float(request["timeout"]), memory_mb)
    code, problems = compile_code(request["code"])
    if problems:
        return _answer(False, None, stdout, problems[0])
    glb = restricted_globals(request.pop("inputs"), stdout)
    try:
        exec(code, glb)
        value = glb.get("result")
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are the code's too
        error = _describe(exc, memory_mb)
        glb.clear()  # free what the code built before answering, after a MemoryError
        return _answer(False, None, stdout, error)
    glb.clear()
    try:
        text = json.dumps(value, allow_nan=False)
    except MemoryError:
        return _answer(False, None, stdout, f"memory limit of {memory_mb} MB exceeded")
    except (TypeError, ValueError, RecursionError) as exc:
        return _answer(False, None, stdout, _line(f"result is not JSON-serialisable: {exc}"))
    if len(text) > max_result:
        error = f"result is too large ({len(text)} characters as JSON, at most {max_result})"
        return _answer(False, None, stdout, error)
    return _answer(True, value, stdout, None)


def main() -> None:
    answer = run(json.loads(sys.stdin.buffer.read()))
    # ASCII JSON: the bytes are the same whatever the locale, lone surrogates included.
    sys.stdout.buffer.write(json.dumps(answer, allow_nan=False).encode("ascii"))
    sys.stdout.buffer.flush()
    # Skip interpreter shutdown: finalizers (__del__ of the code's objects) must not run.
    os._exit(0)


if __name__ == "__main__":
    main()
