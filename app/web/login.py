"""Sign in with a token (browsers), and sign out."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Response

from app.web.auth import new_csrf_token
from app.web.render import template

__all__ = ["LoginController"]


def _local(target: str | None) -> str:
    """Only a path on this site: an absolute or scheme-relative URL would be an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/workflows"
    return target


class LoginController(Controller):
    path = "/login"
    include_in_schema = False

    @get("/")
    async def login_page(
        self, request: Request[Any, Any, Any], next: FromQuery[str | None] = None
    ) -> Response[Any]:
        if not request.app.state.tokens.enabled:
            return Redirect("/workflows", status_code=303)
        return template("login.html", next=_local(next), error=None)

    @post("/", status_code=303)
    async def sign_in(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[Any]:
        role = request.app.state.tokens.role_for(data.get("token", ""))
        target = _local(data.get("next"))
        if role is None:
            return template(
                "login.html", 401, next=target, error="That token is not valid. Try again."
            )
        request.set_session({"role": role, "csrf": new_csrf_token()})
        return Redirect(target, status_code=303)

    @post("/out", status_code=303)
    async def sign_out(self, request: Request[Any, Any, Any]) -> Response[Any]:
        request.clear_session()
        return Redirect("/login", status_code=303)
