"""The dashboard on a phone (390 x 844): the runs table as one card per run with its
actions in view, restart by touch, a run's page without page-level horizontal scroll,
axe-core; and copying a run's id by key and by button, at any size."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from factories import fixed_id, keep_alive, make_run
from playwright.sync_api import Locator, Page, expect
from support import CELL, LiveServer

from app.store.tables import AuditEntry, StepRun, WorkflowRun

pytestmark = pytest.mark.browser

NewPage = Callable[..., Page]
Axe = Callable[[Page, str], None]
RunDb = Callable[[Callable[[], Any]], Any]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
OPERATOR = "small-screens-operator-5e6f7a8b9c0d"
VIEWER = "small-screens-viewer-1a2b3c4d5e6f"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}

RUNNING, FAILED, COMPLETED, LONG_NAME, CHAIN_ROOT, CHAIN_TIP = 1, 2, 3, 4, 5, 6
FAILURE = (
    "ProviderError",
    "node 'summarise' (provider openai): upstream timed out after 30 s while waiting for "
    "the first token of the answer; set OPENAI_TIMEOUT or retry later",
    "summarise",
)


async def _seed() -> None:
    for table in (StepRun, WorkflowRun, AuditEntry):
        await table.delete(force=True)
    now = datetime.now(UTC)
    await make_run(
        RUNNING, created_at=now - timedelta(minutes=1), status="running", steps=1, steps_total=4
    )
    await keep_alive(fixed_id(RUNNING))
    await make_run(
        FAILED,
        created_at=now - timedelta(minutes=5),
        status="failed",
        error=FAILURE,
        steps=2,
        steps_total=3,
        tokens=123_456,
        cost_usd=1.2345,
    )
    await make_run(COMPLETED, created_at=now - timedelta(minutes=9), steps=3, tokens=987)
    await make_run(
        LONG_NAME,
        created_at=now - timedelta(hours=2),
        workflow_name="quarterly_customer_feedback_summariser_with_translations",
    )
    await make_run(CHAIN_ROOT, created_at=now - timedelta(hours=3), status="failed", error=FAILURE)
    await make_run(
        CHAIN_TIP,
        created_at=now - timedelta(hours=2, minutes=50),
        attempt=2,
        restarted_from=fixed_id(CHAIN_ROOT),
    )


@pytest.fixture
def runs(run_db: RunDb) -> dict[int, str]:
    run_db(_seed)
    return {n: fixed_id(n) for n in (RUNNING, FAILED, COMPLETED, LONG_NAME, CHAIN_ROOT, CHAIN_TIP)}


def phone(new_page: NewPage, **context: Any) -> Page:
    """A touch phone's page: the viewport meta decides the layout width."""
    page = new_page(is_mobile=True, has_touch=True, **context)
    page.set_viewport_size(PHONE)
    return page


def open_list(page: Page) -> None:
    page.add_init_script(
        """addEventListener("DOMContentLoaded", () => {
            window.__said = [];
            new MutationObserver(() => {
                const text = document.getElementById("live").textContent;
                if (text) window.__said.push(text);
            }).observe(document.getElementById("live"), {childList: true, subtree: true});
        });"""
    )
    page.goto("/workflows")
    expect(page.locator("#runs-body tr.run").first).to_be_visible()
    expect(page.locator("#live-state")).to_have_text("Live")


def page_width(page: Page) -> int:
    return int(page.evaluate("() => document.documentElement.scrollWidth"))


def assert_no_page_scroll(page: Page, what: str) -> None:
    width = page_width(page)
    assert width <= PHONE["width"], f"{what}: the page scrolls sideways ({width} px wide)"


def within_width(locator: Locator, what: str) -> None:
    """`locator` is shown and lies wholly inside the phone's width."""
    expect(locator).to_be_visible()
    # The live stream may redraw the element between the two looks: look again.
    for _ in range(20):
        box = locator.bounding_box()
        if box is not None:
            break
        locator.page.wait_for_timeout(50)
    assert box is not None, what
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"{what}: {box}"


