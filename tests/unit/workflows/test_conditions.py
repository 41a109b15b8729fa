from __future__ import annotations

import pytest

from app.workflows.conditions import ConditionError, parse_condition

STATE = {
    "score": 8,
    "ratio": 0.5,
    "approved": True,
    "status": "done",
    "tags": ["a", "b"],
    "review": {"score": 3, "ok": False},
    "empty": "",
    "nothing": None,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("state.score >= 8", True),
        ("state.score > 8", False),
        ("{state.score} >= 8", True),
        ("state.score == 8", True),
        ("state.score != 8", False),
        ("state.score < 10 and state.score > 1", True),
        ("state.ratio <= 0.5", True),
        ("state.approved == true", True),
        ("state.approved == True", True),
        ("state.approved", True),
        ("not state.approved", False),
        ("not state.empty", True),
        ('state.status == "done"', True),
        ("state.status != 'done'", False),
        ("state.nothing == null", True),
        ("state.nothing == None", True),
        ("state.status == 'x' or state.score > 5", True),
        ("(state.status == 'x' or state.score > 5) and not state.approved", False),
        ("state.review.score > 2", True),
        ("{state.review.ok}", False),
        ("'a' in state.tags", True),
        ("'z' not in state.tags", True),
        ("state.status in ['done', 'failed']", True),
        ("'on' in state.status", True),
        ("state.score > -1", True),
        ("state.ratio > 1e-3", True),
    ],
)
def test_conditions_evaluate(text: str, expected: bool) -> None:
    assert parse_condition(text).evaluate(STATE) is expected


def test_fields_and_paths() -> None:
    cond = parse_condition("state.score > 1 and {state.review.ok} or 'a' in state.tags")
    assert cond.fields == {"score", "review", "tags"}
    assert ("review", "ok") in cond.paths
    assert not cond.is_default


def test_default() -> None:
    cond = parse_condition(" default ")
    assert cond.is_default
    assert cond.fields == set()
    assert cond.evaluate({}) is True


def test_literal_list_items_are_not_taken_for_references() -> None:
    cond = parse_condition("state.status in ['ref', 'lit']")
    assert cond.fields == {"status"}


@pytest.mark.parametrize(
    "text",
    [
        "state.score > 'high'",
        "state.nothing > 3",
        "state.approved > 0",
        "state.tags < 3",
        "state.missing >= 1",
        "state.score in 5",
        "state.status.deeper == 1",
    ],
)
def test_incompatible_comparisons_are_false_not_errors(text: str) -> None:
    assert parse_condition(text).evaluate(STATE) is False


def test_bool_is_never_equal_to_a_number() -> None:
    assert parse_condition("state.approved == 1").evaluate(STATE) is False
    assert parse_condition("state.approved != 1").evaluate(STATE) is True


@pytest.mark.parametrize(
    ("text", "fragment", "column"),
    [
        ("state.score = 8", "'=' is not an operator", 13),
        ("state.score >", "expected a value, found end of condition", 14),
        ("score > 8", "unknown name 'score'", 1),
        ("state.score > 8 and", "expected a value", 20),
        ("(state.score > 8", "expected ')'", 17),
        ("state.status == 'done", "unterminated string", 17),
        ("{score} > 1", "must name a state field", 1),
        ("__import__('os')", "unknown name '__import__'", 1),
        ("state.x.__class__ > 1 ; rm", "unexpected character ';'", 23),
        ("", "empty condition", 1),
        ("len(state.tags) > 0", "unknown name 'len'", 1),
    ],
)
def test_bad_conditions_say_what_and_where(text: str, fragment: str, column: int) -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    assert fragment in str(info.value)
    assert info.value.position == column - 1
    assert f"at column {column}" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_evaluate_reads_mapping_keys_only() -> None:
    class Sneaky(dict):
        secret = "x"

    cond = parse_condition("state.obj.secret == 'x'")
    assert cond.evaluate({"obj": Sneaky()}) is False
