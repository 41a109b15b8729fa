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

The built-in tools that fetch URLs (web_scrape, http_client, web_search's back end) are
held the same way: a host must be in `CA_ALLOWED_TOOL_HOSTS` (the search vendors and the
server's own `SERPER_BASE_URL` / `TAVILY_BASE_URL` are allowed), and link-local addresses
(cloud metadata) never, unless an operator lists the address itself. Tools that touch the
server (shell, files, ...) are off unless `CA_ENABLED_TOOLS` names them, in the CLI too.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_BASE_URLS",
    "DEFAULT_KEY_ENV",
    "DEFAULT_TOOL_HOSTS",
    "ProviderPolicy",
    "normalise_url",
]

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
# web_search's vendors: the key goes there anyway, so their hosts are no new exposure.
DEFAULT_TOOL_HOSTS = ("google.serper.dev", "api.tavily.com")
SERVER_TOOL_URL_VARS = ("SERPER_BASE_URL", "TAVILY_BASE_URL")
# Cloud metadata services outside 169.254.0.0/16 and fe80::/10 (AWS over IPv6).
_METADATA_ADDRESSES = frozenset({ipaddress.ip_address("fd00:ec2::254")})
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


def _host_port(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address, host in lower case."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:
        host, port = entry, ""
    if not port:
        return host, None
    # A port that is not a number matches nothing rather than every port.
    return host, int(port) if port.isdigit() else -1


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    # ::ffff:169.254.169.254 reaches the same place as 169.254.169.254.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class ProviderPolicy:
    """`trust_workflow`: the workflow's author runs it on their own machine (the CLI)."""

    trust_workflow: bool = False
    base_urls: frozenset[str] = field(
        default_factory=lambda: frozenset(normalise_url(u) for u in DEFAULT_BASE_URLS)
    )
    key_env: frozenset[str] = frozenset(DEFAULT_KEY_ENV)
    # Entries as written by the operator, lower case: `host`, `host:port`, `*.domain`.
    tool_hosts: frozenset[str] = frozenset(DEFAULT_TOOL_HOSTS)
    enabled_tools: frozenset[str] = frozenset()

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
            tool_hosts=frozenset(
                h.lower()
                for h in (
                    *DEFAULT_TOOL_HOSTS,
                    *(
                        urlsplit(env[v]).netloc.rpartition("@")[2]
                        for v in SERVER_TOOL_URL_VARS
                        if env.get(v)
                    ),
                    *_split(env.get("CA_ALLOWED_TOOL_HOSTS")),
                )
            ),
            enabled_tools=frozenset(_split(env.get("CA_ENABLED_TOOLS"))),
        )

    def _lists_ip(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(_ip(_host_port(entry)[0]) == ip for entry in self.tool_hosts)

    def refuse_tool_address(self, host: str) -> str | None:
        """Why a tool may not connect to the IP address `host` (a URL's literal host or
        what a name resolved to), or None. Host names themselves pass here."""
        ip = _ip(host)
        if ip is None:
            return None
        if (ip.is_link_local or ip in _METADATA_ADDRESSES) and not self._lists_ip(ip):
            return (
                f"address {ip} is link-local (cloud metadata) and refused: an operator can "
                "list the address itself in CA_ALLOWED_TOOL_HOSTS"
            )
        return None

    def _allows_host(self, host: str, port: int) -> bool:
        for entry in self.tool_hosts:
            want, want_port = _host_port(entry)
            if want_port not in (None, port):
                continue
            if want.startswith("*."):
                if host.endswith(want[1:]):
                    return True
            elif want.strip("[]") == host or (_ip(want) is not None and _ip(want) == _ip(host)):
                return True
        return False

    def refuse_tool_url(self, url: str) -> str | None:
        """Why a tool may not fetch `url`, or None when it may."""
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            return f"{url} is not an http or https URL"
        host = (parts.hostname or "").lower()
        if not host:
            return f"{url} has no host"
        try:
            port = parts.port or {"http": 80, "https": 443}[scheme]
        except ValueError:
            return f"{url} has an invalid port"
        refused = self.refuse_tool_address(host)
        if refused:
            return refused
        if self.trust_workflow or self._allows_host(host, port):
            return None
        return (
            f"host {host} is not allowed for tools on this server: an operator can add it "
            "to CA_ALLOWED_TOOL_HOSTS"
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
