"""The executor over the mock provider: graph walking, retries, timeouts, cancellation."""

from __future__ import annotations

import textwrap
import time
from typing import Any

import pytest

from app.errors import SpecInvalid
from app.workflows import executor
from app.workflows.executor import ExecutionResult, MemoryRecorder, execute
from app.workflows.loader import parse_workflow, validate_inputs
from app.workflows.spec import WorkflowSpec


def workflow(text: str) -> WorkflowSpec:
    return parse_workflow(textwrap.dedent(text))


async def run(
    spec: WorkflowSpec,
    inputs: dict[str, Any] | None = None,
    *,
    attempt: int = 1,
    recorder: MemoryRecorder | None = None,
) -> tuple[ExecutionResult, MemoryRecorder]:
    recorder = recorder or MemoryRecorder()
    state = validate_inputs(spec, inputs or {})
    result = await execute(spec, state, attempt=attempt, recorder=recorder)
    return result, recorder


def visited(recorder: MemoryRecorder) -> list[str]:
    return [step["node_id"] for step in recorder.steps]


def with_llm(spec: WorkflowSpec, **changes: Any) -> WorkflowSpec:
    """`spec` with `config.llm` changed, without the loader's checks."""
    llm = spec.config.llm.model_copy(update=changes)
    return spec.model_copy(update={"config": spec.config.model_copy(update={"llm": llm})})


LINEAR = """\
schema_version: "1.0"
flow: {name: linear}
state:
  fields:
    job: {type: str, required: true}
    plan: {type: str, default: ""}
    size: {type: int, default: 0}
    report: {type: str, default: ""}
nodes:
  - id: plan
    prompt: "Plan {state.job}"
    outputs: [plan]
  - id: measure
    prompt: "Measure {state.plan}"
    outputs: [size]
  - id: report
    prompt: "Report on {state.plan} of size {state.size}"
    outputs: [report]
edges:
  - {from: START, to: plan}
  - {from: plan, to: measure}
  - {from: measure, to: report}
  - {from: report, to: END}
config:
  llm: {provider: mock, model: m}
"""


async def test_linear_run_records_each_step_in_order_with_tokens():
    result, recorder = await run(workflow(LINEAR), {"job": "the move"})

    assert result.status == "completed"
    assert result.error is None
    assert result.steps == 3
    assert visited(recorder) == ["plan", "measure", "report"]
    assert [s["order"] for s in recorder.steps] == [0, 1, 2]
    assert all(s["status"] == "completed" for s in recorder.steps)
    assert all(s["item_index"] is None and s["tries"] == 1 for s in recorder.steps)
    # Without `responses` the mock derives values from the rendered prompt.
    assert result.state["plan"] == "Plan the move"
    assert result.state["size"] == len("Measure Plan the move")
    assert result.state["report"] == "Report on Plan the move of size 21"
    # Tokens: one per prompt word plus one per output.
    assert [s["tokens"] for s in recorder.steps] == [3 + 1, 4 + 1, 8 + 1]
    assert recorder.steps[0]["output"] == {"plan": "Plan the move"}


async def test_execute_does_not_change_the_given_state():
    spec = workflow(LINEAR)
    state = validate_inputs(spec, {"job": "x"})
    before = dict(state)
    result = await execute(spec, state)
    assert result.status == "completed"
    assert state == before


ROUTED = """\
schema_version: "1.0"
flow: {name: routed}
state:
  fields:
    draft: {type: str, required: true}
    score: {type: int, default: 0}
    verdict: {type: str, default: ""}
    final: {type: str, default: ""}
nodes:
  - id: review
    prompt: "Score: {state.draft}"
    outputs: [score, verdict]
    output_schema:
      type: object
      fields: [{name: score, type: int}, {name: verdict, type: str}]
  - id: publish
    prompt: "Publish {state.draft}"
    outputs: [final]
  - id: rewrite
    prompt: "Rewrite {state.draft}"
    outputs: [final]
edges:
  - {from: START, to: review}
  - from: review
    routes:
      - condition: {logic: "CONDITION"}
        to: publish
      - condition: {logic: default}
        to: rewrite
  - {from: publish, to: END}
  - {from: rewrite, to: END}
config:
  llm:
    provider: mock
    responses:
      - {score: SCORE, verdict: ok}
      - {}
"""


