"""Property tests of the workflow loader: whatever the text, YAML or snapshot, the only
error that escapes is our own SpecInvalid (and InvalidInputs for inputs)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from fuzz_settings import bounded
from hypothesis import given
from hypothesis import strategies as st

from app.errors import InvalidInputs, SpecInvalid
from app.workflows.loader import parse_workflow, validate_inputs, workflow_from_snapshot

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VALID = {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in EXAMPLES.glob("*.yaml")}

WORDS = [
    "schema_version", "flow", "name", "state", "fields", "type", "required", "default",
    "nodes", "id", "prompt", "outputs", "output_schema", "edges", "from", "to", "routes",
    "condition", "logic", "loop", "parallel", "items_field", "collect_field", "config", "llm",
    "provider", "model", "mock", "execution", "timeout", "max_retries", "responses", "START",
    "END", "str", "int", "float", "bool", "list", "dict", "object", "list[str]",
    "dict[str, int]", "list[list[int]]", "state.x", "{state.x}", "1.0", "true", "null",
]  # fmt: skip

# Plain JSON-like values, as YAML can express them (and some it reads into other types).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(WORDS),
)
json_like = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), children, max_size=5
        ),
    ),
    max_leaves=25,
)

# Text made of YAML's own pieces: indentation, flow collections, anchors, tags, and our keys.
yaml_pieces = st.sampled_from(
    [
        "\n", "  ", "    ", "- ", ": ", "{", "}", "[", "]", ", ", "&a ", "*a", "<<: *a",
        "!!str ", "!!int ", "!!binary ", "!!set ", "!!omap ", "!!python/object:os.system ",
        "? ", "|\n  ", ">-\n  ", "'", '"', "#", "---\n", "...\n", "%YAML 1.1\n", "~", "=",
        "0x1F", "1e400", ".inf", ".nan", "2026-01-01", "2026-01-01T00:00:00Z", "\t", "\x00",
        "\ufeff", "\u2028",
    ]
    + [w + ": " for w in WORDS]
    + WORDS
)  # fmt: skip
yaml_ish = st.lists(yaml_pieces, max_size=40).map("".join)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(_paths(child, (*prefix, index)))
    return found


@st.composite
def mutated_examples(draw: st.DrawFn) -> dict[str, Any]:
    """A valid example with a few subtrees replaced, deleted or duplicated."""
    spec = copy.deepcopy(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_paths(spec)))
        if not path:
            continue
        parent = spec
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "copy"]))
        if action == "replace":
            parent[key] = draw(json_like)
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        else:
            parent[draw(st.sampled_from(WORDS))] = copy.deepcopy(parent[key])
    return spec


def _parse(text: str) -> None:
    try:
        parse_workflow(text)
    except SpecInvalid as exc:
        assert exc.issues, "SpecInvalid without an issue"
        assert all(str(issue) for issue in exc.issues)


def _dump(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True)


def test_the_examples_are_valid() -> None:
    for name, spec in VALID.items():
        parse_workflow(_dump(spec), source=name)


@bounded(300)
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    _parse(text)


@bounded(400)
@given(yaml_ish)
def test_yaml_ish_text(text: str) -> None:
    _parse(text)


@bounded(300)
@given(json_like)
def test_any_yaml_document(value: Any) -> None:
    _parse(_dump(value))


@bounded(400)
@given(mutated_examples())
def test_mutated_examples(spec: dict[str, Any]) -> None:
    _parse(_dump(spec))


@bounded(400)
@given(mutated_examples())
def test_mutated_snapshots(spec: dict[str, Any]) -> None:
    """A restart rebuilds the workflow from the stored snapshot: same guarantee."""
    try:
        workflow_from_snapshot(spec)
    except SpecInvalid as exc:
        assert exc.issues


@bounded(300)
@given(st.sampled_from(sorted(VALID)), st.dictionaries(st.text(max_size=10), json_like, max_size=4))
def test_any_inputs(name: str, inputs: dict[str, Any]) -> None:
    spec = parse_workflow(_dump(VALID[name]))
    fields = list(spec.state.fields)
    # Half the keys are real field names, so that the values get type-checked.
    renamed = {
        (fields[i % len(fields)] if i % 2 else k): v for i, (k, v) in enumerate(inputs.items())
    }
    try:
        state = validate_inputs(spec, renamed)
    except InvalidInputs as exc:
        assert exc.message
    else:
        assert set(state) == set(fields)
