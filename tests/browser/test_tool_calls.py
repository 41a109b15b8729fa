"""A run with tool and sandbox calls, as an operator sees it in a real browser, and the
restart of a stored workflow this server can no longer run: refused in plain words."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from support import new_service

from app.store.tables import StepRun, WorkflowRun
from app.workflows.loader import load_workflow, parse_workflow

pytestmark = pytest.mark.browser

NewPage = Callable[..., Page]
Axe = Callable[[Page, str], None]
RunDb = Callable[[Callable[[], Any]], Any]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "order_totals.yaml"


async def _seed() -> tuple[str, str]:
    for table in (StepRun, WorkflowRun):
        await table.delete(force=True)
    service = new_service()
    ran = await service.run_workflow(load_workflow(EXAMPLE), {"order_json": "{}"})
    blocked = await service.run_workflow(load_workflow(EXAMPLE), {"order_json": "{}"})
    # Stored when the server still offered it: now the workflow asks for `shell`.
    text = EXAMPLE.read_text().replace("tools: [json_parse]", "tools: [shell]")
    await WorkflowRun.update(
        {WorkflowRun.config_snapshot: json.dumps(parse_workflow(text).snapshot())}
    ).where(WorkflowRun.id == uuid.UUID(blocked.summary.id))
    return ran.summary.id, blocked.summary.id


def test_tool_calls_and_a_restart_that_cannot_run_here(
    new_page: NewPage, axe: Axe, run_db: RunDb, problems: Any
) -> None:
    ran, blocked = run_db(_seed)
    page = new_page(bypass_csp=True)
    page.goto(f"/workflows/{ran}")
    rows = page.locator("table.steps tbody tr")
    expect(rows).to_have_count(7)
    expect(rows.nth(1).locator("td").nth(1)).to_have_text("↳ json_parse")
    expect(rows.nth(3).locator("td").nth(1)).to_have_text("↳ sandbox")
    expect(rows.nth(3)).to_contain_text("lines: 2")
    expect(page.locator("ol.timeline")).to_contain_text("json_parse")
    axe(page, "a run page with tool and sandbox calls")

    problems.allow_status(422, f"/workflows/{blocked}/restart")
    page.goto(f"/workflows/{blocked}")
    page.keyboard.press("r")
    with page.expect_response(lambda r: r.url.endswith(f"/{blocked}/restart")) as answer:
        page.keyboard.press("y")
    assert answer.value.status == 422
    alert = page.get_by_role("alert").filter(has_text="cannot run here")
    expect(alert).to_contain_text("nodes[parse].tools[0]")
    expect(alert).to_contain_text("CA_ENABLED_TOOLS=shell")
    assert run_db(WorkflowRun.count) == 2  # nothing was created
