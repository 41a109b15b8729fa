"""The type language of state fields: parsing, value checking, JSON Schema and example values.

Types are written as in the original format: ``str int float bool list dict``, the generics
``list[T]`` and ``dict[K, V]`` (nested freely, e.g. ``list[list[int]]``), and ``object``,
whose keys are described by the field's ``schema``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from app.errors import InvalidInputs

__all__ = [
    "BASIC_TYPES",
    "TypeRef",
    "check_value",
    "describe_value",
    "example_value",
    "is_compatible",
    "json_schema",
    "parse_type",
    "type_of",
]

BASIC_TYPES = ("str", "int", "float", "bool")
_KEY_TYPES = ("str", "int", "float", "bool")
_SUPPORTED = "str, int, float, bool, list, dict, list[T], dict[K, V], object"


class _FieldLike(Protocol):
    """Anything with a type string and optional nested schema (FieldSpec, OutputSchemaField)."""

    @property
    def type(self) -> str: ...


@dataclass(frozen=True)
class TypeRef:
    """A parsed type.

    ``kind`` is one of str, int, float, bool, list, dict, object. ``item`` is the item type of a
    list or the value type of a dict, ``key`` the key type of a dict (None when bare).
    ``fields`` lists the nested keys of an object (None: any keys); every listed key is
    required in a value.
    """

    kind: str
    item: TypeRef | None = None
    key: TypeRef | None = None
    fields: tuple[tuple[str, TypeRef], ...] | None = None
    descriptions: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        if self.kind == "list" and self.item is not None:
            return f"list[{self.item}]"
        if self.kind == "dict" and self.item is not None:
            return f"dict[{self.key or 'str'}, {self.item}]"
        return self.kind

    @property
    def is_container(self) -> bool:
        """True for dict and object types: the ones a dotted path may descend into."""
        return self.kind in ("dict", "object")


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> ValueError:
        return ValueError(f"invalid type '{self.text}': {message}; supported: {_SUPPORTED}")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def name(self) -> str:
        self.skip_ws()
        start = self.pos
        while self.pos < len(self.text) and (
            self.text[self.pos].isalnum() or self.text[self.pos] == "_"
        ):
            self.pos += 1
        if start == self.pos:
            found = self.text[self.pos] if self.pos < len(self.text) else "end of text"
            raise self.fail(f"expected a type name at position {start + 1}, found {found!r}")
        return self.text[start : self.pos]

    def expect(self, char: str) -> None:
        self.skip_ws()
        if self.pos >= len(self.text) or self.text[self.pos] != char:
            found = repr(self.text[self.pos]) if self.pos < len(self.text) else "end of text"
            raise self.fail(f"expected '{char}' at position {self.pos + 1}, found {found}")
        self.pos += 1

    def peek(self, char: str) -> bool:
        self.skip_ws()
        return self.pos < len(self.text) and self.text[self.pos] == char

    def parse(self) -> TypeRef:
        name = self.name()
        if name in BASIC_TYPES or name == "object":
            return TypeRef(name)
        if name == "list":
            if not self.peek("["):
                return TypeRef("list")
            self.expect("[")
            item = self.parse()
            self.expect("]")
            return TypeRef("list", item=item)
        if name == "dict":
            if not self.peek("["):
                return TypeRef("dict")
            self.expect("[")
            key = self.parse()
            if key.kind not in _KEY_TYPES:
                raise self.fail(f"dict keys must be one of {', '.join(_KEY_TYPES)}, not {key}")
            self.expect(",")
            value = self.parse()
            self.expect("]")
            return TypeRef("dict", item=value, key=key)
        raise self.fail(f"unknown type '{name}'")


def parse_type(text: str) -> TypeRef:
    """Parse a type string; raises ValueError naming the text and the supported types."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"invalid type {text!r}: a type must be a non-empty string")
    parser = _Parser(text.strip())
    ref = parser.parse()
    parser.skip_ws()
    if parser.pos != len(parser.text):
        raise parser.fail(f"unexpected {parser.text[parser.pos :]!r} after the type")
    return ref


