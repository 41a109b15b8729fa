"""A run's row as the operator's browser has it: the server sends each fact once and
app.js draws what repeats them (the row's accessible name, the checkbox, the copy
button, the action forms and what they ask). Each row must end up as complete as the
run's own page, whose forms the server draws: the same actions on the same run, asking
the same question, for a failed run, a running one, a restarted one (its latest attempt)
and one whose restart is priced by its workflow's median."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import fixed_id, keep_alive, make_run
from playwright.sync_api import Page, expect
from support import CELL

from app.store.runs import forget_medians
from app.store.tables import AuditEntry, StepRun, WorkflowRun

pytestmark = pytest.mark.browser

Axe = Callable[[Page, str], None]
RunDb = Callable[[Callable[[], Any]], Any]

RUNNING, FAILED, ROOT, TIP, CHEAP = 1, 2, 3, 4, 5
PRICED = (10, 11, 12)
FAILURE = ("ProviderError", "node 'summarise': upstream timed out", "summarise")


async def _seed() -> None:
    for table in (StepRun, WorkflowRun, AuditEntry):
        await table.delete(force=True)
    forget_medians()
    now = datetime.now(UTC)
    await make_run(RUNNING, created_at=now - timedelta(minutes=1), status="running", steps_total=4)
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
    await make_run(ROOT, created_at=now - timedelta(hours=3), status="failed", error=FAILURE)
    await make_run(
        TIP,
        created_at=now - timedelta(hours=2),
        status="failed",
        error=FAILURE,
        steps=1,
        attempt=2,
        restarted_from=fixed_id(ROOT),
        tokens=77,
        cost_usd=0.002,
    )
    for n, cost in zip(PRICED, (0.04, 0.05, 0.07), strict=True):
        await make_run(
            n, created_at=now - timedelta(hours=5), workflow_name="priced", cost_usd=cost
        )
    await make_run(
        CHEAP,
        created_at=now - timedelta(minutes=7),
        status="failed",
        workflow_name="priced",
        error=FAILURE,
        cost_usd=0.01,
        tokens=9,
    )


@pytest.fixture
def runs(run_db: RunDb) -> dict[int, str]:
    run_db(_seed)
    return {n: fixed_id(n) for n in (RUNNING, FAILED, ROOT, TIP, CHEAP)}


FORMS = """(root) => Array.from(root.querySelectorAll("form"), (f) => ({
    action: f.getAttribute("action"),
    post: f.getAttribute("hx-post"),
    confirm: f.dataset.confirm,
    fields: Array.from(f.querySelectorAll("input[type=hidden]:not([name=_csrf])"),
                       (i) => i.name + "=" + i.value),
    csrf: Boolean(f.querySelector("input[name=_csrf]")?.value),
    action_name: f.querySelector("[data-action]").dataset.action,
    keys: f.querySelector("[data-action]").getAttribute("aria-keyshortcuts"),
}))"""


def row_forms(page: Page, run_id: str) -> list[dict[str, Any]]:
    return list(page.eval_on_selector(f"#run-{run_id} td.actions", FORMS))


def page_forms(page: Page, run_id: str) -> list[dict[str, Any]]:
    """The forms of the run's own page, drawn by the server."""
    page.goto(f"/workflows/{run_id}")
    forms = list(page.eval_on_selector("#run-actions", FORMS))
    page.go_back()
    expect(page.locator(f"#run-{run_id}")).to_have_attribute("data-run-id", run_id)
    return forms


def test_each_row_asks_what_the_runs_page_asks(
    new_page: Callable[..., Page], axe: Axe, runs: dict[int, str]
) -> None:
    page = new_page(bypass_csp=True)
    page.goto("/workflows")
    expect(page.locator("#runs-body tr.run")).to_have_count(8)

    failed = runs[FAILED]
    forms = row_forms(page, failed)
    assert [(f["action"], f["post"], f["action_name"], f["keys"]) for f in forms] == [
        (f"/workflows/{failed}/restart", f"/workflows/{failed}/restart", "restart", "r"),
        (f"/workflows/{failed}/restart", f"/workflows/{failed}/restart", "resume", "R"),
    ]
    assert [f["confirm"] for f in forms] == [
        "Restart run 00000002 (echo)? Last run: $1.23, 123,456 tokens. Expected: about $1.23.",
        "Resume run 00000002 (echo) from summarise? Completed nodes are reused at no cost."
        " Last run: $1.23, 123,456 tokens.",
    ]
    assert forms[1]["fields"] == ["from=failure"]

    # The same questions as the page of the run acted on, for each kind of row (a
    # restarted run's row acts on its latest attempt).
    for n, acted_on in ((FAILED, FAILED), (RUNNING, RUNNING), (ROOT, TIP), (CHEAP, CHEAP)):
        keys = ("action", "confirm", "fields", "csrf", "action_name")
        asked = [[f[k] for k in keys] for f in row_forms(page, runs[n])]
        on_page = [[f[k] for k in keys] for f in page_forms(page, runs[acted_on])]
        assert asked == on_page, n

    # A restarted run offers its latest attempt, named as such.
    root = page.locator(f"#run-{runs[ROOT]}")
    restart = root.get_by_role("button", name="Restart 00000004, the latest attempt")
    expect(restart).to_have_text("Restart 00000004")
    expect(restart).to_have_attribute("aria-keyshortcuts", "r")
    edit = root.get_by_role("link", name="Edit the inputs of run 00000004 and restart")
    expect(edit).to_have_attribute("href", f"/workflows/{runs[TIP]}/edit")
    expect(root).to_have_attribute(
        "aria-label",
        f"Run 00000003, echo, failed, restarted: latest attempt 00000004 failed, created "
        f"{page.locator(f'#run-{runs[ROOT]} time').get_attribute('data-abs')}",
    )
    # A run that failed early is expected to cost what its workflow usually does.
    cheap = row_forms(page, runs[CHEAP])[0]["confirm"]
    assert cheap.endswith("Expected: about $0.0500 (the workflow's median).")

    # The rest of a row: its name, the checkbox, the copy button, the times and the error.
    row = page.locator(f"#run-{failed}")
    expect(row).to_have_attribute("tabindex", "-1")
    time = row.locator(f"{CELL['when']} time")
    stamp = time.get_attribute("data-abs") or ""
    assert stamp.endswith(" UTC") and stamp == time.get_attribute("title")
    expect(row).to_have_attribute("aria-label", f"Run 00000002, echo, failed, created {stamp}")
    pick = row.get_by_role("checkbox", name="Select run 00000002 for a bulk action")
    expect(pick).to_have_attribute("value", failed)
    expect(pick).to_have_attribute("aria-keyshortcuts", "x")
    copy = row.get_by_role("button", name="Copy the id of run 00000002")
    expect(copy).to_have_attribute("data-copy-id", failed)
    expect(copy).to_have_attribute("title", "Copy the full run id (i)")
    expect(row.locator(".error-summary")).to_have_attribute("title", FAILURE[1])
    expect(row.get_by_role("button", name="Resume run 00000002 from summarise")).to_be_visible()
    running = page.locator(f"#run-{runs[RUNNING]}")
    expect(running.get_by_role("button", name="Cancel")).to_have_class("btn btn-danger")
    expect(running.locator("td.actions form")).to_have_count(1)
    axe(page, "the list with every kind of row")
