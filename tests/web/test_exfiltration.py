"""A stored workflow cannot send the server's secrets anywhere: restarting a run whose
snapshot names another endpoint or key variable, through the real dashboard, sends
nothing to that endpoint and fails the run with an error naming the setting."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from factories import ECHO_SNAPSHOT, make_run
from support import FROZEN_NOW, JSON, LiveServer

SECRET = "s3cr3t-" + "0123456789abcdef" * 3


class _Listener(BaseHTTPRequestHandler):
    """An attacker's server: records every request, answers like a Chat Completions API."""

    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        body = (
            b'{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,'
            b'"message":{"role":"assistant","content":"pwned"},"finish_reason":"stop"}]}'
        )
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def listener() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Listener)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


def _snapshot(llm: dict) -> dict:
    return {**ECHO_SNAPSHOT, "config": {"llm": {"provider": "openai", "model": "m", **llm}}}


async def _restart_and_wait(server: LiveServer, run_id: str) -> dict:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        answer = await client.post(f"/workflows/{run_id}/restart", headers=JSON)
        assert answer.status_code == 200, answer.text
        new_id = answer.json()["run_id"]
        deadline = time.monotonic() + 15
        while True:
            body = (await client.get(f"/workflows/{new_id}", headers=JSON)).json()
            if body["status"] not in ("pending", "running"):
                return body
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[LiveServer]:
    env = {"CA_SECRET": SECRET, "OPENAI_API_KEY": "sk-server-key-" + "y" * 20}
    with LiveServer(database_url, extra_env=env) as live:
        yield live


@pytest.mark.parametrize(
    ("llm", "setting"),
    [
        ({"base_url": "{url}", "api_key_env": "CA_SECRET"}, "CA_ALLOWED_BASE_URLS"),
        ({"base_url": "{url}"}, "CA_ALLOWED_BASE_URLS"),
        ({"api_key_env": "CA_SECRET"}, "server's own secrets"),
        ({"api_key_env": "HOME"}, "CA_ALLOWED_KEY_ENV"),
    ],
    ids=["secret-to-attacker", "server-key-to-attacker", "secret-as-key", "other-variable"],
)
async def test_a_stored_workflow_cannot_send_secrets_anywhere(
    empty_db: str, server: LiveServer, listener: str, llm: dict, setting: str
) -> None:
    _Listener.seen.clear()
    llm = {k: v.format(url=listener) for k, v in llm.items()}
    original = await make_run(
        1, created_at=FROZEN_NOW - timedelta(minutes=1), status="failed", snapshot=_snapshot(llm)
    )
    body = await _restart_and_wait(server, original)
    assert body["status"] == "failed"
    assert body["error"]["type"] == "NotAllowed"
    assert setting in body["error"]["message"]
    assert _Listener.seen == []  # nothing was sent, not even without a key


async def test_an_allowed_endpoint_and_key_variable_are_used(
    empty_db: str, database_url: str, listener: str
) -> None:
    _Listener.seen.clear()
    env = {
        "CA_ALLOWED_BASE_URLS": listener + "/",  # compared without the trailing slash
        "CA_ALLOWED_KEY_ENV": "TEAM_LLM_KEY",
        "TEAM_LLM_KEY": "team-key-" + "z" * 20,
    }
    llm = {"base_url": listener, "api_key_env": "TEAM_LLM_KEY"}
    original = await make_run(
        1, created_at=FROZEN_NOW - timedelta(minutes=1), status="failed", snapshot=_snapshot(llm)
    )
    with LiveServer(database_url, extra_env=env) as allowed:
        body = await _restart_and_wait(allowed, original)
    assert body["status"] == "completed", body["error"]
    assert [s["authorization"] for s in _Listener.seen] == ["Bearer " + env["TEAM_LLM_KEY"]]
