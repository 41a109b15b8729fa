"""schemathesis against the dashboard's OpenAPI schema, on a live server with seeded runs:
positive and negative cases for every operation, as JSON, htmx and page requests. No 5xx
except the contract's 500 of restart (snapshot_unusable / scheduling_failed)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from factories import fixed_id, make_run
from fuzz_settings import bounded
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from support import FROZEN_NOW, HX, JSON, LiveServer

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = int(os.environ.get("CA_FUZZ_API_EXAMPLES", 30))
DOCUMENTED_500 = {"snapshot_unusable", "scheduling_failed"}


async def _seed() -> list[str]:
    ids = []
    for n, status in enumerate(["completed", "failed", "failed", "running", "pending"], 1):
        # Active runs look alive (a fresh heartbeat), or the server would interrupt them.
        active = status in ("running", "pending")
        when = datetime.now(UTC) if active else FROZEN_NOW - timedelta(minutes=n)
        ids.append(await make_run(n, created_at=when, status=status))
    ids.append(
        await make_run(6, created_at=FROZEN_NOW, status="failed", snapshot={"flow": {"name": "x"}})
    )
    ids.append(await make_run(7, created_at=FROZEN_NOW, status="failed", snapshot=None))
    return ids


def _documented(operation: Any, response: Any) -> bool:
    if response.status_code < 500:
        return True
    if not operation.path.endswith("/restart") or response.status_code != 500:
        return False
    try:
        return response.json().get("code") in DOCUMENTED_500
    except ValueError:  # the htmx or page answer of the same error
        return "Cannot restart" in response.text


@dataclass
class Tally:
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    no_negative: list[str] = field(default_factory=list)


def _fuzz(operation: Any, mode: GenerationMode, base: str, seeded: list[str], tally: Tally) -> None:
    """Call one operation with generated cases; half of them on a seeded run's id."""
    label = f"{operation.method.upper()} {operation.path}"

    @bounded(EXAMPLES_PER_OPERATION)
    @given(
        case=operation.as_strategy(generation_mode=mode),
        run_id=st.sampled_from([None, *seeded, fixed_id(404)]),
        answer=st.sampled_from([JSON, HX, {}]),
    )
    def check(case: Any, run_id: str | None, answer: dict[str, str]) -> None:
        if run_id is not None and "run_id" in (case.path_parameters or {}):
            case.path_parameters["run_id"] = run_id
        response = case.call(base_url=base, headers=answer, timeout=10)
        tally.statuses[(label, response.status_code)] += 1
        if not _documented(operation, response):
            tally.failures.append(
                f"{label} -> {response.status_code} {response.text[:200]!r}\n"
                f"  {case.as_curl_command(headers=answer)}"
            )

    try:
        check()
    except Unsatisfiable:
        # Nothing in this operation can be made invalid (a string path parameter
        # takes any string): no negative case exists.
        assert mode is GenerationMode.NEGATIVE, label
        tally.no_negative.append(label)


async def test_openapi_operations_never_answer_an_undocumented_5xx(empty_db: str) -> None:
    seeded = await _seed()
    tally = Tally()
    with LiveServer(empty_db) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {
            "/workflows",
            "/workflows/{run_id}",
            "/workflows/{run_id}/row",
            "/workflows/{run_id}/restart",
            "/workflows/{run_id}/cancel",
        }
        for operation in operations:
            if operation.path.endswith("/events"):
                continue  # streams that stay open: tests/web/test_live_streams.py
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(operation, mode, server.url, seeded, tally)
        assert server.proc.poll() is None, "the server died"

    print(
        f"\n{sum(tally.statuses.values())} requests; "
        f"no negative cases for: {', '.join(tally.no_negative)}"
    )
    for (label, status), count in sorted(tally.statuses.items()):
        print(f"  {label:40} {status}: {count}")
    failures = tally.failures
    assert not failures, f"{len(failures)} undocumented 5xx:\n" + "\n".join(failures[:10])
