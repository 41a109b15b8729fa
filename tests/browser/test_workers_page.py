"""The workers page in a real browser (queue mode, PostgreSQL): each worker's host, pid,
concurrency, start, heartbeat and runs in an accessible table that follows them live."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import fixed_id, make_run
from playwright.sync_api import Page, expect
from support import BACKEND, LiveServer

from app.store.tables import RunProcess, StepRun, WorkflowRun

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(BACKEND != "postgres", reason="queue workers need PostgreSQL"),
]

NewPage = Callable[..., Page]
Axe = Callable[[Page, str], None]
RunDb = Callable[[Callable[[], Any]], Any]

# Registered as a worker on another machine would be: no boot id, so no dashboard can
# check its pid here. Its heartbeat is ahead: no sweep takes it for dead meanwhile.
ALIVE, GONE = "feedbeef00000001", "feedbeef00000002"
FIRST, SECOND = 71, 72


@pytest.fixture(scope="module")
def base_url(database_url: str) -> Iterator[str]:
    with LiveServer(database_url, extra_env={"EXECUTION": "queue"}) as server:
        yield server.url


async def _clear() -> None:
    await RunProcess.delete().where(RunProcess.id.is_in([ALIVE, GONE]))
    await StepRun.delete(force=True)
    await WorkflowRun.delete(force=True)


async def _seed() -> None:
    await _clear()
    now = datetime.now(UTC)
    for pid, (worker, stopped) in enumerate(((ALIVE, None), (GONE, now)), start=4100):
        await RunProcess.insert(
            RunProcess(
                id=worker,
                kind="worker",
                host=f"box-{pid}",
                pid=pid,
                concurrency=4 if worker == ALIVE else 2,
                started_at=now - timedelta(hours=2),
                heartbeat_at=now + timedelta(hours=1) if stopped is None else now,
                stopped_at=stopped,
                stop_reason="stopped cleanly" if stopped else None,
            )
        )
    await _running(FIRST)


async def _running(n: int) -> None:
    await make_run(n, created_at=datetime.now(UTC), status="running", owner=ALIVE)
    await WorkflowRun.update(
        {WorkflowRun.heartbeat_at: datetime.now(UTC) + timedelta(hours=1)}
    ).where(WorkflowRun.id == uuid.UUID(fixed_id(n)))


@pytest.fixture
def workers(run_db: RunDb) -> Iterator[None]:
    run_db(_seed)
    yield
    run_db(_clear)


def test_workers_table_is_accessible_and_follows_the_workers_live(
    new_page: NewPage, axe: Axe, workers: None, run_db: RunDb
) -> None:
    page = new_page(bypass_csp=True)
    page.goto("/workers")
    table = page.get_by_role("table", name="Queue workers")
    expect(table).to_be_visible()
    alive = page.locator(f"#worker-{ALIVE}")
    # The worker's id heads its row: a screen reader names each cell by it.
    expect(alive.get_by_role("rowheader")).to_have_text(ALIVE)
    cells = alive.locator("td")
    expect(cells.nth(0)).to_have_text("box-4100")
    expect(cells.nth(1)).to_have_text("4100")
    expect(cells.nth(2)).to_have_text("4")
    expect(cells.nth(3).locator("time")).to_have_text("2h ago")
    expect(cells.nth(4)).to_contain_text("s ago")
    expect(cells.nth(5)).to_have_text("alive")
    expect(cells.nth(6)).to_have_text(f"1 of 4: {fixed_id(FIRST)[:8]}")
    expect(page.locator(f"#worker-{GONE}")).to_contain_text("gone stopped cleanly")
    axe(page, "the workers page")

    # Another run taken by the worker shows in its row, without a reload.
    run_db(lambda: _running(SECOND))
    expect(cells.nth(6)).to_contain_text(fixed_id(SECOND)[:8], timeout=12_000)
    expect(cells.nth(6)).to_contain_text("2 of 4")
    axe(page, "the workers page, redrawn live")

    # Keyboard: the run links are in the tab order and open the run.
    link = alive.get_by_role("link", name=fixed_id(FIRST)[:8])
    for _ in range(40):
        page.keyboard.press("Tab")
        if link.evaluate("el => el === document.activeElement"):
            break
    else:
        raise AssertionError("Tab never reached the worker's run link")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"/workflows/{fixed_id(FIRST)}", timeout=5_000)
