"""The executor: walks a workflow's graph, calls the provider for each node, and
reports every step to a recorder.

It knows no database and no web: `services/` wires the recorder to the store,
and tests use an in-memory one. It takes the spec object, never a file.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from app.errors import InvalidInputs
from app.workflows.conditions import ConditionError, parse_condition
from app.workflows.prompts import PromptError, input_reference, render_prompt
from app.workflows.providers import (
    LLMRequest,
    OutputField,
    ProviderError,
    ProviderPolicy,
    ProviderPool,
)
from app.workflows.types import check_value, type_of

__all__ = [
    "MAX_NODE_EXECUTIONS",
    "ExecutionResult",
    "MemoryRecorder",
    "NodeFailure",
    "Recorder",
    "Replay",
    "ReusedStep",
    "execute",
    "node_output_fields",
    "walk_reused",
]

START, END = "START", "END"
# Routes may form cycles (review → rewrite → review); this bounds a run whose
# conditions never let it out.
MAX_NODE_EXECUTIONS = 1000
# Fan-out items run concurrently, but no more than this many provider calls at once.
FAN_OUT_LIMIT = 8


class Recorder(Protocol):
    """Where the executor reports progress. Every method may be a no-op."""

    async def step_started(self, node_id: str, order: int, item_index: int | None) -> str: ...

    async def step_finished(
        self,
        step_id: str,
        *,
        status: str,
        started_at: datetime,
        output: Any,
        error: str | None,
        tokens: int,
        cost_usd: float,
        tries: int,
    ) -> None: ...

    async def should_stop(self, node_id: str | None = None) -> bool:
        """True when the run was cancelled: the executor stops before `node_id` runs."""
        ...

    async def step_reused(self, node_id: str, order: int, step: ReusedStep) -> None:
        """A node execution taken over from an earlier run instead of executed."""
        ...


@dataclass(frozen=True)
class ReusedStep:
    """A completed node execution of an earlier run: what resume takes over."""

    node_id: str
    item_index: int | None
    output: Mapping[str, Any]
    # The run that executed it (a reused step keeps pointing at its first run).
    source: str | None = None
    tokens: int = 0
    cost_usd: float = 0.0


class Replay:
    """Resume: walk the graph as a fresh run would, but take each node's outputs from
    `steps` (an earlier run's completed executions, in order) instead of calling the
    provider, until the first node that has none or is `stop_at`; from there on,
    everything executes.

    The walk is the executor's own, so routes, loops and fan-outs take the path the
    earlier run took: the k-th execution of a node (and fan-out item) gets the k-th
    recorded one. Items of one fan-out are independent, so completed items are reused
    even where a sibling has to execute again.
    """

    def __init__(self, steps: list[ReusedStep], stop_at: str | None = None):
        self.stop_at = stop_at
        self.live = False
        self.reused = 0
        self._missed = False
        self._calls: dict[tuple[str, int | None], int] = {}
        self._steps: dict[tuple[str, int | None], list[ReusedStep]] = {}
        for step in steps:
            self._steps.setdefault((step.node_id, step.item_index), []).append(step)

    def take(self, node_id: str, item_index: int | None) -> ReusedStep | None:
        if item_index is None and self._missed:
            # A fan-out item executed again: what follows depends on its new output.
            self.live = True
        if self.live or node_id == self.stop_at:
            self.live = True
            return None
        key = (node_id, item_index)
        seen = self._calls.get(key, 0)
        self._calls[key] = seen + 1
        recorded = self._steps.get(key, [])
        if seen >= len(recorded):
            if item_index is None:
                self.live = True
            else:
                self._missed = True
            return None
        self.reused += 1
        return recorded[seen]


@dataclass
class MemoryRecorder:
    """A recorder that keeps steps in memory (for tests and one-off runs)."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False

    async def step_started(self, node_id: str, order: int, item_index: int | None) -> str:
        self.steps.append({"node_id": node_id, "order": order, "item_index": item_index})
        return str(len(self.steps) - 1)

    async def step_finished(self, step_id: str, **result: Any) -> None:
        self.steps[int(step_id)].update(result)

    async def should_stop(self, node_id: str | None = None) -> bool:
        return self.cancelled

    async def step_reused(self, node_id: str, order: int, step: ReusedStep) -> None:
        self.steps.append(
            {"node_id": node_id, "order": order, "item_index": step.item_index}
            | {"status": "reused", "output": dict(step.output), "reused_from": step.source}
        )


@dataclass(frozen=True)
class NodeFailure:
    type: str
    message: str
    node: str | None
    provider: str | None = None


@dataclass
class ExecutionResult:
    status: str  # completed | failed | cancelled
    state: dict[str, Any]
    error: NodeFailure | None = None
    steps: int = 0


class _Failed(Exception):
    def __init__(self, failure: NodeFailure):
        super().__init__(failure.message)
        self.failure = failure


class _Cancelled(Exception):
    pass


def _dump(model: Any) -> dict[str, Any]:
    if model is None:
        return {}
    if hasattr(model, "model_dump"):
        return {k: v for k, v in model.model_dump().items() if v is not None}
    return {k: v for k, v in dict(model).items() if v is not None}


def llm_settings(spec: Any, node: Any) -> dict[str, Any]:
    """The node's LLM settings: the workflow's `config.llm`, overridden key by key by the node's."""
    config = getattr(spec, "config", None)
    merged = _dump(getattr(config, "llm", None))
    merged.update(_dump(getattr(node, "llm", None)))
    merged.setdefault("provider", "openai")
    return merged


def execution_settings(spec: Any) -> tuple[float, int]:
    execution = getattr(getattr(spec, "config", None), "execution", None)
    timeout = getattr(execution, "timeout", None) or 120
    retries = getattr(execution, "max_retries", None)
    return float(timeout), 3 if retries is None else int(retries)


def node_output_fields(spec: Any, node: Any) -> tuple[OutputField, ...]:
    """What the node must produce; without `output_schema`, its state fields' types."""
    state_fields = spec.state.fields
    schema = getattr(node, "output_schema", None)
    by_name: dict[str, Any] = {}
    if schema is not None and getattr(schema, "fields", None):
        by_name = {f.name: f for f in schema.fields}
    outputs = []
    for name in node.outputs:
        declared = by_name.get(name)
        if declared is None and schema is not None and not getattr(schema, "fields", None):
            declared = schema if len(node.outputs) == 1 else None
        base = declared if declared is not None else state_fields[name]
        spec_for_type = base
        # A schema field of bare `object` takes its nested keys from the state field.
        if type_of(base).kind == "object" and name in state_fields:
            spec_for_type = state_fields[name]
        outputs.append(
            OutputField(
                name=name, spec=spec_for_type, description=getattr(base, "description", None)
            )
        )
    return tuple(outputs)


class _Run:
    def __init__(
        self,
        spec: Any,
        state: dict[str, Any],
        attempt: int,
        recorder: Recorder,
        policy: ProviderPolicy | None = None,
        replay: Replay | None = None,
    ):
        self.replay = replay
        self.spec = spec
        self.state = state
        self.attempt = attempt
        self.recorder = recorder
        self.timeout, self.max_retries = execution_settings(spec)
        self.providers = ProviderPool(timeout=self.timeout, policy=policy)
        self.nodes = {n.id: n for n in spec.nodes}
        self.edges = {e.from_: e for e in spec.edges}
        self.order = 0
        self.visits: dict[str, int] = {}

    async def run(self) -> None:
        current = await self._after(START)
        while current != END:
            if self.order >= MAX_NODE_EXECUTIONS:
                raise _Failed(
                    NodeFailure(
                        "TooManySteps",
                        f"the run executed {MAX_NODE_EXECUTIONS} nodes without reaching END: "
                        "check the route conditions for a cycle that never exits",
                        current,
                    )
                )
            if await self.recorder.should_stop(current):
                raise _Cancelled
            self.visits[current] = self.visits.get(current, 0) + 1
            outputs = await self._run_node(self.nodes[current], self.state)
            self.state.update(outputs)
            current = await self._after(current)

    async def _after(self, node_id: str) -> str:
        edge = self.edges.get(node_id)
        if edge is None:
            return END
        if getattr(edge, "parallel", None) is not None:
            await self._fan_out(edge.parallel)
            return self._next(edge.parallel.target_node)
        if getattr(edge, "loop", None) is not None:
            loop = edge.loop
            done = bool(self.state.get(loop.condition_field))
            if done or self.visits.get(node_id, 0) >= loop.max_iterations:
                return loop.exit_to
            return getattr(edge, "to", None) or node_id
        return self._next(node_id)

    def _next(self, node_id: str) -> str:
        edge = self.edges.get(node_id)
        if edge is None:
            return END
        if getattr(edge, "routes", None):
            for route in edge.routes:
                try:
                    if parse_condition(route.condition.logic).evaluate(self.state):
                        return route.to
                except ConditionError as exc:
                    raise _Failed(NodeFailure("ConditionError", str(exc), node_id)) from None
            raise _Failed(
                NodeFailure(
                    "NoRouteMatched",
                    f"no route from {node_id!r} matched the state and there is no default route",
                    node_id,
                )
            )
        return edge.to or END

    async def _fan_out(self, parallel: Any) -> None:
        items = self.state.get(parallel.items_field) or []
        target = self.nodes[parallel.target_node]
        item_field = _item_field(parallel.items_field, self.spec.state.fields)
        if await self.recorder.should_stop(target.id):
            raise _Cancelled

        limit = asyncio.Semaphore(FAN_OUT_LIMIT)

        async def one(index: int, item: Any) -> Any:
            async with limit:
                return await one_item(index, item)

        async def one_item(index: int, item: Any) -> Any:
            local = copy.deepcopy(self.state)
            local[item_field] = item
            outputs = await self._run_node(target, local, item_index=index, item=item)
            if len(target.outputs) == 1:
                return outputs[target.outputs[0]]
            return outputs

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(i, item)) for i, item in enumerate(items)]
        except* _Failed as failures:
            # The first failure fails the run; its siblings were cancelled by the group.
            raise failures.exceptions[0] from None
        self.state[parallel.collect_field] = [task.result() for task in tasks]

    async def _run_node(
        self,
        node: Any,
        state: Mapping[str, Any],
        *,
        item_index: int | None = None,
        item: Any = None,
    ) -> dict[str, Any]:
        order = self.order
        self.order += 1
        if self.replay is not None:
            reused = self._reuse(node, item_index)
            if reused is not None:
                await self.recorder.step_reused(node.id, order, reused)
                return dict(reused.output)
        settings = llm_settings(self.spec, node)
        provider_name = settings["provider"]
        started = datetime.now(UTC)
        step_id = await self.recorder.step_started(node.id, order, item_index)
        tries = 0
        try:
            try:
                prompt = render_prompt(node.prompt, state, _aliases(node))
            except PromptError as exc:
                raise _Failed(
                    NodeFailure("PromptError", f"node {node.id!r}: {exc}", node.id)
                ) from None
            request = LLMRequest(
                node_id=node.id,
                prompt=prompt,
                outputs=node_output_fields(self.spec, node),
                settings=settings,
                attempt=self.attempt,
                item=item,
            )
            while True:
                tries += 1
                try:
                    provider = self.providers.get(provider_name)
                    result = await asyncio.wait_for(provider.complete(request), self.timeout)
                    outputs = {
                        out.name: check_value(
                            out.spec, result.outputs.get(out.name), f"{node.id}.{out.name}"
                        )
                        for out in request.outputs
                    }
                    break
                except TimeoutError:
                    error = ProviderError(
                        f"no answer within {self.timeout:g} s (config.execution.timeout)",
                        provider=provider_name,
                        retryable=True,
                        kind="Timeout",
                    )
                except InvalidInputs as exc:
                    error = ProviderError(
                        f"wrong output: {exc.message}",
                        provider=provider_name,
                        retryable=True,
                        kind="InvalidOutput",
                    )
                except ProviderError as exc:
                    error = exc
                if not error.retryable or tries > self.max_retries:
                    suffix = f" (after {tries} tries)" if tries > 1 else ""
                    raise _Failed(
                        NodeFailure(
                            error.kind,
                            f"node {node.id!r} (provider {error.provider}): {error}{suffix}",
                            node.id,
                            error.provider,
                        )
                    )
                await asyncio.sleep(min(0.05 * 2 ** (tries - 1), 1.0))
        except _Failed as exc:
            await self.recorder.step_finished(
                step_id,
                status="failed",
                started_at=started,
                output=None,
                error=exc.failure.message,
                tokens=0,
                cost_usd=0.0,
                tries=tries,
            )
            raise
        except asyncio.CancelledError:
            await asyncio.shield(
                self.recorder.step_finished(
                    step_id,
                    status="cancelled",
                    started_at=started,
                    output=None,
                    error="cancelled",
                    tokens=0,
                    cost_usd=0.0,
                    tries=tries,
                )
            )
            raise
        await self.recorder.step_finished(
            step_id,
            status="completed",
            started_at=started,
            output=outputs,
            error=None,
            tokens=result.total_tokens,
            cost_usd=result.cost_usd,
            tries=tries,
        )
        return outputs

    def _reuse(self, node: Any, item_index: int | None) -> ReusedStep | None:
        """The recorded execution to take over for this call, or None to execute it."""
        assert self.replay is not None
        step = self.replay.take(node.id, item_index)
        if step is None:
            return None
        try:
            outputs = {
                out.name: check_value(out.spec, step.output.get(out.name), f"{node.id}.{out.name}")
                for out in node_output_fields(self.spec, node)
            }
        except (InvalidInputs, AttributeError):
            # Recorded by a workflow whose outputs differ: executing it is the safe way.
            self.replay.live = True
            return None
        return ReusedStep(node.id, item_index, outputs, step.source, step.tokens, step.cost_usd)


