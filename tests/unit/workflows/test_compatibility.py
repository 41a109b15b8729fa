"""Every file of the original gets the verdict docs/compatibility.md promises, through
`configurable-agents validate`; a verdict that differs from the original's names its
difference in the same document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main

ROOT = Path(__file__).parents[3]
ORIGINAL = ROOT / "tests" / "fixtures" / "original"
DOC = (ROOT / "docs" / "compatibility.md").read_text(encoding="utf-8")


def _rows(heading: str) -> list[list[str]]:
    section = DOC.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


FILES = {row[0].strip("`"): row[1:] for row in _rows("Every file of the original")}
DIFFERENCES = {row[0]: row for row in _rows("Differences")}


def test_the_table_lists_every_file_of_the_original() -> None:
    found = {
        path.relative_to(ORIGINAL).as_posix()
        for path in ORIGINAL.rglob("*")
        if path.suffix in (".yaml", ".yml", ".json")
    }
    assert found == set(FILES)
    assert len(found) >= 37


def test_every_difference_is_numbered_and_explained() -> None:
    assert list(DIFFERENCES) == [f"D{n}" for n in range(1, len(DIFFERENCES) + 1)]
    assert all(len(row) == 5 and all(row) for row in DIFFERENCES.values())


@pytest.fixture(autouse=True)
def nothing_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SERPER_API_KEY", "TAVILY_API_KEY", "CA_ENABLED_TOOLS", "CA_ALLOWED_TOOL_HOSTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("name", sorted(FILES))
def test_validate_gives_the_promised_verdict(name: str) -> None:
    original, here, runs, notes = FILES[name]
    result = CliRunner().invoke(main, ["validate", str(ORIGINAL / name)])
    assert "Traceback" not in result.output
    assert result.exit_code == (0 if here == "accepts" else 2), result.output
    if here == "accepts":
        assert ("cannot run here:" in result.output) == runs.startswith("needs"), result.output
    else:
        assert result.output.startswith("invalid: ")
    if original != here:
        named = re.findall(r"\((D\d+)\)", notes)
        assert named and all(d in DIFFERENCES for d in named), f"{name}: name the difference"
