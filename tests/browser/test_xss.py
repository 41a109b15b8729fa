"""An XSS corpus in everything a run shows (workflow name, inputs, outputs, error type,
message and node, step node ids, outputs and errors, the config snapshot, the current
node of a running run, and the list's own filters): the list, row and detail pages show
it as text, nothing executes, and no request goes anywhere unexpected.

Pages are checked twice: as served (under the app's CSP) and with the CSP bypassed, so
that the escaping is tested on its own and not only the CSP behind it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from factories import ECHO_SNAPSHOT, fixed_id
from playwright.sync_api import Page, expect
from support import CELL

from app.store.tables import StepRun, WorkflowRun

pytestmark = pytest.mark.browser

NewPage = Callable[..., Page]
RunDb = Callable[[Callable[[], Any]], Any]

# Each payload, if it ever ran, would set window.__xss, call alert/confirm/prompt, or
# fetch /__xss (same origin) or xss.invalid (another site). All are under 100 characters
# (the width of error_type).
PAYLOADS = [
    "<script>window.__xss=1</script>",
    "<script src=/__xss/script.js></script>",
    "<img src=x onerror=alert(1)>",
    "<img src=/__xss/img.png>",
    '"><svg onload=alert(2)>',
    "'><svg/onload=confirm(3)>",
    "</pre></td></tr></table><script>alert(4)</script>",
    "javascript:alert(5)",
    '<a href="javascript:window.__xss=5">x</a>',
    "{{7*7}} ${7*7} {% raw %}#{7*7}",
    '<div hx-get="/__xss/htmx" hx-trigger="load">hx</div>',
    '<b hx-on:click="window.__xss=6" hx-on::load="window.__xss=6">on</b>',
    "<iframe src=//xss.invalid/frame></iframe>",
    "<style>@import '//xss.invalid/a.css'</style>",
    "</textarea><input autofocus onfocus=prompt(7)>",
    "\u2028<!--<script>alert(8)//-->",
]
RUNS = {n: fixed_id(900 + n) for n in range(len(PAYLOADS))}
RUNNING = fixed_id(999)  # redrawn by the list page's live stream, through htmx
ALLOWED_PATHS = ("/workflows", "/static/", "/favicon.ico")


def _snapshot(payload: str) -> dict[str, Any]:
    snapshot = json.loads(json.dumps(ECHO_SNAPSHOT))
    snapshot["flow"]["description"] = payload
    snapshot["nodes"][0]["prompt"] = f"Repeat: {{state.message}} {payload}"
    return snapshot


async def _seed() -> None:
    await StepRun.delete(force=True)
    await WorkflowRun.delete(force=True)
    now = datetime.now(UTC)
    for n, payload in enumerate(PAYLOADS):
        created = now - timedelta(minutes=n + 1)
        failed = n % 2 == 0
        await WorkflowRun.insert(
            WorkflowRun(
                id=uuid.UUID(RUNS[n]),
                workflow_name=payload,
                status="failed" if failed else "completed",
                trigger="api",
                config_snapshot=json.dumps(_snapshot(payload)),
                inputs=json.dumps({"message": payload, payload: [payload, {"k": payload}]}),
                outputs=None if failed else json.dumps({"reply": payload, "html": payload}),
                error_type=payload if failed else None,
                error_message=f"node {payload!r} failed: {payload}" if failed else None,
                error_node=payload if failed else None,
                created_at=created,
                started_at=created,
                completed_at=created + timedelta(seconds=2),
                steps_total=1,
                steps_done=1,
                owner="elsewhere:1",
                heartbeat_at=created,
            )
        )
        await StepRun.insert(
            StepRun(
                id=uuid.UUID(int=20_000_000 + n),
                run=uuid.UUID(RUNS[n]),
                node_id=payload,
                step_order=0,
                status="failed" if failed else "completed",
                started_at=created,
                completed_at=created + timedelta(seconds=1),
                duration_ms=1000.0,
                output=None if failed else json.dumps({"reply": payload}),
                error=payload if failed else None,
                tokens=3,
            )
        )
    await WorkflowRun.insert(
        WorkflowRun(
            id=uuid.UUID(RUNNING),
            workflow_name=PAYLOADS[0],
            status="running",
            trigger="api",
            config_snapshot=json.dumps(_snapshot(PAYLOADS[1])),
            inputs=json.dumps({"message": PAYLOADS[4]}),
            created_at=now,
            started_at=now,
            steps_total=2,
            steps_done=1,
            current_node=PAYLOADS[10],
            owner="elsewhere:1",
            heartbeat_at=now + timedelta(hours=1),
        )
    )


@pytest.fixture
def corpus(run_db: RunDb) -> None:
    run_db(_seed)


class Watch:
    """What a page did that an injected payload would do."""

    def __init__(self, page: Page, base_url: str):
        self.page = page
        self.base = urlsplit(base_url)
        self.dialogs: list[str] = []
        self.unexpected: list[str] = []
        self.requests = 0
        page.on("dialog", self._dialog)
        page.on("request", self._request)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _request(self, request: Any) -> None:
        self.requests += 1
        url = urlsplit(request.url)
        if url.scheme == "data":
            return
        if (url.scheme, url.netloc) != (self.base.scheme, self.base.netloc) or not any(
            url.path.startswith(p) for p in ALLOWED_PATHS
        ):
            self.unexpected.append(request.url)

    def check(self, where: str) -> None:
        self.page.wait_for_timeout(150)  # a load handler or an image error would have fired
        executed = self.page.evaluate("() => window.__xss")
        assert executed is None, f"{where}: window.__xss = {executed!r}"
        assert not self.dialogs, f"{where}: dialogs opened: {self.dialogs}"
        assert not self.unexpected, f"{where}: unexpected requests: {self.unexpected}"
        assert self.page.locator("iframe, svg[onload], img[onerror], [onfocus]").count() == 0


def _shows(page: Page, text: str, where: str) -> None:
    body = page.locator("body").inner_text()
    assert text in body, f"{where}: {text!r} is not shown literally"


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["with-csp", "without-csp"])
def test_the_corpus_is_shown_as_text_and_never_executes(
    new_page: NewPage, base_url: str, corpus: None, bypass_csp: bool, problems: Any, run_db: RunDb
) -> None:
    # A bare row fragment has no icon link, so the browser asks for /favicon.ico; the
    # run-id filter refuses the payload with a 400 that shows it.
    problems.allow_status(404, "/favicon.ico")
    problems.allow_status(400, "/workflows?q=")
    page = new_page(bypass_csp=bypass_csp)
    watch = Watch(page, base_url)

    page.goto("/workflows")
    rows = page.locator("#runs-body tr.run")
    expect(rows).to_have_count(len(PAYLOADS) + 1)
    page.wait_for_function("() => window.htmx !== undefined")
    # The running run advances: its row comes back through the live stream.
    expect(page.locator(f"#run-{RUNNING} .step")).to_contain_text("1/2")

    async def advance() -> None:
        await WorkflowRun.update({WorkflowRun.steps_done: 2}).where(
            WorkflowRun.id == uuid.UUID(RUNNING)
        )

    run_db(advance)
    expect(page.locator(f"#run-{RUNNING} .step")).to_contain_text("2/2", timeout=6_000)
    watch.check("list")
    for n, payload in enumerate(PAYLOADS):
        expect(page.locator(f"#run-{RUNS[n]} {CELL['wf']}")).to_have_text(payload.strip())
    expect(page.locator(f"#run-{RUNNING} .step")).to_contain_text(PAYLOADS[10])
    # Only the cells that show payloads: a running row's duration may read "649 ms".
    shown = page.locator(f"#runs-body {CELL['wf']}, #runs-body td.progress").all_inner_texts()
    assert not [text for text in shown if "49" in text], shown

    for n, payload in enumerate(PAYLOADS):
        where = f"detail of payload {n}"
        page.goto(f"/workflows/{RUNS[n]}")
        expect(page.locator("h1")).to_be_visible()
        watch.check(where)
        _shows(page, payload.strip(), where)
        # JSON-escaped inside the inputs, outputs and snapshot
        _shows(page, json.dumps(payload, ensure_ascii=False)[1:-1].strip(), where)

        where = f"row of payload {n}"
        page.goto(f"/workflows/{RUNS[n]}/row")
        watch.check(where)
        _shows(page, payload.strip(), where)

    for query, payload in (("workflow", PAYLOADS[4]), ("q", PAYLOADS[0])):
        page.goto(f"/workflows?{query}={quote(payload)}")
        watch.check(f"list filtered by {query}")
        if query == "q":
            _shows(page, payload, "the refused filter")
        else:
            expect(page.locator("input[name=workflow], select[name=workflow]")).to_have_value(
                payload
            )
    assert watch.requests > len(PAYLOADS) * 2
