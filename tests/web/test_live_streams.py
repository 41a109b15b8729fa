"""The live channel: each tab's Server-Sent Events stream, against the real server.

Changes are made the way other processes make them: straight in the database from
this (test) process, or through the server's own API. The streams are read as a
browser reads them: over HTTP, message by message, with Last-Event-ID on reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from factories import fixed_id, make_run
from support import BACKEND, JSON, LiveServer, until

from app.services.live import FEED_NAME
from app.store.tables import WorkflowRun

OPERATOR = "live-operator-token-5c6d7e8f9a"
VIEWER = "live-viewer-token-1f2e3d4c5b6a"
ENV = {
    "CA_OPERATOR_TOKENS": f"olga={OPERATOR}",
    "CA_VIEWER_TOKENS": f"vic={VIEWER}",
    # The running runs below belong to no live process: keep the sweep off them.
    "CA_STALE_AFTER_SECONDS": "3600",
}
postgres_only = pytest.mark.skipif(BACKEND != "postgres", reason="PostgreSQL only")


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}


@dataclass
class Message:
    id: str | None = None
    event: str | None = None
    data: str = ""
    comment: str = ""


@dataclass
class Stream:
    """One tab's stream, read in the background."""

    messages: list[Message] = field(default_factory=list)
    ended: bool = False
    status: int = 0

    def data(self) -> list[Message]:
        return [m for m in self.messages if m.data]

    async def wait_for(self, check: Callable[[Message], bool], what: str, timeout: float = 5.0):
        async def found() -> Message | None:
            return next((m for m in self.data() if check(m)), None)

        return await until(found, timeout, what, interval=0.05)


async def _read(response: httpx.Response, stream: Stream) -> None:
    current = Message()
    try:
        async for line in response.aiter_lines():
            if line == "":
                if current.data or current.comment or current.event:
                    stream.messages.append(current)
                current = Message()
            elif line.startswith(":"):
                current.comment = line[1:].strip()
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    current.data += value + "\n"
                elif name == "id":
                    current.id = value
                elif name == "event":
                    current.event = value
    finally:
        stream.ended = True


@contextlib.asynccontextmanager
async def open_stream(
    server: LiveServer, path: str, token: str = OPERATOR, last_event_id: str | None = None
) -> AsyncIterator[Stream]:
    headers = _as(token)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    stream = Stream()
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(10, read=60)) as client,
        client.stream("GET", path, headers=headers) as response,
    ):
        stream.status = response.status_code
        reader = asyncio.create_task(_read(response, stream))
        # Connected once the first comment is in: changes from now on reach this tab.
        await until(lambda: _ready(stream), 5, "the stream's first message")
        try:
            yield stream
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await reader


async def _ready(stream: Stream) -> bool:
    return bool(stream.messages) or stream.ended


def _now_token(ahead: float = 0.0) -> str:
    return str(int((time.time() + ahead) * 1_000_000))


def list_path(*ids: str, ahead: float = 0.0, **filters: str) -> str:
    """A list page's stream. With `ahead`, the page was drawn a while after its rows
    were written, so the stream's catch-up (a few seconds before the page's time)
    leaves them out."""
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return f"/workflows/events?shown={','.join(ids)}&at={_now_token(ahead)}" + (
        f"&{query}" if query else ""
    )


async def set_progress(run_id: str, steps_done: int, node: str = "plan") -> None:
    await WorkflowRun.update(
        {WorkflowRun.steps_done: steps_done, WorkflowRun.current_node: node}
    ).where(WorkflowRun.id == uuid.UUID(run_id))


async def finish(run_id: str, status: str = "completed") -> None:
    await WorkflowRun.update(
        {WorkflowRun.status: status, WorkflowRun.completed_at: datetime.now(UTC)}
    ).where(WorkflowRun.id == uuid.UUID(run_id))


def row_of(run_id: str) -> Callable[[Message], bool]:
    return lambda m: f'hx-target="#run-{run_id}"' in m.data


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[LiveServer]:
    with LiveServer(database_url, extra_env=ENV) as live:
        yield live


def _recent(minutes: float = 1) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


async def test_a_row_changed_by_another_process_is_pushed_to_the_tab(
    empty_db: str, server: LiveServer
) -> None:
    running = await make_run(1, created_at=_recent(), status="running", steps_total=3)
    other = await make_run(2, created_at=_recent(2), status="completed")
    async with open_stream(server, list_path(running, other, ahead=6)) as stream:
        assert stream.status == 200
        # A feed that starts with this tab resends the last seconds once (twice is
        # harmless, never is not): let that pass.
        await asyncio.sleep(2.5)
        await set_progress(running, 2, "review")
        message = await stream.wait_for(
            lambda m: row_of(running)(m) and "2/3 nodes · review" in m.data, "the running row"
        )
        assert 'data-do="cancel"' in message.data  # an operator's row keeps its actions
        assert message.id and message.id.isdigit()
        # Only what changed is sent: the other row is not in this message.
        assert not row_of(other)(message)
        await finish(running)
        done = await stream.wait_for(
            lambda m: f'id="run-{running}" class="run" data-status="completed"' in m.data,
            "the row, completed",
        )
        assert 'data-do="restart' in done.data
        assert not row_of(other)(done)


