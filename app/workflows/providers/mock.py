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
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from app.workflows.providers.base import LLMRequest, LLMResult, ProviderError
from app.workflows.types import example_value

__all__ = ["MockProvider"]


class MockProvider:
    name = "mock"

    def __init__(self) -> None:
        # One instance serves one run, so the response cursor is per run.
        self._calls = 0

    async def complete(self, request: LLMRequest) -> LLMResult:
        settings = request.settings
        index = self._calls
        self._calls += 1
        delay = settings.get("delay_seconds")
        if delay:
            await asyncio.sleep(float(delay))
        if request.attempt in (settings.get("fail_on_attempt") or []):
            raise ProviderError(
                f"configured to fail on attempt {request.attempt} "
                "(config.llm.fail_on_attempt); restart the run to try again",
                provider="mock",
                retryable=False,
                kind="MockFailure",
            )
        responses = settings.get("responses")
        if responses:
            chosen = responses[min(index, len(responses) - 1)]
            outputs: dict[str, Any] = {}
            for out in request.outputs:
                if isinstance(chosen, dict) and out.name in chosen:
                    outputs[out.name] = copy.deepcopy(chosen[out.name])
                else:
                    outputs[out.name] = example_value(out.spec, request.prompt)
        else:
            outputs = {out.name: example_value(out.spec, request.prompt) for out in request.outputs}
        words = len(request.prompt.split())
        return LLMResult(
            outputs=outputs,
            prompt_tokens=words,
            completion_tokens=len(outputs),
            cost_usd=float(settings.get("cost_per_call_usd") or 0.0),
        )
