"""The ceiling: a plain Litestar endpoint returning a fixed HTML string.

    CEILING_BYTES=30000 uvicorn bench.ceiling:create_app --factory

`GET /` answers `CEILING_BYTES` bytes of table-like HTML (run ids differ from
row to row, so it compresses about as well as the real table partial), with
the dashboard's compression settings. No database, no templates: what one uvicorn
worker and Litestar can do on this machine, as the yardstick for the real
requests measured in the same run.
"""

from __future__ import annotations

import os
import random
import uuid

from litestar import Litestar, MediaType, get

from app.web.app import COMPRESSION

__all__ = ["create_app", "html_of_size"]

ROW = (
    '<tr id="run-{id}" class="run-row" data-status="{status}"><td class="id">'
    '<a href="/workflows/{id}">{short}</a></td><td>{name}</td><td><span class="badge '
    'badge-{status}">{status}</span></td><td><time datetime="2026-11-{day:02d}T10:{m:02d}:00'
    '+00:00" title="2026-11-{day:02d} 10:{m:02d}:00 UTC">{day} days ago</time></td>'
    '<td>{secs}.{tenth} s</td><td>attempt 1</td><td><button hx-post="/workflows/{id}/restart"'
    ' hx-target="closest tr" hx-swap="outerHTML">Restart</button></td></tr>\n'
)


def html_of_size(size: int, seed: int = 0) -> str:
    """`size` bytes (ASCII) of run-table-like HTML, the same for the same seed."""
    rng = random.Random(seed)
    head = '<div id="runs-table"><table class="runs"><tbody>\n'
    parts = [head]
    total = len(head)
    while total < size:
        run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        status = rng.choice(("completed", "completed", "completed", "failed", "running"))
        row = ROW.format(
            id=run_id,
            short=run_id[:8],
            name=rng.choice(("article_writer", "support_triage", "code_reviewer")),
            status=status,
            day=rng.randrange(1, 29),
            m=rng.randrange(60),
            secs=rng.randrange(1, 90),
            tenth=rng.randrange(10),
        )
        parts.append(row)
        total += len(row)
    return "".join(parts)[:size]


def create_app() -> Litestar:
    body = html_of_size(int(os.environ.get("CEILING_BYTES", "20000")))

    @get("/", media_type=MediaType.HTML, sync_to_thread=False)
    def ceiling() -> str:
        return body

    @get("/healthz", media_type=MediaType.TEXT, sync_to_thread=False)
    def healthz() -> str:
        return "ok"

    return Litestar(
        route_handlers=[ceiling, healthz],
        compression_config=COMPRESSION,
        debug=False,
    )
