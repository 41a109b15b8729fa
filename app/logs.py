"""Logging for `serve` and `worker`. By default nothing is configured: warnings go to
stderr as plain text, as they always have. CA_LOG_FORMAT=json writes every record as
one JSON object per line, with the fields its `extra` gave (the run state and request
events carry theirs), for log pipelines to index without parsing text."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "configure_logging"]

# What every record has; anything else on it came from `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # ASCII only: a line separator in a message (U+2028) then cannot split a line
        # for readers that split on it.
        return json.dumps(entry, default=str)


def configure_logging(log_format: str) -> bool:
    """Set up the process's logging for `log_format`; True when it is JSON (uvicorn
    must then leave logging alone and not write its own access log)."""
    if log_format != "json":
        return False
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Our events are INFO; other libraries' INFO (a line per HTTP call, per job) is noise.
    root.setLevel(logging.WARNING)
    logging.getLogger("configurable_agents").setLevel(logging.INFO)
    return True
