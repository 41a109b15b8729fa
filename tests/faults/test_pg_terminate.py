"""PostgreSQL connections of a serving dashboard killed with pg_terminate_backend while
clients keep requesting pages: after a short recovery window there is no 5xx at all."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import httpx
import pytest
from factories import fixed_id, make_run
from support import BACKEND, FROZEN_NOW, HX, JSON, LiveServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BACKEND != "postgres", reason="pg_terminate_backend is PostgreSQL's"),
]

RUNS = 30
CLIENTS = 6
KILLS_AT = (2.0, 4.0)  # seconds into the run
RECOVERY = 2.0  # seconds after the last kill before any 5xx counts
DURATION = 8.0
TERMINATE = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@dataclass
class Sample:
    kind: str
    started: float
    ended: float
    status: int  # 0: the request itself failed (connection refused, timeout)


async def _client_loop(client: httpx.AsyncClient, n: int, t0: float, out: list[Sample]) -> None:
    requests = [
        ("list-json", "/workflows", JSON),
        ("list-html", "/workflows", {}),
        ("table-htmx", "/workflows/table?status=failed", HX),
        ("detail-json", f"/workflows/{fixed_id(1 + n % RUNS)}", JSON),
        ("detail-html", f"/workflows/{fixed_id(1 + (n + 7) % RUNS)}", {}),
        ("row-htmx", f"/workflows/{fixed_id(1 + (n + 13) % RUNS)}/row", HX),
    ]
    i = n
    while time.monotonic() - t0 < DURATION:
        kind, path, headers = requests[i % len(requests)]
        i += 1
        started = time.monotonic() - t0
        try:
            status = (await client.get(path, headers=headers)).status_code
        except httpx.HTTPError:
            status = 0
        out.append(Sample(kind, started, time.monotonic() - t0, status))


async def test_server_recovers_from_killed_connections(empty_db: str) -> None:
    for n in range(1, RUNS + 1):
        await make_run(
            n,
            created_at=FROZEN_NOW - timedelta(minutes=n),
            status="failed" if n % 2 else "completed",
            error=("ProviderError", "upstream down", "echo") if n % 2 else None,
            steps=1,
        )
    samples: list[Sample] = []
    killed: list[int] = []
    with LiveServer(empty_db) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            t0 = time.monotonic()

            async def killer() -> None:
                for at in KILLS_AT:
                    await asyncio.sleep(max(0.0, at - (time.monotonic() - t0)))
                    conn = await asyncpg.connect(empty_db)
                    try:
                        killed.append(len(await conn.fetch(TERMINATE)))
                    finally:
                        await conn.close()

            await asyncio.gather(
                killer(), *(_client_loop(client, n, t0, samples) for n in range(CLIENTS))
            )
        assert server.proc.poll() is None, "the server died"

    after_from = KILLS_AT[-1] + RECOVERY
    phases = {
        "before the first kill": [s for s in samples if s.ended < KILLS_AT[0]],
        "kills + recovery window": [
            s for s in samples if s.ended >= KILLS_AT[0] and s.started < after_from
        ],
        "after recovery": [s for s in samples if s.started >= after_from],
    }
    print(f"\nterminated backends per kill: {killed}")
    for phase, chunk in phases.items():
        statuses = Counter(s.status for s in chunk)
        print(f"{phase:>25}: {len(chunk):5d} requests, statuses {dict(sorted(statuses.items()))}")
    assert sum(killed) >= 1, "no server connection was terminated: the fault was not injected"
    assert len(phases["after recovery"]) >= 20
    bad_before = [s for s in phases["before the first kill"] if s.status != 200]
    assert not bad_before, bad_before[:5]
    bad_after = [s for s in phases["after recovery"] if s.status != 200]
    assert not bad_after, (
        f"{len(bad_after)} of {len(phases['after recovery'])} requests failed after recovery, "
        f"e.g. {bad_after[:5]}"
    )
