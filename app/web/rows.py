"""The run table's row, the markup the list repeats 50 times a page.

A Python function rather than a Jinja macro: a row is some forty values in fixed
markup, and Jinja spent more on its calls, attribute lookups and one escape per output
than on the markup (42 us a row, 19 us here). The table (`runs/_table.html`),
the row partial (`runs/_row.html`) and the live updates all call `run_row`, so a row
still has one source. Every value from a run is escaped once, where it is read.

Only the cells that scripts fill or test have a class (`pick`, `progress`, `actions`);
app.css and app.js find the others by their place counted from the row's end (the
pick column is there for operators only): 10 id, 9 workflow, 8 status, 7 time,
6 duration, 5 tokens, 4 cost, 3 lineage. A class on each would be a tenth of the row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from app.web.formatting import duration, iso, money, relative, thousands
from app.web.snippets import badge, esc

__all__ = ["run_row"]

# Filled by app.js: picking runs for a bulk action is done there.
_PICK = '<td class="pick"></td>'


def run_row(
    run: Any, now: datetime, operate: bool, csrf: str | None, row_error: str | None = None
) -> Markup:
    """`operate` and `csrf` are the page's: the row's actions are drawn by app.js from
    `data-do` for operators and viewers alike (the page says which), and their forms
    send the CSRF token as a header."""
    status = esc(run.status)
    rid = esc(run.id)
    short = esc(run.short_id)
    classes = "run"
    if run.active_restart:
        classes += " is-restarting"
    if row_error:
        classes += " has-error"
    tag = ""
    if run.restart_mode == "edited":
        tag = ' <span class="tag" title="restarted with edited inputs">edited</span>'
    elif run.restart_mode == "resume":
        tag = (
            f' <span class="tag" title="resumed: completed nodes of'
            f' {esc(run.restarted_from[:8])} reused">resumed</span>'
        )
    if run.is_active and run.started_at:
        took = (
            f'<span data-since="{iso(run.started_at)}">'
            f"{duration((now - run.started_at).total_seconds())}</span>"
        )
    else:
        took = duration(run.duration_seconds)
    return Markup(
        f'<tr id="run-{rid}" class="{classes}" data-status="{status}">'
        f"{_PICK if operate else ''}"
        f'<td><a href="/workflows/{rid}">{short}</a>{tag}</td>'
        f"<td>{esc(run.workflow_name)}</td>"
        f"<td>{badge(run.status)}</td>"
        f'<td><time datetime="{_stamp(run.created_at)}">'
        f"{relative(run.created_at, now)}</time></td>"
        f"<td>{took}</td>"
        f"<td>{thousands(run.total_tokens)}</td>"
        f"<td>{esc(money(run.total_cost_usd))}</td>"
        f"{_lineage(run)}{_progress(run, row_error)}{_actions(run)}</tr>\n"
    )


def _stamp(value: datetime) -> str:
    """The ISO time to the second: what the page shows of it, in fewer bytes."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _lineage(run: Any) -> str:
    last = run.latest_restart.attempt if run.latest_restart else run.attempt
    more = f" of {last}" if last > 1 else ""
    out = f"<td>attempt {run.attempt}{more}"
    if run.restarted_from:
        parent = esc(run.restarted_from)
        out += (
            f' <span class="from">from <a href="/workflows/{parent}">'
            f"{esc(run.restarted_from[:8])}</a></span>"
        )
    return out + "</td>"


def _progress(run: Any, row_error: str | None) -> str:
    out = '<td class="progress">'
    restarting = run.active_restart
    if restarting:
        nodes = ""
        if restarting.steps_total:
            nodes = f" {restarting.steps_done}/{restarting.steps_total} nodes"
        out += (
            '<span class="restarting"><span class="spinner" aria-hidden="true"></span>'
            f'restarting as <a href="/workflows/{esc(restarting.id)}">'
            f"{esc(restarting.short_id)}</a> · {esc(restarting.status)}{nodes}</span>"
        )
    elif run.is_active:
        done, total = run.steps_done, run.steps_total
        extra = f" · {esc(run.repeats)}" if run.repeats else ""
        if run.current_node:
            extra += f" · {esc(run.current_node)}"
        out += (
            f'<progress max="{total or 1}" value="{done}"'
            f' aria-label="{done} of {total} nodes done"></progress>'
            f' <span class="step">{done}/{total} nodes{extra}</span>'
        )
    elif run.latest_restart:
        latest = run.latest_restart
        first = run.restarted_as[0]
        newest = ""
        if latest.id != first:
            newest = (
                f' · latest <a href="/workflows/{esc(latest.id)}">'
                f"{esc(latest.short_id)}</a> #{latest.attempt}"
            )
        out += (
            f'<span class="outcome">restarted as <a'
            f' href="/workflows/{esc(first)}">{esc(first[:8])}</a>{newest}'
            f" → {badge(latest.status)}</span>"
        )
    elif run.status == "failed":
        out += (
            '<span class="error-summary">'
            f"{esc(run.error_message or run.error_type or 'failed')}</span>"
        )
    if row_error:
        out += f'<p class="row-error" role="alert">{esc(row_error)}</p>'
    return out + "</td>"


def _actions(run: Any) -> str:
    """What app.js needs to draw the row's actions and ask before each: the verbs, and
    for a restart what it is expected to cost. A restarted run offers its chain's latest
    attempt instead (`data-tip`: its id, last cost and tokens)."""
    if run.is_active:
        return '<td class="actions" data-do="cancel"></td>'
    if run.active_restart:
        return '<td class="actions"><span class="muted">restarting…</span></td>'
    tip = run.latest_restart or run
    verbs = "restart"
    node = ""
    if tip.status in ("failed", "cancelled") and tip.steps_done > 0:
        verbs += " resume"
        if tip.error_node:
            node = f' data-node="{esc(tip.error_node)}"'
    median = "*" if tip.expected_from_median else ""
    expect = f"{money(tip.expected_cost_usd)}{median}"
    out = f'<td class="actions" data-do="{verbs} edit" data-e="{expect}"'
    if run.latest_restart:
        out += (
            f' data-tip="{esc(tip.id)} {money(tip.total_cost_usd)} {thousands(tip.total_tokens)}"'
        )
    return out + f"{node}></td>"
