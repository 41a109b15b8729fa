"""The run list's search and its several workflows, through HTTP with operator and viewer
tokens: words of error messages, failed nodes and workflow names, or the start of a run
id; one message in plain words for a search that cannot run (never a 500, never a stack
of them); `?workflow=a&workflow=b` on the list, its links, its live stream and the bulk
actions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from bs4 import BeautifulSoup
from factories import fixed_id, make_run
from support import FROZEN_NOW, JSON, OPERATOR, VIEWER

HX = {"HX-Request": "true"}


def _as(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


async def _seed() -> None:
    rows = [
        ("support_triage", "failed", "upstream timeout after 60 s", "fetch_url"),
        ("support_triage", "failed", "rate limit: 429 Too Many Requests", "classify"),
        ("article_writer", "failed", "Timeout while reading the model's answer", "write"),
        ("article_writer", "completed", None, None),
        ("echo", "failed", "Kerberos ticket expired", "auth"),
        ("paid_pipeline", "cancelled", "cancelled by an operator", None),
    ]
    for n, (workflow, status, message, node) in enumerate(rows, start=1):
        await make_run(
            n,
            created_at=FROZEN_NOW - timedelta(minutes=n),
            status=status,
            workflow_name=workflow,
            error=("E", message, node) if message else None,
        )


def _ids(answer: Any) -> list[str]:
    return [r["id"] for r in answer.json()["runs"]]


async def test_words_find_runs_by_message_node_and_workflow(secured: Any) -> None:
    await _seed()
    headers = _as(VIEWER, **JSON)

    async def found(q: str, **params: Any) -> list[str]:
        answer = await secured.get("/workflows", params={"q": q, **params}, headers=headers)
        assert answer.status_code == 200, answer.text
        return _ids(answer)

    assert await found("timeout") == [fixed_id(1), fixed_id(3)]
    assert await found("TIMEOUT upstream") == [fixed_id(1)]  # words are ANDed
    assert await found("time") == []  # whole words only
    assert await found("time*") == [fixed_id(1), fixed_id(3)]  # unless it says "start of"
    assert await found("upst* TIMEOUT") == [fixed_id(1)]  # a start in any place
    assert await found("fetch_url") == [fixed_id(1)]  # the failed node
    assert await found("writer") == [fixed_id(3), fixed_id(4)]  # the workflow name
    assert await found('"429"') == [fixed_id(2)]
    assert await found("timeout", workflow="article_writer") == [fixed_id(3)]
    assert await found("timeout", status="attention") == [fixed_id(1), fixed_id(3)]
    assert await found("nothing-like-this") == []
    # The start of a run id still finds it.
    assert await found(fixed_id(5)[:8]) == [fixed_id(5)]
    assert await found(fixed_id(5)) == [fixed_id(5)]

    page = await secured.get("/workflows", params={"q": "timeout"}, headers=_as(VIEWER, **HX))
    soup = BeautifulSoup(page.text, "html.parser")
    assert soup.select_one(".pager .position").get_text() == "1\u20132 of 2"
    strip = soup.select_one("#run-counts")
    assert strip is not None and "failed 2" in strip.get_text(" ", strip=True)
    # Every link of the page keeps the search.
    assert "q=timeout" in soup.select_one("#run-counts a.count-failed")["href"]
    assert "q=timeout" in soup.select_one("#runs-live")["hx-sse:connect"]


@pytest.mark.parametrize("q", ['"', "!!!", "“”", "*", "()", "x" * 201, "a b c d e f g h i"])
async def test_a_search_that_cannot_run_is_one_message_in_plain_words(secured: Any, q: str) -> None:
    await _seed()
    answer = await secured.get("/workflows", params={"q": q}, headers=_as(VIEWER, **JSON))
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_search"
    assert answer.json()["error"].startswith("Search looks for whole words in error messages")

    # htmx: one alert, replacing whatever the region held, with a way to dismiss it.
    for _ in range(3):
        fragment = await secured.get("/workflows", params={"q": q}, headers=_as(VIEWER, **HX))
        assert fragment.status_code == 400
        assert fragment.headers["hx-retarget"] == "#alerts"
        assert fragment.headers["hx-reswap"] == "innerHTML"
        soup = BeautifulSoup(fragment.text, "html.parser")
        alerts = soup.select(".alert")
        assert len(alerts) == 1
        assert alerts[0]["data-alert"] == "invalid_search"
        assert alerts[0].select_one("button[data-dismiss]")["aria-label"]
        assert "Traceback" not in fragment.text

    page = await secured.get("/workflows", params={"q": q}, headers=_as(VIEWER))
    assert page.status_code == 400
    assert "Search looks for whole words" in page.text


async def test_several_workflows_in_the_list_links_and_stream(secured: Any) -> None:
    await _seed()
    params = [("workflow", "support_triage"), ("workflow", "echo")]
    answer = await secured.get("/workflows", params=params, headers=_as(VIEWER, **JSON))
    assert _ids(answer) == [fixed_id(1), fixed_id(2), fixed_id(5)]

    page = await secured.get("/workflows", params=params, headers=_as(VIEWER))
    soup = BeautifulSoup(page.text, "html.parser")
    chosen = [o["value"] for o in soup.select("select[name=workflow] option[selected]")]
    assert chosen == ["echo", "support_triage"]
    label = soup.select_one("label:has(select[name=workflow])")
    assert label is not None and "Workflows" in label.get_text()
    assert soup.select_one(".pager .position").get_text() == "1\u20133 of 3"
    failed = soup.select_one("#run-counts a.count-failed")
    assert failed.select_one("strong").get_text() == "3"
    assert "workflow=support_triage&workflow=echo" in failed["href"]
    assert (
        "workflow=support_triage&workflow=echo" in soup.select_one("#runs-live")["hx-sse:connect"]
    )

    # One workflow keeps its plain link.
    one = await secured.get("/workflows", params={"workflow": "echo"}, headers=_as(VIEWER))
    soup = BeautifulSoup(one.text, "html.parser")
    assert soup.select_one("#run-counts a.count-failed")["href"] == (
        "/workflows?status=failed&workflow=echo"
    )


async def test_bulk_actions_take_a_list_of_workflows_and_a_search(secured: Any) -> None:
    await _seed()
    headers = _as(OPERATOR, **JSON)

    async def dry(filter_: dict[str, Any]) -> Any:
        body = {"filter": filter_, "dry_run": True}
        return await secured.post("/workflows/restart", json=body, headers=headers)

    several = await dry({"status": "failed", "workflow": ["support_triage", "echo"]})
    assert several.status_code == 200, several.text
    assert several.json()["matched"] == 3
    one = await dry({"status": "failed", "workflow": "article_writer"})
    assert one.json()["matched"] == 1
    searched = await dry({"status": "failed", "q": "timeout"})
    assert searched.json()["matched"] == 2
    both = await dry({"workflow": ["support_triage", "echo"], "q": "timeout"})
    assert both.json()["matched"] == 1
    for bad in ({"workflow": [1, 2]}, {"workflow": {"a": 1}}, {"q": "!!"}, {"q": 5}):
        refused = await dry(bad)
        assert refused.status_code == 400, bad
        assert refused.json()["error"]

    done = await secured.post(
        "/workflows/restart",
        json={"filter": {"status": "failed", "workflow": ["echo", "support_triage"], "q": "rate"}},
        headers=headers,
    )
    assert done.status_code == 200, done.text
    assert done.json()["restarted"] == 1
