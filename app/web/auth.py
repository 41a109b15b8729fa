"""Who is asking, and may they: tokens with two roles, sessions, and CSRF.

- No tokens configured: everyone is an operator (the embedded default, which
  only binds to loopback).
- API clients send `Authorization: Bearer <token>`; browsers sign in once at
  /login and get a signed, HttpOnly, SameSite=Strict session cookie.
- A viewer reads everything and changes nothing; mutating routes need operator.
- Every state-changing request from a browser must come from this site
  (Sec-Fetch-Site / Origin), and a cookie session must also present its CSRF
  token (htmx sends it as a header, plain forms as the `_csrf` field).

Tokens are compared as SHA-256 digests with `hmac.compare_digest`, and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from app.settings import Settings

__all__ = ["CSRF_FIELD", "CSRF_HEADER", "TokenBook", "authenticate", "requires_operator"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PREFIXES = ("/login", "/static/", "/healthz", "/favicon")
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "_csrf"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenBook:
    """The configured tokens, kept only as digests."""

    def __init__(self, settings: Settings):
        self._entries = [("operator", _digest(t)) for t in settings.operator_tokens] + [
            ("viewer", _digest(t)) for t in settings.viewer_tokens
        ]

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def role_for(self, token: str) -> str | None:
        """The token's role; every entry is compared, so timing tells nothing."""
        digest = _digest(token)
        found = None
        for role, expected in self._entries:
            if hmac.compare_digest(digest, expected) and found != "operator":
                found = role
        return found


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def _same_site(request: Request[Any, Any, Any]) -> None:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise PermissionDeniedException(f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        if origin == "null" or urlsplit(origin).netloc != host:
            raise PermissionDeniedException(f"cross-site request refused (Origin: {origin})")


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


async def authenticate(request: Request[Any, Any, Any], _: BaseRouteHandler) -> None:
    """The app-level guard, so it runs before every other: sets `request.state.role`
    or refuses the request."""
    book: TokenBook = request.app.state.tokens
    role: str | None
    via = "none"
    if not book.enabled:
        role = "operator"
    elif (header := request.headers.get("authorization", "")).lower().startswith("bearer "):
        role = book.role_for(header[7:].strip())
        via = "bearer"
        if role is None:
            raise NotAuthorizedException("the bearer token is not valid")
    else:
        session = request.session if "session" in request.scope else {}
        role = session.get("role") if session.get("role") in ("viewer", "operator") else None
        via = "session" if role else "none"
    request.state.role = role
    path = request.url.path
    if role is None and not path.startswith(PUBLIC_PREFIXES):
        raise NotAuthorizedException("sign in with a viewer or operator token")
    if request.method not in SAFE_METHODS:
        _same_site(request)
        if via == "session":
            await _check_csrf(request, str(request.session.get("csrf", "")))


async def requires_operator(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    if getattr(connection.state, "role", None) != "operator":
        raise PermissionDeniedException(
            "this needs an operator token; a viewer token can only read"
        )
