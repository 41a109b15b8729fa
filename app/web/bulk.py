"""BulkController: restart or cancel many runs at once, and a batch's progress.

`POST /workflows/restart` and `POST /workflows/cancel` take JSON (`{"ids": [...]}` or
`{"filter": {...}}`, `max_cost_usd`, `dry_run`; an `Idempotency-Key` header) or the
bulk bar's form (`ids`, or `all` with the list's filter fields). A dry run answers
what would happen; htmx gets it as the bar's confirmation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType
from litestar.params import FromPath
from litestar.response import Redirect

from app.errors import InvalidSelection, RunNotFound
from app.services.bulk import BulkResult, BulkService, Selection
from app.services.runs import STATUS_FILTERS, RunFilters
from app.web import schemas
from app.web.auth import client_of, identity_of, requires_operator
from app.web.render import answer_format, template
from app.web.runs import InvalidQuery, check_search, check_workflows, parse_time
from app.web.serializers import batch_json

__all__ = ["BulkController"]

MAX_KEY = 200
_FILTER_KEYS = {"status", "workflow", "q", "since", "until"}


def provide_bulk(request: Request[Any, Any, Any]) -> BulkService:
    bulk: BulkService = request.app.state.bulk
    return bulk


@dataclass(frozen=True)
class BulkRequest:
    selection: Selection
    max_cost_usd: float | None
    dry_run: bool
    idempotency_key: str | None


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool) or value is None:
        return bool(value)
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("", "0", "false", "no", "off"):
        return False
    raise InvalidSelection(f"{name} must be true or false, not {value!r}")


def _money(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        amount = float(value)
    except (TypeError, ValueError):
        raise InvalidSelection(f"max_cost_usd must be a number of dollars, not {value!r}") from None
    if not amount >= 0 or amount == float("inf"):
        raise InvalidSelection(f"max_cost_usd must be zero or more, not {value!r}")
    return amount


def _ids(values: Any, limit: int) -> tuple[str, ...]:
    if not isinstance(values, list) or not values:
        raise InvalidSelection('"ids" must be a non-empty list of run ids')
    if len(values) > limit:
        raise InvalidSelection(
            f'"ids" lists {len(values):,} runs; at most {limit:,} per request',
            code="too_many_runs",
        )
    found = []
    for position, value in enumerate(values):
        try:
            found.append(str(uuid.UUID(str(value))))
        except ValueError:
            raise InvalidSelection(f'"ids"[{position}] = {value!r} is not a run id') from None
    return tuple(dict.fromkeys(found))


def _filters(raw: Any, now: Any) -> RunFilters:
    if not isinstance(raw, dict):
        raise InvalidSelection('"filter" must be an object: {"status", "workflow", "q", "since"}')
    unknown = sorted(set(raw) - _FILTER_KEYS)
    if unknown:
        raise InvalidSelection(
            f'"filter" has unknown key(s) {", ".join(unknown)}; known: '
            + ", ".join(sorted(_FILTER_KEYS))
        )
    status = (raw.get("status") or "").strip() or None
    if status is not None and status not in STATUS_FILTERS:
        raise InvalidSelection(f"status {status!r} is not one of: {', '.join(STATUS_FILTERS)}")
    if raw.get("q") is not None and not isinstance(raw.get("q"), str):
        raise InvalidSelection('"q" must be a string: words or the start of a run id')
    try:
        q = check_search(raw.get("q"))
        workflows = check_workflows(raw.get("workflow"))
        since = parse_time(raw.get("since"), now, "since")
        until = parse_time(raw.get("until"), now, "until")
    except InvalidQuery as exc:
        raise InvalidSelection(exc.message) from None
    return RunFilters(status=status, workflow=workflows, text=q, since=since, until=until)


async def read_bulk_request(request: Request[Any, Any, Any], limit: int) -> BulkRequest:
    """The selection and options, from JSON or from the bulk bar's form."""
    now = request.app.state.clock()
    key = request.headers.get("idempotency-key")
    if answer_format(request) == "json" or "json" in request.headers.get("content-type", ""):
        try:
            body = await request.json()
        except Exception:
            raise InvalidSelection("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidSelection('the body must be a JSON object with "ids" or "filter"')
        if ("ids" in body) == ("filter" in body):
            raise InvalidSelection('give either "ids" (a list of run ids) or "filter", not both')
        selection = (
            Selection(ids=_ids(body["ids"], limit))
            if "ids" in body
            else Selection(filters=_filters(body["filter"], now))
        )
        options = (body.get("max_cost_usd"), body.get("dry_run"))
    else:
        form = await request.form()
        key = key or form.get("idempotency_key") or None
        if _flag(form.get("all"), "all"):
            fields: dict[str, Any] = {k: form.get(k) for k in _FILTER_KEYS if form.get(k)}
            if form.getall("workflow", []):
                fields["workflow"] = [str(w) for w in form.getall("workflow", [])]
            selection = Selection(filters=_filters(fields, now))
        else:
            selection = Selection(ids=_ids(form.getall("ids", []), limit))
        options = (form.get("max_cost_usd"), form.get("dry_run"))
    if key is not None and (len(key) > MAX_KEY or not key.isprintable()):
        raise InvalidSelection(
            f"the Idempotency-Key must be printable, at most {MAX_KEY} characters"
        )
    return BulkRequest(selection, _money(options[0]), _flag(options[1], "dry_run"), key)


class BulkController(Controller):
    path = "/workflows"
    dependencies = {"bulk": Provide(provide_bulk, sync_to_thread=False)}

    async def _answer(
        self,
        request: Request[Any, Any, Any],
        kind: str,
        ask: BulkRequest,
        result: BulkResult,
    ) -> Response[Any]:
        answer = result.answer
        fmt = answer_format(request)
        if not ask.dry_run and not result.replayed and answer.get("batch_id"):
            await request.app.state.access.record(
                identity_of(request),
                f"bulk_{kind}",
                client=client_of(request),
                via="api" if fmt == "json" else "dashboard",
                detail={k: v for k, v in answer.items() if k != "dry_run"},
            )
        if fmt == "json":
            return Response(answer, media_type=MediaType.JSON)
        if ask.dry_run:
            return template(
                "runs/_bulk_confirm.html" if fmt == "htmx" else "runs/bulk.html",
                kind=kind,
                answer=answer,
                ask=ask,
                selection=ask.selection.as_json(),
                key=str(uuid.uuid4()),
            )
        if fmt == "html":
            return Redirect(f"/workflows/batches/{answer['batch_id']}", status_code=303)
        batch = await request.app.state.bulk.batch(answer["batch_id"])
        return template("runs/_batch.html", batch=batch, answer=answer)

    @post(
        "/restart",
        name="runs:bulk-restart",
        status_code=200,
        summary="Restart every run of a selection (ids or a filter), within a spend cap",
        responses=schemas.BULK,
        guards=[requires_operator],
    )
    async def bulk_restart(
        self, request: Request[Any, Any, Any], bulk: NamedDependency[BulkService]
    ) -> Response[Any]:
        """Each finished run of the selection is restarted once (runs already restarted,
        pending or running are skipped and counted by reason). 400 `over_spend_cap` when
        the estimate is above the cap: nothing is created. `dry_run` creates nothing."""
        ask = await read_bulk_request(request, bulk.max_runs)
        identity = identity_of(request)
        result = await bulk.restart(
            ask.selection,
            actor=identity.name if identity else "anonymous",
            trigger="api" if answer_format(request) == "json" else "dashboard",
            max_cost_usd=ask.max_cost_usd,
            dry_run=ask.dry_run,
            idempotency_key=ask.idempotency_key,
        )
        return await self._answer(request, "restart", ask, result)

    @post(
        "/cancel",
        name="runs:bulk-cancel",
        status_code=200,
        summary="Cancel every pending or running run of a selection",
        responses=schemas.BULK,
        guards=[requires_operator],
    )
    async def bulk_cancel(
        self, request: Request[Any, Any, Any], bulk: NamedDependency[BulkService]
    ) -> Response[Any]:
        ask = await read_bulk_request(request, bulk.max_runs)
        identity = identity_of(request)
        result = await bulk.cancel(
            ask.selection,
            actor=identity.name if identity else "anonymous",
            dry_run=ask.dry_run,
            idempotency_key=ask.idempotency_key,
        )
        return await self._answer(request, "cancel", ask, result)

    @get(
        "/batches/{batch_id:str}",
        name="runs:batch",
        summary="A bulk action and the progress of its runs",
        responses=schemas.BATCH,
    )
    async def get_batch(
        self,
        request: Request[Any, Any, Any],
        bulk: NamedDependency[BulkService],
        batch_id: FromPath[str],
    ) -> Response[Any]:
        batch = await bulk.batch(batch_id)
        if batch is None:
            raise RunNotFound(f"no batch with id {batch_id!r}", code="batch_not_found")
        fmt = answer_format(request)
        if fmt == "json":
            return Response(batch_json(batch), media_type=MediaType.JSON)
        if fmt == "htmx":
            return template("runs/_batch.html", batch=batch, answer=batch.answer or {})
        return template("runs/batch.html", batch=batch, answer=batch.answer or {})
