"""Keep protected health information out of the logs, whatever level an operator turns on.

SQLAlchemy at DEBUG logs result rows (resource content) and at INFO statement parameters
(index values such as names); uvicorn's access log carries query strings (`name=...`).
The engines hide parameters themselves (`hide_parameters`); these filters do the rest.
"""

from __future__ import annotations

import logging

_INSTALLED = "_kemdr_phi_filter"


def _no_result_rows(record: logging.LogRecord) -> bool:
    # SQLAlchemy logs each fetched row as "Row %r" (and "Col %r" for column names only).
    return not (isinstance(record.msg, str) and record.msg.startswith("Row "))


def _no_query_strings(record: logging.LogRecord) -> bool:
    # uvicorn.access: (client, method, full path, http version, status).
    args = record.args
    if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
        record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
    return True


def install_log_redaction() -> None:
    """Attach the filters once per process (idempotent)."""
    for name, check in (
        ("sqlalchemy.engine.Engine", _no_result_rows),
        ("uvicorn.access", _no_query_strings),
    ):
        logger = logging.getLogger(name)
        if not any(getattr(f, _INSTALLED, False) for f in logger.filters):
            setattr(check, _INSTALLED, True)
            logger.addFilter(check)