def type_of(spec: TypeRef | _FieldLike | str) -> TypeRef:
    """The TypeRef of a type string, a TypeRef, or a field spec (with its nested ``schema``).

    For an ``object`` field (or ``list[object]``) with a schema, the result lists the nested
    keys. Nested keys are always required: a value must carry each of them.
    """
    if isinstance(spec, TypeRef):
        return spec
    if isinstance(spec, str):
        return parse_type(spec)
    ref = parse_type(spec.type)
    schema: Mapping[str, Any] | None = getattr(spec, "schema_", None)
    if schema is None:
        return ref
    fields = tuple((name, type_of(sub)) for name, sub in schema.items())
    descriptions = tuple(
        (name, sub.description) for name, sub in schema.items() if getattr(sub, "description", None)
    )
    return _with_fields(ref, fields, descriptions)


def _with_fields(
    ref: TypeRef,
    fields: tuple[tuple[str, TypeRef], ...],
    descriptions: tuple[tuple[str, str], ...],
) -> TypeRef:
    # A schema describes the innermost object: `object` itself, or the items of `list[object]`.
    if ref.kind == "object":
        return TypeRef("object", fields=fields, descriptions=descriptions)
    if ref.kind == "list" and ref.item is not None:
        return TypeRef("list", item=_with_fields(ref.item, fields, descriptions))
    return ref


def describe_value(value: Any) -> str:
    """A short human description of a JSON-ish value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    if isinstance(value, int | float):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"str {shown!r}"
    if isinstance(value, list | tuple):
        return f"list of {len(value)} item(s)"
    if isinstance(value, Mapping):
        return "object with keys " + (", ".join(map(str, list(value)[:8])) or "(none)")
    return type(value).__name__


def _fail(where: str, ref: TypeRef, value: Any, detail: str = "") -> InvalidInputs:
    extra = f" ({detail})" if detail else ""
    return InvalidInputs(
        f"{where}: expected {ref}, got {describe_value(value)}{extra}", field=where
    )


def check_value(
    spec: TypeRef | _FieldLike | str, value: Any, where: str, *, allow_none: bool = False
) -> Any:
    """Check ``value`` against a type and return it, coerced, as a fresh JSON-ish value.

    int accepts int but not bool; float accepts int (returned as float) but not bool; bool
    accepts only true/false; str only strings. Objects with a schema must carry every
    schema key and no other. ``None`` passes only with ``allow_none`` (at the top
    level). Raises InvalidInputs whose ``field`` is ``where`` (extended with the nested path)
    and whose message names it, the expected type and what was given.
    """
    ref = type_of(spec)
    if value is None and allow_none:
        return None
    return _check(ref, value, where)


def _check(ref: TypeRef, value: Any, where: str) -> Any:
    kind = ref.kind
    if kind in BASIC_TYPES:
        return _check_basic(ref, value, where)
    if kind == "list":
        if not isinstance(value, list | tuple):
            raise _fail(where, ref, value)
        if ref.item is None:
            return copy.deepcopy(list(value))
        return [_check(ref.item, item, f"{where}[{i}]") for i, item in enumerate(value)]
    if kind == "dict":
        if not isinstance(value, Mapping):
            raise _fail(where, ref, value)
        if ref.item is None:
            return copy.deepcopy(dict(value))
        key_ref = ref.key or TypeRef("str")
        return {
            _check_key(key_ref, k, where): _check(ref.item, v, f"{where}.{k}")
            for k, v in value.items()
        }
    return _check_object(ref, value, where)


def _check_basic(ref: TypeRef, value: Any, where: str) -> Any:
    kind = ref.kind
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and is_number:
        if isinstance(value, int):
            return value
        # 3.0 from a JSON parser is the integer 3; 3.5 is not an int.
        if math.isfinite(value) and value.is_integer():
            return int(value)
    if kind == "float" and is_number:
        if not math.isfinite(value):
            raise _fail(where, ref, value, "must be finite")
        return float(value)
    raise _fail(where, ref, value)


def _check_key(ref: TypeRef, key: Any, where: str) -> Any:
    if isinstance(key, str) and ref.kind != "str":
        # JSON object keys are always strings; accept the text of the declared key type.
        return _check(ref, _parse_scalar(ref.kind, key), f"{where} key {key!r}")
    return _check(ref, key, f"{where} key")


def _parse_scalar(kind: str, text: str) -> Any:
    """The int/float/bool spelled by ``text``, or ``text`` unchanged when it spells none."""
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        return text
    return {"true": True, "false": False}.get(text.lower(), text) if kind == "bool" else text


def _check_object(ref: TypeRef, value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, ref, value)
    if ref.fields is None:
        return copy.deepcopy(dict(value))
    known = dict(ref.fields)
    unknown = [k for k in value if k not in known]
    if unknown:
        raise InvalidInputs(
            f"{where}: unknown key {unknown[0]!r}; expected keys: {', '.join(known)}",
            field=f"{where}.{unknown[0]}",
        )
    result: dict[str, Any] = {}
    for name, sub in ref.fields:
        if name not in value:
            raise InvalidInputs(
                f"{where}.{name}: missing (expected {sub})", field=f"{where}.{name}"
            )
        result[name] = _check(sub, value[name], f"{where}.{name}")
    return result


def is_compatible(produced: TypeRef, target: TypeRef) -> bool:
    """Whether values of type ``produced`` may be stored in a field of type ``target``.

    Equal types are compatible; an int fits a float; any list fits a bare ``list``, any
    dict or object a bare ``dict`` or an ``object`` without a schema.
    """
    if produced.kind == "int" and target.kind == "float":
        return True
    if target.kind == "list":
        if produced.kind != "list":
            return False
        if target.item is None or produced.item is None:
            return target.item is None
        return is_compatible(produced.item, target.item)
    if target.kind in ("dict", "object"):
        if produced.kind not in ("dict", "object"):
            return False
        if target.kind == "dict" and target.item is None:
            return True
        if target.kind == "object" and target.fields is None:
            return True
        if produced.kind != target.kind:
            return False
        if target.kind == "dict":
            return (
                produced.item is not None
                and target.item is not None
                and is_compatible(produced.item, target.item)
            )
        if produced.fields is None:
            return False
        mine = dict(produced.fields)
        theirs = dict(target.fields or ())
        return mine.keys() == theirs.keys() and all(
            is_compatible(mine[k], theirs[k]) for k in theirs
        )
    return produced.kind == target.kind


def json_schema(spec: TypeRef | _FieldLike | str, description: str | None = None) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12 subset) describing values of the type.

    Objects with a schema list every key as a property, require all of them and forbid
    others, which is what strict structured-output modes expect.
    """
    ref = type_of(spec)
    if description is None:
        description = getattr(spec, "description", None)
    schema = _schema(ref)
    if description:
        schema["description"] = description
    return schema


