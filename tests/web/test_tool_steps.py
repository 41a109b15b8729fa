"""A node's tool and sandbox calls on its run page and in its JSON, through real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup
from support import JSON, new_service

from app.workflows.loader import load_workflow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "order_totals.yaml"


async def test_the_run_page_shows_each_call_under_its_node(client: Any) -> None:
    detail = await new_service().run_workflow(load_workflow(EXAMPLE), {"order_json": "{}"})
    run_id = detail.summary.id

    page = await client.get(f"/workflows/{run_id}")
    assert page.status_code == 200
    rows = BeautifulSoup(page.text, "html.parser").select("table.steps tbody tr")
    cells = [[td.get_text(" ", strip=True) for td in row.find_all("td")][:3] for row in rows]
    assert [c[1] for c in cells] == [
        "parse",
        "↳ json_parse",
        "add_up",
        "↳ sandbox",
        "check_risk",
        "write_note",
        "summarise",
    ]
    # Calls have no step number of their own: the node's number counts executions.
    assert [c[0] for c in cells] == ["1", "", "2", "", "3", "4", "5"]
    assert "tool-row" in rows[1]["class"]
    assert "lines: 2" in rows[3].get_text()

    body = (await client.get(f"/workflows/{run_id}", headers=JSON)).json()
    assert [s["tool"] for s in body["steps"]] == [
        None,
        "json_parse",
        None,
        "sandbox",
        None,
        None,
        None,
    ]
    assert body["steps"][1]["output"]["arguments"]["json_string"].startswith('{"lines"')
    assert body["steps_done"] == body["steps_total"] == 5
