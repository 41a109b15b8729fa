"""The live dashboard in a real browser: other processes' runs and changes show up in
an open tab, confirmations survive the redraws, times tick, Back restores the page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from factories import fixed_id, keep_alive, make_run
from playwright.sync_api import Page, expect
from support import CELL

from app.store.tables import AuditEntry, StepRun, WorkflowRun

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NewPage = Callable[..., Page]
Axe = Callable[[Page, str], None]
RunDb = Callable[[Callable[[], Any]], Any]

RUNNING, FAILED, DONE = 1, 2, 3


async def _clear() -> None:
    await StepRun.delete(force=True)
    await WorkflowRun.delete(force=True)
    await AuditEntry.delete(force=True)


async def _seed() -> None:
    await _clear()
    now = datetime.now(UTC)
    # Its heartbeat is in the future: no sweep takes it for interrupted meanwhile.
    await make_run(
        RUNNING, created_at=now - timedelta(seconds=30), status="running", steps_total=40
    )
    await keep_alive(fixed_id(RUNNING))
    await make_run(FAILED, created_at=now - timedelta(minutes=5), status="failed")
    await make_run(DONE, created_at=now - timedelta(minutes=9), status="completed")


@pytest.fixture
def runs(run_db: RunDb) -> dict[int, str]:
    run_db(_seed)
    return {n: fixed_id(n) for n in (RUNNING, FAILED, DONE)}


def open_list(page: Page, query: str = "") -> None:
    page.goto(f"/workflows{query}")
    wait_live(page)


def wait_live(page: Page) -> None:
    """Until the page's stream is open (the header says "Live")."""
    expect(page.locator("#live-state")).to_have_text("Live")


def set_progress(run_db: RunDb, run_id: str, done: int, node: str = "plan") -> None:
    async def write() -> None:
        await WorkflowRun.update(
            {WorkflowRun.steps_done: done, WorkflowRun.current_node: node}
        ).where(WorkflowRun.id == uuid.UUID(run_id))

    run_db(write)


def test_a_run_started_by_the_cli_appears_in_the_banner(
    page: Page, runs: dict[int, str], database_url: str
) -> None:
    open_list(page)
    expect(page.locator("#new-runs")).to_be_empty()
    env = {**os.environ, "DATABASE_URL": database_url}
    cli = [sys.executable, "-m", "app", "run", str(ROOT / "examples" / "echo.yaml")]
    started = time.monotonic()
    subprocess.run([*cli, "--input", "message=from the CLI"], env=env, check=True, timeout=60)
    banner = page.locator("#new-runs button")
    expect(banner).to_have_text(re.compile(r"1 new run — show"), timeout=3_000)
    assert time.monotonic() - started < 3 + 10  # the CLI's own start-up is the rest
    # It is offered, not pushed under the operator: the table is unchanged until asked.
    expect(page.locator("#runs-body tr.run")).to_have_count(3)
    page.keyboard.press(".")
    expect(page.locator("#runs-body tr.run")).to_have_count(4)
    first = page.locator("#runs-body tr.run").first
    expect(first.locator(CELL["wf"])).to_have_text("echo")
    expect(first).to_be_focused()
    expect(page.locator("#live")).to_contain_text("Newest runs: 4 shown")
    expect(page.locator("#new-runs")).to_be_empty()


def test_a_row_finishing_in_another_process_updates_in_the_tab(
    page: Page, runs: dict[int, str], run_db: RunDb
) -> None:
    open_list(page)
    row = page.locator(f"#run-{runs[RUNNING]}")
    expect(row.locator(".step")).to_contain_text("0/40")
    set_progress(run_db, runs[RUNNING], 12, "review")
    expect(row.locator(".step")).to_contain_text("12/40 nodes · review", timeout=3_000)

    async def complete() -> None:
        await WorkflowRun.update(
            {WorkflowRun.status: "completed", WorkflowRun.completed_at: datetime.now(UTC)}
        ).where(WorkflowRun.id == uuid.UUID(runs[RUNNING]))

    run_db(complete)
    expect(row.locator(".badge")).to_have_text("completed", timeout=3_000)
    expect(row.get_by_role("button", name="Restart")).to_be_visible()


