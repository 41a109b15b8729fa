"""GET /metrics: Prometheus' text format, for a viewer or operator token (or anyone,
where no tokens are configured, as every page), or for CA_METRICS_TOKEN, a bearer
token that this route alone accepts (see `authenticate`)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotAuthorizedException
from prometheus_client import CONTENT_TYPE_LATEST

from app.services.access import Identity
from app.services.metrics import Metrics

__all__ = ["METRICS_TOKEN_OPT", "metrics", "metrics_identity"]

# Litestar adds the charset to a text/* type itself (twice, if it is there already).
MEDIA_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")

# The route option that lets `authenticate` accept CA_METRICS_TOKEN.
METRICS_TOKEN_OPT = "accepts_metrics_token"


def metrics_identity(request: Request[Any, Any, Any], token: str) -> Identity | None:
    """Who a bearer token is on /metrics when it is CA_METRICS_TOKEN, or None."""
    expected = request.app.state.settings.metrics_token
    if not expected:
        return None
    # Digests: equal lengths, so the comparison takes the same time whatever was sent.
    sent, wanted = (hashlib.sha256(t.encode()).digest() for t in (token, expected))
    if not hmac.compare_digest(sent, wanted):
        return None
    return Identity("metrics", "metrics token", "bearer")


def _unauthorized(request: Request[Any, Any, Any], exc: NotAuthorizedException) -> Response[str]:
    # A scraper is not a browser: a plain 401, not the sign-in page the others get.
    return Response(
        f"{exc.detail}\n",
        status_code=401,
        media_type="text/plain",
        headers={"WWW-Authenticate": "Bearer"},
    )


@get(
    "/metrics",
    include_in_schema=False,
    opt={METRICS_TOKEN_OPT: True},
    exception_handlers={NotAuthorizedException: _unauthorized},
)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    registry: Metrics = request.app.state.metrics
    return Response(await registry.scrape(), media_type=MEDIA_TYPE)
