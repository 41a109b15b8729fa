"""Prompt placeholders: finding and filling ``{state.x}``, ``{state.x.y}`` and ``{x}``.

As in the original format, a placeholder is ``{`` + an optional ``state.`` + dotted names +
``}`` with no spaces; ``{x}`` is a state field (or a name from the node's ``inputs``). Any
other braces (JSON examples, ``{ x }``) are literal text and stay as they are. The original
format has no brace escapes, so ``{{x}}`` renders as ``{`` + value + ``}``.

Rendering only reads dict keys: no ``str.format``, no attribute or index access.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Placeholder",
    "PromptError",
    "find_placeholders",
    "input_reference",
    "prompt_placeholders",
    "render_prompt",
]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PLACEHOLDER = re.compile(r"\{(state\.)?(" + _NAME + r"(?:\." + _NAME + r")*)\}")
_INPUT_REF = re.compile(r"^\s*\{?\s*(?:state\.)?(" + _NAME + r"(?:\." + _NAME + r")*)\s*\}?\s*$")


class PromptError(ValueError):
    """A placeholder whose value is not in the state (raised while rendering)."""

    def __init__(self, placeholder: str, message: str):
        self.placeholder = placeholder
        super().__init__(f"placeholder {placeholder}: {message}")


@dataclass(frozen=True)
class Placeholder:
    """One placeholder: its text as written, its dotted path, and where it starts."""

    text: str
    path: str
    has_state_prefix: bool
    start: int


def find_placeholders(template: str) -> list[Placeholder]:
    """Every placeholder in ``template``, in order (repeats included)."""
    return [
        Placeholder(m.group(0), m.group(2), m.group(1) is not None, m.start())
        for m in _PLACEHOLDER.finditer(template)
    ]


def prompt_placeholders(template: str) -> list[str]:
    """The dotted paths (without ``state.``) named in ``template``, each once, in order."""
    seen: dict[str, None] = {}
    for ph in find_placeholders(template):
        seen.setdefault(ph.path, None)
    return list(seen)


def input_reference(value: str) -> str | None:
    """The state path named by a node ``inputs`` value (``{x}``, ``{state.x}``, ``state.x``
    or ``x``), or None when the value is not such a reference."""
    if not isinstance(value, str):
        return None
    match = _INPUT_REF.match(value)
    if match is None:
        return None
    braces = value.strip()
    if braces.startswith("{") != braces.endswith("}"):
        return None
    return match.group(1)


def _lookup(state: Mapping[str, Any], path: list[str], text: str) -> Any:
    current: Any = state
    for depth, key in enumerate(path):
        if not isinstance(current, Mapping):
            where = ".".join(path[:depth])
            raise PromptError(text, f"'{where}' is not an object, cannot read '{key}'")
        if key not in current:
            where = ".".join(path[: depth + 1])
            raise PromptError(text, f"'{where}' is not in the state")
        current = current[key]
    return current


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def render_prompt(
    template: str, state: Mapping[str, Any], aliases: Mapping[str, str] | None = None
) -> str:
    """``template`` with each placeholder replaced by its value from ``state``.

    Strings are inserted as they are, other values as JSON. ``aliases`` maps a node's local
    input names to state paths (a ``{name}`` placeholder without ``state.`` uses it first).
    Raises PromptError when a path is not in the state. Text that is not a placeholder,
    including the inserted values, is never interpreted again.
    """
    aliases = aliases or {}

    def replace(match: re.Match[str]) -> str:
        path = match.group(2).split(".")
        if match.group(1) is None and path[0] in aliases:
            path = aliases[path[0]].split(".") + path[1:]
        return _as_text(_lookup(state, path, match.group(0)))

    return _PLACEHOLDER.sub(replace, template)