@pytest.mark.parametrize("condition", ["state.score >= 8", "{state.score} >= 8"])
@pytest.mark.parametrize(
    ("score", "branch"), [(9, "publish"), (8, "publish"), (7, "rewrite"), (0, "rewrite")]
)
async def test_routes_take_the_first_matching_condition_or_the_default(condition, score, branch):
    text = ROUTED.replace("CONDITION", condition).replace("SCORE", str(score))
    result, recorder = await run(workflow(text), {"draft": "d"})

    assert result.status == "completed"
    assert visited(recorder) == ["review", branch]
    assert result.state["score"] == score
    assert result.state["final"] == f"{branch.capitalize()} d"


def test_routes_without_a_default_are_refused_like_the_original():
    text = (
        ROUTED.replace("CONDITION", "state.score >= 8")
        .replace("SCORE", "3")
        .replace("{logic: default}", '{logic: "state.score < 0"}')
    )
    with pytest.raises(SpecInvalid) as info:
        workflow(text)
    assert "need a default route" in str(info.value)


async def test_a_route_cycle_that_never_exits_is_stopped(monkeypatch):
    monkeypatch.setattr(executor, "MAX_NODE_EXECUTIONS", 6)
    text = ROUTED.replace("CONDITION", "state.score >= 8").replace("SCORE", "1")
    text = text.replace("{from: rewrite, to: END}", "{from: rewrite, to: review}")
    text = text.replace("      - {}\n", "")  # every review scores 1
    result, recorder = await run(workflow(text), {"draft": "d"})

    assert result.status == "failed"
    assert result.error.type == "TooManySteps"
    assert "cycle" in result.error.message
    assert len(recorder.steps) == 6


LOOP = """\
schema_version: "1.0"
flow: {name: loop}
state:
  fields:
    draft: {type: str, required: true}
    done: {type: bool, default: false}
    rounds: {type: int, default: 0}
    summary: {type: str, default: ""}
nodes:
  - id: refine
    prompt: "Refine {state.draft}"
    outputs: [draft, done, rounds]
    output_schema:
      type: object
      fields: [{name: draft, type: str}, {name: done, type: bool}, {name: rounds, type: int}]
  - id: summarise
    prompt: "Summarise {state.draft}"
    outputs: [summary]
    llm: {responses: [{summary: the end}]}
edges:
  - {from: START, to: refine}
  - from: refine
    loop: {condition_field: done, max_iterations: 3, exit_to: summarise}
  - {from: summarise, to: END}
config:
  llm:
    provider: mock
    responses: RESPONSES
"""


async def test_loop_stops_at_max_iterations():
    responses = "[{draft: a, done: false, rounds: 1}, {draft: b, done: false, rounds: 2}]"
    result, recorder = await run(workflow(LOOP.replace("RESPONSES", responses)), {"draft": "x"})

    assert result.status == "completed"
    assert visited(recorder) == ["refine", "refine", "refine", "summarise"]
    assert result.state["done"] is False
    assert result.state["summary"] == "the end"


async def test_loop_exits_as_soon_as_the_condition_field_is_true():
    responses = "[{draft: a, done: false, rounds: 1}, {draft: b, done: true, rounds: 2}]"
    result, recorder = await run(workflow(LOOP.replace("RESPONSES", responses)), {"draft": "x"})

    assert result.status == "completed"
    assert visited(recorder) == ["refine", "refine", "summarise"]
    assert result.state["done"] is True
    assert result.state["rounds"] == 2
    assert result.state["draft"] == "b"


async def test_mock_responses_come_in_order_and_the_last_repeats():
    responses = (
        "[{draft: one, done: false, rounds: 1}, {draft: two, done: false, rounds: 2},"
        " {draft: three, done: false, rounds: 3}]"
    )
    text = LOOP.replace("RESPONSES", responses).replace("max_iterations: 3", "max_iterations: 5")
    result, recorder = await run(workflow(text), {"draft": "x"})

    outputs = [s["output"]["draft"] for s in recorder.steps if s["node_id"] == "refine"]
    assert outputs == ["one", "two", "three", "three", "three"]
    assert result.state["rounds"] == 3


