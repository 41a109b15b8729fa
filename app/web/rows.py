"""The run table's row, the markup the list repeats 50 times a page.

A Python function rather than a Jinja macro: a row is some forty values in fixed
markup, and Jinja spent more on its calls, attribute lookups and one escape per output
than on the markup (42 us a row, 19 us here). The table (`runs/_table.html`),
the row partial (`runs/_row.html`) and the live updates all call `run_row`, so a row
still has one source. Every value from a run is escaped once, where it is read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from markupsafe import Markup

from app.web.formatting import absolute, duration, iso, money, relative, thousands
from app.web.snippets import badge, confirm_text, csrf_field, esc, unavailable

__all__ = ["run_row"]


def run_row(
    run: Any, now: datetime, operate: bool, csrf: str | None, row_error: str | None = None
) -> Markup:
    status = esc(run.status)
    rid = esc(run.id)
    short = esc(run.short_id)
    name = esc(run.workflow_name)
    created = absolute(run.created_at)
    restarting = run.active_restart
    latest = run.latest_restart
    classes = f"run status-{status}"
    label = f"Run {short}, {name}, {status}"
    if restarting:
        classes += " is-restarting"
        label += f", restarting as {esc(restarting.short_id)}"
    elif latest:
        label += f", restarted: latest attempt {esc(latest.short_id)} {esc(latest.status)}"
    if row_error:
        classes += " has-error"
    out = [
        f'<tr id="run-{rid}" class="{classes}" tabindex="-1" data-run-id="{rid}"'
        f' data-status="{status}"\n    aria-label="{label}, created {created}">\n'
    ]
    if operate:
        out.append(
            f'  <td class="pick"><input type="checkbox" data-pick value="{rid}" tabindex="-1"'
            f' aria-label="Select run {short} for a bulk action" aria-keyshortcuts="x"></td>\n'
        )
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
    out.append(
        f'  <td class="id"><a class="mono" href="/workflows/{rid}" data-open>{short}</a>'
        f'<button type="button" class="copy-id" data-copy-id="{rid}" tabindex="-1"'
        f' aria-label="Copy the id of run {short}" aria-keyshortcuts="i"'
        f' title="Copy the full run id (i)"></button>{tag}</td>\n'
        f'  <td class="wf">{name}</td>\n'
        f'  <td class="status">{badge(run.status)}</td>\n'
        f'  <td class="when"><time datetime="{iso(run.created_at)}" data-rel'
        f' data-abs="{created}" title="{created}">{relative(run.created_at, now)}</time></td>\n'
        f'  <td class="num dur" data-label="Duration">{took}</td>\n'
        f'  <td class="num tokens" data-label="Tokens">{thousands(run.total_tokens)}</td>\n'
        f'  <td class="num cost" data-label="Cost">{esc(money(run.total_cost_usd))}</td>\n'
    )
    out.append(_lineage(run))
    out.append(_progress(run, row_error))
    out.append(_actions(run, operate, csrf))
    out.append("</tr>")
    return Markup("".join(out))


def _lineage(run: Any) -> str:
    last = run.latest_restart.attempt if run.latest_restart else run.attempt
    more = f" of {last}" if last > 1 else ""
    out = f'  <td class="lineage">\n    <span class="attempt">attempt {run.attempt}{more}</span>\n'
    if run.restarted_from:
        parent = esc(run.restarted_from)
        out += (
            f'    <span class="from">from <a class="mono" href="/workflows/{parent}">'
            f"{esc(run.restarted_from[:8])}</a></span>\n"
        )
    return out + "  </td>\n"


def _progress(run: Any, row_error: str | None) -> str:
    out = '  <td class="progress">\n'
    restarting = run.active_restart
    if restarting:
        nodes = ""
        if restarting.steps_total:
            nodes = f" {restarting.steps_done}/{restarting.steps_total} nodes"
        out += (
            '    <span class="restarting"><span class="spinner" aria-hidden="true"></span>'
            f'restarting as <a class="mono" href="/workflows/{esc(restarting.id)}">'
            f"{esc(restarting.short_id)}</a> · {esc(restarting.status)}{nodes}</span>\n"
        )
    elif run.is_active:
        done, total = run.steps_done, run.steps_total
        extra = f" · {esc(run.repeats)}" if run.repeats else ""
        if run.current_node:
            extra += f" · {esc(run.current_node)}"
        out += (
            f'    <progress max="{total or 1}" value="{done}"'
            f' aria-label="{done} of {total} nodes done"></progress>\n'
            f'    <span class="step">{done}/{total} nodes{extra}</span>\n'
        )
    elif run.latest_restart:
        latest = run.latest_restart
        first = run.restarted_as[0]
        newest = ""
        if latest.id != first:
            newest = (
                f' · latest <a class="mono" href="/workflows/{esc(latest.id)}">'
                f"{esc(latest.short_id)}</a> #{latest.attempt}"
            )
        out += (
            f'    <span class="outcome">restarted as <a class="mono"'
            f' href="/workflows/{esc(first)}">{esc(first[:8])}</a>{newest}'
            f" → {badge(latest.status)}</span>\n"
        )
    elif run.status == "failed":
        why = esc(run.error_message or run.error_type or "failed")
        out += f'    <span class="error-summary" title="{why}">{why}</span>\n'
    if row_error:
        out += f'    <p class="row-error" role="alert">{esc(row_error)}</p>\n'
    return out + "  </td>\n"


def _form(run_id: str, verb: str, confirm: Markup, csrf: str | None, extra: str = "") -> str:
    path = f"/workflows/{run_id}/{verb}"
    return (
        f'    <form method="post" action="{path}" hx-post="{path}" data-run="{run_id}"'
        f' data-confirm="{confirm}">{csrf_field(csrf)}{extra}\n'
    )


def _actions(run: Any, operate: bool, csrf: str | None) -> str:
    out = '  <td class="actions">\n'
    if run.is_active:
        if operate:
            out += _form(esc(run.id), "cancel", confirm_text("cancel", run), csrf) + (
                '      <button type="submit" class="btn btn-danger" data-action="cancel"'
                ' aria-keyshortcuts="c">Cancel</button>\n    </form>\n'
            )
        else:
            out += f"    {unavailable('Cancel', 'btn btn-danger')}\n"
        return out + "  </td>\n"
    if run.active_restart:
        return out + '    <span class="muted">restarting…</span>\n  </td>\n'
    # A run is restarted once: running it again means acting on its latest attempt.
    tip = run.latest_restart or run
    latest = run.latest_restart is not None
    resumable = tip.status in ("failed", "cancelled") and tip.steps_done > 0
    tid, tshort = esc(tip.id), esc(tip.short_id)
    if not operate:
        out += f"    {unavailable('Restart' + (' ' + tip.short_id if latest else ''))}\n"
        if resumable:
            out += f"    {unavailable('Resume')}\n"
        return out + f"    {unavailable('Edit', 'btn btn-link')}\n  </td>\n"
    label = f' aria-label="Restart {tshort}, the latest attempt"' if latest else ""
    out += _form(tid, "restart", confirm_text("restart", tip), csrf) + (
        f'      <button type="submit" class="btn" data-action="restart"'
        f' aria-keyshortcuts="r"{label}>Restart{f" {tshort}" if latest else ""}</button>\n'
        "    </form>\n"
    )
    if resumable:
        hidden = '<input type="hidden" name="from" value="failure">'
        where = esc(tip.error_node or "where it stopped")
        out += _form(tid, "restart", confirm_text("resume", tip), csrf, hidden) + (
            '      <button type="submit" class="btn" data-action="resume" aria-keyshortcuts="R"'
            f' aria-label="Resume run {tshort} from {where}">Resume</button>\n    </form>\n'
        )
    return out + (
        f'    <a class="btn btn-link" href="/workflows/{tid}/edit" data-action="edit"'
        f' aria-keyshortcuts="e" aria-label="Edit the inputs of run {tshort} and restart">'
        "Edit</a>\n  </td>\n"
    )
