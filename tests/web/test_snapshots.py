"""HTML snapshots of pages and partials in named states (tests/__snapshots__/*.html).

Deterministic: a frozen clock, fixed run ids, and no random ids in what is stored.
Update with `make snapshots` and read the diff before committing.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import make_run
from support import FROZEN_NOW, HX, hx_row

AGO = {n: FROZEN_NOW - timedelta(minutes=n) for n in range(1, 200)}


async def _row(client, run_id: str) -> str:
    response = await client.get(f"/workflows/{run_id}/row", headers=HX)
    assert response.status_code == 200
    return response.text


async def test_list_page_empty(client, snapshot_html) -> None:
    response = await client.get("/workflows")
    assert response.status_code == 200
    assert response.text == snapshot_html


async def test_list_page_with_runs(client, snapshot_html) -> None:
    await make_run(1, created_at=AGO[1], status="running", steps=1, steps_total=3)
    await make_run(2, created_at=AGO[2], status="completed", steps=1)
    await make_run(
        3,
        created_at=AGO[3],
        status="failed",
        error=("MockFailure", "node 'echo' (provider mock): configured to fail", "echo"),
    )
    await make_run(4, created_at=AGO[4], status="cancelled", workflow_name="slow_pipeline")
    response = await client.get("/workflows")
    assert response.status_code == 200
    assert response.text == snapshot_html


@pytest.mark.parametrize("status", ["pending", "running", "completed", "failed", "cancelled"])
async def test_row_in_each_status(client, snapshot_html, status: str) -> None:
    error = ("MockFailure", "configured to fail", "echo") if status == "failed" else None
    run_id = await make_run(
        1,
        created_at=AGO[5],
        status=status,
        error=error,
        steps=1 if status == "running" else 0,
        steps_total=2,
    )
    assert await _row(client, run_id) == snapshot_html


async def test_row_restarting(client, snapshot_html) -> None:
    parent = await make_run(
        1, created_at=AGO[5], status="failed", error=("MockFailure", "configured to fail", "echo")
    )
    await make_run(
        2,
        created_at=AGO[1],
        status="running",
        attempt=2,
        restarted_from=parent,
        steps=0,
        steps_total=1,
    )
    assert await _row(client, parent) == snapshot_html


async def test_row_after_restart_shows_outcome(client, snapshot_html) -> None:
    parent = await make_run(
        1, created_at=AGO[5], status="failed", error=("MockFailure", "configured to fail", "echo")
    )
    await make_run(2, created_at=AGO[1], status="completed", attempt=2, restarted_from=parent)
    assert await _row(client, parent) == snapshot_html


@pytest.mark.parametrize("case", ["running", "already_restarting", "missing_snapshot"])
async def test_row_error_fragment(client, snapshot_html, case: str) -> None:
    if case == "running":
        run_id = await make_run(1, created_at=AGO[5], status="running")
    elif case == "already_restarting":
        run_id = await make_run(1, created_at=AGO[5], status="failed")
        await make_run(2, created_at=AGO[1], status="pending", restarted_from=run_id, attempt=2)
    else:
        run_id = await make_run(1, created_at=AGO[5], status="failed", snapshot=None)
    response = await client.post(f"/workflows/{run_id}/restart", headers=hx_row(run_id))
    assert response.status_code in (400, 500)
    assert response.text == snapshot_html


async def test_row_error_fragment_for_unknown_run(client, snapshot_html) -> None:
    run_id = "00000000-0000-0000-0000-00000000dead"
    response = await client.post(f"/workflows/{run_id}/restart", headers=hx_row(run_id))
    assert response.status_code == 404
    assert response.text == snapshot_html


async def test_alert_fragment_and_error_page(client, snapshot_html) -> None:
    response = await client.post("/workflows/nope/cancel", headers=HX)
    assert response.status_code == 404
    assert response.text == snapshot_html(name="alert")
    page = await client.get("/workflows/nope")
    assert page.status_code == 404
    assert page.text == snapshot_html(name="page")


async def test_detail_page(client, snapshot_html) -> None:
    parent = await make_run(
        1, created_at=AGO[9], status="failed", error=("MockFailure", "configured to fail", "echo")
    )
    run_id = await make_run(
        2,
        created_at=AGO[8],
        status="completed",
        attempt=2,
        restarted_from=parent,
        steps=3,
        steps_total=3,
    )
    await make_run(3, created_at=AGO[2], status="cancelled", attempt=3, restarted_from=run_id)
    response = await client.get(f"/workflows/{run_id}")
    assert response.status_code == 200
    assert response.text == snapshot_html


async def test_detail_page_of_failed_run(client, snapshot_html) -> None:
    run_id = await make_run(
        1,
        created_at=AGO[3],
        status="failed",
        steps=1,
        error=(
            "Timeout",
            "node 'echo' (provider openai): no answer within 5 s (config.execution.timeout)",
            "echo",
        ),
    )
    response = await client.get(f"/workflows/{run_id}")
    assert response.text == snapshot_html
