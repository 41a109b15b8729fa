"""The original format's built-in tools: what each returns, and what the server refuses."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.workflows.providers.policy import ProviderPolicy
from app.workflows.tools import (
    TOOL_NAMES,
    ToolContext,
    ToolError,
    get_tool,
    openai_schema,
    tool_problem,
)

GATED = (
    "shell",
    "process",
    "env_vars",
    "file_read",
    "file_write",
    "file_glob",
    "file_move",
    "sql_query",
    "dataframe_to_csv",
)


# --- a local HTTP server standing in for Serper, Tavily and web pages ---------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {"Content-Type": "text/html; charset=utf-8"}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self) -> bytes:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        return body

    def do_GET(self) -> None:
        self._record()
        redirects = {
            "/redirect-in": "/page",
            "/redirect-out": "http://elsewhere.example/",
            "/redirect-meta": "http://169.254.169.254/latest/meta-data/",
            "/loop": "/loop",
        }
        if self.path in redirects:
            self._send(302, b"", {"Location": redirects[self.path]})
        elif self.path == "/page":
            self._send(200, PAGE.encode())
        elif self.path == "/big":
            self._send(200, b"<body>" + b"x" * 2_000_000 + b"</body>")
        elif self.path == "/json":
            self._send(200, b'{"ok": true}', {"Content-Type": "application/json"})
        else:
            self._send(404, b"not found")

    def do_POST(self) -> None:
        body = self._record()
        if self.path == "/search":
            self._send(200, json.dumps(self.server.search_reply).encode(), {"X-Kind": "search"})
        else:
            echo = {"method": "POST", "body": body.decode(), "type": self.headers["Content-Type"]}
            self._send(201, json.dumps(echo).encode(), {"Content-Type": "application/json"})


class _Server(ThreadingHTTPServer):
    requests: list[dict[str, Any]]
    search_reply: dict[str, Any]


PAGE = """<!doctype html><html><head><title> The Page </title>
<style>body { color: red }</style><script>var secret = 1;</script></head>
<body><h1>Heading</h1><article class="post main"><p>First <b>para</b>.</p>
<div><p>Nested</p></div></article><p id="foot">Footer<br>line</p></body></html>"""


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.requests, srv.search_reply = [], {}
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


@pytest.fixture
def base(server: _Server) -> str:
    server.requests.clear()
    return f"http://127.0.0.1:{server.server_address[1]}"


def ctx(
    env: dict[str, str] | None = None, *, trust: bool = False, **policy_env: str
) -> ToolContext:
    """A context whose policy comes from `policy_env` (plus `env`), as the server builds it."""
    env = env or {}
    policy = ProviderPolicy.from_env({**env, **policy_env}, trust_workflow=trust)
    return ToolContext(policy=policy, config={}, timeout=5, env=env)


async def call(name: str, context: ToolContext, **arguments: Any) -> Any:
    result = await get_tool(name).call(arguments, context)
    json.dumps(result)  # what the loop hands back to the model must serialise
    return result


# --- the registry -----------------------------------------------------------------------


def test_every_original_tool_is_there_with_an_openai_schema() -> None:
    assert set(TOOL_NAMES) == {
        "serper_search",
        "web_search",
        "web_scrape",
        "http_client",
        "json_parse",
        "yaml_parse",
        *GATED,
    }
    for name in TOOL_NAMES:
        tool = get_tool(name)
        schema = openai_schema(tool)
        assert schema["type"] == "function"
        assert schema["function"]["name"] == name
        assert schema["function"]["description"] == tool.description
        params = schema["function"]["parameters"]
        assert params["type"] == "object"
        assert set(params["required"]) <= set(params["properties"])
        assert tool.gated == (name in GATED)
    assert openai_schema(get_tool("web_search"))["function"]["parameters"]["required"] == ["query"]


def test_tool_problem_names_the_fix() -> None:
    policy = ProviderPolicy.from_env({})
    assert "did you mean 'web_search'" in (tool_problem("web_serch", policy, {}) or "")
    assert "unknown tool 'zzz'" in (tool_problem("zzz", policy, {}) or "")
    assert tool_problem("shell", policy, {}) == (
        "tool 'shell' touches the server and is off: an operator enables it with "
        "CA_ENABLED_TOOLS=shell"
    )
    enabled = ProviderPolicy.from_env({"CA_ENABLED_TOOLS": "shell, file_read"})
    assert tool_problem("shell", enabled, {}) is None
    assert tool_problem("file_read", enabled, {}) is None
    assert tool_problem("file_write", enabled, {}) is not None
    # The CLI trusts the workflow's URLs, not its wish to run commands on the machine.
    trusted = ProviderPolicy.from_env({}, trust_workflow=True)
    assert tool_problem("shell", trusted, {}) is not None
    assert tool_problem("json_parse", policy, {}) is None


def test_web_search_needs_a_key_on_the_server() -> None:
    policy = ProviderPolicy.from_env({})
    why = tool_problem("web_search", policy, {})
    assert why and "SERPER_API_KEY" in why and "TAVILY_API_KEY" in why
    assert tool_problem("web_search", policy, {"SERPER_API_KEY": "k"}) is None
    assert tool_problem("web_search", policy, {"TAVILY_API_KEY": "k"}) is None
    why = tool_problem(
        "web_search", policy, {"WEB_SEARCH_PROVIDER": "tavily", "SERPER_API_KEY": "k"}
    )
    assert why and "TAVILY_API_KEY" in why
    assert "SERPER_API_KEY" in (tool_problem("serper_search", policy, {}) or "")
    with pytest.raises(ToolError, match="did you mean"):
        get_tool("json_pars")


async def test_arguments_are_checked_with_plain_messages() -> None:
    with pytest.raises(ToolError, match="needs the argument json_string"):
        await call("json_parse", ctx())
    with pytest.raises(ToolError, match="has no argument text"):
        await call("json_parse", ctx(), text="{}")
    with pytest.raises(ToolError, match="must be of type string"):
        await call("json_parse", ctx(), json_string=1)


# --- data ---------------------------------------------------------------------------------


async def test_json_parse() -> None:
    assert await call("json_parse", ctx(), json_string='{"name": "Alice", "n": [1, 2]}') == {
        "parsed": {"name": "Alice", "n": [1, 2]},
        "error": None,
    }
    with pytest.raises(ToolError, match=r"^Invalid JSON: Expecting"):
        await call("json_parse", ctx(), json_string="{name: Alice")
    with pytest.raises(ToolError, match="Invalid JSON"):
        await call("json_parse", ctx(), json_string="[" * 100_000)


async def test_yaml_parse() -> None:
    result = await call("yaml_parse", ctx(), yaml_string="name: Alice\nage: 30\nborn: 2001-02-03")
    assert result == {"parsed": {"name": "Alice", "age": 30, "born": "2001-02-03"}, "error": None}
    with pytest.raises(ToolError, match=r"^Invalid YAML"):
        await call("yaml_parse", ctx(), yaml_string="a: [1, 2\nb: c")
    # No Python objects: safe_load only.
    with pytest.raises(ToolError, match=r"^Invalid YAML"):
        await call("yaml_parse", ctx(), yaml_string="!!python/object/apply:os.system ['true']")
    with pytest.raises(ToolError, match="longer than"):
        await call("yaml_parse", ctx(), yaml_string="a: " + "x" * 300_000)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    with pytest.raises(ToolError, match="expands to more than"):
        await call("yaml_parse", ctx(), yaml_string=bomb)


async def test_sql_query_and_dataframe_to_csv(tmp_path: Path) -> None:
    on = ctx({"ALLOWED_PATHS": str(tmp_path)}, CA_ENABLED_TOOLS="sql_query,dataframe_to_csv")
    result = await call("sql_query", on, query="SELECT 1 AS num, 'a' AS s")
    assert result == {
        "rows": [{"num": 1, "s": "a"}],
        "columns": ["num", "s"],
        "row_count": 1,
        "error": None,
    }
    with pytest.raises(ToolError, match="Only SELECT"):
        await call("sql_query", on, query="PRAGMA table_info(x)")
    with pytest.raises(ToolError, match="Dangerous keyword 'DROP'"):
        await call("sql_query", on, query="SELECT 1; DROP TABLE x")
    with pytest.raises(ToolError, match="not allowed"):
        await call("sql_query", on, query="SELECT 1", connection_string="/etc/hosts")

    out = tmp_path / "out.csv"
    rows = [{"name": "Alice", "age": 30}, {"name": "Bob", "city": "Oslo"}]
    result = await call("dataframe_to_csv", on, data=rows, path=str(out))
    assert result == {"path": str(out), "rows_written": 2, "error": None}
    assert out.read_text() == "name,age,city\nAlice,30,\nBob,,Oslo\n"
    await call(
        "dataframe_to_csv", on, data={"a": [1, 2], "b": ["x", "y"]}, path=str(out), index=True
    )
    assert out.read_text() == ",a,b\n0,1,x\n1,2,y\n"
    with pytest.raises(ToolError, match="same length"):
        await call("dataframe_to_csv", on, data={"a": [1, 2], "b": [1]}, path=str(out))
    with pytest.raises(ToolError, match="not allowed"):
        await call("dataframe_to_csv", on, data=rows, path="/tmp/../etc/out.csv")

    db = tmp_path / "data.db"
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (7)")
    conn.close()
    result = await call("sql_query", on, query="SELECT x FROM t", connection_string=str(db))
    assert result["rows"] == [{"x": 7}]


# --- web_search ---------------------------------------------------------------------------


async def test_web_search_through_serper(server: _Server, base: str) -> None:
    server.search_reply = {
        "answerBox": {"answer": "42"},
        "organic": [
            {"title": "One", "link": "https://one.example", "snippet": "first"},
            {"title": "Two", "link": "https://two.example", "snippet": "second"},
        ],
    }
    env = {"SERPER_API_KEY": "serper-key", "SERPER_BASE_URL": base, "OPENAI_API_KEY": "no"}
    result = await call("web_search", ctx(env), query="meaning of life", num_results=1)
    assert result == {
        "results": [
            {"title": "Answer", "url": "", "snippet": "42"},
            {"title": "One", "url": "https://one.example", "snippet": "first"},
        ],
        "provider": "serper",
    }
    [sent] = server.requests
    assert (sent["method"], sent["path"]) == ("POST", "/search")
    assert sent["headers"]["X-API-KEY"] == "serper-key"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert json.loads(sent["body"]) == {"q": "meaning of life", "num": 1}
    assert "no" not in sent["headers"].values()


async def test_web_search_through_tavily(server: _Server, base: str) -> None:
    server.search_reply = {
        "results": [{"title": "T", "url": "https://t.example", "content": "c", "score": 0.9}]
    }
    env = {"TAVILY_API_KEY": "tvly-key", "TAVILY_BASE_URL": base + "/"}
    result = await call("web_search", ctx(env), query="q")
    assert result == {
        "results": [{"title": "T", "url": "https://t.example", "snippet": "c"}],
        "provider": "tavily",
    }
    [sent] = server.requests
    assert sent["path"] == "/search"
    assert sent["headers"]["Authorization"] == "Bearer tvly-key"
    body = json.loads(sent["body"])
    assert body["query"] == "q" and body["max_results"] == 10


async def test_serper_search_returns_the_snippets_text(server: _Server, base: str) -> None:
    server.search_reply = {"organic": [{"snippet": "alpha"}, {"snippet": "beta"}]}
    env = {"SERPER_API_KEY": "k", "SERPER_BASE_URL": base}
    assert await call("serper_search", ctx(env), query="x") == "alpha beta"
    assert json.loads(server.requests[0]["body"]) == {"q": "x", "gl": "us", "hl": "en", "num": 10}


async def test_web_search_base_url_obeys_the_policy(base: str) -> None:
    # The server's SERPER_BASE_URL is allowed by from_env; a policy built without it is not.
    env = {"SERPER_API_KEY": "k", "SERPER_BASE_URL": base}
    context = ToolContext(policy=ProviderPolicy.from_env({}), timeout=5, env=env)
    with pytest.raises(ToolError, match="CA_ALLOWED_TOOL_HOSTS"):
        await get_tool("web_search").call({"query": "q"}, context)
    with pytest.raises(ToolError, match="SERPER_API_KEY or TAVILY_API_KEY"):
        await call("web_search", ctx({}), query="q")


# --- web_scrape and http_client -----------------------------------------------------------


async def test_web_scrape_extracts_the_text(base: str) -> None:
    allowed = ctx(CA_ALLOWED_TOOL_HOSTS="127.0.0.1")
    result = await call("web_scrape", allowed, url=f"{base}/page")
    assert result["title"] == "The Page"
    assert result["content"] == "Heading\nFirst\npara\n.\nNested\nFooter\nline"
    assert result["extracted_text"] == "" and result["error"] is None
    assert "secret" not in result["content"] and "color" not in result["content"]
    picked = await call("web_scrape", allowed, url=f"{base}/page", selector="article.post p, #foot")
    assert picked["content"] == "First para .\nNested\nFooter line"
    assert picked["extracted_text"] == picked["content"]
    child = await call("web_scrape", allowed, url=f"{base}/page", selector="article > p")
    assert child["content"] == "First para ."
    with pytest.raises(ToolError, match="unsupported CSS selector"):
        await call("web_scrape", allowed, url=f"{base}/page", selector="a[href]")
    big = await call("web_scrape", allowed, url=f"{base}/big")
    assert len(big["content"]) == 10000
    with pytest.raises(ToolError, match="HTTP 404"):
        await call("web_scrape", allowed, url=f"{base}/missing")


async def test_http_client_sends_what_the_workflow_says(server: _Server, base: str) -> None:
    allowed = ctx({"OPENAI_API_KEY": "server-secret"}, CA_ALLOWED_TOOL_HOSTS="127.0.0.1")
    result = await call(
        "http_client",
        allowed,
        method="post",
        url=f"{base}/echo",
        headers={"X-A": "1"},
        body={"k": "v"},
    )
    assert result["status_code"] == 201 and result["error"] is None
    assert result["body"] == {"method": "POST", "body": '{"k": "v"}', "type": "application/json"}
    assert result["headers"]["content-type"] == "application/json"
    sent = server.requests[-1]["headers"]
    assert sent["X-A"] == "1"
    assert "server-secret" not in json.dumps(sent)
    assert (await call("http_client", allowed, method="GET", url=f"{base}/json"))["body"] == {
        "ok": True
    }
    text = await call("http_client", allowed, method="GET", url=f"{base}/missing")
    assert (text["status_code"], text["body"]) == (404, "not found")
    with pytest.raises(ToolError, match="Invalid method: TRACE"):
        await call("http_client", allowed, method="TRACE", url=f"{base}/json")


async def test_hosts_outside_the_allowlist_are_refused(base: str) -> None:
    for name, args in (
        ("web_scrape", {"url": f"{base}/page"}),
        ("http_client", {"method": "GET", "url": f"{base}/json"}),
    ):
        with pytest.raises(
            ToolError, match=r"host 127\.0\.0\.1 is not allowed.*CA_ALLOWED_TOOL_HOSTS"
        ):
            await get_tool(name).call(args, ctx())
    port = base.rsplit(":", 1)[1]
    assert ctx(CA_ALLOWED_TOOL_HOSTS=f"127.0.0.1:{port}").policy.refuse_tool_url(base) is None
    other = ctx(CA_ALLOWED_TOOL_HOSTS="127.0.0.1:1")
    with pytest.raises(ToolError, match="not allowed"):
        await call("web_scrape", other, url=f"{base}/page")
    with pytest.raises(ToolError, match="not an http or https URL"):
        await call("web_scrape", ctx(trust=True), url="file:///etc/passwd")


async def test_redirects_are_checked_hop_by_hop(server: _Server, base: str) -> None:
    allowed = ctx(CA_ALLOWED_TOOL_HOSTS="127.0.0.1")
    result = await call("web_scrape", allowed, url=f"{base}/redirect-in")
    assert result["title"] == "The Page"
    with pytest.raises(ToolError, match=r"host elsewhere\.example is not allowed"):
        await call("web_scrape", allowed, url=f"{base}/redirect-out")
    with pytest.raises(ToolError, match=r"169\.254\.169\.254 is link-local"):
        await call("http_client", allowed, method="GET", url=f"{base}/redirect-meta")
    server.requests.clear()
    with pytest.raises(ToolError, match="too many redirects"):
        await call("web_scrape", allowed, url=f"{base}/loop")
    assert len(server.requests) == 6  # the request and five redirects


async def test_cloud_metadata_is_refused_even_when_trusted_or_listed_by_name() -> None:
    for context in (
        ctx(trust=True),
        ctx(CA_ALLOWED_TOOL_HOSTS="*.internal,169.254.0.1"),
    ):
        for url in (
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fd00:ec2::254]/",
        ):
            with pytest.raises(ToolError, match="link-local"):
                await call("http_client", context, method="GET", url=url)
    # A name that resolves there (here the decimal form of 169.254.169.254).
    with pytest.raises(ToolError, match="resolves to a refused address"):
        await call("web_scrape", ctx(trust=True), url="http://2852039166/")
    listed = ctx(CA_ALLOWED_TOOL_HOSTS="169.254.169.254")
    assert listed.policy.refuse_tool_url("http://169.254.169.254/latest") is None


def test_tool_host_patterns() -> None:
    policy = ProviderPolicy.from_env(
        {"CA_ALLOWED_TOOL_HOSTS": "*.example.com, api.example.org:8443, [::1]:8080"}
    )
    assert policy.refuse_tool_url("https://a.b.example.com/x") is None
    assert policy.refuse_tool_url("https://example.com/x") is not None
    assert policy.refuse_tool_url("https://evilexample.com/x") is not None
    assert policy.refuse_tool_url("https://api.example.org:8443/") is None
    assert policy.refuse_tool_url("https://api.example.org/") is not None
    assert policy.refuse_tool_url("http://[::1]:8080/") is None
    assert policy.refuse_tool_url("http://[::1]:8081/") is not None
    assert policy.refuse_tool_url("https://google.serper.dev/search") is None
    assert ProviderPolicy().refuse_tool_url("http://localhost:8000/") is not None


# --- system and files (gated) -------------------------------------------------------------


async def test_gated_tools_refuse_to_run_unless_enabled() -> None:
    for name in GATED:
        with pytest.raises(ToolError, match=f"CA_ENABLED_TOOLS={name}"):
            await get_tool(name).call({}, ctx({"ALLOWED_COMMANDS": "*"}))


async def test_env_vars_never_shows_secrets() -> None:
    env = {
        "HOME": "/home/ca",
        "LANG": "C.UTF-8",
        "CA_SESSION_SECRET": "x",
        "CA_ANYTHING": "x",
        "DATABASE_URL": "postgresql://u:p@db/ca",
        "PGPASSWORD": "x",
        "OPENAI_API_KEY": "x",
        "GITHUB_TOKEN": "x",
        "APP_SECRET": "x",
        "SMTP_PASSWORD": "x",
        "REDIS_URL": "redis://:hunter2@cache:6379/0",
    }
    on = ctx(env, CA_ENABLED_TOOLS="env_vars")
    assert await call("env_vars", on) == {
        "vars": {"HOME": "/home/ca", "LANG": "C.UTF-8"},
        "error": None,
    }
    assert await call("env_vars", on, pattern="CA_*") == {"vars": {}, "error": None}
    assert (await call("env_vars", on, pattern="H*"))["vars"] == {"HOME": "/home/ca"}


async def test_shell_needs_allowed_commands() -> None:
    env = {"PATH": os.environ["PATH"], "OPENAI_API_KEY": "server-secret"}
    with pytest.raises(ToolError, match="no ALLOWED_COMMANDS"):
        await call("shell", ctx(env, CA_ENABLED_TOOLS="shell"), command="echo hi")
    on = ctx({**env, "ALLOWED_COMMANDS": "echo"}, CA_ENABLED_TOOLS="shell,process")
    result = await call("shell", on, command="echo hi")
    assert result == {"stdout": "hi\n", "stderr": "", "returncode": 0, "error": None}
    with pytest.raises(ToolError, match="'ls' not in allowed list"):
        await call("shell", on, command="ls /")
    for sneaky in ("echo hi; ls", "echo $(id)", "echo hi | cat", "echo x > /tmp/x"):
        with pytest.raises(ToolError, match="not allowed with ALLOWED_COMMANDS"):
            await call("shell", on, command=sneaky)
    with pytest.raises(ToolError, match="'sh' not in allowed list"):
        await call("process", on, command="sh", args=["-c", "true"])
    # Even with every command allowed, the server's secrets are not in the child's env.
    anything = ctx({**env, "ALLOWED_COMMANDS": "*"}, CA_ENABLED_TOOLS="shell")
    result = await call("shell", anything, command='echo "[$OPENAI_API_KEY]"; exit 3')
    assert (result["stdout"], result["returncode"]) == ("[]\n", 3)
    with pytest.raises(ToolError, match="Timeout after 1 seconds"):
        await call("shell", anything, command="sleep 5", timeout=1)


async def test_process_starts_in_the_background() -> None:
    env = {"PATH": os.environ["PATH"], "ALLOWED_COMMANDS": "true"}
    result = await call("process", ctx(env, CA_ENABLED_TOOLS="process"), command="true")
    assert result["status"] == "running" and result["pid"] > 0 and result["error"] is None


async def test_file_tools_stay_inside_allowed_paths(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.txt").write_text("secret")
    (root / "link").symlink_to(tmp_path / "outside.txt")
    on = ctx(
        {"ALLOWED_PATHS": str(root)}, CA_ENABLED_TOOLS="file_read,file_write,file_glob,file_move"
    )
    a = str(root / "sub" / "a.txt")
    assert await call("file_write", on, path=a, content="héllo") == {
        "path": a,
        "bytes_written": 6,
        "error": None,
    }
    assert await call("file_read", on, path=a) == {
        "path": a,
        "content": "héllo",
        "size": 6,
        "error": None,
    }
    result = await call("file_glob", on, pattern="**/*.txt", base_path=str(root))
    assert result == {"pattern": "**/*.txt", "matches": [a], "error": None}
    b = str(root / "b.txt")
    assert (await call("file_move", on, source=a, dest=b))["success"] is True
    assert Path(b).read_text() == "héllo"
    for path in (
        str(tmp_path / "outside.txt"),
        str(root / ".." / "outside.txt"),
        str(root / "link"),
    ):
        with pytest.raises(ToolError, match="not allowed"):
            await call("file_read", on, path=path)
    with pytest.raises(ToolError, match="not allowed"):
        await call("file_write", on, path=str(tmp_path / "x.txt"), content="x")
    with pytest.raises(ToolError, match="File not found"):
        await call("file_read", on, path=str(root / "nope.txt"))
