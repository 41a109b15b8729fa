"""The command line, run as a user runs it: a subprocess with DATABASE_URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, url: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_prints_progress_and_outputs_and_exits_0(empty_db: str) -> None:
    result = cli("run", "examples/echo.yaml", "--input", "message=hello", url=empty_db)
    assert result.returncode == 0, result.stderr
    assert "→ echo" in result.stderr and "✓ echo" in result.stderr
    assert json.loads(result.stdout)["reply"] == "Repeat exactly: hello"


def test_run_parses_inputs_by_their_field_type(empty_db: str, tmp_path: Path) -> None:
    result = cli("run", "examples/fan_out.yaml", "--input", 'phrases=["a", "b"]', url=empty_db)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["translations"]) == 3  # from the mock's responses
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"topic": "tides"}))
    result = cli("run", "examples/article_writer.yaml", "--inputs-json", str(inputs), url=empty_db)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["word_count"] == 612


def test_failed_run_exits_1_naming_node_and_provider(empty_db: str) -> None:
    result = cli("run", "examples/flaky.yaml", "--input", "text=x", url=empty_db)
    assert result.returncode == 1
    assert "MockFailure" in result.stderr
    assert "node 'summarise'" in result.stderr and "provider mock" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--input", "topic=1", "--input", "nope=2"], "nope"),
        ([], "topic"),
        (["--input", "topicvalue"], "name=value"),
    ],
)
def test_bad_inputs_exit_2_and_name_the_field(empty_db: str, args, expected: str) -> None:
    result = cli("run", "examples/article_writer.yaml", *args, url=empty_db)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_type_input_exits_2(empty_db: str) -> None:
    result = cli("run", "examples/fan_out.yaml", "--input", "phrases=not-json", url=empty_db)
    assert result.returncode == 2
    assert "phrases" in result.stderr and "Traceback" not in result.stderr


def test_invalid_file_exits_2_with_file_line_and_key(empty_db: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "examples/echo.yaml").read_text().replace("prompt:", "promt:"))
    result = cli("run", str(bad), "--input", "message=x", url=empty_db)
    assert result.returncode == 2
    assert "bad.yaml:" in result.stderr and "promt" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_lists_ignored_sections_and_fails_on_bad_files(tmp_path: Path) -> None:
    original = ROOT / "tests/fixtures/original/article_writer_mlflow.yaml"
    good = cli("validate", "examples/echo.yaml", str(original), url="sqlite:///unused.db")
    assert good.returncode == 0, good.stderr
    assert "warning: " in good.stdout and "config.observability: ignored" in good.stdout
    # Its research node searches the web: without a search key, it cannot run here.
    assert "cannot run here: " in good.stdout and "SERPER_API_KEY" in good.stdout
    missing = cli("validate", str(tmp_path / "missing.yaml"), url="sqlite:///unused.db")
    assert missing.returncode == 2
    assert "missing.yaml" in missing.stderr


def test_help_is_readable() -> None:
    result = cli("run", "--help", url="sqlite:///unused.db")
    assert result.returncode == 0
    assert "--input" in result.stdout and "Exit code" in result.stdout


def test_serve_refuses_a_non_loopback_host() -> None:
    result = cli("serve", "--host", "0.0.0.0", url="sqlite:///unused.db")
    assert result.returncode == 2
    assert "refusing to serve on 0.0.0.0 without authentication" in result.stderr


def test_serve_on_a_non_loopback_host_needs_its_host_names() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8123"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": "sqlite:///unused.db",
            "CA_OPERATOR_TOKENS": "9c41f0d2b7e3a86519fd",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "CA_ALLOWED_HOSTS" in result.stderr and "8123" in result.stderr


def test_queue_mode_without_postgresql_is_a_clear_usage_error(tmp_path: Path) -> None:
    env_url = f"sqlite:///{tmp_path / 'q.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "app", "worker"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": env_url, "EXECUTION": "queue"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "EXECUTION=queue needs PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_what_cannot_run_here_naming_it_and_its_line(
    empty_db: str, tmp_path: Path
) -> None:
    text = (ROOT / "examples/order_totals.yaml").read_text()
    docker = tmp_path / "docker.yaml"
    docker.write_text(
        text.replace("sandbox: {preset: low, timeout: 10}", "sandbox: {mode: docker}")
    )
    result = cli("run", str(docker), "--input", "order_json={}", url=empty_db)
    assert result.returncode == 2
    line = text.splitlines().index("    sandbox: {preset: low, timeout: 10}") + 1
    assert f"docker.yaml:{line}: nodes[add_up].sandbox: " in result.stderr
    assert "docker" in result.stderr and "Traceback" not in result.stderr
    shell = tmp_path / "shell.yaml"
    shell.write_text(text.replace("tools: [json_parse]", "tools: [shell]"))
    result = cli("run", str(shell), "--input", "order_json={}", url=empty_db)
    assert result.returncode == 2
    assert "nodes[parse].tools[0]" in result.stderr and "CA_ENABLED_TOOLS=shell" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_takes_the_original_flags_and_quoted_inputs(empty_db: str, tmp_path: Path) -> None:
    unknown = tmp_path / "extra.yaml"
    unknown.write_text(
        (ROOT / "examples/echo.yaml").read_text() + "x-team: ops\nobservability_extra: 1\n"
    )
    result = cli(
        "run",
        str(unknown),
        "-v",
        "--enable-profiling",
        "--input",
        "message='hi there'",
        url=empty_db,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reply"] == "Repeat exactly: hi there"
    assert "--enable-profiling changes nothing here" in result.stderr
    assert "warning: " in result.stderr and "'observability_extra'" in result.stderr
    assert "x-team" not in result.stderr
