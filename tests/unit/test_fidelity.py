"""The original format runs here as it runs there: its defaults, its tools (through the
mock's scripted tool calls, with the search back end faked over real HTTP), its code nodes
in the sandbox, several edges from one node, quality gates, and a refusal, never a plain
LLM call, for what cannot run here."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.errors import SpecInvalid
from app.workflows.executor import MemoryRecorder, execute, runnable_problems
from app.workflows.loader import parse_workflow, read_workflow_text, validate_inputs
from app.workflows.providers import ProviderPolicy
from app.workflows.spec import WorkflowSpec

KEYS = ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_BASE_URL")


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*KEYS, "SERPER_API_KEY", "SERPER_BASE_URL", "TAVILY_API_KEY", "CA_ENABLED_TOOLS"):
        monkeypatch.delenv(name, raising=False)


def workflow(text: str) -> WorkflowSpec:
    return parse_workflow(textwrap.dedent(text))


async def run(spec: WorkflowSpec, inputs: dict[str, Any]) -> tuple[Any, MemoryRecorder]:
    recorder = MemoryRecorder()
    result = await execute(spec, validate_inputs(spec, inputs), recorder=recorder)
    return result, recorder


# ---------------------------------------------------------------- defaults


ONE_NODE = """\
    schema_version: "1.0"
    flow: {name: one}
    state:
      fields:
        topic: {type: str, required: true}
        answer: {type: str, default: ""}
    nodes:
      - id: ask
        prompt: "About {state.topic}"
        outputs: [answer]
        output_schema: {type: str}
    edges:
      - {from: START, to: ask}
      - {from: ask, to: END}
