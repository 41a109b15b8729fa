"""The workflow config models: one frozen pydantic model per section of the YAML format.

The format is the original configurable-agents schema v1.0. Sections of it that this product
does not execute (observability, mlflow, optimization, memory, sandbox, code, tools, A/B tests,
quality gates, storage, webhooks, ...) are accepted, typed loosely, and listed by
``WorkflowSpec.ignored_sections``. Any other key is an error.

These models check each section on its own; cross-references (edges to nodes, outputs to state
fields, placeholders, conditions) are checked by ``app.workflows.loader``.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from app.workflows.conditions import Condition, parse_condition
from app.workflows.prompts import input_reference
from app.workflows.types import TypeRef, json_schema, parse_type, type_of

__all__ = [
    "PROVIDERS",
    "SCHEMA_VERSION",
    "EdgeSpec",
    "ExecutionConfig",
    "FieldSpec",
    "FlowMeta",
    "GlobalConfig",
    "LLMConfig",
    "LoopSpec",
    "NodeSpec",
    "OutputSchema",
    "OutputSchemaField",
    "ParallelSpec",
    "Route",
    "RouteCondition",
    "StateSpec",
    "WorkflowSpec",
]

SCHEMA_VERSION = "1.0"
PROVIDERS = ("openai", "anthropic", "google", "ollama", "mock")
MOCK_ONLY_KEYS = ("responses", "fail_on_attempt", "delay_seconds", "cost_per_call_usd")
RESERVED_NODE_IDS = ("START", "END")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _number_as_text(value: Any) -> Any:
    # `version: 1.0` unquoted is a YAML float; the format means the text.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class FlowMeta(_Spec):
    """``flow``: what the workflow is called and how it describes itself."""

    name: str
    description: str | None = None
    version: str | None = None
    tags: list[str] | None = None
    author: str | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return _number_as_text(value)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("flow name cannot be empty")
        return value.strip()


def _schema_shorthand(value: Any) -> Any:
    # The original writes nested object keys as `key: type`; expand to the full field form.
    if isinstance(value, dict):
        return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
    return value


class _Typed(_Spec):
    """What a state field and an output schema field share: a type, a description and,
    for ``object``, nested keys."""

    type: str
    description: str | None = None
    schema_: dict[str, FieldSpec] | None = Field(default=None, alias="schema")

    @field_validator("type")
    @classmethod
    def _type_parses(cls, value: str) -> str:
        parse_type(value)
        return value.strip()

    @field_validator("schema_", mode="before")
    @classmethod
    def _expand_schema(cls, value: Any) -> Any:
        return _schema_shorthand(value)

    @property
    def type_ref(self) -> TypeRef:
        """The parsed type, with nested object keys from ``schema``."""
        return type_of(self)


class FieldSpec(_Typed):
    """A state field (or a nested key of an ``object`` field)."""

    required: bool = False
    default: Any = None

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.required and self.default is not None:
            raise ValueError("a field cannot be both required: true and have a default")
        if self.schema_ is not None and not _takes_schema(self.type):
            raise ValueError(f"'schema' is only allowed for type object, not {self.type}")
        return self


def _takes_schema(type_text: str) -> bool:
    ref = parse_type(type_text)
    while ref.kind == "list" and ref.item is not None:
        ref = ref.item
    return ref.kind == "object"


class StateSpec(_Spec):
    """``state``: the typed fields a run carries from node to node."""

    fields: dict[str, FieldSpec]

    @field_validator("fields")
    @classmethod
    def _not_empty(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        if not value:
            raise ValueError("state must have at least one field")
        for name in value:
            if not name.isidentifier():
                raise ValueError(f"state field name {name!r} must be a valid identifier")
        return value


class OutputSchemaField(_Typed):
    """One field of an ``object`` output schema."""

    name: str


class OutputSchema(_Spec):
    """``output_schema``: an ``object`` with one field per output, or one plain type."""

    type: str
    fields: list[OutputSchemaField] | None = None
    description: str | None = None

    @field_validator("type")
    @classmethod
    def _type_parses(cls, value: str) -> str:
        parse_type(value)
        return value.strip()

    @model_validator(mode="after")
    def _fields_match_type(self) -> OutputSchema:
        if self.type == "object" and not self.fields:
            raise ValueError("an output_schema of type object must list its fields")
        if self.type != "object" and self.fields:
            raise ValueError(f"'fields' is only allowed when type is object, not {self.type}")
        return self


class LLMConfig(_Spec):
    """``llm``: provider and model settings, globally in ``config`` or per node.

    ``responses``, ``fail_on_attempt``, ``delay_seconds`` and ``cost_per_call_usd`` are read
    by the mock provider only.
    """

    provider: str | None = None
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, gt=0)
    base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("base_url", "api_base"),
        serialization_alias="base_url",
    )
    api_key_env: str | None = None
    responses: list[dict[str, Any]] | None = None
    fail_on_attempt: list[int] | None = None
    delay_seconds: float | None = Field(default=None, ge=0.0)
    cost_per_call_usd: float | None = Field(default=None, ge=0.0)

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str | None) -> str | None:
        if value is not None and value not in PROVIDERS:
            raise ValueError(f"unknown provider {value!r}; expected one of: {', '.join(PROVIDERS)}")
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _model_text(cls, value: Any) -> Any:
        return _number_as_text(value)

    def merged_over(self, base: LLMConfig | None) -> LLMConfig:
        """This config with unset keys taken from ``base``."""
        if base is None:
            return self
        mine = self.model_dump(exclude_unset=True, exclude_none=True)
        return base.model_copy(update=mine)


def _tool_names(value: Any) -> Any:
    # Tools may be written as names or as the original's {name, on_error, config}; tools are
    # not executed here, so only the names are kept.
    if not isinstance(value, list):
        return value
    names: list[Any] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            unknown = sorted(set(item) - {"name", "on_error", "config"})
            if unknown:
                raise ValueError(
                    f"tools[{i}]: unknown key {unknown[0]!r}; expected one of: name, on_error, "
                    "config"
                )
            if not isinstance(item.get("name"), str):
                raise ValueError(f"tools[{i}]: a tool needs a 'name'")
            names.append(item["name"])
        else:
            names.append(item)
    return names


class NodeSpec(_Spec):
    """A node: one LLM call whose prompt reads the state and whose outputs update it."""

    id: str
    name: str | None = None
    description: str | None = None
    prompt: str
    inputs: dict[str, str] | None = None
    outputs: list[str]
    output_schema: OutputSchema | None = None
    tools: list[str] = Field(default_factory=list)
    llm: LLMConfig | None = None
    # Loaded for compatibility with the original format, not executed.
    memory: Any = None
    optimize: Any = None
    sandbox: Any = None
    code: Any = None
    log_prompts: Any = None
    log_artifacts: Any = None
    mlflow: Any = None

    @field_validator("id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"node id {value!r} must be a valid identifier (letters, digits, _)")
        return value

    @field_validator("outputs")
    @classmethod
    def _has_outputs(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a node must have at least one output")
        if len(set(value)) != len(value):
            raise ValueError("outputs must not repeat a field")
        return value

    @field_validator("tools", mode="before")
    @classmethod
    def _tools(cls, value: Any) -> Any:
        return _tool_names(value)

    @property
    def input_aliases(self) -> dict[str, str]:
        """The node's ``inputs`` as local name -> state path (for ``render_prompt``)."""
        aliases: dict[str, str] = {}
        for local, ref in (self.inputs or {}).items():
            path = input_reference(ref)
            if path is not None:
                aliases[local] = path
        return aliases


