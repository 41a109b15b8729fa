from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.errors import InvalidInputs, SpecInvalid, SpecIssue
from app.workflows.loader import (
    load_workflow,
    parse_cli_value,
    parse_workflow,
    read_workflow_text,
    validate_inputs,
    workflow_from_snapshot,
)
from app.workflows.spec import WorkflowSpec

ORIGINAL = Path(__file__).parents[2] / "fixtures" / "original"

BASE = """\
schema_version: "1.0"
flow:
  name: article_writer
  description: Writes an article
state:
  fields:
    topic: {type: str, required: true, description: What to write about}
    article: {type: str, default: ""}
    score: {type: int, default: 0}
    done: {type: bool, default: false}
    items: {type: "list[str]", default: [a, b]}
    results: {type: "list[str]", default: []}
    profile:
      type: object
      schema:
        bio: str
      default: {bio: none}
nodes:
  - id: write
    prompt: |
      Write about {state.topic}
      for {state.profile.bio}
    outputs: [article, score]
  - id: review
    prompt: "Review {state.article}"
    outputs: [done]
    llm: {provider: mock, responses: [{done: true}]}
edges:
  - {from: START, to: write}
  - from: write
    routes:
      - condition: {logic: "state.score >= 8"}
        to: review
      - condition: {logic: default}
        to: END
  - {from: review, to: END}
config:
  llm: {provider: mock, model: echo}
  execution: {timeout: 30, max_retries: 1}
"""


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the n-th line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def issues_of(text: str) -> list[SpecIssue]:
    with pytest.raises(SpecInvalid) as info:
        parse_workflow(text, source="wf.yaml")
    assert info.value.issues
    assert all(issue.source == "wf.yaml" for issue in info.value.issues)
    return info.value.issues


def one_issue(text: str, fragment: str) -> SpecIssue:
    found = [issue for issue in issues_of(text) if fragment in issue.message]
    assert found, f"no issue mentioning {fragment!r}"
    return found[0]


def changed(old: str, new: str, text: str = BASE) -> str:
    assert old in text
    return text.replace(old, new, 1)


# ---------------------------------------------------------------- a valid file


def test_base_file_loads() -> None:
    spec = parse_workflow(BASE)
    assert isinstance(spec, WorkflowSpec)
    assert spec.name == "article_writer"
    assert spec.node("review").outputs == ["done"]
    assert spec.edges[1].from_ == "write"
    assert spec.edges[1].routes is not None
    assert spec.edges[1].routes[1].condition.parsed.is_default
    assert spec.config.execution.timeout == 30
    assert spec.ignored_sections == []
    with pytest.raises(KeyError):
        spec.node("nope")


def test_output_types_come_from_state_without_output_schema() -> None:
    spec = parse_workflow(BASE)
    assert {k: str(v) for k, v in spec.output_types("write").items()} == {
        "article": "str",
        "score": "int",
    }


def test_llm_for_merges_node_over_config() -> None:
    spec = parse_workflow(BASE)
    review = spec.llm_for("review")
    assert review.provider == "mock"
    assert review.model == "echo"
    assert review.responses == [{"done": True}]
    assert spec.llm_for("write").responses is None


def test_snapshot_round_trip() -> None:
    spec = parse_workflow(BASE)
    snapshot = spec.snapshot()
    again = workflow_from_snapshot(json.loads(json.dumps(snapshot)))
    assert again == spec
    assert snapshot["edges"][0]["from"] == "START"
    assert snapshot["state"]["fields"]["profile"]["schema"]["bio"]["type"] == "str"


def test_snapshot_round_trip_keeps_ignored_sections() -> None:
    spec = load_workflow(ORIGINAL / "sandbox_example.yaml")
    again = workflow_from_snapshot(json.loads(json.dumps(spec.snapshot())))
    assert again == spec
    assert again.ignored_sections == spec.ignored_sections