"""


async def test_without_a_provider_the_run_uses_gemini_and_says_which_key_it_needs() -> None:
    spec = workflow(ONE_NODE)
    llm = spec.llm_for("ask")
    assert (llm.provider, llm.model) == ("google", "gemini-2.5-flash-lite")
    result, _ = await run(spec, {"topic": "x"})
    assert result.status == "failed"
    assert result.error.type == "MissingAPIKey"
    assert result.error.provider == "google"
    assert "GOOGLE_API_KEY" in result.error.message
    assert "OPENAI" not in result.error.message


def test_a_model_without_a_provider_stays_with_gemini() -> None:
    spec = workflow(ONE_NODE + "    config:\n      llm: {model: gemini-2.5-pro}\n")
    assert spec.llm_for("ask").provider == "google"
    assert spec.llm_for("ask").model == "gemini-2.5-pro"
    other = workflow(ONE_NODE + "    config:\n      llm: {provider: openai}\n")
    # The original would send the Gemini model name to OpenAI; here the model is missing.
    assert other.llm_for("ask").model is None


# ---------------------------------------------------------------- tools


class SearchServer(ThreadingHTTPServer):
    """Stands in for Serper's search API on 127.0.0.1, recording each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, dict(self.headers), body))
                data = json.dumps(
                    {
                        "organic": [
                            {"title": "Result A", "link": "https://a.example", "snippet": "A"},
                            {"title": "Result B", "link": "https://b.example", "snippet": "B"},
                        ]
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(("127.0.0.1", 0), Handler)
        self.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def search(monkeypatch: pytest.MonkeyPatch) -> Iterator[SearchServer]:
    server = SearchServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    monkeypatch.setenv("SERPER_API_KEY", "serper-test-key")
    monkeypatch.setenv("SERPER_BASE_URL", server.url)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


TOOLS = """\
    schema_version: "1.0"
    flow: {name: researcher}
    state:
      fields:
        topic: {type: str, required: true}
        summary: {type: str, default: ""}
    nodes:
      - id: research
        prompt: "Research {state.topic}"
        outputs: [summary]
        output_schema: {type: str}
        tools:
          - json_parse
          - {name: web_search, on_error: ON_ERROR}
        llm:
          provider: mock
          responses:
            - tool_calls:
                - {name: json_parse, arguments: {json_string: '{"n": 1}'}}
                - {name: web_search, arguments: {query: "state of the art", num_results: 2}}
            - {summary: "two results found"}
    edges:
      - {from: START, to: research}
      - {from: research, to: END}
    """


async def test_a_node_calls_its_tools_and_each_call_is_a_step(search: SearchServer) -> None:
    spec = workflow(TOOLS.replace("ON_ERROR", "fail"))
    result, recorder = await run(spec, {"topic": "agents"})
    assert result.status == "completed", result.error
    assert result.state["summary"] == "two results found"

    ((path, headers, body),) = search.requests
    assert path == "/search"
    assert headers["X-API-KEY"] == "serper-test-key"
    assert body == {"q": "state of the art", "num": 2}

    calls = [s for s in recorder.steps if s.get("tool")]
    assert [c["tool"] for c in calls] == ["json_parse", "web_search"]
    assert calls[0]["output"] == {
        "arguments": {"json_string": '{"n": 1}'},
        "result": {"parsed": {"n": 1}, "error": None},  # the original's result shape
    }
    found = calls[1]["output"]["result"]
    assert [r["title"] for r in found["results"]] == ["Result A", "Result B"]
    assert found["provider"] == "serper"
    assert all(c["status"] == "completed" and c["duration_ms"] >= 0 for c in calls)
    # The node's own step comes after its calls and is the only node execution.
    nodes = [s for s in recorder.steps if not s.get("tool")]
    assert [(s["node_id"], s["status"]) for s in nodes] == [("research", "completed")]


async def test_a_failing_tool_fails_the_node_unless_it_may_continue(search: SearchServer) -> None:
    search.shutdown()  # the back end is gone: the call fails
    search.server_close()
    failed, recorder = await run(workflow(TOOLS.replace("ON_ERROR", "fail")), {"topic": "x"})
    assert failed.status == "failed"
    assert failed.error.type == "ToolFailed"
    assert "tool 'web_search' failed" in failed.error.message
    assert [s["status"] for s in recorder.steps if s.get("tool") == "web_search"] == ["failed"]

    went_on, recorder = await run(workflow(TOOLS.replace("ON_ERROR", "continue")), {"topic": "x"})
    assert went_on.status == "completed"
    call = next(s for s in recorder.steps if s.get("tool") == "web_search")
    assert call["status"] == "failed" and call["error"]


async def test_a_tool_the_server_does_not_offer_refuses_the_run() -> None:
    spec = workflow(TOOLS.replace("ON_ERROR", "fail").replace("- json_parse", "- shell"))
    problems = runnable_problems(spec, ProviderPolicy.from_env())
    assert [path for path, _ in problems] == [("nodes", 0, "tools", 0), ("nodes", 0, "tools", 1)]
    assert "CA_ENABLED_TOOLS=shell" in problems[0][1]
    assert "SERPER_API_KEY" in problems[1][1]
    result, recorder = await run(spec, {"topic": "x"})
    assert result.status == "failed"
    assert result.error.type == "NotRunnable"
    assert result.error.message.startswith("nodes[research].tools[0]: ")
    assert recorder.steps == []  # nothing ran, not even a plain LLM call


# ---------------------------------------------------------------- code nodes


CODE = """\
    schema_version: "1.0"
    flow: {name: coder}
    state:
      fields:
        numbers: {type: "list[int]", required: true}
        total: {type: int, default: 0}
        doubled: {type: int, default: 0}
    nodes:
      - id: add
        prompt: "Add the numbers"
        inputs: {numbers: "{state.numbers}"}
        outputs: [total]
        output_schema: {type: int}
        code: |
          print("adding", len(inputs["numbers"]))
          result = sum(inputs["numbers"])
        sandbox: {preset: low, timeout: 5}
      - id: double
        prompt: "Double it"
        inputs: {total: "{state.total}"}
        outputs: [doubled]
        output_schema: {type: int}
        llm: {provider: mock, responses: [{doubled: 99}]}
        code: "result = inputs['total'] * 2"
    edges:
      - {from: START, to: add}
      - {from: add, to: double}
      - {from: double, to: END}
    """


async def test_a_code_node_computes_its_result_in_the_sandbox() -> None:
    result, recorder = await run(workflow(CODE), {"numbers": [1, 2, 3]})
    assert result.status == "completed", result.error
    # Code, never the model: the mock's scripted 99 is not used.
    assert (result.state["total"], result.state["doubled"]) == (6, 12)
    sandbox = [s for s in recorder.steps if s.get("tool") == "sandbox"]
    assert sandbox[0]["output"]["result"] == {"result": 6, "stdout": "adding 3\n"}
    assert sandbox[0]["output"]["arguments"] == {"inputs": {"numbers": [1, 2, 3]}}


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("import os\nresult = os.getcwd()", "not allowed: import of os"),
        ("while True:\n    pass", "timed out after 1 s"),
        ("result = len('a' * 10**10)", "memory limit of"),
        ("result = 'text'", "add.total: expected int"),
    ],
)
async def test_hostile_code_fails_cleanly_with_its_reason(code: str, reason: str) -> None:
    text = CODE.replace("sandbox: {preset: low, timeout: 5}", "sandbox: {timeout: 1}")
    body = (
        '          print("adding", len(inputs["numbers"]))\n'
        '          result = sum(inputs["numbers"])\n'
    )
    text = text.replace(body, textwrap.indent(code, "          ") + "\n")
    started = time.monotonic()
    result, recorder = await run(workflow(text), {"numbers": [1]})
    assert time.monotonic() - started < 15
    assert result.status == "failed"
    assert result.error.type == "CodeError"
    assert result.error.node == "add"
    assert reason in result.error.message
    assert [s["node_id"] for s in recorder.steps if not s.get("tool")] == ["add"]


