"""What every built-in tool is: a name, a description and a JSON Schema for the model, and
an async function the tool-calling loop awaits with the model's arguments."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.workflows.providers.policy import ProviderPolicy

log = logging.getLogger(__name__)


class ToolError(Exception):
    """A call that failed; str(exc) is a plain message for the model and the timeline."""


@dataclass(frozen=True)
class ToolContext:
    policy: ProviderPolicy
    config: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 30.0
    # The server's environment: key variables, ALLOWED_COMMANDS, ALLOWED_PATHS. Never the
    # workflow's: a stored workflow must not choose where the server's keys go.
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)


Impl = Callable[[dict[str, Any], ToolContext], Awaitable[Any]]


def gated_message(name: str) -> str:
    return (
        f"tool '{name}' touches the server and is off: an operator enables it with "
        f"CA_ENABLED_TOOLS={name}"
    )


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    gated: bool
    impl: Impl = field(repr=False, compare=False)

    async def call(self, arguments: Mapping[str, Any], ctx: ToolContext) -> Any:
        """Run the tool; anything that goes wrong comes out as a ToolError."""
        # Checked again here, not only when the workflow is loaded: the loop may be handed
        # a tool name the model made up.
        if self.gated and self.name not in ctx.policy.enabled_tools:
            raise ToolError(gated_message(self.name))
        args = check_arguments(self, arguments)
        try:
            async with asyncio.timeout(ctx.timeout):
                return await self.impl(args, ctx)
        except ToolError:
            raise
        except TimeoutError:
            raise ToolError(f"{self.name} timed out after {ctx.timeout:g} seconds") from None
        except Exception as exc:
            log.exception("tool %s failed", self.name)
            raise ToolError(f"{self.name} failed: {exc}") from exc


_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list),
}


def _matches(value: Any, schema: Mapping[str, Any]) -> bool:
    if "anyOf" in schema:
        return any(_matches(value, s) for s in schema["anyOf"])
    kind = schema.get("type")
    return kind is None or _TYPES[kind](value)


def check_arguments(tool: Tool, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The model's arguments, checked against the tool's schema with messages the model can
    act on; an optional argument given as null counts as left out."""
    if not isinstance(arguments, Mapping):
        raise ToolError(f"{tool.name} takes an object of arguments, not {type(arguments).__name__}")
    props: Mapping[str, Any] = tool.parameters.get("properties", {})
    required = tool.parameters.get("required", [])
    unknown = sorted(set(arguments) - set(props))
    if unknown:
        raise ToolError(
            f"{tool.name} has no argument {', '.join(unknown)}; its arguments are "
            f"{', '.join(props) or 'none'}"
        )
    args = {k: v for k, v in arguments.items() if v is not None or k in required}
    missing = [k for k in required if k not in args]
    if missing:
        raise ToolError(f"{tool.name} needs the argument {', '.join(missing)}")
    for key, value in args.items():
        if not _matches(value, props[key]):
            want = props[key].get("type") or " or ".join(s["type"] for s in props[key]["anyOf"])
            raise ToolError(f"{tool.name}: argument {key} must be of type {want}")
    return args
