"""RunController: the run list, a run's detail and row, restart and cancel.

Handlers read input, call one service or store method, and answer in the
format the client asked for (see render.py). Errors are raised, never caught:
errors.py renders them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect

from app.errors import AppError
from app.services.live import stamp_token
from app.services.runs import RUN_STATUSES, Cursor, RunFilters, RunService
from app.web import schemas
from app.web.auth import client_of, identity_of, requires_operator
from app.web.render import answer_format, row_target, template
from app.web.serializers import audit_json, detail_json, page_json, run_json

__all__ = ["RunController"]

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class InvalidQuery(AppError):
    status = 400
    code = "invalid_query"
    title = "Invalid filter"


def provide_runs(request: Request[Any, Any, Any]) -> RunService:
    return request.app.state.runs


async def _await(work: Any) -> None:
    await work


def _cursor(token: str | None, name: str) -> Cursor | None:
    if not token:
        return None
    try:
        return Cursor.decode(token)
    except ValueError:
        raise InvalidQuery(f"{name} {token!r} is not a cursor from this list") from None


def _filters(status: str | None, workflow: str | None, q: str | None) -> RunFilters:
    status = (status or "").strip() or None
    if status is not None and status not in RUN_STATUSES:
        raise InvalidQuery(f"status {status!r} is not one of: {', '.join(RUN_STATUSES)}")
    q = (q or "").strip() or None
    if q is not None and (len(q) > 36 or any(c not in "0123456789abcdefABCDEF-" for c in q)):
        raise InvalidQuery(f"q {q!r} is not the start of a run id (hex digits and dashes)")
    return RunFilters(status=status, workflow=(workflow or "").strip() or None, id_prefix=q)


@dataclass(frozen=True)
class ListQuery:
    """The run list's query parameters, checked."""

    filters: RunFilters
    cursor: Cursor | None
    before: Cursor | None
    limit: int


