"""A finished run's page body is drawn once and reused while the run reads the same; a
change written by anyone, anywhere, shows on the next request, and nothing of one
request (sign-in, CSRF token, actions, the time) leaks into another's page."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from factories import make_run
from litestar.testing import AsyncTestClient
from support import FROZEN_NOW, OPERATOR, VIEWER

from app.store.access import AccessStore
from app.store.tables import WorkflowRun
from app.web import runs as run_handlers


@pytest.fixture
def draws(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The templates the run page draws apart from the page itself."""
    drawn: list[str] = []
    draw = run_handlers.draw

    def counting(request: Any, name: str, **context: Any) -> str:
        drawn.append(name)
        return draw(request, name, **context)

    monkeypatch.setattr(run_handlers, "draw", counting)
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
    assert draws == ["runs/_detail_body.html"]


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
    pages = {}
    for name, token in (("operator", OPERATOR), ("viewer", VIEWER)):
        signed = await secured.post(
            "/login", data={"token": token, "next": "/workflows"}, follow_redirects=False
        )
        assert signed.status_code == 303
        pages[name] = (await secured.get(f"/workflows/{run_id}")).text
        secured.cookies.clear()
    tokens = {
        name: re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        for name, page in pages.items()
    }
    assert tokens["operator"] != tokens["viewer"]
    assert f'name="_csrf" value="{tokens["operator"]}"' in pages["operator"]
    assert tokens["operator"] not in pages["viewer"]
    assert 'data-action="restart"' in pages["operator"]
    assert "Read-only:" in pages["viewer"] and "Read-only:" not in pages["operator"]
    assert draws == ["runs/_detail_body.html"]


async def test_only_the_latest_runs_are_kept(
    client: AsyncTestClient[Any], draws: list[str]
) -> None:
    bodies = client.app.state.run_bodies
    created = FROZEN_NOW - timedelta(minutes=5)
    run_ids = [await make_run(n, created_at=created) for n in (6, 7, 8)]
    size = len(await _body(client, run_ids[0]))
    bodies.budget = 2 * size + 10  # two bodies fit, not three (each a bit under size)
    for run_id in run_ids[1:]:
        await _body(client, run_id)
    assert len(bodies) == 2 and len(draws) == 3
    # The least recently shown went first.
    await _body(client, run_ids[2])
    assert len(draws) == 3
    await _body(client, run_ids[0])
    assert len(draws) == 4 and len(bodies) == 2
    # A body too large for its share of the budget is not kept.
    bodies.largest = size // 2
    await _body(client, run_ids[1])
    await _body(client, run_ids[1])
    assert len(draws) == 6 and len(bodies) == 2


async def _body(client: AsyncTestClient[Any], run_id: str) -> str:
    page = await client.get(f"/workflows/{run_id}")
    assert page.status_code == 200
    main = _main(page.text)
    return main[main.index('<dl id="run-facts"') :]
