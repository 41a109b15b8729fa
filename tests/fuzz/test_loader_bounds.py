"""A workflow file cannot make the loader exhaust memory or time: an alias bomb, an
oversized file, thousands of bad edge targets. Each is refused quickly, in a few lines
that say why, measured in a subprocess (time and peak memory)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.errors import SpecInvalid
from app.workflows.loader import MAX_FILE_BYTES, MAX_PROBLEMS, parse_workflow

ROOT = Path(__file__).resolve().parents[2]

BOMB = textwrap.dedent(
    """\
    schema_version: "1.0"
    flow: {name: bomb}
    unused: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
    more:
      a1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]
      a2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]
      a3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]
      a4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]
      a5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]
      a6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]
      a7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]
      a8: &a8 [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]
      a9: &a9 [*a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8]
    state: {fields: {x: {type: str}}}
    nodes: [{id: n, prompt: "p", outputs: [x]}]
    edges: [{from: START, to: n}, {from: n, to: END}]
    """
)

_MEASURE = """
import json, resource, sys, time
from app.errors import SpecInvalid
from app.workflows.loader import load_workflow
# What the interpreter and the app's imports hold already: the file's cost is on top.
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
began = time.perf_counter()
try:
    load_workflow(sys.argv[1])
    issues = []
except SpecInvalid as exc:
    issues = [str(i) for i in exc.issues]
print(json.dumps({"seconds": time.perf_counter() - began, "issues": issues,
                  "grew_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline}))
"""


def _measure(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_an_alias_bomb_is_refused_in_under_2_s_and_200_mb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    result = _measure(path)
    assert result["seconds"] < 2 and result["grew_mb"] < 200, result
    assert len(result["issues"]) == 1 and "aliases" in result["issues"][0]


def test_thousands_of_bad_edge_targets_cost_little_and_print_little(tmp_path: Path) -> None:
    nodes = [{"id": f"node_{i}", "prompt": "p", "outputs": ["x"]} for i in range(3000)]
    edges = [{"from": "START", "to": "node_0"}]
    edges += [{"from": f"node_{i}", "to": f"missing_{i}"} for i in range(3000)]
    doc = {
        "schema_version": "1.0",
        "flow": {"name": "many"},
        "state": {"fields": {"x": {"type": "str"}}},
        "nodes": nodes,
        "edges": edges,
    }
    path = tmp_path / "many.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    assert path.stat().st_size < MAX_FILE_BYTES
    result = _measure(path)
    assert result["seconds"] < 10, result
    issues = result["issues"]
    assert len(issues) == MAX_PROBLEMS + 1 and "more problem" in issues[-1]
    assert sum(len(i) for i in issues) < 50_000
    assert "more)" in issues[0]  # the list of node ids is cut short too


def test_an_oversized_file_is_refused_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    with pytest.raises(SpecInvalid, match="at most 1,048,576 bytes"):
        from app.workflows.loader import load_workflow

        load_workflow(path)
    with pytest.raises(SpecInvalid, match="at most 1,048,576 bytes"):
        parse_workflow(path.read_text())


def test_suggestions_name_at_most_three_near_names() -> None:
    text = textwrap.dedent(
        """\
        schema_version: "1.0"
        flow: {name: near}
        state: {fields: {x: {type: str}}}
        nodes:
          - {id: write_a, prompt: p, outputs: [x]}
          - {id: write_b, prompt: p, outputs: [x]}
          - {id: write_c, prompt: p, outputs: [x]}
          - {id: write_d, prompt: p, outputs: [x]}
        edges:
          - {from: START, to: write_e}
        """
    )
    with pytest.raises(SpecInvalid) as refused:
        parse_workflow(text)
    message = next(str(i) for i in refused.value.issues if "write_e" in str(i))
    suggestion = message.split("did you mean", 1)[1].split("?", 1)[0]
    assert suggestion.count("'write_") == 3
