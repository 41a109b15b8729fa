"""A finished run's page body, drawn once and reused while what it shows is unchanged.

The body (`runs/_detail_body.html`: facts, lineage, history, steps, inputs, outputs and
snapshot) is a function of the run's `RunDetail` alone once the run has ended; only a
running run's body also depends on the time. Each request still reads the run, and the
stored copy is used only when that read equals the one it was drawn from, so a restart,
a cancel or an audit entry written by any process shows at once. What depends on the
request (the sign-in, the CSRF token, the actions, the live stream's start) is drawn
around it every time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from markupsafe import Markup

from app.store.models import RunDetail

__all__ = ["RunBodies"]


class RunBodies:
    """The bodies of the finished runs shown last, up to `budget` characters in all (with
    the details they were drawn from, of about the same size): least recently shown
    dropped first. A body over `largest` characters is drawn every time."""

    def __init__(self, budget: int = 4_000_000, largest: int = 250_000):
        self.budget = budget
        self.largest = largest
        self._kept: OrderedDict[str, tuple[RunDetail, Markup]] = OrderedDict()
        self._size = 0

    def body(self, detail: RunDetail, draw: Callable[[], str]) -> Markup:
        run_id = detail.summary.id
        if detail.summary.is_active:
            self._drop(run_id)
            return Markup(draw())
        kept = self._kept.get(run_id)
        if kept is not None and kept[0] == detail:
            self._kept.move_to_end(run_id)
            return kept[1]
        body = Markup(draw())
        self._drop(run_id)
        if len(body) <= self.largest:
            self._kept[run_id] = (detail, body)
            self._size += len(body)
            while self._size > self.budget:
                self._drop(next(iter(self._kept)))
        return body

    def _drop(self, run_id: str) -> None:
        kept = self._kept.pop(run_id, None)
        if kept is not None:
            self._size -= len(kept[1])

    def __len__(self) -> int:
        return len(self._kept)
