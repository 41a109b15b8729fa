"""How one URL answers three ways: a page, an htmx fragment, or JSON."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from litestar import Request
from litestar.enums import MediaType
from litestar.response import Template

__all__ = [
    "Answer",
    "answer_format",
    "draw",
    "pinned_view",
    "row_target",
    "template",
    "wants_row",
]

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


def draw(request: Request[Any, Any, Any], name: str, **context: Any) -> str:
    """A template drawn to a string here, as part of a larger answer."""
    engine = request.app.template_engine
    assert engine is not None
    return str(engine.get_template(name).render(request=request, **context))


# The view an operator pinned (app.js sets the cookie): only the list's filters, so the
# redirect can only land on the run list.
PIN_COOKIE = "ca_view"
_PIN_KEYS = ("status", "workflow", "since", "until", "q")


def pinned_view(request: Request[Any, Any, Any]) -> str | None:
    """The pinned view's query for a plain page load of the run list, else None."""
    raw = request.cookies.get(PIN_COOKIE)
    if not raw or request.url.query or answer_format(request) != "html":
        return None
    kept = [(k, v) for k, v in parse_qsl(raw)[:20] if k in _PIN_KEYS and v]
    return urlencode(kept) or None
