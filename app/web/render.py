"""How one URL answers three ways: a page, an htmx fragment, or JSON."""

from __future__ import annotations

from typing import Any, Literal

from litestar import Request
from litestar.enums import MediaType
from litestar.response import Template

__all__ = ["Answer", "answer_format", "row_target", "template", "wants_row"]

Answer = Literal["html", "htmx", "json"]


def answer_format(request: Request[Any, Any, Any]) -> Answer:
    """htmx gets fragments (by HX-Request, since htmx 2 sends `Accept: */*`); a client
    that asks for JSON gets JSON; everything else gets a full page."""
    if request.headers.get("hx-request") == "true":
        return "htmx"
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return "json"
    return "html"


def wants_row(request: Request[Any, Any, Any], run_id: str) -> bool:
    """True when htmx will swap the answer into this run's table row."""
    target = request.headers.get("hx-target", "")
    return target in (f"run-{run_id}", f"tr#run-{run_id}", f"#run-{run_id}")


def row_target(request: Request[Any, Any, Any]) -> str | None:
    """The run whose table row htmx will swap the answer into, if any."""
    target = request.headers.get("hx-target", "").removeprefix("tr").removeprefix("#")
    return target.removeprefix("run-") if target.startswith("run-") else None


def template(name: str, status_code: int = 200, **context: Any) -> Template:
    return Template(
        template_name=name, context=context, status_code=status_code, media_type=MediaType.HTML
    )
