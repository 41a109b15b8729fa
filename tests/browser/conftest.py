"""Browser tests: the real app in a uvicorn subprocess, driven by Debian's chromium.

The server gets this session's database through DATABASE_URL; the tests seed it
from this process with tests/factories.py. Playwright's sync API keeps an event
loop running in this thread, so database work runs on a worker thread with its
own loop (`run_db`). The browser and the server are module-scoped: pytest keeps
"package" fixtures of a folder without __init__.py to the end of the session, and
a live Playwright loop would break every async test that runs after these.

A failing test leaves a full-page screenshot in tests/browser/artifacts/.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright
from support import LiveServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTIFACTS = HERE / "artifacts"
AXE_JS = HERE / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}

T = TypeVar("T")
PAGE_KEY = pytest.StashKey[Page]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents and not item.get_closest_marker("browser"):
            raise pytest.UsageError(f"{item.nodeid} must be marked @pytest.mark.browser")


def _run_db(make: Callable[[], Awaitable[T]]) -> T:
    """Run `make()` to completion on a worker thread with a fresh event loop."""

    from app.store import db

    async def main() -> T:
        try:
            return await make()
        finally:
            # SQLite connections are pooled per event loop: close this loop's before
            # asyncio.run closes the loop, or their threads outlive it.
            close_pool = getattr(db.current_engine(), "close_pool", None)
            if close_pool is not None:
                await close_pool()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(main())).result(timeout=30)


@pytest.fixture
def run_db(database_url: str) -> Callable[[Callable[[], Awaitable[T]]], T]:
    """`run_db(async_function)`: database work from a test, while the server runs."""
    from app.store import db

    db.configure(database_url)
    return _run_db


@pytest.fixture(scope="module")
def base_url(database_url: str) -> Iterator[str]:
    """The app, started as it is deployed: uvicorn in its own process."""
    with LiveServer(database_url) as server:
        yield server.url


@pytest.fixture(scope="module")
def browser(base_url: str) -> Iterator[Browser]:
    # Depends on base_url so the database fixtures (which use asyncio.run) are set up
    # before Playwright's loop starts, and torn down after it stops.
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class PageProblems:
    """Console errors and uncaught exceptions seen by one page."""

    errors: list[str] = field(default_factory=list)
    allowed: list[tuple[int, str]] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)

    def allow_status(self, status: int, url_part: str) -> None:
        """Expect the browser's own log line for one intended error response."""
        self.allowed.append((status, url_part))

    def expect_text(self, text: str) -> None:
        """Expect a console error containing `text` (a library's own log of an intended
        failure)."""
        self.expected.append(text)

    def on_console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error" or any(text in msg.text for text in self.expected):
            return
        where = msg.location.get("url", "")
        for status, url_part in self.allowed:
            if f"status of {status} " in msg.text and url_part in where:
                return
        self.errors.append(f"console: {msg.text} ({where})")

    def on_page_error(self, exc: Error) -> None:
        self.errors.append(f"pageerror: {exc.message}")


def _screenshot_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1]) + ".png"


def save_screenshot(page: Page, nodeid: str) -> Path | None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / _screenshot_name(nodeid)
    try:
        page.screenshot(path=str(path), full_page=True)
    except Error:
        return None
    return path


@pytest.fixture
def problems() -> PageProblems:
    return PageProblems()


NewPage = Callable[..., Page]


@pytest.fixture
def new_page(
    browser: Browser, base_url: str, problems: PageProblems, request: pytest.FixtureRequest
) -> Iterator[NewPage]:
    """Open pages, each in a fresh context (keyword arguments go to new_context).

    At teardown none of them may have logged a console error or thrown."""
    opened: list[Page] = []

    def make(**context_args: Any) -> Page:
        ctx = browser.new_context(base_url=base_url, viewport=VIEWPORT, **context_args)
        ctx.set_default_timeout(8_000)
        pg = ctx.new_page()
        pg.on("console", problems.on_console)
        pg.on("pageerror", problems.on_page_error)
        opened.append(pg)
        request.node.stash[PAGE_KEY] = pg
        return pg

    yield make
    errors = list(problems.errors)
    if errors and opened:
        save_screenshot(opened[-1], request.node.nodeid)
    for pg in opened:
        pg.context.close()
    assert not errors, "the page logged errors:\n" + "\n".join(errors)


@pytest.fixture
def page(new_page: NewPage) -> Page:
    return new_page()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        pg = item.stash.get(PAGE_KEY, None)
        if pg is not None and not pg.is_closed():
            path = save_screenshot(pg, item.nodeid)
            if path is not None:
                report.sections.append(("screenshot", str(path.relative_to(ROOT))))
    return report


def _axe_violations(page: Page) -> list[dict[str, Any]]:
    if not AXE_JS.exists():
        pytest.fail(
            f"axe-core is missing ({AXE_JS.relative_to(ROOT)} not found): "
            "run `npm install --prefix tests/browser`",
            pytrace=False,
        )
    page.add_script_tag(path=str(AXE_JS))
    return list(
        page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        )
    )


def _axe_check(page: Page, what: str) -> None:
    """No serious or critical axe-core violations on `page`; the others are printed."""
    violations = _axe_violations(page)
    for v in violations:
        targets = [" ".join(n["target"]) for n in v["nodes"]][:3]
        print(f"axe, {what}: {v['impact']} {v['id']}: {v['help']} {targets}")
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe-core found serious problems on {what}:\n" + "\n".join(
        f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:5]}\n"
        f"  {v['nodes'][0].get('failureSummary', '')}"
        for v in bad
    )


@pytest.fixture
def axe() -> Callable[[Page, str], None]:
    """`axe(page, "what")`: run axe-core in the page (open it with bypass_csp=True)."""
    return _axe_check
