"""The OpenAI-compatible provider over real HTTP, against a small local Chat Completions server."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The SDK loads its chat resources on first use, which takes about half a second and would
# count against the 1 s timeouts below: load them with the module.
import openai.resources.chat  # noqa: F401
import pytest

from app.workflows.executor import ExecutionResult, MemoryRecorder, execute
from app.workflows.loader import parse_workflow, validate_inputs
from app.workflows.providers import ProviderPolicy
from app.workflows.providers.openai_compat import ENDPOINTS, _api_key, _base_url

KEY_VARS = sorted({name for e in ENDPOINTS.values() for name in (*e.key_vars, e.base_var)})


@dataclass
class Reply:
    status: int = 200
    content: str | None = "ok"
    usage: dict[str, int] | None = field(
        default_factory=lambda: {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    )
    hang: bool = False
    raw: bytes | None = None  # a body sent as it is
    raw_type: str = "application/json"
    tool_calls: list[dict[str, Any]] | None = None  # (name, arguments) the model asks for


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ChatServer:
    """An OpenAI-compatible server on 127.0.0.1 that answers from a script and records requests.

    Replies are used in order; the last one repeats.
    """

    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply()]
        self.requests: list[Received] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                reply = server.replies[min(len(server.requests), len(server.replies)) - 1]
                if reply.hang:
                    server.release.wait(10)
                if self.path != "/v1/chat/completions":
                    payload: dict[str, Any] = {"error": {"message": "no such route"}}
                    status = 404
                elif reply.status != 200:
                    payload = {"error": {"message": f"scripted {reply.status}", "type": "x"}}
                    status = reply.status
                else:
                    status = 200
                    payload = {
                        "id": f"chatcmpl-{len(server.requests)}",
                        "object": "chat.completion",
                        "created": 1_700_000_000,
                        "model": body.get("model"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {
                                    "role": "assistant",
                                    "content": reply.content,
                                    **_calls(reply.tool_calls),
                                },
                                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                            }
                        ],
                    }
                    if reply.usage is not None:
                        payload["usage"] = reply.usage
                data = json.dumps(payload).encode() if reply.raw is None else reply.raw
                kind = "application/json" if reply.raw is None else reply.raw_type
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.root = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root}/v1"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _calls(calls: list[dict[str, Any]] | None) -> dict[str, Any]:
    if not calls:
        return {}
    return {
        "tool_calls": [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
            }
            for i, c in enumerate(calls)
        ]
    }


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer() as chat:
        yield chat


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider key or base URL from the surrounding environment."""
    for name in [*KEY_VARS, "MY_LLM_KEY"]:
        monkeypatch.delenv(name, raising=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PLAIN = """\
schema_version: "1.0"
flow: {name: plain}
state:
  fields:
    topic: {type: str, required: true}
    answer: {type: str, default: ""}
nodes:
  - id: ask
    prompt: "Tell me about {state.topic}"
    outputs: [answer]
edges:
  - {from: START, to: ask}
  - {from: ask, to: END}
config:
  llm: LLM
  execution: {timeout: TIMEOUT, max_retries: RETRIES}
"""

STRUCTURED = """\
schema_version: "1.0"
flow: {name: structured}
state:
  fields:
    topic: {type: str, required: true}
    title: {type: str, default: ""}
    score: {type: int, default: 0}
nodes:
  - id: rate
    prompt: "Rate {state.topic}"
    outputs: [title, score]
    output_schema:
      type: object
      fields:
        - {name: title, type: str, description: A short title}
        - {name: score, type: int}
edges:
  - {from: START, to: rate}
  - {from: rate, to: END}
config:
  llm: LLM
  execution: {timeout: TIMEOUT, max_retries: RETRIES}
"""


async def run(
    template: str,
    base_url: str | None,
    *,
    provider: str = "openai",
    timeout: float = 1,
    retries: int = 0,
    **llm_settings: Any,
) -> tuple[ExecutionResult, MemoryRecorder]:
    llm: dict[str, Any] = {"provider": provider, "model": "test-model", **llm_settings}
    if base_url is not None:
        llm["base_url"] = base_url
    text = (
        template.replace("LLM", json.dumps(llm))
        .replace("TIMEOUT", str(timeout))
        .replace("RETRIES", str(retries))
    )
    spec = parse_workflow(textwrap.dedent(text))
    recorder = MemoryRecorder()
    # The workflow's author runs it on their own machine, as `configurable-agents run`.
    result = await execute(
        spec,
        validate_inputs(spec, {"topic": "owls"}),
        recorder=recorder,
        policy=ProviderPolicy(trust_workflow=True),
    )
    return result, recorder


async def test_plain_text_output_takes_the_content_and_records_usage(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(content="Owls are birds.")]
    result, recorder = await run(PLAIN, server.base_url)

    assert result.status == "completed", result.error
    assert result.state["answer"] == "Owls are birds."
    step = recorder.steps[0]
    assert step["tokens"] == 18
    assert step["tries"] == 1
    assert step["output"] == {"answer": "Owls are birds."}

    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["model"] == "test-model"
    assert request.body["messages"] == [{"role": "user", "content": "Tell me about owls"}]
    assert "response_format" not in request.body


async def test_a_missing_usage_counts_no_tokens(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(content="hi", usage=None)]
    result, recorder = await run(PLAIN, server.base_url)
    assert result.status == "completed"
    assert recorder.steps[0]["tokens"] == 0


async def test_partial_usage_counts_what_is_there(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(content="hi", usage={"completion_tokens": 4})]
    result, recorder = await run(PLAIN, server.base_url)
    assert result.status == "completed", result.error
    assert recorder.steps[0]["tokens"] == 4


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body>Welcome</body></html>", "text/html"),
        (b"{not json", "application/json"),
        (b"{}", "application/json"),
        (b'{"choices": "x"}', "application/json"),
        (b'{"choices": [{}]}', "application/json"),
    ],
)
async def test_a_server_that_is_not_a_chat_completions_endpoint_fails_clearly(
    server, monkeypatch, body, content_type
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(raw=body, raw_type=content_type)]
    result, recorder = await run(PLAIN, server.base_url, retries=2)

    assert result.status == "failed"
    assert result.error.type == "InvalidResponse"
    assert result.error.node == "ask"
    assert server.base_url in result.error.message
    assert "config.llm.base_url" in result.error.message
    assert recorder.steps[0]["tries"] == 1


