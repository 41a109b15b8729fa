"""Inputs the property tests found crashing the loader or the condition parser with an
error that is not ours, kept as regression tests now that they are refused cleanly."""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path

import pytest
import yaml

from app.errors import SpecInvalid
from app.workflows.conditions import ConditionError, parse_condition
from app.workflows.loader import parse_workflow, workflow_from_snapshot

ROUTED = (Path(__file__).resolve().parents[2] / "examples" / "routed.yaml").read_text("utf-8")
ROUTE = '"state.score >= 8"'


@pytest.mark.parametrize(
    "text",
    [
        "\x00",  # ReaderError: control characters
        "name: \x07",
        "x: !!int ''",  # IndexError in construct_yaml_int
        "x: !!float",  # IndexError in construct_yaml_float
        "!!bool",  # KeyError ''
        "!!timestamp",  # AttributeError: 'NoneType' object has no attribute 'groupdict'
        "x: 2026-02-30",  # ValueError: day is out of range for month (a plain date!)
        "x: !!int 0x",  # ValueError: invalid literal for int() with base 16
        "[" * 1000 + "]" * 1000,  # RecursionError in PyYAML's parser
    ],
    ids=["nul", "bell", "int-empty", "float-empty", "bool-empty", "timestamp-empty",
         "bad-date", "int-0x", "deep-nesting"],
)  # fmt: skip
def test_yaml_errors_become_spec_invalid(text: str) -> None:
    with pytest.raises(SpecInvalid):
        parse_workflow(text)


def test_an_impossible_date_in_a_real_workflow_is_spec_invalid() -> None:
    text = ROUTED.replace(
        "description: Scores a draft", "version: 2026-02-30\n  description: Scores a draft"
    )
    with pytest.raises(SpecInvalid):
        parse_workflow(text)


@pytest.mark.parametrize(
    "text",
    [
        "(" * 200 + "state.score >= 8" + ")" * 200,  # 600 characters
        "not " * 1000 + "true",
        " and ".join(["state.score >= 8"] * 1000),
        " or ".join(["state.ok"] * 1000),
    ],
    ids=["parentheses", "not-chain", "and-chain", "or-chain"],
)
def test_deep_conditions_are_refused_or_evaluated(text: str) -> None:
    try:
        condition = parse_condition(text)
    except ConditionError:
        return
    assert isinstance(condition.evaluate({"score": 9, "ok": True}), bool)
    assert condition.fields <= {"score", "ok"}


def test_a_deep_route_condition_in_a_workflow_is_spec_invalid_or_valid() -> None:
    deep = "(" * 200 + "state.score >= 8" + ")" * 200
    with contextlib.suppress(SpecInvalid):
        parse_workflow(ROUTED.replace(ROUTE, json.dumps(deep)))


def test_a_deeply_nested_snapshot_is_spec_invalid() -> None:
    snapshot = copy.deepcopy(yaml.safe_load(ROUTED))
    value: object = 1
    for _ in range(2000):
        value = [value]
    snapshot["flow"]["description"] = value
    with pytest.raises(SpecInvalid):
        workflow_from_snapshot(snapshot)


def test_moderately_nested_conditions_still_work() -> None:
    condition = parse_condition("(" * 50 + "state.score >= 8" + ")" * 50)
    assert condition.evaluate({"score": 9}) is True
    condition = parse_condition(" and ".join(["state.score >= 8"] * 100))
    assert condition.evaluate({"score": 9}) is True