def test_the_cancel_confirmation_survives_ten_seconds_of_updates(
    page: Page, runs: dict[int, str], run_db: RunDb
) -> None:
    open_list(page)
    row = page.locator(f"#run-{runs[RUNNING]}")
    page.keyboard.press("j")
    expect(row).to_be_focused()
    page.keyboard.press("c")
    confirm = row.locator(".confirm")
    expect(confirm).to_contain_text(f"Cancel run {runs[RUNNING][:8]} (echo)?")
    for step in range(1, 11):
        set_progress(run_db, runs[RUNNING], step)
        expect(row.locator(".step")).to_contain_text(f"{step}/40")
        # Redrawn under it, the confirmation is still open and still has the focus.
        expect(confirm).to_be_visible()
        expect(confirm.get_by_role("button", name="Yes (y)")).to_be_focused()
        page.wait_for_timeout(1_000 - 200)
    with page.expect_response(lambda r: r.url.endswith(f"/{runs[RUNNING]}/cancel")) as answer:
        page.keyboard.press("y")
    assert answer.value.status == 200
    expect(row.locator(".badge")).to_have_text("cancelled")
    expect(page.locator("#live")).to_contain_text(f"Run {runs[RUNNING][:8]} cancelled")


def test_a_redraw_keeps_the_focus_on_no(page: Page, runs: dict[int, str], run_db: RunDb) -> None:
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    open_list(page)
    row = page.locator(f"#run-{runs[RUNNING]}")
    page.keyboard.press("j")
    page.keyboard.press("c")
    page.keyboard.press("Tab")
    no = row.locator(".confirm").get_by_role("button", name="No (Esc)")
    expect(no).to_be_focused()
    set_progress(run_db, runs[RUNNING], 5)
    expect(row.locator(".step")).to_contain_text("5/40")
    # Redrawn under the operator: still on "No", so Enter backs out, never cancels.
    expect(no).to_be_focused()
    page.keyboard.press("Enter")
    expect(row.locator(".confirm")).to_have_count(0)
    expect(row.locator(".badge")).to_have_text("running")
    assert posted == []


def test_a_confirmation_whose_run_changed_closes_and_says_why(
    page: Page, runs: dict[int, str], run_db: RunDb
) -> None:
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    open_list(page)
    row = page.locator(f"#run-{runs[FAILED]}")
    row.get_by_role("button", name="Restart").click()
    expect(row.locator(".confirm")).to_be_visible()

    async def restarted_elsewhere() -> None:
        await make_run(
            9, created_at=datetime.now(UTC), status="completed", restarted_from=runs[FAILED]
        )

    run_db(restarted_elsewhere)
    # Restarting it now would restart the other operator's attempt: not what was asked.
    expect(row.locator(".confirm")).to_have_count(0, timeout=3_000)
    expect(page.locator("#alerts")).to_contain_text("no longer possible")
    expect(row.get_by_role("button", name=re.compile(r"Restart 00000009"))).to_be_visible()
    assert posted == []


def test_the_run_page_cancel_asks_first_and_the_page_is_live(
    page: Page, runs: dict[int, str], run_db: RunDb
) -> None:
    page.goto(f"/workflows/{runs[RUNNING]}")
    wait_live(page)
    expect(page.locator("h1")).to_be_focused()
    # The running step shows in the timeline, with a duration that ticks.
    running = page.locator(".tl-running")
    expect(running).to_contain_text("echo")
    first = running.locator(".tl-dur").inner_text()
    page.wait_for_timeout(1_200)
    assert running.locator(".tl-dur").inner_text() != first
    set_progress(run_db, runs[RUNNING], 3, "summarise")
    expect(page.locator("#run-facts")).to_contain_text("3 of 40 · now summarise", timeout=3_000)

    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    page.get_by_role("button", name="Cancel run").click()
    confirm = page.locator("#run-actions .confirm")
    expect(confirm).to_contain_text(f"Cancel run {runs[RUNNING][:8]} (echo)?")
    page.keyboard.press("Escape")
    expect(confirm).to_have_count(0)
    assert posted == []
    page.keyboard.press("c")
    expect(confirm).to_be_visible()
    page.keyboard.press("y")
    expect(page.locator("#run-status")).to_contain_text("cancelled")
    assert len(posted) == 1


def test_keys_on_the_run_page_and_r_where_it_cannot(page: Page, runs: dict[int, str]) -> None:
    open_list(page, "?status=failed")
    list_url = page.url
    page.goto(f"/workflows/{runs[RUNNING]}", referer=list_url)
    wait_live(page)
    page.keyboard.press("r")
    notice = page.locator("#alerts")
    expect(notice).to_contain_text("is running: it can be restarted once it has ended")
    expect(page.locator("#live")).to_contain_text("is running")
    page.keyboard.press("u")
    # Back to the list as it was left: the failed filter.
    expect(page).to_have_url(re.compile(r"/workflows\?status=failed$"))
    expect(page.locator("#filters select[name=status]")).to_have_value("failed")