async def test_structured_output_is_requested_as_json_and_validated(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(content=json.dumps({"title": "Night hunters", "score": 8}))]
    result, recorder = await run(STRUCTURED, server.base_url)

    assert result.status == "completed", result.error
    assert result.state["title"] == "Night hunters"
    assert result.state["score"] == 8
    assert recorder.steps[0]["tokens"] == 18

    [request] = server.requests
    assert request.body["response_format"] == {"type": "json_object"}
    system, user = request.body["messages"]
    assert user == {"role": "user", "content": "Rate owls"}
    assert system["role"] == "system"
    schema = json.loads(system["content"][system["content"].index("{") :])
    assert schema == {
        "type": "object",
        "properties": {
            "title": {"type": "string", "description": "A short title"},
            "score": {"type": "integer"},
        },
        "required": ["title", "score"],
        "additionalProperties": False,
    }


async def test_a_single_non_text_output_is_read_from_json(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(content='{"answer": 3}')]
    text = PLAIN.replace("answer: {type: str", "answer: {type: int").replace(
        'default: ""}', "default: 0}"
    )
    result, _ = await run(text, server.base_url)
    assert result.status == "completed", result.error
    assert result.state["answer"] == 3
    assert server.requests[0].body["response_format"] == {"type": "json_object"}


async def test_content_that_is_not_json_is_retried_then_fails(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(content="Sure! The title is Night hunters.")]
    result, recorder = await run(STRUCTURED, server.base_url, retries=1)

    assert result.status == "failed"
    assert result.error.type == "InvalidOutput"
    assert result.error.node == "rate"
    assert result.error.provider == "openai"
    assert "not JSON" in result.error.message
    assert len(server.requests) == 2
    assert recorder.steps[0]["tries"] == 2


async def test_a_wrong_typed_field_fails_naming_the_field(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(content=json.dumps({"title": "t", "score": "high"}))]
    result, _ = await run(STRUCTURED, server.base_url)

    assert result.status == "failed"
    assert result.error.type == "InvalidOutput"
    assert "score" in result.error.message
    assert "expected int" in result.error.message
    assert "'rate'" in result.error.message


