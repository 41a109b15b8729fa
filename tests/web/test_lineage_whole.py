"""The whole chain on the run page and in its JSON: root to latest attempt, each with its
status and cost, wherever in the chain the page is opened."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bs4 import BeautifulSoup
from factories import fixed_id, make_run
from support import FROZEN_NOW, JSON


async def test_every_attempt_from_the_original_to_the_latest(client: Any) -> None:
    await make_run(1, created_at=FROZEN_NOW - timedelta(hours=3), status="failed", cost_usd=0.5)
    await make_run(
        2,
        created_at=FROZEN_NOW - timedelta(hours=2),
        status="failed",
        restarted_from=fixed_id(1),
        attempt=2,
        cost_usd=0.25,
    )
    await make_run(
        3,
        created_at=FROZEN_NOW - timedelta(hours=1),
        status="completed",
        restarted_from=fixed_id(2),
        attempt=3,
        tokens=90,
    )
    await make_run(4, created_at=FROZEN_NOW, status="completed")  # no chain

    for opened in (1, 2, 3):
        page = BeautifulSoup(
            (await client.get(f"/workflows/{fixed_id(opened)}")).text, "html.parser"
        )
        rows = page.select("table.attempts tbody tr")
        cells = [[td.get_text(" ", strip=True) for td in row.find_all("td")] for row in rows]
        assert [c[0] for c in cells] == ["1 of 3", "2 of 3", "3 of 3"]
        assert [c[2] for c in cells] == ["failed", "failed", "completed"]
        assert [c[5] for c in cells] == ["$0.5000", "$0.2500", "$0.0000"]
        assert "current" in rows[opened - 1]["class"]
        assert rows[opened - 1].select_one('[aria-current="page"]') is not None

    body = (await client.get(f"/workflows/{fixed_id(2)}", headers=JSON)).json()
    assert [a["id"] for a in body["attempts"]] == [fixed_id(1), fixed_id(2), fixed_id(3)]
    assert body["attempts"][2]["total_tokens"] == 90
    alone = await client.get(f"/workflows/{fixed_id(4)}")
    assert 'table class="attempts"' not in alone.text
    assert "attempts" not in (await client.get(f"/workflows/{fixed_id(4)}", headers=JSON)).json()
