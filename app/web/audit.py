"""The audit trail: who restarted, cancelled, signed in or out, and from where."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.enums import MediaType
from litestar.params import FromQuery

from app.errors import AppError
from app.web.auth import requires_operator
from app.web.render import answer_format, template
from app.web.serializers import audit_json

__all__ = ["AuditController"]

PAGE = 100


class AuditController(Controller):
    @get(
        "/audit",
        name="audit:list",
        summary="The audit trail, newest first",
        guards=[requires_operator],
    )
    async def list_audit(
        self, request: Request[Any, Any, Any], before: FromQuery[int | None] = None
    ) -> Response[Any]:
        """`before`: an entry id, for the page after it."""
        if before is not None and not 1 <= before < 2**63:
            raise AppError(f"before {before} is not an entry id", code="invalid_query")
        entries = await request.app.state.access.audit(before=before, limit=PAGE)
        older = entries[-1].id if len(entries) == PAGE else None
        if answer_format(request) == "json":
            return Response(
                {"entries": [audit_json(e) for e in entries], "next_before": older},
                media_type=MediaType.JSON,
            )
        return template(
            "audit.html", entries=entries, older=older, now=request.app.state.clock(), nav="audit"
        )
