"""The overview an operator opens first, in a real browser: counts that change live as
runs finish, and the "needs attention" view that drops a run once it is restarted."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import fixed_id, keep_alive, make_run
from playwright.sync_api import Page, expect
from support import CELL

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
    await keep_alive(fixed_id(RUNNING))
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


def test_times_switch_between_utc_and_local_with_z(
    new_page: NewPage, axe: Axe, seeded: None
) -> None:
    # A zone with an offset that is never zero and never whole hours.
    page = new_page(timezone_id="Asia/Kolkata", bypass_csp=True)
    page.goto("/workflows")
    first = page.locator("#runs-body tr.run").first
    when = first.locator(f"{CELL['when']} time")
    expect(when).to_have_attribute("data-abs", _utc_stamp())
    expect(page.locator("#zone-toggle")).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("z")
    expect(page.locator("#zone-toggle")).to_have_attribute("aria-pressed", "true")
    expect(when).to_have_attribute("data-abs", _local_stamp())
    expect(first).to_have_attribute("aria-label", _contains("+05:30"))
    expect(page.locator("#live")).to_contain_text("local time")
    axe(page, "the list in local time")
    # The choice is kept: the next page and the run's own page are in local time.
    page.reload()
    expect(when).to_have_attribute("data-abs", _local_stamp())
    first.locator("a").first.click()
    expect(page.locator("#run-detail dd time").first).to_have_text(_local_stamp())
    page.keyboard.press("z")
    expect(page.locator("#run-detail dd time").first).to_have_text(_utc_stamp())


def test_an_operator_pins_needs_attention_as_the_default_view(page: Page, seeded: None) -> None:
    page.goto("/workflows")
    pin = page.locator("#pin-view")
    expect(pin).to_be_disabled()
    page.locator("#run-counts a.count-attention").click()
    expect(page).to_have_title("Runs · needs attention · Configurable Agents")
    expect(pin).to_be_enabled()
    pin.focus()
    page.keyboard.press("Enter")
    expect(pin).to_have_attribute("aria-pressed", "true")
    # The brand and the Runs link now open on it.
    page.locator("nav a", has_text="Runs").click()
    expect(page).to_have_url(_contains("status=attention"))
    expect(page.locator("#runs-body tr.run")).to_have_count(2)
    # "all" still shows every run, and unpinning restores the plain list.
    page.locator("#run-counts a").first.click()
    expect(page.locator("#runs-body tr.run")).to_have_count(4)
    page.goto("/workflows?status=attention")
    page.locator("#pin-view").click()
    expect(page.locator("#pin-view")).to_have_attribute("aria-pressed", "false")
    page.goto("/workflows")
    expect(page).to_have_url(_contains("/workflows"))
    expect(page.locator("#runs-body tr.run")).to_have_count(4)


def _contains(text: str) -> Any:
    return re.compile(".*" + re.escape(text) + ".*")


def _utc_stamp() -> Any:
    return re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")


def _local_stamp() -> Any:
    return re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\+05:30$")