async def test_a_missing_field_fails_naming_it(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(content=json.dumps({"title": "t"}))]
    result, _ = await run(STRUCTURED, server.base_url)
    assert result.error.type == "InvalidOutput"
    assert "'score'" in result.error.message


async def test_a_wrong_answer_then_a_right_one_completes(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(content="nope"), Reply(content='{"title": "t", "score": 2}')]
    result, recorder = await run(STRUCTURED, server.base_url, retries=2)
    assert result.status == "completed"
    assert recorder.steps[0]["tries"] == 2
    assert result.state["score"] == 2


async def test_a_missing_api_key_fails_before_any_request(server):
    result, recorder = await run(PLAIN, server.base_url, retries=3)

    assert result.status == "failed"
    assert result.error.type == "MissingAPIKey"
    assert result.error.node == "ask"
    assert result.error.provider == "openai"
    assert "set OPENAI_API_KEY" in result.error.message
    assert server.requests == []
    assert recorder.steps[0]["tries"] == 1


async def test_a_refused_key_is_authentication_failed_and_not_retried(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    server.replies = [Reply(status=401)]
    result, recorder = await run(PLAIN, server.base_url, retries=3)

    assert result.status == "failed"
    assert result.error.type == "AuthenticationFailed"
    assert "OPENAI_API_KEY" in result.error.message
    assert len(server.requests) == 1
    assert recorder.steps[0]["tries"] == 1


async def test_an_unknown_model_is_model_not_found(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(status=404)]
    result, _ = await run(PLAIN, server.base_url, retries=3)

    assert result.status == "failed"
    assert result.error.type == "ModelNotFound"
    assert "test-model" in result.error.message
    assert "config.llm.model" in result.error.message
    assert len(server.requests) == 1


async def test_a_client_error_is_not_retried(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(status=400)]
    result, _ = await run(PLAIN, server.base_url, retries=3)
    assert result.error.type == "ProviderError"
    assert "400" in result.error.message
    assert len(server.requests) == 1


async def test_an_unreachable_server_names_the_base_url(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    result, recorder = await run(PLAIN, base_url, retries=1)

    assert result.status == "failed"
    assert result.error.type == "Unreachable"
    assert base_url in result.error.message
    assert "(provider openai)" in result.error.message
    assert recorder.steps[0]["tries"] == 2


async def test_a_server_slower_than_the_timeout_is_a_timeout(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(hang=True)]
    started = time.perf_counter()
    result, _ = await run(PLAIN, server.base_url, timeout=0.3)
    elapsed = time.perf_counter() - started

    assert result.status == "failed"
    assert result.error.type == "Timeout"
    assert result.error.node == "ask"
    assert "timeout" in result.error.message
    assert elapsed < 2


async def test_a_server_error_is_retried(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(status=500), Reply(content="fine")]
    result, recorder = await run(PLAIN, server.base_url, retries=2)

    assert result.status == "completed", result.error
    assert result.state["answer"] == "fine"
    assert recorder.steps[0]["tries"] == 2
    assert len(server.requests) == 2


async def test_rate_limits_are_retried_until_the_budget_runs_out(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [Reply(status=429)]
    result, recorder = await run(PLAIN, server.base_url, retries=2)
    assert result.status == "failed"
    assert "429" in result.error.message
    assert recorder.steps[0]["tries"] == 3
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("provider", "key_var", "base_var"),
    [
        ("openai", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
        ("google", "GOOGLE_API_KEY", "GOOGLE_BASE_URL"),
        ("google", "GEMINI_API_KEY", "GOOGLE_BASE_URL"),
        ("anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
        ("ollama", "OLLAMA_API_KEY", "OLLAMA_BASE_URL"),
    ],
)
async def test_provider_names_use_their_key_and_base_url_variables(
    server, monkeypatch, provider, key_var, base_var
):
    monkeypatch.setenv(base_var, server.base_url)
    monkeypatch.setenv(key_var, f"key-from-{key_var}")
    # Another provider's key is never sent.
    other = "ANTHROPIC_API_KEY" if provider != "anthropic" else "OPENAI_API_KEY"
    monkeypatch.setenv(other, "wrong-key")
    result, _ = await run(PLAIN, None, provider=provider)

    assert result.status == "completed", result.error
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer key-from-{key_var}"


async def test_a_missing_google_key_names_both_variables(server, monkeypatch):
    monkeypatch.setenv("GOOGLE_BASE_URL", server.base_url)
    result, _ = await run(PLAIN, None, provider="google")
    assert result.error.type == "MissingAPIKey"
    assert "GOOGLE_API_KEY or GEMINI_API_KEY" in result.error.message
    assert server.requests == []


async def test_ollama_needs_no_key_and_gets_v1_appended(server, monkeypatch):
    monkeypatch.setenv("OLLAMA_BASE_URL", server.root)
    result, _ = await run(PLAIN, None, provider="ollama")

    assert result.status == "completed", result.error
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer ollama"


async def test_config_base_url_wins_over_the_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    result, _ = await run(PLAIN, server.base_url)
    assert result.status == "completed", result.error
    assert len(server.requests) == 1


async def test_api_key_env_names_the_key_variable(server, monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "sk-mine")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-default")
    result, _ = await run(PLAIN, server.base_url, api_key_env="MY_LLM_KEY")

    assert result.status == "completed", result.error
    assert server.requests[0].headers["authorization"] == "Bearer sk-mine"


@pytest.mark.parametrize(
    ("provider", "url", "keys"),
    [
        ("openai", "https://api.openai.com/v1", ["OPENAI_API_KEY"]),
        (
            "google",
            "https://generativelanguage.googleapis.com/v1beta/openai",
            ["GOOGLE_API_KEY", "GEMINI_API_KEY"],
        ),
        ("anthropic", "https://api.anthropic.com/v1", ["ANTHROPIC_API_KEY"]),
        ("ollama", "http://localhost:11434/v1", ["OLLAMA_API_KEY"]),
    ],
)
def test_default_endpoints_and_key_variables(monkeypatch, provider, url, keys):
    endpoint = ENDPOINTS[provider]
    assert _base_url(provider, endpoint, {}) == url
    assert list(endpoint.key_vars) == keys
    for i, name in enumerate(keys):
        monkeypatch.setenv(name, f"k{i}")
    assert _api_key(provider, endpoint, {}) == "k0"


async def test_the_tool_loop_runs_the_tools_the_model_asks_for(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [
        Reply(
            content=None,
            tool_calls=[{"name": "json_parse", "arguments": {"json_string": "[1, 2]"}}],
        ),
        Reply(content="Parsed two numbers."),
    ]
    template = PLAIN.replace(
        "    outputs: [answer]\n", "    outputs: [answer]\n    tools: [json_parse]\n"
    )
    result, recorder = await run(template, server.base_url)
    assert result.status == "completed", result.error
    assert result.state["answer"] == "Parsed two numbers."

    first, second = server.requests
    assert [t["function"]["name"] for t in first.body["tools"]] == ["json_parse"]
    assert first.body["tools"][0]["function"]["parameters"]["required"] == ["json_string"]
    # The second turn carries the model's request and the tool's answer.
    asked, answered = second.body["messages"][-2:]
    assert asked["role"] == "assistant"
    assert asked["tool_calls"][0]["function"]["name"] == "json_parse"
    assert answered == {
        "role": "tool",
        "tool_call_id": "call_0",
        "content": json.dumps({"parsed": [1, 2], "error": None}),
    }
    node, call = recorder.steps
    assert call["tool"] == "json_parse" and call["output"]["result"]["parsed"] == [1, 2]
    assert node["node_id"] == "ask" and node["tokens"] == 36  # both turns are counted


async def test_a_model_that_never_stops_asking_for_tools_fails(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.replies = [
        Reply(content=None, tool_calls=[{"name": "json_parse", "arguments": {"json_string": "1"}}])
    ]
    template = PLAIN.replace(
        "    outputs: [answer]\n", "    outputs: [answer]\n    tools: [json_parse]\n"
    )
    result, _ = await run(template, server.base_url)
    assert result.status == "failed"
    assert result.error.type == "TooManyToolRounds"
    assert len(server.requests) == 11


def test_the_server_does_not_load_the_sdk_until_a_provider_calls_it() -> None:
    """The openai package is 49 MB of the server's memory: a dashboard whose runs never
    call a provider does not import it."""
    import subprocess
    import sys

    probe = "import sys, app.web.app, app.cli; print('openai' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
