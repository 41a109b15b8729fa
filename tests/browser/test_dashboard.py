"""The dashboard in a real browser: restart by mouse and keyboard, inline errors,
shortcuts, filters, paging, and axe-core accessibility checks."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import fixed_id, make_run
from playwright.sync_api import Locator, Page, Response, expect
from support import CELL

from app.store.tables import AuditEntry, StepRun, WorkflowRun

pytestmark = pytest.mark.browser

NewPage = Callable[..., Page]
Axe = Callable[[Page, str], None]
RunDb = Callable[[Callable[[], Any]], Any]

# The page's live stream brings a run's changes within a second or two (SQLite polls
# every 0.5 s); a restarted echo run ends at once.
OUTCOME_TIMEOUT = 7_000

COMPLETED_OLD, FAILED_A, FAILED_B, COMPLETED_NEW = 1, 2, 3, 4
FLAKY = ("ProviderError", "node 'echo' (provider mock): upstream timed out after 30 s", "echo")


async def _seed() -> None:
    await StepRun.delete(force=True)
    await WorkflowRun.delete(force=True)
    await AuditEntry.delete(force=True)
    now = datetime.now(UTC)
    await make_run(COMPLETED_OLD, created_at=now - timedelta(minutes=40), steps=1)
    await make_run(
        FAILED_A, created_at=now - timedelta(minutes=30), status="failed", error=FLAKY, steps=1
    )
    await make_run(FAILED_B, created_at=now - timedelta(minutes=20), status="failed", error=FLAKY)
    await make_run(
        COMPLETED_NEW, created_at=now - timedelta(minutes=10), workflow_name="summary", steps=1
    )


@pytest.fixture
def runs(run_db: RunDb) -> dict[int, str]:
    """Four finished runs, newest first on the page: 4 (completed), 3 and 2 (failed), 1."""
    run_db(_seed)
    return {n: fixed_id(n) for n in (COMPLETED_OLD, FAILED_A, FAILED_B, COMPLETED_NEW)}


def row(page: Page, run_id: str) -> Locator:
    return page.locator(f"#run-{run_id}")


def table_rows(page: Page) -> Locator:
    return page.locator("#runs-body tr.run")


def said(page: Page) -> list[str]:
    """Everything the page announced in its live region, in order."""
    return page.evaluate("() => window.__said || []")


def open_list(page: Page, query: str = "", *, live: bool = True) -> None:
    page.add_init_script(
        """addEventListener("DOMContentLoaded", () => {
            window.__said = [];
            new MutationObserver(() => {
                const text = document.getElementById("live").textContent;
                if (text) window.__said.push(text);
            }).observe(document.getElementById("live"), {childList: true, subtree: true});
        });"""
    )
    page.goto(f"/workflows{query}")
    expect(table_rows(page).first).to_be_visible()
    page.wait_for_function("() => window.htmx !== undefined")
    if live:
        expect(page.locator("#live-state")).to_have_text("Live")


def restart_requests(page: Page) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if r.url.endswith("/restart") else None)
    return seen


def assert_restarted(page: Page, original: str, answer: Response) -> None:
    """The answer swaps the original row to "restarting as X" (the live stream then
    takes it to "restarted as X → completed", at once for a quick run); X's own row is
    added at the top; #live says so, and then how X ended."""
    fragment = answer.text()
    assert "is-restarting" in fragment and "restarting as" in fragment
    found = re.search(r'data-acted-run="([0-9a-f-]{36})"', fragment)
    assert found is not None
    new_id = found.group(1)
    assert uuid.UUID(new_id) and new_id != original
    target = row(page, original)

    first = table_rows(page).first
    expect(first).to_have_attribute("id", f"run-{new_id}")
    expect(row(page, new_id)).to_have_count(1)
    # The restart is announced, and then how the new run ended.
    restarted = f"Run {original[:8]} restarted as {new_id[:8]} (attempt 2)"
    page.wait_for_function(
        "([a, b]) => (window.__said || []).includes(a) && window.__said.includes(b)",
        arg=[restarted, f"Run {new_id[:8]} completed."],
    )
    assert said(page).index(restarted) < said(page).index(f"Run {new_id[:8]} completed.")

    outcome = target.locator(".outcome")
    expect(outcome).to_contain_text(f"restarted as {new_id[:8]}", timeout=OUTCOME_TIMEOUT)
    expect(outcome.locator(".badge")).to_have_text("completed")
    expect(target.locator(".spinner")).to_have_count(0)
    expect(target).not_to_have_class(re.compile(r"\bis-restarting\b"))
    expect(row(page, new_id).locator(".badge")).to_have_text("completed", timeout=OUTCOME_TIMEOUT)
    expect(row(page, new_id).locator(CELL["lineage"])).to_have_text(
        f"attempt 2 of 2 from {original[:8]}"
    )


