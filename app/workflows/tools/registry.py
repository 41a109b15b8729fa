"""The built-in tools by name, and whether a workflow may use one here."""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Mapping
from typing import Any

from app.workflows.providers.policy import ProviderPolicy
from app.workflows.tools import data, files, system, web
from app.workflows.tools.base import Tool, ToolError, gated_message

# The original registry's order.
_TOOLS: dict[str, Tool] = {
    t.name: t for t in (*web.TOOLS, *files.TOOLS, *data.TOOLS, *system.TOOLS)
}
TOOL_NAMES: tuple[str, ...] = tuple(_TOOLS)


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, TOOL_NAMES, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"the tools are {', '.join(TOOL_NAMES)}"
    return f"unknown tool '{name}': {hint}"


def get_tool(name: str) -> Tool:
    """The built-in tool `name`; ToolError (with a suggestion) when there is none."""
    try:
        return _TOOLS[name]
    except KeyError:
        raise ToolError(_unknown(name)) from None


def tool_problem(
    name: str, policy: ProviderPolicy, env: Mapping[str, str] | None = None
) -> str | None:
    """Why a workflow may not use the tool `name` on this server, or None when it may.
    `env` is the server's environment, where the search keys are read from."""
    env = os.environ if env is None else env
    tool = _TOOLS.get(name)
    if tool is None:
        return _unknown(name)
    if tool.gated and name not in policy.enabled_tools:
        return gated_message(name)
    try:
        if name == "web_search":
            web.search_backend(env)
        elif name == "serper_search" and not env.get("SERPER_API_KEY"):
            return "serper_search needs SERPER_API_KEY on the server"
    except ToolError as exc:
        return str(exc)
    return None


def openai_schema(tool: Tool) -> dict[str, Any]:
    """The tool as an entry of the chat-completions `tools` list."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": copy.deepcopy(tool.parameters),
        },
    }