def test_bad_snapshot_is_refused_without_lines() -> None:
    data = parse_workflow(BASE).snapshot()
    data["nodes"][0]["outputs"] = ["nope"]
    with pytest.raises(SpecInvalid) as info:
        workflow_from_snapshot(data)
    issue = info.value.issues[0]
    assert issue.source == "<snapshot>"
    assert issue.line is None
    assert issue.where == "nodes[write].outputs[0]"
    with pytest.raises(SpecInvalid):
        workflow_from_snapshot([])  # type: ignore[arg-type]


def test_a_snapshot_seen_before_is_not_validated_again() -> None:
    snapshot = parse_workflow(BASE).snapshot()
    first = workflow_from_snapshot(json.loads(json.dumps(snapshot)))
    assert workflow_from_snapshot(json.loads(json.dumps(snapshot))) is first
    changed_prompt = json.loads(json.dumps(snapshot))
    changed_prompt["nodes"][0]["prompt"] = "Something else: {state.topic}"
    other = workflow_from_snapshot(changed_prompt)
    assert other is not first and other.nodes[0].prompt.startswith("Something else")
    # A refused snapshot is refused every time, not remembered as a spec.
    snapshot["nodes"][0]["outputs"] = ["nope"]
    for _ in range(2):
        with pytest.raises(SpecInvalid):
            workflow_from_snapshot(snapshot)


def test_ignored_sections_are_listed() -> None:
    text = changed(
        "  execution: {timeout: 30, max_retries: 1}\n",
        "  execution: {timeout: 30, max_retries: 1}\n"
        "  observability: {mlflow: {enabled: true}}\n"
        "optimization: {enabled: true}\n",
    )
    text = changed(
        "    outputs: [article, score]\n",
        "    outputs: [article, score]\n    memory: {enabled: true}\n    tools: [web_search]\n",
        text,
    )
    loaded = read_workflow_text(text)
    # Tools run now: only the sections that observe a run are ignored, each with a warning.
    assert loaded.spec.ignored_sections == [
        ("optimization",),
        ("config", "observability"),
        ("nodes", 0, "memory"),
    ]
    assert [(w.where, w.line) for w in loaded.warnings] == [
        ("nodes[write].memory", line_of(text, "memory:")),
        ("config.observability", line_of(text, "observability:")),
        ("optimization", line_of(text, "optimization:")),
    ]
    assert all("ignored" in w.message for w in loaded.warnings)


# ---------------------------------------------------------------- refused files


def test_yaml_syntax_error_has_its_line() -> None:
    text = changed("  description: Writes an article", "  description: Writes: [an article")
    issues = issues_of(text)
    assert len(issues) == 1
    assert "YAML syntax error" in issues[0].message
    assert issues[0].line == line_of(text, "Writes: [an")


def test_empty_and_non_mapping_files() -> None:
    assert "empty" in issues_of("")[0].message
    assert "must be a mapping" in issues_of("- a\n- b\n")[0].message


def test_unknown_key_names_it_its_line_and_the_expected_keys() -> None:
    text = changed('    prompt: "Review', '    promt: "Review')
    issue = one_issue(text, "unknown key 'promt'")
    assert issue.line == line_of(text, "promt:")
    assert issue.where == "nodes[review].promt"
    assert "in nodes[review]" in issue.message
    assert "expected one of: id, name, description, prompt" in issue.message
    assert "did you mean 'prompt'" in issue.message
    missing = one_issue(text, "missing required key 'prompt'")
    assert missing.line == line_of(text, "- id: review")


def test_unknown_key_in_config() -> None:
    text = changed("  execution: {timeout: 30", "  exection: {timeout: 30")
    issue = one_issue(text, "unknown key 'exection'")
    assert issue.line == line_of(text, "exection")
    assert "did you mean 'execution'?" in issue.message


