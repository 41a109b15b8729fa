"""A provider that never answers: the node's timeout (config.execution.timeout) fails the
run cleanly, naming the node and the provider, and the run's row says so."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from bs4 import BeautifulSoup
from litestar.testing import AsyncTestClient
from support import HX, app_settings, new_service

from app.store.tables import StepRun
from app.web.app import create_app
from app.workflows.loader import parse_workflow

TIMEOUT = 0.5

WORKFLOW = """
schema_version: "1.0"
flow: {{name: hanging}}
state:
  fields:
    topic: {{type: str, required: true}}
    draft: {{type: str, default: ""}}
nodes:
  - id: write_draft
    prompt: "Write about {{state.topic}}"
    outputs: [draft]
edges:
  - {{from: START, to: write_draft}}
  - {{from: write_draft, to: END}}
config:
  llm: {llm}
  execution: {{timeout: {timeout}, max_retries: 0}}
"""


async def _warm_up_the_sdk() -> None:
    """The SDK's first request spends ~0.5 s importing lazily before it connects, which
    would use up the whole node timeout: pay that once, against a closed port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="x", timeout=5, max_retries=0
    )
    with contextlib.suppress(openai.APIConnectionError):
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    await client.close()


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """An HTTP endpoint that accepts connections and never answers; and its connections."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)  # read nothing back, answer nothing, keep it open

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1", held
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize("provider", ["openai-compatible", "mock"])
async def test_hanging_provider_times_out_and_the_row_says_so(
    empty_db: str, provider: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[socket.socket] | None = None
    if provider == "mock":
        llm = "{provider: mock, model: slow, delay_seconds: 30}"
        provider_name = "mock"
    else:
        url, held = request.getfixturevalue("silent_server")
        await _warm_up_the_sdk()
        monkeypatch.setenv("TEST_HANGING_KEY", "not-a-real-key")
        llm = (
            f"{{provider: openai, model: gpt-4o-mini, base_url: '{url}', "
            "api_key_env: TEST_HANGING_KEY}"
        )
        provider_name = "openai"
    spec = parse_workflow(WORKFLOW.format(llm=llm, timeout=TIMEOUT))
    service = new_service()
    run_id = await service.create_run(spec, {"topic": "tides"})

    began = time.monotonic()
    assert await service.execute_run(run_id) == "failed"
    took = time.monotonic() - began
    assert took < TIMEOUT + 3, f"the run took {took:.1f} s to fail"
    if held is not None:
        assert held, "the request never reached the endpoint: nothing hung"

    run = await service.get_summary(run_id)
    assert run.error_type == "Timeout"
    assert run.error_node == "write_draft"
    assert "write_draft" in run.error_message and provider_name in run.error_message
    assert f"{TIMEOUT:g} s" in run.error_message
    steps = await StepRun.select(StepRun.status, StepRun.error).where(StepRun.run == run_id)
    assert [s["status"] for s in steps] == ["failed"]
    assert "Timeout" in steps[0]["error"] or "no answer" in steps[0]["error"]

    app = create_app(app_settings(empty_db), migrate=False, pool=False)
    client: Any
    async with AsyncTestClient(app=app) as client:
        answer = await client.get(f"/workflows/{run_id}/row", headers=HX)
    assert answer.status_code == 200
    row = BeautifulSoup(answer.text, "html.parser").select_one(f"tr#run-{run_id}")
    assert row is not None, answer.text
    assert row["data-status"] == "failed"
    summary = row.select_one(".error-summary")
    assert summary is not None, row
    text = summary.get_text(" ", strip=True)
    assert "write_draft" in text and provider_name in text and "no answer" in text
    assert not row.has_attr("hx-trigger"), "a finished row must stop polling"
    assert row.select_one("td.actions")["data-do"].startswith("restart")
