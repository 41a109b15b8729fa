from __future__ import annotations

import pytest

from app.errors import InvalidInputs
from app.workflows.spec import FieldSpec
from app.workflows.types import (
    TypeRef,
    check_value,
    example_value,
    is_compatible,
    json_schema,
    parse_type,
)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("str", "str"),
        ("int", "int"),
        ("float", "float"),
        ("bool", "bool"),
        ("list", "list"),
        ("dict", "dict"),
        ("object", "object"),
        ("list[str]", "list[str]"),
        ("dict[str, int]", "dict[str, int]"),
        ("dict[str,int]", "dict[str, int]"),
        ("list[list[int]]", "list[list[int]]"),
        (" dict[str, list[dict[str, float]]] ", "dict[str, list[dict[str, float]]]"),
    ],
)
def test_parse_type_accepts_the_type_language(text: str, shown: str) -> None:
    assert str(parse_type(text)) == shown


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("string", "unknown type 'string'"),
        ("list[strr]", "unknown type 'strr'"),
        ("list[int", "expected ']'"),
        ("dict[str]", "expected ','"),
        ("dict[list, int]", "dict keys must be"),
        ("int int", "unexpected"),
        ("", "non-empty"),
    ],
)
def test_parse_type_refuses_unknown_types_clearly(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="invalid type") as info:
        parse_type(text)
    assert fragment in str(info.value)


def test_check_value_int_refuses_bool_and_fractional_float() -> None:
    assert check_value("int", 3, "n") == 3
    assert check_value("int", 3.0, "n") == 3
    with pytest.raises(InvalidInputs) as info:
        check_value("int", True, "count")
    assert info.value.field == "count"
    assert "count" in info.value.message
    assert "expected int" in info.value.message
    assert "bool true" in info.value.message
    with pytest.raises(InvalidInputs):
        check_value("int", 2.5, "count")


def test_check_value_float_accepts_int_but_not_bool() -> None:
    value = check_value("float", 2, "ratio")
    assert value == 2.0
    assert isinstance(value, float)
    with pytest.raises(InvalidInputs, match="ratio: expected float, got bool false"):
        check_value("float", False, "ratio")


def test_check_value_bool_and_str_are_strict() -> None:
    assert check_value("bool", False, "flag") is False
    with pytest.raises(InvalidInputs, match="flag: expected bool, got int 1"):
        check_value("bool", 1, "flag")
    with pytest.raises(InvalidInputs, match="expected bool"):
        check_value("bool", "true", "flag")
    with pytest.raises(InvalidInputs, match="name: expected str, got int 5"):
        check_value("str", 5, "name")


def test_check_value_generics_name_the_nested_position() -> None:
    assert check_value("list[list[int]]", [[1], [2, 3]], "grid") == [[1], [2, 3]]
    with pytest.raises(InvalidInputs) as info:
        check_value("list[list[int]]", [[1], [2, "x"]], "grid")
    assert info.value.field == "grid[1][1]"
    assert "grid[1][1]: expected int, got str 'x'" in info.value.message
    with pytest.raises(InvalidInputs, match=r"scores\.b: expected int"):
        check_value("dict[str, int]", {"a": 1, "b": "2"}, "scores")
    with pytest.raises(InvalidInputs, match="expected list"):
        check_value("list[str]", "abc", "tags")


def test_check_value_returns_fresh_copies() -> None:
    original = {"a": [1, 2]}
    copied = check_value("dict", original, "d")
    copied["a"].append(3)
    assert original == {"a": [1, 2]}


def test_check_value_object_with_schema() -> None:
    field = FieldSpec.model_validate(
        {"type": "object", "schema": {"bio": "str", "score": "int", "tags": "list[str]"}}
    )
    good = {"bio": "hi", "score": 3, "tags": ["a"]}
    assert check_value(field, good, "profile") == good
    with pytest.raises(InvalidInputs) as info:
        check_value(field, {"bio": "hi", "score": 3}, "profile")
    assert info.value.field == "profile.tags"
    with pytest.raises(InvalidInputs, match="unknown key 'extra'"):
        check_value(field, {**good, "extra": 1}, "profile")
    with pytest.raises(InvalidInputs, match=r"profile\.score: expected int"):
        check_value(field, {**good, "score": "high"}, "profile")


def test_check_value_none_only_when_allowed() -> None:
    assert check_value("object", None, "x", allow_none=True) is None
    with pytest.raises(InvalidInputs, match="got null"):
        check_value("object", None, "x")


def test_json_schema_for_types_and_fields() -> None:
    assert json_schema("str") == {"type": "string"}
    assert json_schema("list[int]") == {"type": "array", "items": {"type": "integer"}}
    assert json_schema("dict[str, float]") == {
        "type": "object",
        "additionalProperties": {"type": "number"},
    }
    field = FieldSpec.model_validate(
        {"type": "object", "description": "A profile", "schema": {"bio": "str", "ok": "bool"}}
    )
    assert json_schema(field) == {
        "type": "object",
        "properties": {"bio": {"type": "string"}, "ok": {"type": "boolean"}},
        "required": ["bio", "ok"],
        "additionalProperties": False,
        "description": "A profile",
    }


def test_example_value_is_deterministic_and_fits_the_type() -> None:
    text = "hello"
    assert example_value("str", text) == "hello"
    assert example_value("int", text) == 5
    assert example_value("float", text) == 5.0
    assert example_value("bool", text) is True
    assert example_value("list[int]", text) == [5]
    assert example_value("dict[str, str]", text) == {"key": "hello"}
    field = FieldSpec.model_validate(
        {"type": "list[object]", "schema": {"name": "str", "n": "int"}}
    )
    value = example_value(field, text)
    assert value == [{"name": "hello", "n": 5}]
    assert check_value(field, value, "items") == value


def test_is_compatible() -> None:
    assert is_compatible(parse_type("int"), parse_type("float"))
    assert not is_compatible(parse_type("float"), parse_type("int"))
    assert is_compatible(parse_type("list[str]"), parse_type("list"))
    assert not is_compatible(parse_type("list[str]"), parse_type("list[int]"))
    assert is_compatible(parse_type("dict[str, int]"), parse_type("object"))
    assert is_compatible(TypeRef("object"), parse_type("dict"))
    assert not is_compatible(parse_type("str"), parse_type("list"))
