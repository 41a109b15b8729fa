"""A finished run's page, drawn once and reused while what it shows is unchanged.

Once a run has ended its page is a function of its `RunDetail` (run, steps, lineage,
history) and of who asks: a viewer, an operator, signed in or by token. Only a running
run's page also depends on the time. Each request still reads the run, and a kept page
is used only when that read equals the one it was drawn from, so a restart, a cancel or
an audit entry written by any process shows at once. What belongs to the request alone
(the CSRF token, the server's time, the live stream's starting point) is drawn as a mark
and filled in for every request.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from datetime import datetime
from typing import Any

from litestar import Request

from app.services.live import stamp_token
from app.store.models import RunDetail
from app.web.auth import identity_of
from app.web.formatting import iso
from app.web.render import draw

__all__ = ["HOLES", "RunPages", "run_page"]

# The request's own values on a run's page.
HOLES = ("csrf", "server_time", "since")

Draw = Callable[[Mapping[str, str]], str]


class RunPages:
    """The pages of the finished runs shown last, up to `budget` bytes of pages in all,
    least recently shown dropped first; a page over `largest` bytes is drawn every time.
    With the details they were drawn from, a benchmark run's page takes about 29 KB: some
    140 pages, 4 MB, when full (the server's RSS at 1,000,000 runs is about 90 MB)."""

    def __init__(self, budget: int = 2_000_000, largest: int = 250_000):
        self.budget = budget
        self.largest = largest
        self._kept: OrderedDict[tuple[str, Hashable], tuple[RunDetail, list[bytes]]] = OrderedDict()
        self._size = 0
        # Unguessable, so that no run's data can hold a mark.
        token = secrets.token_hex(12)
        self.marks = {name: f"\x00{token}:{name}\x00" for name in HOLES}
        self._holes = re.compile(f"\x00{token}:({'|'.join(HOLES)})\x00")

    def page(
        self, detail: RunDetail, who: Hashable, values: Mapping[str, str], draw: Draw
    ) -> bytes:
        """The page for `detail` as `who` sees it, with `values` in its holes; `draw`
        draws it with the values it is given."""
        if detail.summary.is_active:
            return draw(values).encode()
        key = (detail.summary.id, who)
        kept = self._kept.get(key)
        if kept is not None and kept[0] == detail:
            self._kept.move_to_end(key)
            parts = kept[1]
        else:
            # Text, then a hole's name, then text...: re.split keeps the names. Kept
            # encoded: half the memory of a str with any non-ASCII character in it.
            parts = [part.encode() for part in self._holes.split(draw(self.marks))]
            self._keep(key, detail, parts)
        filled = {name.encode(): value.encode() for name, value in values.items()}
        return b"".join(filled[part] if i % 2 else part for i, part in enumerate(parts))

    def _keep(self, key: tuple[str, Hashable], detail: RunDetail, parts: list[bytes]) -> None:
        self._drop(key)
        size = sum(map(len, parts))
        if size > self.largest:
            return
        self._kept[key] = (detail, parts)
        self._size += size
        while self._size > self.budget:
            self._drop(next(iter(self._kept)))

    def _drop(self, key: tuple[str, Hashable]) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            self._size -= sum(map(len, kept[1]))

    def __len__(self) -> int:
        return len(self._kept)


def run_page(request: Request[Any, Any, Any], detail: RunDetail, now: datetime) -> bytes:
    """A run's page for this request, drawn or kept (`request.app.state.run_pages`)."""
    identity = identity_of(request)
    csrf = identity.csrf if identity is not None else ""
    values = {"csrf": csrf, "server_time": iso(now), "since": stamp_token(now)}

    def draw_page(holes: Mapping[str, str]) -> str:
        return draw(
            request,
            "runs/detail.html",
            detail=detail,
            run=detail.summary,
            history=detail.history,
            now=now,
            server_time=holes["server_time"],
            since=holes["since"],
            # In place of the global, for this page. Without a token the forms carry no
            # field for one, so the page differs by whether there is one.
            csrf_token=lambda _: holes["csrf"] if csrf else "",
        )

    who = (identity.role, identity.via, bool(csrf)) if identity is not None else None
    pages: RunPages = request.app.state.run_pages
    return pages.page(detail, who, values, draw_page)
