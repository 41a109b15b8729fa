"""Small pieces of markup every page repeats, as Python functions rather than Jinja
macros: the run table calls them several times a row, and a Jinja macro call (argument
binding, a new frame, a caller context) cost more than the row's own markup did."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from app.web.formatting import money, thousands

__all__ = ["SNIPPETS", "esc"]


def esc(value: object) -> str:
    """What markupsafe's `escape` writes, as a plain string: a row escapes some twenty
    values, and making each a Markup object cost more than the escaping."""
    if isinstance(value, Markup):
        return value
    return (
        str(value)
        .replace("&", "&amp;")
        .replace(">", "&gt;")
        .replace("<", "&lt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


def badge(status: str) -> Markup:
    status = esc(status)
    return Markup(f'<span class="badge badge-{status}">{status}</span>')


def csrf_field(token: str | None) -> Markup:
    if not token:
        return Markup("")
    return Markup(f'<input type="hidden" name="_csrf" value="{esc(token)}">')


def confirm_text(verb: str, run: Any) -> Markup:
    """What the inline confirmation asks before an action on `run`: which run, and for a
    restart what its last run cost."""
    who = f"run {esc(run.short_id)} ({esc(run.workflow_name)})"
    if verb not in ("restart", "resume"):
        return Markup(f"Cancel {who}?")
    last = f"Last run: {money(run.total_cost_usd)}, {thousands(run.total_tokens)} tokens."
    if verb == "resume":
        where = esc(run.error_node or "where it stopped")
        return Markup(f"Resume {who} from {where}? Completed nodes are reused at no cost. {last}")
    median = " (the workflow's median)" if run.expected_from_median else ""
    return Markup(f"Restart {who}? {last} Expected: about {money(run.expected_cost_usd)}{median}.")


def unavailable(label: str, css_class: str = "btn") -> Markup:
    """An action a viewer sees but cannot take: disabled, in no form, and saying why (the
    read-only banner in base.html, and a tooltip). No data-action: keys skip it."""
    return Markup(
        f'<button type="button" class="{esc(css_class)}" disabled aria-describedby="read-only"'
        f' title="Needs an operator: viewers can only look">{esc(label)}</button>'
    )


SNIPPETS = {
    "badge": badge,
    "csrf_field": csrf_field,
    "confirm_text": confirm_text,
    "unavailable": unavailable,
}
