"""The filter bar's counts and the list's position, through real HTTP: exact, each a
link to its filter, and the same in the page and in its live updates."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bs4 import BeautifulSoup
from factories import fixed_id, make_run
from support import FROZEN_NOW, JSON

DASH = "\u2013"  # between the first and last run of a page
STATUSES = ["failed"] * 7 + ["completed"] * 50 + ["running"] * 3 + ["cancelled"] * 2


async def _seed() -> None:
    for n, status in enumerate(STATUSES * 2, start=1):
        await make_run(
            n,
            created_at=FROZEN_NOW - timedelta(minutes=n * 3),
            status=status,
            workflow_name="paid" if n % 2 else "echo",
            tokens=10,
            cost_usd=0.01,
        )


def _counts(html: str) -> dict[str, str]:
    strip = BeautifulSoup(html, "html.parser").select_one("#run-counts")
    assert strip is not None
    found = {}
    for link in strip.select("a"):
        *name, value = link.get_text(" ", strip=True).split(" ")
        found[" ".join(name)] = value
    return found


async def test_counts_per_status_total_and_position(client: Any) -> None:
    await _seed()
    page = await client.get("/workflows")
    assert _counts(page.text) == {
        "all": "124",
        "needs attention": "14",
        "failed": "14",
        "running": "6",
        "pending": "0",
        "completed": "100",
        "cancelled": "4",
    }
    soup = BeautifulSoup(page.text, "html.parser")
    assert soup.select_one(".pager .position").get_text() == f"1{DASH}50 of 124"
    # Finished runs only: 118 of them, 10 tokens and a cent each.
    assert "1,180 tokens, $1.18" in soup.select_one("#run-counts .totals").get_text(" ", strip=True)
    failed = soup.select_one("#run-counts a.count-failed")["href"]
    assert failed == "/workflows?status=failed"

    older = soup.select_one('a[data-page="next"]')["href"]
    second = BeautifulSoup((await client.get(older)).text, "html.parser")
    assert second.select_one(".pager .position").get_text() == f"51{DASH}100 of 124"
    third = BeautifulSoup(
        (await client.get(second.select_one('a[data-page="next"]')["href"])).text, "html.parser"
    )
    assert third.select_one(".pager .position").get_text() == f"101{DASH}124 of 124"


async def test_counts_follow_the_workflow_and_time_filters(client: Any) -> None:
    await _seed()
    paid = _counts((await client.get("/workflows?workflow=paid")).text)
    assert paid["all"] == "62" and paid["failed"] == "8"
    # The last hour: runs 1 to 19 (every 3 minutes), whatever their status filter.
    hour = await client.get("/workflows?since=1h&status=completed")
    counts = _counts(hour.text)
    assert counts["all"] == "20"
    position = BeautifulSoup(hour.text, "html.parser").select_one(".pager .position")
    assert position.get_text() == f"1{DASH}{counts['completed']} of {counts['completed']}"


async def test_needs_attention_lists_failed_runs_not_restarted(client: Any) -> None:
    await make_run(1, created_at=FROZEN_NOW - timedelta(minutes=1), status="failed")
    await make_run(2, created_at=FROZEN_NOW - timedelta(minutes=2), status="failed")
    await make_run(3, created_at=FROZEN_NOW - timedelta(minutes=3), status="completed")
    # Run 2 was restarted and failed again: the restart is what needs attention now.
    await make_run(
        4,
        created_at=FROZEN_NOW - timedelta(seconds=30),
        status="failed",
        restarted_from=fixed_id(2),
        attempt=2,
    )
    shown = await client.get("/workflows?status=attention", headers=JSON)
    assert [r["id"] for r in shown.json()["runs"]] == [fixed_id(4), fixed_id(1)]
    page = await client.get("/workflows?status=attention")
    assert "<title>Runs · needs attention" in page.text
    assert _counts(page.text)["needs attention"] == "2"
    assert _counts(page.text)["failed"] == "3"  # the failed filter keeps its plain meaning

    # Run 1's restart completes: nothing needs attention there any more.
    await make_run(
        5,
        created_at=FROZEN_NOW - timedelta(seconds=10),
        status="completed",
        restarted_from=fixed_id(1),
        attempt=2,
    )
    shown = await client.get("/workflows?status=attention", headers=JSON)
    assert [r["id"] for r in shown.json()["runs"]] == [fixed_id(4)]
    assert _counts((await client.get("/workflows")).text)["needs attention"] == "1"


async def test_a_search_found_in_many_runs_says_more_than_it_counts(
    client: Any, monkeypatch: Any
) -> None:
    from app.store import counts

    for n in range(1, 5):
        await make_run(
            n,
            created_at=FROZEN_NOW - timedelta(minutes=n),
            status="failed",
            error=("ProviderError", "upstream timeout after 60 s", "draft"),
        )
    monkeypatch.setattr(counts, "SEARCH_CAP", 3)
    page = await client.get("/workflows?q=timeout")
    soup = BeautifulSoup(page.text, "html.parser")
    strip = soup.select_one("#run-counts")
    assert strip is not None
    assert strip.get_text(" ", strip=True).startswith("More than 3 runs match this search")
    position = soup.select_one(".pager .position")
    assert position is not None and position.get_text() == "4 shown of more than 3"
    monkeypatch.setattr(counts, "SEARCH_CAP", 4)
    page = await client.get("/workflows?q=timeout")
    assert _counts(page.text)["failed"] == "4"


async def test_a_time_range_until_a_moment(client: Any) -> None:
    await _seed()
    # Runs every 3 minutes back from now: 1h to 2h ago holds runs 20 to 39 (or 40).
    page = await client.get("/workflows?since=2h&until=1h")
    counts = _counts(page.text)
    direct = await client.get("/workflows?since=2h&until=1h&limit=200", headers=JSON)
    runs = direct.json()["runs"]
    assert int(counts["all"]) == len(runs) == 20
    assert all(
        FROZEN_NOW - timedelta(hours=2) <= _at(r["created_at"]) < FROZEN_NOW - timedelta(hours=1)
        for r in runs
    )
    soup = BeautifulSoup(page.text, "html.parser")
    assert soup.select_one('#filters input[name="until"]')["value"] == "1h"
    # Links keep the range.
    assert "until=1h" in soup.select_one("#run-counts a.count-failed")["href"]
    for bad, words in (
        ("until=soon", "until 'soon' is not a time"),
        ("since=1h&until=2h", "later"),
    ):
        answer = await client.get(f"/workflows?{bad}", headers=JSON)
        assert answer.status_code == 400 and words in answer.json()["error"], answer.text


def _at(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)
