"""web_search, serper_search, web_scrape and http_client, as the original defines them.

Every URL is checked against the server's policy (ProviderPolicy.refuse_tool_url) before
each hop: redirects are followed by hand so a permitted host cannot bounce a request to
the cloud metadata service or a service on localhost. Names are resolved first and a
name that points to a link-local address is refused too. Requests carry only what the
workflow's arguments say (no proxy settings, .netrc or other server environment), and
at most _MAX_BYTES of any response is read.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from app.workflows.tools.base import Tool, ToolContext, ToolError
from app.workflows.tools.html_text import Document

if TYPE_CHECKING:
    # Imported where a request is made, not with the server: httpx brings its command
    # line client along (click, rich, pygments), megabytes a dashboard that runs no
    # web tool would carry all day.
    import httpx

_MAX_BYTES = 1_000_000
_REDIRECTS = 5
_SERPER_URL = "https://google.serper.dev"
_TAVILY_URL = "https://api.tavily.com"
# Dropped when a redirect leaves the origin, as requests (the original's client) does.
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")


@dataclass
class _Response:
    status: int
    headers: httpx.Headers
    body: bytes
    encoding: str

    @property
    def text(self) -> str:
        try:
            return self.body.decode(self.encoding, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


async def _checked(url: str, ctx: ToolContext) -> httpx.URL:
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ToolError(f"invalid URL {url}: {exc}") from None
    refused = ctx.policy.refuse_tool_url(str(parsed))
    if refused:
        raise ToolError(refused)
    # The policy (urllib) and httpx must read the same host, or a crafted URL could pass
    # the check as one host and be sent to another.
    if (urlsplit(str(parsed)).hostname or "").lower() != parsed.host.lower():
        raise ToolError(f"invalid URL {url}: ambiguous host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parsed.host, port, type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise ToolError(f"cannot resolve {parsed.host}: {exc}") from None
    for *_, sockaddr in infos:
        refused = ctx.policy.refuse_tool_address(str(sockaddr[0]))
        if refused:
            raise ToolError(f"{parsed.host} resolves to a refused address: {refused}")
    return parsed


async def _read(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > _MAX_BYTES:
            break
    return bytes(body[:_MAX_BYTES])


async def fetch(
    ctx: ToolContext,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    redirects: int = _REDIRECTS,
) -> _Response:
    import httpx

    headers = httpx.Headers(headers or {})
    # trust_env=False: no HTTP(S)_PROXY, no .netrc credentials, nothing of the server's.
    async with httpx.AsyncClient(
        timeout=ctx.timeout, follow_redirects=False, trust_env=False
    ) as client:
        for _ in range(redirects + 1):
            target = await _checked(url, ctx)
            try:
                async with client.stream(method, target, headers=headers, content=content) as r:
                    if not (r.is_redirect and r.headers.get("location")):
                        body = await _read(r)
                        return _Response(
                            r.status_code, r.headers, body, r.charset_encoding or "utf-8"
                        )
                    following = target.join(r.headers["location"])
                    status = r.status_code
            except httpx.HTTPError as exc:
                raise ToolError(
                    f"request to {target} failed: {type(exc).__name__}: {exc}"
                ) from None
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, content = "GET", None
                for name in ("content-type", "content-length"):
                    headers.pop(name, None)
            if (following.scheme, following.host, following.port) != (
                target.scheme,
                target.host,
                target.port,
            ):
                for name in _CREDENTIAL_HEADERS:
                    headers.pop(name, None)
            url = str(following)
    raise ToolError(f"too many redirects (more than {redirects}) from {url}")


# --- web_search and serper_search -------------------------------------------------------


def search_backend(env: Any) -> tuple[str, str, str]:
    """(provider, key, base URL) as the server's environment sets them. The original reads
    WEB_SEARCH_PROVIDER (default serper); without it we take whichever key is set."""
    provider = (env.get("WEB_SEARCH_PROVIDER") or "").strip().lower()
    if not provider:
        if env.get("SERPER_API_KEY"):
            provider = "serper"
        elif env.get("TAVILY_API_KEY"):
            provider = "tavily"
        else:
            raise ToolError(
                "web_search needs a search API key on the server: an operator sets "
                "SERPER_API_KEY or TAVILY_API_KEY"
            )
    if provider not in ("serper", "tavily"):
        raise ToolError(f"Unsupported search provider: {provider} (WEB_SEARCH_PROVIDER)")
    var = f"{provider.upper()}_API_KEY"
    if not env.get(var):
        raise ToolError(
            f"web_search uses {provider} (WEB_SEARCH_PROVIDER) and needs {var} on the server"
        )
    default = _SERPER_URL if provider == "serper" else _TAVILY_URL
    base = (env.get(f"{provider.upper()}_BASE_URL") or default).rstrip("/")
    return provider, env[var], base


async def _post_json(ctx: ToolContext, url: str, headers: dict[str, str], payload: Any) -> Any:
    # No redirects: the request carries the server's key, which goes to this URL only.
    headers = {**headers, "Content-Type": "application/json"}
    r = await fetch(
        ctx,
        "POST",
        url,
        headers=headers,
        content=json.dumps(payload).encode(),
        redirects=0,
    )
    if r.status >= 400:
        raise ToolError(f"search API returned HTTP {r.status}: {r.text[:200]}")
    try:
        return json.loads(r.body)
    except ValueError:
        raise ToolError("search API returned something that is not JSON") from None


async def _web_search(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    provider, key, base = search_backend(ctx.env)
    query, num = args["query"], args.get("num_results", 10)
    if provider == "serper":
        data = await _post_json(ctx, f"{base}/search", {"X-API-KEY": key}, {"q": query, "num": num})
        results = [
            {"title": i.get("title", ""), "url": i.get("link", ""), "snippet": i.get("snippet", "")}
            for i in data.get("organic", [])[:num]
        ]
        box = data.get("answerBox")
        if box:
            results.insert(
                0,
                {
                    "title": "Answer",
                    "url": "",
                    "snippet": box.get("answer") or box.get("snippet", ""),
                },
            )
    else:
        # What tavily-python's TavilyClient.search(query, max_results=n) sends.
        data = await _post_json(
            ctx,
            f"{base}/search",
            {"Authorization": f"Bearer {key}"},
            {"query": query, "search_depth": "basic", "topic": "general", "max_results": num},
        )
        results = [
            {"title": i.get("title", ""), "url": i.get("url", ""), "snippet": i.get("content", "")}
            for i in data.get("results", [])
        ]
    return {"results": results, "provider": provider}


def _serper_snippets(data: dict[str, Any], k: int) -> str:
    """The text LangChain's GoogleSerperAPIWrapper.run returns, which the original's
    serper_search tool gave the model."""
    box = data.get("answerBox") or {}
    if box.get("answer"):
        return str(box["answer"])
    if box.get("snippet"):
        return str(box["snippet"]).replace("\n", " ")
    if box.get("snippetHighlighted"):
        return " ".join(map(str, box["snippetHighlighted"]))
    snippets: list[str] = []
    kg = data.get("knowledgeGraph") or {}
    if kg:
        title = kg.get("title")
        if kg.get("type"):
            snippets.append(f"{title}: {kg['type']}.")
        if kg.get("description"):
            snippets.append(kg["description"])
        snippets += [f"{title} {a}: {v}." for a, v in (kg.get("attributes") or {}).items()]
    for result in data.get("organic", [])[:k]:
        if "snippet" in result:
            snippets.append(result["snippet"])
        snippets += [f"{a}: {v}." for a, v in (result.get("attributes") or {}).items()]
    return " ".join(snippets) or "No good Google Search Result was found"


async def _serper_search(args: dict[str, Any], ctx: ToolContext) -> str:
    key = ctx.env.get("SERPER_API_KEY")
    if not key:
        raise ToolError("serper_search needs SERPER_API_KEY on the server")
    base = (ctx.env.get("SERPER_BASE_URL") or _SERPER_URL).rstrip("/")
    payload = {"q": args["query"], "gl": "us", "hl": "en", "num": 10}
    data = await _post_json(ctx, f"{base}/search", {"X-API-KEY": key}, payload)
    return _serper_snippets(data, 10)


# --- web_scrape and http_client ----------------------------------------------------------


async def _web_scrape(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    url, selector = args["url"], args.get("selector")
    r = await fetch(ctx, "GET", url, headers={"User-Agent": "Mozilla/5.0"})
    if r.status >= 400:
        raise ToolError(f"HTTP {r.status} from {url}")
    page = await asyncio.to_thread(Document, r.text)
    title = page.first("title")
    if selector:
        content = "\n".join(e.text(" ") for e in page.select(selector))
    else:
        # The original reads <body> only; a page without one is read whole.
        body = page.first("body") or page.root
        content = body.text("\n")
    return {
        "url": url,
        "title": title.text("") if title else "",
        "content": content[:10000],
        "extracted_text": content[:5000] if selector else "",
        "error": None,
    }


_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


async def _http_client(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    method = args["method"].upper()
    if method not in _METHODS:
        raise ToolError(f"Invalid method: {method}. Allowed: {_METHODS}")
    import httpx

    try:
        headers = httpx.Headers({str(k): str(v) for k, v in (args.get("headers") or {}).items()})
    except (TypeError, ValueError) as exc:
        raise ToolError(f"invalid headers: {exc}") from None
    body = args.get("body")
    content = None
    if isinstance(body, dict | list) and body:
        headers["Content-Type"] = "application/json"
        content = json.dumps(body).encode()
    elif body not in (None, "", {}, []):
        content = str(body).encode()
    r = await fetch(ctx, method, args["url"], headers=headers, content=content)
    try:
        parsed: Any = json.loads(r.body)
    except ValueError:
        parsed = r.text[:10000]
    return {"status_code": r.status, "headers": dict(r.headers), "body": parsed, "error": None}


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


TOOLS = (
    Tool(
        name="serper_search",
        description=(
            "Search the web using Google Search via Serper API. "
            "Useful for finding current information, news, articles, "
            "and general web content. Input should be a search query string."
        ),
        parameters={
            "type": "object",
            "properties": {"query": _string("Search query")},
            "required": ["query"],
        },
        gated=False,
        impl=_serper_search,
    ),
    Tool(
        name="web_search",
        description=(
            "Search the web using Serper or Tavily API. "
            "Returns a list of search results with title, URL, and snippet. "
            "Input should be a dict with 'query' (required) and 'num_results' "
            "(optional, default 10)."
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": _string("Search query string"),
                "num_results": {
                    "type": "integer",
                    "description": "Number of results to return (default: 10)",
                },
            },
            "required": ["query"],
        },
        gated=False,
        impl=_web_search,
    ),
    Tool(
        name="web_scrape",
        description=(
            "Extract text content from a web page. "
            "Input should be a dict with 'url' (required) and 'selector' (optional CSS "
            "selector). Returns title, content, and extracted text."
        ),
        parameters={
            "type": "object",
            "properties": {
                "url": _string("URL to scrape"),
                "selector": _string("Optional CSS selector for targeted extraction"),
            },
            "required": ["url"],
        },
        gated=False,
        impl=_web_scrape,
    ),
    Tool(
        name="http_client",
        description=(
            "Make an HTTP request. "
            "Input should be a dict with 'method' (required: GET, POST, PUT, DELETE), "
            "'url' (required), 'headers' (optional), and 'body' (optional). "
            "Returns status code, headers, and response body."
        ),
        parameters={
            "type": "object",
            "properties": {
                "method": {
                    "type": "string",
                    "enum": _METHODS,
                    "description": "HTTP method (GET, POST, PUT, DELETE)",
                },
                "url": _string("Request URL"),
                "headers": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "Optional request headers",
                },
                "body": {
                    "anyOf": [{"type": "object"}, {"type": "string"}],
                    "description": "Optional request body (an object is sent as JSON)",
                },
            },
            "required": ["method", "url"],
        },
        gated=False,
        impl=_http_client,
    ),
)
