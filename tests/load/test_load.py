"""A bounded load test on loopback: 20 concurrent clients mix list pages, details, row
polls and restarts over 200 failed runs, for CA_LOAD_SECONDS (default 60).

Expected: no unexpected status (no 5xx at all; a restart answers 200 or 400), never more
than one active restart of a run (watched in the database while the load runs), and at
the end every run terminal: nothing stuck in pending or running."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from factories import ECHO_SNAPSHOT, fixed_id, make_run
from support import HX, JSON, LiveServer, hx_row

from app.store.tables import WorkflowRun

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("CA_LOAD_SECONDS", "60"))
CLIENTS = 20
RUNS = 200
# A restart takes ~0.3 s (three mock nodes of 0.1 s), so the same run is often restarted
# again while its restart is still active: the 400 path is exercised, not only the 200.
NODE_SECONDS = 0.1
SETTLE_SECONDS = 30

# kind: (weight, statuses that are expected)
KINDS = {
    "list-json": (3, {200}),
    "list-html": (1, {200}),
    "table-htmx": (2, {200}),
    "detail-json": (2, {200}),
    "detail-html": (1, {200}),
    "row-poll": (6, {200}),
    "restart-json": (2, {200, 400}),
    "restart-htmx": (1, {200, 400}),
}


def _snapshot() -> dict:
    snapshot = {
        **ECHO_SNAPSHOT,
        "nodes": [
            {"id": f"n{i}", "prompt": "Repeat: {state.message}", "outputs": ["reply"]}
            for i in range(3)
        ],
        "edges": [
            {"from": "START", "to": "n0"},
            {"from": "n0", "to": "n1"},
            {"from": "n1", "to": "n2"},
            {"from": "n2", "to": "END"},
        ],
    }
    snapshot["config"] = {"llm": {"provider": "mock", "model": "m", "delay_seconds": NODE_SECONDS}}
    return snapshot


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    created: set[str] = field(default_factory=set)


def _request(kind: str, rng: random.Random) -> tuple[str, str, dict[str, str]]:
    run_id = fixed_id(rng.randrange(1, RUNS + 1))
    cursor_status = rng.choice(["", "&status=failed", "&status=completed", "&status=running"])
    if kind == "list-json":
        return "GET", f"/workflows?limit={rng.choice([10, 50, 200])}{cursor_status}", JSON
    if kind == "list-html":
        return "GET", f"/workflows?workflow=echo{cursor_status}", {}
    if kind == "table-htmx":
        return "GET", f"/workflows/table?q={run_id[: rng.randrange(1, 9)]}{cursor_status}", HX
    if kind == "detail-json":
        return "GET", f"/workflows/{run_id}", JSON
    if kind == "detail-html":
        return "GET", f"/workflows/{run_id}", {}
    if kind == "row-poll":
        return "GET", f"/workflows/{run_id}/row", HX
    if kind == "restart-json":
        return "POST", f"/workflows/{run_id}/restart", JSON
    return "POST", f"/workflows/{run_id}/restart", hx_row(run_id)


async def _client(n: int, base: str, deadline: float, stats: Stats) -> None:
    rng = random.Random(n)
    kinds = list(KINDS)
    weights = [KINDS[k][0] for k in kinds]
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            method, path, headers = _request(kind, rng)
            began = time.monotonic()
            try:
                response = await client.request(method, path, headers=headers)
            except httpx.HTTPError as exc:
                stats.unexpected.append(f"{kind} {path}: {type(exc).__name__} {exc}")
                continue
            stats.latencies[kind].append(time.monotonic() - began)
            stats.statuses[(kind, response.status_code)] += 1
            if response.status_code not in KINDS[kind][1]:
                stats.unexpected.append(
                    f"{kind} {path}: {response.status_code} {response.text[:200]}"
                )
            elif kind == "restart-json" and response.status_code == 200:
                stats.created.add(response.json()["run_id"])


async def _settle(seconds: float) -> list[dict]:
    """Wait up to `seconds` for no run to be pending or running; return those that still are."""
    deadline = time.monotonic() + seconds
    while True:
        active = await WorkflowRun.select(
            WorkflowRun.id,
            WorkflowRun.status,
            WorkflowRun.created_at,
            WorkflowRun.started_at,
            WorkflowRun.heartbeat_at,
            WorkflowRun.steps_done,
            WorkflowRun.current_node,
            WorkflowRun.owner,
        ).where(WorkflowRun.status.is_in(["pending", "running"]))
        if not active or time.monotonic() > deadline:
            return active
        await asyncio.sleep(0.2)


async def _active_restarts_per_run() -> int:
    rows = await WorkflowRun.select(WorkflowRun.restarted_from).where(
        WorkflowRun.status.is_in(["pending", "running"]) & WorkflowRun.restarted_from.is_not_null()
    )
    per_run = Counter(str(r["restarted_from"]) for r in rows)
    return max(per_run.values(), default=0)


async def _watch(deadline: float, seen: list[int]) -> None:
    while time.monotonic() < deadline:
        seen.append(await _active_restarts_per_run())
        await asyncio.sleep(0.2)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def _summary(stats: Stats, took: float) -> str:
    total = sum(stats.statuses.values())
    lines = [
        f"{CLIENTS} clients, {took:.0f} s, {total} requests ({total / took:.0f}/s)",
        f"{'kind':<14}{'requests':>9}  {'statuses':<22}{'p50 ms':>8}{'p99 ms':>8}",
    ]
    for kind in KINDS:
        times = stats.latencies.get(kind, [])
        statuses = ", ".join(
            f"{s}: {c}" for (k, s), c in sorted(stats.statuses.items()) if k == kind
        )
        if times:
            lines.append(
                f"{kind:<14}{len(times):>9}  {statuses:<22}"
                f"{_pct(times, 0.5):>8.1f}{_pct(times, 0.99):>8.1f}"
            )
    return "\n".join(lines)


async def test_twenty_clients_over_two_hundred_runs(empty_db: str) -> None:
    snapshot = _snapshot()
    old = datetime.now(UTC) - timedelta(days=1)
    for n in range(1, RUNS + 1):
        await make_run(
            n,
            created_at=old + timedelta(seconds=n),
            status="failed",
            snapshot=snapshot,
            error=("ProviderError", "upstream timed out", "n1"),
            steps_total=3,
        )
    stats = Stats()
    seen: list[int] = []
    with LiveServer(empty_db) as server:
        began = time.monotonic()
        deadline = began + SECONDS
        await asyncio.gather(
            _watch(deadline, seen),
            *(_client(n, server.url, deadline, stats) for n in range(CLIENTS)),
        )
        took = time.monotonic() - began

        # Let every restart finish, through the server that runs them.
        stuck = await _settle(SETTLE_SECONDS)
        if stuck:
            # Slow or stuck? Give them a while longer, and say which.
            later = await _settle(60)
            pytest.fail(
                f"{len(stuck)} runs still active {SETTLE_SECONDS} s after the load stopped; "
                f"{len(later)} still active 60 s later. E.g.:\n"
                + "\n".join(str(r) for r in (later or stuck)[:10])
            )
        assert server.proc.poll() is None, "the server died"

    print("\n" + _summary(stats, took))
    children = await WorkflowRun.select(
        WorkflowRun.id, WorkflowRun.status, WorkflowRun.restarted_from, WorkflowRun.attempt
    ).where(WorkflowRun.restarted_from.is_not_null())
    by_status = Counter(r["status"] for r in children)
    print(
        f"restarts created: {len(children)} {dict(by_status)}; most active restarts of one run "
        f"at any sample: {max(seen, default=0)} ({len(seen)} samples)"
    )

    assert not stats.unexpected, f"{len(stats.unexpected)} unexpected answers:\n" + "\n".join(
        stats.unexpected[:10]
    )
    assert max(seen, default=0) <= 1
    assert len(seen) >= SECONDS  # the watcher really watched
    assert stats.statuses[("restart-json", 200)] + stats.statuses[("restart-htmx", 200)] == len(
        children
    ), "a restart answered 200 without its run, or a run exists that no answer announced"
    assert stats.created <= {str(r["id"]) for r in children}
    assert by_status == {"completed": len(children)}, "every restart must complete"
    assert await WorkflowRun.count() == RUNS + len(children)
    # Every restart is of an original (attempt 1), whatever number came before it.
    assert {r["attempt"] for r in children} == {2}
