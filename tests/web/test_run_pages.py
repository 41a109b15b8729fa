"""A finished run's page is drawn once and reused while the run reads the same; a change
written by anyone, anywhere, shows on the next request, and nothing of one request (its
CSRF token, role, the time) leaks into another's page."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from factories import make_run
from litestar.testing import AsyncTestClient
from support import FROZEN_NOW, OPERATOR, VIEWER

from app.store.access import AccessStore
from app.store.runs import RunStore
from app.store.tables import WorkflowRun
from app.web import pages as run_pages
from app.web.pages import RunPages


@pytest.fixture
def draws(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The run pages drawn."""
    drawn: list[str] = []
    draw = run_pages.draw

    def counting(request: Any, name: str, **context: Any) -> str:
        drawn.append(name)
        return draw(request, name, **context)

    monkeypatch.setattr(run_pages, "draw", counting)
    return drawn


def _main(page: str) -> str:
    return page[page.index('<main id="main">') : page.index("</main>")]


async def test_a_finished_run_is_drawn_once_while_it_reads_the_same(
    client: AsyncTestClient[Any], draws: list[str]
) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW - timedelta(minutes=5), steps=3)
    first = await client.get(f"/workflows/{run_id}")
    second = await client.get(f"/workflows/{run_id}")
    assert first.status_code == second.status_code == 200
    assert first.text == second.text
    assert "step_3" in second.text and "Config snapshot" in second.text
    assert draws == ["runs/detail.html"]


async def test_a_kept_page_gets_the_time_of_each_request(
    client: AsyncTestClient[Any], clock: Any, draws: list[str]
) -> None:
    run_id = await make_run(9, created_at=FROZEN_NOW - timedelta(minutes=5), steps=1)
    first = (await client.get(f"/workflows/{run_id}")).text
    clock.now = FROZEN_NOW + timedelta(hours=2)
    later = (await client.get(f"/workflows/{run_id}")).text
    assert len(draws) == 1
    assert '<meta name="server-time" content="2026-03-14T12:00:00+00:00">' in first
    assert '<meta name="server-time" content="2026-03-14T14:00:00+00:00">' in later
    assert "events?at=1773489600000000" in first and "events?at=1773496800000000" in later
    assert "\x00" not in later


async def test_what_another_process_writes_shows_on_the_next_request(
    client: AsyncTestClient[Any], draws: list[str]
) -> None:
    created = FROZEN_NOW - timedelta(minutes=5)
    run_id = await make_run(2, created_at=created, status="failed", steps=1)
    assert "History" not in _main((await client.get(f"/workflows/{run_id}")).text)

    # Written straight to the database, as another dashboard, a worker or the CLI would.
    child = await make_run(3, created_at=created, status="running", restarted_from=run_id)
    page = (await client.get(f"/workflows/{run_id}")).text
    assert f'{child[:8]}</a> <span class="badge badge-running">running' in page

    await AccessStore().record(
        actor="bob", role="operator", action="restart", run_id=run_id, new_run_id=child
    )
    assert "restarted by bob" in (await client.get(f"/workflows/{run_id}")).text

    await WorkflowRun.update({WorkflowRun.status: "completed"}).where(
        WorkflowRun.id == uuid.UUID(child)
    )
    page = (await client.get(f"/workflows/{run_id}")).text
    assert f'{child[:8]}</a> <span class="badge badge-completed">completed' in page
    assert len(draws) == 4


async def test_a_running_run_is_drawn_every_time(
    client: AsyncTestClient[Any], clock: Any, draws: list[str]
) -> None:
    run_id = await make_run(4, created_at=FROZEN_NOW - timedelta(minutes=1), status="running")
    first = (await client.get(f"/workflows/{run_id}")).text
    clock.now = FROZEN_NOW + timedelta(minutes=7)
    later = (await client.get(f"/workflows/{run_id}")).text
    assert len(draws) == 2
    # Its running node's time is counted to the request's time.
    assert ">60.0 s</span>" in _main(first) and ">7m 59s</span>" in _main(later)