FAN_OUT = """\
schema_version: "1.0"
flow: {name: fan_out}
state:
  fields:
    phrases: {type: "list[str]", required: true}
    phrase: {type: str, default: ""}
    translations: {type: "list[str]", default: []}
    translation: {type: str, default: ""}
    summary: {type: str, default: ""}
nodes:
  - id: prepare
    prompt: "Check {state.phrases}"
    outputs: [summary]
  - id: translate
    prompt: "French: {state.phrase}"
    outputs: [translation]
    llm: {delay_seconds: DELAY}
  - id: finish
    prompt: "Done: {state.translations}"
    outputs: [summary]
edges:
  - {from: START, to: prepare}
  - from: prepare
    parallel: {items_field: phrases, target_node: translate, collect_field: translations}
  - {from: translate, to: finish}
  - {from: finish, to: END}
config:
  llm: {provider: mock}
  execution: {timeout: 2, max_retries: 0}
"""


async def test_fan_out_runs_the_target_once_per_item_concurrently_in_item_order():
    phrases = ["one", "two", "three", "four"]
    spec = workflow(FAN_OUT.replace("DELAY", "0.2"))
    started = time.perf_counter()
    result, recorder = await run(spec, {"phrases": phrases})
    elapsed = time.perf_counter() - started

    assert result.status == "completed"
    assert result.state["translations"] == [f"French: {p}" for p in phrases]
    # Four calls of 0.2 s each, one after the other, would take 0.8 s.
    assert elapsed < 0.5
    items = [s for s in recorder.steps if s["node_id"] == "translate"]
    assert sorted(s["item_index"] for s in items) == [0, 1, 2, 3]
    assert all(s["status"] == "completed" for s in items)
    assert visited(recorder)[0] == "prepare"
    assert visited(recorder)[-1] == "finish"
    assert result.state["summary"] == "Done: " + (
        '["French: one", "French: two", "French: three", "French: four"]'
    )
    assert result.steps == 6


async def test_fan_out_of_no_items_collects_an_empty_list():
    result, recorder = await run(workflow(FAN_OUT.replace("DELAY", "0")), {"phrases": []})
    assert result.status == "completed"
    assert result.state["translations"] == []
    assert visited(recorder) == ["prepare", "finish"]


async def test_fan_out_from_start():
    text = FAN_OUT.replace("DELAY", "0.2").replace(
        "  - {from: START, to: prepare}\n  - from: prepare\n", "  - from: START\n"
    )
    text = text.replace(
        '  - id: prepare\n    prompt: "Check {state.phrases}"\n    outputs: [summary]\n', ""
    )
    started = time.perf_counter()
    result, recorder = await run(workflow(text), {"phrases": ["a", "b", "c"]})
    elapsed = time.perf_counter() - started

    assert result.status == "completed"
    assert result.state["translations"] == ["French: a", "French: b", "French: c"]
    assert sorted(s["item_index"] for s in recorder.steps if s["node_id"] == "translate") == [
        0,
        1,
        2,
    ]
    assert visited(recorder)[-1] == "finish"
    assert elapsed < 0.5


async def test_a_failing_fan_out_item_fails_the_run():
    text = FAN_OUT.replace("DELAY", "0.05").replace(
        "llm: {delay_seconds: 0.05}", "llm: {delay_seconds: 0.05, fail_on_attempt: [1]}"
    )
    result, recorder = await run(workflow(text), {"phrases": ["a", "b", "c"]})

    assert result.status == "failed"
    assert result.error.node == "translate"
    assert result.error.type == "MockFailure"
    assert "'translate'" in result.error.message
    assert "finish" not in visited(recorder)
    assert result.state["translations"] == []
    items = [s for s in recorder.steps if s["node_id"] == "translate"]
    assert items and all(s["status"] in ("failed", "cancelled") for s in items)
    assert any(s["status"] == "failed" for s in items)


