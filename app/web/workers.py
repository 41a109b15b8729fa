"""The queue at a glance: workers, queued runs, the oldest waiting (queue mode)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.enums import MediaType
from litestar.response import ServerSentEvent

from app.web.formatting import iso
from app.web.live import workers_events
from app.web.render import answer_format, template

__all__ = ["WorkersController"]


class WorkersController(Controller):
    @get("/workers", name="workers:list", summary="Queue workers and what they run")
    async def list_workers(self, request: Request[Any, Any, Any]) -> Response[Any]:
        runs = request.app.state.runs
        stats = await runs.queue_stats()
        workers = await runs.workers() if stats is not None else []
        if answer_format(request) == "json":
            return Response(
                {
                    "execution": request.app.state.settings.execution,
                    "workers": [
                        {
                            "id": w.id,
                            "host": w.host,
                            "pid": w.pid,
                            "concurrency": w.concurrency,
                            "started_at": iso(w.started_at),
                            "last_heartbeat": iso(w.heartbeat_at),
                            "silent_seconds": round(w.silent_for, 1),
                            "alive": w.alive,
                            "stopped_at": iso(w.stopped_at) or None,
                            "stop_reason": w.stop_reason,
                            "runs": list(w.runs),
                        }
                        for w in workers
                    ],
                    "queue": _stats_json(stats),
                },
                media_type=MediaType.JSON,
            )
        return template(
            "workers.html",
            workers=workers,
            stats=stats,
            now=request.app.state.clock(),
            nav="workers",
        )

    @get("/workers/events", name="workers:events", summary="Live changes of the workers (SSE)")
    async def events(self, request: Request[Any, Any, Any]) -> ServerSentEvent:
        return workers_events(request, request.app.state.live)

    @get("/workflows/queue", name="workers:strip", summary="The queue strip of the run list")
    async def queue_strip(self, request: Request[Any, Any, Any]) -> Response[Any]:
        stats = await request.app.state.runs.queue_stats()
        if answer_format(request) == "json":
            return Response(_stats_json(stats), media_type=MediaType.JSON)
        return template("runs/_queue.html", stats=stats, now=request.app.state.clock())


def _stats_json(stats: Any) -> dict[str, Any] | None:
    if stats is None:
        return None
    return {
        "live_workers": stats.live_workers,
        "queued": stats.queued,
        "oldest_queued_at": iso(stats.oldest_queued_at) or None,
    }
