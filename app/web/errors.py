"""One place turns errors into answers: `{"error", "code"}` JSON for API clients, an
HTML fragment for htmx (inside the run's row when the request came from one), and
a full error page for browsers."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode, urlsplit

from litestar import Request, Response
from litestar.enums import MediaType
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.response import Redirect
from litestar.types import ExceptionHandlersMap

from app.errors import AppError
from app.services.runs import RunSummary
from app.web.render import answer_format, template, wants_row

__all__ = ["exception_handlers"]

log = logging.getLogger("configurable_agents.web")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    414: "uri_too_long",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "invalid",
    500: "internal_error",
}


def _describe(exc: Exception) -> tuple[int, str, str, str]:
    """Status, code, title and message of any exception; internals never leak."""
    if isinstance(exc, AppError):
        return exc.status, exc.code, exc.title, exc.message
    if isinstance(exc, ValidationException):
        details = "; ".join(
            f"{e.get('key') or 'request'}: {e.get('message')}"
            for e in (exc.extra if isinstance(exc.extra, list) else [])
            if isinstance(e, dict)
        )
        return 400, "bad_request", "Bad request", details or str(exc.detail)
    if isinstance(exc, NotFoundException):
        return 404, "not_found", "Not found", "There is nothing at this address."
    if isinstance(exc, HTTPException):
        status = exc.status_code
        return status, _CODES.get(status, "error"), "Error", str(exc.detail)
    log.exception("unexpected error", exc_info=exc)
    return (
        500,
        "internal_error",
        "Internal error",
        "Something went wrong on our side; it is logged.",
    )


def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    response = _answer(request, exc)
    for name, value in (getattr(exc, "headers", None) or {}).items():
        response.headers[name] = value
    return response


def _came_from(request: Request[Any, Any, Any]) -> str:
    """Where to return after signing in: the page asked for, with its query string; for
    htmx, the page the request came from (not the fragment's URL). The login page
    accepts only a local path."""
    path, query = request.url.path, request.url.query
    current = request.headers.get("hx-current-url")
    if current and answer_format(request) == "htmx":
        try:
            page = urlsplit(current)
        except ValueError:
            page = None
        if page is not None and page.netloc == request.headers.get("host", ""):
            path, query = page.path, page.query
    elif "text/event-stream" in request.headers.get("accept", ""):
        query = ""  # a live stream's query (the runs on its page) is no page to return to
    # A long query would make the sign-in address too long to accept.
    return path + (f"?{query}" if query and len(query) <= 600 else "")


def _answer(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    status, code, title, message = _describe(exc)
    fmt = answer_format(request)
    if status == 401 and fmt != "json":
        target = f"/login?{urlencode({'next': _came_from(request)})}"
        if fmt == "htmx" or "text/event-stream" in request.headers.get("accept", ""):
            return Response("", status_code=401, headers={"HX-Redirect": target})
        return Redirect(target, status_code=303)
    if fmt == "json":
        return Response(
            {"error": message, "code": code, **(exc.extra if isinstance(exc, AppError) else {})},
            status_code=status,
            media_type=MediaType.JSON,
        )
    run = getattr(exc, "run", None)
    if fmt == "htmx":
        run_id = request.path_params.get("run_id", "") if request.scope.get("path_params") else ""
        if isinstance(run, RunSummary) and wants_row(request, run.id):
            return template(
                "runs/_row.html", status, run=run, row_error=message, now=request.app.state.clock()
            )
        if run_id and wants_row(request, str(run_id)):
            return template("errors/_row_missing.html", status, run_id=str(run_id), message=message)
        response = template(
            "errors/_alert.html", status, title=title, message=message, status=status, code=code
        )
        response.headers["HX-Retarget"] = "#alerts"
        # A refused search replaces what is there: typing on never stacks messages.
        response.headers["HX-Reswap"] = "innerHTML" if code == "invalid_search" else "afterbegin"
        return response
    return template(
        "errors/error.html", status, title=title, message=message, status=status, code=code
    )


exception_handlers: ExceptionHandlersMap = {Exception: handle}