class RouteCondition(_Spec):
    """``condition``: ``logic`` is an expression over ``state.<field>`` or ``default``."""

    logic: str

    @field_validator("logic")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_condition(value)
        return value

    @property
    def parsed(self) -> Condition:
        """The parsed condition (``is_default`` for ``default``)."""
        return parse_condition(self.logic)


class Route(_Spec):
    """One branch of a conditional edge."""

    condition: RouteCondition
    to: str


class LoopSpec(_Spec):
    """``loop``: rerun the edge's node until ``condition_field`` is true, then go to exit_to."""

    max_iterations: int = Field(default=10, gt=0, le=100)
    condition_field: str
    exit_to: str = "END"


class ParallelSpec(_Spec):
    """``parallel``: run ``target_node`` once per item of ``items_field``; collect in order."""

    items_field: str
    target_node: str
    collect_field: str


class EdgeSpec(_Spec):
    """An edge from a node (or START): exactly one of ``to``, ``routes``, ``loop``, ``parallel``."""

    from_: str = Field(alias="from")
    to: str | None = None
    routes: list[Route] | None = None
    loop: LoopSpec | None = None
    parallel: ParallelSpec | None = None

    @field_validator("to", mode="before")
    @classmethod
    def _single_target(cls, value: Any) -> Any:
        if isinstance(value, list):
            raise ValueError(
                "fork-join edges (a list in 'to') are not supported; use one target per edge, "
                "'routes' to branch, or 'parallel' to fan out"
            )
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> EdgeSpec:
        kinds = [k for k in ("to", "routes", "loop", "parallel") if getattr(self, k) is not None]
        if not kinds:
            raise ValueError("an edge needs exactly one of: to, routes, loop, parallel")
        if len(kinds) > 1:
            raise ValueError(
                "an edge takes exactly one of: to, routes, loop, parallel "
                f"(found {', '.join(kinds)})"
            )
        if self.routes is not None and not self.routes:
            raise ValueError("'routes' must list at least one route")
        return self

    @property
    def kind(self) -> str:
        """Which of to / routes / loop / parallel this edge uses."""
        for kind in ("to", "routes", "loop", "parallel"):
            if getattr(self, kind) is not None:
                return kind
        raise AssertionError("validated edge without a kind")

    @property
    def targets(self) -> list[str]:
        """Every node (or END) this edge can lead to, in order."""
        if self.to is not None:
            return [self.to]
        if self.routes is not None:
            return [r.to for r in self.routes]
        if self.loop is not None:
            return [self.from_, self.loop.exit_to]
        assert self.parallel is not None
        return [self.parallel.target_node]


