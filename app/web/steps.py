"""A run's steps on its page: the timeline and the table, the part of the page that
grows with the run. A Python function like the run table's row (app/web/rows.py) for
the same reason: Jinja's per-value calls and escapes cost more than the markup, a third
of the page's time for a run of a few nodes. The page (`runs/_detail_parts.html`) and
its live redraw both call `steps_section`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from markupsafe import Markup

from app.web.formatting import duration, iso, money, running_step, thousands, timeline, to_json
from app.web.snippets import badge, esc

__all__ = ["steps_section"]

# Jinja's `truncate(600)`: up to 5 characters over are kept, else cut at a word.
_OUTPUT_CHARS, _LEEWAY, _END = 600, 5, "..."

_TOOL_ROW = ' class="tool-row"'
_TIMELINE = (
    '  <ol class="timeline" aria-label="Step timeline: each bar spans a node\'s execution,'
    " in proportion to the run's duration\">\n"
)
_TABLE = (
    '  <table class="steps">\n'
    '    <thead><tr><th scope="col">#</th><th scope="col">Node</th><th scope="col">Status</th>'
    '<th scope="col" class="num">Latency</th><th scope="col" class="num">Tokens</th>'
    '<th scope="col" class="num">Cost</th><th scope="col" class="num">Tries</th>'
    '<th scope="col">Output or error</th></tr></thead>\n'
    "    <tbody>\n"
)


def steps_section(run: Any, detail: Any, now: datetime) -> Markup:
    out = [
        '<section id="run-steps" aria-labelledby="steps-title">\n'
        '  <h2 id="steps-title">Steps</h2>\n'
    ]
    bars = timeline(detail.steps)
    current = running_step(run, detail.steps)
    if bars or current:
        out.append(_TIMELINE)
        out.extend(_bar(bar) for bar in bars)
        if current:
            out.append(
                '    <li class="tl-row tl-running">\n'
                f'      <span class="tl-label mono">{esc(current["node"])}</span>\n'
                f'      <span class="tl-track tl-now">{badge("running")}</span>\n'
                f'      <span class="tl-dur num" data-since="{iso(current["since"])}">'
                f"{duration((now - current['since']).total_seconds())}</span>\n"
                "    </li>\n"
            )
        out.append("  </ol>\n")
    if detail.steps:
        out.append(_TABLE)
        out.extend(_row(step) for step in detail.steps)
        out.append("    </tbody>\n  </table>\n")
    elif not current:
        empty = "Waiting to start." if run.status == "pending" else "No steps recorded."
        out.append(f'  <p class="empty">{empty}</p>\n')
    out.append("</section>")
    return Markup("".join(out))


def _name(step: Any) -> str:
    item = f"[{step.item_index}]" if step.item_index is not None else ""
    return f"{esc(step.node_id)}{item}"


def _bar(bar: dict[str, Any]) -> str:
    step = bar["step"]
    label = f'<span class="tool-call">↳ {esc(step.tool)}</span>' if step.tool else _name(step)
    return (
        '    <li class="tl-row">\n'
        f'      <span class="tl-label mono">{label}</span>\n'
        '      <svg class="tl-track" viewBox="0 0 100 10" preserveAspectRatio="none"'
        ' aria-hidden="true" focusable="false">'
        f'<rect class="bar bar-{esc(step.status)}" x="{bar["x"]}" y="1" width="{bar["w"]}"'
        ' height="8"></rect></svg>\n'
        f'      <span class="tl-dur num">{duration((step.duration_ms or 0) / 1000)}</span>\n'
        "    </li>\n"
    )


def _row(step: Any) -> str:
    if step.tool:
        name = (
            f'<span class="tool-call" title="called by {esc(step.node_id)}">'
            f"↳ {esc(step.tool)}</span>"
        )
    else:
        name = _name(step)
    status = badge(step.status)
    if step.reused_from:
        status += Markup(
            f' <span class="muted">from <a class="mono" href="/workflows/{esc(step.reused_from)}">'
            f"{esc(step.reused_from[:8])}</a></span>"
        )
    took = "—" if step.reused_from else duration((step.duration_ms or 0) / 1000)
    if step.error:
        shown = f'<span class="error-text">{esc(step.error)}</span>'
    elif step.output is not None:
        what = f"result of {step.tool}" if step.tool else f"output of {step.node_id}"
        shown = (
            f'<pre class="inline" tabindex="0" aria-label="{esc(what)}">'
            f"{esc(_truncate(to_json(step.output)))}</pre>"
        )
    else:
        shown = ""
    return (
        f"      <tr{_TOOL_ROW if step.tool else ''}>\n"
        f"        <td>{'' if step.tool else step.step_order + 1}</td>\n"
        f'        <td class="mono">{name}</td>\n'
        f"        <td>{status}</td>\n"
        f'        <td class="num">{took}</td>\n'
        f'        <td class="num">{thousands(step.tokens)}</td>\n'
        f'        <td class="num">{esc(money(step.cost_usd))}</td>\n'
        f'        <td class="num">{step.tries}</td>\n'
        f"        <td>{shown}</td>\n"
        "      </tr>\n"
    )


def _truncate(text: str) -> str:
    if len(text) <= _OUTPUT_CHARS + _LEEWAY:
        return text
    return text[: _OUTPUT_CHARS - len(_END)].rsplit(" ", 1)[0] + _END
