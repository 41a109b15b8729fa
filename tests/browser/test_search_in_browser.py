"""Search in a real browser: a word of one run's error message finds that run among
100,000; a search that cannot run says so once, in plain words, and can be dismissed;
several workflows picked at once."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from app.services.live import OVERLAP_SECONDS
from app.store.tables import AuditEntry, StepRun, WorkflowRun

pytestmark = pytest.mark.browser

Axe = Callable[[Page, str], None]
NewPage = Callable[..., Page]
RunDb = Callable[[Callable[[], Any]], Any]

RUNS = 100_000
TARGET = 73_457  # the one run whose message holds the rare word
WORKFLOWS = ("support_triage", "article_writer", "echo", "paid_pipeline")


def _id(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


async def _seed() -> None:
    """100,000 runs in one statement: every fifth failed with a common message, one with
    a rare word, a minute apart going back from now."""
    for table in (StepRun, WorkflowRun, AuditEntry):
        await table.delete(force=True)
    pg = WorkflowRun._meta.db.engine_type == "postgres"
    if pg:
        numbers = f"generate_series(1, {RUNS}) AS s(i)"
        run_id = "(lpad(to_hex(i), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid"
        created = "now() - make_interval(mins => i)"
        workflow = "(ARRAY['support_triage','article_writer','echo','paid_pipeline'])[i % 4 + 1]"
        prefix = ""
        empty = "(chr(123) || chr(125))::json"  # '{}': Piccolo's raw takes braces for parameters
    else:
        empty = "char(123, 125)"
        numbers = "s"
        run_id = "printf('%08x-0000-4000-8000-%012x', i, i)"
        created = "strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || i || ' minutes') || '+00:00'"
        workflow = (
            "CASE i % 4 WHEN 0 THEN 'support_triage' WHEN 1 THEN 'article_writer'"
            " WHEN 2 THEN 'echo' ELSE 'paid_pipeline' END"
        )
        prefix = (
            f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {RUNS}) "
        )
    failed = f"i % 5 = 0 OR i = {TARGET}"
    message = (
        f"CASE WHEN i = {TARGET} THEN 'Kerberos ticket expired for the tool host'"
        " WHEN i % 5 = 0 THEN 'upstream timeout after 60 s' END"
    )
    await WorkflowRun.raw(
        f"{prefix}INSERT INTO workflow_run (id, workflow_name, status, trigger, attempt,"
        " config_snapshot, inputs, created_at, started_at, completed_at, steps_total,"
        " steps_done, total_tokens, total_cost_usd, error_type, error_message, error_node)"
        f" SELECT {run_id}, {workflow}, CASE WHEN {failed} THEN 'failed' ELSE 'completed' END,"
        f" 'api', 1, {empty}, {empty}, {created}, {created}, {created}, 1, 1, 10, 0.001,"
        f" CASE WHEN {failed} THEN 'ProviderError' END, {message},"
        f" CASE WHEN {failed} THEN 'fetch' END FROM {numbers}"
    )


@pytest.fixture
def many_runs(run_db: RunDb) -> Iterator[None]:
    run_db(_seed)
    # A tab whose live stream opens while 100,000 runs have just changed is told to load
    # its page again (app/services/live.py): let the seeding fall out of that window.
    time.sleep(OVERLAP_SECONDS + 1)
    yield

    async def clear() -> None:
        await WorkflowRun.delete(force=True)

    run_db(clear)


def test_a_word_from_an_error_message_finds_its_run_among_100000(
    new_page: NewPage, axe: Axe, many_runs: None, problems: Any
) -> None:
    page = new_page(bypass_csp=True)
    page.goto("/workflows")
    expect(page.locator(".pager .position")).to_have_text("1\u201350 of 100,000")
    expect(page.locator(f"#run-{_id(TARGET)}")).to_have_count(0)

    page.keyboard.press("/")
    box = page.get_by_label("Search")
    expect(box).to_be_focused()
    box.fill("kerberos")
    box.press("Enter")
    rows = page.locator("#runs-body tr.run")
    expect(rows).to_have_count(1)
    expect(page.locator(f"#run-{_id(TARGET)}")).to_be_visible()
    expect(page.locator(".pager .position")).to_have_text("1\u20131 of 1")
    expect(page.locator("#run-counts a.count-failed strong")).to_have_text("1")
    expect(page).to_have_url(re.compile(r"q=kerberos"))
    axe(page, "the list searched")

    # Words are ANDed, whole unless a * asks for their start; the workflow filter narrows it.
    box.fill("upstream time*")
    box.press("Enter")
    # 20,000 runs match: the strip counts 200 of them and says so.
    expect(page.locator(".pager .position")).to_have_text(
        "50 shown of more than 200", timeout=15_000
    )
    expect(page.locator("#run-counts")).to_contain_text("More than 200 runs match this search")

    # A search with no words: one message, however often it is sent, then dismissed.
    problems.allow_status(400, "&q=")
    for _ in range(3):
        box.fill('"?!"')
        box.press("Enter")
    alert = page.locator("#alerts .alert")
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text("Search looks for whole words in error messages")
    expect(alert).to_contain_text('\u201c"?!"\u201d has none')
    axe(page, "the refused search's message")
    alert.get_by_role("button", name="Dismiss this message").click()
    expect(alert).to_have_count(0)
    expect(box).to_be_focused()

    # Its message goes once a search finds again.
    box.fill("!!")
    box.press("Enter")
    expect(alert).to_have_count(1)
    box.fill("kerberos")
    box.press("Enter")
    expect(rows).to_have_count(1)
    expect(alert).to_have_count(0)


def test_several_workflows_picked_in_the_filter(
    new_page: NewPage, axe: Axe, many_runs: None
) -> None:
    page = new_page(bypass_csp=True)
    page.goto("/workflows?q=kerberos")
    expect(page.locator("#runs-body tr.run")).to_have_count(1)
    picker = page.get_by_label("Workflows")
    picker.select_option(["echo", "support_triage"])
    expect(page).to_have_url(re.compile(r"workflow=echo&workflow=support_triage"))
    # TARGET's workflow is article_writer (73457 % 4 == 1): not among them.
    expect(page.locator("#runs-body tr.run")).to_have_count(0)
    expect(page.locator("p.empty")).to_contain_text("No runs match \u201ckerberos\u201d")
    picker.select_option(["article_writer", "echo"])
    expect(page).to_have_url(re.compile(r"workflow=article_writer&workflow=echo"))
    expect(page.locator("#runs-body tr.run")).to_have_count(1, timeout=15_000)
    axe(page, "the list filtered by two workflows")
