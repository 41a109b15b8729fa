"""Viewers see what they cannot do (a banner, disabled actions, no forms); signing in
returns to the page asked for, query string included, and never to another site; the
sign-in page offers no navigation; every run's id can be copied."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from bs4 import BeautifulSoup
from factories import make_run
from support import FROZEN_NOW, HX, OPERATOR, VIEWER

FAILED = ("MockFailure", "configured to fail", "echo")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def soup_of(text: str) -> BeautifulSoup:
    return BeautifulSoup(text, "html.parser")


async def _runs() -> dict[str, str]:
    """A failed run that completed a node (restart, resume, edit), a running one
    (cancel) and a completed one (restart, edit)."""
    return {
        "failed": await make_run(
            1, created_at=FROZEN_NOW, status="failed", error=FAILED, steps=2, steps_total=3
        ),
        "running": await make_run(2, created_at=FROZEN_NOW, status="running", steps_total=2),
        "completed": await make_run(3, created_at=FROZEN_NOW),
    }


# -- viewers -----------------------------------------------------------------------


async def test_a_viewer_sees_a_read_only_banner_and_disabled_actions(secured) -> None:
    runs = await _runs()
    page = await secured.get("/workflows", headers=bearer(VIEWER))
    assert page.status_code == 200
    soup = soup_of(page.text)
    banner = soup.find(id="read-only")
    assert banner is not None and banner.find_parent("main") is not None
    text = banner.get_text(" ", strip=True)
    assert "viewer" in text and "not restart" in text and "cancel" in text
    body = soup.select_one("#runs-body")
    assert body is not None
    # No forms, nothing to pick: the page says the viewer only reads, and app.js draws
    # the actions a run would have as disabled buttons (tests/browser/test_row_actions.py).
    assert soup.body["data-operate"] == "no"
    assert body.find("form") is None and "data-action" not in str(body)
    assert not body.select("td.pick") and not soup.select("th.pick")
    for name, verbs in (
        ("failed", "restart resume edit"),
        ("running", "cancel"),
        ("completed", "restart edit"),
    ):
        row = soup.find(id=f"run-{runs[name]}")
        assert row.select_one("td.actions")["data-do"] == verbs, name
    # The run's page too.
    detail = soup_of(
        (await secured.get(f"/workflows/{runs['failed']}", headers=bearer(VIEWER))).text
    )
    actions = detail.select_one("#run-actions")
    assert actions.find("form") is None and actions.find("a") is None
    assert [b.get_text(strip=True) for b in actions.select("button")] == [
        "Restart run",
        "Resume from echo",
        "Edit inputs and restart",
    ]
    assert all(b.has_attr("disabled") for b in actions.select("button"))
    assert detail.find(id="read-only") is not None
    running = soup_of(
        (await secured.get(f"/workflows/{runs['running']}", headers=bearer(VIEWER))).text
    )
    cancel = running.select("#run-actions button")
    assert [b.get_text(strip=True) for b in cancel] == ["Cancel run"]
    assert cancel[0].has_attr("disabled") and running.select("#run-actions form") == []


async def test_a_viewers_row_fragment_has_no_forms(secured) -> None:
    runs = await _runs()
    for run_id in runs.values():
        row = await secured.get(f"/workflows/{run_id}/row", headers={**HX, **bearer(VIEWER)})
        assert row.status_code == 200
        assert "<form" not in row.text and "data-action" not in row.text
        assert 'class="pick"' not in row.text and 'data-do="' in row.text


async def test_an_operator_sees_no_banner_and_working_actions(secured) -> None:
    runs = await _runs()
    soup = soup_of((await secured.get("/workflows", headers=bearer(OPERATOR))).text)
    assert soup.find(id="read-only") is None and soup.body["data-operate"] == "yes"
    row = soup.find(id=f"run-{runs['failed']}")
    assert row.select_one("td.pick") is not None
    assert row.select_one("td.actions")["data-do"] == "restart resume edit"


async def test_without_tokens_everyone_operates_and_no_banner_shows(client) -> None:
    await make_run(1, created_at=FROZEN_NOW, status="failed")
    soup = soup_of((await client.get("/workflows")).text)
    assert soup.find(id="read-only") is None and soup.body["data-operate"] == "yes"
    assert soup.select("#runs-body td.pick")


# -- copying a run's id ------------------------------------------------------------


async def test_each_row_and_the_run_page_offer_to_copy_the_full_id(client) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="failed")
    # A row's button is drawn by app.js from its id (tests/browser/test_row_actions.py).
    detail = soup_of((await client.get(f"/workflows/{run_id}")).text)
    button = detail.select_one("#run-facts button.copy-id")
    assert button["data-copy-id"] == run_id and button["aria-label"] == "Copy run id"
    assert detail.select_one("#run-facts dd.mono").get_text() == run_id
    keys = [th.get_text(" ", strip=True) for th in detail.select("#help th")]
    assert "i" in keys


# -- signing in --------------------------------------------------------------------


async def test_signing_in_returns_to_the_page_with_its_query(secured) -> None:
    asked = await secured.get("/workflows?status=failed&since=24h", follow_redirects=False)
    assert asked.status_code == 303
    assert asked.headers["location"] == "/login?next=%2Fworkflows%3Fstatus%3Dfailed%26since%3D24h"
    page = await secured.get("/login?next=/workflows%3Fstatus%3Dfailed")
    hidden = soup_of(page.text).find("input", attrs={"name": "next"})
    assert hidden["value"] == "/workflows?status=failed"
    # A wrong token keeps it for the next try.
    wrong = await secured.post("/login", data={"token": "nope", "next": hidden["value"]})
    assert wrong.status_code == 401
    again = soup_of(wrong.text).find("input", attrs={"name": "next"})
    assert again["value"] == "/workflows?status=failed"
    r = await secured.post(
        "/login", data={"token": OPERATOR, "next": again["value"]}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/workflows?status=failed"


async def test_an_htmx_request_returns_to_its_page_not_its_fragment(secured) -> None:
    r = await secured.get(
        "/workflows?status=failed",
        headers={**HX, "HX-Current-URL": "http://testserver.local/workflows?status=failed"},
    )
    assert r.status_code == 401
    assert r.headers["hx-redirect"] == "/login?next=%2Fworkflows%3Fstatus%3Dfailed"
    # Another site's page is not one to return to.
    r = await secured.get(
        "/workflows/table", headers={**HX, "HX-Current-URL": "https://evil.example/x"}
    )
    assert r.headers["hx-redirect"] == "/login?next=%2Fworkflows%2Ftable"


OFF_SITE = [
    "//evil.example",
    "//evil.example/workflows?status=failed",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "evil.example",
    "",
]


@pytest.mark.parametrize("target", OFF_SITE)
async def test_next_never_leaves_the_site(secured, target: str) -> None:
    page = await secured.get(f"/login?next={quote(target, safe='')}")
    assert soup_of(page.text).find("input", attrs={"name": "next"})["value"] == "/workflows"
    r = await secured.post(
        "/login", data={"token": OPERATOR, "next": target}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/workflows"


async def test_the_sign_in_page_offers_no_navigation(secured) -> None:
    page = await secured.get("/login?next=/workflows")
    assert page.status_code == 200
    soup = soup_of(page.text)
    assert soup.find("nav") is None
    header = soup.select_one("header")
    assert header.find("a") is None and header.find("button") is None
    assert "Configurable Agents" in header.get_text()
    assert soup.find("dialog", id="help") is None
    assert soup.find(id="read-only") is None
    assert soup.find("input", attrs={"name": "token"}) is not None
    # Signed in, the pages have their navigation.
    await secured.post("/login", data={"token": VIEWER, "next": "/workflows"})
    runs = soup_of((await secured.get("/workflows")).text)
    nav = runs.find("nav", attrs={"aria-label": "Main"})
    assert [a.get_text() for a in nav.find_all("a")] == ["Runs", "Workers", "API"]
