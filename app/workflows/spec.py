"""The workflow config models: one frozen pydantic model per section of the YAML format.

The format is the original configurable-agents schema v1.0. Its sections that only observe
a run (observability, mlflow, optimization, A/B tests, storage, memory, ...) load and are
listed by ``WorkflowSpec.ignored_sections``; what would change what a run does and is not
implemented here is listed by ``WorkflowSpec.unsupported`` and refused before a run starts.
Unknown keys are dropped with a warning by the loader, as the original ignores them.

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
from app.workflows.sandbox import unsupported as sandbox_unsupported
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
# With no provider the original calls Gemini, and this model when none is given.
DEFAULT_PROVIDER = "google"
DEFAULT_MODELS = {"google": "gemini-2.5-flash-lite"}
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
    # The original's range; vendors accept up to 2, but a file valid here must run there.
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
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


class ToolSpec(_Spec):
    """One entry of a node's ``tools``: a built-in tool's name, what a failing call does, and
    the tool's own settings. Written as a bare name or as this mapping."""

    name: str
    on_error: str = "fail"
    config: dict[str, Any] | None = None

    @field_validator("on_error")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        if value not in ("fail", "continue"):
            raise ValueError(f"on_error must be 'fail' or 'continue', not {value!r}")
        return value


def _tool_entries(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    return [{"name": item} if isinstance(item, str) else item for item in value]


class NodeSpec(_Spec):
    """A node: one LLM call (with its tools) whose prompt reads the state and whose outputs
    update it, or, with ``code``, a Python snippet run in the sandbox."""

    id: str
    name: str | None = None
    description: str | None = None
    prompt: str
    inputs: dict[str, str] | None = None
    outputs: list[str]
    output_schema: OutputSchema | None = None
    tools: list[ToolSpec] = Field(default_factory=list)
    llm: LLMConfig | None = None
    code: str | None = None
    sandbox: dict[str, Any] | None = None
    # Loaded for compatibility with the original format; they only observe a run.
    memory: Any = None
    optimize: Any = None
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
        return _tool_entries(value)

    @property
    def tool_names(self) -> list[str]:
        return [tool.name for tool in self.tools]

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
                "'to' names one node: write one edge per target (several edges from one "
                "node run their targets together), 'routes' to branch, or 'parallel' to fan out"
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


class GateSpec(_Spec):
    """One quality gate: a finished run's metric must stay within ``min``/``max``."""

    metric: str
    max: float | None = None
    min: float | None = None


class GatesConfig(_Spec):
    """``config.gates``: quality gates on a finished run's metrics (the original's shape).
    ``on_fail: fail`` fails a run that misses one; ``warn`` and ``block_deploy`` (there is
    no deploy here) record the miss in the run's log only."""

    gates: list[GateSpec] = Field(default_factory=list)
    on_fail: str = "warn"

    @field_validator("on_fail")
    @classmethod
    def _known_action(cls, value: str) -> str:
        if value not in ("warn", "fail", "block_deploy"):
            raise ValueError(f"on_fail must be one of warn, fail, block_deploy, not {value!r}")
        return value


class GlobalConfig(_Spec):
    """``config``: the default LLM, execution limits, and the original's other settings."""

    llm: LLMConfig | None = None
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    gates: GatesConfig | None = None
    # Loaded for compatibility with the original format; they only observe a run.
    observability: Any = None
    storage: Any = None
    mlflow: Any = None
    ab_test: Any = None


# Sections that only observe or tune a run elsewhere: loaded, listed, not run.
_IGNORED_TOP = ("optimization", "memory")
_IGNORED_CONFIG = ("observability", "storage", "mlflow", "ab_test")
_IGNORED_NODE = ("memory", "optimize", "log_prompts", "log_artifacts", "mlflow")


class WorkflowSpec(_Spec):
    """A whole workflow file."""

    schema_version: str
    flow: FlowMeta
    state: StateSpec
    nodes: list[NodeSpec]
    edges: list[EdgeSpec]
    config: GlobalConfig = Field(default_factory=GlobalConfig)
    # Loaded for compatibility with the original format; they only observe a run.
    optimization: Any = None
    memory: Any = None

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

    def _output_specs(self, node_id: str) -> dict[str, Any]:
        """Each output with the field that declares it: its ``output_schema`` field (or the
        whole schema for a single output of a plain type), else its state field. A declared
        bare ``object`` takes its nested keys from the state field."""
        node = self.node(node_id)
        schema = node.output_schema
        by_name: dict[str, Any] = {}
        if schema is not None and schema.fields:
            by_name = {f.name: f for f in schema.fields}
        elif schema is not None and len(node.outputs) == 1:
            by_name = {node.outputs[0]: schema}
        found: dict[str, Any] = {}
        for name in node.outputs:
            # Outputs are state fields: the loader refuses any other.
            declared: Any = by_name.get(name) or self.state.fields[name]
            if name in self.state.fields and type_of(declared).kind == "object":
                declared = self.state.fields[name]
            found[name] = declared
        return found

    def output_types(self, node_id: str) -> dict[str, TypeRef]:
        """Each output of the node with the type its value must have."""
        return {name: type_of(spec) for name, spec in self._output_specs(node_id).items()}

    def output_descriptions(self, node_id: str) -> dict[str, str]:
        """Descriptions of the node's outputs (the declaring field's, then the state field's)."""
        node = self.node(node_id)
        schema_fields = {
            f.name: f for f in (node.output_schema and node.output_schema.fields) or []
        }
        found: dict[str, str] = {}
        for name in node.outputs:
            text = getattr(schema_fields.get(name), "description", None)
            if not text and len(node.outputs) == 1 and node.output_schema is not None:
                text = node.output_schema.description
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
        """The node's LLM settings: its own ``llm`` over ``config.llm``, then the original's
        defaults (Gemini, and its model when none is given)."""
        node_llm = self.node(node_id).llm
        merged = (node_llm or LLMConfig()).merged_over(self.config.llm)
        provider = merged.provider or DEFAULT_PROVIDER
        model = merged.model or DEFAULT_MODELS.get(provider)
        return merged.model_copy(update={"provider": provider, "model": model})

    @property
    def unsupported(self) -> list[tuple[tuple[str | int, ...], str]]:
        """What the file asks for that would change what a run does and that this product
        cannot do: (where, why). A run of such a workflow is refused, never run otherwise."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        for i, node in enumerate(self.nodes):
            why = sandbox_unsupported(node.sandbox) if node.code is not None else None
            if why is not None:
                found.append((("nodes", i, "sandbox"), why))
        return found

    @property
    def ignored_sections(self) -> list[tuple[str | int, ...]]:
        """Paths of the sections present in the file that only observe or tune a run in the
        original: loaded, not run here."""
        found: list[tuple[str | int, ...]] = [
            (key,) for key in _IGNORED_TOP if getattr(self, key) is not None
        ]
        found += [
            ("config", key) for key in _IGNORED_CONFIG if getattr(self.config, key) is not None
        ]
        for i, node in enumerate(self.nodes):
            found += [("nodes", i, key) for key in _IGNORED_NODE if getattr(node, key) is not None]
        return found

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the whole resolved config (keys as written in YAML).

        ``workflow_from_snapshot`` turns it back into an equal WorkflowSpec.
        """
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
