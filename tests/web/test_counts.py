"""The filter bar's counts and the list's position, through real HTTP: exact, each a
link to its filter, and the same in the page and in its live updates."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bs4 import BeautifulSoup
from factories import make_run
from support import FROZEN_NOW

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
    return {
        a.get_text(" ", strip=True).split(" ")[0]: a.get_text(" ", strip=True).split(" ")[1]
        for a in strip.select("a")
    }


async def test_counts_per_status_total_and_position(client: Any) -> None:
    await _seed()
    page = await client.get("/workflows")
    assert _counts(page.text) == {
        "all": "124",
        "failed": "14",
        "running": "6",
        "pending": "0",
        "completed": "100",
        "cancelled": "4",
    }
    soup = BeautifulSoup(page.text, "html.parser")
    assert soup.select_one(".pager .position").get_text() == "1–50 of 124"
    # Finished runs only: 118 of them, 10 tokens and a cent each.
    assert "1,180 tokens, $1.18" in soup.select_one("#run-counts .totals").get_text(" ", strip=True)
    failed = soup.select_one("#run-counts a.count-failed")["href"]
    assert failed == "/workflows?status=failed"

    older = soup.select_one('a[data-page="next"]')["href"]
    second = BeautifulSoup((await client.get(older)).text, "html.parser")
    assert second.select_one(".pager .position").get_text() == "51–100 of 124"
    third = BeautifulSoup(
        (await client.get(second.select_one('a[data-page="next"]')["href"])).text, "html.parser"
    )
    assert third.select_one(".pager .position").get_text() == "101–124 of 124"


async def test_counts_follow_the_workflow_and_time_filters(client: Any) -> None:
    await _seed()
    paid = _counts((await client.get("/workflows?workflow=paid")).text)
    assert paid["all"] == "62" and paid["failed"] == "8"
    # The last hour: runs 1 to 19 (every 3 minutes), whatever their status filter.
    hour = await client.get("/workflows?since=1h&status=completed")
    counts = _counts(hour.text)
    assert counts["all"] == "20"
    position = BeautifulSoup(hour.text, "html.parser").select_one(".pager .position")
    assert position.get_text() == f"1–{counts['completed']} of {counts['completed']}"