def test_restart_by_mouse(page: Page, runs: dict[int, str]) -> None:
    open_list(page)
    original = runs[FAILED_A]
    expect(table_rows(page)).to_have_count(4)
    row(page, original).get_by_role("button", name="Restart").click()
    # The mouse goes through the same confirmation as the keyboard.
    confirm = row(page, original).locator(".confirm")
    # It says what the run cost last time and what the restart is expected to cost.
    expect(confirm).to_contain_text(f"Restart run {original[:8]} (echo)? Last run: $0.0000")
    expect(confirm).to_contain_text("Expected: about $0.0000")
    with page.expect_response(lambda r: r.url.endswith(f"/{original}/restart")) as answer:
        confirm.get_by_role("button", name="Yes (y)").click()
    assert answer.value.status == 200
    assert_restarted(page, original, answer.value)
    expect(table_rows(page)).to_have_count(5)


def test_restart_by_keyboard(page: Page, runs: dict[int, str]) -> None:
    open_list(page)
    original = runs[FAILED_B]  # second row
    page.keyboard.press("j")
    expect(table_rows(page).first).to_have_class(re.compile(r"\bselected\b"))
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    target = row(page, original)
    expect(target).to_have_class(re.compile(r"\bselected\b"))
    expect(target).to_be_focused()
    expect(page.locator("#runs-body tr.selected")).to_have_count(1)

    page.keyboard.press("r")
    confirm = target.locator(".confirm")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text(f"Restart run {original[:8]} (echo)?")
    expect(target.get_by_role("button", name="Restart")).to_be_hidden()
    with page.expect_response(lambda r: r.url.endswith(f"/{original}/restart")) as answer:
        page.keyboard.press("y")
    assert answer.value.status == 200
    assert_restarted(page, original, answer.value)
    # The selection and the focus survive the swaps and the live redraws.
    expect(target).to_have_class(re.compile(r"\bselected\b"))
    expect(target).to_be_focused()
    expect(page.locator("#runs-body tr.selected")).to_have_count(1)


def test_escape_backs_out_of_the_confirmation(page: Page, runs: dict[int, str]) -> None:
    posted = restart_requests(page)
    open_list(page)
    target = row(page, runs[FAILED_A])
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    expect(target).to_be_focused()
    page.keyboard.press("r")
    expect(target.locator(".confirm")).to_be_visible()
    page.keyboard.press("Escape")
    expect(target.locator(".confirm")).to_have_count(0)
    expect(target.get_by_role("button", name="Restart")).to_be_visible()
    expect(target).to_be_focused()
    expect(page.locator("#live")).to_have_text("Not done.")
    page.wait_for_timeout(300)
    assert posted == []
    expect(target.locator(".badge")).to_have_text("failed")


def test_restart_error_shows_in_the_row(
    page: Page, runs: dict[int, str], problems: Any, run_db: RunDb
) -> None:
    """The page still offers Restart, but the run has started meanwhile (and the live
    stream is cut, so the page does not know): a 400 whose message the row shows
    inline, and the row keeps working."""
    original = runs[FAILED_A]
    problems.allow_status(400, f"/workflows/{original}/restart")
    page.route("**/workflows/events*", lambda route: route.fulfill(status=204, body=""))
    open_list(page, live=False)

    async def flip_to_running() -> None:
        await WorkflowRun.update(
            {
                WorkflowRun.status: "running",
                WorkflowRun.completed_at: None,
                WorkflowRun.heartbeat_at: datetime.now(UTC),
            }
        ).where(WorkflowRun.id == uuid.UUID(original))

    run_db(flip_to_running)
    target = row(page, original)
    target.get_by_role("button", name="Restart").click()
    with page.expect_response(lambda r: r.url.endswith(f"/{original}/restart")) as answer:
        page.keyboard.press("y")
    assert answer.value.status == 400
    error = target.locator("p.row-error")
    expect(error).to_have_attribute("role", "alert")
    expect(error).to_contain_text(
        f"run {original[:8]} is running: only a finished run can be restarted"
    )
    expect(table_rows(page)).to_have_count(4)
    expect(target.locator(".badge")).to_have_text("running")

    # Still usable: select it from the keyboard and cancel it.
    target.locator(CELL["wf"]).click()
    expect(target).to_have_class(re.compile(r"\bselected\b"))
    page.keyboard.press("c")
    expect(target.locator(".confirm")).to_contain_text(f"Cancel run {original[:8]} (echo)?")
    page.keyboard.press("y")
    expect(target.locator(".badge")).to_have_text("cancelled")
    expect(page.locator("#live")).to_have_text(f"Run {original[:8]} cancelled")