def keep_screenshot(page: Page, name: str) -> None:
    """A full-page screenshot in /tmp (for the team) and in tests/browser/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    for path in (Path("/tmp") / name, ARTIFACTS / name):
        page.screenshot(path=str(path), full_page=True)


def said(page: Page) -> list[str]:
    return page.evaluate("() => window.__said || []")


def clipboard(page: Page) -> str:
    return str(page.evaluate("() => navigator.clipboard.readText()"))


def test_every_card_shows_status_workflow_time_and_action(
    new_page: NewPage, axe: Axe, runs: dict[int, str]
) -> None:
    page = phone(new_page, bypass_csp=True)
    open_list(page)
    assert page.evaluate("() => window.innerWidth") == PHONE["width"]
    assert_no_page_scroll(page, "the run list")
    cards = page.locator("#runs-body tr.run")
    expect(cards).to_have_count(6)
    for n, run_id in runs.items():
        card = page.locator(f"#run-{run_id}")
        card.scroll_into_view_if_needed()
        within_width(card.locator(".badge").first, f"run {n}'s status")
        within_width(card.locator(CELL["wf"]), f"run {n}'s workflow")
        within_width(card.locator(f"{CELL['when']} time"), f"run {n}'s time")
        action = "Cancel" if n == RUNNING else "Restart"
        within_width(card.get_by_role("button", name=action), f"run {n}'s {action}")
        within_width(card.get_by_role("button", name=re.compile("^Copy the id")), f"run {n}'s copy")
    # A card is taller than a desktop row, and the long error wraps inside it.
    failed = page.locator(f"#run-{runs[FAILED]}")
    within_width(failed.locator(".error-summary"), "the error")
    within_width(failed.get_by_role("button", name=re.compile("^Resume")), "Resume")
    within_width(failed.get_by_role("link", name=re.compile("^Edit")), "Edit")
    page.evaluate("() => window.scrollTo(0, 0)")
    keep_screenshot(page, "list-390.png")
    axe(page, "the run list at 390 px")

    # The desktop keeps its table.
    wide = new_page()
    wide.set_viewport_size(DESKTOP)
    open_list(wide)
    assert wide.evaluate("() => getComputedStyle(document.querySelector('tr.run')).display") == (
        "table-row"
    )
    keep_screenshot(wide, "list-1440.png")


def test_keys_still_work_on_a_small_screen(new_page: NewPage, runs: dict[int, str]) -> None:
    page = phone(new_page)
    open_list(page)
    page.keyboard.press("j")
    page.keyboard.press("j")
    failed = page.locator(f"#run-{runs[FAILED]}")
    expect(failed).to_have_class(re.compile(r"\bselected\b"))
    expect(failed).to_be_focused()
    page.keyboard.press("r")
    confirm = failed.locator(".confirm")
    expect(confirm).to_contain_text(f"Restart run {runs[FAILED][:8]}")
    within_width(confirm.get_by_role("button", name="Yes (y)"), "the confirmation")
    assert_no_page_scroll(page, "the list with a confirmation open")
    page.keyboard.press("Escape")
    expect(confirm).to_have_count(0)
    expect(failed.get_by_role("button", name="Restart")).to_be_visible()
    page.keyboard.press("?")
    help_dialog = page.locator("dialog#help")
    expect(help_dialog).to_be_visible()
    expect(help_dialog.get_by_role("row", name=re.compile(r"^i\b"))).to_contain_text("Copy")
    within_width(help_dialog, "the help dialog")
    page.keyboard.press("Escape")
    page.keyboard.press("o")
    expect(page).to_have_url(re.compile(rf"/workflows/{runs[FAILED]}$"))


def test_restart_by_touch_on_a_card(new_page: NewPage, runs: dict[int, str]) -> None:
    page = phone(new_page)
    open_list(page)
    original = runs[FAILED]
    card = page.locator(f"#run-{original}")
    card.get_by_role("button", name="Restart").tap()
    confirm = card.locator(".confirm")
    expect(confirm).to_contain_text(f"Restart run {original[:8]} (echo)? Last run: $1.23")
    yes = confirm.get_by_role("button", name="Yes (y)")
    within_width(yes, "Yes")
    within_width(confirm.get_by_role("button", name="No (Esc)"), "No")
    assert_no_page_scroll(page, "the card with its confirmation")
    with page.expect_response(lambda r: r.url.endswith(f"/{original}/restart")) as answer:
        yes.tap()
    assert answer.value.status == 200
    found = re.search(r'data-acted-run="([0-9a-f-]{36})"', answer.value.text())
    assert found is not None
    new_id = found.group(1)
    expect(page.locator("#runs-body tr.run").first).to_have_attribute("id", f"run-{new_id}")
    expect(card.locator(".outcome")).to_contain_text(f"restarted as {new_id[:8]}", timeout=7_000)
    assert_no_page_scroll(page, "the list after the restart")


def test_run_page_at_390(new_page: NewPage, axe: Axe, runs: dict[int, str]) -> None:
    page = phone(new_page, bypass_csp=True)
    page.goto(f"/workflows/{runs[FAILED]}")
    expect(page.locator(".error-box")).to_contain_text("upstream timed out")
    expect(page.locator("#live-state")).to_have_text("Live")
    assert_no_page_scroll(page, "the run page")
    within_width(page.get_by_role("button", name="Restart run"), "Restart run")
    within_width(page.get_by_role("button", name="Copy run id"), "Copy run id")
    within_width(page.locator("#run-facts dd.mono").first, "the full run id")
    # The steps table may be wider than the phone: it scrolls in its own box.
    steps = page.locator("table.steps")
    within_width(steps, "the steps table's box")
    expect(page.get_by_role("columnheader", name="Output or error")).to_have_count(1)
    page.get_by_role("button", name="Restart run").tap()
    expect(page.locator("#run-actions .confirm")).to_be_visible()
    assert_no_page_scroll(page, "the run page with its confirmation open")
    page.keyboard.press("Escape")
    keep_screenshot(page, "detail-390.png")
    axe(page, "the run page at 390 px")
    page.set_viewport_size(DESKTOP)
    keep_screenshot(page, "detail-1440.png")
    # A restarted run's page (its lineage) fits as well.
    page.set_viewport_size(PHONE)
    page.goto(f"/workflows/{runs[CHAIN_ROOT]}")
    expect(
        page.get_by_role("button", name=re.compile("^Restart the latest attempt"))
    ).to_be_visible()
    assert_no_page_scroll(page, "a restarted run's page")


def test_copy_the_id_by_key_and_by_button(new_page: NewPage, runs: dict[int, str]) -> None:
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    open_list(page)
    page.keyboard.press("j")
    first = page.locator("#runs-body tr.run").first
    first_id = first.get_attribute("data-run-id")
    assert first_id == runs[RUNNING]
    page.keyboard.press("i")
    page.wait_for_function(
        "id => (window.__said || []).includes(`Copied the id of run ${id.slice(0, 8)}.`)",
        arg=first_id,
    )
    assert clipboard(page) == first_id
    # The button copies its own run's full id, and selects its row for the keys.
    failed = page.locator(f"#run-{runs[FAILED]}")
    button = failed.get_by_role("button", name=f"Copy the id of run {runs[FAILED][:8]}")
    button.click()
    expect(button).to_have_class(re.compile(r"\bis-copied\b"))
    expect(page.locator("#live")).to_have_text(f"Copied the id of run {runs[FAILED][:8]}.")
    assert clipboard(page) == runs[FAILED]
    expect(failed).to_have_class(re.compile(r"\bselected\b"))
    # Every other key still does what it did.
    page.keyboard.press("k")
    expect(first).to_have_class(re.compile(r"\bselected\b"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/workflows/{runs[RUNNING]}$"))

    # On a run's page, `i` and the button copy that run's id.
    page.evaluate("() => navigator.clipboard.writeText('')")
    page.keyboard.press("i")
    expect(page.locator("#live")).to_have_text(f"Copied the id of run {runs[RUNNING][:8]}.")
    assert clipboard(page) == runs[RUNNING]
    page.evaluate("() => navigator.clipboard.writeText('')")
    page.get_by_role("button", name="Copy run id").click()
    expect(page.get_by_role("button", name="Copy run id")).to_have_class(
        re.compile(r"\bis-copied\b")
    )
    assert clipboard(page) == runs[RUNNING]
    page.keyboard.press("u")
    expect(page).to_have_url(re.compile(r"/workflows$"))


def test_without_the_clipboard_api_the_id_is_shown_selected(
    new_page: NewPage, runs: dict[int, str]
) -> None:
    page = new_page()
    page.add_init_script(
        """Object.defineProperty(navigator, "clipboard", {value: {
            writeText: () => Promise.reject(new DOMException("denied", "NotAllowedError")),
        }});
        document.execCommand = () => false;"""
    )
    page.goto(f"/workflows/{runs[COMPLETED]}")
    page.keyboard.press("i")
    expect(page.locator("#live")).to_have_text(
        f"The id of run {runs[COMPLETED][:8]} is selected: copy it with Ctrl+C."
    )
    expect(page.locator("#alerts .run-id")).to_have_text(runs[COMPLETED])
    assert page.evaluate("() => getSelection().toString()") == runs[COMPLETED]
    page.goto("/workflows")
    page.keyboard.press("j")
    page.locator("#runs-body tr.run").first.get_by_role("button", name=re.compile("^Copy")).click()
    expect(page.locator("#alerts .run-id")).to_have_text(runs[RUNNING])
    assert page.evaluate("() => getSelection().toString()") == runs[RUNNING]


@pytest.fixture(scope="module")
def secured_url(database_url: str) -> Iterator[str]:
    """A second server, with tokens: signing in, and a viewer's read-only pages."""
    env = {"CA_OPERATOR_TOKENS": OPERATOR, "CA_VIEWER_TOKENS": VIEWER}
    with LiveServer(database_url, extra_env=env) as server:
        yield server.url


