"""Security headers on every answer: a strict CSP (no inline script), no framing,
no sniffing, no referrer to other sites; and no caching of data, which one URL answers
as a page, a fragment or JSON depending on the request's headers. Each answer also says
how long the app took to produce it (`Server-Timing: app;dur=<ms>`), which browsers'
developer tools and the benchmark read apart from the network's share."""

from __future__ import annotations

import time
from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
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


# Pages, fragments and JSON hold run data (and, signed in, what only some may see): no
# shared or stored copy, and a Back button that asks again instead of showing a bare
# fragment. The same URL answers differently by these request headers.
_DATA_HEADERS = [(b"cache-control", b"no-store")]
_VARY = b"Accept, HX-Request"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        data = not scope["path"].startswith("/static/")
        began = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Up to the start of the answer: a page is rendered before it starts.
                took = (time.perf_counter() - began) * 1000
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _HEADERS if h[0] not in present)
                headers.append((b"server-timing", f"app;dur={took:.2f}".encode()))
                if data:
                    headers.extend(h for h in _DATA_HEADERS if h[0] not in present)
                    headers = _add_vary(headers)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _add_vary(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Add our request headers to Vary, keeping what compression put there."""
    varies = [v for name, v in headers if name.lower() == b"vary"]
    rest = [(name, v) for name, v in headers if name.lower() != b"vary"]
    return [*rest, (b"vary", b", ".join([*varies, _VARY]))]


MAX_QUERY_BYTES = 2048
MAX_BODY_BYTES = 1024 * 1024


# async, like every guard here: Litestar runs a plain function guard in a worker thread.
async def request_limits(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Refuse oversized requests before any work: a long query string or a large body;
    and NUL characters in the path or query, which no name or filter holds and which
    databases and file systems refuse."""
    query = connection.scope.get("query_string", b"")
    if "\x00" in connection.scope["path"] or b"%00" in query or b"\x00" in query:
        raise HTTPException(
            status_code=400, detail="the address holds a NUL character (%00), which is not allowed"
        )
    # A live stream's query names the runs on its page (up to 200 short ids).
    limit = MAX_QUERY_BYTES * 2 if connection.scope["path"].endswith("/events") else MAX_QUERY_BYTES
    if len(query) > limit:
        raise HTTPException(
            status_code=414,
            detail=f"the query string is {len(query)} bytes; at most {limit} are allowed",
        )
    length = connection.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HTTPException(
            status_code=413,
            detail=f"the request body is {length} bytes; at most {MAX_BODY_BYTES} are allowed",
        )