def test_duplicate_key_is_refused_with_its_line() -> None:
    text = changed(
        '    prompt: "Review {state.article}"\n',
        '    prompt: "Review {state.article}"\n    prompt: "Again"\n',
    )
    issue = one_issue(text, "duplicate key 'prompt'")
    assert issue.line == line_of(text, 'prompt: "Again"')
    first = line_of(text, 'prompt: "Review')
    assert f"first at line {first}" in issue.message


def test_unknown_node_in_edge() -> None:
    text = changed("  - {from: review, to: END}", "  - {from: review, to: publish}")
    issue = one_issue(text, "'publish' is not a node")
    assert issue.where == "edges[2].to"
    assert issue.line == line_of(text, "to: publish")
    assert "nodes: review, write, END" in issue.message


def test_unknown_route_target_and_source() -> None:
    text = changed("        to: review", "        to: reveiw")
    issue = one_issue(text, "'reveiw' is not a node")
    assert issue.where == "edges[1].routes[0].to"
    assert issue.line == line_of(text, "to: reveiw")
    assert "did you mean 'review'?" in issue.message
    text = changed("  - {from: review, to: END}", "  - {from: reviews, to: END}")
    assert one_issue(text, "'reviews' is not a node").where == "edges[2].from"


def test_output_that_is_not_a_state_field() -> None:
    text = changed("    outputs: [article, score]", "    outputs: [article, scor]")
    issue = one_issue(text, "output 'scor' is not a state field")
    assert issue.where == "nodes[write].outputs[1]"
    assert issue.line == line_of(text, "outputs: [article, scor]")
    assert "did you mean 'score'?" in issue.message


def test_placeholder_that_is_not_a_state_field_points_at_its_line() -> None:
    text = changed("      for {state.profile.bio}", "      for {state.topik}")
    issue = one_issue(text, "placeholder {state.topik}")
    assert issue.where == "nodes[write].prompt"
    assert issue.line == line_of(text, "for {state.topik}")
    assert "'topik' is not a state field" in issue.message


def test_placeholder_nested_key_must_exist_in_object_schema() -> None:
    text = changed("      for {state.profile.bio}", "      for {state.profile.age}")
    issue = one_issue(text, "placeholder {state.profile.age}")
    assert "'profile' has no key 'age'" in issue.message
    text = changed("      for {state.profile.bio}", "      for {state.topic.x}")
    assert "'topic' is str, not an object" in one_issue(text, "{state.topic.x}").message


def test_bare_placeholders_and_node_inputs() -> None:
    text = changed('    prompt: "Review {state.article}"', '    prompt: "Review {text} {article}"')
    text = changed(
        "    outputs: [done]\n", "    outputs: [done]\n    inputs: {text: '{article}'}\n", text
    )
    spec = parse_workflow(text)
    assert spec.node("review").input_aliases == {"text": "article"}
    bad = changed("inputs: {text: '{article}'}", "inputs: {text: '{artcle}'}", text)
    issue = one_issue(bad, "input 'text'")
    assert issue.where == "nodes[review].inputs.text"
    assert "'artcle' is not a state field" in issue.message


def test_unreachable_node() -> None:
    text = changed(
        "edges:\n",
        "  - id: orphan\n    prompt: hi\n    outputs: [article]\nedges:\n",
    )
    issue = one_issue(text, "not reachable from START")
    assert issue.where == "nodes[orphan]"
    assert issue.line == line_of(text, "- id: orphan")


def test_node_without_outgoing_edge() -> None:
    text = changed("  - {from: review, to: END}\n", "")
    issue = one_issue(text, "has no outgoing edge")
    assert issue.where == "nodes[review]"


def test_bad_default() -> None:
    text = changed("score: {type: int, default: 0}", 'score: {type: int, default: "high"}')
    issue = one_issue(text, "default does not fit its type")
    assert issue.where == "state.fields.score.default"
    assert issue.line == line_of(text, "score: {type: int")
    assert "expected int, got str 'high'" in issue.message


