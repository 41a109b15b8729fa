"""Loading workflow files: YAML -> WorkflowSpec, with every problem reported at its line.

``parse_workflow`` runs three passes and collects all problems of a pass before stopping:

1. YAML: syntax (line from the parser's mark), duplicate keys, top level a mapping;
2. schema: the pydantic models of ``app.workflows.spec`` (unknown keys, missing keys, types);
3. graph and cross-references: node ids, edge targets, reachability, outputs, output_schema,
   prompt placeholders, node inputs, route conditions, loop and parallel fields, defaults.

Each problem becomes a ``SpecIssue(source, line, where, message)`` and all of them are raised
together as ``SpecInvalid``. ``where`` names nodes by id (``nodes[write].outputs``) and
edges by position (``edges[2].to``).
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
import types
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import AliasChoices, BaseModel, ValidationError

from app.errors import InvalidInputs, SpecInvalid, SpecIssue
from app.workflows.prompts import find_placeholders, input_reference
from app.workflows.sandbox import compile_problems
from app.workflows.spec import MOCK_ONLY_KEYS, RESERVED_NODE_IDS, EdgeSpec, WorkflowSpec
from app.workflows.types import TypeRef, check_value, describe_value, is_compatible, parse_type

__all__ = [
    "LoadedWorkflow",
    "load_workflow",
    "parse_cli_value",
    "parse_workflow",
    "read_workflow",
    "read_workflow_text",
    "validate_inputs",
    "workflow_from_snapshot",
]

Path_ = tuple[str | int, ...]

# Bounds on what one file may cost to read and to report on: its size, its values once
# aliases are expanded, the problems listed, the names compared for a suggestion.
MAX_FILE_BYTES = 1024 * 1024
MAX_VALUES = 100_000
MAX_PROBLEMS = 50
MAX_SUGGESTION_CANDIDATES = 500
# A problem: where it is, what it is, and optionally an exact line (inside a block scalar).
_Problem = tuple[Path_, str] | tuple[Path_, str, int | None]


class _Located:
    """What the YAML pass learnt: the data, the line of every key, and block-scalar starts."""

    def __init__(self, source: str, data: Any, lines: dict[Path_, int], blocks: dict[Path_, int]):
        self.source = source
        self.data = data
        self.lines = lines
        self.blocks = blocks

    def line(self, path: Path_) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(tuple(path[:end]))
            if found is not None:
                return found
        return None

    def where(self, path: Path_) -> str:
        """A readable path: ``nodes[write].outputs[1]``, ``edges[2].to``, ``state.fields.x``."""
        text = ""
        current: Any = self.data
        for depth, part in enumerate(path):
            if isinstance(part, int):
                label: str | int = part
                item = current[part] if isinstance(current, list) and part < len(current) else None
                if depth == 1 and path[0] == "nodes" and isinstance(item, Mapping):
                    node_id = item.get("id")
                    if isinstance(node_id, str) and node_id:
                        label = node_id
                text += f"[{label}]"
                current = item
            else:
                text += f".{part}" if text else str(part)
                current = current.get(part) if isinstance(current, Mapping) else None
        return text

    def issue(self, path: Path_, message: str, line: int | None = None) -> SpecIssue:
        return SpecIssue(
            self.source, line if line is not None else self.line(path), self.where(path), message
        )


# ---------------------------------------------------------------- pass 1: YAML


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """How many values the document holds once every alias is expanded, counting up to
    just past `limit`. Aliases share nodes, so a few lines can stand for billions of
    values ("billion laughs"); counting with a memo costs one visit per distinct node."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        sizes[id(node)] = total
        return total

    return size(root)