async def test_new_runs_matching_the_filter_count_in_the_banner(
    empty_db: str, server: LiveServer
) -> None:
    shown = await make_run(1, created_at=_recent(), status="failed")
    async with open_stream(server, list_path(shown, status="failed")) as stream:
        await make_run(2, created_at=datetime.now(UTC), status="completed")  # not a match
        await make_run(3, created_at=datetime.now(UTC), status="failed")
        first = await stream.wait_for(lambda m: "#new-runs" in m.data, "the banner")
        assert "1 new run — show" in first.data
        assert 'hx-get="/workflows?status=failed"' in first.data
        await make_run(4, created_at=datetime.now(UTC), status="failed")
        await stream.wait_for(lambda m: "2 new runs — show" in m.data, "the banner at 2")
        # New runs are counted, never pushed into the table under the operator.
        assert not any(row_of(fixed_id(n))(m) for n in (2, 3, 4) for m in stream.data())


async def test_the_banner_keeps_its_count_across_a_reconnect(
    empty_db: str, server: LiveServer
) -> None:
    shown = await make_run(1, created_at=_recent(), status="failed")
    path = list_path(shown, status="failed")
    async with open_stream(server, path) as stream:
        await make_run(2, created_at=datetime.now(UTC), status="failed")
        await make_run(3, created_at=datetime.now(UTC), status="failed")
        await stream.wait_for(lambda m: "2 new runs" in m.data, "the banner at 2")
    # Back after a while (a hidden tab): its last event id is a keep-alive's, later than
    # both runs by more than the catch-up's overlap, so only the page's time counts them.
    await asyncio.sleep(6)
    async with open_stream(server, path, last_event_id=_now_token()) as again:
        await again.wait_for(lambda m: "2 new runs — show" in m.data, "the banner, again at 2")


async def test_a_restart_of_a_shown_run_redraws_its_row_not_the_banner(
    empty_db: str, server: LiveServer
) -> None:
    failed = await make_run(1, created_at=_recent(), status="failed")
    async with (
        open_stream(server, list_path(failed)) as stream,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        answer = await client.post(
            f"/workflows/{failed}/restart",
            headers={**JSON, "Authorization": f"Bearer {OPERATOR}"},
        )
        new_id = answer.json()["run_id"]
        await stream.wait_for(
            lambda m: row_of(failed)(m) and f'restarted as <a href="/workflows/{new_id}"' in m.data,
            "the original row with the restart's outcome",
            timeout=8,
        )
        # The restart's own row is sent too (the tab that restarted it shows it).
        assert any(row_of(new_id)(m) for m in stream.data())
        assert not any("#new-runs" in m.data for m in stream.data())


async def test_reconnecting_with_last_event_id_catches_up(
    empty_db: str, server: LiveServer
) -> None:
    a = await make_run(1, created_at=_recent(), status="running", steps_total=5)
    b = await make_run(2, created_at=_recent(2), status="running", steps_total=5)
    path = list_path(a, b)
    async with open_stream(server, path) as stream:
        await set_progress(a, 1)
        seen = await stream.wait_for(row_of(a), "a's first change")
    # The tab is away (hidden, or its connection dropped) while b changes.
    await asyncio.sleep(0.3)
    await set_progress(b, 4, "ship")
    # The page's own time is far ahead: only Last-Event-ID can bring b's change.
    async with open_stream(server, list_path(a, b, ahead=3600), last_event_id=seen.id) as again:
        caught = await again.wait_for(row_of(b), "b's change, caught up on reconnect")
        assert "4/5 nodes · ship" in caught.data
        assert int(caught.id or 0) > int(seen.id or 0)


async def test_an_unreadable_last_event_id_is_ignored(empty_db: str, server: LiveServer) -> None:
    a = await make_run(1, created_at=_recent(), status="running")
    async with open_stream(server, list_path(a), last_event_id="'; DROP TABLE x; --") as stream:
        assert stream.status == 200
        await set_progress(a, 1)
        await stream.wait_for(row_of(a), "the row, after a bad Last-Event-ID")


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("status=nope", 400),
        ("limit=0", 400),
        ("q=%3C%3E", 400),
        ("shown=x,<script>,' OR 1=1&at=-5", 200),
        ("at=99999999999999999999999", 200),
    ],
)
async def test_bad_stream_parameters_are_refused_or_ignored(
    empty_db: str, server: LiveServer, query: str, status: int
) -> None:
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream("GET", f"/workflows/events?{query}", headers=_as(OPERATOR)) as answer,
    ):
        assert answer.status_code == status
        if status == 200:
            first = await anext(answer.aiter_lines())
            assert first == ": live"
        else:
            assert "text/event-stream" not in answer.headers.get("content-type", "")


