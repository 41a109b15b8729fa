"""Settings read once from the environment. Nothing else reads `os.environ` for them."""

from __future__ import annotations

import os
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


def _split(value: str | None) -> list[str]:
    return [t.strip() for t in (value or "").split(",") if t.strip()]


def read_tokens(env: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Tokens from CA_OPERATOR_TOKENS / CA_VIEWER_TOKENS (comma-separated) and from the
    file named by CA_TOKENS_FILE (lines `operator: TOKEN` or `viewer: TOKEN`, `#` comments)."""
    tokens = {
        "operator": _split(env.get("CA_OPERATOR_TOKENS")),
        "viewer": _split(env.get("CA_VIEWER_TOKENS")),
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
            role, sep, token = line.partition(":")
            role, token = role.strip(), token.strip()
            if not sep or role not in tokens or not token:
                raise ValueError(
                    f"CA_TOKENS_FILE {path}, line {number}: write `operator: TOKEN` or "
                    "`viewer: TOKEN`"
                )
            tokens[role].append(token)
    for role, values in tokens.items():
        short = [t for t in values if len(t) < 16]
        if short:
            raise ValueError(f"{role} tokens must be at least 16 characters long")
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
    # Signs session cookies. Without it a random one is made per process, so
    # sessions end with the process and several dashboards cannot share them.
    secret: str = ""
    operator_tokens: tuple[str, ...] = ()
    viewer_tokens: tuple[str, ...] = ()
    max_inputs_bytes: int = 64 * 1024
    # "inprocess": runs execute in the dashboard process (the embedded default);
    # "queue": on procrastinate workers (`configurable-agents worker`), PostgreSQL only.
    execution: str = "inprocess"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "database_url": normalise_database_url(env.get("DATABASE_URL")),
            "secret": env.get("CA_SECRET", ""),
            "execution": env.get("EXECUTION", "inprocess").strip().lower() or "inprocess",
            **read_tokens(env),
        }
        for name, key in (
            ("stale_after_seconds", "CA_STALE_AFTER_SECONDS"),
            ("recovery_interval_seconds", "CA_RECOVERY_INTERVAL_SECONDS"),
            ("grace_seconds", "CA_GRACE_SECONDS"),
        ):
            if env.get(key):
                try:
                    values[name] = float(env[key])
                except ValueError:
                    raise ValueError(f"{key}={env[key]!r} is not a number of seconds") from None
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.execution not in ("inprocess", "queue"):
            raise ValueError(f"EXECUTION={self.execution!r}: use inprocess (default) or queue")
        if self.execution == "queue" and not self.is_postgres:
            raise ValueError(
                "EXECUTION=queue needs PostgreSQL: set DATABASE_URL=postgresql://user@host/db "
                "(the embedded SQLite database executes runs in the dashboard process)"
            )

    @property
    def auth_enabled(self) -> bool:
        return bool(self.operator_tokens or self.viewer_tokens)

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))