async def test_each_request_gets_its_own_actions_and_tokens(
    secured: AsyncTestClient[Any], draws: list[str]
) -> None:
    run_id = await make_run(5, created_at=FROZEN_NOW - timedelta(minutes=5), status="failed")
    pages = []
    for token in (OPERATOR, VIEWER, OPERATOR):
        signed = await secured.post(
            "/login", data={"token": token, "next": "/workflows"}, follow_redirects=False
        )
        assert signed.status_code == 303
        pages.append((await secured.get(f"/workflows/{run_id}")).text)
        secured.cookies.clear()
    tokens = [
        re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        for page in pages
    ]
    assert len(set(tokens)) == 3  # three sessions
    operator, viewer, operator_again = pages
    for page, token in ((operator, tokens[0]), (operator_again, tokens[2])):
        assert 'data-action="restart"' in page and "Read-only:" not in page
        assert page.count(f'name="_csrf" value="{token}"') == 2  # sign out, restart
        assert sum(page.count(t) for t in tokens) == 3  # the meta tag too; no other's
    assert "Read-only:" in viewer and 'data-action="restart"' not in viewer
    assert sum(viewer.count(t) for t in tokens) == 2 == viewer.count(tokens[1])
    # One drawing for each kind of visitor; the second operator's page was kept.
    assert draws == ["runs/detail.html", "runs/detail.html"]


async def test_only_the_latest_runs_are_kept(
    client: AsyncTestClient[Any], draws: list[str]
) -> None:
    kept = client.app.state.run_pages
    created = FROZEN_NOW - timedelta(minutes=5)
    run_ids = [await make_run(n, created_at=created) for n in (6, 7, 8)]
    size = len(await _page(client, run_ids[0]))
    kept.budget = 2 * size + 10  # two pages fit, not three
    for run_id in run_ids[1:]:
        await _page(client, run_id)
    assert len(kept) == 2 and len(draws) == 3
    # The least recently shown went first.
    await _page(client, run_ids[2])
    assert len(draws) == 3
    await _page(client, run_ids[0])
    assert len(draws) == 4 and len(kept) == 2
    # A page over `largest` is not kept.
    kept.largest = size // 2
    await _page(client, run_ids[1])
    await _page(client, run_ids[1])
    assert len(draws) == 6 and len(kept) == 2


async def _page(client: AsyncTestClient[Any], run_id: str) -> bytes:
    page = await client.get(f"/workflows/{run_id}")
    assert page.status_code == 200
    return page.content


async def test_a_token_and_a_session_of_one_role_get_their_own_pages(
    secured: AsyncTestClient[Any], draws: list[str]
) -> None:
    run_id = await make_run(10, created_at=FROZEN_NOW - timedelta(minutes=5), status="failed")
    bearer = {"Authorization": f"Bearer {OPERATOR}"}
    by_token = (await secured.get(f"/workflows/{run_id}", headers=bearer)).text
    signed = await secured.post(
        "/login", data={"token": OPERATOR, "next": "/workflows"}, follow_redirects=False
    )
    assert signed.status_code == 303
    in_session = (await secured.get(f"/workflows/{run_id}")).text
    secured.cookies.clear()
    again = (await secured.get(f"/workflows/{run_id}", headers=bearer)).text
    # A token's requests carry no CSRF field (they need none); a session's forms do.
    assert 'name="_csrf"' not in by_token and "Sign out" not in by_token
    assert by_token == again
    token = re.search(r'name="csrf-token" content="([^"]+)"', in_session).group(1)  # type: ignore[union-attr]
    assert token and in_session.count(f'name="_csrf" value="{token}"') == 2
    assert draws == ["runs/detail.html", "runs/detail.html"]


async def test_a_page_holding_a_requests_own_token_is_not_kept(empty_db: str) -> None:
    run_id = await make_run(11, created_at=FROZEN_NOW - timedelta(minutes=5))
    detail = await RunStore().get_detail(run_id)
    assert detail is not None
    pages = RunPages()
    values = {"csrf": "tok-alice", "server_time": "t1", "since": "1"}

    def leaky(holes: Mapping[str, str]) -> str:
        # A part that took the request's token itself instead of the mark.
        return f"<meta content='{holes['csrf']}'><form><input value='{values['csrf']}'>"

    assert pages.page(detail, "operator", values, leaky) == (
        b"<meta content='tok-alice'><form><input value='tok-alice'>"
    )
    assert len(pages) == 0

    def escaped(holes: Mapping[str, str]) -> str:
        return f"<script>{json.dumps(holes['since'])}</script>"  # the mark, escaped

    assert b"\\u0000" in pages.page(detail, "operator", values, escaped)
    assert len(pages) == 0
