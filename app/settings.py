"""Settings read once from the environment. Nothing else reads `os.environ` for them."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_DATABASE_FILE", "Settings", "normalise_database_url", "read_tokens"]

DEFAULT_DATABASE_FILE = "configurable-agents.db"


def normalise_database_url(url: str | None, *, cwd: Path | None = None) -> str:
    """Return an absolute database URL: `sqlite:///<abs path>` or the PostgreSQL URL as given.

    A relative SQLite path is resolved against the working directory now, so a
    later `chdir` cannot silently open a second, empty database.
    """
    base = cwd or Path.cwd()
    if not url:
        return f"sqlite:///{(base / DEFAULT_DATABASE_FILE).resolve()}"
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_absolute():
            path = (base / path).resolve()
        return f"sqlite:///{path}"
    if url.startswith(("postgres://", "postgresql://")):
        return url
    raise ValueError(
        f"DATABASE_URL {url!r} is not supported: use sqlite:///path/to/file.db "
        "or postgresql://user@host:port/dbname"
    )


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (value or "").split(",") if t.strip())


_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def split_named(value: str) -> tuple[str | None, str]:
    """`alice=TOKEN` → ("alice", TOKEN); a bare TOKEN has no name."""
    name, sep, token = value.partition("=")
    if sep and _NAME.fullmatch(name.strip()) and len(token.strip()) >= 16:
        return name.strip(), token.strip()
    return None, value.strip()


def weak_token_reason(token: str) -> str | None:
    """Why a token is too weak to use, or None."""
    if len(token) < 16:
        return "is shorter than 16 characters"
    if len(set(token)) < 6:
        return "has fewer than 6 different characters"
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(token)}
    if len(steps) == 1:
        return "is a simple sequence"
    return None


def read_tokens(env: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Tokens from CA_OPERATOR_TOKENS / CA_VIEWER_TOKENS (comma-separated, each `TOKEN` or
    `name=TOKEN`) and from the file named by CA_TOKENS_FILE (lines `operator: TOKEN`,
    `operator:alice: TOKEN`, `viewer: ...`; `#` comments). Names say who did what in the
    audit trail. Returned as `TOKEN` or `name=TOKEN` strings."""
    tokens = {
        "operator": list(_split(env.get("CA_OPERATOR_TOKENS"))),
        "viewer": list(_split(env.get("CA_VIEWER_TOKENS"))),
    }
    path = env.get("CA_TOKENS_FILE")
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"CA_TOKENS_FILE {path}: cannot read it ({exc.strerror})") from None
        for number, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            head, sep, token = line.rpartition(":")
            role, _, name = head.partition(":")
            role, name, token = role.strip(), name.strip(), token.strip()
            if not sep or role not in tokens or not token or (name and not _NAME.fullmatch(name)):
                raise ValueError(
                    f"CA_TOKENS_FILE {path}, line {number}: write `operator: TOKEN`, "
                    "`operator:NAME: TOKEN` or the same with `viewer`"
                )
            tokens[role].append(f"{name}={token}" if name else token)
    for role, values in tokens.items():
        for value in values:
            token_name, token = split_named(value)
            why = weak_token_reason(token)
            if why is not None:
                who = f" ({token_name})" if token_name else ""
                raise ValueError(f"an {role} token{who} {why}: use e.g. `openssl rand -hex 24`")
    return {"operator_tokens": tuple(tokens["operator"]), "viewer_tokens": tuple(tokens["viewer"])}


