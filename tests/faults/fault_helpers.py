"""Helpers shared by the fault tests (a killed server, killed database connections, many
SQLite writers, a provider that never answers)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def slow_snapshot(delay_seconds: float) -> dict[str, Any]:
    """examples/slow.yaml as a stored snapshot, each node taking `delay_seconds`."""
    from app.workflows.loader import load_workflow

    snapshot = load_workflow(EXAMPLES / "slow.yaml").snapshot()
    snapshot["config"]["llm"]["delay_seconds"] = delay_seconds
    return snapshot


def get_json(client: httpx.Client, path: str) -> dict[str, Any]:
    response = client.get(path, headers={"Accept": "application/json"})
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return response.json()


def wait_until(
    check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Call `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
