"""What the run page prints of stored values: the same text however it is cached."""

from __future__ import annotations

import math

from app.web.formatting import to_json, to_yaml


def test_a_snapshots_yaml_tells_nan_and_infinity_from_null() -> None:
    # The YAML is cached by the value's JSON text; msgspec writes NaN as null.
    assert to_yaml({"t": None}) == "t: null\n"
    assert to_yaml({"t": math.nan}) == "t: .nan\n"
    assert to_yaml({"t": math.inf, "u": None}) == "t: .inf\nu: null\n"
    assert to_yaml({"t": None}) == "t: null\n"


def test_a_snapshots_yaml_keeps_its_order_and_text() -> None:
    snapshot = {"nodes": [{"id": "b", "prompt": "Say «{x}»"}, {"id": "a"}], "edges": []}
    assert to_yaml(snapshot) == ("nodes:\n- id: b\n  prompt: Say «{x}»\n- id: a\nedges: []\n")
    assert to_json({"b": 1, "a": [1.5, "é"]}) == '{\n  "b": 1,\n  "a": [\n    1.5,\n    "é"\n  ]\n}'
