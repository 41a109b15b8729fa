"""Bulk restart, bulk cancel, edited inputs and resume in a real browser, by keyboard
and by mouse: the selection, the confirmation with its count and estimate, the spend
cap, the batch's progress, the edit form's diff and a resume's reused nodes."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import fixed_id, make_run, restarts_of
from playwright.sync_api import Page, expect

from app.store.tables import AuditEntry, RestartBatch, StepRun, WorkflowRun

pytestmark = pytest.mark.browser

NewPage = Callable[..., Page]
Axe = Callable[[Page, str], None]
RunDb = Callable[[Callable[[], Any]], Any]

# Three paid nodes; the last fails on the first attempt, so a resume pays for it alone.
PAID = {
    "schema_version": "1.0",
    "flow": {"name": "paid"},
    "state": {
        "fields": {
            "topic": {"type": "str", "required": True, "description": "What to write about"},
            "words": {"type": "int", "default": 100},
            "outline": {"type": "str", "default": ""},
            "draft": {"type": "str", "default": ""},
            "final": {"type": "str", "default": ""},
        }
    },
    "nodes": [
        {"id": "outline", "prompt": "Outline {state.topic}", "outputs": ["outline"]},
        {"id": "draft", "prompt": "Draft {state.outline}", "outputs": ["draft"]},
        {"id": "polish", "prompt": "Polish {state.draft}", "outputs": ["final"]},
    ],
    "edges": [
        {"from": "START", "to": "outline"},
        {"from": "outline", "to": "draft"},
        {"from": "draft", "to": "polish"},
        {"from": "polish", "to": "END"},
    ],
    "config": {"llm": {"provider": "mock", "cost_per_call_usd": 0.01}},
}
FAILED = ("MockFailure", "node 'polish' (provider mock): configured to fail", "polish")
# 60 failed runs of "paid" (more than a page), 2 completed, 1 failed of "echo".
PAID_FAILED = range(1, 61)


async def _seed() -> None:
    for table in (StepRun, WorkflowRun, AuditEntry, RestartBatch):
        await table.delete(force=True)
    now = datetime.now(UTC)
    for n in PAID_FAILED:
        await make_run(
            n,
            created_at=now - timedelta(minutes=5, seconds=n),
            status="failed",
            workflow_name="paid",
            snapshot=PAID,
            inputs={"topic": f"topic {n}"},
            error=FAILED,
            cost_usd=0.02,
            tokens=40,
        )
        await _completed_steps(n, now - timedelta(minutes=5, seconds=n))
    await make_run(100, created_at=now - timedelta(hours=2), status="completed")
    await make_run(101, created_at=now - timedelta(hours=3), status="completed")
    await make_run(102, created_at=now - timedelta(hours=4), status="failed", error=FAILED)


async def _completed_steps(n: int, at: datetime) -> None:
    """The two nodes that completed before `polish` failed, with their outputs."""
    for order, (node, output) in enumerate(
        [("outline", {"outline": f"outline {n}"}), ("draft", {"draft": f"draft {n}"})]
    ):
        await StepRun.insert(
            StepRun(
                id=uuid.uuid4(),
                run=uuid.UUID(fixed_id(n)),
                node_id=node,
                step_order=order,
                status="completed",
                started_at=at,
                completed_at=at + timedelta(milliseconds=100),
                duration_ms=100.0,
                output=json.dumps(output),
                tokens=20,
                cost_usd=0.01,
            )
        )
    await WorkflowRun.update({WorkflowRun.steps_done: 3}).where(
        WorkflowRun.id == uuid.UUID(fixed_id(n))
    )


@pytest.fixture
def seeded(run_db: RunDb) -> None:
    run_db(_seed)


def open_list(page: Page, query: str = "") -> None:
    page.goto(f"/workflows{query}")
    expect(page.locator("#runs-body tr.run").first).to_be_visible()
    expect(page.locator("#live-state")).to_have_text("Live")


def test_bulk_restart_by_keyboard(page: Page, seeded: None, run_db: RunDb) -> None:
    open_list(page, "?workflow=paid")
    bar = page.locator("#bulk")
    expect(bar).to_be_hidden()
    # x picks the selected row, J extends the selection downwards.
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(bar).to_be_visible()
    expect(bar.locator("[data-bulk-count]")).to_have_text("1 run selected.")
    page.keyboard.press("J")
    page.keyboard.press("J")
    expect(bar.locator("[data-bulk-count]")).to_have_text("3 runs selected.")
    picked = [fixed_id(n) for n in (1, 2, 3)]
    for run_id in picked:
        expect(page.locator(f"#run-{run_id} input[data-pick]")).to_be_checked()
    # Tab to the bar's Restart button; its confirmation takes the focus and y confirms.
    bar.locator("[data-bulk-verb=restart]").focus()
    page.keyboard.press("Enter")
    confirm = page.locator("#bulk-confirm [data-bulk-open]")
    expect(confirm).to_contain_text("Restart 3 runs?")
    expect(confirm).to_contain_text("Last run: $0.0600, 120 tokens. Expected: about $0.0600")
    expect(confirm.locator("[data-bulk-confirm]")).to_be_focused()
    with page.expect_response(lambda r: r.url.endswith("/workflows/restart")) as answer:
        page.keyboard.press("y")
    assert answer.value.status == 200
    batch = page.locator("#bulk-confirm [data-batch]")
    expect(batch).to_contain_text("3 runs restarted")
    expect(batch).to_have_attribute("data-finished", "yes", timeout=10_000)
    expect(bar).to_be_hidden()
    assert run_db(lambda: restarts_of(picked)) == {r: 1 for r in picked}


def test_select_all_matching_with_a_cap_by_mouse(page: Page, seeded: None, run_db: RunDb) -> None:
    open_list(page, "?workflow=paid&status=failed")
    expect(page.locator("#runs-body tr.run")).to_have_count(50)  # one page of 60
    page.locator(f"#run-{fixed_id(1)} input[data-pick]").click()
    page.get_by_role("button", name="Select all runs matching these filters").click()
    # N is counted over every page, not only the one shown.
    expect(page.locator("[data-bulk-count]")).to_have_text(
        "All 60 runs matching these filters are selected (all pages)."
    )
    # A cap below the estimate ($1.20 for 60 runs): refused, nothing created.
    page.get_by_label("Spend cap $").fill("1.19")
    page.get_by_role("button", name="Restart…").click()
    confirm = page.locator("#bulk-confirm [data-bulk-open]")
    expect(confirm).to_contain_text("Restart 60 runs?")
    expect(confirm).to_contain_text("over the spend cap of $1.19")
    expect(confirm.locator("[data-bulk-confirm]")).to_have_count(0)
    confirm.get_by_role("button", name="Back (Esc)").click()
    expect(confirm).to_have_count(0)
    ids = [fixed_id(n) for n in PAID_FAILED]
    assert run_db(lambda: restarts_of(ids)) == {}
    # To the cent: a cap of exactly the estimate is enough.
    page.get_by_label("Spend cap $").fill("1.20")
    page.get_by_role("button", name="Restart…").click()
    with page.expect_response(lambda r: r.url.endswith("/workflows/restart")) as answer:
        page.get_by_role("button", name="Restart 60 runs (y)").click()
    assert answer.value.status == 200
    expect(page.locator("#bulk-confirm [data-batch]")).to_contain_text("60 runs restarted")
    assert run_db(lambda: restarts_of(ids)) == {r: 1 for r in ids}
    # The echo runs outside the filter were left alone.
    assert run_db(lambda: restarts_of([fixed_id(102)])) == {}


def test_resume_by_keyboard_reuses_the_completed_nodes(page: Page, seeded: None) -> None:
    open_list(page, "?workflow=paid")
    original = fixed_id(1)
    page.keyboard.press("j")
    page.keyboard.press("R")
    confirm = page.locator(f"#run-{original} .confirm")
    expect(confirm).to_contain_text(f"Resume run {original[:8]} (paid) from polish?")
    with page.expect_response(lambda r: r.url.endswith(f"/{original}/restart")) as answer:
        page.keyboard.press("y")
    found = re.search(r'data-acted-run="([0-9a-f-]{36})"', answer.value.text())
    assert found is not None
    page.goto(f"/workflows/{found.group(1)}")
    expect(page.locator("#run-status")).to_contain_text("completed", timeout=10_000)
    expect(page.locator("#run-facts")).to_contain_text("resumed from where it stopped")
    steps = page.locator("table.steps tbody tr")
    expect(steps).to_have_count(3)
    expect(steps.nth(0)).to_contain_text("reused")
    expect(steps.nth(0)).to_contain_text(f"from {original[:8]}")
    expect(steps.nth(2)).to_contain_text("completed")
    expect(page.locator("#run-facts")).to_contain_text("$0.0100")


def test_edit_inputs_and_restart_by_keyboard(new_page: NewPage, axe: Axe, seeded: None) -> None:
    page = new_page(bypass_csp=True)
    open_list(page, "?workflow=paid")
    original = fixed_id(1)
    page.keyboard.press("j")
    page.keyboard.press("e")
    expect(page).to_have_url(re.compile(f"/workflows/{original}/edit$"))
    topic = page.get_by_label("topic")
    expect(topic).to_have_value("topic 1")
    topic.fill("storms")
    page.get_by_label("words").fill("50")
    axe(page, "the edit form")
    page.get_by_role("button", name="Review the changes").click()
    confirm = page.locator("#restart-confirm [data-bulk-open]")
    expect(confirm).to_contain_text("with 2 changed inputs")
    expect(confirm.locator("table.diff")).to_contain_text("storms")
    expect(confirm.locator("[data-bulk-confirm]")).to_be_focused()
    axe(page, "the edit confirmation")
    page.keyboard.press("y")
    expect(page).not_to_have_url(re.compile("/edit$"), timeout=10_000)
    expect(page.locator("#run-facts")).to_contain_text("restarted with edited inputs")
    expect(page.locator("table.diff")).to_contain_text("storms")
    expect(page.locator("table.diff")).to_contain_text("100")


def test_bad_edited_input_is_refused_in_plain_words(
    page: Page, seeded: None, problems: Any
) -> None:
    problems.allow_status(400, "/restart")
    page.goto(f"/workflows/{fixed_id(1)}/edit")
    page.get_by_label("words").fill("many")
    page.get_by_role("button", name="Review the changes").click()
    expect(page.locator("#alerts")).to_contain_text("words")
    expect(page.locator("#restart-confirm [data-bulk-confirm]")).to_have_count(0)


def test_axe_bulk_bar_and_confirmation(new_page: NewPage, axe: Axe, seeded: None) -> None:
    page = new_page(bypass_csp=True)
    open_list(page, "?workflow=paid")
    page.keyboard.press("j")
    page.keyboard.press("x")
    page.get_by_role("button", name="Restart…").click()
    expect(page.locator("#bulk-confirm [data-bulk-open]")).to_be_visible()
    axe(page, "the bulk bar and its confirmation")