def test_bad_nested_default() -> None:
    text = changed("      default: {bio: none}", "      default: {bio: 3}")
    issue = one_issue(text, "default does not fit")
    assert "profile.bio: expected str" in issue.message
    assert issue.line == line_of(text, "default: {bio: 3}")


def test_unknown_type() -> None:
    text = changed("article: {type: str,", "article: {type: string,")
    issue = one_issue(text, "unknown type 'string'")
    assert issue.where == "state.fields.article.type"
    assert issue.line == line_of(text, "article: {type: string")


def test_required_with_default_is_refused() -> None:
    text = changed(
        "topic: {type: str, required: true,", "topic: {type: str, required: true, default: x,"
    )
    assert one_issue(text, "both required").where == "state.fields.topic"


def test_bad_condition() -> None:
    text = changed('{logic: "state.score >= 8"}', '{logic: "state.score => 8"}')
    issue = one_issue(text, "condition")
    assert issue.where == "edges[1].routes[0].condition.logic"
    assert issue.line == line_of(text, "=> 8")
    assert "column" in issue.message


def test_condition_naming_an_unknown_field() -> None:
    text = changed('{logic: "state.score >= 8"}', '{logic: "{state.scor} >= 8"}')
    issue = one_issue(text, "'scor' is not a state field")
    assert issue.where == "edges[1].routes[0].condition.logic"
    assert "did you mean 'score'?" in issue.message


def test_default_route_is_unique_and_may_come_first() -> None:
    text = changed('{logic: "state.score >= 8"}', "{logic: default}")
    assert one_issue(text, "only one route may be the default").where == "edges[1].routes[1]"
    first = changed(
        '      - condition: {logic: "state.score >= 8"}\n        to: review\n'
        "      - condition: {logic: default}\n        to: END\n",
        "      - condition: {logic: default}\n        to: END\n"
        '      - condition: {logic: "state.score >= 8"}\n        to: review\n',
    )
    assert parse_workflow(first).edges[1].routes[0].condition.logic == "default"


def test_edge_needs_exactly_one_kind() -> None:
    text = changed(
        "  - {from: review, to: END}", "  - {from: review, to: END, loop: {condition_field: done}}"
    )
    assert one_issue(text, "exactly one of").where == "edges[2]"
    text = changed("  - {from: review, to: END}", "  - {from: review}")
    assert one_issue(text, "needs exactly one of").line == line_of(text, "{from: review}")


def test_fork_join_lists_are_refused_clearly() -> None:
    text = changed("  - {from: review, to: END}", "  - {from: review, to: [END, write]}")
    assert one_issue(text, "write one edge per target").where == "edges[2].to"


def test_one_edge_from_start_and_several_from_a_node() -> None:
    text = changed("  - {from: review, to: END}", "  - {from: START, to: review}")
    issue = one_issue(text, "START already has an edge")
    assert issue.where == "edges[2].from"
    # Several edges from one node are the original's fork: its targets run together.
    text = changed(
        "  - {from: review, to: END}", "  - {from: review, to: END}\n  - {from: write, to: END}"
    )
    assert [e.from_ for e in parse_workflow(text).edges].count("write") == 2
    text = changed("  - {from: START, to: write}\n", "")
    assert one_issue(text, "no edge from START").where == "edges"


def test_reserved_and_duplicate_node_ids() -> None:
    text = changed("  - id: review", "  - id: write")
    assert one_issue(text, "duplicate node id 'write'").line == line_of(text, "- id: write", 2)
    text = changed("  - id: review", "  - id: END")
    assert one_issue(text, "'END' is reserved")


def test_loop_edge() -> None:
    loop = "  - from: review\n    loop: {condition_field: done, max_iterations: 3, exit_to: END}\n"
    text = changed("  - {from: review, to: END}\n", loop)
    spec = parse_workflow(text)
    assert spec.edges[2].loop is not None
    assert spec.edges[2].targets == ["review", "END"]
    bad = changed("condition_field: done", "condition_field: score", text)
    issue = one_issue(bad, "must be a bool field")
    assert issue.where == "edges[2].loop.condition_field"
    bad = changed("max_iterations: 3", "max_iterations: 0", text)
    assert one_issue(bad, "greater than 0").where == "edges[2].loop.max_iterations"


