"""Settings read once from the environment. Nothing else reads `os.environ` for them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_DATABASE_FILE", "Settings", "normalise_database_url"]

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


@dataclass(frozen=True)
class Settings:
    """What the process is configured with. Build it with `Settings.from_env()`."""

    database_url: str = field(default_factory=lambda: normalise_database_url(None))
    host: str = "127.0.0.1"
    port: int = 8000
    # How long a running run may go without a heartbeat before another process
    # may declare it interrupted; the owning host can tell sooner by its pid.
    heartbeat_seconds: float = 2.0
    stale_after_seconds: float = 30.0
    recovery_interval_seconds: float = 5.0
    csrf_secret: str = ""

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "database_url": normalise_database_url(env.get("DATABASE_URL")),
            "csrf_secret": env.get("CA_SECRET", ""),
        }
        for name, key in (
            ("stale_after_seconds", "CA_STALE_AFTER_SECONDS"),
            ("recovery_interval_seconds", "CA_RECOVERY_INTERVAL_SECONDS"),
        ):
            if env.get(key):
                try:
                    values[name] = float(env[key])
                except ValueError:
                    raise ValueError(f"{key}={env[key]!r} is not a number of seconds") from None
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))
