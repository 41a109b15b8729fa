"""Input that used to be a 500: a NUL in the path or a filter, a cursor far outside any
run's time, a session cookie of any shape. Each is a 4xx or a fresh anonymous visit,
through real HTTP, and arbitrary paths and cookies never get a 5xx. Data is never
cached, and the answer varies by the headers that choose its format."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from fuzz_settings import bounded
from hypothesis import given
from hypothesis import strategies as st
from support import HX, JSON, LiveServer

TOKEN = "fuzz-operator-token-4d5e6f7a8b"


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[LiveServer]:
    with LiveServer(database_url) as live:
        yield live


@pytest.fixture(scope="module")
def secured(database_url: str) -> Iterator[LiveServer]:
    env = {"CA_OPERATOR_TOKENS": TOKEN, "CA_SECRET": "fuzz-secret-" + "abcdef0123456789" * 2}
    with LiveServer(database_url, extra_env=env) as live:
        yield live


RUN = str(uuid.uuid4())


@pytest.mark.parametrize(
    "path",
    [
        "/static/x%00",
        "/static/%00",
        "/workflows?workflow=%00",
        "/workflows?status=%00",
        "/workflows?q=%00",
        "/workflows/table?workflow=a%00b",
        f"/workflows?cursor=0001-01-01T00:00:00%2B00:00_{RUN}",
        f"/workflows?cursor=9999-12-31T23:59:59%2B00:00_{RUN}",
        f"/workflows?before=0001-01-01T00:00:00%2B00:00_{RUN}",
        f"/workflows?before=9999-12-31T23:59:59.999999%2B00:00_{RUN}",
        "/workflows/%00",
        "/workflows/%00/row",
    ],
)
async def test_input_that_was_a_500_is_a_4xx(empty_db: str, server, path: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        for headers in ({}, JSON, HX):
            response = await client.get(path, headers=headers)
            assert 400 <= response.status_code < 500, (path, headers, response.status_code)


async def test_data_is_never_cached_and_varies_by_format(empty_db: str, server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        for path, headers in (
            ("/workflows", {}),
            ("/workflows", JSON),
            ("/workflows", HX),
            ("/workflows/table", HX),
            ("/workflows/not-a-run", JSON),
        ):
            r = await client.get(path, headers=headers)
            assert r.headers["cache-control"] == "no-store", path
            vary = {v.strip().lower() for v in r.headers["vary"].split(",")}
            assert {"accept", "hx-request"} <= vary, (path, r.headers["vary"])
        static = await client.get("/static/app.css")
        assert static.status_code == 200 and "no-store" not in static.headers.get(
            "cache-control", ""
        )


@bounded(60)
@given(
    path=st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=40
    ),
    cookie=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80),
)
def test_any_path_and_cookie_is_never_a_5xx(secured, path: str, cookie: str) -> None:
    quoted = httpx.URL(secured.url + "/" + path.lstrip("/")).raw_path.decode("ascii")
    for name in ("ca_session", "__Host-ca_session"):
        headers = {"Cookie": f"{name}={cookie.replace(';', '')}"}
        for prefix in ("", "/static", "/workflows", "/login"):
            response = httpx.get(secured.url + prefix + quoted, headers=headers, timeout=10)
            assert response.status_code < 500, (prefix + quoted, cookie, response.status_code)