@dataclass(frozen=True)
class Settings:
    """What the process is configured with. Build it with `Settings.from_env()`."""

    database_url: str = field(default_factory=lambda: normalise_database_url(None))
    host: str = "127.0.0.1"
    port: int = 8000
    # How long a process may go without a heartbeat (in the database's time) before
    # another declares its runs interrupted; one on the same kernel and in the same
    # PID namespace can tell sooner by its pid.
    heartbeat_seconds: float = 2.0
    stale_after_seconds: float = 20.0
    recovery_interval_seconds: float = 5.0
    # On SIGTERM, how long running runs get to reach their next node before they are
    # handed back to another process.
    grace_seconds: float = 30.0
    # Keys the hash under which browser sessions are stored, so that the session table
    # alone signs no one in. Without it a random one is made per process: sessions then
    # end with the process and several dashboards cannot share them.
    secret: str = ""
    session_idle_seconds: float = 3600.0
    session_lifetime_seconds: float = 12 * 3600.0
    # Peers whose X-Forwarded-Proto / X-Forwarded-For (a TLS-terminating proxy) are
    # believed; the session cookie is `Secure` (and `__Host-`) when the request was HTTPS.
    trusted_proxies: tuple[str, ...] = ()
    operator_tokens: tuple[str, ...] = ()
    viewer_tokens: tuple[str, ...] = ()
    max_inputs_bytes: int = 64 * 1024
    # SQLite only: how often the dashboard looks for runs changed by any process (on
    # PostgreSQL it is told at once, by LISTEN/NOTIFY).
    live_poll_seconds: float = 0.5
    # The Host headers the dashboard answers (`CA_ALLOWED_HOSTS`, port included where the
    # browser sends one); by default the loopback names on `port`. Anything else gets 400,
    # so that a DNS-rebinding page cannot talk to a dashboard on loopback.
    allowed_hosts: tuple[str, ...] = ()
    # "inprocess": runs execute in the dashboard process (the embedded default);
    # "queue": on procrastinate workers (`configurable-agents worker`), PostgreSQL only.
    execution: str = "inprocess"
    # Bulk restarts: refused when the estimated cost exceeds this (or the request's own
    # `max_cost_usd`, whichever is lower), or when they would create more runs than
    # `bulk_max_runs` (one transaction each).
    bulk_max_cost_usd: float = 100.0
    bulk_max_runs: int = 10_000
    # The embedded mode: how many runs of a bulk restart execute at once in the dashboard.
    local_concurrency: int = 8
    # A bearer token that may read GET /metrics and nothing else (for a Prometheus scraper).
    metrics_token: str = ""
    # "text": warnings and errors, plain, on stderr; "json": one JSON
    # object per line, with an event per run state change and per request.
    log_format: str = "text"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "database_url": normalise_database_url(env.get("DATABASE_URL")),
            "secret": env.get("CA_SECRET", ""),
            "execution": env.get("EXECUTION", "inprocess").strip().lower() or "inprocess",
            "allowed_hosts": _split(env.get("CA_ALLOWED_HOSTS")),
            "trusted_proxies": _split(env.get("CA_TRUSTED_PROXIES")),
            "metrics_token": env.get("CA_METRICS_TOKEN", "").strip(),
            "log_format": env.get("CA_LOG_FORMAT", "text").strip().lower() or "text",
            **read_tokens(env),
        }
        for name, key in (
            ("stale_after_seconds", "CA_STALE_AFTER_SECONDS"),
            ("recovery_interval_seconds", "CA_RECOVERY_INTERVAL_SECONDS"),
            ("grace_seconds", "CA_GRACE_SECONDS"),
            ("session_idle_seconds", "CA_SESSION_IDLE_SECONDS"),
            ("session_lifetime_seconds", "CA_SESSION_LIFETIME_SECONDS"),
            ("live_poll_seconds", "CA_LIVE_POLL_SECONDS"),
            ("bulk_max_cost_usd", "CA_BULK_MAX_COST_USD"),
            ("bulk_max_runs", "CA_BULK_MAX_RUNS"),
            ("local_concurrency", "CA_LOCAL_CONCURRENCY"),
        ):
            if env.get(key):
                kind = int if name in ("bulk_max_runs", "local_concurrency") else float
                try:
                    values[name] = kind(env[key])
                except ValueError:
                    raise ValueError(f"{key}={env[key]!r} is not a {kind.__name__}") from None
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.secret and (len(self.secret) < 32 or len(set(self.secret)) < 8):
            raise ValueError(
                "CA_SECRET must be at least 32 characters of random data: use e.g. "
                "`openssl rand -hex 32`"
            )
        if self.metrics_token and (why := weak_token_reason(self.metrics_token)):
            raise ValueError(f"CA_METRICS_TOKEN {why}: use e.g. `openssl rand -hex 24`")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"CA_LOG_FORMAT={self.log_format!r}: use text (default) or json")
        if self.execution not in ("inprocess", "queue"):
            raise ValueError(f"EXECUTION={self.execution!r}: use inprocess (default) or queue")
        if self.execution == "queue" and not self.is_postgres:
            raise ValueError(
                "EXECUTION=queue needs PostgreSQL: set DATABASE_URL=postgresql://user@host/db "
                "(the embedded SQLite database executes runs in the dashboard process)"
            )

    @property
    def hosts(self) -> tuple[str, ...]:
        """The allowed Host headers: as configured, or the loopback names on our port."""
        if self.allowed_hosts:
            return self.allowed_hosts
        names = ("127.0.0.1", "localhost", "[::1]")
        return (*names, *(f"{n}:{self.port}" for n in names))

    @property
    def auth_enabled(self) -> bool:
        return bool(self.operator_tokens or self.viewer_tokens)

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))
