"""Jinja filters: times, durations and JSON, formatted one way everywhere."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import msgspec
import yaml

__all__ = ["FILTERS", "build_url"]


def absolute(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value is not None else ""


def relative(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "—"
    seconds = int((now - value).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago" if seconds >= 5 else "just now"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def to_json(value: Any) -> str:
    """Indented JSON for a page. msgspec (Litestar's own encoder) rather than the json
    module, whose indenting encoder is pure Python: 27-48 us a value against 2-4, and a
    run's page shows one per step. The text is the same but for floats that need an
    exponent (1e-7 where json wrote 1e-07)."""
    return msgspec.json.format(msgspec.json.encode(value, enc_hook=str), indent=2).decode()


# libyaml's dumper when PyYAML has it: the pure-Python one was a visible share of the
# detail page's time.
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def to_yaml(value: Any) -> str:
    # Runs of one workflow share a config snapshot: dumping it (the representer is
    # Python even with libyaml) cost a fifth of a detail page; its JSON text is the key
    # (msgspec's: the json module took 28 us of a run page's 230 to write it).
    key = msgspec.json.encode(value, enc_hook=str)
    if b"null" in key:  # msgspec writes NaN and the infinities as null too
        key = json.dumps(value, ensure_ascii=False, default=str).encode()
    return _yaml_of(key)


@functools.lru_cache(maxsize=128)
def _yaml_of(text: bytes) -> str:
    value = json.loads(text)
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def money(value: float | None) -> str:
    """Dollars: cents for amounts of a dollar or more, four decimals below (LLM calls
    cost fractions of a cent)."""
    if value is None:
        return "unknown"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}"


def thousands(value: int | None) -> str:
    return f"{value or 0:,}"


FILTERS = {
    "money": money,
    "thousands": thousands,
    "absolute": absolute,
    "iso": iso,
    "relative": relative,
    "duration": duration,
    "pretty_json": to_json,
    "yaml": to_yaml,
}


def timeline(steps: Any) -> list[dict[str, Any]]:
    """Bars for the step timeline: offset and width in percent of the run's span."""
    steps = list(steps)
    if not steps:
        return []
    start = min(s.started_at for s in steps)
    ends = [
        s.completed_at or (s.started_at + timedelta(milliseconds=s.duration_ms or 0)) for s in steps
    ]
    span = max((end - start).total_seconds() for end in ends) or 1e-9
    bars = []
    for step, end in zip(steps, ends, strict=True):
        offset = (step.started_at - start).total_seconds()
        width = max((end - step.started_at).total_seconds(), 0.0)
        bars.append(
            {
                "step": step,
                "x": round(100 * offset / span, 2),
                # A zero-length step still gets a visible sliver.
                "w": max(round(100 * width / span, 2), 0.4),
            }
        )
    return bars


def build_url(path: str, **params: Any) -> str:
    """`path` with these query parameters; a list or tuple repeats its parameter
    (`workflow=a&workflow=b`), an empty one and None are left out."""
    query = {
        k: list(v) if isinstance(v, list | tuple) else v
        for k, v in params.items()
        if v not in (None, "", (), [])
    }
    return f"{path}?{urlencode(query, doseq=True)}" if query else path


def running_step(run: Any, steps: Any) -> dict[str, Any] | None:
    """The node a running run is in now, and since when: steps are recorded as they
    finish, so the current one started when the last recorded one ended (or the run
    began)."""
    if run.status != "running" or not run.current_node or run.started_at is None:
        return None
    ends = [s.completed_at for s in steps if s.completed_at is not None]
    return {"node": run.current_node, "since": max([run.started_at, *ends])}


FILTERS["timeline"] = timeline
FILTERS["running_step"] = running_step
