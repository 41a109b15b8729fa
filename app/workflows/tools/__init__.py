"""The original workflow format's built-in tools, for the chat-completions tool loop.

Safe tools (json_parse, yaml_parse, web_search, serper_search, web_scrape, http_client)
are always there; web access is held to the server's host allowlist. Tools that touch the
server itself (shell, process, env_vars, file_*, sql_query, dataframe_to_csv) are off
unless CA_ENABLED_TOOLS names them.
"""

from app.workflows.tools.base import Tool, ToolContext, ToolError
from app.workflows.tools.registry import TOOL_NAMES, get_tool, openai_schema, tool_problem

__all__ = [
    "TOOL_NAMES",
    "Tool",
    "ToolContext",
    "ToolError",
    "get_tool",
    "openai_schema",
    "tool_problem",
]
