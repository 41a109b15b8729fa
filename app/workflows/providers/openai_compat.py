"""Any OpenAI-compatible Chat Completions endpoint, through the official SDK.

The original format's provider names keep working: each maps to its vendor's
OpenAI-compatible endpoint and the usual key variable. `api_base` (or
`base_url`) in the config, or `<PROVIDER>_BASE_URL` in the environment, points
at another server (vLLM, LM Studio, a proxy).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.errors import InvalidInputs
from app.workflows.providers.base import MAX_TOOL_ROUNDS, LLMRequest, LLMResult, ProviderError
from app.workflows.providers.policy import ProviderPolicy
from app.workflows.types import check_value, type_of

if TYPE_CHECKING:
    import openai

__all__ = ["ENDPOINTS", "OpenAICompatibleProvider"]


def _sdk() -> Any:
    """The openai package, imported on the first call to a provider: it takes 49 MB, and a
    dashboard or worker whose runs never call one (the mock, or a restart that fails
    before any call) should not pay them."""
    import openai

    return openai


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    key_vars: tuple[str, ...]
    base_var: str
    needs_key: bool = True


ENDPOINTS = {
    "openai": Endpoint("https://api.openai.com/v1", ("OPENAI_API_KEY",), "OPENAI_BASE_URL"),
    "google": Endpoint(
        "https://generativelanguage.googleapis.com/v1beta/openai/",
        ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
        "GOOGLE_BASE_URL",
    ),
    "anthropic": Endpoint(
        "https://api.anthropic.com/v1/", ("ANTHROPIC_API_KEY",), "ANTHROPIC_BASE_URL"
    ),
    "ollama": Endpoint("http://localhost:11434/v1", ("OLLAMA_API_KEY",), "OLLAMA_BASE_URL", False),
}

# USD per million tokens (input, output) for a few common models; others cost 0.
PRICES = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}


def _base_url(provider: str, endpoint: Endpoint, settings: dict[str, Any]) -> str:
    url = settings.get("api_base") or settings.get("base_url") or os.environ.get(endpoint.base_var)
    url = (url or endpoint.base_url).rstrip("/")
    if provider == "ollama" and not url.endswith("/v1"):
        url += "/v1"  # the original wrote Ollama's root URL; its OpenAI API lives under /v1
    return url


def _api_key(provider: str, endpoint: Endpoint, settings: dict[str, Any]) -> str:
    names = (settings["api_key_env"],) if settings.get("api_key_env") else endpoint.key_vars
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    if not endpoint.needs_key:
        return provider
    raise ProviderError(
        f"no API key: set {' or '.join(names)} in the environment"
        " (or name another variable with config.llm.api_key_env)",
        provider=provider,
        retryable=False,
        kind="MissingAPIKey",
    )


class OpenAICompatibleProvider:
    def __init__(self, provider: str, *, timeout: float, policy: ProviderPolicy | None = None):
        self.name = provider
        self.endpoint = ENDPOINTS.get(provider, ENDPOINTS["openai"])
        self.timeout = timeout
        self.policy = policy or ProviderPolicy()
        self._clients: dict[tuple[str, str], openai.AsyncOpenAI] = {}

    def _check_policy(self, settings: dict[str, Any]) -> None:
        """Refuse, before anything is sent, an endpoint or key variable that the workflow
        chose and the server does not allow."""
        chosen = settings.get("api_base") or settings.get("base_url")
        key_env = settings.get("api_key_env")
        why = self.policy.refuse_base_url(str(chosen)) if chosen else None
        if why is None and key_env:
            why = self.policy.refuse_key_env(str(key_env))
        if why is None:
            why = self.policy.refuse_vendor_key(
                names=(str(key_env),) if key_env else self.endpoint.key_vars,
                own_keys=self.endpoint.key_vars,
                url=str(chosen) if chosen else None,
                own_urls=(self.endpoint.base_url, os.environ.get(self.endpoint.base_var) or ""),
                needs_key=self.endpoint.needs_key or bool(key_env),
            )
        if why is not None:
            raise ProviderError(why, provider=self.name, retryable=False, kind="NotAllowed")

    def _client(self, settings: dict[str, Any]) -> tuple[openai.AsyncOpenAI, str]:
        self._check_policy(settings)
        base = _base_url(self.name, self.endpoint, settings)
        key = _api_key(self.name, self.endpoint, settings)
        client = self._clients.get((base, key))
        if client is None:
            # Retries and the deadline belong to the executor, which records them.
            client = _sdk().AsyncOpenAI(
                base_url=base, api_key=key, timeout=self.timeout, max_retries=0
            )
            self._clients[(base, key)] = client
        return client, base

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()

    async def complete(self, request: LLMRequest) -> LLMResult:
        settings = request.settings
        model = settings.get("model")
        if not model:
            raise ProviderError(
                "no model given: set config.llm.model (or llm.model on the node)",
                provider=self.name,
                retryable=False,
                kind="MissingModel",
            )
        client, base = self._client(settings)
        plain = _is_plain_text(request)
        messages: list[dict[str, Any]] = [{"role": "user", "content": request.prompt}]
        kwargs: dict[str, Any] = {"model": model, "messages": messages}
        if settings.get("temperature") is not None:
            kwargs["temperature"] = settings["temperature"]
        if settings.get("max_tokens") is not None:
            kwargs["max_tokens"] = settings["max_tokens"]
        if not plain:
            schema = request.schema
            messages.insert(
                0,
                {
                    "role": "system",
                    "content": "Answer with one JSON object, and nothing else, that matches "
                    "this JSON Schema:\n" + json.dumps(schema),
                },
            )
            kwargs["response_format"] = {"type": "json_object"}
        if request.tools is not None:
            kwargs["tools"] = request.tools.schemas()
        prompt_tokens = completion_tokens = 0
        # The tool-calling loop: the model asks for calls, the node's tools answer, and the
        # conversation goes back to the model until it answers without asking.
        for turn in range(MAX_TOOL_ROUNDS + 1):
            response = await self._create(client, kwargs, base, model)
            usage = getattr(response, "usage", None)
            prompt_tokens += getattr(usage, "prompt_tokens", None) or 0
            completion_tokens += getattr(usage, "completion_tokens", None) or 0
            calls = _tool_calls(response)
            if not calls or request.tools is None:
                break
            if turn == MAX_TOOL_ROUNDS:
                raise ProviderError(
                    f"model {model} still asked for tools after {MAX_TOOL_ROUNDS} rounds",
                    provider=self.name,
                    retryable=False,
                    kind="TooManyToolRounds",
                )
            messages.append(
                {
                    "role": "assistant",
                    "content": _content(response) or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.function.name,
                                "arguments": call.function.arguments,
                            },
                        }
                        for call in calls
                    ],
                }
            )
            for call in calls:
                answer = await request.tools.call(call.function.name, call.function.arguments)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": answer})
        content = _content(response)
        if content is None:
            raise ProviderError(
                f"{base} did not answer like a Chat Completions endpoint: check "
                f"config.llm.base_url / {self.endpoint.base_var}",
                provider=self.name,
                retryable=False,
                kind="InvalidResponse",
            )
        outputs = (
            {request.outputs[0].name: content} if plain else self._parse(content, request, model)
        )
        price_in, price_out = PRICES.get(model, (0.0, 0.0))
        return LLMResult(
            outputs=outputs,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=(prompt_tokens * price_in + completion_tokens * price_out) / 1_000_000,
        )

    async def _create(
        self, client: openai.AsyncOpenAI, kwargs: dict[str, Any], base: str, model: str
    ) -> Any:
        try:
            return await client.chat.completions.create(**kwargs)
        except _sdk().APIError as exc:
            raise self._translate(exc, base, model) from exc
        except ValueError:  # a body that claims to be JSON and is not
            return None

    def _parse(self, content: str, request: LLMRequest, model: str) -> dict[str, Any]:
        try:
            data = json.loads(content)
        except ValueError:
            raise ProviderError(
                f"model {model} answered with text that is not JSON: {content[:200]!r}",
                provider=self.name,
                retryable=True,
                kind="InvalidOutput",
            ) from None
        if not isinstance(data, dict):
            data = {request.outputs[0].name: data} if len(request.outputs) == 1 else {}
        outputs: dict[str, Any] = {}
        for out in request.outputs:
            if out.name not in data:
                raise ProviderError(
                    f"model {model} left out the output {out.name!r}",
                    provider=self.name,
                    retryable=True,
                    kind="InvalidOutput",
                )
            try:
                outputs[out.name] = check_value(out.spec, data[out.name], out.name)
            except InvalidInputs as exc:
                raise ProviderError(
                    f"model {model} returned a wrong output: {exc.message}",
                    provider=self.name,
                    retryable=True,
                    kind="InvalidOutput",
                ) from None
        return outputs

    def _translate(self, exc: openai.APIError, base: str, model: str) -> ProviderError:
        openai = _sdk()
        name = self.name
        if isinstance(exc, openai.APITimeoutError):
            return ProviderError(
                f"{base} did not answer within {self.timeout:g} s (config.execution.timeout)",
                provider=name,
                retryable=True,
                kind="Timeout",
            )
        if isinstance(exc, openai.APIConnectionError):
            return ProviderError(
                f"cannot reach {base}: check that the server runs, "
                f"or set config.llm.base_url / {self.endpoint.base_var}",
                provider=name,
                retryable=True,
                kind="Unreachable",
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ProviderError(
                f"{base} refused the API key: set a valid "
                f"{' or '.join(self.endpoint.key_vars)} (or config.llm.api_key_env)",
                provider=name,
                retryable=False,
                kind="AuthenticationFailed",
            )
        if isinstance(exc, openai.NotFoundError):
            return ProviderError(
                f"{base} does not know model {model!r}: check config.llm.model",
                provider=name,
                retryable=False,
                kind="ModelNotFound",
            )
        status = getattr(exc, "status_code", None)
        retryable = isinstance(exc, openai.RateLimitError | openai.InternalServerError)
        # A short excerpt only: the answer of an internal service must not be readable
        # through a run's error.
        excerpt = exc.message if len(exc.message) <= 200 else exc.message[:200] + "…"
        return ProviderError(
            f"{base} answered {status}: {excerpt}",
            provider=name,
            retryable=retryable,
            kind="ProviderError",
        )


def _content(response: Any) -> str | None:
    """The answer's text, or None when `response` is not a Chat Completion.

    The SDK does not check what a server answers: another kind of server (a web page at
    the base URL) gives a str or a completion without choices.
    """
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list):
        return None
    if not choices:
        return ""
    message = getattr(choices[0], "message", None)
    if message is None:
        return None
    content = getattr(message, "content", None)
    return content if isinstance(content, str) else ""


def _tool_calls(response: Any) -> list[Any]:
    """The tool calls the answer asks for (none when it is not a Chat Completion)."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        return []
    calls = getattr(getattr(choices[0], "message", None), "tool_calls", None)
    return list(calls) if isinstance(calls, list) else []


def _is_plain_text(request: LLMRequest) -> bool:
    return len(request.outputs) == 1 and type_of(request.outputs[0].spec).kind == "str"
