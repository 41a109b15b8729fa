"""Live pages: one change feed per process, fanned out to every open tab.

The feed learns which runs changed, from any process: on PostgreSQL by LISTEN on the
channel the `workflow_run` trigger notifies; on SQLite by one query per interval on the
indexed `updated_at` that the triggers stamp. The hub hands each batch to the
subscriptions (one per open tab). Each subscription keeps what its page shows and asks
the hub for the rows it must redraw; the hub loads each run once per change, however
many tabs show it, so database work follows the changes, not the number of tabs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from app.store.changes import CHANNEL, ChangeStore, overlap, parse_stamp, stamp_token
from app.store.models import RunDetail, RunFilters, RunSummary
from app.store.runs import RunStore
from app.store.search import SearchError
from app.store.search import parse as parse_search

__all__ = [
    "CLOSED",
    "LiveHub",
    "LiveUpdate",
    "Subscription",
    "Watch",
    "matches",
    "parse_stamp",
    "stamp_token",
]

log = logging.getLogger("configurable_agents.live")

# A tab hidden for hours does not replay every change: past this many it redraws.
CATCH_UP_LIMIT = 500
# SQLite: at most this many changed runs per look; more means a burst (see _poll).
POLL_LIMIT = 1000
# How far back a catch-up looks before its stamp: transactions commit in a different
# order than they stamp their rows, so a late commit may carry a slightly older stamp.
OVERLAP_SECONDS = 5.0
CLOSED: Any = object()
FEED_NAME = "configurable-agents live feed"


@dataclass(frozen=True)
class Watch:
    """What one tab shows: a run's page (`run_id`), or a list page with its filters,
    the runs on it (by short id, the first 8 hex digits: a page of 200 fits in a URL,
    and a clash only costs a row sent that the page does not have), and the time after
    which a matching run counts as new. Or the workers page (`workers`): the queue's
    workers and figures, read once per interval for all such tabs."""

    run_id: str | None = None
    filters: RunFilters | None = None
    shown: frozenset[str] = frozenset()
    newer_than: datetime | None = None
    workers: bool = False


@dataclass
class LiveUpdate:
    stamp: datetime
    rows: list[RunSummary] = field(default_factory=list)
    new_runs: int = 0
    detail: RunDetail | None = None
    stats: Any = None
    # The queue workers, when they changed (a workers page).
    workers: Any = None
    # So much changed while the tab was away that it should load its page again.
    reload: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.rows
            or self.new_runs
            or self.detail
            or self.stats
            or self.workers is not None
            or self.reload
        )


def matches(filters: RunFilters, run: RunSummary) -> bool:
    if filters.status and run.status != filters.status:
        return False
    if filters.workflow and run.workflow_name not in filters.workflow:
        return False
    if filters.until and run.created_at >= filters.until:
        return False
    if filters.id_prefix:
        digits = filters.id_prefix.replace("-", "").lower()
        if not run.id.replace("-", "").startswith(digits):
            return False
    if filters.text:
        try:
            search = parse_search(filters.text)
        except SearchError:
            return False
        fields = (run.workflow_name, run.error_node, run.error_message)
        if not search.matches(run.id, fields):
            return False
    return True


def _is_fresh(seen: datetime | None, stamp: datetime, looked_at: datetime | None) -> bool:
    """A row's stamp is new to the feed; or it may be: SQLite stamps in milliseconds, so
    a write within the millisecond of the last look can carry the stamp already seen."""
    if seen is None or stamp > seen:
        return True
    return looked_at is not None and stamp >= looked_at - timedelta(milliseconds=2)


class _Memo:
    """Loaded values by key, each tagged with the feed generation it was loaded at: a
    reader that knows of generation `g` takes a value loaded at `g` or later, and
    concurrent readers of a missing key share one load."""

    def __init__(self, load: Callable[[list[str]], Coroutine[Any, Any, dict[str, Any]]]):
        self.load = load
        self.values: dict[str, tuple[int, Any]] = {}

    async def get(self, keys: Iterable[str], generation: int, now: int) -> dict[str, Any]:
        found: dict[str, Any] = {}
        waits: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        missing: list[str] = []
        for key in keys:
            entry = self.values.get(key)
            if entry is None or entry[0] < generation:
                missing.append(key)
            elif isinstance(entry[1], asyncio.Future):
                waits.append((key, entry[1]))
            else:
                found[key] = entry[1]
        if missing:
            # A task of its own: the tab that asked may go away (its stream closed)
            # while others wait for the same load.
            task = asyncio.get_running_loop().create_task(self.load(missing))
            for key in missing:
                self.values[key] = (now, task)
            task.add_done_callback(lambda done: self._settle(done, missing, now))
            waits.extend((key, task) for key in missing)
        for key, pending in waits:
            # Shielded: a waiter that is cancelled does not cancel the load for others.
            found[key] = (await asyncio.shield(pending)).get(key)
        return found

    def _settle(self, task: asyncio.Task[dict[str, Any]], keys: list[str], now: int) -> None:
        failed = task.cancelled() or task.exception() is not None
        loaded = {} if failed else task.result()
        for key in keys:
            if self.values.get(key, (0, None))[1] is task:
                if failed:
                    del self.values[key]
                else:
                    self.values[key] = (now, loaded.get(key))

    def prune(self, keep_from: int, limit: int = 5000) -> None:
        if len(self.values) > limit:
            self.values = {
                k: v
                for k, v in self.values.items()
                if v[0] >= keep_from and not isinstance(v[1], asyncio.Future)
            }


class Subscription:
    """One tab's view of the feed. `next()` waits for the next update worth sending."""

    def __init__(self, hub: LiveHub, watch: Watch, stamp: datetime):
        self.hub = hub
        self.watch = watch
        self.shown = {run_id[:8] for run_id in watch.shown}
        self.stamp = stamp
        self.generation = hub.generation
        self.pending: set[str] = set()
        self.reload = False
        self.new_ids: set[str] = set()
        self.new_to_tell = False
        self.stats_seen = 0
        # The page was drawn with the workers of now: only what changes after is sent.
        self.workers_seen = hub.workers_generation
        self.wake = asyncio.Event()

    def push(self, run_ids: Iterable[str], stamp: datetime, generation: int) -> None:
        self.pending.update(run_ids)
        self.stamp = max(self.stamp, stamp)
        self.generation = generation
        self.wake.set()

    def close(self) -> None:
        self.hub.unsubscribe(self)

    async def next(self, timeout: float) -> LiveUpdate | Any | None:
        """The next update; None when `timeout` passes with nothing to send; CLOSED when
        the process is stopping."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.hub.closed:
                return CLOSED
            if (
                self.pending
                or self.reload
                or self.new_to_tell
                or self._stats_changed()
                or self._workers_changed()
            ):
                update = await self._build()
                if update:
                    return update
                continue
            self.wake.clear()
            left = deadline - loop.time()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), left)

    def _stats_changed(self) -> bool:
        wants = self.watch.filters is not None or self.watch.workers
        return wants and self.hub.stats_generation > self.stats_seen

    def _workers_changed(self) -> bool:
        return self.watch.workers and self.hub.workers_generation > self.workers_seen

    async def _build(self) -> LiveUpdate:
        ids, self.pending = self.pending, set()
        update = LiveUpdate(stamp=self.stamp)
        if self.reload:
            self.reload = False
            update.reload = True
            return update
        if self._stats_changed():
            self.stats_seen = self.hub.stats_generation
            update.stats = self.hub.stats
        if self._workers_changed():
            self.workers_seen = self.hub.workers_generation
            update.workers = self.hub.workers
        if self.new_to_tell:
            self.new_to_tell = False
            update.new_runs = len(self.new_ids)
        if not ids or self.watch.workers:
            return update
        generation = self.generation
        ancestors = await self.hub.ancestors(ids, generation)
        if self.watch.run_id is not None:
            run_id = self.watch.run_id
            if any(x == run_id or run_id in ancestors.get(x, ()) for x in ids):
                update.detail = await self.hub.detail(run_id, generation)
            return update
        shown = self.shown
        touched = {a for x in ids for a in (x, *ancestors.get(x, ())) if a[:8] in shown}
        # A restart of a run on the page: its own row is there if this tab made it.
        related = {
            x
            for x in ids
            if x[:8] not in shown and any(a[:8] in shown for a in ancestors.get(x, ()))
        }
        candidates = {x for x in ids if x[:8] not in shown} - related
        wanted = touched | related | candidates
        summaries = await self.hub.summaries(wanted, generation) if wanted else {}
        update.rows = [summaries[i] for i in sorted(touched | related) if summaries.get(i)]
        filters, newer = self.watch.filters, self.watch.newer_than
        for run_id in candidates:
            run = summaries.get(run_id)
            if run is None or run_id in self.new_ids:
                continue
            if (newer is None or run.created_at > newer) and matches(filters, run):  # type: ignore[arg-type]
                self.new_ids.add(run_id)
                update.new_runs = len(self.new_ids)
        return update


class LiveHub:
    """The process's change feed and its subscriptions."""

    def __init__(
        self,
        store: RunStore,
        *,
        database_url: str,
        poll_seconds: float = 0.5,
        stats: Callable[[], Awaitable[Any]] | None = None,
        stats_seconds: float = 5.0,
        workers: Callable[[], Awaitable[Sequence[Any]]] | None = None,
    ):
        self.store = store
        self.changes = ChangeStore()
        self.database_url = database_url
        self.poll_seconds = poll_seconds
        self.stats_source = stats
        self.stats_seconds = stats_seconds
        self.subscriptions: set[Subscription] = set()
        self.generation = 0
        self.closed = False
        self.stats: Any = None
        self.stats_generation = 0
        # The queue workers (`ProcessView`s), read with the queue's figures while a
        # workers page is open: their heartbeats have no change feed.
        self.workers_source = workers
        self.workers: list[Any] | None = None
        self.workers_generation = 0
        self.last_stamp: datetime | None = None
        self._started = datetime.now(UTC)
        self._tasks: list[asyncio.Task[None]] = []
        self._has_subscribers = asyncio.Event()
        self._heard_ids: set[str] = set()
        self._heard_stamp: datetime | None = None
        self._flush: asyncio.TimerHandle | None = None
        self._ancestors = _Memo(self.changes.ancestors)
        self._summaries = _Memo(self.store.get_summaries)
        self._details = _Memo(self._load_details)

    # -- subscriptions -----------------------------------------------------------

    async def subscribe(self, watch: Watch, since: datetime | None) -> Subscription:
        """A tab's subscription. With `since` (its page's time, or the last event it
        saw), it first gets what changed after it."""
        self._start()
        stamp = since or datetime.now(UTC)
        sub = Subscription(self, watch, stamp)
        self.subscriptions.add(sub)
        self._has_subscribers.set()
        try:
            if watch.filters is not None and watch.newer_than is not None:
                # The banner counts every run that arrived after the page was drawn,
                # also on a reconnect (which starts from its Last-Event-ID).
                arrived = await self.store.created_after(watch.filters, watch.newer_than)
                sub.new_ids = {i for i in arrived if i[:8] not in sub.shown}
                sub.new_to_tell = bool(sub.new_ids)
        except BaseException:
            self.unsubscribe(sub)
            raise
        if since is not None:
            try:
                changed = await self.changes.changed_since(
                    overlap(since, OVERLAP_SECONDS), CATCH_UP_LIMIT + 1
                )
            except BaseException:
                self.unsubscribe(sub)
                raise
            if len(changed) > CATCH_UP_LIMIT:
                sub.reload = True
            elif changed:
                # What is cached may be older than these changes (the feed rests while no
                # tab is open): a generation of its own makes the catch-up read afresh.
                self.generation += 1
                sub.push((i for i, _ in changed), max(s for _, s in changed), self.generation)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscriptions.discard(sub)
        if not self.subscriptions:
            self._has_subscribers.clear()

    def publish(self, run_ids: set[str], stamp: datetime) -> None:
        """Runs that changed, up to the database time `stamp`."""
        if not run_ids:
            return
        self.generation += 1
        self.last_stamp = max(self.last_stamp or stamp, stamp)
        for sub in list(self.subscriptions):
            sub.push(run_ids, stamp, self.generation)
        for memo in (self._ancestors, self._summaries, self._details):
            memo.prune(self.generation - 2)

    def reload_all(self, stamp: datetime) -> None:
        """Too much changed to follow run by run: every tab loads its page again."""
        self.last_stamp = max(self.last_stamp or stamp, stamp)
        for sub in list(self.subscriptions):
            sub.reload = True
            sub.pending.clear()
            sub.stamp = max(sub.stamp, stamp)
            sub.wake.set()

    async def close(self) -> None:
        """End every stream (their generators see CLOSED) and stop the feed."""
        self.closed = True
        for sub in list(self.subscriptions):
            sub.wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def stop_streams(self) -> None:
        """From a signal handler: end the streams now so the server can stop."""
        self.closed = True
        for sub in list(self.subscriptions):
            sub.wake.set()

    # -- what the subscriptions read (once per change, for all tabs) --------------

    async def ancestors(self, ids: Iterable[str], generation: int) -> dict[str, tuple[str, ...]]:
        return await self._ancestors.get(ids, generation, self.generation)

    async def summaries(self, ids: Iterable[str], generation: int) -> dict[str, RunSummary]:
        return await self._summaries.get(ids, generation, self.generation)

    async def detail(self, run_id: str, generation: int) -> RunDetail | None:
        return (await self._details.get([run_id], generation, self.generation)).get(run_id)

    async def _load_details(self, run_ids: list[str]) -> dict[str, RunDetail | None]:
        return {run_id: await self.store.get_detail(run_id) for run_id in run_ids}

    # -- the feed ------------------------------------------------------------------

    def _start(self) -> None:
        if self._tasks or self.closed:
            return
        self._started = datetime.now(UTC)
        postgres = self.database_url.startswith(("postgres://", "postgresql://"))
        self._tasks.append(asyncio.create_task(self._listen() if postgres else self._poll()))
        if self.stats_source is not None or self.workers_source is not None:
            self._tasks.append(asyncio.create_task(self._watch_stats()))

    async def _poll(self) -> None:
        """SQLite: one query per interval while any tab is open, for the runs stamped
        since the last look, with an overlap: a transaction commits after it stamps."""
        last: datetime | None = None
        looked_at: datetime | None = None
        seen: dict[str, datetime] = {}
        while not self.closed:
            if not self.subscriptions:
                last = None
                await self._has_subscribers.wait()
            try:
                if last is None:
                    # The overlap then resends what the first tab's catch-up may have
                    # sent already: twice is harmless, never is not.
                    last = looked_at = await self.changes.now()
                now, rows = await self.changes.look(overlap(last, 2.0), POLL_LIMIT)
            except Exception:  # a locked file or a blip: the next look catches up
                log.warning("the change feed could not read the database", exc_info=True)
                await asyncio.sleep(self.poll_seconds)
                continue
            if len(rows) >= POLL_LIMIT:
                # A burst (a bulk update stamps thousands of rows in one millisecond):
                # the tabs load their pages again, and the feed goes on from now.
                self.reload_all(now)
                last = looked_at = now
                seen = {}
                await asyncio.sleep(self.poll_seconds)
                continue
            fresh = {i for i, s in rows if _is_fresh(seen.get(i), s, looked_at)}
            for i, s in rows:
                seen[i] = max(s, seen.get(i, s))
            if rows:
                last = max(last, rows[-1][1])
            looked_at = now
            horizon = overlap(last, 2.0)
            seen = {i: s for i, s in seen.items() if s >= horizon}
            self.publish(fresh, last)
            await asyncio.sleep(self.poll_seconds)

    async def _listen(self) -> None:
        """PostgreSQL: LISTEN on a connection of its own; after a lost connection,
        listen again and catch up from the last change heard."""
        wait = 0.2
        while not self.closed:
            try:
                await self._listen_once()
                wait = 0.2
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("the change feed lost its database connection", exc_info=True)
            if not self.closed:
                await asyncio.sleep(wait)
                wait = min(wait * 2, 5.0)

    async def _listen_once(self) -> None:
        import asyncpg

        # Named, so that an operator can tell it among the server's connections.
        conn = await asyncpg.connect(
            self.database_url, server_settings={"application_name": FEED_NAME}
        )
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(CHANNEL, self._heard)
            # Listening now: what was written before (since the first tab subscribed, or
            # since the last change heard before a lost connection) is read once.
            since = self.last_stamp or self._started
            rows = await self.changes.changed_since(overlap(since, OVERLAP_SECONDS), CATCH_UP_LIMIT)
            if len(rows) >= CATCH_UP_LIMIT:
                self.reload_all(max(s for _, s in rows))
            elif rows:
                self.publish({i for i, _ in rows}, max(s for _, s in rows))
            while not lost.is_set() and not conn.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), 5.0)
                if not lost.is_set():
                    # A connection cut without a word (a firewall, a failover) is found
                    # by asking it something.
                    await conn.execute("SELECT 1")
        finally:
            if not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        run_id, _, epoch = payload.partition("|")
        try:
            uuid.UUID(run_id)  # anyone may NOTIFY the channel: only run ids go on
            stamp = datetime.fromtimestamp(float(epoch), UTC)
        except ValueError:
            return
        self._heard_ids.add(run_id)
        self._heard_stamp = max(self._heard_stamp or stamp, stamp)
        if self._flush is None:
            # A burst of writes (a step, then the run's counters) becomes one batch.
            self._flush = asyncio.get_running_loop().call_later(0.05, self._publish_heard)

    def _publish_heard(self) -> None:
        self._flush = None
        ids, self._heard_ids = self._heard_ids, set()
        if ids and self._heard_stamp is not None:
            self.publish(ids, self._heard_stamp)

    async def _watch_stats(self) -> None:
        """The queue strip, and the workers while a workers page is open: one query
        each per interval for all tabs, sent when it changes."""
        while not self.closed:
            if not self.subscriptions:
                await self._has_subscribers.wait()
            try:
                if self.stats_source is not None:
                    stats = await self.stats_source()
                    if stats != self.stats:
                        self.stats = stats
                        self.stats_generation += 1
                        self._wake()
                if self.workers_source is not None and any(
                    sub.watch.workers for sub in self.subscriptions
                ):
                    await self._read_workers(self.workers_source)
            except Exception:
                log.warning("reading the queue's figures failed", exc_info=True)
            await asyncio.sleep(self.stats_seconds)

    async def _read_workers(self, source: Callable[[], Awaitable[Sequence[Any]]]) -> None:
        workers = list(await source())

        # Shown to the second: a heartbeat, a stop, a run taken or ended, and a worker
        # that stopped beating (its silence grows) are all changes.
        def shown(views: Sequence[Any]) -> list[Any]:
            return [dataclasses.replace(w, silent_for=round(w.silent_for)) for w in views]

        if self.workers is None or shown(workers) != shown(self.workers):
            self.workers = workers
            self.workers_generation += 1
            self._wake()

    def _wake(self) -> None:
        for sub in list(self.subscriptions):
            sub.wake.set()