class ExecutionConfig(_Spec):
    """``config.execution``: per-node-call timeout (seconds) and retry budget."""

    timeout: float = Field(default=120, gt=0)
    max_retries: int = Field(default=3, ge=0)


class GlobalConfig(_Spec):
    """``config``: the default LLM, execution limits, and the original's other settings."""

    llm: LLMConfig | None = None
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    # Loaded for compatibility with the original format, not executed.
    observability: Any = None
    storage: Any = None
    memory: Any = None
    mlflow: Any = None
    ab_test: Any = None
    gates: Any = None


_IGNORED_TOP = ("optimization", "memory", "webhook")
_IGNORED_CONFIG = ("observability", "storage", "memory", "mlflow", "ab_test", "gates")
_IGNORED_NODE = (
    "tools",
    "memory",
    "optimize",
    "sandbox",
    "code",
    "log_prompts",
    "log_artifacts",
    "mlflow",
)


class WorkflowSpec(_Spec):
    """A whole workflow file."""

    schema_version: str
    flow: FlowMeta
    state: StateSpec
    nodes: list[NodeSpec]
    edges: list[EdgeSpec]
    config: GlobalConfig = Field(default_factory=GlobalConfig)
    # Loaded for compatibility with the original format, not executed.
    optimization: Any = None
    memory: Any = None
    webhook: Any = None

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return _number_as_text(value)

    @field_validator("schema_version")
    @classmethod
    def _supported_version(cls, value: str) -> str:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {value!r}; expected '{SCHEMA_VERSION}'")
        return value

    @field_validator("nodes")
    @classmethod
    def _has_nodes(cls, value: list[NodeSpec]) -> list[NodeSpec]:
        if not value:
            raise ValueError("a workflow must have at least one node")
        return value

    @field_validator("edges")
    @classmethod
    def _has_edges(cls, value: list[EdgeSpec]) -> list[EdgeSpec]:
        if not value:
            raise ValueError("a workflow must have at least one edge")
        return value

    @property
    def name(self) -> str:
        return self.flow.name

    def node(self, node_id: str) -> NodeSpec:
        """The node with this id; KeyError if there is none."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def field_type(self, field: str) -> TypeRef:
        """The parsed type of a state field; KeyError if there is none."""
        return self.state.fields[field].type_ref

    def output_types(self, node_id: str) -> dict[str, TypeRef]:
        """Each output of the node with the type its value must have.

        From ``output_schema`` when given (the single type of a non-object schema applies to
        the single output), otherwise the type of the output's state field.
        """
        node = self.node(node_id)
        schema = node.output_schema
        if schema is None:
            return {name: self.field_type(name) for name in node.outputs}
        if schema.fields:
            by_name = {f.name: f.type_ref for f in schema.fields}
            return {name: by_name[name] for name in node.outputs}
        return {node.outputs[0]: parse_type(schema.type)}

    def output_descriptions(self, node_id: str) -> dict[str, str]:
        """Descriptions of the node's outputs (schema field first, then state field)."""
        node = self.node(node_id)
        found: dict[str, str] = {}
        schema_fields = {
            f.name: f for f in (node.output_schema and node.output_schema.fields) or []
        }
        for name in node.outputs:
            text = getattr(schema_fields.get(name), "description", None)
            if not text and name in self.state.fields:
                text = self.state.fields[name].description
            if text:
                found[name] = text
        return found

    def output_json_schema(self, node_id: str) -> dict[str, Any]:
        """A JSON Schema for the node's answer: an object with one required key per output."""
        descriptions = self.output_descriptions(node_id)
        types_ = self.output_types(node_id)
        return {
            "type": "object",
            "properties": {
                name: json_schema(ref, descriptions.get(name)) for name, ref in types_.items()
            },
            "required": list(types_),
            "additionalProperties": False,
        }

    def llm_for(self, node_id: str) -> LLMConfig:
        """The node's LLM settings: its own ``llm`` over ``config.llm``."""
        node_llm = self.node(node_id).llm
        base = self.config.llm
        if node_llm is None:
            return base or LLMConfig()
        return node_llm.merged_over(base)

    @property
    def ignored_sections(self) -> list[str]:
        """Paths of the sections present in the file that this product loads but does not run."""
        found = [key for key in _IGNORED_TOP if getattr(self, key) is not None]
        found += [
            f"config.{key}" for key in _IGNORED_CONFIG if getattr(self.config, key) is not None
        ]
        for node in self.nodes:
            for key in _IGNORED_NODE:
                value = getattr(node, key)
                if value is not None and value != []:
                    found.append(f"nodes[{node.id}].{key}")
        return found

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the whole resolved config (keys as written in YAML).

        ``workflow_from_snapshot`` turns it back into an equal WorkflowSpec.
        """
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