def test_validate_warns_about_code_the_sandbox_refuses() -> None:
    text = textwrap.dedent(CODE).replace("result = inputs['total'] * 2", "import os")
    (warning,) = read_workflow_text(text).warnings
    assert warning.where == "nodes[double].code"
    assert warning.message == "not allowed: import of os (line 1): every run of it will fail"


def test_a_sandbox_this_server_cannot_give_refuses_the_run() -> None:
    text = CODE.replace("sandbox: {preset: low, timeout: 5}", "sandbox: {mode: docker}")
    loaded = read_workflow_text(textwrap.dedent(text), "coder.yaml")
    (issue,) = loaded.unsupported
    assert issue.where == "nodes[add].sandbox"
    assert issue.line == textwrap.dedent(text).splitlines().index("    sandbox: {mode: docker}") + 1
    assert "docker" in issue.message


# ---------------------------------------------------------------- several edges from a node


FORK = """\
    schema_version: "1.0"
    flow: {name: fork}
    state:
      fields:
        topic: {type: str, required: true}
        pros: {type: str, default: ""}
        cons: {type: str, default: ""}
        verdict: {type: str, default: ""}
    nodes:
      - id: plan
        prompt: "Plan {state.topic}"
        outputs: [topic]
      - id: for_it
        prompt: "Pros of {state.topic}"
        outputs: [pros]
      - id: against
        prompt: "Cons of {state.topic}"
        outputs: [CONS_FIELD]
      - id: judge
        prompt: "Judge {state.pros} / {state.cons}"
        outputs: [verdict]
    edges:
      - {from: START, to: plan}
      - {from: plan, to: for_it}
      - {from: plan, to: against}
      - {from: for_it, to: judge}
      - {from: against, to: judge}
      - {from: judge, to: END}
    config:
      llm: {provider: mock, delay_seconds: 0.2}
    """


async def test_several_edges_from_a_node_run_their_targets_together_then_join_once() -> None:
    started = time.monotonic()
    result, recorder = await run(workflow(FORK.replace("CONS_FIELD", "cons")), {"topic": "t"})
    took = time.monotonic() - started
    assert result.status == "completed", result.error
    assert [s["node_id"] for s in recorder.steps] == ["plan", "for_it", "against", "judge"]
    assert result.state["pros"] == "Pros of Plan t" and result.state["cons"] == "Cons of Plan t"
    assert result.state["verdict"] == "Judge Pros of Plan t / Cons of Plan t"
    # for_it and against ran at the same time: three delays, not four.
    assert took < 0.75


