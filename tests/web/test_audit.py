"""Accountability: every change is recorded with who, what, when and from where, shown on
the run's page and readable by operators as a page and as JSON."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from factories import chain_snapshot, make_run
from support import FROZEN_NOW, JSON, LiveServer

ALICE = "alice-token-5c6d7e8f9a0b1c"
VIEWER = "viewer-token-1f2e3d4c5b6a79"


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[LiveServer]:
    env = {
        "CA_OPERATOR_TOKENS": f"alice={ALICE}",
        "CA_VIEWER_TOKENS": f"carol={VIEWER}",
        "CA_SECRET": "audit-secret-" + "0123456789abcdef" * 2,
    }
    with LiveServer(database_url, extra_env=env) as live:
        yield live


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **JSON}


async def test_restart_and_cancel_are_recorded_with_who_and_from_where(
    empty_db: str, server: LiveServer
) -> None:
    original = await make_run(
        1,
        created_at=FROZEN_NOW - timedelta(minutes=1),
        status="failed",
        snapshot=chain_snapshot(5.0, nodes=2),
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        restarted = await client.post(f"/workflows/{original}/restart", headers=_as(ALICE))
        new_id = restarted.json()["run_id"]
        cancelled = await client.post(f"/workflows/{new_id}/cancel", headers=_as(ALICE))
        assert cancelled.status_code == 200
        # A viewer reads runs but not the audit trail; an operator reads both.
        assert (await client.get("/audit", headers=_as(VIEWER))).status_code == 403
        trail = (await client.get("/audit", headers=_as(ALICE))).json()["entries"]
        detail = (await client.get(f"/workflows/{new_id}", headers=_as(VIEWER))).json()
        page = await client.get(
            f"/workflows/{new_id}", headers={"Authorization": f"Bearer {ALICE}"}
        )
        audit_page = await client.get("/audit", headers={"Authorization": f"Bearer {ALICE}"})
    assert [(e["action"], e["actor"], e["role"], e["via"]) for e in trail] == [
        ("cancel", "alice", "operator", "api"),
        ("restart", "alice", "operator", "api"),
    ]
    assert trail[1]["run_id"] == original and trail[1]["new_run_id"] == new_id
    assert trail[0]["client"] == "127.0.0.1"
    assert [e["action"] for e in detail["history"]] == ["cancel", "restart"]
    assert "created by alice restarting" in page.text and "cancel by alice" in page.text
    assert audit_page.status_code == 200 and "alice" in audit_page.text
