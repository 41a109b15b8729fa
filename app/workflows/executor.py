"""The executor: walks a workflow's graph, calls the provider for each node, and
reports every step to a recorder.

It knows no database and no web: `services/` wires the recorder to the store,
and tests use an in-memory one. It takes the spec object, never a file.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from app.errors import InvalidInputs
from app.workflows.conditions import ConditionError
from app.workflows.prompts import PromptError, input_reference, render_prompt
from app.workflows.providers import (
    LLMRequest,
    OutputField,
    ProviderError,
    ProviderPolicy,
    ProviderPool,
)
from app.workflows.sandbox import limits_for, run_code
from app.workflows.spec import EdgeSpec, NodeSpec, ParallelSpec, WorkflowSpec
from app.workflows.toolbox import ToolBox, ToolCall, tool_problems
from app.workflows.types import check_value

__all__ = [
    "MAX_NODE_EXECUTIONS",
    "ExecutionResult",
    "MemoryRecorder",
    "NodeFailure",
    "Recorder",
    "Replay",
    "ReusedStep",
    "ToolCall",
    "execute",
    "node_output_fields",
    "runnable_problems",
    "walk_reused",
    "where_in",
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

    async def tool_called(
        self, node_id: str, order: int, item_index: int | None, call: ToolCall
    ) -> None:
        """A call the node made while it executed: a tool, or the code sandbox."""
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

    async def tool_called(
        self, node_id: str, order: int, item_index: int | None, call: ToolCall
    ) -> None:
        self.steps.append(
            {"node_id": node_id, "order": order, "item_index": item_index} | call.as_step()
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
    # What the run's reader should know though it completed (a missed `warn` gate).
    notes: list[str] = field(default_factory=list)


class _Failed(Exception):
    def __init__(self, failure: NodeFailure):
        super().__init__(failure.message)
        self.failure = failure


class _Cancelled(Exception):
    pass


def runnable_problems(
    spec: WorkflowSpec, policy: ProviderPolicy | None = None
) -> list[tuple[tuple[str | int, ...], str]]:
    """What keeps `spec` from running here as it says, each at its place in the file: a
    feature this product does not implement, or a tool this server does not offer. A run
    of such a workflow is refused; it never runs as something else."""
    policy = policy or ProviderPolicy.from_env()
    return [*spec.unsupported, *tool_problems(spec, policy)]


def node_output_fields(spec: WorkflowSpec, node: NodeSpec) -> tuple[OutputField, ...]:
    """What the node must produce, each with its type and description."""
    types = spec.output_types(node.id)
    descriptions = spec.output_descriptions(node.id)
    return tuple(
        OutputField(name=name, spec=types[name], description=descriptions.get(name))
        for name in node.outputs
    )


@dataclass
class _Usage:
    """What one node execution spent; `tries` so far, also when it fails."""

    tries: int = 0
    tokens: int = 0
    cost_usd: float = 0.0


class _Run:
    def __init__(
        self,
        spec: WorkflowSpec,
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
        self.policy = policy or ProviderPolicy.from_env()
        self.timeout = float(spec.config.execution.timeout)
        self.max_retries = spec.config.execution.max_retries
        self.providers = ProviderPool(timeout=self.timeout, policy=self.policy)
        self.nodes = {n.id: n for n in spec.nodes}
        self.edges: dict[str, list[EdgeSpec]] = {}
        for edge in spec.edges:
            self.edges.setdefault(edge.from_, []).append(edge)
        self.order = 0
        self.visits: dict[str, int] = {}
        self.spent = _Usage()
        self.started = time.monotonic()

    async def run(self) -> None:
        # Like the original's graph runtime, every node an edge leads to runs; the nodes
        # reached in one step run together on the same state, then the next step's nodes
        # are the targets of all their edges (each node once).
        active = await self._after(START)
        while active:
            if self.order >= MAX_NODE_EXECUTIONS:
                raise _Failed(
                    NodeFailure(
                        "TooManySteps",
                        f"the run executed {MAX_NODE_EXECUTIONS} nodes without reaching END: "
                        "check the route conditions for a cycle that never exits",
                        active[0],
                    )
                )
            for node_id in active:
                if await self.recorder.should_stop(node_id):
                    raise _Cancelled
                self.visits[node_id] = self.visits.get(node_id, 0) + 1
            if len(active) == 1:
                self.state.update(await self._run_node(self.nodes[active[0]], self.state))
            else:
                await self._together(active)
            following: list[str] = []
            for node_id in active:
                for target in await self._after(node_id):
                    if target != END and target not in following:
                        following.append(target)
            active = following

    async def _together(self, node_ids: list[str]) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._run_node(self.nodes[n], self.state)) for n in node_ids
                ]
        except* _Failed as failures:
            raise failures.exceptions[0] from None
        written: dict[str, str] = {}
        for node_id, task in zip(node_ids, tasks, strict=True):
            for key in task.result():
                if key in written:
                    raise _Failed(
                        NodeFailure(
                            "ConflictingUpdate",
                            f"nodes {written[key]!r} and {node_id!r} ran in the same step and "
                            f"both wrote {key!r}; a field takes one value per step (as in the "
                            "original): let one of them write it, or chain them",
                            node_id,
                        )
                    )
                written[key] = node_id
        for task in tasks:
            self.state.update(task.result())

    async def _after(self, node_id: str) -> list[str]:
        """Where the run goes after `node_id`: the targets of each of its edges."""
        targets: list[str] = []
        for edge in self.edges.get(node_id, []):
            if edge.parallel is not None:
                await self._fan_out(edge.parallel)
                targets += self._next(edge.parallel.target_node)
            elif edge.loop is not None:
                loop = edge.loop
                done = bool(self.state.get(loop.condition_field))
                if done or self.visits.get(node_id, 0) >= loop.max_iterations:
                    targets.append(loop.exit_to)
                else:
                    targets.append(node_id)
            else:
                targets += self._follow(node_id, edge)
        return targets

    def _next(self, node_id: str) -> list[str]:
        """After a fan-out: where its target node's own linear and routed edges lead."""
        targets: list[str] = []
        for edge in self.edges.get(node_id, []):
            targets += self._follow(node_id, edge)
        return targets

    def _follow(self, node_id: str, edge: EdgeSpec) -> list[str]:
        if edge.routes:
            # As the original: the conditions in order, the default only when none holds.
            ordered = sorted(edge.routes, key=lambda route: route.condition.parsed.is_default)
            for route in ordered:
                try:
                    if route.condition.parsed.evaluate(self.state):
                        return [route.to]
                except ConditionError as exc:
                    raise _Failed(NodeFailure("ConditionError", str(exc), node_id)) from None
            raise _Failed(
                NodeFailure(
                    "NoRouteMatched",
                    f"no route from {node_id!r} matched the state and there is no default route",
                    node_id,
                )
            )
        return [edge.to] if edge.to is not None else []

    async def _fan_out(self, parallel: ParallelSpec) -> None:
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
        node: NodeSpec,
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
        started = datetime.now(UTC)
        step_id = await self.recorder.step_started(node.id, order, item_index)
        usage = _Usage()
        try:
            if node.code is not None:
                outputs = await self._run_code(node, state, order, item_index, usage)
            else:
                outputs = await self._call_model(node, state, order, item_index, item, usage)
        except _Failed as exc:
            await self.recorder.step_finished(
                step_id,
                status="failed",
                started_at=started,
                output=None,
                error=exc.failure.message,
                tokens=usage.tokens,
                cost_usd=usage.cost_usd,
                tries=usage.tries,
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
                    tokens=usage.tokens,
                    cost_usd=usage.cost_usd,
                    tries=usage.tries,
                )
            )
            raise
        self.spent.tokens += usage.tokens
        self.spent.cost_usd += usage.cost_usd
        await self.recorder.step_finished(
            step_id,
            status="completed",
            started_at=started,
            output=outputs,
            error=None,
            tokens=usage.tokens,
            cost_usd=usage.cost_usd,
            tries=usage.tries,
        )
        return outputs

    async def _call_model(
        self,
        node: NodeSpec,
        state: Mapping[str, Any],
        order: int,
        item_index: int | None,
        item: Any,
        usage: _Usage,
    ) -> dict[str, Any]:
        settings = self.spec.llm_for(node.id).model_dump(exclude_none=True)
        provider_name = settings["provider"]
        try:
            prompt = render_prompt(node.prompt, state, _aliases(node))
        except PromptError as exc:
            raise _Failed(NodeFailure("PromptError", f"node {node.id!r}: {exc}", node.id)) from None

        async def report(call: ToolCall) -> None:
            await self.recorder.tool_called(node.id, order, item_index, call)

        request = LLMRequest(
            node_id=node.id,
            prompt=prompt,
            outputs=node_output_fields(self.spec, node),
            schema=self.spec.output_json_schema(node.id),
            settings=settings,
            attempt=self.attempt,
            item=item,
            tools=ToolBox(node, self.policy, self.timeout, report) if node.tools else None,
        )
        while True:
            usage.tries += 1
            try:
                provider = self.providers.get(provider_name)
                result = await asyncio.wait_for(provider.complete(request), self.timeout)
                usage.tokens += result.total_tokens
                usage.cost_usd += result.cost_usd
                return {
                    out.name: check_value(
                        out.spec, result.outputs.get(out.name), f"{node.id}.{out.name}"
                    )
                    for out in request.outputs
                }
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
            if not error.retryable or usage.tries > self.max_retries:
                suffix = f" (after {usage.tries} tries)" if usage.tries > 1 else ""
                raise _Failed(
                    NodeFailure(
                        error.kind,
                        f"node {node.id!r} (provider {error.provider}): {error}{suffix}",
                        node.id,
                        error.provider,
                    )
                )
            await asyncio.sleep(min(0.05 * 2 ** (usage.tries - 1), 1.0))

    async def _run_code(
        self,
        node: NodeSpec,
        state: Mapping[str, Any],
        order: int,
        item_index: int | None,
        usage: _Usage,
    ) -> dict[str, Any]:
        """A code node, as the original runs it: its `inputs` taken from the state, the
        value the code leaves in `result` written to its first output. Deterministic, so
        never retried."""
        assert node.code is not None
        usage.tries = 1
        inputs = {local: _state_value(state, path) for local, path in _aliases(node).items()}
        started = datetime.now(UTC)
        result = await run_code(node.code, inputs, limits_for(node.sandbox))
        await self.recorder.tool_called(
            node.id,
            order,
            item_index,
            ToolCall(
                name="sandbox",
                arguments={"inputs": inputs},
                result={"result": result.result, "stdout": result.stdout},
                error=result.error,
                started_at=started,
                duration_ms=result.duration_ms,
            ),
        )
        if not result.ok:
            raise _Failed(NodeFailure("CodeError", f"node {node.id!r}: {result.error}", node.id))
        name = node.outputs[0]
        types = self.spec.output_types(node.id)
        try:
            return {name: check_value(types[name], result.result, f"{node.id}.{name}")}
        except InvalidInputs as exc:
            raise _Failed(
                NodeFailure("CodeError", f"node {node.id!r}: result: {exc.message}", node.id)
            ) from None

    def _reuse(self, node: NodeSpec, item_index: int | None) -> ReusedStep | None:
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

    def gate_failures(self) -> list[str]:
        """The quality gates (config.gates) the finished run misses, as the original checks
        them: cost, tokens and duration against each gate's min and max."""
        gates = self.spec.config.gates
        if gates is None:
            return []
        metrics = {
            "cost_usd": self.spent.cost_usd,
            "total_tokens": float(self.spent.tokens),
            "duration_ms": (time.monotonic() - self.started) * 1000,
        }
        missed = []
        for gate in gates.gates:
            if gate.metric not in metrics:
                # The original fails a gate whose metric it did not collect, too.
                missed.append(f"{gate.metric} is not measured here ({', '.join(metrics)})")
                continue
            value = metrics[gate.metric]
            if gate.max is not None and value > gate.max:
                missed.append(f"{gate.metric} {value:g} is above its gate's max {gate.max:g}")
            if gate.min is not None and value < gate.min:
                missed.append(f"{gate.metric} {value:g} is below its gate's min {gate.min:g}")
        return missed


