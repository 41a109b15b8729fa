"""The HTTP contract: every status code of restart and cancel in every answer format,
the JSON shapes of DESIGN.md §5, and the list's query parameters."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from bs4 import BeautifulSoup
from factories import fixed_id, make_run
from support import CELL, FROZEN_NOW, HX, JSON, hx_row, random_ids

from app.store.tables import WorkflowRun

RUN_KEYS = {
    "id",
    "workflow_name",
    "status",
    "attempt",
    "restarted_from",
    "restarted_as",
    "trigger",
    "created_at",
    "started_at",
    "completed_at",
    "duration_seconds",
    "inputs",
    "outputs",
    "error",
    "total_tokens",
    "total_cost_usd",
}


async def _failed(n: int = 1, **kw: Any) -> str:
    return await make_run(
        n,
        created_at=FROZEN_NOW - timedelta(minutes=n),
        status="failed",
        error=("MockFailure", "configured to fail", "echo"),
        **kw,
    )


# -- restart: success in three formats ------------------------------------------------


async def test_restart_json_answers_restarted_and_runs_the_new_run(client) -> None:
    original = await _failed()
    response = await client.post(f"/workflows/{original}/restart", headers=JSON)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "status",
        "message",
        "original_run_id",
        "run_id",
        "attempt",
        "restart_mode",
        "estimated_cost_usd",
    }
    assert body["restart_mode"] is None
    assert body["status"] == "restarted"
    assert body["original_run_id"] == original
    assert body["attempt"] == 2
    new = (await client.get(f"/workflows/{body['run_id']}", headers=JSON)).json()
    # The test client waits for the background task: the new run has executed.
    assert new["status"] == "completed"
    assert new["restarted_from"] == original
    assert new["trigger"] == "api"


async def test_restart_htmx_swaps_row_to_restarting_adds_new_row_and_announces(client) -> None:
    original = await _failed()
    response = await client.post(f"/workflows/{original}/restart", headers=hx_row(original))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    soup = BeautifulSoup(response.text, "html.parser")
    row = soup.find("tr", id=f"run-{original}")
    assert "is-restarting" in row["class"]
    # No row polls: the page's one live stream redraws it (tests/web/test_live.py).
    assert not soup.select("[hx-trigger]")
    new_id = random_ids(response.text)[0]
    assert row.select_one(".restarting a")["href"] == f"/workflows/{new_id}"
    partials = soup.find_all("hx-partial")
    assert [p["hx-target"] for p in partials] == ["#runs-body", "#live"]
    assert partials[0]["hx-swap"] == "afterbegin"
    assert partials[0].find("tr")["id"] == f"run-{new_id}"
    assert "restarted as" in partials[1].get_text()
    # The tab follows the new run to announce how it ends.
    assert partials[1].find("span", attrs={"data-acted-run": new_id})

    # Once the new run has ended, the original row shows the outcome.
    later = await client.get(f"/workflows/{original}/row", headers=HX)
    row = BeautifulSoup(later.text, "html.parser").find("tr")
    assert "restarted as" in row.select_one(".outcome").get_text()
    assert "completed" in row.select_one(".outcome").get_text()


async def test_restart_plain_form_post_redirects_to_the_new_run(client) -> None:
    original = await _failed()
    response = await client.post(f"/workflows/{original}/restart", follow_redirects=False)
    assert response.status_code == 303
    new_id = response.headers["location"].rsplit("/", 1)[1]
    assert new_id in random_ids(new_id)
    page = await client.get(response.headers["location"])
    assert page.status_code == 200 and "Restarted from" in page.text


# -- restart: errors in three formats ---------------------------------------------------


async def _states() -> dict[str, str]:
    pending = await make_run(2, created_at=FROZEN_NOW, status="pending")
    running = await make_run(3, created_at=FROZEN_NOW, status="running")
    parent = await _failed(4)
    await make_run(5, created_at=FROZEN_NOW, status="running", restarted_from=parent, attempt=2)
    no_snapshot = await _failed(6, snapshot=None)
    return {
        "pending": pending,
        "running": running,
        "restarting": parent,
        "no_snapshot": no_snapshot,
    }


CASES = [
    ("unknown", 404, "run_not_found"),
    ("malformed", 404, "run_not_found"),
    ("pending", 400, "invalid_state"),
    ("running", 400, "invalid_state"),
    ("restarting", 400, "already_restarted"),
    ("no_snapshot", 500, "snapshot_unusable"),
]


def _target(states: dict[str, str], case: str) -> str:
    return {"unknown": fixed_id(999), "malformed": "not-a-run-id%27%3E"}.get(case) or states[case]


@pytest.mark.parametrize(("case", "status", "code"), CASES)
async def test_restart_errors_as_json(client, case: str, status: int, code: str) -> None:
    states = await _states()
    before = await WorkflowRun.count()
    response = await client.post(f"/workflows/{_target(states, case)}/restart", headers=JSON)
    assert response.status_code == status
    assert response.json()["code"] == code
    if case == "restarting":
        # The answer names the restart, so a client can restart the latest attempt.
        assert response.json() == {
            "error": response.json()["error"],
            "code": "already_restarted",
            "restarted_as": fixed_id(5),
            "latest_attempt": fixed_id(5),
        }
    else:
        assert set(response.json()) == {"error", "code"}
    assert await WorkflowRun.count() == before


@pytest.mark.parametrize(("case", "status", "code"), CASES)
async def test_restart_errors_as_row_fragment(client, case: str, status: int, code: str) -> None:
    states = await _states()
    run_id = _target(states, case)
    response = await client.post(f"/workflows/{run_id}/restart", headers=hx_row(unquote(run_id)))
    assert response.status_code == status
    soup = BeautifulSoup(response.text, "html.parser")
    rows = soup.find_all("tr")
    assert len(rows) == 1, "htmx 4 swaps error answers into the row: it must be one <tr>"
    assert rows[0].select_one(".row-error[role=alert]").get_text(strip=True)
    if case in ("pending", "running", "restarting", "no_snapshot"):
        # The row keeps its content and actions: it stays usable.
        assert rows[0]["id"] == f"run-{run_id}"
        assert rows[0].select_one(f"{CELL['id']} a")["href"] == f"/workflows/{run_id}"


@pytest.mark.parametrize(("case", "status", "code"), CASES)
async def test_restart_errors_as_html_page(client, case: str, status: int, code: str) -> None:
    states = await _states()
    response = await client.post(f"/workflows/{_target(states, case)}/restart")
    assert response.status_code == status
    soup = BeautifulSoup(response.text, "html.parser")
    assert soup.html["lang"] == "en"
    assert soup.select_one("[role=alert]").get_text(strip=True)


async def test_restart_error_outside_a_row_goes_to_the_alert_region(client) -> None:
    running = await make_run(3, created_at=FROZEN_NOW, status="running")
    response = await client.post(f"/workflows/{running}/restart", headers=HX)
    assert response.status_code == 400
    assert response.headers["hx-retarget"] == "#alerts"
    assert response.headers["hx-reswap"] == "afterbegin"
    assert "only a finished run can be restarted" in response.text


async def test_scheduling_failure_is_500_and_leaves_no_run(empty_db: str, clock) -> None:
    from litestar.testing import AsyncTestClient
    from support import app_settings

    from app.web.app import create_app

    class Broken:
        def __init__(self, service: object) -> None:
            pass

        async def schedule(self, run_id: str) -> None:
            raise ConnectionError("queue unreachable")

    app = create_app(
        app_settings(empty_db), clock=clock, migrate=False, pool=False, scheduler=Broken
    )
    original = await _failed()
    async with AsyncTestClient(app=app) as c:
        response = await c.post(f"/workflows/{original}/restart", headers=JSON)
        assert response.status_code == 500
        assert response.json()["code"] == "scheduling_failed"
        assert "queue unreachable" in response.json()["error"]
        row = await c.post(f"/workflows/{original}/restart", headers=hx_row(original))
        assert row.status_code == 500 and "row-error" in row.text
    assert await WorkflowRun.count() == 1


# -- cancel --------------------------------------------------------------------------------


async def test_cancel_in_three_formats_and_its_errors(client) -> None:
    a = await make_run(1, created_at=FROZEN_NOW, status="running")
    b = await make_run(2, created_at=FROZEN_NOW, status="pending")
    c = await make_run(3, created_at=FROZEN_NOW, status="running")
    done = await make_run(4, created_at=FROZEN_NOW, status="completed")

    r = await client.post(f"/workflows/{a}/cancel", headers=JSON)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await client.post(f"/workflows/{b}/cancel", headers=hx_row(b))
    assert r.status_code == 200
    row = BeautifulSoup(r.text, "html.parser").find("tr")
    assert row["data-status"] == "cancelled"
    r = await client.post(f"/workflows/{c}/cancel", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/workflows/{c}"

    r = await client.post(f"/workflows/{done}/cancel", headers=JSON)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_state")
    r = await client.post("/workflows/nope/cancel", headers=JSON)
    assert (r.status_code, r.json()["code"]) == (404, "run_not_found")


# -- reading ---------------------------------------------------------------------------------


async def test_list_json_shape_filters_and_alias(client) -> None:
    failed = await _failed(1)
    await make_run(2, created_at=FROZEN_NOW, status="completed", workflow_name="other")
    body = (await client.get("/workflows", headers=JSON)).json()
    assert set(body) >= {"runs", "next_cursor"}
    assert body["next_cursor"] is None
    assert set(body["runs"][0]) >= RUN_KEYS
    assert body["runs"][1]["error"] == {
        "type": "MockFailure",
        "message": "configured to fail",
        "node": "echo",
    }
    assert body["runs"][1]["inputs"] == {"message": "hello 1"}
    for params in ({"status": "failed"}, {"status_filter": "failed"}):
        runs = (await client.get("/workflows", params=params, headers=JSON)).json()["runs"]
        assert [r["id"] for r in runs] == [failed]
    runs = (await client.get("/workflows", params={"workflow": "other"}, headers=JSON)).json()
    assert [r["workflow_name"] for r in runs["runs"]] == ["other"]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "bogus"},
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "x"},
        {"cursor": "garbage"},
        {"q": "<>!?"},
    ],
)
async def test_bad_list_parameters_are_400_with_a_clear_message(client, params) -> None:
    r = await client.get("/workflows", params=params, headers=JSON)
    assert r.status_code == 400
    name = next(iter(params))
    assert ("Search looks for" if name == "q" else name) in r.json()["error"]


async def test_paging_by_cursor_through_the_api(client) -> None:
    for n in range(1, 8):
        await make_run(n, created_at=FROZEN_NOW - timedelta(seconds=n))
    seen, cursor = [], None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/workflows", params=params, headers=JSON)).json()
        seen += [r["id"] for r in body["runs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [fixed_id(n) for n in range(1, 8)]


async def test_detail_json_has_steps_and_snapshot(client) -> None:
    run_id = await make_run(1, created_at=FROZEN_NOW, status="completed", steps=2)
    body = (await client.get(f"/workflows/{run_id}", headers=JSON)).json()
    assert RUN_KEYS | {"steps", "config_snapshot"} <= set(body)
    assert [s["node_id"] for s in body["steps"]] == ["step_1", "step_2"]
    assert set(body["steps"][0]) >= {
        "node_id",
        "status",
        "started_at",
        "completed_at",
        "duration_ms",
        "output",
        "error",
    }
    assert body["config_snapshot"]["flow"]["name"] == "echo"
    assert body["duration_seconds"] == pytest.approx(1.48)


@pytest.mark.parametrize(
    "path", ["/workflows/nope", "/workflows/nope/row", f"/workflows/{fixed_id(9)}"]
)
async def test_unknown_or_malformed_run_is_404_never_500(client, path: str) -> None:
    assert (await client.get(path, headers=JSON)).status_code == 404
    page = await client.get(path)
    assert page.status_code == 404 and "Run not found" in page.text


async def test_root_redirects_and_openapi_documents_the_json(client) -> None:
    r = await client.get("/", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (302, "/workflows")
    schema = (await client.get("/schema/openapi.json")).json()
    for path in (
        "/workflows",
        "/workflows/{run_id}",
        "/workflows/{run_id}/restart",
        "/workflows/{run_id}/cancel",
        "/workflows/{run_id}/row",
        "/workflows/table",
    ):
        assert path in schema["paths"], path
    restart = schema["paths"]["/workflows/{run_id}/restart"]["post"]["responses"]
    assert set(restart) == {"200", "400", "404", "500"}
    assert restart["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Restarted")
    assert restart["500"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


async def test_documented_shapes_match_what_is_sent(client) -> None:
    from typing import get_type_hints

    from app.web import schemas

    run_id = await make_run(1, created_at=FROZEN_NOW, status="failed", steps=1)
    detail = (await client.get(f"/workflows/{run_id}", headers=JSON)).json()
    # NotRequired: an edited restart's diff, the attempts of a run that has a lineage.
    assert set(detail) == set(get_type_hints(schemas.RunDetail)) - {"inputs_diff", "attempts"}
    assert set(detail["steps"][0]) == set(get_type_hints(schemas.Step))
    listed = (await client.get("/workflows", headers=JSON)).json()
    assert set(listed) == set(get_type_hints(schemas.RunList))
    assert set(listed["runs"][0]) == set(get_type_hints(schemas.Run))
    restarted = (await client.post(f"/workflows/{run_id}/restart", headers=JSON)).json()
    chained = (await client.get(f"/workflows/{run_id}", headers=JSON)).json()
    assert set(chained) - set(detail) == {"attempts"}
    # NotRequired is not told apart under postponed annotations: named here.
    optional = {"inputs_diff", "resume_from", "reused_nodes", "reused_cost_usd"}
    required = set(get_type_hints(schemas.Restarted)) - optional
    assert set(restarted) == required
    other = await make_run(2, created_at=FROZEN_NOW, status="failed", steps=1)
    resumed = await client.post(
        f"/workflows/{other}/restart", json={"from": "failure"}, headers=JSON
    )
    assert set(resumed.json()) - required == optional - {"inputs_diff"}
    third = await make_run(3, created_at=FROZEN_NOW, status="failed")
    edited = await client.post(
        f"/workflows/{third}/restart", json={"inputs": {"message": "changed"}}, headers=JSON
    )
    assert set(edited.json()) - required == {"inputs_diff"}


# -- protection ------------------------------------------------------------------------------


async def test_security_headers_and_compression(client) -> None:
    await _failed()
    r = await client.get("/workflows", headers={"Accept-Encoding": "gzip"})
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["content-encoding"] == "gzip"
    # Brotli where the browser offers it, at the level bench/compression.py chose.
    br = await client.get("/workflows", headers={"Accept-Encoding": "gzip, deflate, br, zstd"})
    assert br.headers["content-encoding"] == "br"
    assert br.text == r.text
    assert int(br.headers["content-length"]) < int(r.headers["content-length"])


async def test_each_answer_says_how_long_the_app_took(client) -> None:
    """`Server-Timing: app;dur=<ms>`: what the app itself spent, for the browser's
    developer tools and the benchmark, apart from the network's share."""
    await _failed()
    for path in ("/workflows", "/workflows/table", "/static/app.js", "/workflows/nope"):
        timing = (await client.get(path)).headers["server-timing"]
        match = re.fullmatch(r"app;dur=(\d+\.\d\d)", timing)
        assert match and 0 < float(match.group(1)) < 10_000, (path, timing)


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}],
)
async def test_cross_site_state_change_is_refused_and_changes_nothing(client, headers) -> None:
    original = await _failed()
    r = await client.post(f"/workflows/{original}/restart", headers={**headers, **JSON})
    assert r.status_code == 403
    assert await WorkflowRun.count() == 1


async def test_same_origin_browser_post_is_accepted(client) -> None:
    original = await _failed()
    headers = {"Origin": "http://testserver.local", "Sec-Fetch-Site": "same-origin", **JSON}
    r = await client.post(f"/workflows/{original}/restart", headers=headers)
    assert r.status_code == 200