FLAKY = """\
schema_version: "1.0"
flow: {name: flaky}
state:
  fields:
    text: {type: str, required: true}
    summary: {type: str, default: ""}
nodes:
  - id: summarise
    prompt: "Summarise {state.text}"
    outputs: [summary]
edges:
  - {from: START, to: summarise}
  - {from: summarise, to: END}
config:
  llm: {provider: mock, fail_on_attempt: [1], responses: [{summary: short}]}
  execution: {max_retries: 3}
"""


async def test_fail_on_attempt_fails_the_first_attempt_and_not_the_restart():
    spec = workflow(FLAKY)

    first, recorder = await run(spec, {"text": "t"}, attempt=1)
    assert first.status == "failed"
    assert first.error.type == "MockFailure"
    assert first.error.node == "summarise"
    assert first.error.provider == "mock"
    assert "attempt 1" in first.error.message
    # The failure is not retryable: one try despite max_retries 3.
    assert recorder.steps[0]["tries"] == 1
    assert recorder.steps[0]["status"] == "failed"
    assert recorder.steps[0]["error"] == first.error.message

    second, _ = await run(spec, {"text": "t"}, attempt=2)
    assert second.status == "completed"
    assert second.state["summary"] == "short"


SLOW = """\
schema_version: "1.0"
flow: {name: slow}
state:
  fields:
    job: {type: str, required: true}
    result: {type: str, default: ""}
nodes:
  - id: work
    prompt: "Do {state.job}"
    outputs: [result]
edges:
  - {from: START, to: work}
  - {from: work, to: END}
config:
  llm: {provider: mock, delay_seconds: DELAY}
  execution: {timeout: TIMEOUT, max_retries: RETRIES}
"""


def slow(delay: float, timeout: float, retries: int) -> WorkflowSpec:
    return workflow(
        SLOW.replace("DELAY", str(delay))
        .replace("TIMEOUT", str(timeout))
        .replace("RETRIES", str(retries))
    )


async def test_a_node_slower_than_the_timeout_fails_with_timeout():
    started = time.perf_counter()
    result, recorder = await run(slow(2, 0.1, 0), {"job": "j"})
    elapsed = time.perf_counter() - started

    assert result.status == "failed"
    assert result.error.type == "Timeout"
    assert result.error.node == "work"
    assert result.error.provider == "mock"
    assert "'work'" in result.error.message
    assert "mock" in result.error.message
    assert "timeout" in result.error.message
    assert elapsed < 1
    assert recorder.steps[0]["status"] == "failed"


async def test_a_node_within_the_timeout_completes():
    result, _ = await run(slow(0.05, 1, 0), {"job": "j"})
    assert result.status == "completed"
    assert result.state["result"] == "Do j"


@pytest.mark.parametrize("retries", [0, 1, 2])
async def test_retryable_errors_are_retried_max_retries_times(retries):
    result, recorder = await run(slow(1, 0.05, retries), {"job": "j"})

    assert result.status == "failed"
    assert result.error.type == "Timeout"
    assert recorder.steps[0]["tries"] == retries + 1
    assert len(recorder.steps) == 1
    if retries:
        assert f"after {retries + 1} tries" in result.error.message


async def test_non_retryable_errors_are_not_retried():
    spec = workflow(FLAKY.replace("max_retries: 3", "max_retries: 5"))
    result, recorder = await run(spec, {"text": "t"})
    assert result.status == "failed"
    assert recorder.steps[0]["tries"] == 1


async def test_default_retry_budget_is_three():
    spec = workflow(
        SLOW.replace("DELAY", "1").replace(
            "{timeout: TIMEOUT, max_retries: RETRIES}", "{timeout: 0.02}"
        )
    )
    result, recorder = await run(spec, {"job": "j"})
    assert result.error.type == "Timeout"
    assert recorder.steps[0]["tries"] == 4


class StopAfterFirstStep(MemoryRecorder):
    """A recorder whose run is cancelled once a step has finished."""

    async def should_stop(self, node_id: str | None = None) -> bool:
        return any("status" in step for step in self.steps)


