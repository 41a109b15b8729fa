"""An operator can pin a view (say, needs attention) as what Runs opens on: a plain
load of /workflows goes there; a query, htmx, JSON or a forged cookie never strays off
the run list; "all" and "Clear" still reach every run."""

from __future__ import annotations

from urllib.parse import quote

from bs4 import BeautifulSoup
from factories import make_run
from support import FROZEN_NOW, HX

PIN = "ca_view"


async def test_a_pinned_view_opens_when_runs_is_opened_plainly(client) -> None:
    await make_run(1, created_at=FROZEN_NOW, status="failed")
    client.cookies.set(PIN, quote("status=attention&since=24h"))
    page = await client.get("/workflows", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/workflows?status=attention&since=24h"
    landed = await client.get("/workflows")
    assert landed.status_code == 200
    assert "<title>Runs · needs attention" in landed.text


async def test_a_query_htmx_or_json_is_not_redirected(client) -> None:
    client.cookies.set(PIN, "status=failed")
    for headers, path in (
        ({}, "/workflows?status="),
        ({}, "/workflows?workflow=echo"),
        (HX, "/workflows"),
        ({"Accept": "application/json"}, "/workflows"),
    ):
        answer = await client.get(path, headers=headers, follow_redirects=False)
        assert answer.status_code == 200, (path, headers)


async def test_without_a_pin_runs_opens_on_every_run(client) -> None:
    answer = await client.get("/workflows", follow_redirects=False)
    assert answer.status_code == 200


async def test_a_forged_pin_keeps_only_list_filters(client) -> None:
    client.cookies.set(PIN, quote("next=//evil.example&status=failed&cursor=x&q=ab"))
    answer = await client.get("/workflows", follow_redirects=False)
    assert answer.headers["location"] == "/workflows?status=failed&q=ab"
    client.cookies.set(PIN, quote("next=//evil.example"))
    answer = await client.get("/workflows", follow_redirects=False)
    assert answer.status_code == 200


async def test_all_and_clear_reach_every_run_despite_a_pin(client) -> None:
    await make_run(1, created_at=FROZEN_NOW, status="failed")
    page = await client.get("/workflows?status=failed")
    soup = BeautifulSoup(page.text, "html.parser")
    all_link = soup.select_one("#run-counts a")
    assert all_link is not None and all_link["href"] == "/workflows?status="
    clear = soup.select_one("#filters a.clear")
    assert clear is not None and clear["href"] == "/workflows?status="
    pin = soup.select_one("#pin-view")
    assert pin is not None and pin.name == "button"


async def test_the_header_offers_utc_or_local_time(client) -> None:
    soup = BeautifulSoup((await client.get("/workflows")).text, "html.parser")
    toggle = soup.select_one("#zone-toggle")
    assert toggle is not None and toggle["aria-keyshortcuts"] == "z"
    assert toggle["aria-pressed"] == "false"
    assert "UTC" in toggle.get_text()
