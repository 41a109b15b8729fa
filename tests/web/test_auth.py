"""Roles, sessions, CSRF and limits, with tokens configured."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup
from factories import make_run
from litestar.testing import AsyncTestClient
from support import FROZEN_NOW, HX, JSON, OPERATOR, VIEWER, new_service

from app.settings import read_tokens
from app.store.tables import WorkflowRun


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **JSON}


async def _failed() -> str:
    return await make_run(1, created_at=FROZEN_NOW, status="failed")


async def test_anonymous_gets_login_page_401_or_hx_redirect(secured) -> None:
    page = await secured.get("/workflows", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fworkflows"
    api = await secured.get("/workflows", headers=JSON)
    assert (api.status_code, api.json()["code"]) == (401, "unauthorized")
    htmx = await secured.get("/workflows/table", headers=HX)
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"].startswith("/login")
    login = await secured.get("/login")
    assert login.status_code == 200 and 'type="password"' in login.text
    assert (await secured.get("/healthz")).status_code == 200
    assert (await secured.get("/static/app.css")).status_code == 200


async def test_viewer_reads_everything_and_changes_nothing(secured) -> None:
    run_id = await _failed()
    assert (await secured.get("/workflows", headers=bearer(VIEWER))).status_code == 200
    assert (await secured.get(f"/workflows/{run_id}", headers=bearer(VIEWER))).status_code == 200
    for action in ("restart", "cancel"):
        r = await secured.post(f"/workflows/{run_id}/{action}", headers=bearer(VIEWER))
        assert (r.status_code, r.json()["code"]) == (403, "forbidden")
        assert "operator" in r.json()["error"]
    assert await WorkflowRun.count() == 1


async def test_operator_bearer_restarts_without_a_csrf_token(secured) -> None:
    run_id = await _failed()
    r = await secured.post(f"/workflows/{run_id}/restart", headers=bearer(OPERATOR))
    assert r.status_code == 200 and r.json()["status"] == "restarted"


async def test_a_wrong_bearer_token_is_401_and_never_logged(secured, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-a-real-token-but-long-enough"
    r = await secured.get("/workflows", headers=bearer(wrong))
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    assert wrong not in caplog.text and wrong not in r.text


async def _sign_in(client: AsyncTestClient[Any], token: str) -> str:
    r = await client.post(
        "/login", data={"token": token, "next": "/workflows"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/workflows"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    page = await client.get("/workflows")
    meta = BeautifulSoup(page.text, "html.parser").find("meta", attrs={"name": "csrf-token"})
    return meta["content"]


async def test_browser_session_needs_its_csrf_token(secured) -> None:
    run_id = await _failed()
    csrf = await _sign_in(secured, OPERATOR)
    assert len(csrf) > 30
    missing = await secured.post(f"/workflows/{run_id}/restart", headers=HX)
    assert missing.status_code == 403 and "CSRF" in missing.text
    wrong = await secured.post(
        f"/workflows/{run_id}/restart", headers={**HX, "X-CSRF-Token": "x" * 43}
    )
    assert wrong.status_code == 403
    assert await WorkflowRun.count() == 1
    ok = await secured.post(f"/workflows/{run_id}/restart", headers={**HX, "X-CSRF-Token": csrf})
    assert ok.status_code == 200


async def test_plain_form_post_carries_the_csrf_field(secured) -> None:
    run_id = await _failed()
    csrf = await _sign_in(secured, OPERATOR)
    page = await secured.get(f"/workflows/{run_id}")
    form = BeautifulSoup(page.text, "html.parser").find(
        "form", action=f"/workflows/{run_id}/restart"
    )
    assert form.find("input", attrs={"name": "_csrf"})["value"] == csrf
    r = await secured.post(
        f"/workflows/{run_id}/restart", data={"_csrf": csrf}, follow_redirects=False
    )
    assert r.status_code == 303


async def test_viewer_session_sees_no_action_buttons(secured) -> None:
    await _failed()
    await _sign_in(secured, VIEWER)
    page = await secured.get("/workflows")
    soup = BeautifulSoup(page.text, "html.parser")
    assert soup.select("#runs-body tr.run")
    assert not soup.select("button[data-action]")
    assert "Sign out (viewer)" in page.text


async def test_wrong_login_and_sign_out(secured) -> None:
    r = await secured.post("/login", data={"token": "nope", "next": "/workflows"})
    assert r.status_code == 401 and "not valid" in r.text
    await _sign_in(secured, OPERATOR)
    csrf_page = await secured.get("/workflows")
    csrf = BeautifulSoup(csrf_page.text, "html.parser").find("meta", attrs={"name": "csrf-token"})[
        "content"
    ]
    out = await secured.post("/login/out", data={"_csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert (await secured.get("/workflows", headers=JSON)).status_code == 401


@pytest.mark.parametrize(
    "target",
    ["//evil.example/x", "https://evil.example/", "javascript:1", "/\\evil.example", "/\tx"],
)
async def test_login_never_redirects_off_site(secured, target: str) -> None:
    r = await secured.post(
        "/login", data={"token": OPERATOR, "next": target}, follow_redirects=False
    )
    assert r.headers["location"] == "/workflows"


async def test_login_from_another_site_is_refused(secured) -> None:
    for origin in ("http://evil.example", "http://[", "null"):
        r = await secured.post(
            "/login",
            data={"token": OPERATOR},
            headers={"Origin": origin},
            follow_redirects=False,
        )
        assert r.status_code == 403, origin


async def test_limits_on_query_body_and_inputs(client) -> None:
    r = await client.get("/workflows", params={"workflow": "x" * 3000}, headers=JSON)
    assert (r.status_code, r.json()["code"]) == (414, "uri_too_long")
    run_id = await _failed()
    big = await client.post(
        f"/workflows/{run_id}/restart", content=b"x" * (2 * 1024 * 1024), headers=JSON
    )
    assert (big.status_code, big.json()["code"]) == (413, "too_large")
    assert await WorkflowRun.count() == 1


async def test_too_large_inputs_are_refused_before_anything_is_written(
    empty_db: str, examples_dir: Path
) -> None:
    from app.errors import InputsTooLarge
    from app.workflows.loader import load_workflow

    spec = load_workflow(examples_dir / "echo.yaml")
    with pytest.raises(InputsTooLarge):
        await new_service().create_run(spec, {"message": "x" * 70_000})
    assert await WorkflowRun.count() == 0


def test_tokens_from_environment_and_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# who may do what\noperator: {OPERATOR}\nviewer: {VIEWER}  # read-only\n")
    assert read_tokens({"CA_TOKENS_FILE": str(path)}) == {
        "operator_tokens": (OPERATOR,),
        "viewer_tokens": (VIEWER,),
    }
    env = {"CA_OPERATOR_TOKENS": f"{OPERATOR}, other-operator-token-xyz"}
    assert read_tokens(env)["operator_tokens"] == (OPERATOR, "other-operator-token-xyz")
    path.write_text("admin: whatever-token-that-is-long\n")
    with pytest.raises(ValueError, match="line 1"):
        read_tokens({"CA_TOKENS_FILE": str(path)})
    with pytest.raises(ValueError, match="shorter than 16"):
        read_tokens({"CA_VIEWER_TOKENS": "short"})
    for weak in ("a" * 32, "abababababababababab", "abcdefghijklmnopqrstuvwxyz"):
        with pytest.raises(ValueError, match=r"different characters|simple sequence"):
            read_tokens({"CA_OPERATOR_TOKENS": weak})
    # Named tokens, in the variables and in the file.
    path.write_text(f"operator:alice: {OPERATOR}\nviewer:bob: {VIEWER}\n")
    assert read_tokens({"CA_TOKENS_FILE": str(path)}) == {
        "operator_tokens": (f"alice={OPERATOR}",),
        "viewer_tokens": (f"bob={VIEWER}",),
    }
    assert read_tokens({"CA_OPERATOR_TOKENS": f"carol={OPERATOR}"})["operator_tokens"] == (
        f"carol={OPERATOR}",
    )


def test_a_short_or_weak_secret_is_refused() -> None:
    from app.settings import Settings

    for weak in ("short", "x" * 40, "abababababababababababababababab"):
        with pytest.raises(ValueError, match="CA_SECRET"):
            Settings(secret=weak)
    assert Settings(secret="9f3a" * 8 + "c1d2e3b4").secret
