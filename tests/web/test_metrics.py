"""GET /metrics (Prometheus' text format) through real HTTP, who may read it, and the
JSON logs: a run's state changes and each request as one JSON object per line."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from factories import ECHO_SNAPSHOT, make_run
from litestar.testing import AsyncTestClient
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from support import BACKEND, FROZEN_NOW, JSON, OPERATOR, VIEWER, app_settings

from app.logs import JsonFormatter
from app.store.tables import WorkflowRun
from app.web.app import create_app
from app.workflows.loader import workflow_from_snapshot

SCRAPER = "metrics-token-0123456789abc"
PAID_SNAPSHOT = {
    **ECHO_SNAPSHOT,
    "flow": {"name": "paid_echo"},
    "config": {"llm": {"provider": "mock", "model": "echo", "cost_per_call_usd": 0.25}},
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) → value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def secured(empty_db: str, clock: Any) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = dataclasses.replace(
        app_settings(empty_db),
        operator_tokens=(OPERATOR,),
        viewer_tokens=(VIEWER,),
        metrics_token=SCRAPER,
    )
    app = create_app(settings, clock=clock, migrate=False, pool=False)
    async with AsyncTestClient(app=app) as client:
        yield client


@pytest.fixture
async def json_logged(empty_db: str, clock: Any) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = dataclasses.replace(app_settings(empty_db), log_format="json")
    app = create_app(settings, clock=clock, migrate=False, pool=False)
    async with AsyncTestClient(app=app) as client:
        yield client


async def test_metrics_families_and_runs_by_status_match_the_database(client: Any) -> None:
    for n, (status, workflow) in enumerate(
        [("completed", "echo")] * 3
        + [("failed", "echo"), ("running", "echo"), ("pending", "other"), ("cancelled", "other")],
        start=1,
    ):
        await make_run(
            n, created_at=FROZEN_NOW - timedelta(minutes=n), status=status, workflow_name=workflow
        )
    # And one through the service, as a run is created for real.
    runs = client.app.state.runs
    await runs.create_run(workflow_from_snapshot(ECHO_SNAPSHOT), {"message": "hi"})

    page = await client.get("/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"] == CONTENT_TYPE_LATEST
    families = {f.name for f in text_string_to_metric_families(page.text)}
    assert {
        "ca_runs",
        "ca_restarts",
        "ca_run_duration_seconds",
        "ca_node_duration_seconds",
        "ca_tokens",
        "ca_cost_usd",
    } <= families
    assert not families & {"ca_queue_depth", "ca_queue_oldest_wait_seconds"}  # embedded mode

    rows = await WorkflowRun.select(WorkflowRun.workflow_name, WorkflowRun.status)
    in_db = Counter((r["workflow_name"], r["status"]) for r in rows)
    reported = {
        (dict(labels)["workflow"], dict(labels)["status"]): v
        for (name, labels), v in samples(page.text).items()
        if name == "ca_runs" and v
    }
    assert reported == in_db
    assert reported[("echo", "pending")] == 1
    # Every status of a workflow is reported, 0 too, so that alerts see it drop to 0.
    assert value(page.text, "ca_runs", workflow="other", status="running") == 0.0
    assert ("ca_runs", (("status", "running"), ("workflow", "other"))) in samples(page.text)


async def test_restarts_are_counted_by_kind_and_outcome(client: Any) -> None:
    failed = [
        await make_run(
            n, created_at=FROZEN_NOW - timedelta(minutes=n), status="failed", cost_usd=1.0
        )
        for n in (1, 2, 3)
    ]
    first = await client.post(f"/workflows/{failed[0]}/restart", headers=JSON)
    assert first.status_code == 200, first.text
    again = await client.post(f"/workflows/{failed[0]}/restart", headers=JSON)
    assert again.json()["code"] == "already_restarted"
    over_cap = await client.post(
        "/workflows/restart", json={"ids": failed[1:], "max_cost_usd": 0.5}, headers=JSON
    )
    assert over_cap.json()["code"] == "over_spend_cap"
    bulk = await client.post("/workflows/restart", json={"ids": failed[1:]}, headers=JSON)
    assert bulk.json()["restarted"] == 2

    text = (await client.get("/metrics")).text
    assert value(text, "ca_restarts_total", kind="single", outcome="created") == 1
    assert value(text, "ca_restarts_total", kind="single", outcome="refused") == 1
    assert value(text, "ca_restarts_total", kind="bulk", outcome="refused") == 1
    assert value(text, "ca_restarts_total", kind="bulk", outcome="created") == 1
    assert value(text, "ca_restarts_total", kind="single", outcome="failed_to_schedule") == 0


async def test_tokens_cost_and_durations_after_a_mock_run(client: Any) -> None:
    runs = client.app.state.runs
    detail = await runs.run_workflow(workflow_from_snapshot(PAID_SNAPSHOT), {"message": "a b c"})
    assert detail.summary.status == "completed"
    assert detail.summary.total_tokens > 0

    text = (await client.get("/metrics")).text
    assert value(text, "ca_tokens_total", workflow="paid_echo") == detail.summary.total_tokens
    assert value(text, "ca_cost_usd_total", workflow="paid_echo") == pytest.approx(0.25)
    run_count = ("ca_run_duration_seconds_count", {"workflow": "paid_echo", "status": "completed"})
    assert value(text, run_count[0], **run_count[1]) == 1
    node = {"workflow": "paid_echo", "node": "echo", "status": "completed"}
    assert value(text, "ca_node_duration_seconds_count", **node) == 1


async def test_metrics_need_a_reader_or_the_metrics_token(secured: Any) -> None:
    anonymous = await secured.get("/metrics", follow_redirects=False)
    # A plain 401 for a scraper, not the sign-in page a browser gets.
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert (await secured.get("/metrics", headers=bearer(VIEWER))).status_code == 200
    assert (await secured.get("/metrics", headers=bearer(OPERATOR))).status_code == 200
    scraped = await secured.get("/metrics", headers=bearer(SCRAPER))
    assert scraped.status_code == 200 and "ca_runs" in scraped.text
    wrong = await secured.get("/metrics", headers=bearer("not-the-metrics-token-at-all"))
    assert wrong.status_code == 401

    # The metrics token opens /metrics and nothing else.
    run_id = await make_run(1, created_at=FROZEN_NOW, status="failed")
    for method, path in [
        ("GET", "/workflows"),
        ("GET", f"/workflows/{run_id}"),
        ("GET", "/schema/openapi.json"),
        ("POST", f"/workflows/{run_id}/restart"),
    ]:
        answer = await secured.request(method, path, headers={**bearer(SCRAPER), **JSON})
        assert answer.status_code == 401, (method, path)
    assert await WorkflowRun.count() == 1

    schema = await secured.get("/schema/openapi.json", headers={**bearer(VIEWER), **JSON})
    assert schema.status_code == 200 and "/metrics" not in schema.json()["paths"]


async def test_json_logs_carry_run_state_changes_and_requests(
    json_logged: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="configurable_agents")
    failed = await make_run(
        1, created_at=FROZEN_NOW, status="failed", error=("ProviderError", "boom", "echo")
    )
    answer = await json_logged.post(f"/workflows/{failed}/restart", headers=JSON)
    assert answer.status_code == 200, answer.text
    new_id = answer.json()["run_id"]
    assert (await json_logged.get(f"/workflows/{new_id}", headers=JSON)).json()[
        "status"
    ] == "completed"

    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert all("\n" not in line for line in lines)
    entries = [json.loads(line) for line in lines]

    changes = [
        (e["from_status"], e["to_status"], e["workflow"], e["attempt"])
        for e in entries
        if e.get("event") == "run_state" and e["run_id"] == new_id
    ]
    assert changes == [
        (None, "pending", "echo", 2),
        ("pending", "running", "echo", 2),
        ("running", "completed", "echo", 2),
    ]
    restart = [
        e
        for e in entries
        if e.get("event") == "request" and e["path"] == f"/workflows/{failed}/restart"
    ]
    assert len(restart) == 1
    assert restart[0]["method"] == "POST" and restart[0]["status"] == 200
    assert restart[0]["actor"] == "local" and restart[0]["duration_ms"] >= 0
    assert {"time", "level", "logger", "message"} <= restart[0].keys()


async def test_a_failed_run_logs_its_error_type(
    json_logged: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="configurable_agents")
    failing = {**ECHO_SNAPSHOT, "config": {"llm": {"provider": "mock", "fail_on_attempt": [1]}}}
    runs = json_logged.app.state.runs
    detail = await runs.run_workflow(workflow_from_snapshot(failing), {"message": "x"})
    assert detail.summary.status == "failed"
    ended = [r for r in caplog.records if getattr(r, "to_status", None) == "failed"]
    assert len(ended) == 1
    entry = json.loads(JsonFormatter().format(ended[0]))
    assert entry["error_type"] == detail.summary.error_type and entry["from_status"] == "running"
    text = (await json_logged.get("/metrics")).text
    assert value(text, "ca_run_duration_seconds_count", workflow="echo", status="failed") == 1


@pytest.mark.skipif(BACKEND != "postgres", reason="the queue mode needs PostgreSQL")
async def test_queue_depth_and_oldest_wait_in_the_queue_mode(empty_db: str, clock: Any) -> None:
    settings = dataclasses.replace(app_settings(empty_db), execution="queue")
    app = create_app(settings, clock=clock, migrate=False, pool=False)
    failed = await make_run(1, created_at=FROZEN_NOW, status="failed", owner=None)
    async with AsyncTestClient(app=app) as client:
        answer = await client.post(f"/workflows/{failed}/restart", headers=JSON)
        assert answer.status_code == 200, answer.text
        new_id = answer.json()["run_id"]
        try:
            text = (await client.get("/metrics")).text
            waiting = await WorkflowRun.raw(
                "SELECT count(*) AS n FROM procrastinate_jobs"
                " WHERE status = 'todo' AND queue_name = 'runs'"
            )
            assert value(text, "ca_queue_depth") == waiting[0]["n"] >= 1
            assert value(text, "ca_queue_oldest_wait_seconds") >= 0
            assert ("ca_queue_oldest_wait_seconds", ()) in samples(text)
        finally:
            await WorkflowRun.raw("DELETE FROM procrastinate_jobs WHERE queueing_lock = {}", new_id)


def test_settings_refuse_a_weak_metrics_token_and_an_unknown_log_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.settings import Settings

    monkeypatch.setenv("CA_METRICS_TOKEN", "short")
    with pytest.raises(ValueError, match="CA_METRICS_TOKEN"):
        Settings.from_env()
    monkeypatch.setenv("CA_METRICS_TOKEN", SCRAPER)
    monkeypatch.setenv("CA_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="CA_LOG_FORMAT"):
        Settings.from_env()
    monkeypatch.setenv("CA_LOG_FORMAT", "JSON")
    settings = Settings.from_env()
    assert (settings.metrics_token, settings.log_format) == (SCRAPER, "json")


def test_a_json_line_holds_a_multiline_message_and_its_exception() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("configurable_agents.test").makeRecord(
            "configurable_agents.test",
            logging.ERROR,
            __file__,
            1,
            "two\nlines \u2028 here",
            (),
            sys.exc_info(),
            extra={"run_id": "r1"},
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line and "\u2028" not in line
    entry = json.loads(line)
    assert entry["message"] == "two\nlines \u2028 here" and entry["run_id"] == "r1"
    assert entry["level"] == "error" and "RuntimeError: boom" in entry["exception"]