async def test_cancellation_stops_before_the_next_node():
    recorder = StopAfterFirstStep()
    result, _ = await run(workflow(LINEAR), {"job": "j"}, recorder=recorder)

    assert result.status == "cancelled"
    assert result.error is None
    assert visited(recorder) == ["plan"]
    assert result.state["plan"] == "Plan j"
    assert result.state["size"] == 0
    assert result.steps == 1


async def test_cancellation_before_a_fan_out():
    recorder = StopAfterFirstStep()
    result, _ = await run(
        workflow(FAN_OUT.replace("DELAY", "0")), {"phrases": ["a", "b"]}, recorder=recorder
    )
    assert result.status == "cancelled"
    assert visited(recorder) == ["prepare"]


async def test_cancelled_from_the_start_runs_nothing():
    result, recorder = await run(
        workflow(LINEAR), {"job": "j"}, recorder=MemoryRecorder(cancelled=True)
    )
    assert result.status == "cancelled"
    assert recorder.steps == []


def test_an_unknown_provider_is_rejected_when_loading():
    with pytest.raises(SpecInvalid) as caught:
        workflow(LINEAR.replace("provider: mock", "provider: nonesuch"))
    assert "nonesuch" in str(caught.value)
    assert "unknown provider" in str(caught.value)


async def test_an_unknown_provider_fails_the_run_naming_it():
    spec = with_llm(workflow(LINEAR), provider="nonesuch")
    result, recorder = await run(spec, {"job": "j"})

    assert result.status == "failed"
    assert result.error.type == "UnknownProvider"
    assert result.error.node == "plan"
    assert result.error.provider == "nonesuch"
    assert "unknown provider 'nonesuch'" in result.error.message
    assert "mock" in result.error.message
    assert recorder.steps[0]["status"] == "failed"


async def test_a_wrong_typed_output_fails_naming_node_and_field():
    text = ROUTED.replace("CONDITION", "state.score >= 8").replace("SCORE", "high")
    text = text.replace("      - {}\n", "")  # the wrong answer repeats
    text = text.replace("config:\n", "config:\n  execution: {max_retries: 1}\n")
    result, recorder = await run(workflow(text), {"draft": "d"})

    assert result.status == "failed"
    assert result.error.type == "InvalidOutput"
    assert result.error.node == "review"
    assert "review.score" in result.error.message
    assert "expected int" in result.error.message
    assert "'high'" in result.error.message
    # A wrong output is retryable: the mock answers the same again.
    assert recorder.steps[0]["tries"] == 2
    assert result.state["score"] == 0


INPUTS = """\
schema_version: "1.0"
flow: {name: inputs}
state:
  fields:
    topic: {type: str, required: true}
    profile:
      type: object
      schema: {name: str}
      default: {name: Ada}
    text: {type: str, default: ""}
nodes:
  - id: write
    prompt: "About {subject} for {who} and {state.topic}"
    inputs: {subject: "{state.topic}", who: state.profile.name}
    outputs: [text]
edges:
  - {from: START, to: write}
  - {from: write, to: END}
config:
  llm: {provider: mock}
"""


async def test_prompts_render_node_input_aliases():
    result, _ = await run(workflow(INPUTS), {"topic": "owls"})
    assert result.status == "completed"
    assert result.state["text"] == "About owls for Ada and owls"


async def test_node_llm_overrides_the_workflow_llm():
    text = LINEAR.replace(
        '    prompt: "Measure {state.plan}"\n',
        '    prompt: "Measure {state.plan}"\n    llm: {responses: [{size: 42}]}\n',
    )
    result, _ = await run(workflow(text), {"job": "j"})
    assert result.state["size"] == 42
    assert result.state["plan"] == "Plan j"


async def test_a_retry_takes_the_next_mock_response():
    text = ROUTED.replace("CONDITION", "state.score >= 8").replace("SCORE", "high")
    text = text.replace("      - {}\n", "      - {score: 9, verdict: fixed}\n      - {}\n")
    result, recorder = await run(workflow(text), {"draft": "d"})

    assert result.status == "completed"
    assert recorder.steps[0]["tries"] == 2
    assert result.state["verdict"] == "fixed"
    assert visited(recorder) == ["review", "publish"]