def test_a_viewer_on_a_phone_signs_in_and_sees_what_they_cannot_do(
    new_page: NewPage, axe: Axe, runs: dict[int, str], secured_url: str
) -> None:
    page = phone(new_page, bypass_csp=True)
    # The page asked for, with its query, survives signing in.
    page.goto(f"{secured_url}/workflows?status=failed")
    expect(page).to_have_url(f"{secured_url}/login?next={quote('/workflows?status=failed', '')}")
    expect(page.get_by_role("navigation")).to_have_count(0)
    expect(page.get_by_role("button", name="Shortcuts")).to_have_count(0)
    assert_no_page_scroll(page, "the sign-in page")
    page.get_by_label("Token").fill(VIEWER)
    page.get_by_role("button", name="Sign in").tap()
    expect(page).to_have_url(f"{secured_url}/workflows?status=failed")
    expect(page.get_by_label("Status")).to_have_value("failed")

    banner = page.locator("#read-only")
    expect(banner).to_contain_text("can view runs, but not restart, resume, edit or cancel")
    within_width(banner, "the read-only banner")
    card = page.locator(f"#run-{runs[FAILED]}")
    restart = card.get_by_role("button", name="Restart")
    within_width(restart, "the disabled Restart")
    expect(restart).to_be_disabled()
    expect(restart).to_have_accessible_description(re.compile("can view runs, but not restart"))
    expect(page.locator("#runs-body form")).to_have_count(0)
    expect(page.locator("#runs-body input[data-pick]")).to_have_count(0)
    assert_no_page_scroll(page, "the viewer's list")
    # The keys say why instead of acting.
    page.keyboard.press("j")
    page.keyboard.press("r")
    expect(page.locator("#alerts")).to_contain_text("You can only read")
    keep_screenshot(page, "viewer-390.png")
    axe(page, "the viewer's list at 390 px")

    page.goto(f"{secured_url}/workflows/{runs[RUNNING]}")
    cancel = page.get_by_role("button", name="Cancel run")
    within_width(cancel, "the disabled Cancel run")
    expect(cancel).to_be_disabled()
    expect(page.locator("#run-actions form")).to_have_count(0)
    assert_no_page_scroll(page, "the viewer's run page")
    axe(page, "the viewer's run page at 390 px")
