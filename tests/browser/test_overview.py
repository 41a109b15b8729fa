"""The overview an operator opens first, in a real browser: counts that change live as
runs finish, and the "needs attention" view that drops a run once it is restarted."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import fixed_id, make_run
from playwright.sync_api import Page, expect

from app.store.tables import AuditEntry, StepRun, WorkflowRun

pytestmark = pytest.mark.browser

Axe = Callable[[Page, str], None]
NewPage = Callable[..., Page]
RunDb = Callable[[Callable[[], Any]], Any]
RUNNING, FAILED_A, FAILED_B, DONE = 1, 2, 3, 4


async def _seed() -> None:
    for table in (StepRun, WorkflowRun, AuditEntry):
        await table.delete(force=True)
    now = datetime.now(UTC)
    await make_run(RUNNING, created_at=now - timedelta(seconds=30), status="running")
    await WorkflowRun.update({WorkflowRun.heartbeat_at: now + timedelta(hours=1)}).where(
        WorkflowRun.id == uuid.UUID(fixed_id(RUNNING))
    )
    await make_run(FAILED_A, created_at=now - timedelta(minutes=2), status="failed")
    await make_run(FAILED_B, created_at=now - timedelta(minutes=3), status="failed")
    await make_run(DONE, created_at=now - timedelta(minutes=4), status="completed", tokens=30)


@pytest.fixture
def seeded(run_db: RunDb) -> None:
    run_db(_seed)


def count(page: Page, css: str) -> Any:
    return page.locator(f"#run-counts a.{css} strong")


def test_counts_change_live_as_runs_finish(
    new_page: NewPage, axe: Axe, seeded: None, run_db: RunDb
) -> None:
    page = new_page(bypass_csp=True)
    page.goto("/workflows")
    expect(page.locator("#live-state")).to_have_text("Live")
    expect(count(page, "count-running")).to_have_text("1")
    expect(count(page, "count-completed")).to_have_text("1")
    expect(page.locator(".pager .position")).to_have_text("1\u20134 of 4")
    axe(page, "the list with its counts")

    async def finish() -> None:
        await WorkflowRun.update(
            {
                WorkflowRun.status: "completed",
                WorkflowRun.completed_at: datetime.now(UTC),
                WorkflowRun.total_tokens: 12,
            }
        ).where(WorkflowRun.id == uuid.UUID(fixed_id(RUNNING)))

    run_db(finish)
    expect(count(page, "count-running")).to_have_text("0", timeout=5_000)
    expect(count(page, "count-completed")).to_have_text("2")
    expect(page.locator("#run-counts .totals")).to_contain_text("42 tokens")


def test_needs_attention_drops_a_run_once_it_is_restarted(
    page: Page, seeded: None, run_db: RunDb
) -> None:
    page.goto("/workflows")
    page.locator("#run-counts a.count-attention").click()
    expect(page).to_have_title("Runs · needs attention · Configurable Agents")
    rows = page.locator("#runs-body tr.run")
    expect(rows).to_have_count(2)
    expect(count(page, "count-attention")).to_have_text("2")
    target = page.locator(f"#run-{fixed_id(FAILED_A)}")
    target.get_by_role("button", name="Restart").click()
    page.keyboard.press("y")
    expect(target.locator(".badge")).to_have_text("failed")
    # Restarted: its work is under way; a reload of the view no longer lists it.
    expect(target).to_contain_text("restart", timeout=5_000)
    page.reload()
    expect(rows).to_have_count(1)
    expect(page.locator(f"#run-{fixed_id(FAILED_B)}")).to_be_visible()
    expect(count(page, "count-attention")).to_have_text("1")