def test_parallel_edge() -> None:
    parallel = (
        "  - from: review\n"
        "    parallel: {items_field: items, target_node: each, collect_field: results}\n"
        "  - {from: each, to: END}\n"
    )
    text = changed("  - {from: review, to: END}\n", parallel)
    text = changed(
        "edges:\n",
        "  - id: each\n    prompt: 'Do {state.topic}'\n    outputs: [article]\nedges:\n",
        text,
    )
    spec = parse_workflow(text)
    assert spec.edges[2].parallel is not None
    assert spec.edges[2].parallel.target_node == "each"
    bad = changed("items_field: items", "items_field: topic", text)
    issue = one_issue(bad, "items_field 'topic' must be a list field")
    assert issue.where == "edges[2].parallel.items_field"


def test_output_schema_must_match_outputs_and_types() -> None:
    schema = (
        "    outputs: [article, score]\n"
        "    output_schema:\n"
        "      type: object\n"
        "      fields:\n"
        "        - {name: article, type: str}\n"
        "        - {name: score, type: str}\n"
        "        - {name: extra, type: str}\n"
    )
    text = changed("    outputs: [article, score]\n", schema)
    issue = one_issue(text, "does not fit state field 'score'")
    assert issue.where == "nodes[write].output_schema.fields[1].type"
    assert issue.line == line_of(text, "{name: score, type: str}")
    assert one_issue(text, "'extra' is not in outputs").where == (
        "nodes[write].output_schema.fields[2].name"
    )


def test_simple_output_schema_needs_one_output() -> None:
    text = changed(
        "    outputs: [article, score]\n",
        "    outputs: [article, score]\n    output_schema: {type: str}\n",
    )
    assert "needs exactly one output" in one_issue(text, "non-object").message


def test_mock_only_keys_on_another_provider() -> None:
    text = changed("{provider: mock, responses:", "{provider: openai, responses:")
    issue = one_issue(text, "only read by the mock provider")
    assert issue.where == "nodes[review].llm.responses"


def test_unknown_provider() -> None:
    text = changed("  llm: {provider: mock, model: echo}", "  llm: {provider: gpt, model: echo}")
    issue = one_issue(text, "unknown provider 'gpt'")
    assert issue.where == "config.llm.provider"


def test_all_problems_are_collected() -> None:
    text = changed("    outputs: [article, score]", "    outputs: [article, scor]")
    text = changed("      for {state.profile.bio}", "      for {state.nope}", text)
    text = changed("  - {from: review, to: END}", "  - {from: review, to: nowhere}", text)
    messages = [issue.message for issue in issues_of(text)]
    assert any("scor" in m for m in messages)
    assert any("{state.nope}" in m for m in messages)
    assert any("'nowhere'" in m for m in messages)
    lines = [issue.line or 0 for issue in issues_of(text)]
    assert lines == sorted(lines)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecInvalid) as info:
        load_workflow(path)
    assert info.value.issues[0].source == str(path)
    assert str(path) in str(info.value)
    assert "not found" in str(info.value)


