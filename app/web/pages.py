"""A finished run's page, drawn once and reused while what it shows is unchanged.

Once a run has ended its page is a function of its `RunDetail` (run, steps, lineage,
history) and of who asks: a viewer, an operator, signed in or by token. Only a running
run's page also depends on the time. Each request still reads the run, and a kept page
is used only when that read has the same fingerprint (a hash of all of it) as the one
it was drawn from, so a restart, a cancel or an audit entry written by any process
shows at once. What belongs to the request alone
(the CSRF token, the server's time, the live stream's starting point) is drawn as a mark
and filled in for every request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from datetime import datetime
from typing import Any

import msgspec
from litestar import Request

from app.services.live import stamp_token
from app.services.runs import RunDetail
from app.web.auth import identity_of
from app.web.formatting import iso
from app.web.render import draw

__all__ = ["HOLES", "RunPages", "run_page"]

# The request's own values on a run's page.
HOLES = ("csrf", "server_time", "since")

Draw = Callable[[Mapping[str, str]], str]


class RunPages:
    """The pages of the finished runs shown last, up to `budget` bytes in all (about 14 KB
    a page of the benchmark's runs: some 70 pages), least recently shown dropped first.
    A page over `largest` bytes is drawn every time. (3 MB kept put the server's RSS at
    1,000,000 runs over its 100 MB target.)"""

    def __init__(self, budget: int = 1_000_000, largest: int = 250_000):
        self.budget = budget
        self.largest = largest
        # (run id, who) -> (the detail's fingerprint, the page in parts)
        self._kept: OrderedDict[tuple[str, Hashable], tuple[bytes, list[bytes]]]
        self._kept = OrderedDict()
        self._size = 0
        # Unguessable, so that no run's data can hold a mark.
        self._token = secrets.token_hex(12)
        self.marks = {name: f"\x00{self._token}:{name}\x00" for name in HOLES}
        self._holes = re.compile(f"\x00{self._token}:({'|'.join(HOLES)})\x00")

    def page(
        self, detail: RunDetail, who: Hashable, values: Mapping[str, str], draw: Draw
    ) -> bytes:
        """The page for `detail` as `who` sees it, with `values` in its holes; `draw`
        draws it with the values it is given."""
        if detail.summary.is_active:
            return draw(values).encode()
        key = (detail.summary.id, who)
        kept = self._kept.get(key)
        seen = _fingerprint(detail)
        if kept is not None and kept[0] == seen:
            self._kept.move_to_end(key)
            parts = kept[1]
        else:
            # Text, then a hole's name, then text...: re.split keeps the names. Kept
            # encoded: half the memory of a str with any non-ASCII character in it.
            drawn = self._holes.split(draw(self.marks))
            parts = [part.encode() for part in drawn]
            if self._shared_safely(drawn, values):
                self._keep(key, seen, parts)
            else:
                self._drop(key)
        filled = {name.encode(): value.encode() for name, value in values.items()}
        return b"".join(filled[part] if i % 2 else part for i, part in enumerate(parts))

    def _shared_safely(self, drawn: list[str], values: Mapping[str, str]) -> bool:
        """False when the page holds this request's own token (drawn by a path that did
        not take the mark) or a mark that lost its form (escaped, say) and was not
        filled: such a page must not be shown to anyone else."""
        text = drawn[::2]
        csrf = values.get("csrf")
        return not any(self._token in t or (csrf and csrf in t) for t in text)

    def _keep(self, key: tuple[str, Hashable], seen: bytes, parts: list[bytes]) -> None:
        self._drop(key)
        size = sum(map(len, parts))
        if size > self.largest:
            return
        self._kept[key] = (seen, parts)
        self._size += size
        while self._size > self.budget:
            self._drop(next(iter(self._kept)))

    def _drop(self, key: tuple[str, Hashable]) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            self._size -= sum(map(len, kept[1]))

    def __len__(self) -> int:
        return len(self._kept)


# MessagePack writes floats exactly (NaN and infinities too, which JSON cannot), and a
# detail read twice encodes the same: keys keep the database's order.
_ENCODER = msgspec.msgpack.Encoder(enc_hook=str)


def _fingerprint(detail: RunDetail) -> bytes:
    """What the page is drawn from, in 16 bytes: the detail itself (its step outputs
    whole, where the page shows their start) would be most of the memory kept."""
    return hashlib.blake2b(_ENCODER.encode(detail), digest_size=16).digest()


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
