"""Signed-in browser sessions and the audit trail."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from app.store.dbtime import db_ago, db_now
from app.store.engine import Read
from app.store.models import AuditView
from app.store.tables import AuditEntry, WebSession

__all__ = ["AccessStore", "AuditView", "SessionRow", "audit_views", "history_query"]


@dataclass(frozen=True)
class SessionRow:
    id: str
    role: str
    token_digest: str
    token_name: str | None
    csrf: str
    # The last-seen time is older than a minute: time to write it again.
    due_for_touch: bool


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


class AccessStore:
    async def create_session(
        self,
        *,
        session_id: str,
        role: str,
        token_digest: str,
        token_name: str | None,
        csrf: str,
        client: str | None,
    ) -> None:
        now = db_now()
        await WebSession.raw(
            "INSERT INTO web_session (id, role, token_digest, token_name, csrf, client,"
            f" created_at, last_seen_at) VALUES ({{}}, {{}}, {{}}, {{}}, {{}}, {{}}, {now}, {now})",
            session_id,
            role,
            token_digest,
            token_name,
            csrf,
            client,
        )

    async def load_session(
        self,
        session_id: str,
        *,
        idle_seconds: float,
        lifetime_seconds: float,
        touch_after: float = 60.0,
    ) -> SessionRow | None:
        """The session, unless it has been idle or alive for too long (database time).
        Its last use is written again at most every `touch_after` seconds."""
        rows = await WebSession.raw(
            "SELECT id, role, token_digest, token_name, csrf,"
            f" last_seen_at < {db_ago()} AS due FROM web_session WHERE id = {{}}"
            f" AND created_at > {db_ago()} AND last_seen_at > {db_ago()}",
            touch_after,
            session_id,
            lifetime_seconds,
            idle_seconds,
        )
        if not rows:
            return None
        r = rows[0]
        return SessionRow(
            r["id"], r["role"], r["token_digest"], r["token_name"], r["csrf"], bool(r["due"])
        )

    async def touch_session(self, session_id: str) -> None:
        await WebSession.raw(
            f"UPDATE web_session SET last_seen_at = {db_now()} WHERE id = {{}}", session_id
        )

    async def delete_session(self, session_id: str) -> None:
        await WebSession.raw("DELETE FROM web_session WHERE id = {}", session_id)

    async def delete_expired_sessions(
        self, *, idle_seconds: float, lifetime_seconds: float
    ) -> None:
        await WebSession.raw(
            f"DELETE FROM web_session WHERE created_at < {db_ago()} OR last_seen_at < {db_ago()}",
            lifetime_seconds,
            idle_seconds,
        )

    async def record(
        self,
        *,
        actor: str,
        role: str | None,
        action: str,
        run_id: str | None = None,
        new_run_id: str | None = None,
        via: str | None = None,
        client: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await AuditEntry.raw(
            "INSERT INTO audit_entry (at, actor, role, action, run_id, new_run_id, via, client,"
            f" detail) VALUES ({db_now()}, {{}}, {{}}, {{}}, {{}}, {{}}, {{}}, {{}}, {{}})",
            actor,
            role,
            action,
            _uuid(run_id),
            _uuid(new_run_id),
            via,
            client,
            json.dumps(detail) if detail else None,
        )

    async def entries(
        self, *, run_id: str | None = None, before: int | None = None, limit: int = 100
    ) -> list[AuditView]:
        """Newest first; about one run (as the run acted on or the run it created)."""
        return audit_views(await history_query(run_id, before=before, limit=limit).raw())


def history_query(run_id: str | uuid.UUID | None, *, before: int | None = None, limit: int) -> Read:
    """The audit entries newest first; about one run, as the run acted on or the run
    it created (see `audit_views`)."""
    conditions: list[str] = []
    args: list[uuid.UUID | int] = []
    if run_id is not None:
        conditions.append("(run_id = {} OR new_run_id = {})")
        args += [uuid.UUID(str(run_id)), uuid.UUID(str(run_id))]
    if before is not None:
        conditions.append("id < {}")
        args.append(before)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return Read(
        AuditEntry,
        "SELECT id, at, actor, role, action, run_id, new_run_id, via, client, detail"
        f" FROM audit_entry{where} ORDER BY id DESC LIMIT {{}}",
        (*args, limit),
    )


def audit_views(rows: list[dict[str, Any]]) -> list[AuditView]:
    return [
        AuditView(
            id=r["id"],
            at=r["at"],
            actor=r["actor"],
            role=r["role"],
            action=r["action"],
            run_id=str(r["run_id"]) if r["run_id"] else None,
            new_run_id=str(r["new_run_id"]) if r["new_run_id"] else None,
            via=r["via"],
            client=r["client"],
            detail=json.loads(r["detail"]) if r["detail"] else None,
        )
        for r in rows
    ]