def _read_yaml(text: str, source: str) -> tuple[_Located, list[SpecIssue]]:
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_FILE_BYTES:
        raise SpecInvalid(
            [
                SpecIssue(
                    source,
                    None,
                    "",
                    f"the file is {size:,} bytes; a workflow may be at most "
                    f"{MAX_FILE_BYTES:,} bytes",
                )
            ]
        )
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, MAX_VALUES) > MAX_VALUES:
            raise SpecInvalid(
                [
                    SpecIssue(
                        source,
                        None,
                        "",
                        f"the YAML holds more than {MAX_VALUES:,} values once its aliases "
                        "(*name) are expanded; a workflow may hold at most that many",
                    )
                ]
            )
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        detail = " ".join(p for p in (exc.context, exc.problem) if p)
        raise SpecInvalid([SpecIssue(source, line, "", f"YAML syntax error: {detail}")]) from None
    except yaml.YAMLError as exc:
        raise SpecInvalid([SpecIssue(source, None, "", f"YAML error: {exc}")]) from None
    except RecursionError:
        raise SpecInvalid([SpecIssue(source, None, "", "the YAML is nested too deeply")]) from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError) as exc:
        # PyYAML's constructors let these through for values such as 2026-02-30 or
        # an empty `!!int`.
        raise SpecInvalid(
            [SpecIssue(source, None, "", f"a YAML value cannot be read: {exc!r}")]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()

    lines: dict[Path_, int] = {(): 1}
    blocks: dict[Path_, int] = {}
    located = _Located(source, data, lines, blocks)
    issues: list[SpecIssue] = []
    if node is not None:
        _walk(node, (), located, issues)
    if data is None:
        issues.append(SpecIssue(source, 1, "", "the file is empty; expected a workflow mapping"))
    elif not isinstance(data, dict):
        issues.append(
            SpecIssue(
                source,
                1,
                "",
                "a workflow file must be a mapping with schema_version, flow, state, nodes, "
                f"edges (got {describe_value(data)})",
            )
        )
    return located, issues


def _walk(node: yaml.Node, path: Path_, located: _Located, issues: list[SpecIssue]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None or key == "<<":
                continue
            line = key_node.start_mark.line + 1
            child = (*path, key)
            if key in seen:
                issues.append(
                    located.issue(
                        child,
                        f"duplicate key '{key}' (first at line {seen[key]}); "
                        "each key may appear once",
                        line=line,
                    )
                )
                continue
            seen[key] = line
            located.lines[child] = line
            if isinstance(value_node, yaml.ScalarNode) and value_node.style == "|":
                located.blocks[child] = value_node.start_mark.line + 2
            _walk(value_node, child, located, issues)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            located.lines[child] = item.start_mark.line + 1
            _walk(item, child, located, issues)


# ---------------------------------------------------------------- pass 2: schema


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _model_at(path: Path_) -> type[BaseModel] | None:
    """The spec model that validates the mapping at ``path`` (for unknown-key messages)."""
    current: Any = WorkflowSpec
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next(
                (
                    f
                    for name, f in current.model_fields.items()
                    if part in (name, f.alias, f.serialization_alias)
                ),
                None,
            )
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is list and isinstance(part, int):
            current = get_args(current)[0]
        elif get_origin(current) is dict and isinstance(part, str):
            current = get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _accepted_keys(model: type[BaseModel]) -> dict[str, Any]:
    """Every key the model reads (names, aliases, alias choices) -> the field's type."""
    keys: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        names = {name, field.alias or name}
        if isinstance(field.validation_alias, AliasChoices):
            names.update(c for c in field.validation_alias.choices if isinstance(c, str))
        for key in names:
            keys[key] = field.annotation
    return keys


# A key this close to a known one at the same place is a typo, refused with a suggestion;
# anything further is another tool's key, ignored with a warning as the original does.
NEAR_MISS = 0.8


def _drop_unknown(
    value: Any, annotation: Any, path: Path_, located: _Located, warnings: list[SpecIssue]
) -> None:
    """Remove, in place, the keys no model reads, warning about each (``x-`` keys silently);
    near misses of a known key stay, for the schema pass to refuse with "did you mean"."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(value, dict):
            return
        accepted = _accepted_keys(annotation)
        for key in list(value):
            if key in accepted:
                _drop_unknown(value[key], accepted[key], (*path, key), located, warnings)
            elif not isinstance(key, str) or (
                not key.startswith("x-")
                and difflib.get_close_matches(key, list(accepted), n=1, cutoff=NEAR_MISS)
            ):
                continue
            else:
                if not key.startswith("x-"):
                    where = located.where(path) or "the top level"
                    warnings.append(
                        located.issue((*path, key), f"unknown key '{key}' in {where} is ignored")
                    )
                del value[key]
    elif get_origin(annotation) is list and isinstance(value, list):
        for i, item in enumerate(value):
            _drop_unknown(item, get_args(annotation)[0], (*path, i), located, warnings)
    elif get_origin(annotation) is dict and isinstance(value, dict):
        for key, item in value.items():
            _drop_unknown(item, get_args(annotation)[1], (*path, key), located, warnings)


def _suggest(name: str, candidates: Iterable[str]) -> str:
    """Up to three near names. Past MAX_SUGGESTION_CANDIDATES names the comparison costs
    more than it helps (a file with thousands of nodes), so none are offered."""
    names = list(candidates)
    if len(names) > MAX_SUGGESTION_CANDIDATES:
        return ""
    close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.6)
    if not close:
        return ""
    quoted = [f"'{c}'" for c in close]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"
    return f" (did you mean {listed}?)"


def _listing(names: Iterable[str], limit: int = 20) -> str:
    """Names for a message: the first `limit`, then how many more."""
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", … ({len(names) - limit} more)"


def _schema_issues(exc: ValidationError, located: _Located) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    for err in exc.errors(include_url=False):
        loc: Path_ = tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = loc[:-1]
            model = _model_at(parent)
            expected = _keys_of(model) if model else []
            where = located.where(parent) or "the top level"
            message = f"unknown key '{loc[-1]}' in {where}"
            if expected:
                hint = _suggest(str(loc[-1]), expected)
                message += f"; expected one of: {_listing(expected)}{hint}"
            issues.append(located.issue(loc, message))
        elif kind == "missing":
            issues.append(located.issue(loc[:-1], f"missing required key '{loc[-1]}'"))
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            issues.append(
                located.issue(
                    loc, f"expected a mapping (key: value), got {describe_value(err.get('input'))}"
                )
            )
        elif kind == "list_type":
            issues.append(
                located.issue(loc, f"expected a list, got {describe_value(err.get('input'))}")
            )
        elif kind in ("value_error", "assertion_error"):
            message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
            issues.append(located.issue(loc, message))
        else:
            message = err["msg"][:1].lower() + err["msg"][1:]
            issues.append(located.issue(loc, f"{message} (got {describe_value(err.get('input'))})"))
    return issues


# ---------------------------------------------------------------- pass 3: graph


def _path_problem(spec: WorkflowSpec, parts: list[str]) -> str | None:
    """Why ``parts`` (a dotted state path) names nothing in the state, or None if it does."""
    fields = spec.state.fields
    if parts[0] not in fields:
        return (
            f"'{parts[0]}' is not a state field{_suggest(parts[0], fields)}; "
            f"state fields: {_listing(fields)}"
        )
    ref: TypeRef | None = fields[parts[0]].type_ref
    walked = parts[0]
    for key in parts[1:]:
        if ref is None:
            return None
        if ref.kind == "dict":
            ref = ref.item
        elif ref.kind == "object":
            if ref.fields is None:
                return None
            keys = dict(ref.fields)
            if key not in keys:
                return (
                    f"'{walked}' has no key '{key}'{_suggest(key, keys)}; "
                    f"its keys: {_listing(keys)}"
                )
            ref = keys[key]
        else:
            return f"'{walked}' is {ref}, not an object; it has no key '{key}'"
        walked += f".{key}"
    return None


def _state_problems(spec: WorkflowSpec) -> list[_Problem]:
    problems: list[_Problem] = []
    for name, field in spec.state.fields.items():
        if field.default is None:
            continue
        try:
            check_value(field, field.default, name)
        except InvalidInputs as exc:
            problems.append(
                (("state", "fields", name, "default"), f"default does not fit its type: {exc}")
            )
    return problems


def _node_problems(spec: WorkflowSpec, located: _Located) -> list[_Problem]:
    problems: list[_Problem] = []
    fields = spec.state.fields
    seen: dict[str, int] = {}
    for i, node in enumerate(spec.nodes):
        at: Path_ = ("nodes", i)
        if node.id in RESERVED_NODE_IDS:
            problems.append(((*at, "id"), f"'{node.id}' is reserved; choose another node id"))
        if node.id in seen:
            problems.append(
                ((*at, "id"), f"duplicate node id '{node.id}' (also nodes[{seen[node.id]}])")
            )
        seen.setdefault(node.id, i)
        for j, output in enumerate(node.outputs):
            if output not in fields:
                problems.append(
                    (
                        (*at, "outputs", j),
                        f"output '{output}' is not a state field{_suggest(output, fields)}; "
                        f"state fields: {_listing(fields)}",
                    )
                )
        problems += _output_schema_problems(spec, i)
        problems += _input_problems(spec, i)
        problems += _placeholder_problems(spec, i, located)
        problems += _mock_key_problems(spec, (*at, "llm"), node.llm, spec.llm_for(node.id).provider)
    return problems


def _output_schema_problems(spec: WorkflowSpec, i: int) -> list[_Problem]:
    node = spec.nodes[i]
    schema = node.output_schema
    if schema is None:
        return []
    at: Path_ = ("nodes", i, "output_schema")
    fields = spec.state.fields
    problems: list[_Problem] = []
    if schema.fields:
        names = [f.name for f in schema.fields]
        for name in node.outputs:
            if name not in names:
                problems.append(
                    ((*at, "fields"), f"output '{name}' has no field in output_schema.fields")
                )
        for k, out in enumerate(schema.fields):
            if out.name not in node.outputs:
                problems.append(
                    (
                        (*at, "fields", k, "name"),
                        f"output_schema field '{out.name}' is not in outputs "
                        f"({', '.join(node.outputs)})",
                    )
                )
            elif out.name in fields and not is_compatible(out.type_ref, fields[out.name].type_ref):
                problems.append(
                    (
                        (*at, "fields", k, "type"),
                        f"type {out.type_ref} does not fit state field '{out.name}' "
                        f"of type {fields[out.name].type_ref}",
                    )
                )
        return problems
    if len(node.outputs) != 1:
        return [
            (
                (*at, "type"),
                f"a non-object output_schema ({schema.type}) needs exactly one output, "
                f"not {len(node.outputs)}; use type: object with fields",
            )
        ]
    out_name = node.outputs[0]
    if out_name in fields:
        ref = parse_type(schema.type)
        if not is_compatible(ref, fields[out_name].type_ref):
            problems.append(
                (
                    (*at, "type"),
                    f"type {ref} does not fit state field '{out_name}' of type "
                    f"{fields[out_name].type_ref}",
                )
            )
    return problems


def _input_problems(spec: WorkflowSpec, i: int) -> list[_Problem]:
    problems: list[_Problem] = []
    for local, ref in (spec.nodes[i].inputs or {}).items():
        at: Path_ = ("nodes", i, "inputs", local)
        path = input_reference(ref)
        if path is None:
            problems.append(
                (at, f"input '{local}' must name a state field, like '{{field}}' (got {ref!r})")
            )
            continue
        problem = _path_problem(spec, path.split("."))
        if problem:
            problems.append((at, f"input '{local}': {problem}"))
    return problems


def _placeholder_problems(spec: WorkflowSpec, i: int, located: _Located) -> list[_Problem]:
    node = spec.nodes[i]
    aliases = node.input_aliases
    inputs = node.inputs or {}
    problems: list[_Problem] = []
    at: Path_ = ("nodes", i, "prompt")
    block_start = located.blocks.get(at)
    for ph in find_placeholders(node.prompt):
        parts = ph.path.split(".")
        if not ph.has_state_prefix and parts[0] in inputs:
            if parts[0] not in aliases:
                continue  # the bad input itself is reported
            parts = aliases[parts[0]].split(".") + parts[1:]
        problem = _path_problem(spec, parts)
        if problem:
            line = None
            if block_start is not None:
                line = block_start + node.prompt[: ph.start].count("\n")
            problems.append((at, f"placeholder {ph.text}: {problem}", line))
    return problems


def _mock_key_problems(
    spec: WorkflowSpec, at: Path_, llm: Any, provider: str | None
) -> list[_Problem]:
    if llm is None or provider is None or provider == "mock":
        return []
    return [
        ((*at, key), f"'{key}' is only read by the mock provider, not by '{provider}'")
        for key in MOCK_ONLY_KEYS
        if getattr(llm, key) is not None
    ]


def _edge_problems(spec: WorkflowSpec) -> tuple[list[_Problem], bool]:
    """Problems of the edges, and whether every edge names existing nodes."""
    node_ids = {n.id for n in spec.nodes}
    listed = _listing(sorted(node_ids))
    problems: list[_Problem] = []
    sources: dict[str, int] = {}
    dangling = False

    def target(path: Path_, name: str, what: str) -> None:
        nonlocal dangling
        if name == "START":
            dangling = True
            problems.append((path, f"{what} cannot be START"))
        elif name not in node_ids and name != "END":
            dangling = True
            problems.append(
                (
                    path,
                    f"{what} '{name}' is not a node{_suggest(name, node_ids)}; "
                    f"nodes: {listed}, END",
                )
            )

    for i, edge in enumerate(spec.edges):
        at: Path_ = ("edges", i)
        if edge.from_ == "END":
            problems.append(((*at, "from"), "an edge cannot start at END"))
        elif edge.from_ != "START" and edge.from_ not in node_ids:
            dangling = True
            problems.append(
                (
                    (*at, "from"),
                    f"'from' node '{edge.from_}' is not a node"
                    f"{_suggest(edge.from_, node_ids)}; nodes: "
                    f"{listed}, START",
                )
            )
        if edge.from_ == "START" and "START" in sources:
            problems.append(
                (
                    (*at, "from"),
                    f"START already has an edge (edges[{sources['START']}]); a workflow has "
                    "one entry point",
                )
            )
        sources.setdefault(edge.from_, i)
        if edge.to is not None:
            target((*at, "to"), edge.to, "target")
        for j, route in enumerate(edge.routes or []):
            target((*at, "routes", j, "to"), route.to, "route target")
        problems += _route_problems(spec, i, edge)
        if edge.loop is not None:
            problems += _loop_problems(spec, i, edge)
            target((*at, "loop", "exit_to"), edge.loop.exit_to, "loop exit_to")
        if edge.parallel is not None:
            problems += _parallel_problems(spec, i, edge)
            name = edge.parallel.target_node
            if name == "END":
                problems.append(((*at, "parallel", "target_node"), "target_node cannot be END"))
            else:
                target((*at, "parallel", "target_node"), name, "parallel target_node")
    if "START" not in sources:
        problems.append((("edges",), "no edge from START; add one like {from: START, to: <node>}"))
    return problems, not dangling


def _route_problems(spec: WorkflowSpec, i: int, edge: EdgeSpec) -> list[_Problem]:
    problems: list[_Problem] = []
    routes = edge.routes or []
    defaults = [j for j, r in enumerate(routes) if r.condition.parsed.is_default]
    if routes and not defaults:
        problems.append(
            (
                ("edges", i, "routes"),
                "conditional routes need a default route, last: add "
                "{condition: {logic: default}, to: <node or END>}",
            )
        )
    if len(defaults) > 1:
        problems.append((("edges", i, "routes", defaults[1]), "only one route may be the default"))
    for j, route in enumerate(routes):
        for path in sorted(route.condition.parsed.paths):
            problem = _path_problem(spec, list(path))
            if problem:
                problems.append(
                    (("edges", i, "routes", j, "condition", "logic"), f"condition: {problem}")
                )
    return problems


def _field_kind_problem(spec: WorkflowSpec, name: str, kind: str, what: str) -> str | None:
    fields = spec.state.fields
    if name not in fields:
        return f"{what} '{name}' is not a state field{_suggest(name, fields)}"
    actual = fields[name].type_ref
    if actual.kind != kind:
        return f"{what} '{name}' must be a {kind} field, but it is {actual}"
    return None


def _loop_problems(spec: WorkflowSpec, i: int, edge: EdgeSpec) -> list[_Problem]:
    assert edge.loop is not None
    problems: list[_Problem] = []
    if edge.from_ == "START":
        problems.append((("edges", i, "from"), "a loop edge must start at a node, not START"))
    problem = _field_kind_problem(spec, edge.loop.condition_field, "bool", "condition_field")
    if problem:
        problems.append((("edges", i, "loop", "condition_field"), problem))
    return problems


def _parallel_problems(spec: WorkflowSpec, i: int, edge: EdgeSpec) -> list[_Problem]:
    assert edge.parallel is not None
    problems: list[_Problem] = []
    for key in ("items_field", "collect_field"):
        problem = _field_kind_problem(spec, getattr(edge.parallel, key), "list", key)
        if problem:
            problems.append((("edges", i, "parallel", key), problem))
    return problems


def _graph_problems(spec: WorkflowSpec) -> list[_Problem]:
    node_ids = [n.id for n in spec.nodes]
    forward: dict[str, set[str]] = {}
    backward: dict[str, set[str]] = {}
    for edge in spec.edges:
        for name in edge.targets:
            forward.setdefault(edge.from_, set()).add(name)
            backward.setdefault(name, set()).add(edge.from_)
    reachable = _reach(forward, "START")
    reaches_end = _reach(backward, "END")
    problems: list[_Problem] = []
    for i, node_id in enumerate(node_ids):
        if node_id in RESERVED_NODE_IDS:
            continue
        if node_id not in reachable:
            problems.append(
                (
                    ("nodes", i),
                    f"node '{node_id}' is not reachable from START; connect it "
                    "with an edge or remove it",
                )
            )
        elif node_id not in forward:
            problems.append(
                (
                    ("nodes", i),
                    f"node '{node_id}' has no outgoing edge; add "
                    f"{{from: {node_id}, to: END}} or another edge",
                )
            )
        elif node_id not in reaches_end:
            problems.append((("nodes", i), f"node '{node_id}' has no path to END"))
    return problems


def _reach(graph: Mapping[str, set[str]], start: str) -> set[str]:
    seen = {start}
    queue = deque([start])
    while queue:
        for nxt in graph.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def _semantic_issues(spec: WorkflowSpec, located: _Located) -> list[SpecIssue]:
    problems: list[_Problem] = []
    problems += _state_problems(spec)
    problems += _node_problems(spec, located)
    edge_problems, edges_resolve = _edge_problems(spec)
    problems += edge_problems
    config_llm = spec.config.llm
    problems += _mock_key_problems(
        spec, ("config", "llm"), config_llm, config_llm.provider if config_llm else None
    )
    if edges_resolve:
        # Reachability is only meaningful once every edge names real nodes.
        problems += _graph_problems(spec)
    issues = []
    for problem in problems:
        path, message = problem[0], problem[1]
        line = problem[2] if len(problem) > 2 else None
        issues.append(located.issue(path, message, line=line))
    return issues


# ---------------------------------------------------------------- entry points


def _validate(
    data: Any, located: _Located, issues: list[SpecIssue], warnings: list[SpecIssue]
) -> WorkflowSpec:
    if not isinstance(data, dict):
        raise SpecInvalid(_sorted(issues))
    _drop_unknown(data, WorkflowSpec, (), located, warnings)
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecInvalid(_sorted(issues + _schema_issues(exc, located))) from None
    issues = issues + _semantic_issues(spec, located)
    if issues:
        raise SpecInvalid(_sorted(issues))
    for path in spec.ignored_sections:
        warnings.append(
            located.issue(path, "ignored: it only observes or tunes a run in the original")
        )
    for i, node in enumerate(spec.nodes):
        # The original refuses such code only when it runs; say so before.
        for problem in compile_problems(node.code) if node.code is not None else []:
            warnings.append(
                located.issue(("nodes", i, "code"), f"{problem}: every run of it will fail")
            )
    return spec


@dataclass(frozen=True)
class LoadedWorkflow:
    """A valid workflow file with what its reader should know: `warnings` (keys and
    sections loaded but ignored) and `unsupported` (what would change a run and cannot run
    here, which refuses every run of it), each at its line."""

    spec: WorkflowSpec
    warnings: list[SpecIssue]
    located: _Located

    def issue(self, path: Path_, message: str) -> SpecIssue:
        return self.located.issue(path, message)

    @property
    def unsupported(self) -> list[SpecIssue]:
        return [self.issue(path, message) for path, message in self.spec.unsupported]


def _sorted(issues: list[SpecIssue]) -> list[SpecIssue]:
    """By line; the first MAX_PROBLEMS, then one line saying how many more there are."""
    issues = sorted(issues, key=lambda issue: issue.line or 0)
    if len(issues) <= MAX_PROBLEMS:
        return issues
    more = len(issues) - MAX_PROBLEMS
    last = SpecIssue(issues[0].source, None, "", f"and {more} more problem(s) not shown")
    return [*issues[:MAX_PROBLEMS], last]


def parse_workflow(text: str, source: str = "<string>") -> WorkflowSpec:
    """Parse and fully validate a workflow from YAML text.

    Returns the WorkflowSpec, or raises SpecInvalid listing every problem found (with the
    line of each, taken from the YAML); never lets a parser or pydantic error escape.
    """
    return read_workflow_text(text, source).spec


def read_workflow_text(text: str, source: str = "<string>") -> LoadedWorkflow:
    """``parse_workflow`` that also returns the warnings and the located file."""
    located, issues = _read_yaml(text, source)
    warnings: list[SpecIssue] = []
    try:
        spec = _validate(located.data, located, issues, warnings)
        return LoadedWorkflow(spec, _sorted(warnings), located)
    except RecursionError:
        raise SpecInvalid(
            [SpecIssue(source, None, "", "the workflow is nested too deeply")]
        ) from None


# The original reads these; JSON is read as the YAML it is.
EXTENSIONS = (".yaml", ".yml", ".json")


def load_workflow(path: str | Path) -> WorkflowSpec:
    """Read and validate a workflow file; a missing or unreadable file is a SpecInvalid."""
    return read_workflow(path).spec


def read_workflow(path: str | Path) -> LoadedWorkflow:
    """``load_workflow`` that also returns the warnings and the located file."""
    file = Path(path)
    if file.suffix.lower() not in EXTENSIONS:
        raise SpecInvalid(
            [
                SpecIssue(
                    str(file),
                    None,
                    "",
                    f"unsupported file extension {file.suffix or '(none)'!r}: a workflow file "
                    f"ends in {', '.join(EXTENSIONS)}",
                )
            ]
        )
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise SpecInvalid(
                [
                    SpecIssue(
                        str(file),
                        None,
                        "",
                        f"the file is {file.stat().st_size:,} bytes; a workflow may be at "
                        f"most {MAX_FILE_BYTES:,} bytes",
                    )
                ]
            )
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecInvalid([SpecIssue(str(file), None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecInvalid([SpecIssue(str(file), None, "", f"cannot read file: {exc}")]) from None
    return read_workflow_text(text, source=str(file))


def workflow_from_snapshot(data: dict[str, Any]) -> WorkflowSpec:
    """Rebuild a WorkflowSpec from ``WorkflowSpec.snapshot()`` output, with the same checks.

    Problems are reported with source ``<snapshot>`` and no line numbers.
    """
    if not isinstance(data, dict):
        raise SpecInvalid(
            [SpecIssue("<snapshot>", None, "", f"expected a mapping, got {describe_value(data)}")]
        )
    try:
        text = json.dumps(data)
    except (TypeError, ValueError, RecursionError):
        return _spec_from_snapshot(data)
    if len(text) > _CACHED_SNAPSHOT_CHARS:
        return _spec_from_snapshot(data)
    return _spec_from_snapshot_text(text)


_CACHED_SNAPSHOT_CHARS = 64 * 1024  # the cache holds at most 256 of these


@functools.lru_cache(maxsize=256)
def _spec_from_snapshot_text(text: str) -> WorkflowSpec:
    # A restart validates its snapshot and its execution validates it again, and most runs
    # share a handful of snapshots; specs are frozen, so one validation serves them all.
    return _spec_from_snapshot(json.loads(text))


def _spec_from_snapshot(data: dict[str, Any]) -> WorkflowSpec:
    located = _Located("<snapshot>", data, {}, {})
    try:
        return _validate(copy.deepcopy(data), located, [], [])
    except RecursionError:
        raise SpecInvalid([SpecIssue("<snapshot>", None, "", "nested too deeply")]) from None


# ---------------------------------------------------------------- inputs


def validate_inputs(spec: WorkflowSpec, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The initial state of a run: every state field, from ``inputs`` or its default.

    Provided values are type-checked and copied; defaults are deep-copied; a field with
    neither is None. Raises InvalidInputs (``field`` set) for an unknown input name, a
    missing required field, or a value of the wrong type.
    """
    fields = spec.state.fields
    for name in inputs:
        if name not in fields:
            raise InvalidInputs(
                f"unknown input '{name}'{_suggest(name, fields)}; known fields: {_listing(fields)}",
                field=str(name),
            )
    state: dict[str, Any] = {}
    for name, field in fields.items():
        if name in inputs and not (inputs[name] is None and not field.required):
            state[name] = check_value(field, inputs[name], name)
        elif field.required:
            raise InvalidInputs(
                f"missing required input '{name}' ({field.type})"
                + (f": {field.description}" if field.description else ""),
                field=name,
            )
        else:
            state[name] = copy.deepcopy(field.default)
    return state


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def parse_cli_value(spec: WorkflowSpec, field: str, raw: str) -> Any:
    """Turn the text given for a field on the command line into a value of its type.

    str: as is; int/float: parsed as numbers; bool: true/false/1/0/yes/no; anything else
    (lists, dicts, objects, generics): JSON. Raises InvalidInputs naming the field on an
    unknown field or a value that does not parse or fit.
    """
    fields = spec.state.fields
    if field not in fields:
        raise InvalidInputs(
            f"unknown input '{field}'{_suggest(field, fields)}; known fields: {_listing(fields)}",
            field=field,
        )
    ref = fields[field].type_ref
    text = raw.strip()
    if ref.kind == "str":
        return raw
    if ref.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise InvalidInputs(f"{field}: expected an int, got {raw!r}", field=field) from None
    if ref.kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise InvalidInputs(f"{field}: expected a float, got {raw!r}", field=field) from None
        if not math.isfinite(value):
            raise InvalidInputs(f"{field}: expected a finite float, got {raw!r}", field=field)
        return value
    if ref.kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise InvalidInputs(
            f"{field}: expected a bool (true/false, yes/no, 1/0), got {raw!r}", field=field
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputs(
            f"{field}: expected JSON for type {ref} ({exc.msg} at column {exc.colno}), got {raw!r}",
            field=field,
        ) from None
    return check_value(fields[field], value, field)
