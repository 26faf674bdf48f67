"""Logs as one JSON object per line: time, level, logger, message, service, trace and span
ids, and for requests the route template, method, status and outcome. Never a path, query or
body: those carry resource ids and patient data."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from shared.events.outbox import current_traceparent, valid_traceparent

# Attributes a LogRecord has of its own; anything else was passed as `extra` and is kept.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
ACCESS = logging.getLogger("kemdr.access")


def _trace_ids() -> tuple[str | None, str | None]:
    """The trace and span of the work in progress: the active span, else the caller's header."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"
    header = valid_traceparent(current_traceparent.get())
    parts = header.split("-") if header else []
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1], parts[2]
    return None, None


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        trace_id, span_id = _trace_ids()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
        }
        if trace_id:
            entry["trace_id"], entry["span_id"] = trace_id, span_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: an exception's message may quote patient data.
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(service: str, level: str, log_format: str) -> None:
    """Route every logger to stdout, as JSON lines (`json`) or plain text (`text`)."""
    handler = logging.StreamHandler(sys.stdout)
    if log_format == "text":
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Our access line replaces uvicorn's, which names the raw path.
    logging.getLogger("uvicorn.access").disabled = True


def outcome_of(status: int) -> str:
    """The request's outcome class, as the access line and dashboards name it."""
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "success"


def log_request(route: str, method: str, status: int, seconds: float) -> None:
    """The access line: by route template, never the path."""
    if ACCESS.isEnabledFor(logging.INFO):
        ACCESS.info(
            "request",
            extra={
                "route": route,
                "method": method,
                "status": status,
                "outcome": outcome_of(status),
                "duration_ms": round(seconds * 1000, 2),
            },
        )
