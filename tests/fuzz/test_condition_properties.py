"""Property tests of the route condition language: parsing raises nothing but
ConditionError, and a parsed condition evaluates to a bool on any state, never raising."""

from __future__ import annotations

import contextlib
from typing import Any

from fuzz_settings import bounded
from hypothesis import given
from hypothesis import strategies as st

from app.workflows.conditions import ConditionError, parse_condition

TOKENS = [
    "state.", "state.a", "state.b", "state.a.b", "state.a.b.c", "{state.a}", "{state.b.c}",
    "{state.", "{", "}", "{state}", "{x}", "state", "state..a", "state.1", "state._",
    "==", "!=", "<", "<=", ">", ">=", "=", "!", "in", "not in", "not", "and", "or", "(", ")",
    "[", "]", ",", "'", '"', "'x'", '"y"', "'a\\'b'", "\\", "0", "1", "-1", "+1", ".5", "1.5",
    "1e3", "1e", "1e+", "1_000", "1__0", "-", "+", ".", "1.2.3", "0x10", "true", "false",
    "null", "none", "True", "False", "None", "NULL", "default", "Default", "x", "x.y", "_",
    "é", "\u00a0", "\t", "\n", " ", " ", " ", "state.a == 1", "state.b in ['x', 2]",
]  # fmt: skip

token_soup = st.lists(st.sampled_from(TOKENS), max_size=25).map("".join)
spaced_soup = st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join)

values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=6),
        st.sampled_from(["x", "y", "a", "b", ""]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.sampled_from(["a", "b", "c", "x"]), children, max_size=4),
        st.sets(st.integers(), max_size=3),
        st.binary(max_size=4),
    ),
    max_leaves=12,
)
states = st.dictionaries(st.sampled_from(["a", "b", "c", "x", "state"]), values, max_size=4)


def _check(text: str, state_values: list[dict[str, Any]]) -> None:
    try:
        condition = parse_condition(text)
    except ConditionError as exc:
        assert 0 <= exc.position <= len(text)
        assert str(exc)
        return
    assert isinstance(condition.fields, set)
    for state in state_values:
        assert isinstance(condition.evaluate(state), bool)


@bounded(500)
@given(st.text(max_size=60), st.lists(states, max_size=3))
def test_any_text(text: str, state_values: list[dict[str, Any]]) -> None:
    _check(text, state_values)


@bounded(800)
@given(token_soup, st.lists(states, min_size=1, max_size=3))
def test_token_soup(text: str, state_values: list[dict[str, Any]]) -> None:
    _check(text, state_values)


@bounded(800)
@given(spaced_soup, st.lists(states, min_size=1, max_size=3))
def test_spaced_token_soup(text: str, state_values: list[dict[str, Any]]) -> None:
    _check(text, state_values)


@bounded(200)
@given(st.one_of(st.none(), st.integers(), st.lists(st.text()), st.binary()))
def test_non_text(value: Any) -> None:
    with contextlib.suppress(ConditionError):
        parse_condition(value)


@bounded(300)
@given(
    st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"]),
    st.sampled_from(["state.a", "state.a.b", "{state.b}", "1", "'a'", "[1, 'a', null]", "true"]),
    st.sampled_from(["state.a", "state.c.x", "2.5", "'ab'", "[]", "[true, 1]", "null"]),
    states,
)
def test_every_operator_on_any_values(op: str, left: str, right: str, state: dict) -> None:
    condition = parse_condition(f"{left} {op} {right}")
    assert isinstance(condition.evaluate(state), bool)
    assert isinstance(parse_condition(f"not ({left} {op} {right})").evaluate(state), bool)
