"""RunSupervisor: who this process is, whether it is alive, which runs it executes,
what happens to runs of processes that died, and how it stops.

Every process that executes runs (a dashboard in the embedded mode, a queue worker,
`configurable-agents run`) registers under a random instance id and heartbeats its
own row, in the database's time. A run belongs to the instance in its `owner`; it is
dead only when that instance's heartbeat is stale in database time, or when the
instance is provably gone: same kernel (boot id), same PID namespace, pid not alive.
A shared hostname, a skewed clock or a database blip shorter than the stale window
fails nothing, and a process never declares itself dead.

Stopping drains: no new runs are taken, running runs stop at their next node
boundary (or when the grace period ends) and are handed back, pending again, for
another process to start from the beginning.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.store.dbtime import retrying
from app.store.processes import ProcessStore, ProcessView, new_instance_id
from app.store.runs import RunStore

__all__ = ["Identity", "RunSupervisor"]

log = logging.getLogger("configurable_agents.supervisor")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def _pid_ns() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Identity:
    instance_id: str
    kind: str
    host: str
    pid: int
    pid_ns: str | None
    boot_id: str | None

    @classmethod
    def of_this_process(cls, kind: str) -> Identity:
        return cls(
            instance_id=new_instance_id(),
            kind=kind,
            host=socket.gethostname(),
            pid=os.getpid(),
            pid_ns=_pid_ns(),
            boot_id=_read("/proc/sys/kernel/random/boot_id"),
        )

    def shares_pids_with(self, other: ProcessView) -> bool:
        """True only when `other`'s pid means the same process here: same kernel and
        same PID namespace. A shared hostname proves nothing."""
        return (
            self.boot_id is not None
            and self.pid_ns is not None
            and other.boot_id == self.boot_id
            and other.pid_ns == self.pid_ns
        )


class RunSupervisor:
    """Heartbeats, ownership, recovery and draining for one process."""

    def __init__(
        self,
        store: RunStore,
        *,
        kind: str,
        processes: ProcessStore | None = None,
        heartbeat_seconds: float = 2.0,
        stale_after_seconds: float = 20.0,
        grace_seconds: float = 30.0,
        local_concurrency: int = 8,
    ):
        self.store = store
        self.processes = processes or ProcessStore()
        self.identity = Identity.of_this_process(kind)
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after = stale_after_seconds
        self.grace = grace_seconds
        # Runs this process executes, with the task executing each.
        self.inflight: dict[str, asyncio.Task[Any]] = {}
        # Those of them cancelled in this process: their executors stop before the next
        # node without asking the database.
        self._stopping: set[str] = set()
        self.draining = False
        self._drain_started: float | None = None
        self._beating: asyncio.Task[None] | None = None
        self._registered = False
        self._spawned: set[asyncio.Task[Any]] = set()
        # Runs waiting for one of `local_concurrency` slots (bulk restarts, adopted and
        # resumed runs), in order.
        self.local_concurrency = max(1, local_concurrency)
        self._waiting: collections.deque[str] = collections.deque()
        self._queued: set[str] = set()
        self._pumps = 0
        # When our own heartbeat last failed (event loop time), or None.
        self._last_beat_failure: float | None = None
        # A queue worker's runs at once, registered for the workers page.
        self.concurrency: int | None = None

    @property
    def instance_id(self) -> str:
        return self.identity.instance_id

    def describe(self) -> str:
        i = self.identity
        return f"{i.kind} {i.instance_id} on {i.host} (pid {i.pid})"

    # -- life of the process -----------------------------------------------------------

    async def start(self) -> None:
        """Register this process and start heartbeating."""
        if self._registered:
            return
        await self._register()
        self._beating = asyncio.create_task(self._beat_forever(), name="heartbeat")

    async def _register(self) -> None:
        i = self.identity
        await retrying(
            lambda: self.processes.register(
                instance_id=i.instance_id,
                kind=i.kind,
                host=i.host,
                pid=i.pid,
                pid_ns=i.pid_ns,
                boot_id=i.boot_id,
                concurrency=self.concurrency,
            ),
            what="registering the process",
        )
        self._registered = True

    async def _beat_forever(self) -> None:
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        failures = 0
        while True:
            # After a failure, retry sooner and back off up to the usual interval: a
            # blip must not leave the heartbeat stale for long.
            await asyncio.sleep(
                self.heartbeat_seconds
                if not failures
                else min(0.1 * 2**failures, self.heartbeat_seconds)
            )
            try:
                alive = await self.processes.beat(self.instance_id)
            except Exception as exc:
                failures += 1
                self._last_beat_failure = loop.time()
                silent = loop.time() - last_ok
                log.warning("heartbeat failed (%s), %.1f s since the last one", exc, silent)
                continue
            failures = 0
            last_ok = loop.time()
            if not alive:
                try:
                    await self._declared_dead()
                except Exception:  # registering again failed: the next beat tries again
                    log.exception("could not register this process again")
                    failures = 1

    async def _declared_dead(self) -> None:
        """Another process found our heartbeat stale and failed our running runs (we were
        stalled or cut off for longer than the stale window). Those runs' writes are
        refused from now on, so they stop at their next node; we go on under a new id."""
        old = self.instance_id
        if not self._registered:
            old = "an unregistered instance"
        self.identity = Identity.of_this_process(self.identity.kind)
        log.error(
            "this process (%s) was declared dead by another after its heartbeat went stale;"
            " its running runs were failed as interrupted. Continuing as %s",
            old,
            self.instance_id,
        )
        await self._register()

    def begin_drain(self) -> None:
        """Stop taking runs; running runs hand themselves back at their next node."""
        if not self.draining:
            self.draining = True
            self._drain_started = asyncio.get_running_loop().time()
            if self.inflight:
                log.warning("draining: %d run(s) in flight", len(self.inflight))

    def grace_left(self) -> float:
        if self._drain_started is None:
            return self.grace
        return max(0.0, self._drain_started + self.grace - asyncio.get_running_loop().time())

    async def stop(self) -> None:
        """Drain, hand back what did not finish, and mark the process stopped."""
        self.begin_drain()
        try:
            tasks = [t for t in self.inflight.values() if not t.done()]
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=self.grace_left())
                for task in late:
                    task.cancel()
                if late:
                    # Cancelled runs hand themselves back (a shielded write) as they end.
                    await asyncio.wait(late, timeout=10)
            for task in list(self._spawned):
                task.cancel()
        finally:
            # The heartbeat first: a beat after the stop would take the stop for a
            # declaration of death and register the process again.
            if self._beating is not None:
                self._beating.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._beating
                self._beating = None
            if self._registered:
                with contextlib.suppress(Exception):
                    released = await self.store.release_pending(self.instance_id)
                    if released:
                        log.warning("handed back %d pending run(s)", len(released))
                with contextlib.suppress(Exception):
                    await self.processes.stop(self.instance_id, "stopped")

    # -- runs of this process ----------------------------------------------------------

    @contextlib.contextmanager
    def executing(self, run_id: str) -> Iterator[None]:
        """Mark the current task as executing `run_id` while the block runs."""
        task = asyncio.current_task()
        assert task is not None
        self.inflight[run_id] = task
        try:
            yield
        finally:
            if self.inflight.get(run_id) is task:
                del self.inflight[run_id]
                self._stopping.discard(run_id)

    def request_stop(self, run_id: str) -> None:
        """The run was cancelled: if this process executes it, stop before its next node."""
        if run_id in self.inflight:
            self._stopping.add(run_id)

    def stop_requested(self, run_id: str) -> bool:
        return run_id in self._stopping

    def spawn(self, run_id: str, execute: Callable[[str], Coroutine[Any, Any, Any]]) -> None:
        """Execute a run in a task of its own, kept until it ends."""
        task = asyncio.create_task(execute(run_id), name=f"run {run_id}")
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def enqueue(self, run_ids: Iterable[str], execute: Callable[[str], Awaitable[Any]]) -> None:
        """Execute runs in this process, at most `local_concurrency` at a time, in order:
        a bulk restart of thousands of runs does not start thousands of executions."""
        for run_id in run_ids:
            if run_id not in self._queued:
                self._queued.add(run_id)
                self._waiting.append(run_id)
        while self._pumps < min(self.local_concurrency, len(self._waiting)):
            self._pumps += 1
            task = asyncio.create_task(self._pump(execute), name="local runs")
            self._spawned.add(task)
            task.add_done_callback(self._spawned.discard)

    async def _pump(self, execute: Callable[[str], Awaitable[Any]]) -> None:
        try:
            while self._waiting and not self.draining:
                run_id = self._waiting.popleft()
                try:
                    await execute(run_id)
                except Exception:  # the run is failed by its executor; go on with the next
                    log.exception("executing run %s failed", run_id)
                finally:
                    self._queued.discard(run_id)
        finally:
            self._pumps -= 1

    async def wait_spawned(self) -> None:
        """Wait for the runs started by `spawn` (tests and the CLI)."""
        while self._spawned:
            await asyncio.wait(list(self._spawned))

    # -- recovery ----------------------------------------------------------------------

    async def recover(self) -> list[str]:
        """Fail, as interrupted, the running runs of processes that are gone; give their
        pending runs to whoever executes runs next. Returns the runs failed."""
        failed: list[str] = []
        # After an outage every heartbeat is old at once; a process that could not write
        # its own in the last window judges no other by the age of theirs.
        loop = asyncio.get_running_loop()
        trust_staleness = (
            self._last_beat_failure is None
            or loop.time() - self._last_beat_failure > self.stale_after
        )
        for process in await self.processes.live():
            if process.id == self.instance_id:
                continue
            why, proven = self._why_dead(process)
            if why is not None and (proven or trust_staleness):
                declared = await self.processes.declare_dead(
                    process.id,
                    why,
                    silent_for_at_least=None if proven else self.stale_after,
                )
                if declared:
                    log.warning("%s: %s", process.describe(), why)
        for owner in await self.store.owners_gone():
            if owner == self.instance_id:
                continue
            gone = await self.processes.get(owner)
            why = (
                f"the {gone.describe()} {gone.stop_reason or 'stopped'}"
                if gone is not None
                else f"its process {owner} stopped"
            )
            failed += await self.store.interrupt_runs_of(owner, why)
        failed += await self.store.interrupt_unknown_owners(self.stale_after)
        failed += await self._fail_own_orphans()
        if failed:
            log.warning("failed %d interrupted run(s): %s", len(failed), ", ".join(failed))
        return failed

    def _why_dead(self, process: ProcessView) -> tuple[str | None, bool]:
        """Why `process` is taken as dead, and whether that is proven (its pid is gone)
        rather than inferred from a stale heartbeat; (None, False) while it lives."""
        if self.identity.shares_pids_with(process) and not _pid_alive(process.pid):
            return "has exited", True
        if process.silent_for > self.stale_after:
            return f"sent no heartbeat for {process.silent_for:.0f} s", False
        return None, False

    async def _fail_own_orphans(self) -> list[str]:
        """Our own runs that the database shows running but no task of ours executes
        (their end could not be written while the database was away)."""
        failed = []
        for run_id in await self.store.running_of(self.instance_id):
            if run_id not in self.inflight and await self.store.fail_interrupted(
                run_id,
                f"interrupted while it ran: {self.describe()} lost the database and could"
                " not record how it ended. Restart the run.",
                owner=self.instance_id,
            ):
                failed.append(run_id)
        return failed

    async def adopt(self, execute: Callable[[str], Awaitable[Any]]) -> list[str]:
        """The embedded mode: execute pending runs that belong to no process (handed back
        by a process that stopped, or left by one that died)."""
        if self.draining:
            return []
        adopted = await self.store.adopt_pending(self.instance_id)
        self.enqueue(adopted, execute)
        return adopted

    async def resume_own(
        self, execute: Callable[[str], Awaitable[Any]], *, waiting_for: float = 5.0
    ) -> list[str]:
        """Execute our own pending runs whose background task never ran."""
        if self.draining:
            return []
        resumed = [
            run_id
            for run_id in await self.store.pending_of(self.instance_id, waiting_for=waiting_for)
            if run_id not in self.inflight and run_id not in self._queued
        ]
        self.enqueue(resumed, execute)
        return resumed
