"""The tools one node execution may call, and the record of every call it makes.

A provider runs the model's tool-calling loop; it hands each call the model asks for to
the node's `ToolBox`, which runs the built-in tool, reports the call (name, arguments,
result, duration) to the recorder as a step of the timeline, and answers the model.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.workflows.providers.base import ProviderError
from app.workflows.providers.policy import ProviderPolicy
from app.workflows.spec import NodeSpec, WorkflowSpec
from app.workflows.tools import ToolContext, ToolError, get_tool, openai_schema, tool_problem

__all__ = ["MAX_RESULT_CHARS", "ToolBox", "ToolCall", "tool_problems"]

# What one tool result may add to the conversation (and to the timeline).
MAX_RESULT_CHARS = 20_000


@dataclass(frozen=True)
class ToolCall:
    """One call a node made: a tool the model asked for, or the code sandbox."""

    name: str
    arguments: Any
    result: Any
    error: str | None
    started_at: datetime
    duration_ms: float

    def as_step(self) -> dict[str, Any]:
        """The call as a step row's values (the recorder adds node, order and item)."""
        return {
            "tool": self.name,
            "status": "failed" if self.error else "completed",
            "started_at": self.started_at,
            "completed_at": self.started_at + timedelta(milliseconds=self.duration_ms),
            "duration_ms": self.duration_ms,
            "output": {"arguments": self.arguments, "result": self.result},
            "error": self.error,
            "tokens": 0,
            "cost_usd": 0.0,
            "tries": 1,
        }


def tool_problems(
    spec: WorkflowSpec, policy: ProviderPolicy
) -> list[tuple[tuple[str | int, ...], str]]:
    """Each tool of the workflow that this server cannot offer, at its place."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for i, node in enumerate(spec.nodes):
        if node.code is not None:
            continue  # a code node calls no model, so its tools are never offered
        for j, tool in enumerate(node.tools):
            why = tool_problem(tool.name, policy)
            if why is not None:
                found.append((("nodes", i, "tools", j), why))
    return found


class ToolBox:
    """The tools of one node execution."""

    def __init__(
        self,
        node: NodeSpec,
        policy: ProviderPolicy,
        timeout: float,
        report: Callable[[ToolCall], Awaitable[None]],
    ):
        self.node_id = node.id
        self.entries = {tool.name: tool for tool in node.tools}
        self.tools = {tool.name: get_tool(tool.name) for tool in node.tools}
        self.policy = policy
        self.timeout = timeout
        self.report = report

    def schemas(self) -> list[dict[str, Any]]:
        """The tools as the chat-completions `tools` parameter lists them."""
        return [openai_schema(tool) for tool in self.tools.values()]

    async def call(self, name: str, arguments: str | Mapping[str, Any]) -> str:
        """Run the tool the model asked for and give the model its answer (JSON text).

        A failing call answers the model with the error when the tool's `on_error` is
        `continue`; with `fail` (the default, as in the original) it fails the node."""
        started = datetime.now(UTC)
        clock = time.monotonic()
        parsed: Any = arguments
        result: Any = None
        error: str | None = None
        try:
            if isinstance(arguments, str):
                try:
                    parsed = json.loads(arguments or "{}")
                except ValueError:
                    raise ToolError(f"the arguments are not JSON: {arguments[:200]!r}") from None
            if not isinstance(parsed, Mapping):
                raise ToolError("the arguments must be a JSON object")
            tool = self.tools.get(name)
            if tool is None:
                raise ToolError(
                    f"this node has no tool {name!r}; its tools: {', '.join(self.tools)}"
                )
            entry = self.entries[name]
            context = ToolContext(
                policy=self.policy,
                config=entry.config or {},
                timeout=self.timeout,
                env=os.environ,
            )
            result = await asyncio.wait_for(tool.call(dict(parsed), context), self.timeout)
        except ToolError as exc:
            error = str(exc)
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s (config.execution.timeout)"
        text = json.dumps(result if error is None else {"error": error}, default=str)
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + " …(cut)"
            result = text
        await self.report(
            ToolCall(name, parsed, result, error, started, (time.monotonic() - clock) * 1000)
        )
        declared = self.entries.get(name)
        if error is not None and declared is not None and declared.on_error == "fail":
            raise ProviderError(
                f"tool {name!r} failed: {error}",
                provider=f"tool {name}",
                retryable=False,
                kind="ToolFailed",
            )
        return text
