"""What the executor asks of an LLM provider, and how a provider says it failed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["LLMRequest", "LLMResult", "OutputField", "Provider", "ProviderError", "Tools"]

# Model turns one node execution may spend on tool calls before it must answer.
MAX_TOOL_ROUNDS = 10


class Tools(Protocol):
    """The tools a node offers the model (`app.workflows.toolbox.ToolBox`)."""

    def schemas(self) -> list[dict[str, Any]]: ...

    async def call(self, name: str, arguments: str | Mapping[str, Any]) -> str: ...


@dataclass(frozen=True)
class OutputField:
    """One value the node must produce: its name, type (a spec field) and description."""

    name: str
    spec: Any
    description: str | None = None


@dataclass(frozen=True)
class LLMRequest:
    node_id: str
    prompt: str
    outputs: tuple[OutputField, ...]
    settings: dict[str, Any]
    attempt: int = 1
    item: Any = None
    tools: Tools | None = None
    # The JSON Schema of the answer: an object with one required key per output.
    schema: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LLMResult:
    """The node's outputs, unchecked, and what the call cost."""

    outputs: dict[str, Any]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ProviderError(Exception):
    """A provider call that failed. `retryable` errors are tried again up to max_retries.

    The message names the provider and says what to set or check; the executor
    adds the node.
    """

    def __init__(
        self, message: str, *, provider: str, retryable: bool, kind: str = "ProviderError"
    ):
        super().__init__(message)
        self.provider = provider
        self.retryable = retryable
        self.kind = kind


class Provider(Protocol):
    name: str

    async def complete(self, request: LLMRequest) -> LLMResult: ...