def provide_list_query(
    status: FromQuery[str | None] = None,
    status_filter: FromQuery[str | None] = None,
    workflow: FromQuery[str | None] = None,
    q: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
    before: FromQuery[str | None] = None,
    limit: FromQuery[int] = DEFAULT_LIMIT,
) -> ListQuery:
    """`status` (alias `status_filter`), `workflow`, run-id prefix `q`; `cursor` pages to
    older runs, `before` to newer ones; `limit` runs a page (at most 200)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return ListQuery(
        filters=_filters(status or status_filter, workflow, q),
        cursor=_cursor(cursor, "cursor"),
        before=_cursor(before, "before"),
        limit=limit,
    )


class RunController(Controller):
    path = "/workflows"
    dependencies = {
        "runs": Provide(provide_runs, sync_to_thread=False),
        "list_query": Provide(provide_list_query, sync_to_thread=False),
    }

    async def _page(
        self, request: Request[Any, Any, Any], runs: RunService, query: ListQuery, *, partial: bool
    ) -> Response[Any]:
        # Taken before the query: a run created after it is new to this page.
        now = request.app.state.clock()
        page = await runs.list_runs(query.filters, query.cursor, query.limit, before=query.before)
        fmt = answer_format(request)
        if fmt == "json":
            inputs = await runs.inputs_outputs([r.id for r in page.runs])
            return Response(page_json(page, inputs), media_type=MediaType.JSON)
        context = {
            "page": page,
            "filters": query.filters,
            "limit": query.limit,
            "now": now,
            "since": stamp_token(now),
        }
        if fmt == "htmx" or partial:
            return template("runs/_table.html", **context)
        return template(
            "runs/index.html",
            workflow_names=await runs.workflow_names(),
            stats=await runs.queue_stats(),
            **context,
        )

    @get("/", name="runs:list", summary="List runs, newest first", responses=schemas.LIST)
    async def list_runs(
        self,
        request: Request[Any, Any, Any],
        runs: NamedDependency[RunService],
        list_query: NamedDependency[ListQuery],
    ) -> Response[Any]:
        """Runs newest first: the page, the table partial for htmx, or JSON."""
        return await self._page(request, runs, list_query, partial=False)

    @get("/table", name="runs:table", summary="The run table partial", responses=schemas.LIST)
    async def runs_table(
        self,
        request: Request[Any, Any, Any],
        runs: NamedDependency[RunService],
        list_query: NamedDependency[ListQuery],
    ) -> Response[Any]:
        return await self._page(request, runs, list_query, partial=True)

    @get(
        "/{run_id:str}",
        name="runs:detail",
        summary="One run with its steps",
        responses=schemas.DETAIL,
    )
    async def get_run(
        self,
        request: Request[Any, Any, Any],
        runs: NamedDependency[RunService],
        run_id: FromPath[str],
    ) -> Response[Any]:
        now = request.app.state.clock()
        detail = await runs.get_detail(run_id)
        history = await request.app.state.access.audit(run_id=detail.summary.id, limit=20)
        if answer_format(request) == "json":
            body = detail_json(detail)
            body["history"] = [audit_json(e) for e in history]
            return Response(body, media_type=MediaType.JSON)
        return template(
            "runs/detail.html",
            detail=detail,
            run=detail.summary,
            history=history,
            now=now,
            since=stamp_token(now),
        )

    @get(
        "/{run_id:str}/row",
        name="runs:row",
        summary="One run as a table row",
        responses=schemas.RUN,
    )
    async def run_row(
        self,
        request: Request[Any, Any, Any],
        runs: NamedDependency[RunService],
        run_id: FromPath[str],
    ) -> Response[Any]:
        run = await runs.get_summary(run_id)
        if answer_format(request) == "json":
            return Response(run_json(run), media_type=MediaType.JSON)
        return template("runs/_row.html", run=run, now=request.app.state.clock())

    @post(
        "/{run_id:str}/restart",
        name="runs:restart",
        status_code=200,
        summary="Restart a finished run as a new run",
        responses=schemas.RESTART,
        guards=[requires_operator],
    )
    async def restart_run(
        self,
        request: Request[Any, Any, Any],
        runs: NamedDependency[RunService],
        run_id: FromPath[str],
    ) -> Response[Any]:
        """Create the new pending run, schedule it, and answer at once.

        404: no such run. 400: the run is pending or running, or was already restarted
        (a run is restarted once; restart its latest attempt). 500: the stored snapshot
        is unusable, or scheduling failed (no run is left behind).
        """
        fmt = answer_format(request)
        via = "api" if fmt == "json" else "dashboard"
        result = await runs.restart(run_id, trigger=via)
        background = BackgroundTask(_await, result.work) if result.work is not None else None
        await request.app.state.access.record(
            identity_of(request),
            "restart",
            client=client_of(request),
            via=via,
            run_id=result.original.id,
            new_run_id=result.run_id,
        )
        if fmt == "json":
            return Response(
                {
                    "status": "restarted",
                    "message": result.message,
                    "original_run_id": result.original.id,
                    "run_id": result.run_id,
                    "attempt": result.attempt,
                },
                media_type=MediaType.JSON,
                background=background,
            )
        if fmt == "html":
            return Redirect(f"/workflows/{result.run_id}", status_code=303, background=background)
        # Restarting the latest attempt from an earlier run's row: that row shows its
        # chain restarting.
        shown = row_target(request) or result.original.id
        original = await runs.get_summary(shown)
        new_run = await runs.get_summary(result.run_id)
        response = template(
            "runs/_restarted.html",
            run=original,
            new_run=new_run,
            message=result.message,
            now=request.app.state.clock(),
        )
        response.background = background
        return response

    @post(
        "/{run_id:str}/cancel",
        name="runs:cancel",
        status_code=200,
        summary="Cancel a pending or running run",
        responses=schemas.CANCEL,
        guards=[requires_operator],
    )
    async def cancel_run(
        self,
        request: Request[Any, Any, Any],
        runs: NamedDependency[RunService],
        run_id: FromPath[str],
    ) -> Response[Any]:
        run = await runs.cancel(run_id)
        fmt = answer_format(request)
        await request.app.state.access.record(
            identity_of(request),
            "cancel",
            client=client_of(request),
            via="api" if fmt == "json" else "dashboard",
            run_id=run.id,
        )
        if fmt == "json":
            return Response(
                {
                    "status": "cancelled",
                    "run_id": run.id,
                    "message": f"Run {run.short_id} cancelled",
                },
                media_type=MediaType.JSON,
            )
        if fmt == "html":
            return Redirect(f"/workflows/{run.id}", status_code=303)
        return template(
            "runs/_cancelled.html",
            run=run,
            message=f"Run {run.short_id} cancelled",
            now=request.app.state.clock(),
        )