async def test_a_viewer_stream_has_no_actions_and_an_anonymous_one_is_refused(
    empty_db: str, server: LiveServer
) -> None:
    running = await make_run(1, created_at=_recent(), status="running", steps_total=3)
    async with open_stream(server, list_path(running), token=VIEWER) as stream:
        await set_progress(running, 1)
        message = await stream.wait_for(row_of(running), "the viewer's row")
        assert "<form" not in message.data and "data-action" not in message.data
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        anonymous = await client.get(list_path(running), headers={"Accept": "text/event-stream"})
        wrong = await client.get(list_path(running), headers=_as("not-a-token-at-all-00000"))
        detail = await client.get(
            f"/workflows/{running}/events", headers={"Accept": "text/event-stream"}
        )
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert detail.status_code == 401


async def test_the_run_page_stream_redraws_its_header_and_steps(
    empty_db: str, server: LiveServer
) -> None:
    run = await make_run(1, created_at=_recent(), status="running", steps_total=2)
    async with open_stream(server, f"/workflows/{run}/events?at={_now_token(6)}") as stream:
        await set_progress(run, 1, "draft")
        message = await stream.wait_for(lambda m: "now draft" in m.data, "the run's parts")
        for part in ("#run-actions", "#run-facts", "#run-lineage", "#run-error", "#run-steps"):
            assert f'hx-target="{part}"' in message.data
        assert "1 of 2 · now draft" in message.data
        # The running node shows in the timeline with a duration that ticks in the page.
        assert "tl-running" in message.data and "data-since=" in message.data
        await finish(run, "failed")
        await stream.wait_for(lambda m: 'data-status="failed"' in m.data, "the failed header")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        missing = await client.get(f"/workflows/{fixed_id(99)}/events", headers=_as(OPERATOR))
    assert missing.status_code == 404


async def test_a_run_page_hears_about_its_restart(empty_db: str, server: LiveServer) -> None:
    failed = await make_run(1, created_at=_recent(), status="failed")
    async with open_stream(server, f"/workflows/{failed}/events?at={_now_token(6)}") as stream:
        await make_run(2, created_at=datetime.now(UTC), status="running", restarted_from=failed)
        message = await stream.wait_for(
            lambda m: "#run-lineage" in m.data and fixed_id(2)[:8] in m.data, "the lineage"
        )
        assert "restarting as" in message.data  # the header's action says so


async def test_sigterm_ends_every_open_stream_at_once(database_url: str, empty_db: str) -> None:
    run = await make_run(1, created_at=_recent(), status="running")
    with LiveServer(database_url, extra_env=ENV) as own:
        async with contextlib.AsyncExitStack() as stack:
            streams = [
                await stack.enter_async_context(open_stream(own, list_path(run))) for _ in range(20)
            ]
            started = time.monotonic()
            assert own.proc is not None
            own.proc.send_signal(signal.SIGTERM)
            await until(
                lambda: _all_ended(streams), 10, "every stream ended by the server", interval=0.05
            )
            await asyncio.to_thread(own.proc.wait, 10)
            took = time.monotonic() - started
    # Well within the grace period: open streams do not hold the stop.
    assert took < 5, f"the server took {took:.1f} s to stop with 20 open streams"


async def _all_ended(streams: list[Stream]) -> bool:
    return all(s.ended for s in streams)


@postgres_only
async def test_two_dashboards_see_each_others_changes(
    database_url: str, empty_db: str, server: LiveServer
) -> None:
    failed = await make_run(1, created_at=_recent(), status="failed")
    with LiveServer(database_url, extra_env={**ENV, "EXECUTION": "queue"}) as other:
        async with (
            open_stream(server, list_path(failed)) as here,
            open_stream(other, list_path(failed)) as there,
            httpx.AsyncClient(base_url=other.url, timeout=10) as client,
        ):
            answer = await client.post(
                f"/workflows/{failed}/restart",
                headers={**JSON, "Authorization": f"Bearer {OPERATOR}"},
            )
            assert answer.status_code == 200
            new_id = answer.json()["run_id"]
            await here.wait_for(
                lambda m: row_of(failed)(m) and new_id[:8] in m.data,
                "the restart made on the other one",
            )
            # The queue-mode dashboard's strip comes down its stream too (no polling).
            strip = await there.wait_for(
                lambda m: "#queue-strip" in m.data, "the queue strip", timeout=8
            )
            assert "workers live" in strip.data


@postgres_only
async def test_the_feed_listens_again_and_catches_up_after_losing_its_connection(
    empty_db: str, server: LiveServer
) -> None:
    import asyncpg

    from app.store import db

    run = await make_run(1, created_at=_recent(), status="running", steps_total=9)
    async with open_stream(server, list_path(run)) as stream:
        await set_progress(run, 1)
        await stream.wait_for(row_of(run), "the first change")
        dsn = str(db.current_engine().config["dsn"])
        conn = await asyncpg.connect(dsn)
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1 AND datname = current_database()",
                FEED_NAME,
            )
        finally:
            await conn.close()
        assert killed == 1
        # Written while the feed has no connection: heard by the catch-up after.
        await set_progress(run, 7, "late")
        message = await stream.wait_for(
            lambda m: row_of(run)(m) and "7/9 nodes · late" in m.data, "the change after the cut"
        )
        assert message.id
