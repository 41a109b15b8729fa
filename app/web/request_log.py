"""One `request` event per HTTP request (CA_LOG_FORMAT=json, which replaces uvicorn's
access log): method, path, status, duration and who asked, once the guard has said."""

from __future__ import annotations

import logging
import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestLogMiddleware"]

log = logging.getLogger("configurable_agents.http")


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # unless a response starts: the request failed on its way

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            ms = round((time.perf_counter() - began) * 1000, 1)
            identity = scope.get("state", {}).get("identity")
            actor = identity.name if identity is not None else None
            method, path = scope["method"], scope["path"]
            log.info(
                "%s %s %d %.1f ms",
                method,
                path,
                status,
                ms,
                extra={
                    "event": "request",
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": ms,
                    "actor": actor,
                },
            )
