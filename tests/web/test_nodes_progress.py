"""Progress counts nodes done of nodes, with what repeated beside it, on the run list, the
run page and in the JSON (through real HTTP, after real runs of the examples)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup
from support import JSON, new_service

from app.store.tables import WorkflowRun
from app.workflows.loader import load_workflow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _facts(html: str) -> dict[str, str]:
    soup = BeautifulSoup(html, "html.parser")
    return {
        div.dt.get_text(strip=True): div.dd.get_text(" ", strip=True)
        for div in soup.select("#run-facts div")
        if div.dt and div.dd
    }


async def test_a_loop_is_one_node_done_with_its_iterations_beside(client: Any) -> None:
    detail = await new_service().run_workflow(load_workflow(EXAMPLES / "loop.yaml"), {"draft": "d"})
    run_id = detail.summary.id
    assert [s.node_id for s in detail.steps] == ["refine"] * 3

    body = (await client.get(f"/workflows/{run_id}", headers=JSON)).json()
    assert (body["steps_done"], body["steps_total"]) == (1, 1)
    assert (body["iterations"], body["items_done"]) == (3, 0)
    listed = (await client.get("/workflows", headers=JSON)).json()["runs"][0]
    assert (listed["steps_done"], listed["iterations"]) == (1, 3)

    page = await client.get(f"/workflows/{run_id}")
    assert _facts(page.text)["Nodes done"] == "1 of 1 · loop \u00d73"

    # While it runs, its row says the same (a finished row shows its outcome instead).
    await WorkflowRun.update(
        {WorkflowRun.status: "running", WorkflowRun.current_node: "refine"}
    ).where(WorkflowRun.id == uuid.UUID(run_id))
    row = BeautifulSoup((await client.get("/workflows")).text, "html.parser").select_one(
        f"#run-{run_id}"
    )
    assert row is not None
    assert row.select_one(".step").get_text(strip=True) == "1/1 nodes · loop \u00d73 · refine"
    assert row.select_one("progress")["aria-label"] == "1 of 1 nodes done"


async def test_a_fan_out_is_one_node_done_with_its_items_beside(client: Any) -> None:
    detail = await new_service().run_workflow(
        load_workflow(EXAMPLES / "fan_out.yaml"), {"phrases": ["x"]}
    )
    run_id = detail.summary.id
    assert len([s for s in detail.steps if s.item_index is not None]) == 3

    body = (await client.get(f"/workflows/{run_id}", headers=JSON)).json()
    assert (body["steps_done"], body["steps_total"]) == (2, 2)
    assert (body["iterations"], body["items_done"]) == (0, 3)
    page = await client.get(f"/workflows/{run_id}")
    assert _facts(page.text)["Nodes done"] == "2 of 2 · fan-out 3 items"
