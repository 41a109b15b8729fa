"""Who may do what: tokens with roles and names, browser sessions kept on the server,
throttled failures, and the audit trail of every change.

- Tokens are kept only as SHA-256 digests and compared with `hmac.compare_digest`;
  they are never logged. A token may carry a name (`alice=TOKEN`), which the audit
  trail shows; an unnamed one shows as `token <first digits of its digest>`.
- A browser signs in once and gets a random cookie; the server keeps the session under
  a keyed hash of it, bound to the token's digest. Signing out deletes it; a token no
  longer configured ends its sessions on their next request; a session ends after an
  hour without use and twelve hours after sign-in (both configurable).
- Failed sign-ins and bearer attempts are counted per client: past the limit, 429 with
  Retry-After until the window has passed.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.errors import AppError
from app.settings import Settings, split_named
from app.store.access import AccessStore, AuditView

__all__ = ["AccessService", "Identity", "TokenBook", "TooManyAttempts"]

log = logging.getLogger("configurable_agents.access")


class TooManyAttempts(AppError):
    status = 429
    code = "too_many_attempts"
    title = "Too many attempts"

    def __init__(self, retry_after: int):
        super().__init__(
            f"too many failed attempts from this address: try again in {retry_after} s"
        )
        self.headers = {"Retry-After": str(retry_after)}


@dataclass(frozen=True)
class Identity:
    """Who is asking: a role, a name for the audit trail, and how they came."""

    role: str
    name: str
    via: str  # "open" (no tokens configured), "bearer" or "session"
    csrf: str = ""
    session_id: str | None = None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenBook:
    """The configured tokens, kept only as digests, with their roles and names."""

    def __init__(self, settings: Settings):
        self._entries: list[tuple[str, str, str]] = []
        for role, values in (
            ("operator", settings.operator_tokens),
            ("viewer", settings.viewer_tokens),
        ):
            for value in values:
                name, token = split_named(value)
                digest = _digest(token)
                self._entries.append((role, digest, name or f"token {digest[:8]}"))

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def find(self, token: str) -> tuple[str, str, str] | None:
        """(role, digest, name) of the token; every entry is compared, so timing tells
        nothing. Operator wins if the same token is configured twice."""
        return self.by_digest(_digest(token))

    def by_digest(self, digest: str) -> tuple[str, str, str] | None:
        found = None
        for role, expected, name in self._entries:
            if hmac.compare_digest(digest, expected) and (found is None or role == "operator"):
                found = (role, expected, name)
        return found

    def role_for(self, token: str) -> str | None:
        found = self.find(token)
        return found[0] if found else None


class Throttle:
    """Failures per client in a sliding window; past `limit`, the client waits."""

    def __init__(
        self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, collections.deque[float]] = {}

    def _recent(self, client: str) -> collections.deque[float]:
        now = self.clock()
        failures = self._failures.setdefault(client, collections.deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def check(self, client: str) -> None:
        failures = self._recent(client)
        if len(failures) >= self.limit:
            raise TooManyAttempts(max(1, int(failures[0] + self.window - self.clock()) + 1))

    def failed(self, client: str) -> None:
        self._failures.setdefault(client, collections.deque()).append(self.clock())
        if len(self._failures) > 10_000:  # many clients: forget the oldest
            self._failures.pop(next(iter(self._failures)))


class AccessService:
    def __init__(self, settings: Settings, store: AccessStore | None = None):
        self.tokens = TokenBook(settings)
        self.store = store or AccessStore()
        secret = settings.secret.encode() if settings.secret else secrets.token_bytes(32)
        self._key = hashlib.sha256(b"ca-session:" + secret).digest()
        self.idle = settings.session_idle_seconds
        self.lifetime = settings.session_lifetime_seconds
        self.throttle = Throttle()

    def _session_id(self, cookie: str) -> str:
        return hmac.new(self._key, cookie.encode(), hashlib.sha256).hexdigest()

    # -- signing in and out ---------------------------------------------------------

    async def sign_in(self, token: str, client: str) -> tuple[str, Identity] | None:
        """A new session for a valid token: (cookie value, identity); None for a wrong
        token. Raises TooManyAttempts while the client is throttled."""
        found = self._check(token, client, "failed sign-in")
        if found is None:
            await self.record(None, "sign_in_failed", client=client, via="dashboard")
            return None
        role, digest, name = found
        cookie = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        session_id = self._session_id(cookie)
        await self.store.delete_expired_sessions(
            idle_seconds=self.idle, lifetime_seconds=self.lifetime
        )
        await self.store.create_session(
            session_id=session_id,
            role=role,
            token_digest=digest,
            token_name=name,
            csrf=csrf,
            client=client,
        )
        identity = Identity(role, name, "session", csrf, session_id)
        await self.record(identity, "sign_in", client=client, via="dashboard")
        return cookie, identity

    async def sign_out(self, identity: Identity | None, client: str) -> None:
        if identity is not None and identity.session_id is not None:
            await self.store.delete_session(identity.session_id)
            await self.record(identity, "sign_out", client=client, via="dashboard")

    # -- who is asking ----------------------------------------------------------------

    def open_identity(self) -> Identity:
        """No tokens configured: everyone who can reach the dashboard operates it."""
        return Identity("operator", "local", "open")

    def bearer(self, token: str, client: str) -> Identity | None:
        found = self._check(token, client, "invalid bearer token")
        return Identity(found[0], found[2], "bearer") if found is not None else None

    def _check(self, token: str, client: str, failure: str) -> tuple[str, str, str] | None:
        """The token's (role, digest, name), counting a failure against the client (and
        logging it, never the token); raises TooManyAttempts while it is throttled."""
        self.throttle.check(client)
        found = self.tokens.find(token)
        if found is None:
            self.throttle.failed(client)
            log.warning("%s from %s", failure, client)
            return None
        # A success does not clear the count: valid tokens in between must not buy
        # more guesses.
        return found

    async def session(self, cookie: str) -> Identity | None:
        """The signed-in identity of a session cookie, or None when the session does not
        exist, has expired, or its token is no longer configured (then it is deleted)."""
        session_id = self._session_id(cookie)
        row = await self.store.load_session(
            session_id,
            idle_seconds=self.idle,
            lifetime_seconds=self.lifetime,
            touch_after=min(60.0, self.idle / 4),
        )
        if row is None:
            return None
        found = self.tokens.by_digest(row.token_digest)
        if found is None:
            await self.store.delete_session(session_id)
            return None
        if row.due_for_touch:
            await self.store.touch_session(session_id)
        # The token's role now, should the configuration have moved it.
        return Identity(found[0], found[2], "session", row.csrf, session_id)

    # -- the audit trail --------------------------------------------------------------

    async def record(
        self,
        identity: Identity | None,
        action: str,
        *,
        client: str | None,
        via: str | None,
        run_id: str | None = None,
        new_run_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await self.store.record(
            actor=identity.name if identity else "anonymous",
            role=identity.role if identity else None,
            action=action,
            run_id=run_id,
            new_run_id=new_run_id,
            via=via,
            client=client,
            detail=detail,
        )

    async def audit(
        self, *, run_id: str | None = None, before: int | None = None, limit: int = 100
    ) -> list[AuditView]:
        return await self.store.entries(run_id=run_id, before=before, limit=limit)