async def test_two_nodes_of_one_step_writing_one_field_fail_the_run() -> None:
    result, _ = await run(workflow(FORK.replace("CONS_FIELD", "pros")), {"topic": "t"})
    assert result.status == "failed"
    assert result.error.type == "ConflictingUpdate"
    assert "'pros'" in result.error.message


async def test_a_default_route_written_first_is_taken_only_when_no_condition_holds() -> None:
    routed = (
        textwrap.dedent(FORK.replace("CONS_FIELD", "cons"))
        .replace(
            "  - {from: plan, to: for_it}\n  - {from: plan, to: against}\n",
            "  - from: plan\n    routes:\n"
            "      - {condition: {logic: default}, to: against}\n"
            "      - {condition: {logic: \"state.topic == 'Plan t'\"}, to: for_it}\n",
        )
        .replace("  - {from: against, to: judge}\n", "  - {from: against, to: END}\n")
    )
    result, recorder = await run(parse_workflow(routed), {"topic": "t"})
    assert result.status == "completed", result.error
    assert [s["node_id"] for s in recorder.steps] == ["plan", "for_it", "judge"]


# ---------------------------------------------------------------- gates


async def test_a_quality_gate_with_on_fail_fail_fails_a_run_that_misses_it() -> None:
    gates = (
        "      llm: {provider: mock, cost_per_call_usd: 0.5}\n"
        "      gates:\n"
        "        gates: [{metric: cost_usd, max: 0.25}]\n"
        "        on_fail: ON_FAIL\n"
    )
    text = ONE_NODE + "    config:\n" + gates
    failed, _ = await run(workflow(text.replace("ON_FAIL", "fail")), {"topic": "x"})
    assert failed.status == "failed"
    assert failed.error.type == "QualityGateFailed"
    assert "cost_usd 0.5 is above its gate's max 0.25" in failed.error.message
    warned, _ = await run(workflow(text.replace("ON_FAIL", "warn")), {"topic": "x"})
    assert warned.status == "completed"
    assert warned.notes == ["quality gate missed: cost_usd 0.5 is above its gate's max 0.25"]


# ---------------------------------------------------------------- keys and values


def test_unknown_keys_are_ignored_with_a_warning_near_misses_refused_x_keys_silent() -> None:
    text = textwrap.dedent(ONE_NODE).replace(
        "  - {from: ask, to: END}\n",
        '  - {from: ask, to: END, condition: "state.topic"}\n'
        "x-owner: platform team\n"
        "config:\n  execution: {timeout_seconds: 30}\n",
    )
    loaded = read_workflow_text(text, "w.yaml")
    assert [(w.where, w.message) for w in loaded.warnings] == [
        ("edges[1].condition", "unknown key 'condition' in edges[1] is ignored"),
        (
            "config.execution.timeout_seconds",
            "unknown key 'timeout_seconds' in config.execution is ignored",
        ),
    ]
    assert (
        loaded.warnings[0].line
        == text.splitlines().index('  - {from: ask, to: END, condition: "state.topic"}') + 1
    )
    typo = textwrap.dedent(ONE_NODE).replace(
        "    output_schema: {type: str}\n",
        "    output_schema: {type: str}\n    llm: {temprature: 0.2}\n",
    )
    with pytest.raises(SpecInvalid) as info:
        parse_workflow(typo)
    assert "unknown key 'temprature'" in str(info.value)
    assert "did you mean 'temperature'?" in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("llm: {provider: mock, temperature: 1.5}", "less than or equal to 1"),
        ("llm: {provider: mock}\n      gates: [{metric: cost_usd, max: 1}]", "expected a mapping"),
    ],
)
def test_values_the_original_refuses_are_refused(change: str, message: str) -> None:
    text = ONE_NODE + "    config:\n      " + change + "\n"
    with pytest.raises(SpecInvalid) as info:
        workflow(text)
    assert message in str(info.value)
