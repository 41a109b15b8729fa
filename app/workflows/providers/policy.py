"""Which endpoints a workflow may send prompts to, and which environment variables it
may use as API keys: the server's decision, not the workflow's.

A stored workflow is data that anyone who can start a run wrote. Executed by a
dashboard or a worker, `base_url: http://attacker/v1` with `api_key_env: CA_SECRET`
would send the server's secret to the attacker. So outside `configurable-agents run`
on the user's own machine, a workflow's `base_url` and `api_key_env` are honoured only
when the server allows them: by default the four vendors' documented endpoints and key
variables (and Ollama on loopback), plus what `CA_ALLOWED_BASE_URLS` and
`CA_ALLOWED_KEY_ENV` add. The server's own `<PROVIDER>_BASE_URL` variables are its
decision too, so they are allowed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["DEFAULT_BASE_URLS", "DEFAULT_KEY_ENV", "ProviderPolicy", "normalise_url"]

DEFAULT_BASE_URLS = (
    "https://api.openai.com/v1",
    "https://generativelanguage.googleapis.com/v1beta/openai",
    "https://api.anthropic.com/v1",
    "http://localhost:11434/v1",
    "http://127.0.0.1:11434/v1",
    "http://[::1]:11434/v1",
)
DEFAULT_KEY_ENV = (
    "OPENAI_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "ANTHROPIC_API_KEY",
    "OLLAMA_API_KEY",
)
SERVER_BASE_URL_VARS = (
    "OPENAI_BASE_URL",
    "GOOGLE_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "OLLAMA_BASE_URL",
)
# Never an API key, whoever asks: the server's own secrets.
_NEVER_KEYS = ("CA_", "DATABASE_URL", "PGPASSWORD")


def normalise_url(url: str) -> str:
    """Scheme and host in lower case, the default port dropped, no trailing slash."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    try:
        port = parts.port
    except ValueError:
        return url.strip()
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


@dataclass(frozen=True)
class ProviderPolicy:
    """`trust_workflow`: the workflow's author runs it on their own machine (the CLI)."""

    trust_workflow: bool = False
    base_urls: frozenset[str] = field(
        default_factory=lambda: frozenset(normalise_url(u) for u in DEFAULT_BASE_URLS)
    )
    key_env: frozenset[str] = frozenset(DEFAULT_KEY_ENV)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, trust_workflow: bool = False
    ) -> ProviderPolicy:
        env = os.environ if env is None else env
        urls: Iterable[str] = (
            *DEFAULT_BASE_URLS,
            *(env[v] for v in SERVER_BASE_URL_VARS if env.get(v)),
            *_split(env.get("CA_ALLOWED_BASE_URLS")),
        )
        return cls(
            trust_workflow=trust_workflow,
            base_urls=frozenset(normalise_url(u) for u in urls),
            key_env=frozenset((*DEFAULT_KEY_ENV, *_split(env.get("CA_ALLOWED_KEY_ENV")))),
        )

    def refuse_base_url(self, url: str) -> str | None:
        """Why the workflow may not send prompts to `url`, or None when it may."""
        if self.trust_workflow or normalise_url(url) in self.base_urls:
            return None
        return (
            f"base_url {url} is not allowed on this server: an operator can add it to "
            "CA_ALLOWED_BASE_URLS"
        )

    def refuse_vendor_key(
        self,
        *,
        names: tuple[str, ...],
        own_keys: tuple[str, ...],
        url: str | None,
        own_urls: tuple[str, ...],
        needs_key: bool,
    ) -> str | None:
        """A vendor's key goes only to that vendor's own endpoint (or the server's own
        `<PROVIDER>_BASE_URL`), never to another allowed URL such as loopback Ollama:
        a key the operator added with CA_ALLOWED_KEY_ENV may go to any allowed URL."""
        if self.trust_workflow or not needs_key:
            return None
        vendor = [n for n in names if n in DEFAULT_KEY_ENV]
        if not vendor:
            return None
        foreign = [n for n in vendor if n not in own_keys]
        if foreign:
            return f"api_key_env {foreign[0]} is another provider's key; it is sent only to its own"
        own = {normalise_url(u) for u in own_urls if u}
        if url is not None and normalise_url(url) not in own:
            return (
                f"{' or '.join(vendor)} is sent only to the provider's own endpoint, not to "
                f"{url}: name another key in api_key_env (allowed by CA_ALLOWED_KEY_ENV)"
            )
        return None

    def refuse_key_env(self, name: str) -> str | None:
        """Why the workflow may not use the variable `name` as its API key, or None."""
        if name.upper().startswith(_NEVER_KEYS):
            return f"api_key_env {name} names one of the server's own secrets, never an API key"
        if self.trust_workflow or name in self.key_env:
            return None
        return (
            f"api_key_env {name} is not allowed on this server: an operator can add it to "
            "CA_ALLOWED_KEY_ENV"
        )
