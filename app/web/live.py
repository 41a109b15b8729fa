"""The live channel of a page: one Server-Sent Events stream per open tab.

The list page subscribes with its filters and the runs it shows; a run's page with
the run. Each message is a set of htmx partials (rows, the run's header and steps, the
new-runs banner, the queue strip) rendered for the tab's own role, with the database
time it is current to as its id, so a reconnecting tab (`Last-Event-ID`) catches up
from there, on this process or another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.services.live import (
    CLOSED,
    LiveHub,
    LiveUpdate,
    Watch,
    parse_stamp,
    stamp_token,
)
from app.services.runs import RunService
from app.web.auth import identity_of
from app.web.rows import run_row
from app.web.runs import ListQuery, provide_list_query, provide_runs

__all__ = ["LiveController"]

log = logging.getLogger("configurable_agents.live")

KEEP_ALIVE_SECONDS = 15.0
# A stream ends after this long and the browser opens the next at once (with
# Last-Event-ID): its sign-in is checked again, and no tab outlives a revoked session
# by more than this.
STREAM_SECONDS = 300.0
RECONNECT_MS = 1000
MAX_SHOWN = 200
HEX = frozenset("0123456789abcdef-")


def _render(request: Request[Any, Any, Any], name: str, **context: Any) -> str:
    engine = request.app.template_engine
    assert engine is not None
    html: str = engine.get_template(name).render(request=request, **context)
    return html


class _Rows:
    """Rows drawn once per change for every tab that shows them: the hub hands all tabs
    the same summary object for a change, so (that object, role) is the key. Streamed
    rows carry no CSRF field: htmx sends the token as a header, and only htmx reads a
    stream."""

    def __init__(self, limit: int = 2000):
        self.limit = limit
        self.drawn: dict[tuple[int, bool], tuple[Any, str]] = {}

    def html(self, request: Request[Any, Any, Any], run: Any, now: Any, operate: bool) -> str:
        key = (id(run), operate)
        hit = self.drawn.get(key)
        if hit is not None and hit[0] is run:
            return hit[1]
        html = str(run_row(run, now, operate, None))
        if len(self.drawn) >= self.limit:
            self.drawn.clear()
        self.drawn[key] = (run, html)
        return html


ROWS = _Rows()


async def _stream(
    request: Request[Any, Any, Any],
    live: LiveHub,
    watch: Watch,
    since: Any,
    template: str,
    fresh: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    **context: Any,
) -> AsyncIterator[ServerSentEventMessage]:
    clock = request.app.state.clock
    loop_time = asyncio.get_running_loop().time
    identity = identity_of(request)
    operate = identity is not None and identity.role == "operator"
    ends = loop_time() + STREAM_SECONDS
    # The first message sets how soon the browser comes back after a stream ends. The
    # subscription is made after it, inside the generator, so that its `finally` runs
    # however early the client goes.
    yield ServerSentEventMessage(comment="live", data=None, retry=RECONNECT_MS)
    sub = await live.subscribe(watch, since)
    try:
        while loop_time() < ends:
            update: LiveUpdate | None = await sub.next(
                min(KEEP_ALIVE_SECONDS, max(ends - loop_time(), 0.01))
            )
            if update is CLOSED:
                return
            if update is None:
                # With the time it is current to, so that even a quiet tab reconnects
                # (every STREAM_SECONDS, or when shown again) from here.
                yield ServerSentEventMessage(
                    comment="keep-alive", data=None, id=stamp_token(sub.stamp)
                )
                continue
            if update.reload:
                yield ServerSentEventMessage(
                    event="reload", data="reload", id=stamp_token(update.stamp)
                )
                continue
            now = clock()
            rows = [(run.id, ROWS.html(request, run, now, operate)) for run in update.rows]
            # What every message brings up to date (the list's counts), read once per message.
            more = await fresh() if fresh is not None else {}
            html = _render(request, template, update=update, rows=rows, now=now, **context, **more)
            yield ServerSentEventMessage(data=html.strip() or None, id=stamp_token(update.stamp))
    except Exception:
        # A database blip: end the stream; the browser comes back in a second with
        # its Last-Event-ID and catches up.
        log.warning("a live stream failed; the browser will reconnect", exc_info=True)
    finally:
        sub.close()


def workers_events(request: Request[Any, Any, Any], live: LiveHub) -> ServerSentEvent:
    """The workers page's live stream: its table and the queue strip, as they change.
    Heartbeats have no change feed: the hub reads the workers once per interval for
    every open workers page of this process, and sends them when they changed."""
    return ServerSentEvent(
        _stream(request, live, Watch(workers=True), None, "_live_workers.html"),
        headers={"X-Accel-Buffering": "no"},
    )


def _links(query: ListQuery) -> dict[str, Any]:
    """The page's own query, as its links keep it (see runs/_table.html)."""
    filters = query.filters
    return {
        "status": filters.status,
        "workflow": filters.workflow,
        "q": filters.q,
        "since": query.since,
        "until": query.until,
        "limit": query.limit if query.limit != 50 else None,
    }


def provide_live(request: Request[Any, Any, Any]) -> LiveHub:
    live: LiveHub = request.app.state.live
    return live


def _since(request: Request[Any, Any, Any], at: str | None) -> Any:
    # A reconnect's Last-Event-ID is newer than the page's own time.
    return parse_stamp(request.headers.get("last-event-id")) or parse_stamp(at)


class LiveController(Controller):
    path = "/workflows"
    dependencies = {
        "runs": Provide(provide_runs, sync_to_thread=False),
        "live": Provide(provide_live, sync_to_thread=False),
        "list_query": Provide(provide_list_query, sync_to_thread=False),
    }

    @get("/events", name="live:list", summary="Live changes of a run list page (SSE)")
    async def list_events(
        self,
        request: Request[Any, Any, Any],
        live: NamedDependency[LiveHub],
        runs: NamedDependency[RunService],
        list_query: NamedDependency[ListQuery],
        shown: FromQuery[str | None] = None,
        at: FromQuery[str | None] = None,
    ) -> ServerSentEvent:
        """Rows of `shown` (short run ids, dot-separated) as they change, and a count of
        new runs matching the filters; `at` is the page's time (an event id)."""
        ids = frozenset(
            i[:8].lower()
            for i in (shown or "").replace(",", ".").split(".")[:MAX_SHOWN]
            if len(i) in (8, 36) and all(c in HEX for c in i.lower())
        )
        watch = Watch(filters=list_query.filters, shown=ids, newer_than=parse_stamp(at))
        filters = list_query.filters

        async def counts() -> dict[str, Any]:
            return {"counts": await runs.counts(filters)}

        return ServerSentEvent(
            _stream(
                request,
                live,
                watch,
                _since(request, at),
                "runs/_live_list.html",
                counts,
                filters=filters,
                query=_links(list_query),
            ),
            headers={"X-Accel-Buffering": "no"},
        )

    @get("/{run_id:str}/events", name="live:detail", summary="Live changes of one run (SSE)")
    async def detail_events(
        self,
        request: Request[Any, Any, Any],
        runs: NamedDependency[RunService],
        live: NamedDependency[LiveHub],
        run_id: FromPath[str],
        at: FromQuery[str | None] = None,
    ) -> ServerSentEvent:
        run = await runs.get_summary(run_id)  # 404 for an unknown run
        return ServerSentEvent(
            _stream(
                request,
                live,
                Watch(run_id=run.id),
                _since(request, at),
                "runs/_live_detail.html",
            ),
            headers={"X-Accel-Buffering": "no"},
        )
