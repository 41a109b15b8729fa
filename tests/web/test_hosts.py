"""DNS rebinding: a page on an attacker's name that resolves to our loopback address
sends requests whose Host (and Origin) is the attacker's name. Only the dashboard's own
host names are answered, through real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from factories import make_run
from support import FROZEN_NOW, JSON, LiveServer

from app.store.tables import WorkflowRun

EVIL = "rebind.evil.example"


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[LiveServer]:
    with LiveServer(database_url) as live:
        yield live


async def test_a_foreign_host_gets_400_and_changes_nothing(
    empty_db: str, server: LiveServer
) -> None:
    original = await make_run(1, created_at=FROZEN_NOW - timedelta(minutes=1), status="failed")
    port = server.url.rsplit(":", 1)[1]
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for host in (EVIL, f"{EVIL}:{port}", f"127.0.0.1.{EVIL}:{port}"):
            forged = {"Host": host, "Origin": f"http://{host}", **JSON}
            restart = await client.post(f"/workflows/{original}/restart", headers=forged)
            assert restart.status_code == 400, host
            listing = await client.get("/workflows", headers=forged)
            assert listing.status_code == 400, host
            assert original not in listing.text
        # Our own name still works, and a cross-site POST to it is still refused.
        ours = await client.get("/workflows", headers=JSON)
        assert ours.status_code == 200 and ours.json()["runs"][0]["id"] == original
        cross = await client.post(
            f"/workflows/{original}/restart",
            headers={"Origin": f"http://{EVIL}", "Sec-Fetch-Site": "cross-site", **JSON},
        )
        assert cross.status_code == 403
    assert await WorkflowRun.count() == 1
