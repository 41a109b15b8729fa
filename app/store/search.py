"""The run list's search (`q`): the start of a run id, or words of a run's error message,
failed node and workflow name.

A search is split into words the way the indexes split text: a word is a run of letters
and digits, everything else separates words, case does not matter. Every word must be
in the run (in any of the three fields), whole; a word followed by `*` is the start of
one (`time*` finds "timeout"). A search that could be the start of a run id (hex digits
and dashes) also finds the runs whose id starts with it.

Whole words by default because they are what an index answers in a bounded read: the
newest matches of a word come from its list of runs read from the newest end, while
the start of a word has every run of every word it starts gathered first (5 ms for a
word in 30,000 of a million runs, on SQLite).

User text never reaches the query language as such: on SQLite each word goes to FTS5
MATCH as a quoted string, on PostgreSQL into a `tsquery` as a bare word of letters and
digits (lowercased, as the 'simple' configuration would), which holds no operator. The
indexes (FTS5 table `run_search` kept by triggers; the stored tsvector column
`search_doc` with a GIN index) are created by the migration
runs_2026_12_01t09_00_00_000000.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MAX_LENGTH", "MAX_WORDS", "Search", "SearchError", "parse", "words_of"]

MAX_LENGTH = 200
MAX_WORDS = 8

_WORD = re.compile(r"[^\W_]+")
# A word and whether a `*` follows it (then it is the start of a word).
_TERM = re.compile(r"([^\W_]+)(\*?)")
_HEX = frozenset("0123456789abcdef")

WHAT = (
    "whole words in error messages, failed nodes and workflow names (time* for the words"
    " that start with time), or the start of a run id"
)


class SearchError(ValueError):
    """A search that cannot be run, with a message in plain words."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def words_of(text: str | None) -> list[str]:
    """The words of `text`, lowercased, as the indexes split it."""
    return [w.lower() for w in _WORD.findall(text or "")]


def prefix_bounds(prefix: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The UUID range a hex prefix covers, so a prefix search uses the primary key; None
    when `prefix` is not the start of a run id."""
    digits = prefix.replace("-", "").lower()
    if not digits or len(prefix) > 36 or len(digits) > 32 or set(digits) - _HEX:
        return None
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


@dataclass(frozen=True)
class Search:
    text: str
    # Lowercased; a word that ends in "*" is the start of a word.
    words: tuple[str, ...]
    # The run ids it covers when the text could be the start of one.
    id_bounds: tuple[uuid.UUID, uuid.UUID] | None

    def fts5(self) -> str:
        """The FTS5 MATCH expression: each word a quoted string, a start with `*` after it."""
        return " ".join(f'"{w[:-1]}"*' if w.endswith("*") else f'"{w}"' for w in self.words)

    def tsquery(self) -> str:
        """The `tsquery` text: words of letters and digits only, ANDed, a start as `:*`."""
        return " & ".join(f"{w[:-1]}:*" if w.endswith("*") else w for w in self.words)

    @property
    def has_starts(self) -> bool:
        return any(w.endswith("*") for w in self.words)

    def matches(self, run_id: str, fields: Iterable[str | None]) -> bool:
        """Whether a run is found: what the databases answer, computed in Python (the live
        list decides with it whether a new run belongs to the page)."""
        if self.id_bounds is not None:
            digits = self.text.replace("-", "").lower()
            if run_id.replace("-", "").lower().startswith(digits):
                return True
        if not self.words:
            return False
        found = {w for field in fields for w in words_of(field)}
        return all(
            any(f.startswith(w[:-1]) for f in found) if w.endswith("*") else w in found
            for w in self.words
        )


def _quoted(text: str) -> str:
    shown = text if len(text) <= 60 else text[:57] + "…"
    return f"\u201c{shown}\u201d"


def parse(text: str) -> Search:
    """A search from what the operator typed; SearchError says in plain words why not."""
    text = text.strip()
    if len(text) > MAX_LENGTH:
        raise SearchError(
            f"Search looks for {WHAT}; keep it under {MAX_LENGTH} characters"
            f" (this one has {len(text)})."
        )
    words = tuple(dict.fromkeys(w.lower() + star for w, star in _TERM.findall(text)))
    bounds = prefix_bounds(text)
    if not words and bounds is None:
        raise SearchError(f"Search looks for {WHAT}; {_quoted(text)} has none.")
    if len(words) > MAX_WORDS:
        raise SearchError(
            f"Search looks for {WHAT}; use at most {MAX_WORDS} words"
            f" ({_quoted(text)} has {len(words)})."
        )
    return Search(text=text, words=words, id_bounds=bounds)