def test_back_from_a_run_restores_the_filtered_second_page(page: Page, run_db: RunDb) -> None:
    async def many() -> None:
        await _clear()
        now = datetime.now(UTC)
        for n in range(1, 8):
            await make_run(n, created_at=now - timedelta(minutes=n), status="failed")
        await make_run(50, created_at=now, status="completed")

    run_db(many)
    open_list(page, "?status=failed&limit=3")
    page.keyboard.press("n")
    expect(page).to_have_url(re.compile(r"cursor="))
    first = page.locator("#runs-body tr.run").first
    expect(first).to_have_attribute("id", f"run-{fixed_id(4)}")
    # Paging lands on the first row and says where the operator is.
    expect(first).to_be_focused()
    expect(page.locator("#live")).to_contain_text("Older runs, failed: 3 shown")
    page.keyboard.press("o")
    expect(page).to_have_url(re.compile(rf"/workflows/{fixed_id(4)}$"))
    page.go_back()
    # The whole page, not the table fragment the pager fetched.
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
    expect(page.locator("#filters select[name=status]")).to_have_value("failed")
    expect(page.locator("#runs-body tr.run").first).to_have_attribute("id", f"run-{fixed_id(4)}")
    expect(page.locator("link[rel=stylesheet]")).to_have_count(1)


def test_times_tick_and_the_selected_row_shows_its_absolute_time(page: Page, run_db: RunDb) -> None:
    async def one() -> None:
        await _clear()
        await make_run(1, created_at=datetime.now(UTC) - timedelta(seconds=57), status="failed")

    run_db(one)
    open_list(page)
    when = page.locator("#runs-body tr.run time").first
    expect(when).to_have_text(re.compile(r"5\ds ago"))
    expect(when).to_have_text("1m ago", timeout=6_000)
    page.keyboard.press("j")
    shown = when.evaluate("e => getComputedStyle(e, '::after').content")
    assert re.fullmatch(r'"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"', shown), shown


def test_opening_a_confirmation_or_selecting_a_row_moves_nothing(
    page: Page, runs: dict[int, str]
) -> None:
    open_list(page)
    geometry = """() => {
        const size = (sel, what) => [...document.querySelectorAll(sel)]
            .map(e => e.getBoundingClientRect()[what]);
        return {
            cols: size('table.runs thead th', 'width'),
            heights: size('#runs-body tr', 'height'),
            width: document.documentElement.scrollWidth,
        };
    }"""
    before = page.evaluate(geometry)
    for _ in range(2):
        page.keyboard.press("j")
    page.locator(f"#run-{runs[FAILED]}").hover()
    page.keyboard.press("r")
    expect(page.locator(".confirm")).to_be_visible()
    after = page.evaluate(geometry)
    assert after == before


def test_an_idle_tab_holds_one_stream_and_asks_nothing_else(
    page: Page, runs: dict[int, str]
) -> None:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    open_list(page)
    page.wait_for_timeout(500)
    opened = len(seen)
    assert sum("/workflows/events" in url for url in seen) == 1, seen
    page.wait_for_timeout(5_000)
    assert seen[opened:] == []


def test_axe_with_the_banner_and_a_confirmation_open(
    new_page: NewPage, axe: Axe, runs: dict[int, str], run_db: RunDb
) -> None:
    page = new_page(bypass_csp=True)
    open_list(page)

    async def another() -> None:
        await make_run(20, created_at=datetime.now(UTC), status="failed")

    run_db(another)
    expect(page.locator("#new-runs button")).to_be_visible(timeout=3_000)
    page.keyboard.press("j")
    page.keyboard.press("c")
    expect(page.locator(".confirm")).to_be_visible()
    axe(page, "the live list with the banner and an open confirmation")


def test_a_stream_refused_for_an_ended_session_sends_the_operator_to_sign_in(
    page: Page, runs: dict[int, str], problems: Any
) -> None:
    calls: list[str] = []
    problems.allow_status(401, "/workflows/events")
    problems.expect_text("SSE reconnect failed with status 401")

    def answer(route: Any) -> None:
        calls.append(route.request.url)
        if len(calls) == 1:  # a stream that ends at once: the browser comes back soon
            route.fulfill(
                status=200,
                headers={"Content-Type": "text/event-stream"},
                body=": live\nretry: 100\n\n",
            )
        else:  # by then the session has ended
            route.fulfill(status=401, body="")

    page.route("**/workflows/events*", answer)
    page.route("**/login*", lambda route: route.fulfill(status=200, body="<title>sign in</title>"))
    page.goto("/workflows?status=failed")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fworkflows%3Fstatus%3Dfailed$"))
    assert len(calls) >= 2
