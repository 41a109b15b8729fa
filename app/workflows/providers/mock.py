"""The mock provider: deterministic and offline, for demos and tests.

- `responses`: output objects returned in order, one per node call of a run;
  the last one repeats.
- without `responses`: values derived from the rendered prompt (str: the
  prompt; numbers: its length; bool: true; lists and objects from their schema).
- `fail_on_attempt: [1]`: every call of a run whose attempt is listed fails,
  so an original run fails and its restart succeeds.
- `delay_seconds`: wait before answering, so a run can be watched.
- `cost_per_call_usd`: what each call reports it cost, so costs and spend caps can be
  seen and tested offline.
- a response `{tool_calls: [{name, arguments}]}` is a model turn that asks for tool calls:
  the node's tools run them, and the next response answers (or asks again), so the
  tool-calling loop runs offline.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from app.workflows.providers.base import MAX_TOOL_ROUNDS, LLMRequest, LLMResult, ProviderError
from app.workflows.types import example_value

__all__ = ["MockProvider"]


class MockProvider:
    name = "mock"

    def __init__(self) -> None:
        # One instance serves one run, so the response cursor is per run.
        self._calls = 0

    async def complete(self, request: LLMRequest) -> LLMResult:
        settings = request.settings
        delay = settings.get("delay_seconds")
        if delay:
            await asyncio.sleep(float(delay))
        if request.attempt in (settings.get("fail_on_attempt") or []):
            self._calls += 1
            raise ProviderError(
                f"configured to fail on attempt {request.attempt} "
                "(config.llm.fail_on_attempt); restart the run to try again",
                provider="mock",
                retryable=False,
                kind="MockFailure",
            )
        chosen = self._next(settings)
        rounds = 0
        while isinstance(chosen, dict) and chosen.get("tool_calls"):
            if request.tools is None:
                raise ProviderError(
                    f"a scripted response asks for tool calls, but node {request.node_id!r} "
                    "has no tools",
                    provider="mock",
                    retryable=False,
                    kind="MockMisconfigured",
                )
            rounds += 1
            if rounds > MAX_TOOL_ROUNDS:
                raise ProviderError(
                    f"the model still asked for tools after {MAX_TOOL_ROUNDS} rounds",
                    provider="mock",
                    retryable=False,
                    kind="TooManyToolRounds",
                )
            for call in chosen["tool_calls"]:
                await request.tools.call(str(call.get("name")), call.get("arguments") or {})
            chosen = self._next(settings)
        outputs: dict[str, Any] = {}
        for out in request.outputs:
            if isinstance(chosen, dict) and out.name in chosen:
                outputs[out.name] = copy.deepcopy(chosen[out.name])
            else:
                outputs[out.name] = example_value(out.spec, request.prompt)
        words = len(request.prompt.split())
        return LLMResult(
            outputs=outputs,
            prompt_tokens=words,
            completion_tokens=len(outputs),
            cost_usd=float(settings.get("cost_per_call_usd") or 0.0),
        )

    def _next(self, settings: dict[str, Any]) -> Any:
        """The scripted response of this model turn (None without `responses`)."""
        index = self._calls
        self._calls += 1
        responses = settings.get("responses")
        if not responses:
            return None
        return responses[min(index, len(responses) - 1)]