def _aliases(node: NodeSpec) -> dict[str, str]:
    inputs = node.inputs or {}
    return {local: input_reference(ref) or ref for local, ref in inputs.items()}


def _state_value(state: Mapping[str, Any], path: str) -> Any:
    value: Any = state
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _item_field(items_field: str, fields: Mapping[str, Any]) -> str:
    """Where a fan-out puts each item: the singular of the list's name if that is a field."""
    for candidate in (items_field[:-1] if items_field.endswith("s") else None, "item"):
        if candidate and candidate in fields:
            return candidate
    return "item"


async def execute(
    spec: WorkflowSpec,
    state: Mapping[str, Any],
    *,
    attempt: int = 1,
    recorder: Recorder | None = None,
    policy: ProviderPolicy | None = None,
    replay: Replay | None = None,
) -> ExecutionResult:
    """Run `spec` from the validated initial `state`. Never raises for a failing node:
    the failure is in the result, with its node and provider. `policy` says which
    endpoints, key variables and tools the workflow may use (by default, the server's).
    With `replay`, recorded node executions are taken over where they apply (resume).
    A workflow that cannot run here as it says (`runnable_problems`) fails before any node."""
    policy = policy or ProviderPolicy.from_env()
    problems = runnable_problems(spec, policy)
    if problems:
        path, message = problems[0]
        index = path[1] if path[:1] == ("nodes",) and len(path) > 1 else None
        node = spec.nodes[index].id if isinstance(index, int) else None
        failure = NodeFailure("NotRunnable", f"{where_in(spec, path)}: {message}", node)
        return ExecutionResult(status="failed", state=dict(state), error=failure)
    run = _Run(
        spec, copy.deepcopy(dict(state)), attempt, recorder or MemoryRecorder(), policy, replay
    )
    notes: list[str] = []
    try:
        await run.run()
        status, error = "completed", None
        missed = run.gate_failures()
        if missed and spec.config.gates is not None and spec.config.gates.on_fail == "fail":
            status = "failed"
            error = NodeFailure(
                "QualityGateFailed", "quality gate missed: " + "; ".join(missed), None
            )
        notes = [f"quality gate missed: {m}" for m in missed] if status == "completed" else []
    except _Failed as exc:
        status, error = "failed", exc.failure
    except _Cancelled:
        status, error = "cancelled", None
    finally:
        await run.providers.aclose()
    return ExecutionResult(
        status=status, state=run.state, error=error, steps=run.order, notes=notes
    )


def where_in(spec: WorkflowSpec, path: tuple[str | int, ...]) -> str:
    """A place in the file as the loader names it: nodes[write].tools[0]."""
    text = ""
    for depth, part in enumerate(path):
        if isinstance(part, int):
            label: str | int = spec.nodes[part].id if depth == 1 and path[0] == "nodes" else part
            text += f"[{label}]"
        else:
            text += f".{part}" if text else part
    return text


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


async def walk_reused(
    spec: WorkflowSpec, state: Mapping[str, Any], replay: Replay
) -> list[ReusedStep]:
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