_JSON_BASIC = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def _schema(ref: TypeRef) -> dict[str, Any]:
    if ref.kind in _JSON_BASIC:
        return {"type": _JSON_BASIC[ref.kind]}
    if ref.kind == "list":
        return {"type": "array", "items": _schema(ref.item)} if ref.item else {"type": "array"}
    if ref.kind == "dict":
        if ref.item is None:
            return {"type": "object"}
        return {"type": "object", "additionalProperties": _schema(ref.item)}
    if ref.fields is None:
        return {"type": "object"}
    descriptions = dict(ref.descriptions)
    properties: dict[str, Any] = {}
    for name, sub in ref.fields:
        properties[name] = _schema(sub)
        if name in descriptions:
            properties[name]["description"] = descriptions[name]
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name, _ in ref.fields],
        "additionalProperties": False,
    }


def example_value(spec: TypeRef | _FieldLike | str, text: str) -> Any:
    """A deterministic value of the type derived from ``text``.

    str gives ``text``; int its length; float its length as a float; bool True; a list one
    example item (``text`` for a bare list); a dict one entry keyed ``"key"`` (``{"text":
    text}`` when bare); an object one example per schema key (empty without a schema).
    """
    ref = type_of(spec)
    return _example(ref, text)


def _example(ref: TypeRef, text: str) -> Any:
    kind = ref.kind
    if kind == "str":
        return text
    if kind == "int":
        return len(text)
    if kind == "float":
        return float(len(text))
    if kind == "bool":
        return True
    if kind == "list":
        return [_example(ref.item, text)] if ref.item else [text]
    if kind == "dict":
        if ref.item is None:
            return {"text": text}
        key = ref.key.kind if ref.key else "str"
        return {{"str": "key", "int": 1, "float": 1.0, "bool": True}[key]: _example(ref.item, text)}
    if ref.fields is None:
        return {}
    return {name: _example(sub, text) for name, sub in ref.fields}
