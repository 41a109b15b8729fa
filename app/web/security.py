"""Security headers on every answer: a strict CSP (no inline script), no framing,
no sniffing, no referrer to other sites."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "MAX_BODY_BYTES",
    "SecurityHeadersMiddleware",
    "request_limits",
]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)

_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


MAX_QUERY_BYTES = 2048
MAX_BODY_BYTES = 1024 * 1024


# async, like every guard here: Litestar runs a plain function guard in a worker thread.
async def request_limits(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Refuse oversized requests before any work: a long query string or a large body."""
    query = connection.scope.get("query_string", b"")
    if len(query) > MAX_QUERY_BYTES:
        raise HTTPException(
            status_code=414,
            detail=f"the query string is {len(query)} bytes; at most {MAX_QUERY_BYTES} are allowed",
        )
    length = connection.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HTTPException(
            status_code=413,
            detail=f"the request body is {length} bytes; at most {MAX_BODY_BYTES} are allowed",
        )