def test_help_dialog(page: Page, runs: dict[int, str]) -> None:
    open_list(page)
    dialog = page.locator("dialog#help")
    expect(dialog).to_be_hidden()
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading", name="Keyboard shortcuts")).to_be_visible()
    page.keyboard.press("j")  # shortcuts are off while the help is open
    expect(page.locator("#runs-body tr.selected")).to_have_count(0)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Shortcuts").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()


def test_slash_focuses_the_search_box(page: Page, runs: dict[int, str]) -> None:
    open_list(page)
    page.keyboard.press("j")
    first = table_rows(page).first
    expect(first).to_be_focused()
    page.keyboard.press("/")
    box = page.get_by_role("searchbox", name="Search")
    expect(box).to_be_focused()
    page.keyboard.type("jk")
    expect(box).to_have_value("jk")
    expect(first).to_have_class(re.compile(r"\bselected\b"))
    expect(page.locator("#runs-body tr.selected")).to_have_count(1)
    page.keyboard.press("Escape")
    expect(box).not_to_be_focused()
    page.keyboard.press("j")
    expect(table_rows(page).nth(1)).to_have_class(re.compile(r"\bselected\b"))


def test_open_with_o(page: Page, runs: dict[int, str]) -> None:
    open_list(page)
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("o")
    expect(page).to_have_url(re.compile(rf"/workflows/{runs[FAILED_B]}$"))
    expect(page.locator("h1")).to_contain_text(f"Run {runs[FAILED_B][:8]}")
    expect(page.locator(".error-box")).to_contain_text("upstream timed out")


def test_failed_filter_updates_table_and_url(page: Page, runs: dict[int, str]) -> None:
    open_list(page)
    expect(table_rows(page)).to_have_count(4)
    page.get_by_label("Status").select_option("failed")
    expect(page).to_have_url(re.compile(r"/workflows\?(.*&)?status=failed"))
    expect(table_rows(page)).to_have_count(2)
    expect(page.locator("#runs-body .badge")).to_have_text(["failed", "failed"])
    # The URL is a real address: loading it gives the same table.
    page.reload()
    expect(table_rows(page)).to_have_count(2)
    expect(page.get_by_label("Status")).to_have_value("failed")


def test_next_and_previous_page_keys(page: Page, runs: dict[int, str]) -> None:
    open_list(page, "?limit=2")
    expect(table_rows(page)).to_have_count(2)
    expect(table_rows(page).first).to_have_attribute("id", f"run-{runs[COMPLETED_NEW]}")
    page.keyboard.press("n")
    expect(page).to_have_url(re.compile(r"cursor="))
    expect(table_rows(page).first).to_have_attribute("id", f"run-{runs[FAILED_A]}")
    expect(table_rows(page)).to_have_count(2)
    page.keyboard.press("p")
    expect(page).to_have_url(re.compile(r"before="))
    expect(table_rows(page).first).to_have_attribute("id", f"run-{runs[COMPLETED_NEW]}")


# -- accessibility -------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_run_list(new_page: NewPage, axe: Axe, runs: dict[int, str], scheme: str) -> None:
    page = new_page(color_scheme=scheme, bypass_csp=True)
    open_list(page)
    page.keyboard.press("j")
    axe(page, f"the run list ({scheme})")


def test_axe_run_detail(new_page: NewPage, axe: Axe, runs: dict[int, str]) -> None:
    page = new_page(bypass_csp=True)
    page.goto(f"/workflows/{runs[FAILED_A]}")
    expect(page.locator(".error-box")).to_be_visible()
    axe(page, "the run detail")


def test_axe_help_dialog(new_page: NewPage, axe: Axe, runs: dict[int, str]) -> None:
    page = new_page(bypass_csp=True)
    open_list(page)
    page.keyboard.press("?")
    expect(page.locator("dialog#help")).to_be_visible()
    axe(page, "the help dialog")


def test_axe_audit_trail_and_run_history(new_page: NewPage, axe: Axe, runs: dict[int, str]) -> None:
    page = new_page(bypass_csp=True)
    open_list(page)
    original = runs[FAILED_A]
    row(page, original).get_by_role("button", name="Restart").click()
    with page.expect_response(lambda r: r.url.endswith(f"/{original}/restart")) as answer:
        page.keyboard.press("y")
    assert answer.value.status == 200
    page.goto("/audit")
    expect(page.get_by_role("cell", name="restart")).to_have_count(1)
    axe(page, "the audit trail")
    page.goto(f"/workflows/{original}")
    history = page.get_by_role("region", name="History")
    expect(history).to_contain_text("restarted by local as")
    axe(page, "a restarted run's detail with its history")
