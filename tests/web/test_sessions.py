"""Browser sessions kept on the server, through real HTTP: signing out and removing a
token end them, they expire when idle and at the end of their lifetime, a planted or
garbled cookie is a fresh anonymous visit, and failed attempts are throttled."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from support import JSON, LiveServer, app_settings

from app.store.tables import AuditEntry, WebSession
from app.web.app import create_app

ALICE = "alice-token-9f8e7d6c5b4a"
BOB = "bob-token-0a1b2c3d4e5f6a7b"
SECRET = "session-secret-" + "0123456789abcdef" * 2


def _env(**more: str) -> dict[str, str]:
    return {"CA_OPERATOR_TOKENS": f"alice={ALICE},bob={BOB}", "CA_SECRET": SECRET, **more}


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[LiveServer]:
    with LiveServer(database_url, extra_env=_env()) as live:
        yield live


async def _sign_in(base: str, token: str) -> tuple[str, str]:
    """Sign in; the session cookie's name and value."""
    async with httpx.AsyncClient(base_url=base) as client:
        r = await client.post("/login", data={"token": token, "next": "/workflows"})
    assert r.status_code == 303, r.text
    name, value = r.headers["set-cookie"].split(";", 1)[0].split("=", 1)
    return name, value


async def _status(base: str, cookie: tuple[str, str]) -> int:
    async with httpx.AsyncClient(base_url=base, cookies=dict([cookie])) as client:
        return (await client.get("/workflows", headers=JSON)).status_code


async def _csrf(base: str, cookie: tuple[str, str]) -> str:
    async with httpx.AsyncClient(base_url=base, cookies=dict([cookie])) as client:
        page = (await client.get("/workflows")).text
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found is not None
    return found.group(1)


async def test_a_copied_cookie_stops_working_after_sign_out(empty_db: str, server) -> None:
    cookie = await _sign_in(server.url, ALICE)
    assert await _status(server.url, cookie) == 200
    copy = cookie  # as an attacker would have copied it
    csrf = await _csrf(server.url, cookie)
    async with httpx.AsyncClient(base_url=server.url, cookies=dict([cookie])) as client:
        out = await client.post("/login/out", data={"_csrf": csrf})
    assert out.status_code == 303
    assert await _status(server.url, copy) == 401
    actions = [e["action"] for e in await AuditEntry.select(AuditEntry.action)]
    assert actions == ["sign_in", "sign_out"]
    assert await WebSession.count() == 0


async def test_removing_a_token_ends_its_sessions(empty_db: str, database_url: str) -> None:
    with LiveServer(database_url, extra_env=_env()) as first:
        alice = await _sign_in(first.url, ALICE)
        bob = await _sign_in(first.url, BOB)
    # Restarted with the same secret: sessions survive a restart ...
    with LiveServer(database_url, extra_env=_env()) as same:
        assert await _status(same.url, alice) == 200
        assert await _status(same.url, bob) == 200
    # ... but not the removal of their token.
    without_bob = {**_env(), "CA_OPERATOR_TOKENS": f"alice={ALICE}"}
    with LiveServer(database_url, extra_env=without_bob) as after:
        assert await _status(after.url, alice) == 200
        assert await _status(after.url, bob) == 401
        assert await _status(after.url, bob) == 401
    assert await WebSession.count() == 1


async def test_sessions_end_when_idle_and_after_their_lifetime(
    empty_db: str, database_url: str
) -> None:
    env = _env(CA_SESSION_IDLE_SECONDS="1.5", CA_SESSION_LIFETIME_SECONDS="4")
    with LiveServer(database_url, extra_env=env) as live:
        idle = await _sign_in(live.url, ALICE)
        busy = await _sign_in(live.url, BOB)
        for _ in range(6):  # 3 s of use keeps `busy` alive; `idle` is left alone
            assert await _status(live.url, busy) == 200
            await asyncio.sleep(0.5)
        assert await _status(live.url, idle) == 401
        assert await _status(live.url, busy) == 200
        await asyncio.sleep(1.2)  # past the 4 s lifetime, however busy
        assert await _status(live.url, busy) == 401


@pytest.mark.parametrize(
    "value", ["{}", "%7B%7D", "not json at all", "x" * 4000, "null", "\u00e9\u00e9"]
)
async def test_a_planted_or_garbled_cookie_is_a_fresh_visit(
    empty_db: str, server, value: str
) -> None:
    for name in ("ca_session", "__Host-ca_session", "session"):
        async with httpx.AsyncClient(base_url=server.url) as client:
            cookie = f"{name}={value}".encode()  # raw bytes, as a client may send them
            login = await client.get("/login", headers={"Cookie": cookie})
            assert login.status_code == 200, (name, value)
            page = await client.get("/workflows", headers={"Cookie": cookie, **JSON})
            assert page.status_code == 401, (name, value)


async def test_failed_attempts_are_throttled_and_logged_without_the_token(
    empty_db: str, server, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-token-" + "q" * 20
    async with httpx.AsyncClient(base_url=server.url) as client:
        codes = [
            (await client.post("/login", data={"token": wrong, "next": "/"})).status_code
            for _ in range(10)
        ]
        assert codes == [401] * 10
        limited = await client.post("/login", data={"token": ALICE, "next": "/"})
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 61
        bearer = await client.get(
            "/workflows", headers={"Authorization": f"Bearer {ALICE}", **JSON}
        )
        assert bearer.status_code == 429  # the same client, whatever the way in
    failed = await AuditEntry.count().where(AuditEntry.action == "sign_in_failed")
    assert failed == 10
    assert wrong not in caplog.text


async def test_the_cookie_is_secure_over_https(empty_db: str) -> None:
    settings = dataclasses.replace(
        app_settings(empty_db), operator_tokens=(f"alice={ALICE}",), secret=SECRET
    )
    app = create_app(settings, migrate=False, pool=False)
    async with AsyncTestClient(app=app, base_url="https://testserver.local") as client:
        r = await client.post(
            "/login", data={"token": ALICE, "next": "/workflows"}, follow_redirects=False
        )
        cookie: Any = r.headers["set-cookie"]
        assert cookie.startswith("__Host-ca_session=")
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie
        assert "Domain" not in cookie
        assert (await client.get("/workflows", headers=JSON)).status_code == 200
