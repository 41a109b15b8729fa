"""The Litestar application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from litestar import Litestar, get
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.config.compression import CompressionConfig
from litestar.datastructures import State
from litestar.logging.config import LoggingConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from app.services.access import AccessService
from app.services.demo import seed_demo
from app.services.live import LiveHub
from app.services.runs import RunService
from app.services.scheduling import Scheduler
from app.services.supervisor import RunSupervisor
from app.services.wiring import build_services, close_database, open_database
from app.settings import Settings
from app.web.audit import AuditController
from app.web.auth import authenticate, identity_of
from app.web.bulk import BulkController
from app.web.compression import Brotli
from app.web.errors import exception_handlers
from app.web.formatting import FILTERS, build_url
from app.web.live import LiveController
from app.web.login import LoginController
from app.web.metrics import metrics
from app.web.pages import RunPages
from app.web.request_log import RequestLogMiddleware
from app.web.rows import run_row
from app.web.runs import RunController
from app.web.security import MAX_BODY_BYTES, SecurityHeadersMiddleware, request_limits
from app.web.snippets import SNIPPETS
from app.web.steps import steps_section
from app.web.workers import WorkersController

__all__ = ["ROOT", "create_app"]

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("configurable_agents.web")


@get("/", include_in_schema=False)
async def index() -> Redirect:
    return Redirect("/workflows", status_code=302)


@get("/healthz", include_in_schema=False, media_type="text/plain")
async def healthz() -> str:
    return "ok"


def _csrf_token(request: Any) -> str:
    identity = identity_of(request)
    return identity.csrf if identity is not None else ""


def _can_operate(request: Any) -> bool:
    identity = identity_of(request)
    return identity is not None and identity.role == "operator"


def _signed_in(request: Any) -> bool:
    identity = identity_of(request)
    return identity is not None and identity.via == "session"


def _configure_jinja(engine: JinjaTemplateEngine) -> None:
    env = engine.engine
    env.trim_blocks = True
    env.lstrip_blocks = True
    # Templates change only with a deploy; checking their files on every include
    # (once per row) costs more than rendering the row.
    env.auto_reload = False
    env.filters.update(FILTERS)
    env.globals.update(SNIPPETS, run_row=run_row, steps_section=steps_section)
    env.globals.update(
        url=build_url,
        csrf_token=_csrf_token,
        can_operate=_can_operate,
        signed_in=_signed_in,
    )


# Text logs: warnings and errors, as before JSON logs brought their INFO events (a line
# per run state change). Litestar's default root level, INFO, printed those too: three
# lines a restart, a tenth of the server's time at 300 restarts a second.
TEXT_LOGGING = LoggingConfig(root={"handlers": ["queue_listener"], "level": "WARNING"})

# Chosen by bench/compression.py (bench/results/compression-*.md): brotli 5 where the
# browser offers br brings the list page 13 ms sooner than gzip over a slow link and
# costs under 1 ms of CPU on a LAN; gzip 6 is as small as Litestar's default 9 at two
# thirds of its CPU. Below 1 KB a page is not worth compressing.
COMPRESSION = CompressionConfig(
    backend="br",
    compression_facade=Brotli,
    brotli_quality=5,
    brotli_lgwin=18,  # a 256 KB window holds any page whole; the default is 4 MB
    gzip_fallback=True,
    gzip_compress_level=6,
    minimum_size=1000,
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _recover_periodically(runs: RunService, interval: float, *, adopts: bool) -> None:
    supervisor = runs.supervisor
    while True:
        await asyncio.sleep(interval)
        try:
            await supervisor.recover()
            if adopts:
                await supervisor.adopt(runs.execute_run)
                await supervisor.resume_own(runs.execute_run)
        except Exception:  # a failed sweep must not end the loop; the next one retries
            log.exception("recovering interrupted runs failed")


def _drain_on_signals(supervisor: RunSupervisor, live: LiveHub) -> None:
    """Start draining the moment uvicorn is told to stop, before it waits for the
    requests and background tasks in flight: runs then reach their next node and are
    handed back instead of being cut off when the wait runs out. uvicorn's own
    handlers stay in charge of the rest."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread handles signals (a test client runs elsewhere)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(supervisor.begin_drain)
            # uvicorn waits for open responses before it stops: end the live streams.
            loop.call_soon_threadsafe(live.stop_streams)
            previous(signum, frame)

        signal.signal(sig, handler)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] = _utcnow,
    scheduler: Callable[[RunService], Scheduler] | None = None,
    migrate: bool = True,
    demo: bool = False,
    pool: bool = True,
) -> Litestar:
    """Build the dashboard.

    Tests pass a frozen `clock` or another `scheduler`, and `pool=False` when they
    share the database engine from another event loop (a pool belongs to one loop).
    """
    settings = settings or Settings.from_env()
    services = build_services(settings, kind="dashboard", clock=clock, scheduler=scheduler)
    runs, supervisor, queue_app = services.runs, services.supervisor, services.queue_app
    live: LiveHub = services.live
    embedded = settings.execution != "queue"

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await open_database(settings, migrate=migrate, pool=pool)
        if queue_app is not None:
            await queue_app.open_async()
        await supervisor.start()
        await supervisor.recover()
        if embedded:
            await supervisor.adopt(runs.execute_run)
        _drain_on_signals(supervisor, live)
        sweeper = asyncio.create_task(
            _recover_periodically(runs, settings.recovery_interval_seconds, adopts=embedded)
        )
        demo_tasks = await seed_demo(runs) if demo else []
        try:
            yield
        finally:
            await live.close()
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await supervisor.stop()
            for task in demo_tasks:
                task.cancel()
            if queue_app is not None:
                await queue_app.close_async()
            await close_database()

    template_config = TemplateConfig(
        directory=ROOT / "templates",
        engine=JinjaTemplateEngine,
        engine_callback=_configure_jinja,
    )
    return Litestar(
        route_handlers=[
            index,
            healthz,
            RunController,
            BulkController,
            LiveController,
            LoginController,
            WorkersController,
            AuditController,
            metrics,
            create_static_files_router(
                path="/static", directories=[ROOT / "static"], include_in_schema=False
            ),
        ],
        template_config=template_config,
        plugins=[HTMXPlugin()],
        lifespan=[lifespan],
        state=State(
            {
                "settings": settings,
                "runs": runs,
                "live": live,
                "bulk": services.bulk,
                "clock": clock,
                "access": AccessService(settings),
                "metrics": runs.metrics,
                "run_pages": RunPages(),
            }
        ),
        exception_handlers=exception_handlers,
        guards=[request_limits, authenticate],
        middleware=[
            DefineMiddleware(SecurityHeadersMiddleware),
            # Outermost: the duration covers everything the app does for the request.
            *([RequestLogMiddleware] if settings.log_format == "json" else []),
        ],
        compression_config=COMPRESSION,
        # The whole Host header, port included: a rebinding page's host is never on it.
        allowed_hosts=AllowedHostsConfig(allowed_hosts=list(settings.hosts), www_redirect=False),
        openapi_config=OpenAPIConfig(
            title="Configurable Agents",
            version="0.1.0",
            path="/schema",
            # JSON only: the HTML viewers load scripts from CDNs, which our CSP refuses.
            render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])],
        ),
        request_max_body_size=MAX_BODY_BYTES,
        debug=False,
        # JSON logs are set up by the process (app.logs), which Litestar's default
        # setup (its own format on the root logger) would replace.
        logging_config=None if settings.log_format == "json" else TEXT_LOGGING,
    )
