from __future__ import annotations

import pytest

from app.workflows.prompts import (
    PromptError,
    input_reference,
    prompt_placeholders,
    render_prompt,
)


def test_prompt_placeholders_lists_paths_once_in_order() -> None:
    template = "A {state.topic} {state.profile.bio} {user} {state.topic} {{x}} { y } {0} {a-b}"
    assert prompt_placeholders(template) == ["topic", "profile.bio", "user", "x"]


def test_render_inserts_strings_as_is_and_other_values_as_json() -> None:
    state = {
        "topic": "AI",
        "count": 3,
        "ok": True,
        "tags": ["a", "b"],
        "profile": {"bio": "hi", "n": 1},
        "none": None,
    }
    template = "{state.topic}|{state.count}|{state.ok}|{state.tags}|{state.profile}|{state.none}"
    assert render_prompt(template, state) == 'AI|3|true|["a", "b"]|{"bio": "hi", "n": 1}|null'


def test_render_nested_and_bare_placeholders() -> None:
    state = {"profile": {"bio": "hello"}, "user": "Ann"}
    assert render_prompt("{state.profile.bio}, {user}!", state) == "hello, Ann!"


def test_literal_braces_stay() -> None:
    template = 'Reply as JSON like {"answer": 1} or { x } or {0} about {state.t}'
    assert render_prompt(template, {"t": "cats"}) == (
        'Reply as JSON like {"answer": 1} or { x } or {0} about cats'
    )


def test_inserted_values_are_not_expanded_again() -> None:
    state = {"a": "{state.b}", "b": "secret"}
    assert render_prompt("{state.a}", state) == "{state.b}"


def test_no_attribute_or_format_access() -> None:
    state = {"topic": "x"}
    with pytest.raises(PromptError, match="'topic' is not an object"):
        render_prompt("{state.topic.__class__}", state)
    with pytest.raises(PromptError, match=r"'__class__' is not in the state"):
        render_prompt("{__class__}", state)
    assert render_prompt("{state.topic!r:>10}", state) == "{state.topic!r:>10}"


def test_missing_value_is_a_prompt_error_naming_the_placeholder() -> None:
    with pytest.raises(PromptError) as info:
        render_prompt("Hi {state.name}", {})
    assert info.value.placeholder == "{state.name}"
    assert "'name' is not in the state" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_aliases_map_local_input_names_to_state() -> None:
    state = {"input_numbers": [1, 2], "profile": {"bio": "b"}}
    aliases = {"numbers": "input_numbers", "p": "profile"}
    assert render_prompt("{numbers} {p.bio} {state.input_numbers}", state, aliases) == (
        "[1, 2] b [1, 2]"
    )


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("{input_numbers}", "input_numbers"),
        ("{state.profile.bio}", "profile.bio"),
        ("state.x", "x"),
        ("x", "x"),
        ("{x", None),
        ("not a ref", None),
    ],
)
def test_input_reference(value: str, path: str | None) -> None:
    assert input_reference(value) == path
