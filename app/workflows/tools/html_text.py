"""Text out of an HTML page with the standard library's html.parser, and the small part of
CSS selectors web_scrape's `selector` needs: tag, .class, #id, `*`, joined by descendant
(space) or child (>) combinators, groups separated by commas."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from app.workflows.tools.base import ToolError

_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source"}
    | {"track", "wbr"}
)
# What BeautifulSoup's get_text() leaves out too: code and styles are not the page's text.
_HIDDEN = frozenset({"script", "style", "template"})
# Deeper elements are kept flat: bounds the work on a hostile page.
_MAX_DEPTH = 256
_COMPOUND = re.compile(r"(\*|[a-zA-Z][\w-]*)?((?:[.#][\w-]+)*)")


@dataclass(eq=False)
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None
    children: list[Element | str] = field(default_factory=list)

    def text(self, separator: str) -> str:
        """The stripped, non-empty strings inside, joined (iterative: pages nest deeply)."""
        out: list[str] = []
        stack: list[Element | str] = [self]
        while stack:
            node = stack.pop()
            if isinstance(node, str):
                if node.strip():
                    out.append(node.strip())
            elif node.tag not in _HIDDEN:
                stack.extend(reversed(node.children))
        return separator.join(out)


class Document(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("", {}, None)
        self.elements: list[Element] = []  # document order: a parent before its children
        self._stack = [self.root]
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self._stack[-1])
        self._stack[-1].children.append(element)
        self.elements.append(element)
        if tag not in _VOID and len(self._stack) < _MAX_DEPTH:
            self._stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        depth = len(self._stack)
        self.handle_starttag(tag, attrs)
        del self._stack[depth:]

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._stack) - 1, 0, -1):
            if self._stack[i].tag == tag:
                del self._stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self._stack[-1].children.append(data)

    def first(self, tag: str) -> Element | None:
        return next((e for e in self.elements if e.tag == tag), None)

    def select(self, selector: str) -> list[Element]:
        chosen: set[int] = set()
        for group in selector.split(","):
            chosen |= self._select_one(_parse(group, selector))
        return [e for e in self.elements if id(e) in chosen]

    def _select_one(self, chain: list[tuple[str, tuple[str, set[str], str]]]) -> set[int]:
        # One pass per compound, in document order: an element's "below a match" flag
        # comes from its parent, so this is linear in the page, not exponential.
        matched: set[int] | None = None
        for combinator, compound in chain:
            below: dict[int, bool] = {}
            now: set[int] = set()
            for e in self.elements:
                p = e.parent
                in_parent = matched is not None and p is not None and id(p) in matched
                below[id(e)] = in_parent or (p is not None and below.get(id(p), False))
                context = (
                    True if matched is None else in_parent if combinator == ">" else below[id(e)]
                )
                if context and _fits(e, compound):
                    now.add(id(e))
            matched = now
        return matched or set()


def _parse(group: str, selector: str) -> list[tuple[str, tuple[str, set[str], str]]]:
    chain: list[tuple[str, tuple[str, set[str], str]]] = []
    tokens = re.split(r"\s*(>)\s*|\s+", group.strip())
    combinator = " "
    for token in tokens:
        if not token:
            continue
        if token == ">":
            combinator = ">"
            continue
        m = _COMPOUND.fullmatch(token)
        if not m or not token:
            raise ToolError(
                f"unsupported CSS selector {selector!r}: only tag, .class, #id, * and the "
                "descendant (space) and child (>) combinators are understood here"
            )
        tag = (m.group(1) or "*").lower()
        parts = re.findall(r"[.#][\w-]+", m.group(2))
        classes = {p[1:] for p in parts if p[0] == "."}
        ids = [p[1:] for p in parts if p[0] == "#"]
        chain.append((combinator, (tag, classes, ids[0] if ids else "")))
        combinator = " "
    if not chain:
        raise ToolError(f"empty CSS selector {selector!r}")
    return chain


def _fits(e: Element, compound: tuple[str, set[str], str]) -> bool:
    tag, classes, ident = compound
    return (
        (tag == "*" or e.tag == tag)
        and classes <= set(e.attrs.get("class", "").split())
        and (not ident or e.attrs.get("id") == ident)
    )
