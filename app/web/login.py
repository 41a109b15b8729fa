"""Sign in with a token (browsers), and sign out."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Response

from app.services.access import AccessService
from app.web.auth import COOKIE, SECURE_COOKIE, client_of, identity_of
from app.web.render import template

__all__ = ["LoginController"]


def _local(target: str | None) -> str:
    """Only a path on this site, with its query string: an absolute or scheme-relative
    URL would be an open redirect."""
    # Browsers read a backslash as a slash (`/\\evil.example` is `//evil.example`) and
    # drop tabs and newlines (`/\t/evil.example`).
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)
    ):
        return "/workflows"
    try:
        parts = urlsplit(target)
    except ValueError:
        return "/workflows"
    if parts.scheme or parts.netloc:
        return "/workflows"
    return target


class LoginController(Controller):
    path = "/login"
    include_in_schema = False

    @get("/")
    async def login_page(
        self, request: Request[Any, Any, Any], next: FromQuery[str | None] = None
    ) -> Response[Any]:
        if not request.app.state.access.tokens.enabled:
            return Redirect("/workflows", status_code=303)
        return template("login.html", next=_local(next), error=None)

    @post("/", status_code=303)
    async def sign_in(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[Any]:
        access: AccessService = request.app.state.access
        signed_in = await access.sign_in(data.get("token", ""), client_of(request))
        target = _local(data.get("next"))
        if signed_in is None:
            return template(
                "login.html", 401, next=target, error="That token is not valid. Try again."
            )
        cookie, _ = signed_in
        response = Redirect(target, status_code=303)
        secure = request.url.scheme == "https"
        response.set_cookie(
            key=SECURE_COOKIE if secure else COOKIE,
            value=cookie,
            path="/",
            max_age=int(access.lifetime),
            secure=secure,
            httponly=True,
            samesite="strict",
        )
        return response

    @post("/out", status_code=303)
    async def sign_out(self, request: Request[Any, Any, Any]) -> Response[Any]:
        await request.app.state.access.sign_out(identity_of(request), client_of(request))
        response = Redirect("/login", status_code=303)
        for key in (COOKIE, SECURE_COOKIE):
            if key in request.cookies:
                response.delete_cookie(key, path="/")
        return response
