"""Who is asking, and may they: the app-level guard over AccessService.

- No tokens configured: everyone is an operator (the embedded default, which only binds
  to loopback).
- API clients send `Authorization: Bearer <token>`; browsers sign in once at /login and
  get a random, HttpOnly, SameSite=Strict session cookie (Secure and `__Host-` when the
  request came over HTTPS) whose session the server keeps.
- A viewer reads everything and changes nothing; mutating routes need operator.
- Every state-changing request from a browser must come from this site
  (Sec-Fetch-Site / Origin), and a cookie session must also present its CSRF token
  (htmx sends it as a header, plain forms as the `_csrf` field).
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from app.services.access import AccessService, Identity
from app.web.metrics import METRICS_TOKEN_OPT, metrics_identity

__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SECURE_COOKIE",
    "authenticate",
    "client_of",
    "identity_of",
    "requires_operator",
]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PREFIXES = ("/login", "/static/", "/healthz", "/favicon")
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "_csrf"
COOKIE = "ca_session"
# Over HTTPS: only ever sent back over HTTPS, to this exact host, for every path.
SECURE_COOKIE = "__Host-ca_session"


def client_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The client's address (a trusted proxy's X-Forwarded-For, where one is configured)."""
    client = connection.scope.get("client")
    return str(client[0]) if client else "unknown"


def identity_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Identity | None:
    # Read the scope directly: building request.state for every row shows in profiles.
    return connection.scope.get("state", {}).get("identity")


def _same_site(request: Request[Any, Any, Any]) -> None:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise PermissionDeniedException(f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        try:
            netloc = urlsplit(origin).netloc
        except ValueError:  # not a URL at all (`http://[`)
            netloc = None
        if origin == "null" or netloc != host:
            raise PermissionDeniedException(f"cross-site request refused (Origin: {origin!r})")


async def _check_csrf(request: Request[Any, Any, Any], expected: str) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type[0] in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        sent = (await request.form()).get(CSRF_FIELD)
    if not sent or not hmac.compare_digest(str(sent).encode(), expected.encode()):
        raise PermissionDeniedException(
            "the CSRF token is missing or wrong: reload the page and try again"
        )


async def authenticate(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The app-level guard, so it runs before every other: sets `request.state.identity`
    and `request.state.role`, or refuses the request."""
    # Guards are typed for any connection; the app has HTTP routes only (no websockets).
    request = connection
    assert isinstance(request, Request)
    access: AccessService = request.app.state.access
    identity: Identity | None = None
    if not access.tokens.enabled:
        identity = access.open_identity()
    elif (header := request.headers.get("authorization", "")).lower().startswith("bearer "):
        token = header[7:].strip()
        # CA_METRICS_TOKEN, on the one route that takes it (GET /metrics): not a failure.
        if handler.opt.get(METRICS_TOKEN_OPT):
            identity = metrics_identity(request, token)
        identity = identity or access.bearer(token, client_of(request))
        if identity is None:
            raise NotAuthorizedException("the bearer token is not valid")
    elif cookie := request.cookies.get(SECURE_COOKIE) or request.cookies.get(COOKIE):
        identity = await access.session(cookie)
    request.state.identity = identity
    request.state.role = identity.role if identity else None
    if identity is None and not request.url.path.startswith(PUBLIC_PREFIXES):
        raise NotAuthorizedException("sign in with a viewer or operator token")
    if request.method not in SAFE_METHODS:
        _same_site(request)
        if identity is not None and identity.via == "session":
            await _check_csrf(request, identity.csrf)


async def requires_operator(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    if getattr(connection.state, "role", None) != "operator":
        raise PermissionDeniedException(
            "this needs an operator token; a viewer token can only read"
        )