def _aliases(node: Any) -> dict[str, str]:
    inputs = getattr(node, "inputs", None) or {}
    return {local: input_reference(ref) or ref for local, ref in inputs.items()}


def _item_field(items_field: str, fields: Mapping[str, Any]) -> str:
    """Where a fan-out puts each item: the singular of the list's name if that is a field."""
    for candidate in (items_field[:-1] if items_field.endswith("s") else None, "item"):
        if candidate and candidate in fields:
            return candidate
    return "item"


async def execute(
    spec: Any,
    state: Mapping[str, Any],
    *,
    attempt: int = 1,
    recorder: Recorder | None = None,
    policy: ProviderPolicy | None = None,
    replay: Replay | None = None,
) -> ExecutionResult:
    """Run `spec` from the validated initial `state`. Never raises for a failing node:
    the failure is in the result, with its node and provider. `policy` says which
    endpoints and key variables the workflow may use (by default, the server's).
    With `replay`, recorded node executions are taken over where they apply (resume)."""
    run = _Run(
        spec, copy.deepcopy(dict(state)), attempt, recorder or MemoryRecorder(), policy, replay
    )
    try:
        await run.run()
        status, error = "completed", None
    except _Failed as exc:
        status, error = "failed", exc.failure
    except _Cancelled:
        status, error = "cancelled", None
    finally:
        await run.providers.aclose()
    return ExecutionResult(status=status, state=run.state, error=error, steps=run.order)


class _WouldExecute(Exception):
    """The walk reached a node a resume would execute."""


class _ReuseCounter(MemoryRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.reused: list[ReusedStep] = []

    async def step_started(self, node_id: str, order: int, item_index: int | None) -> str:
        raise _WouldExecute

    async def step_reused(self, node_id: str, order: int, step: ReusedStep) -> None:
        self.reused.append(step)


async def walk_reused(spec: Any, state: Mapping[str, Any], replay: Replay) -> list[ReusedStep]:
    """The node executions a resume with `replay` takes over, found by the executor's
    own walk without executing anything: it stops at the first node it would execute."""
    recorder = _ReuseCounter()
    run = _Run(spec, copy.deepcopy(dict(state)), 1, recorder, None, replay)
    try:
        await run.run()
    except (_WouldExecute, _Failed, _Cancelled):
        pass
    except BaseExceptionGroup as group:  # a fan-out item that would execute
        if not group.subgroup((_WouldExecute, _Failed)):
            raise
    finally:
        await run.providers.aclose()
    return recorder.reused
