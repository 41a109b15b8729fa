"""LLM providers: `mock` (offline) and any OpenAI-compatible endpoint."""

from __future__ import annotations

from app.workflows.providers.base import (
    LLMRequest,
    LLMResult,
    OutputField,
    Provider,
    ProviderError,
)
from app.workflows.providers.mock import MockProvider
from app.workflows.providers.openai_compat import ENDPOINTS, OpenAICompatibleProvider
from app.workflows.providers.policy import ProviderPolicy
from app.workflows.spec import PROVIDERS

__all__ = [
    "KNOWN_PROVIDERS",
    "LLMRequest",
    "LLMResult",
    "OutputField",
    "Provider",
    "ProviderError",
    "ProviderPolicy",
    "ProviderPool",
]

KNOWN_PROVIDERS = PROVIDERS
# Every provider the format names is either the mock or an endpoint.
assert set(PROVIDERS) == {"mock", *ENDPOINTS}


class ProviderPool:
    """The providers one run uses, created on first use and closed with the run."""

    def __init__(self, *, timeout: float, policy: ProviderPolicy | None = None):
        self.timeout = timeout
        self.policy = policy or ProviderPolicy()
        self._providers: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        provider = self._providers.get(name)
        if provider is None:
            if name == "mock":
                provider = MockProvider()
            elif name in ENDPOINTS:
                provider = OpenAICompatibleProvider(name, timeout=self.timeout, policy=self.policy)
            else:
                raise ProviderError(
                    f"unknown provider {name!r}: use one of {', '.join(KNOWN_PROVIDERS)}",
                    provider=name,
                    retryable=False,
                    kind="UnknownProvider",
                )
            self._providers[name] = provider
        return provider

    async def aclose(self) -> None:
        for provider in self._providers.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()
