"""RunController: the run list, a run's detail and row, restart and cancel.

Handlers read input, call one service or store method, and answer in the
format the client asked for (see render.py). Errors are raised, never caught:
errors.py renders them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect

from app.errors import AppError
from app.services.live import stamp_token
from app.services.runs import (
    STATUS_FILTERS,
    Cursor,
    RunFilters,
    RunService,
    SearchError,
    parse_search,
)
from app.web import schemas
from app.web.auth import client_of, identity_of, requires_operator
from app.web.pages import run_page
from app.web.render import answer_format, pinned_view, row_target, template
from app.web.serializers import audit_json, detail_json, page_json, run_json

__all__ = ["RunController"]

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class RestartRequest:
    inputs: dict[str, Any] | None = None
    resume: str | None = None
    preview: bool = False


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _restart_detail(plan: Any) -> dict[str, Any]:
    """What the audit trail and the JSON answer say about an edited or resumed restart."""
    if plan is None or plan.mode is None:
        return {}
    if plan.mode == "edited":
        return {
            "inputs_diff": [
                {"field": name, "before": before, "after": after}
                for name, before, after in plan.diff
            ]
        }
    return {
        "resume_from": plan.resume_from or "failure",
        "reused_nodes": plan.reused_nodes,
        "reused_cost_usd": round(plan.reused_cost_usd, 6),
    }


async def _restart_request(
    request: Request[Any, Any, Any], runs: RunService, run_id: str
) -> RestartRequest:
    """Edited inputs or a resume, from a JSON body or a form; nothing for a plain restart."""
    raw = await request.body()
    if not raw.strip():
        return RestartRequest()
    if "json" in request.headers.get("content-type", ""):
        try:
            body = json.loads(raw)
        except ValueError:
            raise InvalidQuery("the body is not valid JSON") from None
        if not isinstance(body, dict) or set(body) - {"inputs", "from"}:
            raise InvalidQuery('the body may hold "inputs" (an object) or "from", nothing else')
        inputs = body.get("inputs")
        if inputs is not None and not isinstance(inputs, dict):
            raise InvalidQuery('"inputs" must be an object of field values')
        resume = body.get("from")
        if resume is not None and (not isinstance(resume, str) or not resume.strip()):
            raise InvalidQuery('"from" must be "failure" or the id of a node that completed')
        return RestartRequest(inputs, resume.strip() if resume else None)
    form = await request.form()
    preview = bool(form.get("preview"))
    if form.get("from"):
        return RestartRequest(resume=str(form.get("from")), preview=preview)
    if form.get("inputs_json"):
        try:
            inputs = json.loads(str(form.get("inputs_json")))
        except ValueError:
            raise InvalidQuery("the edited inputs are not valid JSON") from None
        return RestartRequest(inputs=inputs if isinstance(inputs, dict) else {}, preview=preview)
    fields = {
        key.removeprefix("input."): str(value)
        for key, value in form.items()
        if key.startswith("input.")
    }
    if fields:
        return RestartRequest(inputs=await runs.parse_form_inputs(run_id, fields), preview=preview)
    return RestartRequest(preview=preview)


class InvalidQuery(AppError):
    status = 400
    code = "invalid_query"
    title = "Invalid filter"


def provide_runs(request: Request[Any, Any, Any]) -> RunService:
    runs: RunService = request.app.state.runs
    return runs


async def _await(work: Any) -> None:
    await work


def _cursor(token: str | None, name: str) -> Cursor | None:
    if not token:
        return None
    try:
        return Cursor.decode(token)
    except ValueError:
        raise InvalidQuery(f"{name} {token!r} is not a cursor from this list") from None


_RELATIVE = re.compile(r"^(\d{1,4})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_time(value: Any, now: datetime, name: str) -> datetime | None:
    """A time filter: relative to now ("30m", "1h", "24h", "7d") or an ISO 8601 time
    with its zone."""
    text = str(value or "").strip()
    if not text:
        return None
    relative = _RELATIVE.match(text)
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or not 1970 <= moment.year <= 9000:
        raise InvalidQuery(
            f"{name} {text!r} is not a time: use 30m, 1h, 24h or 7d, or an ISO 8601 time"
            " with its zone (2026-11-30T12:00:00Z)"
        )
    return moment


class InvalidSearch(InvalidQuery):
    """A search that cannot run: one message in plain words, in place of the last one."""

    code = "invalid_search"
    title = "Search"


MAX_WORKFLOWS = 50


def check_search(q: Any) -> str | None:
    """The search as typed, stripped; InvalidSearch when it cannot run."""
    text = str(q or "").strip() or None
    if text is not None:
        try:
            parse_search(text)
        except SearchError as exc:
            raise InvalidSearch(exc.message) from None
    return text


def check_workflows(names: Any) -> tuple[str, ...]:
    """Workflow names from a string or a list of strings."""
    if names is None:
        return ()
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise InvalidQuery("workflow must be a workflow name or a list of names")
    found = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    if len(found) > MAX_WORKFLOWS:
        raise InvalidQuery(f"give at most {MAX_WORKFLOWS} workflows, not {len(found)}")
    return found


def _filters(
    status: str | None,
    workflow: Any,
    q: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> RunFilters:
    status = (status or "").strip() or None
    if status is not None and status not in STATUS_FILTERS:
        raise InvalidQuery(f"status {status!r} is not one of: {', '.join(STATUS_FILTERS)}")
    if since is not None and until is not None and until <= since:
        raise InvalidQuery("until must be later than since")
    return RunFilters(
        status=status,
        workflow=check_workflows(workflow),
        text=check_search(q),
        since=since,
        until=until,
    )


@dataclass(frozen=True)
class ListQuery:
    """The run list's query parameters, checked."""

    filters: RunFilters
    cursor: Cursor | None
    before: Cursor | None
    limit: int
    # The time filter as given ("1h"), kept for links and forms.
    since: str | None = None
    until: str | None = None


