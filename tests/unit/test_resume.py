"""Resume: the executor's own walk, taking recorded outputs over instead of calling the
provider, reaches the state a fresh run reaches, through chains, routes, loops and
fan-outs, and executes only what it has no completed record of."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from app.workflows.executor import MemoryRecorder, Replay, ReusedStep, execute, walk_reused
from app.workflows.loader import parse_workflow, validate_inputs
from app.workflows.spec import WorkflowSpec


def workflow(text: str) -> WorkflowSpec:
    return parse_workflow(textwrap.dedent(text))


CHAIN = workflow(
    """\
    schema_version: "1.0"
    flow: {name: chain}
    state:
      fields:
        topic: {type: str, required: true}
        outline: {type: str, default: ""}
        draft: {type: str, default: ""}
        final: {type: str, default: ""}
    nodes:
      - {id: outline, prompt: "Outline {state.topic}", outputs: [outline]}
      - {id: draft, prompt: "Draft {state.outline}", outputs: [draft]}
      - {id: polish, prompt: "Polish {state.draft}", outputs: [final]}
    edges:
      - {from: START, to: outline}
      - {from: outline, to: draft}
      - {from: draft, to: polish}
      - {from: polish, to: END}
    config: {llm: {provider: mock, cost_per_call_usd: 0.01}}
    """
)

ROUTED_LOOP = workflow(
    """\
    schema_version: "1.0"
    flow: {name: routed_loop}
    state:
      fields:
        text: {type: str, required: true}
        size: {type: int, default: 0}
        verdict: {type: str, default: ""}
        enough: {type: bool, default: false}
    nodes:
      - {id: grow, prompt: "{state.text} and more", outputs: [text]}
      - {id: measure, prompt: "{state.text}", outputs: [size]}
      - {id: long, prompt: "long: {state.text}", outputs: [verdict]}
      - {id: short, prompt: "short: {state.text}", outputs: [verdict]}
    edges:
      - {from: START, to: grow}
      - from: grow
        loop: {condition_field: enough, max_iterations: 3, exit_to: measure}
      - from: measure
        routes:
          - {condition: {logic: "state.size > 40"}, to: long}
          - {condition: {logic: "default"}, to: short}
      - {from: long, to: END}
      - {from: short, to: END}
    config: {llm: {provider: mock}}
    """
)

FAN_OUT = workflow(
    """\
    schema_version: "1.0"
    flow: {name: fan}
    state:
      fields:
        items: {type: "list[str]", required: true}
        item: {type: str, default: ""}
        results: {type: "list[str]", default: []}
        summary: {type: str, default: ""}
    nodes:
      - {id: each, prompt: "Handle {state.item}", outputs: [item]}
      - {id: summarise, prompt: "Sum {state.results}", outputs: [summary]}
    edges:
      - from: START
        parallel: {items_field: items, target_node: each, collect_field: results}
      - {from: each, to: summarise}
      - {from: summarise, to: END}
    config: {llm: {provider: mock}}
    """
)

INPUTS = {
    "chain": (CHAIN, {"topic": "tides"}),
    "routed_loop": (ROUTED_LOOP, {"text": "seed"}),
    "fan_out": (FAN_OUT, {"items": ["a", "b", "c", "d"]}),
}


async def fresh(spec: WorkflowSpec, inputs: dict[str, Any]) -> tuple[dict[str, Any], list]:
    recorder = MemoryRecorder()
    result = await execute(spec, validate_inputs(spec, inputs), attempt=2, recorder=recorder)
    assert result.status == "completed", result.error
    return result.state, recorder.steps


def recorded(steps: list[dict[str, Any]], *, source: str = "run-1") -> list[ReusedStep]:
    ordered = sorted(steps, key=lambda s: (s["order"], s["item_index"] or 0))
    return [
        ReusedStep(
            s["node_id"],
            s["item_index"],
            s["output"],
            source,
            s.get("tokens", 0),
            s.get("cost_usd", 0.0),
        )
        for s in ordered
        if s.get("status") in ("completed", "reused")
    ]


async def resumed(spec: WorkflowSpec, inputs: dict[str, Any], replay: Replay):
    recorder = MemoryRecorder()
    result = await execute(
        spec, validate_inputs(spec, inputs), attempt=2, recorder=recorder, replay=replay
    )
    executed = [s["node_id"] for s in recorder.steps if s.get("status") != "reused"]
    reused = [s["node_id"] for s in recorder.steps if s.get("status") == "reused"]
    return result, executed, reused


@pytest.mark.parametrize("name", sorted(INPUTS))
async def test_resuming_after_any_prefix_reaches_the_fresh_runs_state(name: str) -> None:
    spec, inputs = INPUTS[name]
    state, steps = await fresh(spec, inputs)
    done = recorded(steps)
    for kept in range(len(done) + 1):
        result, executed, reused = await resumed(spec, inputs, Replay(done[:kept]))
        assert result.status == "completed"
        assert result.state == state, (name, kept)
        # Everything recorded is taken over (a fan-out item may come from anywhere in
        # the prefix), and the rest is executed: no node runs twice, none is skipped.
        assert len(reused) + len(executed) == len(done)
        assert bool(reused) == bool(kept)


async def test_a_chain_resumes_at_the_failed_node_and_pays_only_for_it() -> None:
    spec, inputs = INPUTS["chain"]
    _, steps = await fresh(spec, inputs)
    failed = recorded(steps)[:2]  # outline and draft completed; polish failed
    result, executed, reused = await resumed(spec, inputs, Replay(failed))
    assert (reused, executed) == (["outline", "draft"], ["polish"])
    assert result.status == "completed"


async def test_resume_from_a_node_executes_it_and_everything_after() -> None:
    spec, inputs = INPUTS["chain"]
    state, steps = await fresh(spec, inputs)
    result, executed, reused = await resumed(spec, inputs, Replay(recorded(steps), "draft"))
    assert (reused, executed) == (["outline"], ["draft", "polish"])
    assert result.state == state


async def test_a_fan_out_executes_again_only_the_items_that_did_not_complete() -> None:
    spec, inputs = INPUTS["fan_out"]
    state, steps = await fresh(spec, inputs)
    done = [s for s in recorded(steps) if not (s.node_id == "each" and s.item_index == 2)]
    done = [s for s in done if s.node_id != "summarise"]
    result, executed, reused = await resumed(spec, inputs, Replay(done))
    assert sorted(executed) == ["each", "summarise"]
    assert reused == ["each", "each", "each"]
    assert result.state == state


async def test_a_loop_reuses_each_iteration_it_recorded() -> None:
    spec, inputs = INPUTS["routed_loop"]
    state, steps = await fresh(spec, inputs)
    done = recorded(steps)
    assert [s.node_id for s in done] == ["grow", "grow", "grow", "measure", "short"]
    result, executed, reused = await resumed(spec, inputs, Replay(done[:2]))
    assert (reused, executed) == (["grow", "grow"], ["grow", "measure", "short"])
    assert result.state == state


async def test_a_recorded_output_that_no_longer_fits_is_executed_instead() -> None:
    spec, inputs = INPUTS["chain"]
    state, steps = await fresh(spec, inputs)
    done = recorded(steps)
    broken = [done[0], ReusedStep("draft", None, {"draft": 42}, "run-1"), done[2]]
    result, executed, reused = await resumed(spec, inputs, Replay(broken))
    assert (reused, executed) == (["outline"], ["draft", "polish"])
    assert result.state == state


async def test_walk_reused_finds_what_a_resume_takes_over_without_executing() -> None:
    spec, inputs = INPUTS["chain"]
    _, steps = await fresh(spec, inputs)
    found = await walk_reused(spec, validate_inputs(spec, inputs), Replay(recorded(steps)[:2]))
    assert [s.node_id for s in found] == ["outline", "draft"]
    assert sum(s.cost_usd for s in found) == pytest.approx(0.02)