def test_load_workflow_uses_the_path_as_source(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(changed("  - {from: review, to: END}", "  - {from: review, to: x}"))
    with pytest.raises(SpecInvalid) as info:
        load_workflow(path)
    assert str(info.value).startswith(f"{path}:")


# ---------------------------------------------------------------- inputs


def test_validate_inputs_fills_defaults_and_copies_them() -> None:
    spec = parse_workflow(BASE)
    state = validate_inputs(spec, {"topic": "cats"})
    assert state == {
        "topic": "cats",
        "article": "",
        "score": 0,
        "done": False,
        "items": ["a", "b"],
        "results": [],
        "profile": {"bio": "none"},
    }
    state["items"].append("c")
    assert spec.state.fields["items"].default == ["a", "b"]


def test_validate_inputs_missing_required_names_the_field() -> None:
    spec = parse_workflow(BASE)
    with pytest.raises(InvalidInputs) as info:
        validate_inputs(spec, {})
    assert info.value.field == "topic"
    assert "missing required input 'topic'" in info.value.message


def test_validate_inputs_wrong_type_names_the_field() -> None:
    spec = parse_workflow(BASE)
    with pytest.raises(InvalidInputs) as info:
        validate_inputs(spec, {"topic": "x", "score": "ten"})
    assert info.value.field == "score"
    assert "score: expected int, got str 'ten'" in info.value.message
    with pytest.raises(InvalidInputs) as info:
        validate_inputs(spec, {"topic": "x", "profile": {"bio": 1}})
    assert info.value.field == "profile.bio"


def test_validate_inputs_unknown_name_lists_known_fields() -> None:
    spec = parse_workflow(BASE)
    with pytest.raises(InvalidInputs) as info:
        validate_inputs(spec, {"topic": "x", "topics": "y"})
    assert info.value.field == "topics"
    assert "unknown input 'topics'" in info.value.message
    assert "known fields: topic, article, score" in info.value.message


@pytest.mark.parametrize(
    ("field", "raw", "value"),
    [
        ("topic", " cats ", " cats "),
        ("score", "42", 42),
        ("done", "yes", True),
        ("done", "FALSE", False),
        ("done", "0", False),
        ("items", '["x", "y"]', ["x", "y"]),
        ("profile", '{"bio": "b"}', {"bio": "b"}),
    ],
)
def test_parse_cli_value(field: str, raw: str, value: object) -> None:
    assert parse_cli_value(parse_workflow(BASE), field, raw) == value


@pytest.mark.parametrize(
    ("field", "raw", "fragment"),
    [
        ("score", "4.5", "expected an int"),
        ("done", "maybe", "expected a bool"),
        ("items", "[x", "expected JSON"),
        ("items", "[1]", "items[0]: expected str"),
        ("nope", "1", "unknown input 'nope'"),
    ],
)
def test_parse_cli_value_refuses_bad_values(field: str, raw: str, fragment: str) -> None:
    with pytest.raises(InvalidInputs) as info:
        parse_cli_value(parse_workflow(BASE), field, raw)
    assert fragment in info.value.message
    assert info.value.field is not None
    assert info.value.field.startswith(field)


# ---------------------------------------------------------------- the original's examples

# Every file of the original is checked against docs/compatibility.md by
# test_compatibility.py; these check what some of them mean here.


def test_original_nested_state_types() -> None:
    spec = load_workflow(ORIGINAL / "nested_state.yaml")
    assert str(spec.output_types("generate_profile")["profile"]) == "object"
    assert dict(spec.field_type("profile").fields or ())["engagement_score"].kind == "int"
    state = validate_inputs(spec, {"name": "Ann", "interests": ["go"]})
    assert state["profile"] is None


def test_original_bare_placeholders_and_inputs() -> None:
    spec = load_workflow(ORIGINAL / "sandbox_example.yaml")
    assert spec.node("sum_numbers").input_aliases == {"numbers": "input_numbers"}
    assert spec.llm_for("analyze_result").provider == "google"
    assert spec.llm_for("analyze_result").max_tokens == 200


def test_output_json_schema() -> None:
    spec = load_workflow(ORIGINAL / "type_enforcement.yaml")
    schema = spec.output_json_schema("analyze_topic")
    assert schema["required"] == ["score", "is_trending", "keywords", "categories", "analysis"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["score"] == {
        "type": "integer",
        "description": "Popularity score 1-100",
    }
    assert schema["properties"]["analysis"]["required"] == [
        "summary",
        "sentiment",
        "confidence",
        "tags",
    ]