def provide_list_query(
    request: Request[Any, Any, Any],
    status: FromQuery[str | None] = None,
    status_filter: FromQuery[str | None] = None,
    workflow: FromQuery[list[str] | None] = None,
    q: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
    before: FromQuery[str | None] = None,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    since: FromQuery[str | None] = None,
    until: FromQuery[str | None] = None,
) -> ListQuery:
    """`status` (alias `status_filter`), `workflow` (repeat it for several), `q` (words of
    the error message, failed node or workflow name, or the start of a run id), created `since`
    and `until` (1h, 24h, 7d ago or an ISO time); `cursor` pages to older runs, `before`
    to newer ones; `limit` runs a page (at most 200)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    now = request.app.state.clock()
    moment = parse_time(since, now, "since")
    end = parse_time(until, now, "until")
    return ListQuery(
        filters=_filters(status or status_filter, workflow, q, moment, end),
        cursor=_cursor(cursor, "cursor"),
        before=_cursor(before, "before"),
        limit=limit,
        since=(since or "").strip() or None,
        until=(until or "").strip() or None,
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
        filters, cursor, before = query.filters, query.cursor, query.before
        fmt = answer_format(request)
        if fmt == "json":
            page = await runs.list_runs(filters, cursor, query.limit, before=before)
            inputs = await runs.inputs_outputs([r.id for r in page.runs])
            return Response(page_json(page, inputs), media_type=MediaType.JSON)
        page, counts = await runs.page_with_counts(filters, cursor, query.limit, before=before)
        context = {
            "page": page,
            "counts": counts,
            "filters": query.filters,
            "since_text": query.since,
            "until_text": query.until,
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
        pinned = pinned_view(request)
        if pinned:
            return Redirect(f"/workflows?{pinned}", status_code=303)
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
        detail = await runs.get_detail(run_id, history=20)
        if answer_format(request) == "json":
            body = detail_json(detail)
            body["history"] = [audit_json(e) for e in detail.history]
            return Response(body, media_type=MediaType.JSON)
        return Response(run_page(request, detail, now), media_type=MediaType.HTML)

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

        The body may edit the inputs (`{"inputs": {...}}`) or resume from where the run
        stopped (`{"from": "failure"}`) or after a completed node (`{"from": "<node>"}`),
        reusing the nodes that completed. A form's `preview` answers what the restart
        would do (the confirmation) and creates nothing.

        404: no such run. 400: the run is pending or running, or was already restarted
        (a run is restarted once; restart its latest attempt), invalid inputs (naming
        the field), or a resume that cannot reuse what it was asked to. 500: the stored
        snapshot is unusable, or scheduling failed (no run is left behind).
        """
        fmt = answer_format(request)
        via = "api" if fmt == "json" else "dashboard"
        ask = await _restart_request(request, runs, run_id)
        if ask.preview:
            preview = await runs.plan_restart(run_id, inputs=ask.inputs, resume=ask.resume)
            page = "runs/_restart_confirm.html" if fmt == "htmx" else "runs/restart.html"
            return template(
                page, plan=preview, run=preview.original, inputs_json=_dump(preview.inputs)
            )
        result = await runs.restart(run_id, trigger=via, inputs=ask.inputs, resume=ask.resume)
        background = BackgroundTask(_await, result.work) if result.work is not None else None
        plan = result.plan
        await request.app.state.access.record(
            identity_of(request),
            "restart",
            client=client_of(request),
            via=via,
            run_id=result.original.id,
            new_run_id=result.run_id,
            detail=_restart_detail(plan),
        )
        if fmt == "json":
            body: dict[str, Any] = {
                "status": "restarted",
                "message": result.message,
                "original_run_id": result.original.id,
                "run_id": result.run_id,
                "attempt": result.attempt,
                "restart_mode": plan.mode if plan else None,
                "estimated_cost_usd": round(plan.estimated_cost_usd, 6) if plan else 0.0,
            }
            return Response(
                body | _restart_detail(plan), media_type=MediaType.JSON, background=background
            )
        if fmt == "html":
            return Redirect(f"/workflows/{result.run_id}", status_code=303, background=background)
        if not row_target(request):
            # From the run's page or the edit form: go to the new run.
            redirect = Response("", headers={"HX-Redirect": f"/workflows/{result.run_id}"})
            redirect.background = background
            return redirect
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

    @get(
        "/{run_id:str}/edit",
        name="runs:edit",
        summary="The form to restart a run with edited inputs",
        include_in_schema=False,
        guards=[requires_operator],
    )
    async def edit_run(
        self,
        request: Request[Any, Any, Any],
        runs: NamedDependency[RunService],
        run_id: FromPath[str],
    ) -> Response[Any]:
        form = await runs.input_form(run_id)
        return template("runs/edit.html", form=form, run=form.run)

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
