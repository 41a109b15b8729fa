"""The store recorder keeps every finished step until it is written, even when fan-out
items finish and flush while other writes are still in flight."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from app.services.runs import _StoreRecorder


class _SlowStore:
    """Each write takes longer than the one before, so they overlap; records what was
    written."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.calls = 0

    def clock(self) -> datetime:
        return datetime.now(UTC)

    async def record_steps(self, run_id: str, owner: str, steps: list[dict[str, Any]]) -> bool:
        self.calls += 1
        await asyncio.sleep(0.05 * self.calls)
        self.written += [s["node_id"] for s in steps if s["node_id"] not in self.written]
        return True


class _Supervisor:
    draining = False
    stale_after = 20.0


async def test_overlapping_fan_out_flushes_lose_no_step() -> None:
    store = _SlowStore()
    recorder = _StoreRecorder(store, "run", "me", None, _Supervisor())  # type: ignore[arg-type]
    now = datetime.now(UTC)
    ids = {n: await recorder.step_started(n, 1, i) for i, n in enumerate("xyzw")}
    result = {"status": "completed", "started_at": now, "output": None, "error": None,
              "tokens": 0, "cost_usd": 0.0, "tries": 1}  # fmt: skip
    # x, z and w finish while others still run: each flushes, and the writes overlap.
    flushing = [
        asyncio.create_task(recorder.step_finished(ids[n], **result)) for n in ("x", "z", "w")
    ]
    await asyncio.sleep(0.01)
    # y finishes last: nothing else runs, so it waits in the buffer for the final flush.
    await recorder.step_finished(ids["y"], **result)
    await asyncio.gather(*flushing)
    await recorder.flush()
    assert sorted(store.written) == ["w", "x", "y", "z"]


class _GatedStore:
    """A progress write that does not return until the test lets it."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.advances: list[str | None] = []

    def clock(self) -> datetime:
        return datetime.now(UTC)

    async def advance(self, run_id: str, owner: str, steps: Any, node_id: str | None) -> bool:
        self.advances.append(node_id)
        await self.gate.wait()
        return True


class _Running(_Supervisor):
    def stop_requested(self, run_id: str) -> bool:
        return False


async def test_settle_waits_for_a_deferred_progress_write_under_way() -> None:
    # On SQLite a progress write inserts its steps, then counts them; if the run ended
    # between the two, the end would find the steps inserted and count nothing.
    store = _GatedStore()
    recorder = _StoreRecorder(store, "run", "me", None, _Running())  # type: ignore[arg-type]
    assert await recorder.should_stop("a") is False  # within PROGRESS_EVERY: deferred
    await asyncio.sleep(0.15)
    assert store.advances == ["a"]  # the deferred write is under way
    settling = asyncio.create_task(recorder.settle())
    await asyncio.sleep(0.05)
    assert not settling.done()
    store.gate.set()
    await asyncio.wait_for(settling, 1)
    assert store.advances == ["a"]
    assert not [t for t in asyncio.all_tasks() if "_advance_later" in repr(t.get_coro())]


async def test_settle_drops_a_deferred_progress_write_not_yet_started() -> None:
    store = _GatedStore()
    recorder = _StoreRecorder(store, "run", "me", None, _Running())  # type: ignore[arg-type]
    assert await recorder.should_stop("a") is False
    began = asyncio.get_running_loop().time()
    await recorder.settle()  # no await in between: the deferred task has not run yet
    assert asyncio.get_running_loop().time() - began < 0.05
    assert store.advances == []
